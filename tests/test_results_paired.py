"""The committed paired rerun (results/fmnist32/paired, issue 24) is what its report says: HamGAN, SAGAN and no
context on seeds disjoint from the 5-seed study's and the pilot's, every run trained on paired streams, FID@5000
with standing batch-norm statistics; its metric files recompute the report's seed-aware compare through
``hamgan-eval compare --group`` (the command summary.json gives), the plateau check is the issue's criterion, the rerun
is complete (7 seeds of each model, ended on the plateau), and README, the study page and the rerun's report quote its
figures as summary.json holds them."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "fmnist32" / "paired"
MODELS = ("hamgan", "sagan", "none")
SEEDS = list(range(20, 27))
EARLIER_SEEDS = {0, 1, 2, 3, 4, 5, 10, 11, 12}  # the 5-seed study with its rerun check, and the pairing pilot
METRICS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads((RESULTS / "summary.json").read_text())


@pytest.fixture(scope="module")
def final(summary) -> dict:
    steps = summary["options"]["steps"]
    out: dict = {}
    for r in json.loads((RESULTS / "runs.json").read_text()):
        if r["step"] == steps:
            out.setdefault(r["model"], {})[r["seed"]] = r
    return out


def test_options_are_the_rerun_design(summary):
    o = summary["options"]
    assert tuple(o["models"]) == MODELS and o["steps"] >= 4000 and o["overrides"] == []  # train.paired: default
    assert all(not set(seeds) & EARLIER_SEEDS and len(seeds) >= 6 for seeds in o["models"].values())
    assert o["n"] == 5000 and o["ref_n"] == 10000 and o["bn"] == "standing" and o["fid_seed"] == 0
    assert o["pairs"] == ["hamgan-sagan", "hamgan-none"] and o["plateau_spread"] == "paired"
    assert not summary["failed_runs"] and summary["missing_evaluations"] == []


def test_every_final_row_is_a_paired_run_with_its_metric_file(summary, final):
    files = {p.stem for p in (RESULTS / "metrics").glob("*.json")}
    assert files == {f"{m}-seed{s}" for m, by_seed in final.items() for s in by_seed}
    for model, by_seed in final.items():
        for seed, r in by_seed.items():
            assert r["train_paired"] is True and r["n"] == 5000 and r["bn"] == "standing", (model, seed)
            row = json.loads((RESULTS / "metrics" / f"{model}-seed{seed}.json").read_text())
            assert (row["model"], row["train_seed"], row["step"]) == (model, seed, summary["options"]["steps"])
            assert all(row[k] == r[k] for k in METRICS)


def test_the_compare_command_recomputes_the_reported_comparison(summary, final, tmp_path, monkeypatch):
    """The report's ``hamgan-eval compare --group`` command, run on the committed metric files, gives the report's
    paired differences, intervals, minimum detectable differences and verdicts (no sampling: the files hold the
    metrics)."""
    from hamgan.evaluate import main as eval_main

    monkeypatch.chdir(REPO)
    argv = shlex.split(summary["commands"]["compare_seeds"])
    assert argv[:2] == ["hamgan-eval", "compare"] and argv.count("--group") == len(MODELS)
    assert eval_main([*argv[1:], "--drop-unpaired", "--json-out", str(tmp_path / "c.json")]) == 0
    computed = {f"{c['a']}-{c['b']}": c for c in json.loads((tmp_path / "c.json").read_text())["comparisons"]}
    assert summary["seed_compare"], "no pair has two common seeds yet"
    for pair, reported in summary["seed_compare"].items():
        a, b = pair.split("-")
        c = computed[pair]
        assert c["seeds"] == reported["seeds"] == sorted(set(final[a]) & set(final[b]))
        for metric in METRICS:
            got, want = c["metrics"][metric], reported["metrics"][metric]
            assert got["diffs"] == pytest.approx([final[a][s][metric] - final[b][s][metric] for s in c["seeds"]])
            for key in ("mean_diff", "sd_diff", "t_interval", "bootstrap_interval", "mde"):
                assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), (pair, metric, key)
            assert got["verdict"] == want["verdict"]


def test_plateau_check_is_the_change_of_common_seeds_against_the_paired_sd(summary, final):
    """Each model's change of mean FID@2000 over its last two evaluations (the seeds evaluated at both) against the
    smallest SD of a paired FID@2000 difference at the last step that the model takes part in."""
    mid = f"fid_at_{summary['options']['mid_n']}"
    rows = json.loads((RESULTS / "runs.json").read_text())
    sds = {}
    for pair in summary["options"]["pairs"]:
        a, b = pair.split("-")
        seeds = sorted(set(final[a]) & set(final[b]))
        if len(seeds) > 1:
            sds[pair] = np.std([final[a][s][mid] - final[b][s][mid] for s in seeds], ddof=1)
    for model in MODELS:
        p = summary["plateau"][model]
        mine = {pair: sd for pair, sd in sds.items() if model in pair.split("-")}
        pair = min(mine, key=mine.get)
        assert p["spread"] == pytest.approx(mine[pair]) and p["spread_from"] == f"paired SD of {pair}"
        curve = {(r["step"], r["seed"]): r[mid] for r in rows if r["model"] == model and r[mid] is not None}
        before = [curve[(p["from_step"], s)] for s in p["seeds"]]
        after = [curve[(p["to_step"], s)] for s in p["seeds"]]
        assert p["change"] == pytest.approx(np.mean(after) - np.mean(before))
        assert p["verdict"] == ("flat" if abs(p["change"]) < p["spread"] else
                                "still falling" if p["change"] < 0 else "rising")


def test_what_the_pairing_bought_is_the_variance_split_of_the_committed_rows(summary, final):
    """The report's pairing table: per pair and FID, the SD of the per-seed difference against sqrt(var A + var B)
    and the correlation of the two models over seeds, recomputed from runs.json."""
    o = summary["options"]
    mid = f"fid_at_{o['mid_n']}"
    rows = json.loads((RESULTS / "runs.json").read_text())
    values = {(r["model"], r["step"], r["seed"]): r for r in rows}
    assert summary["pairing"], "no pair has three common seeds yet"
    for pair, gains in summary["pairing"].items():
        a, b = pair.split("-")
        for key, g in gains.items():
            what, step = key.split("@")
            metric = "fid" if what == "fid" else mid
            assert what in ("fid", mid) and int(step) in (*o["eval_steps"], o["steps"])
            va = np.array([values[(a, int(step), s)][metric] for s in g["seeds"]])
            vb = np.array([values[(b, int(step), s)][metric] for s in g["seeds"]])
            assert g["sd_paired"] == pytest.approx(np.std(va - vb, ddof=1))
            assert g["sd_unpaired"] == pytest.approx(np.sqrt(np.var(va, ddof=1) + np.var(vb, ddof=1)))
            assert g["r"] == pytest.approx(np.corrcoef(va, vb)[0, 1])
        assert gains[f"fid@{o['steps']}"]["seeds"] == sorted(set(final[a]) & set(final[b]))


def test_the_rerun_is_complete_and_ended_on_the_plateau(summary):
    """7 seeds of each model, every one evaluated at step 3000 (FID@2000) and 4000 (all metrics of 5000 samples), and
    every model flat by the criterion: the reserve of 1000 more steps was not needed."""
    o = summary["options"]
    assert o["models"] == {m: SEEDS for m in MODELS} and o["steps"] == 4000 and o["eval_steps"] == [3000]
    rows = json.loads((RESULTS / "runs.json").read_text())
    assert sorted((r["model"], r["seed"], r["step"]) for r in rows) == sorted(
        (m, s, t) for m in MODELS for s in SEEDS for t in (3000, 4000))
    assert all(r[f"fid_at_{o['mid_n']}"] is not None for r in rows)
    assert all(r[k] is not None for r in rows if r["step"] == 4000 for k in METRICS)
    assert {m: p["verdict"] for m, p in summary["plateau"].items()} == {m: "flat" for m in MODELS}
    assert all(p["seeds"] == SEEDS for p in summary["plateau"].values())


def _fid_figures(summary: dict, pair: str) -> tuple[str, str, str]:
    """The pair's FID difference, 95% t interval and MDE, rounded as the pages print them."""
    f = summary["seed_compare"][pair]["metrics"]["fid"]
    low, high = f["t_interval"]
    return f"{f['mean_diff']:.2f}", f"[{low:.2f}, {high:.2f}]", f"{f['mde']:.2f}"


def test_readme_and_the_study_page_quote_the_reruns_verdict(summary):
    """README's results row and the study page's verdict carry the seed-aware compare's FID figures as printed, and
    claim no winner: every metric of both pairs is "no difference detected"."""
    verdicts = {(p, m): c["verdict"] for p, cmp in summary["seed_compare"].items() for m, c in cmp["metrics"].items()}
    assert set(verdicts) == {(p, m) for p in ("hamgan-sagan", "hamgan-none") for m in METRICS}
    assert all(v.startswith("no difference detected") for v in verdicts.values())
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| [Fashion-MNIST"))
    page = (REPO / "results" / "fmnist32" / "README.md").read_text()
    verdict_section = page[page.index("## Verdict"):page.index("## How the study got here")]
    assert "no difference detected" in row and "make study-paired" in row and "7 paired seeds" in row
    for pair in ("hamgan-sagan", "hamgan-none"):
        mean, t_ci, mde = _fid_figures(summary, pair)
        assert f"{mean}, 95% interval {t_ci}" in row or f"{mean}, {t_ci}" in row, pair
        assert mde in row, pair
        label = "HamGAN − SAGAN" if pair.endswith("sagan") else "HamGAN − no context"
        assert f"| {label} | | {mean} | {t_ci} | {mde} |" in verdict_section, pair
    for model, label in (("hamgan", "HamGAN (Ham NMF)"), ("sagan", "SAGAN"), ("none", "no context")):
        final = summary["models"][model]["final"]
        assert f"| {label} | {final['fid_mean']:.2f} ± {final['fid_std']:.2f} |" in verdict_section, model


def test_the_reports_reading_of_the_pairing_is_the_summarys(summary):
    """The rerun's README states the paired and unpaired-equivalent SDs and the correlations that summary.json holds
    (FID@5000 at the final step), and the MDEs with the earlier study's for comparison."""
    text = (RESULTS / "README.md").read_text()
    key = f"fid@{summary['options']['steps']}"
    sagan, none = summary["pairing"]["hamgan-sagan"][key], summary["pairing"]["hamgan-none"][key]
    assert f"{sagan['r']:+.2f} (HamGAN, SAGAN)" in text and f"{none['r']:+.2f} (HamGAN, no context)" in text
    assert f"paired SDs ({sagan['sd_paired']:.2f}, {none['sd_paired']:.2f})" in text
    assert f"independent runs ({sagan['sd_unpaired']:.2f}, {none['sd_unpaired']:.2f})" in text
    for pair, earlier in (("hamgan-sagan", "8.01"), ("hamgan-none", "9.10")):
        assert f"({_fid_figures(summary, pair)[2]} against {earlier})" in text
