"""Fréchet Inception Distance: streaming float64 feature statistics, pytorch-fid's ``.npz`` format, the distance.

    stats = FeatureStats(2048); stats.update(features)      # any number of (B, 2048) batches
    mu, sigma = stats.mean(), stats.cov()                   # float64, as np.mean / np.cov of all features
    fid = frechet_distance(mu, sigma, *load_stats("ref.npz"))

Image sources become uint8 (B, 3, H, W) batches; :func:`extract` runs them through :class:`InceptionFeatures`.
A folder is read exactly as pytorch-fid reads it (same files, same order, PIL ``.convert('RGB')``), decoded in
DataLoader worker processes while the network runs.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import IMAGE_EXTENSIONS, calculate_frechet_distance

from hamgan.metrics.inception import FEATURE_DIM, InceptionFeatures


class StatsError(ValueError):
    """A statistics file or image folder that cannot be used for FID."""


# --------------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------------


class FeatureStats:
    """Running mean and covariance of feature vectors, accumulated in float64 (sum and sum of outer products).

    ``cov()`` is the unbiased sample covariance (divides by n - 1), as ``np.cov(features, rowvar=False)``.
    """

    def __init__(self, dim: int = FEATURE_DIM, device: str | torch.device = "cpu"):
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features (B, dim)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features (B, {self.dim}), got {tuple(features.shape)}")
        f = features.to(self.sum.device, torch.float64)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f

    def mean(self) -> np.ndarray:
        """mu, float64 (dim,)."""
        if self.n == 0:
            raise StatsError("no features were accumulated")
        return (self.sum / self.n).cpu().numpy()

    def cov(self) -> np.ndarray:
        """sigma, float64 (dim, dim)."""
        if self.n < 2:
            raise StatsError(f"a covariance needs at least 2 samples, got {self.n}")
        mu = self.sum / self.n
        return ((self.sum_outer - self.n * torch.outer(mu, mu)) / (self.n - 1)).cpu().numpy()


def save_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write ``mu`` and ``sigma`` as pytorch-fid's ``--save-stats`` does (``np.savez_compressed``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mu=mu, sigma=sigma)


def load_stats(path: str | Path, dim: int = FEATURE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """``(mu (dim,), sigma (dim, dim))`` from a pytorch-fid statistics ``.npz``, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"statistics file '{path}' does not exist (make one with: hamgan-eval stats SOURCE "
                         f"--out {path})")
    try:
        with np.load(path) as f:
            missing = [k for k in ("mu", "sigma") if k not in f.files]
            if missing:
                raise StatsError(f"statistics file '{path}' has arrays {f.files} but no {' or '.join(missing)}: "
                                 f"expected pytorch-fid's --save-stats format (mu, sigma)")
            mu, sigma = f["mu"][:], f["sigma"][:]
    except StatsError:
        raise
    except Exception as e:
        raise StatsError(f"statistics file '{path}' cannot be read as .npz ({type(e).__name__}: {e})") from None
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise StatsError(f"statistics file '{path}' has mu of shape {mu.shape} and sigma of shape {sigma.shape}, "
                         f"expected ({dim},) and ({dim}, {dim}) (Inception pool3 features); recompute it with "
                         f"hamgan-eval stats or pytorch-fid --save-stats with --dims {dim}")
    return mu.astype(np.float64), sigma.astype(np.float64)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)): pytorch-fid's ``calculate_frechet_distance``."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise StatsError(f"the two statistics have different shapes: mu {mu1.shape} vs {mu2.shape}, sigma "
                         f"{sigma1.shape} vs {sigma2.shape}")
    return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def warn_if_biased(n: int, dim: int = FEATURE_DIM) -> None:
    if n < dim:
        warnings.warn(
            f"FID from {n} samples, fewer than the {dim} feature dimensions: the covariance is rank-deficient and "
            f"the value is biased (too high) and not comparable with published numbers (use 10k-50k samples)",
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------------------------------
# Feature extraction
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Extraction:
    """What :func:`extract` returns: feature statistics and, when asked for, the logits (n, 1008) float32 CPU."""

    stats: FeatureStats
    logits: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.stats.n


def extract(
    batches: Iterable[torch.Tensor], inception: InceptionFeatures, device: str | torch.device = "cpu",
    total: int | None = None, keep_logits: bool = False, desc: str = "inception", progress: bool = True,
) -> Extraction:
    """Run uint8 (B, 3, H, W) batches through the Inception; accumulate pool3 statistics (and logits).

    ``total`` (number of images) only sizes the tqdm bar.
    """
    from tqdm import tqdm

    device = torch.device(device)
    stats = FeatureStats(FEATURE_DIM, device)
    logits = []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)
    with torch.inference_mode():
        for images in batches:
            images = torch.as_tensor(images).to(device, non_blocking=True)
            features, lg = inception(images)
            stats.update(features)
            if keep_logits:
                logits.append(lg.float().cpu())
            bar.update(len(images))
    bar.close()
    if stats.n == 0:
        raise StatsError("no images to compute statistics from")
    return Extraction(stats, torch.cat(logits) if keep_logits else None)


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
    num_workers: int = 1, keep_logits: bool = False, progress: bool = True,
) -> Extraction:
    """Inception statistics of every image in ``folder`` (the images pytorch-fid would read)."""
    batches, n = folder_batches(folder, batch_size, num_workers, pin_memory=torch.device(device).type == "cuda")
    return extract(batches, inception, device, n, keep_logits, desc=Path(folder).name, progress=progress)


def generator_statistics(
    G: torch.nn.Module, inception: InceptionFeatures, n: int, batch_size: int = 100, truncation: float | None = None,
    seed: int = 0, device: str | torch.device | None = None, keep_logits: bool = False, progress: bool = True,
) -> Extraction:
    """Inception statistics of ``n`` samples of G (labels uniform over its classes), quantised as PNG would be."""
    from hamgan.sample import iter_samples

    device = next(G.parameters()).device if device is None else device
    batches = iter_samples(G, n, batch_size, None, truncation, seed, device)
    return extract(batches, inception, device, n, keep_logits, desc="G samples", progress=progress)


def generator_fid(
    G: torch.nn.Module, ref: tuple[np.ndarray, np.ndarray] | str | Path, n: int = 5000, batch_size: int = 100,
    inception: InceptionFeatures | None = None, seed: int = 0, device: str | torch.device | None = None,
    progress: bool = False,
) -> float:
    """FID of ``n`` samples of G against reference statistics ``(mu, sigma)`` or a ``.npz`` path (for training).

    Build the :class:`InceptionFeatures` once and pass it in when calling this repeatedly.
    """
    device = next(G.parameters()).device if device is None else device
    if inception is None:
        inception = InceptionFeatures().to(device)
    mu_ref, sigma_ref = load_stats(ref) if isinstance(ref, (str, Path)) else ref
    warn_if_biased(n)
    was_training = G.training
    G.eval()
    try:
        ext = generator_statistics(G, inception, n, batch_size, None, seed, device, progress=progress)
    finally:
        G.train(was_training)
    return frechet_distance(ext.stats.mean(), ext.stats.cov(), mu_ref, sigma_ref)


def dataset_statistics(
    dataset: torch.utils.data.Dataset, inception: InceptionFeatures, n: int | None = None, batch_size: int = 100,
    device: str | torch.device = "cpu", num_workers: int = 1, seed: int = 0, keep_logits: bool = False,
    progress: bool = True,
) -> Extraction:
    """Inception statistics of a :func:`hamgan.data.build_dataset` data set's uint8 pixels (never flipped).

    ``n`` None: every image; else a random subset of ``n`` (fixed by ``seed``), see :func:`hamgan.data.uint8_images`.
    """
    from hamgan.data import uint8_images

    total = len(dataset) if n is None else min(n, len(dataset))
    if total == 0:
        raise StatsError("the data set is empty")
    batches = (torch.from_numpy(b).permute(0, 3, 1, 2) for b in uint8_images(dataset, n, batch_size, num_workers,
                                                                                 seed))
    return extract(batches, inception, device, total, keep_logits, desc="data set", progress=progress)
