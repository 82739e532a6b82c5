"""TF1's legacy bilinear resize in torch: ``tf.compat.v1.image.resize(x, size, method=BILINEAR)``.

That call (align_corners=False, half_pixel_centers=False) maps output pixel ``o`` to the input coordinate
``s = o * (in / out)`` (no half-pixel offset, unlike ``F.interpolate(..., align_corners=False)``), interpolates
between ``floor(s)`` and ``min(ceil(s), in - 1)`` and never antialiases. The official HamGAN evaluation resizes its
128x128 images to the Inception's 299x299 this way (``--protocol hamgan-tf``). The arithmetic follows TensorFlow's
kernel (float32 scale and coordinates; horizontal interpolation of the two rows first, then vertical), so values
equal TensorFlow's to float32 rounding; tests/metrics/test_resize.py checks them against arrays computed once with
TensorFlow (scripts/make_tf_resize_expected.py).
"""

from __future__ import annotations

import torch


def _coordinates(size_in: int, size_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Lower and upper source indices (size_out,) and the float32 interpolation weights of the upper one."""
    scale = torch.tensor(size_in, dtype=torch.float32) / torch.tensor(float(size_out), dtype=torch.float32)
    src = torch.arange(size_out, dtype=torch.float32) * scale
    lower = src.floor()
    upper = torch.minimum(src.ceil(), torch.tensor(size_in - 1.0))
    lerp = src - lower
    lower = lower.clamp(min=0).long()
    return lower.to(device), upper.long().to(device), lerp.to(device)


def tf1_resize_bilinear(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Float (B, C, H, W) -> float32 (B, C, h, w), as TF1 ``resize_bilinear`` (align_corners=False, legacy)."""
    if images.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    x = images.float()
    y0, y1, ly = _coordinates(x.shape[2], h, x.device)
    x0, x1, lx = _coordinates(x.shape[3], w, x.device)
    top, bottom = x.index_select(2, y0), x.index_select(2, y1)  # (B, C, h, W)
    lx = lx.view(1, 1, 1, w)
    top = top.index_select(3, x0) + (top.index_select(3, x1) - top.index_select(3, x0)) * lx
    bottom = bottom.index_select(3, x0) + (bottom.index_select(3, x1) - bottom.index_select(3, x0)) * lx
    return top + (bottom - top) * ly.view(1, 1, h, 1)
