"""Tests for hamgan.nn.hamburger: the Hamburger block and its NMF / VQ / CD decompositions."""

import pytest
import torch
import torch.nn as nn

import hamgan.nn.hamburger as hamburger
from hamgan.nn import Hamburger
from hamgan.nn.hamburger import cd, cd_coef, nmf, nmf_bases, unit_bases, vq
from hamgan.nn.layers import pointwise

HAMS = ["nmf", "vq", "cd"]


def count_saved_tensors(block: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> int:
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, y)
    return count


def open_block(block: Hamburger, sigma: float = 0.5) -> Hamburger:
    nn.init.constant_(block.sigma, sigma)
    return block


# --------------------------------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ham", HAMS)
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("grad", ["one_step", "bptt"])
@pytest.mark.parametrize("batch, height, width", [(1, 8, 8), (4, 5, 7)])
def test_shapes(ham, version, grad, batch, height, width):
    torch.manual_seed(0)
    block = open_block(Hamburger(16, ham=ham, rank=4, version=version, grad=grad, num_classes=3, steps=2))
    x = torch.randn(batch, 16, height, width)
    y = torch.randint(0, 3, (batch,))
    out = block(x, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    block.eval()
    assert block(x, y).shape == x.shape


@pytest.mark.parametrize("ham", HAMS)
def test_groups_and_dim(ham):
    torch.manual_seed(0)
    block = open_block(Hamburger(12, ham=ham, dim=5, rank=3, groups=3))
    assert block.lower.out_channels == 15 and block.upper.in_channels == 15
    assert Hamburger(12, groups=3).dim == 4
    x = torch.randn(2, 12, 3, 5)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("ham", HAMS)
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("num_classes", [None, 5])
def test_identity_at_init(ham, version, num_classes):
    torch.manual_seed(0)
    block = Hamburger(16, ham=ham, rank=4, version=version, num_classes=num_classes)
    x = torch.randn(2, 16, 6, 5)
    y = torch.tensor([1, 4]) if num_classes else None
    assert torch.equal(block(x, y), x)


@pytest.mark.parametrize("ham", HAMS)
@pytest.mark.parametrize("groups", [1, 2])
def test_upper_bread_on_the_factors_equals_it_on_the_reconstruction(ham, groups):
    torch.manual_seed(0)
    block = Hamburger(8, ham=ham, dim=6, rank=3, groups=groups).eval()
    bases = torch.rand(2 * groups, 6, 3)
    coef = torch.rand(2 * groups, 20, 3)
    reconstruction = torch.bmm(bases, coef.transpose(1, 2)).view(2, groups * 6, 20)
    expected = pointwise(block.upper, reconstruction)
    torch.testing.assert_close(block._upper_of_low_rank(bases, coef), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ham", HAMS)
def test_one_step_and_bptt_compute_the_same_forward(ham):
    one_step = open_block(Hamburger(16, ham=ham, rank=4, grad="one_step"))
    bptt = Hamburger(16, ham=ham, rank=4, grad="bptt")
    bptt.load_state_dict(one_step.state_dict())
    x = torch.randn(2, 16, 6, 6)
    torch.manual_seed(1)
    a = one_step.eval()(x)
    torch.manual_seed(1)
    b = bptt.eval()(x)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ham", HAMS)
def test_one_step_graph_does_not_grow_with_steps_but_bptt_does(ham):
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    counts = {}
    for grad in ["one_step", "bptt"]:
        for steps in [1, 6]:
            block = open_block(Hamburger(16, ham=ham, rank=4, grad=grad, steps=steps))
            counts[grad, steps] = count_saved_tensors(block, x)
    assert counts["one_step", 1] == counts["one_step", 6]
    assert counts["bptt", 6] > counts["bptt", 1] > counts["one_step", 1]


@pytest.mark.parametrize("ham", HAMS)
@pytest.mark.parametrize("grad", ["one_step", "bptt"])
def test_gradients_reach_breads_output_scale_and_input(ham, grad):
    torch.manual_seed(0)
    block = Hamburger(16, ham=ham, rank=4, grad=grad, num_classes=3, bread_bias=True)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    y = torch.tensor([0, 2])
    block(x, y).square().sum().backward()
    assert block.sigma.grad.abs() > 0  # at init only the output scale can move: the block must be able to open

    open_block(block).zero_grad()
    x.grad = None
    block(x, y).square().sum().backward()
    for layer in (block.lower, block.upper):
        assert layer.parametrizations.weight.original.grad.abs().sum() > 0
    assert block.lower.bias.grad.abs().sum() > 0
    assert block.norm.gain.grad.abs().sum() > 0
    assert block.sigma.grad.abs() > 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_eval_steps_used_in_eval_mode(monkeypatch):
    seen = []
    real_nmf = hamburger.nmf

    def spy(x, bases, steps, inv_temperature):
        seen.append(steps)
        return real_nmf(x, bases, steps, inv_temperature)

    monkeypatch.setattr(hamburger, "nmf", spy)
    block = Hamburger(8, rank=2, steps=3, eval_steps=7)
    x = torch.randn(1, 8, 4, 4)
    block.train()(x)
    block.eval()(x)
    assert seen == [3, 7]
    seen.clear()
    Hamburger(8, rank=2, steps=3).eval()(x)
    assert seen == [3]


def test_class_conditional_norm_depends_on_labels():
    torch.manual_seed(0)
    block = open_block(Hamburger(8, rank=2, num_classes=2)).eval()
    with torch.no_grad():
        block.norm.gain[1].fill_(3.0)
    x = torch.randn(1, 8, 4, 4)
    torch.manual_seed(1)
    a = block(x, torch.tensor([0]))
    torch.manual_seed(1)
    b = block(x, torch.tensor([1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="class labels y"):
        block(x)


def test_nmf_runs_in_float32_under_autocast_and_returns_finite_values():
    torch.manual_seed(0)
    block = open_block(Hamburger(16, rank=4))
    dtypes = []
    decompose = block.decompose

    def spy(x):
        bases, coef = decompose(x)
        dtypes.extend([x.dtype, bases.dtype, coef.dtype])
        return bases, coef

    block.decompose = spy
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert dtypes == [torch.float32] * 3
    assert torch.isfinite(out).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(block(x.bfloat16())).all()


@pytest.mark.parametrize("ham", HAMS)
def test_zeros_in_zeros_out_and_large_inputs_stay_finite(ham):
    block = Hamburger(8, ham=ham, rank=3)
    for grad in ["one_step", "bptt"]:
        block.grad = grad
        zeros = torch.zeros(2, 8, 20, requires_grad=True)
        bases, coef = block.decompose(zeros)
        reconstruction = torch.bmm(bases, coef.transpose(1, 2))
        assert torch.isfinite(bases).all() and torch.isfinite(coef).all()
        assert torch.equal(reconstruction, torch.zeros_like(reconstruction))
        reconstruction.sum().backward()
        assert torch.isfinite(zeros.grad).all()
    open_block(block)
    assert torch.isfinite(block(torch.zeros(1, 8, 4, 5))).all()
    assert torch.isfinite(block(1e4 * torch.randn(1, 8, 4, 5))).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(channels=30, groups=4), "groups"),
        (dict(channels=0), "channels"),
        (dict(channels=8, dim=0), "dim"),
        (dict(channels=8, rank=0), "rank"),
        (dict(channels=8, ham="svd"), "ham"),
        (dict(channels=8, grad="full"), "grad"),
        (dict(channels=8, version="v3"), "version"),
        (dict(channels=8, steps=0), "steps"),
        (dict(channels=8, eval_steps=0), "eval_steps"),
        (dict(channels=8, inv_temperature=0.0), "inv_temperature"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Hamburger(**kwargs)


def test_rank_larger_than_pixels_raises_in_forward():
    block = Hamburger(8, rank=17)
    with pytest.raises(ValueError, match=r"rank \(17\).*H\*W \(4\*4 = 16\)"):
        block(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        block(torch.randn(1, 9, 8, 8))


# --------------------------------------------------------------------------------------------------------------------
# The decompositions
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grad_enabled", [False, True])
def test_nmf_iterates_stay_non_negative(grad_enabled):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(3, 16, 50))
    with torch.set_grad_enabled(grad_enabled):
        for steps in [1, 4, 12]:
            bases, coef = nmf(x, nmf_bases(3, 16, 5), steps)
            assert (bases >= 0).all() and (coef >= 0).all()
            assert torch.isfinite(bases).all() and torch.isfinite(coef).all()


def test_nmf_reconstruction_error_falls_with_steps():
    torch.manual_seed(0)
    x = torch.rand(2, 32, 6) @ torch.rand(2, 6, 200)  # non-negative, rank 6
    start = nmf_bases(2, 32, 6)
    errors = []
    for steps in [1, 5, 30, 100]:
        with torch.no_grad():
            bases, coef = nmf(x, start.clone(), steps)
        errors.append(((x - bases @ coef.transpose(1, 2)).norm() / x.norm()).item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.6 * errors[0], errors


def test_vq_and_cd_bases():
    torch.manual_seed(0)
    start = unit_bases(2, 16, 4)
    torch.testing.assert_close(start.norm(dim=1), torch.ones(2, 4))
    x = torch.randn(2, 16, 30)
    bases, coef = cd(x, start.clone(), 3)
    torch.testing.assert_close(bases.norm(dim=1), torch.ones(2, 4))
    bases, coef = vq(x, start.clone(), 3)
    torch.testing.assert_close(coef.sum(dim=1), torch.ones(2, 4), atol=1e-4, rtol=0)  # normalised over N
    torch.testing.assert_close(bases, x @ coef)  # centroids: weighted means of the columns


def test_vq_finds_well_separated_clusters():
    torch.manual_seed(0)
    centres = nn.functional.normalize(torch.randn(1, 16, 3), dim=1)
    x = centres.repeat_interleave(10, dim=2) + 0.01 * torch.randn(1, 16, 30)
    bases, _ = vq(x, unit_bases(1, 16, 3), 6, inv_temperature=100.0)
    found = nn.functional.normalize(bases, dim=1)
    similarity = (found.transpose(1, 2) @ centres)[0]  # (3 found, 3 true)
    assert (similarity.max(dim=0).values > 0.99).all()


def test_cd_coef_solves_the_ridge_normal_equations():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 25)
    bases = unit_bases(2, 10, 4)
    coef = cd_coef(x, bases, beta=0.01)
    lhs = (bases.transpose(1, 2) @ bases + 0.01 * torch.eye(4)) @ coef.transpose(1, 2)
    torch.testing.assert_close(lhs, bases.transpose(1, 2) @ x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bread_bias", [False, True])
@pytest.mark.parametrize("ham", ["nmf", "cd", "vq"])
def test_fused_residual_output_equals_the_explicit_formula(ham, bread_bias):
    """Without CBN the block accumulates x + sigma * (W D C^T + b) in one product: same as the textbook order."""
    block = Hamburger(16, ham=ham, rank=4, steps=3, spectral_norm=False, bread_bias=bread_bias).eval()
    block.sigma.data.fill_(0.7)
    x = torch.randn(2, 16, 5, 6)
    torch.manual_seed(1)
    out = block(x)
    torch.manual_seed(1)
    h = block.lower(x).flatten(2).clone()
    bases, coef = block.decompose(h)
    expected = x + 0.7 * block.upper(torch.bmm(bases, coef.transpose(1, 2)).view(2, 16, 5, 6))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# The official layout (sn_hamburger_v1 / v2 of the HamGAN code) and hamgan's earlier one
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [True, False])
def test_bread_biases_official_none_legacy_lower_and_upper_without_bn(conditional):
    classes = 3 if conditional else None
    official = Hamburger(16, rank=4, num_classes=classes)
    assert official.lower.bias is None and official.upper.bias is None  # sn_conv1x1 has no bias
    legacy = Hamburger(16, rank=4, num_classes=classes, bread_bias=True)
    assert legacy.lower.bias is not None
    assert (legacy.upper.bias is None) == conditional  # no bias where a (conditional) BN follows
    assert sum(p.numel() for p in legacy.parameters()) - sum(p.numel() for p in official.parameters()) == (
        16 + (0 if conditional else 16))


def test_official_v2_cheese_layout_in_g_and_d():
    g = Hamburger(16, dim=8, groups=2, rank=4, version="v2", num_classes=3)  # S * D = 16 -> C = 16
    assert (g.cheese.in_channels, g.cheese.out_channels, g.cheese.bias) == (16, 16, None)
    assert g.cheese_norm is not None and g.norm is None  # CBN inside the cheese, none after the upper bread
    assert (g.upper.in_channels, g.upper.out_channels) == (16, 16)
    d = Hamburger(16, dim=12, rank=4, version="v2")  # S * D = 12 -> C = 16: the cheese maps to C
    assert (d.cheese.in_channels, d.cheese.out_channels, d.upper.in_channels) == (12, 16, 16)
    assert d.cheese_norm is None and d.norm is None  # no BN at all in D


def test_legacy_v2_cheese_layout():
    g = Hamburger(16, dim=12, rank=4, version="v2", num_classes=3, cheese="legacy")
    conv, bn, _ = g.cheese
    assert (conv.in_channels, conv.out_channels, g.upper.in_channels) == (12, 12, 12)
    assert isinstance(bn, nn.BatchNorm2d) and g.norm is not None and g.cheese_norm is None
    with pytest.raises(ValueError, match="cheese"):
        Hamburger(16, version="v2", cheese="brie")


@pytest.mark.parametrize("conditional", [True, False])
def test_official_v2_equals_its_formula(conditional):
    """x + sigma * upper(relu(CBN(cheese(D C^T)))) (no CBN in D)."""
    torch.manual_seed(0)
    block = Hamburger(16, dim=8, rank=4, steps=2, version="v2", num_classes=3 if conditional else None,
                      spectral_norm=False).eval()
    block.sigma.data.fill_(0.7)
    if conditional:
        block.cheese_norm.gain.data.uniform_(0.5, 2.0)
    x, y = torch.randn(2, 16, 5, 6), torch.tensor([0, 2])
    torch.manual_seed(1)
    out = block(x, y if conditional else None)
    torch.manual_seed(1)
    bases, coef = block.decompose(block.lower(x).flatten(2).clone())
    h = block.cheese(torch.bmm(bases, coef.transpose(1, 2)).view(2, 8, 5, 6))
    h = block.cheese_norm(h, y) if conditional else h
    torch.testing.assert_close(out, x + 0.7 * block.upper(torch.relu(h)), rtol=1e-5, atol=1e-5)


def test_batch_norm_options_reach_every_bn_of_the_block():
    from hamgan.nn.layers import BNOptions

    block = Hamburger(16, rank=4, version="v2", num_classes=3, cheese="legacy", bn=BNOptions(1e-3, 0.001, True))
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 and all((m.eps, m.momentum) == (1e-3, 0.001) for m in bns)


class CudaAutocastPromotion(torch.overrides.TorchFunctionMode):
    """CUDA autocast's "promote" ops (addcmul, addcdiv) cast every floating input to the widest of them, so a float32
    scalar parameter widens a bf16 activation; CPU autocast does not (plain type promotion keeps bf16 there, as a
    0-dim tensor does not widen a tensor of its category). Under CPU autocast this mode does what CUDA's would."""

    PROMOTE = {torch.addcmul, torch.Tensor.addcmul, torch.addcdiv, torch.Tensor.addcdiv}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.PROMOTE and torch.is_autocast_enabled("cpu"):
            floats = [t.dtype for t in torch.utils._pytree.tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor) and t.is_floating_point()]
            widest = floats[0]
            for dtype in floats[1:]:
                widest = torch.promote_types(widest, dtype)
            args, kwargs = torch.utils._pytree.tree_map(
                lambda t: t.to(widest) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, (args, kwargs))
        return func(*args, **kwargs)


def context_blocks() -> dict[str, nn.Module]:
    from hamgan.nn import FullSelfAttention, SelfAttention
    from hamgan.nn.ylg import YLGAttention

    return {
        "ham G (class-conditional BN)": Hamburger(16, rank=4, steps=2, num_classes=3),
        "ham D": Hamburger(16, rank=4, steps=2),
        "ham D with bread biases": Hamburger(16, rank=4, steps=2, bread_bias=True),
        "ham v2 G": Hamburger(16, rank=4, steps=2, version="v2", num_classes=3),
        "ham v2 legacy G": Hamburger(16, rank=4, steps=2, version="v2", cheese="legacy", num_classes=3),
        "attention": SelfAttention(16),
        "full attention": FullSelfAttention(16),
        "ylg": YLGAttention(64),
    }


@pytest.mark.parametrize("name", list(context_blocks()))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_context_block_output_keeps_the_input_dtype_under_cuda_style_autocast(name, dtype):
    """G's activations stay bf16 through the context block: x + sigma * out with sigma a float32 parameter left
    G's bf16 stream under CUDA autocast (emulated here; measured on the code before this change: float32 out of
    every block but the plain D Hamburger)."""
    torch.manual_seed(0)
    block = context_blocks()[name]
    for p in block.parameters():
        if p.ndim == 0:
            nn.init.constant_(p, 0.5)  # sigma / gamma: the residual branch counts
    channels = 64 if name == "ylg" else 16
    x, y = torch.randn(2, channels, 8, 8).to(dtype), torch.tensor([0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16), CudaAutocastPromotion():
        out = block(x, y) if isinstance(block, Hamburger) else block(x)
    assert out.dtype == dtype
