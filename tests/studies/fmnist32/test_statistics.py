"""studies.fmnist32.statistics: paired differences with t and bootstrap intervals, verdicts, plateau, improving,
what pairing bought."""

import math

import numpy as np

import pytest

from studies.fmnist32.statistics import (ONE_SEED, improving, paired_difference, paired_differences, pairing_gain,
                                       plateau, plateau_paired_sd, verdict)

T_975_2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)


@pytest.mark.parametrize("interval, metric, expected", [
    ((-3.0, -1.0), "fid", "beat"), ((1.0, 3.0), "fid", "lost"), ((-1.0, 1.0), "fid", "inconclusive"),
    ((-3.0, -1.0), "kid_mean", "beat"), ((0.01, 0.05), "precision", "beat"), ((-0.05, -0.01), "recall", "lost"),
    (None, "fid", ONE_SEED),
])
def test_verdicts_follow_the_direction_of_each_metric(interval, metric, expected):
    assert verdict(interval, metric) == expected


def test_paired_difference_uses_the_common_seeds_only():
    a = {0: 70.0, 1: 72.0, 2: 71.0, 3: 99.0}
    b = {0: 75.0, 1: 76.0, 2: 77.0}
    d = paired_difference(a, b, "fid")
    assert d["seeds"] == [0, 1, 2] and d["diffs"] == [-5.0, -4.0, -6.0] and d["n"] == 3
    assert d["mean"] == pytest.approx(-5.0) and d["sd"] == pytest.approx(1.0)
    half = T_975_2 / math.sqrt(3)
    assert d["t_interval"] == pytest.approx([-5 - half, -5 + half])
    assert d["bootstrap_interval"][0] <= -5 <= d["bootstrap_interval"][1]
    assert d["verdict"] == "beat" and d["better"] == "lower"
    assert paired_difference({0: 1.0}, {1: 2.0}, "fid") is None


def test_one_common_seed_has_no_interval():
    d = paired_difference({0: 70.0}, {0: 75.0}, "fid")
    assert d["n"] == 1 and d["mean"] == -5.0 and d["t_interval"] is None and d["bootstrap_interval"] is None
    assert d["verdict"] == ONE_SEED


def test_paired_differences_of_final_rows_per_pair_and_metric():
    final = {"hamgan": {s: {"fid": 70.0 + s, "precision": 0.5 + s / 100, "kid_mean": None} for s in range(3)},
             "sagan": {s: {"fid": 80.0 + 2 * s, "precision": 0.5} for s in range(3)}}
    out = paired_differences(final, [("hamgan", "sagan"), ("hamgan", "none")])
    assert set(out) == {"hamgan-sagan", "hamgan-none"} and out["hamgan-none"] == {}
    assert set(out["hamgan-sagan"]) == {"fid", "precision"}  # KID missing: left out
    assert out["hamgan-sagan"]["fid"]["diffs"] == [-10.0, -11.0, -12.0]
    assert out["hamgan-sagan"]["fid"]["verdict"] == "beat"
    assert out["hamgan-sagan"]["precision"]["mean"] == pytest.approx(0.01)


def test_plateau_compares_the_last_change_with_the_seed_spread():
    falling = plateau({1000: {0: 120.0}, 2000: {0: 100.0}, 3000: {0: 90.0}}, spread=2.5)
    assert falling["verdict"] == "still falling" and falling["change"] == pytest.approx(-10.0)
    assert (falling["from_step"], falling["to_step"], falling["spread"]) == (2000, 3000, 2.5)
    assert plateau({1000: {0: 80.0}, 2000: {0: 79.0}}, spread=2.5)["verdict"] == "flat"
    assert plateau({1000: {0: 80.0}, 2000: {0: 85.0}}, spread=2.5)["verdict"] == "rising"
    assert plateau({1000: {0: 80.0}, 2000: {0: 79.0}}, spread=None)["verdict"] == "no spread"
    # several seeds: the sample std over seeds at the last step is the spread (the given value is ignored)
    several = plateau({1000: {0: 80.0, 1: 84.0}, 2000: {0: 77.0, 1: 81.0}}, spread=100.0)
    assert several["spread"] == pytest.approx(math.sqrt(8)) and several["verdict"] == "still falling"
    assert plateau({1000: {0: 80.0}}, spread=1.0) is None


def test_plateau_compares_the_seeds_evaluated_at_both_steps():
    """A seed evaluated at the second-last step but not yet at the last (a study in progress) must not move the
    mean: seed 2's poor FID at 3000 would otherwise show a fall of 10 that no run made."""
    curve = {3000: {0: 50.0, 1: 52.0, 2: 80.0}, 4000: {0: 49.0, 1: 52.0}}
    p = plateau(curve, spread=None, paired_sd=2.0)
    assert p["seeds"] == [0, 1] and p["change"] == pytest.approx(-0.5) and p["verdict"] == "flat"
    assert (p["fid_from"], p["fid_to"]) == (pytest.approx(51.0), pytest.approx(50.5))
    assert plateau({3000: {0: 50.0}, 4000: {1: 49.0}}, spread=1.0) is None  # no seed at both steps


def test_improving_counts_runs_whose_fid_fell():
    assert improving({"a": 50.0, "b": 40.0, "c": 45.0}, {"a": 48.0, "b": 41.0, "d": 1.0}) == ["a"]


def test_plateau_against_a_paired_sd_uses_it_over_the_seed_std():
    curve = {3000: {0: 80.0, 1: 84.0}, 4000: {0: 79.0, 1: 83.0}}  # mean change -1.0; seed std sqrt(8) = 2.83
    assert plateau(curve, spread=None)["verdict"] == "flat"
    paired = plateau(curve, spread=None, paired_sd=0.5)
    assert paired["verdict"] == "still falling" and paired["spread"] == 0.5 and paired["spread_from"] == "paired SD"
    assert plateau(curve, spread=None, paired_sd=1.5)["verdict"] == "flat"
    named = plateau(curve, spread=None, paired_sd=0.5, paired_name="hamgan-sagan")
    assert named["spread_from"] == "paired SD of hamgan-sagan" and named["verdict"] == paired["verdict"]


def test_fid_of_the_first_n_samples_counts_lower_as_better():
    d = paired_difference({0: 40.0, 1: 41.0, 2: 43.0}, {0: 50.0, 1: 52.0, 2: 53.0}, "fid_at_2000")
    assert d["better"] == "lower" and d["verdict"] == "beat" and d["metric"] == "fid_at_2000"
    final = {"a": {s: {"fid_at_2000": 40.0 + s} for s in range(3)}, "b": {s: {"fid_at_2000": 50.0} for s in range(3)}}
    assert paired_differences(final, [("a", "b")], ("fid_at_2000",))["a-b"]["fid_at_2000"]["diffs"] == [-10.0, -9.0, -8.0]


def test_plateau_paired_sd_is_the_smallest_sd_of_the_models_pairs():
    a = {0: 10.0, 1: 12.0, 2: 11.0}
    sagan = {0: 9.0, 1: 12.5, 2: 10.0}   # diffs 1, -0.5, 1: sd 0.866
    none = {0: 5.0, 1: 7.0, 2: 6.2}      # diffs 5, 5, 4.8: sd 0.115
    diffs = {("ham-cd", "sagan"): paired_difference(a, sagan, "fid"), ("ham-cd", "none"): paired_difference(a, none, "fid"),
             ("sagan", "x"): None}
    sd, name = plateau_paired_sd("ham-cd", diffs)
    assert name == "ham-cd-none" and sd == pytest.approx(np.std([5.0, 5.0, 4.8], ddof=1))
    assert plateau_paired_sd("sagan", diffs) == (pytest.approx(np.std([1.0, -0.5, 1.0], ddof=1)), "ham-cd-sagan")
    assert plateau_paired_sd("none", {("ham-cd", "none"): paired_difference({0: 1.0}, {0: 2.0}, "fid")}) is None


def test_pairing_gain_splits_the_variance_of_a_difference_into_spreads_and_correlation():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 3, 8)                      # what the seed fixes for both models
    a = {s: 40 + x + e for s, (x, e) in enumerate(zip(shared, rng.normal(0, 1, 8)))}
    b = {s: 42 + x + e for s, (x, e) in enumerate(zip(shared, rng.normal(0, 1, 8)))}
    b[99] = 1e6                                       # a seed only B has is left out
    g = pairing_gain(a, b)
    va, vb = np.array(list(a.values())), np.array([b[s] for s in a])
    assert g["seeds"] == list(range(8)) and g["n"] == 8
    assert g["sd_paired"] == pytest.approx(np.std(va - vb, ddof=1))
    assert g["r"] == pytest.approx(np.corrcoef(va, vb)[0, 1]) and g["r"] > 0.5
    # Var(A - B) = Var A + Var B - 2 Cov(A, B): the identity the unpaired SD rests on
    cov = np.cov(va, vb)[0, 1]
    assert g["sd_unpaired"] ** 2 - 2 * cov == pytest.approx(g["sd_paired"] ** 2)
    assert g["variance_ratio"] == pytest.approx(g["sd_unpaired"] ** 2 / g["sd_paired"] ** 2) and g["variance_ratio"] > 2
    independent = pairing_gain({s: v for s, v in enumerate(rng.normal(0, 1, 50))},
                               {s: v for s, v in enumerate(rng.normal(0, 1, 50))})
    assert abs(independent["r"]) < 0.4 and 0.5 < independent["variance_ratio"] < 2
    assert pairing_gain({0: 1.0, 1: 2.0}, {0: 1.0, 1: 3.0}) is None   # two seeds: no SD worth reporting
    flat = pairing_gain({0: 5.0, 1: 5.0, 2: 5.0}, {0: 1.0, 1: 3.0, 2: 2.0})  # a constant model has no correlation
    assert flat["r"] is None and flat["sd_paired"] == pytest.approx(1.0) and flat["variance_ratio"] == pytest.approx(1.0)
