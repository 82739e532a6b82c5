"""hamgan.metrics.intervals: mean ± std, t and bootstrap intervals of a mean, paired t-test power and MDE."""

import math

import numpy as np
import pytest

from hamgan.metrics.intervals import (bootstrap_interval, mean_std, min_detectable_difference,
                                      min_detectable_difference_approx, paired_t_power, t_interval)

T_975_2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_t_interval_of_a_hand_computed_case():
    low, high = t_interval(np.array([1.0, 2.0, 3.0]))  # mean 2, sd 1, n 3
    half = T_975_2 / math.sqrt(3)  # 2.48414
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert half == pytest.approx(2.48414, abs=1e-5)


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    diffs = np.array([-5.0, -3.5, -6.0, -4.0, -2.5])
    a, b = bootstrap_interval(diffs), bootstrap_interval(diffs)
    assert a == b
    assert a[0] < diffs.mean() < a[1]
    assert diffs.min() <= a[0] and a[1] <= diffs.max()  # a mean of resamples never leaves the data's range
    assert bootstrap_interval(diffs, seed=1) != a


def test_min_detectable_difference_has_the_stated_power_by_simulation():
    """The exact (noncentral t) MDE against 200,000 simulated paired t-tests of 5 normal differences: the rejection
    rate is 0.8 within 4 binomial standard errors (sqrt(0.8 * 0.2 / 200000) = 0.0009)."""
    n, sd = 5, 4.0
    mde = min_detectable_difference(sd, n)
    assert paired_t_power(mde, sd, n) == pytest.approx(0.8, abs=1e-9)
    diffs = np.random.default_rng(0).normal(mde, sd, size=(200_000, n))
    t = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(n))
    assert abs(np.mean(np.abs(t) > 2.7764451051977987) - 0.8) < 4 * 0.0009  # t_{0.975, 4} (tables)


def test_min_detectable_difference_scales_and_tends_to_the_normal_formula():
    assert min_detectable_difference(2.0, 5) == pytest.approx(2 * min_detectable_difference(1.0, 5))
    assert min_detectable_difference_approx(1.0, 5) < min_detectable_difference(1.0, 5)  # the shortcut is optimistic
    z = 1.959963984540054 + 0.8416212335729143  # normal quantiles 0.975 and 0.8 (tables)
    assert min_detectable_difference(1.0, 2000) * math.sqrt(2000) == pytest.approx(z, rel=2e-3)
    with pytest.raises(ValueError, match="n >= 2"):
        min_detectable_difference(1.0, 1)
