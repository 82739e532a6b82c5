"""Residual blocks of the SAGAN / HamGAN generator and discriminator (reference §2, TF-GAN SAGAN layout).

- :class:`GBlock`: ``CBN - ReLU - up 2x - conv3x3 - CBN - ReLU - conv3x3``, shortcut ``up 2x - conv1x1``.
- :class:`DBlock`: ``ReLU - conv3x3 - ReLU - conv3x3 (- avgpool 2x2)``, shortcut ``conv1x1 (- avgpool 2x2)`` when
  the block downsamples or changes the width, else the identity.
- :class:`OptimizedDBlock`: the discriminator's first block, applied to the image: ``conv3x3 - ReLU - conv3x3 -
  avgpool 2x2``, shortcut ``avgpool 2x2 - conv1x1`` (no ReLU on the raw pixels).

Upsampling is nearest-neighbour 2x, downsampling 2x2 average pooling. Every conv, the 1x1 shortcuts included,
has a bias and is spectrally normalised unless ``spectral_norm=False`` (TF-GAN's ``snconv2d``: W / max(1, sigma)
with the networks' official options); the class-conditional batch norms carry a per-class gain and bias.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.nn.layers import BNOptions, ConditionalBatchNorm2d, sn_conv2d
from hamgan.nn.spectral_norm import SNOptions


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return F.avg_pool2d(x, 2)


class GBlock(nn.Module):
    """Upsampling residual block of the generator, conditioned on the class label.

    Args:
        in_ch, out_ch: input and output channels.
        num_classes: number of classes of the conditional batch norms.
        spectral_norm: spectrally normalise the convs (``True``: torch's spectral norm, or an SNOptions).
        bn: eps, momentum and running-variance convention of the conditional batch norms.

    Shapes: ``x`` (B, in_ch, H, W), ``y`` (B,) long -> (B, out_ch, 2H, 2W).
    """

    def __init__(
        self, in_ch: int, out_ch: int, num_classes: int, spectral_norm: bool | SNOptions = True,
        bn: BNOptions = BNOptions(),
    ) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_ch, num_classes, bn)
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        self.bn2 = ConditionalBatchNorm2d(out_ch, num_classes, bn)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        self.shortcut = sn_conv2d(in_ch, out_ch, 1, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv1(upsample(F.relu(self.bn1(x, y))))
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.shortcut(upsample(x))


class DBlock(nn.Module):
    """Pre-activation residual block of the discriminator, optionally downsampling.

    Args:
        in_ch, out_ch: input and output channels.
        downsample: halve the resolution with 2x2 average pooling.
        spectral_norm: spectrally normalise the convs.

    Shapes: ``x`` (B, in_ch, H, W) -> (B, out_ch, H/2, W/2) (or (B, out_ch, H, W) without downsampling).
    """

    def __init__(
        self, in_ch: int, out_ch: int, downsample: bool = True, spectral_norm: bool | SNOptions = True
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        learnable_shortcut = downsample or in_ch != out_ch
        self.shortcut = sn_conv2d(in_ch, out_ch, 1, spectral_norm=spectral_norm) if learnable_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        s = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, s = downsample(h), downsample(s)
        return h + s

    def extra_repr(self) -> str:
        return f"downsample={self.downsample}"


class OptimizedDBlock(nn.Module):
    """First, downsampling block of the discriminator, applied to the image (no activation on the input).

    Args:
        in_ch: image channels.
        out_ch: output channels.
        spectral_norm: spectrally normalise the convs.

    Shapes: ``x`` (B, in_ch, H, W) -> (B, out_ch, H/2, W/2).
    """

    def __init__(self, in_ch: int, out_ch: int, spectral_norm: bool | SNOptions = True) -> None:
        super().__init__()
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, padding=1, spectral_norm=spectral_norm)
        self.shortcut = sn_conv2d(in_ch, out_ch, 1, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = downsample(self.conv2(F.relu(self.conv1(x))))
        return h + self.shortcut(downsample(x))


__all__ = ["DBlock", "GBlock", "OptimizedDBlock", "downsample", "upsample"]
