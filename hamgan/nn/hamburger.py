"""The Hamburger context block and its matrix decompositions (Geng et al., ICLR 2021, reference §1).

A Hamburger models global context by a low-rank matrix decomposition instead of attention:

    lower bread   1x1 conv C -> S*D, reshape to X of shape (B*S, D, N), N = H*W
    ham           X ~ D_b C_b^T with bases D_b (D x R) and coefficients C_b (N x R) found by K iterations,
                  then the reconstruction X_bar = D_b C_b^T (D x N)
    upper bread   1x1 conv S*D -> C (then class-conditional BN in the generator)
    output        x + sigma * upper(ham(lower(x))), sigma a scalar initialised to 0 ("v1", the GAN version)

The breads of the official code are bias-free 1x1 convs with the exact spectral norm W / sigma (``sn_conv1x1``).

Three hams: NMF (multiplicative updates), VQ (soft k-means) and CD (concept decomposition). The decompositions
below work on batched matrices ``x`` (B, D, N) with ``bases`` (B, D, R) and ``coef`` (B, N, R) and are usable on
their own. All of them run in float32.

Gradient: with the default one-step gradient the K iterations build no autograd graph; the bases and coefficients
are then detached and a single final coefficient step is taken with gradient, so the autograd memory does not grow
with K. ``grad="bptt"`` back-propagates through all K iterations instead.

Speed: the 1x1 breads run as batched matrix products on (B, C, N) pixel columns, the no-grad iterations update in
place and reuse X^T D, and in v1 the upper bread is applied to the factors, (W D) C^T, instead of to the D x N
reconstruction D C^T (the same function by associativity, and C*R*N instead of C*D*N multiply-adds). Without a
class-conditional BN (the discriminator) the output x + sigma * upper(.) is accumulated by one product onto
x + sigma * b, so the block allocates only two (B, C, N) tensors: large fresh allocations cost page faults.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan import tf32
from hamgan.nn.layers import BNOptions, ConditionalBatchNorm2d, batch_norm, make_bn, pointwise, sn_conv2d
from hamgan.nn.spectral_norm import SNOptions
from hamgan.seeds import counter_normal, counter_uniform, derive_seed

NMF_EPS = 1e-6  # added to the denominators of the multiplicative updates
NORM_EPS = 1e-6  # used when L2-normalising / normalising over N (VQ, CD)

HAMS: tuple[str, ...] = ("nmf", "vq", "cd")
GRADS: tuple[str, ...] = ("one_step", "bptt")
VERSIONS: tuple[str, ...] = ("v1", "v2")
CHEESES: tuple[str, ...] = ("official", "legacy")
DEFAULT_INV_TEMPERATURE = {"nmf": 1.0, "vq": 100.0, "cd": 100.0}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive(name: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# --------------------------------------------------------------------------------------------------------------------
# Non-negative matrix factorisation: X ~ D C^T with X, D, C >= 0 (Lee & Seung multiplicative updates)
# --------------------------------------------------------------------------------------------------------------------


def nmf_bases(
    batch: int, dim: int, rank: int, device: torch.device | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fresh NMF bases, uniform in [0, 1): (batch, dim, rank) float32 (from ``generator``, else the global one)."""
    return torch.rand(batch, dim, rank, device=device, generator=generator)


def nmf_coef_step(
    x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor, xtd: torch.Tensor | None = None
) -> torch.Tensor:
    """One multiplicative coefficient update ``C <- C * (X^T D) / (C D^T D + eps)``.

    Shapes: ``x`` (B, D, N), ``bases`` (B, D, R), ``coef`` (B, N, R) -> (B, N, R). ``xtd``: X^T D (B, N, R) if
    already computed for these bases. When autograd is off (the no-grad iterations) ``coef`` and ``xtd`` are
    overwritten in place; otherwise the update is out of place.
    """
    if xtd is None:
        xtd = torch.bmm(x.transpose(1, 2), bases)  # X^T D: (B, N, R)
    gram = torch.bmm(bases.transpose(1, 2), bases)  # D^T D: (B, R, R)
    if torch.is_grad_enabled():
        return coef * xtd / (torch.bmm(coef, gram) + NMF_EPS)
    return coef.mul_(xtd.div_(torch.bmm(coef, gram).add_(NMF_EPS)))


def nmf_bases_step(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """One multiplicative bases update ``D <- D * (X C) / (D C^T C + eps)``.

    Shapes: ``x`` (B, D, N), ``bases`` (B, D, R), ``coef`` (B, N, R) -> (B, D, R). In place when autograd is off.
    """
    xc = torch.bmm(x, coef)  # X C: (B, D, R)
    gram = torch.bmm(coef.transpose(1, 2), coef)  # C^T C: (B, R, R)
    if torch.is_grad_enabled():
        return bases * xc / (torch.bmm(bases, gram) + NMF_EPS)
    return bases.mul_(xc.div_(torch.bmm(bases, gram).add_(NMF_EPS)))


def nmf(
    x: torch.Tensor, bases: torch.Tensor, steps: int, inv_temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` rounds of NMF multiplicative updates (C then D) of a non-negative ``x`` from initial ``bases``.

    The coefficients start as ``softmax_R(inv_temperature * X^T D)``.
    Shapes: ``x`` (B, D, N) >= 0, ``bases`` (B, D, R) >= 0 -> (bases (B, D, R), coef (B, N, R)), both >= 0.
    Under ``torch.no_grad`` the given ``bases`` tensor is updated in place.
    """
    xtd = torch.bmm(x.transpose(1, 2), bases)  # X^T D, reused by the first coefficient update
    coef = F.softmax(xtd if inv_temperature == 1 else inv_temperature * xtd, dim=-1)
    for step in range(steps):
        coef = nmf_coef_step(x, bases, coef, xtd if step == 0 else None)
        bases = nmf_bases_step(x, bases, coef)
    return bases, coef


# --------------------------------------------------------------------------------------------------------------------
# VQ (soft k-means with cosine similarity) and CD (concept decomposition)
# --------------------------------------------------------------------------------------------------------------------


def unit_bases(
    batch: int, dim: int, rank: int, device: torch.device | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fresh VQ / CD bases: Gaussian, L2-normalised along D: (batch, dim, rank) float32 (from ``generator``, else
    the global one)."""
    return F.normalize(torch.randn(batch, dim, rank, device=device, generator=generator), dim=1, eps=NORM_EPS)


def cosine_assignments(
    x: torch.Tensor, bases: torch.Tensor, inv_temperature: float, x_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft assignment of every column of ``x`` to the bases: ``softmax_R(inv_t * cos(X, D))``.

    Shapes: ``x`` (B, D, N), ``bases`` (B, D, R) -> (B, N, R), rows summing to 1. ``x_norm``: the column norms
    ``x.norm(dim=1)`` (B, N) if already computed.
    """
    if x_norm is None:
        x_norm = torch.linalg.vector_norm(x, dim=1)
    cos = torch.bmm(x.transpose(1, 2), F.normalize(bases, dim=1, eps=NORM_EPS))  # X^T D_hat: (B, N, R)
    cos = cos / (x_norm.unsqueeze(-1) + NORM_EPS)
    return F.softmax(inv_temperature * cos, dim=-1)


def vq_step(
    x: torch.Tensor, bases: torch.Tensor, inv_temperature: float, x_norm: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One soft k-means step: C = softmax_R(inv_t cos(X, D)), C normalised over N, D = X C (weighted means)."""
    coef = cosine_assignments(x, bases, inv_temperature, x_norm)
    coef = coef / (coef.sum(dim=1, keepdim=True) + NORM_EPS)
    return torch.bmm(x, coef), coef


def vq(
    x: torch.Tensor, bases: torch.Tensor, steps: int, inv_temperature: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` (>= 1) soft k-means steps from initial ``bases``.

    Shapes: ``x`` (B, D, N), ``bases`` (B, D, R) -> (bases (B, D, R), coef (B, N, R)), ``coef`` of the last step
    (columns summing to 1).
    """
    _check_positive("steps", steps)
    x_norm = torch.linalg.vector_norm(x, dim=1)
    for _ in range(steps):
        bases, coef = vq_step(x, bases, inv_temperature, x_norm)
    return bases, coef


def cd(
    x: torch.Tensor, bases: torch.Tensor, steps: int, inv_temperature: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` (>= 1) concept-decomposition steps: a VQ step, then the bases are L2-normalised along D.

    Shapes as :func:`vq`; the returned bases have unit norm.
    """
    _check_positive("steps", steps)
    x_norm = torch.linalg.vector_norm(x, dim=1)
    for _ in range(steps):
        bases, coef = vq_step(x, bases, inv_temperature, x_norm)
        bases = F.normalize(bases, dim=1, eps=NORM_EPS)
    return bases, coef


def cd_coef(x: torch.Tensor, bases: torch.Tensor, beta: float) -> torch.Tensor:
    """CD's coefficients by ridge least squares: ``C = X^T D (D^T D + beta I)^-1``.

    Shapes: ``x`` (B, D, N), ``bases`` (B, D, R) -> (B, N, R) (the transpose of a contiguous (B, R, N) solution).
    """
    rank = bases.shape[-1]
    gram = torch.bmm(bases.transpose(1, 2), bases)  # (B, R, R)
    gram = gram + beta * torch.eye(rank, device=bases.device, dtype=bases.dtype)
    coef_t = torch.linalg.solve(gram, torch.bmm(bases.transpose(1, 2), x))  # (D^T D + beta I)^-1 D^T X: (B, R, N)
    return coef_t.transpose(1, 2)


# --------------------------------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------------------------------


class Hamburger(nn.Module):
    """Hamburger global-context block: ``x + sigma * upper(ham(lower(x)))`` (reference §1, "v1").

    Args:
        channels: C, channels of the input.
        ham: matrix decomposition, ``"nmf"`` (HamGAN), ``"vq"`` or ``"cd"``.
        dim: D, the dimension of each group's matrix; ``None`` -> ``channels // groups``. The lower bread maps
            C -> groups * dim.
        rank: R, the number of bases; must not exceed N = H * W of the input.
        groups: S, number of independent decompositions per sample.
        steps: K, iterations of the decomposition in training.
        eval_steps: K in eval mode (``None``: same as ``steps``).
        grad: ``"one_step"`` (K iterations without autograd, gradient through one final coefficient step) or
            ``"bptt"`` (gradient through all K iterations).
        version: ``"v1"`` (GAN) or ``"v2"`` (adds the "cheese" between ham and upper bread, see ``cheese``).
        num_classes: when given (generator), class-conditional BN is used: after the upper bread in v1, inside the
            cheese in the official v2; ``y`` is then required. ``None`` (discriminator): no BN.
        spectral_norm: spectrally normalise the breads and cheese (``True``: torch's spectral norm, or
            :class:`~hamgan.nn.spectral_norm.SNOptions`; the official code uses the exact bound W / sigma here).
        inv_temperature: T^-1 of the softmax assignments (``None``: 1 for NMF, 100 for VQ and CD).
        beta: ridge term of CD's final coefficient step.
        bread_bias: biases on the breads: the lower bread, and the upper bread when no BN follows it. The official
            code (``sn_conv1x1``) has none (``False``); ``True`` is hamgan's earlier layout.
        cheese: the v2 cheese. ``"official"`` (``sn_hamburger_v2``): 1x1 conv S*D -> C, class-conditional BN (G) or
            none (D), ReLU, then the upper bread C -> C with no BN after it. ``"legacy"`` (hamgan's earlier v2):
            1x1 conv S*D -> S*D (no bias), plain BN, ReLU, upper bread S*D -> C, then the class-conditional BN (G).
        bn: batch-norm settings of the block's BNs.

    Shapes: ``x`` (B, C, H, W), ``y`` (B,) long or ``None`` -> (B, C, H, W).
    The decomposition runs in float32 even under autocast (the breads run in the autocast dtype), without TF32 on
    CUDA unless ``train.tf32=all`` (:mod:`hamgan.tf32`), and maps zeros to zeros without NaN or inf. The output has
    the dtype of ``x``.

    Random bases: fresh on every forward, from torch's global generator unless :meth:`seed_bases` gave the block a
    stream of its own (paired training, :func:`seed_bases_streams`). A seeded block draws the bases of its k-th
    forward since seeding as a counter-based hash of (seed, k, element index) (:func:`counter_uniform`,
    :func:`counter_normal`), computed on the input's device from the ``bases_key`` buffer, so its draws shift no
    other random numbers of the run, and ``torch.compile`` traces the draw into its graph (no graph break).
    """

    PER_RANK_BUFFERS = ("bases_key",)  # set per rank by the trainer: DDP must not broadcast it

    def __init__(
        self,
        channels: int,
        ham: Literal["nmf", "vq", "cd"] = "nmf",
        dim: int | None = None,
        rank: int = 64,
        groups: int = 1,
        steps: int = 6,
        eval_steps: int | None = None,
        grad: Literal["one_step", "bptt"] = "one_step",
        version: Literal["v1", "v2"] = "v1",
        num_classes: int | None = None,
        spectral_norm: bool | SNOptions = True,
        inv_temperature: float | None = None,
        beta: float = 0.01,
        bread_bias: bool = False,
        cheese: Literal["official", "legacy"] = "official",
        bn: BNOptions = BNOptions(),
    ) -> None:
        super().__init__()
        _check_positive("channels", channels)
        _check_choice("ham", ham, HAMS)
        _check_choice("grad", grad, GRADS)
        _check_choice("version", version, VERSIONS)
        _check_choice("cheese", cheese, CHEESES)
        _check_positive("groups", groups)
        _check_positive("rank", rank)
        _check_positive("steps", steps)
        _check_positive("eval_steps", eval_steps, allow_none=True)
        _check_positive("num_classes", num_classes, allow_none=True)
        if dim is None:
            if channels % groups != 0:
                raise ValueError(
                    f"channels ({channels}) must be divisible by groups ({groups}) when dim is None; "
                    f"pass dim explicitly or change groups"
                )
            dim = channels // groups
        _check_positive("dim", dim)
        if inv_temperature is None:
            inv_temperature = DEFAULT_INV_TEMPERATURE[ham]
        if not inv_temperature > 0:
            raise ValueError(f"inv_temperature must be > 0, got {inv_temperature}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")

        self.channels, self.ham, self.dim, self.rank, self.groups = channels, ham, dim, rank, groups
        self.steps, self.eval_steps, self.grad, self.version = steps, eval_steps, grad, version
        self.inv_temperature, self.beta = float(inv_temperature), float(beta)
        self.cheese_kind = cheese if version == "v2" else None
        self.biased_running_var = bn.biased_running_var

        inner = groups * dim
        conditional = num_classes is not None
        sn = spectral_norm
        self.lower = sn_conv2d(channels, inner, 1, bias=bread_bias, spectral_norm=sn)
        self.cheese: nn.Module | None = None
        self.cheese_norm: ConditionalBatchNorm2d | None = None
        self.norm: ConditionalBatchNorm2d | None = None
        if self.cheese_kind == "official":
            self.cheese = sn_conv2d(inner, channels, 1, bias=False, spectral_norm=sn)
            self.cheese_norm = ConditionalBatchNorm2d(channels, num_classes, bn) if conditional else None
            self.upper = sn_conv2d(channels, channels, 1, bias=bread_bias, spectral_norm=sn)
        else:
            if self.cheese_kind == "legacy":
                self.cheese = nn.Sequential(
                    sn_conv2d(inner, inner, 1, bias=False, spectral_norm=sn), make_bn(inner, bn), nn.ReLU()
                )
            self.upper = sn_conv2d(inner, channels, 1, bias=bread_bias and not conditional, spectral_norm=sn)
            self.norm = ConditionalBatchNorm2d(channels, num_classes, bn) if conditional else None
        self.sigma = nn.Parameter(torch.zeros(()))
        self.seeded = False  # True: the bases come from the stream of bases_key, else from the global generator
        # [seed low 32 bits, seed high 32 bits, forwards drawn since seeding]: set by seed_bases, counted on the
        # device by the forward (no host state, so torch.compile keeps the draw in its graph). Per rank by design:
        # never saved, never broadcast (PER_RANK_BUFFERS).
        self.register_buffer("bases_key", torch.zeros(3, dtype=torch.int64), persistent=False)

    def seed_bases(self, seed: int | None) -> None:
        """Draw the random bases from a stream of their own seeded with ``seed``, from its start (None: torch's
        global generator). The key is written in place, so compiled code keeps one graph for every seed."""
        if seed is not None and not 0 <= seed < 2**63:
            raise ValueError(f"a Hamburger's bases seed must lie in [0, 2^63), got {seed}")
        self.seeded = seed is not None
        seed = seed or 0
        with torch.no_grad():
            self.bases_key.copy_(torch.tensor([seed & 0xFFFFFFFF, seed >> 32, 0], dtype=torch.int64))

    def _seeded_bases(self, batch: int, dim: int) -> torch.Tensor:
        """The next fresh bases of the seeded stream (see the class doc): (batch, dim, R) float32."""
        shape = (batch, dim, self.rank)
        key = self.bases_key
        if self.ham == "nmf":
            bases = counter_uniform(shape, key)
        else:
            bases = F.normalize(counter_normal(shape, key), dim=1, eps=NORM_EPS)
        with torch.no_grad():
            key[2:].add_(1)
        return bases

    @property
    def num_steps(self) -> int:
        """K used by the next forward: ``eval_steps`` in eval mode when set, else ``steps``."""
        if not self.training and self.eval_steps is not None:
            return self.eval_steps
        return self.steps

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ham: X ~ D C^T for ``x`` (B*S, D, N) float32 -> (bases D (B*S, D, R), coef C (B*S, N, R)).

        For NMF, ``x`` is made non-negative by a ReLU, applied in place when ``x`` does not require grad (inference:
        it is the lower bread's fresh output), which saves a (B*S, D, N) allocation.

        K iterations from fresh bases (without autograd for the one-step gradient), then the final coefficient step
        with gradient: one more NMF update, VQ's soft assignments, or CD's ridge least squares.
        """
        batch, dim, _ = x.shape
        if self.ham == "nmf":
            x = F.relu(x) if x.requires_grad else F.relu_(x)  # in place only outside autograd (no view replay)
        if self.seeded:
            bases = self._seeded_bases(batch, dim)
        elif self.ham == "nmf":
            bases = nmf_bases(batch, dim, self.rank, x.device)
        else:
            bases = unit_bases(batch, dim, self.rank, x.device)

        one_step = self.grad == "one_step"
        with torch.no_grad() if one_step else contextlib.nullcontext():
            if self.ham == "nmf":
                bases, coef = nmf(x, bases, self.num_steps, self.inv_temperature)
            elif self.ham == "vq":
                bases, coef = vq(x, bases, self.num_steps, self.inv_temperature)
            else:
                bases, coef = cd(x, bases, self.num_steps, self.inv_temperature)
        if one_step:
            bases, coef = bases.detach(), coef.detach()

        if self.ham == "nmf":
            coef = nmf_coef_step(x, bases, coef)
        elif self.ham == "vq":
            coef = cosine_assignments(x, bases, self.inv_temperature)  # rows sum to 1: X_bar mixes the centroids
        else:
            coef = cd_coef(x, bases, self.beta)
        return bases, coef

    def _upper_factors(self, bases: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The upper bread's product with the reconstruction D C^T as two factors: W (D C^T) = (W D) C^T.

        Per group s, W_s D_s is (C, R); the S groups stack into one (C, S*R) @ (S*R, N) product, C*S*R*N instead of
        C*S*D*N multiply-adds and no D x N tensor.
        Shapes: ``bases`` (B*S, D, R), ``coef`` (B*S, N, R) -> (W D (B, C, S*R), C^T (B, S*R, N)).
        """
        S, D, R = self.groups, self.dim, self.rank
        B, N = bases.shape[0] // S, coef.shape[1]
        weight = self.upper.weight.flatten(1).view(self.channels, S, D).transpose(0, 1)  # (S, C, D)
        weight = weight.to(bases.dtype)
        wd = torch.matmul(weight, bases.view(B, S, D, R))  # W_s D_s: (B, S, C, R)
        wd = wd.transpose(1, 2).reshape(B, self.channels, S * R)
        coef_t = coef.view(B, S, N, R).transpose(2, 3).reshape(B, S * R, N)  # C_s^T stacked (a view when S = 1)
        return wd, coef_t

    def _upper_of_low_rank(self, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """Upper bread applied to the reconstruction without forming it: W (D C^T) + b = (W D) C^T + b.

        The same function as ``pointwise(upper, D C^T)``. Shapes: ``bases`` (B*S, D, R), ``coef`` (B*S, N, R)
        -> (B, C, N).
        """
        wd, coef_t = self._upper_factors(bases, coef)
        if self.upper.bias is None:
            return torch.bmm(wd, coef_t)
        B, N = wd.shape[0], coef_t.shape[-1]
        return torch.baddbmm(self.upper.bias.to(wd.dtype).view(1, -1, 1).expand(B, -1, N), wd, coef_t)

    def _cheese(self, low_rank: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The v2 cheese and upper bread on the reconstruction ``low_rank`` (B, S*D, H, W) -> (B, C, N)."""
        if self.cheese_kind == "official":
            h = pointwise(self.cheese, low_rank.flatten(2)).view(low_rank.shape[0], self.channels, *low_rank.shape[2:])
            if self.cheese_norm is not None:
                h = self.cheese_norm(h, y)
            return pointwise(self.upper, F.relu(h).flatten(2))
        conv, bn, _ = self.cheese
        h = F.relu(batch_norm(bn, conv(low_rank), self.biased_running_var))
        return pointwise(self.upper, h.flatten(2))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"Hamburger expects x of shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        if self.rank > H * W:
            raise ValueError(
                f"rank ({self.rank}) must not exceed the number of pixels H*W ({H}*{W} = {H * W}); "
                f"lower rank or place the block at a higher resolution"
            )
        if (self.norm is not None or self.cheese_norm is not None) and y is None:
            raise ValueError("this Hamburger has num_classes set (class-conditional BN): pass class labels y")

        h = pointwise(self.lower, x.flatten(2))  # lower bread: (B, S*D, N)
        with torch.autocast(device_type=x.device.type, enabled=False):  # float32, without TF32 (hamgan.tf32)
            bases, coef = tf32.exact(self.decompose, x.device, h.float().view(B * self.groups, self.dim, H * W))
        if self.cheese is None and self.norm is None:
            # x + sigma * ((W D) C^T + b), accumulated in one product onto x (+ sigma * b): no other (B, C, N) tensor
            wd, coef_t = self._upper_factors(bases, coef)
            if self.upper.bias is None:
                out = x.flatten(2).clone()
            else:
                out = torch.addcmul(x.flatten(2), self.sigma, self.upper.bias.view(1, -1, 1))
            out = out.baddbmm_((self.sigma * wd).to(out.dtype), coef_t.to(out.dtype))
            return out.view(B, C, H, W).to(x.dtype)  # a float32 bias widened it
        if self.cheese is None:
            h = self._upper_of_low_rank(bases, coef)  # (B, C, N)
        else:
            low_rank = torch.bmm(bases, coef.transpose(1, 2)).to(h.dtype)  # X_bar = D C^T: (B*S, D, N)
            h = self._cheese(low_rank.view(B, self.groups * self.dim, H, W), y)
        h = h.view(B, C, H, W)
        if self.norm is not None:
            h = self.norm(h, y)
        # x + sigma * h in x's dtype: CUDA autocast runs addcmul in the widest input type (sigma's float32)
        return torch.addcmul(x, self.sigma, h).to(x.dtype)

    def extra_repr(self) -> str:
        cheese = f", cheese={self.cheese_kind!r}" if self.cheese_kind else ""
        return (
            f"{self.channels}, ham={self.ham!r}, dim={self.dim}, rank={self.rank}, groups={self.groups}, "
            f"steps={self.steps}, eval_steps={self.eval_steps}, grad={self.grad!r}, version={self.version!r}{cheese}"
        )


def seed_bases_streams(networks: dict[str, nn.Module], seed: int, *key: object) -> None:
    """Give every Hamburger inside ``networks`` (``{"G": G, "D": D}``) its own bases stream, seeded with
    ``derive_seed(seed, "<network>.<module name>.bases", *key)``; the trainer calls it at the start of each step
    with key (rank, step), so the bases of a step depend on nothing but the run seed, the rank and the step (a
    resumed run redraws them exactly, and sample grids or FID between steps cannot shift them)."""
    for prefix, network in networks.items():
        for name, module in network.named_modules():
            if isinstance(module, Hamburger):
                module.seed_bases(derive_seed(seed, f"{prefix}.{name}.bases", *key))


__all__ = [
    "Hamburger",
    "cd",
    "cd_coef",
    "cosine_assignments",
    "nmf",
    "nmf_bases",
    "nmf_bases_step",
    "nmf_coef_step",
    "seed_bases_streams",
    "unit_bases",
    "vq",
    "vq_step",
]
