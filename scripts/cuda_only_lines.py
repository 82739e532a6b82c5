"""List the lines of the training, distributed, network and metric code that run only on CUDA.

    python scripts/cuda_only_lines.py                  # the lines, as rows to check against docs/cuda-only-lines.md
    python scripts/cuda_only_lines.py --coverage .coverage   # also: which of them the CPU suite never executed

A line is CUDA-only when it calls ``torch.cuda.*``, or lies in the body of an ``if`` (or the value of a conditional
expression) whose test compares a device type with ``"cuda"``, or names the NCCL backend. The scan reads the source
with :mod:`ast`; it cannot know what runs, so ``--coverage`` (a data file of ``coverage run -m pytest ...``) adds the
measured half: CUDA-only lines that the CPU suite did execute (a mocked ``torch.cuda``) and those it did not.
``tests/test_cuda_only_lines.py`` holds docs/cuda-only-lines.md to this scan: every line found is listed there with a
CPU test or a row of ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ("hamgan/train", "hamgan/distributed.py", "hamgan/nn", "hamgan/metrics", "hamgan/tf32.py", "hamgan/ema.py",
         "hamgan/checkpoint.py")
CUDA_CALL = re.compile(r"torch\.cuda\.|\bcuda\.Event\b|[\"']nccl[\"']")


@dataclass(frozen=True)
class Line:
    path: str  # relative to the repository root
    number: int
    text: str  # stripped source line


def _mentions_cuda(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == "cuda" for n in ast.walk(node))


def _negated(test: ast.AST) -> bool:
    """``x != "cuda"`` / ``not ...``: the body is the non-CUDA branch."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return True
    compares = [n for n in ast.walk(test) if isinstance(n, ast.Compare) and _mentions_cuda(n)]
    return any(isinstance(op, (ast.NotEq, ast.IsNot)) for n in compares for op in n.ops)


def scan_file(path: Path) -> list[Line]:
    """The CUDA-only lines of one Python file (see the module doc)."""
    source = path.read_text()
    lines = source.splitlines()
    numbers: set[int] = set()
    for i, text in enumerate(lines, 1):
        code = text.split("#", 1)[0]
        if CUDA_CALL.search(code):
            numbers.add(i)
    for node in ast.walk(ast.parse(source)):
        tested = isinstance(node, ast.If | ast.IfExp) and isinstance(node.test, ast.Compare | ast.BoolOp | ast.UnaryOp)
        if not tested or not _mentions_cuda(node.test):
            continue
        if isinstance(node, ast.IfExp):  # `a if device.type == "cuda" else b`: the line is CUDA-dependent
            numbers.add((node.orelse if _negated(node.test) else node.body).lineno)
            continue
        for stmt in node.orelse if _negated(node.test) else node.body:
            numbers.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    rel = str(path.relative_to(ROOT))
    out = []
    for i in sorted(numbers):
        text = lines[i - 1].strip()
        if text and not text.startswith("#") and not text.startswith(('"""', "'''")):
            out.append(Line(rel, i, text))
    return out


def scan(scope: tuple[str, ...] = SCOPE) -> list[Line]:
    """The CUDA-only lines of every Python file under ``scope`` (paths relative to the repository root)."""
    files: list[Path] = []
    for entry in scope:
        p = ROOT / entry
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return [line for f in files for line in scan_file(f)]


def executed(coverage_file: Path) -> dict[str, set[int]]:
    """Lines executed per file (relative path) in a coverage data file."""
    import coverage  # a development tool: only this option needs it

    data = coverage.CoverageData(basename=str(coverage_file))
    data.read()
    return {str(Path(f).resolve().relative_to(ROOT)): set(data.lines(f) or ())
            for f in data.measured_files() if Path(f).resolve().is_relative_to(ROOT)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--coverage", type=Path, default=None, help="coverage data file of a CPU test run")
    args = p.parse_args(argv)
    ran = executed(args.coverage) if args.coverage else None
    for line in scan():
        mark = "" if ran is None else ("  ran on CPU" if line.number in ran.get(line.path, ()) else "  never ran")
        print(f"{line.path}:{line.number}: {line.text}{mark}")


if __name__ == "__main__":
    main()
