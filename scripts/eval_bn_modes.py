"""FID of checkpoints under each batch-norm mode (and with / without the spectral-norm refresh), resumable.

    python scripts/eval_bn_modes.py results/fmnist32/checkpoints/*.pt --ref runs/fmnist32_test_10000.npz \
        --out results/fmnist32/bn_modes.jsonl --n 1000 --seed 0

One JSON line per (checkpoint, bn mode, SN iterations) is appended to ``--out`` as soon as it is measured; a rerun
skips the lines already there, so the script can be stopped and started again. The study's protocol: EMA generator,
``--n`` samples (uniform labels, seed ``--seed``, batch 100), against the reference statistics. ``--table`` prints the
markdown table of a results file (no evaluation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hamgan.bn_modes import SN_REFRESH_EMA, BNMode
from hamgan.metrics import InceptionFeatures, frechet_distance, generator_statistics, load_stats
from hamgan.sample import load_sampled_generator

MODES = (("standing", SN_REFRESH_EMA), ("standing", 0), ("running", SN_REFRESH_EMA), ("batch", SN_REFRESH_EMA),
         ("running", 0))


def key(row: dict) -> tuple:
    return row["checkpoint"], row["bn"], row["sn_iterations"]


def table(rows: list[dict]) -> str:
    """Markdown: one row per checkpoint, one column per (mode, SN iterations)."""
    columns = [m for m in MODES if any((r["bn"], r["sn_iterations"]) == m for r in rows)]
    fid = {key(r): r["fid"] for r in rows}
    lines = ["| checkpoint | " + " | ".join(f"{m} (SN {k})" for m, k in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    for ckpt in dict.fromkeys(r["checkpoint"] for r in rows):
        cells = [f"{fid[(ckpt, m, k)]:.2f}" if (ckpt, m, k) in fid else "" for m, k in columns]
        lines.append(f"| {Path(ckpt).name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*")
    p.add_argument("--ref", help="reference statistics .npz")
    p.add_argument("--out", required=True, help="results, JSON lines (appended; resumable)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--modes", default=",".join(f"{m}:{k}" for m, k in MODES),
                   help="comma-separated MODE:SN_ITERATIONS, measured in this order for every checkpoint")
    p.add_argument("--table", action="store_true", help="only print the table of --out")
    args = p.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.is_file() else []
    if args.table:
        print(table(rows))
        return
    done = {key(r) for r in rows}
    mu_ref, sigma_ref = load_stats(args.ref)
    inception = InceptionFeatures()
    modes = [(m.split(":")[0], int(m.split(":")[1])) for m in args.modes.split(",")]
    out.parent.mkdir(parents=True, exist_ok=True)
    for mode, sn in modes:  # mode-major: every checkpoint gets the first modes before any gets the last
        for ckpt in args.checkpoints:
            if (ckpt, mode, sn) in done:
                continue
            G, _, step, is_ema = load_sampled_generator(ckpt, ema=True)
            bn = BNMode(mode, sn_iterations=sn)
            t = time.perf_counter()
            ext = generator_statistics(G, inception, args.n, args.batch_size, None, args.seed, "cpu", progress=False,
                                       bn=bn)
            row = {"checkpoint": ckpt, "step": step, "ema": is_ema, **bn.as_dict(), "n": args.n, "seed": args.seed,
                   "ref": args.ref, "protocol": "pytorch-fid",
                   "fid": frechet_distance(ext.stats.mean(), ext.stats.cov(), mu_ref, sigma_ref),
                   "seconds": round(time.perf_counter() - t, 1)}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{Path(ckpt).name} {bn.describe()}: FID {row['fid']:.2f} ({row['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
