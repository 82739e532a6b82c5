"""What the study trains and evaluates: its models, options, runs, training commands and evaluation schedule.

    options = StudyOptions(models=parse_models("hamgan:5,sagan:5,none:5"), steps=4000)
    check_options(options)                     # fills in the intermediate eval steps; StudyError when bad
    for run in plan_runs(options): print(shlex.join(train_command(run, options)))
    specs = eval_specs(options)                # {step: EvalSpec}: FID@mid_n before the last step, all metrics at it

Every model is one of ``configs/fmnist32_{hamgan,sagan,none}.yaml`` (identical hyperparameters; the per-network
schema is ``model.g.*`` / ``model.d.*``) plus the overrides of :data:`MODELS`, plus the study's ``--set`` overrides,
applied to all. Each (model, seed) trains in its own folder ``WORK/<model>-seed<seed>``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from studies.fmnist32.evaluation import EvalSpec

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIGS = REPO / "configs"
# The study that fits 8 hours of the 2-core machine at 4000 steps (README): ham-g / ham-d (3 seeds each) would add
# about 2.2 hours; run them with --models ham-g:3,ham-d:3.
DEFAULT_MODELS = "hamgan:5,sagan:5,none:5,ham-cd:3,ham-vq:3"
DEFAULT_SEEDS = (0, 1, 2)
FINAL_METRICS = ("fid", "kid", "pr", "dc")
MIN_FINAL_N = 2048  # below the 2048 Inception features FID is rank-deficient (biased); tests only
STUDY_KEYS = ("train.seed", "train.steps", "train.ckpt_every", "train.keep_last", "train.threads")
QUIET = ("log.wandb=disabled", "log.tqdm=false")  # the driver reads metrics.jsonl, not the progress bar


class StudyError(RuntimeError):
    """A bad option or a state of the work folder the study cannot continue from; the message names the fix."""


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
    "ham-cd": ModelSpec("fmnist32_hamgan.yaml", ("model.g.ham.kind=cd", "model.d.ham.kind=cd"), "Ham CD"),
    "ham-vq": ModelSpec("fmnist32_hamgan.yaml", ("model.g.ham.kind=vq", "model.d.ham.kind=vq"), "Ham VQ"),
    "ham-g": ModelSpec("fmnist32_hamgan.yaml", ("model.d.context=none",), "Ham NMF in G only"),
    "ham-d": ModelSpec("fmnist32_hamgan.yaml", ("model.g.context=none",), "Ham NMF in D only"),
}


def parse_models(text: str, seeds: tuple[int, ...] = DEFAULT_SEEDS) -> dict[str, tuple[int, ...]]:
    """``"hamgan:5,sagan,none:1"`` -> ``{"hamgan": (0..4), "sagan": seeds, "none": (0,)}``, in the given order.

    ``name:k`` means seeds 0..k-1; a bare name takes ``seeds`` (``--seeds``).
    """
    models: dict[str, tuple[int, ...]] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, _, count = item.partition(":")
        name = name.strip()
        if name not in MODELS:
            raise StudyError(f"unknown model '{name}' in --models; choose from {', '.join(MODELS)}")
        if name in models:
            raise StudyError(f"model '{name}' is given twice in --models '{text}'")
        if count:
            try:
                k = int(count)
            except ValueError:
                k = 0
            if k < 1:
                raise StudyError(f"--models '{item}': the seed count after ':' must be an integer >= 1, e.g. "
                                 f"{name}:3 for seeds 0,1,2")
            models[name] = tuple(range(k))
        else:
            models[name] = tuple(seeds)
    if not models:
        raise StudyError(f"--models '{text}' names no model; choose from {', '.join(MODELS)}")
    return models


@dataclass
class StudyOptions:
    """Everything that decides what the study trains and how it evaluates (the command line's options).

    steps: G steps of every run; eval_steps: the intermediate steps (< steps) with an FID@mid_n (filled in by
    :func:`check_options` when empty: steps/4, steps/2, 3 steps/4); final_n: samples of the final evaluation (all
    metrics, plus FID@mid_n of its first mid_n samples); bn_batches x bn_batch_size: standing BN statistics;
    threads: torch threads per training (None: cores // jobs).
    """

    models: dict[str, tuple[int, ...]]
    steps: int = 4000
    eval_steps: tuple[int, ...] = ()
    mid_n: int = 2000
    final_n: int = 5000
    fid_seed: int = 0
    bn_batches: int = 16
    bn_batch_size: int = 100
    eval_batch_size: int = 100
    ref_n: int = 10000
    ref: Path | None = None
    work: Path = Path("runs/fmnist32_study")
    results: Path = Path("results/fmnist32")
    configs: Path = DEFAULT_CONFIGS
    overrides: tuple[str, ...] = ()
    jobs: int = 2
    threads: int | None = None
    allow_small_n: bool = False
    pairs: tuple[tuple[str, str], ...] = (("hamgan", "sagan"), ("hamgan", "none"))
    seed_spread: float | None = None
    plateau_spread: Literal["seeds", "paired"] = "seeds"
    checkpoints: Path | None = None

    @property
    def reference(self) -> Path:
        """The reference features file: ``--ref``, else ``WORK/fmnist32_test_<ref_n>_features.npz``."""
        return self.ref if self.ref is not None else self.work / f"fmnist32_test_{self.ref_n}_features.npz"

    @property
    def all_eval_steps(self) -> list[int]:
        return sorted({*self.eval_steps, self.steps})

    @property
    def seeds(self) -> list[int]:
        """Every seed of any model, ascending."""
        return sorted({s for seeds in self.models.values() for s in seeds})


def default_eval_steps(steps: int) -> tuple[int, ...]:
    """Three evenly spaced steps before ``steps``: S/4, S/2, 3S/4 (fewer when S < 4)."""
    return tuple(sorted({max(1, round(steps * k / 4)) for k in (1, 2, 3)} - {steps}))


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``"hamgan-sagan,hamgan-none"`` -> ``(("hamgan", "sagan"), ("hamgan", "none"))`` (names may hold '-')."""
    pairs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        split = [(item[:i], item[i + 1:]) for i, c in enumerate(item) if c == "-"
                 if item[:i] in MODELS and item[i + 1:] in MODELS]
        if len(split) != 1:
            raise StudyError(f"--pairs '{item}' is not A-B of two models from {', '.join(MODELS)}, e.g. "
                             f"hamgan-sagan")
        pairs.append(split[0])
    return tuple(pairs)


def check_options(o: StudyOptions) -> None:
    """Ranges and consistency of the options (StudyError naming the fix); fills in the default ``eval_steps``."""
    for name in ("steps", "mid_n", "final_n", "bn_batches", "bn_batch_size", "eval_batch_size", "ref_n", "jobs"):
        if getattr(o, name) < 1:
            raise StudyError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(o, name)}")
    if min(o.mid_n, o.final_n) < 2:
        raise StudyError("--mid-n and --final-n must be >= 2 (FID needs a covariance)")
    if o.final_n < MIN_FINAL_N and not o.allow_small_n:
        raise StudyError(f"--final-n {o.final_n} is below {MIN_FINAL_N} (the Inception feature dimension: a biased, "
                         f"rank-deficient FID); use --final-n 5000, or --allow-small-n for a smoke test")
    if o.mid_n > o.final_n:
        raise StudyError(f"--mid-n {o.mid_n} exceeds --final-n {o.final_n}: the final step's FID@mid_n comes from the "
                         f"first mid_n of its final_n samples; lower --mid-n or raise --final-n")
    if o.threads is not None and o.threads < 1:
        raise StudyError(f"--threads must be >= 1, got {o.threads}")
    if not o.eval_steps:
        o.eval_steps = default_eval_steps(o.steps)
    bad = [s for s in o.eval_steps if not 1 <= s <= o.steps]
    if bad:
        raise StudyError(f"--eval-steps {bad} outside 1..--steps ({o.steps}); evaluate steps the runs reach")
    o.eval_steps = tuple(sorted(set(o.eval_steps) - {o.steps}))
    for model, seeds in o.models.items():
        if model not in MODELS:
            raise StudyError(f"unknown model '{model}'; choose from {', '.join(MODELS)}")
        if len(set(seeds)) != len(seeds):
            raise StudyError(f"duplicate seeds {list(seeds)} for model '{model}'; give each seed once (--seeds)")
        if any(s < 0 for s in seeds):
            raise StudyError(f"seeds must be >= 0, got {list(seeds)} for model '{model}'")
    for text in o.overrides:
        key = text.split("=", 1)[0].strip()
        if "=" not in text:
            raise StudyError(f"--set '{text}' must look like dotted.key=value, e.g. --set train.batch_size=64")
        if key in STUDY_KEYS:
            raise StudyError(f"--set {key} is set by the study itself; use --seeds / --models name:k, --steps, "
                             f"--eval-steps or --threads instead")
    for a, b in o.pairs:
        if a == b:
            raise StudyError(f"--pairs {a}-{b} compares a model with itself")
    if o.plateau_spread == "paired" and not any(a in o.models and b in o.models for a, b in o.pairs):
        raise StudyError("--plateau-spread paired needs a pair of two studied models (--pairs A-B); "
                         "use --plateau-spread seeds for a study without one")
    for name in o.models:
        path = o.configs / MODELS[name].config
        if not path.is_file():
            raise StudyError(f"config '{path}' of model '{name}' not found; point --configs at the repo's configs/")


def checkpoint_schedule(steps: int, eval_steps: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """``(train.ckpt_every, train.keep_last)``: a checkpoint at every eval step and at ``steps``, all kept.

    ckpt_every is the gcd of the eval steps and ``steps``; keep_last counts every checkpoint of the run (+1 spare).
    """
    every = math.gcd(steps, *eval_steps)
    return every, steps // every + 1


def threads_per_job(jobs: int, threads: int | None = None, cores: int | None = None) -> int:
    """Torch threads of each of ``jobs`` concurrent trainings: ``threads`` when given, else max(1, cores // jobs)."""
    if threads is not None:
        return threads
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // jobs)


@dataclass(frozen=True)
class Run:
    """One training of the study: ``model`` with ``train.seed = seed`` in ``folder``."""

    model: str
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"


def plan_runs(o: StudyOptions) -> list[Run]:
    """Seeds outer, models inner: an interrupted study has every model at the first seeds."""
    return [Run(m, s, o.work / f"{m}-seed{s}") for s in o.seeds for m, seeds in o.models.items() if s in seeds]


def model_overrides(model: str, o: StudyOptions) -> list[str]:
    """The overrides that make ``model`` from its config file, then the study's ``--set`` overrides."""
    return [*MODELS[model].overrides, *o.overrides]


def train_command(run: Run, o: StudyOptions, python: str = sys.executable) -> list[str]:
    """The ``python -m hamgan.train`` command of ``run``; it resumes by itself from the folder's latest checkpoint."""
    every, keep = checkpoint_schedule(o.steps, o.eval_steps)
    return [python, "-m", "hamgan.train", str(o.configs / MODELS[run.model].config), "--out", str(run.folder),
            "--steps", str(o.steps), *model_overrides(run.model, o), f"train.seed={run.seed}",
            f"train.ckpt_every={every}", f"train.keep_last={keep}",
            f"train.threads={threads_per_job(o.jobs, o.threads)}", *QUIET]


def eval_specs(o: StudyOptions) -> dict[int, EvalSpec]:
    """``{step: EvalSpec}``: FID of mid_n samples at the intermediate steps; at ``steps`` FID, KID, precision /
    recall, density / coverage of final_n samples plus the FID of their first mid_n (``fid_at_<mid_n>``)."""
    common = dict(bn_batches=o.bn_batches, bn_batch_size=o.bn_batch_size, seed=o.fid_seed,
                  batch_size=o.eval_batch_size)
    specs = {s: EvalSpec(n=o.mid_n, **common) for s in o.eval_steps}
    specs[o.steps] = EvalSpec(n=o.final_n, metrics=FINAL_METRICS, fid_subsets=(o.mid_n,), **common)
    return specs
