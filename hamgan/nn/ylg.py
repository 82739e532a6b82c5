"""YLG: the "Your Local GAN" sparse two-dimensional attention block (Daras et al., CVPR 2020).

The block is SAGAN's attention split into 8 heads, each restricted by a sparse mask to a pattern of the ESA
("Enumerate, Shift, Apply") construction, as the official code defines it (``sn_attention_block_sim`` and
``masks.py`` of github.com/giannisdaras/ylg, reused unchanged in the HamGAN repository):

1. **Enumerate**: the cells of the key grid (the 2x2 max-pooled h x w map, h = H/2, w = W/2) are numbered in
   Manhattan order: by the distance i + j from the top-left corner, ties by the row i (:func:`manhattan_order`).
2. **1-D patterns** over the n = h*w numbers with stride s = floor(sqrt(n)) (:func:`pattern_1d`), a -> b meaning
   "a may attend to b":

   - ``left_floor`` (LTR): b in [a - a mod s, a], the past of a's block of s numbers;
   - ``right_floor`` (RTL): a in [b - b mod s, b], the transpose: the future of a's block;
   - ``left_repetitive``: b = a, or b mod s = s - 1 (the last number of every block);
   - ``right_repetitive``: b = a, or b mod s = 0 with b + s - 1 < n (the first number of every full block).

3. **Apply**: the 1-D pattern moves to the grid through the numbering, ``M2[o(a), o(b)] = M1[a, b]`` with o the
   Manhattan order (raster index of the a-th cell), giving an (n, n) mask over the key grid in raster order.
4. The queries are the H*W = 4n pixels in raster order; query r uses row ``r mod n`` of the grid mask (the official
   ``get_grid_mask_from_1d`` stacks the (n, n) mask 4 times). So the grid position a query pixel takes in its
   mask is not its own 2-D position: the official code's layout, kept here as it is.

Heads 1-8 use right_floor, right_repetitive, right_floor, right_repetitive, left_floor, left_repetitive, left_floor,
left_repetitive (``get_grid_masks``). Masked logits get -1000 added (not -inf), as the official code.

Channels: theta and phi 1x1 convs C -> C/8 (8 heads of C/64), g C -> C/2 (8 heads of C/16), phi and g 2x2
max-pooled, the heads' outputs concatenated as the official code does (channel k * 8 + head, "heads to the end"),
output 1x1 conv C/2 -> C, ``x + gamma * out`` with gamma initialised to 0. All convs bias-free and spectrally
normalised (exact bound, ``sn_conv1x1``). The parameters are those of the SAGAN block.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.nn.layers import pointwise, sn_conv2d
from hamgan.nn.spectral_norm import SNOptions

PATTERNS: tuple[str, ...] = ("left_floor", "right_floor", "left_repetitive", "right_repetitive")
HEAD_PATTERNS: tuple[str, ...] = (
    "right_floor", "right_repetitive", "right_floor", "right_repetitive",
    "left_floor", "left_repetitive", "left_floor", "left_repetitive",
)  # fmt: skip
MASK_LOGIT = -1000.0  # added to the logits of masked (query, key) pairs


def manhattan_order(rows: int, cols: int) -> np.ndarray:
    """The ESA enumeration of a rows x cols grid: ``order[a]`` is the raster index of the a-th cell, cells sorted by
    i + j, then by i. Shape (rows * cols,) int64."""
    i, j = np.divmod(np.arange(rows * cols), cols)
    return np.lexsort((i, i + j))


def pattern_1d(name: str, n: int) -> np.ndarray:
    """The 1-D sparse pattern ``name`` over n positions, stride floor(sqrt(n)): bool (n, n), [a, b] = a attends b."""
    if name not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {name!r}")
    s = math.isqrt(n)
    a, b = np.arange(n)[:, None], np.arange(n)[None, :]
    if name == "left_floor":
        return (b <= a) & (b >= a - a % s)
    if name == "right_floor":
        return (a <= b) & (a >= b - b % s)
    if name == "left_repetitive":
        return (b == a) | (b % s == s - 1)
    return (b == a) | ((b % s == 0) & (b + s - 1 < n))


def grid_mask(name: str, height: int, width: int) -> np.ndarray:
    """The mask of pattern ``name`` for queries on an height x width map and keys on its 2x2-pooled grid.

    Shape bool (height * width, height * width / 4): [r, k] = query pixel r (raster) may attend key cell k (raster).
    ``height`` and ``width`` must be even.
    """
    if height % 2 or width % 2 or height < 2 or width < 2:
        raise ValueError(f"YLG needs an even feature-map size (2x2 pooled keys), got {height}x{width}")
    rows, cols = height // 2, width // 2
    n = rows * cols
    order = manhattan_order(rows, cols)
    grid = np.zeros((n, n), dtype=bool)
    grid[np.ix_(order, order)] = pattern_1d(name, n)  # M2[o(a), o(b)] = M1[a, b]
    return grid[np.arange(height * width) % n]


def head_masks(height: int, width: int, heads: int = len(HEAD_PATTERNS)) -> np.ndarray:
    """The masks of the ``heads`` heads (the official 8, cycled when more): bool (heads, H*W, H*W/4)."""
    return np.stack([grid_mask(HEAD_PATTERNS[h % len(HEAD_PATTERNS)], height, width) for h in range(heads)])


class YLGAttention(nn.Module):
    """The YLG attention block (see the module doc).

    Args:
        channels: C, a multiple of 8 * heads (every head gets C / (8 heads) query channels and C / (2 heads) value
            channels): of 64 for the official 8 heads.
        heads: number of heads (8 in the official code).
        spectral_norm: spectral norm of the four 1x1 convs (``True``: torch's, or an SNOptions).

    Shapes: ``x`` (B, C, H, W) with H, W even -> (B, C, H, W). ``y`` (class labels) is accepted and ignored.
    """

    def __init__(self, channels: int, heads: int = 8, spectral_norm: bool | SNOptions = True) -> None:
        super().__init__()
        if heads < 1 or channels < 8 * heads or channels % (8 * heads):
            raise ValueError(
                f"YLG attention with {heads} heads needs channels divisible by {8 * heads} (C/8 query and C/2 value "
                f"channels split over the heads), got {channels}; use fewer heads or place the block on wider maps"
            )
        self.channels, self.heads = channels, heads
        self.theta = sn_conv2d(channels, channels // 8, 1, bias=False, spectral_norm=spectral_norm)
        self.phi = sn_conv2d(channels, channels // 8, 1, bias=False, spectral_norm=spectral_norm)
        self.g = sn_conv2d(channels, channels // 2, 1, bias=False, spectral_norm=spectral_norm)
        self.out = sn_conv2d(channels // 2, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(()))
        self._bias_cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def mask_bias(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The additive logit mask (heads, H*W, H*W/4): 0 where attending is allowed, -1000 elsewhere (cached)."""
        key = (height, width, device)
        if key not in self._bias_cache:
            allowed = torch.from_numpy(head_masks(height, width, self.heads))
            self._bias_cache[key] = ((~allowed).float() * MASK_LOGIT).to(device)
        return self._bias_cache[key]

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax weights (B, heads, N, M) and the pooled values (B, heads, C/(2 heads), M) for ``x``."""
        B, C, H, W = x.shape
        nh, pixels = self.heads, x.flatten(2)
        theta = pointwise(self.theta, pixels).view(B, nh, C // 8 // nh, H * W)  # channel = head * size + k
        phi = F.max_pool2d(pointwise(self.phi, pixels).view(B, C // 8, H, W), 2).view(B, nh, C // 8 // nh, -1)
        g = F.max_pool2d(pointwise(self.g, pixels).view(B, C // 2, H, W), 2).view(B, nh, C // 2 // nh, -1)
        logits = torch.matmul(theta.transpose(2, 3), phi) + self.mask_bias(H, W, x.device)  # (B, heads, N, M)
        return F.softmax(logits, dim=-1), g

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"YLGAttention expects x of shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        weights, g = self.attention(x)
        o = torch.matmul(weights, g.transpose(2, 3).to(weights.dtype))  # (B, heads, N, C/(2 heads))
        o = o.permute(0, 3, 1, 2).reshape(B, C // 2, H * W).to(x.dtype)  # channel k * heads + head, as official
        o = pointwise(self.out, o)
        return torch.addcmul(x, self.gamma, o.view(B, C, H, W)).to(x.dtype)  # x + gamma * o, in x's dtype

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}"


__all__ = ["HEAD_PATTERNS", "PATTERNS", "YLGAttention", "grid_mask", "head_masks", "manhattan_order", "pattern_1d"]
