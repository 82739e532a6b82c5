"""A run's ``model`` config mapped onto the plain arguments of :class:`~hamgan.nn.networks.Generator` and
:class:`~hamgan.nn.networks.Discriminator`: the one place of :mod:`hamgan.nn` that reads :mod:`hamgan.config`.

    ModelConfig field                   network argument
    resolution, num_classes             resolution, num_classes
    z_dim (G), img_channels, init       z_dim, img_channels, init
    g.channels / d.channels             channels
    g.context / d.context (+ ham, ylg)  context (:func:`context_spec`: None, HamburgerSpec, AttentionSpec, YLGSpec)
    g.context_res / d.context_res       context_res
    bn                                  bn (:func:`bn_options`)
    sn.bound / sn.context_bound, ...    sn / context_sn (:func:`sn_options`)
"""

from __future__ import annotations

from hamgan.config import ModelConfig, NetConfig
from hamgan.nn.context import AttentionSpec, ContextSpec, HamburgerSpec, YLGSpec
from hamgan.nn.layers import BNOptions
from hamgan.nn.networks import Discriminator, Generator
from hamgan.nn.spectral_norm import SNOptions


def bn_options(cfg: ModelConfig) -> BNOptions:
    """The batch-norm options of ``cfg.bn``."""
    return BNOptions(cfg.bn.eps, cfg.bn.momentum, biased_running_var=cfg.bn.running_var == "biased")


def sn_options(cfg: ModelConfig, spectral_norm: bool = True) -> tuple[SNOptions | bool, SNOptions | bool]:
    """Spectral-norm options (residual-network layers, context-block 1x1 convs) of ``cfg.sn``; False, False when
    ``spectral_norm`` is off."""
    if not spectral_norm:
        return False, False
    sn = cfg.sn
    return (SNOptions(sn.bound, sn.eval_iteration, sn.warmup),
            SNOptions(sn.context_bound, sn.eval_iteration, sn.warmup))


def context_spec(net: NetConfig) -> ContextSpec | None:
    """The context block of one network's config (``model.g`` or ``model.d``); None for ``context: none``."""
    if net.context == "none":
        return None
    if net.context == "attention":
        return AttentionSpec()
    if net.context == "ylg":
        return YLGSpec(heads=net.ylg.heads)
    if net.context == "ham":
        ham = net.ham
        return HamburgerSpec(kind=ham.kind, steps=ham.steps, eval_steps=ham.eval_steps, grad=ham.grad,
                             version=ham.version, groups=ham.groups, dim=ham.dim, rank=ham.rank,
                             bread_bias=ham.bread_bias, cheese=ham.v2_cheese)
    raise ValueError(f"a network's context must be 'none', 'ham', 'attention' or 'ylg', got {net.context!r}")


def generator_from_config(cfg: ModelConfig, spectral_norm: bool = True, seed: int | None = None) -> Generator:
    """The generator of ``cfg`` (``model``). ``spectral_norm=False``: no spectral norm anywhere (the same parameter
    count and MACs, for cheap analysis); ``seed``: paired initialisation (see :class:`Generator`)."""
    sn, context_sn = sn_options(cfg, spectral_norm)
    return Generator(cfg.resolution, cfg.num_classes, cfg.g.channels, z_dim=cfg.z_dim, img_channels=cfg.img_channels,
                     context=context_spec(cfg.g), context_res=cfg.g.context_res, init=cfg.init, bn=bn_options(cfg),
                     sn=sn, context_sn=context_sn, seed=seed)


def discriminator_from_config(cfg: ModelConfig, spectral_norm: bool = True, seed: int | None = None) -> Discriminator:
    """The discriminator of ``cfg`` (``model``); arguments as :func:`generator_from_config`."""
    sn, context_sn = sn_options(cfg, spectral_norm)
    return Discriminator(cfg.resolution, cfg.num_classes, cfg.d.channels, img_channels=cfg.img_channels,
                         context=context_spec(cfg.d), context_res=cfg.d.context_res, init=cfg.init,
                         bn=bn_options(cfg), sn=sn, context_sn=context_sn, seed=seed)


__all__ = ["bn_options", "context_spec", "discriminator_from_config", "generator_from_config", "sn_options"]
