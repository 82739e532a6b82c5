"""The trainer of one run folder on one rank: set-up, the D and G updates, the loop.

Set-up (:class:`Trainer`), in this order:

0. rank 0 decides the autocast dtype and TF32 for every rank from all ranks' devices (``precision.decide``);
1. rank 0 locks the run folder and chooses the checkpoint; every rank gets its path (``run_folder``);
2. G and D from the run seed (identical on every rank), cross-replica BN in G with ``train.sync_bn`` on several
   ranks, EMA copy, optimisers, loss scalers;
3. the data set (rank 0 first; an ImageFolder index file rank 0 chose) and the data stream (``stream``);
4. every rank loads the chosen checkpoint into the raw networks, the ranks check that they agree (step, weights,
   config), and only then DDP (and torch.compile) wrap the networks;
5. config, logger, the mixed-precision and TF32 choice, and with ``train.fid.every`` the FID network and reference.

One step is ``train.d_steps`` discriminator updates followed by one generator update; each update runs its forward
passes and loss under autocast and ``backward()`` outside it. After each step the NaN and stop flags are queued on
the device and read one step later (``health``); logs, samples, FID and checkpoints follow at their intervals.
"""

from __future__ import annotations

import contextlib
import signal
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from hamgan import bn_modes, distributed
from hamgan.checkpoint import (CheckpointWriteError, checkpoint_path, checkpoints_to_prune, list_checkpoints,
                              load_checkpoint, load_state_dict_checked, save_checkpoint)
from hamgan.config import Config, ConfigError, save_config, to_dict
from hamgan.distributed import DistInfo
from hamgan.ema import EMA
from hamgan.logger import RunLogger
from hamgan.losses import d_loss, g_loss
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.hamburger import seed_bases_streams
from hamgan.train import periodic, precision, run_folder, state
from hamgan.train.compiled import compiler, write_compile_report
from hamgan.train.health import (StepChecks, StopRequest, TrainingDiverged, TrainingStopped, diverged_error,
                                 nonfinite_parameters)
from hamgan.train.precision import autocast
from hamgan.train.stream import DataStream, LatentStream, build_training_dataset
from hamgan.train.window import LogWindow

MIN_BN_BATCH = 16  # below this many images per batch-norm group, a warning


def bn_group_warning(micro: int, world_size: int, sync_bn: bool, batch: int, accumulate: int) -> str | None:
    """The warning for batch-norm groups of fewer than MIN_BN_BATCH images, or None."""
    group = micro * world_size if sync_bn and world_size > 1 else micro
    if group >= MIN_BN_BATCH:
        return None
    how = (f"train.batch_size={batch} / train.accumulate={accumulate}" +
           (f" over {world_size} ranks with train.sync_bn" if sync_bn and world_size > 1 else
            f" / {world_size} ranks" if world_size > 1 else ""))
    return (f"batch norm in G normalises over {group} images per group ({how}; accumulation splits the BN batch "
            f"too), below {MIN_BN_BATCH}: its statistics are noisy. Raise train.batch_size, lower train.accumulate"
            + ("" if sync_bn or world_size == 1 else ", or set train.sync_bn=true"))


def make_adam(params: Any, lr: float, betas: Any, eps: float, device: torch.device) -> torch.optim.Adam:
    """Adam for parameters on ``device``: on CUDA the fused kernels (a few launches per step for all parameters, the
    GradScaler's unscale and inf check folded in); elsewhere torch's default implementation."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, fused=True if device.type == "cuda" else None)


class Trainer:
    """Networks, optimisers, data and the loop of one run folder on one rank (see module doc for the order)."""

    def __init__(self, cfg: Config, run_dir: str | Path, info: DistInfo, notes: list[str] = ()) -> None:
        run_folder.check_config(cfg)
        self.cfg, self.info = cfg, info
        self.run_dir = Path(run_dir)
        t = cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = info.device
        # autocast dtype, TF32 and cuDNN autotuning: decided by rank 0 for every rank, applied here (collective)
        self.precision = precision.decide(t, info)
        try:
            self.micro = distributed.micro_batch_size(t.batch_size, info.world_size, t.accumulate)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.resume_notes: list[str] = []  # what the resume could not restore (load_state_dict)
        self.lock, latest, lock_note = run_folder.open_run_folder(self.run_dir, info)
        try:
            self._build(cfg, info, latest)
        except BaseException:
            self.close()
            raise
        for line in [lock_note, f"resumed from {latest} at step {self.step}" if latest else None,
                     *self.precision.notes, *self.resume_notes,
                     *(f"config changed on resume: {note}" for note in notes)]:
            if line:
                self.log.write(line)

    def _build(self, cfg: Config, info: DistInfo, latest: Path | None) -> None:
        t = cfg.train
        # Networks: initialised from the run seed (identical on every rank), then per-rank seeds for the loop.
        state.seed_everything(t.seed)
        try:
            paired = t.seed if t.paired else None  # paired initialisation: a named stream per layer (hamgan.seeds)
            self.G = generator_from_config(cfg.model, seed=paired).to(self.device)
            self.D = discriminator_from_config(cfg.model, seed=paired).to(self.device)
        except ValueError as e:  # the networks' own config checks (context_res, resolution, ...)
            raise ConfigError(str(e)) from None
        if t.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.ema = EMA(self.G, t.ema.decay, t.ema.start) if t.ema.enabled else None  # plain BN: samples locally
        if t.sync_bn and info.distributed:  # batch statistics over all ranks' micro-batches (same state-dict keys)
            self.G = distributed.convert_cross_replica_bn(self.G)
        warning = bn_group_warning(self.micro, info.world_size, t.sync_bn, t.batch_size, t.accumulate)
        if warning and info.is_main:
            warnings.warn(warning, stacklevel=3)
        self.opt_G = make_adam(self.G.parameters(), t.lr_g, t.betas, t.eps, self.device)
        self.opt_D = make_adam(self.D.parameters(), t.lr_d, t.betas, t.eps, self.device)
        fp16 = self.amp is torch.float16
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)

        state.seed_everything(t.seed + 1000 * info.rank)
        self.flip = torch.Generator().manual_seed(t.seed + 1000 * info.rank + 1)
        self.latents = LatentStream(cfg.model.z_dim, cfg.model.num_classes, self.device,
                                    t.seed if t.paired else None, info.rank)
        self.dataset = build_training_dataset(cfg, info, self.run_dir)
        self.data = DataStream(self.dataset, info, self.micro, t.seed, cfg.data.num_workers, cfg.data.hflip,
                               self.flip)
        self.step = 0
        self.metrics: dict[str, Any] = {"best_fid": None, "best_fid_step": None}  # kept in checkpoints
        self.last_metrics: dict[str, Any] = {}  # the last logged losses, speeds, ...
        self.grid_classes = periodic.grid_classes(cfg.model.num_classes)

        # Resume: every rank loads the checkpoint rank 0 chose, the ranks agree, then DDP / compile wrap.
        if latest is not None:
            self.resume_notes = self.resume_from(latest)
        run_folder.check_consensus(self.step, run_folder.state_checksum(self.G, self.D, self.ema and self.ema.model),
                                   latest, cfg)
        # G_train/D_train: what the loss passes call (DDP, compiled); self.G/self.D stay the raw modules.
        self.G_train = distributed.wrap(self.G, info)
        self.D_train = distributed.wrap(self.D, info)
        self.G_for_d = self.G  # G in the D update: raw module under no_grad (the fakes; no gradients, no DDP)
        self.D_for_g = self.D  # D in the G update: raw module (its gradients are not needed, so no all-reduce)
        if t.compile:  # every forward of the loop runs compiled
            compiled = compiler(t.compile_backend)
            self.G_train, self.D_train = compiled(self.G_train), compiled(self.D_train)
            self.G_for_d, self.D_for_g = compiled(self.G), compiled(self.D)

        if info.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        self.log = RunLogger(self.run_dir, config=to_dict(cfg), wandb_mode=cfg.log.wandb, project=cfg.log.project,
                             name=cfg.log.name, use_tqdm=cfg.log.tqdm, enabled=info.is_main, resume_step=self.step)
        # batch-norm statistics of the sample grids and the periodic FID (train.fid.bn; bad values fail here)
        try:
            self.grid_bn = bn_modes.from_config(t.fid, ema=self.ema is not None)
            self.fid_bn = bn_modes.from_config(t.fid, ema=t.fid.use_ema and self.ema is not None)
        except ValueError as e:
            raise ConfigError(f"train.fid (bn_batches, bn_batch_size, sn_refresh): {e}") from None
        self.fid = periodic.PeriodicFID(cfg, self.dataset, self.run_dir, info, self.log.write) if t.fid.every \
            else None
        self.log.write(f"sample grids: {self.grid_bn.describe()} batch-norm statistics"
                       + (f"; periodic FID: {self.fid_bn.describe()}" if self.fid is not None else ""))

    def close(self) -> None:
        """Release the run lock (rank 0). Idempotent."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ---- helpers -------------------------------------------------------------------------------------------------

    @property
    def amp(self) -> torch.dtype | None:
        """The autocast dtype of this run (None: full precision), decided by rank 0 for every rank."""
        return self.precision.amp

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.latents.next(n, self.step)

    def sampling_generator(self) -> nn.Module:
        """The EMA generator when enabled, else G (both used in eval mode)."""
        return self.ema.model if self.ema is not None else self.G

    # ---- the training state: what a checkpoint holds (layout: hamgan.train.state) ---------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The full training state; collective: every rank must call it (it gathers all ranks' RNG states)."""
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
            "rng": distributed.all_gather_object(state.rng_state(self.flip, self.device)),
            "data": {**self.data.position(), "world_size": self.info.world_size},
            "metrics": dict(self.metrics),
        }

    def load_state_dict(self, saved: dict[str, Any], source: str | Path = "the checkpoint") -> list[str]:
        """Restore :meth:`state_dict` ``saved`` (CPU tensors) into the raw networks, before DDP wraps them.
        Weights and moments go to the networks' devices; Adam keeps its configured implementation
        (:func:`state.load_optimizer_state`). Returns sentences for the run log about what could not be restored as
        saved. ``source`` names the checkpoint in errors."""
        state.check_architecture(saved.get("config", {}), self.cfg, source)
        load_state_dict_checked(self.G, saved["G"], "generator", source)
        load_state_dict_checked(self.D, saved["D"], "discriminator", source)
        if self.ema is not None:
            if saved.get("G_ema") is not None:
                load_state_dict_checked(self.ema.model, saved["G_ema"], "EMA generator", source)
            else:  # EMA switched on for a run trained without it: start from the current G
                self.ema.model.load_state_dict(self.G.state_dict())
        state.load_optimizer_state(self.opt_G, saved["opt_G"])
        state.load_optimizer_state(self.opt_D, saved["opt_D"])
        notes = [state.load_scaler_state(self.scaler_G, saved["scaler_G"], "scaler_G"),
                 state.load_scaler_state(self.scaler_D, saved["scaler_D"], "scaler_D")]
        self.step = int(saved["step"])
        self.metrics = dict(saved.get("metrics", self.metrics))
        state.restore_rngs_and_position(saved, self.data, self.flip, self.device, self.info, self.cfg.train.seed,
                                        self.step)
        return [note for note in notes if note]

    def resume_from(self, path: Path) -> list[str]:
        """:meth:`load_state_dict` of checkpoint ``path``, read onto the CPU (the RNG states must be CPU byte
        tensors and Adam's ``step`` counts stay on the CPU, whatever device trains)."""
        return self.load_state_dict(load_checkpoint(path, map_location="cpu"), path)

    # ---- checkpoints, samples, FID -------------------------------------------------------------------------------

    def save(self, path: Path | None = None) -> Path:
        """Write a checkpoint (rank 0) and keep the last ``train.keep_last`` of the ``train.ckpt_every`` schedule
        (:func:`hamgan.checkpoint.checkpoints_to_prune`); collective.

        A failed write (disk full, ...) raises :class:`CheckpointWriteError` on every rank, earlier files kept.
        """
        path = path or checkpoint_path(self.run_dir, self.step)
        for network, module in (("G", self.G), ("D", self.D)):
            bad = nonfinite_parameters(module)
            if bad:  # a finite loss with an inf gradient: never overwrite good checkpoints with these weights
                raise TrainingDiverged(
                    f"training diverged by step {self.step}: non-finite weights in network {network} "
                    f"({', '.join(bad[:3])}). The last good checkpoint is {run_folder.latest_checkpoint(self.run_dir)};"
                    " it was not overwritten"
                )
        training_state = self.state_dict()
        error = None
        if self.info.is_main:
            try:
                if self.lock is not None:
                    self.lock.check_held()  # taken over by another trainer: stop, write nothing
                save_checkpoint(training_state, path)
                if path.name != "ckpt-best.pt":
                    for old in checkpoints_to_prune(list_checkpoints(self.run_dir), self.cfg.train.keep_last,
                                                    self.cfg.train.ckpt_every):
                        old.unlink(missing_ok=True)
            except CheckpointWriteError as e:
                error = run_folder.write_error_message(e, self.run_dir)
            except run_folder.LockError as e:
                error = str(e)
        error = distributed.broadcast_object(error)
        if error is not None:
            raise CheckpointWriteError(error)
        return path

    def save_samples(self) -> Path:
        """The sample grid ``samples/step-<step>.png`` (rank 0; see hamgan.train.periodic)."""
        path = self.run_dir / "samples" / f"step-{self.step:09d}.png"
        return periodic.save_sample_grid(self.sampling_generator(), self.grid_classes, self.cfg.train.seed,
                                         self.device, self.amp, path, self.grid_bn)

    def measure_fid(self) -> float | None:
        """FID of ``train.fid.n_samples`` samples (EMA G when ``train.fid.use_ema``), all ranks together; None when
        it failed (logged). Collective."""
        G = self.ema.model if self.fid_uses_ema else self.G
        return self.fid.measure(G, self.step, self.fid_bn)

    @property
    def fid_uses_ema(self) -> bool:
        return self.cfg.train.fid.use_ema and self.ema is not None

    def record_fid(self, fid: float | None) -> None:
        """Log an FID and write ``ckpt-best.pt`` when it is the best so far (collective; same value on all ranks)."""
        if fid is None:
            return
        self.metrics["fid"] = fid
        made = self.fid.describe(self.fid_bn) if self.fid is not None else {}  # N, protocol, reference, BN mode
        self.log.log(self.step, {"fid": fid, **made, "fid_model": "ema" if self.fid_uses_ema else "G"})
        best = self.metrics.get("best_fid")
        if best is None or fid < best:
            self.metrics["best_fid"], self.metrics["best_fid_step"] = fid, self.step
            self.save(self.run_dir / "ckpt-best.pt")
            self.log.write(f"step {self.step}: FID {fid:.2f} (best so far, saved ckpt-best.pt)")

    # ---- the updates ---------------------------------------------------------------------------------------------

    def d_update(self) -> dict[str, Any]:
        """One discriminator update over ``accumulate`` micro-batches; returns device scalars and the evidence."""
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
                fake = self.G_for_d(z, y_fake)
            sync = i == t.accumulate - 1 or not self.info.distributed
            with contextlib.nullcontext() if sync else self.D_train.no_sync():
                with self._autocast():
                    # the reals take the fakes' dtype (autocast's; D's convolutions cast them to it anyway, only the
                    # first block's shortcut pools them rounded) rather than the fakes an extra float32 copy
                    logits = self.D_train(torch.cat([x.to(fake.dtype), fake]), torch.cat([y, y_fake]))
                    real_logits, fake_logits = logits.float().split(self.micro)
                    loss = d_loss(real_logits, fake_logits, t.loss)
                self.scaler_D.scale(loss / t.accumulate).backward()
            total += loss.detach() / t.accumulate
            real_score += real_logits.detach().mean() / t.accumulate
            fake_score += fake_logits.detach().mean() / t.accumulate
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        evidence = {"loss": total, "real": x, "fake": fake, "real_logits": real_logits.detach(),
                    "fake_logits": fake_logits.detach()}
        return {"loss_d": total, "d_real": real_score, "d_fake": fake_score, "evidence": evidence}

    def g_update(self) -> dict[str, Any]:
        """One generator update over ``accumulate`` micro-batches (D frozen)."""
        t = self.cfg.train
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        total = torch.zeros((), device=self.device)
        for i in range(t.accumulate):
            z, y = self._latents(self.micro)
            sync = i == t.accumulate - 1 or not self.info.distributed
            with contextlib.nullcontext() if sync else self.G_train.no_sync():
                with self._autocast():
                    fake = self.G_train(z, y)
                    if t.channels_last:
                        fake = fake.contiguous(memory_format=torch.channels_last)
                    logits = self.D_for_g(fake, y).float()
                    loss = g_loss(logits, t.loss)
                self.scaler_G.scale(loss / t.accumulate).backward()
            total += loss.detach() / t.accumulate
        self.D.requires_grad_(True)
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        evidence = {"loss": total, "fake": fake.detach(), "fake_logits": logits.detach()}
        return {"loss_g": total, "evidence": evidence}

    def train_step(self) -> dict[str, torch.Tensor]:
        """One step (``d_steps`` D updates, one G update, EMA): device scalars, no host sync.

        ``self.evidence`` keeps the step's tensors for a NaN report (D: a list, one entry per D update).
        """
        if self.cfg.train.paired:  # this step's Hamburger bases from streams of their own (latents: self.latents)
            seed_bases_streams({"G": self.G, "D": self.D}, self.cfg.train.seed, self.info.rank, self.step)
        out: dict[str, torch.Tensor] = {}
        d_evidence = []
        for _ in range(self.cfg.train.d_steps):
            d = self.d_update()
            d_evidence.append(d.pop("evidence"))
            out.update(d)
        g = self.g_update()
        self.evidence = {"D": d_evidence, "G": g.pop("evidence")}
        out.update(g)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        return out

    # ---- the loop ------------------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until ``train.steps``; returns the last logged metrics. Releases the run lock at the end."""
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
            self.close()
        return self.last_metrics

    def _handle(self, verdict: Any) -> None:
        """Act on a verdict of the step checks: a NaN report and error, or a checkpoint and a stop."""
        if verdict is None:
            return
        if verdict.kind == "diverged":
            module = self.G if verdict.network == "G" else self.D
            raise diverged_error(verdict, module, self.run_dir, self.info.rank)
        later = self.checks.resolve()  # every step up to now must be finite before its weights are saved
        if later is not None and later.kind == "diverged":
            self._handle(later)
        path = self.save()
        signum = self.stop_signum or signal.SIGTERM
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name} after step {self.step}; checkpoint "
                              f"{path}. Run the same command again to resume.", signum)

    def _loop(self, stop: StopRequest) -> None:
        """Steps until ``train.steps``, each followed by the health checks and the work due at its step."""
        t = self.cfg.train
        self.checks = StepChecks()
        window = LogWindow(self.device)
        report_compile = t.compile and self.info.is_main  # RUN/compile.json after this process's first step
        while self.step < t.steps:
            out = self.train_step()
            window.add(out)
            if report_compile:
                self.log.write(write_compile_report(self.run_dir / "compile.json", t.compile_backend))
                report_compile = False
            self.stop_signum = stop.signum
            self.checks.record(self.step, [e["loss"] for e in self.evidence["D"]], out["loss_g"],
                               stop.signum is not None, self.evidence)
            last = self.step == t.steps
            logs = self.step % t.log_every == 0 or last
            samples = bool(t.sample_every) and self.step % t.sample_every == 0
            fid = bool(t.fid.every) and self.step % t.fid.every == 0
            ckpt = self.step % t.ckpt_every == 0 or last
            # the flags of the previous step (the device already works on this one), or of all steps before work
            # that reads the weights
            self._handle(self.checks.resolve(keep=0 if logs or samples or fid or ckpt else 1))
            if logs:
                self._log_window(window)
            self.log.advance(1, **{k: v for k, v in self.last_metrics.items()
                                   if k in ("loss_d", "loss_g", "images_per_s")})
            if samples or fid or ckpt:
                with window.paused():  # not training time; its memory is not the steps' peak
                    if samples and self.info.is_main:
                        path = self.save_samples()
                        self.log.log_image(self.step, "samples", path, caption=f"step {self.step}")
                    if fid:
                        self.record_fid(self.measure_fid())
                    if ckpt:
                        self.save()
        self._handle(self.checks.resolve())

    def _log_window(self, window: LogWindow) -> None:
        """Log the means of the window's losses over its steps and the ranks, with speed, memory and learning
        rates; collective."""
        peak_mb = window.peak_memory_mb()
        means, seconds, steps = window.close(self.info.world_size)
        self.metrics["train_s"] = self.metrics.get("train_s", 0.0) + seconds  # of the run, resumes included
        self.last_metrics = {
            **means,
            "lr_g": self.opt_G.param_groups[0]["lr"],
            "lr_d": self.opt_D.param_groups[0]["lr"],
            "it_per_s": steps / seconds,
            "images_per_s": steps * self.cfg.train.batch_size / seconds,
            "peak_mem_mb": peak_mb,
            "train_s": self.metrics["train_s"],
        }
        self.log.log(self.step, self.last_metrics)
