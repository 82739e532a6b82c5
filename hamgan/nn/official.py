"""Where each layer of hamgan's G and D lives in the official code: its TensorFlow variable scope.

The official HamGAN code (github.com/Gsunshine/Enjoy-Hamburger, gan/HamGAN) and YLG are TF-GAN's
``self_attention_estimator`` with the context block replaced; all keep TF-GAN's scopes::

    generator/g_snh0/dense                       linear z -> 4x4x16gf       (kernel, bias)
    generator/g_block{k}/cbn_0, cbn_1            conditional BNs            (gamma, beta, moving_mean, ...)
    generator/g_block{k}/snconv{1,2,3}/snconv{.} 3x3, 3x3, 1x1 shortcut     (kernel, bias)
    generator/g_ops/...                          the context block after g_block3
    generator/g_bn, g_snconv_last/g_snconv_last  last BN, output conv
    discriminator/d_optimized_block1, d_block{k}/sn_conv{1,2,3}/sn_conv{.}
    discriminator/d_ops/...                      the context block after d_block2
    discriminator/d_sn_linear/dense, d_embedding (kernel, bias; embedding_map)

Context blocks: ``sn_conv_theta``, ``sn_conv_phi``, ``sn_conv_g``, ``sn_conv_attn`` (``weights``) and
``sigma_ratio`` (SAGAN's ``sn_non_local_block_sim``, YLG's ``sn_attention_block_sim``); ``sn_lower_bread``,
``sn_upper_bread``, ``upper_bread_bn``, ``sn_cheese``, ``cheese_bn``, ``sigma_ratio`` (HamGAN's
``sn_hamburger_v1`` / ``v2``). :func:`official_scope` maps a module path of hamgan's networks to these scopes; used by
``hamgan.info`` (the layout table) and ``scripts/check_tfgan_parity.py`` (copying weights into TF-GAN).
"""

from __future__ import annotations

import re

CONTEXT_SCOPES = {
    "theta": "sn_conv_theta", "phi": "sn_conv_phi", "g": "sn_conv_g", "out": "sn_conv_attn", "gamma": "sigma_ratio",
    "lower": "sn_lower_bread", "upper": "sn_upper_bread", "norm": "upper_bread_bn", "cheese": "sn_cheese",
    "cheese_norm": "cheese_bn", "sigma": "sigma_ratio",
}  # fmt: skip
G_BLOCK_LAYERS = {"bn1": "cbn_0", "conv1": "snconv1/snconv1", "bn2": "cbn_1", "conv2": "snconv2/snconv2",
                  "shortcut": "snconv3/snconv3"}
D_BLOCK_LAYERS = {"conv1": "sn_conv1/sn_conv1", "conv2": "sn_conv2/sn_conv2", "shortcut": "sn_conv3/sn_conv3"}


def official_scope(net: str, path: str) -> str | None:
    """The TF scope of the layer at module ``path`` of hamgan's ``net`` ("G" or "D"), e.g.
    ``official_scope("G", "blocks.2.conv1") == "generator/g_block3/snconv1/snconv1"``; None when the official code
    has no such layer (e.g. the legacy v2 cheese)."""
    if net not in ("G", "D"):
        raise ValueError(f"net must be 'G' or 'D', got {net!r}")
    root, ops = ("generator", "g_ops") if net == "G" else ("discriminator", "d_ops")
    if path.startswith("context."):
        name = CONTEXT_SCOPES.get(path.split(".", 1)[1])
        return f"{root}/{ops}/{name}" if name else None
    if path == "context":
        return f"{root}/{ops}"
    block = re.fullmatch(r"blocks\.(\d+)\.(\w+)", path)
    if net == "G":
        if block:
            layer = G_BLOCK_LAYERS.get(block.group(2))
            return f"generator/g_block{int(block.group(1)) + 1}/{layer}" if layer else None
        return {"linear": "generator/g_snh0/dense", "bn": "generator/g_bn",
                "conv_out": "generator/g_snconv_last/g_snconv_last"}.get(path)
    if block:
        k, layer = int(block.group(1)), D_BLOCK_LAYERS.get(block.group(2))
        name = "d_optimized_block1" if k == 0 else f"d_block{k + 1}"
        return f"discriminator/{name}/{layer}" if layer else None
    return {"linear": "discriminator/d_sn_linear/dense", "embedding": "discriminator/d_embedding"}.get(path)


__all__ = ["official_scope"]
