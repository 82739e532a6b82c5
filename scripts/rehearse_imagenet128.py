"""Dress rehearsal of the ImageNet-128 runbook (docs/imagenet128.md) on the CPU: ``make rehearse``.

Every command of the runbook runs as a user runs it, on the real ``imagenet128_hamgan_baby`` and
``imagenet128_sagan`` networks at their real widths, with a tiny global batch:

1. an ImageFolder of 1000 class folders with a few JPEGs each, made messy on purpose (odd sizes, one grayscale, one
   CMYK, one truncated file), packed by ``scripts/pack_imagenet.py``;
2. ``scripts/train_imagenet128.sh`` with 2 ranks (gloo), cross-replica BN, bf16 autocast and ``torch.compile`` with
   the ``eager`` backend: dynamo captures the graphs as it does for inductor (graph breaks show the same), and the
   captured graphs run eager kernels. Inductor's C++ code generation for the 82M-parameter networks takes longer than
   the rehearsal's 15 minutes on 2 cores, and ``aot_eager`` (AOT autograd per DDP bucket) about 5 minutes a run:
   HamGAN-baby twice (once straight through; once stopped by SIGTERM part-way, then resumed by running the same
   command again) and SAGAN once. The resumed run must end with exactly the weights, optimizer state and spectral-norm
   vectors of the uninterrupted one (the CPU is deterministic; see tests/test_train.py for the same check at toy
   size). Each compiled run must have compiled G and D without a graph break (``RUN/compile.json``);
3. ``hamgan-eval stats`` / ``fid --protocol hamgan-tf`` on a few hundred samples, ``hamgan-sample`` grids, and
   ``hamgan-eval compare`` of the two models.

Any failed step stops the rehearsal with its command and output and exit status 1. Resumable: a step whose output
exists is skipped (delete ``--work`` to start over).

    python scripts/rehearse_imagenet128.py --work runs/rehearsal
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class RehearsalFailed(RuntimeError):
    pass


def make_messy_image_folder(root: Path, classes: int = 1000, per_class: int = 2, seed: int = 0) -> int:
    """``root/train/n%08d/*.JPEG``: ``classes`` x ``per_class`` JPEGs of odd sizes; the first class's images are one
    grayscale, one CMYK; one image of the second class is truncated (unreadable). Returns the number of files."""
    rng = np.random.default_rng(seed)
    count = 0
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (int(s) for s in rng.integers(67, 211, size=2))
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if c == 0 and i == 0:
                image = image.convert("L")
            elif c == 0 and i == 1:
                image = image.convert("CMYK")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            data = buffer.getvalue()
            if c == 1 and i == 0:
                data = data[: len(data) // 3]
            (folder / f"img_{i}.JPEG").write_bytes(data)
            count += 1
    return count


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, expect: tuple[int, ...] = (0,),
        timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the repository root, its output to ``log``; raise RehearsalFailed on another exit status."""
    t0 = time.time()
    with log.open("w") as f:
        result = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    print(f"  {time.time() - t0:6.1f} s  exit {result.returncode}  {' '.join(cmd)}", flush=True)
    if result.returncode not in expect:
        raise RehearsalFailed(f"exit status {result.returncode} (expected {expect}) of\n  {' '.join(cmd)}\n"
                              f"last output ({log}):\n{tail(log)}")
    return result


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def train_env(threads: int) -> dict[str, str]:
    return {**os.environ, "GPUS": "2", "OMP_NUM_THREADS": str(threads), "PYTHON": PY, "MAX_RESTARTS": "0",
            "SHUTDOWN_TIMEOUT": "120"}


def train_command(config: str, out: Path, packed: Path, steps: int, batch: int, ckpt_every: int) -> list[str]:
    return ["bash", "scripts/train_imagenet128.sh", config, str(out), f"data.packed={packed}", "data.num_workers=0",
            f"train.steps={steps}", f"train.batch_size={batch}", f"train.ckpt_every={ckpt_every}",
            "train.log_every=1", "train.sample_every=0", "train.fid.every=0", "train.amp=bf16",
            "train.compile=true", "train.compile_backend=eager", "train.sync_bn=true", "train.dist_backend=gloo", "train.device=cpu",
            "train.keep_last=2", "log.wandb=disabled"]


def last_step(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def interrupted_training(cmd: list[str], out: Path, env: dict[str, str], stop_after: int, log: Path,
                         timeout: float = 1800) -> int:
    """Start ``cmd``, send SIGTERM to its process group (torchrun and the ranks, as a batch system does) once step
    ``stop_after`` is logged; its exit status."""
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while proc.poll() is None and last_step(out) < stop_after:
            if time.time() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RehearsalFailed(f"no step {stop_after} within {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=600)
    print(f"  {time.time() - t0:6.1f} s  exit {code}  SIGTERM after step {stop_after}: {' '.join(cmd)}", flush=True)
    return code


def final_checkpoint(run_dir: Path, steps: int) -> Path:
    path = run_dir / f"ckpt-{steps:09d}.pt"
    if not path.exists():
        raise RehearsalFailed(f"{path} was not written; the run folder holds {sorted(p.name for p in run_dir.iterdir())}")
    return path


def assert_same_state(a: Path, b: Path) -> int:
    """Every tensor of the networks and optimizers of checkpoints ``a`` and ``b`` is equal; returns their count."""
    sa, sb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
    count = 0
    for key in ("G", "D", "opt_G", "opt_D"):
        flat_a, flat_b = flatten(sa[key]), flatten(sb[key])
        if flat_a.keys() != flat_b.keys():
            raise RehearsalFailed(f"{key}: the checkpoints hold different entries: {set(flat_a) ^ set(flat_b)}")
        for name, value in flat_a.items():
            other = flat_b[name]
            same = torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
            if not same:
                raise RehearsalFailed(f"resume is not exact: {key}.{name} differs between {a} and {b}")
            count += 1
    return count


def flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(tree, (list, tuple)):
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def assert_compiled(run_dir: Path) -> dict:
    """``RUN/compile.json`` (written by the trainer with train.compile) shows graphs and no graph break."""
    path = run_dir / "compile.json"
    if not path.exists():
        raise RehearsalFailed(f"{path} is missing: the trainer did not report its compilation")
    report = json.loads(path.read_text())
    if report.get("graphs", 0) < 1 or report.get("graph_breaks", 1) != 0:
        raise RehearsalFailed(f"torch.compile did not compile the networks whole: {report}")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "rehearsal", help="working folder")
    p.add_argument("--steps", type=int, default=3, help="training steps of each run (default 3)")
    p.add_argument("--stop-after", type=int, default=1, help="the interrupted run gets SIGTERM after this step (default 1)")
    p.add_argument("--batch", type=int, default=4, help="global batch (2 ranks; default 4)")
    p.add_argument("--per-class", type=int, default=2, help="JPEGs per class folder (default 2)")
    p.add_argument("--fid-n", type=int, default=200, help="samples and reference images for FID (default 200)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per rank (default 1)")
    args = p.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        rehearse(args, work)
    except RehearsalFailed as e:
        print(f"rehearsal FAILED after {time.time() - t0:.0f} s: {e}", file=sys.stderr)
        return 1
    print(f"rehearsal passed in {time.time() - t0:.0f} s")
    return 0


def rehearse(args: argparse.Namespace, work: Path) -> None:
    folder, packed = work / "imagenet", work / "imagenet128_train"
    print("1. data: a messy ImageFolder of 1000 classes, packed", flush=True)
    if not (folder / "train").exists():
        n = make_messy_image_folder(folder, per_class=args.per_class)
        print(f"  {n} JPEGs in {folder}")
    if not packed.exists():
        run([PY, "scripts/pack_imagenet.py", str(folder), "--out", str(packed), "--resolution", "128",
             "--workers", "2"], work / "pack.log")
    meta = json.loads((packed / "meta.json").read_text()) if (packed / "meta.json").exists() else None
    if meta is not None and meta.get("num_skipped", 0) != 1:
        raise RehearsalFailed(f"the truncated JPEG should be the one image skipped: {meta.get('num_skipped')}")

    print("2. training: 2 ranks, gloo, cross-replica BN, bf16, compile", flush=True)
    env = train_env(args.threads)
    ham, ham_resumed, sagan = work / "hamgan_baby", work / "hamgan_baby_resumed", work / "sagan"
    ham_cfg, sagan_cfg = "configs/imagenet128_hamgan_baby.yaml", "configs/imagenet128_sagan.yaml"
    common = dict(packed=packed, steps=args.steps, batch=args.batch, ckpt_every=args.steps)
    if not (ham / f"ckpt-{args.steps:09d}.pt").exists():
        run(train_command(ham_cfg, ham, **common), work / "train_hamgan.log", env)
    report = assert_compiled(ham)
    print(f"  compiled: {report}")
    if not (ham_resumed / f"ckpt-{args.steps:09d}.pt").exists():
        cmd = train_command(ham_cfg, ham_resumed, **common)
        stopped_log = work / "train_hamgan_stopped.log"
        interrupted_training(cmd, ham_resumed, env, args.stop_after, stopped_log)
        # torchrun itself exits 1 on SIGTERM (SignalException); the ranks exit 143 after their checkpoint
        stopped = re.search(r"stopped by SIGTERM after step (\d+); checkpoint", stopped_log.read_text())
        if stopped is None or int(stopped.group(1)) >= args.steps:
            raise RehearsalFailed(f"SIGTERM should stop the run part-way with a checkpoint:\n{tail(stopped_log)}")
        print(f"  stopped after step {stopped.group(1)} with a checkpoint; the same command again resumes")
        run(cmd, work / "train_hamgan_resumed.log", env)
    n = assert_same_state(final_checkpoint(ham, args.steps), final_checkpoint(ham_resumed, args.steps))
    print(f"  resumed run equals the uninterrupted one: {n} tensors bit for bit")
    if not (sagan / f"ckpt-{args.steps:09d}.pt").exists():
        run(train_command(sagan_cfg, sagan, **common), work / "train_sagan.log", env)
    assert_compiled(sagan)

    print("3. evaluation: FID (hamgan-tf protocol), sample grids, compare", flush=True)
    ref = work / "reference.npz"
    n_fid = str(args.fid_n)
    if not ref.exists():
        run([PY, "-m", "hamgan.evaluate", "stats", ham_cfg, f"data.packed={packed}", "data.num_workers=0",
             "--protocol", "hamgan-tf", "--n", n_fid, "--features", "--out", str(ref), "--num-workers", "0"],
            work / "stats.log")
    fid_json = work / "fid_hamgan.json"
    run([PY, "-m", "hamgan.evaluate", "fid", str(final_checkpoint(ham, args.steps)), str(ref), "--protocol",
         "hamgan-tf", "--n", n_fid, "--batch-size", "50", "--json"], work / "fid.log")
    fid = json.loads((work / "fid.log").read_text().strip().splitlines()[-1])
    fid_json.write_text(json.dumps(fid))
    if not np.isfinite(fid.get("fid", float("nan"))):
        raise RehearsalFailed(f"FID is not finite: {fid}")
    print(f"  FID (hamgan-tf, {n_fid} vs {n_fid}): {fid['fid']:.2f}")
    for name, run_dir in (("hamgan", ham), ("sagan", sagan)):
        grid = work / f"samples_{name}.png"
        run([PY, "-m", "hamgan.sample", str(run_dir), "--out", str(grid), "--n", "4", "--classes", "0,1,2,999"],
            work / f"sample_{name}.log")
        if not grid.exists():
            raise RehearsalFailed(f"{grid} was not written")
    compare = work / "compare.json"
    run([PY, "-m", "hamgan.evaluate", "compare", str(ham), str(sagan), "--ref", str(ref), "--n", n_fid, "--protocol",
         "hamgan-tf", "--metrics", "fid,kid,pr", "--batch-size", "50", "--json-out", str(compare)], work / "compare.log")
    print(tail(work / "compare.log", 8))


if __name__ == "__main__":
    sys.exit(main())
