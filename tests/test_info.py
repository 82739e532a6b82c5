"""python -m hamgan.info: parameter counts that match the model, per-block shapes, context MACs in closed form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hamgan.config import load_config
from hamgan.info import main
from hamgan.nn import Hamburger
from hamgan.nn.from_config import discriminator_from_config, generator_from_config

ROOT = Path(__file__).resolve().parent.parent

CONFIG_128 = """\
model:
  resolution: 128
  num_classes: 1000
  init: normal
  g: {channels: 64, context: ham, context_res: 32, ham: {rank: 32}}
  d: {channels: 64, context: ham, context_res: 32, ham: {rank: 16}}
"""


@pytest.fixture(scope="module")
def config_128(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("info") / "hamgan128.yaml"
    path.write_text(CONFIG_128)
    return path


def nmf_round_macs(d: int, r: int, n: int) -> int:
    """Matrix-product MACs of one NMF round (C update then D update) at batch 1."""
    coef_step = n * d * r + d * r * r + n * r * r  # X^T D, D^T D, C (D^T D)
    bases_step = d * n * r + n * r * r + d * r * r  # X C, C^T C, D (C^T C)
    return coef_step + bases_step


def standalone_macs(block: torch.nn.Module, *inputs: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        block.eval()(*inputs)
    return counter.get_total_flops() // 2


def sagan_attention_macs(c: int, n: int) -> int:
    m = n // 4  # keys and values are 2x2 max-pooled
    return 2 * c * (c // 8) * n + 2 * c * (c // 2) * n + n * m * (c // 8) + n * m * (c // 2)


def test_cli_prints_table_matching_the_model(config_128):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "hamgan.info", str(config_128)], capture_output=True, text=True, env=env, check=True
    ).stdout
    cfg = load_config(config_128).model
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    g_params = sum(p.numel() for p in G.parameters())
    d_params = sum(p.numel() for p in D.parameters())
    assert f"G: {g_params:,} parameters" in out
    assert f"D: {d_params:,} parameters" in out
    for name, block in [("linear", G.linear), *((f"block{i + 1}", b) for i, b in enumerate(G.blocks))]:
        n = sum(p.numel() for p in block.parameters())
        assert re.search(rf"^\s+{name}\s+{n:,}\s", out, re.M), name
    assert "G block3 -> (1, 256, 32, 32)" in out
    assert "G context -> (1, 256, 32, 32)" in out
    assert "G conv_out -> (1, 3, 128, 128)" in out
    assert "D block2 -> (1, 128, 32, 32)" in out
    assert "D block6 -> (1, 1024, 4, 4)" in out
    ham = Hamburger(256, dim=256, rank=32, steps=6, num_classes=1000)
    ham_macs = standalone_macs(ham, torch.randn(1, 256, 32, 32), torch.tensor([0]))
    assert ham_macs > 6 * nmf_round_macs(256, 32, 1024)
    assert f"{ham_macs:,} MACs" in out


def test_json_counts_and_context_macs(config_128, capsys):
    attention = ["model.g.context=attention", "model.d.context=attention"]
    assert main([str(config_128), *attention, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cfg = load_config(config_128, attention).model
    assert info["G"]["params"] == sum(p.numel() for p in generator_from_config(cfg).parameters())
    assert info["D"]["params"] == sum(p.numel() for p in discriminator_from_config(cfg).parameters())
    assert info["G"]["output_shape"] == [1, 3, 128, 128] and info["D"]["output_shape"] == [1]
    for net, c in (("G", 256), ("D", 128)):
        ctx = info[net]["context"]
        assert ctx["kind"] == "SelfAttention" and ctx["input_shape"] == [1, c, 32, 32]
        assert ctx["macs"] == sagan_attention_macs(c, 32 * 32)
        assert ctx["params"] == 2 * c * c // 8 + 2 * c * c // 2 + 1
        # the top-level blocks partition the network: their parameters and MACs add up to the totals
        assert sum(b["params"] for b in info[net]["blocks"]) == info[net]["params"]
        assert sum(b["macs"] for b in info[net]["blocks"]) == info[net]["macs"]
    assert info["G"]["macs"] > 9e9 and info["D"]["macs"] > 4.5e9  # convs dominate: ~9.2G / ~4.7G


def test_ham_context_macs_include_the_decomposition_iterations(config_128, capsys):
    """Each of the K no-grad iterations adds one NMF round to the count."""
    info = {}
    for k in (2, 3):
        main([str(config_128), f"model.g.ham.steps={k}", f"model.d.ham.steps={k}", "--json"])
        info[k] = json.loads(capsys.readouterr().out)
        assert info[k]["G"]["context"]["steps"] == k
    for net, c, r in (("G", 256, 32), ("D", 128, 16)):
        added = info[3][net]["context"]["macs"] - info[2][net]["context"]["macs"]
        assert added == nmf_round_macs(c, r, 32 * 32)


def test_bad_config_is_a_clear_error(config_128, capsys):
    assert main([str(config_128), "model.g.context_res=48"]) == 2
    assert "[8, 16, 32, 64, 128]" in capsys.readouterr().err


def test_layer_layout_of_hamgan_baby_beside_the_official_scopes(capsys):
    """Issue 10: every layer, in forward order, with its resolution, channels, parameters, spectral-norm bound and
    the official TF scope; the rows add up to the official counts without bread biases."""
    assert main([str(ROOT / "configs" / "imagenet128_hamgan_baby.yaml"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for net, total in (("G", 42_640_004), ("D", 39_475_906)):
        rows = info[net]["layers"]
        assert info[net]["params"] == total == sum(r["params"] for r in rows)
        assert all(r["official"] for r in rows), [r["layer"] for r in rows if not r["official"]]
        context = [r for r in rows if r["layer"].startswith("context")]
        assert {r["res"] for r in context} == {32}
        assert {r["sn"] for r in context if r["sn"]} == {"W/s"}  # sn_conv1x1
        assert {r["sn"] for r in rows if r["sn"] and not r["layer"].startswith("context")} == {"W/max(1,s)"}
    g = {r["layer"]: r for r in info["G"]["layers"]}
    assert [r["layer"] for r in info["G"]["layers"]].index("context.lower") == 17  # after block3's 5 layers
    assert g["context.lower"] == {"layer": "context.lower", "kind": "conv1x1 no bias", "res": 32,
                                  "channels": "256 -> 256", "params": 65_536, "sn": "W/s",
                                  "official": "generator/g_ops/sn_lower_bread"}
    assert g["context"]["official"] == "generator/g_ops/sigma_ratio"
    assert g["blocks.2.conv1"]["res"] == 32 and g["blocks.2.bn1"]["res"] == 16
    assert main([str(ROOT / "configs" / "imagenet128_hamgan_baby.yaml")]) == 0
    out = capsys.readouterr().out
    assert "| context.norm | cond. BN | 32 | 256 x 1000 classes | 512,000 | - | generator/g_ops/upper_bread_bn |" in out


def test_docs_show_the_layout_that_hamgan_info_prints(capsys, readme):
    """Issue 10 item 6: docs/recipe.md's layout of HamGAN-128 is the one ``python -m hamgan.info`` prints, every row of
    it (a regression: an edit of the README once dropped this section, and nothing noticed)."""
    assert main([str(ROOT / "configs" / "imagenet128_hamgan_baby.yaml")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    section = readme("Layout of HamGAN-128 beside the official one", "docs/recipe.md")
    assert len(rows) > 40 and [r for r in rows if r not in section] == []
    assert "G layers (42,640,004 parameters)" in section and "39,475,906" in section
