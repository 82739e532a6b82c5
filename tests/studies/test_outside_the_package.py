"""The studies live beside the library, not in it: hamgan never imports them, the wheel leaves them out, and a study
runs as ``python -m studies.<name>.<entry>`` from the repository root (no sys.path patching)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_hamgan_module_imports_a_study():
    offenders = {str(p.relative_to(REPO)): sorted(n for n in imported_modules(p) if n.split(".")[0] == "studies")
                 for p in sorted((REPO / "hamgan").rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_leaves_the_studies_out():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setuptools = pytest.importorskip("setuptools")  # not in a bare Python >= 3.12 venv
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    assert "hamgan" in packages and not [p for p in packages if p.split(".")[0] in ("studies", "tests")]


def test_the_fmnist32_study_runs_as_a_module_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "studies.fmnist32.reproduce", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m studies.fmnist32.reproduce")
