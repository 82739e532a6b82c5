"""Class-conditional SAGAN-style generator and projection discriminator with a pluggable context block.

Both networks are built from :data:`ARCHITECTURES`, a table keyed by output resolution that lists, per residual
block, the input and output widths (multiples of the network's ``channels``, i.e. gf_dim / df_dim), whether the
block resamples, and its output resolution.

At 128 this is the TF-GAN SAGAN layout of HamGAN (reference §2), with gf = df = 64:

    G: z -SN-linear-> (16gf, 4, 4) -> block1 16gf@8 -> block2 8gf@16 -> block3 4gf@32 -> [context]
       -> block4 2gf@64 -> block5 gf@128 -> BN -> ReLU -> SN conv3x3 -> tanh
    D: optimized block df@64 -> block2 2df@32 -> [context] -> block3 4df@16 -> block4 8df@8 -> block5 16df@4
       -> block6 16df@4 (no downsampling) -> ReLU -> global sum pool -> SN-linear -> 1, + <SN-embedding(y), h>

Each network has its own context block (``context``: None or a description of :mod:`hamgan.nn.context`,
``HamburgerSpec``, ``AttentionSpec`` or ``YLGSpec``). It sits right after the first block whose output resolution is
``context_res``. Valid values are the block output resolutions of the table:

    ======  ==================  ============
    R       G context_res       D context_res
    ======  ==================  ============
    32      8, 16, 32           16, 8
    64      8, 16, 32, 64       32, 16, 8, 4
    128     8, 16, 32, 64, 128  64, 32, 16, 8, 4
    ======  ==================  ============

32x32 (TF SAGAN, HamGAN, YLG) is the default; BigGAN-PyTorch and StudioGAN place attention at 64x64.
``context_res`` is not checked when ``context`` is None.

Paired initialisation (a ``seed``, ``train.paired``): every layer draws its initial weight from a stream keyed by
the run seed and its qualified name (:func:`hamgan.nn.layers.init_weights`), "G." / "D." + the module name. The
names do not depend on the context block: the residual blocks are ``blocks.<i>`` whatever block follows them, and
the context block is the attribute ``context``, outside that list, so ``G.blocks.2.conv1`` is the same layer with
the same initial weight in HamGAN, SAGAN and a network without context; the context blocks' layers (``context.*``)
draw from streams no other layer uses.

The recipe around the layout is plain arguments whose defaults are the official one (TF-GAN's): the init
(``init``), the batch norms (``bn``, :data:`TF_BN`) and the spectral norm (``sn`` for the residual networks' convs,
linears and embedding, :data:`TF_SN`; ``context_sn`` for the 1x1 convs inside the context blocks,
:data:`TF_CONTEXT_SN`; as TF-GAN's ``snconv2d`` / ``sn_conv1x1``).

The networks know nothing of :mod:`hamgan.config`: :mod:`hamgan.nn.from_config` maps a run's ``model`` config onto
these arguments (``generator_from_config``, ``discriminator_from_config``). Every error about an argument also
names the config key it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.nn.blocks import DBlock, GBlock, OptimizedDBlock
from hamgan.nn.context import CONTEXT_SPECS, ContextSpec
from hamgan.nn.layers import (BNOptions, InitScheme, batch_norm, init_weights, make_bn, sn_conv2d, sn_embedding,
                              sn_linear)
from hamgan.nn.spectral_norm import SNOptions

G_BASE_RES = 4  # resolution of the generator's first feature map, reshaped from the linear layer
NETS = {"g": "generator", "d": "discriminator"}
TF_BN = BNOptions(eps=1e-3, momentum=0.001, biased_running_var=True)  # tfgan.tpu.batch_norm (decay 0.999)
TF_SN = SNOptions(bound="at_most_one", eval_iteration=True, warmup=0)  # snconv2d, snlinear, sn_embedding
TF_CONTEXT_SN = SNOptions(bound="exact", eval_iteration=True, warmup=0)  # sn_conv1x1 of the context blocks


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
        raise ValueError(f"resolution must be one of {sorted(ARCHITECTURES)} (config: model.resolution), got "
                         f"{resolution!r}")
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
            f"context_res={context_res} (config: model.{net}.context_res) is impossible at resolution {resolution}: "
            f"the {NETS[net]}'s context block must sit at one of {valid} (a block output resolution); set "
            "context_res to one of these"
        )
    specs = getattr(architecture(resolution), net)
    return next(i for i, s in enumerate(specs) if s.res == context_res)


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
                f"class labels must lie in [0, {num_classes}) (num_classes={num_classes}; config: model.num_classes), "
                f"got labels in [{lo}, {hi}]"
            )


def _check_args(net: str, **sizes: int) -> None:
    """Every size >= 1 (an int), naming the argument and the config key it comes from."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            key = f"model.{net}.channels" if name == "channels" else f"model.{name}"
            raise ValueError(f"{name} of the {NETS[net]} must be an integer >= 1 (config: {key}), got {value!r}")


def _build_context(
    net: str, context: ContextSpec | None, context_res: int, resolution: int, width: int, num_classes: int | None,
    spectral_norm: bool | SNOptions, bn: BNOptions,
) -> tuple[int | None, nn.Module | None]:
    """(index of the block the context block follows, the block) of ``net`` ("g" or "d"); (None, None) without one.
    ``num_classes``: class-conditional (G), None: unconditional (D)."""
    if context is None:
        return None, None
    if not isinstance(context, CONTEXT_SPECS):
        names = ", ".join(c.__name__ for c in CONTEXT_SPECS)
        raise ValueError(f"context of the {NETS[net]} must be None or one of {names} (hamgan.nn.context), got "
                         f"{context!r}")
    position = locate_context(resolution, net, context_res)
    channels = getattr(architecture(resolution), net)[position].out_mult * width
    return position, context.build(channels, num_classes, spectral_norm=spectral_norm, bn=bn)


def _context_sn(sn: bool | SNOptions, context_sn: bool | SNOptions | None) -> bool | SNOptions:
    """The context block's spectral norm: ``context_sn``, or by default TF-GAN's W / sigma when ``sn`` is on."""
    if context_sn is not None:
        return context_sn
    return False if sn is False else TF_CONTEXT_SN


class Generator(nn.Module):
    """Class-conditional residual generator (SAGAN layout) with a context block.

    Args:
        resolution: output resolution R, a key of :data:`ARCHITECTURES` (32, 64, 128).
        num_classes: number of classes of the labels (the class-conditional batch norms).
        channels: the width gf_dim: the blocks' channels are multiples of it (the table).
        z_dim: size of the latent vector.
        img_channels: channels of the images (3: RGB, 1: grey).
        context: the context block (:mod:`hamgan.nn.context`: ``HamburgerSpec(...)``, ``AttentionSpec()``,
            ``YLGSpec(...)``), built class-conditional; None: no context block.
        context_res: where it sits: after the first block of that output resolution (see the module doc).
        init: ``"xavier"`` (official), ``"orthogonal"`` or ``"normal"`` (:func:`hamgan.nn.layers.init_weights`).
        bn: the batch norms' settings (also the context block's); default TF-GAN's.
        sn: spectral norm of the convs and linears (:class:`~hamgan.nn.spectral_norm.SNOptions`; default TF-GAN's
            W / max(1, sigma)); ``False`` gives the same parameter count and MACs and is only meant for cheap
            analysis, e.g. ``hamgan.info``.
        context_sn: spectral norm of the context block's 1x1 convs; None: TF-GAN's W / sigma, or off with ``sn=False``.
        seed: the run seed of paired initialisation (``train.paired``): every layer starts from a named stream of
            its own (see the module doc). None: torch's global generator.

    A config builds it with :func:`hamgan.nn.from_config.generator_from_config`.

    Shapes: ``z`` (B, z_dim), ``y`` (B,) long in [0, num_classes) -> images (B, img_channels, R, R) in [-1, 1].

    Attributes: ``z_dim``, ``num_classes``, ``resolution``, ``img_channels``, ``base_channels`` (channels of the
    first 4x4 map), ``biased_running_var``, ``blocks`` (the residual blocks), ``context`` (the context block or None)
    and ``context_position`` (index of the block it follows, or None).
    """

    def __init__(
        self,
        resolution: int,
        num_classes: int,
        channels: int,
        z_dim: int = 128,
        img_channels: int = 3,
        context: ContextSpec | None = None,
        context_res: int = 32,
        init: InitScheme = "xavier",
        bn: BNOptions = TF_BN,
        sn: bool | SNOptions = TF_SN,
        context_sn: bool | SNOptions | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        specs = architecture(resolution).g
        _check_args("g", img_channels=img_channels, num_classes=num_classes, z_dim=z_dim, channels=channels)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.resolution = resolution
        self.img_channels = img_channels
        self.base_channels = specs[0].in_mult * channels
        self.biased_running_var = bn.biased_running_var

        self.linear = sn_linear(z_dim, G_BASE_RES * G_BASE_RES * self.base_channels, spectral_norm=sn)
        self.blocks = nn.ModuleList(
            GBlock(s.in_mult * channels, s.out_mult * channels, num_classes, spectral_norm=sn, bn=bn) for s in specs
        )
        self.context_position, self.context = _build_context(
            "g", context, context_res, resolution, channels, num_classes, _context_sn(sn, context_sn), bn
        )
        out_ch = specs[-1].out_mult * channels
        self.bn = make_bn(out_ch, bn)
        self.conv_out = sn_conv2d(out_ch, img_channels, 3, padding=1, spectral_norm=sn)
        init_weights(self, init, seed=seed, prefix="G")

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}) (z_dim={self.z_dim}; config: model.z_dim), got "
                             f"{tuple(z.shape)}")
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
        resolution: input resolution R, a key of :data:`ARCHITECTURES` (32, 64, 128).
        num_classes: number of classes of the labels (the projection embedding).
        channels: the width df_dim: the blocks' channels are multiples of it (the table).
        img_channels: channels of the images.
        context: the context block (:mod:`hamgan.nn.context`), built unconditional; None: no context block.
        context_res: where it sits: after the first block of that output resolution (see the module doc).
        init: the weight init (see :class:`Generator`).
        bn: the settings of the context block's batch norms (D has none of its own; the Hamburger v2 has some).
        sn: spectral norm of the convs, linears and the embedding (see :class:`Generator`).
        context_sn: spectral norm of the context block's 1x1 convs (see :class:`Generator`).
        seed: the run seed of paired initialisation (see :class:`Generator`).

    A config builds it with :func:`hamgan.nn.from_config.discriminator_from_config`.

    Shapes: ``x`` (B, img_channels, R, R), ``y`` (B,) long in [0, num_classes) -> logits (B,).

    Attributes: ``num_classes``, ``resolution``, ``img_channels``, ``blocks``, ``context`` (the context block or
    None) and ``context_position`` (index of the block it follows, or None).
    """

    def __init__(
        self,
        resolution: int,
        num_classes: int,
        channels: int,
        img_channels: int = 3,
        context: ContextSpec | None = None,
        context_res: int = 32,
        init: InitScheme = "xavier",
        bn: BNOptions = TF_BN,
        sn: bool | SNOptions = TF_SN,
        context_sn: bool | SNOptions | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        specs = architecture(resolution).d
        _check_args("d", img_channels=img_channels, num_classes=num_classes, channels=channels)
        self.num_classes = num_classes
        self.resolution = resolution
        self.img_channels = img_channels

        first, *rest = specs
        self.blocks = nn.ModuleList(
            [OptimizedDBlock(img_channels, first.out_mult * channels, spectral_norm=sn)]
            + [DBlock(s.in_mult * channels, s.out_mult * channels, downsample=s.resample, spectral_norm=sn)
               for s in rest]
        )
        self.context_position, self.context = _build_context(
            "d", context, context_res, resolution, channels, None, _context_sn(sn, context_sn), bn
        )
        features = specs[-1].out_mult * channels
        self.linear = sn_linear(features, 1, spectral_norm=sn)
        self.embedding = sn_embedding(num_classes, features, spectral_norm=sn)
        init_weights(self, init, seed=seed, prefix="D")

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
    "TF_BN",
    "TF_CONTEXT_SN",
    "TF_SN",
    "architecture",
    "locate_context",
    "valid_context_res",
]
