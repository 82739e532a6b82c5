"""Building-block layers shared by the context blocks and the networks.

Spectral normalisation (Miyato et al. 2018) is applied to every conv, linear and embedding of HamGAN's G and D
(reference §2). It comes from ``torch.nn.utils.parametrizations.spectral_norm``: the learnable weight lives in
``layer.parametrizations.weight.original`` and ``layer.weight`` is that weight divided by its estimated top
singular value (one power iteration per training forward).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

SN_EPS = 1e-6  # as in the SAGAN / BigGAN codes
SN_INIT_ITERATIONS = 15  # power iterations that re-estimate u, v after a weight re-initialisation

InitScheme = Literal["orthogonal", "xavier", "normal"]
INIT_SCHEMES: tuple[str, ...] = ("orthogonal", "xavier", "normal")


def _maybe_sn(module: nn.Module, spectral_norm: bool) -> nn.Module:
    return _spectral_norm(module, eps=SN_EPS) if spectral_norm else module


def sn_conv2d(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    padding: int = 0,
    bias: bool = True,
    spectral_norm: bool = True,
) -> nn.Conv2d:
    """A ``kernel_size`` x ``kernel_size`` conv (stride 1), spectrally normalised unless ``spectral_norm=False``."""
    return _maybe_sn(nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=bias), spectral_norm)


def sn_linear(in_f: int, out_f: int, bias: bool = True, spectral_norm: bool = True) -> nn.Linear:
    """A linear layer, spectrally normalised unless ``spectral_norm=False``."""
    return _maybe_sn(nn.Linear(in_f, out_f, bias=bias), spectral_norm)


def sn_embedding(num_embeddings: int, dim: int, spectral_norm: bool = True) -> nn.Embedding:
    """An embedding table (e.g. the projection discriminator's class embedding), spectrally normalised."""
    return _maybe_sn(nn.Embedding(num_embeddings, dim), spectral_norm)


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 ``conv`` to pixels laid out as columns: (B, C_in, N) -> (B, C_out, N).

    The same as ``conv(x.view(B, C_in, H, W)).flatten(2)`` (spectral norm included, through ``conv.weight``) as one
    batched matrix product with the bias fused in; on CPU several times faster than the convolution kernels.
    """
    weight = conv.weight.flatten(1)  # (C_out, C_in)
    batch, n = x.shape[0], x.shape[-1]
    weight = weight.to(x.dtype).expand(batch, -1, -1)
    if conv.bias is None:
        return torch.bmm(weight, x)
    bias = conv.bias.to(x.dtype).view(1, -1, 1).expand(batch, -1, n)
    return torch.baddbmm(bias, weight, x)


class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional batch norm: ``BN(x) * gain[y] + bias[y]``.

    A ``BatchNorm2d(affine=False)`` followed by a per-class gain (initialised to 1) and bias (initialised to 0), the
    CBN of SAGAN / HamGAN's generator conditioned on the one-hot label.

    Args:
        num_features: channels C.
        num_classes: number of classes; labels are integers in ``[0, num_classes)``.

    Shapes: ``x`` (B, C, H, W), ``y`` (B,) long -> (B, C, H, W).
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Parameter(torch.ones(num_classes, num_features))
        self.bias = nn.Parameter(torch.zeros(num_classes, num_features))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y is None or y.shape != (x.shape[0],):
            got = None if y is None else tuple(y.shape)
            raise ValueError(
                f"ConditionalBatchNorm2d needs class labels y of shape ({x.shape[0]},) for a batch of "
                f"{x.shape[0]}, got {got}"
            )
        gain = self.gain[y].view(-1, self.num_features, 1, 1).to(x.dtype)
        bias = self.bias[y].view(-1, self.num_features, 1, 1).to(x.dtype)
        return self.bn(x) * gain + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"


def _learnable_weight(module: nn.Module) -> torch.Tensor:
    """The weight an optimiser updates: the original one under a spectral-norm parametrization."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def _refresh_spectral_norm(module: nn.Module) -> None:
    """Re-estimate the power-iteration vectors u, v for a freshly initialised weight."""
    if not parametrize.is_parametrized(module, "weight"):
        return
    original = module.parametrizations.weight.original
    for p in module.parametrizations.weight:
        was_training = p.training
        p.train()
        for _ in range(SN_INIT_ITERATIONS):
            p(original)
        p.train(was_training)


@torch.no_grad()
def init_weights(module: nn.Module, scheme: InitScheme) -> None:
    """Initialise every conv, linear and embedding weight inside ``module`` in place; biases to 0.

    ``"orthogonal"`` (BigGAN / SAGAN-PyTorch default), ``"xavier"`` (uniform, gain 1) or ``"normal"`` (N(0, 0.02),
    the TF-GAN SAGAN init). Spectrally normalised layers get their *original* weight re-initialised and their power
    iteration re-estimated. Other parameters (batch-norm gains, the context blocks' output scales) are untouched.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            continue
        w = _learnable_weight(m)
        if scheme == "orthogonal":
            nn.init.orthogonal_(w)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(w)
        else:
            nn.init.normal_(w, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
        _refresh_spectral_norm(m)


__all__ = [
    "ConditionalBatchNorm2d",
    "INIT_SCHEMES",
    "init_weights",
    "pointwise",
    "sn_conv2d",
    "sn_embedding",
    "sn_linear",
]
