"""ImageNet (or any class-per-folder image set) read from JPEG files in torchvision's ImageFolder layout.

Layout: ``ROOT/<split>/<class>/<image>`` (e.g. ``ROOT/train/n01440764/n01440764_10026.JPEG``), or
``ROOT/<class>/<image>`` when ``ROOT/<split>`` does not exist. Labels are the class folders in sorted order, the
same as ``torchvision.datasets.ImageFolder``. Each image is centre-cropped to its short side and resized to R
(antialiased, see :mod:`hamgan.data.transforms`).

Unreadable files: when the data set is built, every file's header is opened (in threads); files that are not
images are skipped, counted, and reported in one warning. A file that is damaged further in (e.g. a truncated
JPEG) only fails when decoded: ``load`` then warns with its path and serves the next readable image instead.
``scripts/pack_imagenet.py`` decodes every image once, so it finds and reports all of them before training.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from hamgan.data.dataset import DatasetError, ImageDataset
from hamgan.data.transforms import center_crop_resize

# UnidentifiedImageError and "image file is truncated" are OSErrors; damaged headers also raise these.
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
LAYOUT = "ROOT/<split>/<class>/<image> or ROOT/<class>/<image> (torchvision ImageFolder layout)"


def split_folder(root: str | Path, split: str) -> Path:
    """``root/split`` when that folder exists, else ``root``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data set folder '{root}' does not exist; set data.root to a folder laid out as {LAYOUT}")
    return root / split if (root / split).is_dir() else root


def scan_image_folder(folder: str | Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and (path, label) of every image file under ``folder``.

    Raises :class:`DatasetError` for a folder without class sub-folders or with an empty class folder.
    """
    folder = Path(folder)
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.name.lower().endswith(IMG_EXTENSIONS)]
        found = f"found {len(loose)} images directly in it (e.g. '{loose[0]}')" if loose else "it has no sub-folders"
        raise DatasetError(
            f"'{folder}' has no class folders: {found}. Expected {LAYOUT}; move each class's images into its own "
            f"sub-folder."
        )
    samples = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, IMG_EXTENSIONS, allow_empty=True)
    counts = np.bincount([label for _, label in samples], minlength=len(classes))
    empty = [classes[k] for k in np.flatnonzero(counts == 0)]
    if empty:
        shown = ", ".join(f"'{folder / c}'" for c in empty[:5])
        shown += f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise DatasetError(
            f"{len(empty)} empty class folder(s): {shown}. Every class folder needs at least one image "
            f"({', '.join(IMG_EXTENSIONS)}); remove the folder or add its images. Expected layout: {LAYOUT}."
        )
    return classes, samples


def load_image(path: str | Path, resolution: int) -> np.ndarray:
    """Decode, centre-crop and resize one image file -> uint8 (R, R, 3). Raises one of ``READ_ERRORS``."""
    with Image.open(path) as image:
        return center_crop_resize(image, resolution)


def header_error(path: str) -> str | None:
    """None when ``path`` opens as an image (only its header is read), else the error."""
    try:
        with Image.open(path):
            return None
    except READ_ERRORS as e:
        return f"{type(e).__name__}: {e}"


def warn_skipped(bad: list[tuple[str, str]], total: int, stacklevel: int = 2) -> None:
    """One warning for the unreadable files ``bad`` = [(path, error)], naming the count and the first few."""
    if not bad:
        return
    first = "; ".join(f"'{p}' ({err})" for p, err in bad[:3]) + (" ..." if len(bad) > 3 else "")
    warnings.warn(f"skipped {len(bad)} unreadable image(s) of {total}: {first}", stacklevel=stacklevel + 1)


class ImageFolderDataset(ImageDataset):
    """Images decoded from files on every access (see the module doc; packing them is much faster to train from).

    Args:
        root: data set folder, see ``LAYOUT``.
        split: sub-folder used when ``root/split`` exists.
        resolution: R.
        hflip: random horizontal flip in ``__getitem__``.
        threads: threads for the header check of all files.
    """

    def __init__(self, root: str | Path, split: str = "train", resolution: int = 128, hflip: bool = False,
                 threads: int = 16):
        self.folder = split_folder(root, split)
        classes, samples = scan_image_folder(self.folder)
        super().__init__(classes, resolution, 3, hflip)
        with ThreadPoolExecutor(threads) as pool:
            errors = list(pool.map(header_error, [p for p, _ in samples], chunksize=256))
        bad = [(p, err) for (p, _), err in zip(samples, errors) if err is not None]
        warn_skipped(bad, len(samples), stacklevel=2)
        self.num_skipped = len(bad)
        self.samples = [s for s, err in zip(samples, errors) if err is None]
        if not self.samples:
            raise DatasetError(f"none of the {len(samples)} image files under '{self.folder}' can be read")

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, int]:
        """Image ``i`` (or, if its file cannot be decoded, the next one that can) and its label."""
        for j in range(i, i + len(self.samples)):
            path, label = self.samples[j % len(self.samples)]
            try:
                return load_image(path, self.resolution), label
            except READ_ERRORS as e:
                warnings.warn(f"skipped unreadable image '{path}' ({type(e).__name__}: {e}); serving the next one")
        raise DatasetError(f"none of the images under '{self.folder}' can be decoded")
