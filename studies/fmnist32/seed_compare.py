"""The study's final rows as ``hamgan-eval compare`` metric files, and the seed-aware compare over them.

    write_metric_files(rows, o)               # RESULTS/metrics/<model>-seed<s>.json, one compare row each
    seed_comparisons(final_rows(rows, o), o)  # {"A-B": hamgan.metrics.paired.compare_groups(...)} per --pairs A-B
    compare_command(o)                        # the hamgan-eval command that recomputes them from those files

Each final-step row of the study (FID@final_n and the other metrics, from the driver's cached evaluation) is written
in the row format of ``hamgan-eval compare --json-out`` (``train_seed``, the metrics, the evaluation settings), so
that ``hamgan-eval compare --group hamgan='RESULTS/metrics/hamgan-seed*.json' --group sagan=...`` pairs the runs by
seed and gives, per metric, the mean ± SD of each model, the paired difference with its t and bootstrap intervals,
the minimum detectable difference at 80% power and a verdict in words (:mod:`hamgan.metrics.paired`), without
sampling again. The study report holds the same comparison, computed in-process by the same function.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from hamgan.metrics.intervals import BOOTSTRAP_SEED
from hamgan.metrics.paired import PAIRED_METRICS, compare_groups
from studies.fmnist32.plan import StudyOptions

METRICS_DIR = "metrics"
ROW_KEYS = ("step", "n", "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "bn",
            "bn_batches", "bn_batch_size", "ref", "train_paired")


def final_rows(rows: list[dict[str, Any]], o: StudyOptions) -> dict[str, dict[int, dict[str, Any]]]:
    """``{model: {seed: row}}`` of the final-step rows."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r["step"] == o.steps:
            out.setdefault(r["model"], {})[r["seed"]] = r
    return out


def metric_row(r: dict[str, Any], o: StudyOptions) -> dict[str, Any]:
    """One final row in the format of ``hamgan-eval compare --json-out`` (the keys compare --group reads)."""
    return {"checkpoint": r["run"], "model": r["model"], "train_seed": r["seed"], **{k: r.get(k) for k in ROW_KEYS},
            "ema": True, "seed": o.fid_seed, "batch_size": o.eval_batch_size, "protocol": "pytorch-fid"}


def write_metric_files(rows: list[dict[str, Any]], o: StudyOptions) -> list[Path]:
    """``RESULTS/metrics/<model>-seed<s>.json`` for every final row (a stale file of a run no longer in the rows
    is removed); returns the files written."""
    folder = o.results / METRICS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model, by_seed in final_rows(rows, o).items():
        for seed, r in sorted(by_seed.items()):
            path = folder / f"{model}-seed{seed}.json"
            path.write_text(json.dumps(metric_row(r, o), indent=1) + "\n")
            written.append(path)
    for stale in set(folder.glob("*.json")) - set(written):
        stale.unlink()
    return written


def seed_comparisons(final: dict[str, dict[int, dict[str, Any]]], o: StudyOptions,
                     resamples: int = 10_000) -> dict[str, Any]:
    """``{"A-B": compare_groups result}`` for every pair of ``o.pairs`` with two or more common seeds, from the final
    rows ``{model: {seed: row}}`` (:func:`final_rows`): what :func:`compare_command` prints, for those pairs."""
    out = {}
    for a, b in o.pairs:
        common = set(final.get(a, {})) & set(final.get(b, {}))
        if len(common) >= 2:
            out[f"{a}-{b}"] = compare_groups(final[a], final[b], (a, b), PAIRED_METRICS, drop_unpaired=True,
                                             resamples=resamples, seed=BOOTSTRAP_SEED)
    return out


def compare_command(o: StudyOptions, shown=str) -> str:
    """``hamgan-eval compare --group`` over the metric files of the models of ``o.pairs`` (every pair of them)."""
    models = list(dict.fromkeys(m for pair in o.pairs for m in pair if m in o.models))
    groups = [f"--group {m}={shlex.quote(shown(o.results / METRICS_DIR) + f'/{m}-seed*.json')}" for m in models]
    return "hamgan-eval compare " + " ".join(groups)
