"""Run logging: a JSON-lines metrics file, Weights & Biases (offline by default) and a tqdm progress bar.

Everything here is done by rank 0 only; other ranks get a logger that does nothing (``enabled=False``).

Files in the run folder::

    metrics.jsonl     one JSON object per logged step: {"step": ..., "loss_g": ..., ...}
    wandb/            the W&B run (offline mode: sync later with ``wandb sync RUN/wandb/offline-run-*``)
    wandb_id.txt      the W&B run id, so a resumed training continues the same W&B run

Resuming (``metrics.jsonl`` is the record: on resume it is cut back to the checkpoint's step, so it holds every
step once). W&B continues the same run (``resume="allow"`` with the saved id), and no step is lost or doubled:

- offline: W&B writes a new ``offline-run-<time>-<id>`` folder per session. The resumed session therefore first
  replays the history up to the checkpoint (``metrics.jsonl`` and the sample grids ``samples/step-*.png``) into its
  new folder, then deletes the previous session folders of the same id: one folder, every step once;
- online: the server already holds the steps the interrupted session logged, also those after the checkpoint
  (W&B steps only increase). They are kept; the resumed session sends steps after the last one the server has
  (what it would have sent again are the same steps, recomputed exactly on CPU) and says so in one line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

WANDB_MODES = ("offline", "online", "disabled")


def truncate_metrics(path: str | Path, step: int) -> None:
    """Drop records after ``step`` from a metrics file (what an interrupted run logged past its last checkpoint)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    return v


class RunLogger:
    """Metrics to ``metrics.jsonl`` and W&B, sample grids to W&B, and the progress bar.

    Args:
        run_dir: the run folder.
        config: the resolved config as a plain dict (stored in the W&B run).
        wandb_mode: "offline" (default, no account needed), "online" or "disabled".
        project, name: W&B project and run name (name defaults to the run folder's name).
        use_tqdm: show a progress bar.
        enabled: False on ranks other than 0: every method is a no-op.
        resume_step: when resuming, the checkpoint's step; metrics logged after it are dropped.
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: dict | None = None,
        wandb_mode: str = "offline",
        project: str = "hamgan",
        name: str | None = None,
        use_tqdm: bool = True,
        enabled: bool = True,
        resume_step: int = 0,
    ) -> None:
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"log.wandb must be one of {', '.join(WANDB_MODES)}, got {wandb_mode!r}")
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.use_tqdm = use_tqdm
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.bar: tqdm | None = None
        self.wandb_run = None
        self.wandb_next_step = 0  # W&B drops steps below the last one it holds (online resume)
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.metrics_path, resume_step)
        if wandb_mode != "disabled":
            self.wandb_run = self._init_wandb(config, wandb_mode, project, name or self.run_dir.name, resume_step)

    def _init_wandb(self, config: dict | None, mode: str, project: str, name: str, resume_step: int):
        import wandb

        id_file = self.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id + "\n")
        os.environ.setdefault("WANDB_SILENT", "true")
        earlier = sorted((self.run_dir / "wandb").glob(f"offline-run-*-{run_id}")) if mode == "offline" else []
        run = wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow",
            dir=str(self.run_dir),
            mode=mode,
            config=config,
        )
        if mode == "offline" and resume_step > 0:
            self._replay(run, resume_step)
            for folder in earlier:
                if Path(folder) != Path(run.dir).parent:
                    shutil.rmtree(folder, ignore_errors=True)
        if mode == "online" and run.starting_step > resume_step + 1:
            self.wandb_next_step = run.starting_step
            self.write(f"wandb: run {run_id} holds steps up to {run.starting_step - 1} from the interrupted "
                       f"session; they are kept and logging continues after them (metrics.jsonl has every step)")
        return run

    def _replay(self, run: Any, resume_step: int) -> None:
        """Log the history up to ``resume_step`` (metrics.jsonl, sample grids) into a fresh offline run."""
        import wandb

        events: list[tuple[int, int, dict[str, Any]]] = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text().splitlines():
                record = json.loads(line)
                step = record.pop("step")
                values = {k: float(v) if v in ("nan", "inf", "-inf") else v for k, v in record.items()}
                events.append((step, 0, values))
        for path in sorted((self.run_dir / "samples").glob("step-*.png")):
            step = int(path.stem.split("-")[1])
            if step <= resume_step:
                events.append((step, 1, {"samples": wandb.Image(str(path), caption=f"step {step}")}))
        for step, _, values in sorted(events, key=lambda e: (e[0], e[1])):
            run.log(values, step=step)

    # ---------------------------------------------------------------------------------------------------------------

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step": step, **metrics}`` to metrics.jsonl and log the scalars to W&B."""
        if not self.enabled:
            return
        record = {"step": step, **{k: _json_value(v) for k, v in metrics.items()}}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None and step >= self.wandb_next_step:
            self.wandb_run.log(metrics, step=step)

    def log_image(self, step: int, key: str, path: str | Path, caption: str = "") -> None:
        """Log a saved image file (e.g. a sample grid PNG) to W&B."""
        if not self.enabled or self.wandb_run is None or step < self.wandb_next_step:
            return
        import wandb

        self.wandb_run.log({key: wandb.Image(str(path), caption=caption)}, step=step)

    def progress(self, total: int, initial: int = 0) -> None:
        """Start the progress bar at step ``initial`` of ``total``."""
        if self.enabled and self.use_tqdm:
            self.bar = tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True)

    def advance(self, n: int = 1, **postfix: Any) -> None:
        """Move the bar ``n`` steps; ``postfix`` values (losses, images/s) are shown after it."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in postfix.items()},
                                     refresh=False)
            self.bar.update(n)

    def write(self, message: str) -> None:
        """Print a line without breaking the progress bar (rank 0 only)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.finish()
            self.wandb_run = None
            wandb.teardown()  # finish() returns before the service has written everything; wait for it
