"""Inception features of image sources: image folders, generators, data sets; features files.

Every source becomes batches of images (uint8, or float in [0, 255]) and optionally their labels; :func:`extract` runs
them through :class:`InceptionFeatures` once and keeps what the metrics need: the streaming float64 statistics (FID),
the logits (IS), and when asked the features and labels themselves (KID, precision/recall, density/coverage,
per-class FID).

A folder is read exactly as pytorch-fid reads it (same files, same order, PIL ``.convert('RGB')``), decoded in
DataLoader worker processes while the network runs.

A **features file** is a statistics ``.npz`` (``mu``, ``sigma``, so pytorch-fid reads it too) that also holds
``features`` (n, 2048) float32, ``labels`` (n,) when known, ``n`` and ``protocol``; ``hamgan-eval stats SOURCE --out
ref.npz --features`` writes one.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import IMAGE_EXTENSIONS

from hamgan.data import float_images
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.inception import FEATURE_DIM, InceptionFeatures
from hamgan.metrics.stats import FeatureStats, StatsError, load_stats, save_stats, warn_if_biased
from hamgan.sample import iter_samples


INCEPTION_MAX_BATCH = 256  # larger batches (e.g. the 1024 of batch-mode BN sampling) go through in chunks


def default_workers() -> int:
    """Image decoding processes by default: as many as this process may use cores."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class Extraction:
    """What :func:`extract` returns: feature statistics and, when asked for, per-image arrays on the CPU.

    logits: (n, 1008) float32 without the classifier bias; features: (n, 2048) float32; labels: (n,) int64.
    """

    stats: FeatureStats
    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.stats.n


def extract(
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, torch.Tensor]], inception: InceptionFeatures,
    device: str | torch.device = "cpu", total: int | None = None, keep_logits: bool = False,
    desc: str = "inception", progress: bool = True, keep_features: bool = False,
) -> Extraction:
    """Run image batches (B, 3, H, W) through the Inception; accumulate pool3 statistics (and logits, features).

    A batch is uint8 images, float images in [0, 255], or a pair ``(images, labels)`` (labels are then kept).
    ``total`` (number of images) only sizes the tqdm bar.
    """
    from tqdm import tqdm

    device = torch.device(device)
    stats = FeatureStats(FEATURE_DIM, device)
    logits, features, labels = [], [], []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)
    with torch.inference_mode():
        for batch in batches:
            images, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
            images = torch.as_tensor(images).to(device, non_blocking=True)
            f, lg = (torch.cat(t) for t in zip(*(inception(c) for c in images.split(INCEPTION_MAX_BATCH))))
            stats.update(f)
            if keep_logits:
                logits.append(lg.float().cpu())
            if keep_features:
                features.append(f.float().cpu())
            if y is not None:
                labels.append(torch.as_tensor(y).long().cpu())
            bar.update(len(images))
    bar.close()
    if stats.n == 0:
        raise StatsError("no images to compute statistics from")
    all_labelled = bool(labels) and sum(len(y) for y in labels) == stats.n
    return Extraction(stats, torch.cat(logits) if keep_logits else None,
                      torch.cat(features) if keep_features else None, torch.cat(labels) if all_labelled else None)


# --------------------------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------------------------


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` that pytorch-fid reads, in its order (no recursion)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise StatsError(f"'{folder}' is not a folder")
    files = sorted(file for ext in IMAGE_EXTENSIONS for file in folder.glob(f"*.{ext}"))
    if not files:
        raise StatsError(f"folder '{folder}' holds no images (looked for *.{{{','.join(sorted(IMAGE_EXTENSIONS))}}}, "
                         f"lower-case extensions, not in subfolders)")
    return files


class ImageFiles(torch.utils.data.Dataset):
    """Image files as uint8 (3, H, W) RGB tensors, decoded as pytorch-fid does (PIL ``.convert('RGB')``)."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def _stack_same_size(images: list[torch.Tensor]) -> torch.Tensor:
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        raise StatsError(f"images of different sizes in one batch {sorted(sizes)}: FID folders (as in pytorch-fid) "
                         f"must hold images of one size; resize them first")
    return torch.stack(images)


def folder_batches(
    folder: str | Path, batch_size: int = 50, num_workers: int = 1, pin_memory: bool = False,
) -> tuple[Iterator[torch.Tensor], int]:
    """uint8 (B, 3, H, W) batches of a folder's images (decoded in ``num_workers`` processes) and their count."""
    files = list_images(folder)
    loader = torch.utils.data.DataLoader(
        ImageFiles(files), batch_size=batch_size, num_workers=num_workers, collate_fn=_stack_same_size,
        pin_memory=pin_memory, persistent_workers=False, prefetch_factor=4 if num_workers > 0 else None,
    )
    return iter(loader), len(files)


def folder_statistics(
    folder: str | Path, inception: InceptionFeatures, batch_size: int = 50, device: str | torch.device = "cpu",
    num_workers: int = 1, keep_logits: bool = False, progress: bool = True, keep_features: bool = False,
) -> Extraction:
    """Inception statistics of every image in ``folder`` (the images pytorch-fid would read)."""
    batches, n = folder_batches(folder, batch_size, num_workers, pin_memory=torch.device(device).type == "cuda")
    return extract(batches, inception, device, n, keep_logits, desc=Path(folder).name, progress=progress,
                   keep_features=keep_features)


# --------------------------------------------------------------------------------------------------------------------
# Generators and data sets
# --------------------------------------------------------------------------------------------------------------------


def generator_statistics(
    G: torch.nn.Module, inception: InceptionFeatures, n: int, batch_size: int = 100, truncation: float | None = None,
    seed: int = 0, device: str | torch.device | None = None, keep_logits: bool = False, progress: bool = True,
    *, bn=None, keep_features: bool = False, quantize: bool = True, classes: Sequence[int] | None = None,
) -> Extraction:
    """Inception statistics of ``n`` samples of G (labels uniform over ``classes``, default all; labels kept).

    ``quantize``: images become uint8 exactly as a PNG would store them (pytorch-fid's convention); False feeds
    the float output (the official TF protocol). ``bn``: batch-norm statistics, see :mod:`hamgan.bn_modes`
    (None: G as an enclosing ``bn_mode`` block set it, else its running statistics).
    """
    device = next(G.parameters()).device if device is None else device
    batches = iter_samples(G, n, batch_size, classes, truncation, seed, device, bn=bn, labels=True,
                           quantize=quantize)
    return extract(batches, inception, device, n, keep_logits, desc="G samples", progress=progress,
                   keep_features=keep_features)


def generator_fid(
    G: torch.nn.Module, ref: tuple[np.ndarray, np.ndarray] | str | Path, n: int = 5000, batch_size: int = 100,
    inception: InceptionFeatures | None = None, seed: int = 0, device: str | torch.device | None = None,
    progress: bool = False, *, bn=None,
) -> float:
    """FID of ``n`` samples of G against reference statistics ``(mu, sigma)`` or a ``.npz`` path (for training).

    Build the :class:`InceptionFeatures` once and pass it in when calling this repeatedly. ``bn``: the batch-norm
    statistics to sample with (:class:`hamgan.bn_modes.BNMode` or a mode name; None: running statistics). G is put
    in eval mode for the call and left as it was.
    """
    device = next(G.parameters()).device if device is None else device
    if inception is None:
        inception = InceptionFeatures().to(device)
    mu_ref, sigma_ref = load_stats(ref) if isinstance(ref, (str, Path)) else ref
    warn_if_biased(n)
    ext = generator_statistics(G, inception, n, batch_size, None, seed, device, progress=progress, bn=bn)
    return frechet_distance(ext.stats.mean(), ext.stats.cov(), mu_ref, sigma_ref)


def dataset_statistics(
    dataset: torch.utils.data.Dataset, inception: InceptionFeatures, n: int | None = None, batch_size: int = 100,
    device: str | torch.device = "cpu", num_workers: int = 1, seed: int = 0, keep_logits: bool = False,
    progress: bool = True, *, keep_features: bool = False, quantize: bool = True,
) -> Extraction:
    """Inception statistics of a :func:`hamgan.data.build_dataset` data set's pixels (never flipped), with labels.

    ``n`` None: every image; else a random subset of ``n`` (fixed by ``seed``), see :func:`hamgan.data.uint8_images`.
    ``quantize``: the uint8 pixels (``get_uint8``); False: ``get_float`` (unquantised where the pipeline keeps
    floats, the official TF protocol).
    """
    total = len(dataset) if n is None else min(n, len(dataset))
    if total == 0:
        raise StatsError("the data set is empty")
    batches = ((torch.from_numpy(b).permute(0, 3, 1, 2), torch.from_numpy(y))
               for b, y in float_images(dataset, n, batch_size, num_workers, seed, labels=True, quantized=quantize))
    return extract(batches, inception, device, total, keep_logits, desc="data set", progress=progress,
                   keep_features=keep_features)


# --------------------------------------------------------------------------------------------------------------------
# Features files
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """Statistics of a reference set; ``features`` / ``labels`` only when the source had them (not a mu/sigma npz)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None
    features: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    protocol: str | None = None
    source: str = ""

    @classmethod
    def from_extraction(cls, ext: Extraction, protocol: str | None = None, source: str = "") -> Reference:
        return cls(ext.stats.mean(), ext.stats.cov(), ext.n, ext.features, ext.labels, protocol, source)

    def need_features(self, what: str) -> torch.Tensor:
        if self.features is None:
            raise StatsError(
                f"{what} needs the reference's features, but '{self.source}' holds only mu/sigma (enough for FID "
                f"alone). Give an image folder or a data set config as reference, or a features file made with "
                f"hamgan-eval stats SOURCE --out REF.npz --features")
        return self.features


def save_features(path: str | Path, ext: Extraction, protocol: str, **made: str | int) -> None:
    """A features file: mu, sigma (pytorch-fid format) plus features, labels, n, protocol and ``made`` (how the
    images were made, e.g. source, step, bn)."""
    if ext.features is None:
        raise ValueError("the extraction kept no features (extract(..., keep_features=True))")
    extra = {"features": ext.features.numpy(), "n": ext.n, "protocol": protocol, **made}
    if ext.labels is not None:
        extra["labels"] = ext.labels.numpy()
    save_stats(path, ext.stats.mean(), ext.stats.cov(), **extra)


def load_reference(path: str | Path) -> Reference:
    """A ``.npz``: pytorch-fid mu/sigma only, or a features file (see the module doc)."""
    mu, sigma = load_stats(path)
    with np.load(path) as f:
        features = torch.from_numpy(f["features"].astype(np.float32)) if "features" in f.files else None
        labels = torch.from_numpy(f["labels"].astype(np.int64)) if "labels" in f.files else None
        n = int(f["n"]) if "n" in f.files else (len(features) if features is not None else None)
        protocol = str(f["protocol"]) if "protocol" in f.files else None
    if features is not None and features.shape[1:] != (FEATURE_DIM,):
        raise StatsError(f"features file '{path}' has features of shape {tuple(features.shape)}, expected "
                         f"(n, {FEATURE_DIM})")
    return Reference(mu, sigma, n, features, labels, protocol, str(path))
