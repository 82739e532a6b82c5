"""Data-parallel training across processes: torchrun environment, DDP wrapping, sharded resumable data order.

Launch with ``torchrun`` (one process per GPU, any number of nodes); without it the trainer runs as a single
process. ``torchrun`` sets RANK, LOCAL_RANK and WORLD_SIZE; the process group uses NCCL on GPUs and gloo on CPUs.

Batch size: ``train.batch_size`` is the GLOBAL batch of one optimiser update, summed over all ranks and
gradient-accumulation micro-batches. Each rank's forward pass sees ``batch_size / (world_size * accumulate)``
images (an error unless divisible). DDP averages gradients over ranks and the losses are means, so an update is the
same as with one process holding the whole batch (up to batch-norm statistics, which are per rank unless
``train.sync_bn``).

Buffers: the networks' buffers are the spectral-norm power-iteration vectors (u, v) and the generator's batch-norm
running statistics. DDP is used with buffer syncing on (``forward_sync_buffers=True``, ``broadcast_buffers`` before
torch 2.14): at every forward of a wrapped network, rank 0's buffers are copied to all ranks, so the batch-norm
running statistics follow rank 0 (which writes the checkpoints). The power iteration is deterministic given identical
weights, so u, v stay identical on all ranks anyway; the sync costs one small broadcast per forward.

Which modules are wrapped: the D update calls the DDP discriminator (its gradients are all-reduced) and the raw G
under no_grad (to make the fakes); the G update calls the DDP generator and the raw D with ``requires_grad`` off, so
no discriminator gradients are computed or all-reduced there.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler


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


def setup(device_pref: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


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


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when there are several ranks (see module doc on buffers)."""
    if not info.distributed:
        return module
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # sync buffers from rank 0 at every forward (the keyword was renamed in newer torch releases)
    params = inspect.signature(ddp).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return ddp(module, device_ids=device_ids, **{sync: True})


def unwrap(module: nn.Module) -> nn.Module:
    """The raw network inside DDP / torch.compile wrappers (whose state dict has the plain keys)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def all_finite(*values: torch.Tensor) -> bool:
    """True when every tensor is finite on EVERY rank (so that all ranks stop together on a NaN)."""
    ok = torch.stack([torch.isfinite(v.detach()).all() for v in values]).all().float()
    if dist.is_initialized():
        ok = ok.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one rank (e.g. a stop signal that reached one rank)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


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
