"""hamgan.nn.from_config: a ``model`` config builds the same networks as the equivalent plain arguments (state dict,
outputs), the networks' defaults are the official recipe (the config's defaults), and bad contexts are named."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from hamgan.config import BNConfig, HamConfig, ModelConfig, NetConfig, SNConfig, YLGConfig, load_config
from hamgan.nn import AttentionSpec, Discriminator, Generator, HamburgerSpec, YLGSpec
from hamgan.nn.from_config import (bn_options, context_spec, discriminator_from_config, generator_from_config,
                                   sn_options)
from hamgan.nn.layers import BNOptions
from hamgan.nn.networks import TF_BN, TF_CONTEXT_SN, TF_SN
from hamgan.nn.spectral_norm import SNOptions

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# Every field away from its default, so that a field the builder drops or swaps changes the network.
G_HAM = HamConfig(kind="cd", steps=3, eval_steps=5, grad="bptt", version="v2", groups=2, dim=12, rank=6,
                  bread_bias=True, v2_cheese="legacy")
D_HAM = HamConfig(kind="vq", steps=2, rank=4, dim=None)
CONTEXTS = {  # (G's, D's) network config and the plain context arguments they stand for
    "ham": (NetConfig(channels=8, context="ham", context_res=16, ham=G_HAM),
            NetConfig(channels=4, context="ham", context_res=8, ham=D_HAM),
            HamburgerSpec(kind="cd", steps=3, eval_steps=5, grad="bptt", version="v2", groups=2, dim=12, rank=6,
                          bread_bias=True, cheese="legacy"),
            HamburgerSpec(kind="vq", steps=2, rank=4)),
    "attention": (NetConfig(channels=8, context="attention", context_res=16),
                  NetConfig(channels=4, context="attention", context_res=8), AttentionSpec(), AttentionSpec()),
    "ylg": (NetConfig(channels=8, context="ylg", context_res=16, ylg=YLGConfig(heads=2)),
            NetConfig(channels=4, context="ylg", context_res=16, ylg=YLGConfig(heads=1)), YLGSpec(heads=2),
            YLGSpec(heads=1)),
    "none": (NetConfig(channels=8, context="none", context_res=32), NetConfig(channels=4, context="none"), None,
             None),
}


def assert_same_network(built: torch.nn.Module, plain: torch.nn.Module, *inputs: torch.Tensor) -> None:
    """Same state-dict keys in the same order, equal tensors, and equal outputs in train and eval mode."""
    a, b = built.state_dict(), plain.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert repr(built) == repr(plain)
    for train in (True, False):
        outputs = []
        for net in (built, plain):
            net.train(train)
            torch.manual_seed(1)  # the Hamburger's random bases
            with torch.no_grad():
                outputs.append(net(*inputs))
        assert torch.equal(*outputs)


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_builder_equals_plain_arguments(context):
    g, d, g_spec, d_spec = CONTEXTS[context]
    cfg = ModelConfig(resolution=32, img_channels=1, num_classes=10, z_dim=16, init="orthogonal",
                      bn=BNConfig(eps=0.01, momentum=0.2, running_var="unbiased"),
                      sn=SNConfig(bound="exact", context_bound="at_most_one", eval_iteration=False, warmup=2), g=g, d=d)
    bn = BNOptions(eps=0.01, momentum=0.2, biased_running_var=False)
    sn, context_sn = SNOptions("exact", False, 2), SNOptions("at_most_one", False, 2)
    G = generator_from_config(cfg, seed=3)
    plain_g = Generator(resolution=32, num_classes=10, channels=8, z_dim=16, img_channels=1, context=g_spec,
                        context_res=16, init="orthogonal", bn=bn, sn=sn, context_sn=context_sn, seed=3)
    D = discriminator_from_config(cfg, seed=3)
    plain_d = Discriminator(resolution=32, num_classes=10, channels=4, img_channels=1, context=d_spec,
                            context_res=d.context_res, init="orthogonal", bn=bn, sn=sn, context_sn=context_sn, seed=3)
    y = torch.tensor([0, 9, 3])
    assert_same_network(G, plain_g, torch.randn(3, 16), y)
    assert_same_network(D, plain_d, torch.randn(3, 1, 32, 32), y)
    assert G.biased_running_var is plain_g.biased_running_var is False


def test_builder_equals_plain_arguments_for_the_hamgan_baby_config():
    """configs/imagenet128_hamgan_baby.yaml (narrowed to gf = df = 4 to stay fast) is the networks' defaults: the
    official recipe, with the Hamburgers of the official code."""
    cfg = load_config(CONFIGS / "imagenet128_hamgan_baby.yaml", ["model.g.channels=4", "model.d.channels=4"]).model
    G = Generator(resolution=128, num_classes=1000, channels=4, context=HamburgerSpec(dim=256, rank=32), seed=0)
    D = Discriminator(resolution=128, num_classes=1000, channels=4, context=HamburgerSpec(dim=128, rank=16), seed=0)
    y = torch.tensor([0, 999])
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert_same_network(generator_from_config(cfg, seed=0), G, torch.randn(2, 128), y)
    assert_same_network(discriminator_from_config(cfg, seed=0), D, x, y)


def test_builder_without_spectral_norm():
    cfg = load_config(None, ["model.resolution=32", "model.g.channels=2", "model.d.channels=2", "model.num_classes=3",
                             "model.g.context_res=16", "model.d.context_res=16", "model.g.ham.rank=4",
                             "model.d.ham.rank=4"]).model
    for net in (generator_from_config(cfg, spectral_norm=False), discriminator_from_config(cfg, spectral_norm=False)):
        assert not any(hasattr(m, "parametrizations") for m in net.modules())
    assert sn_options(cfg, spectral_norm=False) == (False, False)


def test_network_defaults_are_the_config_defaults():
    """The official recipe in both places: the networks' defaults equal what the default ModelConfig maps to."""
    cfg = ModelConfig()
    assert bn_options(cfg) == TF_BN and sn_options(cfg) == (TF_SN, TF_CONTEXT_SN)
    for net in (Generator, Discriminator):
        defaults = {k: p.default for k, p in inspect.signature(net).parameters.items()}
        assert (defaults["init"], defaults["img_channels"], defaults["context_res"]) == (
            cfg.init, cfg.img_channels, cfg.g.context_res)
        assert (defaults["bn"], defaults["sn"]) == (TF_BN, TF_SN)
    assert inspect.signature(Generator).parameters["z_dim"].default == cfg.z_dim
    assert context_spec(NetConfig(ham=HamConfig())) == HamburgerSpec()  # the Hamburger's defaults too


def test_context_spec_of_every_context():
    assert context_spec(NetConfig(context="none")) is None
    assert context_spec(NetConfig(context="attention")) == AttentionSpec()
    assert context_spec(NetConfig(context="ylg", ylg=YLGConfig(heads=4))) == YLGSpec(heads=4)
    assert context_spec(NetConfig(context="ham", ham=G_HAM)) == CONTEXTS["ham"][2]
    with pytest.raises(ValueError, match=r"context must be 'none', 'ham', 'attention' or 'ylg', got 'mlp'"):
        context_spec(NetConfig(context="mlp"))
