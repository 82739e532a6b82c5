"""hamgan.bn_modes: running / standing / batch statistics, restored state, untouched RNG, SN refresh."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from hamgan.bn_modes import (
    BNMode,
    accumulate_standing_stats,
    active_mode,
    bn_mode,
    refresh_spectral_norm,
    resolve_mode,
)
from hamgan.nn.spectral_norm import spectral_norm  # hamgan's parametrization, as in its networks
from hamgan.sample import class_grid, sample_images


class TinyG(nn.Module):
    """z (B, 4), y (B,) -> (B, 1, 2, 2): SN linear, class shift, BN, tanh; records the BN input of each call."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.num_classes, self.z_dim = 3, 4
        self.fc = spectral_norm(nn.Linear(4, 4))
        self.shift = nn.Parameter(torch.tensor([0.0, 5.0, -5.0]))
        self.bn = nn.BatchNorm1d(4)
        self.seen: list[torch.Tensor] = []

    def forward(self, z, y):
        h = self.fc(z) + self.shift[y, None]
        self.seen.append(h.detach().clone())
        return torch.tanh(self.bn(h)).view(-1, 1, 2, 2)


@pytest.fixture
def G():
    g = TinyG()
    with torch.no_grad():
        g.bn.running_mean.fill_(3.0)
        g.bn.running_var.fill_(7.0)
    return g.train()


def test_standing_statistics_are_the_cumulative_average_of_the_batches(G):
    accumulate_standing_stats(G, batches=5, batch_size=8, classes=[1, 2], seed=3)
    batches = G.seen
    assert len(batches) == 5 and all(len(b) == 8 for b in batches)
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(G.bn.running_mean, mean)
    torch.testing.assert_close(G.bn.running_var, var)
    assert G.bn.momentum == 0.1 and not G.training and not G.bn.training


def test_modes_inside_the_block_and_everything_restored(G):
    buffers = {k: v.clone() for k, v in G.named_buffers()}
    torch.manual_seed(11)
    expected_rng = torch.rand(3)
    torch.manual_seed(11)
    z, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    G.fc.eval()  # no power iteration: the weights the block uses
    with torch.no_grad():
        h = G.fc(z) + G.shift[y, None]
    G.fc.train()
    outputs = {}
    for mode in ("running", "standing", "batch"):
        with bn_mode(G, mode, seed=0) as g:
            assert g is G and not G.fc.training and active_mode(G) == mode
            assert G.bn.training == (mode == "batch")
            with torch.no_grad():
                outputs[mode] = G(z, y)
        assert G.training and G.bn.training and active_mode(G) is None
        for k, v in G.named_buffers():
            assert torch.equal(v, buffers[k]), (mode, k)
    assert torch.equal(torch.rand(3), expected_rng)  # the caller's global RNG stream is untouched
    running = torch.tanh((h - 3.0) / (7.0 + 1e-5) ** 0.5).view(-1, 1, 2, 2)
    torch.testing.assert_close(outputs["running"], running)
    batch = torch.tanh((h - h.mean(0)) / (h.var(0, unbiased=False) + 1e-5) ** 0.5).view(-1, 1, 2, 2)
    torch.testing.assert_close(outputs["batch"], batch)
    assert not torch.allclose(outputs["standing"], outputs["running"])


def test_standing_statistics_are_reproducible_and_follow_the_seed(G):
    with bn_mode(G, BNMode("standing", batches=2, batch_size=4), seed=1):
        a = G.bn.running_mean.clone()
    with bn_mode(G, BNMode("standing", batches=2, batch_size=4), seed=1):
        assert torch.equal(G.bn.running_mean, a)
    with bn_mode(G, BNMode("standing", batches=2, batch_size=4), seed=2):
        assert not torch.equal(G.bn.running_mean, a)


def test_sampling_functions_put_G_in_eval_mode_and_honour_an_enclosing_block(G):
    x = sample_images(G, 4, seed=0)  # G was in training mode: sampled with running statistics, then restored
    assert G.training
    with bn_mode(G, "running"):
        assert torch.equal(sample_images(G, 4, seed=0), x)
    with bn_mode(G, "batch"):
        inside = sample_images(G, 4, seed=0)  # bn=None inside a block: the block's mode
    assert torch.equal(inside, sample_images(G, 4, seed=0, bn="batch"))
    assert not torch.equal(inside, x)
    grid = class_grid(G, [0, 1], per_class=2, bn="standing")
    assert grid.shape == (4, 1, 2, 2) and G.training


def test_refresh_spectral_norm_estimates_sigma_of_the_current_weights(G):
    with torch.no_grad():
        G.fc.parametrizations.weight.original.mul_(3.0)  # as an EMA: new weights, old u, v
    w = G.fc.parametrizations.weight.original
    true_sigma = torch.linalg.matrix_norm(w, 2)
    assert refresh_spectral_norm(G, iterations=50) == 1
    sn = G.fc.parametrizations.weight[0]
    torch.testing.assert_close(torch.dot(sn._u, w @ sn._v), true_sigma, rtol=1e-5, atol=0)
    u = sn._u.clone()
    G.eval()
    with bn_mode(G, BNMode("running", sn_iterations=3)):
        pass
    assert torch.equal(sn._u, u)  # u, v restored on exit too


def test_bad_modes():
    with pytest.raises(ValueError, match="must be one of running, standing, batch"):
        BNMode("ema")
    with pytest.raises(ValueError, match="auto or one of"):
        resolve_mode("sometimes", ema=True)
    assert resolve_mode("auto", ema=True) == "standing" and resolve_mode("auto", ema=False) == "running"
    assert BNMode("standing").describe() == "standing (16 x 100)"
    assert BNMode("batch", sn_iterations=20).as_dict() == {"bn": "batch", "sn_iterations": 20}


def test_standing_statistics_of_an_official_recipe_generator():
    """The official recipe's batch norm (TF eps/momentum, biased running variance) takes standing statistics too."""
    from hamgan.config import from_dict
    from hamgan.nn.from_config import generator_from_config

    torch.manual_seed(0)
    cfg = from_dict({"model": {"resolution": 32, "num_classes": 3, "z_dim": 8,
                               "g": {"channels": 4, "context": "ham", "context_res": 16, "ham": {"rank": 2}},
                               "d": {"channels": 4}}})
    assert cfg.model.bn.running_var == "biased"
    G = generator_from_config(cfg.model)
    with bn_mode(G, BNMode("standing", batches=2, batch_size=4), seed=0):
        standing = sample_images(G, 4, seed=1)
    with bn_mode(G, BNMode("running")):
        running = sample_images(G, 4, seed=1)
    assert not torch.equal(standing, running)  # fresh G: running stats are the initial (0, 1), standing are not
