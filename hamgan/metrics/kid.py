"""Kernel Inception Distance (Bińkowski et al. 2018), as torch-fidelity and StudioGAN compute it.

For ``subsets`` random pairs of subsets (``subset_size`` features each, drawn without replacement from each set), the
unbiased estimate of MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³::

    MMD² = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1)) - 2 sum_{i, j} k(x_i, y_j) / m²

(torch-fidelity's ``mmd_est="unbiased"``; the cross term keeps its diagonal). Returns the mean and the population
std over subsets. Defaults: 100 subsets of 1000 (torch-fidelity); the subset size is cut to the smaller set when a
set is smaller, and reported.
"""

from __future__ import annotations

import numpy as np
import torch


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """(x y^T * gamma + coef0) ** degree for x (m, d), y (n, d); gamma None: 1 / d."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
    """Unbiased MMD² from the three (m, m) kernel matrices (diagonals of k_xx and k_yy left out)."""
    m = k_xx.shape[0]
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
) -> tuple[float, float, int]:
    """(mean, std, subset size used) of the KID between features (n_a, d) and (n_b, d), computed in float64."""
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"expected features (n, d) with the same d, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)}")
    m = min(subset_size, len(features_a), len(features_b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(features_a)} and {len(features_b)}")
    if subsets < 1:
        raise ValueError(f"KID needs at least one subset, got {subsets}")
    rng = np.random.RandomState(seed)
    a, b = features_a.double(), features_b.double()
    values = []
    for _ in range(subsets):
        x = a[torch.from_numpy(rng.choice(len(a), m, replace=False))]
        y = b[torch.from_numpy(rng.choice(len(b), m, replace=False))]
        values.append(mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y)))
    return float(np.mean(values)), float(np.std(values)), m
