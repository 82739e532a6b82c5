"""Batch-norm statistics of a generator at evaluation: ``running``, ``standing`` or ``batch``.

- ``running``: the stored running statistics (``G.eval()``). For an EMA generator these are the *raw* G's statistics,
  copied by :class:`hamgan.ema.EMA`: they do not belong to the averaged weights.
- ``standing``: BigGAN's standing statistics. Every batch norm is reset, S batches of samples (latents and labels
  drawn as the evaluation draws them: same class distribution, same truncation) run through G, and the cumulative
  average of their batch statistics is used. The default for an EMA generator.
- ``batch``: every batch is normalised with its own statistics (BN in training mode), as the official HamGAN code
  evaluates its generator (``--protocol hamgan-tf``). Samples then depend on the batch they are drawn in.

Spectral norm: the EMA copies the raw G's power-iteration vectors u, v, so its sigma estimates belong to the raw
weights. ``sn_iterations > 0`` re-estimates them for G's own weights first (power iterations, no gradient).

Everything is undone on exit: buffers (BN statistics, u, v), momenta and training flags come back as they were, and
the caller's random streams are untouched (the standing draws use their own generator and a forked global RNG, which
the Hamburger's random bases draw from). Use it around any sampling code::

    with bn_mode(G_ema, BNMode("standing", batches=16, batch_size=100), seed=0):
        grid = class_grid(G_ema, classes, 8)          # the library's sampling functions leave the mode as set

or pass ``bn=`` to the sampling functions (:mod:`hamgan.sample`, :mod:`hamgan.metrics.features`), which do this.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from hamgan.latents import label_pool, seeded_rng, truncated_z
from hamgan.nn.spectral_norm import refresh as sn_refresh

BN_MODES = ("running", "standing", "batch")
SN_REFRESH_EMA = 20  # default power iterations re-estimating an EMA generator's spectral-norm u, v (see README)
STANDING_SEED_OFFSET = 0x57A4D  # standing draws use seed + this, so they differ from the evaluation's latents

_ACTIVE: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()  # models inside a bn_mode block


@dataclass(frozen=True)
class BNMode:
    """How a generator's batch norms are evaluated.

    Attributes:
        mode: "running", "standing" or "batch".
        batches: S, number of batches accumulated for standing statistics.
        batch_size: images per standing batch.
        sn_iterations: power iterations re-estimating spectral-norm u, v for G's weights first (0: keep them).
    """

    mode: str = "running"
    batches: int = 16
    batch_size: int = 100
    sn_iterations: int = 0

    def __post_init__(self) -> None:
        if self.mode not in BN_MODES:
            raise ValueError(f"batch-norm mode must be one of {', '.join(BN_MODES)}, got {self.mode!r}")
        if self.batches < 1 or self.batch_size < 2:
            raise ValueError(f"standing statistics need batches >= 1 and batch_size >= 2, got {self.batches} and "
                             f"{self.batch_size}")
        if self.sn_iterations < 0:
            raise ValueError(f"sn_iterations must be >= 0, got {self.sn_iterations}")

    def describe(self) -> str:
        """e.g. 'standing (16 x 100)' or 'running'; with ', SN refreshed' when u, v are re-estimated."""
        text = f"standing ({self.batches} x {self.batch_size})" if self.mode == "standing" else self.mode
        return text + (f", SN refreshed ({self.sn_iterations} it.)" if self.sn_iterations else "")

    def as_dict(self) -> dict:
        """For JSON outputs."""
        out = {"bn": self.mode, "sn_iterations": self.sn_iterations}
        if self.mode == "standing":
            out.update(bn_batches=self.batches, bn_batch_size=self.batch_size)
        return out


def as_bn_mode(bn: BNMode | str | None) -> BNMode:
    """A :class:`BNMode` from a mode, a mode name, or None (running)."""
    if bn is None:
        return BNMode()
    return bn if isinstance(bn, BNMode) else BNMode(bn)


def default_mode(ema: bool) -> str:
    """'standing' for an EMA generator (its copied statistics belong to the raw G), else 'running'."""
    return "standing" if ema else "running"


def resolve_mode(name: str, ema: bool) -> str:
    """'auto' -> :func:`default_mode`; other names are returned checked."""
    if name == "auto":
        return default_mode(ema)
    if name not in BN_MODES:
        raise ValueError(f"batch-norm mode must be auto or one of {', '.join(BN_MODES)}, got {name!r}")
    return name


def from_config(fid_cfg, ema: bool) -> BNMode:
    """The BNMode of a ``train.fid`` config section (:class:`hamgan.config.FIDConfig`) for an EMA or raw G."""
    sn = fid_cfg.sn_refresh if fid_cfg.sn_refresh is not None else (SN_REFRESH_EMA if ema else 0)
    return BNMode(resolve_mode(fid_cfg.bn, ema), fid_cfg.bn_batches, fid_cfg.bn_batch_size, sn)


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def refresh_spectral_norm(model: nn.Module, iterations: int = 20) -> int:
    """Run ``iterations`` power iterations of every spectral norm in ``model`` on its current weight.

    Updates the u, v buffers in place (:func:`hamgan.nn.spectral_norm.refresh`). Returns the number of spectrally
    normalised weights refreshed.
    """
    return sum(sn_refresh(module, iterations) for module in model.modules())


@torch.no_grad()
def accumulate_standing_stats(
    G: nn.Module, batches: int = 16, batch_size: int = 100, classes: Sequence[int] | None = None,
    truncation: float | None = None, seed: int = 0, device: str | torch.device | None = None,
) -> None:
    """Reset G's batch norms and set them to the cumulative average over ``batches`` batches of samples.

    Latents: truncated normal as :func:`hamgan.latents.truncated_z`; labels uniform over ``classes`` (default all).
    Leaves every module of G in eval mode; the caller's RNG streams are untouched.
    """
    device = next(G.parameters()).device if device is None else device
    norms = batch_norms(G)
    momenta = [m.momentum for m in norms]
    G.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the mean over all batches so far
        m.train()
    pool = label_pool(G, classes)
    gen = torch.Generator().manual_seed(seed + STANDING_SEED_OFFSET)
    try:
        for k in range(batches):
            z = truncated_z(batch_size, G.z_dim, truncation, gen)
            y = pool[torch.randint(len(pool), (batch_size,), generator=gen)]
            with seeded_rng(seed + STANDING_SEED_OFFSET + k, device):
                G(z.to(device), y.to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()


def active_mode(G: nn.Module) -> str | None:
    """The mode of the enclosing :func:`bn_mode` block of G, or None outside one."""
    return _ACTIVE.get(G)


@contextlib.contextmanager
def bn_mode(
    G: nn.Module, bn: BNMode | str | None = None, classes: Sequence[int] | None = None,
    truncation: float | None = None, seed: int = 0, device: str | torch.device | None = None,
) -> Iterator[nn.Module]:
    """Within the block G is in eval mode with the chosen batch-norm statistics; all is restored on exit.

    ``classes``, ``truncation`` and ``seed`` describe the evaluation's sampling, which the standing statistics
    follow (their draws use ``seed`` + an offset, not the evaluation's latents). Yields G.
    """
    bn = as_bn_mode(bn)
    flags = {m: m.training for m in G.modules()}
    buffers = {name: b.detach().clone() for name, b in G.named_buffers()}
    outer = _ACTIVE.get(G)
    try:
        G.eval()
        if bn.sn_iterations:
            refresh_spectral_norm(G, bn.sn_iterations)
        if bn.mode == "standing":
            accumulate_standing_stats(G, bn.batches, bn.batch_size, classes, truncation, seed, device)
        elif bn.mode == "batch":
            for m in batch_norms(G):
                m.train()
        _ACTIVE[G] = bn.mode
        yield G
    finally:
        with torch.no_grad():
            for name, b in G.named_buffers():
                b.copy_(buffers[name])
        for m, training in flags.items():
            m.train(training)
        if outer is None:
            _ACTIVE.pop(G, None)
        else:
            _ACTIVE[G] = outer


@contextlib.contextmanager
def sampling_mode(
    G: nn.Module, bn: BNMode | str | None, classes: Sequence[int] | None = None, truncation: float | None = None,
    seed: int = 0, device: str | torch.device | None = None,
) -> Iterator[nn.Module]:
    """What the library's sampling functions use: ``bn`` None inside a :func:`bn_mode` block leaves G as that
    block set it; otherwise a :func:`bn_mode` block of ``bn`` (None: running statistics, i.e. plain eval mode)."""
    if bn is None and active_mode(G) is not None:
        yield G
        return
    with bn_mode(G, bn, classes, truncation, seed, device):
        yield G
