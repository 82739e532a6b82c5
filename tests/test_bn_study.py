"""results/fmnist32/bn_modes.jsonl (scripts/eval_bn_modes.py): the study checkpoints under each batch-norm mode,
quoted by the study report (results/fmnist32/study-5seeds.md)."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "fmnist32" / "bn_modes.jsonl"


def rows() -> list[dict]:
    if not RESULTS.is_file():
        pytest.skip(f"{RESULTS} not written yet")
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def test_rows_follow_the_study_protocol():
    for r in rows():
        assert (r["n"], r["seed"], r["protocol"], r["ema"], r["step"]) == (2000, 0, "pytorch-fid", True, 4000), r
        assert r["bn"] in ("running", "standing", "batch") and r["fid"] > 0
        assert (REPO / r["checkpoint"]).is_file()


def test_study_report_quotes_every_measured_fid(readme):
    section = readme("Batch-norm statistics of the study checkpoints", "results/fmnist32/study-5seeds.md")
    for r in rows():
        assert f"{r['fid']:.2f}" in section, r


def eval_bn_modes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_bn_modes", REPO / "scripts" / "eval_bn_modes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_rows_fill_the_study_s_own_mode_at_the_final_step_with_n_samples(tmp_path):
    """The issue-12 study (standing, FID@5000 with fid_at_2000) fills the standing column; the earlier study's rows
    (no ``bn``: copied running statistics) the running column; a study value of another N is never mixed in."""
    script = eval_bn_modes()
    new = [{"model": "hamgan", "seed": 0, "step": 1000, "n": 2000, "fid": 120.0, "bn": "standing"},
           {"model": "hamgan", "seed": 0, "step": 4000, "n": 5000, "fid": 49.5, "fid_at_2000": 51.0, "bn": "standing"},
           {"model": "sagan", "seed": 0, "step": 4000, "n": 5000, "fid": 56.4, "fid_at_2000": 58.0, "bn": "standing"}]
    old = [{"model": "hamgan", "seed": 0, "step": 2000, "n": 1000, "fid": 72.13},
           {"model": "hamgan", "seed": 0, "step": 500, "n": 1000, "fid": 209.0}]
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    ckpts = ["c/hamgan-seed0.pt", "c/sagan-seed0.pt", "c/none-seed0.pt"]
    rows = script.study_rows(tmp_path / "new.json", ckpts, 5000)
    assert [(r["checkpoint"], r["step"], r["bn"], r["sn_iterations"], r["fid"]) for r in rows] == [
        ("c/hamgan-seed0.pt", 4000, "standing", script.SN_REFRESH_EMA, 49.5),
        ("c/sagan-seed0.pt", 4000, "standing", script.SN_REFRESH_EMA, 56.4)]
    assert [r["fid"] for r in script.study_rows(tmp_path / "new.json", ckpts, 2000)] == [51.0, 58.0]
    assert script.study_rows(tmp_path / "new.json", ckpts, 1000) == []
    assert [(r["bn"], r["sn_iterations"], r["fid"]) for r in script.study_rows(tmp_path / "old.json", ckpts, 1000)] == [
        ("running", 0, 72.13)]

    measured = [{"checkpoint": "c/hamgan-seed0.pt", "bn": "batch", "sn_iterations": script.SN_REFRESH_EMA, "fid": 50.25},
                {"checkpoint": "c/hamgan-seed0.pt", "bn": "standing", "sn_iterations": script.SN_REFRESH_EMA,
                 "fid": 49.75}]
    table = script.table(rows + measured).splitlines()
    assert table[0] == "| checkpoint | standing (default) | batch (official code) |"
    assert table[2] == "| hamgan-seed0.pt | 49.75 | 50.25 |"  # a measured value wins over the study's
    assert table[3] == "| sagan-seed0.pt | 56.40 |  |"
    assert len(table) == 4  # one seed per model: no empty mean ± std rows
    seed1 = {"checkpoint": "c/hamgan-seed1.pt", "bn": "batch", "sn_iterations": script.SN_REFRESH_EMA, "fid": 52.25}
    assert script.table(rows + measured + [seed1]).splitlines()[-1] == (
        "| **hamgan** (mean ± std over seeds) |  | 51.25 ± 1.41 |")
