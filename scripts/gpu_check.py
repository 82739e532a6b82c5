"""The rows of scripts/gpu_check.sh (run that script, which prepares the environment): one table of GPU figures.

Every row runs in its own subprocess with a time limit, in priority order, within ``--budget`` seconds; a row that
fails or times out is reported as such and the others still run. The compiled rows come last. Logs of every row go
to ``OUT/logs``; the table to stdout, ``OUT/gpu_check.md`` and ``OUT/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER_CONTEXT = {  # paper Table 3 (GPU, 1 x 512 x 128 x 128): infer / train ms, infer / train MB
    "ham-nmf": "7.7 / 15.6 ms, 98 / 202 MB",
    "ham-cd": "13.0 / 20.0 ms, 102 / 162 MB",
    "attention-full": "82.2 / 242.0 ms, 2148 / 5253 MB",
}
SIZES = {  # the check; --smoke: the same rows at toy sizes on any device (to test this script on a CPU)
    "full": {"shape": "1x512x128x128", "context": ["--size", "128"], "res": 128, "batch": 64, "fid_n": 500,
             "fmnist_steps": 200, "ddp_steps": 100},
    "smoke": {"shape": "1x64x16x16", "context": ["--size", "16", "--channels", "64", "--rank", "8"], "res": 32,
              "batch": 8, "fid_n": 20, "fmnist_steps": 20, "ddp_steps": 10},
}


@dataclass
class Row:
    check: str
    setting: str
    result: str = ""
    reference: str = ""
    status: str = "skipped"
    seconds: float = 0.0


class Runner:
    """Runs commands within the budget and keeps their logs; ``device`` and ``size`` are the check's settings."""

    def __init__(self, out: Path, budget: float, device: str, size: dict) -> None:
        self.out, self.deadline = out, time.monotonic() + budget
        self.device, self.size = device, size
        self.train = ["log.wandb=disabled", "log.tqdm=false", f"train.device={device}", "train.amp=bf16"]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.count = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, row: Row, cmd: list[str], limit: float, env: dict | None = None) -> str | None:
        """Run ``cmd``; its output, or None (``row`` then says why)."""
        self.count += 1
        log = self.out / "logs" / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', row.check + ' ' + row.setting)}.log"
        limit = min(limit, self.left() - 5)
        if limit < 10:
            row.status, row.result = "skipped", "time budget used up"
            return None
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env={**self.env, **(env or {})}, capture_output=True, text=True,
                                  timeout=limit)
        except subprocess.TimeoutExpired as e:
            row.seconds = time.monotonic() - start
            log.write_text(f"$ {' '.join(cmd)}\n{e.stdout or ''}\n{e.stderr or ''}\nTIMEOUT after {limit:.0f} s\n")
            row.status, row.result = "FAILED", f"timed out after {limit:.0f} s"
            return None
        row.seconds = time.monotonic() - start
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\nexit {proc.returncode}\n")
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            row.status, row.result = "FAILED", f"exit {proc.returncode}: {last[:160]}"
            return None
        row.status = "ok"
        return proc.stdout


def context_rows(runner: Runner) -> list[Row]:
    rows = [Row("context block", f"{b}, {runner.size['shape']}", reference=PAPER_CONTEXT[b]) for b in PAPER_CONTEXT]
    probe = Row("context block", f"bench_context --device {runner.device}")
    out = runner.run(probe, [sys.executable, "scripts/bench_context.py", "--device", runner.device, "--json",
                             "--repeats", "10", "--blocks", *PAPER_CONTEXT, *runner.size["context"]], 120)
    if out is None:
        for r in rows:
            r.status, r.result = probe.status, probe.result
        return rows
    results = {r["block"]: r for r in json.loads(out[out.index("["):])}
    for row, block in zip(rows, PAPER_CONTEXT):
        r = results[block]
        row.status, row.seconds = "ok", probe.seconds
        row.result = (f"{1000 * r['time_infer_s']:.1f} / {1000 * r['time_train_s']:.1f} ms, "
                      f"{r['mem_infer_mb']:.0f} / {r['mem_train_mb']:.0f} MiB")
    return rows


def train_row(runner: Runner, context: str, variant: list[str], limit: float) -> Row:
    name = " + ".join(["bf16", *[v.lstrip("-").replace("-", "_") for v in variant]])
    res, batch = runner.size["res"], runner.size["batch"]
    row = Row(f"bench_train {res}, batch {batch}", f"{context}, {name}")
    json_path = runner.out / "logs" / f"bench_train-{context}-{name.replace(' + ', '-')}.json"
    out = runner.run(row, [sys.executable, "scripts/bench_train.py", "--device", runner.device, "--resolutions",
                           str(res), "--contexts", context, f"--batch-{res}", str(batch), f"--steps-{res}", "10",
                           "--warmup", "3", "--repeats", "1", "--amp", "bf16", *variant, "--json", str(json_path)],
                     limit)
    if out is not None:
        r = json.loads(json_path.read_text())["rows"][0]
        row.result = f"{r['images_per_s']:.0f} images/s, {r['step_ms']:.0f} ms/step, peak {r['peak_mem_mb']:.0f} MiB"
    return row


def fid_row(runner: Runner, fmnist: bool) -> Row:
    n, kind = runner.size["fid_n"], "fmnist" if fmnist else "synthetic"
    row = Row("bench_fid vs pytorch-fid", f"2 x {n} {'Fashion-MNIST' if fmnist else 'synthetic'} PNGs",
              reference="features equal to 1e-4")
    folders = [runner.out / "fid" / f"{kind}-{k}" for k in range(2)]
    write = Row("bench_fid", "write PNGs")
    runner.run(write, [sys.executable, "-c", WRITE_PNGS, str(n), kind, *map(str, folders)], 60)
    if write.status != "ok":
        return write
    out = runner.run(row, [sys.executable, "scripts/bench_fid.py", *map(str, folders), "--device", runner.device,
                           "--num-workers", "4"], 150)
    if out is not None:
        speeds = re.findall(r"\|\s*([0-9.]+)\s*\|\s*([0-9.]+)\s*\|\s*$", out, re.M)  # images/s, FID per path
        ratio = re.search(r"speed ratio hamgan / pytorch-fid: ([0-9.]+)x", out)
        diff = re.search(r"max \|feature difference\|: (\S+)", out)
        if len(speeds) >= 2 and ratio and diff:
            row.result = (f"hamgan {float(speeds[1][0]):.0f} images/s, pytorch-fid {float(speeds[0][0]):.0f} "
                          f"({ratio.group(1)}x); max feature diff {diff.group(1)}; FID {speeds[1][1]} vs "
                          f"{speeds[0][1]}")
        else:
            row.result = " ".join(out.strip().splitlines()[-3:])[:200]
    return row


WRITE_PNGS = """
import sys
from pathlib import Path
from PIL import Image
from hamgan.config import load_config
from hamgan.data import build_dataset
from hamgan.data.synthetic import synthetic
n, kind, folders = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
for k, folder in enumerate(folders):  # Fashion-MNIST: the first n train / test images; else 2n synthetic ones
    if kind == "fmnist":
        split = ("train", "test")[k]
        data = build_dataset(load_config("configs/fmnist32_hamgan.yaml", ["data.download=false", f"data.split={split}"]))
        first = 0
    else:
        data, first = synthetic(2 * n, 32, 3, 10), k * n
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = data.get_uint8(first + i)
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert("RGB").save(Path(folder) / f"{i:05d}.png")
"""


def has_fmnist() -> bool:
    try:
        from hamgan.config import load_config
        from hamgan.data import build_dataset

        build_dataset(load_config(ROOT / "configs" / "fmnist32_hamgan.yaml", ["data.download=false"]))
        return True
    except Exception:
        return False


def metrics_of(run_dir: Path) -> dict:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").is_file() else []
    return json.loads(lines[-1]) if lines else {}


def fmnist_row(runner: Runner, data: list[str], label: str) -> Row:
    steps = runner.size["fmnist_steps"]
    row = Row(f"Fashion-MNIST 32x32, {steps} steps", f"bf16, batch 32{label}")
    run_dir = runner.out / "runs" / "fmnist-bf16"
    out = runner.run(row, [sys.executable, "-m", "hamgan.train", "configs/fmnist32_hamgan.yaml", "--out",
                           str(run_dir), "--steps", str(steps), *runner.train, f"train.log_every={steps // 4}",
                           f"train.sample_every={steps}", f"train.ckpt_every={steps}", *data], 150)
    if out is not None:
        m = metrics_of(run_dir)
        row.result = (f"{m.get('images_per_s', 0):.0f} images/s (last logged interval), loss_d {m.get('loss_d', 0):.3f}, "
                      f"loss_g {m.get('loss_g', 0):.3f}, peak {m.get('peak_mem_mb', 0):.0f} MiB")
    return row


def ddp_row(runner: Runner, data: list[str], extra: list[str], label: str) -> Row:
    steps = runner.size["ddp_steps"]
    row = Row("DDP, 2 ranks on 1 GPU", f"Fashion-MNIST, {steps} steps{label}")
    device = "cuda:0" if runner.device == "cuda" else runner.device
    for backend in (("nccl", "gloo") if runner.device == "cuda" else ("gloo",)):
        run_dir = runner.out / "runs" / f"ddp-{backend}{label.replace(' ', '').replace(',', '-')}"
        attempt = Row(row.check, row.setting)
        out = runner.run(attempt, [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                   "2", "-m", "hamgan.train", "configs/fmnist32_hamgan.yaml", "--out", str(run_dir),
                                   "--steps", str(steps), *runner.train, f"train.device={device}",
                                   f"train.dist_backend={backend}", f"train.log_every={steps // 2}",
                                   "train.sample_every=0", f"train.ckpt_every={steps}", *extra, *data], 120)
        row.seconds += attempt.seconds
        if out is not None:
            m = metrics_of(run_dir)
            row.status = "ok"
            row.result = (f"{backend}: {m.get('images_per_s', 0):.0f} images/s (global batch 32), "
                          f"loss_d {m.get('loss_d', 0):.3f}")
            return row
        row.status, row.result = attempt.status, (row.result + "; " if row.result else "") + \
            f"{backend}: {attempt.result}"
    return row


def gpu_header() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"{time.strftime('%Y-%m-%d')} CPU smoke run (no GPU), torch {torch.__version__}"
    p = torch.cuda.get_device_properties(0)
    return (f"{time.strftime('%Y-%m-%d')} {p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, bf16 native: {torch.cuda.is_bf16_supported(including_emulation=False)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hamgan-gpu-check"))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all rows")
    p.add_argument("--smoke", action="store_true", help="toy sizes on --device (tests this script, e.g. on a CPU)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    runner = Runner(args.out, args.budget, args.device, SIZES["smoke" if args.smoke else "full"])
    header = gpu_header()
    print(f"hamgan GPU check: {header}", flush=True)
    fmnist = has_fmnist()
    data = [] if fmnist else ["data.name=synthetic", "data.synthetic_size=6000"]
    label = "" if fmnist else " (synthetic: Fashion-MNIST not found)"

    rows = context_rows(runner)
    for variant in ([], ["--channels-last"]):
        for context in ("ham", "attention", "none"):
            rows.append(train_row(runner, context, variant, 90))
    rows.append(fid_row(runner, fmnist))
    rows.append(fmnist_row(runner, data, label))
    rows.append(ddp_row(runner, data, [], label))
    rows.append(ddp_row(runner, data, ["train.sync_bn=true"], ", train.sync_bn" + label))
    for context in ("ham", "attention", "none"):
        rows.append(train_row(runner, context, ["--channels-last", "--compile"], 240))
    for r in rows:
        print(f"[{r.status}] {r.check} / {r.setting}: {r.result} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)

    lines = [f"GPU check {header}", "", "| check | setting | result | reference | status | s |",
             "| --- | --- | --- | --- | --- | ---: |"]
    lines += [f"| {r.check} | {r.setting} | {r.result} | {r.reference} | {r.status} | {r.seconds:.0f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    (args.out / "gpu_check.md").write_text(table + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]},
                                                        indent=2))
    return 0 if all(r.status == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
