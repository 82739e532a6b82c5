"""What context block a network holds: small frozen descriptions that build the block for a given feature map.

:class:`hamgan.nn.networks.Generator` and :class:`~hamgan.nn.networks.Discriminator` take one of these (or
``None``: no context block) as ``context`` and call its :meth:`build` with the channels of the feature map where the
block sits, so a network is described by plain values::

    Generator(resolution=128, num_classes=1000, channels=64, context=HamburgerSpec(dim=256, rank=32))

- :class:`HamburgerSpec`: a :class:`~hamgan.nn.hamburger.Hamburger` (matrix decomposition, reference §1);
- :class:`AttentionSpec`: SAGAN's :class:`~hamgan.nn.attention.SelfAttention`;
- :class:`YLGSpec`: YLG's sparse 2-D :class:`~hamgan.nn.ylg.YLGAttention`.

The defaults of :class:`HamburgerSpec` are those of the official HamGAN generator but its width: ``dim=None`` takes
the channels of the feature map (HamGAN-128: 256 in G, 128 in D, where the official code sets them explicitly).
A config's ``model.g`` / ``model.d`` maps onto a spec in :func:`hamgan.nn.from_config.context_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn as nn

from hamgan.nn.attention import SelfAttention
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.layers import BNOptions
from hamgan.nn.spectral_norm import SNOptions
from hamgan.nn.ylg import YLGAttention


@dataclass(frozen=True)
class HamburgerSpec:
    """A Hamburger block; the fields are the arguments of :class:`~hamgan.nn.hamburger.Hamburger` of that name
    (``kind`` is its ``ham``), except ``dim``: ``None`` means the block's channels C (not C / groups)."""

    kind: Literal["nmf", "vq", "cd"] = "nmf"
    steps: int = 6  # K, iterations of the matrix decomposition in training
    eval_steps: int | None = None  # K at eval time (None: same as steps)
    grad: Literal["one_step", "bptt"] = "one_step"
    version: Literal["v1", "v2"] = "v1"
    groups: int = 1  # S
    dim: int | None = None  # D (None: the channels of the feature map)
    rank: int = 32  # R
    bread_bias: bool = False  # biases on the breads (official: none)
    cheese: Literal["official", "legacy"] = "official"  # the v2 cheese

    def build(self, channels: int, num_classes: int | None = None, spectral_norm: bool | SNOptions = True,
              bn: BNOptions = BNOptions()) -> Hamburger:
        """The block for a (B, ``channels``, H, W) map; ``num_classes``: class-conditional BN (generator), None:
        unconditional (discriminator); ``spectral_norm``: the breads' options; ``bn``: its batch norms'."""
        return Hamburger(
            channels,
            ham=self.kind,
            dim=self.dim or channels,
            rank=self.rank,
            groups=self.groups,
            steps=self.steps,
            eval_steps=self.eval_steps,
            grad=self.grad,
            version=self.version,
            num_classes=num_classes,
            spectral_norm=spectral_norm,
            bread_bias=self.bread_bias,
            cheese=self.cheese,
            bn=bn,
        )


@dataclass(frozen=True)
class AttentionSpec:
    """SAGAN's self-attention block (no settings: C/8 query and key, C/2 value channels)."""

    def build(self, channels: int, num_classes: int | None = None, spectral_norm: bool | SNOptions = True,
              bn: BNOptions = BNOptions()) -> SelfAttention:
        """The block for a (B, ``channels``, H, W) map (unconditional, no batch norm: ``num_classes``, ``bn``
        are ignored)."""
        return SelfAttention(channels, spectral_norm=spectral_norm)


@dataclass(frozen=True)
class YLGSpec:
    """YLG's sparse attention with ``heads`` heads (channels must be a multiple of 8 * heads)."""

    heads: int = 8

    def build(self, channels: int, num_classes: int | None = None, spectral_norm: bool | SNOptions = True,
              bn: BNOptions = BNOptions()) -> YLGAttention:
        """The block for a (B, ``channels``, H, W) map (unconditional, no batch norm: ``num_classes``, ``bn``
        are ignored)."""
        return YLGAttention(channels, heads=self.heads, spectral_norm=spectral_norm)


ContextSpec = HamburgerSpec | AttentionSpec | YLGSpec
CONTEXT_SPECS: tuple[type, ...] = (HamburgerSpec, AttentionSpec, YLGSpec)

__all__ = ["AttentionSpec", "CONTEXT_SPECS", "ContextSpec", "HamburgerSpec", "YLGSpec"]
