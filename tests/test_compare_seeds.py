"""hamgan.metrics.paired and ``hamgan-eval compare --group``: paired statistics checked against scipy, pairing by
seed, verdict wording, and the command on two groups of run folders with a stubbed metric function."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from hamgan import evaluate
from hamgan.checkpoint import save_checkpoint
from hamgan.config import from_dict, to_dict
from hamgan.metrics import comparison
from hamgan.metrics.paired import PairingError, compare_groups, compare_metric, pair_by_seed, verdict

# a constructed set: 6 seeds, A's FID about 2 below B's with a per-seed spread of about 1
A = [41.0, 43.5, 40.2, 44.1, 42.3, 39.8]
B = [43.1, 44.9, 42.8, 45.0, 44.6, 41.2]


def test_paired_statistics_match_scipy():
    r = compare_metric(A, B, "fid", ("ham", "sagan"))
    diffs = np.subtract(A, B)
    n = len(diffs)
    assert r["n"] == n and r["diffs"] == pytest.approx(diffs.tolist(), abs=1e-12)
    assert r["mean_diff"] == pytest.approx(diffs.mean(), rel=1e-12)
    assert r["sd_diff"] == pytest.approx(diffs.std(ddof=1), rel=1e-12)
    assert r["a"]["mean"] == pytest.approx(np.mean(A)) and r["a"]["sd"] == pytest.approx(np.std(A, ddof=1))
    assert r["b"]["mean"] == pytest.approx(np.mean(B)) and r["b"]["sd"] == pytest.approx(np.std(B, ddof=1))
    # the t interval is scipy's interval of the mean of the differences, and agrees with the paired t-test
    low, high = stats.t.interval(0.95, n - 1, loc=diffs.mean(), scale=stats.sem(diffs))
    assert r["t_interval"] == pytest.approx([low, high], rel=1e-10)
    test = stats.ttest_rel(A, B)
    assert (test.pvalue < 0.05) == (r["t_interval"][1] < 0 or r["t_interval"][0] > 0)
    ci = test.confidence_interval(0.95)
    assert r["t_interval"] == pytest.approx([ci.low, ci.high], rel=1e-10)
    # MDE: at that true difference a two-sided paired t-test at alpha 0.05 rejects with probability 0.8 (noncentral
    # t with noncentrality mde * sqrt(n) / sd, computed here independently of the module)
    critical = stats.t.ppf(0.975, n - 1)
    nc = r["mde"] * math.sqrt(n) / r["sd_diff"]
    power = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-3)
    # larger than the normal approximation (z_0.975 + z_0.8) sd / sqrt(n), which ignores the t's heavier tails
    assert r["mde"] > (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * r["sd_diff"] / math.sqrt(n)
    # bootstrap: 10000 percentile resamples of the differences (numpy generator, seed 0), around the mean
    boot_low, boot_high = r["bootstrap_interval"]
    assert diffs.min() <= boot_low < diffs.mean() < boot_high <= diffs.max()
    rng = np.random.default_rng(0)
    means = diffs[rng.integers(0, n, size=(10_000, n))].mean(axis=1)
    assert r["bootstrap_interval"] == pytest.approx(np.percentile(means, [2.5, 97.5]).tolist(), rel=1e-12)
    assert compare_metric(A, B, "fid")["bootstrap_interval"] == r["bootstrap_interval"]  # seeded: repeatable


def test_verdict_wording_for_the_three_cases():
    # FID: lower is better; A - B < 0 throughout -> A better
    r = compare_metric(A, B, "fid", ("ham", "sagan"))
    assert r["t_interval"][1] < 0 and r["verdict"] == "ham better"
    # precision: higher is better; A - B < 0 throughout -> B better
    assert compare_metric([0.6, 0.62, 0.58], [0.7, 0.71, 0.69], "precision", ("ham", "sagan"))["verdict"] \
        == "sagan better"
    # an interval around 0: no claim, and the size that would have gone unseen
    noisy = compare_metric([40.0, 44.0, 41.0, 45.0], [42.0, 42.5, 43.0, 42.0], "fid", ("ham", "sagan"))
    low, high = noisy["t_interval"]
    assert low < 0 < high
    assert noisy["verdict"] == f"no difference detected (smaller than {noisy['mde']:.3g} would go unseen)"
    assert verdict((-1.0, 2.0), "kid_mean", 3.14159) == "no difference detected (smaller than 3.14 would go unseen)"
    assert verdict((0.0, 0.0), "fid", 0.0) == "no difference detected (equal in every pair)"
    assert verdict((0.5, 2.0), "coverage", 1.0, ("x", "y")) == "x better"
    assert verdict((0.5, 2.0), "kid_mean", 1.0, ("x", "y")) == "y better"


def test_pairing_by_seed_with_a_missing_seed():
    a = {0: {"fid": 40.0}, 1: {"fid": 41.0}, 2: {"fid": 42.0}, 5: {"fid": 39.0}}
    b = {0: {"fid": 41.0}, 1: {"fid": 43.0}, 2: {"fid": 42.5}, 7: {"fid": 44.0}}
    with pytest.raises(PairingError, match=r"ham has seed\(s\) \[5\].*sagan has seed\(s\) \[7\].*--drop-unpaired"):
        pair_by_seed(a, b, ("ham", "sagan"))
    seeds, dropped = pair_by_seed(a, b, ("ham", "sagan"), drop_unpaired=True)
    assert seeds == [0, 1, 2] and dropped == {"ham": [5], "sagan": [7]}
    c = compare_groups(a, b, ("ham", "sagan"), metrics=("fid", "recall"), drop_unpaired=True)
    assert c["seeds"] == [0, 1, 2] and list(c["metrics"]) == ["fid"]  # recall is in no row: left out
    assert c["metrics"]["fid"]["diffs"] == [-1.0, -2.0, -0.5]
    with pytest.raises(PairingError, match="share 1 seed"):
        pair_by_seed({0: 1, 1: 2}, {1: 3, 2: 4}, drop_unpaired=True)


def write_runs(root: Path, prefix: str, seeds: list[int]) -> None:
    """Run folders ``root/<prefix>-s<seed>/ckpt-000000010.pt`` whose stored config has ``train.seed`` = seed (no
    weights: the metric function is stubbed)."""
    for seed in seeds:
        cfg = from_dict({"train": {"seed": seed}})
        save_checkpoint({"config": to_dict(cfg), "step": 10}, root / f"{prefix}-s{seed}" / "ckpt-000000010.pt")


FID = {("ham", 0): 40.0, ("ham", 1): 42.0, ("ham", 2): 41.0, ("sa", 0): 43.0, ("sa", 1): 44.5, ("sa", 2): 43.5}


def stub_metrics(monkeypatch) -> list[str]:
    """compare's reference / Inception set-up and per-run metrics replaced by a table keyed by (model, seed)."""
    computed: list[str] = []

    def run_metrics(path, options, metric_options, ref, inception):
        model, seed = Path(path).name.split("-s")
        computed.append(Path(path).name)
        fid = FID[model, int(seed)]
        return {"fid": fid, "kid_mean": fid / 1000, "precision": 0.5, "recall": 0.4 + fid / 1000,
                "density": 1.0 - fid / 100, "coverage": 0.5 + int(seed) / 100, "train_paired": model == "ham"}

    monkeypatch.setattr(comparison, "compare_reference",
                        lambda ref, options, ref_n=None: (SimpleNamespace(source="ref", n=0), None))
    monkeypatch.setattr(comparison, "run_metrics", run_metrics)
    return computed


def test_compare_groups_cli_table_and_json(tmp_path, monkeypatch, capsys):
    computed = stub_metrics(monkeypatch)
    write_runs(tmp_path, "ham", [0, 1, 2])
    write_runs(tmp_path, "sa", [2, 1, 0])
    groups = ["--group", f"ham={tmp_path}/ham-s*", "--group", f"sagan={tmp_path}/sa-s*"]
    out = tmp_path / "c.json"
    assert evaluate.main(["compare", *groups, "--ref", "ref.npz", "--json-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ham vs sagan: seeds [0, 1, 2]" in text
    assert "| metric | better | ham mean ± SD | sagan mean ± SD | ham − sagan (n) | 95% t interval |" in text
    assert "| fid | lower | 41 ± 1 | 43.67 ± 0.7638 | -2.667 (3) |" in text and "| ham better |" in text
    assert "percentile bootstrap of 10000 resamples, seed 0" in text
    assert "note: 3 run(s) trained with train.paired=false" in text  # the sagan runs of the stub
    precision_row = next(line for line in text.splitlines() if line.startswith("| precision |"))
    assert precision_row.endswith("| 0 | no difference detected (equal in every pair) |")  # sd 0, mean 0
    result = json.loads(out.read_text())
    fid = result["comparisons"][0]["metrics"]["fid"]
    assert fid["diffs"] == [-3.0, -2.5, -2.5]  # paired by train.seed, not by folder order
    assert set(result["comparisons"][0]["metrics"]) == {"fid", "kid_mean", "precision", "recall", "density",
                                                        "coverage"}
    assert [r["train_seed"] for r in result["groups"]["sagan"]] == [0, 1, 2]
    assert result["power"] == 0.8 and result["bootstrap"]["resamples"] == 10_000
    assert sorted(computed) == ["ham-s0", "ham-s1", "ham-s2", "sa-s0", "sa-s1", "sa-s2"]

    # --json prints the same object; a group given as metric JSON files needs no --ref and no sampling
    (tmp_path / "rows").mkdir()
    for row in result["groups"]["sagan"]:
        (tmp_path / "rows" / f"sa-{row['train_seed']}.json").write_text(json.dumps([row]))
    computed.clear()
    assert evaluate.main(["compare", "--group", f"ham={tmp_path}/ham-s*", "--group",
                          f"sagan={tmp_path}/rows/*.json", "--ref", "ref.npz", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["comparisons"] == result["comparisons"] and sorted(computed) == ["ham-s0", "ham-s1", "ham-s2"]
    (tmp_path / "rows" / "ham.json").write_text(json.dumps(result["groups"]["ham"]))  # one file, a list of rows
    assert evaluate.main(["compare", "--group", f"ham={tmp_path}/rows/ham.json", "--group",
                          f"sagan={tmp_path}/rows/sa-*.json", "--json"]) == 0  # no --ref needed
    assert json.loads(capsys.readouterr().out)["comparisons"] == result["comparisons"]


def test_compare_groups_cli_errors(tmp_path, monkeypatch, capsys):
    computed = stub_metrics(monkeypatch)
    write_runs(tmp_path, "ham", [0, 1, 2, 3])
    write_runs(tmp_path, "sa", [0, 1, 2])
    groups = ["--group", f"ham={tmp_path}/ham-s*", "--group", f"sagan={tmp_path}/sa-s*"]
    # a missing seed fails before any metric is computed ...
    assert evaluate.main(["compare", *groups, "--ref", "ref.npz"]) == 2
    assert "ham has seed(s) [3] that the other lacks" in capsys.readouterr().err and not computed
    # ... or is dropped and reported, and its run never sampled
    assert evaluate.main(["compare", *groups, "--ref", "ref.npz", "--drop-unpaired", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["comparisons"][0]
    assert c["seeds"] == [0, 1, 2] and c["dropped"] == {"ham": [3]} and "ham-s3" not in computed
    for argv, message in [
        (["--group", f"ham={tmp_path}/ham-s*"], "two or more groups"),
        (["--group", f"ham={tmp_path}/ham-s*", "--group", f"x={tmp_path}/nothing*"], "matches no run folder"),
        (["--group", "ham"], "NAME=GLOB"),
        ([], "CHECKPOINTS (run folders or checkpoint files) or --group"),
    ]:
        assert evaluate.main(["compare", *argv, "--ref", "ref.npz"]) == 2
        assert message in capsys.readouterr().err
    write_runs(tmp_path / "twice", "ham", [1])
    assert evaluate.main(["compare", *groups, "--group", f"ham={tmp_path}/twice/ham-s*", "--ref", "ref.npz"]) == 2
    assert "group ham: train.seed 1 twice" in capsys.readouterr().err
