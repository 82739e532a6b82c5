"""Smoke test of scripts/reproduce_fmnist.py on a tiny budget: 2 models x 2 seeds x 4 steps on Fashion-MNIST, FID
of 8 samples (real Inception) against 8 test images; outputs, resuming, report-only and bad options.

The Fréchet distance itself (scipy's sqrtm of 2048 x 2048 matrices, ~30 s per call on a busy 2-core CPU) is replaced
by a cheap stand-in here; its numbers are tested in tests/metrics/test_fid.py. Everything else is the real pipeline:
training subprocesses, checkpoints, Inception features, caching, aggregation, plots, grids and exported checkpoints.
"""

import csv
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hamgan.metrics.fid as fid_module
from hamgan.checkpoint import checkpoint_path, load_generator
from hamgan.metrics.inception import WEIGHTS_NAME, hub_checkpoint_dir

REPO = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")
STEPS, EVAL_STEPS, SEEDS, MODELS = 4, [2, 4], [0, 1], ["hamgan", "none"]

pytestmark = pytest.mark.slow


def load_driver():
    spec = importlib.util.spec_from_file_location("reproduce_fmnist", REPO / "scripts" / "reproduce_fmnist.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


driver = load_driver()


def require_inputs() -> None:
    missing = []
    if not (hub_checkpoint_dir() / WEIGHTS_NAME).is_file():
        missing.append(f"FID weights at {hub_checkpoint_dir() / WEIGHTS_NAME}")
    if not FMNIST.is_dir() and not (Path.home() / ".cache" / "hamgan").exists():
        missing.append(f"Fashion-MNIST at {FMNIST}")
    if missing:
        message = "missing " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def cheap_frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2): FID without its (expensive) cross term, an upper bound of it."""
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2))


def study_argv(tmp: Path, work: Path | None = None) -> list[str]:
    return ["--models", ",".join(MODELS), "--seeds", ",".join(map(str, SEEDS)), "--steps", str(STEPS),
            "--eval-steps", ",".join(map(str, EVAL_STEPS)), "--n", "8", "--ref-n", "8", "--threads", "1",
            "--work", str(work or tmp / "work"), "--results", str(tmp / "results"),
            "--checkpoints", str(tmp / "results" / "checkpoints")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    require_inputs()
    tmp = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    mp.setattr(fid_module, "frechet_distance", cheap_frechet_distance)
    try:
        assert driver.main(study_argv(tmp)) == 0
    finally:
        mp.undo()
    return tmp


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_cover_every_run_and_eval_step(study):
    rows = read_csv(study / "results" / "runs.csv")
    assert {(r["model"], int(r["seed"]), int(r["step"])) for r in rows} == {
        (m, s, t) for m in MODELS for s in SEEDS for t in EVAL_STEPS}
    as_json = json.loads((study / "results" / "runs.json").read_text())
    assert [(r["model"], r["seed"], r["step"], r["fid"]) for r in as_json] == [
        (r["model"], int(r["seed"]), int(r["step"]), float(r["fid"])) for r in rows]
    for r in rows:
        assert math.isfinite(float(r["fid"])) and float(r["fid"]) > 0
        assert int(r["n"]) == 8 and r["ref"] == "fmnist32_test_8.npz"
        assert float(r["images_per_s"]) > 0
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append((int(r["step"]), float(r["wall_s"])))
    for points in by_run.values():  # training time grows with the step
        (s1, w1), (s2, w2) = sorted(points)
        assert 0 < w1 < w2
    ham = next(r for r in rows if r["model"] == "hamgan")
    none = next(r for r in rows if r["model"] == "none")
    assert int(ham["context_macs_g"]) > 0 and int(ham["context_params_d"]) > 0
    assert int(none["context_macs_g"]) == 0 and int(ham["params_g"]) > int(none["params_g"])


def test_rows_record_the_learnt_scale_of_the_context_block(study):
    import torch

    for r in read_csv(study / "results" / "runs.csv"):
        if r["model"] == "none":
            assert r["context_scale_g"] == "" and r["context_scale_d"] == ""
            continue
        state = torch.load(checkpoint_path(Path(r["run"]), int(r["step"])), weights_only=False)
        assert float(r["context_scale_g"]) == pytest.approx(state["G"]["context.sigma"].item(), abs=1e-5)
        assert float(r["context_scale_d"]) == pytest.approx(state["D"]["context.sigma"].item(), abs=1e-5)


def test_summary_aggregates_over_seeds(study):
    rows = json.loads((study / "results" / "runs.json").read_text())
    summary = json.loads((study / "results" / "summary.json").read_text())
    assert list(summary["models"]) == MODELS
    for model in MODELS:
        s = summary["models"][model]
        assert s["final_step"] == STEPS and sorted(map(int, s["steps"])) == EVAL_STEPS
        for step in EVAL_STEPS:
            fids = [r["fid"] for r in rows if r["model"] == model and r["step"] == step]
            at = s["steps"][str(step)]
            assert at["seeds"] == SEEDS
            assert at["fid_mean"] == pytest.approx(np.mean(fids))
            assert at["fid_std"] == pytest.approx(np.std(fids, ddof=1))
    text = (study / "results" / "summary.md").read_text()
    assert "| HamGAN (Ham NMF) |" in text and "| no context block |" in text
    assert "hamgan-eval compare" in text and "scripts/reproduce_fmnist.py" in text
    assert summary["commands"]["compare"].count(".pt") == len(MODELS) * len(SEEDS)
    assert "learnt scale G / D" in text and "min of FID evaluation" in text
    assert str(REPO) not in summary["commands"]["train_example"] + summary["commands"]["reference_stats"]


def test_plots_and_sample_grids_are_images(study):
    results = study / "results"
    for name in ("fid_vs_steps.png", "fid_vs_wallclock.png"):
        with Image.open(results / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    for model in MODELS:
        with Image.open(results / "samples" / f"{model}.png") as im:
            assert im.size == (10 * 33 + 1, 10 * 33 + 1)  # 10 classes x 10 samples of 32x32, padding 1


def test_exported_checkpoints_are_small_and_load(study):
    for model in MODELS:
        for seed in SEEDS:
            path = study / "results" / "checkpoints" / f"{model}-seed{seed}.pt"
            assert path.stat().st_size < 1_500_000
            G, cfg, step = load_generator(path)
            assert step == STEPS and cfg.train.seed == seed and cfg.model.context == (
                "ham" if model == "hamgan" else "none")


def test_rerun_skips_finished_work_and_resumes_an_interrupted_run(study, monkeypatch):
    monkeypatch.setattr(fid_module, "frechet_distance", cheap_frechet_distance)
    trained, evaluated = [], []
    real_run, real_fid = driver.subprocess.run, driver.Evaluator.fid
    monkeypatch.setattr(driver.subprocess, "run", lambda cmd, **kw: trained.append(cmd) or real_run(cmd, **kw))
    monkeypatch.setattr(driver.Evaluator, "fid", lambda self, ckpt: evaluated.append(ckpt) or real_fid(self, ckpt))

    assert driver.main(study_argv(study)) == 0
    assert trained == [] and evaluated == []

    # interrupt one run after step 2: its final checkpoint and evaluation are gone
    run = study / "work" / "none-seed1"
    checkpoint_path(run, STEPS).unlink()
    cache = json.loads((run / "fid.json").read_text())
    cache["evaluations"] = [e for e in cache["evaluations"] if e["step"] != STEPS]
    (run / "fid.json").write_text(json.dumps(cache))
    assert driver.main(study_argv(study)) == 0
    assert len(trained) == 1 and trained[0][trained[0].index("--out") + 1] == str(run)
    assert evaluated == [checkpoint_path(run, STEPS)]
    assert "resumed from" in (run / "train.log").read_text()
    assert len(read_csv(study / "results" / "runs.csv")) == len(MODELS) * len(SEEDS) * len(EVAL_STEPS)


def test_report_only_from_committed_results(study, tmp_path):
    before = json.loads((study / "results" / "summary.json").read_text())["models"]
    assert driver.main([*study_argv(study, work=tmp_path / "gone"), "--report-only"]) == 0
    after = json.loads((study / "results" / "summary.json").read_text())["models"]
    assert after == before


def test_check_against_passes_inside_and_fails_outside_the_spread(study, tmp_path, capsys):
    earlier = json.loads((study / "results" / "summary.json").read_text())
    assert earlier["compute"]["runs"] == len(MODELS) * len(SEEDS) and earlier["compute"]["eval_s"] > 0
    argv = [*study_argv(study), "--report-only", "--check-against"]

    assert driver.main([*argv, str(study / "results" / "summary.json")]) == 0  # each seed vs its own study
    out = capsys.readouterr().out
    assert out.count(" within ") == len(MODELS) * len(SEEDS) and "OUTSIDE" not in out

    final = earlier["models"]["none"]["final"]
    final["fid_mean"], final["fid_std"] = max(final["fids"]) + 100.0, 1.0  # nothing lands in 100 +- 2
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    assert driver.main([*argv, str(tmp_path / "summary.json")]) == 1
    out = capsys.readouterr().out
    assert out.count("OUTSIDE") == len(SEEDS) and out.count(" within ") == len(SEEDS)  # hamgan still inside


@pytest.mark.parametrize("change, message", [
    (lambda s: s["options"].update(n=2048), "n 8 vs 2048"),
    (lambda s: s.pop("models"), "not a summary.json"),
])
def test_check_against_refuses_other_protocols(study, tmp_path, capsys, change, message):
    earlier = json.loads((study / "results" / "summary.json").read_text())
    change(earlier)
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    assert driver.main([*study_argv(study), "--report-only", "--check-against", str(tmp_path / "summary.json")]) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_schedule_keeps_every_eval_step():
    assert driver.checkpoint_schedule(2000, [500, 1000, 1500, 2000]) == (500, 5)
    every, keep = driver.checkpoint_schedule(2000, [300, 2000])
    assert every == 100 and keep * every > 2000


def test_training_clock_reads_cumulative_training_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 50, "train_s": 10.0}, {"step": 100, "train_s": 30.0}, {"step": 100, "fid": 3.0},
             {"step": 120, "train_s": 40.0}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 14')  # last line cut by a crash
    clock = driver.training_clock(path)
    assert driver.training_seconds(clock, 50) == pytest.approx(10.0)
    assert driver.training_seconds(clock, 100) == pytest.approx(30.0)
    assert driver.training_seconds(clock, 120) == pytest.approx(40.0)
    assert driver.training_seconds(clock, 75) == pytest.approx(20.0)
    assert driver.training_seconds(clock, 200) is None


@pytest.mark.parametrize("extra, message", [
    (["--steps", "4", "--eval-steps", "2,8"], "outside 1..--steps"),
    (["--set", "train.seed=3"], "set by the study itself"),
    (["--set", "train.batch_size"], "dotted.key=value"),
    (["--configs", "/nonexistent"], "not found"),
])
def test_bad_options_are_clear_errors(extra, message, capsys, tmp_path):
    assert driver.main(["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
