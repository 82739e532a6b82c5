"""Training of a class-conditional GAN (HamGAN, SAGAN or no context block): ``hamgan-train``.

    hamgan-train CONFIG --out DIR [--steps N] [dotted.key=value ...]
    torchrun --nproc_per_node 8 -m hamgan.train CONFIG --out DIR          (data parallel, see hamgan.distributed)

One step is ``train.d_steps`` discriminator updates followed by one generator update (reference §2)::

    D: minimise L_D(D(x, y), D(G(z, y'), y'))    x, y from the data; z ~ N(0, I), y' uniform over the classes
    G: minimise L_G(D(G(z, y'), y'))

with the hinge (or non-saturating) loss of hamgan.losses and Adam per network (TTUR: lr_D = 4 lr_G). Every update
uses ``train.batch_size`` images in all, split over ranks and ``train.accumulate`` micro-batches.

Running the same command again resumes from the run folder's latest checkpoint. Resuming is exact: a checkpoint
holds the networks, the EMA generator, the optimisers, every random-number-generator state of every rank and the
position in the data order, so N steps + resume + N steps give the same weights as 2N steps in one go (CPU).

Run folder::

    config.yaml           the full resolved config (the run's config when resuming)
    ckpt-<step>.pt        the last ``train.keep_last`` checkpoints;  ckpt-best.pt  the best by FID
    metrics.jsonl, wandb/ see hamgan.logger
    samples/step-<step>.png   fixed z, fixed classes (one row per class), EMA generator when enabled
    nan_report.json       written when a loss becomes NaN/inf (the run then stops, exit code 3)

SIGTERM (preemption) or Ctrl-C: the current step finishes, a checkpoint is written, exit code 128 + signal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import resource
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from hamgan import distributed
from hamgan.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_state_dict_checked,
    save_checkpoint,
)
from hamgan.config import Config, ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict
from hamgan.distributed import DistInfo
from hamgan.ema import EMA
from hamgan.logger import RunLogger
from hamgan.losses import d_loss, g_loss

EXIT_BAD_INPUT = 2  # bad config, damaged checkpoint, missing data
EXIT_DIVERGED = 3  # NaN / inf loss
IDENTITY_KEYS = ("model.", "data.name")  # keys that may not change when a run folder is resumed
GRID_CLASSES = 10  # rows of the sample grid (classes spread evenly over num_classes)
GRID_COLUMNS = 10  # samples per row (the same z in every row)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf."""


class TrainingStopped(RuntimeError):
    """SIGTERM / SIGINT arrived; a checkpoint of the last completed step was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopRequest:
    """Catches SIGTERM (cluster preemption, torchrun shutdown) and SIGINT (Ctrl-C) while training runs, so the loop
    can finish its step and save a checkpoint; a second signal of the same kind acts as usual."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._old[signum])

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------------------------------------------------
# Config of a run folder
# --------------------------------------------------------------------------------------------------------------------


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def resolve_config(
    config: str | Path | None, out: str | Path, overrides: list[str] = (), steps: int | None = None
) -> tuple[Config, list[str]]:
    """The config of the run in ``out``: ``config`` + ``overrides`` (+ ``steps``), checked against a resumed run.

    When ``out/config.yaml`` exists (a run to resume), ``config`` may be omitted (the saved config is used) and the
    model architecture and data set may not change; other changed keys (e.g. ``train.steps``, logging) take their
    new values and are listed in the returned notes.
    """
    saved_path = Path(out) / "config.yaml"
    saved = load_config(saved_path) if saved_path.is_file() else None
    if config is None and saved is None:
        raise ConfigError(f"give a CONFIG file: '{out}' holds no run to resume (no config.yaml)")
    if config is None:
        cfg = from_dict(apply_overrides(to_dict(saved), list(overrides)))
    else:
        cfg = load_config(config, list(overrides))
    if steps is not None:
        cfg.train.steps = steps
    notes = []
    if saved is not None:
        old, new = _flatten(to_dict(saved)), _flatten(to_dict(cfg))
        changed = [k for k in new if old.get(k) != new[k]]
        fixed = [k for k in changed if k.startswith(IDENTITY_KEYS)]
        if fixed:
            diffs = "; ".join(f"{k}: {old.get(k)!r} in the run, {new[k]!r} given" for k in fixed)
            raise ConfigError(
                f"'{out}' is a run of another architecture or data set ({diffs}). Resume it with its own config "
                f"(hamgan-train --out {out}) or train the new config in a new --out folder"
            )
        notes = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed]
    return cfg, notes


def check_config(cfg: Config) -> None:
    """Ranges the schema cannot express."""
    t = cfg.train
    for key, value, low in [
        ("train.steps", t.steps, 1),
        ("train.batch_size", t.batch_size, 1),
        ("train.d_steps", t.d_steps, 1),
        ("train.accumulate", t.accumulate, 1),
        ("train.log_every", t.log_every, 1),
        ("train.ckpt_every", t.ckpt_every, 1),
        ("train.keep_last", t.keep_last, 1),
        ("train.sample_every", t.sample_every, 0),
        ("train.fid.every", t.fid.every, 0),
        ("train.threads", t.threads, 0),
        ("train.ema.start", t.ema.start, 0),
        ("data.num_workers", cfg.data.num_workers, 0),
    ]:
        if value < low:
            raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"config key 'train.betas' must be two numbers in [0, 1), got {t.betas}")
    if not 0.0 <= t.ema.decay < 1.0:
        raise ConfigError(f"config key 'train.ema.decay' must be in [0, 1), got {t.ema.decay}")
    if t.lr_g <= 0 or t.lr_d <= 0:
        raise ConfigError(f"train.lr_g and train.lr_d must be > 0, got {t.lr_g}, {t.lr_d}")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of ``train.amp`` on ``device`` (None: full precision). auto = bf16 on GPU, none on CPU."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a GPU; on CPU use train.amp=bf16 or none")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


# --------------------------------------------------------------------------------------------------------------------
# Random number generators and the data stream
# --------------------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(flip: torch.Generator) -> dict[str, Any]:
    """Every random-number-generator state of this process."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "flip": flip.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], flip: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    flip.set_state(state["flip"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DataStream:
    """Endless (image, label) micro-batches in a resumable order.

    The order is :class:`hamgan.distributed.ResumableSampler`'s (a permutation per epoch, sharded over ranks); the
    position is ``(epoch, index)`` with ``index`` the number of this rank's samples already served in the epoch.
    Random horizontal flips are drawn here, in the main process, from the generator ``flip`` (saved in
    checkpoints), so the batches do not depend on DataLoader workers and a resumed run sees the same pixels.

    Shapes: :meth:`next` -> images (B, C, R, R) float in [-1, 1] on ``device``, labels (B,) long.
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
        self.loader = DataLoader(
            dataset,
            batch_size=batch,
            sampler=self.sampler,
            drop_last=True,
            num_workers=num_workers,
            pin_memory=info.device.type == "cuda",
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
        if self.hflip:
            flipped = torch.rand(x.shape[0], generator=self.flip) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


# --------------------------------------------------------------------------------------------------------------------
# NaN reports
# --------------------------------------------------------------------------------------------------------------------


def tensor_stats(t: torch.Tensor) -> dict[str, Any]:
    t = t.detach().float().cpu()
    finite = t[torch.isfinite(t)]
    return {
        "shape": list(t.shape),
        "nonfinite": int((~torch.isfinite(t)).sum()),
        "min": float(finite.min()) if finite.numel() else None,
        "max": float(finite.max()) if finite.numel() else None,
        "mean": float(finite.mean()) if finite.numel() else None,
        "std": float(finite.std()) if finite.numel() > 1 else None,
    }


def nonfinite_parameters(module: nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]


# --------------------------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------------------------


class Trainer:
    """Networks, optimisers, data and the loop of one run folder on one rank."""

    def __init__(self, cfg: Config, run_dir: str | Path, info: DistInfo, notes: list[str] = ()) -> None:
        from hamgan.nn.networks import Discriminator, Generator

        check_config(cfg)
        self.cfg, self.info = cfg, info
        self.run_dir = Path(run_dir)
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = info.device
        if self.device.type == "cuda":  # speed over bit-reproducibility on GPUs
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        try:
            self.micro = distributed.micro_batch_size(t.batch_size, info.world_size, t.accumulate)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.amp = amp_dtype(t.amp, self.device)

        # Networks: initialised from the run seed (identical on every rank), then per-rank seeds for the loop.
        seed_everything(t.seed)
        try:
            self.G = Generator(cfg.model).to(self.device)
            self.D = Discriminator(cfg.model).to(self.device)
        except ValueError as e:  # the networks' own config checks (context_res, resolution, ...)
            raise ConfigError(str(e)) from None
        if t.sync_bn and info.distributed:  # batch statistics over the global batch (same state-dict keys)
            if self.device.type != "cuda":
                raise ConfigError("train.sync_bn needs GPUs (torch's SyncBatchNorm); set train.sync_bn=false on CPU")
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
        if t.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.ema = EMA(self.G, t.ema.decay, t.ema.start) if t.ema.enabled else None
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=tuple(t.betas), eps=t.eps)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=tuple(t.betas), eps=t.eps)
        fp16 = self.amp is torch.float16
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)
        # G_train/D_train: what the loss passes call (DDP, compiled); self.G/self.D stay the raw modules.
        self.G_train = distributed.wrap(self.G, info)
        self.D_train = distributed.wrap(self.D, info)
        self.D_for_g = self.D  # D in the G update: raw module (its gradients are not needed, so no all-reduce)
        if t.compile:
            self.G_train, self.D_train = torch.compile(self.G_train), torch.compile(self.D_train)
            self.D_for_g = torch.compile(self.D)

        seed_everything(t.seed + 1000 * info.rank)
        self.flip = torch.Generator().manual_seed(t.seed + 1000 * info.rank + 1)
        self.dataset = self._build_dataset()
        self.data = DataStream(
            self.dataset, info, self.micro, t.seed, cfg.data.num_workers, cfg.data.hflip, self.flip
        )
        self.step = 0
        self.metrics: dict[str, Any] = {"best_fid": None, "best_fid_step": None}  # kept in checkpoints
        self.last_metrics: dict[str, Any] = {}  # the last logged losses, speeds, ...
        self._inception = self._fid_ref = None  # FID network and reference statistics, built on first use
        n = cfg.model.num_classes
        self.grid_classes = torch.linspace(0, n - 1, min(GRID_CLASSES, n)).round().long().tolist()

        # Resume.
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for tmp in self.run_dir.glob("ckpt-*.tmp"):  # left by a crash inside save_checkpoint
                tmp.unlink(missing_ok=True)
        distributed.barrier()
        latest = latest_checkpoint(self.run_dir)
        if latest is not None:
            self.load(latest)
        if info.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        self.log = RunLogger(
            self.run_dir,
            config=to_dict(cfg),
            wandb_mode=cfg.log.wandb,
            project=cfg.log.project,
            name=cfg.log.name,
            use_tqdm=cfg.log.tqdm,
            enabled=info.is_main,
            resume_step=self.step,
        )
        if latest is not None:
            self.log.write(f"resumed from {latest} at step {self.step}")
        for note in notes:
            self.log.write(f"config changed on resume: {note}")

    # ---- setup helpers -------------------------------------------------------------------------------------------

    def _build_dataset(self) -> Dataset:
        from hamgan.data import build_dataset

        cfg = self.cfg
        # Flips are drawn by DataStream from a saved generator; the data set serves unflipped images.
        no_flip = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, hflip=False))
        dataset = build_dataset(no_flip)
        m = cfg.model
        if dataset.num_classes != m.num_classes:
            raise ConfigError(
                f"data set '{cfg.data.name}' has {dataset.num_classes} classes but model.num_classes="
                f"{m.num_classes}; set model.num_classes={dataset.num_classes}"
            )
        shape = tuple(dataset[0][0].shape)
        if shape != (m.img_channels, m.resolution, m.resolution):
            raise ConfigError(
                f"data set '{cfg.data.name}' serves images of shape {shape} but the model expects "
                f"({m.img_channels}, {m.resolution}, {m.resolution}); check model.img_channels and model.resolution"
            )
        return dataset

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.cfg.model.z_dim, device=self.device)
        y = torch.randint(0, self.cfg.model.num_classes, (n,), device=self.device)
        return z, y

    # ---- checkpoints ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The full training state; collective (every rank must call it): gathers all ranks' RNG states."""
        return {
            "config": to_dict(self.cfg),
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
            "rng": distributed.all_gather_object(rng_state(self.flip)),
            "data": {**self.data.position(), "world_size": self.info.world_size},
            "metrics": dict(self.metrics),
        }

    def load(self, path: Path) -> None:
        """Restore the training state of checkpoint ``path`` (every rank reads the same file)."""
        state = load_checkpoint(path, map_location=self.device)
        saved_model = _flatten(state.get("config", {}).get("model", {}), "model.")
        ours = _flatten(to_dict(self.cfg)["model"], "model.")
        diffs = [f"{k}: {saved_model.get(k)!r} in the checkpoint, {v!r} configured"
                 for k, v in ours.items() if saved_model.get(k) != v]
        if diffs:
            raise CheckpointError(
                f"checkpoint '{path}' belongs to another architecture ({'; '.join(diffs[:4])}). Use the config it "
                "was trained with or a new run folder"
            )
        load_state_dict_checked(self.G, state["G"], "generator", path)
        load_state_dict_checked(self.D, state["D"], "discriminator", path)
        if self.ema is not None:
            if state.get("G_ema") is not None:
                load_state_dict_checked(self.ema.model, state["G_ema"], "EMA generator", path)
            else:  # EMA switched on for a run trained without it: start from the current G
                self.ema.model.load_state_dict(self.G.state_dict())
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.scaler_G.load_state_dict(state["scaler_G"])
        self.scaler_D.load_state_dict(state["scaler_D"])
        self.step = int(state["step"])
        self.metrics = dict(state.get("metrics", self.metrics))
        data, rngs = state["data"], state["rng"]
        if data.get("world_size", 1) == self.info.world_size and len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank], self.flip)
            self.data.set_position(data["epoch"], data["index"])
        else:  # a different number of ranks: keep the epoch, restart its order, fresh per-rank seeds
            warnings.warn(
                f"checkpoint written by {data.get('world_size', 1)} ranks, resumed on {self.info.world_size}: "
                "training continues but not bit-exactly", stacklevel=2)
            seed_everything(self.cfg.train.seed + 1000 * self.info.rank + self.step)
            self.data.set_position(data["epoch"] + 1, 0)

    def save(self, path: Path | None = None) -> Path:
        """Write a checkpoint (rank 0) and keep the last ``train.keep_last``; collective."""
        path = path or checkpoint_path(self.run_dir, self.step)
        for network, module in (("G", self.G), ("D", self.D)):
            bad = nonfinite_parameters(module)
            if bad:  # a finite loss with an inf gradient: never overwrite good checkpoints with these weights
                raise TrainingDiverged(
                    f"training diverged by step {self.step}: non-finite weights in network {network} "
                    f"({', '.join(bad[:3])}). The last good checkpoint is {latest_checkpoint(self.run_dir)}; it was "
                    "not overwritten"
                )
        state = self.state_dict()
        if self.info.is_main:
            save_checkpoint(state, path)
            if path.name != "ckpt-best.pt":
                for old in list_checkpoints(self.run_dir)[: -self.cfg.train.keep_last]:
                    old.unlink(missing_ok=True)
        distributed.barrier()
        return path

    # ---- sampling and evaluation ---------------------------------------------------------------------------------

    def sampling_generator(self) -> nn.Module:
        """The EMA generator when enabled, else G (both used in eval mode)."""
        return self.ema.model if self.ema is not None else self.G

    def save_samples(self) -> Path:
        """The grid of fixed z and fixed classes as ``samples/step-<step>.png`` (rank 0); RNG streams untouched.

        One row per class (up to GRID_CLASSES classes spread over num_classes), the same GRID_COLUMNS latents (from
        the run seed) in every row; the EMA generator when enabled, in eval mode.
        """
        from torchvision.utils import save_image

        from hamgan.sample import class_grid

        G = self.sampling_generator()
        was_training = G.training
        G.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():  # the Hamburger draws random bases
            grid = class_grid(G, self.grid_classes, GRID_COLUMNS, seed=self.cfg.train.seed, device=self.device)
        G.train(was_training)
        path = self.run_dir / "samples" / f"step-{self.step:09d}.png"
        path.parent.mkdir(exist_ok=True)
        save_image(grid, path, nrow=GRID_COLUMNS, padding=1)
        return path

    def fid_reference(self, inception) -> tuple:
        """``(mu, sigma)`` of the real images: ``train.fid.ref_stats`` if given, else computed once from the
        training data set (``train.fid.ref_n`` images) and cached as ``fid_ref.npz`` in the run folder."""
        from hamgan.metrics import dataset_statistics, load_stats, save_stats

        f = self.cfg.train.fid
        if f.ref_stats is not None:
            return load_stats(f.ref_stats)
        cache = self.run_dir / "fid_ref.npz"
        if cache.is_file():
            return load_stats(cache)
        self.log.write(f"computing FID reference statistics of {f.ref_n or 'all'} training images -> {cache}")
        ext = dataset_statistics(self.dataset, inception, f.ref_n, f.batch_size, self.device,
                                 num_workers=self.cfg.data.num_workers, seed=self.cfg.train.seed, progress=False)
        mu, sigma = ext.stats.mean(), ext.stats.cov()
        save_stats(cache, mu, sigma)
        return mu, sigma

    def measure_fid(self) -> float | None:
        """FID of ``train.fid.n_samples`` samples (EMA G when ``train.fid.use_ema``) against the reference (rank 0).

        Called on every rank every ``train.fid.every`` steps, inside ``torch.random.fork_rng`` so it does not
        change the training's random streams. Returns the FID on rank 0 (None elsewhere);
        :meth:`record_fid` logs it and keeps ``ckpt-best.pt``.
        """
        from hamgan.metrics import InceptionFeatures, generator_fid

        if not self.info.is_main:
            return None
        f = self.cfg.train.fid
        if self._inception is None:  # built once per run, on the training device
            self._inception = InceptionFeatures().to(self.device)
            self._fid_ref = self.fid_reference(self._inception)
        G = self.ema.model if f.use_ema and self.ema is not None else self.G
        return generator_fid(G, self._fid_ref, f.n_samples, f.batch_size, self._inception, seed=self.cfg.train.seed,
                             device=self.device)

    def record_fid(self, fid: float | None) -> None:
        """Log an FID and write ``ckpt-best.pt`` when it is the best so far (collective)."""
        fid = distributed.all_gather_object(fid)[0]  # rank 0's value on every rank
        if fid is None:
            return
        self.metrics["fid"] = fid
        self.log.log(self.step, {"fid": fid})
        best = self.metrics.get("best_fid")
        if best is None or fid < best:
            self.metrics["best_fid"], self.metrics["best_fid_step"] = fid, self.step
            self.save(self.run_dir / "ckpt-best.pt")
            self.log.write(f"step {self.step}: FID {fid:.2f} (best so far, saved ckpt-best.pt)")

    # ---- the loop ------------------------------------------------------------------------------------------------

    def diverged(self, network: str, loss: torch.Tensor, tensors: dict[str, torch.Tensor]) -> TrainingDiverged:
        """Write the NaN report of this rank and build the error to raise."""
        module = self.G if network == "G" else self.D
        report = {
            "step": self.step + 1,
            "network": network,
            "loss": float(loss),
            "rank": self.info.rank,
            "tensors": {k: tensor_stats(v) for k, v in tensors.items()},
            "nonfinite_parameters": nonfinite_parameters(module),
        }
        name = "nan_report.json" if self.info.is_main else f"nan_report.rank{self.info.rank}.json"
        path = self.run_dir / name
        path.write_text(json.dumps(report, indent=2))
        last = latest_checkpoint(self.run_dir)
        return TrainingDiverged(
            f"training diverged at step {self.step + 1}: the {network} loss is {float(loss)} (network {network}). "
            f"The last good checkpoint is {last or 'none (no checkpoint written yet)'}; it was not overwritten. "
            f"Batch statistics: {path}"
        )

    def d_update(self) -> dict[str, torch.Tensor]:
        """One discriminator update over ``accumulate`` micro-batches."""
        t = self.cfg.train
        self.opt_D.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        real_score = torch.zeros((), device=self.device)
        fake_score = torch.zeros((), device=self.device)
        for i in range(t.accumulate):
            x, y = self.data.next()
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            z, y_fake = self._latents(self.micro)
            with torch.no_grad(), self._autocast():
                fake = self.G(z, y_fake)
            sync = i == t.accumulate - 1 or not self.info.distributed
            with contextlib.nullcontext() if sync else self.D_train.no_sync(), self._autocast():
                logits = self.D_train(torch.cat([x, fake.to(x.dtype)]), torch.cat([y, y_fake]))
                real_logits, fake_logits = logits.float().split(self.micro)
                loss = d_loss(real_logits, fake_logits, t.loss)
                self.scaler_D.scale(loss / t.accumulate).backward()
            total += loss.detach() / t.accumulate
            real_score += real_logits.detach().mean() / t.accumulate
            fake_score += fake_logits.detach().mean() / t.accumulate
        if not distributed.all_finite(total):
            raise self.diverged("D", total, {"real": x, "fake": fake, "real_logits": real_logits,
                                             "fake_logits": fake_logits})
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        return {"loss_d": total, "d_real": real_score, "d_fake": fake_score}

    def g_update(self) -> dict[str, torch.Tensor]:
        """One generator update over ``accumulate`` micro-batches (D frozen)."""
        t = self.cfg.train
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        total = torch.zeros((), device=self.device)
        for i in range(t.accumulate):
            z, y = self._latents(self.micro)
            sync = i == t.accumulate - 1 or not self.info.distributed
            with contextlib.nullcontext() if sync else self.G_train.no_sync(), self._autocast():
                fake = self.G_train(z, y)
                if t.channels_last:
                    fake = fake.contiguous(memory_format=torch.channels_last)
                logits = self.D_for_g(fake, y).float()
                loss = g_loss(logits, t.loss)
                self.scaler_G.scale(loss / t.accumulate).backward()
            total += loss.detach() / t.accumulate
        self.D.requires_grad_(True)
        if not distributed.all_finite(total):
            raise self.diverged("G", total, {"fake": fake, "fake_logits": logits})
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        return {"loss_g": total}

    def train_step(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for _ in range(self.cfg.train.d_steps):
            out.update(self.d_update())
        out.update(self.g_update())
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        return out

    def peak_memory_mb(self) -> float:
        """CUDA: peak allocated tensor memory; CPU: peak resident set size of the process."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10

    def fit(self) -> dict[str, Any]:
        """Train until ``train.steps``; returns the last logged metrics."""
        t = self.cfg.train
        self.G_train.train()
        self.D_train.train()
        if self.step >= t.steps:
            self.log.write(f"nothing to do: the run is at step {self.step} of train.steps={t.steps} "
                           "(give a larger --steps to continue)")
        self.log.progress(total=t.steps, initial=self.step)
        try:
            with StopRequest() as stop:
                self._loop(stop)
            if t.sample_every and self.info.is_main and not (self.run_dir / "samples"
                                                              / f"step-{self.step:09d}.png").exists():
                self.save_samples()
        finally:
            self.log.close()
        return self.last_metrics

    def _loop(self, stop: StopRequest) -> None:
        t = self.cfg.train
        sums: dict[str, torch.Tensor] = {}
        n, tick = 0, time.perf_counter()
        while self.step < t.steps:
            out = self.train_step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if self.step % t.log_every == 0 or self.step == t.steps:
                values = torch.stack([sums[k] / n for k in sorted(sums)])
                if self.info.distributed:  # mean over ranks
                    torch.distributed.all_reduce(values)
                    values /= self.info.world_size
                elapsed = time.perf_counter() - tick
                last = self.last_metrics = dict(zip(sorted(sums), values.tolist()))
                last.update(
                    lr_g=self.opt_G.param_groups[0]["lr"],
                    lr_d=self.opt_D.param_groups[0]["lr"],
                    it_per_s=n / elapsed,
                    images_per_s=n * t.batch_size / elapsed,
                    peak_mem_mb=self.peak_memory_mb(),
                    train_s=self.metrics.get("train_s", 0.0) + elapsed,  # training time of the run, resumes included
                )
                self.metrics["train_s"] = last["train_s"]
                self.log.log(self.step, last)
                sums, n, tick = {}, 0, time.perf_counter()
            shown = ("loss_d", "loss_g", "images_per_s")
            self.log.advance(1, **{k: v for k, v in self.last_metrics.items() if k in shown})
            pause = time.perf_counter()  # samples, FID and checkpoints do not count towards images/s
            if t.sample_every and self.step % t.sample_every == 0 and self.info.is_main:
                path = self.save_samples()
                self.log.log_image(self.step, "samples", path, caption=f"step {self.step}")
            if t.fid.every and self.step % t.fid.every == 0:
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):
                    fid = self.measure_fid()
                self.record_fid(fid)
            saved = self.step % t.ckpt_every == 0 or self.step == t.steps
            if saved:
                self.save()
            tick += time.perf_counter() - pause
            if distributed.any_rank(stop.signum is not None):
                path = checkpoint_path(self.run_dir, self.step) if saved else self.save()
                signum = stop.signum or signal.SIGTERM
                raise TrainingStopped(
                    f"stopped by {signal.Signals(signum).name} after step {self.step}; checkpoint {path}. "
                    "Run the same command again to resume.", signum)


# --------------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------------


def run(cfg: Config, run_dir: str | Path, notes: list[str] = ()) -> dict[str, Any]:
    """Train the run in ``run_dir`` on this process (joins the torchrun process group if there is one)."""
    info = distributed.setup(cfg.train.device)
    try:
        trainer = Trainer(cfg, run_dir, info, notes)
        return trainer.fit()
    finally:
        distributed.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hamgan-train",
        description="Train a class-conditional GAN (HamGAN / SAGAN / no context). Rerun with the same --out to "
        "resume from its latest checkpoint.",
        epilog=f"exit status: 0 done, {EXIT_BAD_INPUT} bad config / checkpoint / data, {EXIT_DIVERGED} NaN or inf "
        "loss (see RUN/nan_report.json), 143 / 130 stopped by SIGTERM / SIGINT after saving a checkpoint. "
        "Data parallel: torchrun --nproc_per_node N -m hamgan.train ...",
    )
    p.add_argument("config", nargs="?", help="YAML config (configs/*.yaml); optional when resuming --out")
    p.add_argument("--out", required=True, help="run folder (checkpoints, samples, metrics)")
    p.add_argument("--steps", type=int, default=None, help="total G steps (overrides train.steps)")
    p.add_argument("overrides", nargs="*", default=[], help="dotted.key=value, e.g. train.batch_size=64")
    args, extra = p.parse_known_args(argv)
    # argparse puts an override given right after CONFIG into `config` when CONFIG is omitted
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]
        args.config = None
    unknown = [e for e in extra if e.startswith("-")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides += extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hamgan.data.dataset import DatasetError

    try:
        cfg, notes = resolve_config(args.config, args.out, args.overrides, args.steps)
        run(cfg, args.out, notes)
    except (ConfigError, CheckpointError, DatasetError) as e:
        print(f"hamgan-train: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"hamgan-train: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingStopped as e:
        print(f"hamgan-train: {e}", file=sys.stderr)
        return 128 + e.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
