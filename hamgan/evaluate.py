"""hamgan-eval: FID, KID, precision/recall, density/coverage and IS of checkpoints, folders and data sets.

    hamgan-eval stats configs/fmnist.yaml data.split=test --out ref.npz [--features]   # a data set config (+ overrides)
    hamgan-eval stats runs/x/ckpt-000100000.pt --out g.npz --n 50000    # or a checkpoint, or a folder
    hamgan-eval fid A B [--json] [--bn standing]   # A, B: image folder, .npz, checkpoint (file or run folder), config
    hamgan-eval compare runs/ham runs/sagan --ref FOLDER|CONFIG.yaml [overrides]|ref.npz --n 50000 --json-out c.json

Folder FID equals ``python -m pytorch_fid A B`` (same files, decoding, network) to ~1e-6 relative with our exact
float64 distance, and to ~1e-7 with ``--distance sqrtm``, pytorch-fid's own algorithm (see
:mod:`hamgan.metrics.fid`). Generated images are quantised to uint8 exactly as a PNG would store them (protocol
pytorch-fid), or kept in float (``--protocol hamgan-tf``, :mod:`hamgan.metrics.protocol`). A generator is sampled
with the batch-norm statistics of ``--bn`` (:mod:`hamgan.bn_modes`; default: standing for the EMA generator).
Every output names the protocol, the number of images, the BN mode and the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hamgan.bn_modes import BNMode
from hamgan.checkpoint import load_generator_ema
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
from hamgan.metrics.fid import DISTANCE_METHODS, StatsError, frechet_distance, save_stats, warn_if_biased
from hamgan.metrics.inception import InceptionFeatures
from hamgan.metrics.protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol
from hamgan.metrics.summary import METRICS, summarize
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
        from hamgan.config import load_config
        from hamgan.data import build_dataset

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


def cmd_compare(args: argparse.Namespace) -> None:
    from hamgan.nn.networks import Discriminator

    metrics = None if args.metrics == "auto" else tuple(m.strip() for m in args.metrics.split(","))
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
    is_bias = inception.logits_bias if args.is_bias else None
    print(f"\nprotocol {args.protocol_spec.describe()}; reference {ref.source} ({ref.n} images); "
          f"{args.n} samples per checkpoint ({'EMA' if args.ema else 'raw'} G"
          f"{f', truncation {args.truncation}' if args.truncation else ''}, seed {args.seed}); "
          f"IS {args.splits} splits, logits {'with' if args.is_bias else 'without'} bias\n")
    header = ("| checkpoint | steps | context | params G | params D | BN | FID | KID x 1e3 | precision | recall | "
              f"density | coverage | IS ({args.splits} splits) |" + (" intra-FID |" if args.per_class else ""))
    print(header + "\n" + "| --- | ---: | --- | ---: | ---: | --- |" + " ---: |" * (7 + args.per_class), flush=True)
    rows = []
    for ckpt in args.checkpoints:
        result = compute(parse_source(ckpt), args, inception, keep_logits=True, keep_features=True)
        metrics_row = summarize(result.ext, ref, metrics, args.splits, is_bias, args.per_class, args.kid_subsets,
                                args.kid_subset_size, seed=args.seed, distance=args.distance)
        row = {"checkpoint": str(ckpt), "step": result.step, "context": context_name(result.cfg.model),
               "params_g": count_params(result.G), "params_d": count_params(Discriminator(result.cfg.model)),
               **metrics_row, "is_meaningful": not inception.head_is_zero, "n": result.ref.n, "ema": args.ema,
               **result.bn.as_dict(), "truncation": args.truncation, "seed": args.seed, "protocol": args.protocol,
               "distance": args.distance, "ref": ref.source, "ref_n": ref.n}
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
    c.add_argument("checkpoints", nargs="+", help="checkpoint files or run folders")
    c.add_argument("--ref", required=True, nargs="+", metavar="REF",
                   help="reference: image folder, data set config .yaml followed by its overrides, features file "
                        "(hamgan-eval stats --features) or mu/sigma .npz (FID and IS only). Put it last")
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
