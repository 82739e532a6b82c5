"""An image folder decoded once into a memory-mapped uint8 array, so that training never decodes a JPEG.

A packed data set is one directory::

    OUT/images.npy   uint8 (N, R, R, 3), read with np.load(mmap_mode="r")
    OUT/labels.npy   int64 (N,)
    OUT/meta.json    {"format", "count", "resolution", "resize", "classes", "split", "source", "num_skipped",
                      "skipped"}

``resize`` is the ``data.resize`` method the pixels were made with (tf-bilinear values rounded to uint8); a pack
made before it was recorded is pil-bicubic, hamgan's only method then. Reading a pack with another configured
method, or at another resolution, is an error that names both.

``pack_image_folder`` (CLI: ``scripts/pack_imagenet.py``) decodes with a process pool, skips unreadable images with
one warning, and builds everything in a temporary sibling directory that is renamed to OUT only when complete, so
an interrupted pack never leaves a directory that looks finished. Pixels equal those of
:class:`hamgan.data.imagenet.ImageFolderDataset` (its ``get_uint8``) exactly: same decoding function.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hamgan.data.dataset import ArrayDataset, DatasetError
from hamgan.data.imagenet import READ_ERRORS, load_image, scan_image_folder, split_folder, warn_skipped
from hamgan.data.transforms import check_method, to_uint8

FORMAT = "hamgan-packed-v1"
UNRECORDED_RESIZE = "pil-bicubic"  # the method of packs made before meta.json recorded it
IMAGES, LABELS, META = "images.npy", "labels.npy", "meta.json"


class PackedDataset(ArrayDataset):
    """A packed data set (see the module doc), memory-mapped: only the pages read are loaded.

    Args:
        path: the packed directory (or a file inside it).
        resolution: expected R; a different packed resolution is an error.
        split: expected split (checked when the pack recorded one).
        hflip: random horizontal flip in ``__getitem__``.
        resize: expected resize method (``data.resize``); None: not checked.
    """

    def __init__(self, path: str | Path, resolution: int | None = None, split: str | None = None,
                 hflip: bool = False, resize: str | None = None):
        folder = Path(path).expanduser()
        folder = folder.parent if folder.is_file() else folder
        if not (folder / META).is_file():
            raise DatasetError(
                f"'{path}' is not a packed data set (no {META} in '{folder}'); create one with "
                f"`python scripts/pack_imagenet.py IMAGENET_ROOT --out {path} --resolution R`"
            )
        self.meta = json.loads((folder / META).read_text())
        images = np.load(folder / IMAGES, mmap_mode="r")
        labels = np.load(folder / LABELS)
        if images.shape != (self.meta["count"], self.meta["resolution"], self.meta["resolution"], 3) or len(
            labels
        ) != self.meta["count"]:
            raise DatasetError(f"packed data set '{folder}' is inconsistent: images {images.shape}, labels "
                               f"{labels.shape}, meta count {self.meta['count']}; pack it again")
        if resolution is not None and resolution != self.meta["resolution"]:
            raise DatasetError(
                f"'{folder}' was packed at resolution {self.meta['resolution']} but model.resolution={resolution}; "
                f"pack again with --resolution {resolution} or set model.resolution={self.meta['resolution']}"
            )
        packed_resize = self.meta.get("resize", UNRECORDED_RESIZE)
        if resize is not None and resize != packed_resize:
            raise DatasetError(
                f"'{folder}' was packed with resize method {packed_resize} but data.resize={resize}; set "
                f"data.resize={packed_resize} or pack again with --resize {resize}"
            )
        if split is not None and self.meta["split"] is not None and split != self.meta["split"]:
            raise DatasetError(f"'{folder}' was packed from split '{self.meta['split']}' but data.split='{split}'; "
                               f"set data.split={self.meta['split']} or pack the '{split}' split")
        super().__init__(images, labels, self.meta["classes"], channels=3, hflip=hflip)
        self.folder = folder

    def __getstate__(self) -> dict:
        """Pickle (DataLoader workers under spawn/forkserver) without the pixels: they are mapped again."""
        state = self.__dict__.copy()
        state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images = np.load(self.folder / IMAGES, mmap_mode="r")


# --------------------------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------------------------

_worker_images: np.ndarray | None = None  # each pool worker's writable memmap of images.npy


def _open_worker(images_path: str) -> None:
    global _worker_images
    _worker_images = np.load(images_path, mmap_mode="r+")


def _decode_chunk(task: tuple[int, list[str], int, str]) -> tuple[int, list[tuple[int, str]]]:
    """Decode ``paths`` into rows ``start...`` of the worker's memmap -> (len(paths), [(row, error)] that failed)."""
    start, paths, resolution, method = task
    failed = []
    for row, path in enumerate(paths, start):
        try:
            _worker_images[row] = to_uint8(load_image(path, resolution, method))
        except READ_ERRORS as e:
            failed.append((row, f"{type(e).__name__}: {e}"))
    _worker_images.flush()
    return len(paths), failed


@contextlib.contextmanager
def _decoder(workers: int, images_path: Path) -> Iterator[Callable]:
    """An unordered ``map`` over ``workers`` processes writing into ``images_path`` (0: this process)."""
    global _worker_images
    if workers == 0:
        _open_worker(str(images_path))
        try:
            yield map
        finally:
            _worker_images = None  # unmap
        return
    with multiprocessing.Pool(workers, initializer=_open_worker, initargs=(str(images_path),)) as pool:
        yield pool.imap_unordered  # leaving the block terminates the workers, also on an exception


def pack_image_folder(
    root: str | Path, out: str | Path, resolution: int = 128, split: str = "train", workers: int | None = None,
    overwrite: bool = False, chunk: int = 256, progress: bool = True, resize: str = "tf-bilinear",
) -> dict:
    """Pack ``root`` (ImageFolder layout, ``root/split`` if it exists) into the directory ``out``; returns the meta.

    ``workers``: decoding processes (None: all CPUs; 0: decode in this process). ``resize``: the ``data.resize``
    method (recorded in the meta).
    """
    check_method(resize)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise DatasetError(f"'{out}' already exists; remove it or pass --overwrite")
    folder = split_folder(root, split)
    classes, samples = scan_image_folder(folder)
    paths = [p for p, _ in samples]
    labels = np.array([label for _, label in samples], dtype=np.int64)
    n = len(paths)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        images_path = tmp / IMAGES
        np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(n, resolution, resolution, 3)).flush()
        tasks = [(s, paths[s:s + chunk], resolution, resize) for s in range(0, n, chunk)]
        failed: list[tuple[int, str]] = []
        workers = os.cpu_count() if workers is None else workers
        with _decoder(workers, images_path) as imap, tqdm(total=n, desc=f"packing {folder}", unit="img",
                                                          disable=not progress) as bar:
            for count, fails in imap(_decode_chunk, tasks):
                failed += fails
                bar.update(count)

        failed.sort()
        warn_skipped([(paths[row], err) for row, err in failed], n, stacklevel=2)
        if failed:  # copy the readable rows into a file of the right length
            keep = np.ones(n, dtype=bool)
            keep[[row for row, _ in failed]] = False
            rows = np.flatnonzero(keep)
            full = np.load(images_path, mmap_mode="r")
            compact = np.lib.format.open_memmap(tmp / "compact.npy", mode="w+", dtype=np.uint8,
                                                shape=(len(rows), resolution, resolution, 3))
            for s in range(0, len(rows), 4096):
                compact[s:s + 4096] = full[rows[s:s + 4096]]
            compact.flush()
            del full, compact
            os.replace(tmp / "compact.npy", images_path)
            labels = labels[rows]
        np.save(tmp / LABELS, labels)
        meta = {
            "format": FORMAT,
            "count": len(labels),
            "resolution": resolution,
            "resize": resize,
            "classes": classes,
            "split": split if folder != Path(root).expanduser() else None,
            "source": str(folder.resolve()),
            "num_skipped": len(failed),
            "skipped": [paths[row] for row, _ in failed[:1000]],
        }
        (tmp / META).write_text(json.dumps(meta, indent=1))
        for f in tmp.iterdir():  # data on disk before the rename makes the pack visible
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        if out.exists():  # overwrite: move the old pack aside first
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.rename(tmp, out)
        dir_fd = os.open(out.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
