"""GAN losses on discriminator logits.

Hinge loss (SAGAN / HamGAN, reference §2)::

    L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]        L_G = -E[D(G(z))]

Non-saturating loss (Goodfellow et al. 2014), with softplus(t) = log(1 + e^t)::

    L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))]        L_G = E[softplus(-D(G(z)))]

Logits are the raw discriminator outputs, shape (B,).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossKind = Literal["hinge", "nonsaturating"]
LOSSES: tuple[str, ...] = ("hinge", "nonsaturating")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(LOSSES)}")


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: LossKind = "hinge") -> torch.Tensor:
    """Discriminator loss (scalar) from logits of real (B,) and generated (B,) images."""
    _check(kind)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: LossKind = "hinge") -> torch.Tensor:
    """Generator loss (scalar) from the discriminator's logits of generated images (B,)."""
    _check(kind)
    fake_logits = fake_logits.float()
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()
