"""Feature statistics for FID: streaming float64 mean and covariance, pytorch-fid's ``.npz`` format.

    stats = FeatureStats(2048); stats.update(features)      # any number of (B, 2048) batches
    mu, sigma = stats.mean(), stats.cov()                   # float64, as np.mean / np.cov of all features
    save_stats("ref.npz", mu, sigma); mu, sigma = load_stats("ref.npz")

The distance between two statistics is :func:`hamgan.metrics.fid.frechet_distance`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from hamgan.metrics.inception import FEATURE_DIM


class StatsError(ValueError):
    """A statistics file or image folder that cannot be used for FID."""


class FeatureStats:
    """Running mean and covariance of feature vectors, accumulated in float64 (sum and sum of outer products).

    ``cov()`` is the unbiased sample covariance (divides by n - 1), as ``np.cov(features, rowvar=False)``.
    ``n``, ``sum`` and ``sum_outer`` add over disjoint sets of samples (e.g. an ``all_reduce`` over ranks).
    """

    def __init__(self, dim: int = FEATURE_DIM, device: str | torch.device = "cpu"):
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features (B, dim)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features (B, {self.dim}), got {tuple(features.shape)}")
        f = features.to(self.sum.device, torch.float64)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f

    def mean(self) -> np.ndarray:
        """mu, float64 (dim,)."""
        if self.n == 0:
            raise StatsError("no features were accumulated")
        return (self.sum / self.n).cpu().numpy()

    def cov(self) -> np.ndarray:
        """sigma, float64 (dim, dim)."""
        if self.n < 2:
            raise StatsError(f"a covariance needs at least 2 samples, got {self.n}")
        mu = self.sum / self.n
        return ((self.sum_outer - self.n * torch.outer(mu, mu)) / (self.n - 1)).cpu().numpy()


def save_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray, **extra: np.ndarray | str | int) -> None:
    """Write ``mu`` and ``sigma`` as pytorch-fid's ``--save-stats`` does (``np.savez_compressed``).

    ``extra`` arrays (``n``, ``protocol``, ``features``, ``labels``) are stored beside them; pytorch-fid ignores them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mu=mu, sigma=sigma, **{k: np.asarray(v) for k, v in extra.items()})


def load_stats(path: str | Path, dim: int = FEATURE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """``(mu (dim,), sigma (dim, dim))`` from a pytorch-fid statistics ``.npz``, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"statistics file '{path}' does not exist (make one with: hamgan-eval stats SOURCE "
                         f"--out {path})")
    try:
        with np.load(path) as f:
            missing = [k for k in ("mu", "sigma") if k not in f.files]
            if missing:
                raise StatsError(f"statistics file '{path}' has arrays {f.files} but no {' or '.join(missing)}: "
                                 f"expected pytorch-fid's --save-stats format (mu, sigma)")
            mu, sigma = f["mu"][:], f["sigma"][:]
    except StatsError:
        raise
    except Exception as e:
        raise StatsError(f"statistics file '{path}' cannot be read as .npz ({type(e).__name__}: {e})") from None
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise StatsError(f"statistics file '{path}' has mu of shape {mu.shape} and sigma of shape {sigma.shape}, "
                         f"expected ({dim},) and ({dim}, {dim}) (Inception pool3 features); recompute it with "
                         f"hamgan-eval stats or pytorch-fid --save-stats with --dims {dim}")
    return mu.astype(np.float64), sigma.astype(np.float64)


def warn_if_biased(n: int, dim: int = FEATURE_DIM) -> None:
    if n < dim:
        warnings.warn(
            f"FID from {n} samples, fewer than the {dim} feature dimensions: the covariance is rank-deficient and "
            f"the value is biased (too high) and not comparable with published numbers (use 10k-50k samples)",
            stacklevel=3,
        )
