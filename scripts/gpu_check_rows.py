"""The rows of the GPU check: scripts/gpu_check.py runs them in jobs and prints the table (scripts/gpu_check.sh).

Rows, in priority order; every row asserts something and prints its figure:

1. ImageNet-128 HamGAN-baby and SAGAN training steps at the real width (configs/imagenet128_*.yaml, synthetic data):
   bf16 autocast, images/s and peak memory at the largest batch that fits (the config's global batch 256, else
   halved until it fits), eager (also with channels_last) and compiled. Asserts finite losses, G's context block
   output in bf16 (issue 21 point 6), and for compiled rows no recompilation during the timed steps.
2. A GPU resume: 4 steps uninterrupted against 2 steps, a checkpoint, a new trainer resuming to 4 (issue 21 point
   1, 2). Asserts bit-exact weights and optimiser state, or else a difference no larger than two uninterrupted runs
   differ by in this process (the tolerance: a resume cannot be more reproducible than the run itself; a restore
   bug moves every weight by about an Adam step, lr = 1e-4, far above that floor).
3. fp16 with the grad scaler (asserts finite losses and at least one applied update), and fp16 resumed from a bf16
   checkpoint (issue 21 point 8; asserts that it resumes and trains on).
4. The context blocks at the paper's Table 3 shape (1 x 512 x 128 x 128, D = 512, R = 64, K = 6; reused from
   scripts/bench_context.py): Ham NMF, Ham CD and full attention next to the paper's figures. Asserts the paper's
   claim (each Hamburger faster and smaller than attention in training) and attention's MACs against their closed
   form 4 N C^2 + 2 N^2 C.
5. FID features and FID on the GPU, hamgan.metrics against pytorch-fid on the same 2 x 500 images (both in true
   float32). Asserts max |feature difference| <= 1e-3 and relative FID difference <= 1e-3.
6. DDP on 2 GPUs (NCCL, train.sync_bn, train.compile), each rank a process of ``scripts/gpu_check.py --ddp-rank``
   (``ddp_rank``): printed "needs 2 GPUs" and counted as neither pass nor fail on a one-GPU machine.

Each ``rows_*`` function returns ``(Row, fn)`` pairs, the rows of one job: ``fn(row)`` runs the check, fills in the
row's result and figures, and raises (an AssertionError that names what is wrong) when the check fails.

In a smoke run (``Settings.smoke``, ``--smoke``) every row runs end to end on the CPU with tiny sizes (the
Fashion-MNIST 32x32 networks of scripts/bench_train.py, a 1 x 64 x 16 x 16 context input, 2 x 10 FID images, 2 gloo
ranks); torch.compile is the identity there (dynamo takes minutes on these networks on a CPU), and fp16, which the
trainer refuses on a CPU, is reported as "needs a GPU" (neither pass nor fail).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import bench_context  # scripts/ siblings: Python puts the running script's folder first on sys.path
import bench_train
import torch

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().with_name("gpu_check.py")  # the entry point; its --ddp-rank runs one DDP rank
PAPER_TABLE3 = {  # HamGAN paper Table 3 (1 x 512 x 128 x 128): infer / train ms, infer / train MB
    "ham-nmf": "7.7 / 15.6 ms, 98 / 202 MB",
    "ham-cd": "13.0 / 20.0 ms, 102 / 162 MB",
    "attention-full": "82.2 / 242.0 ms, 2148 / 5253 MB",
}
MODELS = {"ham": "HamGAN-baby", "attention": "SAGAN"}
BATCHES = (256, 128, 64, 32, 16)  # the ImageNet configs' global batch first, then halved until it fits
SMOKE_BATCHES = (4,)
# The resume and fp16 rows: the real ImageNet-128 HamGAN-baby recipe at a quarter of the width (the checkpoints stay
# ~100 MB instead of 1 GB; what a resume restores does not depend on the width).
NARROW = ["model.g.channels=16", "model.d.channels=16", "model.g.ham.dim=64", "model.g.ham.rank=8",
          "model.d.ham.dim=32", "model.d.ham.rank=4"]
FEATURE_TOL = 1e-3  # pool3 features: folded BN and channels_last change rounding at ~1e-5; a preprocessing slip is 1e-1
FID_REL_TOL = 1e-3
NEEDS_2_GPUS = "needs 2 GPUs"
NEEDS_GPU = "needs a GPU"
NEUTRAL = (NEEDS_2_GPUS, NEEDS_GPU)


@dataclass
class Row:
    """One line of the table: what was checked, the figure, the assertion, and how it went."""

    key: str
    check: str
    result: str = ""
    reference: str = ""
    asserts: str = ""
    status: str = "not run"
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)


@dataclass
class Settings:
    """What a job needs to know: where to write, the device, smoke or not, the batches found by earlier jobs."""

    out: Path
    device: str
    smoke: bool
    batch: dict = field(default_factory=dict)  # {"ham": 256, "attention": 128} from the eager rows

    @property
    def resolution(self) -> int:
        """Of the training rows: 128 (the ImageNet networks), 32 in a smoke run (the Fashion-MNIST ones)."""
        return 32 if self.smoke else 128

    @property
    def threads(self) -> int:
        """train.threads: one on the CPU of a smoke run (other jobs share it), torch's default on a GPU machine."""
        return 1 if self.smoke else 0


# --------------------------------------------------------------------------------------------------------------------
# Row 1: training steps
# --------------------------------------------------------------------------------------------------------------------


def no_compiler() -> None:
    """--smoke: torch.compile returns the module unchanged. Tracing these networks takes dynamo minutes on a
    CPU; the compiled rows' own code still runs (the compiler is tested in tests/test_train.py)."""
    torch.compile = lambda module, *args, **kwargs: module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_figures(s: Settings, context: str, batch: int, variant: list[str], steps: int, warmup: int) -> dict:
    """Build the trainer of ``context`` (bench_train's config: the real network on synthetic data), warm up, time
    ``steps`` training steps; images/s, peak memory, the losses, the dtype of G's context output, graphs compiled
    during the timed steps."""
    from hamgan import distributed
    from hamgan.train import Trainer

    cfg = bench_train.bench_config(s.resolution, context, batch, s.device, s.threads, ["train.amp=bf16", *variant])
    run_dir = s.out / "runs" / f"step-{context}-{batch}-{len(variant)}"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(cfg, run_dir, distributed.setup(s.device))
    trainer.close()  # the run lock: nothing else uses this folder
    dtypes: list[torch.dtype] = []
    compiled = "train.compile=true" in variant  # (a hook would be traced into the compiled graph)
    hook = None if compiled else trainer.G.context.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        for _ in range(warmup):
            trainer.train_step()
        device = trainer.device
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        graphs = _unique_graphs()
        start = time.perf_counter()
        for _ in range(steps):
            out = trainer.train_step()
        losses = {k: float(v) for k, v in out.items() if k.startswith("loss")}  # waits for the device
        seconds = (time.perf_counter() - start) / steps
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        return {"batch": batch, "images_per_s": batch / seconds, "step_ms": 1000 * seconds, "peak_mem_mib": peak,
                "losses": losses, "context_dtype": str(dtypes[-1]).removeprefix("torch.") if dtypes else None,
                "graphs_in_timed_steps": _unique_graphs() - graphs}
    finally:
        if hook is not None:
            hook.remove()


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def largest_batch(measure_at: Callable[[int], dict], candidates: tuple[int, ...]) -> tuple[dict, list[int]]:
    """``measure_at(b)`` for the first of ``candidates`` (largest first) that does not run out of GPU memory;
    ``(its figures, the batches that did not fit)``."""
    too_big = []
    for b in candidates:
        try:
            return measure_at(b), too_big
        except torch.OutOfMemoryError:
            too_big.append(b)
        gc.collect()  # outside the except block: the traceback's frames (the trainer) are gone now
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    raise AssertionError(f"out of memory at every batch tried: {', '.join(map(str, candidates))}")


def check_step(f: dict, compiled: bool = False) -> None:
    bad = {k: v for k, v in f["losses"].items() if not math.isfinite(v)}
    assert not bad, f"non-finite losses {bad}"
    assert f["context_dtype"] in ("bfloat16", None), (f"G's context block returns {f['context_dtype']} under bf16 "
                                                      "autocast: the rest of G runs in float32 (issue 21 point 6)")
    if compiled:
        assert f["graphs_in_timed_steps"] == 0, f"{f['graphs_in_timed_steps']} graphs compiled during timed steps"


def _memory(f: dict) -> str:
    return "" if math.isnan(f["peak_mem_mib"]) else f", peak {f['peak_mem_mib'] / 1024:.1f} GiB"


def rows_train_eager(s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    def run(row: Row, context: str) -> None:
        steps, warmup = (1, 1) if s.smoke else (5, 2)
        f, too_big = largest_batch(lambda b: step_figures(s, context, b, [], steps, warmup),
                                   SMOKE_BATCHES if s.smoke else BATCHES)
        check_step(f)
        cl = step_figures(s, context, f["batch"], ["train.channels_last=true"], steps, warmup)
        check_step(cl)
        row.figures = {"eager": f, "channels_last": cl, "out_of_memory_at": too_big}
        oom = f" (out of memory at {', '.join(map(str, too_big))})" if too_big else ""
        row.result = (f"batch {f['batch']}{oom}: {f['images_per_s']:.4g} images/s{_memory(f)}; channels_last "
                      f"{cl['images_per_s']:.4g} images/s{_memory(cl)}")

    return [(Row(f"train-eager-{c}", f"{MODELS[c]} {s.resolution}x{s.resolution} step, bf16, eager",
                 asserts="finite losses; G's context output bf16"), lambda row, c=c: run(row, c))
            for c in ("ham", "attention")]


def rows_train_compiled(s: Settings, context: str) -> list[tuple[Row, Callable[[Row], None]]]:
    def run(row: Row) -> None:
        if s.smoke:
            no_compiler()
        batch = s.batch.get(context) or (SMOKE_BATCHES if s.smoke else BATCHES)[-1]
        steps, warmup = (1, 2) if s.smoke else (5, 3)
        f = step_figures(s, context, batch, ["train.compile=true"], steps, warmup)
        check_step(f, compiled=True)
        row.figures = {"compiled": f}
        row.result = f"batch {batch}: {f['images_per_s']:.4g} images/s{_memory(f)}"

    return [(Row(f"train-compiled-{context}", f"{MODELS[context]} {s.resolution}x{s.resolution} step, bf16, "
                 "torch.compile",
                 asserts="finite losses; context output bf16; no recompiles while timed"), run)]


# --------------------------------------------------------------------------------------------------------------------
# Rows 2 and 3: resume, fp16
# --------------------------------------------------------------------------------------------------------------------


def small_config(s: Settings, overrides: list[str]):
    """The narrow ImageNet-128 HamGAN-baby (``NARROW``; smoke: Fashion-MNIST 32x32) for 4 steps of batch 16,
    checkpoints every 2 steps, EMA from step 1 (so that its restore is checked too)."""
    resolution, batch = (32, 4) if s.smoke else (128, 16)
    return bench_train.bench_config(resolution, "ham", batch, s.device, s.threads, [
        *([] if s.smoke else NARROW), "train.steps=4", "train.ckpt_every=2", "train.log_every=2",
        "train.sample_every=0", "train.ema.enabled=true", "train.ema.start=1", *overrides])


def small_trainer(s: Settings, name: str, overrides: list[str], steps: int, resume_from: Path | None = None):
    """The trainer of ``small_config`` for ``steps`` in OUT/runs/NAME (fresh, or resuming a copy of
    ``resume_from``)."""
    from hamgan import distributed
    from hamgan.train import Trainer

    run_dir = s.out / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if resume_from is not None:
        shutil.copy(resume_from, run_dir / resume_from.name)
    cfg = small_config(s, overrides)
    cfg.train.steps = steps
    return Trainer(cfg, run_dir, distributed.setup(s.device))


def train_run(s: Settings, name: str, overrides: list[str], steps: int, resume_from: Path | None = None):
    """``(trainer, its first step)`` after training ``small_trainer`` to ``steps``."""
    trainer = small_trainer(s, name, overrides, steps, resume_from)
    start = trainer.step
    trainer.fit()
    return trainer, start


def state_of(trainer) -> dict[str, torch.Tensor]:
    """Every weight, buffer and optimiser tensor of a trainer, flat, on the CPU."""
    out = {}
    for net, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.ema and trainer.ema.model)):
        for k, v in (module.state_dict().items() if module is not None else ()):
            out[f"{net}.{k}"] = v.detach().cpu()
    for net, opt in (("opt_G", trainer.opt_G), ("opt_D", trainer.opt_D)):
        for i, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    out[f"{net}.{i}.{k}"] = v.detach().cpu()
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert a.keys() == b.keys(), f"different state keys: {sorted(a.keys() ^ b.keys())[:5]}"
    worst, where = 0.0, ""
    for k in a:
        d = (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0
        if d > worst:
            worst, where = d, k
    return worst, where


def rows_resume_fp16(s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    def resume(row: Row) -> None:
        whole, _ = train_run(s, "whole", [], 4)
        again, _ = train_run(s, "whole-again", [], 4)
        resumed, start = train_run(s, "resumed", [], 4, resume_from=whole.run_dir / "ckpt-000000002.pt")
        assert start == 2, f"the resumed trainer started at step {start}, not 2"
        floor, _ = max_difference(state_of(whole), state_of(again))
        diff, where = max_difference(state_of(whole), state_of(resumed))
        row.figures = {"max_abs_difference": diff, "at": where, "floor_two_uninterrupted_runs": floor}
        row.result = ("bit-exact" if diff == 0 else f"max |difference| {diff:.2e} at {where}") + \
            f"; two uninterrupted runs differ by {floor:.2e}"
        assert diff <= floor, f"the resume differs by {diff:.2e} at {where}, more than two uninterrupted runs " \
                              f"({floor:.2e})"

    def fp16(row: Row) -> None:
        trainer = small_trainer(s, "fp16", ["train.amp=fp16", "train.ckpt_every=8"], 6)
        def weights() -> dict[str, torch.Tensor]:  # parameters only: spectral-norm buffers move in skipped steps too
            return {k: v.detach().cpu().clone() for k, v in trainer.G.named_parameters()}

        initial = weights()
        trainer.fit()
        moved, _ = max_difference(weights(), initial)
        scale = float(trainer.scaler_G.get_scale())
        losses = trainer.last_metrics
        bad = {k: v for k, v in losses.items() if k.startswith("loss") and not math.isfinite(v)}
        assert not bad, f"non-finite losses {bad}"
        row.figures = {"scale_G": scale, "scale_D": float(trainer.scaler_D.get_scale()), "weights_moved": moved,
                       "metrics": {k: v for k, v in losses.items() if isinstance(v, (int, float))}}
        row.result = f"6 steps, G's loss scale {scale:g}, G moved by up to {moved:.1e}"
        assert trainer.scaler_G.is_enabled() and math.isfinite(scale) and scale > 0, f"loss scale {scale}"
        assert moved > 0, "no update was applied in 6 steps (every step skipped for inf gradients)"

    def fp16_from_bf16(row: Row) -> None:
        bf16, _ = train_run(s, "bf16-for-fp16", [], 2)
        trainer, start = train_run(s, "fp16-from-bf16", ["train.amp=fp16"], 4,
                                   resume_from=bf16.run_dir / "ckpt-000000002.pt")
        scale = float(trainer.scaler_G.get_scale())
        row.figures = {"resumed_at": start, "step": trainer.step, "scale_G": scale}
        row.result = f"resumed at step {start}, trained to {trainer.step}, G's loss scale {scale:g}"
        assert start == 2 and trainer.step == 4 and math.isfinite(scale)

    rows = [(Row("resume", "GPU resume: 2 + 2 steps against 4 (narrow HamGAN-baby, bf16, EMA)",
                 asserts="bit-exact, or within the run-to-run difference"), resume),
            (Row("fp16", "fp16 autocast with the grad scaler, 6 steps",
                 asserts="loss scale finite; an update applied"), fp16),
            (Row("fp16-from-bf16", "fp16 resumed from a bf16 checkpoint", asserts="resumes and trains on"),
             fp16_from_bf16)]
    return rows


# --------------------------------------------------------------------------------------------------------------------
# Row 4: the context blocks next to Table 3
# --------------------------------------------------------------------------------------------------------------------


def rows_context(s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    channels, size, dim, rank, repeats = (64, 16, 64, 8, 2) if s.smoke else (512, 128, 512, 64, 10)
    paper = not s.smoke
    results: dict[str, bench_context.Result] = {}

    def measure_all() -> None:
        device = torch.device(s.device)
        entries = []
        for name in PAPER_TABLE3:
            torch.manual_seed(0)
            entries.append((name, bench_context.build_block(name, channels, dim, rank, 6), (1, channels, size, size),
                            None))
        results.update({r.block: r for r in bench_context.measure_blocks(entries, repeats, device)})

    def run(row: Row, block: str) -> None:
        if not results:
            measure_all()
        r = results[block]
        row.figures = asdict(r)
        row.result = (f"{1000 * r.time_infer_s:.1f} / {1000 * r.time_train_s:.1f} ms, "
                      f"{r.mem_infer_mb:.0f} / {r.mem_train_mb:.0f} MiB")
        if block == "attention-full":
            n = size * size
            closed = 4 * n * channels**2 + 2 * n**2 * channels
            assert r.macs == closed, f"attention MACs {r.macs:,} != 4 N C^2 + 2 N^2 C = {closed:,}"
        elif paper:
            attention = results["attention-full"]
            assert r.time_train_s < attention.time_train_s and r.mem_train_mb < attention.mem_train_mb, \
                f"not faster and smaller than attention ({1000 * attention.time_train_s:.1f} ms, " \
                f"{attention.mem_train_mb:.0f} MiB)"
        assert math.isfinite(r.time_train_s) and r.time_train_s > 0

    shape = f"1 x {channels} x {size} x {size}"
    return [(Row(f"context-{b}", f"{b}, {shape} (infer / train)", reference=PAPER_TABLE3[b],
                 asserts="MACs = 4NC^2 + 2N^2C" if b == "attention-full" else
                 ("faster and smaller than attention (train)" if paper else "finite (claim checked at full size)")),
             lambda row, b=b: run(row, b)) for b in PAPER_TABLE3]


# --------------------------------------------------------------------------------------------------------------------
# Row 5: FID against pytorch-fid
# --------------------------------------------------------------------------------------------------------------------


def fid_sizes(s: Settings) -> tuple[int, int, int]:
    """(images per set, resolution, batch) of the FID row."""
    return (10, 32, 10) if s.smoke else (500, 128, 100)


def rows_fid(s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    def run(row: Row) -> None:
        import numpy as np
        from pytorch_fid.inception import InceptionV3

        from hamgan.data.synthetic import synthetic
        from hamgan.metrics import InceptionFeatures, frechet_distance

        n, resolution, batch = fid_sizes(s)
        device = torch.device(s.device)
        torch.backends.cuda.matmul.allow_tf32 = False  # pytorch-fid in true float32, as hamgan's features
        ours, theirs = InceptionFeatures().to(device), InceptionV3([3]).to(device).eval()
        features = {"hamgan": [], "pytorch-fid": []}
        seconds = {"hamgan": 0.0, "pytorch-fid": 0.0}
        for seed in (0, 1):  # two sets of images: two FID statistics
            images = torch.from_numpy(synthetic(n, resolution, 3, 10, seed=seed).images).permute(0, 3, 1, 2)
            feats = {"hamgan": [], "pytorch-fid": []}
            for i in range(0, n, batch):
                x = images[i:i + batch].to(device)
                for who in feats:
                    _sync(device)
                    t = time.perf_counter()
                    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                        if who == "hamgan":
                            f = ours(x)[0]
                        else:  # pytorch-fid's input: ToTensor's [0, 1]; in true float32 as ours
                            f = theirs(x.float() / 255)[0].flatten(1)
                        feats[who].append(f.double().cpu())
                    _sync(device)
                    seconds[who] += time.perf_counter() - t
            for who in feats:
                features[who].append(torch.cat(feats[who]).numpy())
        diff = max(float(np.abs(a - b).max()) for a, b in zip(features["hamgan"], features["pytorch-fid"]))
        fids = {}
        for who, (a, b) in features.items():
            fids[who] = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        rel = abs(fids["hamgan"] - fids["pytorch-fid"]) / max(abs(fids["pytorch-fid"]), 1e-12)
        speed = {who: 2 * n / t for who, t in seconds.items()}
        row.figures = {"max_feature_difference": diff, "fid": fids, "relative_fid_difference": rel,
                       "images_per_s": speed, "images": 2 * n}
        row.result = (f"max |feature diff| {diff:.1e}; FID {fids['hamgan']:.4f} vs {fids['pytorch-fid']:.4f} "
                      f"(rel. {rel:.1e}); {speed['hamgan']:.0f} vs {speed['pytorch-fid']:.0f} images/s")
        assert diff <= FEATURE_TOL, f"features differ by {diff:.2e} > {FEATURE_TOL}"
        assert rel <= FID_REL_TOL, f"FIDs differ by {rel:.2e} relative > {FID_REL_TOL}"

    n, resolution, _ = fid_sizes(s)
    return [(Row("fid", f"FID features on the device: hamgan.metrics vs pytorch-fid (2 x {n} images, "
                 f"{resolution}x{resolution})",
                 asserts=f"features within {FEATURE_TOL:g}; FID within {FID_REL_TOL:g} rel."), run)]


# --------------------------------------------------------------------------------------------------------------------
# Row 6: DDP on 2 GPUs
# --------------------------------------------------------------------------------------------------------------------


def ddp_command(s: Settings, run_dir: Path) -> list[str]:
    """torchrun, 2 ranks, scripts/gpu_check.py --ddp-rank (hamgan.train's main; --smoke: gloo on the CPU)."""
    cfg = "fmnist32_hamgan.yaml" if s.smoke else "imagenet128_hamgan_baby.yaml"
    overrides = ["data.name=synthetic", "data.synthetic_size=256", "data.num_workers=0", "log.wandb=disabled",
                 "log.tqdm=false", "train.fid.every=0", "train.sample_every=0", "train.log_every=2",
                 "train.ckpt_every=4", "train.sync_bn=true", "train.compile=true", "train.amp=bf16",
                 f"train.batch_size={8 if s.smoke else 64}",
                 *(["train.device=cpu", "train.dist_backend=gloo"] if s.smoke else ["train.device=cuda"])]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(RUNNER),
            *(["--smoke"] if s.smoke else []), "--ddp-rank", str(ROOT / "configs" / cfg), "--out", str(run_dir),
            "--steps", "4", *overrides]


def rows_ddp(s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    def run(row: Row) -> None:
        run_dir = s.out / "runs" / "ddp"
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = subprocess.run(ddp_command(s, run_dir), cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1" if s.smoke else "4"})
        (s.out / "logs" / "ddp-torchrun.log").write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"torchrun exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        row.figures = {k: v for k, v in last.items() if isinstance(v, (int, float))}
        assert last.get("step") == 4 and all(math.isfinite(v) for k, v in last.items() if k.startswith("loss")), last
        row.result = f"4 steps, {last.get('images_per_s', float('nan')):.0f} images/s (global batch), " \
                     f"loss_d {last.get('loss_d', float('nan')):.3f}"

    setting = "2 gloo ranks on the CPU" if s.smoke else "2 GPUs, NCCL"
    return [(Row("ddp", f"DDP, {setting}: HamGAN-baby, train.sync_bn + train.compile",
                 asserts="exit 0; finite losses at step 4"), run)]


def ddp_rank(argv: list[str], smoke: bool) -> int:
    """One rank of the DDP row: hamgan.train's command line (--smoke: compile with dynamo's eager backend)."""
    if smoke:
        no_compiler()
    from hamgan.train.cli import main

    return main(argv)
