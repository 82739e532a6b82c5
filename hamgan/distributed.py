"""Data-parallel training across processes: process group, collectives, DDP wrapping, sharded data order,
cross-replica batch norm.

Launch with ``torchrun`` (one process per GPU, any number of nodes); without it the trainer runs as a single
process. ``torchrun`` sets RANK, LOCAL_RANK and WORLD_SIZE; the process group uses NCCL on GPUs and gloo on CPUs
(``train.dist_backend``), with the timeout ``train.dist_timeout_min`` for every collective. Small control messages
(the resume decision, status of rank 0's work, FID values) go through a gloo group on the CPU, so they never need a
GPU stream; on CPU runs that is the default group itself.

Batch size: ``train.batch_size`` is the GLOBAL batch of one optimiser update, summed over all ranks and
gradient-accumulation micro-batches. Each rank's forward pass sees ``batch_size / (world_size * accumulate)``
images (an error unless divisible). DDP averages gradients over ranks and the losses are means, so an update is the
same as with one process holding the whole batch, up to batch-norm statistics: each BN layer of G normalises over
one micro-batch of its rank, or over the micro-batches of all ranks with ``train.sync_bn``
(:class:`CrossReplicaBatchNorm2d`). Accumulation never widens a BN batch: BN sees micro-batches.

Buffers: the networks' buffers are the spectral-norm power-iteration vectors (u, v) and the generator's batch-norm
running statistics. The power iteration is deterministic given identical weights, so u, v stay identical on all
ranks; the running statistics of cross-replica BN are computed from the same all-reduced sums on every rank, so they
stay identical too. Only buffers that can drift (:func:`buffers_can_drift`: G's local batch norm without
``train.sync_bn`` on several ranks, any unknown buffer) are broadcast from rank 0 at every forward of the wrapped
network (``forward_sync_buffers``, ``broadcast_buffers`` before torch 2.14), so they follow rank 0, which writes the
checkpoints. With ``train.sync_bn`` neither network broadcasts its buffers.

Which modules are wrapped: the D update calls the DDP discriminator (its gradients are all-reduced) and the raw G
under no_grad (to make the fakes); the G update calls the DDP generator and the raw D with ``requires_grad`` off, so
no discriminator gradients are computed or all-reduced there. With ``train.compile`` all four are compiled.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.utils.data import Dataset, DistributedSampler

from hamgan.nn.spectral_norm import SpectralNorm

_CONTROL: Any = None  # the gloo group of control messages (the default group on CPU runs)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """The device of this process: ``'auto'`` picks its GPU when CUDA is available, else the CPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA GPU is available; use train.device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device_pref: str = "auto", timeout_min: float = 30.0, backend: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else describe a single process.

    ``backend`` "auto" is NCCL on GPUs and gloo on CPUs; "gloo" on GPUs serves e.g. two ranks sharing one GPU
    (NCCL refuses that). ``timeout_min`` bounds every collective (torch's NCCL default is 10 minutes).
    """
    global _CONTROL
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=timeout_min)
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        # torch.distributed.nn.functional binds group=group.WORLD as default arguments when first imported (DDP's
        # constructor imports it, through torch._dynamo). Imported after init_process_group, those defaults would
        # hold the default group forever: cleanup() could not free it, and its gloo threads would still run while
        # the interpreter exits (an abort at exit, issue 21 point 11). Imported first, the defaults are None.
        import torch.distributed.nn.functional  # noqa: F401

        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout, **kwargs)
        _CONTROL = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup() -> None:
    global _CONTROL
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTROL = None


def micro_batch_size(global_batch: int, world_size: int, accumulate: int) -> int:
    """Images per rank per forward pass; ``global_batch`` must split evenly over ranks and micro-batches."""
    parts = world_size * accumulate
    if global_batch % parts != 0 or global_batch < parts:
        raise ValueError(
            f"train.batch_size={global_batch} (the global batch) must be a multiple of world_size x "
            f"train.accumulate = {world_size} x {accumulate} = {parts}; choose e.g. train.batch_size="
            f"{max(parts, global_batch // parts * parts)}"
        )
    return global_batch // parts


def buffers_can_drift(module: nn.Module) -> bool:
    """Whether the buffers of ``module`` can differ between ranks after identical updates (see module doc).

    They cannot for the buffers of spectral norms (power iterations of identical weights) and of batch norms that
    normalise over all ranks (:class:`CrossReplicaBatchNorm2d` while ``sync``, ``nn.SyncBatchNorm``); any other
    buffer (a local batch norm's running statistics, a buffer of an unknown module) can.
    """
    for m in module.modules():
        per_rank = getattr(m, "PER_RANK_BUFFERS", ())  # set per rank on purpose (a Hamburger's bases key)
        if not any(name not in per_rank for name, _ in m.named_buffers(recurse=False)):
            continue
        if isinstance(m, (SpectralNorm, _SpectralNorm, nn.SyncBatchNorm)):
            continue
        if isinstance(m, CrossReplicaBatchNorm2d) and m.sync:
            continue
        return True
    return False


def wrap(module: nn.Module, info: DistInfo, sync_buffers: bool | None = None) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when there are several ranks.

    ``sync_buffers`` (default: :func:`buffers_can_drift`) broadcasts rank 0's buffers at every forward; the
    gradients are views into DDP's all-reduce buckets (``gradient_as_bucket_view``: no copy in and out of them).
    """
    if not info.distributed:
        return module
    if sync_buffers is None:
        sync_buffers = buffers_can_drift(module)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # the keyword was renamed in newer torch releases
    params = inspect.signature(ddp).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    per_rank = [f"{prefix}.{name}" if prefix else name for prefix, m in module.named_modules()
                for name in getattr(m, "PER_RANK_BUFFERS", ())]
    if per_rank:  # never broadcast, whatever else is (a Hamburger's bases key is per rank by design)
        ddp._set_params_and_buffers_to_ignore_for_model(module, per_rank)
    return ddp(module, device_ids=device_ids, gradient_as_bucket_view=True, **{sync: sync_buffers})


def unwrap(module: nn.Module) -> nn.Module:
    """The raw network inside DDP / torch.compile wrappers (whose state dict has the plain keys)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


# --------------------------------------------------------------------------------------------------------------------
# Collectives (no-ops in a single process)
# --------------------------------------------------------------------------------------------------------------------


def collective_device(fallback: torch.device | None = None) -> torch.device:
    """Where tensors of the default group's collectives must live: the GPU for NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if fallback is None or fallback.type != "cuda" else fallback


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled, over the CPU control group)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_CONTROL)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_CONTROL)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier(group=_CONTROL)


class MainRankFailed(RuntimeError):
    """Rank 0 failed inside :func:`main_rank_first`; raised on the other ranks."""


@contextlib.contextmanager
def main_rank_first(what: str) -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (e.g. building a data set that rank 0 caches).

    If rank 0's body raises, the other ranks raise :class:`MainRankFailed` naming ``what`` and rank 0's error
    instead of running the body (no rank waits for a collective that never comes).
    """
    if not dist.is_initialized():
        yield
        return
    if dist.get_rank() == 0:
        try:
            yield
        except BaseException as e:
            broadcast_object(f"{type(e).__name__}: {e}")
            raise
        broadcast_object(None)
    else:
        error = broadcast_object(None)
        if error is not None:
            raise MainRankFailed(f"rank 0 failed while {what}: {error}")
        yield


def all_reduce_feature_stats(stats: Any) -> Any:
    """Sum ``stats.n``, ``stats.sum`` and ``stats.sum_outer`` (a :class:`hamgan.metrics.FeatureStats`) over ranks, in
    place, so that every rank holds the statistics of all ranks' features (float64 sums: the order of ranks only
    changes the last bits)."""
    if not dist.is_initialized():
        return stats
    home = stats.sum.device
    where = collective_device(home)
    packed = [torch.tensor([float(stats.n)], dtype=torch.float64, device=where), stats.sum.to(where),
              stats.sum_outer.to(where)]
    for t in packed:
        dist.all_reduce(t)
    stats.n = int(packed[0].item())
    stats.sum, stats.sum_outer = packed[1].to(home), packed[2].to(home)
    return stats


def shard_sizes(n: int, world_size: int) -> list[int]:
    """``n`` items split over ranks as evenly as possible (the first ``n % world_size`` ranks get one more)."""
    return [n // world_size + (r < n % world_size) for r in range(world_size)]


# --------------------------------------------------------------------------------------------------------------------
# Cross-replica batch norm
# --------------------------------------------------------------------------------------------------------------------


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks of the default group, as a functional collective (dynamo traces it)."""
    import torch.distributed._functional_collectives as funcol

    return funcol.wait_tensor(funcol.all_reduce(x, "sum", dist.group.WORLD))


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of each rank's input is the sum over ranks of the output
    gradients, so forward and backward are one all-reduce each (also on torch releases whose functional all-reduce
    has no autograd formula)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return _all_reduce_sum(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _all_reduce_sum(grad.contiguous())


class CrossReplicaBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the micro-batches of ALL ranks together.

    The official HamGAN code trains on TPUs with cross-replica batch norm: the statistics of the global batch. Here
    each rank packs its per-channel [sum, sum of squares, count] into one tensor of 3C values, and ONE all-reduce sums
    it over ranks; in backward ONE all-reduce sums the gradients of that packed tensor (:class:`_AllReduceSum`, over
    the functional collective ``torch.distributed._functional_collectives.all_reduce``, which dynamo traces: G
    compiles into whole graphs with ``train.compile``). Outputs, gradients and running statistics equal those of one
    BatchNorm2d over the concatenated micro-batches; the micro-batches may differ in size. Works on any backend
    (gloo on CPU, NCCL), unlike ``torch.nn.SyncBatchNorm`` (GPU only).

    Precision: each rank's mean and biased variance come from ``torch.var_mean`` in float32 (centred, so accurate
    whatever the mean); the packed sums ``n * mean`` and ``n * (var + mean^2)`` are formed, all-reduced and combined
    in float64 (3C values, negligible cost), so the sum-of-squares form ``S2 / N - mean^2`` of the global variance
    cancels in float64, not float32: its relative error stays at float32's ~1e-7 even where mean^2 / var is large.
    Normalisation runs in float32, also under autocast; the output has the input's dtype. In eval mode, in a single
    process, or while :func:`local_batch_norm` is active, it is a plain BatchNorm2d; state-dict keys are
    BatchNorm2d's.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    sync: bool = True

    def _syncing(self) -> bool:
        return (self.training and self.sync and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._syncing():
            return super().forward(x)
        self._check_input_dim(x)
        xf = x.float()
        var, mean = (s.double() for s in torch.var_mean(xf, dim=(0, 2, 3), unbiased=False))  # this rank's, (C,)
        n = torch.full_like(mean, xf.numel() // xf.shape[1])
        packed = torch.cat([mean * n, (var + mean.square()) * n, n])  # (3C,) float64
        total, total_sq, count = _AllReduceSum.apply(packed).view(3, -1)
        mean = total / count
        var = (total_sq / count - mean.square()).clamp(min=0)  # biased, as batch norm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        scale = torch.rsqrt(var + self.eps).float()
        if self.affine:
            scale = scale * self.weight
        y = (xf - mean.float().view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)
        if self.affine:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def convert_cross_replica_bn(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`CrossReplicaBatchNorm2d` with the same
    settings, parameters (the same Parameter objects) and buffers; returns ``module`` (or the new layer)."""
    if type(module) is nn.BatchNorm2d:
        new = CrossReplicaBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        for name, buffer in module.named_buffers(recurse=False):
            setattr(new, name, buffer)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_cross_replica_bn(child))
    return module


@contextlib.contextmanager
def local_batch_norm(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, the cross-replica BN layers of ``module`` use this rank's batch only (for sampling on one
    rank in training mode, which must not wait for the other ranks)."""
    layers = [m for m in module.modules() if isinstance(m, CrossReplicaBatchNorm2d)]
    saved = [m.sync for m in layers]
    for m in layers:
        m.sync = False
    try:
        yield module
    finally:
        for m, s in zip(layers, saved):
            m.sync = s


# --------------------------------------------------------------------------------------------------------------------
# Sharded, resumable data order
# --------------------------------------------------------------------------------------------------------------------


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch.

    The order of epoch ``e`` is a permutation seeded by ``(seed, e)`` and sharded over ranks (as DistributedSampler
    with ``set_epoch``); :meth:`set_position` skips the first ``start`` indices of this rank's shard, so a resumed
    run sees exactly the batches the interrupted run would have seen.

    Shapes: yields ``len(self)`` dataset indices per epoch (``drop_last``: every rank gets the same count).
    """

    def __init__(self, dataset: Dataset, info: DistInfo, seed: int, shuffle: bool = True) -> None:
        super().__init__(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Serve epoch ``epoch`` from index ``start`` of this rank's shard."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start
