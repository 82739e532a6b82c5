"""The study's pictures and exported files: FID curves with seed bands, class grids, small checkpoints.

    plot_fid(summary["models"], "step", Path("results/fmnist32/fid_vs_steps.png"), title, mid_n=2000)
    class_grid_png(Path("runs/fmnist32_study/hamgan-seed0"), 4000, spec.bn, Path("results/fmnist32/samples/hamgan.png"))
    export_checkpoints(plan_runs(options), 4000, Path("results/fmnist32/checkpoints"))  # one per model
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hamgan.bn_modes import BNMode

if TYPE_CHECKING:
    from studies.fmnist32.plan import Run

GRID_PER_CLASS = 10
EXPORT_WARN_BYTES = 15 * 2**20  # results/ must stay under 20 MB


def plot_fid(models: dict[str, Any], x: str, path: Path, title: str, mid_n: int) -> None:
    """FID@mid_n (mean over seeds, band ± 1 sample std over seeds) against training steps (``x="step"``) or training
    minutes (``x="wall"``), one line per model of ``models`` (the summary's ``models``); the legend gives the number
    of seeds. The final step's point is its ``fid_at_<mid_n>``, from the same samples as its FID@final_n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for s in models.values():
        points = sorted((int(k), p) for k, p in s["steps"].items())
        if x == "wall":
            points = [(p["wall_s_mean"] / 60, p) for _, p in points if p.get("wall_s_mean") is not None]
        if not points:
            continue
        xs = np.array([float(k) for k, _ in points])
        mean = np.array([p["fid_mean"] for _, p in points])
        std = np.array([p["fid_std"] for _, p in points])
        seeds = max(len(p["seeds"]) for _, p in points)
        (line,) = ax.plot(xs, mean, marker="o", ms=3, label=f"{s['label']} ({seeds} seed{'s' * (seeds != 1)})")
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training steps" if x == "step" else "training wall-clock (minutes, this CPU)")
    ax.set_ylabel(f"FID@{mid_n} (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def class_grid_png(run: Path, step: int, bn: BNMode, path: Path, seed: int = 0) -> bool:
    """One row per class (10 samples, the same latents in every row) of the run's EMA generator at ``step`` with
    the batch-norm statistics ``bn`` (the study's standing statistics); False when that checkpoint is missing."""
    from torchvision.utils import save_image

    from hamgan.checkpoint import checkpoint_path, load_generator
    from hamgan.sample import class_grid

    ckpt = checkpoint_path(run, step)
    if not ckpt.is_file():
        return False
    G, _, _ = load_generator(ckpt, ema=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the Hamburger's random bases
        grid = class_grid(G, list(range(G.num_classes)), GRID_PER_CLASS, seed=seed, bn=bn)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path, nrow=GRID_PER_CLASS, padding=1)
    return True


def export_checkpoint(run: Path, step: int, out: Path) -> Path | None:
    """A small copy of the run's checkpoint at ``step`` for ``hamgan-eval compare`` and the notebook: config, step,
    G and EMA G only (no D, no optimiser: it cannot resume training). None when that checkpoint is missing."""
    from hamgan.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

    ckpt = checkpoint_path(run, step)
    if not ckpt.is_file():
        return None
    state = load_checkpoint(ckpt)
    save_checkpoint({k: state[k] for k in ("config", "step", "G", "G_ema")}, out)
    return out


def export_checkpoints(runs: list[Run], step: int, folder: Path) -> list[Path]:
    """One small checkpoint per model (``folder/<model>-seed<s>.pt``): of its first seed whose checkpoint at ``step``
    exists (all runs would exceed results/' 20 MB). A run whose folder is gone (re-aggregating committed results)
    keeps its already exported file; a run folder without that checkpoint (not finished) never lets a stale file of
    an earlier study stand for it."""
    exported: dict[str, Path] = {}
    for run in runs:
        if run.model in exported:
            continue
        path = folder / f"{run.name}.pt"
        if run.folder.is_dir():
            if export_checkpoint(run.folder, step, path) is not None:
                exported[run.model] = path
        elif path.is_file():
            exported[run.model] = path
    return list(exported.values())


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
