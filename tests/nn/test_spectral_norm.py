"""hamgan.nn.spectral_norm: the bounds, torch's arithmetic bit for bit, TF-GAN's eval iteration, warm-up, state
dicts, and float32 power iteration under autocast (issue 11 item 2b)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm
from torch.utils._python_dispatch import TorchDispatchMode

import hamgan.nn.spectral_norm as sn_module
from hamgan.nn.spectral_norm import SN_EPS, SNOptions, SpectralNorm, spectral_norm

TORCH = SNOptions()  # exact, no eval iteration, 15 warm-up iterations
TF = SNOptions("at_most_one", eval_iteration=True, warmup=0)


def top_singular_value(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.detach().flatten(1).double(), ord=2).item()


def converge(layer: nn.Module, steps: int = 50) -> None:
    layer.train()
    with torch.no_grad():
        for _ in range(steps):
            layer.weight  # one power iteration per access in training mode


@pytest.mark.parametrize("scale, expected", [(10.0, 1.0), (0.05, None)])
def test_at_most_one_divides_only_weights_above_one(scale, expected):
    torch.manual_seed(0)
    layer = spectral_norm(nn.Conv2d(6, 8, 3), TF)
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(scale)
    converge(layer)
    raw = top_singular_value(layer.parametrizations.weight.original)
    assert top_singular_value(layer.weight) == pytest.approx(expected or raw, rel=1e-3)
    if expected is None:  # sigma < 1: W / max(1, sigma) = W exactly
        assert torch.equal(layer.weight, layer.parametrizations.weight.original)


@pytest.mark.parametrize("scale", [10.0, 0.05])
def test_exact_bound_normalises_to_one_from_above_and_below(scale):
    torch.manual_seed(0)
    layer = spectral_norm(nn.Linear(12, 7), TORCH)
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(scale)
    converge(layer)
    assert top_singular_value(layer.weight) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(5, 9, 3), lambda: nn.Linear(12, 7), lambda: nn.Embedding(10, 6)])
def test_torch_options_reproduce_torch_spectral_norm_bit_for_bit(make):
    """The same draws at creation, the same 15 warm-up iterations and arithmetic: old checkpoints reproduce."""
    torch.manual_seed(3)
    ours = spectral_norm(make(), TORCH)
    torch.manual_seed(3)
    theirs = torch_spectral_norm(make(), eps=SN_EPS)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for mode in (True, True, False, True, False):
        ours.train(mode), theirs.train(mode)
        assert torch.equal(ours.weight, theirs.weight)
        with torch.no_grad():  # an optimiser step between forwards
            for layer in (ours, theirs):
                layer.parametrizations.weight.original.add_(0.01)
    theirs_state = theirs.state_dict()
    fresh = spectral_norm(make(), TORCH)
    fresh.load_state_dict(theirs_state)  # torch's checkpoints load into ours
    fresh.eval(), theirs.eval()
    assert torch.equal(fresh.weight, theirs.weight)


def test_power_iteration_order_is_tf_gans():
    """u = normalize(W v), v = normalize(W^T u), sigma = u^T W v with the persisted v on the input side, as
    tfgan.features.compute_spectral_norm (its u is our v)."""
    torch.manual_seed(0)
    layer = spectral_norm(nn.Linear(5, 4), TF)
    p = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original.detach()
    v0 = p._v.clone()
    out = layer.weight  # training mode: one iteration, stored
    u = nn.functional.normalize(w @ v0, dim=0, eps=SN_EPS)
    v = nn.functional.normalize(w.T @ u, dim=0, eps=SN_EPS)
    sigma = u @ w @ v
    torch.testing.assert_close(p._u, u)
    torch.testing.assert_close(p._v, v)
    torch.testing.assert_close(out, w / torch.clamp(sigma, min=1.0))


def test_eval_iteration_computes_without_storing_the_vectors():
    """TF-GAN (training=False): one iteration from the stored v, not stored; torch: the stored u, v as they are."""
    torch.manual_seed(0)
    for eval_iteration in (True, False):
        layer = spectral_norm(nn.Linear(8, 8), SNOptions(eval_iteration=eval_iteration, warmup=0))
        layer.weight  # one training iteration stores u, v
        with torch.no_grad():
            layer.parametrizations.weight.original.mul_(5.0).add_(0.1)  # an optimiser step changes W
        layer.eval()
        p, w = layer.parametrizations.weight[0], layer.parametrizations.weight.original.detach()
        u, v = p._u.clone(), p._v.clone()
        out = layer.weight
        assert torch.equal(p._u, u) and torch.equal(p._v, v)  # nothing stored in eval
        if eval_iteration:
            u = nn.functional.normalize(w @ v, dim=0, eps=SN_EPS)
            v = nn.functional.normalize(w.T @ u, dim=0, eps=SN_EPS)
        torch.testing.assert_close(out, w / (u @ w @ v), rtol=1e-6, atol=1e-7)
        assert torch.equal(layer.weight, out)  # the same each time in eval


@pytest.mark.parametrize("warmup", [0, 3])
def test_warmup_iterations_at_creation(warmup):
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    w = layer.weight.detach().clone()
    torch.manual_seed(1)
    p = SpectralNorm(layer.weight, SNOptions(warmup=warmup))
    torch.manual_seed(1)
    u = nn.functional.normalize(torch.randn(4), dim=0, eps=SN_EPS)
    v = nn.functional.normalize(torch.randn(6), dim=0, eps=SN_EPS)
    for _ in range(warmup):
        u = nn.functional.normalize(w @ v, dim=0, eps=SN_EPS)
        v = nn.functional.normalize(w.T @ u, dim=0, eps=SN_EPS)
    torch.testing.assert_close(p._u, u)
    torch.testing.assert_close(p._v, v)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="bound must be one of"):
        SNOptions("approximately")
    with pytest.raises(ValueError, match="warmup"):
        SNOptions(warmup=-1)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        SpectralNorm(torch.ones(3))


class DtypeRecorder(TorchDispatchMode):
    """Records (op, output dtype) of every floating-point op dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.ops.append((func.__name__, t.dtype))
        return out


@pytest.mark.parametrize("options", [TORCH, TF])
@pytest.mark.parametrize("training", [True, False])
def test_power_iteration_and_sigma_run_in_float32_under_bf16_autocast(options, training, monkeypatch):
    """Issue 11 item 2b: under autocast the power iteration and sigma must not run in bf16 (on CUDA ``mv`` is
    autocast). Recorded on CPU: every op of the parametrization in float32, and autocast off inside it."""
    torch.manual_seed(0)
    layer = spectral_norm(nn.Linear(16, 8), options).train(training)
    autocast_seen = []
    real_mv = torch.mv

    def mv(*args, **kwargs):
        autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return real_mv(*args, **kwargs)

    monkeypatch.setattr(sn_module.torch, "mv", mv)
    recorder = DtypeRecorder()
    with torch.autocast("cpu", dtype=torch.bfloat16), recorder:
        weight = layer.weight
        out = layer(torch.randn(3, 16))
    assert weight.dtype == torch.float32 and out.dtype == torch.bfloat16  # the layer itself still runs in bf16
    sn_ops = [(name, dtype) for name, dtype in recorder.ops if name.split(".")[0] in
              ("mv", "vdot", "linalg_vector_norm", "div", "clamp", "clamp_min", "clone", "mul", "dot")]
    assert {"mv", "vdot"} <= {name.split(".")[0] for name, _ in sn_ops}
    assert all(dtype == torch.float32 for _, dtype in sn_ops), sn_ops
    assert autocast_seen and not any(autocast_seen)


def test_a_bf16_weight_is_normalised_in_float32_and_returned_in_bf16():
    torch.manual_seed(0)
    layer = spectral_norm(nn.Linear(16, 8), TORCH).to(torch.bfloat16)
    recorder = DtypeRecorder()
    with recorder:
        weight = layer.weight
    assert weight.dtype == torch.bfloat16
    assert all(dtype == torch.float32 for name, dtype in recorder.ops if name.split(".")[0] in ("mv", "vdot"))


def test_registered_as_a_parametrization():
    layer = spectral_norm(nn.Conv2d(2, 3, 1))
    assert parametrize.is_parametrized(layer, "weight")
    assert isinstance(layer.parametrizations.weight[0], SpectralNorm)
    assert "bound='exact'" in repr(layer)
