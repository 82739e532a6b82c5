"""docs/cuda-only-lines.md stays current: every line the scan of scripts/cuda_only_lines.py finds is in a row, every
row's code is still in its file, and every test a row names exists."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cuda-only-lines.md"


def load_scanner():
    spec = importlib.util.spec_from_file_location("cuda_only_lines", ROOT / "scripts" / "cuda_only_lines.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def rows() -> list[tuple[str, list[str], str]]:
    """(file, code lines, the rest of the row) of the doc's table."""
    out = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 4:
            path = cells[0].strip("`")
            codes = [c.strip() for c in re.findall(r"`([^`]+)`", cells[1])]
            out.append((path, codes, " | ".join(cells[2:])))
    return out


def test_every_cuda_only_line_found_by_the_scan_is_listed():
    """A scanned line is listed when a row holds its code, or lies inside a run of scanned lines that starts and ends
    with lines a row holds (a row may name a block by its first and last line)."""
    listed: dict[str, set[str]] = {}
    for path, codes, _ in rows():
        listed.setdefault(path, set()).update(codes)
    found = load_scanner().scan()
    numbers: dict[str, set[int]] = {}
    for line in found:
        numbers.setdefault(line.path, set()).add(line.number)
    named = {(line.path, line.number) for line in found if line.text in listed.get(line.path, set())}

    def inside_named_block(path: str, n: int) -> bool:
        before = next((k for k in range(n - 1, 0, -1) if k not in numbers[path] or (path, k) in named), None)
        after = next((k for k in range(n + 1, n + 200) if k not in numbers[path] or (path, k) in named), None)
        return (path, before) in named and (path, after) in named

    missing = [f"{line.path}:{line.number}: {line.text}" for line in found
               if (line.path, line.number) not in named and not inside_named_block(line.path, line.number)]
    assert not missing, "add these CUDA-only lines to docs/cuda-only-lines.md:\n" + "\n".join(missing)


def test_every_row_still_names_code_of_its_file():
    for path, codes, _ in rows():
        text = {t.strip() for t in (ROOT / path).read_text().splitlines()}
        gone = [c for c in codes if c not in text]
        assert not gone, f"docs/cuda-only-lines.md: no longer in {path}: {gone}"


def test_every_test_a_row_names_exists():
    named = re.findall(r"(tests/[\w/]+\.py)::(\w+)", DOC.read_text())
    assert named
    for path, name in named:
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"{path}::{name} does not exist"
