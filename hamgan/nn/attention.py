"""Self-attention context blocks: the SAGAN baseline HamGAN replaces, and the paper's Table 3 version.

Both are residual and start as the identity: ``x + gamma * attention(x)`` with the scalar ``gamma`` initialised to 0.
Both materialise the full attention map (as SAGAN and the paper's cost table do), so their memory grows with the
square of the number of pixels N = H * W.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.nn.layers import pointwise, sn_conv2d
from hamgan.nn.spectral_norm import SNOptions


def _check_channels(channels: int, multiple: int) -> None:
    if channels < multiple or channels % multiple != 0:
        raise ValueError(f"channels must be a positive multiple of {multiple}, got {channels}")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unscaled dot-product attention with a softmax over the keys.

    Shapes: ``q`` (B, Cq, N), ``k`` (B, Cq, M), ``v`` (B, Cv, M) -> (B, Cv, N).
    """
    logits = torch.bmm(q.transpose(1, 2), k)  # (B, N, M)
    weights = F.softmax(logits, dim=-1)
    return torch.bmm(v, weights.transpose(1, 2))  # (B, Cv, N)


class SelfAttention(nn.Module):
    """SAGAN / BigGAN self-attention block (the HamGAN paper's attention baseline in the GAN).

    theta, phi: 1x1 convs C -> C/8; g: 1x1 conv C -> C/2; phi and g are 2x2 max-pooled (so keys and values are a
    quarter of the pixels); softmax over keys; output 1x1 conv C/2 -> C; ``x + gamma * out`` with ``gamma``
    initialised to 0. All convs are spectrally normalised and bias-free (TF-GAN's ``sn_non_local_block_sim`` with
    ``sn_conv1x1``, and BigGAN-PyTorch). Odd H or W pool with ``ceil_mode`` (TF-GAN's pooling drops the last row
    and column instead; the networks only place the block on even sizes).

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W). ``y`` (class labels) is accepted and ignored.
    """

    def __init__(self, channels: int, spectral_norm: bool | SNOptions = True) -> None:
        super().__init__()
        _check_channels(channels, 8)
        self.channels = channels
        self.theta = sn_conv2d(channels, channels // 8, 1, bias=False, spectral_norm=spectral_norm)
        self.phi = sn_conv2d(channels, channels // 8, 1, bias=False, spectral_norm=spectral_norm)
        self.g = sn_conv2d(channels, channels // 2, 1, bias=False, spectral_norm=spectral_norm)
        self.out = sn_conv2d(channels // 2, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        pixels = x.flatten(2)  # (B, C, N)
        theta = pointwise(self.theta, pixels)  # (B, C/8, N)
        phi = F.max_pool2d(pointwise(self.phi, pixels).view(B, C // 8, H, W), 2, ceil_mode=True)  # (B, C/8, ~H/2, ~W/2)
        g = F.max_pool2d(pointwise(self.g, pixels).view(B, C // 2, H, W), 2, ceil_mode=True)  # (B, C/2, ~H/2, ~W/2)
        o = pointwise(self.out, attend(theta, phi.flatten(2), g.flatten(2)))  # (B, C, N)
        return torch.addcmul(x, self.gamma, o.view(B, C, H, W)).to(x.dtype)  # x + gamma * o, in x's dtype


class FullSelfAttention(nn.Module):
    """Self-attention with four full C x C 1x1 projections (q, k, v, out) and no pooling: paper Table 3.

    ``x + gamma * out(attention(q(x), k(x), v(x)))``, ``gamma`` initialised to 0, softmax over the N keys, all
    projections spectrally normalised and bias-free (4 C^2 parameters: 1.00M for C = 512).

    Shapes: ``x`` (B, C, H, W) -> (B, C, H, W). ``y`` (class labels) is accepted and ignored.
    """

    def __init__(self, channels: int, spectral_norm: bool | SNOptions = True) -> None:
        super().__init__()
        _check_channels(channels, 1)
        self.channels = channels
        self.q = sn_conv2d(channels, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.k = sn_conv2d(channels, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.v = sn_conv2d(channels, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.out = sn_conv2d(channels, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        pixels = x.flatten(2)  # (B, C, N)
        o = attend(pointwise(self.q, pixels), pointwise(self.k, pixels), pointwise(self.v, pixels))
        o = pointwise(self.out, o)  # (B, C, N)
        return torch.addcmul(x, self.gamma, o.view(B, C, H, W)).to(x.dtype)  # x + gamma * o, in x's dtype


__all__ = ["FullSelfAttention", "SelfAttention", "attend"]
