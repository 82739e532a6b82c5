"""hamgan.tf32: the TF32 flags of each train.tf32 mode, and the true-float32 scope around the Hamburger
decomposition and FID's Inception (this CPU stands in for a GPU: torch's TF32 flags are settable without one)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hamgan import tf32
from hamgan.metrics.inception import InceptionFeatures
from hamgan.nn import Hamburger


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """tf32.scoped as it decides for a CUDA tensor; torch's TF32 flags and the mode restored afterwards."""
    real = tf32.scoped
    monkeypatch.setattr(tf32, "scoped", lambda device: real(torch.device("cuda")))
    old_flags, old_mode = tf32.flags(), tf32.mode()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_flags
    tf32.set_mode(old_mode, cuda=False)


def test_set_mode_sets_the_flags_on_cuda_only(as_on_a_gpu):
    for mode, expected in (("layers", (True, True)), ("all", (True, True)), ("none", (False, False))):
        tf32.set_mode(mode, cuda=True)
        assert tf32.mode() == mode and tf32.flags() == expected
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tf32.set_mode("none", cuda=False)  # a CPU process: torch's flags untouched
    assert tf32.flags() == (True, True)
    with pytest.raises(ValueError, match="train.tf32 must be one of"):
        tf32.set_mode("high", cuda=True)


@pytest.mark.parametrize("mode, inside", [("layers", (False, False)), ("all", (True, True)),
                                          ("none", (False, False))])
def test_decomposition_runs_in_true_float32_unless_tf32_all(as_on_a_gpu, monkeypatch, mode, inside):
    """The flags seen inside Hamburger.decompose; the lower bread before it and the process after it keep the
    mode's flags."""
    tf32.set_mode(mode, cuda=True)
    outside = tf32.flags()
    seen = []
    decompose = Hamburger.decompose

    def spy(self, x):
        seen.append(tf32.flags())
        return decompose(self, x)

    monkeypatch.setattr(Hamburger, "decompose", spy)
    block = Hamburger(16, rank=4, steps=2, num_classes=3)
    block(torch.randn(2, 16, 4, 4), torch.tensor([0, 1])).sum().backward()
    assert seen == [inside]
    assert tf32.flags() == outside


def test_decomposition_is_a_plain_call_on_the_cpu(monkeypatch):
    """No scope (and no graph break under torch.compile) where TF32 does not exist."""
    monkeypatch.setattr(tf32, "_call_ieee", lambda *a: pytest.fail("scoped on the CPU"))
    Hamburger(16, rank=4, steps=2)(torch.randn(1, 16, 4, 4))


@pytest.mark.parametrize("mode, inside", [("layers", (False, False)), ("all", (True, True))])
def test_inception_features_run_in_true_float32_unless_tf32_all(as_on_a_gpu, mode, inside):
    """InceptionFeatures.forward runs the network (``_features``) inside the scope; the weights are not needed."""
    tf32.set_mode(mode, cuda=True)
    seen = []

    class Network:
        def _features(self, images):
            seen.append(tf32.flags())
            return images, images

    InceptionFeatures.forward(Network(), torch.zeros(1, 3, 8, 8))
    assert seen == [inside] and tf32.flags() == (True, True)


def test_a_process_that_never_set_a_mode_keeps_inception_exact():
    """hamgan-eval never calls set_mode: a fresh process is in mode "layers", so Inception on a GPU runs in true
    float32 although torch's default leaves cuDNN's TF32 on."""
    spec = importlib.util.spec_from_file_location("fresh_tf32", tf32.__file__)  # the module as a process starts it
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert fresh.mode() == "layers" and fresh.scoped(torch.device("cuda"))
