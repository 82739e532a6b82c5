"""ImageDataset.get_float and hamgan.data.float_images: the float twin of get_uint8 / uint8_images, with labels."""

import numpy as np

from hamgan.data import float_images, uint8_images
from hamgan.data.dataset import ArrayDataset


def dataset(n: int = 7) -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n) % 3, ["a", "b", "c"], channels=1)


def test_get_float_defaults_to_the_uint8_pixels():
    ds = dataset()
    f = ds.get_float(2)
    assert f.dtype == np.float32 and f.shape == (4, 4, 1)
    np.testing.assert_array_equal(f, ds.get_uint8(2).astype(np.float32))


def test_float_images_are_uint8_images_as_float_with_labels():
    ds = dataset()
    for n in (None, 5):
        u8 = np.concatenate(list(uint8_images(ds, n, batch_size=3, seed=1)))
        pairs = list(float_images(ds, n, batch_size=3, seed=1, labels=True))
        images = np.concatenate([p[0] for p in pairs])
        labels = np.concatenate([p[1] for p in pairs])
        assert images.dtype == np.float32 and images.shape == u8.shape and u8.shape[3] == 3
        np.testing.assert_array_equal(images, u8.astype(np.float32))
        expected = np.arange(7) if n is None else np.sort(np.random.default_rng(1).choice(7, 5, replace=False))
        np.testing.assert_array_equal(labels, expected % 3)
    quantized = np.concatenate(list(float_images(ds, batch_size=4, quantized=True)))
    np.testing.assert_array_equal(quantized, np.concatenate(list(uint8_images(ds, batch_size=4))).astype(np.float32))


class Unquantised(ArrayDataset):
    def get_float(self, i: int) -> np.ndarray:
        return self.get_uint8(i).astype(np.float32) + 0.25


def test_float_images_read_an_overridden_get_float_unless_quantized():
    rng = np.random.default_rng(0)
    ds = Unquantised(rng.integers(0, 255, (3, 2, 2, 3), dtype=np.uint8), np.zeros(3), ["a"])
    floats = np.concatenate(list(float_images(ds)))
    assert (floats % 1 == 0.25).all()
    assert (np.concatenate(list(float_images(ds, quantized=True))) % 1 == 0).all()
