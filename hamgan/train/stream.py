"""The data stream of a training run: the data set (built by rank 0 first), resumable batches, flips on the device.

    dataset[i] -> uint8 (C, R, R) [or float32 (C, R, R) in [-1, 1]], label      (hamgan.data, never flipped)
      -> DataLoader (sharded resumable order, pinned memory on GPU)  -> uint8 (B, C, R, R) crosses to the device
      -> on the device: random horizontal flip, x / 127.5 - 1         -> float32 (B, C, R, R) in [-1, 1]

Images cross to the GPU as uint8 (a quarter of float32's bytes) with a non-blocking copy from pinned memory; the
flip decisions are drawn on the CPU from the generator ``flip`` (saved in checkpoints, so a resumed run sees the
same pixels) and applied on the device, so nothing on the CPU side waits for the GPU.

The data order is a permutation per epoch seeded by (``train.seed``, epoch) and the flips come from their own
generator, so the batches do not depend on the model being trained. The latents and labels of the fake batches
come from :class:`LatentStream`, with ``train.paired`` a generator of their own per step (``hamgan.seeds``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from hamgan import distributed
from hamgan.config import Config, ConfigError, DataConfig
from hamgan.data import build_dataset
from hamgan.data.dataset import DatasetError
from hamgan.data.imagenet import copy_index, index_path, load_or_build_index, shared_index_path
from hamgan.distributed import DistInfo
from hamgan.seeds import named_generator


def reads_image_folder(data: DataConfig) -> bool:
    """True when ``data`` is an ImageFolder tree read from its JPEG files (which needs an index)."""
    return data.name == "imagenet" and data.packed is None and data.root is not None


def shared_index_file(data: DataConfig, info: DistInfo, run_dir: str | Path) -> str | None:
    """The ImageFolder index file every rank reads: rank 0 reads or builds the index of ``data`` and writes it
    beside the data, else in ``run_dir`` (shared by all ranks), else in its user cache
    (:func:`hamgan.data.imagenet.load_or_build_index`); an index it found in a cache other nodes may not see (its
    ``~/.cache``, a ``data.index_cache`` on a local disk) is copied into ``run_dir``. It broadcasts the path of the
    file beside the data or in ``run_dir``; None when rank 0 could write it nowhere. Collective; rank 0's errors
    reach the other ranks (:func:`distributed.main_rank_first`).
    """
    path = None
    with distributed.main_rank_first("building the ImageFolder index"):
        if info.is_main:
            index = load_or_build_index(data.root, data.split, data.index_cache, shared_dir=run_dir)
            beside = index_path(data.root, data.split)  # every node sees the data, so this file too
            shared = shared_index_path(data.root, data.split, run_dir)
            if index.cache is not None and Path(index.cache) not in (beside, shared):
                # found in a cache only this host may see (~/.cache, a local data.index_cache): share a copy
                index.cache = copy_index(index, shared) or index.cache
            path = None if index.cache is None else str(index.cache)
    return distributed.broadcast_object(path)


def check_same_data(dataset: Dataset) -> None:
    """Every rank holds a data set of the same size and classes (collective); else a DatasetError naming them."""
    views = distributed.all_gather_object((len(dataset), getattr(dataset, "num_classes", None)))
    if len(set(views)) > 1:
        detail = "; ".join(f"rank {r}: {n} images, {c} classes" for r, (n, c) in enumerate(views))
        raise DatasetError(
            f"the ranks see different data sets ({detail}): they would serve different batches. Point data.root "
            "(or data.packed) of every node at the same data, then run again"
        )


def build_training_dataset(cfg: Config, info: DistInfo = DistInfo(), run_dir: str | Path | None = None) -> Dataset:
    """The training data set of ``cfg``, unflipped (flips are the stream's), checked against the model and across
    ranks (collective).

    Built by rank 0 first, then by the other ranks (:func:`hamgan.distributed.main_rank_first`), so that whatever a
    data set caches on its first build is built once and read by the other ranks. An ImageFolder index
    (:func:`shared_index_file`) may go to the run folder ``run_dir``; the other ranks read the exact file rank 0
    wrote, wherever that is.
    """
    no_flip = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, hflip=False))
    index_file = None
    if run_dir is not None and reads_image_folder(cfg.data):
        index_file = shared_index_file(cfg.data, info, run_dir)
    with distributed.main_rank_first("building the data set"):
        dataset = build_dataset(no_flip, index_file=index_file)
    check_same_data(dataset)
    m = cfg.model
    if dataset.num_classes != m.num_classes:
        raise ConfigError(
            f"data set '{cfg.data.name}' has {dataset.num_classes} classes but model.num_classes={m.num_classes}; "
            f"set model.num_classes={dataset.num_classes}"
        )
    shape = tuple(dataset[0][0].shape)
    if shape != (m.img_channels, m.resolution, m.resolution):
        raise ConfigError(
            f"data set '{cfg.data.name}' serves images of shape {shape} but the model expects "
            f"({m.img_channels}, {m.resolution}, {m.resolution}); check model.img_channels and model.resolution"
        )
    return dataset


def to_model_input(x: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """A batch as the networks take it, on its device: uint8 (B, C, R, R) -> float32 ``x / 127.5 - 1`` in [-1, 1]
    (0 -> -1, 255 -> 1 exactly); float batches pass through. ``flip`` (B,) bool mirrors those images left-right."""
    if x.dtype == torch.uint8:
        x = x.float().div_(127.5).sub_(1.0)
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise TypeError(f"data set images must be uint8 or float, got {x.dtype}")
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


class DataStream:
    """Endless (image, label) micro-batches in a resumable order.

    The order is :class:`hamgan.distributed.ResumableSampler`'s (a permutation per epoch, sharded over ranks); the
    position is ``(epoch, index)`` with ``index`` the number of this rank's samples already served in the epoch.

    Shapes: :meth:`next` -> images (B, C, R, R) float32 in [-1, 1] on ``device``, labels (B,) long on ``device``.
    """

    def __init__(
        self, dataset: Dataset, info: DistInfo, batch: int, seed: int, num_workers: int, hflip: bool,
        flip: torch.Generator,
    ) -> None:
        self.sampler = distributed.ResumableSampler(dataset, info, seed=seed)
        if self.sampler.num_samples < batch:
            raise ConfigError(
                f"the data set has {len(dataset)} images, fewer than one batch per rank ({batch}); lower "
                "train.batch_size"
            )
        self.pin = info.device.type == "cuda"
        self.loader = DataLoader(
            dataset,
            batch_size=batch,
            sampler=self.sampler,
            drop_last=True,
            num_workers=num_workers,
            pin_memory=self.pin,
            persistent_workers=num_workers > 0,
            # worker base seeds come from this generator, not from the global RNG that the training loop uses
            generator=torch.Generator().manual_seed(seed),
        )
        self.batch = batch
        self.device = info.device
        self.hflip = hflip
        self.flip = flip
        self.epoch, self.index = 0, 0
        self._it = None

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def set_position(self, epoch: int, index: int) -> None:
        self.epoch, self.index = epoch, index
        self._it = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            if self._it is None:
                if self.index + self.batch > self.sampler.num_samples:  # resumed at the end of an epoch
                    self.epoch, self.index = self.epoch + 1, 0
                self.sampler.set_position(self.epoch, self.index)
                self._it = iter(self.loader)
            batch = next(self._it, None)
            if batch is not None:
                break
            self.epoch, self.index, self._it = self.epoch + 1, 0, None  # epoch exhausted
        x, y = batch
        self.index += self.batch
        flip = None
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=self.flip) < 0.5
            flip = (flip.pin_memory() if self.pin else flip).to(self.device, non_blocking=True)
        x = x.to(self.device, non_blocking=True)
        return to_model_input(x, flip), y.to(self.device, non_blocking=True)


class LatentStream:
    """The latents and labels the training steps feed G: ``z`` ~ N(0, I) (B, z_dim) and ``y`` uniform in
    [0, num_classes) (B,) long, on ``device``.

    ``seed`` None: torch's global generator (seeded per rank by the trainer; saved in checkpoints). ``seed`` given
    (``train.paired``): step ``s`` of rank ``r`` draws from a generator of its own, seeded with
    ``derive_seed(seed, "latents", r, s)`` and made on ``device`` when the step first asks, then drawn in order for
    the step's D and G updates. Nothing else draws from it, so two models of one seed get the same latents and
    labels whatever random numbers their networks use, and a resumed run needs no state beyond the step.
    """

    def __init__(self, z_dim: int, num_classes: int, device: torch.device, seed: int | None = None,
                 rank: int = 0) -> None:
        self.z_dim, self.num_classes, self.device = z_dim, num_classes, device
        self.seed, self.rank = seed, rank
        self._step: int | None = None
        self._generator: torch.Generator | None = None

    def next(self, n: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``n`` latents and labels of training step ``step`` (the steps completed before it)."""
        if self.seed is not None and step != self._step:
            self._step = step
            self._generator = named_generator(self.seed, "latents", self.rank, step, device=self.device)
        generator = self._generator if self.seed is not None else None
        z = torch.randn(n, self.z_dim, device=self.device, generator=generator)
        y = torch.randint(0, self.num_classes, (n,), device=self.device, generator=generator)
        return z, y
