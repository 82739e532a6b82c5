"""Spectral normalisation (Miyato et al. 2018) as a ``torch.nn.utils.parametrize`` parametrization.

``layer.weight`` becomes ``W / s`` computed from the learnable ``layer.parametrizations.weight.original`` W, where
s is an estimate of the top singular value sigma of W (viewed as an (out, fan_in) matrix) kept by one power
iteration per training forward. Two bounds (``SNOptions.bound``):

- ``"exact"``: ``s = sigma``, the spectral norm is 1 (``torch.nn.utils.parametrizations.spectral_norm``; TF-GAN's
  ``sn_conv1x1``, the 1x1 convs of its attention and Hamburger blocks).
- ``"at_most_one"``: ``s = max(1, sigma)``, the spectral norm is at most 1 (TF-GAN's ``snconv2d``, ``snlinear`` and
  ``sn_embedding``: ``spectral_normalize(..., equality_constrained=False)``).

The power iteration is TF-GAN's and torch's (they agree): with the persisted vector v of size fan_in,
``u = normalize(W v)``, ``v = normalize(W^T u)``, ``sigma = u^T W v``. Torch keeps both u and v as buffers ``_u``,
``_v``; the state-dict keys are those of torch's parametrization, so checkpoints of either load into the other.
``SNOptions.eval_iteration``: TF-GAN runs the power iteration in eval mode too, from the stored v, without storing
the result; torch uses the stored u, v as they are. ``SNOptions.warmup``: power iterations run when the layer is
created and again after :func:`hamgan.nn.layers.init_weights` (torch: 15; TF-GAN: 0, the first training step starts
from a random vector).

The power iteration and sigma always run in float32 with autocast off (under bf16 autocast ``mv`` would otherwise
run in bf16 on CUDA and sigma jitter by ~0.2% per step); the normalised weight has the dtype of the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

SN_EPS = 1e-6  # floor of the vector norms (TF-GAN: 1e-12 on the squared norm, the same floor)
TORCH_WARMUP = 15  # torch's power iterations at creation

Bound = Literal["exact", "at_most_one"]
BOUNDS: tuple[str, ...] = ("exact", "at_most_one")


@dataclass(frozen=True)
class SNOptions:
    """How a layer is spectrally normalised (see the module doc). The defaults are torch's spectral norm."""

    bound: Bound = "exact"
    eval_iteration: bool = False
    warmup: int = TORCH_WARMUP

    def __post_init__(self) -> None:
        if self.bound not in BOUNDS:
            raise ValueError(f"spectral-norm bound must be one of {BOUNDS}, got {self.bound!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"spectral-norm warmup must be an integer >= 0, got {self.warmup!r}")


class SpectralNorm(nn.Module):
    """The parametrization ``W -> W / s`` of the module doc, for a weight of 2 or more dimensions (dim 0: out).

    Buffers: ``_u`` (out,) and ``_v`` (fan_in,), unit vectors. Shapes: ``weight`` (out, ...) -> the same shape.
    """

    def __init__(self, weight: torch.Tensor, options: SNOptions = SNOptions(), eps: float = SN_EPS) -> None:
        super().__init__()
        if weight.ndim < 2:
            raise ValueError(f"spectral norm needs a weight of 2 or more dimensions, got shape {tuple(weight.shape)}")
        self.bound, self.eval_iteration, self.warmup = options.bound, options.eval_iteration, options.warmup
        self.eps = eps
        matrix = weight.detach().flatten(1)
        # the same draws as torch's parametrization, so that networks initialise identically with either
        self.register_buffer("_u", F.normalize(matrix.new_empty(matrix.shape[0]).normal_(0, 1), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(matrix.new_empty(matrix.shape[1]).normal_(0, 1), dim=0, eps=eps))
        self.power_iteration(matrix.float(), self.warmup)

    @torch.no_grad()
    def power_iteration(self, matrix: torch.Tensor, steps: int) -> None:
        """``steps`` rounds of ``u = normalize(W v)``, ``v = normalize(W^T u)`` on the buffers, in place."""
        for _ in range(steps):
            self._u = F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps, out=self._u)
            self._v = F.normalize(torch.mv(matrix.H, self._u), dim=0, eps=self.eps, out=self._v)

    def sigma(self, matrix: torch.Tensor) -> torch.Tensor:
        """sigma = u^T W v for the float32 (out, fan_in) ``matrix``; updates u, v in training mode."""
        if self.training:
            self.power_iteration(matrix, 1)
        elif self.eval_iteration:  # one iteration from the stored v, not stored (TF-GAN's training=False)
            with torch.no_grad():
                u = F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps)
                v = F.normalize(torch.mv(matrix.H, u), dim=0, eps=self.eps)
            return torch.vdot(u, torch.mv(matrix, v))
        # clones: u, v may be updated in place by a later forward before this one's backward (torch's reason)
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        return torch.vdot(u, torch.mv(matrix, v))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self._u.dtype != torch.float32:  # the module was cast (e.g. .bfloat16()): u, v stay float32
            self._u, self._v = self._u.float(), self._v.float()
        with torch.autocast(weight.device.type, enabled=False):
            w = weight.float()
            sigma = self.sigma(w.flatten(1))
            if self.bound == "at_most_one":
                sigma = sigma.clamp(min=1.0)
            return (w / sigma).to(weight.dtype)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def extra_repr(self) -> str:
        return f"bound={self.bound!r}, eval_iteration={self.eval_iteration}, warmup={self.warmup}"


def spectral_norm(module: nn.Module, options: SNOptions = SNOptions()) -> nn.Module:
    """Register :class:`SpectralNorm` on ``module.weight`` (a conv, linear or embedding); returns ``module``."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, options))
    return module


def spectral_norms(module: nn.Module) -> list[SpectralNorm]:
    """Every :class:`SpectralNorm` parametrization inside ``module``."""
    return [m for m in module.modules() if isinstance(m, SpectralNorm)]


@torch.no_grad()
def refresh(module: nn.Module, iterations: int | None = None) -> bool:
    """Run power iterations of the spectral norm of ``module.weight`` on its current weight, updating u and v.

    ``iterations`` None: the layer's warm-up count (after a re-initialisation). Also used to fit u, v to weights
    that were averaged elsewhere (an EMA generator, :mod:`hamgan.bn_modes`). Returns whether ``module`` has one.
    """
    if not parametrize.is_parametrized(module, "weight"):
        return False
    original = module.parametrizations.weight.original
    found = False
    for p in module.parametrizations.weight:
        if isinstance(p, SpectralNorm):
            p.power_iteration(original.detach().float().flatten(1), p.warmup if iterations is None else iterations)
            found = True
    return found


__all__ = ["BOUNDS", "SNOptions", "SN_EPS", "SpectralNorm", "refresh", "spectral_norm", "spectral_norms"]
