"""Wall-clock of the study driver's sessions, kept so that a killed session still counts.

    with DriverSession(work, argv):          # WORK/driver_sessions/<start>-<pid>.json, rewritten every minute
        ... train and evaluate ...
    driver_seconds(work)                     # seconds of every session, the killed ones up to their last heartbeat

A study spans several working periods, and a period may end with the driver killed (SIGKILL gives no chance to write
anything). So the session's record is written when it starts and rewritten every ``every_s`` seconds by a daemon
thread; a killed session loses at most ``every_s`` seconds of its count. Records of sessions reconstructed by hand
(from file times) go into the same folder with a ``"reconstructed"`` note. ``driver_sessions.jsonl`` (one line per
session that ended normally, written before heartbeats existed) is still read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SESSIONS_DIR = "driver_sessions"
LEGACY_SESSIONS = "driver_sessions.jsonl"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


class DriverSession:
    """The heartbeat record of one driver session in ``WORK/driver_sessions/``.

    Args:
        work: the study's work folder.
        argv: the driver's arguments (stored with the record).
        every_s: seconds between heartbeats.
    """

    def __init__(self, work: Path, argv: list[str], every_s: float = 60.0) -> None:
        self.start = time.time()
        self.argv = list(argv)
        self.every_s = every_s
        stamp = datetime.fromtimestamp(self.start, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.path = Path(work) / SESSIONS_DIR / f"{stamp}-{os.getpid()}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, ended: bool = False) -> None:
        """Write the record: start, last heartbeat (``end``), seconds so far, whether the session ended normally."""
        now = time.time()
        _write_atomic(self.path, {"start": _utc(self.start), "end": _utc(now), "seconds": round(now - self.start, 1),
                                  "ended": ended, "argv": self.argv})

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def __enter__(self) -> DriverSession:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="driver-session-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.beat(ended=True)


def session_records(work: Path) -> list[dict[str, Any]]:
    """Every recorded session of ``work``: the heartbeat records, then the legacy ``driver_sessions.jsonl`` lines.

    Unreadable records are skipped (a record is replaced atomically, so only a hand-edited one can be unreadable).
    """
    work = Path(work)
    records: list[dict[str, Any]] = []
    folder = work / SESSIONS_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(json.loads(path.read_text()))
        except ValueError:
            continue
    legacy = work / LEGACY_SESSIONS
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def driver_seconds(work: Path) -> float:
    """Wall-clock seconds of every driver session that trained or evaluated in ``work``."""
    total = 0.0
    for record in session_records(work):
        try:
            total += float(record["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
    return round(total, 1)
