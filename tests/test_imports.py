"""hamgan's modules import each other without a circle: no module imports one that imports it back, directly or
through others. Read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hamgan"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """The hamgan modules an import statement of ``module`` names (``from hamgan.x import y``: ``hamgan.x.y`` when
    that is a module, else ``hamgan.x``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the package of ``module``
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:  # hamgan.x.function -> hamgan.x
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph(function_level: bool) -> dict[str, set[str]]:
    """module -> the hamgan modules it imports at the top level (and inside functions when ``function_level``);
    ``if TYPE_CHECKING:`` blocks are left out (they never run)."""
    graph = {}
    for module, path in MODULES.items():
        edges: set[str] = set()

        def visit(body: list[ast.stmt], in_function: bool) -> None:
            for node in body:
                if isinstance(node, ast.If) and is_type_checking(node):
                    visit(node.orelse, in_function)
                    continue
                if isinstance(node, (ast.Import, ast.ImportFrom)) and (function_level or not in_function):
                    edges.update(imported_modules(node, module))
                inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.stmt)] +
                              [s for h in children if isinstance(h, ast.ExceptHandler) for s in h.body], inner)

        visit(ast.parse(path.read_text()).body, False)
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_graph_sees_imports():
    graph = import_graph(function_level=False)
    assert "hamgan.config" in graph["hamgan.checkpoint"] and "hamgan.latents" in graph["hamgan.bn_modes"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("function_level", [False, True], ids=["top-level", "with-function-level"])
def test_no_import_circle(function_level):
    """Top-level imports, and with the imports inside functions too (a function-level import only hides a circle)."""
    assert circles(import_graph(function_level)) == []
