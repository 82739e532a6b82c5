"""HamGAN vs SAGAN vs no context block on Fashion-MNIST 32x32: train, measure FID, aggregate, plot (issue 5).

    python scripts/reproduce_fmnist.py                                   # hamgan, sagan, none x seeds 0,1,2
    python scripts/reproduce_fmnist.py --models hamgan,sagan,none,ham-cd,ham-vq --seeds 0,1,2 --steps 2000 \\
        --eval-steps 500,1000,1500,2000 --n 1000 --ref-n 10000 --checkpoints results/fmnist32/checkpoints
    python scripts/reproduce_fmnist.py --report-only                     # re-aggregate the cached results
    python scripts/reproduce_fmnist.py --models hamgan,sagan --seeds 3 --work runs/rerun --results runs/rerun/results \\
        --check-against results/fmnist32/summary.json                    # does a new seed land in the spread?

Every model trains with the same hyperparameters and step budget: ``configs/fmnist32_{hamgan,sagan,none}.yaml``
(identical but for ``model.context``), Ham CD / VQ as the HamGAN config with ``model.ham.kind`` changed, plus the
``--set key=value`` overrides given here, applied to all. Each (model, seed) trains in its own folder
``WORK/<model>-seed<seed>`` by a ``python -m hamgan.train`` subprocess, one after the other (the CPU has few cores).

FID (real Inception weights) of ``--n`` samples of the EMA generator (labels uniform over the classes, latents from
``--fid-seed``) against Fashion-MNIST test-set statistics of ``--ref-n`` images, computed once and cached as
``WORK/fmnist32_test_<ref-n>.npz`` (the file ``hamgan-eval stats`` writes), at every ``--eval-steps`` checkpoint.
The trainer is told to checkpoint at those steps and keep them all (``train.ckpt_every``, ``train.keep_last``).

Resumable: rerunning the same command skips finished trainings, resumes interrupted ones (hamgan-train resumes from
a run folder's latest checkpoint) and skips evaluations already cached in ``WORK/<run>/fid.json`` (keyed by step, n,
reference and sampling seed).

Wall-clock: ``wall_s`` at step s is the training time up to s, the trainer's ``train_s`` in ``metrics.jsonl``, so it
excludes start-up, sample grids, checkpoints, FID and time lost to interruptions; ``images_per_s`` is batch_size * steps / wall_s at the final step.

Outputs under ``--results``::

    runs.csv, runs.json        one row per (model, seed, evaluated step): fid, wall_s, images_per_s, params, MACs
    summary.json, summary.md   FID mean +- std over seeds per model at every evaluated step, costs, exact commands
    fid_vs_steps.png, fid_vs_wallclock.png    one line per model (mean over seeds), band: +- 1 std over seeds
    samples/<model>.png        one row per class, from the first seed's final EMA generator
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = REPO / "configs"


@dataclass(frozen=True)
class ModelSpec:
    """A model of the study: a config file of ``configs/`` and the overrides that make it this model."""

    config: str
    overrides: tuple[str, ...] = ()
    label: str = ""


MODELS: dict[str, ModelSpec] = {
    "hamgan": ModelSpec("fmnist32_hamgan.yaml", (), "HamGAN (Ham NMF)"),
    "sagan": ModelSpec("fmnist32_sagan.yaml", (), "SAGAN (self-attention)"),
    "none": ModelSpec("fmnist32_none.yaml", (), "no context block"),
    "ham-cd": ModelSpec("fmnist32_hamgan.yaml", ("model.ham.kind=cd",), "Ham CD"),
    "ham-vq": ModelSpec("fmnist32_hamgan.yaml", ("model.ham.kind=vq",), "Ham VQ"),
}
STUDY_OVERRIDES = ("log.wandb=disabled", "log.tqdm=false")  # quiet subprocesses; metrics.jsonl is what we read
GRID_PER_CLASS = 10


class StudyError(RuntimeError):
    """A bad option or a state of the work folder the study cannot continue from."""


# --------------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python scripts/reproduce_fmnist.py",
        description="HamGAN vs SAGAN vs no context on Fashion-MNIST 32x32: train, FID, aggregate, plot.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", type=_name_list, default=["hamgan", "sagan", "none"],
                   help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="training seeds (train.seed)")
    p.add_argument("--steps", type=int, default=2000, help="G steps of every run")
    p.add_argument("--eval-steps", type=_int_list, default=None,
                   help="steps whose checkpoints get an FID (default: 4 evenly spaced, the last = --steps)")
    p.add_argument("--n", type=int, default=1000, help="generated samples per FID")
    p.add_argument("--ref-n", type=int, default=10000, help="Fashion-MNIST test images of the reference statistics")
    p.add_argument("--ref", type=Path, default=None,
                   help="existing reference statistics .npz (default: WORK/fmnist32_test_<ref-n>.npz, made once)")
    p.add_argument("--fid-seed", type=int, default=0, help="seed of the FID samples' latents, labels, Ham bases")
    p.add_argument("--fid-batch-size", type=int, default=100, help="generator / Inception batch in evaluation")
    p.add_argument("--work", type=Path, default=Path("runs/fmnist32_study"), help="run folders (not committed)")
    p.add_argument("--results", type=Path, default=Path("results/fmnist32"), help="result files (committed)")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="also copy each run's final generator (G and EMA G, no D / optimiser) to this folder")
    p.add_argument("--configs", type=Path, default=DEFAULT_CONFIGS, help="folder of the fmnist32_*.yaml configs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every model (repeatable), e.g. --set train.batch_size=64")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for training and FID (0: default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device of the FID")
    p.add_argument("--report-only", action="store_true",
                   help="train and evaluate nothing: re-aggregate tables, plots and grids from the cached results")
    p.add_argument("--check-against", type=Path, default=None, metavar="SUMMARY_JSON",
                   help="after the report, check that every run's final FID lies within mean +- 2 std over seeds "
                        "of this earlier study (e.g. results/fmnist32/summary.json); exit 1 if one does not")
    return p


def check_options(args: argparse.Namespace) -> None:
    """Ranges and consistency of the options; fills in the default ``eval_steps``."""
    for name in ("steps", "n", "ref_n", "fid_batch_size"):
        if getattr(args, name) < 1:
            raise StudyError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.n < 2:
        raise StudyError(f"--n must be >= 2 (FID needs a covariance), got {args.n}")
    if args.eval_steps is None:
        args.eval_steps = sorted({max(1, round(args.steps * k / 4)) for k in (1, 2, 3, 4)})
    bad = [s for s in args.eval_steps if not 1 <= s <= args.steps]
    if bad:
        raise StudyError(f"--eval-steps {bad} outside 1..--steps ({args.steps}); evaluate steps the runs reach")
    args.eval_steps = sorted(set(args.eval_steps) | {args.steps})
    if len(set(args.seeds)) != len(args.seeds):
        raise StudyError(f"--seeds has duplicates: {args.seeds}")
    for text in args.overrides:
        if "=" not in text:
            raise StudyError(f"--set '{text}' must look like dotted.key=value, e.g. --set train.batch_size=64")
        key = text.split("=", 1)[0].strip()
        if key in ("train.seed", "train.steps", "train.ckpt_every", "train.keep_last"):
            raise StudyError(f"--set {key} is set by the study itself (use --seeds / --steps / --eval-steps)")
    for name in args.models:
        path = args.configs / MODELS[name].config
        if not path.is_file():
            raise StudyError(f"config '{path}' of model '{name}' not found; point --configs at the repo's configs/")


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------


def checkpoint_schedule(steps: int, eval_steps: list[int]) -> tuple[int, int]:
    """``(train.ckpt_every, train.keep_last)`` so that a checkpoint exists at every eval step after training.

    ckpt_every is the gcd of the eval steps (the trainer also saves at the final step); keep_last keeps all.
    """
    every = math.gcd(*eval_steps)
    return every, steps // every + 1


@dataclass(frozen=True)
class Run:
    model: str
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def plan_runs(args: argparse.Namespace) -> list[Run]:
    """Seeds outer, models inner: an interrupted study has every model at the first seeds."""
    return [Run(m, s, args.work / f"{m}-seed{s}") for s in args.seeds for m in args.models]


def train_command(run: Run, args: argparse.Namespace) -> list[str]:
    """The ``python -m hamgan.train`` command line of ``run`` (resumes when the folder holds a checkpoint)."""
    spec = MODELS[run.model]
    every, keep = checkpoint_schedule(args.steps, args.eval_steps)
    overrides = [*spec.overrides, *args.overrides, f"train.seed={run.seed}", f"train.ckpt_every={every}",
                 f"train.keep_last={keep}", *STUDY_OVERRIDES]
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    return [sys.executable, "-m", "hamgan.train", str(args.configs / spec.config), "--out", str(run.folder),
            "--steps", str(args.steps), *overrides]


def trained_step(run: Run) -> int:
    """Step of the run folder's latest checkpoint (0 when there is none)."""
    from hamgan.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run.folder)
    return int(latest.name[5:14]) if latest is not None else 0


def train(run: Run, args: argparse.Namespace) -> bool:
    """Train (or resume) ``run`` up to ``--steps``; False when the trainer failed (see the run's train.log)."""
    done = trained_step(run)
    if done >= args.steps:
        return True
    cmd = train_command(run, args)
    run.folder.mkdir(parents=True, exist_ok=True)
    log = run.folder / "train.log"
    action = f"resuming at step {done}" if done else "training"
    print(f"{action} {run.name} to step {args.steps} (log: {log})", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
    elapsed = time.perf_counter() - start
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        print(f"  {run.name} FAILED (exit {rc}) after {elapsed:.0f} s: {' | '.join(tail)}", flush=True)
        return False
    print(f"  {run.name} done in {elapsed:.0f} s", flush=True)
    return True


# --------------------------------------------------------------------------------------------------------------------
# Training time and run facts
# --------------------------------------------------------------------------------------------------------------------


def training_clock(metrics_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative training seconds at each logged step, the trainer's ``train_s`` in ``metrics.jsonl``.

    Returns ``(steps, seconds)``, both starting at (0, 0).
    """
    steps, seconds = [0], [0.0]
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            step, train_s = record.get("step"), record.get("train_s")
            if not isinstance(train_s, (int, float)) or step is None or step <= steps[-1]:
                continue
            seconds.append(float(train_s))
            steps.append(step)
    return np.asarray(steps), np.asarray(seconds)


def training_seconds(clock: tuple[np.ndarray, np.ndarray], step: int) -> float | None:
    """Training seconds up to ``step`` (linear between logged steps); None beyond the last logged step."""
    steps, seconds = clock
    if step > steps[-1]:
        return None
    return float(np.interp(step, steps, seconds))


def model_facts(run: Run) -> dict[str, Any]:
    """Parameters of G and D and the context block's MACs (batch 1), from the run's saved config."""
    from hamgan.config import load_config
    from hamgan.info import model_info

    cfg = load_config(run.folder / "config.yaml")
    info = model_info(cfg.model)
    context = {net: (info[net]["context"] or {}) for net in ("G", "D")}
    return {
        "params_g": info["G"]["params"],
        "params_d": info["D"]["params"],
        "context_params_g": context["G"].get("params", 0),
        "context_params_d": context["D"].get("params", 0),
        "context_macs_g": context["G"].get("macs", 0),
        "context_macs_d": context["D"].get("macs", 0),
        "macs_g": info["G"]["macs"],
        "batch_size": cfg.train.batch_size,
    }


# --------------------------------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------------------------------


def reference_path(args: argparse.Namespace) -> Path:
    return args.ref if args.ref is not None else args.work / f"fmnist32_test_{args.ref_n}.npz"


def shown(path: Path | str) -> str:
    """``path`` as a command shown to users: relative to the repository when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO)) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def stats_command(args: argparse.Namespace) -> str:
    return (f"hamgan-eval stats {shown(args.configs / MODELS['hamgan'].config)} data.split=test --n {args.ref_n} "
            f"--out {reference_path(args)}")


class Evaluator:
    """FID of checkpoints against the reference statistics; the Inception and the statistics are loaded once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._inception = None
        self._ref: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def inception(self):
        if self._inception is None:
            from hamgan.metrics.inception import InceptionFeatures

            self._inception = InceptionFeatures().to(self.args.device)
        return self._inception

    @property
    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the test set; computed once (as ``hamgan-eval stats`` does) and cached."""
        if self._ref is None:
            from hamgan.metrics.fid import load_stats

            path = reference_path(self.args)
            if not path.is_file():
                if self.args.ref is not None:
                    raise StudyError(f"--ref '{path}' does not exist; make it with: {stats_command(self.args)}")
                self._make_reference(path)
            self._ref = load_stats(path)
        return self._ref

    def _make_reference(self, path: Path) -> None:
        from hamgan.config import load_config
        from hamgan.data import build_dataset
        from hamgan.metrics.fid import dataset_statistics, save_stats

        print(f"reference statistics: {self.args.ref_n} Fashion-MNIST test images -> {path}", flush=True)
        cfg = load_config(self.args.configs / MODELS["hamgan"].config, ["data.split=test"])
        ext = dataset_statistics(build_dataset(cfg), self.inception, self.args.ref_n, batch_size=50,
                                 device=self.args.device, num_workers=0, seed=0, progress=False)
        save_stats(path, ext.stats.mean(), ext.stats.cov())  # written last: a cut-short run leaves no file

    def fid(self, checkpoint: Path) -> float:
        """FID of ``--n`` samples of the checkpoint's EMA generator; the random Ham bases are seeded too."""
        from hamgan.checkpoint import load_generator
        from hamgan.metrics.fid import frechet_distance, generator_statistics

        a = self.args
        mu_ref, sigma_ref = self.reference
        G, _, _ = load_generator(checkpoint, ema=True, device=a.device)
        devices = [a.device] if str(a.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="FID from")  # N < 2048 is stated in the summary instead
            torch.manual_seed(a.fid_seed)
            ext = generator_statistics(G, self.inception, a.n, a.fid_batch_size, None, a.fid_seed, a.device,
                                       progress=False)
        return frechet_distance(ext.stats.mean(), ext.stats.cov(), mu_ref, sigma_ref)


def eval_key(args: argparse.Namespace, step: int) -> dict[str, Any]:
    """What an evaluation depends on besides the checkpoint: a cached result is reused only when all match."""
    return {"step": step, "n": args.n, "ref": reference_path(args).name, "fid_seed": args.fid_seed,
            "ema": True, "batch_size": args.fid_batch_size}


def load_evaluations(run: Run) -> list[dict[str, Any]]:
    path = run.folder / "fid.json"
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["evaluations"]
    except (json.JSONDecodeError, KeyError, TypeError):
        print(f"warning: '{path}' is damaged; its evaluations are redone", file=sys.stderr)
        return []


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename): an interruption never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def cached(evaluations: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any] | None:
    return next((e for e in evaluations if all(e.get(k) == v for k, v in key.items())), None)


def evaluate(run: Run, args: argparse.Namespace, evaluator: Evaluator) -> None:
    """FID of every eval-step checkpoint of ``run`` not yet in ``RUN/fid.json``; saved after each one."""
    from hamgan.checkpoint import checkpoint_path

    evaluations = load_evaluations(run)
    for step in args.eval_steps:
        key = eval_key(args, step)
        if cached(evaluations, key):
            continue
        ckpt = checkpoint_path(run.folder, step)
        if not ckpt.is_file():
            print(f"warning: {ckpt} is missing (was the run trained with other --eval-steps?); no FID at step "
                  f"{step}", file=sys.stderr)
            continue
        start = time.perf_counter()
        fid = evaluator.fid(ckpt)
        seconds = time.perf_counter() - start
        evaluations.append({**key, "fid": fid, "eval_s": round(seconds, 2)})
        write_json(run.folder / "fid.json", {"evaluations": evaluations})
        print(f"  FID {run.name} step {step}: {fid:.2f} ({args.n} samples, {seconds:.0f} s)", flush=True)


# --------------------------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------------------------

ROW_FIELDS = ["model", "seed", "step", "fid", "n", "ref", "wall_s", "images_per_s", "eval_s", "context_scale_g",
              "context_scale_d", "params_g", "params_d", "context_params_g", "context_params_d", "context_macs_g",
              "context_macs_d", "run"]


def context_scales(run: Run, step: int) -> tuple[float | None, float | None]:
    """The learnt residual scale of the context block (Hamburger ``sigma``, attention ``gamma``; both start at 0)
    in the raw G and D at ``step``: how much each network uses the block. None without a block or checkpoint."""
    from hamgan.checkpoint import checkpoint_path, load_checkpoint

    ckpt = checkpoint_path(run.folder, step)
    if not ckpt.is_file():
        return None, None
    state = load_checkpoint(ckpt)
    scales = []
    for net in ("G", "D"):
        values = [float(v) for k, v in state[net].items() if k in ("context.sigma", "context.gamma")]
        scales.append(round(values[0], 5) if values else None)
    return scales[0], scales[1]


def collect_rows(runs: list[Run], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per cached evaluation of the runs (current options only)."""
    rows = []
    for run in runs:
        if not (run.folder / "config.yaml").is_file():
            continue
        evaluations = load_evaluations(run)
        if not evaluations:
            continue
        facts = model_facts(run)
        clock = training_clock(run.folder / "metrics.jsonl")
        final_s = training_seconds(clock, args.steps)
        images_per_s = facts["batch_size"] * args.steps / final_s if final_s else None
        for step in args.eval_steps:
            e = cached(evaluations, eval_key(args, step))
            if e is None:
                continue
            wall = training_seconds(clock, step)
            scale_g, scale_d = context_scales(run, step)
            rows.append({
                "model": run.model, "seed": run.seed, "step": step, "fid": e["fid"], "n": e["n"], "ref": e["ref"],
                "wall_s": None if wall is None else round(wall, 2),
                "images_per_s": None if images_per_s is None else round(images_per_s, 2),
                "eval_s": e.get("eval_s"), "context_scale_g": scale_g, "context_scale_d": scale_d,
                **{k: facts[k] for k in ROW_FIELDS if k in facts},
                "run": str(run.folder),
            })
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(rows: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Per model: FID mean / std / per-seed values at every evaluated step, and the costs."""
    out: dict[str, Any] = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        if not mine:
            continue
        steps: dict[int, Any] = {}
        for step in sorted({r["step"] for r in mine}):
            at = sorted((r for r in mine if r["step"] == step), key=lambda r: r["seed"])
            fid_mean, fid_std = _mean_std([r["fid"] for r in at])
            walls = [r["wall_s"] for r in at if r["wall_s"] is not None]
            steps[step] = {
                "fid_mean": fid_mean, "fid_std": fid_std, "seeds": [r["seed"] for r in at],
                "fids": [r["fid"] for r in at], "wall_s_mean": float(np.mean(walls)) if walls else None,
                "context_scales_g": [r.get("context_scale_g") for r in at],
                "context_scales_d": [r.get("context_scale_d") for r in at],
            }
        speeds = sorted({(r["seed"], r["images_per_s"]) for r in mine if r["images_per_s"] is not None})
        speed_mean, speed_std = _mean_std([s for _, s in speeds]) if speeds else (None, None)
        first = mine[0]
        out[model] = {
            "label": MODELS[model].label,
            "final_step": max(steps),
            "final": steps[max(steps)],
            "steps": steps,
            "images_per_s_mean": speed_mean,
            "images_per_s_std": speed_std,
            **{k: first[k] for k in ("params_g", "params_d", "context_params_g", "context_params_d",
                                     "context_macs_g", "context_macs_d")},
        }
    return out


def write_rows(rows: list[dict[str, Any]], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "runs.json", rows)
    with open(results / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------------------------------
# Plots, sample grids, checkpoints
# --------------------------------------------------------------------------------------------------------------------


def plot_fid(summary: dict[str, Any], x: str, path: Path, title: str) -> None:
    """FID (mean over seeds, band +- 1 std) against steps (``x="step"``) or training seconds (``x="wall"``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for model, s in summary.items():
        points = sorted(s["steps"].items())
        if x == "wall":
            points = [(p["wall_s_mean"] / 60, p) for _, p in points if p["wall_s_mean"] is not None]
        xs = np.array([float(k) for k, _ in points])
        mean = np.array([p["fid_mean"] for _, p in points])
        std = np.array([p["fid_std"] for _, p in points])
        if len(xs) == 0:
            continue
        seeds = max(len(p["seeds"]) for _, p in points)
        (line,) = ax.plot(xs, mean, marker="o", ms=3, label=f"{s['label']} ({seeds} seeds)")
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training steps" if x == "step" else "training wall-clock (minutes, this CPU)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def sample_grid(run: Run, step: int, path: Path) -> bool:
    """One row per class (10 samples, the same latents in every row) of the run's EMA generator at ``step``."""
    from torchvision.utils import save_image

    from hamgan.checkpoint import checkpoint_path, load_generator
    from hamgan.sample import class_grid

    ckpt = checkpoint_path(run.folder, step)
    if not ckpt.is_file():
        return False
    G, _, _ = load_generator(ckpt, ema=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the Hamburger's random bases
        grid = class_grid(G, list(range(G.num_classes)), GRID_PER_CLASS, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=GRID_PER_CLASS, padding=1)
    return True


def export_checkpoint(run: Run, step: int, folder: Path) -> Path | None:
    """A small copy of the run's final checkpoint for ``hamgan-eval compare``: config, step, G and EMA G only
    (no D, no optimiser, so it cannot resume training)."""
    from hamgan.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    ckpt = checkpoint_path(run.folder, step)
    if not ckpt.is_file():
        return None
    state = load_checkpoint(ckpt)
    out = folder / f"{run.model}-seed{run.seed}.pt"
    save_checkpoint({k: state[k] for k in ("config", "step", "G", "G_ema")}, out)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------------


def _fmt_macs(n: int) -> str:
    return "-" if not n else f"{n / 1e6:.2f}M"


def _fmt_scales(point: dict[str, Any]) -> str:
    """Mean over seeds of |sigma| / |gamma| in G and D ("-" without a context block)."""
    cells = []
    for net in ("g", "d"):
        values = [abs(v) for v in point.get(f"context_scales_{net}", []) if v is not None]
        cells.append(f"{np.mean(values):.3f}" if values else "-")
    return "-" if cells == ["-", "-"] else " / ".join(cells)


def _fmt_params(n: int) -> str:
    return f"{n / 1e3:.1f}k"


def commands(args: argparse.Namespace, argv: list[str], exported: list[Path]) -> dict[str, Any]:
    """The exact commands behind the results: the driver itself and what it runs."""
    example = plan_runs(args)[0]
    study = [a for a in argv if a != "--report-only"]
    cmds = {
        "study": shlex.join(["python", "scripts/reproduce_fmnist.py", *study]),
        "report_only": shlex.join(["python", "scripts/reproduce_fmnist.py", *study, "--report-only"]),
        "train_example": shlex.join(["python", *(shown(a) if a.endswith(".yaml") else a
                                                  for a in train_command(example, args)[1:])]),
        "reference_stats": stats_command(args),
    }
    if exported:
        ckpts = " ".join(str(p) for p in exported)
        cmds["compare"] = (f"hamgan-eval compare {ckpts} --ref {reference_path(args)} --n {args.n} "
                           f"--seed {args.fid_seed} --batch-size {args.fid_batch_size}")
    return cmds


def environment() -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def summary_markdown(summary: dict[str, Any], args: argparse.Namespace, cmds: dict[str, Any],
                     env: dict[str, Any], failed: list[str], compute: dict[str, float]) -> str:
    steps = sorted({int(k) for s in summary.values() for k in s["steps"]})
    lines = [
        "# Fashion-MNIST 32x32: Hamburger vs self-attention vs no context block",
        "",
        f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}) per model, {args.steps} steps each with identical "
        f"hyperparameters (configs/fmnist32_*.yaml{', ' + ' '.join(args.overrides) if args.overrides else ''}). "
        f"FID of {args.n} EMA-generator samples against {args.ref_n} Fashion-MNIST test images (real Inception "
        f"weights), mean ± sample std over seeds.",
        "",
        "| model | FID @ final step | per seed | params G / D | context block G / D: params, MACs | "
        "learnt scale G / D | train images/s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for model, s in summary.items():
        f = s["final"]
        per_seed = ", ".join(f"{v:.1f}" for v in f["fids"])
        speed = "-" if s["images_per_s_mean"] is None else f"{s['images_per_s_mean']:.0f} ± {s['images_per_s_std']:.0f}"
        ctx = ("-" if not s["context_params_g"] else
               f"{s['context_params_g']} / {s['context_params_d']}, "
               f"{_fmt_macs(s['context_macs_g'])} / {_fmt_macs(s['context_macs_d'])}")
        lines.append(
            f"| {s['label']} | {f['fid_mean']:.2f} ± {f['fid_std']:.2f} (step {s['final_step']}, "
            f"{len(f['seeds'])} seeds) | {per_seed} | {_fmt_params(s['params_g'])} / {_fmt_params(s['params_d'])} "
            f"| {ctx} | {_fmt_scales(f)} | {speed} |")
    lines += ["", "FID (mean ± std over seeds) at every evaluated step:", "",
              "| model | " + " | ".join(str(s) for s in steps) + " |",
              "| --- |" + " ---: |" * len(steps)]
    for model, s in summary.items():
        cells = []
        for step in steps:
            p = s["steps"].get(step)
            cells.append("-" if p is None else f"{p['fid_mean']:.2f} ± {p['fid_std']:.2f}")
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![FID vs steps](fid_vs_steps.png) ![FID vs wall-clock](fid_vs_wallclock.png)",
        "",
        "Notes:",
        f"- FID from {args.n} samples" + (" (fewer than the 2048 Inception features: biased upwards, comparable only "
                                          "between rows with the same N, not with published numbers)."
                                          if args.n < 2048 else "."),
        "- Context MACs: one forward at batch 1 (hamgan.info), including the Hamburger's no-grad iterations.",
        "- Learnt scale: mean over seeds of |sigma| (Hamburger) or |gamma| (attention) of the raw G and D at the final "
        "step, the learnt weight of the block's residual branch (0 at initialisation: a block left at 0 is unused).",
        "- Images/s and wall-clock: training only (from metrics.jsonl speeds: no start-up, sample grids, checkpoints, "
        f"FID), measured on {env['cpu_count']} CPU cores ({env['cpu']}), which may have been shared with other work.",
        "- Sample grids: samples/<model>.png, one row per class (the same 10 latents in every row), final EMA "
        f"generator of the first of the seeds {args.seeds} whose run finished.",
        f"- Compute: {compute['train_s'] / 60:.0f} min of training ({compute['runs']} runs) and "
        f"{compute['eval_s'] / 60:.0f} min of FID evaluation (the first evaluation of a work folder includes "
        f"the reference statistics, computed once).",
    ]
    if failed:
        lines.append(f"- Failed runs (not in the table): {', '.join(failed)}.")
    lines += ["", "Commands:", "", "```"]
    lines += [f"{cmd}" for cmd in cmds.values()]
    lines += ["```", "", f"Generated {env['date']} with torch {env['torch']}, Python {env['python']}.", ""]
    return "\n".join(lines)


def compute_time(rows: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Seconds the study spent training (every run to ``steps``) and computing FIDs, from the result rows."""
    train = {(r["model"], r["seed"]): r["wall_s"] for r in rows if r["step"] == steps and r["wall_s"] is not None}
    return {"train_s": round(sum(train.values()), 1),
            "eval_s": round(sum(r.get("eval_s") or 0.0 for r in rows), 1), "runs": len(train)}


def check_against(summary: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Compare this study's final FIDs with an earlier study's spread; returns the runs outside mean +- 2 std.

    Only like is compared with like: the step budget, N, reference size, FID seed and overrides must match.
    """
    path = args.check_against
    try:
        earlier = json.loads(path.read_text())
        options, models = earlier["options"], earlier["models"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise StudyError(f"--check-against '{path}' is not a summary.json of this driver ({e}); point it at "
                         f"results/fmnist32/summary.json") from None
    mine = {"steps": args.steps, "n": args.n, "ref_n": args.ref_n, "fid_seed": args.fid_seed,
            "overrides": args.overrides}
    differ = {k: (v, options.get(k)) for k, v in mine.items() if options.get(k) != v}
    if differ:
        raise StudyError("--check-against compares only studies with the same budget and FID protocol; these "
                         "options differ (this run, earlier): "
                         + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items()))
    outside: list[str] = []
    print(f"\ncheck against {path} (final step {args.steps}, FID@{args.n}):")
    for model, s in summary.items():
        ref = models.get(model)
        if ref is None or s["final_step"] != args.steps:
            print(f"  {model}: not in the earlier study or not trained to step {args.steps}; skipped")
            continue
        mean, std = ref["final"]["fid_mean"], ref["final"]["fid_std"]
        low, high = mean - 2 * std, mean + 2 * std
        for seed, fid in zip(s["final"]["seeds"], s["final"]["fids"]):
            inside = low <= fid <= high
            where = ("within" if inside else "OUTSIDE") + f" {mean:.2f} ± 2 x {std:.2f} = [{low:.2f}, {high:.2f}]"
            seen = f"; earlier seeds {min(ref['final']['fids']):.2f}..{max(ref['final']['fids']):.2f}"
            print(f"  {model} seed {seed}: FID {fid:.2f} {where}{seen}")
            if not inside:
                outside.append(f"{model}-seed{seed}")
    return outside


def report(runs: list[Run], args: argparse.Namespace, argv: list[str], failed: list[str]) -> dict[str, Any]:
    """Write every result file from the cached evaluations; returns the summary."""
    results = args.results
    rows = collect_rows(runs, args)
    if not rows and (results / "runs.json").is_file() and args.report_only:
        rows = json.loads((results / "runs.json").read_text())  # run folders gone: re-aggregate the committed rows
        print(f"no run folders under {args.work}; aggregating {results / 'runs.json'}")
    if not rows:
        raise StudyError(f"no evaluated runs under {args.work}; run the study without --report-only first")
    write_rows(rows, results)
    summary = summarise(rows, args.models)

    exported: list[Path] = []
    for model in summary:  # from the first seed whose final checkpoint exists
        any(sample_grid(r, args.steps, results / "samples" / f"{model}.png") for r in runs if r.model == model)
    if args.checkpoints is not None:
        for run in runs:
            out = args.checkpoints / f"{run.model}-seed{run.seed}.pt"
            if run.folder.is_dir():
                out = export_checkpoint(run, args.steps, args.checkpoints)
            if out is not None and out.is_file():
                exported.append(out)

    title = f"Fashion-MNIST 32x32, {len(args.seeds)} seeds, FID@{args.n} (band: ±1 std over seeds)"
    plot_fid(summary, "step", results / "fid_vs_steps.png", title)
    plot_fid(summary, "wall", results / "fid_vs_wallclock.png", title)
    cmds = commands(args, argv, exported)
    env = environment()
    compute = compute_time(rows, args.steps)
    write_json(results / "summary.json", {
        "models": summary, "commands": cmds, "environment": env, "failed_runs": failed,
        "compute": compute,
        "options": {"models": args.models, "seeds": args.seeds, "steps": args.steps, "eval_steps": args.eval_steps,
                    "n": args.n, "ref_n": args.ref_n, "fid_seed": args.fid_seed, "overrides": args.overrides},
    })
    text = summary_markdown(summary, args, cmds, env, failed, compute)
    (results / "summary.md").write_text(text)
    print("\n" + text)
    return summary


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from hamgan.checkpoint import CheckpointError
    from hamgan.metrics.inception import InceptionWeightsError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        check_options(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        runs = plan_runs(args)
        failed: list[str] = []
        if not args.report_only:
            evaluator = Evaluator(args)
            for i, run in enumerate(runs, 1):
                print(f"[{i}/{len(runs)}] {run.name}", flush=True)
                if not train(run, args):
                    failed.append(run.name)
                    continue
                evaluate(run, args, evaluator)
        summary = report(runs, args, argv, failed)
        if args.check_against is not None and check_against(summary, args):
            return 1
    except (StudyError, ValueError, CheckpointError, InceptionWeightsError) as e:  # ConfigError, StatsError too
        print(f"reproduce_fmnist: error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
