"""hamgan.train.state: each rank saves and restores only its own GPU's CUDA RNG state (torch.cuda mocked: no GPU
here), and checkpoints of the older format (one state per visible GPU) restore the rank's own entry; a resume onto
another device than the CPU, into another Adam implementation, and into fp16 from a checkpoint without fp16."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan import distributed
from hamgan.config import load_config
from hamgan.train import Trainer, state


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


# --------------------------------------------------------------------------------------------------------------------
# Resuming a trainer: onto another device than the CPU, into another optimiser implementation, into fp16
# --------------------------------------------------------------------------------------------------------------------

TINY = Path(__file__).resolve().parent / "tiny_train.yaml"


def tiny_trainer(run_dir: Path) -> Trainer:
    return Trainer(load_config(TINY, ["train.steps=1"]), run_dir, distributed.setup("cpu"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint after one step of the tiny trainer (float32, non-fused Adam, disabled loss scalers) and the
    random draws that follow it: ``(path, (torch draws, flip draws))``."""
    trainer = tiny_trainer(tmp_path_factory.mktemp("state") / "run")
    try:
        trainer.train_step()
        trainer.step = 1
        path = trainer.save()
        expected = torch.rand(4), torch.rand(4, generator=trainer.flip)
    finally:
        trainer.close()
    return path, expected


def test_resume_onto_another_device_restores_rngs_and_keeps_adam_steps_on_the_cpu(checkpoint, tmp_path):
    """On a GPU the checkpoint was mapped to the trainer's device: the RNG byte tensors then failed
    torch.set_rng_state (TypeError), and Adam's step counts came back on the GPU (a host sync per parameter per
    update). The meta device stands in for the GPU: a load mapped onto it keeps nothing on the CPU."""
    path, (torch_draws, flip_draws) = checkpoint
    trainer = tiny_trainer(tmp_path / "run")
    try:
        trainer.device = torch.device("meta")
        assert trainer.resume_from(path) == []
        assert torch.equal(torch.rand(4), torch_draws)
        assert torch.equal(torch.rand(4, generator=trainer.flip), flip_draws)
        steps = [s["step"] for opt in (trainer.opt_G, trainer.opt_D) for s in opt.state.values()]
        assert steps and all(s.device.type == "cpu" and s.item() == 1 for s in steps)
        assert all(v.device == p.device for opt in (trainer.opt_G, trainer.opt_D) for p, s in opt.state.items()
                   for k, v in s.items() if k != "step")
    finally:
        trainer.close()


@pytest.mark.parametrize("fused", [False, True])
def test_adam_resumes_as_configured_with_its_steps_where_it_wants_them(checkpoint, tmp_path, fused):
    """The saved param groups carried the implementation of the run that wrote them (a CPU checkpoint resumed on a
    GPU kept non-fused Adam); now the configured one runs. Fused Adam wants float32 steps on the parameters'
    device (torch's _process_value_according_to_param_policy), non-fused Adam CPU steps."""
    path, _ = checkpoint
    trainer = tiny_trainer(tmp_path / "run")
    try:
        t = trainer.cfg.train
        trainer.opt_G = torch.optim.Adam(trainer.G.parameters(), lr=t.lr_g, betas=tuple(t.betas), fused=fused)
        trainer.resume_from(path)
        assert all(group["fused"] is fused for group in trainer.opt_G.param_groups)
        for p, s in trainer.opt_G.state.items():
            assert s["step"].dtype == torch.float32 and s["step"].device == (p.device if fused else torch.device("cpu"))
        trainer.train_step()  # and it steps
    finally:
        trainer.close()


def test_fp16_resume_from_a_checkpoint_without_loss_scaler_state(checkpoint, tmp_path):
    """A bf16 / float32 / CPU checkpoint holds the empty state of a disabled scaler, and an enabled scaler's
    load_state_dict({}) raised: the fp16 resume now starts from a fresh scale and says so. (fp16 needs a GPU; an
    enabled CPU GradScaler stands in.)"""
    path, _ = checkpoint
    trainer = tiny_trainer(tmp_path / "run")
    try:
        trainer.scaler_G = torch.amp.GradScaler("cpu", enabled=True)
        trainer.scaler_D = torch.amp.GradScaler("cpu", enabled=True)
        notes = trainer.resume_from(path)
        assert notes == [f"{name}: the checkpoint has no fp16 loss-scaler state (trained without fp16); starting "
                         "from a fresh scale of 65536" for name in ("scaler_G", "scaler_D")]
        assert trainer.scaler_G.get_scale() == 65536.0 and trainer.step == 1
    finally:
        trainer.close()


def test_loss_scaler_states_round_trip():
    """An fp16 scaler's state restores (and a disabled scaler ignores one: an fp16 checkpoint resumed in bf16)."""
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0, growth_interval=7).state_dict()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    assert state.load_scaler_state(scaler, saved, "scaler_G") is None
    assert scaler.get_scale() == 1024.0 and scaler.get_growth_interval() == 7
    assert state.load_scaler_state(torch.amp.GradScaler("cpu", enabled=False), saved, "scaler_G") is None
