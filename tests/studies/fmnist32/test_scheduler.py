"""studies.fmnist32.scheduler: trainings start while an evaluation runs, every checkpoint is evaluated by the end, and
an evaluation error stops the study with the trainings checkpointed.

The trainers here are stand-in subprocesses (``python -c``: sleep, then mark the run trained), so that the order of
events is what is tested; the real trainer runs in test_reproduce.py.
"""

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import studies.fmnist32.scheduler as scheduler_module
from studies.fmnist32.plan import Run, StudyOptions
from studies.fmnist32.scheduler import Scheduler

STEPS = 4


@pytest.fixture
def fake_trainer(monkeypatch):
    """Trainer stand-in: sleeps ``run.seed / 10`` s, then writes ``RUN/trained`` (what trained_step reads)."""
    def command(run: Run, options: StudyOptions, python: str = sys.executable) -> list[str]:
        code = (f"import time, pathlib; time.sleep({run.seed / 10}); "
                f"pathlib.Path({str(run.folder)!r}, 'trained').write_text('{options.steps}')")
        return [python, "-c", code]

    def trained(folder: Path) -> int:
        marker = folder / "trained"
        return int(marker.read_text()) if marker.is_file() else 0

    monkeypatch.setattr(scheduler_module, "train_command", command)
    monkeypatch.setattr(scheduler_module, "trained_step", trained)
    return trained


def make_runs(tmp_path: Path, seeds: list[int]) -> tuple[list[Run], StudyOptions]:
    runs = [Run("hamgan", s, tmp_path / f"hamgan-seed{s}") for s in seeds]
    return runs, StudyOptions(models={"hamgan": tuple(seeds)}, steps=STEPS, work=tmp_path, jobs=1)


def test_the_next_training_starts_while_an_evaluation_runs(tmp_path, fake_trainer):
    """One job at a time: run 0 trains fast; its evaluation blocks until run 1 has started and finished."""
    runs, options = make_runs(tmp_path, [0, 3])
    second_started, evaluated = threading.Event(), []

    def evaluate_next() -> bool:
        for run in runs:
            if run.name not in evaluated and fake_trainer(run.folder) >= STEPS:
                if run.seed == 0:  # the long evaluation: the scheduler must go on without it
                    assert second_started.wait(30), "run 1 did not start while run 0 was being evaluated"
                    while fake_trainer(runs[1].folder) < STEPS:
                        time.sleep(0.05)
                evaluated.append(run.name)
                return True
        return False

    s = Scheduler(runs, options, evaluate_next, poll_s=0.05, out=lambda m: "seed3" in m and second_started.set())
    assert s.run() == []
    assert [r.name for r in s.started] == ["hamgan-seed0", "hamgan-seed3"]
    assert evaluated == ["hamgan-seed0", "hamgan-seed3"]  # every checkpoint evaluated before run() returns


def test_checkpoints_written_at_the_very_end_are_still_evaluated(tmp_path, fake_trainer):
    runs, options = make_runs(tmp_path, [0, 1, 2])
    options.jobs = 3
    evaluated: list[str] = []

    def evaluate_next() -> bool:
        for run in runs:
            if run.name not in evaluated and fake_trainer(run.folder) >= STEPS:
                evaluated.append(run.name)
                return True
        return False

    assert Scheduler(runs, options, evaluate_next, poll_s=0.5).run() == []
    assert sorted(evaluated) == [r.name for r in runs]


def test_an_evaluation_error_stops_the_study_and_the_trainings(tmp_path, fake_trainer, monkeypatch):
    runs, options = make_runs(tmp_path, [0, 50])  # run 1 would sleep 5 s
    signals = []
    real_start = Scheduler._start

    def start(self, run):
        training = real_start(self, run)
        real_signal = training.process.send_signal
        training.process.send_signal = lambda sig: signals.append((run.name, sig)) or real_signal(sig)
        return training

    monkeypatch.setattr(Scheduler, "_start", start)

    second_started = threading.Event()

    def evaluate_next() -> bool:
        if second_started.is_set():
            raise RuntimeError("Inception weights damaged")
        return False

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="Inception weights damaged"):
        Scheduler(runs, options, evaluate_next, poll_s=0.05,
                  out=lambda m: "seed50" in m and second_started.set()).run()
    assert time.perf_counter() - t0 < 4.0  # did not wait for run 1's 5 s
    assert [name for name, _ in signals] == ["hamgan-seed50"]  # the running trainer was told to checkpoint
    assert not (runs[1].folder / "trained").exists()


@pytest.mark.parametrize("reason, expected", [
    (scheduler_module.Stopped(signal.SIGTERM), signal.SIGINT),  # SIGTERM may have reached the trainers too
    (KeyboardInterrupt(), signal.SIGTERM),                      # so may Ctrl-C's SIGINT
    (RuntimeError("evaluation failed"), signal.SIGTERM),
])
def test_trainers_are_stopped_with_a_signal_of_another_kind_than_the_one_received(reason, expected):
    assert scheduler_module.stop_signal_for_trainers(reason) == expected
    if isinstance(reason, scheduler_module.Stopped):
        assert reason.code == 128 + signal.SIGTERM


def test_evaluations_use_the_cores_the_trainings_leave_free(tmp_path, fake_trainer):
    """4 cores, 1 job of 2 threads: an evaluation during the trainings gets 2 threads, the draining after them 4."""
    import torch

    runs, options = make_runs(tmp_path, [0, 5])  # run 1 sleeps 0.5 s: run 0 is evaluated while it trains
    options.threads = 2
    calls: list[tuple[str | None, int]] = []  # (run evaluated or None, threads) of every call

    def evaluate_next() -> bool:
        for run in runs:
            if run.name not in [name for name, _ in calls] and fake_trainer(run.folder) >= STEPS:
                calls.append((run.name, torch.get_num_threads()))
                return True
        calls.append((None, torch.get_num_threads()))
        return False

    before = torch.get_num_threads()
    try:
        assert Scheduler(runs, options, evaluate_next, poll_s=0.05, cores=4).run() == []
    finally:
        torch.set_num_threads(before)
    assert ("hamgan-seed0", 2) in calls and calls[-1] == (None, 4)  # the last call comes after the trainings
