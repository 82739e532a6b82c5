"""Evaluation metrics on pytorch-fid's Inception-v3 (TF 2015-12-05 graph): FID, IS, KID, precision/recall,
density/coverage, per-class FID.

For the trainer (periodic FID)::

    from hamgan.metrics import InceptionFeatures, generator_fid, load_stats
    inception = InceptionFeatures().to(device)        # once; finds the weights in the torch hub cache
    fid = generator_fid(G_ema, ref_stats, n=5000, inception=inception, bn=BNMode("standing"))

Reference statistics of a data set: ``hamgan-eval stats CONFIG --out ref.npz`` or :func:`dataset_statistics`.
Every metric of a generator against a reference, from one Inception pass: :func:`hamgan.metrics.summary.summarize`.
"""

from hamgan.metrics.features import (
    Extraction,
    Reference,
    dataset_statistics,
    extract,
    folder_statistics,
    generator_fid,
    generator_statistics,
    load_reference,
    save_features,
)
from hamgan.metrics.fid import frechet_distance, trace_sqrt_product
from hamgan.metrics.inception import InceptionFeatures, InceptionWeightsError, hub_checkpoint_dir
from hamgan.metrics.inception_score import inception_score, inception_score_from_probs
from hamgan.metrics.kid import kernel_inception_distance
from hamgan.metrics.precision_recall import Manifold, manifold_metrics
from hamgan.metrics.stats import FeatureStats, StatsError, load_stats, save_stats, warn_if_biased

__all__ = [
    "Extraction", "FeatureStats", "Manifold", "Reference", "StatsError", "dataset_statistics", "extract",
    "folder_statistics", "frechet_distance", "generator_fid", "generator_statistics", "kernel_inception_distance",
    "load_reference", "load_stats", "manifold_metrics", "save_features", "save_stats", "trace_sqrt_product",
    "warn_if_biased", "InceptionFeatures", "InceptionWeightsError", "hub_checkpoint_dir", "inception_score",
    "inception_score_from_probs",
]
