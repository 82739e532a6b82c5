"""TF32 on CUDA GPUs (``train.tf32``): the process setting, and the scope that keeps true float32 where it matters.

TF32 runs float32 convolutions and matrix products on the tensor cores of GPUs of compute capability >= 8 with a
10-bit mantissa (inputs rounded, float32 accumulation): about the precision of bf16 inputs, several times faster.
The CPU never uses it.

==========  ==========================================================================================================
mode        float32 convs and matmuls on CUDA
==========  ==========================================================================================================
layers      TF32 in the networks' layers (what the GPU anchors do); the Hamburger decomposition and FID's Inception
            features in true (IEEE) float32. The default, and the mode of a process that never set one (hamgan-eval).
all         TF32 everywhere, also in the decomposition and in Inception (faster; FID then differs from true float32)
none        true float32 everywhere
==========  ==========================================================================================================

Under bf16 / fp16 autocast the layers compute in the half type anyway; TF32 matters for the float32 parts: the
decomposition, the spectral-norm power iteration, batch norm's convs with ``train.amp=none``, and Inception.

:func:`set_mode` sets the process-wide flags once (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``; the training set-up calls it, :mod:`hamgan.train.precision`).
:func:`exact` runs a function with both flags off on CUDA unless the mode is ``all``, and restores them. It is a
forward-only scope: products of the backward pass (``loss.backward()`` runs outside it) follow the process flags.
Under ``torch.compile`` the scoped function runs eagerly between compiled graphs (the flags are process state that
a compiled graph does not switch), so on CUDA with mode ``layers`` the decomposition is a graph break; ``all`` keeps
it inside the graph.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

import torch

MODES: tuple[str, ...] = ("layers", "all", "none")
_mode = "layers"  # the process's mode (set_mode); "layers" until a training set-up says otherwise

T = TypeVar("T")


def set_mode(mode: str, cuda: bool) -> None:
    """Make ``mode`` the process's TF32 mode; on a CUDA process also set torch's TF32 flags (on unless "none")."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"train.tf32 must be one of {MODES}, got {mode!r}")
    _mode = mode
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = mode != "none"
        torch.backends.cudnn.allow_tf32 = mode != "none"


def mode() -> str:
    """The process's TF32 mode (:data:`MODES`)."""
    return _mode


def flags() -> tuple[bool, bool]:
    """torch's TF32 flags now: ``(cuda matmul, cuDNN conv)``."""
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def scoped(device: torch.device) -> bool:
    """True when :func:`exact` switches TF32 off for work on ``device``: CUDA in mode "layers" (with "none" the flags
    are off already, with "all" they stay on)."""
    return device.type == "cuda" and _mode == "layers"


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Both TF32 flags off inside, restored after (whatever they were)."""
    old = flags()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@torch.compiler.disable
def _call_ieee(fn: Callable[..., T], *args) -> T:
    with ieee_float32():
        return fn(*args)


def exact(fn: Callable[..., T], device: torch.device, *args) -> T:
    """``fn(*args)`` in true float32 on CUDA unless the mode is "all" (see the module doc); a plain call elsewhere."""
    if not scoped(device):
        return fn(*args)
    return _call_ieee(fn, *args)
