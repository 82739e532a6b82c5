"""Inception Score: exp(E_x KL(p(y|x) || p(y))) over the 1008-way softmax, mean and std over splits.

Conventions (state both numbers with a score):

- **logits**: by default without the classifier bias, as the original code (improved-gan) and BigGAN's TF IS
  compute them (``pool3 @ W``); ``bias=`` adds it, as TF-GAN and StudioGAN do (``hamgan-eval --is-bias``). The
  difference is about 0.3 IS on CIFAR-10.
- **splits**: part k holds samples ``k*n//splits`` to ``(k+1)*n//splits``, as improved-gan (no sample dropped; parts
  differ in size by at most one). Each part uses its own marginal p(y); the result is the mean and the population std
  over parts. 10 splits is the published convention; StudioGAN uses 1.
"""

from __future__ import annotations

import torch


def inception_score_from_probs(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the per-split scores of class probabilities ``probs`` (n, K), rows summing to 1."""
    if probs.dim() != 2:
        raise ValueError(f"expected probabilities (n, K), got shape {tuple(probs.shape)}")
    n = probs.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {max(splits, 1)} samples and splits "
                         f">= 1, got {n} samples")
    p = probs.double()
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        marginal = part.mean(0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal)).sum(1)  # 0 log 0 = 0
        scores.append(torch.exp(kl.mean()))
    scores = torch.stack(scores)
    std = scores.std(unbiased=False) if splits > 1 else torch.zeros(())
    return float(scores.mean()), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10, bias: torch.Tensor | None = None) -> tuple[float, float]:
    """(mean, std) Inception Score of Inception logits (n, 1008) (without bias, as :class:`InceptionFeatures`
    returns them); ``bias`` (1008,): add the classifier bias first (TF-GAN / StudioGAN)."""
    logits = logits.double()
    if bias is not None:
        logits = logits + bias.to(logits.device, torch.float64)
    return inception_score_from_probs(torch.softmax(logits, dim=1), splits)
