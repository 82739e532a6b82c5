"""Inception Score: exp(E_x KL(p(y|x) || p(y))) over the 1008-way softmax, mean and std over splits.

Samples are cut into ``splits`` consecutive equal parts (the remainder is dropped, as in the original code); the
score of a part uses that part's marginal p(y). 10 splits is the published convention (StudioGAN uses 1).
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
    size = n // splits
    scores = []
    for k in range(splits):
        part = p[k * size:(k + 1) * size]
        marginal = part.mean(0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal)).sum(1)  # 0 log 0 = 0
        scores.append(torch.exp(kl.mean()))
    scores = torch.stack(scores)
    std = scores.std(unbiased=False) if splits > 1 else torch.zeros(())
    return float(scores.mean()), float(std)


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) Inception Score of Inception logits (n, 1008): softmax, then :func:`inception_score_from_probs`."""
    return inception_score_from_probs(torch.softmax(logits.double(), dim=1), splits)
