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


def wandb_history(run_folder) -> list[dict]:
    """The history rows of an offline W&B run folder, read from its transaction log (LevelDB-style records of
    ``wandb_internal_pb2.Record`` protobufs in 32 KiB blocks after a 7-byte header)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    [log] = run_folder.glob("run-*.wandb")
    data = log.read_bytes()
    assert data[:4] == b":W&B"
    rows, pos, payload = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        payload += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(payload)
            payload = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_offline_resume_keeps_one_folder_with_every_step(tmp_path, monkeypatch):
    """Session 1 logs steps 1-4 (checkpoint at 2) and dies; session 2 resumes at 2 and logs 3-5: one offline run
    folder whose history holds steps 1-5 once each, the resumed values for 3 and 4, and the grid of step 2."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    (tmp_path / "samples").mkdir()
    grid = tmp_path / "samples" / "step-000000002.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(grid)
    log = RunLogger(tmp_path, wandb_mode="offline", use_tqdm=False)
    for step in range(1, 5):
        log.log(step, {"loss_g": float(step)})
    log.log_image(2, "samples", grid)
    log.close()
    log = RunLogger(tmp_path, wandb_mode="offline", use_tqdm=False, resume_step=2)
    for step in range(3, 6):
        log.log(step, {"loss_g": 10.0 * step})
    log.close()
    folders = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 1
    rows = wandb_history(folders[0])
    assert [r["_step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["loss_g"] for r in rows] == [1.0, 2.0, 30.0, 40.0, 50.0]
    assert rows[1]["samples/_type"] == "image-file"


def test_wandb_online_resume_continues_after_the_servers_last_step(tmp_path, monkeypatch):
    """Online, the server holds the interrupted session's steps (up to 4 here; checkpoint at 2): they are kept,
    logging continues after them (W&B would drop them with a warning), metrics.jsonl holds every step once."""
    import wandb

    logged = []

    class FakeRun:
        starting_step = 5

        def log(self, values, step):
            logged.append(step)

        def finish(self):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun())
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 5)))
    log = RunLogger(tmp_path, wandb_mode="online", use_tqdm=False, resume_step=2)
    for step in range(3, 7):
        log.log(step, {"loss_g": 1.0})
    log.close()
    assert logged == [5, 6]
    assert [r["step"] for r in read(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
