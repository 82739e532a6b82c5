"""The committed Fashion-MNIST study (results/fmnist32, issue 12) is complete, self-consistent and is what the README
reports: 5 seeds of HamGAN / SAGAN / no context (3 of Ham CD / VQ), FID of >= 5,000 samples with standing batch-norm
statistics, paired differences recomputed here from the per-seed rows, and the README quotes them."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from hamgan.checkpoint import load_generator

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "fmnist32"
SEEDS = {"hamgan": [0, 1, 2, 3, 4], "sagan": [0, 1, 2, 3, 4], "none": [0, 1, 2, 3, 4], "ham-cd": [0, 1, 2],
         "ham-vq": [0, 1, 2]}
CONTEXT = {"hamgan": "ham", "sagan": "attention", "none": "none", "ham-cd": "ham", "ham-vq": "ham"}
STEPS = 4000


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads((RESULTS / "summary.json").read_text())


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return json.loads((RESULTS / "runs.json").read_text())


@pytest.fixture(scope="module")
def readme_section(readme) -> str:
    return readme("Reproducing the paper's claim at small scale")


def test_study_options_are_the_issues_protocol(summary):
    options = summary["options"]
    assert options["models"] == SEEDS and options["steps"] == STEPS and not summary["failed_runs"]
    assert summary["missing_evaluations"] == []  # no evaluation lost to a pruned checkpoint
    assert options["n"] >= 5000 and options["mid_n"] >= 2000 and options["ref_n"] == 10000
    assert options["bn"] == "standing" and options["fid_seed"] == 0 and options["overrides"] == []
    assert len(options["eval_steps"]) >= 3 and max(options["eval_steps"]) < STEPS


def test_rows_cover_every_run_and_step_with_the_stated_n(summary, rows):
    options = summary["options"]
    expected = {(m, s, t) for m, seeds in SEEDS.items() for s in seeds for t in [*options["eval_steps"], STEPS]}
    assert {(r["model"], r["seed"], r["step"]) for r in rows} == expected and len(rows) == len(expected)
    for r in rows:
        assert r["bn"] == "standing" and r["n"] == (options["n"] if r["step"] == STEPS else options["mid_n"])
        final = r["step"] == STEPS
        assert all((r[k] is not None) == final for k in ("kid_mean", "precision", "recall", "density", "coverage"))
    with open(RESULTS / "runs.csv", newline="") as f:
        as_csv = list(csv.DictReader(f))
    assert [(r["model"], int(r["seed"]), int(r["step"]), float(r["fid"])) for r in as_csv] == [
        (r["model"], r["seed"], r["step"], r["fid"]) for r in rows]


def test_final_table_and_curves_are_recomputed_from_the_rows(summary, rows):
    for model, seeds in SEEDS.items():
        final = summary["models"][model]["final"]
        mine = sorted((r for r in rows if r["model"] == model and r["step"] == STEPS), key=lambda r: r["seed"])
        assert final["seeds"] == seeds and final["n"] >= 5000
        assert final["fids"] == [r["fid"] for r in mine]
        assert final["fid_mean"] == pytest.approx(np.mean(final["fids"]))
        assert final["fid_std"] == pytest.approx(np.std(final["fids"], ddof=1))
        for metric in ("kid_mean", "precision", "recall", "density", "coverage"):
            assert final["metrics"][metric]["mean"] == pytest.approx(np.mean([r[metric] for r in mine]))
        curve = summary["models"][model]["steps"]
        assert sorted(map(int, curve)) == [*summary["options"]["eval_steps"], STEPS]
        for step, point in curve.items():
            at = sorted((r for r in rows if r["model"] == model and r["step"] == int(step)), key=lambda r: r["seed"])
            key = f"fid_at_{summary['options']['mid_n']}" if int(step) == STEPS else "fid"  # the curve's N throughout
            assert point["fids"] == [r[key] for r in at] and point["n"] == summary["options"]["mid_n"]


@pytest.mark.parametrize("pair", ["hamgan-sagan", "hamgan-none"])
def test_paired_differences_are_recomputed_per_seed(summary, pair):
    a, b = pair.split("-")
    fa, fb = (dict(zip(summary["models"][m]["final"]["seeds"], summary["models"][m]["final"]["fids"])) for m in (a, b))
    diffs = np.array([fa[s] - fb[s] for s in SEEDS[a]])
    paired = summary["paired"][pair]["fid"]
    assert paired["seeds"] == SEEDS[a] and paired["diffs"] == pytest.approx(diffs.tolist())
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert paired["t_interval"] == pytest.approx([diffs.mean() - half, diffs.mean() + half])
    low, high = paired["bootstrap_interval"]
    assert low <= diffs.mean() <= high


def test_readme_quotes_the_table_and_the_paired_intervals(summary, readme_section):
    assert "standing" in readme_section and "5,000" in readme_section
    for model in SEEDS:
        final = summary["models"][model]["final"]
        assert f"{final['fid_mean']:.2f} ± {final['fid_std']:.2f}" in readme_section, model
    for pair in ("hamgan-sagan", "hamgan-none"):
        low, high = summary["paired"][pair]["fid"]["t_interval"]
        assert f"[{low:.2f}, {high:.2f}]" in readme_section, pair
    for name in ("fid_vs_steps.png", "fid_vs_wallclock.png", "samples/hamgan.png", "samples/sagan.png",
                 "samples/none.png"):
        assert f"results/fmnist32/{name}" in readme_section


def test_plots_grids_and_size_of_results():
    for name in ("fid_vs_steps.png", "fid_vs_wallclock.png"):
        with Image.open(RESULTS / name) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    for model in SEEDS:
        with Image.open(RESULTS / "samples" / f"{model}.png") as im:
            assert im.size == (10 * 33 + 1, 10 * 33 + 1)  # one row per class, 10 samples of 32x32, padding 1
    size = sum(p.stat().st_size for p in (REPO / "results").rglob("*") if p.is_file())
    assert size < 20 * 2**20


@pytest.mark.parametrize("model", list(SEEDS))
def test_committed_checkpoints_load_at_the_final_step(model):
    paths = sorted((RESULTS / "checkpoints").glob(f"{model}-seed*.pt"))
    assert [p.name for p in paths] == [f"{model}-seed0.pt"]  # one per model
    assert paths[0].stat().st_size < 1_500_000
    G, cfg, step = load_generator(paths[0])
    assert step == STEPS and cfg.train.seed == 0 and cfg.model.g.context == CONTEXT[model]


def test_cost_and_compute_are_stated(summary):
    cost = json.loads((RESULTS / "context_cost.json").read_text())
    by_config = {(r["config"], r["net"]): r for r in cost["rows"]}
    for net in ("G", "D"):
        row = by_config[("configs/fmnist32_hamgan.yaml", net)]
        assert row["params"] == summary["cost"]["hamgan"][f"context_params_{net.lower()}"]
        assert row["context_macs_per_image"] == summary["cost"]["hamgan"][f"context_macs_{net.lower()}"]
        assert ("configs/imagenet128_hamgan_baby.yaml", net) in by_config
        assert ("configs/imagenet128_sagan.yaml", net) in by_config
    compute = summary["compute"]
    assert compute["runs"] == sum(map(len, SEEDS.values())) and compute["train_s"] > 0 and compute["eval_s"] > 0
    assert compute["driver_wall_s"] > 0


def test_rerun_check_landed_within_the_spread(summary):
    rerun = json.loads((RESULTS / "rerun" / "summary.json").read_text())
    assert rerun["options"]["n"] == summary["options"]["n"] and rerun["options"]["steps"] == STEPS
    for model in ("hamgan", "sagan"):
        final = summary["models"][model]["final"]
        low, high = final["fid_mean"] - 2 * final["fid_std"], final["fid_mean"] + 2 * final["fid_std"]
        new = rerun["models"][model]["final"]
        assert not set(new["seeds"]) & set(final["seeds"])  # a new seed
        assert all(low <= fid <= high for fid in new["fids"]), (model, new["fids"], low, high)
