"""The study's result files from the cached evaluations: rows, summary.json / summary.md, the rerun check.

    rows = collect_rows(plan_runs(options), options)        # one per (run, evaluated step)
    summary = build_summary(rows, options, ...)             # what summary.json holds
    text = summary_markdown(summary)

Row units: ``wall_s`` is the training seconds up to that step (the trainer's cumulative ``train_s`` in
``metrics.jsonl``: no start-up, sample grids, checkpoints, evaluations or time lost to interruptions);
``images_per_s`` = batch_size x steps / wall_s at the final step; ``eval_s`` the seconds of that evaluation (sampling,
standing statistics, Inception, metrics). FIDs of intermediate steps are from ``mid_n`` samples, of the final step
from ``final_n`` (``fid``) and from its first ``mid_n`` (``fid_at_<mid_n>``, the curves' final point).
"""

from __future__ import annotations

import csv
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hamgan.metrics.intervals import mean_std
from studies.fmnist32.evaluation import find_cached, load_cache, reference_n
from studies.fmnist32.plan import MODELS, Run, StudyError, StudyOptions, eval_specs, model_overrides
from studies.fmnist32.seed_compare import compare_command, final_rows, seed_comparisons, write_metric_files
from studies.fmnist32.sessions import driver_seconds
from studies.fmnist32.statistics import paired_differences, pairing_gain, plateau, plateau_paired_sd

FINAL_METRICS = ("kid_mean", "precision", "recall", "density", "coverage")
COST_KEYS = ("params_g", "params_d", "context_params_g", "context_params_d", "context_macs_g", "context_macs_d")


def row_fields(mid_n: int) -> list[str]:
    return ["model", "seed", "step", "n", "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
            f"fid_at_{mid_n}", "wall_s", "images_per_s", "eval_s", "context_scale_g", "context_scale_d", *COST_KEYS,
            "bn", "bn_batches", "bn_batch_size", "ref", "run", "train_paired"]


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename): an interruption never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def training_clock(metrics_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, seconds)``: cumulative training seconds (``train_s`` of ``metrics.jsonl``), both from (0, 0)."""
    steps, seconds = [0], [0.0]
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            step, train_s = record.get("step"), record.get("train_s")
            if not isinstance(train_s, (int, float)) or step is None or step <= steps[-1]:
                continue
            seconds.append(float(train_s))
            steps.append(step)
    return np.asarray(steps), np.asarray(seconds)


def training_seconds(clock: tuple[np.ndarray, np.ndarray], step: int) -> float | None:
    """Training seconds up to ``step`` (linear between logged steps); None beyond the last logged step."""
    steps, seconds = clock
    if step > steps[-1]:
        return None
    return float(np.interp(step, steps, seconds))


def model_cost(model: str, o: StudyOptions) -> dict[str, int]:
    """Parameters of G and D and their context blocks' parameters and MACs (one forward at batch 1, incl. the
    Hamburger's decomposition iterations; :func:`hamgan.info.model_info`) at the study's size."""
    from hamgan.config import load_config
    from hamgan.info import model_info

    info = model_info(load_config(o.configs / MODELS[model].config, model_overrides(model, o)).model)
    context = {net: (info[net]["context"] or {}) for net in ("G", "D")}
    return {"params_g": info["G"]["params"], "params_d": info["D"]["params"],
            "context_params_g": context["G"].get("params", 0), "context_params_d": context["D"].get("params", 0),
            "context_macs_g": context["G"].get("macs", 0), "context_macs_d": context["D"].get("macs", 0),
            "macs_g": info["G"]["macs"], "macs_d": info["D"]["macs"]}


def context_scales(run: Path, step: int) -> tuple[float | None, float | None]:
    """The learnt residual scale of the context block (Hamburger ``sigma``, attention ``gamma``; both 0 at init) in
    the raw G and D at ``step``; None without a block or checkpoint."""
    from hamgan.checkpoint import checkpoint_path, load_checkpoint

    ckpt = checkpoint_path(run, step)
    if not ckpt.is_file():
        return None, None
    state = load_checkpoint(ckpt)
    scales = []
    for net in ("G", "D"):
        values = [float(v) for k, v in state[net].items() if k in ("context.sigma", "context.gamma")]
        scales.append(round(values[0], 5) if values else None)
    return scales[0], scales[1]


def collect_rows(runs: list[Run], o: StudyOptions, costs: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per cached evaluation of the runs under the current options (see the module doc for units)."""
    from hamgan.config import load_config

    specs, mid = eval_specs(o), f"fid_at_{o.mid_n}"
    rows = []
    for run in runs:
        cache = load_cache(run.folder)
        if not cache or not (run.folder / "config.yaml").is_file():
            continue
        train = load_config(run.folder / "config.yaml").train
        batch = train.batch_size
        clock = training_clock(run.folder / "metrics.jsonl")
        final_s = training_seconds(clock, o.steps)
        for step, spec in sorted(specs.items()):
            e = find_cached(cache, spec.key(step, o.reference.name))
            if e is None:
                continue
            wall = training_seconds(clock, step)
            scale_g, scale_d = context_scales(run.folder, step)
            rows.append({
                "model": run.model, "seed": run.seed, "step": step, "n": e["n"], "fid": e["fid"],
                **{k: e.get(k) for k in ("kid_mean", "kid_std", "precision", "recall", "density", "coverage")},
                mid: e.get(mid, e["fid"] if e["n"] == o.mid_n else None),
                "wall_s": None if wall is None else round(wall, 2),
                "images_per_s": round(batch * o.steps / final_s, 2) if final_s else None,
                "eval_s": e.get("eval_s"), "context_scale_g": scale_g, "context_scale_d": scale_d,
                **{k: costs[run.model][k] for k in COST_KEYS},
                "bn": e["bn"], "bn_batches": e["bn_batches"], "bn_batch_size": e["bn_batch_size"],
                "ref": e["reference"], "run": str(run.folder), "train_paired": train.paired,
            })
    return rows


def missing_evaluations(runs: list[Run], o: StudyOptions, rows: list[dict[str, Any]]) -> list[str]:
    """Evaluations that can no longer be made: a run trained to ``o.steps`` whose checkpoint at an evaluation step is
    gone (deleted, or pruned before the evaluation reached it) and whose row is not cached. One line each."""
    from hamgan.checkpoint import checkpoint_path
    from studies.fmnist32.scheduler import trained_step

    have = {(r["model"], r["seed"], r["step"]) for r in rows}
    missing = []
    for run in runs:
        if not run.folder.is_dir() or trained_step(run.folder) < o.steps:
            continue  # not finished (or not here): its evaluations may still come
        for step in sorted(eval_specs(o)):
            ckpt = checkpoint_path(run.folder, step)
            if (run.model, run.seed, step) not in have and not ckpt.is_file():
                missing.append(f"{run.name} step {step}: its checkpoint {ckpt} is gone (deleted, or pruned before it "
                               f"was evaluated); restore it (retrain the run to that step) or accept the gap")
    return missing


def write_rows(rows: list[dict[str, Any]], results: Path, mid_n: int) -> None:
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "runs.json", rows)
    with open(results / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=row_fields(mid_n))
        writer.writeheader()
        writer.writerows(rows)


def _stat(values: list[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    mean, std = mean_std(present) if present else (None, None)
    return {"mean": mean, "std": std, "values": values}


def summarise_models(rows: list[dict[str, Any]], o: StudyOptions) -> dict[str, Any]:
    """Per model: the final step (seeds, FIDs, mean ± std, the other metrics) and the FID@mid_n curve."""
    mid = f"fid_at_{o.mid_n}"
    out: dict[str, Any] = {}
    for model in o.models:
        mine = [r for r in rows if r["model"] == model]
        if not mine:
            continue
        steps = {}
        for step in sorted({r["step"] for r in mine}):
            at = sorted((r for r in mine if r["step"] == step and r[mid] is not None), key=lambda r: r["seed"])
            if not at:
                continue
            fid_mean, fid_std = mean_std([r[mid] for r in at])
            walls = [r["wall_s"] for r in at if r["wall_s"] is not None]
            steps[step] = {"n": o.mid_n, "seeds": [r["seed"] for r in at], "fids": [r[mid] for r in at],
                           "fid_mean": fid_mean, "fid_std": fid_std,
                           "wall_s_mean": float(np.mean(walls)) if walls else None}
        last = sorted((r for r in mine if r["step"] == o.steps), key=lambda r: r["seed"])
        final = None
        if last:
            fid_mean, fid_std = mean_std([r["fid"] for r in last])
            speeds = [r["images_per_s"] for r in last]
            final = {"step": o.steps, "n": o.final_n, "seeds": [r["seed"] for r in last],
                     "fids": [r["fid"] for r in last], "fid_mean": fid_mean, "fid_std": fid_std,
                     "metrics": {k: _stat([r.get(k) for r in last]) for k in FINAL_METRICS},
                     "images_per_s": _stat(speeds),
                     "context_scales_g": [r["context_scale_g"] for r in last],
                     "context_scales_d": [r["context_scale_d"] for r in last]}
        out[model] = {"label": MODELS[model].label, "final": final, "steps": steps,
                      **{k: mine[0][k] for k in COST_KEYS}}
    return out


def compute_time(rows: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Seconds spent: training (per run its training seconds up to its last evaluated step, summed), evaluation
    (every cached evaluation's seconds, summed) and the driver's wall-clock (sessions recorded in ``work``)."""
    train: dict[str, float] = {}
    for r in rows:
        if r["wall_s"] is not None:
            train[r["run"]] = max(train.get(r["run"], 0.0), r["wall_s"])
    return {"train_s": round(sum(train.values()), 1), "runs": len(train),
            "eval_s": round(sum(r.get("eval_s") or 0.0 for r in rows), 1), "driver_wall_s": driver_seconds(work),
            "counts": "train_s: trainer's train_s summed over runs (training steps only, CPU time of concurrent runs "
                      "adds up); eval_s: evaluations summed; driver_wall_s: wall-clock of the driver sessions that "
                      "trained or evaluated (concurrent trainings and evaluations overlap within it)"}


def environment() -> dict[str, Any]:
    import torch

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def options_record(o: StudyOptions, ref_n: int | None) -> dict[str, Any]:
    spec = eval_specs(o)[o.steps]
    return {"models": {m: list(s) for m, s in o.models.items()}, "steps": o.steps, "eval_steps": list(o.eval_steps),
            "n": o.final_n, "mid_n": o.mid_n, "ref": o.reference.name, "ref_n": ref_n, "fid_seed": o.fid_seed,
            "bn": "standing", "bn_batches": o.bn_batches, "bn_batch_size": o.bn_batch_size,
            "sn_iterations": spec.sn_iterations, "overrides": list(o.overrides), "jobs": o.jobs, "threads": o.threads,
            "pairs": [f"{a}-{b}" for a, b in o.pairs], "seed_spread": o.seed_spread,
            "plateau_spread": o.plateau_spread}


def pairing_gains(curves: dict[str, dict[int, dict[int, float]]], final: dict[str, dict[int, dict[str, Any]]],
                  o: StudyOptions) -> dict[str, dict[str, Any]]:
    """Per pair "A-B", what pairing bought (:func:`statistics.pairing_gain`) for FID@mid at every evaluated step
    (key "fid_at_<mid>@<step>") and for the final FID (key "fid@<step>"), over the seeds both models have there."""
    out: dict[str, dict[str, Any]] = {}
    for a, b in o.pairs:
        gains = {}
        for step in sorted(set(curves.get(a, {})) & set(curves.get(b, {}))):
            gains[f"fid_at_{o.mid_n}@{step}"] = pairing_gain(curves[a][step], curves[b][step])
        fa, fb = ({s: r["fid"] for s, r in final.get(m, {}).items()} for m in (a, b))
        gains[f"fid@{o.steps}"] = pairing_gain(fa, fb)
        out[f"{a}-{b}"] = {k: v for k, v in gains.items() if v is not None}
    return out


def build_summary(rows: list[dict[str, Any]], o: StudyOptions, costs: dict[str, dict[str, int]],
                  ref_n: int | None, commands: dict[str, str], failed: list[str]) -> dict[str, Any]:
    """Everything summary.json holds (see the CLI's docstring)."""
    models = summarise_models(rows, o)
    final = final_rows(rows, o)
    mid = f"fid_at_{o.mid_n}"
    at_mid = paired_differences(final, o.pairs, (mid,))
    mid_differences = {(a, b): at_mid[f"{a}-{b}"].get(mid) for a, b in o.pairs}
    curves: dict[str, dict[int, dict[int, float]]] = {}  # {model: {step: {seed: FID@mid}}}
    for r in rows:
        if r[mid] is not None:
            curves.setdefault(r["model"], {}).setdefault(r["step"], {})[r["seed"]] = r[mid]
    plateaus = {}
    for m in o.models:
        paired = plateau_paired_sd(m, mid_differences) if o.plateau_spread == "paired" else None
        plateaus[m] = plateau(curves.get(m, {}), o.seed_spread, *(paired or ()))
    return {"models": models, "paired": paired_differences(final, o.pairs), "seed_compare": seed_comparisons(final, o),
            "plateau": plateaus, "pairing": pairing_gains(curves, final, o),
            "options": options_record(o, ref_n), "compute": compute_time(rows, o.work), "cost": costs,
            "environment": environment(), "commands": commands, "failed_runs": failed}


def check_against(summary: dict[str, Any], path: Path, out=print) -> list[str]:
    """Compare this study's final FIDs with an earlier study's spread; returns the runs outside mean ± 2 std.

    Only like is compared with like: step budget, final N, reference size, sampling seed, BN statistics and
    overrides must match (StudyError naming the differences otherwise).
    """
    try:
        earlier = json.loads(path.read_text())
        options, models = earlier["options"], earlier["models"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise StudyError(f"--check-against '{path}' is not a summary.json of this driver ({e}); point it at "
                         f"results/fmnist32/summary.json") from None
    mine = summary["options"]
    keys = ("steps", "n", "ref_n", "fid_seed", "bn", "bn_batches", "bn_batch_size", "overrides")
    differ = {k: (mine.get(k), options.get(k)) for k in keys if options.get(k) != mine.get(k)}
    if differ:
        raise StudyError("--check-against compares only studies with the same budget and FID protocol; these "
                         "options differ (this run vs earlier): "
                         + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items()))
    outside: list[str] = []
    out(f"\ncheck against {path} (final step {mine['steps']}, FID@{mine['n']}, standing BN):")
    for model, s in summary["models"].items():
        ref = (models.get(model) or {}).get("final")
        if ref is None or s["final"] is None:
            out(f"  {model}: not in the earlier study or not trained to step {mine['steps']}; skipped")
            continue
        mean, std = ref["fid_mean"], ref["fid_std"]
        low, high = mean - 2 * std, mean + 2 * std
        for seed, fid in zip(s["final"]["seeds"], s["final"]["fids"]):
            inside = low <= fid <= high
            where = ("within" if inside else "OUTSIDE") + f" {mean:.2f} ± 2 x {std:.2f} = [{low:.2f}, {high:.2f}]"
            out(f"  {model} seed {seed}: FID {fid:.2f} {where}; earlier seeds "
                f"{min(ref['fids']):.2f}..{max(ref['fids']):.2f}")
            if not inside:
                outside.append(f"{model}-seed{seed}")
    return outside


def shown(path: Path | str) -> str:
    """``path`` as shown in a command: relative to the repository when inside it."""
    from studies.fmnist32.plan import REPO

    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO)) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def study_commands(o: StudyOptions, argv: list[str], runs: list[Run], exported: list[Path]) -> dict[str, str]:
    """The exact commands behind the results: the driver itself and what it runs."""
    import shlex

    from studies.fmnist32.plan import train_command

    study = [a for a in argv if a not in ("--report-only", "--eval-only")]
    cmds = {"study": shlex.join(["python", "-m", "studies.fmnist32.reproduce", *study]),
            "report_only": shlex.join(["python", "-m", "studies.fmnist32.reproduce", *study, "--report-only"]),
            "train_example": shlex.join(["python", *(shown(a) if a.endswith(".yaml") else a
                                                      for a in train_command(runs[0], o)[1:])]),
            "reference": f"hamgan-eval stats {shown(o.configs / MODELS['hamgan'].config)} data.split=test --features "
                         f"--n {o.ref_n} --batch-size 100 --num-workers 0 --out {o.reference}",
            "compare_seeds": compare_command(o, shown)}
    if exported:
        cmds["compare"] = (f"hamgan-eval compare {' '.join(map(str, exported))} --ref {o.reference} --n {o.final_n} "
                           f"--seed {o.fid_seed} --batch-size {o.eval_batch_size} --bn standing "
                           f"--bn-batches {o.bn_batches} --bn-batch-size {o.bn_batch_size}")
        # --batch-size matters: the Hamburger draws its random bases per batch, so another batch size samples other
        # images (hamgan-seed0.pt: FID 49.49 either way, but KID and precision/recall moved in the 3rd digit)
    return cmds


def write_report(runs: list[Run], o: StudyOptions, argv: list[str], failed: list[str], report_only: bool = False,
                 out=print) -> dict[str, Any]:
    """Write every result file under ``o.results`` from the cached evaluations; returns the summary."""
    from studies.fmnist32.figures import EXPORT_WARN_BYTES, class_grid_png, export_checkpoints, folder_bytes, plot_fid
    from studies.fmnist32.markdown import summary_markdown

    results = o.results
    costs = {m: model_cost(m, o) for m in o.models}
    rows = collect_rows(runs, o, costs)
    if not rows and report_only and (results / "runs.json").is_file():
        rows = json.loads((results / "runs.json").read_text())  # run folders gone: re-aggregate the committed rows
        out(f"no evaluated run folders under {o.work}; aggregating {results / 'runs.json'}")
    if not rows:
        raise StudyError(f"no evaluated runs under {o.work}; run the study (without --report-only) first")
    write_rows(rows, results, o.mid_n)
    write_metric_files(rows, o)

    bn = eval_specs(o)[o.steps].bn
    for model in o.models:  # from the first seed whose final checkpoint exists
        any(class_grid_png(r.folder, o.steps, bn, results / "samples" / f"{model}.png") for r in runs
            if r.model == model)
    exported: list[Path] = []
    if o.checkpoints is not None:
        exported = export_checkpoints(runs, o.steps, o.checkpoints)
        size = folder_bytes(o.checkpoints)
        if size > EXPORT_WARN_BYTES:
            out(f"warning: exported checkpoints take {size / 2**20:.1f} MB in {o.checkpoints} (> 15 MB); results/ "
                f"must stay under 20 MB: export fewer (--checkpoints elsewhere) or prune that folder")

    ref_n = o.ref_n
    if o.reference.is_file():
        ref_n = reference_n(o.reference) or ref_n
    summary = build_summary(rows, o, costs, ref_n, study_commands(o, argv, runs, exported), failed)
    summary["missing_evaluations"] = missing_evaluations(runs, o, rows)
    for line in summary["missing_evaluations"]:
        out(f"warning: missing evaluation: {line}")
    seeds = ", ".join(f"{m} {len(s)}" for m, s in o.models.items())
    title = (f"Fashion-MNIST 32x32, FID@{o.mid_n}, EMA G, standing BN ({o.bn_batches} x {o.bn_batch_size}); "
             f"band: ±1 std over seeds")
    plot_fid(summary["models"], "step", results / "fid_vs_steps.png", title, o.mid_n)
    plot_fid(summary["models"], "wall", results / "fid_vs_wallclock.png", title, o.mid_n)
    write_json(results / "summary.json", summary)
    text = summary_markdown(json.loads(json.dumps(summary)))  # the JSON's view: string step keys, lists
    (results / "summary.md").write_text(text)
    out(f"\nseeds per model: {seeds}\n" + text)
    return summary
