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


def test_update_is_one_foreach_call_equal_to_the_per_tensor_update(monkeypatch):
    """Issue 21: the EMA update is one ``torch._foreach_lerp_`` over all parameters (one fused kernel on CUDA, not
    two per tensor), equal to ``lerp_`` tensor by tensor up to float32 rounding (the same formula)."""
    torch.manual_seed(1)
    net = nn.Sequential(spectral_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    ema = EMA(net, decay=0.9, start=0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net(torch.randn(2, 3, 5, 5))  # moves the buffers
    expected = {name: e.detach().clone().lerp_(p.detach(), 0.1)
                for (name, e), p in zip(ema.model.named_parameters(), net.parameters())}
    calls = []
    lerp = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: calls.append(len(a[0])) or lerp(*a))
    ema.update(net, step=1)
    assert calls == [len(expected)]
    for name, e in ema.model.named_parameters():
        torch.testing.assert_close(e, expected[name], atol=1e-6, rtol=1e-6)
    for (name, b), (_, e) in zip(net.named_buffers(), ema.model.named_buffers()):
        assert torch.equal(b, e), name
