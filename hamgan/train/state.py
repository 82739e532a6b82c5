"""The training state in a checkpoint: what is saved, how it is restored, and the random-number generators.

A checkpoint (``hamgan.checkpoint``) of a training run holds::

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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hamgan import distributed
from hamgan.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked
from hamgan.config import from_dict, to_dict
from hamgan.train.run_folder import flatten, warn_world_change

if TYPE_CHECKING:
    from hamgan.train.loop import Trainer


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


def training_state(trainer: Trainer) -> dict[str, Any]:
    """The full training state; collective (every rank must call it): gathers all ranks' RNG states."""
    return {
        "config": to_dict(trainer.cfg),
        "step": trainer.step,
        "G": trainer.G.state_dict(),
        "D": trainer.D.state_dict(),
        "G_ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "opt_G": trainer.opt_G.state_dict(),
        "opt_D": trainer.opt_D.state_dict(),
        "scaler_G": trainer.scaler_G.state_dict(),
        "scaler_D": trainer.scaler_D.state_dict(),
        "rng": distributed.all_gather_object(rng_state(trainer.flip, trainer.device)),
        "data": {**trainer.data.position(), "world_size": trainer.info.world_size},
        "metrics": dict(trainer.metrics),
    }


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


def load_training_state(trainer: Trainer, path: Path) -> list[str]:
    """Restore the training state of checkpoint ``path`` into ``trainer``'s raw networks (before DDP wraps them).

    The file is read onto the CPU: the RNG states must be CPU byte tensors, Adam's ``step`` counts stay CPU
    tensors (see :func:`load_optimizer_state`), and ``load_state_dict`` copies weights and moments to the networks'
    devices. Returns sentences for the run log about what could not be restored as saved."""
    state = load_checkpoint(path, map_location="cpu")
    saved_model = flatten(to_dict(from_dict(state.get("config", {})))["model"], "model.")  # defaults filled in
    ours = flatten(to_dict(trainer.cfg)["model"], "model.")
    diffs = [f"{k}: {saved_model.get(k)!r} in the checkpoint, {v!r} configured"
             for k, v in ours.items() if saved_model.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"checkpoint '{path}' belongs to another architecture ({'; '.join(diffs[:4])}). Use the config it "
            "was trained with or a new run folder"
        )
    load_state_dict_checked(trainer.G, state["G"], "generator", path)
    load_state_dict_checked(trainer.D, state["D"], "discriminator", path)
    if trainer.ema is not None:
        if state.get("G_ema") is not None:
            load_state_dict_checked(trainer.ema.model, state["G_ema"], "EMA generator", path)
        else:  # EMA switched on for a run trained without it: start from the current G
            trainer.ema.model.load_state_dict(trainer.G.state_dict())
    load_optimizer_state(trainer.opt_G, state["opt_G"])
    load_optimizer_state(trainer.opt_D, state["opt_D"])
    notes = [load_scaler_state(trainer.scaler_G, state["scaler_G"], "scaler_G"),
             load_scaler_state(trainer.scaler_D, state["scaler_D"], "scaler_D")]
    trainer.step = int(state["step"])
    trainer.metrics = dict(state.get("metrics", trainer.metrics))
    data, rngs, info = state["data"], state["rng"], trainer.info
    if data.get("world_size", 1) == info.world_size and len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank], trainer.flip, trainer.device)
        trainer.data.set_position(data["epoch"], data["index"])
    else:  # a different number of ranks: keep the epoch, restart its order, fresh per-rank seeds
        warn_world_change(data.get("world_size", 1), info.world_size)
        seed_everything(trainer.cfg.train.seed + 1000 * info.rank + trainer.step)
        trainer.data.set_position(data["epoch"] + 1, 0)
    return [note for note in notes if note]
