"""Atomic checkpoint writes and clear errors on damaged or foreign files."""

import os
from pathlib import Path

import pytest
import torch

from hamgan.checkpoint import (
    CheckpointError,
    checkpoint_path,
    checkpoint_step,
    checkpoints_to_prune,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_generator,
    load_generator_ema,
    load_state_dict_checked,
    save_checkpoint,
)


def test_round_trip_and_format(tmp_path: Path):
    path = checkpoint_path(tmp_path, 12)
    save_checkpoint({"step": 12, "w": torch.arange(5)}, path)
    state = load_checkpoint(path)
    assert state["step"] == 12 and torch.equal(state["w"], torch.arange(5))
    assert state["format"] == "hamgan-checkpoint/1"
    assert path.name == "ckpt-000000012.pt"
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"], "temporary file left behind"


def test_failed_write_keeps_old_file(tmp_path: Path):
    path = tmp_path / "ckpt-000000001.pt"
    save_checkpoint({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000001.pt"]


def test_truncated_file_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "ckpt-000000005.pt"
    save_checkpoint({"step": 5, "w": torch.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_foreign_file_and_missing_file(tmp_path: Path):
    torch.save({"model": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a hamgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)


def test_latest_ignores_temporary_and_best(tmp_path: Path):
    for step in (3, 10, 7):
        save_checkpoint({"step": step}, checkpoint_path(tmp_path, step))
    (tmp_path / "ckpt-000000011.pt.abcd.tmp").write_bytes(b"partial")
    save_checkpoint({"step": 7}, tmp_path / "ckpt-best.pt")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-000000003.pt", "ckpt-000000007.pt", "ckpt-000000010.pt"]
    assert latest_checkpoint(tmp_path).name == "ckpt-000000010.pt"
    assert load_checkpoint(tmp_path)["step"] == 10


def test_checkpoint_step_reads_the_name_checkpoint_path_writes(tmp_path: Path):
    assert checkpoint_step(checkpoint_path(tmp_path, 123456)) == 123456
    with pytest.raises(ValueError, match="not named like a step checkpoint"):
        checkpoint_step(tmp_path / "ckpt-best.pt")


def test_architecture_mismatch_names_the_fix():
    small, big = torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)
    with pytest.raises(CheckpointError, match="does not fit the configured architecture"):
        load_state_dict_checked(small, big.state_dict(), "generator", "x.pt")


def test_load_generator_says_whether_it_gave_ema_weights(tmp_path: Path, tiny_checkpoint):
    with_ema = tiny_checkpoint(tmp_path / "a.pt", ema=True)
    without = tiny_checkpoint(tmp_path / "b.pt", ema=False)
    G, _, step, is_ema = load_generator_ema(with_ema)
    assert is_ema and step == 7 and not G.training
    ema_weights = torch.load(with_ema, weights_only=False)["G_ema"]
    assert all(torch.equal(v, ema_weights[k]) for k, v in G.state_dict().items())
    assert load_generator_ema(with_ema, ema=False)[3] is False
    with pytest.warns(UserWarning, match="has no EMA generator; using the raw G"):
        assert load_generator_ema(without)[3] is False
    assert len(load_generator(with_ema)) == 3


def test_pruning_counts_the_schedule_and_never_drops_a_scheduled_checkpoint_for_interrupt_ones():
    """Regression (issue 12's study): keep_last 5 over ckpt-1000, a SIGTERM checkpoint at 1208, 2000, 3000, another at
    3088 and 4000 deleted ckpt-1000 before the study had evaluated it. Interrupt / final checkpoints off the
    ckpt_every schedule do not count; they go with the scheduled checkpoints older than them."""
    paths = [Path(f"r/ckpt-{s:09d}.pt") for s in (1000, 1208, 2000, 3000, 3088, 4000)]
    names = lambda ps: [checkpoint_step(p) for p in ps]  # noqa: E731
    assert checkpoints_to_prune(paths, 5, 1000) == []
    assert names(checkpoints_to_prune(paths, 4, 1000)) == []
    assert names(checkpoints_to_prune(paths, 2, 1000)) == [1000, 1208, 2000]  # 3000, 3088 (newer), 4000 stay
    assert names(checkpoints_to_prune(paths, 1, 1000)) == [1000, 1208, 2000, 3000, 3088]
    assert names(checkpoints_to_prune([*paths, Path("r/ckpt-000004500.pt")], 1, 1000)) == [
        1000, 1208, 2000, 3000, 3088]  # a final checkpoint off the schedule is the newest: kept
    assert checkpoints_to_prune([Path("r/ckpt-000000007.pt")], 1, 2) == []  # nothing scheduled yet: nothing goes
