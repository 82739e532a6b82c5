"""Where every variable of an official TF checkpoint goes in hamgan's G and D: names, layouts, the explicit rules.

The official HamGAN code and TF-GAN's SAGAN example build G and D under the estimator's scopes ``Generator/`` and
``Discriminator/`` (the *roots*) with the layer scopes of :func:`hamgan.nn.official.official_scope`. For a layer
at hamgan path ``P`` with TF scope ``S`` and root ``R`` (``W`` = ``kernel``, or ``weights`` inside a context
block):

TF variable, shape                                      hamgan state-dict key (under P), shape       layout
R S/W  (kh, kw, in, out)                                 .parametrizations.weight.original (out, in, kh, kw)  HWIO->OIHW
R S/kernel  (in, out)                                    .parametrizations.weight.original (out, in)  transpose
R S/R S/W/spectral_normalize/spectral_norm/spectral_norm_u  (fan_in, 1)
                                                         .parametrizations.weight.0._v (fan_in,)      see below
R S/embedding_map  (classes, dim)                        .parametrizations.weight.original            as is
R S/spectral_normalize/spectral_norm/spectral_norm_u  (dim, 1)   .parametrizations.weight.0._v (dim,) flatten
R S/bias  (out,)                                         .bias                                        as is
R S/gamma, R S/beta  CBN (classes, 1, 1, C)              .gain, .bias (classes, C)                    reshape
R S/gamma, R S/beta  BN (1, 1, 1, C)                     .weight, .bias (C,)                          reshape
R S/moving_mean, R S/moving_variance  (C,)               [.bn].running_mean, [.bn].running_var        as is
R <net>/<ops>/sigma_ratio  ()                            context.sigma (Hamburger), context.gamma     as is

- **The generator's first dense layer** (z -> 4 x 4 x 16gf): TF reshapes its output to (4, 4, C), hamgan views it
  as (C, 4, 4); its kernel columns and bias are permuted (:func:`g_linear_order`).
- **Spectral-norm vectors**: TF-GAN reshapes a kernel to the matrix ``W_tf`` (kh*kw*in, out) and keeps
  ``u`` (kh*kw*in, 1); one power iteration is ``v = normalize(W_tf^T u)``, ``u = normalize(W_tf v)``,
  ``sigma = u^T W_tf v``. hamgan's matrix is ``W = W_tf^T`` (out, in*kh*kw): TF's ``u`` is hamgan's ``_v`` (the
  fan-in side), reordered from (kh, kw, in) to (in, kh, kw); the iteration and sigma are then the same numbers.
  hamgan's ``_u`` (out,) is not stored by TF: it is set to ``normalize(W _v)``, TF's ``v`` of the next iteration.
- **Batch norm**: TF's moving statistics (decay 0.999, biased batch variance) are hamgan's running statistics under
  ``model.bn: {momentum: 0.001, running_var: biased}``; ``num_batches_tracked`` is set to the step.

**Roots** (the explicit rule for prefixed names, e.g. a TPU or outer scope): the G root is the text before
``generator/g_snh0/dense/kernel``, the D root the text before ``discriminator/d_sn_linear/dense/kernel``, each
either empty or ending in ``/``. Every other name must then be exactly the template above with these roots
(spectral-norm names repeat the root, as TF-GAN builds them from the kernel's full name). Nothing is matched
fuzzily: a name that is not a template, an optimizer slot or a counter (:func:`optimizer_variable`) is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from hamgan.nn.layers import ConditionalBatchNorm2d
from hamgan.nn.networks import G_BASE_RES
from hamgan.nn.official import official_scope

U_SUFFIX = "spectral_normalize/spectral_norm/spectral_norm_u"
DEFAULT_ROOTS = {"G": "Generator/", "D": "Discriminator/"}
ANCHORS = {"G": "generator/g_snh0/dense/kernel", "D": "discriminator/d_sn_linear/dense/kernel"}
ADAM_SLOTS = ("Adam", "Adam_1")  # tf.train.AdamOptimizer's first and second moments, "<variable>/Adam[_1]"
COUNTERS = re.compile(r"(?:.*/)?(?:global_step|beta[12]_power(?:_\d+)?)")  # Adam's beta^t and the step


@dataclass(frozen=True)
class Entry:
    """One TF variable and the hamgan tensor it fills.

    ``kind`` says how the layout changes (:func:`to_hamgan`): ``conv``, ``dense``, ``dense_g`` (the generator's
    first dense layer, columns permuted), ``bias_g`` (its bias), ``u_conv`` / ``u`` (spectral-norm vectors of a conv /
    of a dense layer or embedding), ``reshape`` (gammas and betas), ``same``.
    """

    tf_name: str
    tf_shape: tuple[int, ...]
    net: str  # "G" or "D"
    key: str  # state-dict key in that network
    shape: tuple[int, ...]  # hamgan shape
    kind: str
    trainable: bool
    conv_fan_in: tuple[int, int, int] | None = None  # (in, kh, kw) of a conv's spectral-norm vector


def g_linear_order(features: int) -> np.ndarray:
    """TF column j of the generator's dense layer (j over (4, 4, C)) is hamgan row ``order[j]`` (over (C, 4, 4))."""
    if features % (G_BASE_RES * G_BASE_RES):
        raise ValueError(f"the generator's linear layer has {features} outputs, not a multiple of {G_BASE_RES ** 2}")
    return np.arange(features).reshape(-1, G_BASE_RES, G_BASE_RES).transpose(1, 2, 0).reshape(-1)


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` in C order; unlike np.ascontiguousarray, a scalar stays 0-d (sigma_ratio has shape ())."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def to_hamgan(entry: Entry, value: np.ndarray) -> np.ndarray:
    """The TF array ``value`` (shape ``entry.tf_shape``) in hamgan's layout (shape ``entry.shape``)."""
    value = np.asarray(value)
    if entry.kind == "conv":  # (kh, kw, in, out) -> (out, in, kh, kw)
        out = value.transpose(3, 2, 0, 1)
    elif entry.kind == "dense":  # (in, out) -> (out, in)
        out = value.T
    elif entry.kind == "dense_g":
        out = np.empty(entry.shape, value.dtype)
        out[g_linear_order(entry.shape[0])] = value.T
    elif entry.kind == "bias_g":
        out = np.empty(entry.shape, value.dtype)
        out[g_linear_order(entry.shape[0])] = value
    elif entry.kind == "u_conv":  # (kh*kw*in, 1) over (kh, kw, in) -> (in*kh*kw,) over (in, kh, kw)
        cin, kh, kw = entry.conv_fan_in
        out = value.reshape(kh, kw, cin).transpose(2, 0, 1).reshape(-1)
    else:  # u, reshape, same
        out = value.reshape(entry.shape)
    return _contiguous(out)


def to_tf(entry: Entry, value: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_hamgan`: a hamgan array in TF's layout (shape ``entry.tf_shape``)."""
    value = np.asarray(value)
    if entry.kind == "conv":
        out = value.transpose(2, 3, 1, 0)
    elif entry.kind == "dense":
        out = value.T
    elif entry.kind == "dense_g":
        out = value[g_linear_order(entry.shape[0])].T
    elif entry.kind == "bias_g":
        out = value[g_linear_order(entry.shape[0])]
    elif entry.kind == "u_conv":
        cin, kh, kw = entry.conv_fan_in
        out = value.reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1, 1)
    else:
        out = value.reshape(entry.tf_shape)
    return _contiguous(out)


def _sn_entries(net: str, root: str, scope: str, path: str, m: nn.Module) -> list[Entry]:
    """The weight, bias and spectral-norm vector of an SN conv, linear or embedding."""
    if not hasattr(m, "parametrizations"):
        raise ValueError(f"{net} layer {path!r} is not spectrally normalised; official checkpoints are (model.sn)")
    w = m.parametrizations.weight.original
    shape = tuple(w.shape)
    wkey, vkey = f"{path}.parametrizations.weight.original", f"{path}.parametrizations.weight.0._v"
    fan_in = int(np.prod(shape[1:]))
    entries: list[Entry] = []
    if isinstance(m, nn.Conv2d):
        out_ch, cin, kh, kw = shape
        wname = "weights" if path.startswith("context.") else "kernel"
        entries.append(Entry(f"{root}{scope}/{wname}", (kh, kw, cin, out_ch), net, wkey, shape, "conv", True))
        entries.append(Entry(f"{root}{scope}/{root}{scope}/{wname}/{U_SUFFIX}", (fan_in, 1), net, vkey,
                                 (fan_in,), "u_conv", False, conv_fan_in=(cin, kh, kw)))
    elif isinstance(m, nn.Linear):
        first_g = net == "G" and path == "linear"
        entries.append(Entry(f"{root}{scope}/kernel", shape[::-1], net, wkey, shape, "dense_g" if first_g else "dense",
                             True))
        entries.append(Entry(f"{root}{scope}/{root}{scope}/kernel/{U_SUFFIX}", (fan_in, 1), net, vkey, (fan_in,), "u",
                             False))
    else:  # embedding: TF-GAN normalises the transpose of the map; its u lies on the embedding dimension
        entries.append(Entry(f"{root}{scope}/embedding_map", shape, net, wkey, shape, "same", True))
        entries.append(Entry(f"{root}{scope}/{U_SUFFIX}", (fan_in, 1), net, vkey, (fan_in,), "u", False))
    bias = getattr(m, "bias", None)
    if bias is not None:
        kind = "bias_g" if net == "G" and path == "linear" else "same"
        entries.append(Entry(f"{root}{scope}/bias", tuple(bias.shape), net, f"{path}.bias", tuple(bias.shape), kind,
                             True))
    return entries


def _bn_entries(net: str, root: str, scope: str, path: str, m: nn.Module) -> list[Entry]:
    """gamma, beta and the moving statistics of a (conditional) batch norm."""
    if isinstance(m, ConditionalBatchNorm2d):
        classes, channels = m.gain.shape
        affine = [("gamma", f"{path}.gain"), ("beta", f"{path}.bias")]
        tf_shape, shape, stats = (classes, 1, 1, channels), (classes, channels), f"{path}.bn"
    else:
        if not m.affine:
            raise ValueError(f"{net} batch norm {path!r} has no gain and bias; the official g_bn has them")
        channels = m.num_features
        affine = [("gamma", f"{path}.weight"), ("beta", f"{path}.bias")]
        tf_shape, shape, stats = (1, 1, 1, channels), (channels,), path
    entries = [Entry(f"{root}{scope}/{name}", tf_shape, net, key, shape, "reshape", True) for name, key in affine]
    for name, buffer in (("moving_mean", "running_mean"), ("moving_variance", "running_var")):
        key = f"{stats}.{buffer}"
        entries.append(Entry(f"{root}{scope}/{name}", (channels,), net, key, (channels,), "same", False))
    return entries


def layout(module: nn.Module, net: str, root: str | None = None) -> list[Entry]:
    """Every TF variable of the official graph of hamgan's ``module`` (G or D, ``net`` "G" / "D") under ``root``
    (default ``Generator/`` / ``Discriminator/``), in module order. Layers without an official scope are left out
    (:func:`derived_keys` and :func:`unfilled_keys` find the tensors no entry fills)."""
    root = DEFAULT_ROOTS[net] if root is None else root
    entries: list[Entry] = []
    for path, m in module.named_modules():
        scope = official_scope(net, path) if path else None
        if scope is None:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            entries += _sn_entries(net, root, scope, path, m)
        elif isinstance(m, (ConditionalBatchNorm2d, nn.BatchNorm2d)):
            entries += _bn_entries(net, root, scope, path, m)
        if path == "context":
            own = list(m.named_parameters(recurse=False))  # the output scale: Hamburger's sigma, attention's gamma
            if len(own) != 1 or own[0][1].dim() != 0:
                raise ValueError(f"{net}'s context block has parameters {[k for k, _ in own]}, expected one scalar")
            entries.append(Entry(f"{root}{scope}/sigma_ratio", (), net, f"context.{own[0][0]}", (), "same", True))
    return entries


def derived_keys(module: nn.Module) -> set[str]:
    """State-dict keys a converter computes or keeps instead of reading: spectral norm's ``_u``, BN's step counters,
    and the Hamburger's bases stream (``_extra_state``, hamgan's own)."""
    return {k for k in module.state_dict() if k.endswith((".0._u", "num_batches_tracked", "_extra_state"))}


def unfilled_keys(module: nn.Module, entries: list[Entry]) -> list[str]:
    """State-dict keys of ``module`` that no entry fills and that are not derived: layers the official graph lacks."""
    filled = {e.key for e in entries}
    return [k for k in module.state_dict() if k not in filled and k not in derived_keys(module)]


def find_root(names: list[str] | set[str], net: str) -> str:
    """The root of ``net`` in a checkpoint's ``names`` by the rule of the module doc; a clear error otherwise."""
    anchor = ANCHORS[net]
    roots = sorted(n[: -len(anchor)] for n in names
                   if n.endswith(anchor) and (n == anchor or n[-len(anchor) - 1] == "/"))
    if len(roots) != 1:
        found = f"found it under {roots}" if roots else "found no such variable"
        raise ValueError(f"cannot tell the {net} root scope: expected exactly one variable '<root>{anchor}' and "
                         f"{found}; give it with --{net.lower()}-root (e.g. '{DEFAULT_ROOTS[net]}' or '')")
    return roots[0]


def optimizer_variable(name: str, trainable: set[str]) -> str | None:
    """``"slot"`` for an Adam moment of a mapped trainable variable, ``"counter"`` for global_step / beta powers,
    else None."""
    base, _, slot = name.rpartition("/")
    if slot in ADAM_SLOTS and base in trainable:
        return "slot"
    if COUNTERS.fullmatch(name):
        return "counter"
    return None


__all__ = ["ADAM_SLOTS", "ANCHORS", "DEFAULT_ROOTS", "Entry", "U_SUFFIX", "derived_keys", "find_root",
           "g_linear_order", "layout", "optimizer_variable", "to_hamgan", "to_tf", "unfilled_keys"]
