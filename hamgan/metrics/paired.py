"""Paired comparison of two models over seeds: what ``hamgan-eval compare --group`` reports.

Runs of model A and model B with the same ``train.seed`` are paired (with ``train.paired`` they share every random
number but the context block's, :mod:`hamgan.seeds`). For each metric, over the n paired seeds:

- per model: mean ± sample SD (ddof 1) of the runs;
- the paired difference A − B: its mean, the SD of the n per-seed differences, a 95% Student-t interval
  (mean ± t_{0.975, n−1} · sd / sqrt(n)) and a 95% percentile bootstrap interval (:data:`BOOTSTRAP_RESAMPLES`
  resamples of the n differences with replacement, numpy generator seeded with :data:`BOOTSTRAP_SEED`);
- the minimum detectable difference (MDE): the smallest true mean difference a two-sided paired t-test at level 0.05
  on these n pairs detects with 80% power, from the exact noncentral t distribution (``scipy.stats.nct``,
  noncentrality delta · sqrt(n) / sd, solved for delta), with the observed sd standing in for the true one;
- a verdict from the t interval that does not overclaim: "A better" / "B better" when the interval excludes 0 (for
  FID and KID lower is better, for precision, recall, density and coverage higher), else "no difference detected
  (smaller than X would go unseen)" with X the MDE: an interval that contains 0 is not evidence of equality
  ("no difference detected (equal in every pair)" when every paired difference is 0).

The interval, bootstrap and power arithmetic is :mod:`hamgan.metrics.intervals` (shared with the Fashion-MNIST study).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hamgan.metrics.intervals import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, POWER, bootstrap_interval,
                                      mean_std, min_detectable_difference, t_interval)

# metric key of a compare row -> lower is better
LOWER_IS_BETTER: dict[str, bool] = {"fid": True, "kid_mean": True, "precision": False, "recall": False,
                                    "density": False, "coverage": False}
PAIRED_METRICS: tuple[str, ...] = tuple(LOWER_IS_BETTER)
MDE_METHOD = "noncentral t (scipy.stats.nct), two-sided paired t-test"


class PairingError(ValueError):
    """The groups cannot be paired by seed (a seed missing from a group, or given twice)."""


def pair_by_seed(a: dict[int, Any], b: dict[int, Any], names: tuple[str, str] = ("A", "B"),
                 drop_unpaired: bool = False) -> tuple[list[int], dict[str, list[int]]]:
    """The seeds both ``{seed: run}`` maps hold, sorted, and the seeds each side holds alone.

    A seed held by one side only is an error naming it (a paired comparison of unequal sets would silently change
    what is compared) unless ``drop_unpaired``: then it is left out and reported in the second value.
    """
    common = sorted(set(a) & set(b))
    alone = {names[0]: sorted(set(a) - set(b)), names[1]: sorted(set(b) - set(a))}
    alone = {k: v for k, v in alone.items() if v}
    if alone and not drop_unpaired:
        detail = "; ".join(f"{k} has seed(s) {v} that the other lacks" for k, v in alone.items())
        raise PairingError(f"cannot pair {names[0]} and {names[1]} by seed: {detail}. Add the missing runs, or pass "
                           "--drop-unpaired to compare the common seeds only")
    if len(common) < 2:
        raise PairingError(f"{names[0]} and {names[1]} share {len(common)} seed(s) ({common}); a paired interval "
                           "needs at least 2")
    return common, alone


def verdict(interval: tuple[float, float], metric: str, mde: float, names: tuple[str, str] = ("A", "B")) -> str:
    """"<A> better", "<B> better" or "no difference detected (smaller than <mde> would go unseen)" from the
    interval of A − B (see the module doc)."""
    low, high = interval
    if low == high == 0:  # every pair equal (e.g. untrained paired networks: the context blocks start as identity)
        return "no difference detected (equal in every pair)"
    if low <= 0 <= high:
        return f"no difference detected (smaller than {mde:.3g} would go unseen)"
    a_lower = high < 0
    return f"{names[0] if a_lower == LOWER_IS_BETTER[metric] else names[1]} better"


def compare_metric(a: list[float], b: list[float], metric: str, names: tuple[str, str] = ("A", "B"),
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """The paired statistics of one metric; ``a[i]`` and ``b[i]`` are the runs of one seed (n >= 2 pairs)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"compare_metric needs two equal lists of at least 2 paired values, got {len(a)} and {len(b)}")
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(PAIRED_METRICS)}")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n, sd = len(diffs), float(diffs.std(ddof=1))
    t_ci = t_interval(diffs, CONFIDENCE)
    mde = min_detectable_difference(sd, n, POWER, 1 - CONFIDENCE) if sd > 0 else 0.0
    (mean_a, sd_a), (mean_b, sd_b) = mean_std(a), mean_std(b)
    return {
        "metric": metric, "better": "lower" if LOWER_IS_BETTER[metric] else "higher", "n": n,
        "a": {"mean": mean_a, "sd": sd_a}, "b": {"mean": mean_b, "sd": sd_b},
        "diffs": diffs.tolist(), "mean_diff": float(diffs.mean()), "sd_diff": sd,
        "t_interval": list(t_ci), "bootstrap_interval": list(bootstrap_interval(diffs, resamples, seed, CONFIDENCE)),
        "mde": mde, "verdict": verdict(t_ci, metric, mde, names),
    }


def compare_groups(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], names: tuple[str, str],
                   metrics: tuple[str, ...] = PAIRED_METRICS, drop_unpaired: bool = False,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """A against B from ``{train seed: {metric: value}}`` per model: the seeds, the dropped ones, and
    :func:`compare_metric` of every metric of ``metrics`` that every paired run has."""
    seeds, dropped = pair_by_seed(a, b, names, drop_unpaired)
    out: dict[str, Any] = {"a": names[0], "b": names[1], "seeds": seeds, "dropped": dropped, "metrics": {}}
    for metric in metrics:
        if all(a[s].get(metric) is not None and b[s].get(metric) is not None for s in seeds):
            out["metrics"][metric] = compare_metric([a[s][metric] for s in seeds], [b[s][metric] for s in seeds],
                                                    metric, names, resamples, seed)
    return out


def format_table(comparison: dict[str, Any]) -> str:
    """A Markdown table of :func:`compare_groups`' result, one row per metric."""
    a, b = comparison["a"], comparison["b"]
    pct = round(100 * CONFIDENCE)
    lines = [f"| metric | better | {a} mean ± SD | {b} mean ± SD | {a} − {b} (n) | {pct}% t interval | "
             f"{pct}% bootstrap | MDE ({round(100 * POWER)}% power) | verdict |",
             "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | --- |"]
    for metric, r in comparison["metrics"].items():
        f = (lambda v: f"{v:.4g}")  # noqa: E731
        lines.append(
            f"| {metric} | {r['better']} | {f(r['a']['mean'])} ± {f(r['a']['sd'])} | {f(r['b']['mean'])} ± "
            f"{f(r['b']['sd'])} | {f(r['mean_diff'])} ({r['n']}) | [{f(r['t_interval'][0])}, "
            f"{f(r['t_interval'][1])}] | [{f(r['bootstrap_interval'][0])}, {f(r['bootstrap_interval'][1])}] | "
            f"{f(r['mde'])} | {r['verdict']} |")
    return "\n".join(lines)


__all__ = ["LOWER_IS_BETTER", "MDE_METHOD", "PAIRED_METRICS", "PairingError", "compare_groups", "compare_metric",
           "format_table", "pair_by_seed", "verdict"]
