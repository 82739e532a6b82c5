"""The training state in a checkpoint: what is saved, how it is restored, and the random-number generators.

A checkpoint (``hamgan.checkpoint``) of a training run, :meth:`hamgan.train.loop.Trainer.state_dict`, holds::

    config, step          the resolved config (plain dict) and the completed G steps
    G, D, G_ema           state dicts of the raw networks (never DDP / compile wrapped); G_ema None without EMA
    opt_G, opt_D          Adam states;  scaler_G, scaler_D  fp16 loss-scaler states
    rng                   one entry per rank: Python, NumPy, torch CPU, the flip generator, and the rank's own
                          CUDA generator (only its device's: ranks never touch each other's GPUs)
    data                  the position in the data order, {"epoch", "index", "world_size"}
    metrics               best FID so far and its step, cumulative training seconds

Resuming is exact: N steps + resume + N steps give the same weights as 2N steps in one go (CPU). Resuming with
another number of ranks continues (same epoch, a fresh order from its start, fresh per-rank seeds) with a warning.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamgan import distributed
from hamgan.checkpoint import CheckpointError
from hamgan.config import Config, from_dict, to_dict
from hamgan.train.run_folder import flatten, warn_world_change


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(flip: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random-number-generator state of this process (the CUDA one of ``device`` only)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "flip": flip.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], flip: torch.Generator, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    flip.set_state(state["flip"])
    cuda = state.get("cuda")
    if device.type == "cuda" and cuda is not None:
        if isinstance(cuda, (list, tuple)):  # checkpoints before the per-rank format: one state per visible GPU
            cuda = cuda[device.index] if device.index is not None and device.index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


# How an optimiser runs on this machine, not training state: kept from the configured optimiser on resume.
OPTIMIZER_IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(saved)`` of a CPU-loaded state, keeping the configured implementation flags.

    Torch's loader moves moments to each parameter's device and leaves the ``step`` counts where they are (CPU)
    unless the group is fused or capturable, which want them on the parameter's device (float32). The saved groups'
    ``fused`` / ``foreach`` / ... would otherwise replace the configured ones: a run resumed on a GPU would keep the
    non-fused Adam of a CPU checkpoint, and a CPU resume of a fused GPU checkpoint fused Adam.
    """
    groups = [{**saved_group, **{k: group[k] for k in OPTIMIZER_IMPLEMENTATION if k in group}}
              for saved_group, group in zip(saved["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**saved, "param_groups": groups + saved["param_groups"][len(groups):]})


def load_scaler_state(scaler: torch.amp.GradScaler, saved: dict[str, Any], name: str) -> str | None:
    """Restore a loss scaler; an enabled one given the empty state of a disabled scaler (a bf16 / float32 / CPU
    checkpoint resumed in fp16) starts from a fresh scale instead. Returns the sentence to log then, else None."""
    if scaler.is_enabled() and not saved:
        return (f"{name}: the checkpoint has no fp16 loss-scaler state (trained without fp16); starting from a "
                f"fresh scale of {scaler.get_scale():g}")
    scaler.load_state_dict(saved)
    return None


def check_architecture(saved_config: dict[str, Any], cfg: Config, source: str | Path) -> None:
    """A CheckpointError naming the differences when the checkpoint's model config (``saved_config``, defaults
    filled in) is not ``cfg.model``: its weights belong to another architecture."""
    saved = flatten(to_dict(from_dict(saved_config))["model"], "model.")
    ours = flatten(to_dict(cfg)["model"], "model.")
    diffs = [f"{k}: {saved.get(k)!r} in the checkpoint, {v!r} configured" for k, v in ours.items() if saved.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"checkpoint '{source}' belongs to another architecture ({'; '.join(diffs[:4])}). Use the config it "
            "was trained with or a new run folder"
        )


def restore_rngs_and_position(saved: dict[str, Any], data: Any, flip: torch.Generator, device: torch.device,
                              info: distributed.DistInfo, seed: int, step: int) -> None:
    """Every RNG of this rank and the data stream's position from a checkpoint's ``rng`` and ``data``; with another
    number of ranks than the checkpoint's: the same epoch, a fresh order from its start, fresh per-rank seeds."""
    position, rngs = saved["data"], saved["rng"]
    if position.get("world_size", 1) == info.world_size and len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank], flip, device)
        data.set_position(position["epoch"], position["index"])
    else:
        warn_world_change(position.get("world_size", 1), info.world_size)
        seed_everything(seed + 1000 * info.rank + step)
        data.set_position(position["epoch"] + 1, 0)
