"""Fréchet Inception Distance between two feature statistics (:mod:`hamgan.metrics.stats` makes, saves and loads
them)::

    fid = frechet_distance(stats.mean(), stats.cov(), *load_stats("ref.npz"))

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

Image sources and the Inception pass live in :mod:`hamgan.metrics.features`, the statistics in
:mod:`hamgan.metrics.stats`.
"""

from __future__ import annotations

import warnings

import numpy as np

from hamgan.metrics.stats import StatsError


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
