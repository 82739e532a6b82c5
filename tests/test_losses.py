"""hamgan.losses: hinge and non-saturating GAN losses on hand-computed logits."""

from __future__ import annotations

import math

import pytest
import torch

from hamgan.losses import d_loss, g_loss


def test_hinge_values():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r): 0, 0.5, 2
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + f): 0, 1, 2
    assert d_loss(real, fake, "hinge").item() == pytest.approx(2.5 / 3 + 3.0 / 3)
    assert g_loss(fake, "hinge").item() == pytest.approx(1.0 / 3)


def test_hinge_ignores_confident_discriminator():
    """Beyond the margin (real >= 1, fake <= -1) the hinge D loss is 0 with zero gradient."""
    real = torch.tensor([1.5, 3.0], requires_grad=True)
    fake = torch.tensor([-1.5, -4.0], requires_grad=True)
    loss = d_loss(real, fake)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(real.grad, torch.zeros(2)) and torch.equal(fake.grad, torch.zeros(2))


def test_nonsaturating_values():
    real, fake = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    assert d_loss(real, fake, "nonsaturating").item() == pytest.approx((sp(0) + sp(-1)) / 2 + (sp(0) + sp(-1)) / 2)
    assert g_loss(fake, "nonsaturating").item() == pytest.approx((sp(0) + sp(1)) / 2)


@pytest.mark.parametrize("kind", ["hinge", "nonsaturating"])
def test_gradient_directions(kind):
    """D is pushed to raise real and lower fake logits; G to raise fake logits."""
    real = torch.zeros(4, requires_grad=True)
    fake = torch.zeros(4, requires_grad=True)
    d_loss(real, fake, kind).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    fake_g = torch.zeros(4, requires_grad=True)
    g_loss(fake_g, kind).backward()
    assert (fake_g.grad < 0).all()


def test_bf16_logits_give_float32_loss():
    loss = d_loss(torch.ones(3, dtype=torch.bfloat16), -torch.ones(3, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown GAN loss 'wasserstein'; choose one of hinge, nonsaturating"):
        g_loss(torch.zeros(2), "wasserstein")
