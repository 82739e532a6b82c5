"""FID of checkpoints under each batch-norm mode (and with / without the spectral-norm refresh), resumable.

    python scripts/eval_bn_modes.py results/fmnist32/checkpoints/*.pt \
        --ref runs/fmnist32_study/fmnist32_test_10000_features.npz --out results/fmnist32/bn_modes.jsonl --n 5000

One JSON line per (checkpoint, bn mode, SN iterations) is appended to ``--out`` as soon as it is measured; a rerun
skips the lines already there, so the script can be stopped and started again. The study's protocol: EMA generator,
``--n`` samples (uniform labels, seed ``--seed``, batch 100), against the reference statistics. ``--table`` prints the
markdown table of a results file (no evaluation); ``--study runs.json`` fills the column of the study's own BN mode
with the study's values of ``--n`` samples where they were not measured again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hamgan.bn_modes import SN_REFRESH_EMA, BNMode
from hamgan.metrics import InceptionFeatures, frechet_distance, generator_statistics, load_stats
from hamgan.checkpoint import load_generator_ema

MODES = (("standing", SN_REFRESH_EMA), ("batch", SN_REFRESH_EMA), ("running", 0), ("standing", 0))


def key(row: dict) -> tuple:
    return row["checkpoint"], row["bn"], row["sn_iterations"]


COLUMNS = (("running", 0, "running (copied)"), ("standing", SN_REFRESH_EMA, "standing (default)"),
           ("batch", SN_REFRESH_EMA, "batch (official code)"), ("standing", 0, "standing, SN not refreshed"))


def study_rows(path: str | Path, checkpoints: list[str], n: int) -> list[dict]:
    """The study's own FIDs of ``n`` samples (its runs.json) for checkpoints named MODEL-seedS.pt, as table rows.

    A committed checkpoint is its run's last evaluated step. The row goes in the column of the study's own batch-norm
    mode: the issue-12 driver records ``bn`` (standing, spectral-norm vectors refreshed); rows without it are the
    earlier study's (copied running statistics, no refresh). Its FID counts if it has ``n`` samples: the row's
    ``fid``, or the ``fid_at_<n>`` of its first ``n`` samples."""
    last: dict[tuple[str, int], dict] = {}
    for r in json.loads(Path(path).read_text()):
        if (r["model"], r["seed"]) not in last or r["step"] > last[(r["model"], r["seed"])]["step"]:
            last[(r["model"], r["seed"])] = r
    out = []
    for ckpt in checkpoints:
        model, seed = Path(ckpt).stem.rsplit("-seed", 1)
        r = last.get((model, int(seed)))
        if r is None:
            continue
        fid = r["fid"] if r.get("n", n) == n else r.get(f"fid_at_{n}")
        if fid is None:
            continue
        bn, sn = (r["bn"], SN_REFRESH_EMA) if "bn" in r else ("running", 0)
        out.append({"checkpoint": ckpt, "step": r["step"], "bn": bn, "sn_iterations": sn, "n": n, "fid": fid,
                    "from": str(path)})
    return out


def table(rows: list[dict]) -> str:
    """Markdown: one row per checkpoint and the mean ± std per model, one column per (mode, SN iterations).

    A measured row wins over a study row of the same key. A model with one seed per column gets no mean row."""
    import numpy as np

    fid = {}
    for r in sorted(rows, key=lambda r: "from" not in r):  # study rows first, measured rows overwrite them
        fid[key(r)] = r["fid"]
    columns = [c for c in COLUMNS if any((r["bn"], r["sn_iterations"]) == c[:2] for r in rows)]
    lines = ["| checkpoint | " + " | ".join(c[2] for c in columns) + " |", "| --- |" + " ---: |" * len(columns)]
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
    for ckpt in checkpoints:
        cells = [f"{fid[(ckpt, m, k)]:.2f}" if (ckpt, m, k) in fid else "" for m, k, _ in columns]
        lines.append(f"| {Path(ckpt).name} | " + " | ".join(cells) + " |")
    for model in dict.fromkeys(Path(c).stem.rsplit("-seed", 1)[0] for c in checkpoints):
        cells = []
        for m, k, _ in columns:
            values = [fid[(c, m, k)] for c in checkpoints if Path(c).stem.startswith(model + "-seed")
                      and (c, m, k) in fid]
            cells.append(f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else "")
        if any(cells):
            lines.append(f"| **{model}** (mean ± std over seeds) | " + " | ".join(cells) + " |")
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
    p.add_argument("--study", default=None, metavar="RUNS_JSON",
                   help="with --table: fill the study's own column (its BN mode, --n samples) from its runs.json "
                        "where not measured")
    args = p.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.is_file() else []
    if args.table:
        extra = []
        if args.study:  # every committed checkpoint of the study, named as the measured rows name them
            folder = Path(rows[0]["checkpoint"]).parent if rows else Path("results/fmnist32/checkpoints")
            study = sorted({(r["model"], r["seed"]) for r in json.loads(Path(args.study).read_text())},
                           key=lambda ms: (["hamgan", "sagan", "none"].index(ms[0]) if ms[0] in ("hamgan", "sagan",
                                                                                                "none") else 9, ms))
            extra = study_rows(args.study, [str(folder / f"{m}-seed{s}.pt") for m, s in study
                                            if (folder / f"{m}-seed{s}.pt").is_file()], args.n)
        print(table(extra + rows))
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
            G, _, step, is_ema = load_generator_ema(ckpt, ema=True)
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
