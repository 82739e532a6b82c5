"""Pack an ImageFolder data set (ImageNet) once into a memory-mapped uint8 array for fast training.

    python scripts/pack_imagenet.py /data/imagenet --out /data/imagenet128_train --resolution 128 --split train \
        --resize tf-bilinear

Then train with ``data.name=imagenet data.packed=/data/imagenet128_train``. The pack records its resolution and
resize method; a config with another ``model.resolution`` or ``data.resize`` is refused, naming both. tf-bilinear
(the official pipeline) is stored rounded to uint8; train from the ImageFolder (``data.root``) to keep it in float.
See :mod:`hamgan.data.packed` for the format. At 128x128 the ImageNet train split takes 1,281,167 x 49,152 bytes
= 63 GB.
"""

from __future__ import annotations

import argparse
import sys

from hamgan.data.dataset import DatasetError
from hamgan.data.packed import pack_image_folder
from hamgan.data.transforms import RESIZE_METHODS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="data set folder: ROOT/<split>/<class>/<image> or ROOT/<class>/<image>")
    parser.add_argument("--out", required=True, help="output directory (created atomically)")
    parser.add_argument("--resolution", type=int, default=128, help="side R of the packed images (default 128)")
    parser.add_argument("--split", default="train", help="sub-folder of ROOT to pack when it exists (default train)")
    parser.add_argument("--resize", default="tf-bilinear", choices=RESIZE_METHODS,
                        help="resize method, as data.resize (default tf-bilinear, the official pipeline)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    try:
        meta = pack_image_folder(args.root, args.out, args.resolution, args.split, args.workers, args.overwrite,
                                 resize=args.resize)
    except DatasetError as e:
        sys.exit(f"error: {e}")
    print(f"packed {meta['count']} images of {len(meta['classes'])} classes at {meta['resolution']}x"
          f"{meta['resolution']} ({meta['resize']}) into {args.out} ({meta['num_skipped']} unreadable skipped)")


if __name__ == "__main__":
    main()
