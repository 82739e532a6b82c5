"""Trains the study's runs as parallel subprocesses and evaluates their checkpoints as they appear (pipelined).

    queue = EvaluationQueue(runs, eval_specs(options), evaluator)
    failed = Scheduler(runs, options, queue.evaluate_next).run()      # names of the runs whose trainer failed

The loop: start trainings up to ``options.jobs`` at once (each ``python -m hamgan.train ...`` with its output appended
to ``RUN/train.log``, the command line first), reap the finished ones, sleep ``poll_s`` seconds; repeat until every run
is trained. Meanwhile one evaluation thread of this process evaluates the available checkpoints that are not yet
cached, one at a time, and finishes the rest once the trainings are done. The evaluation competes with the trainings
for the cores, but it never holds up the start of the next training (a final evaluation takes up to 20 minutes on a
busy 2-core machine; a core left idle that long was the old loop's cost). Each evaluation takes the torch threads
that the running trainings leave free, at least one: all the cores for the evaluations left after the last training.

A run already at ``options.steps`` is not started. A run folder locked by a live trainer of another command (e.g. a
pilot started by hand) is not started either: its checkpoints are evaluated as they appear, and once its lock is gone
the run is started (resumed) here if it did not reach ``options.steps``. A failing trainer is reported with the tail
of its log; the other runs continue.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import torch

from studies.fmnist32.evaluation import EvalSpec, Evaluator, cached_row
from studies.fmnist32.plan import REPO, Run, StudyOptions, threads_per_job, train_command

TAIL_LINES = 5


def trained_step(folder: Path) -> int:
    """Step of the run folder's latest checkpoint (0 when there is none)."""
    from hamgan.checkpoint import checkpoint_step, latest_checkpoint

    latest = latest_checkpoint(folder)
    return checkpoint_step(latest) if latest is not None else 0


def live_lock(folder: Path) -> dict[str, Any] | None:
    """The holder (host, pid, started) of ``folder``'s ``train.lock`` when a live trainer holds it, else None.

    Uses the trainer's own staleness rules (:meth:`hamgan.train.run_folder.RunLock.stale_reason`).
    """
    from hamgan.train.run_folder import LOCK_NAME, RunLock

    path = folder / LOCK_NAME
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return None  # a half-written lock: the trainer's acquire decides
    return None if RunLock(folder).stale_reason(holder, age) else holder


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stopped(SystemExit):
    """Raised in the driver by a stop signal (its SIGTERM handler); exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def stop_signal_for_trainers(reason: BaseException) -> int:
    """The signal that makes the running trainers checkpoint and stop when the driver stops for ``reason``.

    A kind other than the one the driver received: a signal sent to the whole process group or job (Ctrl-C in a
    terminal, ``kill -- -PGID``, a batch system) reached the trainers too, and a trainer takes a second signal of
    the same kind as "stop now, without a checkpoint" (:class:`hamgan.train.health.StopRequest`).
    """
    received = signal.SIGINT if isinstance(reason, KeyboardInterrupt) else getattr(reason, "signum", None)
    return signal.SIGINT if received == signal.SIGTERM else signal.SIGTERM


@dataclass
class Training:
    """A training subprocess of the scheduler."""

    run: Run
    process: subprocess.Popen
    log: IO[str]
    start: float


class EvaluationQueue:
    """The (run, step) evaluations of the study, in run order (seeds outer) then step order; one at a time.

    :meth:`evaluate_next` evaluates the first one that is neither cached nor waiting for its checkpoint.
    """

    def __init__(self, runs: list[Run], specs: dict[int, EvalSpec], evaluator: Evaluator,
                 out: Callable[[str], None] = print) -> None:
        self.pending = [(run, step) for run in runs for step in sorted(specs)]
        self.specs = specs
        self.evaluator = evaluator
        self.out = out

    def evaluate_next(self) -> bool:
        """Evaluate one available checkpoint (or take its cached row); False when none is available now."""
        from hamgan.checkpoint import checkpoint_path

        for i, (run, step) in enumerate(self.pending):
            spec = self.specs[step]
            cached = cached_row(run.folder, step, spec, self.evaluator.reference_path.name)
            if cached is None and not checkpoint_path(run.folder, step).is_file():
                continue  # not trained that far yet
            del self.pending[i]
            if cached is None:
                row = self.evaluator.evaluate_cached(run.folder, step, spec)
                self.out(f"  evaluated {run.name} step {step}: FID@{spec.n} {row['fid']:.2f} ({row['eval_s']:.0f} s)")
            return True
        return False

    def drain(self) -> None:
        """Evaluate every checkpoint available now."""
        while self.evaluate_next():
            pass


class Scheduler:
    """Runs the trainings of ``runs`` (``options.jobs`` at once) and calls ``evaluate_next`` in between."""

    def __init__(self, runs: list[Run], options: StudyOptions, evaluate_next: Callable[[], bool] = lambda: False,
                 poll_s: float = 5.0, python: str = sys.executable, out: Callable[[str], None] = print,
                 cores: int | None = None) -> None:
        self.runs = runs
        self.options = options
        self.evaluate_next = evaluate_next
        self.poll_s = poll_s
        self.python = python
        self.out = out
        self.started: list[Run] = []  # every training this scheduler started (for tests and the log)
        self.cores = cores or os.cpu_count() or 1
        self.training_threads = 0  # torch threads of the trainings running now (updated by the scheduling loop)

    def evaluation_threads(self) -> int:
        """Torch threads of the next evaluation: the cores the running trainings leave free, at least one (all of
        them once the trainings are done, so the last evaluations do not leave cores idle)."""
        return max(1, self.cores - self.training_threads)

    def _start(self, run: Run) -> Training:
        cmd = train_command(run, self.options, self.python)
        run.folder.mkdir(parents=True, exist_ok=True)
        log = open(run.folder / "train.log", "a")
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                                             if p)}
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        done = trained_step(run.folder)
        self.out(f"{'resuming ' + run.name + f' at step {done}' if done else 'training ' + run.name} to step "
                 f"{self.options.steps} (pid {process.pid}, log {run.folder / 'train.log'})")
        self.started.append(run)
        return Training(run, process, log, time.perf_counter())

    def _reap(self, running: dict[str, Training], failed: list[str]) -> None:
        for name, t in list(running.items()):
            rc = t.process.poll()
            if rc is None:
                continue
            t.log.close()
            del running[name]
            elapsed = time.perf_counter() - t.start
            if rc != 0:
                failed.append(name)
                self.out(f"  {name} FAILED (exit {rc}) after {elapsed:.0f} s: {log_tail(t.run.folder / 'train.log')}")
            else:
                self.out(f"  {name} trained in {elapsed:.0f} s")

    def _evaluate_until(self, trainings_done: threading.Event, errors: list[BaseException]) -> None:
        """The evaluation thread: evaluate what is available, poll while trainings run, drain once they are done."""
        try:
            while True:
                done = trainings_done.is_set()  # read before looking, so a checkpoint written last is not missed
                torch.set_num_threads(self.evaluation_threads())  # this thread's evaluations only
                if self.evaluate_next():
                    continue
                if done:
                    return
                trainings_done.wait(self.poll_s)
        except BaseException as e:  # re-raised by the scheduling thread
            errors.append(e)

    def run(self) -> list[str]:
        """Train every run to ``options.steps`` and evaluate along the way; returns the names of failed runs."""
        todo, elsewhere = list(self.runs), []
        running: dict[str, Training] = {}
        failed: list[str] = []
        trainings_done, errors = threading.Event(), []
        evaluation = threading.Thread(target=self._evaluate_until, args=(trainings_done, errors),
                                      name="study-evaluation", daemon=True)
        evaluation.start()
        try:
            while todo or running or elsewhere:
                if errors:
                    raise errors[0]
                self._reap(running, failed)
                for run in list(elsewhere):
                    if live_lock(run.folder) is None:  # the other trainer stopped: finish the run here if needed
                        elsewhere.remove(run)
                        todo.insert(0, run)
                while todo and len(running) < self.options.jobs:
                    run = todo.pop(0)
                    if trained_step(run.folder) >= self.options.steps:
                        continue
                    holder = live_lock(run.folder)
                    if holder is not None:
                        self.out(f"{run.name}: trained by another process (host {holder.get('host')} pid "
                                 f"{holder.get('pid')}); evaluating its checkpoints as they appear")
                        elsewhere.append(run)
                        continue
                    running[run.name] = self._start(run)
                self.training_threads = len(running) * threads_per_job(self.options.jobs, self.options.threads,
                                                                       self.cores)
                if todo or running or elsewhere:
                    time.sleep(self.poll_s)
            self.training_threads = 0
            trainings_done.set()
            while evaluation.is_alive():  # a join with a timeout keeps Ctrl-C and SIGTERM working
                evaluation.join(self.poll_s)
            if errors:
                raise errors[0]
        except BaseException as e:
            trainings_done.set()
            stop = stop_signal_for_trainers(e)
            for t in running.values():  # the trainer saves a checkpoint and exits: rerunning resumes it
                t.process.send_signal(stop)
            for t in running.values():
                t.process.wait()
                t.log.close()
            raise  # an evaluation still running is a daemon thread: it ends with the process, its row unwritten
        return failed
