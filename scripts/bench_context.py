"""Cost of the global-context blocks, side by side: Hamburger (NMF, CD, VQ) against self-attention.

Reproduces the shape of the HamGAN paper's Table 3 (input 1 x 512 x 128 x 128, D = 512, R = 64, K = 6) on this
machine. For every block it reports, all measured in one run:

- params: learnable parameters (spectral-norm u/v buffers are not parameters).
- macs: multiply-accumulates of one inference forward, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (MACs = FLOPs / 2). The Hamburger's K no-grad iterations run inside the counter, so they are counted. Matrix
  products and convolutions only: softmax, normalisations and element-wise work are not MACs.
- mem_infer_mb / mem_train_mb: peak memory allocated *during* one call, above what was live before it (the input
  and parameters are excluded; gradients, activations and temporaries are included), in MiB. Inference is
  ``eval()`` under ``torch.inference_mode``; training is ``train()`` forward + backward of ``out.sum()`` with
  ``x.requires_grad``. On CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On CPU:
  ``torch.profiler`` with ``profile_memory=True``; the allocation / free events of its trace are replayed in order
  and the maximum of the running total is the peak.
- time_infer_s / time_train_s: median wall time over ``--repeats`` calls (after one untimed warm-up call, which is
  the memory-profiled one), synchronising CUDA around each. The timed calls are interleaved: every repeat times
  every block once, so the blocks share the machine's slow and fast phases.

Blocks: ``ham-nmf``, ``ham-cd``, ``ham-vq`` (``hamgan.nn.Hamburger``, one-step gradient, v1), ``attention-full``
(``FullSelfAttention``: four C x C projections, paper Table 3) and ``attention-sagan`` (``SelfAttention``: the
pooled SAGAN block). Ratios are printed against ham-nmf.

Usage:
    python scripts/bench_context.py                 # table + ratios, default 1 x 512 x 128 x 128
    python scripts/bench_context.py --json          # JSON list of {block, params, macs, mem_infer_mb, ...}
    python scripts/bench_context.py --sweep         # ham-nmf vs attention as the spatial size grows 16 .. 128
    python scripts/bench_context.py --configs configs/fmnist32_hamgan.yaml configs/imagenet128_hamgan_baby.yaml
        # the context blocks of G and D exactly as those configs build them (spectral norm, breads, K, D, R), at
        # their own input sizes, with their share of the network's MACs; overrides after commas:
        # configs/fmnist32_hamgan.yaml,model.g.ham.kind=cd,model.d.ham.kind=cd
        # (--save FILE also writes the rows as JSON; results/fmnist32/context_cost.json is such a file)

CPU timings move with whatever else runs on the machine; compare rows of one run, not runs. On a CPU shared with
other busy processes every parallel region of a multi-threaded op waits for its threads to be scheduled, which
penalises the Hamburger's ~90 small ops far more than attention's ~10 huge ones; ``--threads 1`` shows how much.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from hamgan.config import load_config
from hamgan.info import count_params, model_info
from hamgan.nn import FullSelfAttention, Hamburger, SelfAttention
from hamgan.nn.from_config import discriminator_from_config, generator_from_config

BLOCKS = ("ham-nmf", "ham-cd", "ham-vq", "attention-full", "attention-sagan")
SWEEP_BLOCKS = ("ham-nmf", "attention-full", "attention-sagan")
SWEEP_SIZES = (16, 32, 64, 128)
MIB = 2**20


@dataclass
class Result:
    block: str
    params: int
    macs: int
    mem_infer_mb: float
    mem_train_mb: float
    time_infer_s: float
    time_train_s: float


def build_block(name: str, channels: int, dim: int, rank: int, steps: int) -> nn.Module:
    if name.startswith("ham-"):
        return Hamburger(channels, ham=name.removeprefix("ham-"), dim=dim, rank=rank, steps=steps)
    if name == "attention-full":
        return FullSelfAttention(channels)
    if name == "attention-sagan":
        return SelfAttention(channels)
    raise ValueError(f"unknown block {name!r}; choose from {BLOCKS}")


def count_macs(block: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> int:
    block.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # (FlopCounterMode does not work under inference_mode)
        block(x, y)
    return counter.get_total_flops() // 2


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory allocated while ``fn`` runs, above what was allocated before it, in MiB."""
    if device.type == "cuda":
        _synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MIB
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    allocations = sorted(
        (e["ts"], e["args"].get("Ev Idx", 0), e["args"]["Bytes"])
        for e in events
        if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0
    )
    live = peak = 0
    for _, _, nbytes in allocations:
        live += nbytes
        peak = max(peak, live)
    return peak / MIB


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def measure(names: list[str], args: argparse.Namespace, size: int, device: torch.device) -> list[Result]:
    """Measure the blocks ``names`` on a ``batch x channels x size x size`` input side by side."""
    entries = []
    for name in names:
        torch.manual_seed(0)
        block = build_block(name, args.channels, args.dim or args.channels, args.rank, args.steps)
        entries.append((name, block, (args.batch, args.channels, size, size), None))
    return measure_blocks(entries, args.repeats, device)


Entry = tuple[str, nn.Module, tuple[int, ...], int | None]  # name, block, input shape, classes (labels y) or None


def measure_blocks(entries: list[Entry], repeats: int, device: torch.device) -> list[Result]:
    """Measure ``(name, block, input shape, num_classes)`` side by side: MACs and memory block by block, then the
    timed calls interleaved. A block with ``num_classes`` (G's, with class-conditional BN) is called with labels.

    Repeat r times every block once before repeat r + 1 starts, so a slow phase of the machine (another process,
    frequency changes) lands on all blocks alike instead of on whichever block ran then.
    """
    calls, static = [], []
    for name, block, shape, num_classes in entries:
        block = block.to(device)
        # A nonzero output scale, as in a trained network (at its init of 0 the context path does not reach the
        # output).
        for scale in ("sigma", "gamma"):
            if hasattr(block, scale):
                nn.init.constant_(getattr(block, scale), 0.1)
        torch.manual_seed(0)
        x = torch.randn(*shape, device=device)
        x_train = x.clone().requires_grad_(True)
        y = None if num_classes is None else torch.randint(num_classes, shape[:1], device=device)

        def infer(block: nn.Module = block, x: torch.Tensor = x, y: torch.Tensor | None = y) -> None:
            block.eval()
            with torch.inference_mode():
                block(x, y)

        def train(block: nn.Module = block, x: torch.Tensor = x_train, y: torch.Tensor | None = y) -> None:
            block.train()
            block.zero_grad(set_to_none=True)
            x.grad = None
            block(x, y).sum().backward()

        macs = count_macs(block.eval(), x, y)
        mem_infer = peak_memory_mb(infer, device)  # the profiled calls double as warm-up calls
        mem_train = peak_memory_mb(train, device)
        calls.append((infer, train))
        static.append((count_params(block), macs, mem_infer, mem_train))

    names = [name for name, _, _, _ in entries]
    times = [([], []) for _ in names]
    for _ in range(repeats):
        for (infer, train), (t_infer, t_train) in zip(calls, times):
            t_infer.append(timed(infer, device))
            t_train.append(timed(train, device))
    return [
        Result(name, params, macs, mem_infer, mem_train, statistics.median(t_infer), statistics.median(t_train))
        for name, (params, macs, mem_infer, mem_train), (t_infer, t_train) in zip(names, static, times)
    ]


def print_table(results: list[Result], header: str) -> None:
    print(header)
    print(f"{'block':<16} {'params':>10} {'GMACs':>9} {'mem inf MiB':>12} {'mem train MiB':>14} "
          f"{'infer s':>9} {'train s':>9}")
    for r in results:
        print(f"{r.block:<16} {r.params / MIB:>9.3f}M {r.macs / 1e9:>9.2f} {r.mem_infer_mb:>12.1f} "
              f"{r.mem_train_mb:>14.1f} {r.time_infer_s:>9.4f} {r.time_train_s:>9.4f}")


def print_ratios(results: list[Result]) -> None:
    by_name = {r.block: r for r in results}
    base = by_name.get("ham-nmf")
    if base is None:
        return
    print("\nratio block / ham-nmf (higher = ham-nmf cheaper)")
    print(f"{'block':<16} {'MACs':>7} {'mem inf':>8} {'mem train':>10} {'infer':>7} {'train':>7}")
    for r in results:
        if r is base:
            continue
        print(f"{r.block:<16} {r.macs / base.macs:>7.1f} {r.mem_infer_mb / base.mem_infer_mb:>8.1f} "
              f"{r.mem_train_mb / base.mem_train_mb:>10.1f} {r.time_infer_s / base.time_infer_s:>7.1f} "
              f"{r.time_train_s / base.time_train_s:>7.1f}")


def run_sweep(args: argparse.Namespace, device: torch.device) -> None:
    print(f"sweep: batch {args.batch}, channels {args.channels}, D {args.dim or args.channels}, R {args.rank}, "
          f"K {args.steps}, {args.repeats} repeats, device {device}")
    print(f"{'size':>5} {'block':<16} {'GMACs':>9} {'mem inf MiB':>12} {'mem train MiB':>14} {'infer s':>9} "
          f"{'train s':>9} {'infer x nmf':>12}")
    for size in SWEEP_SIZES:
        rows = measure(list(SWEEP_BLOCKS), args, size, device)
        base = rows[0]
        for r in rows:
            print(f"{size:>5} {r.block:<16} {r.macs / 1e9:>9.2f} {r.mem_infer_mb:>12.1f} {r.mem_train_mb:>14.1f} "
                  f"{r.time_infer_s:>9.4f} {r.time_train_s:>9.4f} {r.time_infer_s / base.time_infer_s:>12.1f}")


def block_label(block: nn.Module) -> str:
    """``ham-nmf`` / ``ham-cd`` / ``ham-vq`` for a Hamburger (with D, R, K), else the class name."""
    if isinstance(block, Hamburger):
        return f"ham-{block.ham} D{block.dim} R{block.rank} K{block.steps}"
    return type(block).__name__


def config_entries(specs: list[str], batch: int) -> tuple[list[Entry], list[dict]]:
    """The context blocks of G and D built from each ``path[,key=value...]`` config, at their own input sizes.

    They are the networks' own modules (spectral norm, breads, cheese and all), so their parameters equal the
    ``context`` rows of ``python -m hamgan.info``. Returns the entries for :func:`measure_blocks` and, for each, its
    config, network and that network's parameters and MACs at batch 1 (for the context block's share).
    """
    entries, meta = [], []
    for spec in specs:
        path, *overrides = spec.split(",")
        if not Path(path).is_file():
            raise SystemExit(f"--configs: no config file {path!r} (give path[,key=value...], e.g. "
                             "configs/fmnist32_hamgan.yaml,model.g.ham.kind=cd)")
        cfg = load_config(path, overrides).model
        info = model_info(cfg)
        torch.manual_seed(0)
        for net_name, net in (("G", generator_from_config(cfg)), ("D", discriminator_from_config(cfg))):
            if net.context is None:
                continue
            context = info[net_name]["context"]
            shape = (batch, *context["input_shape"][1:])
            label = block_label(net.context)
            classes = cfg.num_classes if net_name == "G" else None  # G's context may hold conditional BN
            entries.append((f"{Path(path).stem} {net_name} {label}", net.context, shape, classes))
            meta.append({"config": spec, "net": net_name, "context": label, "input_shape": list(shape),
                         "after": context["after"], "network_params": info[net_name]["params"],
                         "network_macs": info[net_name]["macs"], "context_macs_per_image": context["macs"]})
    return entries, meta


def run_configs(args: argparse.Namespace, device: torch.device) -> None:
    entries, meta = config_entries(args.configs, args.batch)
    if not entries:
        raise SystemExit("--configs: none of these configs has a context block in G or D")
    results = measure_blocks(entries, args.repeats, device)
    rows = [{**m, **asdict(r), "context_share_of_network_macs": m["context_macs_per_image"] / m["network_macs"]}
            for m, r in zip(meta, results)]
    record = {"batch": args.batch, "repeats": args.repeats, "device": str(device), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "command": "python scripts/bench_context.py " + " ".join(sys.argv[1:]),
              "rows": rows}
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(record, indent=2) + "\n")
    if args.json:
        print(json.dumps(record, indent=2))
        return
    print(f"context blocks as the configs build them: batch {args.batch}, median of {args.repeats}, device {device} "
          f"({torch.get_num_threads()} threads); MACs and times per image; share = context MACs / network MACs")
    print(f"{'config':<26} {'net':<3} {'block':<22} {'input':<12} {'params':>9} {'MMACs':>8} {'share':>6} "
          f"{'mem train MiB':>14} {'infer ms':>9} {'train ms':>9}")
    for row in rows:
        _, c, h, w = row["input_shape"]
        print(f"{Path(row['config'].split(',')[0]).stem[:26]:<26} {row['net']:<3} {row['context'][:22]:<22} "
              f"{f'{c}x{h}x{w}':<12} {row['params']:>9,} {row['context_macs_per_image'] / 1e6:>8.1f} "
              f"{row['context_share_of_network_macs']:>6.1%} {row['mem_train_mb']:>14.1f} "
              f"{1e3 * row['time_infer_s'] / args.batch:>9.3f} {1e3 * row['time_train_s'] / args.batch:>9.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=512, help="C of the input (default 512)")
    parser.add_argument("--size", type=int, default=128, help="H = W of the input (default 128)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--dim", type=int, default=None, help="Hamburger D (default: channels)")
    parser.add_argument("--rank", type=int, default=64, help="Hamburger R (default 64)")
    parser.add_argument("--steps", type=int, default=6, help="Hamburger K (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (default 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=BLOCKS, help="blocks to measure")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument("--sweep", action="store_true", help="cost of ham-nmf vs attention for sizes 16..128")
    parser.add_argument("--configs", nargs="+", metavar="PATH[,KEY=VALUE...]",
                        help="measure the context blocks of these configs' G and D at their own sizes instead")
    parser.add_argument("--save", metavar="JSON", help="with --configs: also write the measured rows to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.size * args.size < args.rank:
        parser.error(f"--size {args.size} gives H*W = {args.size**2} pixels, fewer than --rank {args.rank}")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.save and not args.configs:
        parser.error("--save writes the rows of --configs; give --configs too")
    if args.configs:
        run_configs(args, device)
        return
    if args.sweep:
        run_sweep(args, device)
        return
    results = measure(args.blocks, args, args.size, device)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    print_table(
        results,
        f"input {args.batch} x {args.channels} x {args.size} x {args.size}, D {args.dim or args.channels}, "
        f"R {args.rank}, K {args.steps}, median of {args.repeats}, device {device} "
        f"({torch.get_num_threads()} threads)",
    )
    print_ratios(results)


if __name__ == "__main__":
    main()
