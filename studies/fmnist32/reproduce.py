"""The Fashion-MNIST 32x32 study (issue 12): HamGAN vs SAGAN vs no context block (+ Ham CD / VQ, Ham in G or D only).

    # the study (the Makefile's `make study`): 5 models, 5 or 3 seeds (+ --models ham-g:3,ham-d:3), 2 at once, resumable
    python -m studies.fmnist32.reproduce --checkpoints results/fmnist32/checkpoints

    # the pilot: one seed of the three main models, FID@2000 every 1000 steps, plateau check against a seed spread
    python -m studies.fmnist32.reproduce --models hamgan:1,sagan:1,none:1 --steps 8000 \\
        --eval-steps 1000,2000,3000,4000,5000,6000,7000 --work runs/pilot --results results/fmnist32/pilot \\
        --seed-spread 2.5 --ref runs/fmnist32_study/fmnist32_test_10000_features.npz

    # the rerun check: a new seed of HamGAN and SAGAN lands within the study's mean ± 2 std (RESULTS/check.txt)
    python -m studies.fmnist32.reproduce --models hamgan,sagan --seeds 5 --eval-steps 4000 --jobs 1 \\
        --work runs/fmnist32_rerun --results results/fmnist32/rerun \\
        --ref runs/fmnist32_study/fmnist32_test_10000_features.npz --check-against results/fmnist32/summary.json

    # the paired rerun (issue 24): seeds paired by common random numbers, plateau against the paired SD
    python -m studies.fmnist32.reproduce --models hamgan,sagan,none --seeds 20,21,22,23,24,25 --steps 4000 \\
        --eval-steps 3000 --plateau-spread paired --work runs/fmnist32_paired --results results/fmnist32/paired \\
        --ref runs/fmnist32_test_10000_features.npz

    python -m studies.fmnist32.reproduce --eval-only      # evaluate the checkpoints that exist, train nothing
    python -m studies.fmnist32.reproduce --report-only    # neither train nor evaluate: rewrite the result files

Models (``studies.fmnist32.plan.MODELS``): configs/fmnist32_{hamgan,sagan,none}.yaml, identical hyperparameters;
ham-cd / ham-vq set ``model.{g,d}.ham.kind``, ham-g / ham-d drop the Hamburger from D / G. ``--models name:k`` trains
seeds 0..k-1, a bare name the ``--seeds``. Runs go seeds outer, models inner, ``--jobs`` trainings at once
(``python -m hamgan.train`` subprocesses, output in ``WORK/<model>-seed<s>/train.log``), each with
``train.threads = cores // jobs`` unless ``--threads``; checkpoints of the running trainings are evaluated in this
process as they appear.

Evaluation (``studies.fmnist32.evaluation``): the EMA generator with standing BN statistics (``--bn-batches`` x
``--bn-batch-size``), the same sampling seed ``--fid-seed`` for every checkpoint, against the features of all
Fashion-MNIST test images (``--ref``, made once). At ``--eval-steps``: FID of ``--mid-n`` samples; at ``--steps``:
FID, KID, precision/recall, density/coverage of ``--final-n`` samples plus the FID of their first ``--mid-n``.

Resumable: rerunning the same command skips finished trainings, resumes interrupted ones (the trainer resumes from a
run folder's latest checkpoint) and reuses the evaluations cached in ``WORK/<run>/evals.jsonl``. A run folder whose
lock is held by a live trainer of another command is not started: its checkpoints are evaluated as they appear.
Each driver session's wall-clock goes to ``WORK/driver_sessions/`` (rewritten every minute, so a session killed at the
end of a working period still counts) and is summed in summary.json's ``compute``; progress lines carry the UTC time.

Outputs under ``--results``: runs.csv / runs.json (one row per run and evaluated step), summary.json / summary.md
(final table, FID-vs-steps table, paired differences with t and bootstrap intervals, the seed-aware compare of
``hamgan-eval compare --group`` with the minimum detectable difference, plateau check, cost, compute, exact
commands), metrics/<model>-seed<s>.json (each final row as a compare metric file: ``hamgan-eval compare --group
hamgan='RESULTS/metrics/hamgan-seed*.json' --group sagan=...`` recomputes the comparison without sampling),
fid_vs_steps.png, fid_vs_wallclock.png, samples/<model>.png.

Plateau check: the change of each model's mean FID@mid-n between its last two evaluations, against the std over seeds
at the last step (``--plateau-spread seeds``) or the smallest SD of a paired FID@mid-n difference the model takes
part in (``--plateau-spread paired``: more training would move it less than the noise of the comparison).

Exit status: 0 done, 1 a training failed or the --check-against check failed, 2 bad options or an unusable work
folder (the message names the fix).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch

from hamgan.checkpoint import CheckpointError
from hamgan.metrics.inception import InceptionWeightsError
from studies.fmnist32.evaluation import Evaluator, ensure_reference
from studies.fmnist32.plan import (
    DEFAULT_CONFIGS, DEFAULT_MODELS, MODELS, StudyError, StudyOptions, check_options, eval_specs, parse_models,
    parse_pairs, plan_runs, threads_per_job,
)
from studies.fmnist32.report import check_against, write_report
from studies.fmnist32.scheduler import EvaluationQueue, Scheduler, Stopped
from studies.fmnist32.sessions import DriverSession


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.fmnist32.reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="name:k (seeds 0..k-1) or name (the --seeds), comma-separated")
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="seeds of the models given without :k")
    p.add_argument("--steps", type=int, default=4000, help="G steps of every run")
    p.add_argument("--eval-steps", type=_int_list, default=None,
                   help="intermediate steps with an FID@mid-n (default: steps/4, steps/2, 3 steps/4)")
    p.add_argument("--mid-n", type=int, default=2000, help="samples of the intermediate FIDs (and the curves)")
    p.add_argument("--final-n", type=int, default=5000, help="samples of the final evaluation (FID, KID, P/R, D/C)")
    p.add_argument("--allow-small-n", action="store_true", help="allow --final-n < 2048 (smoke tests only)")
    p.add_argument("--fid-seed", type=int, default=0, help="sampling seed of every evaluation")
    p.add_argument("--bn-batches", type=int, default=16, help="standing BN statistics: batches")
    p.add_argument("--bn-batch-size", type=int, default=100, help="standing BN statistics: images per batch")
    p.add_argument("--eval-batch-size", type=int, default=100, help="generator / Inception batch in evaluation")
    p.add_argument("--ref", type=Path, default=None,
                   help="reference features file (default WORK/fmnist32_test_<ref-n>_features.npz, made when missing)")
    p.add_argument("--ref-n", type=int, default=10000, help="test images of a reference made here (10000: all)")
    p.add_argument("--work", type=Path, default=Path("runs/fmnist32_study"), help="run folders (not committed)")
    p.add_argument("--results", type=Path, default=Path("results/fmnist32"), help="result files (committed)")
    p.add_argument("--checkpoints", type=Path, default=None,
                   help="export the final G and EMA G (no D / optimiser) of each model's first finished seed here")
    p.add_argument("--configs", type=Path, default=DEFAULT_CONFIGS, help="folder of the fmnist32_*.yaml configs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every model (repeatable), e.g. --set model.g.channels=16")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--threads", type=int, default=None, help="torch threads per training (default: cores // jobs)")
    p.add_argument("--pairs", default="hamgan-sagan,hamgan-none", help="paired differences A-B, comma-separated")
    p.add_argument("--seed-spread", type=float, default=None,
                   help="seed spread (FID std) for the plateau check of models with one seed (a pilot)")
    p.add_argument("--plateau-spread", choices=("seeds", "paired"), default="seeds",
                   help="the plateau check's spread: the std over seeds of each model's FID@mid-n at the last step, "
                        "or the smallest SD of a paired FID@mid-n difference (--pairs) the model takes part in")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between checks of the running trainings")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--eval-only", action="store_true", help="evaluate the checkpoints that exist; train nothing")
    mode.add_argument("--report-only", action="store_true", help="neither train nor evaluate: rewrite the results")
    p.add_argument("--check-against", type=Path, default=None, metavar="SUMMARY_JSON",
                   help="check that every run's final FID lies within mean ± 2 std of this earlier study "
                        "(same options only), written to RESULTS/check.txt too; exit 1 if one does not")
    return p


def study_options(args: argparse.Namespace) -> StudyOptions:
    """The checked options of the parsed command line (StudyError when bad)."""
    if len(set(args.seeds)) != len(args.seeds):
        raise StudyError(f"--seeds has duplicates: {args.seeds}; give each seed once")
    options = StudyOptions(
        models=parse_models(args.models, tuple(args.seeds)), steps=args.steps, eval_steps=tuple(args.eval_steps or ()),
        mid_n=args.mid_n, final_n=args.final_n, fid_seed=args.fid_seed, bn_batches=args.bn_batches,
        bn_batch_size=args.bn_batch_size, eval_batch_size=args.eval_batch_size, ref_n=args.ref_n, ref=args.ref,
        work=args.work, results=args.results, configs=args.configs, overrides=tuple(args.overrides), jobs=args.jobs,
        threads=args.threads, allow_small_n=args.allow_small_n, pairs=parse_pairs(args.pairs),
        seed_spread=args.seed_spread, plateau_spread=args.plateau_spread, checkpoints=args.checkpoints)
    check_options(options)
    return options


def say(message: str) -> None:
    """Print a progress line of the driver, stamped with the UTC time (the log of a study spanning days)."""
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    failed: list[str] = []
    try:
        options = study_options(args)
        runs = plan_runs(options)
        if not args.report_only:
            torch.set_num_threads(threads_per_job(options.jobs, options.threads))
            with DriverSession(options.work, argv):  # its wall-clock counts even if this process is killed
                ref = ensure_reference(options.reference, options.configs / MODELS["hamgan"].config, options.ref_n)
                queue = EvaluationQueue(runs, eval_specs(options), Evaluator(ref), out=say)
                if args.eval_only:
                    queue.drain()
                else:
                    failed = Scheduler(runs, options, queue.evaluate_next, poll_s=args.poll, out=say).run()
        try:
            summary = write_report(runs, options, argv, failed, report_only=args.report_only)
        except StudyError:
            if not failed:
                raise
            summary = None  # nothing evaluated because every run failed: exit 1 below names them
        if summary is not None and args.check_against is not None:
            lines: list[str] = []
            outside = check_against(summary, args.check_against, out=lambda line: (print(line), lines.append(line)))
            (options.results / "check.txt").write_text("\n".join(lines).lstrip("\n") + "\n")  # the record of it
            if outside:
                return 1
    except (StudyError, ValueError, CheckpointError, InceptionWeightsError) as e:  # ConfigError, StatsError too
        print(f"studies.fmnist32.reproduce: error: {e}", file=sys.stderr)
        return 2
    if failed:
        print(f"studies.fmnist32.reproduce: failed runs: {', '.join(failed)} (see their train.log)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    # SIGTERM (kill, a batch system, the end of a working period) stops like Ctrl-C: the running trainers are told to
    # save a checkpoint (stop_signal_for_trainers), the session record is closed; rerunning resumes. Installed here,
    # not in main(), so that calling main() (the tests do) leaves the caller's signal handlers alone.
    signal.signal(signal.SIGTERM, stop)
    try:
        status = main()
    except Stopped as stopped:  # trainers checkpointed, session record closed (in main's unwinding)
        sys.stdout.flush()
        sys.stderr.flush()
        # an evaluation thread may be inside torch: the interpreter's teardown would abort ("terminate called
        # without an active exception", exit 134) instead of exiting with 128 + the signal
        os._exit(stopped.code)
    sys.exit(status)
