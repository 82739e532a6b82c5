"""Run the rows of the GPU check (scripts/gpu_check_rows.py) in jobs and print one table.

Run it through scripts/gpu_check.sh: that finds the Python and installs what is missing.

The rows run in jobs, each a subprocess of this script (``--job NAME``) with a time limit: a share of the budget
left, in proportion to the job's nominal seconds (``JOBS``), so that a fast job leaves its time to later ones. A job
writes its rows to ``OUT/jobs/NAME.json`` after each row, so a timed-out job keeps its finished rows.

``--smoke`` runs every row end to end on the CPU with tiny sizes (gpu_check_rows.py has them): it tests this script,
not the hardware.

Output: the table on stdout and in ``OUT/gpu_check.md``, rows with their figures in ``OUT/gpu_check.json``, a log per
job in ``OUT/logs/``. Exit status: 0 every row passed or needs 2 GPUs, 1 a row failed, 2 no GPU (without --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
# a scripts/ sibling: Python puts this script's folder first on sys.path
from gpu_check_rows import (MODELS, NEEDS_2_GPUS, NEEDS_GPU, NEUTRAL, ROOT, Row, Settings, ddp_rank, rows_context,
                            rows_ddp, rows_fid, rows_resume_fp16, rows_train_compiled, rows_train_eager)

# (job, nominal seconds on a one-GPU machine): the time limits are these shares of the budget left (see module doc)
JOBS = {"train-eager": 80, "train-compiled-ham": 110, "train-compiled-attention": 100, "resume-fp16": 45,
        "context": 25, "fid": 35, "ddp": 90}


# --------------------------------------------------------------------------------------------------------------------
# Jobs and the table
# --------------------------------------------------------------------------------------------------------------------


def job_rows(name: str, s: Settings) -> list[tuple[Row, Callable[[Row], None]]]:
    if name == "train-eager":
        return rows_train_eager(s)
    if name.startswith("train-compiled-"):
        return rows_train_compiled(s, name.removeprefix("train-compiled-"))
    return {"resume-fp16": rows_resume_fp16, "context": rows_context, "fid": rows_fid, "ddp": rows_ddp}[name](s)


def run_job(name: str, s: Settings) -> None:
    """In the job's subprocess: run its rows in turn, writing all rows to OUT/jobs/NAME.json after each."""
    rows = job_rows(name, s)
    path = s.out / "jobs" / f"{name}.json"
    for row, fn in rows:
        start = time.monotonic()
        try:
            fn(row)
            row.status = "pass"
        except Exception as e:  # the row fails; the job goes on with its next row
            if s.smoke and "fp16" in row.key and "needs a GPU" in str(e):
                row.status, row.result = NEEDS_GPU, str(e)
            else:
                row.status = "FAIL"
                row.result = (row.result + "; " if row.result else "") + f"{type(e).__name__}: {e}"[:300]
                traceback.print_exc()
        row.seconds = time.monotonic() - start
        print(f"[{row.status}] {row.check}: {row.result} ({row.seconds:.0f} s)", file=sys.stderr, flush=True)
        path.write_text(json.dumps([asdict(r) for r, _ in rows], indent=1))


def job_limit(left: float, names: list[str]) -> float:
    """The time limit of job ``names[0]``: its share of ``left`` seconds among the jobs still to run."""
    return left * JOBS[names[0]] / sum(JOBS[n] for n in names)


def run_jobs(s: Settings, names: list[str], budget: float) -> list[Row]:
    """Run the jobs ``names`` in order, each in a subprocess with its share of the budget left; their rows."""
    deadline = time.monotonic() + budget
    rows: list[Row] = []
    for k, name in enumerate(names):
        limit = job_limit(deadline - time.monotonic(), names[k:])
        batch = {c: r.figures["eager"]["batch"] for r in rows for c in MODELS
                 if r.key == f"train-eager-{c}" and r.status == "pass"}
        cmd = [sys.executable, __file__, "--job", name, "--out", str(s.out), "--batch", json.dumps(batch),
               *(["--smoke"] if s.smoke else [])]
        start, why = time.monotonic(), None
        with open(s.out / "logs" / f"{name}.log", "w") as log:
            # a session of its own: a timeout ends the job with all its children (torchrun and its ranks)
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=max(limit, 1.0))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                why = f"timed out: the job had {limit:.0f} s, its share of --budget"
        path = s.out / "jobs" / f"{name}.json"
        written = {r["key"]: Row(**r) for r in json.loads(path.read_text())} if path.is_file() else {}
        path.unlink(missing_ok=True)
        done = [written.get(r.key, r) for r, _ in job_rows(name, s)]  # a row the job never wrote: "not run"
        for r in done:
            if r.status == "not run":
                r.status = "FAIL"
                r.result = why or f"the job ended before this row: see {s.out / 'logs' / (name + '.log')}"
                r.seconds = time.monotonic() - start
            print(f"[{r.status}] {r.check}: {r.result}", file=sys.stderr, flush=True)
        rows += done
    return rows


def header(smoke: bool) -> str:
    date = time.strftime("%Y-%m-%d")
    if smoke:
        return f"{date}, --smoke on the CPU ({os.cpu_count()} cores), torch {torch.__version__}"
    p = torch.cuda.get_device_properties(0)
    return (f"{date}, {torch.cuda.device_count()} x {p.name} ({p.total_memory / 2**30:.0f} GiB), torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}")


def table(title: str, rows: list[Row]) -> str:
    """The markdown table of ``rows`` under ``title``, with the count of passed, failed and neutral rows."""
    lines = [f"GPU check: {title}", "", "| check | result | paper | asserts | status | s |",
             "| --- | --- | --- | --- | --- | ---: |"]
    lines += [f"| {r.check} | {r.result.replace('|', '/')} | {r.reference} | {r.asserts} | {r.status} | "
              f"{r.seconds:.0f} |" for r in rows]
    passed = sum(r.status == "pass" for r in rows)
    failed = sum(r.status not in ("pass", *NEUTRAL) for r in rows)
    lines += ["", f"{passed} passed, {failed} failed, {len(rows) - passed - failed} not counted "
                  f"({' / '.join(NEUTRAL)})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hamgan-gpu-check"))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all jobs (gpu_check.sh: 480 - set-up)")
    p.add_argument("--smoke", action="store_true", help="every row at tiny sizes on the CPU (tests this script)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--ddp-rank", nargs=argparse.REMAINDER, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_rank is not None:
        return ddp_rank(args.ddp_rank, args.smoke)
    s = Settings(args.out, "cpu" if args.smoke else "cuda", args.smoke, json.loads(args.batch))
    if args.job:
        run_job(args.job, s)
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check.sh: no CUDA GPU visible to torch {torch.__version__} (CUDA_VISIBLE_DEVICES="
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); this check needs one GPU (or --smoke)",
              file=sys.stderr)
        return 2
    for sub in ("logs", "jobs", "runs"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    title = header(args.smoke)
    print(f"hamgan GPU check: {title}; budget {args.budget:.0f} s", file=sys.stderr, flush=True)
    two = args.smoke or torch.cuda.device_count() >= 2
    rows = run_jobs(s, [n for n in JOBS if n != "ddp" or two], args.budget)
    if not two:
        rows += [r for r, _ in rows_ddp(s)]
        rows[-1].status = rows[-1].result = NEEDS_2_GPUS
    text = table(title, rows)
    print(text)
    (args.out / "gpu_check.md").write_text(text + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps({"header": title, "rows": [asdict(r) for r in rows]},
                                                        indent=2))
    return 1 if any(r.status not in ("pass", *NEUTRAL) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
