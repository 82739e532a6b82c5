"""The committed study generators (results/fmnist32/checkpoints/<model>-seed0.pt) load and sample as when the study
was reported, on any CPU.

tests/fixtures/make_study_samples.py wrote each generator's image means and pixel standard deviation for 6 fixed
latents. They are compared with a tolerance derived from float32 rounding, not bit for bit: other CPUs (AVX-512,
ARM, ATEN_CPU_CAPABILITY=default) and thread counts sum in other orders.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hamgan.checkpoint import load_checkpoint, load_generator
from hamgan.nn.from_config import generator_from_config

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "results" / "fmnist32" / "checkpoints"
EXPECTED = json.loads((ROOT / "tests" / "fixtures" / "study_samples.json").read_text())
EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7


def _fixture_module():
    """tests/fixtures/make_study_samples.py, which wrote the expected statistics: its ``samples`` draws them here."""
    spec = importlib.util.spec_from_file_location("make_study_samples", ROOT / "tests" / "fixtures" /
                                                  "make_study_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


samples = _fixture_module().samples  # latents from seed 0, classes 0..5 (mod C), random bases from seed 1


def float32_tolerance(G: nn.Module) -> float:
    """How far a float32 forward of ``G`` may move a pixel between machines.

    A dot product of length K rounded in another order differs by about eps * sqrt(K) relative (random rounding
    errors add in quadrature); K is at most the largest fan-in of a conv or linear (in channels x kernel area). The
    errors of the L layers add, and batch norm (division by a batch standard deviation) and the Hamburger's
    multiplicative NMF updates may amplify them: a factor 10. tanh is 1-Lipschitz and the pre-tanh activations are
    of order 1, so a pixel, and a mean of pixels, moves by at most 10 * L * eps * sqrt(K). For these generators
    (L = 13, K = 288): 2.6e-4; the sums of the pixels differed by 1.8e-6 relative between an AVX2 machine and an
    AVX-512 one."""
    layers = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    fan_in = max(m.weight[0].numel() for m in layers)
    return 10 * len(layers) * EPS32 * math.sqrt(fan_in)


@pytest.mark.parametrize("model", ["hamgan", "sagan", "none", "ham-cd", "ham-vq"])
def test_committed_study_generators_load_and_sample_as_reported(model):
    path = CHECKPOINTS / f"{model}-seed0.pt"
    expected = EXPECTED[model]
    G, cfg, step = load_generator(path)
    assert step == expected["step"] == 4000
    assert cfg.model.init == "orthogonal" and cfg.model.sn.bound == "exact" and cfg.data.resize == "pil-bicubic"
    tol = float32_tolerance(G)
    assert 1e-5 < tol < 1e-3  # the derivation above, for these small generators
    for mode in ("eval", "train"):  # train: batch statistics
        images = samples(G, cfg.model.z_dim, cfg.model.num_classes, mode).double()
        assert images.shape == (6, cfg.model.img_channels, 32, 32) and images.abs().max() <= 1
        stats = expected[f"G_{mode}"]
        torch.testing.assert_close(images.mean(dim=(1, 2, 3)), torch.tensor(stats["image_means"], dtype=torch.float64),
                                   rtol=0, atol=tol)
        assert images.std().item() == pytest.approx(stats["std"], rel=0, abs=tol)


def test_load_generator_gives_the_network_rebuilt_from_the_ema_weights():
    """load_generator's G (EMA weights, eval mode) equals a Generator built from the config and the state dict."""
    path = CHECKPOINTS / "hamgan-seed0.pt"
    G, cfg, _ = load_generator(path)
    rebuilt = generator_from_config(cfg.model)
    rebuilt.load_state_dict(load_checkpoint(path)["G_ema"])
    torch.testing.assert_close(samples(rebuilt, cfg.model.z_dim, cfg.model.num_classes, "eval"),
                               samples(G, cfg.model.z_dim, cfg.model.num_classes, "eval"), rtol=0, atol=0)
