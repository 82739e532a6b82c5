"""Generator / Discriminator: the architecture table, shapes of every config, the HamGAN-128 layout (context block
at 32x32 with 256 / 128 channels), identity at init, parameter counts derived independently from the table,
the projection term, init schemes and input errors; the networks from plain arguments, without hamgan.config."""

from __future__ import annotations

import ast
import dataclasses

import pytest
import torch

from pathlib import Path

from hamgan.config import HamConfig, ModelConfig, NetConfig, YLGConfig, load_config
from hamgan.nn import (AttentionSpec, Discriminator, Generator, Hamburger, HamburgerSpec, SelfAttention, YLGAttention,
                       YLGSpec)
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.layers import ConditionalBatchNorm2d
from hamgan.nn.networks import ARCHITECTURES, G_BASE_RES, valid_context_res

# Context resolutions that exist at every resolution (the D default of 32 does not exist at 32).
SMALL_CONTEXT_RES = {32: (16, 16), 64: (32, 32), 128: (32, 32)}
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def net_cfg(channels: int = 8, context: str = "ham", res: int = 32, rank: int = 8, **ham) -> NetConfig:
    return NetConfig(channels=channels, context=context, context_res=res, ham=HamConfig(rank=rank, **ham))


def small_cfg(resolution: int, context: str = "ham", channels: int = 8, **kw) -> ModelConfig:
    g_res, d_res = SMALL_CONTEXT_RES[resolution]
    defaults = dict(
        resolution=resolution,
        num_classes=10,
        z_dim=16,
        init="normal",
        g=net_cfg(channels, context, g_res, rank=8),
        d=net_cfg(channels, context, d_res, rank=4),
    )
    return ModelConfig(**{**defaults, **kw})


def real_cfg(context: str = "ham", **kw) -> ModelConfig:
    """HamGAN-128: ImageNet 128, 1000 classes, gf = df = 64 (the schema defaults), ``context`` in both networks.
    Init does not change what these tests check; normal init skips seconds of QR."""
    cfg = ModelConfig(init="normal", **kw)
    return dataclasses.replace(cfg, g=dataclasses.replace(cfg.g, context=context),
                               d=dataclasses.replace(cfg.d, context=context))


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------------------------
# Independent parameter count from the table (closed forms; spectral norm's u, v and BN running stats are buffers)
# ------------------------------------------------------------------------------------------------------------------


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def linear(fin: int, fout: int) -> int:
    return fin * fout + fout


def cbn(c: int, classes: int) -> int:
    return 2 * c * classes  # per-class gain and bias


def context_params(cfg: ModelConfig, net: NetConfig, c: int, conditional: bool) -> int:
    if net.context == "none":
        return 0
    if net.context in ("attention", "ylg"):  # theta, phi: C -> C/8; g: C -> C/2; out: C/2 -> C, no biases; gamma
        return 2 * conv(1, c, c // 8, bias=False) + 2 * conv(1, c, c // 2, bias=False) + 1
    d, bias = net.ham.dim or c, net.ham.bread_bias  # lower C -> D, upper D -> C (biases: bread_bias, not before a BN)
    upper = conv(1, d, c, bias=False) + cbn(c, cfg.num_classes) if conditional else conv(1, d, c, bias=bias)
    return conv(1, c, d, bias=bias) + upper + 1


def expected_g_params(cfg: ModelConfig) -> int:
    w, k, specs = cfg.g.channels, cfg.num_classes, ARCHITECTURES[cfg.resolution].g
    total = linear(cfg.z_dim, G_BASE_RES**2 * specs[0].in_mult * w)
    for s in specs:
        cin, cout = s.in_mult * w, s.out_mult * w
        total += cbn(cin, k) + conv(3, cin, cout) + cbn(cout, k) + conv(3, cout, cout) + conv(1, cin, cout)
    ctx = next(s for s in specs if s.res == cfg.g.context_res)
    total += context_params(cfg, cfg.g, ctx.out_mult * w, conditional=True)
    last = specs[-1].out_mult * w
    return total + 2 * last + conv(3, last, cfg.img_channels)  # BN (affine) + output conv


def expected_d_params(cfg: ModelConfig) -> int:
    w, specs = cfg.d.channels, ARCHITECTURES[cfg.resolution].d
    first, *rest = specs
    total = conv(3, cfg.img_channels, first.out_mult * w) + conv(3, first.out_mult * w, first.out_mult * w)
    total += conv(1, cfg.img_channels, first.out_mult * w)
    for s in rest:
        cin, cout = s.in_mult * w, s.out_mult * w
        total += conv(3, cin, cout) + conv(3, cout, cout) + (conv(1, cin, cout) if s.resample or cin != cout else 0)
    ctx = next(s for s in specs if s.res == cfg.d.context_res)
    total += context_params(cfg, cfg.d, ctx.out_mult * w, conditional=False)
    last = specs[-1].out_mult * w
    return total + linear(last, 1) + cfg.num_classes * last  # linear head + projection embedding


# ------------------------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", sorted(ARCHITECTURES))
def test_table_is_consistent(resolution):
    arch = ARCHITECTURES[resolution]
    res = G_BASE_RES
    for prev, s in zip((None, *arch.g), arch.g):
        assert prev is None or s.in_mult == prev.out_mult
        assert s.resample
        res *= 2
        assert s.res == res
    assert res == resolution
    assert arch.d[0].in_mult is None and arch.d[0].resample
    res = resolution
    for prev, s in zip(arch.d, arch.d[1:]):
        assert s.in_mult == prev.out_mult
    for s in arch.d:
        res = res // 2 if s.resample else res
        assert s.res == res


def test_tf_gan_sagan_layout_at_128():
    arch = ARCHITECTURES[128]
    assert [(s.out_mult, s.res) for s in arch.g] == [(16, 8), (8, 16), (4, 32), (2, 64), (1, 128)]
    assert arch.g[0].in_mult == 16
    assert [(s.out_mult, s.res, s.resample) for s in arch.d] == [
        (1, 64, True), (2, 32, True), (4, 16, True), (8, 8, True), (16, 4, True), (16, 4, False),
    ]  # fmt: skip


def test_valid_context_res():
    assert valid_context_res(32, "g") == [8, 16, 32]
    assert valid_context_res(32, "d") == [16, 8]
    assert valid_context_res(64, "g") == [8, 16, 32, 64]
    assert valid_context_res(64, "d") == [32, 16, 8, 4]
    assert valid_context_res(128, "g") == [8, 16, 32, 64, 128]
    assert valid_context_res(128, "d") == [64, 32, 16, 8, 4]


# ------------------------------------------------------------------------------------------------------------------
# Shapes of every config
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("context", ["ham", "attention", "none"])
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes_of_every_config(resolution, context, batch):
    torch.manual_seed(0)
    cfg = small_cfg(resolution, context)
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    z, y = torch.randn(batch, cfg.z_dim), torch.randint(0, cfg.num_classes, (batch,))
    x = G(z, y)
    assert x.shape == (batch, 3, resolution, resolution)
    assert x.abs().max() <= 1.0 and torch.isfinite(x).all()
    logits = D(x, y)
    assert logits.shape == (batch,) and torch.isfinite(logits).all()
    expected_type = {"ham": Hamburger, "attention": SelfAttention, "none": type(None)}[context]
    assert isinstance(G.context, expected_type) and isinstance(D.context, expected_type)
    assert (G.z_dim, G.num_classes, G.resolution) == (16, 10, resolution)
    logits.mean().backward()  # gradients reach both ends of G
    assert G.linear.parametrizations.weight.original.grad is not None


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_params_of_small_configs_match_table(resolution):
    for context in ("ham", "attention", "none"):
        cfg = small_cfg(resolution, context, img_channels=1)
        assert num_params(generator_from_config(cfg)) == expected_g_params(cfg)
        assert num_params(discriminator_from_config(cfg)) == expected_d_params(cfg)


# ------------------------------------------------------------------------------------------------------------------
# HamGAN-128 (real config)
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hamgan128():
    torch.manual_seed(0)
    cfg = real_cfg("ham")
    return cfg, generator_from_config(cfg), discriminator_from_config(cfg)


def capture_context(net: torch.nn.Module, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    seen = {}

    def hook(module, args, out):
        seen["in"], seen["out"] = args[0], out

    handle = net.context.register_forward_hook(hook)
    try:
        with torch.no_grad():
            result = net(*inputs)
    finally:
        handle.remove()
    return seen["in"], seen["out"], result


def test_hamgan128_context_at_32x32_with_256_and_128_channels_and_identity_at_init(hamgan128):
    cfg, G, D = hamgan128
    z, y = torch.randn(1, 128), torch.tensor([999])
    g_in, g_out, x = capture_context(G, z, y)
    assert g_in.shape == (1, 256, 32, 32)
    assert x.shape == (1, 3, 128, 128) and x.abs().max() <= 1
    d_in, d_out, logits = capture_context(D, x, y)
    assert d_in.shape == (1, 128, 32, 32)
    assert logits.shape == (1,)
    assert G.context.dim == 256 and G.context.rank == 32 and G.context.norm is not None
    assert D.context.dim == 128 and D.context.rank == 16 and D.context.norm is None
    # sigma = 0 at init: the context block is exactly the identity inside both networks
    assert torch.equal(g_in, g_out) and torch.equal(d_in, d_out)


def test_hamgan128_every_conv_linear_embedding_is_spectrally_normalised(hamgan128):
    _, G, D = hamgan128
    for net in (G, D):
        layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
        assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in [G.bn])  # the last BN is plain


@pytest.mark.parametrize("context", ["ham", "attention", "none"])
def test_hamgan128_param_counts_match_table(context, hamgan128):
    if context == "ham":
        cfg, G, D = hamgan128
    else:
        cfg = real_cfg(context)
        G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    assert num_params(G) == expected_g_params(cfg)
    assert num_params(D) == expected_d_params(cfg)


def test_hamgan128_param_counts_by_hand():
    """Spelled out once for the reference: context blocks at 32x32, G: 256 ch, D: 128 ch, 1000 classes."""
    ham_g = 256 * 256 + 256 * 256 + 2 * 256 * 1000 + 1  # bias-free breads (sn_conv1x1), CBN after the upper one
    ham_d = 128 * 128 + 128 * 128 + 1
    att = lambda c: 2 * c * c // 8 + 2 * c * c // 2 + 1  # noqa: E731
    official = real_cfg("ham")
    assert context_params(official, official.g, 256, True) == ham_g == 643_073
    assert context_params(official, official.d, 128, False) == ham_d == 32_769
    legacy = dataclasses.replace(official, g=net_cfg(64, "ham", 32, 32, bread_bias=True),
                                 d=net_cfg(64, "ham", 32, 16, bread_bias=True))
    assert context_params(legacy, legacy.g, 256, True) == ham_g + 256  # lower bread bias
    assert context_params(legacy, legacy.d, 128, False) == ham_d + 256  # lower and upper bread biases
    attention = real_cfg("attention")
    assert context_params(attention, attention.g, 256, True) == att(256) == 81_921
    assert context_params(attention, attention.d, 128, False) == att(128) == 20_481
    assert expected_g_params(real_cfg("none")) == 41_996_931
    assert expected_d_params(real_cfg("none")) == 39_443_137


def test_hamgan_baby_config_has_the_official_parameter_counts():
    """Issue 10's target: the official layout (bias-free breads) with 1000 classes."""
    cfg = load_config(CONFIGS / "imagenet128_hamgan_baby.yaml").model
    G, D = generator_from_config(cfg, spectral_norm=False), discriminator_from_config(cfg, spectral_norm=False)
    assert (num_params(G), num_params(D)) == (42_640_004, 39_475_906)
    assert (expected_g_params(cfg), expected_d_params(cfg)) == (42_640_004, 39_475_906)


@pytest.mark.parametrize("context", ["ham", "attention"])
def test_context_at_64_as_biggan(context):
    cfg = small_cfg(128, context, g=net_cfg(8, context, 64, rank=8), d=net_cfg(8, context, 64, rank=4))
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    y = torch.tensor([1, 2])
    g_in, g_out, x = capture_context(G, torch.randn(2, 16), y)
    d_in, d_out, _ = capture_context(D, x, y)
    assert g_in.shape == (2, 16, 64, 64) and d_in.shape == (2, 8, 64, 64)
    assert torch.equal(g_in, g_out) and torch.equal(d_in, d_out)


def test_identity_at_init_small_attention():
    cfg = small_cfg(32, "attention")
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    y = torch.tensor([0, 9])
    g_in, g_out, x = capture_context(G, torch.randn(2, 16), y)
    d_in, d_out, _ = capture_context(D, x, y)
    assert torch.equal(g_in, g_out) and torch.equal(d_in, d_out)


def test_ham_settings_come_from_config():
    cfg = small_cfg(64, "ham", g=net_cfg(8, "ham", 32, rank=6, kind="cd", steps=3, eval_steps=5, grad="bptt",
                                          groups=2, dim=12))
    G = generator_from_config(cfg)
    ham = G.context
    assert (ham.ham, ham.steps, ham.eval_steps, ham.grad, ham.groups) == ("cd", 3, 5, "bptt", 2)
    assert (ham.dim, ham.rank, ham.channels) == (12, 6, 32)
    d = discriminator_from_config(cfg).context
    assert d.norm is None and (d.ham, d.rank, d.dim) == ("nmf", 4, 8)  # D's own settings, 8 channels at 32x32


@pytest.mark.parametrize("g_context, d_context", [("ham", "none"), ("none", "ham"), ("ylg", "attention"),
                                                  ("attention", "ylg"), ("ham", "ylg")])
def test_each_network_chooses_its_context_block(g_context, d_context):
    # G's block at 32x32 has 64 channels, D's at 8x8 64 (YLG's 8 heads need a multiple of 64)
    cfg = small_cfg(64, channels=16, g=net_cfg(16, g_context, 32), d=net_cfg(16, d_context, 8, rank=4))
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    kinds = {"ham": Hamburger, "attention": SelfAttention, "ylg": YLGAttention, "none": type(None)}
    assert isinstance(G.context, kinds[g_context]) and isinstance(D.context, kinds[d_context])
    x = G(torch.randn(2, 16), torch.tensor([0, 1]))
    assert D(x, torch.tensor([0, 1])).shape == (2,)
    assert num_params(G) == expected_g_params(cfg) and num_params(D) == expected_d_params(cfg)


def test_nmf_in_g_and_cd_in_d():
    cfg = small_cfg(32, g=net_cfg(8, "ham", 16, rank=8, kind="nmf", version="v2"),
                    d=net_cfg(8, "ham", 16, rank=4, kind="cd", steps=2))
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    assert (G.context.ham, G.context.version, G.context.steps) == ("nmf", "v2", 6)
    assert (D.context.ham, D.context.version, D.context.steps) == ("cd", "v1", 2)


def test_ylg_heads_come_from_config():
    cfg = small_cfg(64, channels=16, g=dataclasses.replace(net_cfg(16, "ylg", 32), ylg=YLGConfig(heads=4)),
                    d=net_cfg(16, "ylg", 8))
    assert generator_from_config(cfg).context.heads == 4 and discriminator_from_config(cfg).context.heads == 8


# ------------------------------------------------------------------------------------------------------------------
# The recipe around the layout: batch norm, spectral norm per layer type
# ------------------------------------------------------------------------------------------------------------------


def test_batch_norm_options_reach_every_bn_of_g():
    cfg = load_config(None, ["model.resolution=32", "model.g.channels=8", "model.d.channels=8",
                             "model.g.context_res=16", "model.d.context_res=16", "model.g.ham.rank=4",
                             "model.d.ham.rank=4", "model.g.ham.version=v2", "model.bn.eps=0.01",
                             "model.bn.momentum=0.2", "model.bn.running_var=unbiased"]).model
    G = generator_from_config(cfg)
    bns = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 * 3 + 1 + 1  # 2 CBNs per block, the last BN, the v2 cheese's CBN
    assert all((m.eps, m.momentum) == (0.01, 0.2) for m in bns)
    assert not G.biased_running_var and not any(m.biased_running_var for m in G.modules()
                                                 if isinstance(m, ConditionalBatchNorm2d))
    D = discriminator_from_config(cfg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())  # official D: no BN


def _bounds(net: torch.nn.Module) -> dict[str, set[str]]:
    from hamgan.nn.spectral_norm import SpectralNorm

    out: dict[str, set[str]] = {"context": set(), "network": set()}
    for name, m in net.named_modules():
        if isinstance(m, SpectralNorm):
            out["context" if name.startswith("context.") else "network"].add(m.bound)
    return out


@pytest.mark.parametrize("context", ["ham", "attention", "ylg"])
def test_spectral_norm_bound_per_layer_type_as_tf_gan(context):
    """snconv2d / snlinear / sn_embedding: W / max(1, sigma); sn_conv1x1 in the context block: W / sigma."""
    cfg = small_cfg(64, context, channels=16, d=net_cfg(16, context, 8, rank=4))
    for net in (generator_from_config(cfg), discriminator_from_config(cfg)):
        assert _bounds(net) == {"context": {"exact"}, "network": {"at_most_one"}}
    swapped = dataclasses.replace(cfg, sn=dataclasses.replace(cfg.sn, bound="exact", context_bound="at_most_one"))
    assert _bounds(generator_from_config(swapped)) == {"context": {"at_most_one"}, "network": {"exact"}}


def test_spectral_norm_eval_iteration_and_warmup_come_from_config():
    from hamgan.nn.spectral_norm import spectral_norms

    cfg = small_cfg(32, "attention")
    assert {(p.eval_iteration, p.warmup) for p in spectral_norms(generator_from_config(cfg))} == {(True, 0)}
    torch_like = dataclasses.replace(cfg, sn=dataclasses.replace(cfg.sn, eval_iteration=False, warmup=15))
    D = discriminator_from_config(torch_like)
    assert {(p.eval_iteration, p.warmup) for p in spectral_norms(D)} == {(False, 15)}


# ------------------------------------------------------------------------------------------------------------------
# Conditioning
# ------------------------------------------------------------------------------------------------------------------


def test_projection_term_depends_on_label():
    torch.manual_seed(0)
    cfg = small_cfg(32, "none")
    D = discriminator_from_config(cfg).eval()  # eval: spectral norm's power iteration leaves the weights alone
    x = torch.randn(3, 3, 32, 32)
    a, b = D(x, torch.tensor([0, 1, 2])), D(x, torch.tensor([3, 4, 5]))
    assert not torch.allclose(a, b)
    # and exactly through <embedding(y), h>: the difference is <e(y1) - e(y2), h>
    h = {}

    def hook(module, args, out):
        h["h"] = args[0]  # the sum-pooled features (B, C)

    handle = D.linear.register_forward_hook(hook)
    D(x, torch.tensor([0, 1, 2]))
    handle.remove()
    e = D.embedding.weight
    torch.testing.assert_close(a - b, ((e[[0, 1, 2]] - e[[3, 4, 5]]) * h["h"]).sum(1))


def test_generator_depends_on_label_through_cbn():
    torch.manual_seed(0)
    cfg = small_cfg(32, "ham")
    G = generator_from_config(cfg).eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    z = torch.randn(1, 16).repeat(2, 1)
    x = G(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])


# ------------------------------------------------------------------------------------------------------------------
# Init
# ------------------------------------------------------------------------------------------------------------------


def weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [
        m.parametrizations.weight.original
        for m in net.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))
    ]


def test_init_normal_has_std_002():
    G = generator_from_config(small_cfg(32, "ham", channels=16, init="normal"))
    w = torch.cat([t.flatten() for t in weights(G)])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert all(m.bias.abs().max() == 0 for m in G.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None)


def test_init_orthogonal_rows_are_orthonormal():
    D = discriminator_from_config(small_cfg(32, "attention", channels=16, init="orthogonal"))
    w = D.blocks[1].conv1.parametrizations.weight.original.flatten(1)  # (64, 576): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)


def glorot_bound(m: torch.nn.Conv2d | torch.nn.Linear | torch.nn.Embedding) -> float:
    """sqrt(6 / (fan_in + fan_out)) with the fans of torch.nn.init._calculate_fan_in_and_fan_out (equal to TF's
    VarianceScaling fans for convs and linears). The embedding table (num_classes, dim): torch takes fan_in = dim,
    fan_out = num_classes; TF's VarianceScaling for the [num_classes, dim] variable takes them the other way round;
    fan_avg only uses their sum, so both give sqrt(6 / (num_classes + dim))."""
    if isinstance(m, torch.nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        fans = m.in_channels * k + m.out_channels * k
    elif isinstance(m, torch.nn.Linear):
        fans = m.in_features + m.out_features
    else:
        fans = m.num_embeddings + m.embedding_dim
    return (6 / fans) ** 0.5


# (G context settings, D context settings, the weight layers expected inside G's and D's context blocks)
XAVIER_CASES = {
    "g_ham_v1_d_attention": (
        net_cfg(8, "ham", 32, rank=8), net_cfg(8, "attention", 32),
        {"context.lower", "context.upper"}, {"context.theta", "context.phi", "context.g", "context.out"}),
    "g_attention_d_ham_v2_bread_bias": (
        net_cfg(8, "attention", 32), net_cfg(8, "ham", 32, rank=4, version="v2", bread_bias=True),
        {"context.theta", "context.phi", "context.g", "context.out"},
        {"context.lower", "context.cheese", "context.upper"}),
    "g_ham_v2_bread_bias_d_ylg": (
        net_cfg(8, "ham", 32, rank=8, version="v2", bread_bias=True),
        NetConfig(channels=8, context="ylg", context_res=32, ylg=YLGConfig(heads=1)),
        {"context.lower", "context.cheese", "context.upper"},
        {"context.theta", "context.phi", "context.g", "context.out"}),
}


@pytest.mark.parametrize("case", sorted(XAVIER_CASES))
def test_init_xavier_bounds_every_conv_linear_and_embedding(case):
    """HamGAN-128's layout (narrow, 10 classes): every conv, linear and embedding weight of G and D, the context
    blocks' 1x1 convs and D's class embedding included, is Glorot uniform on its own bound; every bias is 0."""
    g, d, g_context, d_context = XAVIER_CASES[case]
    torch.manual_seed(0)
    cfg = small_cfg(128, init="xavier", g=g, d=d)
    for net, context in ((generator_from_config(cfg), g_context), (discriminator_from_config(cfg), d_context)):
        layers = {n: m for n, m in net.named_modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))}
        assert context <= set(layers) and "linear" in layers
        assert ("embedding" in layers) == isinstance(net, Discriminator)  # D's class embedding
        for name, m in layers.items():
            w = m.parametrizations.weight.original  # the learnable weight under hamgan's spectral norm
            bound = glorot_bound(m)
            assert bound == (6 / sum(torch.nn.init._calculate_fan_in_and_fan_out(w))) ** 0.5, name
            peak = w.abs().max().item()
            assert 0 < peak <= bound * (1 + 1e-6), (name, peak, bound)
            if w.numel() >= 200:  # P(max |w| <= 0.9 a) = 0.9^n < 1e-9
                assert peak > 0.9 * bound, (name, peak, bound)
            bias = getattr(m, "bias", None)
            assert bias is None or torch.equal(bias, torch.zeros_like(bias)), name
        if "context.lower" in context:  # the lower bread has a bias exactly with bread_bias (checked 0 above)
            assert (layers["context.lower"].bias is not None) == ("bread_bias" in case)


def test_init_xavier_embedding_bound_uses_classes_plus_dim():
    torch.manual_seed(0)
    D = discriminator_from_config(small_cfg(32, "none", channels=16, num_classes=50, init="xavier"))
    w = D.embedding.parametrizations.weight.original  # D's class embedding: (num_classes, 4 * df) = (50, 64)
    assert w.shape == (50, 64)
    bound = (6 / (50 + 64)) ** 0.5
    assert bound * 0.9 < w.abs().max() <= bound
    # torch's fans for the table, swapped with respect to TF's [num_classes, dim] VarianceScaling, same sum
    assert torch.nn.init._calculate_fan_in_and_fan_out(w) == (64, 50)


# ------------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------------


def test_invalid_context_res_lists_valid_values():
    with pytest.raises(ValueError, match=r"context_res=48 \(config: model.g.context_res\).*\[8, 16, 32, 64, 128\]"):
        generator_from_config(small_cfg(128, "ham", g=net_cfg(8, "ham", 48)))
    with pytest.raises(ValueError, match=r"context_res=32 \(config: model.d.context_res\).*\[16, 8\]"):
        discriminator_from_config(small_cfg(32, "attention", d=net_cfg(8, "attention", 32)))
    # irrelevant without a context block
    discriminator_from_config(small_cfg(32, "none", d=net_cfg(8, "none", 32)))


def test_bad_inputs_raise_clear_errors():
    cfg = small_cfg(32, "none")
    G, D = generator_from_config(cfg), discriminator_from_config(cfg)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"z must have shape \(B, 16\)"):
        G(torch.randn(2, 17), y)
    with pytest.raises(ValueError, match=r"\[0, 10\).*\[0, 10\]"):
        G(torch.randn(2, 16), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        D(torch.randn(2, 3, 32, 32), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        G(torch.randn(2, 16), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class labels"):
        G(torch.randn(2, 16), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 32, 32\)"):
        D(torch.randn(2, 3, 64, 64), y)
    with pytest.raises(ValueError, match="resolution must be one of"):
        generator_from_config(dataclasses.replace(cfg, resolution=256))


# ------------------------------------------------------------------------------------------------------------------
# Plain arguments: the networks without hamgan.config
# ------------------------------------------------------------------------------------------------------------------


PACKAGE = Path(__file__).resolve().parents[2] / "hamgan"


def hamgan_imports(module: str) -> set[str]:
    """The hamgan modules that importing ``module`` loads, read from the source (every import statement, also inside
    functions), with their parent packages, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            parent = ".".join(parts[:i])
            if parent in seen:
                continue
            seen.add(parent)
            path = PACKAGE.parent.joinpath(*parent.split("."))
            path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    todo += [a.name for a in node.names if a.name.split(".")[0] == "hamgan"]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hamgan":
                    for a in node.names:
                        sub = f"{node.module}.{a.name}"
                        is_module = PACKAGE.parent.joinpath(*sub.split(".")).with_suffix(".py").is_file() or \
                            PACKAGE.parent.joinpath(*sub.split(".")).is_dir()
                        todo.append(sub if is_module else node.module)
    return seen


def test_hamgan_nn_does_not_import_hamgan_config():
    """hamgan.nn (networks, context specs, blocks) loads nothing of hamgan.config; only hamgan.nn.from_config does."""
    loaded = hamgan_imports("hamgan.nn")
    assert {"hamgan.nn.networks", "hamgan.nn.context", "hamgan.nn.hamburger", "hamgan.tf32"} <= loaded
    assert "hamgan.config" not in loaded and "hamgan.nn.from_config" not in loaded
    assert "hamgan.config" in hamgan_imports("hamgan.nn.from_config")  # the check sees the import where it is


def test_networks_from_plain_arguments():
    torch.manual_seed(0)
    G = Generator(resolution=32, num_classes=10, channels=8, z_dim=64, img_channels=1,
                  context=HamburgerSpec(rank=4, steps=2), context_res=16)
    D = Discriminator(resolution=32, num_classes=10, channels=8, img_channels=1, context=YLGSpec(heads=2),
                      context_res=8)
    y = torch.tensor([0, 9])
    x = G(torch.randn(2, 64), y)
    assert x.shape == (2, 1, 32, 32) and D(x, y).shape == (2,)
    assert (G.z_dim, G.num_classes, G.resolution, G.img_channels, G.base_channels) == (64, 10, 32, 1, 32)
    assert G.context_position == 1 and isinstance(G.context, Hamburger)
    assert isinstance(G.context.norm, ConditionalBatchNorm2d)  # G's context block is class-conditional
    assert (G.context.channels, G.context.dim, G.context.rank, G.context.steps) == (32, 32, 4, 2)
    assert D.context_position == 1 and isinstance(D.context, YLGAttention) and D.context.heads == 2
    assert G.biased_running_var  # the official batch norm by default
    plain = Generator(32, 10, 8, context=AttentionSpec(), sn=False)  # sn=False: no spectral norm, context included
    assert isinstance(plain.context, SelfAttention) and not any(hasattr(m, "parametrizations") for m in plain.modules())
    assert Generator(32, 10, 8).context is None and Generator(32, 10, 8).context_position is None


@pytest.mark.parametrize("net, kwargs, message", [
    ("G", {"context_res": 48}, r"context_res=48 \(config: model.g.context_res\) is impossible at resolution 128: "
                               r"the generator's context block must sit at one of \[8, 16, 32, 64, 128\]"),
    ("D", {"resolution": 32}, r"context_res=32 \(config: model.d.context_res\) .* one of \[16, 8\]"),
    ("G", {"channels": 0}, r"channels of the generator must be an integer >= 1 \(config: model.g.channels\), got 0"),
    ("D", {"channels": 0}, r"channels of the discriminator must .* \(config: model.d.channels\), got 0"),
    ("G", {"z_dim": 0}, r"z_dim of the generator must be an integer >= 1 \(config: model.z_dim\), got 0"),
    ("D", {"num_classes": 2.5}, r"num_classes .* \(config: model.num_classes\), got 2.5"),
    ("G", {"resolution": 48}, r"resolution must be one of \[32, 64, 128\] \(config: model.resolution\), got 48"),
    ("D", {"context": "ham"}, r"context of the discriminator must be None or one of HamburgerSpec, AttentionSpec, "
                              r"YLGSpec \(hamgan.nn.context\), got 'ham'"),
])
def test_bad_plain_arguments_name_the_argument_and_the_valid_values(net, kwargs, message):
    args = {"resolution": 128, "num_classes": 10, "channels": 2, "context": AttentionSpec(), **kwargs}
    with pytest.raises(ValueError, match=message):
        (Generator if net == "G" else Discriminator)(**args)
