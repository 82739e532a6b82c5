"""The committed paired rerun (results/fmnist32/paired, issue 24) is what its report says: HamGAN, SAGAN and no
context on seeds disjoint from the 5-seed study's and the pilot's, every run trained on paired streams, FID@5000
with standing batch-norm statistics; its metric files recompute the report's seed-aware compare through
``hamgan-eval compare --group`` (the command summary.json gives), and the plateau check is the issue's criterion."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "fmnist32" / "paired"
MODELS = ("hamgan", "sagan", "none")
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
