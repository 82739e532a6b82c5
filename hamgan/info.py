"""Print the size and cost of a config's generator and discriminator.

    python -m hamgan.info CONFIG [dotted.key=value ...] [--json]

For G and D: parameters per network and per top-level block, the output shape of every block, the MACs of every
block and of the whole forward, the context block's parameters and MACs on its actual input, and the layer-by-layer
layout (every layer that holds parameters, in forward order: kind, output resolution, channels, parameters, and the
TensorFlow scope of the same layer in the official HamGAN / TF-GAN code, :mod:`hamgan.nn.official`).

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions; elementwise ops
are not counted) as flops / 2, for one forward at batch 1 in eval mode under ``torch.no_grad``. The Hamburger's K
decomposition iterations run without autograd and are counted. The weights are irrelevant to the counts, so for speed
the networks are built without spectral norm and with the ``normal`` init: the same parameters (spectral norm's
u, v are buffers) and the same MACs, without seconds of power iterations and QR at 128 on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from hamgan.config import ConfigError, ModelConfig, load_config
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.layers import ConditionalBatchNorm2d
from hamgan.nn.networks import Discriminator, Generator
from hamgan.nn.official import official_scope


def count_params(module: nn.Module | None) -> int:
    """Learnable parameters (spectral norm's u, v and batch-norm running statistics are buffers, not counted)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def stages(net: Generator | Discriminator) -> list[tuple[str, nn.Module]]:
    """The top-level blocks of ``net`` in forward order, named as in the SAGAN code (block1, block2, ...)."""
    blocks: list[tuple[str, nn.Module]] = []
    for i, block in enumerate(net.blocks):
        blocks.append((f"block{i + 1}", block))
        if i == net.context_position:
            blocks.append(("context", net.context))
    if isinstance(net, Generator):
        return [("linear", net.linear), *blocks, ("bn", net.bn), ("conv_out", net.conv_out)]
    return [*blocks, ("linear", net.linear), ("embedding", net.embedding)]


def _module_paths(net: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in net.named_modules()}


def own_params(module: nn.Module) -> int:
    """Parameters held by ``module`` itself (a spectrally normalised weight's original included)."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    if parametrize.is_parametrized(module):
        own += sum(p.numel() for p in module.parametrizations.parameters())
    return own


def _kind(module: nn.Module) -> tuple[str, str]:
    """(kind, channels) of a layer for the layout table."""
    sn = "+SN" if parametrize.is_parametrized(module) else ""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0]
        return f"conv{k}x{k}{sn}" + ("" if module.bias is not None else " no bias"), \
            f"{module.in_channels} -> {module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"linear{sn}", f"{module.in_features} -> {module.out_features}"
    if isinstance(module, nn.Embedding):
        return f"embedding{sn}", f"{module.num_embeddings} x {module.embedding_dim}"
    if isinstance(module, ConditionalBatchNorm2d):
        return "cond. BN", f"{module.num_features} x {module.num_classes} classes"
    if isinstance(module, nn.BatchNorm2d):
        return "BN", str(module.num_features)
    return "scale", "1"


def layer_layout(
    net: Generator | Discriminator, name: str, cfg: ModelConfig, *inputs: torch.Tensor
) -> list[dict[str, Any]]:
    """Every layer of ``net`` (``name`` "G" or "D") that holds parameters, in forward order: path, kind, output
    resolution, channels, parameters, spectral-norm bound (from ``cfg.sn``) and the official TF scope. The 1x1 convs
    inside a context block run as matrix products (no module call): their resolution is the block's."""
    resolution: dict[int, int] = {}

    def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        resolution.setdefault(id(module), out.shape[-1] if out.ndim == 4 else 0)

    def record_context(module: nn.Module, args: tuple) -> None:
        resolution.setdefault(-1, args[0].shape[-1])

    handles = [m.register_forward_hook(record) for m in net.modules() if own_params(m)]
    if net.context is not None:
        handles.append(net.context.register_forward_pre_hook(record_context))
    with torch.no_grad():
        net(*inputs)
    for h in handles:
        h.remove()
    paths = _module_paths(net)
    rows = []
    for _, stage in stages(net):
        for path, m in stage.named_modules(prefix=paths[id(stage)]):
            if not own_params(m) or type(m).__name__ == "ParametrizationList":
                continue
            res = resolution.get(id(m), resolution.get(-1, 0) if path.startswith("context") else 0)
            kind, channels = _kind(m)
            official = official_scope(name, path)
            sn = None
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                sn = {"exact": "W/s", "at_most_one": "W/max(1,s)"}[
                    cfg.sn.context_bound if path.startswith("context.") else cfg.sn.bound]
            if kind == "scale" and official:
                official += "/sigma_ratio"
            rows.append({"layer": path, "kind": kind.replace("+SN", ""), "res": res or None, "channels": channels,
                         "params": own_params(m), "sn": sn, "official": official})
    return rows


def network_info(net: Generator | Discriminator, *inputs: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """Parameters, MACs and shapes of ``net`` for one forward on ``inputs``; also returns the output."""
    shapes: dict[str, list[int]] = {}
    context_input: list[int] | None = None
    handles = []
    for name, module in stages(net):
        def record_output(module: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            shapes[name] = list(out.shape)

        handles.append(module.register_forward_hook(record_output))
    if net.context is not None:

        def record_input(module: nn.Module, args: tuple) -> None:
            nonlocal context_input
            context_input = list(args[0].shape)

        handles.append(net.context.register_forward_pre_hook(record_input))

    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad(), counter:
        out = net(*inputs)
    for h in handles:
        h.remove()

    flops = counter.get_flop_counts()
    root = type(net).__name__
    paths = _module_paths(net)

    def macs(module: nn.Module) -> int:
        return int(sum(flops.get(f"{root}.{paths[id(module)]}", {}).values())) // 2

    blocks = [
        {"name": name, "params": count_params(m), "macs": macs(m), "output_shape": shapes[name]}
        for name, m in stages(net)
    ]
    context = None
    if net.context is not None:
        after = f"block{net.context_position + 1}"
        context = {
            "kind": type(net.context).__name__,
            "after": after,
            "input_shape": context_input,
            "params": count_params(net.context),
            "macs": macs(net.context),
            "repr": repr(net.context).splitlines()[0].rstrip("("),
        }
        if hasattr(net.context, "num_steps"):
            context["steps"] = net.context.num_steps
    info = {
        "params": count_params(net),
        "macs": int(sum(flops.get(root, {}).values())) // 2,
        "output_shape": list(out.shape),
        "blocks": blocks,
        "context": context,
    }
    return info, out


def model_info(cfg: ModelConfig) -> dict[str, Any]:
    """Info of the generator and discriminator of ``cfg`` (see :func:`network_info`), batch 1, eval mode."""
    cfg = dataclasses.replace(cfg, init="normal")  # counts do not depend on the weights; normal init is the cheapest
    G = generator_from_config(cfg, spectral_norm=False).eval()
    D = discriminator_from_config(cfg, spectral_norm=False).eval()
    z = torch.randn(1, cfg.z_dim)
    y = torch.zeros(1, dtype=torch.long)
    g_info, x = network_info(G, z, y)
    d_info, _ = network_info(D, x, y)
    g_info["layers"] = layer_layout(G, "G", cfg, z, y)
    d_info["layers"] = layer_layout(D, "D", cfg, x, y)
    return {
        "resolution": cfg.resolution,
        "context": {"G": cfg.g.context, "D": cfg.d.context},
        "G": g_info,
        "D": d_info,
    }


def _shape(shape: list[int] | None) -> str:
    return "(" + ", ".join(map(str, shape or [])) + ")"


def _macs(n: int) -> str:
    return f"{n / 1e9:.3f}G" if n >= 1e8 else f"{n / 1e6:.2f}M"


def format_info(info: dict[str, Any], title: str = "") -> str:
    lines = [title] if title else []
    for net in ("G", "D"):
        n = info[net]
        lines.append("")
        lines.append(
            f"{net}: {n['params']:,} parameters, {_macs(n['macs'])} MACs at batch 1, output {_shape(n['output_shape'])}"
        )
        lines.append(f"  {'block':<10} {'params':>12} {'MACs':>10}   output")
        for b in n["blocks"]:
            lines.append(
                f"  {b['name']:<10} {b['params']:>12,} {_macs(b['macs']):>10}   "
                f"{net} {b['name']} -> {_shape(b['output_shape'])}"
            )
    lines.append("")
    lines.append("context blocks (batch 1, eval mode, MACs = flops / 2 incl. the no-grad decomposition iterations):")
    for net in ("G", "D"):
        c = info[net]["context"]
        if c is None:
            lines.append(f"  {net}: none")
            continue
        steps = f", K={c['steps']}" if "steps" in c else ""
        lines.append(
            f"  {net}: {c['repr']}{steps} after {c['after']} on {_shape(c['input_shape'])}: "
            f"{c['params']:,} parameters, {c['macs']:,} MACs ({_macs(c['macs'])})"
        )
    return "\n".join(lines)


def format_layout(info: dict[str, Any]) -> str:
    """The layer-by-layer tables of G and D (Markdown)."""
    lines = []
    for net in ("G", "D"):
        rows = info[net]["layers"]
        lines += ["", f"{net} layers ({sum(r['params'] for r in rows):,} parameters):", "",
                  "| layer | kind | resolution | channels | params | spectral norm | official scope |",
                  "| --- | --- | ---: | --- | ---: | --- | --- |"]
        for r in rows:
            lines.append(f"| {r['layer']} | {r['kind']} | {r['res'] or '-'} | {r['channels']} | {r['params']:,} | "
                         f"{r['sn'] or '-'} | {r['official'] or '(none)'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hamgan.info",
        description="Parameters, MACs and shapes of the generator and discriminator of a config.",
    )
    parser.add_argument("config", help="config YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. model.g.context=attention")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-layers", action="store_true", help="leave out the layer-by-layer layout")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        info = model_info(cfg.model)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        m = cfg.model
        title = (
            f"{args.config}: resolution {m.resolution}, {m.num_classes} classes, z_dim {m.z_dim}, "
            f"G: {m.g.channels} channels, context {m.g.context} at {m.g.context_res}; "
            f"D: {m.d.channels} channels, context {m.d.context} at {m.d.context_res}"
        )
        print(format_info(info, title))
        if not args.no_layers:
            print(format_layout(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
