"""Image geometry, done once per image: largest centre square, padding, resize to the model resolution.

``data.resize`` chooses the method (:data:`RESIZE_METHODS`):

- ``"tf-bilinear"``: the official HamGAN / TF-GAN SAGAN pipeline (``data_provider._preprocess_dataset_record_fn``).
  The largest centre square, its corner at ``ceil((H - s) / 2)``, ``ceil((W - s) / 2)`` (s = min(H, W)), sampled
  by TF's ``crop_and_resize`` with the box normalised by (H - 1): output pixel i reads the input at
  ``y0 + i (s - 1) / (R - 1)`` with bilinear interpolation and no antialiasing, in float32. The result stays
  float, values in [0, 255] (:func:`tf_crop_and_resize`).
- ``"pil-bicubic"``, ``"pil-bilinear"``, ``"pil-lanczos"``: PIL, antialiased when shrinking (the filter widens with
  the scale factor, as ``torchvision.transforms.Resize`` on PIL images), uint8; the square's corner at
  ``floor((H - s) / 2)``. pil-bicubic is hamgan's earlier pipeline, pil-bilinear BigGAN-PyTorch's (torchvision
  Resize), pil-lanczos StudioGAN's recommended ``--pre_resizer lanczos``.

Sources held as uint8 arrays (Fashion-MNIST, CIFAR-10, packed ImageNet) store tf-bilinear results rounded to
uint8; only the ImageFolder path keeps them in float (:mod:`hamgan.data.imagenet`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESIZE_METHODS: tuple[str, ...] = ("tf-bilinear", "pil-bicubic", "pil-bilinear", "pil-lanczos")
PIL_FILTERS = {
    "pil-bicubic": Image.Resampling.BICUBIC,
    "pil-bilinear": Image.Resampling.BILINEAR,
    "pil-lanczos": Image.Resampling.LANCZOS,
}
RESAMPLE = PIL_FILTERS["pil-bicubic"]  # hamgan's earlier default


def check_method(method: str) -> None:
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")


def tf_crop_and_resize(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """The official crop and resize (module doc) of one image: (H, W, C) any dtype -> float32 (R, R, C).

    Follows TF's ``CropAndResize`` CPU kernel in float32: the box coordinates normalised by (H - 1) and scaled back,
    ``in_y = y1 (H - 1) + i * (y2 - y1) (H - 1) / (R - 1)``, top / bottom rows at floor / ceil of in_y, and
    ``top + (bottom - top) * y_lerp`` after the same interpolation along x; a row or column whose float32 position
    rounds to beyond the image (in_y > H - 1) gets TF's extrapolation value 0.
    """
    f32 = np.float32
    height, width = pixels.shape[:2]
    box = min(height, width)
    # data_provider: box corners in pixels (ceil, as improved-gan), normalised by (size - 1), all in float32
    y_min, x_min = np.ceil(f32(0.5) * (f32(height) - f32(box))), np.ceil(f32(0.5) * (f32(width) - f32(box)))
    y1, y2 = f32(y_min / f32(height - 1)), f32((y_min + f32(box) - f32(1)) / f32(height - 1))
    x1, x2 = f32(x_min / f32(width - 1)), f32((x_min + f32(box) - f32(1)) / f32(width - 1))

    def coords(c1: np.float32, c2: np.float32, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if resolution > 1:
            scale = f32((c2 - c1) * f32(size - 1) / f32(resolution - 1))
            pos = (c1 * f32(size - 1) + np.arange(resolution, dtype=f32) * scale).astype(f32)
        else:
            pos = np.full(1, f32(0.5) * (c1 + c2) * f32(size - 1), dtype=f32)
        outside = (pos < 0) | (pos > f32(size - 1))  # TF writes the extrapolation value 0 there
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        return np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1), (pos - lo).astype(f32), outside

    top, bottom, y_lerp, y_out = coords(y1, y2, height)
    left, right, x_lerp, x_out = coords(x1, x2, width)
    image = pixels.astype(f32)
    x_lerp = x_lerp[None, :, None]
    upper = image[top][:, left] + (image[top][:, right] - image[top][:, left]) * x_lerp
    lower = image[bottom][:, left] + (image[bottom][:, right] - image[bottom][:, left]) * x_lerp
    out = (upper + (lower - upper) * y_lerp[:, None, None]).astype(f32)
    out[y_out] = 0
    out[:, x_out] = 0
    return out


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 255] rounded to the nearest uint8 (uint8 input is returned as it is)."""
    if pixels.dtype == np.uint8:
        return pixels
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def center_crop_resize(image: Image.Image, resolution: int, method: str = "pil-bicubic") -> np.ndarray:
    """Central square of side min(W, H) resized to ``resolution`` with ``method``: PIL image -> (R, R, 3) RGB,
    uint8 for the PIL methods, float32 in [0, 255] for tf-bilinear."""
    check_method(method)
    image = image.convert("RGB")
    if method == "tf-bilinear":
        return tf_crop_and_resize(np.asarray(image), resolution)
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s)).resize((resolution, resolution), PIL_FILTERS[method])
    return np.array(image, dtype=np.uint8)


def pad_images(images: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad every side: uint8 (N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C)."""
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def resize_images(images: np.ndarray, resolution: int, method: str = "pil-bicubic") -> np.ndarray:
    """Resize square images: uint8 (N, S, S, C) -> (N, R, R, C), C = 1 or 3; a no-op when S = R.

    tf-bilinear results are rounded to uint8 (the array stays uint8).
    """
    check_method(method)
    n, s, _, c = images.shape
    if s == resolution:
        return images
    out = np.empty((n, resolution, resolution, c), dtype=np.uint8)
    for i, image in enumerate(images):
        if method == "tf-bilinear":
            out[i] = to_uint8(tf_crop_and_resize(image, resolution))
            continue
        pil = Image.fromarray(image[..., 0] if c == 1 else image)
        resized = pil.resize((resolution, resolution), PIL_FILTERS[method])
        out[i] = np.asarray(resized).reshape(resolution, resolution, c)
    return out
