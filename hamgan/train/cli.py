"""``hamgan-train``: the command line, the process-level set-up around a :class:`Trainer`, and exit statuses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hamgan import distributed
from hamgan.checkpoint import CheckpointError, CheckpointWriteError
from hamgan.config import Config, ConfigError
from hamgan.data.dataset import DatasetError
from hamgan.metrics import InceptionWeightsError, StatsError
from hamgan.train.health import TrainingDiverged, TrainingStopped
from hamgan.train.loop import Trainer
from hamgan.train.peers import EXIT_PEER_LOST, PeerLost, PeerMonitor, looks_collective
from hamgan.train.run_folder import LockError, resolve_config

EXIT_BAD_INPUT = 2  # bad config, damaged checkpoint, missing data, run folder in use, FID reference unusable
EXIT_DIVERGED = 3  # NaN / inf loss
EXIT_WRITE_FAILED = 4  # a checkpoint could not be written (disk full, ...): earlier checkpoints kept


def run(cfg: Config, run_dir: str | Path, notes: list[str] = ()) -> dict[str, Any]:
    """Train the run in ``run_dir`` on this process (joins the torchrun process group if there is one).

    With several ranks a :class:`PeerMonitor` watches the others; a collective that fails because a rank died
    becomes a :class:`PeerLost` naming that rank.
    """
    t = cfg.train
    info = distributed.setup(t.device, t.dist_timeout_min, t.dist_backend)
    monitor = PeerMonitor(info.rank, info.world_size, t.dist_timeout_min)
    error: BaseException | None = None
    try:
        trainer = Trainer(cfg, run_dir, info, notes)
        return trainer.fit()
    except BaseException as e:
        error = e
        lost = monitor.explain(e) if info.distributed and looks_collective(e) else None
        if lost is not None:
            error = lost
            raise lost from e
        raise
    finally:
        monitor.close(error)
        distributed.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hamgan-train",
        description="Train a class-conditional GAN (HamGAN / SAGAN / no context). Rerun with the same --out to "
        "resume from its latest checkpoint.",
        epilog=f"exit status: 0 done, {EXIT_BAD_INPUT} bad config / checkpoint / data or run folder in use, "
        f"{EXIT_DIVERGED} NaN or inf loss (see RUN/nan_report.json), {EXIT_WRITE_FAILED} a checkpoint could not be "
        f"written (disk full; earlier checkpoints kept), {EXIT_PEER_LOST} another rank died (it is named), "
        "143 / 130 stopped by SIGTERM / SIGINT after saving a checkpoint. "
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


def exit_status(error: BaseException) -> tuple[int, str] | None:
    """``(exit status, message prefix)`` of an error that ends a run cleanly (one line, no traceback), else None."""
    bad_input = (ConfigError, CheckpointError, DatasetError, LockError, InceptionWeightsError, StatsError,
                 distributed.MainRankFailed)
    for kinds, status, prefix in [(bad_input, EXIT_BAD_INPUT, "error: "), (TrainingDiverged, EXIT_DIVERGED, ""),
                                  (CheckpointWriteError, EXIT_WRITE_FAILED, "error: "), (PeerLost, EXIT_PEER_LOST, "")]:
        if isinstance(error, kinds):
            return status, prefix
    if isinstance(error, TrainingStopped):
        return 128 + error.signum, ""
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg, notes = resolve_config(args.config, args.out, args.overrides, args.steps)
        run(cfg, args.out, notes)
    except Exception as e:
        known = exit_status(e)
        if known is None:
            raise
        status, prefix = known
        print(f"hamgan-train: {prefix}{e}", file=sys.stderr)
        return status
    return 0
