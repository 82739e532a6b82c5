"""Data sets: ``build_dataset(cfg)`` for training, ``uint8_images(dataset, n)`` for FID reference statistics.

Every data set is an :class:`ImageDataset`: ``dataset[i] -> (image uint8 (C, R, R), label int)`` with
C = ``model.img_channels`` and R = ``model.resolution`` (the ImageFolder path with ``data.resize: tf-bilinear`` serves
float32 (C, R, R) in [-1, 1] instead: kept in float, as the official pipeline), plus ``.classes``, ``.num_classes``,
``get_uint8(i) -> uint8 (R, R, C)`` and ``get_float(i) -> float32 (R, R, C) in [0, 255]`` (never flipped).
``data.resize`` is how images reach R (:mod:`hamgan.data.transforms`): tf-bilinear (the official pipeline) or PIL.

=============  ==================================================================================================
data.name      source
=============  ==================================================================================================
fmnist         Fashion-MNIST, 1 channel (3: grey repeated), 10 classes; :mod:`hamgan.data.fmnist`
cifar10        CIFAR-10 through torchvision, RGB, 10 classes; :mod:`hamgan.data.cifar10`
imagenet       an ImageFolder tree at data.root (:mod:`hamgan.data.imagenet`), or the packed copy at data.packed
               made by scripts/pack_imagenet.py (:mod:`hamgan.data.packed`); RGB, one class per folder
synthetic      coloured shapes, any channels/classes, data.synthetic_size images; :mod:`hamgan.data.synthetic`
=============  ==================================================================================================
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from hamgan.config import Config
from hamgan.data.cifar10 import cifar10
from hamgan.data.dataset import ArrayDataset, DatasetError, ImageDataset, to_float
from hamgan.data.fmnist import fashion_mnist
from hamgan.data.imagenet import LAYOUT, ImageFolderDataset
from hamgan.data.packed import PackedDataset
from hamgan.data.synthetic import synthetic

__all__ = ["build_dataset", "uint8_images", "float_images", "ImageDataset", "ArrayDataset", "DatasetError", "to_float"]


def build_dataset(cfg: Config, index_cache: str | None = None, index_file: str | None = None) -> ImageDataset:
    """The training data set described by ``cfg.data``, checked against ``cfg.model``.

    ``index_cache``: folder of the ImageFolder index file, overriding ``data.index_cache`` (e.g. the run folder;
    see :func:`hamgan.data.imagenet.load_or_build_index`); ``index_file``: an ImageFolder index file read first (e.g.
    the one rank 0 wrote), the cache folder still the place to look next. ``data.resize`` is how images are brought to
    ``model.resolution`` (:mod:`hamgan.data.transforms`).

    Raises :class:`DatasetError` (a ValueError) naming the config keys to change when the data set's classes or
    channels do not match the model, or when the data cannot be found.
    """
    data, model = cfg.data, cfg.model
    res, channels = model.resolution, model.img_channels
    if channels not in (1, 3):
        raise DatasetError(f"model.img_channels must be 1 or 3, got {channels}")
    if data.name in ("cifar10", "imagenet") and channels != 3:
        raise DatasetError(f"data.name={data.name} has RGB images but model.img_channels={channels}; "
                           f"set model.img_channels=3")
    if data.packed is not None and data.name != "imagenet":
        raise DatasetError(f"data.packed is a packed image folder, read with data.name=imagenet (got "
                           f"data.name={data.name}); set data.name=imagenet or data.packed=null")

    if data.name == "fmnist":
        dataset = fashion_mnist(data.root, data.split, res, channels, data.hflip, data.download, data.resize)
    elif data.name == "cifar10":
        dataset = cifar10(data.root, data.split, res, data.hflip, data.download, data.resize)
    elif data.name == "imagenet" and data.packed is not None:
        dataset = PackedDataset(data.packed, res, data.split, data.hflip, data.resize)
    elif data.name == "imagenet":
        if data.root is None:
            raise DatasetError(f"data.name=imagenet needs data.root (a folder laid out as {LAYOUT}) or data.packed "
                               f"(made by scripts/pack_imagenet.py)")
        cache = index_cache if index_cache is not None else data.index_cache
        dataset = ImageFolderDataset(data.root, data.split, res, data.hflip, data.resize, cache,
                                     index_file=index_file)
    elif data.name == "synthetic":
        dataset = synthetic(data.synthetic_size, res, channels, model.num_classes, data.hflip)
    else:
        raise DatasetError(f"unknown data.name '{data.name}'; choose fmnist, cifar10, imagenet or synthetic")

    if dataset.num_classes != model.num_classes:
        raise DatasetError(f"data.name={data.name} has {dataset.num_classes} classes but "
                           f"model.num_classes={model.num_classes}; set model.num_classes={dataset.num_classes}")
    return dataset


def _subset_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """All indices when ``n`` is None or >= total, else a sorted uniform random subset of ``n`` (fixed by seed)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


class _UInt8View(torch.utils.data.Dataset):
    """``dataset.get_uint8`` at the chosen indices, so a DataLoader can decode in worker processes."""

    def __init__(self, dataset: ImageDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset.get_uint8(int(self.indices[i]))


def uint8_images(
    dataset: ImageDataset, n: int | None = None, batch_size: int = 250, num_workers: int = 0, seed: int = 0,
) -> Iterator[np.ndarray]:
    """The data set's raw pixels in batches of uint8 (B, R, R, 3) (grey repeated to 3 channels), never flipped.

    ``n`` None or >= len(dataset): every image, in order. Otherwise a uniform random subset of ``n`` images without
    replacement (fixed by ``seed``, so class-balanced in expectation even for class-sorted data sets), in index
    order. Yields ``ceil(n / batch_size)`` batches; ``num_workers`` > 0 decodes in DataLoader worker processes.
    """
    loader = torch.utils.data.DataLoader(
        _UInt8View(dataset, _subset_indices(len(dataset), n, seed)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=np.stack,
    )
    for batch in loader:
        yield np.repeat(batch, 3, axis=3) if batch.shape[3] == 1 else batch


def _label(dataset: ImageDataset, i: int) -> int:
    """Label of image ``i`` without decoding it where the data set keeps its labels (array or file list)."""
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return int(labels[i])
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return int(samples[i][1])
    return int(dataset.load(i)[1])


class _FloatView(torch.utils.data.Dataset):
    """``(get_float or get_uint8 as float, label)`` at the chosen indices, for DataLoader workers."""

    def __init__(self, dataset: ImageDataset, indices: np.ndarray, quantized: bool):
        self.dataset, self.indices, self.quantized = dataset, indices, quantized

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        j = int(self.indices[i])
        image = self.dataset.get_uint8(j).astype(np.float32) if self.quantized else self.dataset.get_float(j)
        return image, _label(self.dataset, j)


def _collate_labelled(batch: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([b[0] for b in batch]), np.array([b[1] for b in batch], dtype=np.int64)


def float_images(
    dataset: ImageDataset, n: int | None = None, batch_size: int = 250, num_workers: int = 0, seed: int = 0,
    labels: bool = False, quantized: bool = False,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, np.ndarray]]:
    """As :func:`uint8_images` (same images, same order), but float32 (B, R, R, 3) batches in [0, 255].

    The pixels come from ``get_float`` (unquantised where the data set keeps floats), or from ``get_uint8`` when
    ``quantized``. ``labels``: yield ``(images, labels int64 (B,))`` instead.
    """
    loader = torch.utils.data.DataLoader(
        _FloatView(dataset, _subset_indices(len(dataset), n, seed), quantized), batch_size=batch_size, num_workers=num_workers,
        collate_fn=_collate_labelled,
    )
    for images, batch_labels in loader:
        images = np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images
        yield (images, batch_labels) if labels else images
