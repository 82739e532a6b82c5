"""The rows of scripts/gpu_check.sh (run that script: it finds the Python and installs what is missing).

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
6. DDP on 2 GPUs (NCCL, train.sync_bn, train.compile): printed "needs 2 GPUs" and counted as neither pass nor fail
   on a one-GPU machine.

The rows run in jobs, each a subprocess of this script (``--job NAME``) with a time limit: a share of the budget
left, in proportion to the job's nominal seconds (``JOBS``), so that a fast job leaves its time to later ones. A job
writes its rows to ``OUT/jobs/NAME.json`` after each row, so a timed-out job keeps its finished rows.

``--smoke`` runs every row end to end on the CPU with tiny sizes (the Fashion-MNIST 32x32 networks of
scripts/bench_train.py, a 1 x 64 x 16 x 16 context input, 2 x 16 FID images, 2 gloo ranks); torch.compile is the
identity there (dynamo takes minutes on these networks on a CPU), and fp16, which the trainer refuses on a CPU, is
reported as "needs a GPU" (neither pass nor fail). The smoke run tests this script, not the hardware.

Output: the table on stdout and in ``OUT/gpu_check.md``, rows with their figures in ``OUT/gpu_check.json``, a log per
job in ``OUT/logs/``. Exit status: 0 every row passed or needs 2 GPUs, 1 a row failed, 2 no GPU (without --smoke).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import bench_context  # scripts/ siblings: Python puts this script's folder first on sys.path
import bench_train
import torch

ROOT = Path(__file__).resolve().parent.parent
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
# (job, nominal seconds on a one-GPU machine): the time limits are these shares of the budget left (see module doc)
JOBS = {"train-eager": 80, "train-compiled-ham": 110, "train-compiled-attention": 100, "resume-fp16": 45,
        "context": 25, "fid": 35, "ddp": 90}
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
    """torchrun, 2 ranks, this script's --ddp-rank (hamgan.train's main; --smoke: gloo on the CPU)."""
    cfg = "fmnist32_hamgan.yaml" if s.smoke else "imagenet128_hamgan_baby.yaml"
    overrides = ["data.name=synthetic", "data.synthetic_size=256", "data.num_workers=0", "log.wandb=disabled",
                 "log.tqdm=false", "train.fid.every=0", "train.sample_every=0", "train.log_every=2",
                 "train.ckpt_every=4", "train.sync_bn=true", "train.compile=true", "train.amp=bf16",
                 f"train.batch_size={8 if s.smoke else 64}",
                 *(["train.device=cpu", "train.dist_backend=gloo"] if s.smoke else ["train.device=cuda"])]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
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


# --------------------------------------------------------------------------------------------------------------------
# Jobs and the table
# --------------------------------------------------------------------------------------------------------------------


def job_rows(name: str, s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    if name == "train-eager":
        return rows_train_eager(s)
    if name.startswith("train-compiled-"):
        return rows_train_compiled(s, name.removeprefix("train-compiled-"))
    return {"resume-fp16": rows_resume_fp16, "context": rows_context, "fid": rows_fid, "ddp": rows_ddp}[name](s)


def run_job(name: str, s: Settings) -> None:
    """In the job's subprocess: run its rows in turn, writing all rows to OUT/jobs/NAME.json after each."""
    rows = job_rows(name, s)
    path = s.out / "jobs" / f"{name}.json"
    for row, fn in rows:
        start = time.monotonic()
        try:
            fn(row)
            row.status = "pass"
        except Exception as e:  # the row fails; the job goes on with its next row
            if s.smoke and "fp16" in row.key and "needs a GPU" in str(e):
                row.status, row.result = NEEDS_GPU, str(e)
            else:
                row.status = "FAIL"
                row.result = (row.result + "; " if row.result else "") + f"{type(e).__name__}: {e}"[:300]
                traceback.print_exc()
        row.seconds = time.monotonic() - start
        print(f"[{row.status}] {row.check}: {row.result} ({row.seconds:.0f} s)", file=sys.stderr, flush=True)
        path.write_text(json.dumps([asdict(r) for r, _ in rows], indent=1))


def job_limit(left: float, names: list[str]) -> float:
    """The time limit of job ``names[0]``: its share of ``left`` seconds among the jobs still to run."""
    return left * JOBS[names[0]] / sum(JOBS[n] for n in names)


def run_jobs(s: Settings, names: list[str], budget: float) -> list[Row]:
    """Run the jobs ``names`` in order, each in a subprocess with its share of the budget left; their rows."""
    deadline = time.monotonic() + budget
    rows: list[Row] = []
    for k, name in enumerate(names):
        limit = job_limit(deadline - time.monotonic(), names[k:])
        batch = {c: r.figures["eager"]["batch"] for r in rows for c in MODELS
                 if r.key == f"train-eager-{c}" and r.status == "pass"}
        cmd = [sys.executable, __file__, "--job", name, "--out", str(s.out), "--batch", json.dumps(batch),
               *(["--smoke"] if s.smoke else [])]
        start, why = time.monotonic(), None
        with open(s.out / "logs" / f"{name}.log", "w") as log:
            # a session of its own: a timeout ends the job with all its children (torchrun and its ranks)
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=max(limit, 1.0))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                why = f"timed out: the job had {limit:.0f} s, its share of --budget"
        path = s.out / "jobs" / f"{name}.json"
        written = {r["key"]: Row(**r) for r in json.loads(path.read_text())} if path.is_file() else {}
        path.unlink(missing_ok=True)
        done = [written.get(r.key, r) for r, _ in job_rows(name, s)]  # a row the job never wrote: "not run"
        for r in done:
            if r.status == "not run":
                r.status = "FAIL"
                r.result = why or f"the job ended before this row: see {s.out / 'logs' / (name + '.log')}"
                r.seconds = time.monotonic() - start
            print(f"[{r.status}] {r.check}: {r.result}", file=sys.stderr, flush=True)
        rows += done
    return rows


def header(smoke: bool) -> str:
    date = time.strftime("%Y-%m-%d")
    if smoke:
        return f"{date}, --smoke on the CPU ({os.cpu_count()} cores), torch {torch.__version__}"
    p = torch.cuda.get_device_properties(0)
    return (f"{date}, {torch.cuda.device_count()} x {p.name} ({p.total_memory / 2**30:.0f} GiB), torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}")


def table(title: str, rows: list[Row]) -> str:
    """The markdown table of ``rows`` under ``title``, with the count of passed, failed and neutral rows."""
    lines = [f"GPU check: {title}", "", "| check | result | paper | asserts | status | s |",
             "| --- | --- | --- | --- | --- | ---: |"]
    lines += [f"| {r.check} | {r.result.replace('|', '/')} | {r.reference} | {r.asserts} | {r.status} | "
              f"{r.seconds:.0f} |" for r in rows]
    passed = sum(r.status == "pass" for r in rows)
    failed = sum(r.status not in ("pass", *NEUTRAL) for r in rows)
    lines += ["", f"{passed} passed, {failed} failed, {len(rows) - passed - failed} not counted "
                  f"({' / '.join(NEUTRAL)})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hamgan-gpu-check"))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all jobs (gpu_check.sh: 480 - set-up)")
    p.add_argument("--smoke", action="store_true", help="every row at tiny sizes on the CPU (tests this script)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--ddp-rank", nargs=argparse.REMAINDER, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_rank is not None:
        return ddp_rank(args.ddp_rank, args.smoke)
    s = Settings(args.out, "cpu" if args.smoke else "cuda", args.smoke, json.loads(args.batch))
    if args.job:
        run_job(args.job, s)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check.sh: no CUDA GPU visible to torch {torch.__version__} (CUDA_VISIBLE_DEVICES="
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); this check needs one GPU (or --smoke)",
              file=sys.stderr)
        return 2
    for sub in ("logs", "jobs", "runs"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    title = header(args.smoke)
    print(f"hamgan GPU check: {title}; budget {args.budget:.0f} s", file=sys.stderr, flush=True)
    two = args.smoke or torch.cuda.device_count() >= 2
    rows = run_jobs(s, [n for n in JOBS if n != "ddp" or two], args.budget)
    if not two:
        rows += [r for r, _ in rows_ddp(s)]
        rows[-1].status = rows[-1].result = NEEDS_2_GPUS
    text = table(title, rows)
    print(text)
    (args.out / "gpu_check.md").write_text(text + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps({"header": title, "rows": [asdict(r) for r in rows]},
                                                        indent=2))
    return 1 if any(r.status not in ("pass", *NEUTRAL) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
