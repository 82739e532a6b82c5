"""Fashion-MNIST: 28x28 grey garments, 10 classes, 60,000 train / 10,000 test images.

Search order for the IDX files (``train-images-idx3-ubyte[.gz]`` etc.):

1. ``data.root`` when given (the files directly in it, or torchvision's ``root/FashionMNIST/raw``); when they are
   missing and ``data.download`` is true, torchvision downloads them there.
2. Otherwise ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``),
   then ``~/.cache/hamgan`` (an earlier download), then a torchvision download into ``~/.cache/hamgan``.

The images are padded by 2 pixels of black to 32x32 and, for resolution 64 or 128, resized from there (so every
resolution frames the garment the same way). The whole split is held in memory as one uint8 array.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from hamgan.data.dataset import ArrayDataset, DatasetError
from hamgan.data.transforms import pad_images, resize_images

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CACHE_ROOT = Path("~/.cache/hamgan").expanduser()
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILE_PREFIX = {"train": "train", "test": "t10k"}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into an array of the shape its header gives."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DatasetError(f"'{path}' is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    count = int(np.prod(shape))
    if len(data) != 4 + 4 * ndim + count * dtype.itemsize:
        raise DatasetError(f"'{path}' is truncated or corrupt: its header says shape {shape}")
    return np.frombuffer(data, dtype, count=count, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) IDX paths of ``split`` in ``folder`` or ``folder/FashionMNIST/raw``, else None."""
    prefix = FILE_PREFIX[split]
    for d in (folder, folder / "FashionMNIST" / "raw"):
        for suffix in (".gz", ""):
            images = d / f"{prefix}-images-idx3-ubyte{suffix}"
            labels = d / f"{prefix}-labels-idx1-ubyte{suffix}"
            if images.is_file() and labels.is_file():
                return images, labels
    return None


def _download(folder: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.FashionMNIST(str(folder), download=True)
    except Exception as e:  # network errors come in many types (URLError, RuntimeError, ...)
        raise DatasetError(
            f"could not download Fashion-MNIST into '{folder}' ({type(e).__name__}: {e}). Install the Debian "
            f"package (apt-get install dataset-fashion-mnist) or copy the IDX files into that folder."
        ) from None


def locate(root: str | None, split: str, download: bool) -> tuple[Path, Path]:
    """Paths of the IDX (images, labels) files of ``split``, downloading them if allowed (see module doc)."""
    folders = [Path(root).expanduser()] if root else [DEBIAN_ROOT, CACHE_ROOT]
    for folder in folders:
        if found := _find_files(folder, split):
            return found
    if download:
        _download(folders[-1])
        if found := _find_files(folders[-1], split):
            return found
    searched = ", ".join(f"'{f}'" for f in folders)
    raise DatasetError(
        f"Fashion-MNIST not found in {searched}. Install it with `apt-get install dataset-fashion-mnist` "
        f"(files in {DEBIAN_ROOT}), or set data.download=true to download it with torchvision, or point "
        f"data.root at a folder holding {FILE_PREFIX[split]}-images-idx3-ubyte.gz and "
        f"{FILE_PREFIX[split]}-labels-idx1-ubyte.gz."
    )


def fashion_mnist(
    root: str | None = None, split: str = "train", resolution: int = 32, channels: int = 1, hflip: bool = False,
    download: bool = True, resize: str = "pil-bicubic",
) -> ArrayDataset:
    """Fashion-MNIST as an in-memory :class:`ArrayDataset` of (channels, R, R) images (grey repeated for 3).

    ``resize``: the method from 32 to 64 or 128 (:mod:`hamgan.data.transforms`; none at 32).
    """
    if split not in FILE_PREFIX:
        raise DatasetError(f"Fashion-MNIST has splits 'train' and 'test', got data.split='{split}'")
    images_path, labels_path = locate(root, split, download)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DatasetError(f"'{images_path}' holds {images.shape} images and '{labels_path}' {labels.shape} labels")
    images = resize_images(pad_images(images[..., None], 2), resolution, resize)  # (N, R, R, 1)
    return ArrayDataset(images, labels, CLASSES, channels=channels, hflip=hflip)
