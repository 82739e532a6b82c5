"""Metrics from k-nearest-neighbour balls around feature vectors: improved precision and recall, density, coverage.

- **Improved precision / recall** (Kynkäänniemi et al. 2019, k = 3): every real feature gets a ball whose radius is
  the distance to its k-th nearest real neighbour; precision is the share of generated features inside at least one
  real ball. Recall swaps the roles (generated balls, real features). Distances ``<=`` the radius count as inside,
  as in the original code and torch-fidelity.
- **Density / coverage** (Naeem et al. 2020, k = 5 as their ``prdc``): real balls only. Density = the number of
  (generated, real ball) memberships / (k * number of generated); coverage = the share of real balls that hold at
  least one generated feature. Distances strictly ``<`` the radius count, as in ``prdc``.

The k-th neighbour of a point excludes itself (the (k+1)-th smallest distance, the first being 0). Features are
Inception pool3 (2048-d), as StudioGAN and torch-fidelity use them (the precision/recall paper used VGG-16). Euclidean
distances in float32 (as torch-fidelity), computed in chunks of rows so memory stays ``chunk * n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def knn_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """(n,) distance of every feature to its k-th nearest other feature of the same set."""
    if not 1 <= k < len(features):
        raise ValueError(f"k-nearest-neighbour radii with k = {k} need more than k features, got {len(features)}")
    f = features.float()
    return torch.cat([torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values
                      for i in range(0, len(f), chunk)])


@dataclass
class Manifold:
    """The four k-NN metrics of generated features against real ones (all in [0, 1] except density)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int


def manifold_metrics(real: torch.Tensor, fake: torch.Tensor, k_pr: int = 3, k_dc: int = 5,
                     chunk: int = 2048) -> Manifold:
    """Precision, recall (k_pr) and density, coverage (k_dc) of ``fake`` (n, d) against ``real`` (m, d)."""
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected features (n, d) with the same d, got {tuple(real.shape)} and {tuple(fake.shape)}")
    real, fake = real.float(), fake.float()
    r_real_pr, r_real_dc = knn_radii(real, k_pr, chunk), knn_radii(real, k_dc, chunk)
    r_fake_pr = knn_radii(fake, k_pr, chunk)
    in_real_ball = 0  # generated features inside at least one real k_pr ball
    memberships = 0  # (generated, real k_dc ball) pairs
    recalled = torch.zeros(len(real), dtype=torch.bool)  # real features inside some generated ball
    nearest_fake = torch.full((len(real),), float("inf"))  # distance of each real feature to the nearest fake
    for i in range(0, len(fake), chunk):
        d = torch.cdist(fake[i:i + chunk], real)  # (c, m)
        in_real_ball += int((d <= r_real_pr).any(1).sum())
        memberships += int((d < r_real_dc).sum())
        recalled |= (d <= r_fake_pr[i:i + chunk, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return Manifold(
        precision=in_real_ball / len(fake), recall=float(recalled.float().mean()),
        density=memberships / (k_dc * len(fake)), coverage=float((nearest_fake < r_real_dc).float().mean()),
        k_pr=k_pr, k_dc=k_dc,
    )
