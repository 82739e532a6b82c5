"""Tests for hamgan.nn.attention: the SAGAN self-attention block and the full four-projection version."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from hamgan.nn import FullSelfAttention, SelfAttention

BLOCKS = [SelfAttention, FullSelfAttention]


def open_block(block: nn.Module, gamma: float = 0.5) -> nn.Module:
    nn.init.constant_(block.gamma, gamma)
    return block


@pytest.mark.parametrize("block_cls", BLOCKS)
@pytest.mark.parametrize("batch, height, width", [(1, 8, 8), (4, 5, 7), (2, 1, 3)])
def test_shapes(block_cls, batch, height, width):
    torch.manual_seed(0)
    block = open_block(block_cls(16))
    x = torch.randn(batch, 16, height, width)
    out = block(x, torch.zeros(batch, dtype=torch.long))  # labels are accepted and ignored
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("block_cls", BLOCKS)
def test_identity_at_init(block_cls):
    block = block_cls(16)
    x = torch.randn(2, 16, 6, 5)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("block_cls", BLOCKS)
def test_every_projection_is_spectrally_normalised(block_cls):
    convs = [m for m in block_cls(16).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    assert all(parametrize.is_parametrized(c, "weight") and c.bias is None for c in convs)
    assert not any(parametrize.is_parametrized(c) for c in block_cls(16, spectral_norm=False).modules())


def test_parameter_counts():
    # 1.00M for the paper's full attention at C = 512 (M = 2^20); SAGAN: C/8 + C/8 + C/2 + C/2 out of C per input.
    assert sum(p.numel() for p in FullSelfAttention(512).parameters()) == 4 * 512 * 512 + 1
    assert sum(p.numel() for p in SelfAttention(256).parameters()) == 256 * (32 + 32 + 128) + 128 * 256 + 1


def test_sagan_block_matches_the_equations():
    torch.manual_seed(0)
    block = open_block(SelfAttention(32)).eval()
    x = torch.randn(2, 32, 6, 8)
    theta = F.conv2d(x, block.theta.weight).flatten(2)  # (B, 4, 48)
    phi = F.max_pool2d(F.conv2d(x, block.phi.weight), 2).flatten(2)  # (B, 4, 12)
    g = F.max_pool2d(F.conv2d(x, block.g.weight), 2).flatten(2)  # (B, 16, 12)
    attention = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, 48, 12): softmax over keys
    o = (g @ attention.transpose(1, 2)).view(2, 16, 6, 8)
    expected = x + 0.5 * F.conv2d(o, block.out.weight)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_full_attention_matches_the_equations():
    torch.manual_seed(0)
    block = open_block(FullSelfAttention(8)).eval()
    x = torch.randn(2, 8, 5, 3)
    q, k, v = (F.conv2d(x, conv.weight).flatten(2) for conv in (block.q, block.k, block.v))
    attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, 15, 15)
    o = (v @ attention.transpose(1, 2)).view(2, 8, 5, 3)
    expected = x + 0.5 * F.conv2d(o, block.out.weight)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_cls", BLOCKS)
def test_gradients_reach_projections_and_gamma(block_cls):
    torch.manual_seed(0)
    block = block_cls(16)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    block(x).square().sum().backward()
    assert block.gamma.grad.abs() > 0  # the block can open from its identity init
    open_block(block).zero_grad()
    block(x).square().sum().backward()
    for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
        assert conv.parametrizations.weight.original.grad.abs().sum() > 0


def test_channels_must_be_a_multiple_of_eight_for_sagan():
    with pytest.raises(ValueError, match="channels"):
        SelfAttention(12)
    with pytest.raises(ValueError, match="channels"):
        FullSelfAttention(0)
