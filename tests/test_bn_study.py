"""results/fmnist32/bn_modes.jsonl (scripts/eval_bn_modes.py): the study checkpoints under each batch-norm mode,
quoted by the README."""

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
        assert (r["n"], r["seed"], r["protocol"], r["ema"]) == (1000, 0, "pytorch-fid", True), r
        assert r["bn"] in ("running", "standing", "batch") and r["fid"] > 0
        assert (REPO / r["checkpoint"]).is_file()


def test_readme_quotes_every_measured_fid():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Batch-norm statistics of the study checkpoints"):]
    for r in rows():
        assert f"{r['fid']:.2f}" in section, r
