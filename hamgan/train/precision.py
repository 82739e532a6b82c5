"""Mixed precision and TF32: what ``train.amp`` means on a device, the one decision of dtype and TF32 for all ranks,
and the autocast context.

============  ======================================================================================================
train.amp     meaning
============  ======================================================================================================
auto          CPU: full precision. GPU: bf16 where the GPU computes it natively (compute capability >= 8.0: A100,
              H100, RTX 30xx and later), else fp16 with a GradScaler (V100, T4, ... only emulate bf16). Logged.
bf16          bfloat16 autocast (CPU or GPU); no loss scaling needed.
fp16          float16 autocast with dynamic loss scaling (GradScaler); GPU only.
none          float32 everywhere.
============  ======================================================================================================

Autocast covers the forward passes and the losses only; ``backward()`` runs outside it (PyTorch's AMP
recommendation: the backward ops take the dtypes their forward ops had, so the float32 parts of a network, e.g.
the Hamburger's decomposition, keep float32 gradients).

One decision for all ranks (:func:`decide`, called once by the trainer's set-up): every rank reports its device
(kind, name, native bf16); rank 0 resolves ``train.amp`` and ``train.tf32`` (:mod:`hamgan.tf32`) from all reports
and broadcasts the result; every rank then sets the same backend flags. Ranks on different kinds of devices are an
error; with ``train.amp=auto`` one GPU without native bf16 makes every rank use fp16 (a logged downgrade naming the
ranks), and an explicit ``train.amp=bf16`` there is logged as emulated on those ranks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from hamgan import distributed, tf32
from hamgan.config import ConfigError, TrainConfig
from hamgan.distributed import DistInfo


def native_bf16(device: torch.device) -> bool:
    """True when the GPU ``device`` computes bfloat16 natively (not by emulation through float32)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4 has no including_emulation
        return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """``(autocast dtype or None, a sentence saying what was chosen and why)`` for ``train.amp`` on ``device``."""
    if amp == "auto":
        if device.type != "cuda":
            return None, "train.amp=auto: full precision (float32) on the CPU"
        name = torch.cuda.get_device_name(device)
        if native_bf16(device):
            return torch.bfloat16, f"train.amp=auto: bf16 autocast ({name} computes bf16 natively)"
        return torch.float16, (f"train.amp=auto: fp16 autocast with loss scaling ({name} has no native bf16; "
                               "set train.amp=bf16 to force emulated bf16)")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a GPU; on CPU use train.amp=bf16 or none")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
    return dtype, f"train.amp={amp}: " + ("full precision (float32)" if dtype is None else f"{amp} autocast")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: full precision)."""
    return resolve_amp(amp, device)[0]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type (a no-op context for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------------------------------
# One decision for all ranks
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """What rank 0 decided for every rank: the autocast dtype (None: float32), the TF32 mode, the log sentences."""

    amp: torch.dtype | None
    tf32: str
    notes: tuple[str, ...] = ()


def device_report(device: torch.device) -> dict[str, Any]:
    """What the decision needs to know about this rank's device: kind, name, native bf16 (GPUs)."""
    if device.type != "cuda":
        return {"type": device.type, "name": device.type, "bf16": False}
    return {"type": "cuda", "name": torch.cuda.get_device_name(device), "bf16": native_bf16(device)}


def _ranks(indices: list[int], reports: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i} ({reports[i]['name']})" for i in indices)


def resolve(amp: str, tf32_mode: str, reports: list[dict[str, Any]], device: torch.device) -> Precision:
    """Rank 0's decision from every rank's :func:`device_report` (``reports[0]`` is rank 0's, on ``device``).

    Raises ConfigError for ranks on different kinds of devices, or a ``train.amp`` this device cannot run."""
    kinds = {r["type"] for r in reports}
    if len(kinds) > 1:
        listing = ", ".join(f"rank {i}: {r['type']} ({r['name']})" for i, r in enumerate(reports))
        raise ConfigError(f"the ranks run on different kinds of devices ({listing}); run every rank on a GPU "
                          "(train.device=cuda) or every rank on the CPU (train.device=cpu)")
    dtype, note = resolve_amp(amp, device)
    notes = [note]
    if device.type == "cuda":
        emulating = [i for i, r in enumerate(reports) if not r["bf16"]]
        names = sorted({r["name"] for r in reports})
        if len(names) > 1:
            notes.append(f"the ranks run on different GPUs ({', '.join(names)})")
        if dtype is torch.bfloat16 and emulating:
            if amp == "auto":  # rank 0 computes bf16 natively, some other rank does not: all of them fp16
                dtype = torch.float16
                notes.append(f"train.amp=auto: fp16 autocast with loss scaling on every rank instead of bf16: "
                             f"rank(s) {_ranks(emulating, reports)} have no native bf16")
            else:
                notes.append(f"train.amp=bf16: rank(s) {_ranks(emulating, reports)} only emulate bf16 (slow); "
                             "train.amp=fp16 runs natively on every rank")
        notes.append(f"train.tf32={tf32_mode}: " + {
            "layers": "TF32 in the networks' float32 layers; the Hamburger decomposition and Inception in true "
                      "float32",
            "all": "TF32 in every float32 conv and matmul, also the decomposition and Inception",
            "none": "true float32 everywhere"}[tf32_mode])
    return Precision(dtype, tf32_mode, tuple(notes))


def apply(decision: Precision, device: torch.device) -> None:
    """Set this process's backend flags for ``decision``: TF32 (:func:`hamgan.tf32.set_mode`), cuDNN autotuning on
    GPUs (speed over bit-reproducibility there)."""
    tf32.set_mode(decision.tf32, cuda=device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def decide(train: TrainConfig, info: DistInfo) -> Precision:
    """The autocast dtype and TF32 mode of every rank, decided once by rank 0 and applied here; collective (every
    rank calls it at the same point). A ConfigError of rank 0's decision is raised on every rank."""
    reports = distributed.all_gather_object(device_report(info.device))
    decision: Precision | str | None = None
    if info.is_main:
        try:
            decision = resolve(train.amp, train.tf32, reports, info.device)
        except ConfigError as e:
            decision = str(e)
    decision = distributed.broadcast_object(decision)
    if isinstance(decision, str):
        raise ConfigError(decision)
    apply(decision, info.device)
    return decision
