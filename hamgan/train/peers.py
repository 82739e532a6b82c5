"""Knowing which rank died: heartbeats through the rendezvous store, so no rank waits on a dead peer unnamed.

When one rank of a data-parallel run dies (SIGKILL, out-of-memory kill, node loss), the others are left inside a
collective: gloo fails at once with "Connection reset by peer" (no rank named), NCCL waits until the process-group
timeout. :class:`PeerMonitor` runs a thread on every rank that, every ``interval`` seconds,

- bumps this rank's counter ``beat/<rank>`` in the rendezvous store (torchrun's TCPStore, MASTER_ADDR:MASTER_PORT,
  through a connection of its own), and reads the other ranks' counters and exit notes;
- declares rank r lost when its counter has not moved for ``stale`` seconds of this host's clock (no clock
  comparison between hosts), or at once when rank r left the note ``failed: <error>`` on its way out.

The verdict names the rank, its host and pid and what happened. The main thread, when a collective raises, asks
:meth:`explain` for it (waiting up to ``stale`` seconds) and raises :class:`PeerLost`; if the main thread is stuck in
a collective that never returns (NCCL), the monitor prints the verdict and ends the process itself after
``grace`` seconds (default ``stale``) with exit status :data:`EXIT_PEER_LOST`. A rank that finishes normally leaves
``done``; the others then stop watching it.

Timing, from ``train.dist_timeout_min`` T: interval = T/20 clamped to [0.5, 10] s, stale = T/4 clamped to [3, 120]
s: a dead rank is named within ``stale + interval`` seconds, well inside the collective timeout.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import threading
import time
import warnings
from typing import Any

import torch.distributed as dist

EXIT_PEER_LOST = 5


class PeerLost(RuntimeError):
    """Another rank died or failed; the message names it."""


def looks_collective(error: BaseException) -> bool:
    """True for errors raised by a collective (a broken connection, a timeout), as opposed to this rank's own."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out"))


def monitor_timing(timeout_min: float) -> tuple[float, float]:
    """``(interval, stale)`` in seconds for a process-group timeout of ``timeout_min`` minutes."""
    seconds = timeout_min * 60
    return min(max(seconds / 20, 0.5), 10.0), min(max(seconds / 4, 3.0), 120.0)


class PeerMonitor:
    """Heartbeats of this rank and watch over the others (see module doc). A no-op in a single process."""

    def __init__(self, rank: int, world_size: int, timeout_min: float, grace: float | None = None) -> None:
        self.rank, self.world_size = rank, world_size
        self.interval, self.stale = monitor_timing(timeout_min)
        self.grace = self.stale if grace is None else grace
        self.verdict: str | None = None
        self._found = threading.Event()
        self._stop = threading.Event()
        self._store: Any = None
        self._thread: threading.Thread | None = None
        if world_size < 2:
            return
        host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not host or not port:  # process group made some other way: no store to reach
            return
        generation = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        try:
            store = dist.TCPStore(host, int(port), is_master=False, timeout=datetime.timedelta(seconds=self.stale),
                                  wait_for_workers=False)
            self._store = dist.PrefixStore(f"hamgan-peers/{generation}", store)
            self._store.set(f"who/{rank}", f"{socket.gethostname()} pid {os.getpid()}")
            self._store.set(f"beat/{rank}", "0")
        except Exception as e:  # training works without the monitor; only the naming of a lost rank is gone
            warnings.warn(f"rank {rank}: the peer monitor cannot reach the store {host}:{port} ({e}); a lost rank "
                          "will not be named", stacklevel=2)
            self._store = None
            return
        self._thread = threading.Thread(target=self._watch, name="hamgan-peer-monitor", daemon=True)
        self._thread.start()

    # ---- the thread ----------------------------------------------------------------------------------------------

    def _who(self, rank: int) -> str:
        try:
            return self._store.get(f"who/{rank}").decode()
        except Exception:
            return "host unknown"

    def _watch(self) -> None:
        others = [r for r in range(self.world_size) if r != self.rank]
        seen: dict[int, bytes | None] = {r: None for r in others}
        since = {r: time.monotonic() for r in others}
        store_ok = time.monotonic()
        beat = 0
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            try:
                beat += 1
                self._store.set(f"beat/{self.rank}", str(beat))
                store_ok = now
                for r in list(others):
                    if self._store.check([f"exit/{r}"]):
                        note = self._store.get(f"exit/{r}").decode()
                        if note == "done":
                            others.remove(r)
                            continue
                        self._declare(f"rank {r} ({self._who(r)}) {note}")
                        break
                    value = self._store.get(f"beat/{r}") if self._store.check([f"beat/{r}"]) else None
                    if value != seen[r]:
                        seen[r], since[r] = value, now
                    elif now - since[r] > self.stale:
                        state = "never started" if value is None else "stopped responding"
                        self._declare(f"rank {r} ({self._who(r)}) {state}: no heartbeat for {now - since[r]:.0f} s "
                                      "(killed, out of memory, or its node is gone; see its log)")
                        break
            except Exception as e:  # the store itself is gone: it lives in torchrun's agent or in rank 0
                if now - store_ok > self.stale:
                    self._declare(f"the rendezvous store {os.environ.get('MASTER_ADDR')}:"
                                  f"{os.environ.get('MASTER_PORT')} is unreachable for {now - store_ok:.0f} s "
                                  f"({type(e).__name__}): rank 0 or torchrun's agent died")
            if self._found.is_set():
                break
        if self._found.is_set() and not self._stop.wait(self.grace):
            # the main thread did not end the process: it is stuck in a collective that will not return
            print(f"hamgan-train: rank {self.rank}: {self.verdict}; exiting", file=sys.stderr, flush=True)
            os._exit(EXIT_PEER_LOST)

    def _declare(self, verdict: str) -> None:
        self.verdict = verdict
        self._found.set()

    # ---- the main thread -----------------------------------------------------------------------------------------

    def explain(self, error: BaseException) -> PeerLost | None:
        """After a collective raised ``error``: wait up to ``stale + 2 interval`` s for the monitor to name a lost
        rank; the :class:`PeerLost` to raise, or None when every rank is alive (``error`` is then this rank's own)."""
        if self._thread is None:
            return None
        self._found.wait(self.stale + 2 * self.interval)
        if self.verdict is None:
            return None
        return PeerLost(f"rank {self.rank} stops: {self.verdict} ({type(error).__name__} in a collective: "
                        f"{str(error).splitlines()[0][:200] if str(error) else ''})")

    def close(self, error: BaseException | None = None) -> None:
        """Leave the exit note (``done``, or ``failed: <error>`` so that the other ranks stop at once), stop and join
        the thread, and drop the store connection. Idempotent.

        The join matters: a daemon thread left inside a store call (C++, GIL released) when the interpreter exits is
        ended by CPython with ``pthread_exit``, which aborts the process ("terminate called without an active
        exception", exit 134) instead of the exit status the run chose.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stale + self.interval + 1)  # a store call returns within `stale` s
            self._thread = None
        if self._store is None:
            return
        note = "done" if error is None else f"failed: {type(error).__name__}: {str(error)[:300]}"
        try:
            self._store.set(f"exit/{self.rank}", note)
        except Exception:
            pass
        self._store = None
