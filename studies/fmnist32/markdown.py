"""summary.md of the study: final table, FID-vs-steps table, paired differences, seed-aware compare, what the pairing
bought, plateau check, notes, commands.

    text = summary_markdown(summary)     # summary: what studies.fmnist32.report.build_summary returns
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hamgan.metrics.paired import format_table


def _pm(stat: dict[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _scales(final: dict[str, Any]) -> str:
    """Mean over seeds of |sigma| / |gamma| in G and D ("-" without a context block)."""
    cells = []
    for net in ("g", "d"):
        values = [abs(v) for v in final.get(f"context_scales_{net}", []) if v is not None]
        cells.append(f"{np.mean(values):.3f}" if values else "-")
    return "-" if cells == ["-", "-"] else " / ".join(cells)


def _interval(ci: list[float] | None, digits: int) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def final_table(summary: dict[str, Any]) -> list[str]:
    o = summary["options"]
    lines = [f"| model | FID@{o['n']} | per seed | KID | precision | recall | density | coverage | params G / D | "
             f"context G / D: params, MACs | learnt scale G / D | train images/s |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary["models"].values():
        f = s["final"]
        if f is None:
            lines.append(f"| {s['label']} | not trained to step {o['steps']} yet |" + " |" * 10)
            continue
        m = f["metrics"]
        ctx = "-" if not (s["context_params_g"] or s["context_params_d"]) else (
            f"{s['context_params_g']} / {s['context_params_d']}, "
            f"{s['context_macs_g'] / 1e6:.2f}M / {s['context_macs_d'] / 1e6:.2f}M")
        seeds = f"{len(f['seeds'])} seed{'' if len(f['seeds']) == 1 else 's'}"
        lines.append(
            f"| {s['label']} | {f['fid_mean']:.2f} ± {f['fid_std']:.2f} ({seeds}) | "
            + ", ".join(f"{v:.1f}" for v in f["fids"])
            + f" | {_pm(m['kid_mean'], 4)} | {_pm(m['precision'])} | {_pm(m['recall'])} | {_pm(m['density'])} | "
              f"{_pm(m['coverage'])} | {s['params_g'] / 1e3:.1f}k / {s['params_d'] / 1e3:.1f}k | {ctx} | "
              f"{_scales(f)} | {_pm(f['images_per_s'], 0)} |")
    return lines


def steps_table(summary: dict[str, Any]) -> list[str]:
    steps = sorted({int(k) for s in summary["models"].values() for k in s["steps"]})
    lines = ["| model | " + " | ".join(str(s) for s in steps) + " |", "| --- |" + " ---: |" * len(steps)]
    for s in summary["models"].values():
        cells = []
        for step in steps:
            p = s["steps"].get(step, s["steps"].get(str(step)))
            cells.append("-" if p is None else f"{p['fid_mean']:.2f} ± {p['fid_std']:.2f} ({len(p['seeds'])})")
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    return lines


def paired_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| pair (A − B) | metric | seeds | mean difference | 95% t interval | 95% bootstrap interval | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for pair, metrics in summary["paired"].items():
        if not metrics:
            lines.append(f"| {pair} | - | 0 | no common seed with a final evaluation | | | |")
        for metric, d in metrics.items():
            digits = 4 if metric == "kid_mean" else 2 if metric == "fid" else 3
            lines.append(f"| {pair} | {metric} ({d['better']} is better) | {d['n']} | {d['mean']:+.{digits}f} | "
                         f"{_interval(d['t_interval'], digits)} | {_interval(d['bootstrap_interval'], digits)} | "
                         f"{d['verdict']} |")
    return lines


def plateau_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| model | last two evaluations | FID@mid change | spread | verdict |", "| --- | --- | ---: | ---: | --- |"]
    for model, p in summary["plateau"].items():
        if p is None:
            lines.append(f"| {model} | fewer than two evaluations of a seed | | | |")
            continue
        spread = "-" if p["spread"] is None else f"{p['spread']:.2f} ({p.get('spread_from', 'seed std')})"
        lines.append(f"| {model} | {p['from_step']} → {p['to_step']} ({p['fid_from']:.2f} → {p['fid_to']:.2f}) | "
                     f"{p['change']:+.2f} | {spread} | {p['verdict']} |")
    return lines


def pairing_section(summary: dict[str, Any]) -> list[str]:
    """What pairing bought per pair and FID (statistics.pairing_gain): paired SD against the unpaired-equivalent SD."""
    gains = {pair: g for pair, g in (summary.get("pairing") or {}).items() if g}
    if not gains:
        return []
    lines = ["## What the pairing bought (FID, per pair)", "",
             "| pair (A − B) | FID at step | seeds | SD of A − B (paired) | sqrt(var A + var B) (unpaired runs) | "
             "correlation of A and B over seeds | variance ratio |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for pair, g in gains.items():
        for key, d in g.items():
            what, step = key.split("@")
            label = f"FID@{what.removeprefix('fid_at_')}, step {step}" if what != "fid" else \
                f"FID@{summary['options']['n']}, step {step}"
            ratio = "-" if d["variance_ratio"] is None else f"{d['variance_ratio']:.2f}"
            r = "-" if d["r"] is None else f"{d['r']:+.2f}"
            lines.append(f"| {pair} | {label} | {d['n']} | {d['sd_paired']:.2f} | {d['sd_unpaired']:.2f} | {r} | "
                         f"{ratio} |")
    lines += ["", "Var(A − B) = var A + var B − 2 cov(A, B): runs of a seed share their weights outside the context "
              "block, latents, labels and data order, and only the correlation this buys over seeds makes the paired "
              "SD smaller than that of independent runs with the same spread. Variance ratio: how many times more "
              "seeds an unpaired design would need for the same interval.", ""]
    return lines


def seed_compare_section(summary: dict[str, Any]) -> list[str]:
    """The seed-aware compare of every pair (hamgan.metrics.paired), with the command that recomputes it."""
    compared = summary.get("seed_compare") or {}
    if not compared:
        return []
    lines = ["## Seed-aware compare (`hamgan-eval compare --group`, final step)", ""]
    for pair, c in compared.items():
        lines += [f"{c['a']} vs {c['b']}: seeds {c['seeds']}", "", format_table(c), ""]
    lines += ["Per metric: mean ± SD over seeds of each model, the mean paired difference A − B with its 95% t and "
              "percentile bootstrap (10,000 resamples, seed 0) intervals, and the minimum detectable difference "
              "(MDE): the smallest true difference a two-sided paired t-test at 5% detects with 80% power, for this "
              "number of seeds and this SD of the differences. Recomputed from the metric files in metrics/ by:", "",
              "```", summary["commands"]["compare_seeds"], "```", ""]
    return lines


def plateau_note(o: dict[str, Any]) -> list[str]:
    if o.get("plateau_spread") == "paired":
        return ["flat: the mean FID of the model (over the seeds evaluated at both steps) changed between its last two "
                "evaluations by less than the SD over seeds of the per-seed FID difference (same samples) of the pair "
                "it takes part in with the smallest such SD (--plateau-spread paired): more training would move the "
                "model less than the noise of the comparison."]
    return ["flat: the last two evaluations differ by less than the seed spread (sample std over seeds at the last "
            f"step; with one seed the given --seed-spread{'' if o['seed_spread'] is None else ' ' + str(o['seed_spread'])})."]


def summary_markdown(summary: dict[str, Any]) -> str:
    o, env, c = summary["options"], summary["environment"], summary["compute"]
    bn = f"standing BN statistics ({o['bn_batches']} x {o['bn_batch_size']})"
    seeds = ", ".join(f"{m}: {len(s)}" for m, s in o["models"].items())
    lines = [
        "# Fashion-MNIST 32x32: Hamburger vs self-attention vs no context block",
        "",
        f"Seeds per model ({seeds}); {o['steps']} steps each with identical hyperparameters (configs/fmnist32_*.yaml"
        f"{', ' + ' '.join(o['overrides']) if o['overrides'] else ''}). EMA generator with {bn}, sampling seed "
        f"{o['fid_seed']} for every checkpoint, against {o['ref_n']} Fashion-MNIST test images (real Inception "
        f"weights); mean ± sample std over seeds.",
        "",
        f"## Final step ({o['steps']}): FID@{o['n']}, KID, precision, recall, density, coverage from {o['n']} samples, "
        f"{bn}",
        "", *final_table(summary), "",
        f"## FID@{o['mid_n']} against training steps ({bn}; in brackets: seeds)",
        "", *steps_table(summary), "",
        "![FID vs steps](fid_vs_steps.png) ![FID vs wall-clock](fid_vs_wallclock.png)",
        "",
        f"## Paired differences per seed (final step, {o['n']} samples, {bn})",
        "", *paired_table(summary), "",
        "Verdict from the t interval: beat = the interval lies entirely on the better side of 0, lost = entirely on "
        "the worse side, inconclusive = it contains 0 (no detectable difference). Bootstrap: 10,000 resamples of the per-seed differences (seed 0).",
        "",
        *seed_compare_section(summary),
        *pairing_section(summary),
        f"## Plateau check (FID@{o['mid_n']}, {bn})",
        "", *plateau_table(summary), "",
        *plateau_note(o),
        "",
        "Notes:",
        f"- N of every number: final-step metrics from {o['n']} samples; the FID-vs-steps table, the plots and the "
        f"plateau check from {o['mid_n']} samples (the final step's point is the FID of the first {o['mid_n']} of "
        f"its {o['n']} samples); reference: {o['ref_n']} test images.",
        f"- Every evaluation uses the EMA generator with {bn} and spectral-norm vectors refreshed "
        f"({o['sn_iterations']} iterations).",
        "- Context MACs: one forward at batch 1 (hamgan.info), including the Hamburger's no-grad iterations.",
        "- Learnt scale: mean over seeds of |sigma| (Hamburger) or |gamma| (attention) of the raw G and D at the final "
        "step (0 at initialisation: a block left at 0 is unused).",
        f"- Images/s and wall-clock: training only (the trainer's train_s), {o['jobs']} concurrent trainings on "
        f"{env['cpu_count']} CPU cores ({env['cpu']}), shared with the evaluations.",
        f"- Compute: {c['train_s'] / 3600:.2f} h of training summed over {c['runs']} runs, {c['eval_s'] / 3600:.2f} h "
        f"of evaluation, {c['driver_wall_s'] / 3600:.2f} h wall-clock of the driver ({c['counts']}).",
        f"- Sample grids: samples/<model>.png, one row per class (the same 10 latents in every row), final EMA "
        f"generator of the first seed whose run finished, {bn}.",
    ]
    if summary["failed_runs"]:
        lines.append(f"- Failed runs (not in the tables): {', '.join(summary['failed_runs'])}.")
    for line in summary.get("missing_evaluations", []):
        lines.append(f"- Missing evaluation (not in the tables): {line}.")
    lines += ["", "Commands:", "", "```", *summary["commands"].values(), "```", "",
              f"Generated {env['date']} with torch {env['torch']}, Python {env['python']}.", ""]
    return "\n".join(lines)
