"""The run folder: its config, its lock, and resuming from its checkpoints by consensus of all ranks.

Config: :func:`resolve_config` merges the given config with the run's saved ``config.yaml`` (architecture and data
set may not change on resume); :func:`check_config` checks the ranges the schema cannot express.

Lock (``RUN/train.lock``, held by rank 0): a second trainer on a live run folder is refused, naming the lock file,
host and pid: at once when the holder runs on this host; within :data:`HEARTBEAT_S` (when its heartbeat is seen to
advance) when it runs on another host. The lock records host, pid, process start time and torchrun job; rank 0
touches it every :data:`HEARTBEAT_S` seconds. A lock is stale, and taken over (the note is logged), when it was left
by

- an earlier attempt of the same torchrun job (``--max-restarts``: same TORCHELASTIC_RUN_ID, lower restart count);
- a process of this host that is gone (its pid is free, or now belongs to a process started at another time);
- a process of another host (hosts are told apart by hostname) whose heartbeat is older than :data:`STALE_S` by
  this host's clock against the file server's modification time (this check assumes clocks that agree to well
  under a minute), or whose heartbeat does not advance while it is watched for :data:`TAKEOVER_WAIT_S` (= STALE_S)
  of this host's own time: a job requeued onto another node right after a crash waits up to that long and then
  starts, instead of being refused. Watching compares the lock file's successive modification times only, so it
  does not depend on clocks.

A holder whose lock was taken over (its heartbeat stalled past the watch; the lock file now names another process)
stops touching it and refuses to write checkpoints (:meth:`RunLock.check_held`), so two trainers never write the
same run folder.

Resume by consensus (:func:`open_run_folder`): rank 0 takes the lock, removes the leftovers of interrupted saves
and chooses the checkpoint (the newest ``ckpt-<step>.pt`` it lists), then broadcasts the path, or its error, to all
ranks. No other rank lists the folder: its view may be stale (NFS attribute caches) or another file system. Every
rank loads that file into the raw networks before DDP wraps them, and :func:`check_consensus` compares over ranks
the step, a checksum of every parameter and buffer of G, D and the EMA G, and a hash of the resolved config
(:func:`config_hash`; e.g. a node that read a stale ``config.yaml``); a disagreement is a :class:`CheckpointError`
naming each rank's values, never a silent divergence.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from hamgan import distributed
from hamgan.checkpoint import CheckpointError, CheckpointWriteError, latest_checkpoint
from hamgan.config import Config, ConfigError, apply_overrides, from_dict, load_config, to_dict
from hamgan.distributed import DistInfo

IDENTITY_KEYS = ("model.", "data.name")  # keys that may not change when a run folder is resumed
# Config keys that may differ between ranks: where a node finds its files (nodes may mount data at different paths;
# the FID reference file is read by rank 0 only). Every other key must be the same on all ranks (check_consensus).
NODE_LOCAL_KEYS = ("data.root", "data.packed", "data.index_cache", "train.fid.ref_stats")
LOCK_NAME = "train.lock"
HEARTBEAT_S = 15.0  # rank 0 touches its lock this often
STALE_S = 120.0  # a lock of another host without heartbeat for this long is stale
TAKEOVER_WAIT_S = STALE_S  # a fresh lock of another host is watched this long for a heartbeat
POLL_S = 1.0  # how often a watched lock is looked at


class LockError(RuntimeError):
    """The run folder is in use by another live trainer."""


# --------------------------------------------------------------------------------------------------------------------
# Config of a run folder
# --------------------------------------------------------------------------------------------------------------------


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def resolve_config(
    config: str | Path | None, out: str | Path, overrides: list[str] = (), steps: int | None = None
) -> tuple[Config, list[str]]:
    """The config of the run in ``out``: ``config`` + ``overrides`` (+ ``steps``), checked against a resumed run.

    When ``out/config.yaml`` exists (a run to resume), ``config`` may be omitted (the saved config is used) and the
    model architecture and data set may not change; other changed keys (e.g. ``train.steps``, logging) take their
    new values and are listed in the returned notes.
    """
    saved_path = Path(out) / "config.yaml"
    saved = load_config(saved_path) if saved_path.is_file() else None
    if config is None and saved is None:
        raise ConfigError(f"give a CONFIG file: '{out}' holds no run to resume (no config.yaml)")
    if config is None:
        cfg = from_dict(apply_overrides(to_dict(saved), list(overrides)))
    else:
        cfg = load_config(config, list(overrides))
    if steps is not None:
        cfg.train.steps = steps
    notes = []
    if saved is not None:
        old, new = flatten(to_dict(saved)), flatten(to_dict(cfg))
        changed = [k for k in new if old.get(k) != new[k]]
        fixed = [k for k in changed if k.startswith(IDENTITY_KEYS)]
        if fixed:
            diffs = "; ".join(f"{k}: {old.get(k)!r} in the run, {new[k]!r} given" for k in fixed)
            raise ConfigError(
                f"'{out}' is a run of another architecture or data set ({diffs}). Resume it with its own config "
                f"(hamgan-train --out {out}) or train the new config in a new --out folder"
            )
        notes = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed]
    return cfg, notes


def check_config(cfg: Config) -> None:
    """Ranges the schema cannot express."""
    t = cfg.train
    for key, value, low in [
        ("train.steps", t.steps, 1),
        ("train.batch_size", t.batch_size, 1),
        ("train.d_steps", t.d_steps, 1),
        ("train.accumulate", t.accumulate, 1),
        ("train.log_every", t.log_every, 1),
        ("train.ckpt_every", t.ckpt_every, 1),
        ("train.keep_last", t.keep_last, 1),
        ("train.sample_every", t.sample_every, 0),
        ("train.fid.every", t.fid.every, 0),
        ("train.threads", t.threads, 0),
        ("train.ema.start", t.ema.start, 0),
        ("data.num_workers", cfg.data.num_workers, 0),
    ]:
        if value < low:
            raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"config key 'train.betas' must be two numbers in [0, 1), got {t.betas}")
    if not 0.0 <= t.ema.decay < 1.0:
        raise ConfigError(f"config key 'train.ema.decay' must be in [0, 1), got {t.ema.decay}")
    if t.lr_g <= 0 or t.lr_d <= 0:
        raise ConfigError(f"train.lr_g and train.lr_d must be > 0, got {t.lr_g}, {t.lr_d}")
    if t.dist_timeout_min <= 0:
        raise ConfigError(f"config key 'train.dist_timeout_min' must be > 0 (minutes), got {t.dist_timeout_min}")


# --------------------------------------------------------------------------------------------------------------------
# The run lock
# --------------------------------------------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """The lock file of a run folder (see module doc): :meth:`acquire`, :meth:`check_held`, :meth:`release`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False
        self.lost: str | None = None  # the lock's content when another trainer took it over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def identity() -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "job": os.environ.get("TORCHELASTIC_RUN_ID"),
            "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def stale_reason(self, holder: dict[str, Any], age: float) -> str | None:
        """Why the lock of ``holder`` (its recorded identity; heartbeat ``age`` seconds ago) is stale, or None."""
        me = self.identity()
        if holder.get("job") not in (None, "", "none") and holder.get("job") == me["job"] \
                and int(holder.get("restart", 0)) < me["restart"]:
            return f"left by restart {holder.get('restart')} of this torchrun job"
        if holder.get("host") == me["host"]:
            pid = int(holder.get("pid", -1))
            if pid == me["pid"]:
                return None  # this very process holds it
            if not _pid_alive(pid):
                return f"its process {pid} on this host is gone"
            start = _process_start(pid)
            if holder.get("process_start") and start and start != holder["process_start"]:
                return f"pid {pid} now belongs to another process"
            return None
        if age > STALE_S:
            return f"no heartbeat from host {holder.get('host')} for {age:.0f} s (> {STALE_S:.0f} s)"
        return None

    def acquire(self) -> str | None:
        """Take the lock (raises :class:`LockError` when a live trainer holds it); returns a note when a stale lock
        was taken over. A fresh lock of another host is watched for up to :data:`TAKEOVER_WAIT_S` seconds first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        note = None
        for _ in range(5):
            tmp = self.path.with_name(f"{LOCK_NAME}.{socket.gethostname()}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.identity()) + "\n")
            try:
                os.link(tmp, self.path)  # atomic "create with content", also on NFS
                self.held = True
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            if self.held:
                self._thread = threading.Thread(target=self._beat, name="hamgan-lock-heartbeat", daemon=True)
                self._thread.start()
                return note
            seen = self._look()
            if seen is None:  # released meanwhile
                continue
            text, mtime_ns = seen
            age = time.time() - mtime_ns / 1e9
            try:
                holder = json.loads(text)
            except ValueError:
                holder = {"host": "?", "pid": -1}
            reason = self.stale_reason(holder, age)
            if reason is None and holder.get("host") != socket.gethostname():
                reason, changed = self._watch(holder, text, mtime_ns)
                if changed:  # released or taken by another process meanwhile: look again
                    continue
                age = 0.0 if reason is None else age  # a heartbeat was just seen
            if reason is None:
                raise LockError(
                    f"run folder '{self.path.parent}' is in use: lock {self.path} is held by host "
                    f"{holder.get('host')} pid {holder.get('pid')} (started {holder.get('started', '?')}, last "
                    f"heartbeat {age:.0f} s ago). Stop that trainer or train in another --out folder. A lock of a "
                    f"dead process is taken over by itself (same host: at once; another host: when its heartbeat "
                    f"stops for {TAKEOVER_WAIT_S:g} s); to force it, delete {self.path}"
                )
            note = f"took over the stale lock {self.path} of host {holder.get('host')} pid {holder.get('pid')}: " \
                   f"{reason}"
            if self._look() == (text, mtime_ns):  # still the stale holder's lock, untouched
                self.path.unlink(missing_ok=True)
        raise LockError(f"could not take the lock {self.path}: other processes keep taking it")

    def _look(self) -> tuple[str, int] | None:
        """``(content, modification time in ns)`` of the lock file, None when there is none. Opening the file
        revalidates NFS's attribute cache (close-to-open), so the time is the file server's current one."""
        try:
            with open(self.path) as f:
                return f.read(), os.fstat(f.fileno()).st_mtime_ns
        except FileNotFoundError:
            return None

    def _watch(self, holder: dict[str, Any], text: str, mtime_ns: int) -> tuple[str | None, bool]:
        """Watch the fresh lock ``text`` of another host for up to TAKEOVER_WAIT_S seconds: ``(None, False)`` when its
        heartbeat advanced (the holder lives), ``(None, True)`` when the lock was released or replaced, else
        ``(why it is stale, False)``."""
        deadline = time.monotonic() + TAKEOVER_WAIT_S
        while True:
            time.sleep(max(0.0, min(POLL_S, deadline - time.monotonic())))
            seen = self._look()
            if seen is None or seen[0] != text:
                return None, True
            if seen[1] != mtime_ns:
                return None, False
            if time.monotonic() >= deadline:
                return (f"its heartbeat from host {holder.get('host')} did not advance in {TAKEOVER_WAIT_S:g} s "
                        f"(heartbeat every {HEARTBEAT_S:g} s)"), False

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            seen = self._look()
            if seen is not None and not self._is_mine(seen[0]):  # taken over: never touch another trainer's lock
                self.lost = seen[0].strip()
                return
            try:
                os.utime(self.path)
            except OSError:
                pass

    @staticmethod
    def _is_mine(text: str) -> bool:
        try:
            holder = json.loads(text)
        except ValueError:
            return False
        return holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()

    def check_held(self) -> None:
        """Raise :class:`LockError` when another trainer took this lock over (then this one must not write)."""
        seen = self._look() if self.held else None
        if self.lost is None and seen is not None and not self._is_mine(seen[0]):
            self.lost = seen[0].strip()
        if self.lost is not None:
            raise LockError(f"lost the run lock {self.path}: it now names {self.lost} (this trainer's heartbeat "
                            f"stalled for over {TAKEOVER_WAIT_S:g} s and another trainer took the folder over); "
                            "stopping without writing, so that two trainers never write the same run folder")

    def release(self) -> None:
        """Stop and join the heartbeat thread (none may outlive the trainer), then delete the lock if it is ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # it waits on _stop: it ends at once, or after one touch of the lock file
            self._thread = None
        if not self.held:
            return
        self.held = False
        try:
            if self._is_mine(self.path.read_text()):
                self.path.unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------------------------
# Resume by consensus
# --------------------------------------------------------------------------------------------------------------------

_ERRORS = {"LockError": LockError, "CheckpointError": CheckpointError, "ConfigError": ConfigError}


def open_run_folder(run_dir: str | Path, info: DistInfo) -> tuple[RunLock | None, Path | None, str | None]:
    """Rank 0 locks the folder and chooses the checkpoint to resume; every rank gets ``(lock, path, note)``.

    ``lock`` is rank 0's :class:`RunLock` (None elsewhere), ``path`` the checkpoint every rank must load (None: a
    fresh run), ``note`` a line to log (a stale lock taken over). Collective.
    """
    run_dir = Path(run_dir)
    lock, decision = None, {"path": None, "note": None, "error": None}
    if info.is_main:
        try:
            lock = RunLock(run_dir)
            decision["note"] = lock.acquire()
            for tmp in run_dir.glob("ckpt-*.tmp"):  # left by a crash inside save_checkpoint
                tmp.unlink(missing_ok=True)
            latest = latest_checkpoint(run_dir)
            decision["path"] = None if latest is None else str(latest)
        except (LockError, CheckpointError, OSError) as e:
            decision["error"] = (type(e).__name__, str(e))
            if lock is not None:
                lock.release()
    decision = distributed.broadcast_object(decision)
    if decision["error"] is not None:
        kind, message = decision["error"]
        raise _ERRORS.get(kind, LockError)(message)
    return lock, None if decision["path"] is None else Path(decision["path"]), decision["note"]


def state_checksum(*modules: nn.Module | None) -> str:
    """BLAKE2 digest of the bytes of every parameter and buffer of ``modules`` (in state-dict order)."""
    h = hashlib.blake2b(digest_size=16)
    for module in modules:
        if module is None:
            continue
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def config_settings(cfg: Config) -> dict[str, Any]:
    """The resolved config as flat ``{dotted key: value}``, without :data:`NODE_LOCAL_KEYS`."""
    return {k: v for k, v in flatten(to_dict(cfg)).items() if k not in NODE_LOCAL_KEYS}


def config_hash(cfg: Config) -> str:
    """SHA-256 (16 hex digits) of the canonical JSON of :func:`config_settings` (sorted keys)."""
    text = json.dumps(config_settings(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def consensus_error(views: list[tuple], source: Path | None) -> str | None:
    """Why the ranks' ``views`` ``[(step, weights checksum, config hash, config settings), ...]`` (rank order)
    disagree, or None when they agree. Differing config keys are named against rank 0."""
    if len({v[:3] for v in views}) <= 1:
        return None
    detail = "; ".join(f"rank {r}: step {s}, weights {c[:12]}, config {h}" for r, (s, c, h, _) in enumerate(views))
    message = f"the ranks disagree after loading {source or 'no checkpoint (fresh start)'}: {detail}."
    first = views[0][3]
    differing = {r: sorted(k for k in first.keys() | v[3].keys() if first.get(k, "?") != v[3].get(k, "?"))
                 for r, v in enumerate(views) if v[2] != views[0][2]}
    if differing:
        keys = "; ".join(f"rank {r}: {', '.join(ks[:5]) + (' ...' if len(ks) > 5 else '')}"
                         for r, ks in differing.items())
        message += (f" The config differs from rank 0's ({keys}): every rank must resolve the same config; check "
                    "that all nodes read the same CONFIG file, overrides and run folder config.yaml (a stale copy "
                    "on one node), then run again.")
    if len({v[:2] for v in views}) > 1:
        message += (" The ranks would train different models. Check that every node reads the same run folder (a "
                    "shared, coherent file system) and that the checkpoint is not being rewritten, then run again")
    return message


def check_consensus(step: int, checksum: str, source: Path | None, cfg: Config | None = None) -> None:
    """Every rank holds the same step, weights and (when given) resolved config after loading (collective); else a
    :class:`CheckpointError` naming each rank's values on every rank."""
    settings = {} if cfg is None else config_settings(cfg)
    digest = "-" if cfg is None else config_hash(cfg)
    error = consensus_error(distributed.all_gather_object((step, checksum, digest, settings)), source)
    if error is not None:
        raise CheckpointError(error)


# --------------------------------------------------------------------------------------------------------------------
# Checkpoint writes
# --------------------------------------------------------------------------------------------------------------------


def write_error_message(error: CheckpointWriteError, run_dir: Path) -> str:
    """The error of a failed checkpoint write, with what is kept and how to go on."""
    latest = latest_checkpoint(run_dir)
    kept = f"the earlier checkpoints are kept (latest: {latest})" if latest else "no earlier checkpoint exists"
    return (f"{error}; {kept}. The run stops. Free space in {run_dir} (or fix what the error names) and run the "
            "same command again to resume")


def warn_world_change(saved: int, now: int) -> None:
    warnings.warn(f"checkpoint written by {saved} ranks, resumed on {now}: training continues but not bit-exactly",
                  stacklevel=3)
