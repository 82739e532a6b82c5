"""hamgan-eval: FID / IS of checkpoints, image folders and data sets; reference statistics; model comparison.

    hamgan-eval stats configs/fmnist.yaml data.split=test --out ref.npz   # a data set config (+ overrides)
    hamgan-eval stats runs/x/ckpt-000100000.pt --out g.npz --n 50000    # or a checkpoint, or a folder
    hamgan-eval fid A B [--json]        # A, B: image folder, .npz statistics, or checkpoint (file or run folder)
    hamgan-eval compare runs/ham runs/sagan --ref ref.npz --n 50000 --json-out compare.json

Folder FID equals ``python -m pytorch_fid A B`` (same files, decoding, network and distance). Generated images are
quantised to uint8 exactly as a PNG would store them before the Inception sees them.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hamgan.metrics.fid import (
    Extraction,
    StatsError,
    dataset_statistics,
    folder_statistics,
    frechet_distance,
    generator_statistics,
    list_images,
    load_stats,
    save_stats,
    warn_if_biased,
)
from hamgan.info import count_params
from hamgan.metrics.inception import InceptionFeatures
from hamgan.metrics.inception_score import inception_score

ZERO_HEAD_WARNING = ("Inception head weights are zero; IS meaningless — use pytorch-fid's downloaded weights "
                     "(this weights file has only the FID features)")


# --------------------------------------------------------------------------------------------------------------------
# Sources: what statistics are computed from
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """A statistics source named on the command line.

    kind: "npz" (precomputed mu/sigma), "folder" (image files), "checkpoint" (samples of G) or "config" (data set).
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
    """Statistics of a source, with the logits (for IS) when they were asked for."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None  # None for a .npz
    logits: torch.Tensor | None = None
    step: int | None = None


def compute(source: Source, args: argparse.Namespace, inception: InceptionFeatures | None,
            keep_logits: bool = False) -> Result:
    """Statistics of ``source`` under the options of the command line."""
    if source.kind == "npz":
        return Result(*load_stats(source.path), n=None)
    assert inception is not None
    step = None
    if source.kind == "folder":
        ext = folder_statistics(source.path, inception, args.batch_size, args.device, args.num_workers, keep_logits)
    elif source.kind == "config":
        from hamgan.config import load_config
        from hamgan.data import build_dataset

        cfg = load_config(source.path, source.overrides)
        dataset = build_dataset(cfg)
        ext = dataset_statistics(dataset, inception, args.n, args.batch_size, args.device, args.num_workers,
                                 args.seed, keep_logits)
    else:
        from hamgan.checkpoint import load_generator

        G, _, step = load_generator(source.path, ema=args.ema, device=args.device)
        n = args.n if args.n is not None else 50_000
        ext = generator_statistics(G, inception, n, args.batch_size, args.truncation, args.seed, args.device,
                                   keep_logits)
    warn_if_biased(ext.n)
    return _result(ext, step)


def _result(ext: Extraction, step: int | None) -> Result:
    return Result(ext.stats.mean(), ext.stats.cov(), ext.n, ext.logits, step)


def load_inception(args: argparse.Namespace) -> InceptionFeatures:
    return InceptionFeatures(args.inception_weights).to(args.device)


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
    result = compute(source, args, load_inception(args))
    save_stats(out, result.mu, result.sigma)
    print(f"wrote {out}: mu {result.mu.shape}, sigma {result.sigma.shape} from {result.n} images of {source}")


def cmd_fid(args: argparse.Namespace) -> None:
    sources = [parse_source(args.a), parse_source(args.b)]
    inception = None if all(s.kind == "npz" for s in sources) else load_inception(args)
    results = [compute(s, args, inception) for s in sources]
    fid = frechet_distance(results[0].mu, results[0].sigma, results[1].mu, results[1].sigma)
    if args.json:
        print(json.dumps({"fid": fid, "a": str(sources[0]), "b": str(sources[1]),
                          "n_a": results[0].n, "n_b": results[1].n}))
    else:
        print(f"FID: {fid}")


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


def cmd_compare(args: argparse.Namespace) -> None:
    from hamgan.checkpoint import load_generator
    from hamgan.nn.networks import Discriminator

    mu_ref, sigma_ref = load_stats(args.ref)
    inception = load_inception(args)
    if inception.head_is_zero:
        print(f"warning: {ZERO_HEAD_WARNING}", file=sys.stderr)
    header = (f"| checkpoint | steps | context | params G | params D | FID | IS ({args.splits} splits) |\n"
              f"| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    print(f"\nFID against {args.ref}, {args.n} samples per checkpoint ({'EMA' if args.ema else 'raw'} G"
          f"{f', truncation {args.truncation}' if args.truncation else ''}, seed {args.seed})\n")
    print(header, flush=True)
    rows = []
    for ckpt in args.checkpoints:
        G, cfg, step = load_generator(ckpt, ema=args.ema, device=args.device)
        warn_if_biased(args.n)
        ext = generator_statistics(G, inception, args.n, args.batch_size, args.truncation, args.seed, args.device,
                                   keep_logits=True)
        fid = frechet_distance(ext.stats.mean(), ext.stats.cov(), mu_ref, sigma_ref)
        is_mean, is_std = inception_score(ext.logits, args.splits)
        row = {
            "checkpoint": str(ckpt), "step": step, "context": context_name(cfg.model),
            "params_g": count_params(G), "params_d": count_params(Discriminator(cfg.model)),
            "fid": fid, "is_mean": is_mean, "is_std": is_std, "is_splits": args.splits,
            "is_meaningful": not inception.head_is_zero, "n": args.n, "ema": args.ema,
            "truncation": args.truncation, "seed": args.seed, "ref": str(args.ref),
        }
        rows.append(row)
        print(f"| {row['checkpoint']} | {step} | {row['context']} | {_millions(row['params_g'])} | "
              f"{_millions(row['params_d'])} | {fid:.2f} | {is_mean:.2f} ± {is_std:.2f} |", flush=True)
    if inception.head_is_zero:
        print(f"\n(IS: {ZERO_HEAD_WARNING})")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("evaluation")
    g.add_argument("--n", type=int, default=None,
                   help="samples per checkpoint (default 50000), or images of a data set (default all)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="sample the EMA generator (default) or the raw G (--no-ema)")
    g.add_argument("--truncation", type=float, default=None, help="latent truncation T > 0 (default none)")
    g.add_argument("--seed", type=int, default=0, help="seed of latents and labels (and of data set subsets)")
    g.add_argument("--batch-size", type=int, default=50, help="images per Inception batch")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--num-workers", type=int, default=1, help="image decoding processes (0: in the main process)")
    g.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache, downloaded there)")

    p = argparse.ArgumentParser(prog="hamgan-eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stats", parents=[common], help="write reference statistics (mu, sigma) to .npz")
    s.add_argument("source", help="data set config .yaml, image folder, or checkpoint")
    s.add_argument("overrides", nargs="*", help="config overrides for a .yaml source, e.g. data.split=test")
    s.add_argument("--out", required=True, help="output .npz (pytorch-fid --save-stats format)")
    s.set_defaults(func=cmd_stats)

    f = sub.add_parser("fid", parents=[common], help="FID between two sources")
    f.add_argument("a", help="image folder, .npz statistics, or checkpoint")
    f.add_argument("b", help="image folder, .npz statistics, or checkpoint")
    f.add_argument("--json", action="store_true", help='print a JSON object {"fid": ...}')
    f.set_defaults(func=cmd_fid)

    c = sub.add_parser("compare", parents=[common], help="FID, IS, size and context block of checkpoints")
    c.add_argument("checkpoints", nargs="+", help="checkpoint files or run folders")
    c.add_argument("--ref", required=True, help="reference statistics .npz (hamgan-eval stats)")
    c.add_argument("--splits", type=int, default=10, help="Inception Score splits (10: published convention)")
    c.add_argument("--json-out", default=None, metavar="FILE", help="also write the rows as JSON")
    c.set_defaults(func=cmd_compare, n=None)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.command == "compare" and args.n is None:
        args.n = 50_000
    if args.n is not None and args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.truncation is not None and args.truncation <= 0:
        raise ValueError(f"--truncation must be > 0, got {args.truncation}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if getattr(args, "splits", 1) < 1:
        raise ValueError(f"--splits must be >= 1, got {args.splits}")


def main(argv: Sequence[str] | None = None) -> int:
    from hamgan.checkpoint import CheckpointError
    from hamgan.metrics.inception import InceptionWeightsError

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
