"""studies.fmnist32.design: the pilot's paired and unpaired designs compared, and the rerun they allow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hamgan.metrics.intervals import min_detectable_difference
from studies.fmnist32.design import build_design, main, rerun_plan, sd_interval, sd_upper_limit, study_cost

STUDY = Path(__file__).resolve().parents[3] / "results" / "fmnist32" / "summary.json"


def write_design(folder, fids_a, fids_b, seeds=(10, 11, 12), wall_s=1000.0, eval_s=700.0, eval_steps=(1000,)):
    folder.mkdir(parents=True)
    rows = []
    for model, fids in (("hamgan", fids_a), ("sagan", fids_b)):
        for seed, fid in zip(seeds, fids):
            rows.append({"model": model, "seed": seed, "step": 1000, "fid_at_2000": fid + 30})  # a mid row
            rows.append({"model": model, "seed": seed, "step": 2000, "n": 5000, "fid": fid, "kid_mean": fid / 1000,
                         "precision": 0.5, "recall": 0.03, "density": 0.4, "coverage": 0.2,
                         "wall_s": wall_s, "eval_s": eval_s})
    (folder / "runs.json").write_text(json.dumps(rows))
    options = {"steps": 2000, "eval_steps": list(eval_steps), "n": 5000, "mid_n": 2000}
    (folder / "summary.json").write_text(json.dumps({"options": options}))


def test_the_designs_differences_their_sd_and_the_variance_ratio(tmp_path):
    write_design(tmp_path / "p", [50.0, 52.0, 47.0], [51.0, 52.5, 49.0])     # diffs -1, -0.5, -2
    # the unpaired runs: no intermediate evaluation, 500 s for their 5000 images
    write_design(tmp_path / "u", [50.0, 58.0, 44.0], [55.0, 50.0, 49.0], eval_s=500.0, eval_steps=())  # diffs -5, 8, -5
    d = build_design(tmp_path / "p", tmp_path / "u", ("hamgan", "sagan"), 10.0, 3, 4000, 2000, 5000, 2)
    fid = d["designs"]["paired"]["fid"]
    assert fid["diffs"] == [-1.0, -0.5, -2.0] and fid["mean"] == pytest.approx(-7 / 6)
    assert fid["sd"] == pytest.approx(np.std([-1.0, -0.5, -2.0], ddof=1))
    unpaired = d["designs"]["unpaired"]["fid"]
    assert unpaired["sd"] == pytest.approx(np.std([-5.0, 8.0, -5.0], ddof=1))
    assert d["variance_ratio"] == pytest.approx((unpaired["sd"] / fid["sd"]) ** 2)
    assert 0 < d["f_test_p"] < 0.05  # a 44-fold variance ratio on 2 and 2 degrees of freedom
    # cost from the rows: 1000 s / 2000 steps; 700 s / (5000 + 2000 images) and 500 s / 5000 images
    assert d["pilot_cost"] == pytest.approx({"train_s_per_step": 0.5, "eval_s_per_image": 0.1})
    assert d["cost"] == {**d["pilot_cost"], "source": "the pilot's runs"}  # no --cost-from


def test_rerun_plan_arithmetic():
    """0.5 s/step x 4000 + 0.1 s/image x 7000 = 2700 core-s = 0.375 h on 2 cores; 10 h / (3 x 0.375) = 8.9: 8 seeds."""
    plan = rerun_plan(4.0, 3, {"train_s_per_step": 0.5, "eval_s_per_image": 0.1}, 10.0, 3, 4000, 2000, 5000, 2)
    assert plan["run_core_s"] == pytest.approx(2700) and plan["run_h"] == pytest.approx(0.375)
    assert plan["seeds"] == 8
    row = next(r for r in plan["table"] if r["seeds"] == 8)
    assert row["hours"] == pytest.approx(9.0) and row["mde"] == pytest.approx(min_detectable_difference(4.0, 8))
    assert row["mde_cautious"] > row["mde"]  # planned on the SD's upper confidence limit


def test_rerun_plan_keeps_a_reserve_to_extend_every_run():
    """Extending by 1000 steps: 0.5 x 1000 + 0.1 x 7000 = 1200 core-s = 1/6 h; 10 h / (3 x (0.375 + 1/6)) = 6.15:
    6 seeds, 6.75 h at 4000 steps, 9.75 h if every run is extended."""
    plan = rerun_plan(4.0, 3, {"train_s_per_step": 0.5, "eval_s_per_image": 0.1}, 10.0, 3, 4000, 2000, 5000, 2,
                      extend_steps=1000)
    assert plan["extend_core_s"] == pytest.approx(1200) and plan["seeds"] == 6
    row = next(r for r in plan["table"] if r["seeds"] == 6)
    assert row["hours"] == pytest.approx(6.75) and row["hours_extended"] == pytest.approx(9.75)


def test_sd_intervals_cover_the_true_sd_as_often_as_they_claim():
    """Independent of the formula: simulated samples of 3 normal values (true SD 2) - the 95% interval covers 2 in
    about 95% of samples, the 80% upper limit lies above 2 in about 80% (binomial SE 0.2% / 0.3% at 40,000)."""
    samples = np.random.default_rng(0).normal(0.0, 2.0, size=(40_000, 3))
    sds = samples.std(axis=1, ddof=1)
    low, high = sd_interval(1.0, 3)  # the interval scales with the sample SD
    assert np.mean((sds * low <= 2.0) & (2.0 <= sds * high)) == pytest.approx(0.95, abs=0.01)
    assert np.mean(sds * sd_upper_limit(1.0, 3) >= 2.0) == pytest.approx(0.80, abs=0.01)


def test_cli_writes_the_report_and_refuses_missing_designs(tmp_path, capsys):
    write_design(tmp_path / "p", [50.0, 52.0, 47.0], [51.0, 52.5, 49.0])
    with pytest.raises(SystemExit):
        main(["--paired", str(tmp_path / "p"), "--unpaired", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert "missing/runs.json not found" in capsys.readouterr().err
    write_design(tmp_path / "u", [50.0, 58.0, 44.0], [55.0, 50.0, 49.0])
    assert main(["--paired", str(tmp_path / "p"), "--unpaired", str(tmp_path / "u"), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "design.json").read_text())
    assert math.isclose(report["plan"]["sd"], report["designs"]["paired"]["fid"]["sd"])
    markdown = (tmp_path / "design.md").read_text()
    assert all(f"| {r['seeds']} | {r['hours']:.1f} | {r['hours_extended']:.1f} | {r['mde']:.2f} |" in markdown
               for r in report["plan"]["table"])
    assert report["options"]["extend_steps"] == 1000 and "Reserve for the plateau criterion" in markdown


def test_cost_of_an_earlier_study():
    """The committed study: 21 runs of 4000 steps, each evaluated on 5000 + 3 x 2000 images."""
    summary = json.loads(STUDY.read_text())
    cost = study_cost(STUDY)
    assert cost["train_s_per_step"] == pytest.approx(summary["compute"]["train_s"] / (21 * 4000))
    assert cost["eval_s_per_image"] == pytest.approx(summary["compute"]["eval_s"] / (21 * 11000))
