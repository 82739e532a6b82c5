"""Training throughput and peak memory of full GAN steps (D update + G update) per context block.

    python scripts/bench_train.py                       # CPU: 32x32 and 128x128, ham / attention / none
    python scripts/bench_train.py --device cuda --json bench.json
    python scripts/bench_train.py --device cuda --resolutions 128 --amp bf16 --channels-last --compile
    python scripts/bench_train.py --macs                # MACs of one training step at 128, GPU-hours estimate
    git worktree add /tmp/before d46b03c && python scripts/bench_train.py --against /tmp/before --resolutions 32

``--against TREE``: before / after. The same measurement from TREE (another checkout of this repository, its own
``scripts/bench_train.py`` and ``hamgan``) and from this one, back to back with the order alternating, ``--pairs``
times per context; prints the median images/s of each with its range, the per-pair ratio after / before, and the
geometric mean of all ratios. Load from other processes then hits both sides of a pair alike.

Each measurement runs ``hamgan.train.Trainer.train_step`` (the real loop: D update on real + generated images, G
update, EMA) on synthetic data in a fresh subprocess, so that the peak memory of one model is not mixed with
another's. The models are measured side by side: every repeat runs all (resolution, context) pairs in turn, and
the table reports the median over repeats.

Models: at 32x32 the configs/fmnist32_{hamgan,sagan,none}.yaml networks, at 128x128 the paper's ImageNet networks
(configs/imagenet128_hamgan_baby.yaml, imagenet128_sagan.yaml, and the same without a context block), context at
32x32 in G and D.

images/s = train.batch_size x G steps per second (each step also passes the batch through D on real and fake
images). Peak memory: on CUDA the peak of allocated tensor memory during the measured steps; on CPU the growth of
the process's peak resident set size over warm-up and timed steps (from after the networks and data are built),
a coarser figure. ``--amp``, ``--channels-last`` and ``--compile`` set ``train.amp``, ``train.channels_last`` and
``train.compile`` (compilation happens in the warm-up steps, which are not timed).

``--macs``: the multiply-accumulates of one training step (``torch.utils.flop_counter`` over a real
``Trainer.train_step`` on the CPU: D update with G's forward under no_grad, G update, forward and backward,
convolutions and matrix products only) of the paper's 128x128 networks, per image, and the GPU-hours they imply
for HamGAN-baby (batch 256, 2M steps) and HamGAN-strong (batch 1024, 1M steps) at a stated share of a GPU's dense
bf16 peak: GPU-hours = 2 x MACs per image x batch x steps / (peak x utilisation) / 3600.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    (32, "ham"): ("fmnist32_hamgan.yaml", []),
    (32, "attention"): ("fmnist32_sagan.yaml", []),
    (32, "none"): ("fmnist32_none.yaml", []),
    (128, "ham"): ("imagenet128_hamgan_baby.yaml", []),
    (128, "attention"): ("imagenet128_sagan.yaml", []),
    (128, "none"): ("imagenet128_hamgan_baby.yaml", ["model.g.context=none", "model.d.context=none"]),
}
CONTEXTS = ("ham", "attention", "none")


def bench_config(resolution: int, context: str, batch: int, device: str, threads: int, variant: list[str] = ()):
    """The config of one measurement: the model of CONFIGS on synthetic data, no logging."""
    from hamgan.config import load_config

    name, extra = CONFIGS[(resolution, context)]
    overrides = [
        *extra,
        f"train.batch_size={batch}",
        f"train.device={device}",
        f"train.threads={threads}",
        "data.name=synthetic",
        f"data.synthetic_size={4 * batch}",
        "data.num_workers=0",
        "data.hflip=false",
        "log.wandb=disabled",
        "log.tqdm=false",
        "train.fid.every=0",  # no FID network or reference to build
        *variant,
    ]
    return load_config(ROOT / "configs" / name, overrides)


def measure(resolution: int, context: str, batch: int, steps: int, warmup: int, device: str, threads: int,
            variant: list[str] = ()) -> dict:
    """One measurement, in this process: build the trainer, warm up, time ``steps`` training steps."""
    import torch

    from hamgan import distributed
    from hamgan.info import count_params
    from hamgan.train import Trainer

    cfg = bench_config(resolution, context, batch, device, threads, variant)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir, distributed.setup(device))
        trainer.close()  # the run lock: nothing else uses this folder
        cuda = trainer.device.type == "cuda"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(warmup):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            out = trainer.train_step()
        float(out["loss_g"])  # wait for the device
        seconds = (time.perf_counter() - start) / steps
        if cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 2**10
        return {
            "resolution": resolution,
            "context": context,
            "batch": batch,
            "variant": " ".join(variant),
            "device": str(trainer.device),
            "step_ms": 1000 * seconds,
            "images_per_s": batch / seconds,
            "peak_mem_mb": peak,
            "params_g": count_params(trainer.G),
            "params_d": count_params(trainer.D),
        }


def count_step_macs(context: str, batch: int, threads: int) -> float:
    """MACs of one training step of the 128x128 networks at global batch ``batch`` (CPU, float32)."""
    from torch.utils.flop_counter import FlopCounterMode

    from hamgan import distributed
    from hamgan.train import Trainer

    cfg = bench_config(128, context, batch, "cpu", threads)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir, distributed.setup("cpu"))
        trainer.close()
        trainer.train_step()  # warm-up: the first step is not special, but keep the counted one typical
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step()
        return counter.get_total_flops() / 2


# GPU dense bf16 peaks (TFLOPS, vendor data sheets, no sparsity) for the estimate
PEAKS = {"A100": 312.0, "H100 SXM": 989.0, "H200": 989.0}
RECIPES = {"HamGAN-baby": (256, 2_000_000), "HamGAN-strong": (1024, 1_000_000)}


def print_macs(args: argparse.Namespace) -> None:
    rows = []
    for context in args.contexts.split(","):
        macs = count_step_macs(context, args.macs_batch, args.threads)
        rows.append((context, macs / args.macs_batch))
        print(f"[macs] {context}: {macs / 1e9:.1f} GMACs per step at batch {args.macs_batch}", file=sys.stderr)
    print(f"MACs of one training step per image (128x128 networks; D update + G update, forward + backward), and "
          f"GPU-hours at {args.utilisation:.0%} of the dense bf16 peak:")
    header = f"{'context':<10} {'GMACs/image':>11} " + " ".join(
        f"{recipe + ' ' + gpu:>26}" for recipe in RECIPES for gpu in PEAKS)
    print(header)
    print("-" * len(header))
    for context, per_image in rows:
        cells = []
        for recipe, (batch, steps) in RECIPES.items():
            for gpu, peak in PEAKS.items():
                hours = 2 * per_image * batch * steps / (peak * 1e12 * args.utilisation) / 3600
                cells.append(f"{hours:>26,.0f}")
        print(f"{context:<10} {per_image / 1e9:>11.1f} " + " ".join(cells))


def run_worker(args: argparse.Namespace, resolution: int, context: str, batch: int, steps: int,
               tree: Path = ROOT) -> dict:
    """One measurement in a subprocess, with the ``hamgan`` and ``scripts/bench_train.py`` of ``tree``."""
    cmd = [sys.executable, str(tree / "scripts" / "bench_train.py"),
           "--worker", f"{resolution},{context},{batch},{steps}", "--device", args.device,
           "--warmup", str(args.warmup), "--threads", str(args.threads), *variant_args(args)]
    env = {**os.environ, "PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"benchmark of {context} at {resolution} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_trees(args: argparse.Namespace, against: Path, pairs: list[tuple[int, str]], batch: dict[int, int],
                  steps: dict[int, int]) -> None:
    """Before (``against``) / after (this tree), see the module doc."""
    if not (against / "scripts" / "bench_train.py").is_file() or not (against / "hamgan").is_dir():
        raise SystemExit(f"--against {against}: not a checkout of this repository (no scripts/bench_train.py and "
                         "hamgan/); make one with: git worktree add /tmp/before <commit>")
    if variant_args(args):
        raise SystemExit("--against measures the config defaults: leave out --amp, --channels-last and --compile")
    for tree in (ROOT, against):  # each side must import its own hamgan (not an installed one)
        where = subprocess.run([sys.executable, "-c", "import hamgan; print(hamgan.__file__)"], capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tempfile.gettempdir())
        if where.returncode != 0 or not Path(where.stdout.strip()).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"with PYTHONPATH={tree} python imports hamgan from {where.stdout.strip() or '?'} "
                             f"{where.stderr[-300:]}: the comparison would not measure {tree}")
    speeds: dict[tuple[int, str], list[tuple[float, float]]] = {pair: [] for pair in pairs}
    for k in range(args.pairs):
        for i, (resolution, context) in enumerate(pairs):
            order = [("after", ROOT), ("before", against)]
            if (k + i) % 2:
                order.reverse()
            r = {label: run_worker(args, resolution, context, batch[resolution], steps[resolution],
                                   tree)["images_per_s"] for label, tree in order}
            speeds[(resolution, context)].append((r["before"], r["after"]))
            print(f"[pair {k + 1}/{args.pairs}] {context:>9} @ {resolution}: before {r['before']:.1f}, after "
                  f"{r['after']:.1f} images/s ({order[0][0]} first)", file=sys.stderr, flush=True)

    def spread(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    print(f"before: {against}; after: {ROOT}; {args.pairs} pairs per context, order alternating\n")
    print("| res | context | before images/s: median (min-max) | after: median (min-max) | "
          "after / before per pair: median (min-max) |")
    print("| ---: | --- | ---: | ---: | ---: |")
    ratios = []
    for (resolution, context), runs in speeds.items():
        pair_ratios = [after / before for before, after in runs]
        ratios += pair_ratios
        print(f"| {resolution} | {context} | {spread([b for b, _ in runs], 1)} | {spread([a for _, a in runs], 1)} | "
              f"{spread(pair_ratios, 2)} |")
    geo = statistics.geometric_mean(ratios)
    print(f"\ngeometric mean of the {len(ratios)} paired ratios after / before: {geo:.3f} "
          f"({'no slower' if geo >= 0.97 else 'SLOWER'} at a 3% tolerance)")


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for resolution in sorted({r["resolution"] for r in results}):
        for context in CONTEXTS:
            runs = [r for r in results if (r["resolution"], r["context"]) == (resolution, context)]
            if not runs:
                continue
            rows.append({
                **{k: runs[0].get(k, "") for k in ("resolution", "context", "batch", "device", "params_g", "params_d",
                                                   "variant")},
                "images_per_s": statistics.median(r["images_per_s"] for r in runs),
                "step_ms": statistics.median(r["step_ms"] for r in runs),
                "peak_mem_mb": max(r["peak_mem_mb"] for r in runs),
                "repeats": len(runs),
            })
    for row in rows:
        same = {r["context"]: r for r in rows if r["resolution"] == row["resolution"]}
        for ref in ("attention", "none"):
            if ref in same:
                row[f"speed_vs_{ref}"] = row["images_per_s"] / same[ref]["images_per_s"]
                row[f"mem_vs_{ref}"] = row["peak_mem_mb"] / max(same[ref]["peak_mem_mb"], 1e-9)
    return rows


def print_table(rows: list[dict]) -> None:
    header = (f"{'res':>4} {'context':<10} {'batch':>5} {'images/s':>9} {'step ms':>9} {'peak MB':>8} "
              f"{'G+D params':>11} {'speed/attn':>10} {'speed/none':>10} {'mem/attn':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['resolution']:>4} {r['context']:<10} {r['batch']:>5} {r['images_per_s']:>9.3g} "
              f"{r['step_ms']:>9.1f} {r['peak_mem_mb']:>8.0f} {(r['params_g'] + r['params_d']) / 1e6:>10.2f}M "
              f"{r.get('speed_vs_attention', float('nan')):>10.2f} {r.get('speed_vs_none', float('nan')):>10.2f} "
              f"{r.get('mem_vs_attention', float('nan')):>8.2f}")
    device = rows[0]["device"] if rows else "?"
    variant = rows[0].get("variant") if rows else ""
    print(f"\ndevice: {device}; {variant or 'config defaults'}; median of {rows[0]['repeats'] if rows else 0} "
          "interleaved repeats; speed/attn > 1: faster than self-attention; mem/attn < 1: less memory")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--resolutions", default="32,128", help="comma-separated subset of 32,128")
    p.add_argument("--contexts", default="ham,attention,none")
    p.add_argument("--batch-32", type=int, default=32, help="global batch at 32x32")
    p.add_argument("--batch-128", type=int, default=None, help="global batch at 128x128 (default: 4 CPU, 64 GPU)")
    p.add_argument("--steps-32", type=int, default=None, help="timed steps at 32x32 (default: 10 CPU, 50 GPU)")
    p.add_argument("--steps-128", type=int, default=None, help="timed steps at 128x128 (default: 2 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows (and every run) to this file")
    p.add_argument("--amp", default=None, choices=["auto", "bf16", "fp16", "none"], help="train.amp (default: the "
                   "config's, auto: none on CPU, bf16 on GPUs with native bf16)")
    p.add_argument("--channels-last", action="store_true", help="train.channels_last=true")
    p.add_argument("--compile", action="store_true", help="train.compile=true (compiled in the warm-up steps)")
    p.add_argument("--macs", action="store_true", help="count the MACs of one step at 128, print GPU-hours")
    p.add_argument("--macs-batch", type=int, default=2, help="batch of the counted step (MACs scale with it)")
    p.add_argument("--utilisation", type=float, default=0.3, help="share of the bf16 peak for --macs (0.3)")
    p.add_argument("--against", type=Path, default=None, metavar="TREE",
                   help="before / after: measure TREE (another checkout) and this tree in alternating pairs")
    p.add_argument("--pairs", type=int, default=10, help="--against: pairs per context (10)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.macs:
        print_macs(args)
        return
    if args.worker:  # one measurement in this subprocess
        resolution, context, batch, steps = args.worker.split(",")
        print(json.dumps(measure(int(resolution), context, int(batch), int(steps), args.warmup, args.device,
                                 args.threads, variant_overrides(args))))
        return

    gpu = args.device.startswith("cuda") or (args.device == "auto" and _cuda_available())
    batch = {32: args.batch_32, 128: args.batch_128 or (64 if gpu else 4)}
    steps = {32: args.steps_32 or (50 if gpu else 10), 128: args.steps_128 or (20 if gpu else 2)}
    pairs = [(int(r), c) for r in args.resolutions.split(",") for c in args.contexts.split(",")]
    if args.against is not None:
        compare_trees(args, args.against, pairs, batch, steps)
        return
    results = []
    for repeat in range(args.repeats):
        for resolution, context in pairs:
            r = run_worker(args, resolution, context, batch[resolution], steps[resolution])
            print(f"[repeat {repeat + 1}/{args.repeats}] {context:>9} @ {resolution}: {r['images_per_s']:.1f} "
                  f"images/s, peak {r['peak_mem_mb']:.0f} MB", file=sys.stderr, flush=True)
            results.append(r)
    rows = summarise(results)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": results}, indent=2))


def variant_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides of --amp / --channels-last / --compile."""
    out = [f"train.amp={args.amp}"] if args.amp else []
    return out + ["train.channels_last=true"] * args.channels_last + ["train.compile=true"] * args.compile


def variant_args(args: argparse.Namespace) -> list[str]:
    """The same options for a worker's command line."""
    out = ["--amp", args.amp] if args.amp else []
    return out + ["--channels-last"] * args.channels_last + ["--compile"] * args.compile


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
