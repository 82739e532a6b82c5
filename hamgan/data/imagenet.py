"""ImageNet (or any class-per-folder image set) read from JPEG files in torchvision's ImageFolder layout.

Layout: ``ROOT/<split>/<class>/<image>`` (e.g. ``ROOT/train/n01440764/n01440764_10026.JPEG``), or
``ROOT/<class>/<image>`` when ``ROOT/<split>`` does not exist. Labels are the class folders in sorted order, the
same as ``torchvision.datasets.ImageFolder``. Each image is cropped to its largest centre square and resized to R
with ``data.resize`` (:mod:`hamgan.data.transforms`); with ``tf-bilinear`` (the official pipeline) the pixels stay
in float: ``dataset[i]`` is float32 (3, R, R) in [-1, 1] = ``x * (2 / 255) - 1`` and ``get_float(i)`` the
unquantised (R, R, 3) values in [0, 255].

The index (classes, files, unreadable files) is built once and cached in a file that later runs read
(:func:`load_or_build_index`): every file's header is opened once, by a pool of processes; files that are not images
are skipped, counted, and reported in one warning (also when the index is read from its file). A file that is
damaged further in (e.g. a truncated JPEG) only fails when decoded: ``load`` then warns with its path and serves
the next readable image instead. ``scripts/pack_imagenet.py`` decodes every image once, so it finds and reports all
of them before training.

For a multi-process trainer (:func:`hamgan.train.stream.build_training_dataset`): rank 0 calls
``load_or_build_index(root, split, cache_dir, shared_dir=RUN)``, which writes the file beside the data when it can,
else in the run folder ``RUN`` (shared by all ranks), and broadcasts the path of the file it wrote; every other rank
builds its data set from that exact file (``index_file=``), so no rank re-derives the location
(a host-local ``~/.cache``, a hash of a mount path that differs between nodes). An index file is valid for any path
the folder is mounted at: it is checked against the class folders' names and modification times, not the path.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from hamgan.data.dataset import DatasetError, ImageDataset
from hamgan.data.transforms import center_crop_resize, check_method, to_uint8

# UnidentifiedImageError and "image file is truncated" are OSErrors; damaged headers also raise these.
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
LAYOUT = "ROOT/<split>/<class>/<image> or ROOT/<class>/<image> (torchvision ImageFolder layout)"
INDEX_FORMAT = "hamgan-imagefolder-index/1"
INDEX_NAME = ".hamgan-index.json"  # inside the scanned folder, beside the class folders
SHARED_INDEX_NAME = "imagefolder-index-{folder}.json"  # in a shared folder (the run folder), {folder}: e.g. train
USER_INDEX_CACHE = Path("~/.cache/hamgan/index").expanduser()  # when the data folder is read-only


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


def load_image(path: str | Path, resolution: int, method: str = "tf-bilinear") -> np.ndarray:
    """Decode, centre-crop and resize one image file -> (R, R, 3): uint8, or float32 in [0, 255] for tf-bilinear.

    Raises one of ``READ_ERRORS``.
    """
    with Image.open(path) as image:
        return center_crop_resize(image, resolution, method)


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


# --------------------------------------------------------------------------------------------------------------------
# The index, built once and cached in a file
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ImageFolderIndex:
    """What an ImageFolder data set is made of: ``classes``, readable ``samples`` [(path, label)] and ``skipped``
    [(path, error)] (``total`` = readable + skipped). ``cache`` is the index file it was read from or written to
    (None when it could not be written)."""

    folder: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    skipped: list[tuple[str, str]]
    cache: Path | None = None

    @property
    def total(self) -> int:
        return len(self.samples) + len(self.skipped)


def index_path(root: str | Path, split: str = "train", cache_dir: str | Path | None = None) -> Path:
    """Where the index of ``root``/``split`` is cached: ``FOLDER/.hamgan-index.json`` beside the class folders, or
    ``cache_dir/<folder name>-<hash of its absolute path>.json`` when ``cache_dir`` is given."""
    folder = split_folder(root, split)
    if cache_dir is None:
        return folder / INDEX_NAME
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"{folder.name}-{digest}.json"


def shared_index_path(root: str | Path, split: str, shared_dir: str | Path) -> Path:
    """Where the index of ``root``/``split`` is cached in a folder that every rank reads (the run folder):
    ``shared_dir/imagefolder-index-<folder name>.json``, the same name whatever path the data is mounted at."""
    return Path(shared_dir).expanduser() / SHARED_INDEX_NAME.format(folder=split_folder(root, split).name)


def _fingerprint(folder: Path, classes: list[str]) -> list[int]:
    """Modification times (ns) of the class folders: they change when files are added, removed or renamed."""
    return [os.stat(folder / c).st_mtime_ns for c in classes]


def _header_errors(paths: list[str]) -> list[str | None]:
    return [header_error(p) for p in paths]


def _check_headers(paths: list[str], workers: int, chunk: int = 1024) -> list[str | None]:
    """:func:`header_error` of every path, by ``workers`` processes (0 or 1: in this process)."""
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return [e for c in chunks for e in _header_errors(c)]
    context = multiprocessing.get_context("spawn")  # safe in a process that holds CUDA or threads
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
        return [e for errors in pool.map(_header_errors, chunks) for e in errors]


def _read_index(path: Path, folder: Path) -> tuple[ImageFolderIndex | None, str]:
    """``(the index in path, "")`` when it exists and still describes ``folder`` (same class folders, same
    modification times; the folder's path may differ: another mount point), else ``(None, why not)``."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != INDEX_FORMAT:
            return None, f"it is not a {INDEX_FORMAT} file"
        classes = data["classes"]
        current = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if current != classes:
            return None, f"it lists {len(classes)} class folders, '{folder}' has {len(current)} (or other names)"
        if _fingerprint(folder, classes) != data["mtimes"]:
            return None, f"class folders of '{folder}' changed since it was written (modification times)"
        samples = [(str(folder / classes[k] / name), k) for k, names in enumerate(data["files"]) for name in names]
        skipped = [(str(folder / p), err) for p, err in data["skipped"]]
        return ImageFolderIndex(folder, classes, samples, skipped, path), ""
    except FileNotFoundError:
        return None, "it does not exist (here)"
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return None, f"it cannot be read ({type(e).__name__}: {e})"


def _write_index(index: ImageFolderIndex, paths: list[Path]) -> Path | None:
    """Write ``index`` atomically to the first writable path of ``paths``; the path written, or None."""
    folder = index.folder
    files: list[list[str]] = [[] for _ in index.classes]
    for path, label in index.samples:
        files[label].append(os.path.relpath(path, folder / index.classes[label]))
    data = {
        "format": INDEX_FORMAT,
        "folder": str(folder.resolve()),
        "classes": index.classes,
        "mtimes": _fingerprint(folder, index.classes),
        "files": files,
        "skipped": [[os.path.relpath(p, folder), err] for p, err in index.skipped],
    }
    text = json.dumps(data, separators=(",", ":"))
    for path in paths:
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
            return path
        except OSError:
            tmp.unlink(missing_ok=True)
    return None


def copy_index(index: ImageFolderIndex, path: Path) -> Path | None:
    """Write ``index`` to ``path`` as well (atomically); ``path``, or None when it cannot be written."""
    return _write_index(index, [Path(path)])


def load_or_build_index(
    root: str | Path, split: str = "train", cache_dir: str | Path | None = None, workers: int | None = None,
    rebuild: bool = False, shared_dir: str | Path | None = None, index_file: str | Path | None = None,
) -> ImageFolderIndex:
    """The index of the ImageFolder ``root``/``split``: read from its file when that still describes the folder
    (same class folders, same modification times), else built and written.

    Where the file is looked for, in this order, and written (the first that can be written):

    1. ``index_file`` when given (e.g. the file rank 0 wrote): only read; when it does not describe the folder here
       a warning names it and why, and the index is found or built as without it;
    2. :func:`index_path`: beside the class folders, or in ``cache_dir`` when given;
    3. :func:`shared_index_path` in ``shared_dir`` (the run folder) when given;
    4. ``~/.cache/hamgan/index`` when ``cache_dir`` is None. When the file had to go to ``shared_dir``, a copy goes
       here too, so that later runs on this host (in other run folders) read it.

    Building scans the class folders and opens every file's header with ``workers`` processes (None: all CPUs, at
    most 32). When no file can be written the index is still returned (``cache`` None). A file rewritten in place
    is not noticed (delete the index file, or pass ``rebuild=True``).
    """
    folder = split_folder(root, split)
    primary = index_path(root, split, cache_dir)
    shared = None if shared_dir is None else shared_index_path(root, split, shared_dir)
    user = None if cache_dir is not None else index_path(root, split, USER_INDEX_CACHE)
    candidates = [p for p in (primary, shared, user) if p is not None]
    why_not = None
    if index_file is not None and not rebuild:
        index, why_not = _read_index(Path(index_file), folder)
        if index is not None:
            return index
    if not rebuild:
        for path in candidates:
            if path.is_file() and (index := _read_index(path, folder)[0]) is not None:
                return index
    if why_not is not None:  # neither the given file nor a cache here describes the folder: this host builds it
        warnings.warn(f"the index file '{index_file}' does not describe '{folder}' on this host: {why_not}; building "
                      f"the index here instead", stacklevel=2)
    classes, samples = scan_image_folder(folder)
    workers = min(os.cpu_count() or 1, 32) if workers is None else workers
    errors = _check_headers([p for p, _ in samples], workers)
    index = ImageFolderIndex(
        folder, classes,
        samples=[s for s, err in zip(samples, errors) if err is None],
        skipped=[(p, err) for (p, _), err in zip(samples, errors) if err is not None],
    )
    index.cache = _write_index(index, candidates)
    if index.cache is not None and index.cache == shared and user is not None:
        copy_index(index, user)  # for later runs of this host in other run folders
    return index


# --------------------------------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------------------------------


class ImageFolderDataset(ImageDataset):
    """Images decoded from files on every access (see the module doc; packing them is much faster to train from).

    Args:
        root: data set folder, see ``LAYOUT``.
        split: sub-folder used when ``root/split`` exists.
        resolution: R.
        hflip: random horizontal flip in ``__getitem__``.
        resize: ``data.resize`` method (:data:`hamgan.data.transforms.RESIZE_METHODS`).
        index_cache: folder of the index file (None: beside the class folders, see :func:`load_or_build_index`).
        index_file: an index file to read first (e.g. the one rank 0 wrote), when it describes the folder; else the
            index is found in ``index_cache`` or built (with a warning naming the file).
        workers: processes that build the index when it is not cached (None: all CPUs, at most 32).
    """

    def __init__(self, root: str | Path, split: str = "train", resolution: int = 128, hflip: bool = False,
                 resize: str = "tf-bilinear", index_cache: str | Path | None = None, workers: int | None = None,
                 index_file: str | Path | None = None):
        check_method(resize)
        index = load_or_build_index(root, split, index_cache, workers, index_file=index_file)
        self.folder = index.folder
        super().__init__(index.classes, resolution, 3, hflip)
        self.resize = resize
        self.index_file = index.cache
        warn_skipped(index.skipped, index.total, stacklevel=2)
        self.num_skipped = len(index.skipped)
        self.samples = index.samples
        if not self.samples:
            raise DatasetError(f"none of the {index.total} image files under '{self.folder}' can be read")

    def __len__(self) -> int:
        return len(self.samples)

    def load_pixels(self, i: int) -> tuple[np.ndarray, int]:
        """Image ``i`` (or, if its file cannot be decoded, the next one that can) as the resize method gives it
        (uint8, or float32 for tf-bilinear) and its label."""
        for j in range(i, i + len(self.samples)):
            path, label = self.samples[j % len(self.samples)]
            try:
                return load_image(path, self.resolution, self.resize), label
            except READ_ERRORS as e:
                warnings.warn(f"skipped unreadable image '{path}' ({type(e).__name__}: {e}); serving the next one")
        raise DatasetError(f"none of the images under '{self.folder}' can be decoded")

    def load(self, i: int) -> tuple[np.ndarray, int]:
        """Image ``i`` as uint8 (R, R, 3) (tf-bilinear rounded) and its label."""
        image, label = self.load_pixels(i)
        return to_uint8(image), label

    def get_float(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 (R, R, 3) in [0, 255], never flipped; unquantised with tf-bilinear."""
        return self.load_pixels(i)[0].astype(np.float32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.resize != "tf-bilinear":
            return super().__getitem__(i)
        image, label = self.load_pixels(i)  # float, kept unquantised: float32 (C, R, R) in [-1, 1] as official
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).mul(2.0 / 255).sub_(1.0)
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, label
