"""Latents, labels and seeding for sampling a generator: truncated normal latents, the label pool samples draw
from, and a seeded global RNG (the Hamburger draws its random bases from it).

Both :mod:`hamgan.sample` and :mod:`hamgan.bn_modes` (standing statistics draw latents as evaluation does) use
them; they live here so that neither imports the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn


def truncated_z(n: int, z_dim: int, truncation: float | None = None, generator: torch.Generator | None = None,
                ) -> torch.Tensor:
    """(n, z_dim) standard normal latents; with ``truncation`` T, drawn from the normal truncated to [-T, T].

    Truncated draws use the inverse CDF (``sqrt(2) erfinv(u erf(T / sqrt 2))``, u uniform in (-1, 1), in float64):
    one uniform per entry, no redraw loop, and T -> 0 gives latents -> 0.
    """
    if truncation is not None and truncation <= 0:
        raise ValueError(f"truncation must be > 0 (or None for no truncation), got {truncation}")
    if truncation is None:
        return torch.randn(n, z_dim, generator=generator)
    u = torch.rand(n, z_dim, generator=generator, dtype=torch.float64) * 2 - 1
    mass = torch.special.erf(torch.tensor(truncation / 2 ** 0.5, dtype=torch.float64))
    z = 2 ** 0.5 * torch.special.erfinv(u * mass)
    return z.clamp(-truncation, truncation).float()


@contextlib.contextmanager
def seeded_rng(seed: int, device: str | torch.device) -> Iterator[None]:
    """Run with torch's global RNG (CPU, and ``device`` if CUDA) seeded, restoring it afterwards.

    The Hamburger draws its initial bases from the global RNG in every forward pass; seeding it makes samples
    reproducible without disturbing the caller's random state.
    """
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def check_classes(classes: Sequence[int], num_classes: int) -> None:
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"class index {bad[0]} is out of range: this generator has {num_classes} classes "
                         f"(valid: 0..{num_classes - 1})")


def label_pool(G: nn.Module, classes: Sequence[int] | None = None) -> torch.Tensor:
    """The labels samples are drawn from uniformly: ``classes`` (checked) or all of G's classes, long (K,)."""
    pool = torch.arange(G.num_classes) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
    check_classes(pool.tolist(), G.num_classes)
    return pool
