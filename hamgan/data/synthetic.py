"""A deterministic toy data set for tests: one coloured shape per image, class = (shape, colour).

Image ``i`` has label ``i % num_classes``. Class ``k`` draws shape ``SHAPES[k % 8]`` in a colour of hue
``0.618 k mod 1`` (grey images: brightness rising with ``k``) on a dark background; position and size jitter from
a fixed seed. Any size, resolution, channel count and number of classes; the same arguments give the same pixels.
"""

from __future__ import annotations

import colorsys

import numpy as np

from hamgan.data.dataset import ArrayDataset

SHAPES = ["disc", "square", "diamond", "ring", "cross", "triangle", "hbar", "vbar"]
BACKGROUND = 0.08


def _mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels inside ``shape`` in coordinates centred on it and scaled by its radius (v grows downwards)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return u**2 + v**2 < 1
    if shape == "square":
        return np.maximum(au, av) < 0.8
    if shape == "diamond":
        return au + av < 1.1
    if shape == "ring":
        return (u**2 + v**2 < 1) & (u**2 + v**2 > 0.3)
    if shape == "cross":
        return ((au < 0.3) & (av < 1)) | ((av < 0.3) & (au < 1))
    if shape == "triangle":
        return (v < 0.8) & (v > 2 * au - 1)
    if shape == "hbar":
        return (av < 0.35) & (au < 1)
    return (au < 0.35) & (av < 1)  # vbar


def class_colour(k: int, num_classes: int, channels: int) -> np.ndarray:
    """Colour of class ``k`` in [0, 1], shape (channels,)."""
    if channels == 1:
        return np.array([0.35 + 0.65 * (k + 1) / num_classes])
    return np.array(colorsys.hsv_to_rgb((0.618034 * k) % 1.0, 0.85, 0.95))


def synthetic(
    size: int = 512, resolution: int = 32, channels: int = 3, num_classes: int = 10, hflip: bool = False,
    seed: int = 0,
) -> ArrayDataset:
    """The toy data set as an in-memory :class:`ArrayDataset` of (channels, R, R) images."""
    if size < 1 or num_classes < 1 or channels not in (1, 3):
        raise ValueError(f"synthetic data needs size >= 1, num_classes >= 1, channels 1 or 3; got "
                         f"{size}, {num_classes}, {channels}")
    rng = np.random.default_rng(seed)
    centres = resolution * (0.5 + rng.uniform(-0.12, 0.12, size=(size, 2)))
    radii = resolution * rng.uniform(0.22, 0.32, size=size)
    labels = np.arange(size) % num_classes
    y, x = np.mgrid[0:resolution, 0:resolution] + 0.5
    images = np.empty((size, resolution, resolution, channels), dtype=np.uint8)
    for i in range(size):
        k = int(labels[i])
        inside = _mask(SHAPES[k % len(SHAPES)], (x - centres[i, 0]) / radii[i], (y - centres[i, 1]) / radii[i])
        image = np.where(inside[..., None], class_colour(k, num_classes, channels), BACKGROUND)
        images[i] = np.round(255 * image).astype(np.uint8)
    classes = [f"{SHAPES[k % len(SHAPES)]}-{k}" for k in range(num_classes)]
    return ArrayDataset(images, labels, classes, channels=channels, hflip=hflip)
