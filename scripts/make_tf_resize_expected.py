"""Write tests/metrics/data/tf1_resize_expected.npz: small arrays resized once by TensorFlow's TF1 bilinear resize.

    ~/.cache/hamgan/tf-venv/bin/python scripts/make_tf_resize_expected.py     # any TensorFlow 2.x (CPU) venv

Each case is an input array (B, H, W, C) float32 and ``tf.compat.v1.image.resize(x, size, method=BILINEAR)``
(align_corners=False, half_pixel_centers=False), the resize of the official HamGAN evaluation. TensorFlow is needed
only to run this script, never by hamgan; tests/metrics/test_resize.py compares hamgan.metrics.resize against the
stored arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "metrics" / "data" / "tf1_resize_expected.npz"

# (name, input shape B, H, W, C, output size): up and down, odd ratios, non-square, the 128 -> 299 of the protocol
CASES = [
    ("up_4_to_9", (1, 4, 4, 1), (9, 9)),
    ("up_5x3_to_7x11", (2, 5, 3, 2), (7, 11)),
    ("down_9_to_4", (1, 9, 9, 3), (4, 4)),
    ("same_6", (1, 6, 6, 1), (6, 6)),
    ("up_32_to_75", (1, 32, 32, 3), (75, 75)),
    ("up_128_to_299", (1, 128, 128, 1), (299, 299)),  # the protocol's resize (one channel: a small file)
]


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = {"tf_version": np.array(tf.__version__)}
    for name, shape, size in CASES:
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        y = tf.compat.v1.image.resize(x, size, method=tf.image.ResizeMethod.BILINEAR).numpy()
        arrays[f"{name}/input"] = x
        arrays[f"{name}/output"] = y.astype(np.float32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(CASES)} cases, TensorFlow {tf.__version__}, {OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
