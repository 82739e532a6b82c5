"""Smoke test of the study driver (python -m studies.fmnist32.reproduce) on a tiny budget: 2 models x 2 seeds x
4 steps on Fashion-MNIST, 2 trainings at once, evaluations of 6 / 8 samples (real Inception) against 8 test images; outputs,
resuming, eval-only, report-only, failed runs, bad options and the rerun check.

The Fréchet distance itself (scipy's sqrtm of 2048 x 2048 matrices, ~30 s per call on a busy 2-core CPU) is replaced
by a cheap stand-in here; its numbers are tested in tests/metrics/test_fid.py. Everything else is the real pipeline:
training subprocesses, checkpoints, standing statistics, Inception features, caching, aggregation, plots, grids.
"""

import csv
import json
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hamgan.metrics.fid as fid_module
import hamgan.metrics.summary as summary_module
from hamgan.checkpoint import checkpoint_path, load_generator
from hamgan.metrics.inception import WEIGHTS_NAME, hub_checkpoint_dir
import studies.fmnist32.reproduce as driver
from studies.fmnist32.evaluation import CACHE_NAME, Evaluator
from studies.fmnist32.scheduler import Scheduler, live_lock

REPO = Path(__file__).resolve().parents[3]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
STEPS, MID, SEEDS, MODELS = 4, 2, [0, 1], ["hamgan", "none"]

pytestmark = pytest.mark.slow




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


def cheap_frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eig") -> float:
    """||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2): FID without its (expensive) cross term, an upper bound of it
    (``method``: frechet_distance's signature; ignored)."""
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2))


@pytest.fixture
def cheap_fid(monkeypatch):
    monkeypatch.setattr(fid_module, "frechet_distance", cheap_frechet_distance)
    monkeypatch.setattr(summary_module, "frechet_distance", cheap_frechet_distance)


def study_argv(tmp: Path, work: Path | None = None, results: Path | None = None) -> list[str]:
    return ["--models", ",".join(f"{m}:{len(SEEDS)}" for m in MODELS), "--steps", str(STEPS), "--eval-steps", str(MID),
            "--mid-n", "6", "--final-n", "8", "--allow-small-n", "--ref-n", "8", "--bn-batches", "1",
            "--bn-batch-size", "4", "--eval-batch-size", "4", "--jobs", "2", "--threads", "1", "--poll", "0.2",
            "--work", str(work or tmp / "work"), "--results", str(results or tmp / "results"),
            "--checkpoints", str((results or tmp / "results") / "checkpoints")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    require_inputs()
    tmp = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    mp.setattr(fid_module, "frechet_distance", cheap_frechet_distance)
    mp.setattr(summary_module, "frechet_distance", cheap_frechet_distance)
    try:
        assert driver.main(study_argv(tmp)) == 0
    finally:
        mp.undo()
    return tmp


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_cover_every_run_and_eval_step(study):
    rows = json.loads((study / "results" / "runs.json").read_text())
    assert {(r["model"], r["seed"], r["step"]) for r in rows} == {(m, s, t) for m in MODELS for s in SEEDS
                                                                  for t in (MID, STEPS)}
    assert len(read_csv(study / "results" / "runs.csv")) == len(rows)
    for r in rows:
        assert r["bn"] == "standing" and (r["bn_batches"], r["bn_batch_size"]) == (1, 4)
        assert r["ref"] == "fmnist32_test_8_features.npz" and np.isfinite(r["fid"]) and r["images_per_s"] > 0
        if r["step"] == MID:  # FID@mid only
            assert r["n"] == 6 and r["fid_at_6"] == r["fid"] and r["kid_mean"] is None
        else:  # all metrics of 8 samples, and the FID of their first 6
            assert r["n"] == 8 and r["fid_at_6"] != r["fid"]
            assert all(np.isfinite(r[k]) for k in ("kid_mean", "precision", "recall", "density", "coverage"))
    for run in {r["run"] for r in rows}:  # training time grows with the step
        (w1, w2) = [r["wall_s"] for r in sorted((r for r in rows if r["run"] == run), key=lambda r: r["step"])]
        assert 0 < w1 < w2
    ham = next(r for r in rows if r["model"] == "hamgan")
    none = next(r for r in rows if r["model"] == "none")
    assert ham["context_macs_g"] > 0 and ham["context_params_d"] > 0 and none["context_macs_g"] == 0
    assert ham["context_scale_g"] is not None and none["context_scale_g"] is None


def test_summary_aggregates_over_seeds_and_pairs(study):
    rows = json.loads((study / "results" / "runs.json").read_text())
    summary = json.loads((study / "results" / "summary.json").read_text())
    assert list(summary["models"]) == MODELS
    for model in MODELS:
        s = summary["models"][model]
        final = [r for r in rows if r["model"] == model and r["step"] == STEPS]
        assert s["final"]["seeds"] == SEEDS and s["final"]["n"] == 8
        assert s["final"]["fid_mean"] == pytest.approx(np.mean([r["fid"] for r in final]))
        assert s["final"]["fid_std"] == pytest.approx(np.std([r["fid"] for r in final], ddof=1))
        assert s["final"]["metrics"]["precision"]["values"] == [r["precision"] for r in final]
        assert sorted(map(int, s["steps"])) == [MID, STEPS]
        assert s["steps"][str(STEPS)]["fids"] == [r["fid_at_6"] for r in final]  # the curve's final point: FID@6
    o = summary["options"]
    assert o["models"] == {m: SEEDS for m in MODELS} and o["n"] == 8 and o["mid_n"] == 6 and o["ref_n"] == 8
    assert o["bn"] == "standing" and o["eval_steps"] == [MID] and o["jobs"] == 2
    pair = summary["paired"]["hamgan-none"]
    assert pair["fid"]["n"] == 2 and pair["fid"]["diffs"] == pytest.approx(
        [summary["models"]["hamgan"]["final"]["fids"][i] - summary["models"]["none"]["final"]["fids"][i]
         for i in range(2)])
    assert pair["fid"]["verdict"] in ("beat", "lost", "inconclusive") and summary["paired"]["hamgan-sagan"] == {}
    assert summary["plateau"]["hamgan"]["to_step"] == STEPS
    c = summary["compute"]
    assert c["runs"] == 4 and c["train_s"] > 0 and c["eval_s"] > 0 and c["driver_wall_s"] > 0
    assert summary["cost"]["none"]["context_params_g"] == 0 and summary["cost"]["hamgan"]["context_macs_d"] > 0
    assert summary["failed_runs"] == [] and "hamgan-eval compare" in summary["commands"]["compare"]
    text = (study / "results" / "summary.md").read_text()
    assert "standing BN statistics (1 x 4)" in text and "| HamGAN (Ham NMF) |" in text
    assert "Paired differences" in text and "Plateau check" in text and "python -m studies.fmnist32.reproduce" in text


def test_the_reported_compare_command_reproduces_the_final_rows(study, cheap_fid, tmp_path):
    """summary.json's ``hamgan-eval compare`` command gives the study's own final-step numbers for the exported
    checkpoints. It once omitted --batch-size: the Hamburger draws its random bases per batch, so compare's default
    batch of 50 sampled other images than the study's batch (KID and precision/recall moved)."""
    import shlex

    from hamgan.evaluate import main as eval_main

    summary = json.loads((study / "results" / "summary.json").read_text())
    argv = shlex.split(summary["commands"]["compare"])
    assert argv[:2] == ["hamgan-eval", "compare"] and "--batch-size" in argv
    assert eval_main([*argv[1:], "--splits", "2", "--json-out", str(tmp_path / "compare.json")]) == 0  # IS of 8
    rows = {(r["model"], r["seed"]): r for r in json.loads((study / "results" / "runs.json").read_text())
            if r["step"] == STEPS}
    compared = json.loads((tmp_path / "compare.json").read_text())
    assert [Path(c["checkpoint"]).name for c in compared] == [f"{m}-seed0.pt" for m in MODELS]
    for c in compared:
        r = rows[(Path(c["checkpoint"]).stem.rsplit("-seed", 1)[0], 0)]
        assert c["step"] == STEPS and c["n"] == r["n"] and c["bn"] == "standing"
        for metric in ("fid", "kid_mean", "precision", "recall", "density", "coverage"):
            assert c[metric] == pytest.approx(r[metric], rel=1e-5, abs=1e-9), metric


def test_plots_grids_and_exported_checkpoints(study):
    results = study / "results"
    for name in ("fid_vs_steps.png", "fid_vs_wallclock.png"):
        with Image.open(results / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    for model in MODELS:
        with Image.open(results / "samples" / f"{model}.png") as im:
            assert im.size == (10 * 33 + 1, 10 * 33 + 1)  # 10 classes x 10 samples of 32x32, padding 1
        assert not (results / "checkpoints" / f"{model}-seed1.pt").exists()  # one per model: results/ < 20 MB
        path = results / "checkpoints" / f"{model}-seed0.pt"
        assert path.stat().st_size < 1_500_000
        G, cfg, step = load_generator(path)
        assert step == STEPS and cfg.train.seed == 0 and cfg.model.g.context == ("ham" if model == "hamgan" else "none")


def test_rerun_skips_finished_work_and_resumes_an_interrupted_run(study, monkeypatch, cheap_fid):
    started, evaluated = [], []
    real_start, real_eval = Scheduler._start, Evaluator.evaluate
    monkeypatch.setattr(Scheduler, "_start", lambda self, run: started.append(run.name) or real_start(self, run))
    monkeypatch.setattr(Evaluator, "evaluate", lambda self, ckpt, spec: evaluated.append(ckpt) or real_eval(
        self, ckpt, spec))
    assert driver.main(study_argv(study)) == 0
    assert started == [] and evaluated == []

    run = study / "work" / "none-seed1"  # interrupted after step 2: final checkpoint and evaluation gone
    checkpoint_path(run, STEPS).unlink()
    lines = (run / CACHE_NAME).read_text().splitlines()
    (run / CACHE_NAME).write_text("".join(l + "\n" for l in lines if json.loads(l)["step"] != STEPS))
    assert driver.main(study_argv(study)) == 0
    assert started == ["none-seed1"] and evaluated == [checkpoint_path(run, STEPS)]
    assert "resumed from" in (run / "train.log").read_text()


def test_eval_only_evaluates_existing_checkpoints_without_training(study, tmp_path, monkeypatch, cheap_fid):
    monkeypatch.setattr(Scheduler, "run", lambda self: pytest.fail("--eval-only started the scheduler"))
    run = study / "work" / "hamgan-seed0"
    (run / CACHE_NAME).rename(tmp_path / CACHE_NAME)
    try:
        assert driver.main([*study_argv(study, results=tmp_path / "r"), "--eval-only"]) == 0
        assert {json.loads(l)["step"] for l in (run / CACHE_NAME).read_text().splitlines()} == {MID, STEPS}
    finally:
        (tmp_path / CACHE_NAME).replace(run / CACHE_NAME)


def test_report_only_from_committed_results(study, tmp_path):
    before = json.loads((study / "results" / "summary.json").read_text())["models"]
    assert driver.main([*study_argv(study, work=tmp_path / "gone"), "--report-only"]) == 0
    assert json.loads((study / "results" / "summary.json").read_text())["models"] == before


def test_the_seed_aware_compare_command_reproduces_the_reported_comparison(study, tmp_path, capsys):
    """Issue 24: the study writes its final rows as compare metric files; hamgan-eval compare --group over them
    (the summary's command, no sampling) gives the summary's seed-aware comparison, with the MDE."""
    import shlex

    from hamgan.evaluate import main as eval_main

    summary = json.loads((study / "results" / "summary.json").read_text())
    assert list(summary["seed_compare"]) == ["hamgan-none"]  # hamgan-sagan: no sagan runs
    argv = shlex.split(summary["commands"]["compare_seeds"])
    assert argv[:2] == ["hamgan-eval", "compare"] and argv.count("--group") == 2
    assert eval_main([*argv[1:], "--json-out", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    (c,) = out["comparisons"]
    reported = summary["seed_compare"]["hamgan-none"]
    assert c["seeds"] == reported["seeds"] == SEEDS
    for metric in ("fid", "kid_mean", "precision", "recall", "density", "coverage"):
        for key in ("mean_diff", "sd_diff", "t_interval", "bootstrap_interval", "mde", "verdict"):
            assert c["metrics"][metric][key] == reported["metrics"][metric][key], (metric, key)
    rows = {(r["model"], r["seed"]): r for r in json.loads((study / "results" / "runs.json").read_text())
            if r["step"] == STEPS}
    assert reported["metrics"]["fid"]["diffs"] == pytest.approx(
        [rows[("hamgan", s)]["fid"] - rows[("none", s)]["fid"] for s in SEEDS])
    assert all(r["train_paired"] is True for r in out["groups"]["hamgan"])
    text = (study / "results" / "summary.md").read_text()
    assert "Seed-aware compare" in text and "MDE (80% power)" in text


def test_plateau_spread_paired_checks_against_the_paired_sd(study, tmp_path):
    """--plateau-spread paired (issue 24's criterion): each model's change of mean FID@mid over the last two
    evaluations against the SD of its paired FID@mid difference at the last step."""
    assert driver.main([*study_argv(study, results=tmp_path / "r"), "--report-only", "--pairs", "hamgan-none",
                        "--plateau-spread", "paired"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    rows = [r for r in json.loads((study / "results" / "runs.json").read_text()) if r["step"] == STEPS]
    fids = {(r["model"], r["seed"]): r["fid_at_6"] for r in rows}
    sd = np.std([fids[("hamgan", s)] - fids[("none", s)] for s in SEEDS], ddof=1)
    for model in MODELS:
        p = summary["plateau"][model]
        assert p["spread"] == pytest.approx(sd) and p["spread_from"] == "paired SD of hamgan-none"
        assert p["verdict"] == ("flat" if abs(p["change"]) < sd else "still falling" if p["change"] < 0 else "rising")
    assert summary["options"]["plateau_spread"] == "paired"
    assert "paired SD of hamgan-none" in (tmp_path / "r" / "summary.md").read_text()


def test_a_checkpoint_gone_before_its_evaluation_is_reported_as_missing(study, tmp_path, capsys):
    """Regression (issue 12's study): checkpoint rotation deleted a run's first evaluation checkpoint before the
    evaluation queue reached it, and the report silently had one seed fewer at that step."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(study / "work" / "hamgan-seed0", work / "hamgan-seed0")
    cache = work / "hamgan-seed0" / CACHE_NAME
    cache.write_text("".join(l + "\n" for l in cache.read_text().splitlines() if json.loads(l)["step"] != MID))
    checkpoint_path(work / "hamgan-seed0", MID).unlink()
    assert driver.main([*study_argv(study, work=work, results=tmp_path / "r"), "--report-only"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(summary["missing_evaluations"]) == 1
    assert summary["missing_evaluations"][0].startswith(f"hamgan-seed0 step {MID}: its checkpoint ")
    assert "Missing evaluation (not in the tables): hamgan-seed0 step" in (tmp_path / "r" / "summary.md").read_text()
    assert f"warning: missing evaluation: hamgan-seed0 step {MID}" in capsys.readouterr().out
    assert json.loads((study / "results" / "summary.json").read_text())["missing_evaluations"] == []


def test_check_against_passes_inside_and_fails_outside_the_spread(study, tmp_path, capsys):
    earlier = json.loads((study / "results" / "summary.json").read_text())
    argv = [*study_argv(study, results=tmp_path / "r"), "--report-only", "--check-against"]
    assert driver.main([*argv, str(study / "results" / "summary.json")]) == 0  # each seed vs its own study
    out = capsys.readouterr().out
    assert len(re.findall(r"seed \d: FID [\d.]+ within", out)) == len(MODELS) * len(SEEDS) and "OUTSIDE" not in out
    assert (tmp_path / "r" / "check.txt").read_text() == out[out.index("check against"):]  # its record

    final = earlier["models"]["none"]["final"]
    final["fid_mean"], final["fid_std"] = max(final["fids"]) + 100.0, 1.0  # nothing lands in 100 +- 2
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    assert driver.main([*argv, str(tmp_path / "summary.json")]) == 1
    out = capsys.readouterr().out
    assert len(re.findall(r"seed \d: FID [\d.]+ OUTSIDE", out)) == len(SEEDS)
    assert len(re.findall(r"seed \d: FID [\d.]+ within", out)) == len(SEEDS)  # hamgan still inside
    assert "OUTSIDE" in (tmp_path / "r" / "check.txt").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda s: s["options"].update(n=5000), "n 8 vs 5000"),
    (lambda s: s["options"].pop("bn"), "bn standing vs None"),
    (lambda s: s.pop("models"), "not a summary.json"),
])
def test_check_against_refuses_other_protocols(study, tmp_path, capsys, change, message):
    earlier = json.loads((study / "results" / "summary.json").read_text())
    change(earlier)
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    argv = [*study_argv(study, results=tmp_path / "r"), "--report-only", "--check-against", str(tmp_path / "summary.json")]
    assert driver.main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_failing_run_is_reported_with_its_log_and_exit_1(study, tmp_path, capsys, cheap_fid):
    ref = study / "work" / "fmnist32_test_8_features.npz"
    argv = [*study_argv(study, work=tmp_path / "w", results=tmp_path / "r"), "--models", "none:1",
            "--set", "train.batch_size=0", "--ref", str(ref)]
    assert driver.main(argv) == 1
    err = capsys.readouterr()
    assert "none-seed0 FAILED (exit 2)" in err.out and "'train.batch_size' must be >= 1" in err.out
    assert "failed runs: none-seed0" in err.err


def test_a_folder_locked_by_a_live_trainer_is_not_started(tmp_path):
    (tmp_path / "train.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert live_lock(tmp_path)["pid"] == os.getpid()
    (tmp_path / "train.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))
    assert live_lock(tmp_path) is None  # that process is gone: the trainer takes the lock over


@pytest.mark.parametrize("extra, message", [
    (["--steps", "4", "--eval-steps", "2,8"], "outside 1..--steps"),
    (["--set", "train.seed=3"], "set by the study itself"),
    (["--final-n", "100"], "--allow-small-n"),
    (["--models", "hamgan", "--seeds", "1,1"], "duplicates"),
    (["--models", "gan:2"], "unknown model"),
    (["--models", "hamgan:2", "--pairs", "sagan-none", "--plateau-spread", "paired"], "--plateau-spread paired needs"),
    (["--configs", "/nonexistent"], "not found"),
])
def test_bad_options_are_clear_errors(extra, message, capsys, tmp_path):
    assert driver.main(["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("target", ["driver", "group"])
def test_sigterm_stops_the_trainers_with_a_checkpoint_and_closes_the_session_record(study, tmp_path, target):
    """The end of a working period (or kill, or a batch system) sends SIGTERM, to the driver or to its whole process
    group: the trainer saves a checkpoint that the next session resumes (a group's SIGTERM plus the driver's own
    SIGTERM once killed it without one), and the driver's session record says the session ended."""
    import signal
    import subprocess
    import time

    from studies.fmnist32.sessions import session_records

    work = tmp_path / "work"
    (work / "hamgan-seed0").mkdir(parents=True)  # the tiny study's reference: no 8-image Inception pass again
    ref = study / "work" / "fmnist32_test_8_features.npz"
    # 1000 samples at step 2: the evaluation thread is inside torch when the signal comes
    argv = [*study_argv(tmp_path, work=work), "--models", "hamgan:1", "--steps", "100000", "--ref", str(ref),
            "--mid-n", "1000", "--final-n", "1000"]
    p = subprocess.Popen([sys.executable, "-m", "studies.fmnist32.reproduce", *argv], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        metrics = work / "hamgan-seed0" / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.is_file() and metrics.read_text().strip()) and time.time() < deadline:
            assert p.poll() is None, p.stdout.read()
            time.sleep(0.5)
        assert metrics.read_text().strip(), "the trainer logged no step within 300 s"
        if target == "group":
            os.killpg(p.pid, signal.SIGTERM)
        else:
            p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 128 + signal.SIGTERM, out  # not 134: no abort of a torch thread at teardown
    assert "evaluated" not in out and "terminate called" not in out
    log = (work / "hamgan-seed0" / "train.log").read_text()
    assert re.search(r"stopped by SIG(TERM|INT) after step \d+; checkpoint", log), log
    assert list((work / "hamgan-seed0").glob("ckpt-*.pt")) and not (work / "hamgan-seed0" / "train.lock").exists()
    (record,) = session_records(work)
    assert record["ended"] is True and record["seconds"] > 0
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] training hamgan-seed0", out, re.M), out
