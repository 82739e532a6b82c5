"""Image geometry, done once on uint8 pixels: centre crop, padding, antialiased resize (PIL bicubic).

PIL's ``resize`` with a bicubic filter widens the kernel by the scale factor when shrinking, so downsampling is
antialiased (as ``torchvision.transforms.Resize`` on PIL images).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC


def center_crop_resize(image: Image.Image, resolution: int) -> np.ndarray:
    """Central square of side min(W, H), resized to ``resolution``: PIL image -> uint8 (R, R, 3) RGB."""
    image = image.convert("RGB")
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s)).resize((resolution, resolution), RESAMPLE)
    return np.array(image, dtype=np.uint8)


def pad_images(images: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad every side: uint8 (N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C)."""
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """Resize square images: uint8 (N, S, S, C) -> (N, R, R, C), C = 1 or 3; a no-op when S = R."""
    n, s, _, c = images.shape
    if s == resolution:
        return images
    out = np.empty((n, resolution, resolution, c), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if c == 1 else image)
        out[i] = np.asarray(pil.resize((resolution, resolution), RESAMPLE)).reshape(resolution, resolution, c)
    return out
