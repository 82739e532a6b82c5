"""hamgan.data.transforms: the official crop and resize (TF crop_and_resize) and the PIL methods."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from hamgan.data.transforms import (
    RESIZE_METHODS,
    center_crop_resize,
    resize_images,
    tf_crop_and_resize,
    to_uint8,
)


def pattern(h: int, w: int) -> np.ndarray:
    i, j, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((i * 7 + j * 13 + c * 29 + (i * j) % 17) % 256).astype(np.uint8)


# sha256 of the float32 output of tf.image.crop_and_resize with the official box (data_provider.py), TF 2.15.1 CPU
TF_DIGESTS = {
    (375, 500): "ad6bbaf6715ee525a4704a01b26eaf38e40c214316c655198a912e72c326a896",
    (1024, 1366): "2df93a8f8ac688d589e171558097e251791717d73fef952fb3b31b51b52d2bc6",
    (333, 200): "f7ae6d9c18eccc6876881197dd12c82649e88fd66131fe88b09b14cfcd625ef2",
}


@pytest.mark.parametrize("size", sorted(TF_DIGESTS))
def test_tf_bilinear_equals_tensorflow_bit_for_bit(size):
    out = tf_crop_and_resize(pattern(*size), 128)
    assert out.dtype == np.float32 and out.shape == (128, 128, 3)
    assert hashlib.sha256(out.tobytes()).hexdigest() == TF_DIGESTS[size]


def test_tf_bilinear_samples_the_square_at_y0_plus_i_s_minus_1_over_r_minus_1():
    """Bilinear interpolation of a linear ramp is exact: output i reads y0 + i (s - 1) / (R - 1)."""
    h, w, r = 40, 61, 16
    ramp = (np.arange(w, dtype=np.float32)[None, :, None] * 3 + np.arange(h, dtype=np.float32)[:, None, None]) * \
        np.ones((1, 1, 3), np.float32)
    out = tf_crop_and_resize(ramp, r)
    x0 = np.ceil((w - h) / 2)  # 10.5 -> 11: the official ceil (PIL's floor would give 10)
    pos = np.arange(r) * (h - 1) / (r - 1)
    expected = (x0 + pos)[None, :] * 3 + pos[:, None]
    np.testing.assert_allclose(out[..., 0], expected, atol=2e-4)
    same = tf_crop_and_resize(pattern(24, 24), 24)  # R = s: the identity
    assert np.array_equal(same, pattern(24, 24).astype(np.float32))


def test_tf_bilinear_reproduces_tf_black_last_row_at_1024():
    """A TF quirk kept as it is: for a short side of 1024 the last sample rounds (float32) past the edge and gets
    the extrapolation value 0."""
    out = tf_crop_and_resize(np.full((1024, 1366, 3), 200, np.uint8), 128)
    assert (out[-1] == 0).all() and (out[:-1] == 200).all()
    assert (tf_crop_and_resize(np.full((375, 500, 3), 200, np.uint8), 128) == 200).all()


def test_pil_methods_antialias_and_tf_bilinear_does_not():
    checker = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    image = Image.fromarray(checker)
    for method in ("pil-bicubic", "pil-bilinear", "pil-lanczos"):
        out = center_crop_resize(image, 32, method)
        assert out.dtype == np.uint8 and abs(out.astype(float).mean() - 127.5) < 3 and out.std() < 10, method
    aliased = center_crop_resize(image, 32, "tf-bilinear")
    assert aliased.dtype == np.float32 and aliased.std() > 30  # interpolates between neighbours: aliasing survives


def test_pil_crop_floors_and_tf_crop_ceils():
    image = np.zeros((4, 7, 3), np.uint8)
    image[:, 1] = 255  # the floor crop's first column, outside the ceil crop (it starts at column 2)
    pil = center_crop_resize(Image.fromarray(image), 4, "pil-bicubic")
    tf = tf_crop_and_resize(image, 4)
    assert pil[:, 0].mean() > 100 and tf[:, 0].mean() == 0


def test_arrays_resized_with_each_method_stay_uint8():
    images = np.stack([pattern(32, 32)] * 2)
    for method in RESIZE_METHODS:
        out = resize_images(images, 16, method)
        assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(resize_images(images, 16, "tf-bilinear")[0],
                                  to_uint8(tf_crop_and_resize(images[0], 16)))
    assert resize_images(images, 32, "tf-bilinear") is images
    with pytest.raises(ValueError, match="resize method must be one of"):
        resize_images(images, 16, "nearest")
    assert np.array_equal(to_uint8(np.array([-3.0, 0.49, 0.5, 254.6, 300.0])), [0, 0, 0, 255, 255])


# each PIL option and the PIL filter it must use (written out, not read from hamgan's own table)
PIL_OPTIONS = {
    "pil-bicubic": Image.Resampling.BICUBIC,
    "pil-bilinear": Image.Resampling.BILINEAR,
    "pil-lanczos": Image.Resampling.LANCZOS,
}


def test_every_pil_option_is_covered():
    assert {m for m in RESIZE_METHODS if m.startswith("pil-")} == set(PIL_OPTIONS)


@pytest.mark.parametrize("method", sorted(PIL_OPTIONS))
@pytest.mark.parametrize("size", [(37, 50), (50, 37)], ids=["wide", "tall"])
def test_pil_option_equals_image_resize_with_its_filter(method, size):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    h, w = size
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2  # the floor-rounded centre square (6 for 50 vs 37)
    square = pixels[top:top + s, left:left + s]
    expected = np.asarray(Image.fromarray(square).resize((16, 16), PIL_OPTIONS[method]))
    out = center_crop_resize(Image.fromarray(pixels), 16, method)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, expected)
    # the array path (square images, as the packed and torchvision data sets hold them) uses the same filter
    np.testing.assert_array_equal(resize_images(square[None], 16, method)[0], expected)


def test_pil_options_differ_from_each_other():
    pixels = np.random.default_rng(1).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    outs = {m: center_crop_resize(Image.fromarray(pixels), 16, m) for m in PIL_OPTIONS}
    assert all(not np.array_equal(outs[a], outs[b]) for a in outs for b in outs if a < b)
