"""hamgan.logger: metrics.jsonl, truncation on resume, rank != 0 silence, W&B offline into the run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hamgan.logger import RunLogger, truncate_metrics


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_jsonl(tmp_path):
    log = RunLogger(tmp_path, wandb_mode="disabled", use_tqdm=False)
    log.log(10, {"loss_g": 1.5, "loss_d": float("nan")})
    log.log(20, {"loss_g": 0.5, "loss_d": 2.0})
    log.close()
    assert read(tmp_path / "metrics.jsonl") == [
        {"step": 10, "loss_g": 1.5, "loss_d": "nan"},  # JSON has no NaN: written as a string
        {"step": 20, "loss_g": 0.5, "loss_d": 2.0},
    ]
    assert not (tmp_path / "wandb").exists()


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "loss')  # last line cut by a crash
    truncate_metrics(path, 2)
    assert read(path) == [{"step": 1}, {"step": 2}]
    log = RunLogger(tmp_path, wandb_mode="disabled", use_tqdm=False, resume_step=1)
    log.log(2, {"x": 0.0})
    assert read(path) == [{"step": 1}, {"step": 2, "x": 0.0}]


def test_disabled_logger_writes_nothing(tmp_path, capsys):
    log = RunLogger(tmp_path / "run", wandb_mode="offline", enabled=False)
    log.progress(10)
    log.log(1, {"a": 1.0})
    log.advance(1, loss_g=1.0)
    log.write("hello")
    log.close()
    assert not (tmp_path / "run").exists()
    assert capsys.readouterr().out == ""


def test_bad_wandb_mode(tmp_path):
    with pytest.raises(ValueError, match="log.wandb must be one of offline, online, disabled"):
        RunLogger(tmp_path, wandb_mode="cloud")


def test_wandb_offline_run_inside_run_folder(tmp_path, monkeypatch):
    """Offline W&B needs no account; its files live in RUN/wandb and a resumed logger reuses the run id."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    grid = tmp_path / "grid.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(grid)
    log = RunLogger(tmp_path, config={"train": {"steps": 2}}, wandb_mode="offline", use_tqdm=False)
    log.log(1, {"loss_g": 1.0})
    log.log_image(1, "samples", grid, caption="step 1")
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id)
    RunLogger(tmp_path, wandb_mode="offline", use_tqdm=False, resume_step=1).close()
    assert (tmp_path / "wandb_id.txt").read_text().strip() == run_id
