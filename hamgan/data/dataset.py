"""The image data set every source is turned into: uint8 pixels at model resolution.

Each data set knows its uint8 images, ``get_uint8(i) -> (R, R, C) uint8``, at model resolution and before any
flip; the trainer reads ``dataset[i] -> (image (C, R, R) uint8, label int)`` and converts to floats in [-1, 1] on its
device (a data set that keeps floats may serve float32 (C, R, R) in [-1, 1] instead); the evaluator reads the uint8
pixels directly (FID reference statistics without a float round trip).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class DatasetError(ValueError):
    """A data set that cannot be found or read, or that does not match the model config."""


def to_float(image: np.ndarray) -> torch.Tensor:
    """uint8 (R, R, C) -> float32 (C, R, R) in [-1, 1]: x / 127.5 - 1, so 0 -> -1 and 255 -> 1 exactly."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


class ImageDataset(Dataset):
    """Base class: a labelled set of square uint8 images at one resolution.

    Subclasses implement ``__len__`` and ``load(i) -> (image (R, R, C) uint8, label)``.

    Attributes:
        classes: class names, index = label.
        resolution: R, the side of every image.
        channels: C, 1 (grey) or 3 (RGB).
        hflip: flip each image left-right with probability 1/2 in ``__getitem__`` (torch's global RNG, which
            DataLoader seeds per worker); the trainer leaves it off and flips on the device instead.
    """

    def __init__(self, classes: list[str], resolution: int, channels: int, hflip: bool = False):
        self.classes = list(classes)
        self.resolution = resolution
        self.channels = channels
        self.hflip = hflip

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, i: int) -> tuple[np.ndarray, int]:
        """Image ``i`` as uint8 (R, R, C) and its label."""
        raise NotImplementedError

    def get_uint8(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (R, R, C), at model resolution, never flipped."""
        return self.load(i)[0]

    def get_float(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 (R, R, C) with values in [0, 255], never flipped.

        Default: ``get_uint8(i)`` as float. A pipeline that keeps its resized pixels in float (the official HamGAN
        preprocessing) overrides this to return them unquantised; ``--protocol hamgan-tf`` reads these.
        """
        return self.get_uint8(i).astype(np.float32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Image ``i`` as uint8 (C, R, R) and its label: the trainer moves uint8 to the device and converts it there
        (``x / 127.5 - 1``, see :func:`to_float`). Flipped left-right with probability 1/2 only when ``hflip`` is
        set (the trainer builds its data sets without and flips on the device)."""
        image, label = self.load(i)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images, {self.num_classes} classes, "
            f"{self.channels}x{self.resolution}x{self.resolution}, hflip={self.hflip})"
        )


class ArrayDataset(ImageDataset):
    """Images held in one uint8 array (N, R, R, C0), in memory or memory-mapped.

    Args:
        images: uint8 array (N, R, R, C0).
        labels: int array (N,).
        classes: class names.
        channels: C returned; C0 must equal C, or be 1 with C = 3 (the grey channel is repeated).
        hflip: random horizontal flip in ``__getitem__``.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, classes: list[str], channels: int | None = None,
        hflip: bool = False,
    ):
        if images.ndim != 4 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, R, R, C), got {images.dtype} {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        stored = images.shape[3]
        channels = stored if channels is None else channels
        if stored != channels and not (stored == 1 and channels == 3):
            raise ValueError(f"cannot serve {stored}-channel images as {channels}-channel images")
        super().__init__(classes, images.shape[1], channels, hflip)
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[np.ndarray, int]:
        image = np.array(self.images[i])  # a copy: memory-mapped arrays are read-only
        if image.shape[2] != self.channels:
            image = np.repeat(image, self.channels, axis=2)
        return image, int(self.labels[i])
