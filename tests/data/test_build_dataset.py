"""build_dataset's config checks and uint8_images (hamgan/data/__init__.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.config import load_config
from hamgan.data import ArrayDataset, DatasetError, build_dataset, to_float, uint8_images
from hamgan.data.cifar10 import cifar10
from hamgan.data.synthetic import synthetic


@pytest.mark.parametrize("name", ["cifar10", "imagenet"])
def test_rgb_data_with_one_channel_is_an_error(name: str):
    with pytest.raises(ValueError, match=f"data.name={name} has RGB images but model.img_channels=1; "
                                         f"set model.img_channels=3"):
        build_dataset(load_config(None, [f"data.name={name}", "model.img_channels=1"]))


def test_packed_needs_imagenet():
    with pytest.raises(DatasetError, match="set data.name=imagenet or data.packed=null"):
        build_dataset(load_config(None, ["data.name=fmnist", "data.packed=/x", "model.img_channels=1"]))


def test_cifar10_missing_without_download(tmp_path: Path):
    with pytest.raises(DatasetError, match="CIFAR-10 not found.*data.download=true"):
        cifar10(root=str(tmp_path), download=False)


def test_to_float_exact_range():
    x = to_float(np.array([[[0, 255, 128]]], np.uint8))
    assert x.shape == (3, 1, 1) and x.flatten().tolist()[:2] == [-1.0, 1.0]
    assert x[2].item() == pytest.approx(128 / 127.5 - 1, abs=1e-7)


def test_uint8_images_all_in_order():
    ds = synthetic(50, 32, 3, 5)
    batches = list(uint8_images(ds, batch_size=16))
    assert [b.shape for b in batches] == [(16, 32, 32, 3)] * 3 + [(2, 32, 32, 3)]
    assert all(b.dtype == np.uint8 for b in batches)
    assert np.array_equal(np.concatenate(batches), ds.images)
    # the items are these pixels exactly (uint8, (C, R, R))
    assert torch.equal(ds[7][0].permute(1, 2, 0), torch.from_numpy(ds.images[7]))


def test_uint8_images_subset_is_random_and_seeded():
    labels = np.repeat(np.arange(10), 100)  # class-sorted, as ImageNet folders
    index = np.arange(1000)
    images = np.zeros((1000, 2, 2, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = index % 256, index // 256  # each image spells its index
    ds = ArrayDataset(images, labels, [str(k) for k in range(10)], channels=1)
    a = np.concatenate(list(uint8_images(ds, n=200, batch_size=64)))
    b = np.concatenate(list(uint8_images(ds, n=200, batch_size=64, num_workers=2)))
    assert a.shape == (200, 2, 2, 3) and np.array_equal(a, b)
    assert (a[..., 0] == a[..., 2]).all()  # grey repeated to RGB
    picked = a[:, 0, 0, 0].astype(int) + 256 * a[:, 0, 1, 0].astype(int)
    assert len(np.unique(picked)) == 200 and (np.diff(picked) > 0).all()
    assert len(np.unique(labels[picked])) == 10  # not just the first classes
    c = np.concatenate(list(uint8_images(ds, n=200, seed=1)))
    assert not np.array_equal(a, c)
