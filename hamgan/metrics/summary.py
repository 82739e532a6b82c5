"""Every metric of generated images against a reference, from one Inception pass of each.

    ext = generator_statistics(G, inception, n, keep_logits=True, keep_features=True, bn="standing")
    row = summarize(ext, reference, is_bias=inception.logits_bias if tf_gan_is else None, per_class=True)

``row`` holds fid; kid_mean, kid_std (and the subsets / subset size used); precision, recall, density, coverage (and
their k); is_mean, is_std, is_splits, is_bias; with ``per_class`` the intra-class FID (mean over the classes present
in both sets) and the FID of each class. Metrics that need reference features are left out when the reference has
only mu/sigma (``skipped`` says why), or raise when asked for explicitly.
"""

from __future__ import annotations

import numpy as np
import torch

from hamgan.metrics.features import Extraction, Reference
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.inception_score import inception_score
from hamgan.metrics.kid import kernel_inception_distance
from hamgan.metrics.precision_recall import manifold_metrics
from hamgan.metrics.stats import StatsError

METRICS = ("fid", "kid", "pr", "dc", "is")  # pr: precision/recall, dc: density/coverage


def frechet_distance_of_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID of two feature sets (n, d), exact and cheap when a set has fewer samples than dimensions.

    Tr sqrt(S_a S_b) = nuclear norm of A B^T / sqrt((n_a - 1)(n_b - 1)) with A, B the centred features, an
    (n_a, n_b) SVD instead of two (d, d) eigendecompositions.
    """
    a, b = a.double(), b.double()
    if min(len(a), len(b)) < 2:
        raise StatsError(f"FID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(a.mean(0).numpy(), np.cov(a.numpy(), rowvar=False), b.mean(0).numpy(),
                                np.cov(b.numpy(), rowvar=False))
    ac, bc = a - a.mean(0), b - b.mean(0)
    scale = ((len(a) - 1) * (len(b) - 1)) ** 0.5
    trace_sqrt = torch.linalg.svdvals(ac @ bc.T).sum() / scale
    tr_a, tr_b = (ac * ac).sum() / (len(a) - 1), (bc * bc).sum() / (len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + tr_a + tr_b - 2 * trace_sqrt)


def per_class_fid(gen: Extraction, ref: Reference) -> dict[int, float]:
    """FID of each class present (>= 2 samples) in both sets; needs features and labels of both."""
    if gen.features is None or gen.labels is None:
        raise StatsError("per-class FID needs the generated features and labels (keep_features=True)")
    ref_features = ref.need_features("per-class FID")
    if ref.labels is None:
        raise StatsError(f"per-class FID needs the reference's labels; '{ref.source}' has none (an image folder "
                         f"has no labels: use a data set config or a features file made from one)")
    out = {}
    for c in sorted(set(gen.labels.tolist()) & set(ref.labels.tolist())):
        fa, fb = gen.features[gen.labels == c], ref_features[ref.labels == c]
        if len(fa) >= 2 and len(fb) >= 2:
            out[int(c)] = frechet_distance_of_features(fa, fb)
    if not out:
        raise StatsError("no class has at least 2 samples in both the generated and the reference set")
    return out


def summarize(
    gen: Extraction, ref: Reference, metrics: tuple[str, ...] | None = None, is_splits: int = 10,
    is_bias: torch.Tensor | None = None, per_class: bool = False, kid_subsets: int = 100,
    kid_subset_size: int = 1000, k_pr: int = 3, k_dc: int = 5, seed: int = 0, distance: str = "eig",
) -> dict:
    """The metrics of ``gen`` against ``ref`` as a flat dict (see the module doc).

    ``metrics`` None: all that the inputs allow; else exactly those of :data:`METRICS` (an error when one cannot be
    computed). ``distance``: the FID's Fréchet distance method (:data:`hamgan.metrics.fid.DISTANCE_METHODS`; the
    intra-class FIDs always use "eig").
    """
    explicit = metrics is not None
    metrics = METRICS if metrics is None else metrics
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    out: dict = {}
    skipped = []
    if "fid" in metrics:
        out["fid"] = frechet_distance(gen.stats.mean(), gen.stats.cov(), ref.mu, ref.sigma, method=distance)
    needs_features = [m for m in ("kid", "pr", "dc") if m in metrics]
    if needs_features and ref.features is None and not explicit:
        skipped.append(f"KID, precision/recall, density/coverage: '{ref.source}' holds only mu/sigma")
        needs_features = []
    if needs_features:
        real = ref.need_features("KID, precision/recall and density/coverage")
        if gen.features is None:
            raise StatsError("the generated set kept no features (keep_features=True)")
        if "kid" in needs_features:
            mean, std, m = kernel_inception_distance(gen.features, real, kid_subsets, kid_subset_size, seed)
            out.update(kid_mean=mean, kid_std=std, kid_subsets=kid_subsets, kid_subset_size=m)
        if "pr" in needs_features or "dc" in needs_features:
            man = manifold_metrics(real, gen.features, k_pr, k_dc)
            if "pr" in needs_features:
                out.update(precision=man.precision, recall=man.recall, k_pr=k_pr)
            if "dc" in needs_features:
                out.update(density=man.density, coverage=man.coverage, k_dc=k_dc)
    if "is" in metrics:
        if gen.logits is None:
            if explicit:
                raise StatsError("the Inception Score needs the generated logits (keep_logits=True)")
            skipped.append("IS: no logits kept")
        else:
            mean, std = inception_score(gen.logits, is_splits, is_bias)
            out.update(is_mean=mean, is_std=std, is_splits=is_splits, is_bias=is_bias is not None)
    if per_class:
        classes = per_class_fid(gen, ref)
        out.update(intra_fid=float(np.mean(list(classes.values()))), per_class_fid=classes)
    if skipped:
        out["skipped"] = skipped
    return out
