"""studies.fmnist32.sessions: a driver session's wall-clock is on disk from its start, kept current by heartbeats, and
counted even when the driver is killed before it could end normally."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studies.fmnist32.sessions import LEGACY_SESSIONS, SESSIONS_DIR, DriverSession, driver_seconds, session_records

REPO = Path(__file__).resolve().parents[3]


def test_a_session_is_recorded_at_start_refreshed_and_closed(tmp_path):
    with DriverSession(tmp_path, ["--jobs", "2"], every_s=0.05) as session:
        first = json.loads(session.path.read_text())
        assert session.path.parent == tmp_path / SESSIONS_DIR
        assert first["ended"] is False and first["argv"] == ["--jobs", "2"] and first["seconds"] < 1.0
        time.sleep(0.4)
        beat = json.loads(session.path.read_text())
        assert beat["seconds"] >= 0.2 and beat["ended"] is False  # a heartbeat rewrote it meanwhile
    last = json.loads(session.path.read_text())
    assert last["ended"] is True and last["seconds"] >= 0.4 and last["start"] == first["start"]
    assert driver_seconds(tmp_path) == pytest.approx(last["seconds"])
    assert not list((tmp_path / SESSIONS_DIR).glob("*.tmp"))


def test_a_killed_driver_still_counts_up_to_its_last_heartbeat(tmp_path):
    code = ("import sys, time; from studies.fmnist32.sessions import DriverSession\n"
            "with DriverSession(sys.argv[1], ['x'], every_s=0.05):\n"
            "    print('started', flush=True); time.sleep(60)\n")
    # python -c puts the working directory first on sys.path: the repository root, where studies/ lives
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "started"
        time.sleep(0.6)
    finally:
        p.kill()  # SIGKILL: no exit handler runs
        p.wait()
    (record,) = session_records(tmp_path)
    assert record["ended"] is False and 0.3 <= record["seconds"] <= 5.0
    assert driver_seconds(tmp_path) == pytest.approx(record["seconds"])


def test_driver_seconds_sums_heartbeat_records_legacy_lines_and_skips_broken_ones(tmp_path):
    folder = tmp_path / SESSIONS_DIR
    folder.mkdir()
    (folder / "20261128T203739Z-1.json").write_text(json.dumps({"seconds": 9845.0, "reconstructed": "file times"}))
    (folder / "20261129T000250Z-2.json").write_text(json.dumps({"seconds": 100.5}))
    (folder / "broken.json").write_text("{not json")
    (tmp_path / LEGACY_SESSIONS).write_text(json.dumps({"seconds": 10}) + "\n" + "garbage\n"
                                            + json.dumps({"argv": []}) + "\n")
    assert len(session_records(tmp_path)) == 4
    assert driver_seconds(tmp_path) == 9955.5
    assert driver_seconds(tmp_path / "missing") == 0.0


def test_session_file_names_do_not_collide_between_processes(tmp_path):
    a = DriverSession(tmp_path, [])
    assert a.path.name.endswith(f"-{os.getpid()}.json") and a.path.name[:8].isdigit()
