"""Fashion-MNIST from the Debian package's IDX files (dataset-fashion-mnist must be installed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.config import load_config
from hamgan.data import DatasetError, build_dataset
from hamgan.data.fmnist import CLASSES, DEBIAN_ROOT, fashion_mnist, read_idx

FMNIST = ["data.name=fmnist", "model.resolution=32", "model.img_channels=1", "model.num_classes=10"]


@pytest.fixture(scope="module", autouse=True)
def debian_files():
    if not (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is missing from {DEBIAN_ROOT}: run `apt-get install dataset-fashion-mnist`")


def raw_images(split: str) -> np.ndarray:
    """The 28x28 images parsed independently of hamgan: 16-byte header, then N*28*28 bytes."""
    prefix = {"train": "train", "test": "t10k"}[split]
    with gzip.open(DEBIAN_ROOT / f"{prefix}-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28).copy()


@pytest.fixture(scope="module")
def train():
    return build_dataset(load_config(None, FMNIST))


def test_train_split(train):
    assert len(train) == 60000 and train.classes == CLASSES and train.num_classes == 10
    x, y = train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8 and isinstance(y, int)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert train.labels[0] == 9  # the first training image is an ankle boot


def test_padding_is_black_and_centre_is_the_raw_image(train):
    images = train.images[..., 0]  # (N, 32, 32)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (images[:, border] == 0).all()
    assert np.array_equal(images[:, 2:30, 2:30], raw_images("train"))
    x = train[7][0]
    assert torch.equal(x[0, :2], torch.zeros((2, 32), dtype=torch.uint8))
    assert torch.equal(x[0, 2:30, 2:30], torch.from_numpy(raw_images("train")[7]))


def test_test_split_and_three_channels():
    ds = build_dataset(load_config(None, FMNIST + ["data.split=test", "model.img_channels=3"]))
    assert len(ds) == 10000 and set(np.unique(ds.labels)) == set(range(10))
    x, _ = ds[3]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert np.array_equal(ds.get_uint8(3)[2:30, 2:30, 0], raw_images("test")[3])


def test_resized_to_64():
    ds = fashion_mnist(split="test", resolution=64)
    assert ds.images.shape == (10000, 64, 64, 1)
    assert (ds.images[:, :3] == 0).all()  # the padded border, scaled by 2 (bicubic may reach into a 4th row)


def test_num_classes_and_channels_checks():
    with pytest.raises(ValueError, match=r"data.name=fmnist has 10 classes but model.num_classes=1000; "
                                         r"set model.num_classes=10"):
        build_dataset(load_config(None, ["data.name=fmnist", "model.resolution=32", "model.img_channels=1"]))
    with pytest.raises(ValueError, match="model.img_channels must be 1 or 3"):
        build_dataset(load_config(None, FMNIST + ["model.img_channels=2"]))
    with pytest.raises(DatasetError, match="splits 'train' and 'test'"):
        build_dataset(load_config(None, FMNIST + ["data.split=val"]))


def test_missing_root_without_download_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"apt-get install dataset-fashion-mnist.*data.download=true"):
        fashion_mnist(root=str(tmp_path), download=False)


def test_root_in_torchvision_layout(tmp_path: Path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:  # uncompressed, as torchvision leaves them
        with gzip.open(DEBIAN_ROOT / f"{name}.gz") as f:
            (raw / name).write_bytes(f.read())
    ds = fashion_mnist(root=str(tmp_path), split="test", download=False)
    assert len(ds) == 10000 and np.array_equal(ds.images[:, 2:30, 2:30, 0], raw_images("test"))


def test_truncated_idx_file_is_an_error(tmp_path: Path):
    with gzip.open(DEBIAN_ROOT / "t10k-labels-idx1-ubyte.gz") as f:
        (tmp_path / "labels").write_bytes(f.read()[:-5])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(tmp_path / "labels")
