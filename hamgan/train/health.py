"""NaN/inf and stop checks without a blocking host sync per step, the NaN report, and the stop signals.

After every step the loop queues, on the device, three flags: D loss non-finite, G loss non-finite, stop requested
(SIGTERM/SIGINT reached this rank), all-reduced (max) over ranks so every rank takes the same decision. The host
copies them without blocking and reads them one step later, while the device already works on the next step; before
anything that reads the weights (logging, samples, FID, checkpoints, the end) it reads all flags up to the current
step. So a non-finite loss is reported with the step and network where it first appeared and the statistics of
that step's batch, although the host learns of it one step late (the weights of the later steps are discarded: no
checkpoint is written after a non-finite step).

``nan_report.json`` (rank 0; ``nan_report.rank<r>.json`` from other ranks): step, network, loss, rank, statistics
(shape, non-finite count, min/max/mean/std) of the step's real and fake images and logits, and the parameters that
were non-finite when the report was written (one step after the bad one).
"""

from __future__ import annotations

import json
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from hamgan import distributed
from hamgan.checkpoint import latest_checkpoint


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


@dataclass
class Pending:
    """The flags of one step on their way to the host, with the step's tensors for a report."""

    step: int
    flags: torch.Tensor  # (3,) float on the host: D non-finite, G non-finite, stop
    event: Any  # CUDA event after the copy, or None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    """What the flags of ``step`` say: ``kind`` "diverged" (with ``network``) or "stop"."""

    kind: str
    step: int
    network: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class StepChecks:
    """The per-step flags (see module doc): :meth:`record` after each step, :meth:`resolve` to read them."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []

    def record(self, step: int, d_losses: list[torch.Tensor], g_loss: torch.Tensor, stop: bool,
               evidence: dict[str, Any]) -> None:
        """Queue the flags of ``step`` (collective: all-reduced over ranks, without a host sync on GPUs)."""
        device = g_loss.device
        d_ok = torch.stack([torch.isfinite(v.detach()) for v in d_losses]).all()
        flags = torch.stack([(~d_ok).float(), (~torch.isfinite(g_loss.detach())).float(),
                             torch.full((), float(stop), device=device)])
        if dist.is_initialized():
            flags = flags.to(distributed.collective_device(device))
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        event = None
        if flags.device.type == "cuda":
            host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
            host.copy_(flags, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            flags = host
        self.pending.append(Pending(step, flags, event, evidence))

    def resolve(self, keep: int = 0) -> Verdict | None:
        """Read the flags of all pending steps but the last ``keep`` (oldest first); the first verdict, or None."""
        while len(self.pending) > keep:
            p = self.pending.pop(0)
            if p.event is not None:
                p.event.synchronize()
            d_bad, g_bad, stop = (v > 0 for v in p.flags.tolist())
            if d_bad or g_bad:
                self.pending.clear()
                return Verdict("diverged", p.step, "D" if d_bad else "G", p.evidence)
            if stop:
                return Verdict("stop", p.step)
        return None


def diverged_error(verdict: Verdict, module: nn.Module, run_dir: Path, rank: int) -> TrainingDiverged:
    """Write this rank's NaN report for ``verdict`` and build the error to raise.

    The evidence of a D step is a list (one entry per D update of the step): the first update with a non-finite
    loss is reported. Every rank's flags are all-reduced, so a rank whose own loss is finite reports the step too.
    """
    evidence = verdict.evidence.get(verdict.network, {})
    if isinstance(evidence, list):
        bad = [e for e in evidence if not torch.isfinite(e["loss"]).all()]
        evidence = (bad or evidence)[0]
    loss = float(evidence["loss"]) if "loss" in evidence else float("nan")
    report = {
        "step": verdict.step,
        "network": verdict.network,
        "loss": loss,
        "rank": rank,
        "tensors": {k: tensor_stats(v) for k, v in evidence.items() if k != "loss"},
        "nonfinite_parameters": nonfinite_parameters(module),
    }
    path = run_dir / ("nan_report.json" if rank == 0 else f"nan_report.rank{rank}.json")
    path.write_text(json.dumps(report, indent=2))
    last = latest_checkpoint(run_dir)
    where = f"the {verdict.network} loss is {loss}" if not math.isfinite(loss) else \
        f"the {verdict.network} loss is non-finite on another rank (here {loss:.4g})"
    return TrainingDiverged(
        f"training diverged at step {verdict.step}: {where} (network {verdict.network}). The last good checkpoint is "
        f"{last or 'none (no checkpoint written yet)'}; it was not overwritten. Batch statistics: {path}"
    )
