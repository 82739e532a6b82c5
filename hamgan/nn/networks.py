"""Class-conditional SAGAN-style generator and projection discriminator with a pluggable context block.

Both networks are built from :data:`ARCHITECTURES`, a table keyed by output resolution that lists, per residual
block, the input and output widths (multiples of ``cfg.g.channels`` / ``cfg.d.channels``, i.e. gf_dim / df_dim),
whether the block resamples, and its output resolution.

At 128 this is the TF-GAN SAGAN layout of HamGAN (reference §2), with gf = df = 64:

    G: z -SN-linear-> (16gf, 4, 4) -> block1 16gf@8 -> block2 8gf@16 -> block3 4gf@32 -> [context]
       -> block4 2gf@64 -> block5 gf@128 -> BN -> ReLU -> SN conv3x3 -> tanh
    D: optimized block df@64 -> block2 2df@32 -> [context] -> block3 4df@16 -> block4 8df@8 -> block5 16df@4
       -> block6 16df@4 (no downsampling) -> ReLU -> global sum pool -> SN-linear -> 1, + <SN-embedding(y), h>

Each network has its own context block (``cfg.g.context`` / ``cfg.d.context``: ``none`` | ``ham`` | ``attention`` |
``ylg``, with the Hamburger settings ``cfg.g.ham`` / ``cfg.d.ham`` and YLG's ``cfg.g.ylg`` / ``cfg.d.ylg``). It sits
right after the first block whose output resolution is ``cfg.g.context_res`` / ``cfg.d.context_res``. Valid values
are the block output resolutions of the table:

    ======  ==================  ============
    R       G context_res       D context_res
    ======  ==================  ============
    32      8, 16, 32           16, 8
    64      8, 16, 32, 64       32, 16, 8, 4
    128     8, 16, 32, 64, 128  64, 32, 16, 8, 4
    ======  ==================  ============

32x32 (TF SAGAN, HamGAN, YLG) is the default; BigGAN-PyTorch and StudioGAN place attention at 64x64.
``context_res`` is not checked when ``context: none``.

Paired initialisation (a ``seed``, ``train.paired``): every layer draws its initial weight from a stream keyed by
the run seed and its qualified name (:func:`hamgan.nn.layers.init_weights`), "G." / "D." + the module name. The
names do not depend on the context block: the residual blocks are ``blocks.<i>`` whatever block follows them, and
the context block is the attribute ``context``, outside that list, so ``G.blocks.2.conv1`` is the same layer with
the same initial weight in HamGAN, SAGAN and a network without context; the context blocks' layers (``context.*``)
draw from streams no other layer uses.

The recipe around the layout comes from ``cfg``: the init (``cfg.init``), the batch norms of G (``cfg.bn``) and the
spectral norm (``cfg.sn``: ``bound`` for the residual networks' convs, linears and embedding, ``context_bound`` for
the 1x1 convs inside the context blocks, as TF-GAN's ``snconv2d`` / ``sn_conv1x1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.config import ModelConfig, NetConfig
from hamgan.nn.attention import SelfAttention
from hamgan.nn.blocks import DBlock, GBlock, OptimizedDBlock
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.layers import BNOptions, batch_norm, init_weights, make_bn, sn_conv2d, sn_embedding, sn_linear
from hamgan.nn.spectral_norm import SNOptions
from hamgan.nn.ylg import YLGAttention

G_BASE_RES = 4  # resolution of the generator's first feature map, reshaped from the linear layer


@dataclass(frozen=True)
class BlockSpec:
    """One residual block of the architecture table.

    Channels are multiples of the network width (gf_dim / df_dim). ``in_mult=None`` marks the discriminator's first
    (optimized) block, whose input is the image (``img_channels`` channels).
    """

    in_mult: int | None
    out_mult: int
    resample: bool  # G: nearest 2x upsampling; D: 2x2 average pooling
    res: int  # output resolution


@dataclass(frozen=True)
class Architecture:
    """Blocks of G (the first one takes the (in_mult * width, 4, 4) output of the linear layer) and of D."""

    g: tuple[BlockSpec, ...]
    d: tuple[BlockSpec, ...]


B = BlockSpec
ARCHITECTURES: dict[int, Architecture] = {
    # BigGAN-CIFAR style: constant width 4 * channels.
    32: Architecture(
        g=(B(4, 4, True, 8), B(4, 4, True, 16), B(4, 4, True, 32)),
        d=(B(None, 4, True, 16), B(4, 4, True, 8), B(4, 4, False, 8), B(4, 4, False, 8)),
    ),
    # The 128 layout less one stage (as BigGAN-PyTorch at 64).
    64: Architecture(
        g=(B(16, 16, True, 8), B(16, 8, True, 16), B(8, 4, True, 32), B(4, 2, True, 64)),
        d=(B(None, 1, True, 32), B(1, 2, True, 16), B(2, 4, True, 8), B(4, 8, True, 4), B(8, 16, False, 4)),
    ),
    # TF-GAN SAGAN / HamGAN (reference §2).
    128: Architecture(
        g=(B(16, 16, True, 8), B(16, 8, True, 16), B(8, 4, True, 32), B(4, 2, True, 64), B(2, 1, True, 128)),
        d=(
            B(None, 1, True, 64),
            B(1, 2, True, 32),
            B(2, 4, True, 16),
            B(4, 8, True, 8),
            B(8, 16, True, 4),
            B(16, 16, False, 4),
        ),
    ),
}
del B


def architecture(resolution: int) -> Architecture:
    """The table entry of ``resolution``, with a clear error for an unsupported one."""
    if resolution not in ARCHITECTURES:
        raise ValueError(f"resolution must be one of {sorted(ARCHITECTURES)}, got {resolution}")
    return ARCHITECTURES[resolution]


def valid_context_res(resolution: int, net: str) -> list[int]:
    """Resolutions where the context block may sit in ``net`` ("g" or "d"): the block output resolutions."""
    specs = getattr(architecture(resolution), net)
    return list(dict.fromkeys(s.res for s in specs))


def locate_context(resolution: int, net: str, context_res: int) -> int:
    """Index of the block after which the context block sits: the first block whose output is ``context_res``."""
    valid = valid_context_res(resolution, net)
    if context_res not in valid:
        raise ValueError(
            f"model.{net}.context_res={context_res} is impossible at resolution {resolution}: the {net.upper()} "
            f"context block must sit at one of {valid} (a block output resolution); set model.{net}.context_res "
            "to one of these"
        )
    specs = getattr(architecture(resolution), net)
    return next(i for i, s in enumerate(specs) if s.res == context_res)


def bn_options(cfg: ModelConfig) -> BNOptions:
    """The batch-norm options of ``cfg.bn``."""
    return BNOptions(cfg.bn.eps, cfg.bn.momentum, biased_running_var=cfg.bn.running_var == "biased")


def sn_options(cfg: ModelConfig, spectral_norm: bool = True) -> tuple[SNOptions | bool, SNOptions | bool]:
    """Spectral-norm options (residual-network layers, context-block 1x1 convs) of ``cfg.sn``; False, False when
    ``spectral_norm`` is off."""
    if not spectral_norm:
        return False, False
    sn = cfg.sn
    return (SNOptions(sn.bound, sn.eval_iteration, sn.warmup),
            SNOptions(sn.context_bound, sn.eval_iteration, sn.warmup))


def build_context(
    cfg: ModelConfig, net: NetConfig, channels: int, conditional: bool, spectral_norm: bool | SNOptions = True
) -> nn.Module | None:
    """The context block ``net.context`` for a feature map of ``channels`` channels (or None).

    ``conditional``: the Hamburger's batch norms are class-conditional (generator only).
    ``spectral_norm``: the options of the block's 1x1 convs (``True``: from ``cfg.sn.context_bound``).
    """
    if spectral_norm is True:
        spectral_norm = sn_options(cfg)[1]
    if net.context == "none":
        return None
    if net.context == "attention":
        return SelfAttention(channels, spectral_norm=spectral_norm)
    if net.context == "ylg":
        return YLGAttention(channels, heads=net.ylg.heads, spectral_norm=spectral_norm)
    if net.context == "ham":
        ham = net.ham
        return Hamburger(
            channels,
            ham=ham.kind,
            dim=ham.dim or channels,
            rank=ham.rank,
            groups=ham.groups,
            steps=ham.steps,
            eval_steps=ham.eval_steps,
            grad=ham.grad,
            version=ham.version,
            num_classes=cfg.num_classes if conditional else None,
            spectral_norm=spectral_norm,
            bread_bias=ham.bread_bias,
            cheese=ham.v2_cheese,
            bn=bn_options(cfg),
        )
    raise ValueError(f"a network's context must be 'none', 'ham', 'attention' or 'ylg', got {net.context!r}")


def _check_labels(y: torch.Tensor, batch: int, num_classes: int) -> None:
    """Shape and dtype of the labels always; their range only for CPU tensors outside ``torch.compile``.

    Checking the range of a GPU tensor would force a device sync every step; there an out-of-range label fails in the
    embedding / CBN gather instead (a device-side assert).
    """
    if not isinstance(y, torch.Tensor) or y.shape != (batch,) or y.dtype.is_floating_point or y.dtype == torch.bool:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be integer class labels of shape ({batch},) (one per sample), got {got}")
    if y.device.type == "cpu" and not torch.compiler.is_compiling() and batch > 0:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"class labels must lie in [0, {num_classes}) (model.num_classes={num_classes}), got labels in "
                f"[{lo}, {hi}]"
            )


def _check_config(cfg: ModelConfig) -> None:
    architecture(cfg.resolution)
    for name in ("img_channels", "num_classes", "z_dim"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"model.{name} must be >= 1, got {getattr(cfg, name)}")
    for net in ("g", "d"):
        if getattr(cfg, net).channels < 1:
            raise ValueError(f"model.{net}.channels must be >= 1, got {getattr(cfg, net).channels}")


class Generator(nn.Module):
    """Class-conditional residual generator (SAGAN layout) with a context block.

    Args:
        cfg: the model config (resolution, img_channels, num_classes, z_dim, init, bn, sn, g).
        spectral_norm: spectrally normalise every conv and linear (always in HamGAN; ``False`` gives the same
            parameter count and MACs and is only meant for cheap analysis, e.g. ``hamgan.info``).
        seed: the run seed of paired initialisation (``train.paired``): every layer starts from a named stream of
            its own (see the module doc). None: torch's global generator.

    Shapes: ``z`` (B, z_dim), ``y`` (B,) long in [0, num_classes) -> images (B, img_channels, R, R) in [-1, 1].

    Attributes: ``z_dim``, ``num_classes``, ``resolution``, ``img_channels``, ``blocks`` (the residual blocks),
    ``context`` (the context block or None) and ``context_position`` (index of the block it follows, or None).
    """

    def __init__(self, cfg: ModelConfig, spectral_norm: bool = True, seed: int | None = None) -> None:
        super().__init__()
        _check_config(cfg)
        specs = architecture(cfg.resolution).g
        width = cfg.g.channels
        sn, context_sn = sn_options(cfg, spectral_norm)
        bn = bn_options(cfg)
        self.z_dim = cfg.z_dim
        self.num_classes = cfg.num_classes
        self.resolution = cfg.resolution
        self.img_channels = cfg.img_channels
        self.base_channels = specs[0].in_mult * width
        self.biased_running_var = bn.biased_running_var

        self.linear = sn_linear(cfg.z_dim, G_BASE_RES * G_BASE_RES * self.base_channels, spectral_norm=sn)
        self.blocks = nn.ModuleList(
            GBlock(s.in_mult * width, s.out_mult * width, cfg.num_classes, spectral_norm=sn, bn=bn) for s in specs
        )
        if cfg.g.context == "none":
            self.context_position, self.context = None, None
        else:
            self.context_position = locate_context(cfg.resolution, "g", cfg.g.context_res)
            channels = specs[self.context_position].out_mult * width
            self.context = build_context(cfg, cfg.g, channels, conditional=True, spectral_norm=context_sn)
        out_ch = specs[-1].out_mult * width
        self.bn = make_bn(out_ch, bn)
        self.conv_out = sn_conv2d(out_ch, cfg.img_channels, 3, padding=1, spectral_norm=sn)
        init_weights(self, cfg.init, seed=seed, prefix="G")

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}) (model.z_dim={self.z_dim}), got {tuple(z.shape)}")
        _check_labels(y, z.shape[0], self.num_classes)
        h = self.linear(z).view(z.shape[0], self.base_channels, G_BASE_RES, G_BASE_RES)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.context_position:
                h = self.context(h, y)
        h = batch_norm(self.bn, h, self.biased_running_var)
        return torch.tanh(self.conv_out(F.relu(h)))


class Discriminator(nn.Module):
    """Projection discriminator (Miyato & Koyama 2018) of residual blocks with a context block.

    Args:
        cfg: the model config (resolution, img_channels, num_classes, init, sn, d).
        spectral_norm: spectrally normalise every conv, linear and the embedding (see :class:`Generator`).
        seed: the run seed of paired initialisation (see :class:`Generator`).

    Shapes: ``x`` (B, img_channels, R, R), ``y`` (B,) long in [0, num_classes) -> logits (B,).

    Attributes: ``num_classes``, ``resolution``, ``img_channels``, ``blocks``, ``context`` (the context block or
    None) and ``context_position`` (index of the block it follows, or None).
    """

    def __init__(self, cfg: ModelConfig, spectral_norm: bool = True, seed: int | None = None) -> None:
        super().__init__()
        _check_config(cfg)
        specs = architecture(cfg.resolution).d
        width = cfg.d.channels
        sn, context_sn = sn_options(cfg, spectral_norm)
        self.num_classes = cfg.num_classes
        self.resolution = cfg.resolution
        self.img_channels = cfg.img_channels

        first, *rest = specs
        self.blocks = nn.ModuleList(
            [OptimizedDBlock(cfg.img_channels, first.out_mult * width, spectral_norm=sn)]
            + [DBlock(s.in_mult * width, s.out_mult * width, downsample=s.resample, spectral_norm=sn) for s in rest]
        )
        if cfg.d.context == "none":
            self.context_position, self.context = None, None
        else:
            self.context_position = locate_context(cfg.resolution, "d", cfg.d.context_res)
            channels = specs[self.context_position].out_mult * width
            self.context = build_context(cfg, cfg.d, channels, conditional=False, spectral_norm=context_sn)
        features = specs[-1].out_mult * width
        self.linear = sn_linear(features, 1, spectral_norm=sn)
        self.embedding = sn_embedding(cfg.num_classes, features, spectral_norm=sn)
        init_weights(self, cfg.init, seed=seed, prefix="D")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        _check_labels(y, x.shape[0], self.num_classes)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.context_position:
                h = self.context(h)
        h = F.relu(h).sum(dim=(2, 3))  # global sum pooling: (B, C)
        return self.linear(h).squeeze(1) + (self.embedding(y) * h).sum(dim=1)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BlockSpec",
    "Discriminator",
    "G_BASE_RES",
    "Generator",
    "architecture",
    "bn_options",
    "build_context",
    "locate_context",
    "sn_options",
    "valid_context_res",
]
