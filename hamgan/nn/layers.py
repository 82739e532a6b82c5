"""Building-block layers shared by the context blocks and the networks: spectrally normalised conv / linear /
embedding, batch norm with the TF-GAN or torch conventions, class-conditional batch norm, weight initialisation.

Spectral normalisation (reference §2) is applied to every conv, linear and embedding of HamGAN's G and D by
:mod:`hamgan.nn.spectral_norm`: the learnable weight lives in ``layer.parametrizations.weight.original`` and
``layer.weight`` is that weight divided by its estimated top singular value (or by max(1, that value)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from hamgan.nn.spectral_norm import SNOptions, refresh, spectral_norm, spectral_norms
from hamgan.seeds import named_generator

InitScheme = Literal["orthogonal", "xavier", "normal"]
INIT_SCHEMES: tuple[str, ...] = ("orthogonal", "xavier", "normal")


def _maybe_sn(module: nn.Module, sn: bool | SNOptions) -> nn.Module:
    """``module`` spectrally normalised with ``sn`` (``True``: torch's defaults, ``False``: not normalised)."""
    if sn is False:
        return module
    return spectral_norm(module, SNOptions() if sn is True else sn)


def sn_conv2d(
    in_ch: int,
    out_ch: int,
    kernel_size: int,
    padding: int = 0,
    bias: bool = True,
    spectral_norm: bool | SNOptions = True,
) -> nn.Conv2d:
    """A ``kernel_size`` x ``kernel_size`` conv (stride 1), spectrally normalised unless ``spectral_norm=False``."""
    return _maybe_sn(nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, bias=bias), spectral_norm)


def sn_linear(in_f: int, out_f: int, bias: bool = True, spectral_norm: bool | SNOptions = True) -> nn.Linear:
    """A linear layer, spectrally normalised unless ``spectral_norm=False``."""
    return _maybe_sn(nn.Linear(in_f, out_f, bias=bias), spectral_norm)


def sn_embedding(num_embeddings: int, dim: int, spectral_norm: bool | SNOptions = True) -> nn.Embedding:
    """An embedding table (e.g. the projection discriminator's class embedding), spectrally normalised.

    The table (num_embeddings, dim) is normalised as a matrix with num_embeddings rows, as TF-GAN's
    ``sn_embedding`` (which normalises its transpose with the power-iteration vector on the dim side).
    """
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


# --------------------------------------------------------------------------------------------------------------------
# Batch norm
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BNOptions:
    """Batch-norm settings. The defaults are torch's; TF-GAN's ``tfgan.tpu.batch_norm`` (HamGAN's G) uses
    eps 1e-3, decay 0.999 (momentum 0.001) and the biased batch variance in its moving average.

    ``biased_running_var``: the running variance averages the biased batch variance (as TF) instead of torch's
    unbiased one. Normalisation in training uses the biased variance either way.
    """

    eps: float = 1e-5
    momentum: float = 0.1
    biased_running_var: bool = False

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"batch-norm eps must be > 0, got {self.eps}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"batch-norm momentum must be in (0, 1], got {self.momentum}")


def make_bn(num_features: int, options: BNOptions = BNOptions(), affine: bool = True) -> nn.BatchNorm2d:
    """An ``nn.BatchNorm2d`` with the eps and momentum of ``options`` (use :func:`batch_norm` to apply it)."""
    return nn.BatchNorm2d(num_features, eps=options.eps, momentum=options.momentum, affine=affine)


def _stats_count(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> int:
    """Number of values per channel the batch statistics of ``bn`` are taken over: all ranks for SyncBatchNorm and
    for :class:`hamgan.distributed.CrossReplicaBatchNorm2d` while it synchronises (the trainer's micro-batches are
    equal on every rank)."""
    count = x.numel() // x.shape[1]
    if isinstance(bn, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized():
        count *= dist.get_world_size(bn.process_group)
    elif callable(getattr(bn, "_syncing", None)) and bn._syncing():  # cross-replica BN over the default group
        count *= dist.get_world_size()
    return count


def batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, biased_running_var: bool) -> torch.Tensor:
    """``bn(x)``; with ``biased_running_var`` its running-variance update uses the biased batch variance.

    torch updates ``rv = (1 - m) rv_old + m * var * n / (n - 1)``; the biased update ``(1 - m) rv_old + m * var``
    equals ``((n - 1) rv + (1 - m) rv_old) / n``, applied after the call (C values; works for ``nn.BatchNorm2d``
    and, with n counted over all ranks, ``nn.SyncBatchNorm``). With ``momentum=None`` (a cumulative average, e.g.
    standing statistics, :mod:`hamgan.bn_modes`) m is torch's ``1 / num_batches_tracked``.
    """
    if not (biased_running_var and bn.training and bn.track_running_stats and bn.running_var is not None):
        return bn(x)
    old = bn.running_var.clone()
    out = bn(x)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    n = _stats_count(bn, x)
    if n > 1:  # through .data: the BN backward holds running_var (without reading it) and checks its version
        bn.running_var.data.mul_((n - 1) / n).add_(old, alpha=(1 - momentum) / n)
    return out


class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional batch norm: ``BN(x) * gain[y] + bias[y]``.

    A ``BatchNorm2d(affine=False)`` followed by a per-class gain (initialised to 1) and bias (initialised to 0), the
    CBN of SAGAN / HamGAN's generator (TF-GAN's ``tfgan.tpu.batch_norm`` with one-hot labels).

    Args:
        num_features: channels C.
        num_classes: number of classes; labels are integers in ``[0, num_classes)``.
        options: eps, momentum and running-variance convention of the batch norm.

    Shapes: ``x`` (B, C, H, W), ``y`` (B,) long -> (B, C, H, W).
    """

    def __init__(self, num_features: int, num_classes: int, options: BNOptions = BNOptions()) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.biased_running_var = options.biased_running_var
        self.bn = make_bn(num_features, options, affine=False)
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
        return batch_norm(self.bn, x, self.biased_running_var) * gain + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"


# --------------------------------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------------------------------


def _learnable_weight(module: nn.Module) -> torch.Tensor:
    """The weight an optimiser updates: the original one under a spectral-norm parametrization."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def init_weights(module: nn.Module, scheme: InitScheme, seed: int | None = None, prefix: str = "") -> None:
    """Initialise every conv, linear and embedding weight inside ``module`` in place; biases to 0.

    ``"xavier"``: Glorot uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), the init of the official
    HamGAN / TF-GAN SAGAN code (``VarianceScaling(1.0, "fan_avg", "uniform")``) on every conv, linear and embedding.
    ``"orthogonal"``: BigGAN-PyTorch's and StudioGAN's default. ``"normal"``: N(0, 0.02) (DCGAN; BigGAN-PyTorch's
    and StudioGAN's ``N02``). Spectrally normalised layers get their *original* weight re-initialised and their
    warm-up power iterations re-run. Other parameters (batch-norm gains, the context blocks' output scales) are
    untouched: they start at constants.

    ``seed`` None: the draws come from torch's global generator, one layer after another (a network with one more
    layer shifts every draw after it). ``seed`` given (paired initialisation, ``train.paired``): every layer draws
    from a generator of its own, :func:`hamgan.seeds.derive_seed` of ``(seed, "<prefix>.<module name>.weight")``,
    and so do its spectral-norm vectors u, v (names ``(key, "sn_u")``, ``(key, "sn_v")``). The name is the layer's
    qualified module name inside ``module`` (e.g. ``G.blocks.2.conv1``: the parametrization path is not part of
    it, so a layer draws the same weight with or without spectral norm). Two networks built with one seed thus
    start with equal weights in every layer they both have under the same name and shape, whatever other layers
    they hold; a layer only one of them has (their context blocks, under ``context.``) draws from its own streams
    and shifts nothing. ``prefix`` ("G", "D") keeps the generator's and the discriminator's streams apart.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    for name, m in module.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            continue
        w = _learnable_weight(m)
        key = f"{prefix}.{name}.weight" if prefix else f"{name}.weight"
        gen = None if seed is None else named_generator(seed, key, device=w.device)
        if scheme == "orthogonal":
            nn.init.orthogonal_(w, generator=gen)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(w, generator=gen)
        else:
            nn.init.normal_(w, 0.0, 0.02, generator=gen)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
        if seed is not None:
            _redraw_sn_vectors(m, seed, key)
        refresh(m)


def _redraw_sn_vectors(module: nn.Module, seed: int, key: str) -> None:
    """Fresh random unit vectors u, v of ``module``'s spectral norm from the named streams of ``key`` (the same
    N(0, 1) then normalise draw as at creation)."""
    for p in spectral_norms(module):
        for vector, stream in ((p._u, "sn_u"), (p._v, "sn_v")):
            vector.normal_(0.0, 1.0, generator=named_generator(seed, key, stream, device=vector.device))
            vector.copy_(F.normalize(vector, dim=0, eps=p.eps))


__all__ = [
    "BNOptions",
    "ConditionalBatchNorm2d",
    "INIT_SCHEMES",
    "SNOptions",
    "batch_norm",
    "init_weights",
    "make_bn",
    "pointwise",
    "sn_conv2d",
    "sn_embedding",
    "sn_linear",
]
