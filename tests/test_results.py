"""The committed Fashion-MNIST study (results/fmnist32, issue 12) is complete, self-consistent and is what its report
says: 5 seeds of HamGAN / SAGAN / no context (3 of Ham CD / VQ), FID of >= 5,000 samples with standing batch-norm
statistics, paired differences recomputed here from the per-seed rows; and every figure of its report
(results/fmnist32/study-5seeds.md, corrected by issue 23) is recomputed here from those rows, rounded as printed."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from hamgan.checkpoint import load_generator
from hamgan.metrics.intervals import min_detectable_difference, min_detectable_difference_approx
from studies.fmnist32.statistics import improving, paired_difference

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
def report() -> str:
    return (RESULTS / "study-5seeds.md").read_text()


@pytest.fixture(scope="module")
def rerun_rows() -> list[dict]:
    return json.loads((RESULTS / "rerun" / "runs.json").read_text())


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


def final_values(rows: list[dict], model: str, metric: str) -> dict[int, float]:
    """``{seed: metric}`` of one model's rows at the final step."""
    return {r["seed"]: r[metric] for r in rows if r["model"] == model and r["step"] == STEPS}


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of every Markdown table row of ``text`` whose first cell starts with ``first_cell``."""
    cells = (line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| "))
    return [c for c in cells if c[0].startswith(first_cell)]


def printed(value: float, as_printed: str) -> str:
    """``value`` rounded to the decimals of ``as_printed`` and written the same way ('+' kept, '−' read as '-')."""
    as_printed = as_printed.replace("−", "-")
    decimals = len(as_printed.split(".")[1]) if "." in as_printed else 0
    return f"{value:{'+' if as_printed.startswith('+') else ''}.{decimals}f}"


def interval(low: float, high: float, as_printed: str) -> str:
    low_text, high_text = as_printed.strip("[]").split(", ")
    return f"[{printed(low, low_text)}, {printed(high, high_text)}]"


def test_report_says_inconclusive_never_matched(report):
    assert "## Verdict: inconclusive" in report
    assert "| matched |" not in report and "**matched**" not in report


def test_verdict_table_is_recomputed_from_the_rows(report, rows, rerun_rows):
    """Issue 23: each FID comparison (5 seeds, and with the rerun's seed 5 pooled) with its t interval, the minimum
    detectable difference at 80% power (exact noncentral t, and the shortcut) and the verdict."""
    table = table_rows(report, "HamGAN − ")
    assert len(table) == 3
    for name, seeds, mean, t_ci, mde, shortcut, word in table:
        b = "sagan" if "SAGAN" in name else "none"
        a_fid, b_fid = final_values(rows, "hamgan", "fid"), final_values(rows, b, "fid")
        if "rerun" in name:  # the sensitivity line: the rerun's new seed pooled with seeds 0-4
            a_fid |= final_values(rerun_rows, "hamgan", "fid")
            b_fid |= final_values(rerun_rows, b, "fid")
        d = paired_difference(a_fid, b_fid, "fid")
        assert int(seeds) == d["n"] == (6 if "rerun" in name else 5), name
        assert printed(d["mean"], mean) == mean.replace("−", "-"), name
        assert interval(*d["t_interval"], t_ci) == t_ci, name
        assert printed(min_detectable_difference(d["sd"], d["n"]), mde) == mde, name
        assert printed(min_detectable_difference_approx(d["sd"], d["n"]), shortcut) == shortcut, name
        assert word == d["verdict"] == "inconclusive", name


def test_paired_table_covers_every_metric_and_is_recomputed(report, rows):
    """Every paired row (FID, KID, precision, recall, density, coverage against SAGAN and no context): mean, t and
    bootstrap intervals and verdict from the per-seed rows."""
    table = [c for c in table_rows(report, "hamgan-") if c[0] in ("hamgan-sagan", "hamgan-none")]
    assert {(c[0], c[1].split()[0]) for c in table} == {
        (pair, metric) for pair in ("hamgan-sagan", "hamgan-none")
        for metric in ("fid", "kid_mean", "precision", "recall", "density", "coverage")}
    for pair, metric_text, n, mean, t_ci, boot, word in table:
        a, b = pair.split("-")
        metric = metric_text.split()[0]
        d = paired_difference(final_values(rows, a, metric), final_values(rows, b, metric), metric)
        assert (int(n), printed(d["mean"], mean), word) == (d["n"], mean, d["verdict"]), (pair, metric)
        assert interval(*d["t_interval"], t_ci) == t_ci, (pair, metric)
        assert interval(*d["bootstrap_interval"], boot) == boot, (pair, metric)


def test_every_interval_of_the_verdict_is_a_recomputed_one(report, rows, rerun_rows):
    """The verdict's prose quotes intervals (density, precision, FID, the pooled seed); each is one of the paired
    t or bootstrap intervals, rounded as printed."""
    verdict = report[report.index("## Verdict"):report.index("## Protocol")]
    known = []
    for b in ("sagan", "none"):
        for metric in ("fid", "kid_mean", "precision", "recall", "density", "coverage"):
            d = paired_difference(final_values(rows, "hamgan", metric), final_values(rows, b, metric), metric)
            known += [d["t_interval"], d["bootstrap_interval"]]
    pooled = paired_difference(final_values(rows, "hamgan", "fid") | final_values(rerun_rows, "hamgan", "fid"),
                               final_values(rows, "sagan", "fid") | final_values(rerun_rows, "sagan", "fid"), "fid")
    known.append(pooled["t_interval"])
    quoted = re.findall(r"\[[−\-]?\d+\.\d+, [−\-]?\d+\.\d+\]", verdict)
    assert len(quoted) >= 8
    for text in quoted:
        assert any(interval(*k, text) == text.replace("−", "-") for k in known), text


def test_verdict_quotes_the_paired_sds_and_the_density_difference(report, summary, rows):
    verdict = report[report.index("## Verdict"):report.index("## Protocol")]
    for pair in ("hamgan-sagan", "hamgan-none"):
        assert f"{summary['paired'][pair]['fid']['sd']:.2f}" in verdict, pair
    density = paired_difference(final_values(rows, "hamgan", "density"), final_values(rows, "none", "density"),
                                "density")
    assert f"**lower density**: {density['mean']:.3f}" in verdict and density["verdict"] == "lost"


def test_non_convergence_count_is_recomputed(report, rows):
    """The limit 'N of the 21 runs were still improving': FID@2000 at the final step below FID@2000 at the last
    intermediate step, per run; and the runs that were not are the ones the report names."""
    last = max(json.loads((RESULTS / "summary.json").read_text())["options"]["eval_steps"])
    before = {(r["model"], r["seed"]): r["fid"] for r in rows if r["step"] == last}
    after = {(r["model"], r["seed"]): r["fid_at_2000"] for r in rows if r["step"] == STEPS}
    still = improving(before, after)
    match = re.search(r"(\d+) of the (\d+) runs had a lower FID@2000 at step 4000 than at step 3000", report)
    assert match and last == 3000 and (int(match[1]), int(match[2])) == (len(still), len(before))
    assert sorted(set(before) - set(still)) == [("hamgan", 0), ("none", 0), ("sagan", 0)]  # as the report names them


def test_the_same_seed_shares_no_initial_weight(report):
    """The pairing the report describes: built as the study's trainer built them (``seed_everything(seed)``, then G
    and D from the global RNG, without the per-layer streams that paired runs use), the three study models share no
    random weight tensor."""
    import torch

    from hamgan.config import load_config
    from hamgan.nn.from_config import discriminator_from_config, generator_from_config
    from hamgan.train.state import seed_everything

    weights = {}
    for model in ("hamgan", "sagan", "none"):
        cfg = load_config(REPO / "configs" / f"fmnist32_{model}.yaml", [])
        seed_everything(0)
        nets = {"G": generator_from_config(cfg.model), "D": discriminator_from_config(cfg.model)}
        weights[model] = {f"{n}.{k}": p.detach() for n, net in nets.items() for k, p in net.named_parameters()
                          if p.numel() > 1 and p.std() > 0}  # the randomly initialised tensors
    ham = weights["hamgan"]
    for other in ("sagan", "none"):
        shared = [k for k, v in weights[other].items()
                  if k in ham and ham[k].shape == v.shape and torch.equal(ham[k], v)]
        assert shared == [], other
    assert "shares only the data order" in report


def test_the_pilot_is_the_study_s_seed_0(report, rows):
    """The seed-0 overlap the report states: the pilot's runs have seed 0 and the same FID@2000 as the study's seed
    0 at every intermediate step (the same checkpoints evaluated twice; 1e-6 relative covers the float32 feature
    sums of two evaluations with other thread counts)."""
    pilot = json.loads((RESULTS / "pilot" / "runs.json").read_text())
    assert {r["seed"] for r in pilot} == {0}
    study = {(r["model"], r["step"]): r["fid"] for r in rows if r["seed"] == 0}
    checked = [(r["model"], r["step"]) for r in pilot if r["step"] < STEPS and (r["model"], r["step"]) in study]
    assert len(checked) == 9
    for r in pilot:
        if (r["model"], r["step"]) in checked:
            assert r["fid"] == pytest.approx(study[(r["model"], r["step"])], rel=1e-6), r
    assert "Seed 0 was used twice" in report


def test_report_quotes_the_final_table_and_shows_the_figures(summary, report):
    assert "standing" in report and "5,000" in report
    for model in SEEDS:
        final = summary["models"][model]["final"]
        assert f"{final['fid_mean']:.2f} ± {final['fid_std']:.2f}" in report, model
    for name in ("fid_vs_steps.png", "fid_vs_wallclock.png", "samples/hamgan.png", "samples/sagan.png",
                 "samples/none.png"):
        assert f"]({name})" in report


def test_study_page_keeps_the_5seed_verdict_as_printed(report):
    """The study page's record of the 5-seed study (its row in "How the study got here") carries the verdict
    table's figures as the report prints them; README's row is the paired rerun's (tests/test_results_paired.py)."""
    page = (RESULTS / "README.md").read_text().splitlines()
    row = next(line for line in page if line.startswith("| 5-seed study"))
    assert "inconclusive" in row and "matched" not in row and "[study-5seeds.md](study-5seeds.md)" in row
    for _, _, mean, t_ci, mde, _, _ in table_rows(report, "HamGAN − ")[:2]:
        assert f"{mean}, 95% t interval {t_ci}" in row or f"{mean}, {t_ci}" in row
        assert mde in row
    density = next(c for c in table_rows(report, "hamgan-none") if c[1].startswith("density"))
    assert f"{density[3]}, {density[4]}" in row


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
