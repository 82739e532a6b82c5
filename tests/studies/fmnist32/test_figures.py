"""studies.fmnist32.figures.export_checkpoints: one small checkpoint per model, never a stale one."""

from pathlib import Path

import torch

from hamgan.checkpoint import checkpoint_path, load_generator
from studies.fmnist32.figures import export_checkpoints
from studies.fmnist32.plan import Run

STEP = 7


def test_one_export_per_model_from_its_first_finished_seed(tmp_path, tiny_checkpoint):
    work, out = tmp_path / "work", tmp_path / "exported"
    runs = [Run(m, s, work / f"{m}-seed{s}") for s in (0, 1) for m in ("hamgan", "none")]
    tiny_checkpoint(checkpoint_path(runs[0].folder, STEP))                      # hamgan-seed0 finished
    tiny_checkpoint(checkpoint_path(runs[1].folder, 3))                         # none-seed0 unfinished ...
    tiny_checkpoint(checkpoint_path(runs[3].folder, STEP), context="none")      # ... none-seed1 finished
    out.mkdir()
    (out / "none-seed0.pt").write_bytes(b"an earlier study's export")           # stale: must not stand in

    assert export_checkpoints(runs, STEP, out) == [out / "hamgan-seed0.pt", out / "none-seed1.pt"]
    state = torch.load(out / "hamgan-seed0.pt", map_location="cpu", weights_only=False)
    assert set(state) - {"format"} == {"config", "step", "G", "G_ema"}  # no D, no optimiser: small
    G, cfg, step = load_generator(out / "none-seed1.pt")
    assert step == STEP and cfg.model.g.context == "none"
    assert not (out / "hamgan-seed1.pt").exists()  # one per model


def test_committed_exports_stand_when_the_run_folders_are_gone(tmp_path, tiny_checkpoint):
    out = tmp_path / "exported"
    tiny_checkpoint(out / "hamgan-seed1.pt")
    runs = [Run("hamgan", s, tmp_path / "gone" / f"hamgan-seed{s}") for s in (0, 1)]
    assert export_checkpoints(runs, STEP, out) == [out / "hamgan-seed1.pt"]
    assert export_checkpoints(runs[:1], STEP, out) == []
