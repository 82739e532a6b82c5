"""Evaluation of a study's checkpoints: every metric from one Inception pass, cached per run, resumable.

    ref = ensure_reference(Path("runs/fmnist32_study/fmnist32_test_10000_features.npz"), "configs/fmnist32_hamgan.yaml")
    ev = Evaluator(ref)
    spec = EvalSpec(n=5000, metrics=("fid", "kid", "pr", "dc"))          # final step
    row = ev.evaluate_cached(Path("runs/pilot/hamgan-seed0"), 8000, spec)  # {"fid": ..., "kid_mean": ..., ...}

One evaluation = ``spec.n`` samples of the checkpoint's **EMA** generator with **standing** batch-norm statistics
(BigGAN's: S batches of samples, :mod:`hamgan.bn_modes`) and its spectral-norm vectors refreshed for the EMA weights;
labels uniform over the classes, latents from ``spec.seed`` (the same sampling seed for every checkpoint), images
quantised to uint8 as a PNG stores them (pytorch-fid's protocol), against a **features file** of the reference set
(:func:`ensure_reference`), so that KID, precision/recall and density/coverage come from the same pass as FID.

Cache: ``RUN/evals.jsonl``, one JSON object per line, appended after each evaluation (an interruption loses at most
the evaluation in progress). A cached line is reused only when every field of :meth:`EvalSpec.key` matches (step,
N, metrics, BN mode, seed, batch size, reference, protocol): change an option and the evaluation is redone.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hamgan.bn_modes import SN_REFRESH_EMA, BNMode

CACHE_NAME = "evals.jsonl"
PROTOCOL = "pytorch-fid"


@dataclass(frozen=True)
class EvalSpec:
    """What one evaluation computes and how it samples.

    n: generated samples; metrics: subset of :data:`hamgan.metrics.summary.METRICS` without "is" (the offline
    Inception weights have a zero classifier head); bn_batches x bn_batch_size: the standing statistics; seed: the
    sampling seed (latents, labels, Ham bases, standing draws); batch_size: generator and Inception batch;
    fid_subsets: also the FID of the first m of the n samples for each m (``fid_at_<m>``), e.g. the final step's
    FID@2000 beside its FID@5000 from the same pass, comparable with the intermediate steps' FID@2000.
    """

    n: int
    metrics: tuple[str, ...] = ("fid",)
    bn_batches: int = 16
    bn_batch_size: int = 100
    sn_iterations: int = SN_REFRESH_EMA
    seed: int = 0
    batch_size: int = 100
    fid_subsets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        from hamgan.metrics.summary import METRICS

        if self.n < 2:
            raise ValueError(f"an evaluation needs n >= 2 samples (FID needs a covariance), got {self.n}")
        unknown = set(self.metrics) - (set(METRICS) - {"is"})
        if unknown or "fid" not in self.metrics:
            raise ValueError(f"metrics must include fid and come from fid, kid, pr, dc; got {list(self.metrics)}")
        if any(not 2 <= m <= self.n for m in self.fid_subsets):
            raise ValueError(f"fid_subsets {list(self.fid_subsets)} must lie in 2..n ({self.n})")

    @property
    def bn(self) -> BNMode:
        return BNMode("standing", self.bn_batches, self.bn_batch_size, self.sn_iterations)

    def key(self, step: int, reference: str) -> dict[str, Any]:
        """The fields a cached evaluation must match to be reused."""
        return {"step": step, "reference": reference, "protocol": PROTOCOL, "ema": True, **self.bn.as_dict(),
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                   if k not in ("bn_batches", "bn_batch_size", "sn_iterations")}}


def load_cache(run: Path) -> list[dict[str, Any]]:
    """The cached evaluations of a run folder (a damaged line, e.g. cut by a crash, is skipped with a warning)."""
    path = run / CACHE_NAME
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"warning: {path} line {i} is damaged; that evaluation is redone", file=sys.stderr)
    return rows


def find_cached(rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any] | None:
    """The last cached row whose fields equal ``key``'s."""
    return next((r for r in reversed(rows) if all(r.get(k) == v for k, v in key.items())), None)


def cached_row(run: Path, step: int, spec: EvalSpec, reference: str) -> dict[str, Any] | None:
    """The cached evaluation of (run, step, spec) against the reference file named ``reference``, else None."""
    return find_cached(load_cache(run), spec.key(step, reference))


def reference_n(path: Path) -> int | None:
    """The number of images of a features file, read without loading its features (None when it does not say)."""
    with np.load(path) as f:
        return int(f["n"]) if "n" in f.files else None


def append_cache(run: Path, row: dict[str, Any]) -> None:
    with open(run / CACHE_NAME, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def ensure_reference(path: Path, config: str | Path, n: int | None = None, batch_size: int = 100,
                     device: str = "cpu") -> Path:
    """A features file of the test split of ``config``'s data set (all images, or ``n``), made once.

    Equal to ``hamgan-eval stats CONFIG data.split=test --features [--n N] --out PATH``. Written to a temporary name
    and renamed, so an interrupted run leaves no half file.
    """
    if path.is_file():
        return path
    from hamgan.config import load_config
    from hamgan.data import build_dataset
    from hamgan.metrics.features import dataset_statistics, save_features
    from hamgan.metrics.inception import InceptionFeatures

    cfg = load_config(config, ["data.split=test"])
    dataset = build_dataset(cfg)
    print(f"reference features: {n or len(dataset)} test images of {config} -> {path}", flush=True)
    ext = dataset_statistics(dataset, InceptionFeatures().to(device), n, batch_size, device, num_workers=0,
                             seed=0, progress=False, keep_features=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    save_features(tmp, ext, PROTOCOL)
    tmp.replace(path)
    return path


class Evaluator:
    """Evaluates checkpoints against one reference features file; Inception and reference are loaded once."""

    def __init__(self, reference: Path, device: str = "cpu") -> None:
        from hamgan.metrics.features import load_reference

        self.reference_path = Path(reference)
        self.reference = load_reference(self.reference_path)
        self.reference.need_features("the study's KID, precision/recall and density/coverage")
        if self.reference.protocol not in (None, PROTOCOL):
            raise ValueError(f"reference '{reference}' was made under protocol {self.reference.protocol}; the study "
                             f"uses {PROTOCOL}")
        self.device = device
        self._inception = None

    @property
    def inception(self):
        if self._inception is None:
            from hamgan.metrics.inception import InceptionFeatures

            self._inception = InceptionFeatures().to(self.device)
        return self._inception

    def evaluate(self, checkpoint: Path, spec: EvalSpec) -> dict[str, Any]:
        """The metrics of ``spec`` for one checkpoint (EMA generator, standing statistics); no cache."""
        from hamgan.checkpoint import load_generator_ema
        from hamgan.metrics.features import generator_statistics
        from hamgan.metrics.fid import frechet_distance
        from hamgan.metrics.summary import summarize

        start = time.perf_counter()
        G, _, step, is_ema = load_generator_ema(checkpoint, True, self.device)
        if not is_ema:
            raise ValueError(f"checkpoint '{checkpoint}' has no EMA generator; the study evaluates EMA generators "
                             f"(train.ema.enabled: true)")
        devices = [self.device] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="FID from")  # N < 2048: stated in every table instead
            torch.manual_seed(spec.seed)  # the Hamburger's random bases
            ext = generator_statistics(G, self.inception, spec.n, spec.batch_size, None, spec.seed, self.device,
                                       progress=False, bn=spec.bn,
                                       keep_features=bool(spec.fid_subsets) or any(m != "fid" for m in spec.metrics))
        row = summarize(ext, self.reference, metrics=spec.metrics)
        row.pop("skipped", None)
        for m in spec.fid_subsets:
            f = ext.features[:m].double().numpy()
            row[f"fid_at_{m}"] = frechet_distance(f.mean(0), np.cov(f, rowvar=False), self.reference.mu,
                                                  self.reference.sigma)
        return {**spec.key(step, self.reference_path.name), **row, "eval_s": round(time.perf_counter() - start, 1)}

    def evaluate_cached(self, run: Path, step: int, spec: EvalSpec) -> dict[str, Any] | None:
        """The cached row of (run, step, spec), else evaluate ``RUN/ckpt-<step>.pt`` and cache it; None when that
        checkpoint does not exist."""
        from hamgan.checkpoint import checkpoint_path

        hit = cached_row(run, step, spec, self.reference_path.name)
        if hit is not None:
            return hit
        ckpt = checkpoint_path(run, step)
        if not ckpt.is_file():
            return None
        row = self.evaluate(ckpt, spec)
        append_cache(run, row)
        return row
