"""Checkpoints: atomic writes, clear errors on bad files, loading a generator for sampling and evaluation.

A checkpoint is one ``torch.save`` file holding a dict::

    format    "hamgan-checkpoint/1"
    config    the full resolved config (plain dict, see hamgan.config.to_dict)
    step      completed G steps
    G, D      state dicts of the raw networks (never DDP/compile wrapped)
    G_ema     state dict of the EMA generator, or None
    opt_G, opt_D, rng, data, metrics, ...   training state (see hamgan.train)
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from hamgan.config import from_dict
from hamgan.nn.from_config import generator_from_config

FORMAT = "hamgan-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint that could not be written (disk full, quota, permissions); the previous file is untouched."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: temporary file in the same folder, fsync, rename, fsync folder.

    A crash at any moment leaves either the old file or the complete new one, never a truncated file. An operating
    system error (ENOSPC, EDQUOT, EACCES, ...) removes the temporary file and raises :class:`CheckpointWriteError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) or isinstance(e.__cause__, OSError):  # torch.save wraps write errors
            os_error = e if isinstance(e, OSError) else e.__cause__
            name = errno.errorcode.get(os_error.errno, "") if os_error.errno else ""
            reason = f"{os_error.strerror or os_error}" + (f" ({name})" if name else "")
            raise CheckpointWriteError(f"could not write checkpoint {path}: {reason}") from e
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with a clear error for missing or damaged files."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint (ckpt-*.pt) in folder '{path}'")
        path = latest
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, pickle garbage, ...
        raise CheckpointError(
            f"checkpoint '{path}' is damaged or not a hamgan checkpoint ({type(e).__name__}: {e}). "
            "Delete it to resume from the previous checkpoint in the same folder."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a hamgan checkpoint (expected format {FORMAT!r})")
    return state


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:09d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step checkpoints ``ckpt-<step>.pt`` of a run folder, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if _NAME.match(p.name))


def checkpoints_to_prune(paths: list[Path], keep_last: int, every: int) -> list[Path]:
    """The step checkpoints (oldest first) that ``train.keep_last`` lets go.

    ``keep_last`` counts the checkpoints of the ``train.ckpt_every`` schedule (steps that are multiples of ``every``).
    The extra ones, written on a stop signal or at a final step off the schedule, never push a scheduled checkpoint
    out (a study that evaluates steps 1000, 2000, ... keeps them however often its trainings were interrupted); they
    go once they are older than the oldest scheduled checkpoint kept. Returns ``[]`` while nothing is to go."""
    scheduled = [p for p in paths if checkpoint_step(p) % every == 0]
    kept = scheduled[-keep_last:]
    if not kept:
        return []
    oldest = checkpoint_step(kept[0])
    return [p for p in paths if p not in kept and checkpoint_step(p) < oldest]


def checkpoint_step(path: str | Path) -> int:
    """The step in a checkpoint's name ``ckpt-<step>.pt`` (see :func:`checkpoint_path`)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"'{path}' is not named like a step checkpoint (ckpt-<9-digit step>.pt)")
    return int(match.group(1))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_state_dict_checked(module: torch.nn.Module, state_dict: dict, what: str, path: str | Path = "") -> None:
    """``module.load_state_dict`` with an error that says the checkpoint belongs to another architecture."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:4])
        raise CheckpointError(
            f"checkpoint {str(path)!r}: its {what} does not fit the configured architecture ({detail}). "
            "Use the config the checkpoint was trained with (it is stored in the checkpoint and in the run's "
            "config.yaml), or start a new run folder."
        ) from None


def load_generator(path: str | Path, ema: bool = True, device: str | torch.device = "cpu"):
    """The generator of a checkpoint, in eval mode: ``(G, cfg, step)`` (see :func:`load_generator_ema`)."""
    return load_generator_ema(path, ema, device)[:3]


def load_generator_ema(path: str | Path, ema: bool = True, device: str | torch.device = "cpu"):
    """The generator of a checkpoint, in eval mode, and whether it holds EMA weights: ``(G, cfg, step, is_ema)``.

    ``ema=True`` takes the EMA weights when the checkpoint has them (else the raw G, with a warning; ``is_ema`` is
    then False). Sampling code uses ``is_ema`` to choose the default batch-norm statistics (:mod:`hamgan.bn_modes`).
    """
    import warnings

    state = load_checkpoint(path)
    cfg = from_dict(state["config"])
    G = generator_from_config(cfg.model)
    weights, is_ema = state["G"], False
    if ema:
        if state.get("G_ema") is not None:
            weights, is_ema = state["G_ema"], True
        else:
            warnings.warn(f"checkpoint {path} has no EMA generator; using the raw G", stacklevel=3)
    load_state_dict_checked(G, weights, "generator", path)
    return G.to(device).eval(), cfg, int(state["step"]), is_ema
