"""Exponential moving average of the generator's weights (BigGAN / EDM style sampling network).

Before ``start`` the EMA generator is a plain copy of G; from ``start`` on, after every G update::

    theta_ema <- decay * theta_ema + (1 - decay) * theta

Buffers (spectral-norm power-iteration vectors u, v and batch-norm running statistics) are copied, not averaged:
they are estimates that belong to the current weights. The HamGAN paper trained without EMA (reference §2), so the
paper-reproduction configs set ``train.ema.enabled: false``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """An EMA copy of ``model`` (kept in eval mode, never receiving gradients).

    Args:
        model: the network to follow (the raw module, not a DDP or compiled wrapper).
        decay: averaging factor per update, e.g. 0.9999.
        start: the first step at which averaging is used; before it, :meth:`update` copies the weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, start: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.start = start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in ``model``'s weights after G update number ``step`` (1-based).

        One ``torch._foreach`` call over all parameters and one over all buffers (a few fused kernels on CUDA
        instead of two per tensor); the EMA copy keeps its own dtype.
        """
        ema_params = dict(self.model.named_parameters())
        ema_buffers = dict(self.model.named_buffers())
        targets, sources = [], []
        for name, p in model.named_parameters():
            targets.append(ema_params[name])
            sources.append(p if p.dtype == ema_params[name].dtype else p.to(ema_params[name].dtype))
        if step < self.start:
            torch._foreach_copy_(targets, sources)
        else:
            torch._foreach_lerp_(targets, sources, 1.0 - self.decay)
        buffers = [(ema_buffers[name], b) for name, b in model.named_buffers()]
        if buffers:
            torch._foreach_copy_(*(list(side) for side in zip(*buffers)))

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
