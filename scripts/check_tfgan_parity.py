"""Parity of hamgan's SAGAN with TF-GAN's, the code the official HamGAN and YLG modify: ``make parity``.

    python scripts/check_tfgan_parity.py [--venv ~/.cache/hamgan/tf215-venv] [--classes 5] [--batch 4] [key=value ...]

Builds G and D of ``configs/imagenet128_sagan.yaml`` (128x128, gf = df = 64, the official recipe) with a few classes,
perturbs every scale that starts at a trivial value (CBN and BN gains and biases, attention's sigma, running
statistics), and copies all weights, biases and spectral-norm vectors into TF-GAN's
``tensorflow_gan/examples/self_attention_estimator`` (the ``tensorflow-gan==2.1.0`` wheel) through the scopes of
:mod:`hamgan.nn.official`. Every TF variable must receive a value, so the layouts are checked too. Then it feeds the
same z, labels and images to both and compares, in training mode (batch statistics, one power iteration):

- G images, D logits, and the power-iteration vectors after the step; G in eval mode (moving statistics);
- one op at a time: SN conv (``snconv2d``), SN linear, SN embedding, conditional BN (and its moving statistics
  after one update), the attention block, a G block, a D block, D's optimized block; and YLG's block
  (``sn_attention_block_sim``, not in TF-GAN: its TF code as in github.com/giannisdaras/ylg, with the masks);
- the data pipeline: ``data_provider._preprocess_dataset_record_fn`` against ``data.resize: tf-bilinear``.

It prints the largest absolute difference and the largest relative difference (max |a - b| / max |b|) per check and
exits 0 when every relative difference is at most ``--tol`` (1e-4).

TensorFlow is never a dependency of hamgan: the TF side runs in a venv of its own (``--venv``, created on first use
with the pins of :data:`TF_PINS`, then cached), as a subprocess of this script (``--tf-worker``) that imports neither
torch nor hamgan. The two sides exchange .npz files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path("~/.cache/hamgan/tf215-venv").expanduser()
TF_PINS = ["tensorflow-cpu==2.15.1", "tensorflow-gan==2.1.0", "tensorflow-probability==0.23.0", "numpy<2"]
U_SUFFIX = "spectral_normalize/spectral_norm/spectral_norm_u"
CROP_SIZES = [(375, 500), (500, 333), (1024, 1366), (128, 128), (301, 157)]  # (H, W); 1024: TF's black last row
# check name -> (hamgan module, TF-GAN function); the module paths are in G ("g.") or D ("d.")
OPS = {
    "SN conv 3x3": ("g.blocks.1.conv1", "ops.snconv2d"),
    "SN linear": ("g.linear", "ops.snlinear"),
    "SN embedding": ("d.embedding", "ops.sn_embedding"),
    "conditional BN": ("g.blocks.0.bn1", "tfgan.tpu.batch_norm"),
    "attention block": ("g.context", "ops.sn_non_local_block_sim"),
    "G block": ("g.blocks.2", "generator.block"),
    "D block": ("d.blocks.1", "discriminator.block"),
    "D optimized block": ("d.blocks.0", "discriminator.optimized_block"),
}


# --------------------------------------------------------------------------------------------------------------------
# The TF venv and the TF side (runs with the venv's python: numpy and TensorFlow only)
# --------------------------------------------------------------------------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    """The python of ``venv`` with tensorflow-gan importable; the venv is created (pip, :data:`TF_PINS`) if needed."""
    python = venv / "bin" / "python"
    check = [str(python), __file__, "--tf-check"]  # this file, run by the venv's python: see tf_check
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating the TF venv {venv} ({' '.join(TF_PINS)}); minutes, once", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *TF_PINS], check=True)
    subprocess.run(check, check=True)
    return python


def tf_value(name: str, weights: dict[str, np.ndarray]) -> np.ndarray:
    """hamgan's value of the TF variable ``name``; a spectral-norm vector ``<scope>/<W>/spectral_normalize/...``
    (or beside W, for the embedding) is the ``<W>#u`` entry of ``weights``."""
    if name.endswith(U_SUFFIX):
        for key in (k[:-2] for k in weights if k.endswith("#u")):
            if name.endswith(f"{key}/{U_SUFFIX}") or name == f"{key.rsplit('/', 1)[0]}/{U_SUFFIX}":
                return weights[f"{key}#u"]
    if name not in weights:
        raise KeyError(f"no hamgan value for the TF variable {name}")
    return weights[name]


def tf_check() -> None:
    """Fails (ImportError) unless TF-GAN's self-attention example imports: the test of a usable TF venv."""
    import tensorflow_gan.examples.self_attention_estimator.ops  # noqa: F401


def tf_worker(inp: str, out: str) -> None:
    """Build the TF-GAN graphs of every check, load the weights, run, write the outputs to ``out``."""
    import sys
    import types

    import tensorflow.compat.v1 as tf

    tf.disable_eager_execution()
    sys.modules.setdefault("tensorflow_datasets", types.ModuleType("tensorflow_datasets"))  # only data loading uses it
    import tensorflow_gan as tfgan
    from tensorflow_gan.examples.self_attention_estimator import data_provider, discriminator, generator, ops

    data = dict(np.load(inp))
    weights = {k[2:]: v for k, v in data.items() if k.startswith("w:")}
    x = {k[2:]: v for k, v in data.items() if k.startswith("x:")}
    gf, classes = int(data["gf"]), int(data["classes"])
    results: dict[str, np.ndarray] = {}

    def run(check: str, build, feeds: dict, update: bool = False) -> None:
        graph = tf.Graph()
        with graph.as_default(), tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=2)) as sess:
            placeholders = {k: tf.placeholder(tf.as_dtype(v.dtype), v.shape) for k, v in feeds.items()}
            output = build(placeholders)
            variables = tf.global_variables()
            for var in variables:
                var.load(tf_value(var.name[:-2], weights).reshape(var.shape.as_list()), sess)
            fetches = [output] + ([tf.get_collection(tf.GraphKeys.UPDATE_OPS)] if update else [])
            results[check] = sess.run(fetches, {placeholders[k]: v for k, v in feeds.items()})[0]
            for var in variables:  # after the step: power-iteration vectors, moving statistics
                if var.name.endswith(f"{U_SUFFIX}:0") or "moving_" in var.name:
                    results[f"{check}|{var.name[:-2]}"] = sess.run(var)

    z, y, images = x["z"], x["y"], x["images"]
    run("G", lambda p: generator.generator(p["z"], p["y"], gf, classes, training=True)[0], {"z": z, "y": y})
    run("G eval", lambda p: generator.generator(p["z"], p["y"], gf, classes, training=False)[0], {"z": z, "y": y})
    run("D", lambda p: discriminator.discriminator(p["x"], p["y"], gf, classes)[0][:, 0], {"x": images, "y": y})

    def scoped(root, fn):
        def build(p):
            with tf.variable_scope(root):
                return fn(p)
        return build

    run("SN conv 3x3", scoped("generator/g_block2", lambda p: ops.snconv2d(p["a"], 8 * gf, 3, 3, 1, 1, True,
                                                                            "snconv1")), {"a": x["SN conv 3x3"]})
    run("SN linear", scoped("generator", lambda p: ops.snlinear(p["a"], gf * 16 * 4 * 4, training=True, name="g_snh0")),
        {"a": x["SN linear"]})
    run("SN embedding", scoped("discriminator", lambda p: ops.sn_embedding(p["y"], classes, 16 * gf,
                                                                             name="d_embedding")), {"y": y})
    run("conditional BN", scoped("generator/g_block1", lambda p: tfgan.tpu.batch_norm(
        p["a"], True, tf.one_hot(p["y"], classes), name="cbn_0")), {"a": x["conditional BN"], "y": y}, update=True)
    run("attention block", scoped("generator", lambda p: ops.sn_non_local_block_sim(p["a"], True, name="g_ops")),
        {"a": x["attention block"]})
    run("G block", scoped("generator", lambda p: generator.block(p["a"], p["y"], 4 * gf, classes, "g_block3", True)),
        {"a": x["G block"], "y": y})
    run("D block", scoped("discriminator", lambda p: discriminator.block(p["a"], 2 * gf, "d_block2")),
        {"a": x["D block"]})
    run("D optimized block", scoped("discriminator", lambda p: discriminator.optimized_block(
        p["a"], gf, "d_optimized_block1")), {"a": x["D optimized block"]})

    def ylg_block(a, masks, name="g_ops", heads=8):
        """YLG's sn_attention_block_sim (github.com/giannisdaras/ylg ops.py), its masks given (hamgan's, which
        equal the official masks.py): heads split after the NHWC reshape, outputs with the heads last."""
        with tf.variable_scope(name):
            _, h, w, c = a.shape.as_list()
            n, hidden = h * w, c // 8
            theta = tf.transpose(tf.reshape(ops.sn_conv1x1(a, hidden, True, "sn_conv_theta"),
                                            [-1, n, heads, hidden // heads]), [0, 2, 1, 3])
            phi = tf.layers.max_pooling2d(ops.sn_conv1x1(a, hidden, True, "sn_conv_phi"), [2, 2], 2)
            phi = tf.transpose(tf.reshape(phi, [-1, n // 4, heads, hidden // heads]), [0, 2, 1, 3])
            attn = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True) + (1.0 - masks) * -1000.0)
            g = tf.layers.max_pooling2d(ops.sn_conv1x1(a, c // 2, True, "sn_conv_g"), [2, 2], 2)
            g = tf.transpose(tf.reshape(g, [-1, n // 4, heads, c // 2 // heads]), [0, 2, 1, 3])
            attn_g = tf.reshape(tf.transpose(tf.matmul(attn, g), [0, 2, 3, 1]), [-1, h, w, c // 2])
            sigma = tf.get_variable("sigma_ratio", [], initializer=tf.initializers.constant(0.0))
            return a + sigma * ops.sn_conv1x1(attn_g, c, True, "sn_conv_attn")

    run("YLG attention block", scoped("ylg", lambda p: ylg_block(p["a"], x["ylg masks"])),
        {"a": x["YLG attention block"]})

    crops = []
    with tf.Graph().as_default(), tf.Session() as sess:
        fn = data_provider._preprocess_dataset_record_fn(128)
        for h, w in CROP_SIZES:
            crops.append(sess.run(fn({"image": tf.constant(x[f"crop {h}x{w}"]), "label": tf.constant(0)})[0]))
    results["data: crop_and_resize"] = np.stack(crops)
    np.savez(out, **results)


# --------------------------------------------------------------------------------------------------------------------
# The torch side (torch and hamgan are imported inside its functions: this file also runs, as the TF side, under the
# TF venv's python, which has neither)
# --------------------------------------------------------------------------------------------------------------------


def tf_weights(net, name: str) -> dict[str, np.ndarray]:
    """Every variable value of ``net`` ("G" or "D") under its TF-GAN name (kernel layouts, SN vectors u = our v)."""
    import torch
    import torch.nn as nn

    from hamgan.nn.layers import ConditionalBatchNorm2d
    from hamgan.nn.official import official_scope

    out: dict[str, np.ndarray] = {}
    for path, m in net.named_modules():
        scope = official_scope(name, path)
        if scope is None:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            w, v = m.parametrizations.weight.original.detach(), m.parametrizations.weight[0]._v.detach()
            if isinstance(m, nn.Conv2d):  # (out, in, kh, kw) -> (kh, kw, in, out); v over (in, kh, kw) -> (kh, kw, in)
                key = f"{scope}/{'weights' if path.startswith('context.') else 'kernel'}"
                out[key] = w.permute(2, 3, 1, 0).numpy()
                v = v.view(w.shape[1], w.shape[2], w.shape[3]).permute(1, 2, 0)
            elif isinstance(m, nn.Linear):
                if name == "G":  # hamgan views z's linear output as (C, 4, 4), TF-GAN as (4, 4, C): permute the rows
                    order = torch.arange(w.shape[0]).view(-1, 4, 4).permute(1, 2, 0).reshape(-1)
                    w, bias = w[order], m.bias.detach()[order]
                    out[f"{scope}/bias"] = bias.numpy()
                key, out[f"{scope}/kernel"] = f"{scope}/kernel", w.T.numpy()
            else:
                key, out[f"{scope}/embedding_map"] = f"{scope}/embedding_map", w.numpy()
            out[f"{key}#u"] = v.reshape(-1, 1).numpy()
            if getattr(m, "bias", None) is not None and f"{scope}/bias" not in out:
                out[f"{scope}/bias"] = m.bias.detach().numpy()
        elif isinstance(m, (ConditionalBatchNorm2d, nn.BatchNorm2d)):
            bn, conditional = (m.bn, True) if isinstance(m, ConditionalBatchNorm2d) else (m, False)
            gain, bias = (m.gain, m.bias) if conditional else (m.weight[None], m.bias[None])
            out[f"{scope}/gamma"] = gain.detach()[:, None, None, :].numpy()
            out[f"{scope}/beta"] = bias.detach()[:, None, None, :].numpy()
            out[f"{scope}/moving_mean"] = bn.running_mean.numpy()
            out[f"{scope}/moving_variance"] = bn.running_var.numpy()
        if path == "context":
            out[f"{scope}/sigma_ratio"] = next(p for k, p in m.named_parameters(recurse=False)).detach().numpy()
    return {k: np.array(v, copy=True) for k, v in out.items()}  # copies: .numpy() shares the buffers' memory


def torch_side(args: argparse.Namespace) -> tuple[dict, dict]:
    """(the .npz for the TF worker, hamgan's outputs of every check)."""
    import copy

    import torch

    from hamgan.config import load_config
    from hamgan.data.transforms import tf_crop_and_resize
    from hamgan.nn.layers import ConditionalBatchNorm2d
    from hamgan.nn.from_config import context_spec, discriminator_from_config, generator_from_config, sn_options
    from hamgan.nn.ylg import head_masks

    torch.manual_seed(args.seed)
    cfg = load_config(args.config, [f"model.num_classes={args.classes}", *args.overrides]).model
    G, D = generator_from_config(cfg).train(), discriminator_from_config(cfg).train()
    with torch.no_grad():  # every scale away from its trivial start, so that every path counts
        for net in (G, D):
            for m in net.modules():
                if isinstance(m, ConditionalBatchNorm2d):
                    m.gain.uniform_(0.5, 1.5), m.bias.uniform_(-0.3, 0.3)
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
                    if m.affine:
                        m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.3, 0.3)
            next(p for _, p in net.context.named_parameters(recurse=False)).fill_(0.7)
    rng = np.random.default_rng(args.seed)
    b, gf = args.batch, cfg.g.channels
    x = {
        "z": rng.standard_normal((b, cfg.z_dim), dtype=np.float32),
        "y": rng.integers(0, args.classes, b).astype(np.int32),
        "images": rng.uniform(-1, 1, (b, 128, 128, 3)).astype(np.float32),
        "SN conv 3x3": rng.standard_normal((b, 16, 16, 16 * gf), dtype=np.float32),
        "SN linear": rng.standard_normal((b, cfg.z_dim), dtype=np.float32),
        "conditional BN": 2 + 3 * rng.standard_normal((b, 4, 4, 16 * gf), dtype=np.float32),
        "attention block": rng.standard_normal((b, 32, 32, 4 * gf), dtype=np.float32),
        "G block": rng.standard_normal((b, 16, 16, 8 * gf), dtype=np.float32),
        "D block": rng.standard_normal((b, 64, 64, gf), dtype=np.float32),
        "D optimized block": rng.uniform(-1, 1, (b, 128, 128, 3)).astype(np.float32),
    }
    for h, w in CROP_SIZES:
        x[f"crop {h}x{w}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ylg_cfg = load_config(ROOT / "configs" / "imagenet128_ylg.yaml", [f"model.num_classes={args.classes}"]).model
    ylg = torch.nn.Module()  # YLG's block at G's 32x32 map, under G's scope names
    ylg.context = context_spec(ylg_cfg.g).build(4 * gf, spectral_norm=sn_options(ylg_cfg)[1]).train()
    with torch.no_grad():
        ylg.context.gamma.fill_(0.7)
    x["YLG attention block"] = rng.standard_normal((b, 32, 32, 4 * gf), dtype=np.float32)
    x["ylg masks"] = head_masks(32, 32).astype(np.float32)
    ylg_weights = {k.replace("generator/", "ylg/", 1): v for k, v in tf_weights(ylg, "G").items()}  # own scope
    weights = {**tf_weights(G, "G"), **tf_weights(D, "D"), **ylg_weights}
    states = {"g": copy.deepcopy(G.state_dict()), "d": copy.deepcopy(D.state_dict())}

    def fresh(net: str):
        module = G if net == "g" else D
        module.load_state_dict(states[net])
        return module.train()

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
    nhwc = lambda t: t.detach().permute(0, 2, 3, 1).numpy()  # noqa: E731
    z, y = torch.from_numpy(x["z"]), torch.from_numpy(x["y"]).long()
    ours: dict[str, np.ndarray] = {}
    with torch.no_grad():
        ours["G"] = nhwc(fresh("g")(z, y))
        ours["G|u"] = {k: v for k, v in tf_weights(G, "G").items() if k.endswith("#u")}
        ours["G eval"] = nhwc(fresh("g").eval()(z, y))
        ours["D"] = fresh("d")(nchw(x["images"]), y).numpy()
        ours["D|u"] = {k: v for k, v in tf_weights(D, "D").items() if k.endswith("#u")}
        for check, (path, _) in OPS.items():
            net, _, sub = path.partition(".")
            module = fresh(net).get_submodule(sub)
            a = x.get(check)
            if check == "SN linear":  # features in TF-GAN's (4, 4, C) order (see tf_weights)
                h = module(torch.from_numpy(a))
                ours[check] = h.view(b, -1, 4, 4).permute(0, 2, 3, 1).reshape(b, -1).numpy()
            elif check == "SN embedding":
                ours[check] = module(y).numpy()
            elif check in ("conditional BN", "G block"):
                ours[check] = nhwc(module(nchw(a), y))
            else:
                ours[check] = nhwc(module(nchw(a)))
            if check == "conditional BN":
                ours[f"{check}|moving"] = (module.bn.running_mean.numpy().copy(), module.bn.running_var.numpy().copy())
        ours["YLG attention block"] = nhwc(ylg.context(nchw(x["YLG attention block"])))
    crops = [tf_crop_and_resize(x[f"crop {h}x{w}"], 128) * np.float32(2 / 255) - 1 for h, w in CROP_SIZES]
    ours["data: crop_and_resize"] = np.stack(crops)
    payload = {**{f"w:{k}": v for k, v in weights.items()}, **{f"x:{k}": v for k, v in x.items()},
               "gf": np.array(gf), "classes": np.array(args.classes)}
    return payload, ours


def differences(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: hamgan {ours.shape}, TF-GAN {theirs.shape}")
    diff = float(np.abs(ours - theirs).max())
    return diff, diff / max(float(np.abs(theirs).max()), 1e-30)


def compare(ours: dict, theirs: dict) -> list[tuple[str, str, float, float]]:
    rows = []
    for check, source in [("G", "generator.generator (training)"), ("G eval", "generator.generator (eval)"),
                          ("D", "discriminator.discriminator")]:
        rows.append((f"{check} images" if check.startswith("G") else "D logits", source,
                     *differences(ours[check], theirs[check])))
    for net in ("G", "D"):  # the power-iteration vectors after the training step
        worst = (0.0, 0.0)
        for key, v in ours[f"{net}|u"].items():
            weight = key[:-2]  # "<scope>/<variable>" without "#u"
            tf_key = next(k for k in theirs if k.startswith(f"{net}|") and (
                k.endswith(f"{weight}/{U_SUFFIX}") or k == f"{net}|{weight.rsplit('/', 1)[0]}/{U_SUFFIX}"))
            worst = max(worst, differences(v, theirs[tf_key]))
        rows.append((f"{net} SN vectors after the step", "compute_spectral_norm (u)", *worst))
    for check, (path, source) in OPS.items():
        rows.append((check, source, *differences(ours[check], theirs[check])))
    rows.append(("YLG attention block", "ylg ops.sn_attention_block_sim (its TF code)",
                 *differences(ours["YLG attention block"], theirs["YLG attention block"])))
    mean, var = ours["conditional BN|moving"]
    tf_mean = next(v for k, v in theirs.items() if k.startswith("conditional BN|") and k.endswith("moving_mean"))
    tf_var = next(v for k, v in theirs.items() if k.startswith("conditional BN|") and k.endswith("moving_variance"))
    rows.append(("conditional BN moving statistics", "decay 0.999, biased variance",
                 *max(differences(mean, tf_mean), differences(var, tf_var))))
    rows.append(("data: crop_and_resize", "data_provider._preprocess_dataset_record_fn",
                 *differences(ours["data: crop_and_resize"], theirs["data: crop_and_resize"])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"TF venv (default {DEFAULT_VENV})")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "imagenet128_sagan.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides of the config, e.g. to see a "
                                                       "deviation from the official recipe fail: model.sn.bound=exact")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="largest relative difference allowed (1e-4)")
    parser.add_argument("--tf-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--tf-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_check:
        tf_check()
        return 0
    if args.tf_worker:
        tf_worker(*args.tf_worker)
        return 0
    python = ensure_venv(args.venv.expanduser())
    payload, ours = torch_side(args)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **payload)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([str(python), __file__, "--tf-worker", str(inp), str(out)], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            print("error: the TF-GAN side failed (above)", file=sys.stderr)
            return 2
        theirs = dict(np.load(out).items())
    rows = compare(ours, theirs)
    print(f"hamgan ({args.config.name}, {args.classes} classes, batch {args.batch}) vs TF-GAN "
          f"self_attention_estimator, training mode; relative = max|a - b| / max|b|, tolerance {args.tol:g}\n")
    print(f"| check | TF-GAN | max abs diff | max rel diff | ok |\n| --- | --- | ---: | ---: | --- |")
    for check, source, diff, rel in rows:
        print(f"| {check} | `{source}` | {diff:.2e} | {rel:.2e} | {'yes' if rel <= args.tol else 'NO'} |")
    failed = [r[0] for r in rows if not r[3] <= args.tol]
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'all checks agree'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
