"""Mixed precision: which autocast dtype ``train.amp`` means on a device, and the autocast context.

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
"""

from __future__ import annotations

import contextlib

import torch

from hamgan.config import ConfigError


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
