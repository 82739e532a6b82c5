"""hamgan.ema: copy before the start step, exponential averaging after it, buffers copied."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from hamgan.ema import EMA


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(spectral_norm(nn.Linear(3, 3)), nn.BatchNorm1d(3))


def test_copy_before_start_then_average():
    net = make_net()
    ema = EMA(net, decay=0.75, start=2)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    w = net[0].parametrizations.weight.original
    with torch.no_grad():
        w.add_(1.0)
    ema.update(net, step=1)  # before start: a copy
    assert torch.equal(ema.model[0].parametrizations.weight.original, w)
    old = w.detach().clone()
    with torch.no_grad():
        w.add_(4.0)
    ema.update(net, step=2)  # from start: 0.75 old + 0.25 new
    assert torch.allclose(ema.model[0].parametrizations.weight.original, 0.75 * old + 0.25 * w)


def test_buffers_are_copied():
    net = make_net()
    ema = EMA(net, decay=0.5, start=0)
    net.train()
    net(torch.randn(8, 3))  # moves BN running stats and the SN u vector
    ema.update(net, step=1)
    for (name, b), (_, e) in zip(net.named_buffers(), ema.model.named_buffers()):
        assert torch.equal(b, e), name


def test_bad_decay():
    with pytest.raises(ValueError, match="decay must be in"):
        EMA(make_net(), decay=1.0)
