"""Fréchet Inception Distance: streaming float64 feature statistics, pytorch-fid's ``.npz`` format, the distance.

    stats = FeatureStats(2048); stats.update(features)      # any number of (B, 2048) batches
    mu, sigma = stats.mean(), stats.cov()                   # float64, as np.mean / np.cov of all features
    fid = frechet_distance(mu, sigma, *load_stats("ref.npz"))

The distance is our own float64 function (no ``scipy.linalg.sqrtm``, whose arguments changed in SciPy 1.18 and broke
pytorch-fid 0.3.0): Tr sqrt(sigma1 sigma2) is the sum of the square roots of the eigenvalues of the symmetric
positive semi-definite sqrt(sigma1) sigma2 sqrt(sigma1), which has the same eigenvalues. It equals pytorch-fid's value
to 1e-12 on full-rank covariances; on rank-deficient ones (fewer samples than 2048) it is exact where ``sqrtm`` is
not (``sqrtm`` turns the zero eigenvalues into ~1e-7 noise whose square roots add up to ~1e-4 FID points, ~1e-6
relative; see
tests/metrics/test_fid.py, which checks against the exact value computed from the features).

``frechet_distance(..., method="sqrtm")`` (``hamgan-eval --distance sqrtm``) is pytorch-fid's own algorithm instead,
``scipy.linalg.sqrtm`` of sigma1 sigma2 called as each SciPy from 1.10 to 1.18 accepts it: for parity with numbers
made by pytorch-fid to the last digit (it carries ``sqrtm``'s round-off on rank-deficient covariances, ~1e-6
relative).

Image sources and the Inception pass live in :mod:`hamgan.metrics.features`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from hamgan.metrics.inception import FEATURE_DIM


class StatsError(ValueError):
    """A statistics file or image folder that cannot be used for FID."""


# --------------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# The distance
# --------------------------------------------------------------------------------------------------------------------


def _psd_eigenvalues(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped to >= 0) and eigenvectors of a symmetric PSD matrix; eigenvalues below
    ``dim * eps * largest`` (round-off of an exact zero) are set to 0, so rank-deficient inputs stay exact."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    tol = a.shape[0] * np.finfo(np.float64).eps * max(float(w.max(initial=0.0)), 0.0)
    return np.where(w > tol, w, 0.0), v


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr sqrt(sigma1 sigma2) of two covariance matrices (symmetric PSD), in float64, without ``sqrtm``.

    sigma1 sigma2 is similar to the symmetric PSD matrix sqrt(sigma1) sigma2 sqrt(sigma1), so the trace of its
    principal square root is the sum of the square roots of that matrix's eigenvalues.
    """
    w1, v1 = _psd_eigenvalues(np.asarray(sigma1, dtype=np.float64))
    root1 = (v1 * np.sqrt(w1)) @ v1.T
    w, _ = _psd_eigenvalues(root1 @ np.asarray(sigma2, dtype=np.float64) @ root1)
    return float(np.sqrt(w).sum())


DISTANCE_METHODS = ("eig", "sqrtm")  # our exact float64 eigenvalue form (default); pytorch-fid's sqrtm algorithm


def sqrtm_trace_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Tr sqrt(sigma1 sigma2) exactly as pytorch-fid 0.3.0's ``calculate_frechet_distance`` computes it:
    ``scipy.linalg.sqrtm`` of the product (``disp=False`` where SciPy still has it, as pytorch-fid calls it; plain
    ``sqrtm(A)`` from SciPy 1.18 on, the same matrix), retried with ``eps`` on the diagonals when not finite, and the
    real part (an imaginary diagonal above 1e-3 is an error, as there)."""
    import inspect

    import scipy.linalg

    def sqrtm(a: np.ndarray) -> np.ndarray:
        if "disp" in inspect.signature(scipy.linalg.sqrtm).parameters:  # SciPy < 1.18
            with warnings.catch_warnings():  # 1.16 and 1.17 deprecate disp (same matrix)
                warnings.simplefilter("ignore", DeprecationWarning)
                return scipy.linalg.sqrtm(a, disp=False)[0]
        return scipy.linalg.sqrtm(a)

    covmean = sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise StatsError(f"sqrtm of sigma1 sigma2 has an imaginary component of {np.abs(covmean.imag).max():.3g} "
                             "(pytorch-fid fails here too); use method 'eig'")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "eig") -> float:
    """||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrt(sigma1 sigma2), all in float64.

    ``method`` "eig" (default): our eigenvalue form, exact also on rank-deficient covariances; "sqrtm":
    pytorch-fid's algorithm (:func:`sqrtm_trace_product`). See the module doc for how they agree.
    """
    if method not in DISTANCE_METHODS:
        raise ValueError(f"unknown Fréchet distance method '{method}'; choose from {', '.join(DISTANCE_METHODS)}")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise StatsError(f"the two statistics have different shapes: mu {mu1.shape} vs {mu2.shape}, sigma "
                         f"{sigma1.shape} vs {sigma2.shape}")
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise StatsError(f"{name} holds NaN or inf values: the features (or the statistics file) are broken")
    diff = mu1 - mu2
    trace_sqrt = trace_sqrt_product(sigma1, sigma2) if method == "eig" else sqrtm_trace_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def warn_if_biased(n: int, dim: int = FEATURE_DIM) -> None:
    if n < dim:
        warnings.warn(
            f"FID from {n} samples, fewer than the {dim} feature dimensions: the covariance is rank-deficient and "
            f"the value is biased (too high) and not comparable with published numbers (use 10k-50k samples)",
            stacklevel=3,
        )


_MOVED = ("Extraction", "extract", "list_images", "ImageFiles", "folder_batches", "folder_statistics",
          "generator_statistics", "generator_fid", "dataset_statistics")


def __getattr__(name: str):
    """The image sources moved to :mod:`hamgan.metrics.features`; ``hamgan.metrics.fid.X`` keeps working."""
    if name in _MOVED:
        from hamgan.metrics import features

        return getattr(features, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
