"""hamgan.metrics.precision_recall: k-NN balls, hand-computed on points of a line."""

import pytest
import torch

from hamgan.metrics.precision_recall import knn_radii, manifold_metrics


def line(*xs: float) -> torch.Tensor:
    return torch.tensor([[x, 0.0] for x in xs])


def test_knn_radii_exclude_the_point_itself():
    assert knn_radii(line(0, 1, 3, 7), k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(line(0, 1, 3, 7), k=2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than k features"):
        knn_radii(line(0, 1), k=2)


def test_hand_computed_precision_recall_density_coverage():
    real = line(0, 1, 2, 3)  # k = 1 radii: 1, 1, 1, 1 (balls [-1, 1], [0, 2], [1, 3], [2, 4])
    fake = line(0.5, 2, 10)  # k = 1 radii: 1.5, 1.5, 8 (balls [-1, 2], [0.5, 3.5], [2, 18])
    m = manifold_metrics(real, fake, k_pr=1, k_dc=1, chunk=2)
    # precision: 0.5 and 2 are inside real balls, 10 is not -> 2/3
    assert m.precision == pytest.approx(2 / 3)
    # recall: real 0 (in [-1, 2]), 1, 2, 3 (in [0.5, 3.5]) -> 1
    assert m.recall == pytest.approx(1.0)
    # density (strict <): 0.5 is inside balls of 0 and 1 (distance 0.5 < 1): 2; 2 is inside ball of 2 only
    # (distance 1 to 1 and 3 is not < 1): 1; 10: 0 -> 3 / (1 * 3)
    assert m.density == pytest.approx(1.0)
    # coverage: ball of 0 holds 0.5, of 1 holds 0.5, of 2 holds 2, of 3 holds nothing (nearest fake 1 not < 1)
    assert m.coverage == pytest.approx(0.75)
    assert (m.k_pr, m.k_dc) == (1, 1)


def test_identical_sets_are_perfect():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    m = manifold_metrics(x, x.clone(), k_pr=3, k_dc=5)
    assert (m.precision, m.recall, m.coverage) == (1.0, 1.0, 1.0)
    assert m.density > 0.9
