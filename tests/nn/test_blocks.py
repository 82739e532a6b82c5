"""GBlock / DBlock / OptimizedDBlock: shapes, shortcut rules, parameter counts and the exact forward of the
TF-GAN SAGAN blocks, checked against a functional re-statement of the equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hamgan.nn.blocks import DBlock, GBlock, OptimizedDBlock
from hamgan.nn.layers import ConditionalBatchNorm2d


def conv_params(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def conv(x: torch.Tensor, layer: torch.nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, padding=layer.padding)


def randomize_cbn(block: torch.nn.Module) -> None:
    """Per-class gains/biases away from their (class-independent) init of 1 and 0."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)


def test_gblock_shape_and_params():
    block = GBlock(16, 8, num_classes=5)
    x, y = torch.randn(3, 16, 4, 4), torch.tensor([0, 1, 4])
    assert block(x, y).shape == (3, 8, 8, 8)
    expected = 2 * 16 * 5 + conv_params(3, 16, 8) + 2 * 8 * 5 + conv_params(3, 8, 8) + conv_params(1, 16, 8)
    assert sum(p.numel() for p in block.parameters()) == expected


def test_gblock_forward_matches_equations():
    """CBN - ReLU - up - conv3x3 - CBN - ReLU - conv3x3, shortcut up - conv1x1 (nearest upsampling)."""
    torch.manual_seed(0)
    block = GBlock(6, 4, num_classes=3, spectral_norm=False).eval()
    randomize_cbn(block)
    with torch.no_grad():
        for bn in (block.bn1.bn, block.bn2.bn):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    x, y = torch.randn(2, 6, 5, 5), torch.tensor([2, 0])

    def cbn(h, m):
        h = (h - m.bn.running_mean[:, None, None]) / torch.sqrt(m.bn.running_var[:, None, None] + m.bn.eps)
        return h * m.gain[y][:, :, None, None] + m.bias[y][:, :, None, None]

    up = lambda t: t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # noqa: E731
    h = conv(up(F.relu(cbn(x, block.bn1))), block.conv1)
    h = conv(F.relu(cbn(h, block.bn2)), block.conv2)
    expected = h + conv(up(x), block.shortcut)
    torch.testing.assert_close(block(x, y), expected)


def test_gblock_depends_on_class():
    torch.manual_seed(0)
    block = GBlock(8, 8, num_classes=4)
    randomize_cbn(block)
    x = torch.randn(2, 8, 4, 4)
    a = block(x, torch.tensor([0, 1]))
    b = block(x, torch.tensor([2, 3]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    ("cin", "cout", "down", "learnable"),
    [(8, 16, True, True), (16, 16, True, True), (8, 16, False, True), (16, 16, False, False)],
)
def test_dblock_shortcut_rule_shape_and_params(cin, cout, down, learnable):
    """A learnable 1x1 shortcut exactly when the block downsamples or changes the width."""
    block = DBlock(cin, cout, downsample=down)
    assert (block.shortcut is not None) == learnable
    out = block(torch.randn(2, cin, 8, 8))
    assert out.shape == (2, cout, 4, 4) if down else (2, cout, 8, 8)
    expected = conv_params(3, cin, cout) + conv_params(3, cout, cout) + (conv_params(1, cin, cout) if learnable else 0)
    assert sum(p.numel() for p in block.parameters()) == expected


@pytest.mark.parametrize("down", [True, False])
def test_dblock_forward_matches_equations(down):
    """ReLU - conv3x3 - ReLU - conv3x3 (- avgpool), shortcut conv1x1 (- avgpool)."""
    torch.manual_seed(0)
    block = DBlock(4, 6, downsample=down, spectral_norm=False)
    x = torch.randn(2, 4, 6, 6)
    h = conv(F.relu(conv(F.relu(x), block.conv1)), block.conv2)
    s = conv(x, block.shortcut)
    if down:
        h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
    torch.testing.assert_close(block(x), h + s)


def test_dblock_identity_shortcut_passes_input_through():
    block = DBlock(8, 8, downsample=False, spectral_norm=False)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_optimized_dblock_matches_equations():
    """conv3x3 - ReLU - conv3x3 - avgpool (no activation on the image), shortcut avgpool - conv1x1."""
    torch.manual_seed(0)
    block = OptimizedDBlock(3, 8, spectral_norm=False)
    x = torch.randn(2, 3, 8, 8)
    h = F.avg_pool2d(conv(F.relu(conv(x, block.conv1)), block.conv2), 2)
    expected = h + conv(F.avg_pool2d(x, 2), block.shortcut)
    out = block(x)
    assert out.shape == (2, 8, 4, 4)
    torch.testing.assert_close(out, expected)
    assert sum(p.numel() for p in block.parameters()) == (
        conv_params(3, 3, 8) + conv_params(3, 8, 8) + conv_params(1, 3, 8)
    )


def test_blocks_are_spectrally_normalised_by_default():
    for block in (GBlock(4, 4, 2), DBlock(4, 8), OptimizedDBlock(3, 4)):
        convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(hasattr(m, "parametrizations") for m in convs)
