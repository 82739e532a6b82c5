"""hamgan.nn.ylg: the ESA enumeration and masks against hand-derived patterns and the official masks.py, and the
multi-head block (heads, channel order, masking, identity at init, parameters)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hamgan.nn import SelfAttention, YLGAttention
from hamgan.nn.layers import pointwise
from hamgan.nn.ylg import HEAD_PATTERNS, MASK_LOGIT, grid_mask, head_masks, manhattan_order, pattern_1d


def rows(mask: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(r).tolist()) for r in mask]


# --------------------------------------------------------------------------------------------------------------------
# Masks, derived by hand on a 6x6 map: keys on its 3x3 pooled grid, n = 9, stride s = 3
# --------------------------------------------------------------------------------------------------------------------


def test_manhattan_enumeration_of_a_3x3_grid():
    # distance 0: (0,0); 1: (0,1) (1,0); 2: (0,2) (1,1) (2,0); 3: (1,2) (2,1); 4: (2,2); as raster indices:
    assert manhattan_order(3, 3).tolist() == [0, 1, 3, 2, 4, 6, 5, 7, 8]
    assert manhattan_order(2, 3).tolist() == [0, 1, 3, 2, 4, 5]  # (0,0) (0,1) (1,0) (0,2) (1,1) (1,2)


def test_1d_patterns_with_stride_3():
    assert rows(pattern_1d("left_floor", 9)) == [
        {0}, {0, 1}, {0, 1, 2}, {3}, {3, 4}, {3, 4, 5}, {6}, {6, 7}, {6, 7, 8}]
    assert rows(pattern_1d("right_floor", 9)) == [
        {0, 1, 2}, {1, 2}, {2}, {3, 4, 5}, {4, 5}, {5}, {6, 7, 8}, {7, 8}, {8}]
    assert rows(pattern_1d("left_repetitive", 9)) == [{a, 2, 5, 8} for a in range(9)]  # last of every block
    assert rows(pattern_1d("right_repetitive", 9)) == [{a, 0, 3, 6} for a in range(9)]  # first of every block
    # 10 positions, stride 3: block starts 0, 3, 6 (9 would need 11 positions), ends 2, 5, 8
    assert rows(pattern_1d("right_repetitive", 10))[9] == {9, 0, 3, 6}
    assert rows(pattern_1d("left_repetitive", 10))[9] == {9, 2, 5, 8}


def test_grid_masks_of_a_6x6_map_by_hand():
    """Grid row r (raster) is the 1-D row of r's Manhattan number a, mapped back to rasters; the 36 queries use
    grid row (query mod 9). Numbers -> rasters: 0->0 1->1 2->3 3->2 4->4 5->6 6->5 7->7 8->8."""
    left_floor = [{0}, {0, 1}, {2}, {0, 1, 3}, {2, 4}, {5}, {2, 4, 6}, {5, 7}, {5, 7, 8}]
    right_floor = [{0, 1, 3}, {1, 3}, {2, 4, 6}, {3}, {4, 6}, {5, 7, 8}, {6}, {7, 8}, {8}]
    left_rep = [{r, 3, 6, 8} for r in range(9)]  # numbers 2, 5, 8 are rasters 3, 6, 8
    right_rep = [{r, 0, 2, 5} for r in range(9)]  # numbers 0, 3, 6 are rasters 0, 2, 5
    for name, grid in [("left_floor", left_floor), ("right_floor", right_floor), ("left_repetitive", left_rep),
                       ("right_repetitive", right_rep)]:
        mask = grid_mask(name, 6, 6)
        assert mask.shape == (36, 9)
        assert rows(mask) == [grid[q % 9] for q in range(36)], name


def test_eight_heads_in_the_official_order():
    masks = head_masks(6, 6)
    assert masks.shape == (8, 36, 9)
    for h, name in enumerate(HEAD_PATTERNS):
        assert np.array_equal(masks[h], grid_mask(name, 6, 6))
    assert HEAD_PATTERNS[:2] == ("right_floor", "right_repetitive") and HEAD_PATTERNS[4:6] == (
        "left_floor", "left_repetitive")


# sha256 of np.packbits(masks) of get_grid_masks((H, W), (H // 2, W // 2)) run with the official masks.py of
# github.com/giannisdaras/ylg (commit f41c818, identical in its train branch and in Enjoy-Hamburger's gan/HamGAN)
OFFICIAL_DIGESTS = {
    (6, 6): "3eaac4e2407c693dfdc2290b6985951fbe75a344ab79facb51e25c029373c387",
    (16, 16): "580928988c2e6e2283d08ef6131f1e1e101bdc2c9e01c85ed2ea2db0d5f088dd",
    (32, 32): "cd18cbb2565c85de8573850c6b28b156374b7c3ced39362c0761bfdad08014be",
    (10, 6): "4eb860d6601d6a6c34176ac6f41f77a8947d8fe4a82dbb82241bc378f4fa2e02",
}


@pytest.mark.parametrize("size", sorted(OFFICIAL_DIGESTS))
def test_masks_equal_the_official_code(size):
    masks = head_masks(*size)
    assert hashlib.sha256(np.packbits(masks).tobytes()).hexdigest() == OFFICIAL_DIGESTS[size]


def test_every_query_keeps_a_key_and_odd_sizes_are_refused():
    assert head_masks(32, 32).any(axis=2).all()
    with pytest.raises(ValueError, match="even feature-map size"):
        grid_mask("left_floor", 5, 6)
    with pytest.raises(ValueError, match="pattern must be one of"):
        pattern_1d("diagonal", 9)


# --------------------------------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------------------------------


def reference_forward(block: YLGAttention, x: torch.Tensor) -> torch.Tensor:
    """Head by head, as sn_attention_block_sim: masked softmax per head, outputs interleaved k * heads + head."""
    B, C, H, W = x.shape
    nh, masks = block.heads, torch.from_numpy(head_masks(H, W, block.heads))
    pixels = x.flatten(2)
    theta = pointwise(block.theta, pixels)
    phi = F.max_pool2d(pointwise(block.phi, pixels).view(B, C // 8, H, W), 2).flatten(2)
    g = F.max_pool2d(pointwise(block.g, pixels).view(B, C // 2, H, W), 2).flatten(2)
    qs, vs = C // 8 // nh, C // 2 // nh
    out = torch.empty(B, C // 2, H * W)
    for h in range(nh):
        logits = theta[:, h * qs:(h + 1) * qs].transpose(1, 2) @ phi[:, h * qs:(h + 1) * qs]  # (B, N, M)
        logits = logits + (~masks[h]).float() * MASK_LOGIT
        o = F.softmax(logits, dim=-1) @ g[:, h * vs:(h + 1) * vs].transpose(1, 2)  # (B, N, vs)
        for k in range(vs):
            out[:, k * nh + h] = o[:, :, k]
    return x + block.gamma * pointwise(block.out, out).view(B, C, H, W)


def test_forward_equals_the_head_by_head_reference():
    torch.manual_seed(0)
    block = YLGAttention(64, spectral_norm=False)
    block.gamma.data.fill_(0.8)
    x = torch.randn(2, 64, 8, 6)
    torch.testing.assert_close(block(x), reference_forward(block, x), rtol=1e-5, atol=1e-5)


def test_masked_keys_get_no_weight_and_heads_differ():
    torch.manual_seed(0)
    block = YLGAttention(64)
    weights, _ = block.attention(torch.randn(1, 64, 8, 8))
    masks = torch.from_numpy(head_masks(8, 8))
    assert weights.shape == (1, 8, 64, 16)
    assert weights[0][~masks].max() < 1e-30
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 8, 64))


def test_identity_at_init_same_parameters_as_sagan_and_gradients():
    torch.manual_seed(0)
    block = YLGAttention(128)
    x = torch.randn(2, 128, 4, 4, requires_grad=True)
    assert torch.equal(block(x), x)
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in SelfAttention(128).parameters())
    block.gamma.data.fill_(0.5)
    block(x).square().sum().backward()
    assert block.theta.parametrizations.weight.original.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_channel_and_size_errors():
    with pytest.raises(ValueError, match="divisible by 64"):
        YLGAttention(96)
    assert YLGAttention(32, heads=4).heads == 4
    with pytest.raises(ValueError, match="shape"):
        YLGAttention(64)(torch.randn(1, 32, 4, 4))
    with pytest.raises(ValueError, match="even"):
        YLGAttention(64)(torch.randn(1, 64, 5, 4))


@pytest.mark.slow
def test_the_ylg_config_trains_a_few_steps_on_cpu(tmp_path):
    """configs/imagenet128_ylg.yaml, made small (32x32 synthetic data, width 16: 64 channels at the 16x16 blocks),
    through the trainer's Python API."""
    from hamgan.config import load_config
    from hamgan.train import run

    config = Path(__file__).resolve().parents[2] / "configs" / "imagenet128_ylg.yaml"
    cfg = load_config(config, [
        "model.resolution=32", "model.num_classes=4", "model.z_dim=16", "model.g.channels=16", "model.d.channels=16",
        "model.g.context_res=16", "model.d.context_res=16", "data.name=synthetic", "data.synthetic_size=32",
        "data.num_workers=0", "train.steps=3", "train.batch_size=8", "train.threads=1", "train.log_every=1",
        "train.ckpt_every=3", "train.sample_every=0", "train.fid.every=0", "train.amp=none", "log.wandb=disabled",
        "log.tqdm=false"])
    assert cfg.model.g.context == cfg.model.d.context == "ylg" and cfg.model.g.ylg.heads == 8
    metrics = run(cfg, tmp_path / "run")
    assert np.isfinite(metrics["loss_d"]) and np.isfinite(metrics["loss_g"])
    state = torch.load(tmp_path / "run" / "ckpt-000000003.pt", weights_only=False)
    assert "context.theta.parametrizations.weight.original" in state["G"]
    assert state["G"]["context.gamma"] != 0  # the block opened
