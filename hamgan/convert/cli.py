"""``hamgan-convert``: official TF checkpoints -> hamgan checkpoints.

    hamgan-convert official-tf CKPT_PREFIX --config configs/imagenet128_hamgan_baby.yaml --out model.pt
    hamgan-convert official-tf CKPT_PREFIX --config configs/imagenet128_sagan.yaml --out sagan.pt   # TF-GAN SAGAN
    hamgan-convert official-tf CKPT --config CFG --out runs/x/ --with-optimizer   # runs/x/ckpt-<step>.pt: resume

CKPT_PREFIX is the checkpoint prefix (``model.ckpt-900000``), its ``.index`` file or its folder. The output is
written atomically (:func:`hamgan.checkpoint.save_checkpoint`): a failure leaves no file. Exit status 0 done,
2 bad input (every variable that does not fit is named), 4 the output could not be written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hamgan.checkpoint import CheckpointWriteError, checkpoint_path, save_checkpoint
from hamgan.config import load_config
from hamgan.convert import tf_reader  # the module, not open_reader: tests replace tf_reader.open_reader
from hamgan.convert.official import convert_official
from hamgan.convert.tf_reader import ReadError

EXIT_BAD_INPUT, EXIT_WRITE_FAILED = 2, 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hamgan-convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    o = sub.add_parser("official-tf", help="a TF1 checkpoint of the official HamGAN or of TF-GAN's SAGAN example",
                       description="Convert a TF1 checkpoint of the official HamGAN code or of TF-GAN's "
                       "self_attention_estimator (names and shapes of the official graph, see docs/pretrained.md).")
    o.add_argument("checkpoint", help="TF checkpoint prefix (model.ckpt-N), its .index file, or its folder")
    o.add_argument("overrides", nargs="*", default=[], help="dotted.key=value config overrides, e.g. "
                   "model.num_classes=10")
    o.add_argument("--config", required=True, help="the hamgan config of the model (configs/imagenet128_*.yaml)")
    o.add_argument("--out", required=True, help="output hamgan checkpoint (.pt), or a run folder (an existing "
                   "folder or a path ending in '/'): its ckpt-<step>.pt, which hamgan-train --out FOLDER resumes")
    o.add_argument("--with-optimizer", action="store_true",
                   help="carry the Adam moments (<variable>/Adam, /Adam_1) into opt_G / opt_D")
    o.add_argument("--step", type=int, default=None, help="the step to record (default: the checkpoint's "
                   "global_step, else 0)")
    o.add_argument("--tf-python", default=None, metavar="PYTHON",
                   help="read with TensorFlow in this Python (e.g. ~/.cache/hamgan/tf215-venv/bin/python) instead "
                   "of this one's")
    o.add_argument("--g-root", default=None, help="scope before 'generator/' in the names (default: found by "
                   "the rule in docs/pretrained.md; the estimator's is 'Generator/')")
    o.add_argument("--d-root", default=None, help="scope before 'discriminator/' (estimator: 'Discriminator/')")
    o.add_argument("--skip", action="append", default=[], metavar="REGEX",
                   help="also skip checkpoint variables whose whole name matches REGEX (repeatable; listed)")
    return p


def run(args: argparse.Namespace) -> list[str]:
    cfg = load_config(args.config, list(args.overrides))
    reader = tf_reader.open_reader(args.checkpoint, args.tf_python)
    state, report = convert_official(reader, cfg, with_optimizer=args.with_optimizer,
                                     roots={"G": args.g_root, "D": args.d_root}, skip=args.skip, step=args.step)
    out = Path(args.out)
    if out.is_dir() or str(args.out).endswith(("/", os.sep)):
        out = checkpoint_path(out, report.step)
    save_checkpoint(state, out)
    return [*report.lines(), f"wrote {out} (step {report.step})"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e]
    if unknown:  # overrides may also follow the options (as hamgan-train's)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides += extra
    try:
        for line in run(args):
            print(line)
    except (ValueError, ReadError, FileNotFoundError) as e:  # ConvertError, ConfigError, a network's own checks
        errors = getattr(e, "errors", None)
        listed = "".join(f"\n  - {k}: {v}" for k, v in errors.items()) if errors else ""
        print(f"hamgan-convert: error: {e}{listed}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckpointWriteError as e:
        print(f"hamgan-convert: error: {e}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
