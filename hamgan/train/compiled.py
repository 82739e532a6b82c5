"""``torch.compile`` of the training forwards (``train.compile``) and the report of what it made of them.

With ``train.compile`` the loop calls four compiled forwards: G and D as the loss passes see them (DDP-wrapped on
several ranks) and the raw G and D of the other network's update. After the first step rank 0 writes
``RUN/compile.json``: graphs, graph breaks inside the networks and their reasons (a graph break splits a forward:
fewer fused kernels, a host round trip), and apart from them the breaks in DDP's own Python forward.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch._dynamo.utils import counters  # dynamo's process-wide statistics (no public API holds them)

from hamgan.config import ConfigError

# Breaks in DistributedDataParallel's own Python forward (around the network, which dynamo compiles whole, with
# its DDPOptimizer splitting the graph at the gradient buckets): expected with several ranks, not counted as breaks.
DDP_WRAPPER_BREAKS = ("DistributedDataParallel._inside_ddp_forward", "set_runtime_stats_and_log")


def compiler(backend: str) -> Callable[[nn.Module], nn.Module]:
    """``torch.compile`` with ``backend`` (``train.compile_backend``); an unknown backend is a ConfigError."""
    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ConfigError(f"train.compile_backend={backend!r} is not a torch.compile backend; choose one of "
                          f"{', '.join(sorted(known))} (inductor: the fast one)")
    return lambda module: torch.compile(module, backend=backend)


def write_compile_report(path: Path, backend: str) -> str:
    """Write what torch.compile made of the steps so far (graphs, graph breaks and their reasons) to ``path``
    (JSON); returns a log line."""
    breaks = {reason: int(count) for reason, count in counters["graph_break"].items()}
    wrapper = {r: c for r, c in breaks.items() if any(k in r for k in DDP_WRAPPER_BREAKS)}
    inside = {r: c for r, c in breaks.items() if r not in wrapper}
    report = {"backend": backend, "graphs": int(counters["stats"]["unique_graphs"]),
              "graph_breaks": sum(inside.values()), "ddp_wrapper_breaks": sum(wrapper.values()),
              "break_reasons": dict(sorted(inside.items())[:20])}
    path.write_text(json.dumps(report, indent=1) + "\n")
    return (f"torch.compile ({backend}): {report['graphs']} graphs, {report['graph_breaks']} graph breaks in the "
            f"networks in the first step ({path.name})")
