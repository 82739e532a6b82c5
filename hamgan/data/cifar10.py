"""CIFAR-10 through torchvision: 32x32 RGB, 10 classes, 50,000 train / 10,000 test images.

Looked for in ``data.root`` (default ``~/.cache/hamgan/cifar10``) in torchvision's layout (``cifar-10-batches-py``),
downloaded there when ``data.download`` is true. Resized with ``data.resize`` for resolutions other than 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hamgan.data.dataset import ArrayDataset, DatasetError
from hamgan.data.transforms import resize_images

CACHE_ROOT = Path("~/.cache/hamgan/cifar10").expanduser()


def cifar10(
    root: str | None = None, split: str = "train", resolution: int = 32, hflip: bool = False, download: bool = True,
    resize: str = "pil-bicubic",
) -> ArrayDataset:
    """CIFAR-10 as an in-memory :class:`ArrayDataset` of (3, R, R) images (``resize``: the method for R != 32)."""
    import torchvision

    if split not in ("train", "test"):
        raise DatasetError(f"CIFAR-10 has splits 'train' and 'test', got data.split='{split}'")
    folder = Path(root).expanduser() if root else CACHE_ROOT
    try:
        data = torchvision.datasets.CIFAR10(str(folder), train=split == "train", download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise DatasetError(
            f"CIFAR-10 not found in '{folder}' ({e}). Set data.download=true to download it (needs internet), or "
            f"set data.root to a folder holding cifar-10-batches-py."
        ) from None
    except Exception as e:  # network errors
        raise DatasetError(
            f"could not download CIFAR-10 into '{folder}' ({type(e).__name__}: {e}). Download "
            f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz elsewhere and unpack it there."
        ) from None
    images = resize_images(np.asarray(data.data, dtype=np.uint8), resolution, resize)
    return ArrayDataset(images, np.asarray(data.targets), list(data.classes), channels=3, hflip=hflip)
