"""hamgan.metrics.kid: unbiased MMD² with the cubic polynomial kernel, by hand and against the MMD-GAN formula."""

import numpy as np
import pytest
import torch

from hamgan.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def test_hand_computed_one_dimensional_case():
    # d = 1: k(x, y) = (x y + 1)^3. x = {0, 1}, y = {1, 2}, m = 2
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [2.0]])
    assert polynomial_kernel(x, y).tolist() == [[1.0, 1.0], [8.0, 27.0]]
    # xx: off-diagonal k(0,1) twice = 2 -> 2/2 = 1; yy: k(1,2) = 27 twice -> 27; xy: (1+1+8+27)/4 = 9.25
    expected = 1.0 + 27.0 - 2 * 9.25
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    assert mmd2_unbiased(kxx, kxy, kyy) == pytest.approx(expected)
    mean, std, m = kernel_inception_distance(x, y, subsets=3, subset_size=2)
    assert (mean, std, m) == (pytest.approx(expected), pytest.approx(0.0), 2)  # every subset is the whole set


def mmd_gan_kid(f1: np.ndarray, f2: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """torch-fidelity's kid_features_to_metric (MMD-GAN's polynomial_mmd, mmd_est='unbiased'), in numpy."""
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)]
        b = f2[rng.choice(len(f2), size, replace=False)]
        k = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731
        kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
        m = size
        mmds.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2)
    return float(np.mean(mmds)), float(np.std(mmds))


def test_equals_the_reference_formula_on_random_features():
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(60, 8)), rng.normal(loc=0.3, size=(50, 8))
    mean, std, m = kernel_inception_distance(torch.from_numpy(f1), torch.from_numpy(f2), subsets=7, subset_size=20,
                                             seed=5)
    ref_mean, ref_std = mmd_gan_kid(f1, f2, 7, 20, 5)
    assert (mean, std, m) == (pytest.approx(ref_mean, rel=1e-12), pytest.approx(ref_std, rel=1e-12), 20)
    same = kernel_inception_distance(torch.from_numpy(f1), torch.from_numpy(f1), subsets=20, subset_size=30)[0]
    assert abs(same) < mean  # unbiased: ~0 for one distribution, positive for two


def test_subset_size_is_cut_to_the_smaller_set_and_errors():
    a, b = torch.randn(10, 4), torch.randn(5, 4)
    assert kernel_inception_distance(a, b, subsets=2, subset_size=1000)[2] == 5
    with pytest.raises(ValueError, match="at least 2 samples"):
        kernel_inception_distance(a, b[:1])
    with pytest.raises(ValueError, match="same d"):
        kernel_inception_distance(a, torch.randn(5, 3))
