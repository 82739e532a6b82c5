"""What a run produces besides weights: the sample grid (rank 0) and the periodic FID (shared by every rank).

Sample grid, ``samples/step-<step>.png``: one row per class (up to GRID_CLASSES classes spread over num_classes),
the same GRID_COLUMNS latents (from the run seed) in every row; the EMA generator when enabled, in eval mode; the
training's random streams are untouched.

Periodic FID (``train.fid.every > 0``), :class:`PeriodicFID`:

- built when training starts, so that a missing Inception weights file or a bad reference fails at step 0, not
  after hours: every rank loads the Inception network; the reference statistics are ``train.fid.ref_stats``, or
  the cached ``RUN/fid_ref.npz``, or computed from ``train.fid.ref_n`` training images (the same random subset as
  ``hamgan-eval stats``), each rank extracting its share of them;
- every ``train.fid.every`` steps each rank generates its share of ``train.fid.n_samples`` (its own latents:
  seed ``train.seed + rank``; a single process uses the seed ``train.seed``, as ``hamgan-eval``), extracts its
  features, and the feature statistics (n, sum, sum of outer products, float64) are all-reduced: no rank idles
  in a collective while another works. Rank 0 computes the Fréchet distance; every rank gets the value;
- an exception inside a periodic FID (on any rank) is logged and training continues (the FID of that step is
  missing). Errors of the collectives themselves (a lost rank) are not swallowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from torchvision.utils import save_image

from hamgan import distributed
from hamgan.bn_modes import BNMode, bn_mode
from hamgan.config import Config
from hamgan.data import uint8_images
from hamgan.distributed import DistInfo
from hamgan.metrics import (FeatureStats, InceptionFeatures, StatsError, extract, frechet_distance,
                            generator_statistics, load_stats, save_stats, warn_if_biased)
from hamgan.metrics.inception import FEATURE_DIM
from hamgan.metrics.protocol import DEFAULT_PROTOCOL
from hamgan.sample import class_grid
from hamgan.train.precision import autocast

GRID_CLASSES = 10  # rows of the sample grid (classes spread evenly over num_classes)
GRID_COLUMNS = 10  # samples per row (the same z in every row)


def grid_classes(num_classes: int) -> list[int]:
    """The classes of the grid's rows: up to GRID_CLASSES spread evenly over ``num_classes``."""
    return torch.linspace(0, num_classes - 1, min(GRID_CLASSES, num_classes)).round().long().tolist()


def save_sample_grid(G: nn.Module, classes: list[int], seed: int, device: torch.device,
                     amp: torch.dtype | None, path: Path, bn: BNMode | None = None) -> Path:
    """The grid of ``G`` (see module doc) written to ``path`` with the batch-norm statistics ``bn``
    (:mod:`hamgan.bn_modes`; None: running); G's mode, buffers and the random streams are restored."""
    devices = [device] if device.type == "cuda" else []
    # fork_rng: the Hamburger draws random bases; class_grid enters bn_mode, which restores G's flags and buffers
    with torch.random.fork_rng(devices=devices), autocast(device, amp), distributed.local_batch_norm(G):
        grid = class_grid(G, classes, GRID_COLUMNS, seed=seed, device=device, bn=bn or BNMode("running"))
    path.parent.mkdir(exist_ok=True)
    save_image(grid, path, nrow=GRID_COLUMNS, padding=1)
    return path


class _Shard:
    """The images ``indices`` of a data set, as :func:`hamgan.data.uint8_images` reads them."""

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def get_uint8(self, i: int) -> np.ndarray:
        return self.dataset.get_uint8(int(self.indices[i]))


class PeriodicFID:
    """FID during training, computed by all ranks together (see module doc). Build it on every rank (collective).

    Args:
        cfg: the run's config (``train.fid``, ``train.seed``, ``data.num_workers``).
        dataset: the training data set (for a computed reference).
        run_dir: the run folder (``fid_ref.npz`` cache).
        info: this rank.
        write: prints a line (rank 0's logger).
    """

    def __init__(self, cfg: Config, dataset: Any, run_dir: Path, info: DistInfo, write: Callable[[str], None]):
        self.cfg, self.info, self.write = cfg, info, write
        self.fid = cfg.train.fid
        self.device = info.device
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # building a network draws initial weights
            with distributed.main_rank_first("loading the FID Inception weights"):  # rank 0 may download them
                self.inception = InceptionFeatures().to(self.device)
            self.ref = self._reference(dataset, run_dir)

    def _reference(self, dataset: Any, run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mu, sigma)`` on rank 0 (None elsewhere: only rank 0 computes distances)."""

        f = self.fid
        source = f.ref_stats if f.ref_stats is not None else run_dir / "fid_ref.npz"
        self.ref_source = str(source)
        ref, error = None, None
        if self.info.is_main and (f.ref_stats is not None or Path(source).is_file()):
            try:
                ref = load_stats(source)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
        have, error = distributed.broadcast_object((ref is not None, error))
        if error is not None:
            raise StatsError(f"train.fid: the FID reference cannot be used: {error}")
        if have:
            return ref
        self.write(f"computing FID reference statistics of {f.ref_n or 'all'} training images -> {source}")
        stats = distributed.all_reduce_feature_stats(self._reference_share(dataset))
        if self.info.is_main:
            ref = stats.mean(), stats.cov()
            save_stats(source, *ref)
        return ref

    def _reference_share(self, dataset: Any):
        """Feature statistics of this rank's share of the reference images."""

        total, n = len(dataset), self.fid.ref_n
        if n is None or n >= total:
            indices = np.arange(total)
        else:  # the same random subset as hamgan.data.uint8_images(dataset, n, seed=train.seed)
            indices = np.sort(np.random.default_rng(self.cfg.train.seed).choice(total, size=n, replace=False))
        shard = indices[self.info.rank::self.info.world_size]
        if len(shard) == 0:
            return FeatureStats(FEATURE_DIM, self.device)
        batches = (torch.from_numpy(b).permute(0, 3, 1, 2)
                   for b in uint8_images(_Shard(dataset, shard), None, self.fid.batch_size,
                                         self.cfg.data.num_workers))
        return extract(batches, self.inception, self.device, len(shard), progress=False).stats

    def describe(self, bn: BNMode | None = None) -> dict[str, Any]:
        """How :meth:`measure` measures, for the metrics log: N, protocol, reference and batch-norm mode."""

        made = {f"fid_{k}": v for k, v in (bn or BNMode("running")).as_dict().items()}
        return {"fid_n": self.fid.n_samples, "fid_protocol": DEFAULT_PROTOCOL, "fid_ref": self.ref_source, **made}

    def measure(self, G: nn.Module, step: int, bn: BNMode | None = None) -> float | None:
        """FID of ``train.fid.n_samples`` samples of ``G`` (all ranks together) with the batch-norm statistics
        ``bn`` (None: running); None when it failed (logged).

        Collective: call it on every rank. The random streams of training are untouched.
        """

        f, info = self.fid, self.info
        share = distributed.shard_sizes(f.n_samples, info.world_size)[info.rank]
        stats, error = None, None
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            # bn_mode: eval mode and the batch-norm statistics of ``bn`` (standing ones drawn from the run seed, the
            # same on every rank), all restored on exit; the samples use this rank's own seed
            with torch.random.fork_rng(devices=devices), distributed.local_batch_norm(G), \
                    bn_mode(G, bn or BNMode("running"), seed=self.cfg.train.seed, device=self.device):
                if share > 0:
                    stats = generator_statistics(G, self.inception, share, f.batch_size, None,
                                                 self.cfg.train.seed + info.rank, self.device, progress=False).stats
        except Exception as e:  # this rank's own work; the collectives below are outside the try
            error = f"{type(e).__name__}: {e}"
        errors = [(r, e) for r, e in enumerate(distributed.all_gather_object(error)) if e is not None]
        if errors:
            self.write(f"step {step}: FID failed ({'; '.join(f'rank {r}: {e}' for r, e in errors)}); "
                       "training continues")
            return None
        if stats is None:
            stats = FeatureStats(FEATURE_DIM, self.device)
        stats = distributed.all_reduce_feature_stats(stats)
        fid, error = None, None
        if info.is_main:
            try:
                warn_if_biased(stats.n)
                fid = frechet_distance(stats.mean(), stats.cov(), *self.ref)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
        fid, error = distributed.broadcast_object((fid, error))
        if error is not None:
            self.write(f"step {step}: FID failed (rank 0: {error}); training continues")
        return fid
