"""What pairing buys, and the rerun it allows: the pilot's paired and unpaired designs side by side.

    python -m studies.fmnist32.design --paired results/fmnist32/pilot24/paired \\
        --unpaired results/fmnist32/pilot24/unpaired --out results/fmnist32/pilot24

Each design folder holds a study driver's ``runs.json`` (``python -m studies.fmnist32.reproduce``): the same seeds of
two models (``--pair A-B``) trained to the same step, with paired streams (``train.paired=true``: the runs of a seed
share every initial weight outside the context block, the latents, labels and data order) or without
(``train.paired=false``: only the data order is shared). For each design and metric: the per-seed differences A - B,
their mean and standard deviation (SD) with a chi-square 95% interval of the SD, and the ratio of the two variances,
which is how many times as many seeds the unpaired design needs for the same precision.

The rerun's design (``--budget-h`` of this machine, ``--models`` models, ``--steps`` each): the cost of one run is
measured on the pilot's own runs, or with ``--cost-from`` on an earlier study's (training seconds per step of a
one-thread training, evaluation seconds per Inception image of the driver's evaluations), for ``steps`` and the
rerun's evaluations (``--mid-n`` images at
``steps - 1000`` for the plateau criterion, ``--final-n`` at ``steps``), as core-seconds spread over ``--cores``, plus
a reserve (``--extend-steps``) for training every run further and evaluating it again should the plateau criterion
fail at ``steps``. The seeds it affords, and the minimum detectable difference (MDE, two-sided paired t-test at 5%, 80% power, exact
noncentral t: :func:`hamgan.metrics.intervals.min_detectable_difference`) for those seeds from the paired SD and from
its upper 80% confidence limit (an SD from 3 seeds is itself uncertain; planning on the limit is the cautious choice).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import chi2
from scipy.stats import f as f_dist

from hamgan.metrics.intervals import POWER, mean_std, min_detectable_difference

METRICS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
SD_CONFIDENCE = 0.95  # the interval of a design's SD
PLANNING_LIMIT = 0.8  # the one-sided upper confidence limit of the paired SD the cautious plan uses


def final_rows(results: Path) -> list[dict[str, Any]]:
    """The rows of ``results/runs.json`` at the last step each run was evaluated with the final metrics."""
    rows = [r for r in json.loads((results / "runs.json").read_text()) if r.get("fid") is not None and "n" in r]
    last = {}
    for r in rows:
        key = (r["model"], r["seed"])
        if key not in last or r["step"] > last[key]["step"]:
            last[key] = r
    return list(last.values())


def sd_interval(sd: float, n: int, confidence: float = SD_CONFIDENCE) -> tuple[float, float]:
    """Chi-square interval of a normal population's SD from the sample SD of n values."""
    df = n - 1
    return (sd * math.sqrt(df / chi2.ppf(0.5 + confidence / 2, df)),
            sd * math.sqrt(df / chi2.ppf(0.5 - confidence / 2, df)))


def sd_upper_limit(sd: float, n: int, level: float = PLANNING_LIMIT) -> float:
    """One-sided upper ``level`` confidence limit of the SD (the planning SD of a small pilot)."""
    df = n - 1
    return sd * math.sqrt(df / chi2.ppf(1 - level, df))


def design_differences(rows: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Per metric: the seeds both models have, the differences A - B, their mean, SD and the SD's interval."""
    by = {(r["model"], r["seed"]): r for r in rows}
    seeds = sorted(s for m, s in by if m == a and (b, s) in by)
    out: dict[str, Any] = {"seeds": seeds}
    for metric in METRICS:
        if not seeds or by[(a, seeds[0])].get(metric) is None:
            continue
        diffs = [by[(a, s)][metric] - by[(b, s)][metric] for s in seeds]
        mean, sd = mean_std(diffs)
        out[metric] = {"a": [by[(a, s)][metric] for s in seeds], "b": [by[(b, s)][metric] for s in seeds],
                       "diffs": diffs, "mean": mean, "sd": sd,
                       "sd_interval": list(sd_interval(sd, len(diffs))) if len(diffs) > 1 and sd > 0 else None,
                       "sd_a": mean_std(by_model(rows, a, metric, seeds))[1],
                       "sd_b": mean_std(by_model(rows, b, metric, seeds))[1]}
    return out


def by_model(rows: list[dict[str, Any]], model: str, metric: str, seeds: list[int]) -> list[float]:
    return [r[metric] for r in rows if r["model"] == model and r["seed"] in seeds]


def evaluated_images(results: Path) -> int:
    """Images one run of a design folder evaluated: ``n`` at its last step, ``mid_n`` at each ``eval_steps``."""
    o = json.loads((results / "summary.json").read_text())["options"]
    return o["n"] + o["mid_n"] * len([s for s in o["eval_steps"] if s < o["steps"]])


def run_cost(designs: list[tuple[list[dict[str, Any]], int]]) -> dict[str, float]:
    """Per-step training seconds (the runs' ``wall_s`` / ``step``: one-thread trainings) and per-image evaluation
    seconds (``eval_s`` / the images each run of its design evaluated), averaged over the runs of
    ``[(rows, images per run), ...]``."""
    train = [r["wall_s"] / r["step"] for rows, _ in designs for r in rows if r.get("wall_s")]
    per_image = [r["eval_s"] / images for rows, images in designs for r in rows if r.get("eval_s")]
    return {"train_s_per_step": float(np.mean(train)), "eval_s_per_image": float(np.mean(per_image))}


def study_cost(summary_path: Path) -> dict[str, float]:
    """The cost per training step and per evaluated image of a whole earlier study (its ``summary.json``:
    ``compute`` summed over its runs, every run trained to ``options.steps`` and evaluated alike)."""
    summary = json.loads(summary_path.read_text())
    compute, o = summary["compute"], summary["options"]
    images = o["n"] + o["mid_n"] * len([s for s in o["eval_steps"] if s < o["steps"]])
    return {"train_s_per_step": compute["train_s"] / (compute["runs"] * o["steps"]),
            "eval_s_per_image": compute["eval_s"] / (compute["runs"] * images),
            "source": str(summary_path)}


def rerun_plan(sd: float, n_pilot: int, cost: dict[str, float], budget_h: float, models: int, steps: int,
               mid_n: int, final_n: int, cores: int, extend_steps: int = 0, min_seeds: int = 6) -> dict[str, Any]:
    """Seeds the budget affords and the MDE they give (see the module doc for the arithmetic). ``extend_steps``:
    hours kept in reserve to train every run that much further (and evaluate it again: FID@mid_n at the old final
    step, all metrics at the new one) when the plateau criterion fails at ``steps``."""
    images = cost["eval_s_per_image"] * (mid_n + final_n)
    core_s = cost["train_s_per_step"] * steps + images
    extend_core_s = cost["train_s_per_step"] * extend_steps + images if extend_steps else 0.0
    run_h, extend_h = core_s / cores / 3600, extend_core_s / cores / 3600
    seeds = int(budget_h // (models * (run_h + extend_h)))
    planning_sd = sd_upper_limit(sd, n_pilot)
    table = [{"seeds": n, "hours": n * models * run_h, "hours_extended": n * models * (run_h + extend_h),
              "mde": min_detectable_difference(sd, n), "mde_cautious": min_detectable_difference(planning_sd, n)}
             for n in range(min_seeds, max(seeds, min_seeds) + 3)]
    return {"run_core_s": core_s, "run_h": run_h, "extend_core_s": extend_core_s, "extend_h": extend_h,
            "seeds": seeds, "sd": sd, "planning_sd": planning_sd, "table": table}


def build_design(paired: Path, unpaired: Path, pair: tuple[str, str], budget_h: float, models: int, steps: int,
                 mid_n: int, final_n: int, cores: int, cost_from: Path | None = None,
                 extend_steps: int = 0) -> dict[str, Any]:
    a, b = pair
    p_rows, u_rows = final_rows(paired), final_rows(unpaired)
    designs = {"paired": design_differences(p_rows, a, b), "unpaired": design_differences(u_rows, a, b)}
    fid_p, fid_u = designs["paired"]["fid"], designs["unpaired"]["fid"]
    ratio = (fid_u["sd"] / fid_p["sd"]) ** 2 if fid_p["sd"] > 0 else math.inf
    df_p, df_u = len(fid_p["diffs"]) - 1, len(fid_u["diffs"]) - 1
    # one-sided F-test of "pairing lowers the variance of the difference" (var_u / var_p > 1)
    p_value = float(f_dist.sf(ratio, df_u, df_p)) if math.isfinite(ratio) else 0.0
    pilot_cost = run_cost([(p_rows, evaluated_images(paired)), (u_rows, evaluated_images(unpaired))])
    cost = study_cost(cost_from) if cost_from is not None else {**pilot_cost, "source": "the pilot's runs"}
    plan = rerun_plan(fid_p["sd"], len(fid_p["diffs"]), cost, budget_h, models, steps, mid_n, final_n, cores,
                      extend_steps)
    return {"pair": f"{a}-{b}", "designs": designs, "variance_ratio": ratio, "f_test_p": p_value, "cost": cost,
            "pilot_cost": pilot_cost,
            "plan": plan, "options": {"budget_h": budget_h, "models": models, "steps": steps, "mid_n": mid_n,
                                      "final_n": final_n, "cores": cores, "extend_steps": extend_steps, "power": POWER,
                                      "planning_limit": PLANNING_LIMIT}}


def design_markdown(d: dict[str, Any]) -> str:
    a, b = d["pair"].split("-")
    lines = [f"# Pilot: what pairing buys ({d['pair']})", "",
             "| design | seeds | metric | per-seed A − B | mean | SD of the difference | 95% interval of the SD | "
             f"SD of {a} | SD of {b} |", "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, design in d["designs"].items():
        for metric in METRICS:
            m = design.get(metric)
            if m is None:
                continue
            digits = 2 if metric == "fid" else 4
            ci = m["sd_interval"]
            lines.append(f"| {name} | {', '.join(map(str, design['seeds']))} | {metric} | "
                         f"{', '.join(f'{x:+.{digits}f}' for x in m['diffs'])} | {m['mean']:+.{digits}f} | "
                         f"{m['sd']:.{digits}f} | " + (f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "-")
                         + f" | {m['sd_a']:.{digits}f} | {m['sd_b']:.{digits}f} |")
    p = d["plan"]
    o = d["options"]
    lines += ["", "FID: variance of the unpaired difference / variance of the paired one = "
              f"**{d['variance_ratio']:.2f}** (one-sided F-test that pairing lowers it: p = {d['f_test_p']:.2f}).", "",
              "## The rerun this allows", "",
              f"- Cost of one run, measured on {d['cost']['source']}: {d['cost']['train_s_per_step']:.3f} s per "
              f"training step (one thread), {d['cost']['eval_s_per_image']:.3f} s per evaluated image. At {o['steps']} steps "
              f"with {o['mid_n']} + {o['final_n']} evaluated images: {p['run_core_s'] / 3600:.2f} core-hours, "
              f"{p['run_h']:.2f} h of the {o['cores']}-core machine.",
              *([f"- Reserve for the plateau criterion: training every run {o['extend_steps']} steps further and "
                 f"evaluating it again ({o['mid_n']} + {o['final_n']} images) costs "
                 f"{p['extend_core_s'] / 3600:.2f} core-hours, {p['extend_h']:.2f} h."] if o.get("extend_steps") else []),
              f"- {o['budget_h']:g} h for {o['models']} models: {o['budget_h']:g} / ({o['models']} × "
              + (f"({p['run_h']:.2f} + {p['extend_h']:.2f})" if o.get("extend_steps") else f"{p['run_h']:.2f}")
              + f") = **{p['seeds']} seeds** per model.",
              f"- MDE at {o['power']:.0%} power from the paired SD {p['sd']:.2f} and, cautious, from its upper "
              f"{o['planning_limit']:.0%} confidence limit {p['planning_sd']:.2f}:", "",
              "| seeds | hours | hours with the reserve used | MDE (paired SD) | MDE (cautious SD) |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['seeds']} | {r['hours']:.1f} | {r['hours_extended']:.1f} | {r['mde']:.2f} | "
              f"{r['mde_cautious']:.2f} |" for r in p["table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.fmnist32.design", description=__doc__.split("\n")[0])
    p.add_argument("--paired", type=Path, required=True, help="results folder of the paired design")
    p.add_argument("--unpaired", type=Path, required=True, help="results folder of the unpaired design")
    p.add_argument("--pair", default="hamgan-sagan", help="models A-B")
    p.add_argument("--budget-h", type=float, default=10.0, help="hours of this machine for the rerun")
    p.add_argument("--models", type=int, default=3, help="models of the rerun")
    p.add_argument("--steps", type=int, default=4000, help="steps of each rerun run")
    p.add_argument("--mid-n", type=int, default=2000, help="images of the evaluation at steps - 1000")
    p.add_argument("--final-n", type=int, default=5000, help="images of the final evaluation")
    p.add_argument("--cores", type=int, default=2, help="cores of this machine")
    p.add_argument("--extend-steps", type=int, default=1000,
                   help="keep hours in reserve to train every run this many steps further if the plateau criterion "
                        "fails (0: no reserve)")
    p.add_argument("--cost-from", type=Path, default=None,
                   help="a study's summary.json to measure the cost of a run on (default: the pilot's runs), e.g. "
                        "the unpaired design's when the paired design's runs were paused")
    p.add_argument("--out", type=Path, required=True, help="folder of design.json and design.md")
    args = p.parse_args(argv)
    a, _, b = args.pair.partition("-")
    for folder in (args.paired, args.unpaired):
        if not (folder / "runs.json").is_file():
            p.error(f"{folder}/runs.json not found: run the pilot's two designs first (see the module doc)")
    d = build_design(args.paired, args.unpaired, (a, b), args.budget_h, args.models, args.steps, args.mid_n,
                     args.final_n, args.cores, args.cost_from, args.extend_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "design.json").write_text(json.dumps(d, indent=1) + "\n")
    (args.out / "design.md").write_text(design_markdown(d))
    print(design_markdown(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
