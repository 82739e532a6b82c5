"""scripts/gpu_check.sh, scripts/gpu_check.py (the runner) and scripts/gpu_check_rows.py (the rows): the jobs fit the
8-minute budget, a row that needs 2 GPUs counts as neither pass nor fail, the largest batch that fits is found, and
--smoke runs every row end to end on this CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as `python scripts/gpu_check.py` sees its siblings
    import gpu_check

    return gpu_check


@pytest.fixture
def gpu_check_rows(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as gpu_check.py imports it
    import gpu_check_rows

    return gpu_check_rows


def test_the_jobs_of_a_one_gpu_machine_fit_the_default_budget(gpu_check):
    """gpu_check.sh: 480 s in all; its set-up (finding Python, imports, pip when something is missing) is given
    30 s. Each job's time limit is its share of the time left, so the shares add up to the budget left."""
    one_gpu = [n for n in gpu_check.JOBS if n != "ddp"]
    assert sum(gpu_check.JOBS[n] for n in one_gpu) <= 480 - 30
    left, limits = 450.0, []
    for k in range(len(one_gpu)):
        limits.append(gpu_check.job_limit(left, one_gpu[k:]))
        left -= limits[-1]  # every job uses all of its share
    assert sum(limits) == pytest.approx(450.0) and left == pytest.approx(0.0, abs=1e-9)


def test_largest_batch_halves_until_it_fits(gpu_check_rows):
    def measure(batch: int) -> dict:
        if batch > 64:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"batch": batch}

    assert gpu_check_rows.largest_batch(measure, (256, 128, 64, 32)) == ({"batch": 64}, [256, 128])
    with pytest.raises(AssertionError, match="out of memory at every batch tried: 256, 128"):
        gpu_check_rows.largest_batch(measure, (256, 128))


def test_table_counts_rows_needing_2_gpus_as_neither_pass_nor_fail(gpu_check, gpu_check_rows):
    Row = gpu_check_rows.Row
    rows = [Row("a", "a", "1 images/s", status="pass"), Row("b", "b", "x", status="FAIL"),
            Row("ddp", "DDP", gpu_check_rows.NEEDS_2_GPUS, status=gpu_check_rows.NEEDS_2_GPUS)]
    text = gpu_check.table("test", rows)
    assert text.splitlines()[-1].startswith("1 passed, 1 failed, 1 not counted")
    assert "| DDP | needs 2 GPUs |" in text


def test_a_job_out_of_time_fails_each_of_its_rows(gpu_check, gpu_check_rows, tmp_path):
    s = gpu_check_rows.Settings(tmp_path, "cpu", smoke=True)
    for sub in ("jobs", "logs"):
        (tmp_path / sub).mkdir()
    rows = gpu_check.run_jobs(s, ["context"], budget=1.0)  # too short to start Python
    assert [(r.key, r.status) for r in rows] == [("context-ham-nmf", "FAIL"), ("context-ham-cd", "FAIL"),
                                                  ("context-attention-full", "FAIL")]
    assert rows[0].result == "timed out: the job had 1 s, its share of --budget"


def test_step_checks_name_what_is_wrong(gpu_check_rows):
    good = {"losses": {"loss_d": 1.0, "loss_g": 0.5}, "context_dtype": "bfloat16", "graphs_in_timed_steps": 0}
    gpu_check_rows.check_step(good, compiled=True)
    with pytest.raises(AssertionError, match="issue 21 point 6"):
        gpu_check_rows.check_step({**good, "context_dtype": "float32"})
    with pytest.raises(AssertionError, match="non-finite losses"):
        gpu_check_rows.check_step({**good, "losses": {"loss_d": float("nan")}})
    with pytest.raises(AssertionError, match="2 graphs compiled during timed steps"):
        gpu_check_rows.check_step({**good, "graphs_in_timed_steps": 2}, compiled=True)



def test_the_ddp_row_starts_its_ranks_through_the_runner(gpu_check_rows, tmp_path):
    """torchrun runs scripts/gpu_check.py --ddp-rank (the command line's entry point), not the rows module."""
    cmd = gpu_check_rows.ddp_command(gpu_check_rows.Settings(tmp_path, "cpu", smoke=True), tmp_path / "ddp")
    i = cmd.index(str(ROOT / "scripts" / "gpu_check.py"))
    assert cmd[i + 1:i + 3] == ["--smoke", "--ddp-rank"]


@pytest.mark.slow
def test_smoke_runs_every_row_end_to_end_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh --smoke: every job in its own process, as on a GPU; fp16 (refused by the trainer on a
    CPU) is "needs a GPU"; everything else passes, and the table of stdout is the one written to OUT."""
    out = tmp_path / "check"
    # the budget is no constraint here (the rows' timings are not what this tests): ~2 min on an idle 2-core CPU
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--smoke", "--out", str(out),
                             "--budget", "3000"], capture_output=True, text=True, timeout=3100,
                            env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    record = json.loads((out / "gpu_check.json").read_text())
    rows = {r["key"]: r for r in record["rows"]}
    assert list(rows) == ["train-eager-ham", "train-eager-attention", "train-compiled-ham",
                          "train-compiled-attention", "resume", "fp16", "fp16-from-bf16", "context-ham-nmf",
                          "context-ham-cd", "context-attention-full", "fid", "ddp"]
    for key, row in rows.items():
        expected = ("pass", "needs a GPU") if key.startswith("fp16") else ("pass",)
        assert row["status"] in expected, row
    assert rows["resume"]["figures"]["max_abs_difference"] == 0.0  # bit-exact on the CPU
    assert rows["train-eager-ham"]["figures"]["eager"]["images_per_s"] > 0
    assert rows["fid"]["figures"]["max_feature_difference"] <= 1e-3
    assert result.stdout.strip() == (out / "gpu_check.md").read_text().strip()
    assert result.stdout.startswith("GPU check: ")
    assert "| check | result | paper | asserts | status | s |" in result.stdout
