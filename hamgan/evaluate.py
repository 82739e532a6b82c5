"""hamgan-eval: FID, KID, precision/recall, density/coverage and IS of checkpoints, folders and data sets.

    hamgan-eval stats configs/fmnist.yaml data.split=test --out ref.npz [--features]   # a data set config (+ overrides)
    hamgan-eval stats runs/x/ckpt-000100000.pt --out g.npz --n 50000    # or a checkpoint, or a folder
    hamgan-eval fid A B [--json] [--bn standing]   # A, B: image folder, .npz, checkpoint (file or run folder), config
    hamgan-eval compare runs/ham runs/sagan --ref FOLDER|CONFIG.yaml [overrides]|ref.npz --n 50000 --json-out c.json
    hamgan-eval compare --group ham='runs/ham-s*' --group sagan='runs/sa-s*' --ref ref.npz [--json]   # over seeds

Folder FID equals ``python -m pytorch_fid A B`` (same files, decoding, network) to ~1e-6 relative with our exact
float64 distance, and to ~1e-7 with ``--distance sqrtm``, pytorch-fid's own algorithm (see
:mod:`hamgan.metrics.fid`). Generated images are quantised to uint8 exactly as a PNG would store them (protocol
pytorch-fid), or kept in float (``--protocol hamgan-tf``, :mod:`hamgan.metrics.protocol`). A generator is sampled
with the batch-norm statistics of ``--bn`` (:mod:`hamgan.bn_modes`; default: standing for the EMA generator).
Every output names the protocol, the number of images, the BN mode and the reference.

``compare --group NAME=GLOB`` (two or more groups, one model each): the runs of each group (run folders, latest
checkpoint inside, or checkpoint files; or metric JSON files that ``compare --json-out`` wrote) are paired by the
``train.seed`` of their checkpoint's config, and every pair of groups gets the paired statistics of
:mod:`hamgan.metrics.paired` per metric: mean ± SD per model, the paired difference with its t and bootstrap
intervals, the minimum detectable difference at 80% power and a verdict. Every run is sampled with the same
``--seed`` (the same latents and labels for every model).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hamgan.bn_modes import BNMode
from hamgan.checkpoint import CheckpointError, load_checkpoint, load_generator_ema
from hamgan.config import from_dict, load_config
from hamgan.data import build_dataset
from hamgan.info import count_params
from hamgan.metrics.features import (
    Extraction,
    Reference,
    dataset_statistics,
    default_workers,
    folder_statistics,
    generator_statistics,
    list_images,
    load_reference,
    save_features,
)
from hamgan.metrics.fid import DISTANCE_METHODS, frechet_distance
from hamgan.metrics.inception import InceptionFeatures, InceptionWeightsError
from hamgan.metrics.intervals import BOOTSTRAP_SEED, CONFIDENCE, POWER
from hamgan.metrics.paired import MDE_METHOD, PairingError, compare_groups, format_table, pair_by_seed
from hamgan.metrics.protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol
from hamgan.metrics.stats import StatsError, save_stats, warn_if_biased
from hamgan.metrics.summary import METRICS, summarize
from hamgan.nn.networks import Discriminator
from hamgan.sample import add_bn_arguments, bn_from_args

ZERO_HEAD_WARNING = ("Inception head weights are zero; IS meaningless — use pytorch-fid's downloaded weights "
                     "(this weights file has only the FID features)")


# --------------------------------------------------------------------------------------------------------------------
# Sources: what statistics are computed from
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """A statistics source named on the command line.

    kind: "npz" (mu/sigma or features file), "folder" (image files), "checkpoint" (samples of G) or "config".
    """

    kind: str
    path: Path
    overrides: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return str(self.path) + "".join(f" {o}" for o in self.overrides)


def parse_source(text: str, overrides: Sequence[str] = ()) -> Source:
    """Classify a path: ``.npz``, ``.yaml``/``.yml`` config, image folder, checkpoint file or run folder."""
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return Source("npz", path)
    if suffix in (".yaml", ".yml"):
        return Source("config", path, list(overrides))
    if overrides:
        raise ValueError(f"config overrides {list(overrides)} only apply to a data set config source (.yaml), "
                         f"not to '{path}'")
    if not path.exists():
        raise ValueError(f"'{path}' does not exist; give an image folder, a .npz statistics file, a checkpoint "
                         f"(.pt or run folder) or a data set config (.yaml)")
    if path.is_dir():
        try:
            list_images(path)
            return Source("folder", path)
        except StatsError:
            if any(path.glob("ckpt-*.pt")):
                return Source("checkpoint", path)
            raise
    return Source("checkpoint", path)


@dataclass
class Result:
    """Statistics of a source (``ext`` None for a .npz) and how they were made."""

    ref: Reference
    ext: Extraction | None = None
    step: int | None = None
    bn: BNMode | None = None
    cfg: object = None
    G: torch.nn.Module | None = None

    def describe(self) -> dict:
        out = {"source": self.ref.source, "n": self.ref.n, "protocol": self.ref.protocol}
        if self.bn is not None:
            out.update(step=self.step, **self.bn.as_dict())
        return out


def compute(source: Source, args: argparse.Namespace, inception: InceptionFeatures | None,
            keep_logits: bool = False, keep_features: bool = False) -> Result:
    """Statistics of ``source`` under the options of the command line."""
    protocol: Protocol = args.protocol_spec
    if source.kind == "npz":
        ref = load_reference(source.path)
        if ref.protocol is not None and ref.protocol != protocol.name:
            raise StatsError(f"'{source.path}' was computed under protocol {ref.protocol}, this evaluation uses "
                             f"{protocol.name}; recompute it with hamgan-eval stats ... --protocol {protocol.name}")
        if ref.protocol is None and protocol.name != DEFAULT_PROTOCOL:
            warnings.warn(f"'{source.path}' does not say which protocol made it; it must be {protocol.name}'s "
                          f"(hamgan-eval stats --protocol {protocol.name})", stacklevel=2)
        return Result(ref)
    assert inception is not None
    common = dict(keep_logits=keep_logits, keep_features=keep_features)
    if source.kind == "folder":
        ext = folder_statistics(source.path, inception, args.batch_size, args.device, args.num_workers, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext)
    elif source.kind == "config":
        cfg = load_config(source.path, source.overrides)
        dataset = build_dataset(cfg)
        ext = dataset_statistics(dataset, inception, args.n, args.batch_size, args.device, args.num_workers,
                                 args.seed, quantize=protocol.quantize, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext)
    else:
        G, cfg, step, is_ema = load_generator_ema(source.path, args.ema, args.device)
        bn = bn_from_args(args, ema=is_ema, mode=protocol.bn if args.bn == "auto" else None)
        n = args.n if args.n is not None else protocol.n
        batch = args.batch_size if protocol.batch_size is None or args.batch_size_given else protocol.batch_size
        print(f"{source}: step {step}, {'EMA' if is_ema else 'raw'} G, BN {bn.describe()}, {n} samples",
              file=sys.stderr)
        ext = generator_statistics(G, inception, n, batch, args.truncation, args.seed, args.device, bn=bn,
                                   quantize=protocol.quantize, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext, step, bn, cfg, G)
    warn_if_biased(result.ref.n)
    return result


def load_inception(args: argparse.Namespace) -> InceptionFeatures:
    return InceptionFeatures(args.inception_weights, resize=args.protocol_spec.resize).to(args.device)


# --------------------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> None:
    source = parse_source(args.source, args.overrides)
    if source.kind == "npz":
        raise ValueError(f"'{source.path}' already is a statistics file")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz (pytorch-fid's statistics format), got '{out}'")
    result = compute(source, args, load_inception(args), keep_features=args.features)
    made = stats_provenance(result)
    if args.features:
        save_features(out, result.ext, args.protocol, **made)
    else:
        save_stats(out, result.ref.mu, result.ref.sigma, n=result.ref.n, protocol=args.protocol, **made)
    what = "mu, sigma" + (", features" if args.features else "") + (
        ", labels" if args.features and result.ext.labels is not None else "")
    print(f"wrote {out}: {what} of {result.ref.n} images of {source} (protocol {args.protocol}"
          f"{', BN ' + result.bn.describe() if result.bn else ''})")


def stats_provenance(result: Result) -> dict[str, str | int]:
    """What a statistics file stores besides mu/sigma about how it was made: the source, and for samples of a
    generator its step and batch-norm mode (``bn``: the JSON of :meth:`BNMode.as_dict`)."""
    made: dict[str, str | int] = {"source": result.ref.source}
    if result.bn is not None:
        made.update(step=result.step, bn=json.dumps(result.bn.as_dict()))
    return made


def cmd_fid(args: argparse.Namespace) -> None:
    sources = [parse_source(args.a), parse_source(args.b)]
    inception = None if all(s.kind == "npz" for s in sources) else load_inception(args)
    results = [compute(s, args, inception) for s in sources]
    a, b = (r.ref for r in results)
    fid = frechet_distance(a.mu, a.sigma, b.mu, b.sigma, method=args.distance)
    if args.json:
        print(json.dumps({"fid": fid, "protocol": args.protocol, "distance": args.distance,
                          "a": results[0].describe(), "b": results[1].describe()}))
    else:
        modes = [f"{s}: BN {r.bn.describe()}" for s, r in zip(sources, results) if r.bn is not None]
        distance = "" if args.distance == "eig" else f"; distance {args.distance}"
        print(f"FID: {fid}  (protocol {args.protocol}{distance}; n {a.n} vs {b.n}{'; ' if modes else ''}"
              f"{'; '.join(modes)})")


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


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _cell(row: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    return format(row[key] * scale, fmt) if key in row else "-"


def compare_reference(args: argparse.Namespace) -> tuple[Reference, InceptionFeatures]:
    """The reference statistics of ``--ref`` and the Inception network of a comparison."""
    if not args.ref:
        raise ValueError("compare needs --ref (the real images' statistics), given last")
    ref_source = parse_source(args.ref[0], args.ref[1:])
    ref = compute(ref_source, args, None).ref if ref_source.kind == "npz" else None  # fail early on a bad file
    inception = load_inception(args)
    if ref is None:
        n_given = args.n
        args.n = args.ref_n  # a data set reference: all images unless --ref-n
        ref = compute(ref_source, args, inception, keep_features=True).ref
        args.n = n_given
    if inception.head_is_zero:
        print(f"warning: {ZERO_HEAD_WARNING}", file=sys.stderr)
    return ref, inception


def checkpoint_row(ckpt: str | Path, args: argparse.Namespace, inception: InceptionFeatures,
                   ref: Reference) -> tuple[dict, Result]:
    """The compare row of one checkpoint (or run folder: its latest checkpoint): metrics and how they were made."""
    metrics = None if args.metrics == "auto" else tuple(m.strip() for m in args.metrics.split(","))
    is_bias = inception.logits_bias if args.is_bias else None
    result = compute(parse_source(str(ckpt)), args, inception, keep_logits=True, keep_features=True)
    metrics_row = summarize(result.ext, ref, metrics, args.splits, is_bias, args.per_class, args.kid_subsets,
                            args.kid_subset_size, seed=args.seed, distance=args.distance)
    row = {"checkpoint": str(ckpt), "step": result.step, "train_seed": result.cfg.train.seed,
           "train_paired": result.cfg.train.paired,
           "context": context_name(result.cfg.model), "params_g": count_params(result.G),
           "params_d": count_params(Discriminator(result.cfg.model)),
           **metrics_row, "is_meaningful": not inception.head_is_zero, "n": result.ref.n, "ema": args.ema,
           **result.bn.as_dict(), "truncation": args.truncation, "seed": args.seed, "protocol": args.protocol,
           "distance": args.distance, "ref": ref.source, "ref_n": ref.n}
    return row, result


def run_metrics(path: Path, args: argparse.Namespace, ref: Reference, inception: InceptionFeatures) -> dict:
    """The metrics row of one run of a ``--group`` (the row of :func:`checkpoint_row`)."""
    return checkpoint_row(path, args, inception, ref)[0]


def cmd_compare(args: argparse.Namespace) -> None:
    if args.group:
        cmd_compare_groups(args)
        return
    ref, inception = compare_reference(args)
    print(f"\nprotocol {args.protocol_spec.describe()}; reference {ref.source} ({ref.n} images); "
          f"{args.n} samples per checkpoint ({'EMA' if args.ema else 'raw'} G"
          f"{f', truncation {args.truncation}' if args.truncation else ''}, seed {args.seed}); "
          f"IS {args.splits} splits, logits {'with' if args.is_bias else 'without'} bias\n")
    header = ("| checkpoint | steps | context | params G | params D | BN | FID | KID x 1e3 | precision | recall | "
              f"density | coverage | IS ({args.splits} splits) |" + (" intra-FID |" if args.per_class else ""))
    print(header + "\n" + "| --- | ---: | --- | ---: | ---: | --- |" + " ---: |" * (7 + args.per_class), flush=True)
    rows = []
    for ckpt in args.checkpoints:
        row, result = checkpoint_row(ckpt, args, inception, ref)
        rows.append(row)
        is_text = f"{row['is_mean']:.2f} ± {row['is_std']:.2f}" if "is_mean" in row else "-"
        kid = (f"{row['kid_mean'] * 1e3:.2f} ± {row['kid_std'] * 1e3:.2f}" if "kid_mean" in row else "-")
        print(f"| {row['checkpoint']} | {row['step']} | {row['context']} | {_millions(row['params_g'])} | "
              f"{_millions(row['params_d'])} | {result.bn.describe()} | {_cell(row, 'fid', '.2f')} | {kid} | "
              f"{_cell(row, 'precision', '.3f')} | {_cell(row, 'recall', '.3f')} | {_cell(row, 'density', '.3f')} | "
              f"{_cell(row, 'coverage', '.3f')} | {is_text} |"
              + (f" {row['intra_fid']:.2f} |" if args.per_class else ""), flush=True)
    notes = sorted({s for r in rows for s in r.get("skipped", [])})
    if rows and "kid_subset_size" in rows[0]:
        notes.append(f"KID: {args.kid_subsets} subsets of {rows[0]['kid_subset_size']}; precision/recall k = 3, "
                     f"density/coverage k = 5")
    if inception.head_is_zero:
        notes.append(f"IS: {ZERO_HEAD_WARNING}")
    for note in notes:
        print(f"\n({note})")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")


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


def cmd_compare_groups(args: argparse.Namespace) -> None:
    """``compare --group``: the runs of each group by seed, and the paired statistics of every pair of groups.

    The seeds are read and paired first (a missing or repeated seed fails before any sampling); then the metrics of
    every run that is paired with some other group's run are computed (or read from its JSON file)."""

    if args.checkpoints:
        raise ValueError("give either CHECKPOINTS or --group NAME=GLOB groups, not both")
    groups = parse_groups(args.group)
    members: dict[str, dict[int, Path | dict]] = {}  # group -> train seed -> checkpoint path or JSON row
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
    used: dict[str, set[int]] = {name: set() for name in groups}
    dropped: dict[tuple[str, str], dict[str, list[int]]] = {}
    for a, b in itertools.combinations(groups, 2):
        seeds, dropped[a, b] = pair_by_seed(members[a], members[b], (a, b), args.drop_unpaired)
        used[a].update(seeds)
        used[b].update(seeds)
    ref = inception = None
    if any(isinstance(members[name][s], Path) for name in groups for s in used[name]):
        ref, inception = compare_reference(args)
    runs: dict[str, dict[int, dict]] = {}
    for name in groups:
        runs[name] = {}
        for seed in sorted(used[name]):
            member = members[name][seed]
            row = member if isinstance(member, dict) else {
                **run_metrics(member, args, ref, inception), "checkpoint": str(member), "train_seed": seed}
            runs[name][seed] = row
            print(f"{name}, seed {seed}: {row.get('checkpoint')}: FID {row.get('fid', float('nan')):.4g}",
                  file=sys.stderr, flush=True)
    comparisons = [{**compare_groups(runs[a], runs[b], (a, b), drop_unpaired=True,
                                     resamples=args.bootstrap_resamples, seed=BOOTSTRAP_SEED),
                    "dropped": dropped[a, b]}  # the unpaired seeds of the two groups' members, not only of runs
                   for a, b in itertools.combinations(groups, 2)]
    out = {"groups": {name: [by_seed[s] for s in sorted(by_seed)] for name, by_seed in runs.items()},
           "comparisons": comparisons, "confidence": CONFIDENCE, "power": POWER, "mde_method": MDE_METHOD,
           "bootstrap": {"resamples": args.bootstrap_resamples, "seed": BOOTSTRAP_SEED, "interval": "percentile"},
           "eval_seed": args.seed}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    if args.json:
        print(json.dumps(out))
        return
    print(f"\npaired by train.seed; {round(100 * CONFIDENCE)}% intervals (t; percentile bootstrap of "
          f"{args.bootstrap_resamples} resamples, seed {BOOTSTRAP_SEED}); MDE: smallest true difference a "
          f"two-sided paired t-test at alpha {1 - CONFIDENCE:.2f} detects with {round(100 * POWER)}% power "
          f"({MDE_METHOD})")
    unpaired = sorted(str(r.get("checkpoint")) for rows in runs.values() for r in rows.values()
                      if r.get("train_paired") is False)
    if unpaired:
        print(f"note: {len(unpaired)} run(s) trained with train.paired=false (e.g. {unpaired[0]}): their seeds share "
              "the data order only, not the initial weights, latents or bases; the pairing removes less variance")
    for c in comparisons:
        dropped = "".join(f"; dropped: {k} seeds {v} (unpaired)" for k, v in c["dropped"].items())
        print(f"\n{c['a']} vs {c['b']}: seeds {c['seeds']}{dropped}\n\n{format_table(c)}")
    if args.json_out:
        print(f"\nwrote {args.json_out}")


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def add_distance_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--distance", choices=DISTANCE_METHODS, default="eig",
                        help="Fréchet distance: eig (default; float64 eigenvalues, exact also below 2048 samples) or "
                             "sqrtm (pytorch-fid's own scipy.linalg.sqrtm algorithm, to reproduce its numbers to the "
                             "last digit)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("evaluation")
    g.add_argument("--protocol", choices=tuple(PROTOCOLS), default=DEFAULT_PROTOCOL,
                   help="pytorch-fid (default): uint8 images, pytorch-fid's resize, 50000 samples; hamgan-tf: the "
                        "official TF evaluation (float images, TF1 bilinear resize, 50176 samples in batches of "
                        "1024, BN batch mode, reference: the ImageNet validation split)")
    g.add_argument("--n", type=int, default=None,
                   help="samples per checkpoint (default: the protocol's, 50000), or images of a data set (default "
                        "all)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="sample the EMA generator (default) or the raw G (--no-ema)")
    g.add_argument("--truncation", type=float, default=None, help="latent truncation T > 0 (default none)")
    g.add_argument("--seed", type=int, default=0, help="seed of latents and labels (and of data set subsets)")
    g.add_argument("--batch-size", type=int, default=None, help="images per batch (default 50)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--num-workers", type=int, default=default_workers(),
                   help="image decoding processes (default: one per core; 0: in the main process)")
    g.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache, downloaded there)")
    add_bn_arguments(common)

    p = argparse.ArgumentParser(prog="hamgan-eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stats", parents=[common], help="write reference statistics (mu, sigma) to .npz")
    s.add_argument("source", help="data set config .yaml, image folder, or checkpoint")
    s.add_argument("overrides", nargs="*", help="config overrides for a .yaml source, e.g. data.split=test")
    s.add_argument("--out", required=True, help="output .npz (pytorch-fid --save-stats format)")
    s.add_argument("--features", action="store_true",
                   help="also store the features (and labels) for KID, precision/recall, per-class FID (8 KB/image)")
    s.set_defaults(func=cmd_stats)

    f = sub.add_parser("fid", parents=[common], help="FID between two sources")
    f.add_argument("a", help="image folder, .npz statistics, checkpoint or data set config")
    f.add_argument("b", help="image folder, .npz statistics, checkpoint or data set config")
    f.add_argument("--json", action="store_true", help='print a JSON object {"fid": ..., "protocol": ...}')
    add_distance_argument(f)
    f.set_defaults(func=cmd_fid)

    c = sub.add_parser("compare", parents=[common],
                       help="FID, KID, precision, recall, density, coverage, IS, size and context of checkpoints")
    c.add_argument("checkpoints", nargs="*", help="checkpoint files or run folders (or use --group)")
    c.add_argument("--group", action="append", default=[], metavar="NAME=GLOB",
                   help="a model's runs over seeds: run folders (latest checkpoint), checkpoints or metric JSON files "
                        "(--json-out of compare); give two or more groups. They are paired by train.seed and "
                        "compared with paired intervals, the minimum detectable difference and a verdict")
    c.add_argument("--drop-unpaired", action="store_true",
                   help="with --group: leave out (and report) seeds missing from a group instead of failing")
    c.add_argument("--bootstrap-resamples", type=int, default=10_000,
                   help="with --group: resamples of the bootstrap interval (default 10000)")
    c.add_argument("--json", action="store_true", help="with --group: print the comparison as JSON, not a table")
    c.add_argument("--ref", nargs="+", metavar="REF",
                   help="reference: image folder, data set config .yaml followed by its overrides, features file "
                        "(hamgan-eval stats --features) or mu/sigma .npz (FID and IS only). Put it last. Needed "
                        "unless every --group member is a metric JSON file")
    c.add_argument("--ref-n", type=int, default=None, help="images of a data set reference (default all)")
    c.add_argument("--metrics", default="auto",
                   help=f"comma-separated subset of {','.join(METRICS)} (auto: all the reference allows)")
    c.add_argument("--splits", type=int, default=10, help="Inception Score splits (10: published convention)")
    c.add_argument("--is-bias", action="store_true",
                   help="IS from logits with the classifier bias (TF-GAN / StudioGAN); default without "
                        "(improved-gan, BigGAN)")
    c.add_argument("--per-class", action="store_true", help="also intra-class FID (needs reference labels)")
    c.add_argument("--kid-subsets", type=int, default=100)
    c.add_argument("--kid-subset-size", type=int, default=1000)
    c.add_argument("--json-out", default=None, metavar="FILE", help="also write the rows as JSON")
    add_distance_argument(c)
    c.set_defaults(func=cmd_compare, n=None)
    return p


def _check_args(args: argparse.Namespace) -> None:
    args.protocol_spec = get_protocol(args.protocol)
    args.batch_size_given = args.batch_size is not None
    args.batch_size = 50 if args.batch_size is None else args.batch_size
    if args.command == "compare" and args.n is None:
        args.n = args.protocol_spec.n
    if args.command == "compare" and not args.checkpoints and not args.group:
        raise ValueError("compare needs CHECKPOINTS (run folders or checkpoint files) or --group NAME=GLOB groups")
    if args.command == "compare" and args.bootstrap_resamples < 1:
        raise ValueError(f"--bootstrap-resamples must be >= 1, got {args.bootstrap_resamples}")
    for name in ("n", "ref_n"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.truncation is not None and args.truncation <= 0:
        raise ValueError(f"--truncation must be > 0, got {args.truncation}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if getattr(args, "splits", 1) < 1:
        raise ValueError(f"--splits must be >= 1, got {args.splits}")
    BNMode(batches=args.bn_batches, batch_size=args.bn_batch_size, sn_iterations=args.sn_refresh or 0)  # checks


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        _check_args(args)
        args.func(args)
    except (ValueError, CheckpointError, InceptionWeightsError) as e:  # StatsError, ConfigError, DatasetError too
        print(f"hamgan-eval: error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = default_format
    return 0


if __name__ == "__main__":
    sys.exit(main())
