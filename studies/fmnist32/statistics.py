"""Statistics of the study: mean ± std per model, paired differences per seed with 95% intervals, plateau check.

    paired_difference({0: 80.1, 1: 78.3}, {0: 85.0, 1: 79.0}, "fid")   # A - B over the seeds both have
    plateau({3000: {0: 70.2, 1: 71.0}, 4000: {0: 69.8, 1: 70.1}}, spread=None)  # is the FID curve flat?

Paired differences: seed s of model A and seed s of model B share what the seed fixes for both (in the committed
study only the data order: the initial weights and latents came from a global RNG stream that the context blocks
shift), so the per-seed difference A_s - B_s removes that part of the seed-to-seed variance. For n common seeds: the
mean difference, a 95% Student-t interval and a 95% percentile bootstrap interval of the mean difference
(:mod:`hamgan.metrics.intervals`, which also holds the power arithmetic: ``min_detectable_difference``). The verdict
comes from the t interval: for FID and KID lower is better, so A "beat" B when the interval lies entirely below 0,
"lost" when entirely above; for precision and recall higher is better (the reverse); "inconclusive" when it contains
0: no detectable difference, which is not equivalence. One common seed has no interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hamgan.metrics.intervals import bootstrap_interval, mean_std, t_interval

LOWER_IS_BETTER = {"fid": True, "kid_mean": True, "precision": False, "recall": False, "density": False,
                   "coverage": False}
PAIRED_METRICS = ("fid", "kid_mean", "precision", "recall")
ONE_SEED = "one seed: no interval"
INCONCLUSIVE = "inconclusive"  # the interval contains 0: no detectable difference (not "matched": not equivalence)


def improving(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The runs (keys both have) whose FID fell from ``before`` to ``after``, e.g. FID@2000 at steps 3000 and 4000:
    runs that were still improving when the budget ended."""
    return sorted(k for k in set(before) & set(after) if after[k] < before[k])


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better; ``fid_at_<n>`` (the FID of the first n samples) is an FID."""
    return LOWER_IS_BETTER["fid" if metric.startswith("fid_at_") else metric]


def verdict(interval: tuple[float, float] | None, metric: str) -> str:
    """"beat" / "lost" / "inconclusive" of model A against B from the interval of A - B (see the module doc)."""
    if interval is None:
        return ONE_SEED
    low, high = interval
    if low <= 0 <= high:
        return INCONCLUSIVE
    below = high < 0
    return "beat" if below == lower_is_better(metric) else "lost"


def paired_difference(a: dict[int, float], b: dict[int, float], metric: str) -> dict[str, Any] | None:
    """A - B over the seeds both models have (``{seed: value}``); None when they share no seed.

    Returns seeds, per-seed differences, n, mean, sd, t and bootstrap intervals ([low, high] or None for n = 1)
    and the verdict (from the t interval) with the direction that counts as better.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=float)
    t_ci = t_interval(diffs) if len(diffs) > 1 else None
    boot = bootstrap_interval(diffs) if len(diffs) > 1 else None
    return {
        "metric": metric, "seeds": seeds, "diffs": diffs.tolist(), "n": len(seeds), "mean": float(diffs.mean()),
        "sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else None,
        "t_interval": None if t_ci is None else list(t_ci), "bootstrap_interval": None if boot is None else list(boot),
        "verdict": verdict(t_ci, metric), "better": "lower" if lower_is_better(metric) else "higher",
    }


def paired_differences(final: dict[str, dict[int, dict[str, float]]], pairs: list[tuple[str, str]] | tuple,
                       metrics: tuple[str, ...] = PAIRED_METRICS) -> dict[str, dict[str, Any]]:
    """``{"A-B": {metric: paired_difference}}`` from ``final[model][seed][metric]`` (the final-step rows).

    A pair with a model that has no final rows, or with no common seed, maps to ``{}``; a metric missing in a row
    is left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        result = {}
        for metric in metrics:
            va = {s: r[metric] for s, r in final.get(a, {}).items() if r.get(metric) is not None}
            vb = {s: r[metric] for s, r in final.get(b, {}).items() if r.get(metric) is not None}
            d = paired_difference(va, vb, metric)
            if d is not None:
                result[metric] = d
        out[f"{a}-{b}"] = result
    return out


def plateau(curve: dict[int, dict[int, float]], spread: float | None, paired_sd: float | None = None,
            paired_name: str | None = None) -> dict[str, Any] | None:
    """Is the FID curve of a model flat? ``curve``: ``{step: {seed: FID}}`` (the same N at every step).

    Compares the change of the mean FID between the last two evaluated steps, over the seeds evaluated at both (so
    that a seed still missing at the last step does not move the mean), with a spread: ``paired_sd`` when given
    (the SD over seeds of a paired difference the model takes part in, :func:`plateau_paired_sd`: the noise of the
    comparison the study makes; ``paired_name``: that pair "A-B", named in ``spread_from``), else the sample std of
    those seeds' FIDs at the last step, or ``spread`` (e.g. ``--seed-spread``) when there is one such seed. "flat"
    when |change| < spread, "still falling" when it fell by more, "rising" when it rose by more, "no spread" without
    one. None with fewer than two evaluated steps or no seed evaluated at both.
    """
    steps = sorted(s for s, v in curve.items() if v)
    if len(steps) < 2:
        return None
    prev, last = steps[-2], steps[-1]
    seeds = sorted(set(curve[prev]) & set(curve[last]))
    if not seeds:
        return None
    before, after = [curve[prev][s] for s in seeds], [curve[last][s] for s in seeds]
    change = float(np.mean(after) - np.mean(before))
    source = "--seed-spread"
    if paired_sd is not None:
        spread, source = paired_sd, "paired SD" if paired_name is None else f"paired SD of {paired_name}"
    elif len(seeds) > 1:
        spread, source = mean_std(after)[1], "seed std"
    if spread is None:
        state = "no spread"
    elif abs(change) < spread:
        state = "flat"
    else:
        state = "still falling" if change < 0 else "rising"
    return {"from_step": prev, "to_step": last, "seeds": seeds, "fid_from": float(np.mean(before)),
            "fid_to": float(np.mean(after)), "change": change, "spread": spread, "spread_from": source,
            "verdict": state}


def plateau_paired_sd(model: str, differences: dict[tuple[str, str], dict[str, Any] | None]) -> tuple[float, str] | None:
    """The spread of ``model``'s plateau check in a paired study: the smallest SD of a paired FID difference it takes
    part in (``{(A, B): paired_difference or None}``, of the curve's FID at the last step), with that pair's name
    "A-B"; None when no pair of it has two seeds."""
    mine = [(d["sd"], f"{a}-{b}") for (a, b), d in differences.items()
            if d is not None and d["sd"] is not None and model in (a, b)]
    return min(mine) if mine else None


def pairing_gain(a: dict[int, float], b: dict[int, float]) -> dict[str, Any] | None:
    """What pairing bought for A - B over the seeds both have (``{seed: value}``); None with fewer than 3 seeds.

    Var(A - B) = Var(A) + Var(B) - 2 Cov(A, B). Independent (unpaired) runs with the same spread per model would give
    ``sd_unpaired`` = sqrt(Var A + Var B); the runs of a seed share weights outside the context block, latents, labels
    and data order, and their correlation ``r`` over seeds (None when A or B is constant) is what shrinks
    ``sd_paired`` below it. ``variance_ratio`` = sd_unpaired² / sd_paired²: how many times more seeds an unpaired
    design would need for the same interval.
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 3:
        return None
    va, vb = np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)
    sd_paired = float((va - vb).std(ddof=1))
    sd_unpaired = float(np.sqrt(va.var(ddof=1) + vb.var(ddof=1)))
    constant = va.std() == 0 or vb.std() == 0  # a correlation needs both to vary
    r = None if constant else float(np.corrcoef(va, vb)[0, 1])
    return {"seeds": seeds, "n": len(seeds), "sd_paired": sd_paired, "sd_unpaired": sd_unpaired, "r": r,
            "variance_ratio": sd_unpaired ** 2 / sd_paired ** 2 if sd_paired > 0 else None}
