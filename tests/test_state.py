"""hamgan.train.state: each rank saves and restores only its own GPU's CUDA RNG state (torch.cuda mocked: no GPU
here), and checkpoints of the older format (one state per visible GPU) restore the rank's own entry."""

import random

import numpy as np
import pytest
import torch

from hamgan.train import state


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda.get_rng_state / set_rng_state recording the devices they are called with."""
    calls = {"get": [], "set": []}

    def get_rng_state(device="cuda"):
        calls["get"].append(torch.device(device))
        return torch.tensor([torch.device(device).index], dtype=torch.uint8)  # a state that names its GPU

    def set_rng_state(new_state, device="cuda"):
        calls["set"].append((torch.device(device), new_state.clone()))

    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    return calls


def test_a_rank_saves_only_its_own_gpus_state(fake_cuda):
    flip = torch.Generator().manual_seed(1)
    saved = state.rng_state(flip, torch.device("cuda", 3))
    assert fake_cuda["get"] == [torch.device("cuda", 3)]  # not one call per visible GPU
    assert saved["cuda"].tolist() == [3]
    assert "cuda" not in state.rng_state(flip, torch.device("cpu"))


def test_a_rank_restores_its_own_state_in_both_formats(fake_cuda):
    flip = torch.Generator().manual_seed(1)
    saved = state.rng_state(flip, torch.device("cuda", 2))
    state.set_rng_state(saved, flip, torch.device("cuda", 2))
    assert [(d, s.tolist()) for d, s in fake_cuda["set"]] == [(torch.device("cuda", 2), [2])]

    fake_cuda["set"].clear()
    old = {**saved, "cuda": [torch.tensor([10 + i], dtype=torch.uint8) for i in range(4)]}  # per visible GPU
    state.set_rng_state(old, flip, torch.device("cuda", 1))
    assert [(d, s.tolist()) for d, s in fake_cuda["set"]] == [(torch.device("cuda", 1), [11])]

    fake_cuda["set"].clear()
    state.set_rng_state(old, flip, torch.device("cuda", 6))  # more ranks now than GPUs then: left as seeded
    assert fake_cuda["set"] == []


def test_cpu_streams_round_trip():
    flip = torch.Generator().manual_seed(5)
    saved = state.rng_state(flip, torch.device("cpu"))
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=flip).item())
    state.seed_everything(123)
    flip.manual_seed(9)
    state.set_rng_state(saved, flip, torch.device("cpu"))
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=flip).item()) == expected
