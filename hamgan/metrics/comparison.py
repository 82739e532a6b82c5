"""Comparing checkpoints: one row of metrics per checkpoint, and models over training seeds.

    options, metric_options = EvalOptions(n=10_000), MetricOptions(per_class=True)
    ref, inception = compare_reference(["ref.npz"], options)
    row, result = checkpoint_row("runs/ham", options, metric_options, inception, ref)   # FID, KID, ..., size, BN
    out = compare_seed_groups(parse_groups(["ham=runs/ham-s*", "sagan=runs/sa-s*"]), options, metric_options,
                              ["ref.npz"])   # {"groups": rows by seed, "comparisons": paired statistics, ...}

``compare_seed_groups``: the runs of each group (run folders, latest checkpoint inside, or checkpoint files; or
metric JSON files of ``hamgan-eval compare --json-out``) are paired by the ``train.seed`` of their checkpoint's
config, and every pair of groups gets the paired statistics of :mod:`hamgan.metrics.paired` per metric. Every run is
sampled with the same ``options.seed`` (the same latents and labels for every model).
"""

from __future__ import annotations

import glob
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hamgan.checkpoint import load_checkpoint
from hamgan.config import from_dict
from hamgan.info import count_params
from hamgan.metrics.features import Reference
from hamgan.metrics.inception import InceptionFeatures
from hamgan.metrics.intervals import BOOTSTRAP_SEED, CONFIDENCE, POWER
from hamgan.metrics.paired import MDE_METHOD, PairingError, compare_groups, pair_by_seed
from hamgan.metrics.sources import EvalOptions, Result, compute, load_inception, parse_source
from hamgan.metrics.summary import summarize
from hamgan.nn.from_config import discriminator_from_config

ZERO_HEAD_WARNING = ("Inception head weights are zero; IS meaningless — use pytorch-fid's downloaded weights "
                     "(this weights file has only the FID features)")


@dataclass(frozen=True)
class MetricOptions:
    """Which metrics a checkpoint's row holds and how they are computed (:func:`hamgan.metrics.summary.summarize`).

    Attributes:
        metrics: a subset of :data:`hamgan.metrics.summary.METRICS` (None: all that the reference allows).
        splits: Inception Score splits.
        is_bias: IS from logits with the classifier's bias (TF-GAN / StudioGAN) instead of without (improved-gan).
        per_class: also the intra-class FID (needs reference labels).
        kid_subsets, kid_subset_size: KID's subsets.
        distance: the FID's Fréchet distance method (:data:`hamgan.metrics.fid.DISTANCE_METHODS`).
    """

    metrics: tuple[str, ...] | None = None
    splits: int = 10
    is_bias: bool = False
    per_class: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    distance: str = "eig"


def context_name(model_cfg) -> str:
    """'ham-nmf @32/32', 'attention @32/32', 'ylg @32/32' or 'none' when G and D have the same kind of block
    (resolution in G / in D), else per network: 'G ham-nmf @32, D none'."""
    def name(net) -> str:
        return f"ham-{net.ham.kind}" if net.context == "ham" else net.context

    g, d = model_cfg.g, model_cfg.d
    if name(g) == name(d):
        return "none" if g.context == "none" else f"{name(g)} @{g.context_res}/{d.context_res}"
    return ", ".join(f"{label} {name(net)}" + ("" if net.context == "none" else f" @{net.context_res}")
                     for label, net in (("G", g), ("D", d)))


def compare_reference(ref: Sequence[str] | None, options: EvalOptions,
                      ref_n: int | None = None) -> tuple[Reference, InceptionFeatures]:
    """The reference statistics of a comparison and its Inception network.

    ``ref``: the reference path followed by its config overrides (a data set config); a data set reference uses
    ``ref_n`` images (None: all), whatever ``options.n`` says.
    """
    if not ref:
        raise ValueError("compare needs --ref (the real images' statistics), given last")
    ref_source = parse_source(ref[0], ref[1:])
    reference = compute(ref_source, options, None).ref if ref_source.kind == "npz" else None  # fail early
    inception = load_inception(options)
    if reference is None:
        reference = compute(ref_source, replace(options, n=ref_n), inception, keep_features=True).ref
    if inception.head_is_zero:
        print(f"warning: {ZERO_HEAD_WARNING}", file=sys.stderr)
    return reference, inception


def checkpoint_row(ckpt: str | Path, options: EvalOptions, metric_options: MetricOptions,
                   inception: InceptionFeatures, ref: Reference) -> tuple[dict, Result]:
    """The compare row of one checkpoint (or run folder: its latest checkpoint): metrics and how they were made."""
    m = metric_options
    is_bias = inception.logits_bias if m.is_bias else None
    result = compute(parse_source(str(ckpt)), options, inception, keep_logits=True, keep_features=True)
    metrics_row = summarize(result.ext, ref, m.metrics, m.splits, is_bias, m.per_class, m.kid_subsets,
                            m.kid_subset_size, seed=options.seed, distance=m.distance)
    row = {"checkpoint": str(ckpt), "step": result.step, "train_seed": result.cfg.train.seed,
           "train_paired": result.cfg.train.paired,
           "context": context_name(result.cfg.model), "params_g": count_params(result.G),
           "params_d": count_params(discriminator_from_config(result.cfg.model)),
           **metrics_row, "is_meaningful": not inception.head_is_zero, "n": result.ref.n, "ema": options.ema,
           **result.bn.as_dict(), "truncation": options.truncation, "seed": options.seed,
           "protocol": options.protocol.name, "distance": m.distance, "ref": ref.source, "ref_n": ref.n}
    return row, result


def run_metrics(path: Path, options: EvalOptions, metric_options: MetricOptions, ref: Reference,
                inception: InceptionFeatures) -> dict:
    """The metrics row of one run of a seed group (the row of :func:`checkpoint_row`)."""
    return checkpoint_row(path, options, metric_options, inception, ref)[0]


def parse_groups(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``["ham=runs/ham-s*", ...]`` -> ``{"ham": [paths]}`` in the order given (a name given twice gathers both
    globs); a glob that matches nothing, or fewer than two groups, is an error."""
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise ValueError(f"--group takes NAME=GLOB (e.g. --group ham='runs/ham-s*'), got {spec!r}")
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise ValueError(f"--group {name}: '{pattern}' matches no run folder, checkpoint or JSON file")
        groups.setdefault(name, []).extend(paths)
    if len(groups) < 2:
        raise ValueError(f"compare --group needs two or more groups (models) to compare, got {list(groups)}")
    return groups


def checkpoint_seed(path: Path) -> int:
    """``train.seed`` of the config stored in a checkpoint (a run folder: its latest checkpoint)."""
    return from_dict(load_checkpoint(path).get("config", {})).train.seed


def json_rows(path: Path) -> list[dict]:
    """The metric rows of a JSON file of ``compare --json-out`` (a list of rows, or one row)."""
    rows = json.loads(path.read_text())
    rows = [rows] if isinstance(rows, dict) else rows
    for row in rows:
        if not isinstance(row, dict) or row.get("train_seed") is None:
            raise ValueError(f"'{path}': a metric row without 'train_seed' (written by an older hamgan-eval "
                             "compare?); recompute it with hamgan-eval compare ... --json-out, or give the run folder")
    return rows


def group_members(groups: dict[str, list[Path]]) -> dict[str, dict[int, Path | dict]]:
    """group -> train seed -> checkpoint path, or metric row of a JSON file; a seed twice in a group is an error."""
    members: dict[str, dict[int, Path | dict]] = {}
    for name, paths in groups.items():
        by_seed: dict[int, Path | dict] = {}
        for path in paths:
            for seed, member in ([(int(r["train_seed"]), r) for r in json_rows(path)] if path.suffix == ".json"
                                 else [(checkpoint_seed(path), path)]):
                if seed in by_seed:
                    first = by_seed[seed] if isinstance(by_seed[seed], Path) else by_seed[seed].get("checkpoint")
                    raise PairingError(f"group {name}: train.seed {seed} twice ({first} and {path}); give one run "
                                       "per seed and model")
                by_seed[seed] = member
        members[name] = by_seed
    return members


def compare_seed_groups(groups: dict[str, list[Path]], options: EvalOptions, metric_options: MetricOptions,
                        ref: Sequence[str] | None = None, ref_n: int | None = None, drop_unpaired: bool = False,
                        bootstrap_resamples: int = 10_000) -> dict:
    """The runs of each group by seed, and the paired statistics of every pair of groups.

    The seeds are read and paired first (a missing or repeated seed fails before any sampling, unless
    ``drop_unpaired``); then the metrics of every run that is paired with some other group's run are computed
    against ``ref`` (:func:`compare_reference`; not needed when every such run is a JSON row) or read from its JSON
    file. Returns ``{"groups": {name: rows by seed}, "comparisons": [...], "confidence", "power", "mde_method",
    "bootstrap", "eval_seed"}``.
    """
    members = group_members(groups)
    used: dict[str, set[int]] = {name: set() for name in groups}
    dropped: dict[tuple[str, str], dict[str, list[int]]] = {}
    for a, b in itertools.combinations(groups, 2):
        seeds, dropped[a, b] = pair_by_seed(members[a], members[b], (a, b), drop_unpaired)
        used[a].update(seeds)
        used[b].update(seeds)
    reference = inception = None
    if any(isinstance(members[name][s], Path) for name in groups for s in used[name]):
        reference, inception = compare_reference(ref, options, ref_n)
    runs: dict[str, dict[int, dict]] = {}
    for name in groups:
        runs[name] = {}
        for seed in sorted(used[name]):
            member = members[name][seed]
            row = member if isinstance(member, dict) else {
                **run_metrics(member, options, metric_options, reference, inception), "checkpoint": str(member),
                "train_seed": seed}
            runs[name][seed] = row
            print(f"{name}, seed {seed}: {row.get('checkpoint')}: FID {row.get('fid', float('nan')):.4g}",
                  file=sys.stderr, flush=True)
    comparisons = [{**compare_groups(runs[a], runs[b], (a, b), drop_unpaired=True,
                                     resamples=bootstrap_resamples, seed=BOOTSTRAP_SEED),
                    "dropped": dropped[a, b]}  # the unpaired seeds of the two groups' members, not only of runs
                   for a, b in itertools.combinations(groups, 2)]
    return {"groups": {name: [by_seed[s] for s in sorted(by_seed)] for name, by_seed in runs.items()},
            "comparisons": comparisons, "confidence": CONFIDENCE, "power": POWER, "mde_method": MDE_METHOD,
            "bootstrap": {"resamples": bootstrap_resamples, "seed": BOOTSTRAP_SEED, "interval": "percentile"},
            "eval_seed": options.seed}
