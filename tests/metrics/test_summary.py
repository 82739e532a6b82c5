"""hamgan.metrics.summary: every metric from one pass, per-class FID, what a mu/sigma reference allows."""

import numpy as np
import pytest
import torch

from hamgan.metrics.features import Extraction, Reference
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.stats import FeatureStats, StatsError
from hamgan.metrics.summary import frechet_distance_of_features, per_class_fid, summarize

DIM = 64  # any feature size works; small keeps the test fast


def extraction(features: torch.Tensor, labels: torch.Tensor, logits: bool = True) -> Extraction:
    stats = FeatureStats(DIM)
    stats.update(features)
    lg = torch.randn(len(features), 1008, generator=torch.Generator().manual_seed(0)) if logits else None
    return Extraction(stats, lg, features, labels)


@pytest.fixture(scope="module")
def sets():
    g = torch.Generator().manual_seed(0)
    fake = torch.rand(40, DIM, generator=g)
    real = torch.rand(60, DIM, generator=g) + 0.05
    return (extraction(fake, torch.arange(40) % 2), extraction(real, torch.arange(60) % 3, logits=False))


def test_all_metrics_from_features(sets):
    gen, real = sets
    ref = Reference.from_extraction(real, "pytorch-fid", "real")
    row = summarize(gen, ref, is_splits=4, per_class=True, kid_subsets=3, kid_subset_size=20)
    assert row["fid"] == pytest.approx(frechet_distance(gen.stats.mean(), gen.stats.cov(), ref.mu, ref.sigma))
    assert {"kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean", "is_std"} <= set(row)
    assert (row["kid_subsets"], row["kid_subset_size"], row["is_splits"], row["is_bias"]) == (3, 20, 4, False)
    assert set(row["per_class_fid"]) == {0, 1}  # class 2 has no generated samples
    assert row["intra_fid"] == pytest.approx(np.mean(list(row["per_class_fid"].values())))
    c0 = frechet_distance_of_features(gen.features[gen.labels == 0], real.features[real.labels == 0])
    assert row["per_class_fid"][0] == pytest.approx(c0)
    assert "skipped" not in row


def test_mu_sigma_reference_gives_fid_and_is_and_says_why_not_the_rest(sets):
    gen, real = sets
    ref = Reference(real.stats.mean(), real.stats.cov(), real.n, source="ref.npz")
    row = summarize(gen, ref, is_splits=2)
    assert set(row) == {"fid", "is_mean", "is_std", "is_splits", "is_bias", "skipped"}
    assert "'ref.npz' holds only mu/sigma" in row["skipped"][0]
    with pytest.raises(StatsError, match="needs the reference's features.*hamgan-eval stats SOURCE --out REF.npz "
                                         "--features"):
        summarize(gen, ref, metrics=("fid", "kid"))
    with pytest.raises(StatsError, match="per-class FID needs the reference's features"):
        summarize(gen, ref, metrics=("fid",), per_class=True)
    no_labels = Reference.from_extraction(Extraction(real.stats, None, real.features, None), source="folder")
    with pytest.raises(StatsError, match="needs the reference's labels"):
        per_class_fid(gen, no_labels)
    with pytest.raises(ValueError, match="unknown metrics"):
        summarize(gen, ref, metrics=("fid", "lpips"))
