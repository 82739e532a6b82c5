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

The library behind it: :mod:`hamgan.metrics.sources` (sources, :class:`~hamgan.metrics.sources.EvalOptions`,
:func:`~hamgan.metrics.sources.compute`) and :mod:`hamgan.metrics.comparison` (compare rows, seed groups); this
module parses the command line, calls them once per command and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from hamgan.checkpoint import CheckpointError
from hamgan.metrics.comparison import (
    ZERO_HEAD_WARNING,
    MetricOptions,
    checkpoint_row,
    compare_reference,
    compare_seed_groups,
    parse_groups,
)
from hamgan.metrics.features import default_workers, save_features
from hamgan.metrics.fid import DISTANCE_METHODS, frechet_distance
from hamgan.metrics.inception import InceptionWeightsError
from hamgan.metrics.intervals import BOOTSTRAP_SEED, CONFIDENCE, POWER
from hamgan.metrics.paired import MDE_METHOD, format_table
from hamgan.metrics.protocol import DEFAULT_PROTOCOL, PROTOCOLS
from hamgan.metrics.sources import EvalOptions, compute, load_inception, parse_source, stats_provenance
from hamgan.metrics.stats import save_stats
from hamgan.metrics.summary import METRICS
from hamgan.sample import add_bn_arguments

# --------------------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace, options: EvalOptions) -> None:
    source = parse_source(args.source, args.overrides)
    if source.kind == "npz":
        raise ValueError(f"'{source.path}' already is a statistics file")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz (pytorch-fid's statistics format), got '{out}'")
    result = compute(source, options, load_inception(options), keep_features=args.features)
    made = stats_provenance(result)
    if args.features:
        save_features(out, result.ext, args.protocol, **made)
    else:
        save_stats(out, result.ref.mu, result.ref.sigma, n=result.ref.n, protocol=args.protocol, **made)
    what = "mu, sigma" + (", features" if args.features else "") + (
        ", labels" if args.features and result.ext.labels is not None else "")
    print(f"wrote {out}: {what} of {result.ref.n} images of {source} (protocol {args.protocol}"
          f"{', BN ' + result.bn.describe() if result.bn else ''})")


def cmd_fid(args: argparse.Namespace, options: EvalOptions) -> None:
    sources = [parse_source(args.a), parse_source(args.b)]
    inception = None if all(s.kind == "npz" for s in sources) else load_inception(options)
    results = [compute(s, options, inception) for s in sources]
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


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _cell(row: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    return format(row[key] * scale, fmt) if key in row else "-"


def cmd_compare(args: argparse.Namespace, options: EvalOptions) -> None:
    if args.group:
        cmd_compare_groups(args, options)
        return
    ref, inception = compare_reference(args.ref, options, args.ref_n)
    print(f"\nprotocol {options.protocol.describe()}; reference {ref.source} ({ref.n} images); "
          f"{args.n} samples per checkpoint ({'EMA' if args.ema else 'raw'} G"
          f"{f', truncation {args.truncation}' if args.truncation else ''}, seed {args.seed}); "
          f"IS {args.splits} splits, logits {'with' if args.is_bias else 'without'} bias\n")
    header = ("| checkpoint | steps | context | params G | params D | BN | FID | KID x 1e3 | precision | recall | "
              f"density | coverage | IS ({args.splits} splits) |" + (" intra-FID |" if args.per_class else ""))
    print(header + "\n" + "| --- | ---: | --- | ---: | ---: | --- |" + " ---: |" * (7 + args.per_class), flush=True)
    rows, metrics = [], metric_options(args)
    for ckpt in args.checkpoints:
        row, result = checkpoint_row(ckpt, options, metrics, inception, ref)
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


def cmd_compare_groups(args: argparse.Namespace, options: EvalOptions) -> None:
    """``compare --group``: :func:`hamgan.metrics.comparison.compare_seed_groups`, as JSON or tables."""
    if args.checkpoints:
        raise ValueError("give either CHECKPOINTS or --group NAME=GLOB groups, not both")
    out = compare_seed_groups(parse_groups(args.group), options, metric_options(args), args.ref, args.ref_n,
                              args.drop_unpaired, args.bootstrap_resamples)
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
    unpaired = sorted(str(r.get("checkpoint")) for rows in out["groups"].values() for r in rows
                      if r.get("train_paired") is False)
    if unpaired:
        print(f"note: {len(unpaired)} run(s) trained with train.paired=false (e.g. {unpaired[0]}): their seeds share "
              "the data order only, not the initial weights, latents or bases; the pairing removes less variance")
    for c in out["comparisons"]:
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
    if args.command == "compare" and args.n is None:
        args.n = PROTOCOLS[args.protocol].n
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
    if args.batch_size is not None and args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if getattr(args, "splits", 1) < 1:
        raise ValueError(f"--splits must be >= 1, got {args.splits}")


def eval_options(args: argparse.Namespace) -> EvalOptions:
    """The evaluation options of a parsed command line (checks the --bn* values)."""
    return EvalOptions(protocol=args.protocol, n=args.n, batch_size=args.batch_size, seed=args.seed,
                       device=args.device, num_workers=args.num_workers, truncation=args.truncation, ema=args.ema,
                       bn=args.bn, bn_batches=args.bn_batches, bn_batch_size=args.bn_batch_size,
                       sn_refresh=args.sn_refresh, inception_weights=args.inception_weights)


def metric_options(args: argparse.Namespace) -> MetricOptions:
    """The metric options of a parsed ``compare`` command line."""
    metrics = None if args.metrics == "auto" else tuple(m.strip() for m in args.metrics.split(","))
    return MetricOptions(metrics, args.splits, args.is_bias, args.per_class, args.kid_subsets, args.kid_subset_size,
                         args.distance)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        _check_args(args)
        args.func(args, eval_options(args))
    except (ValueError, CheckpointError, InceptionWeightsError) as e:  # StatsError, ConfigError, DatasetError too
        print(f"hamgan-eval: error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = default_format
    return 0


if __name__ == "__main__":
    sys.exit(main())
