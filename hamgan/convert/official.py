"""Converting an official TF checkpoint (HamGAN, TF-GAN's SAGAN example) into a hamgan training checkpoint.

    state, report = convert_official(reader, cfg, with_optimizer=False)
    save_checkpoint(state, "model.pt")

Every variable is accounted for before anything is read (:func:`plan`): each TF variable of the official graph of
``cfg`` (:func:`hamgan.convert.mapping.layout`) must be in the checkpoint with its shape and float32; each
checkpoint variable must be one of them, an Adam slot of one of them, or a counter (global_step, Adam's beta
powers); each hamgan tensor must be filled by one or be derived. All failures are listed in one
:class:`ConvertError`. The result is a complete training state (:mod:`hamgan.train.state`): ``hamgan-sample``,
``hamgan-eval`` and ``hamgan-train`` (resume, fine-tune) read it as their own.

Adam (``with_optimizer``): TF's slots ``<variable>/Adam`` (m) and ``<variable>/Adam_1`` (v) go through the layout
change of their variable into ``exp_avg`` / ``exp_avg_sq``; their step is the checkpoint's ``global_step`` (TF's
bias corrections come from ``beta1_power``, ``beta2_power``, equal at that step). Without it, opt_G and opt_D are
fresh Adam states (fine-tuning with hamgan's optimiser from step 0 of its bias correction).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hamgan.config import Config, to_dict
from hamgan.convert.mapping import (ADAM_SLOTS, DEFAULT_ROOTS, Entry, find_root, layout, optimizer_variable,
                                    to_hamgan, unfilled_keys)
from hamgan.convert.tf_reader import Reader, ReadError
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.networks import Discriminator, Generator
from hamgan.nn.spectral_norm import SpectralNorm
from hamgan.train.state import rng_state, seed_everything

FORMAT_NOTE = "converted from an official TF checkpoint by hamgan-convert"


class ConvertError(ValueError):
    """A checkpoint that does not fit the official graph of the config; the message lists every problem."""


@dataclass
class Plan:
    """What goes where: entries to read, and what the checkpoint holds besides."""

    entries: list[Entry]
    roots: dict[str, str]
    slots: list[str] = field(default_factory=list)  # Adam moments present
    counters: list[str] = field(default_factory=list)  # global_step, beta powers
    skipped: list[str] = field(default_factory=list)  # matched by the user's --skip


@dataclass
class Report:
    """What a conversion did (printed by the CLI)."""

    source: str
    roots: dict[str, str]
    placed: dict[str, int]  # net -> variables
    step: int
    slots: int
    counters: dict[str, Any]
    skipped: list[str]
    with_optimizer: bool

    def lines(self) -> list[str]:
        counters = ", ".join(f"{k} = {v}" for k, v in self.counters.items()) or "none"
        return [
            f"read {self.source}: roots G {self.roots['G']!r}, D {self.roots['D']!r}",
            f"placed every variable of the official graph: G {self.placed['G']}, D {self.placed['D']}",
            f"optimizer slots: {self.slots} Adam moments " + ("carried into opt_G / opt_D" if self.with_optimizer
                                                             else "skipped (--with-optimizer carries them)"),
            f"counters: {counters}; step {self.step}",
            *([f"skipped by --skip: {len(self.skipped)} ({', '.join(self.skipped[:5])}"
               f"{', ...' if len(self.skipped) > 5 else ''})"] if self.skipped else []),
        ]


def build_networks(cfg: Config) -> tuple[Generator, Discriminator]:
    """G and D of ``cfg`` (values are overwritten; the seed only makes the derived state deterministic)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return generator_from_config(cfg.model), discriminator_from_config(cfg.model)


def plan(variables: dict[str, tuple[tuple[int, ...], str]], G: torch.nn.Module, D: torch.nn.Module,
         roots: dict[str, str | None] | None = None, skip: list[str] = ()) -> Plan:
    """Check a checkpoint's ``variables`` ({name: (shape, dtype)}) against the official graph of G and D; raise a
    :class:`ConvertError` listing every problem."""
    roots = dict(roots or {})
    problems: list[str] = []
    for net in ("G", "D"):
        if roots.get(net) is None:
            try:
                roots[net] = find_root(variables, net)
            except ValueError as e:
                problems.append(str(e))
                roots[net] = DEFAULT_ROOTS[net]
    entries = layout(G, "G", roots["G"]) + layout(D, "D", roots["D"])
    for net, module in (("G", G), ("D", D)):
        left = unfilled_keys(module, [e for e in entries if e.net == net])
        if left:
            problems.append(f"{len(left)} {net} tensor(s) of this config have no variable in the official graph "
                            f"(is --config the model of the checkpoint?): {', '.join(left)}")
    expected = {e.tf_name: e for e in entries}
    trainable = {e.tf_name for e in entries if e.trainable}
    skips = [re.compile(s) for s in skip]
    result = Plan(entries, {k: str(v) for k, v in roots.items()})
    unplaced = []
    for name in variables:
        if name in expected:
            continue
        kind = optimizer_variable(name, trainable)
        if kind == "slot":
            result.slots.append(name)
        elif kind == "counter":
            result.counters.append(name)
        elif any(s.fullmatch(name) for s in skips):
            result.skipped.append(name)
        else:
            unplaced.append(name)
    missing = [n for n in expected if n not in variables]
    shapes = [f"{n}: {list(variables[n][0])} in the checkpoint, {list(e.tf_shape)} in the official graph"
              for n, e in expected.items() if n in variables and tuple(variables[n][0]) != e.tf_shape]
    dtypes = [f"{n}: {variables[n][1]}" for n in expected if n in variables and variables[n][1] != "float32"]
    for what, names in (("missing from the checkpoint", missing), ("of the wrong shape", shapes),
                        ("not float32", dtypes), ("that cannot be placed (not in the official graph of this config)",
                                                  unplaced)):
        if names:
            problems.append(f"{len(names)} variable(s) {what}: " + "; ".join(names))
    if problems:
        raise ConvertError("the checkpoint does not fit the official graph of this config:\n  - "
                           + "\n  - ".join(problems) + "\n" + _hint(unplaced + missing))
    return result


def _hint(names: list[str]) -> str:
    text = " ".join(names)
    if "sn_lower_bread" in text and "sn_conv_theta" in text:
        return ("(a HamGAN checkpoint needs configs/imagenet128_hamgan_baby.yaml or _strong, a TF-GAN SAGAN one "
                "configs/imagenet128_sagan.yaml)")
    return "(names are matched exactly; see docs/pretrained.md for the rules, --g-root / --d-root / --skip)"


@torch.no_grad()
def _fill(module: torch.nn.Module, entries: list[Entry], arrays: dict[str, np.ndarray], step: int) -> None:
    """Copy the converted arrays into ``module``'s tensors, then derive spectral norm's u and BN's counters."""
    state = module.state_dict(keep_vars=True)
    for e in entries:
        state[e.key].copy_(torch.from_numpy(to_hamgan(e, arrays[e.tf_name])))
    for m in module.modules():
        for p in getattr(getattr(m, "parametrizations", None), "weight", []):
            if isinstance(p, SpectralNorm):  # u = normalize(W v): TF's v of the next power iteration
                w = m.parametrizations.weight.original.float().flatten(1)
                p._u.copy_(F.normalize(torch.mv(w, p._v), dim=0, eps=p.eps))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None:
            m.num_batches_tracked.fill_(step)


def _adam_state(module: torch.nn.Module, entries: list[Entry], arrays: dict[str, np.ndarray] | None, lr: float,
                betas: tuple[float, float], eps: float, step: int) -> dict:
    """The state dict of hamgan's Adam over ``module.parameters()``, with TF's moments when ``arrays`` is given."""
    opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=eps)
    if arrays is not None:
        params = dict(module.named_parameters())
        for e in entries:
            if not e.trainable:
                continue
            m, v = (torch.from_numpy(to_hamgan(e, arrays[f"{e.tf_name}/{slot}"])) for slot in ADAM_SLOTS)
            opt.state[params[e.key]] = {"step": torch.tensor(float(step)), "exp_avg": m, "exp_avg_sq": v}
    return opt.state_dict()


def _fresh_rng_state(seed: int) -> dict[str, Any]:
    """The RNG state a one-rank run of ``seed`` starts its loop with (hamgan.train.loop), without touching ours."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        seed_everything(seed)
        return rng_state(torch.Generator().manual_seed(seed + 1), torch.device("cpu"))
    finally:
        random.setstate(saved[0]), np.random.set_state(saved[1]), torch.set_rng_state(saved[2])


def convert_official(reader: Reader, cfg: Config, *, with_optimizer: bool = False,
                     roots: dict[str, str | None] | None = None, skip: list[str] = (),
                     step: int | None = None) -> tuple[dict[str, Any], Report]:
    """The hamgan training checkpoint (for :func:`hamgan.checkpoint.save_checkpoint`) of the TF checkpoint behind
    ``reader`` for the model of ``cfg``, and a :class:`Report`. Raises :class:`ConvertError` naming every problem."""
    G, D = build_networks(cfg)
    variables = reader.variables()
    p = plan(variables, G, D, roots, skip)
    names = [e.tf_name for e in p.entries]
    if with_optimizer:
        trainable = [e.tf_name for e in p.entries if e.trainable]
        missing = [f"{n}/{s}" for n in trainable for s in ADAM_SLOTS if f"{n}/{s}" not in variables]
        if missing:
            raise ConvertError(f"--with-optimizer: {len(missing)} Adam slot(s) missing from the checkpoint: "
                               + "; ".join(missing) + "\n(convert without --with-optimizer to start fresh Adam "
                               "states)")
        names += [f"{n}/{s}" for n in trainable for s in ADAM_SLOTS]
    counter_names = [n for n in p.counters if variables[n][0] == ()]
    try:
        arrays = reader.read(names + counter_names)
    except ReadError as e:
        listed = "".join(f"\n  - {k}: {v}" for k, v in e.errors.items())
        raise ConvertError(f"{e} (a truncated or damaged checkpoint?){listed}") from None
    counters = {n: arrays[n].item() for n in counter_names}
    if step is None:
        step = int(next((v for n, v in counters.items() if n.rpartition("/")[2] == "global_step"), 0))
    for net, module in (("G", G), ("D", D)):
        _fill(module, [e for e in p.entries if e.net == net], arrays, step)
    t = cfg.train
    opt = {net: _adam_state(module, [e for e in p.entries if e.net == net], arrays if with_optimizer else None,
                            t.lr_g if net == "G" else t.lr_d, tuple(t.betas), t.eps, step)
           for net, module in (("G", G), ("D", D))}
    disabled = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    report = Report(reader.source, p.roots, {n: sum(e.net == n for e in p.entries) for n in ("G", "D")}, step,
                    len(p.slots), counters, p.skipped, with_optimizer)
    state = {
        "config": to_dict(cfg),
        "step": step,
        "G": G.state_dict(),
        "D": D.state_dict(),
        "G_ema": None,  # the official runs keep no EMA
        "opt_G": opt["G"],
        "opt_D": opt["D"],
        "scaler_G": disabled,
        "scaler_D": disabled,
        "rng": [_fresh_rng_state(t.seed)],
        "data": {"epoch": 0, "index": 0, "world_size": 1},
        "metrics": {"best_fid": None, "best_fid_step": None},
        "converted_from": {"note": FORMAT_NOTE, "source": reader.source, "roots": p.roots, "counters": counters,
                           "with_optimizer": with_optimizer, "skipped": p.skipped},
    }
    return state, report


__all__ = ["ConvertError", "Plan", "Report", "build_networks", "convert_official", "plan"]
