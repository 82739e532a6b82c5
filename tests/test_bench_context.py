"""scripts/bench_context.py --configs measures the context blocks exactly as the configs build them: the same
parameters and MACs as ``python -m hamgan.info`` reports (no timings are asserted: benchmarks are not timed tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hamgan.config import load_config
from hamgan.info import model_info

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_context.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_configs_mode_measures_the_networks_own_blocks(tmp_path):
    specs = ["configs/fmnist32_hamgan.yaml,model.g.ham.kind=cd,model.d.ham.kind=cd", "configs/fmnist32_sagan.yaml",
             "configs/fmnist32_none.yaml"]
    out = tmp_path / "cost.json"
    proc = run("--configs", *specs, "--batch", "2", "--repeats", "1", "--threads", "1", "--save", str(out))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert record["batch"] == 2 and [(r["config"], r["net"]) for r in rows] == [
        (specs[0], "G"), (specs[0], "D"), (specs[1], "G"), (specs[1], "D")]  # no context block: no row
    assert rows[0]["context"].startswith("ham-cd ") and rows[2]["context"] == "SelfAttention"
    for spec, overrides in ((specs[0], ["model.g.ham.kind=cd", "model.d.ham.kind=cd"]), (specs[1], [])):
        info = model_info(load_config(REPO / spec.split(",")[0], overrides).model)
        for row in (r for r in rows if r["config"] == spec):
            context = info[row["net"]]["context"]
            assert row["params"] == context["params"] and row["input_shape"] == [2, *context["input_shape"][1:]]
            assert row["macs"] == pytest.approx(2 * context["macs"], rel=1e-6)  # batch 2 = twice batch 1
            assert row["context_share_of_network_macs"] == pytest.approx(context["macs"] / info[row["net"]]["macs"])
            assert row["time_train_s"] > 0 and row["mem_train_mb"] > 0
    assert "ham-cd D32 R4 K6" in proc.stdout and "share" in proc.stdout


def test_configs_mode_errors_name_the_problem(tmp_path):
    proc = run("--configs", "configs/no_such.yaml")
    assert proc.returncode != 0 and "no config file 'configs/no_such.yaml'" in proc.stderr
    proc = run("--save", str(tmp_path / "x.json"))
    assert proc.returncode != 0 and "give --configs too" in proc.stderr
    assert not (tmp_path / "x.json").exists()
