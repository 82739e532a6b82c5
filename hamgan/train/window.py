"""The logging window: what the loop sums between two log lines, and how fast and how large the steps were.

    window = LogWindow(device)
    window.add(trainer.train_step())        # device scalars, no host sync
    with window.paused():                   # samples, FID, checkpoints: not training time
        ...
    means, seconds, steps = window.close(world_size)   # host sync; mean over ranks; a new window starts

``peak_mem_mb``: on CUDA the peak of allocated tensor memory of the training steps since the window opened (the
work between steps resets it); on the CPU the process's peak resident set size (a lifetime peak).
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator

import torch
import torch.distributed as dist


class LogWindow:
    """Sums of a step's device scalars, the number of steps and their wall-clock since the last :meth:`close`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._open()

    def _open(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.tick = time.perf_counter()
        self.reset_peak_memory()

    def add(self, out: dict[str, torch.Tensor]) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Work between steps: its time is not training time, and its memory does not count towards the peak."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.tick += time.perf_counter() - start
            self.reset_peak_memory()

    def close(self, world_size: int = 1) -> tuple[dict[str, float], float, int]:
        """``(mean of each scalar over the window's steps and all ranks, seconds, steps)``; collective with several
        ranks. A new window starts."""
        values = torch.stack([self.sums[k] / self.steps for k in sorted(self.sums)])
        if world_size > 1:
            dist.all_reduce(values)
            values /= world_size
        means = dict(zip(sorted(self.sums), values.tolist()))
        seconds, steps = time.perf_counter() - self.tick, self.steps
        self._open()
        return means, seconds, steps

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
