"""Tests for hamgan.nn.layers: spectral-norm layers, pointwise, batch norm options, conditional BN, init schemes."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from hamgan.nn import Hamburger
from hamgan.nn.layers import (
    BNOptions,
    ConditionalBatchNorm2d,
    batch_norm,
    init_weights,
    make_bn,
    pointwise,
    sn_conv2d,
    sn_embedding,
    sn_linear,
)
from hamgan.nn.spectral_norm import SNOptions


def top_singular_value(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize(
    "make, inputs",
    [
        (lambda: sn_conv2d(8, 16, 3, padding=1), lambda: torch.randn(2, 8, 5, 5)),
        (lambda: sn_linear(12, 7), lambda: torch.randn(3, 12)),
        (lambda: sn_embedding(10, 6), lambda: torch.tensor([0, 3, 9])),
    ],
)
def test_spectral_norm_bounds_top_singular_value(make, inputs):
    torch.manual_seed(0)
    layer = make()
    assert parametrize.is_parametrized(layer, "weight")
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10.0)
    assert top_singular_value(layer.parametrizations.weight.original) > 5
    layer.train()
    for _ in range(30):  # one power iteration per training forward
        layer(inputs())
    assert top_singular_value(layer.weight) == pytest.approx(1.0, abs=1e-2)


def test_spectral_norm_can_be_switched_off():
    conv = sn_conv2d(4, 4, 1, spectral_norm=False)
    assert isinstance(conv, nn.Conv2d) and not parametrize.is_parametrized(conv)
    assert not parametrize.is_parametrized(sn_linear(4, 4, spectral_norm=False))
    assert not parametrize.is_parametrized(sn_embedding(4, 4, spectral_norm=False))
    assert sn_conv2d(4, 4, 1, bias=False).bias is None


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_equals_the_1x1_conv(bias):
    torch.manual_seed(0)
    conv = sn_conv2d(6, 10, 1, bias=bias).eval()  # eval: no power iteration between the two calls
    x = torch.randn(3, 6, 4, 5)
    expected = conv(x).flatten(2)
    torch.testing.assert_close(pointwise(conv, x.flatten(2)), expected, rtol=1e-5, atol=1e-5)


def test_conditional_batch_norm_is_plain_bn_at_init_and_per_class_after():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    x = torch.randn(6, 4, 3, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    normalised = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(cbn(x, y), normalised)

    with torch.no_grad():
        cbn.gain[1] = torch.tensor([2.0, 3.0, 4.0, 5.0])
        cbn.bias[1] = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    out = cbn(x, y)
    for i, label in enumerate(y.tolist()):
        gain = cbn.gain[label].view(4, 1, 1)
        bias = cbn.bias[label].view(4, 1, 1)
        torch.testing.assert_close(out[i], normalised[i] * gain + bias)
    assert not torch.allclose(out[1], normalised[1])  # class 1 changed, classes 0 and 2 did not
    torch.testing.assert_close(out[0], normalised[0])


def test_conditional_batch_norm_rejects_missing_or_misshaped_labels():
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    with pytest.raises(ValueError, match="labels y"):
        cbn(torch.randn(2, 4, 3, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalBatchNorm2d(4, num_classes=0)


def test_init_orthogonal_sets_the_original_weight_and_refreshes_spectral_norm():
    torch.manual_seed(0)
    net = nn.Sequential(sn_conv2d(16, 8, 3, padding=1), sn_linear(32, 16))
    for m in net:
        nn.init.constant_(m.bias, 1.0)
    init_weights(net, "orthogonal")
    conv = net[0]
    w = conv.parametrizations.weight.original.flatten(1)  # (8, 144): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.all(conv.bias == 0) and torch.all(net[1].bias == 0)
    net.eval()  # no power iteration in eval: u, v must already match the new weight
    assert top_singular_value(conv.weight) == pytest.approx(1.0, abs=1e-3)


def test_init_normal_and_xavier():
    torch.manual_seed(0)
    layer = sn_linear(512, 512)
    init_weights(layer, "normal")
    assert layer.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.02)
    init_weights(layer, "xavier")
    bound = (6 / (512 + 512)) ** 0.5
    w = layer.parametrizations.weight.original
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.9 * bound
    plain = nn.Embedding(100, 8)
    init_weights(plain, "normal")
    assert plain.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_init_leaves_output_scales_and_batchnorm_gains_alone():
    block = Hamburger(16, rank=4, num_classes=3)
    nn.init.constant_(block.sigma, 0.5)
    init_weights(block, "orthogonal")
    assert block.sigma.item() == 0.5
    assert torch.all(block.norm.gain == 1) and torch.all(block.norm.bias == 0)


def test_init_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        init_weights(nn.Linear(2, 2), "kaiming")


def test_layers_take_spectral_norm_options():
    conv = sn_conv2d(4, 4, 3, spectral_norm=SNOptions("at_most_one", True, 0))
    p = conv.parametrizations.weight[0]
    assert (p.bound, p.eval_iteration, p.warmup) == ("at_most_one", True, 0)
    assert sn_linear(3, 3).parametrizations.weight[0].bound == "exact"  # True: torch's spectral norm


@pytest.mark.parametrize("biased", [True, False])
def test_running_variance_biased_as_tf_or_unbiased_as_torch(biased):
    torch.manual_seed(0)
    options = BNOptions(eps=1e-3, momentum=0.001, biased_running_var=biased)
    bn = make_bn(3, options)
    assert (bn.eps, bn.momentum) == (1e-3, 0.001)
    x = torch.randn(4, 3, 2, 5) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    out = batch_norm(bn, x, biased)
    n = 4 * 2 * 5
    var = x.var(dim=(0, 2, 3), unbiased=False)
    batch_var = var if biased else var * n / (n - 1)
    torch.testing.assert_close(bn.running_var, 0.999 * torch.ones(3) + 0.001 * batch_var)
    torch.testing.assert_close(bn.running_mean, 0.001 * x.mean(dim=(0, 2, 3)))
    # normalisation uses the biased batch variance either way (TF's and torch's training mode)
    expected = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / (var.view(1, 3, 1, 1) + 1e-3).sqrt()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("biased", [True, False])
def test_cumulative_average_running_variance(biased):
    """momentum=None (standing statistics): the running variance is the mean of the batch variances, biased as TF
    or unbiased as torch (regression: the biased convention used to refuse a cumulative average)."""
    torch.manual_seed(0)
    bn = make_bn(3, BNOptions(biased_running_var=biased))
    bn.reset_running_stats()
    bn.momentum = None
    batches = [torch.randn(4, 3, 2, 5) * (k + 1) for k in range(3)]
    for x in batches:
        batch_norm(bn, x, biased)
    n = 4 * 2 * 5
    variances = [x.var(dim=(0, 2, 3), unbiased=False) * (1 if biased else n / (n - 1)) for x in batches]
    torch.testing.assert_close(bn.running_var, torch.stack(variances).mean(0))
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(dim=(0, 2, 3)) for x in batches]).mean(0))


def test_biased_running_variance_keeps_backward_working_and_eval_untouched():
    bn = make_bn(2, BNOptions(biased_running_var=True))
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    batch_norm(bn, x, True).square().sum().backward()  # the BN backward holds running_var
    assert torch.isfinite(x.grad).all()
    bn.eval()
    before = bn.running_var.clone()
    batch_norm(bn, x.detach(), True)
    assert torch.equal(bn.running_var, before)


def test_conditional_batch_norm_takes_the_options():
    cbn = ConditionalBatchNorm2d(4, 3, BNOptions(1e-3, 0.001, True))
    assert (cbn.bn.eps, cbn.bn.momentum, cbn.biased_running_var) == (1e-3, 0.001, True)
    x, y = torch.randn(5, 4, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    cbn(x, y)
    var = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(cbn.bn.running_var, 0.999 + 0.001 * var)


def test_bad_batch_norm_options():
    with pytest.raises(ValueError, match="eps"):
        BNOptions(eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        BNOptions(momentum=1.5)
