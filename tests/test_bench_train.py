"""scripts/bench_train.py --against: the before / after mode measures both trees in alternating pairs and prints
their table (no timings are asserted: benchmarks are not timed tests)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_train.py"
TINY = ["--resolutions", "32", "--contexts", "none", "--batch-32", "4", "--steps-32", "1", "--warmup", "0",
        "--threads", "1"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_against_a_tree_prints_paired_medians_and_the_geometric_mean():
    proc = run("--against", str(REPO), "--pairs", "2", *TINY)  # this tree against itself
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("none @ 32: before") == 2  # one line per pair
    assert "after first" in proc.stderr and "before first" in proc.stderr  # the order alternates
    row = re.search(r"^\| 32 \| none \| ([\d.]+) \(([\d.]+)-([\d.]+)\) \| ([\d.]+) \(", proc.stdout, re.M)
    assert row is not None, proc.stdout
    assert float(row[2]) <= float(row[1]) <= float(row[3]) and float(row[4]) > 0
    assert re.search(r"geometric mean of the 2 paired ratios after / before: [\d.]+ \((no slower|SLOWER)",
                     proc.stdout)


def test_against_something_else_is_a_clear_error(tmp_path):
    proc = run("--against", str(tmp_path), "--pairs", "1", *TINY)
    assert proc.returncode != 0 and "not a checkout of this repository" in proc.stderr
    proc = run("--against", str(REPO), "--pairs", "1", "--compile", *TINY)
    assert proc.returncode != 0 and "measures the config defaults" in proc.stderr
