"""Configs written before the per-network context settings (hamgan before issue 10), read as the same networks.

The old schema had one context block for both networks and the recipe of hamgan's first PyTorch version::

    model:
      context: ham                       # ham | attention | none, for G and D
      init: orthogonal
      ham: {kind: nmf, steps: 6, eval_steps: null, grad: one_step, version: v1, groups: 1}
      g: {channels: 64, context_res: 32, ham_dim: null, ham_rank: 32}
      d: {channels: 64, context_res: 32, ham_dim: null, ham_rank: 16}

A mapping with any of ``model.context``, ``model.ham``, ``model.<g|d>.ham_dim``, ``model.<g|d>.ham_rank`` is in
the old schema. :func:`migrate` rewrites it: the context and Hamburger settings go to both networks
(``model.g.context``, ``model.g.ham.{kind, ..., dim, rank}``, the same for D), and the keys that did not exist get
the values that reproduce the old networks and data exactly (:data:`LEGACY`): orthogonal init when ``init`` is
absent, torch's batch norm (eps 1e-5, momentum 0.1, unbiased running variance), torch's spectral norm (exact
bound everywhere, no eval-mode iteration, 15 warm-up iterations), biased breads and the old v2 cheese (for networks
with a Hamburger; the others keep the defaults, which do not affect them), and PIL bicubic resizing. Checkpoints
and run folders of the old schema therefore load and give the same outputs as before.

A mapping that mixes old and new keys is refused with a message that says how to write the old keys. Overrides of
old keys are translated by :func:`translate_override` (``model.context=attention`` sets ``model.g.context`` and
``model.d.context``). ``python -m hamgan.migrate CONFIG`` prints a config file in the new schema.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

OLD_HAM = {"kind": "nmf", "steps": 6, "eval_steps": None, "grad": "one_step", "version": "v1", "groups": 1}
OLD_RANK = {"g": 32, "d": 16}
CONTEXT_BLOCKS = ("none", "ham", "attention", "ylg")
LEGACY = {  # values of the keys the old schema did not have, reproducing the old networks and data
    "init": "orthogonal",
    "bn": {"eps": 1e-5, "momentum": 0.1, "running_var": "unbiased"},
    "sn": {"bound": "exact", "context_bound": "exact", "eval_iteration": False, "warmup": 15},
    "ham": {"bread_bias": True, "v2_cheese": "legacy"},
    "resize": "pil-bicubic",
}
HOW_TO_UPDATE = (
    "model.context -> model.g.context and model.d.context; model.ham.<key> -> model.g.ham.<key> and "
    "model.d.ham.<key>; model.<g|d>.ham_dim -> model.<g|d>.ham.dim; model.<g|d>.ham_rank -> model.<g|d>.ham.rank "
    "(`python -m hamgan.migrate CONFIG` prints a config file in the new form)"
)


def _config_error(message: str) -> Exception:
    from hamgan.config import ConfigError

    return ConfigError(message)


def _present(data: Any, model_keys: tuple[str, ...], net_keys: tuple[str, ...]) -> list[str]:
    """The dotted keys ``model.<k>`` (k in ``model_keys``) and ``model.<g|d>.<k>`` (``net_keys``) found in ``data``."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return []
    keys = [f"model.{k}" for k in model_keys if k in model]
    for net in ("g", "d"):
        if isinstance(model.get(net), dict):
            keys += [f"model.{net}.{k}" for k in net_keys if k in model[net]]
    return keys


def old_keys(data: Any) -> list[str]:
    """The dotted keys of ``data`` that belong to the old schema only."""
    return _present(data, ("context", "ham"), ("ham_dim", "ham_rank"))


def new_keys(data: Any) -> list[str]:
    """The dotted model keys of ``data`` that belong to the new schema only."""
    return _present(data, ("bn", "sn"), ("context", "ham", "ylg"))


def migrate(data: Any) -> Any:
    """``data`` in the new schema: a copy rewritten as the module doc says when it is in the old schema, else
    ``data`` itself. Raises ConfigError for a mapping that mixes old and new keys."""
    old = old_keys(data)
    if not old:
        return data
    new = new_keys(data)
    if new:
        raise _config_error(
            f"config mixes keys of the schema before per-network context settings ({', '.join(old)}) with keys of "
            f"the new one ({', '.join(new)}); write the old keys in the new form: {HOW_TO_UPDATE}"
        )
    data = copy.deepcopy(data)
    model = data["model"]
    context = model.pop("context", "ham")
    ham = model.pop("ham", None) or {}
    if not isinstance(ham, dict):
        raise _config_error(f"config key 'model.ham' is a section; give a mapping, got {ham!r}")
    model.setdefault("init", LEGACY["init"])
    model["bn"] = dict(LEGACY["bn"])
    model["sn"] = dict(LEGACY["sn"])
    for net in ("g", "d"):
        section = model.get(net) or {}
        if not isinstance(section, dict):
            continue  # the schema check names the problem
        dim, rank = section.pop("ham_dim", None), section.pop("ham_rank", OLD_RANK[net])
        section["context"] = context
        legacy_ham = LEGACY["ham"] if context == "ham" else {}  # no effect on a network without a Hamburger
        section["ham"] = {**OLD_HAM, **ham, "dim": dim, "rank": rank, **legacy_ham}
        model[net] = section
    if not isinstance(data.get("data"), dict):
        data["data"] = {}
    data["data"].setdefault("resize", LEGACY["resize"])
    return data


def translate_override(key: str, value: Any) -> list[tuple[str, Any]]:
    """An override of an old key as overrides of its new keys, e.g. ``model.ham.kind`` -> G's and D's."""
    parts = key.split(".")
    if key == "model.context":
        if value not in CONTEXT_BLOCKS:
            choices = ", ".join(repr(c) for c in CONTEXT_BLOCKS)
            raise _config_error(f"config key 'model.context' must be one of {choices} (it sets model.g.context and "
                                f"model.d.context), got {value!r}")
        return [("model.g.context", value), ("model.d.context", value)]
    if key == "model.ham":
        if not isinstance(value, dict):
            raise _config_error(f"config key 'model.ham' is a section (now model.g.ham and model.d.ham); give a "
                                f"mapping, got {value!r}")
        return [(f"model.{net}.ham.{k}", v) for net in ("g", "d") for k, v in value.items()]
    if parts[:2] == ["model", "ham"]:
        rest = ".".join(parts[2:])
        return [(f"model.g.ham.{rest}", value), (f"model.d.ham.{rest}", value)]
    if len(parts) == 3 and parts[0] == "model" and parts[1] in ("g", "d") and parts[2] in ("ham_dim", "ham_rank"):
        return [(f"model.{parts[1]}.ham.{parts[2][4:]}", value)]
    return [(key, value)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hamgan.migrate",
                                     description="Print a config file in the schema with per-network context "
                                                 "settings (unchanged when it already is).")
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    try:
        data = yaml.safe_load(args.config.read_text()) or {}
        migrated = migrate(data)
    except (OSError, yaml.YAMLError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if migrated is data:
        print(f"# {args.config} is already in the new schema", file=sys.stderr)
    print(yaml.safe_dump(migrated, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
