"""What a context block computed: the Hamburger's NMF coefficient maps and self-attention's attention maps.

Both are read from a forward pass of a whole network (G or D) whose ``.context`` is the block::

    image, coef = hamburger_coefficients(G, z, y)   # coef (B, S, R, H, W): C of the decomposition, per component
    image, attn = attention_maps(G, z, y)           # attn (B, H, W, h, w): per query pixel, weights over the keys

The Hamburger draws fresh random bases on every forward, so its decomposition cannot be recomputed afterwards; it is
recorded during the forward by wrapping the block's :meth:`~hamgan.nn.hamburger.Hamburger.decompose` (bases ``D``
(B*S, D, R), coefficients ``C`` (B*S, N, R)). Attention is deterministic: a forward pre-hook keeps the block's input and
the softmax weights are recomputed from the block's own theta / phi projections, exactly as its forward does.

Use networks in eval mode (``G.eval()``): in training mode spectral norm runs a power iteration at every weight access,
so the recomputed projections would use a slightly newer weight estimate than the forward did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.nn.attention import SelfAttention
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.layers import pointwise


def context_of(net: nn.Module, kind: type[nn.Module]) -> nn.Module:
    """``net.context`` when it is a ``kind`` block, with a clear error otherwise."""
    block = getattr(net, "context", None)
    if not isinstance(block, kind):
        found = "no context block" if block is None else f"a {type(block).__name__}"
        raise ValueError(
            f"{type(net).__name__} has {found}, not a {kind.__name__}: use a network built with "
            f"model.{'g' if type(net).__name__ == 'Generator' else 'd'}.context="
            f"{'ham' if kind is Hamburger else 'attention'}"
        )
    return block


@contextlib.contextmanager
def recording_decompositions(block: Hamburger) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Within the ``with``, every decomposition of ``block`` appends ``(bases (B*S, D, R), coef (B*S, N, R))``."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    decompose = block.decompose  # the bound method

    def recorded(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bases, coef = decompose(x)
        records.append((bases.detach(), coef.detach()))
        return bases, coef

    block.decompose = recorded  # instance attribute shadows the method
    try:
        yield records
    finally:
        del block.decompose


def hamburger_coefficients(net: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``net(*inputs)`` without autograd; return its output and the coefficient maps of its Hamburger.

    ``coef[b, s, r]`` is column r of C (the weight of basis r at every pixel) of group s of sample b, laid out on the
    block's H x W grid. Shapes: ``coef`` (B, S, R, H, W), non-negative for NMF.
    """
    block = context_of(net, Hamburger)
    shapes: list[torch.Size] = []
    handle = block.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape))
    try:
        with recording_decompositions(block) as records, torch.no_grad():
            out = net(*inputs)
    finally:
        handle.remove()
    B, _, H, W = shapes[-1]
    _, coef = records[-1]
    coef = coef.view(B, block.groups, H, W, block.rank).permute(0, 1, 4, 2, 3)
    return out, coef.contiguous()


def attention_weights(block: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The softmax weights of a SAGAN block on input ``x`` (B, C, H, W): (B, N, M), N = H*W queries over the
    M = ceil(H/2) * ceil(W/2) max-pooled keys, rows summing to 1."""
    B, C, H, W = x.shape
    pixels = x.flatten(2)
    theta = pointwise(block.theta, pixels)  # (B, C/8, N)
    phi = F.max_pool2d(pointwise(block.phi, pixels).view(B, C // 8, H, W), 2, ceil_mode=True).flatten(2)
    return F.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)


def attention_maps(net: nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``net(*inputs)`` without autograd; return its output and the attention maps of its SAGAN block.

    ``attn[b, i, j]`` is where query pixel (i, j) looks: its weights over the pooled key grid.
    Shapes: ``attn`` (B, H, W, h, w) with h, w = ceil(H/2), ceil(W/2); every (h, w) map sums to 1.
    """
    block = context_of(net, SelfAttention)
    inputs_seen: list[torch.Tensor] = []
    handle = block.register_forward_pre_hook(lambda module, args: inputs_seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            out = net(*inputs)
            x = inputs_seen[-1]
            weights = attention_weights(block, x)
    finally:
        handle.remove()
    B, _, H, W = x.shape
    return out, weights.view(B, H, W, (H + 1) // 2, (W + 1) // 2)


__all__ = [
    "attention_maps",
    "attention_weights",
    "context_of",
    "hamburger_coefficients",
    "recording_decompositions",
]
