"""Intervals and power over seeds: mean ± sd, Student-t and bootstrap intervals of a mean, paired t-test power.

    mean_std([80.1, 78.3, 82.0])                      # (mean, sample std); std 0.0 for one value
    t_interval(diffs)                                 # 95% Student-t interval of the mean of n >= 2 values
    bootstrap_interval(diffs)                         # 95% percentile bootstrap interval of the same mean
    min_detectable_difference(sd=4.0, n=5)            # smallest true mean difference detected 80% of the time

For n per-seed values (e.g. paired differences A_s - B_s): the t interval is mean ± t_{0.975, n-1} * sd / sqrt(n);
the bootstrap interval is the percentile interval of :data:`BOOTSTRAP_RESAMPLES` means of n draws with replacement
(numpy generator seeded with :data:`BOOTSTRAP_SEED`, so a report is reproducible).

What n seeds can detect: :func:`min_detectable_difference` is the smallest true mean difference that a two-sided
paired t-test at level alpha detects with the given power, from the exact noncentral t distribution (noncentrality
delta * sqrt(n) / sd); :func:`min_detectable_difference_approx` is the textbook shortcut
(t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), a little smaller for few seeds.

Used by :mod:`hamgan.metrics.paired` (``hamgan-eval compare --group``) and by the Fashion-MNIST study
(``studies/fmnist32``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student_t

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
POWER = 0.8


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        raise ValueError("mean_std of no values")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def t_interval(diffs: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean of ``diffs`` (n >= 2)."""
    n = len(diffs)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * float(np.std(diffs, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(diffs))
    return mean - half, mean + half


def bootstrap_interval(diffs: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs``: ``resamples`` means of n draws with replacement."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_t_power(delta: float, sd: float, n: int, alpha: float = 1 - CONFIDENCE) -> float:
    """Probability that a two-sided paired t-test at level ``alpha`` on n pairs rejects "no difference" when the true
    mean difference is ``delta`` and the per-pair differences have standard deviation ``sd`` (noncentral t)."""
    if n < 2 or sd <= 0:
        raise ValueError(f"paired_t_power needs n >= 2 pairs and sd > 0, got n={n}, sd={sd}")
    df, nc = n - 1, abs(delta) * math.sqrt(n) / sd
    critical = float(student_t.ppf(1 - alpha / 2, df))
    # both tails; the lower one as sf at -nc, which is 0 where scipy's cdf at large nc returns NaN
    return float(nct.sf(critical, df, nc) + nct.sf(critical, df, -nc))


def min_detectable_difference(sd: float, n: int, power: float = POWER, alpha: float = 1 - CONFIDENCE) -> float:
    """Smallest true mean difference a two-sided paired t-test (level ``alpha``, n pairs, per-pair sd ``sd``) detects
    with probability ``power``: the root of :func:`paired_t_power` (exact, noncentral t)."""
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    high = min_detectable_difference_approx(sd, n, power, alpha)
    while paired_t_power(high, sd, n, alpha) < power:  # the shortcut is below the exact value: widen the bracket
        high *= 2
    return float(brentq(lambda d: paired_t_power(d, sd, n, alpha) - power, 0.0, high, xtol=1e-12 * high))


def min_detectable_difference_approx(sd: float, n: int, power: float = POWER,
                                     alpha: float = 1 - CONFIDENCE) -> float:
    """The shortcut (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n) of :func:`min_detectable_difference`."""
    if n < 2 or sd <= 0:
        raise ValueError(f"min_detectable_difference needs n >= 2 pairs and sd > 0, got n={n}, sd={sd}")
    return float(student_t.ppf(1 - alpha / 2, n - 1) + student_t.ppf(power, n - 1)) * sd / math.sqrt(n)
