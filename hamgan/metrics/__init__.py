"""Evaluation metrics: FID and Inception Score on pytorch-fid's Inception-v3 (TF 2015-12-05 graph).

For the trainer (periodic FID)::

    from hamgan.metrics import InceptionFeatures, generator_fid, load_stats
    inception = InceptionFeatures().to(device)        # once; finds the weights in the torch hub cache
    fid = generator_fid(G_ema, ref_stats, n=5000, inception=inception)   # ref_stats: (mu, sigma) or .npz path

Reference statistics of a data set: ``hamgan-eval stats CONFIG --out ref.npz`` or :func:`dataset_statistics`.
"""

from hamgan.metrics.fid import (
    Extraction,
    FeatureStats,
    StatsError,
    dataset_statistics,
    extract,
    folder_statistics,
    frechet_distance,
    generator_fid,
    generator_statistics,
    load_stats,
    save_stats,
    warn_if_biased,
)
from hamgan.metrics.inception import InceptionFeatures, InceptionWeightsError, hub_checkpoint_dir
from hamgan.metrics.inception_score import inception_score, inception_score_from_probs

__all__ = [
    "Extraction", "FeatureStats", "StatsError", "dataset_statistics", "extract", "folder_statistics",
    "frechet_distance", "generator_fid", "generator_statistics", "load_stats", "save_stats", "warn_if_biased",
    "InceptionFeatures", "InceptionWeightsError", "hub_checkpoint_dir", "inception_score", "inception_score_from_probs",
]
