"""hamgan-convert against checkpoints TensorFlow writes: ``make convert-check``.

    python scripts/check_tf_convert.py [--venv ~/.cache/hamgan/tf215-venv] [--gf 16] [--classes 5] [--batch 4]

1. **TF-GAN's SAGAN example** (``tensorflow_gan/examples/self_attention_estimator`` of the ``tensorflow-gan`` wheel),
   built under the estimator's scopes ``Generator/`` / ``Discriminator/`` at width ``--gf``: every BN gain, bias
   and moving statistic and both attention sigmas set at random, then 3 steps of TF's Adam (hinge loss) so that
   the weights, spectral-norm vectors, moving statistics and Adam slots are TF's own; saved by ``tf.train.Saver``.
   ``hamgan-convert official-tf --with-optimizer`` converts it, and hamgan's G and D on the same z, labels and
   images must equal TF's, restored from the same file, to ``--tol`` (1e-4) relative: G in training mode (batch
   statistics, one power iteration, and the stored vectors after it), G in eval mode (moving statistics, the
   iteration not stored), D (one power iteration); the Adam moments and the step are checked against TF's.
2. **The official HamGAN variable list** (``tests/fixtures/official_tf_variables.json``, HamGAN-baby: names,
   shapes, dtypes) with exact, deterministic values (:func:`pattern`), plus ``global_step``, Adam's beta powers and
   the Adam slots of two variables, saved by TensorFlow at full size (82M values). It converts with every variable
   placed; the result, exported by ``scripts/check_tfgan_parity.py``'s independent exporter, gives back every
   value bit for bit.

TensorFlow runs in the venv of ``make parity`` (created on first use), as a subprocess of this script
(``--tf-worker``) that imports neither torch nor hamgan; the converter reads through it (``--tf-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "fixtures" / "official_tf_variables.json"  # the official checkpoints' variable list
SLOTTED = ["Generator/generator/g_ops/sigma_ratio", "Discriminator/discriminator/d_embedding/embedding_map"]


def pattern(shape: list[int], k: int) -> np.ndarray:
    """Exact float32 values in [-0.5, 0.5) from integer arithmetic (the same on every machine and NumPy)."""
    n = int(np.prod(shape, dtype=np.int64))
    ints = (np.arange(n, dtype=np.int64) * 2654435761 + 7919 * (k + 1)) % 65521
    return (ints.astype(np.float32) / np.float32(65521) - np.float32(0.5)).reshape(shape)


# --------------------------------------------------------------------------------------------------------------------
# The TF side (runs with the TF venv's python: numpy and TensorFlow only)
# --------------------------------------------------------------------------------------------------------------------


def tf_worker(out: str, gf: int, classes: int, batch: int, seed: int) -> None:
    import types

    import tensorflow.compat.v1 as tf

    tf.disable_eager_execution()
    sys.modules.setdefault("tensorflow_datasets", types.ModuleType("tensorflow_datasets"))  # only data loading uses it
    from tensorflow_gan.examples.self_attention_estimator import discriminator, generator

    out = Path(out)
    rng = np.random.default_rng(seed)
    G = lambda z, y, training: generator.generator(z, y, gf, classes, training=training)[0]  # noqa: E731
    D = lambda x, y: discriminator.discriminator(x, y, gf, classes)[0][:, 0]  # noqa: E731
    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)

    # 1. a TF-GAN SAGAN trained 3 steps by TF's Adam, saved with its slots
    with tf.Graph().as_default(), tf.Session(config=config) as sess:
        tf.set_random_seed(seed)
        step = tf.train.get_or_create_global_step()
        z, y = tf.random.normal([batch, 128]), tf.random.uniform([batch], 0, classes, tf.int32)
        real = tf.random.uniform([batch, 128, 128, 3], -1.0, 1.0)
        with tf.variable_scope("Generator"):
            fake = G(z, y, True)
        with tf.variable_scope("Discriminator"):
            d_real, d_fake = D(real, y), D(fake, y)
        d_loss = tf.reduce_mean(tf.nn.relu(1.0 - d_real)) + tf.reduce_mean(tf.nn.relu(1.0 + d_fake))
        g_loss = -tf.reduce_mean(d_fake)
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):  # moving statistics
            g_train = tf.train.AdamOptimizer(1e-3, 0.0, 0.999).minimize(
                g_loss, var_list=tf.trainable_variables("Generator/"), global_step=step)
        d_train = tf.train.AdamOptimizer(4e-3, 0.0, 0.999).minimize(d_loss, var_list=tf.trainable_variables(
            "Discriminator/"))
        sess.run(tf.global_variables_initializer())
        for var in tf.global_variables():  # every scale away from its trivial start
            name, shape = var.op.name, var.shape.as_list()
            if name.endswith(("/gamma", "moving_variance")):
                var.load(rng.uniform(0.5, 1.5, shape).astype(np.float32), sess)
            elif name.endswith(("/beta", "moving_mean")):
                var.load(rng.uniform(-0.3, 0.3, shape).astype(np.float32), sess)
            elif name.endswith("sigma_ratio"):
                var.load(np.float32(0.7), sess)
        for _ in range(3):
            sess.run(d_train)
            sess.run(g_train)
        prefix = tf.train.Saver().save(sess, str(out / "sagan" / "model.ckpt"), global_step=step,
                                       write_meta_graph=False)
        by_name = {v.op.name: v for v in tf.global_variables()}
        slots = {f"{v.op.name}/{s}": sess.run(by_name[f"{v.op.name}/{s}"])  # G's first dense layer, its bias, ...
                 for v in tf.trainable_variables()[:3] for s in ("Adam", "Adam_1")}

    # the reference outputs: fresh graphs restored from the file
    z, y = rng.standard_normal((batch, 128), dtype=np.float32), rng.integers(0, classes, batch).astype(np.int32)
    x = rng.uniform(-1, 1, (batch, 128, 128, 3)).astype(np.float32)
    results = {"z": z, "y": y, "x": x, "prefix": np.array(prefix)}
    results.update({f"slot:{k}": v for k, v in slots.items()})
    for check, build in [("G train", lambda: G(tf.constant(z), tf.constant(y), True)),
                         ("G eval", lambda: G(tf.constant(z), tf.constant(y), False)),
                         ("D", lambda: D(tf.constant(x), tf.constant(y)))]:
        with tf.Graph().as_default(), tf.Session(config=config) as sess:
            with tf.variable_scope("Generator" if check.startswith("G") else "Discriminator"):
                output = build()
            tf.train.Saver().restore(sess, prefix)
            results[check] = sess.run(output)
            if check == "G train":  # the stored vectors after the iteration
                for var in tf.global_variables():
                    if var.op.name.endswith("spectral_norm_u"):
                        results[f"u:{var.op.name}"] = sess.run(var)
    np.savez(out / "sagan_outputs.npz", **results)

    # 2. the official HamGAN variable list, exact values, with counters and two variables' Adam slots
    variables = json.loads(REFERENCE.read_text())["hamgan_baby"]["variables"]
    with tf.Graph().as_default(), tf.Session(config=config) as sess:
        shapes = {v["name"]: v["shape"] for v in variables}
        specs = [(v["name"], v["shape"], v["dtype"], k) for k, v in enumerate(variables)]
        specs += [(f"{n}/{s}", shapes[n], "float32", 1000 + 2 * i + j)
                  for i, n in enumerate(SLOTTED) for j, s in enumerate(("Adam", "Adam_1"))]
        made = [(tf.Variable(tf.zeros(shape, dtype), name=name), shape, k) for name, shape, dtype, k in specs]
        counters = [tf.Variable(np.int64(912000), name="global_step"), tf.Variable(np.float32(0.0), name="beta1_power"),
                    tf.Variable(np.float32(0.4), name="beta2_power")]
        sess.run(tf.global_variables_initializer())
        for var, shape, k in made:
            var.load(pattern(shape, k), sess)
        names = {v.op.name for v in tf.global_variables()}
        assert names == {n for n, *_ in specs} | {"global_step", "beta1_power", "beta2_power"}, "TF renamed variables"
        tf.train.Saver().save(sess, str(out / "official" / "model.ckpt-912000"), write_meta_graph=False)
    print("tf worker done")


# --------------------------------------------------------------------------------------------------------------------
# The torch side
# --------------------------------------------------------------------------------------------------------------------


def differences(ours, theirs) -> tuple[float, float]:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: hamgan {ours.shape}, TF {theirs.shape}")
    diff = float(np.abs(ours - theirs).max())
    return diff, diff / max(float(np.abs(theirs).max()), 1e-30)


def convert(args: list[str]) -> list[str]:
    """hamgan-convert's output lines; raises on a non-zero status."""
    import contextlib
    import io

    from hamgan.convert import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(args)
    if status != 0:
        raise RuntimeError(f"hamgan-convert {' '.join(args)} failed ({status}): {stderr.getvalue()}")
    return stdout.getvalue().splitlines()


def check_sagan(tmp: Path, tf_python: str, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    import torch

    from hamgan.checkpoint import load_checkpoint
    from hamgan.config import from_dict
    from hamgan.convert.mapping import layout, to_tf
    from hamgan.nn.from_config import discriminator_from_config, generator_from_config

    ref = dict(np.load(tmp / "sagan_outputs.npz"))
    out = tmp / "sagan.pt"
    lines = convert(["official-tf", str(ref["prefix"]), "--config", str(ROOT / "configs" / "imagenet128_sagan.yaml"),
                     "--out", str(out), "--with-optimizer", "--tf-python", tf_python,
                     f"model.num_classes={args.classes}", f"model.g.channels={args.gf}", f"model.d.channels={args.gf}"])
    print("\n".join(f"  {line}" for line in lines))
    state = load_checkpoint(out)
    cfg = from_dict(state["config"])
    assert state["step"] == 3, f"step {state['step']}, TF's global_step is 3"
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
    z, y = torch.from_numpy(ref["z"]), torch.from_numpy(ref["y"]).long()
    x = torch.from_numpy(ref["x"]).permute(0, 3, 1, 2).contiguous()
    nhwc = lambda t: t.detach().permute(0, 2, 3, 1).numpy()  # noqa: E731
    rows = []
    with torch.no_grad():
        rows.append(("G images, training mode (batch statistics, one power iteration)",
                     *differences(nhwc(G.train()(z, y)), ref["G train"])))
        worst = (0.0, 0.0)
        for e in layout(G, "G"):
            if e.kind in ("u", "u_conv"):
                worst = max(worst, differences(to_tf(e, G.state_dict()[e.key].numpy()), ref[f"u:{e.tf_name}"]))
        rows.append(("G spectral-norm vectors after that step", *worst))
        G.load_state_dict(state["G"])
        rows.append(("G images, eval mode (moving statistics)", *differences(nhwc(G.eval()(z, y)), ref["G eval"])))
        rows.append(("D logits, training mode (one power iteration)", *differences(D.train()(x, y).numpy(), ref["D"])))
        D.load_state_dict(state["D"])
        rows.append(("D logits, eval mode", *differences(D.eval()(x, y).numpy(), ref["D"])))
    # Adam: TF's slots through the layout change, hamgan's moments back through to_tf
    entries = {e.tf_name: e for net, m in (("G", G), ("D", D)) for e in layout(m, net)}
    opts = {}
    for net, module in (("G", G), ("D", D)):
        opt = torch.optim.Adam(module.parameters())
        opt.load_state_dict(state[f"opt_{net}"])
        opts[net] = (opt, dict(module.named_parameters()))
    worst = 0.0
    for key, value in ref.items():
        if key.startswith("slot:"):
            name, _, slot = key[5:].rpartition("/")
            e = entries[name]
            opt, params = opts[e.net]
            moment = opt.state[params[e.key]]["exp_avg" if slot == "Adam" else "exp_avg_sq"].numpy()
            worst = max(worst, differences(to_tf(e, moment), value)[0])
    rows.append(("Adam moments (3 variables' m and v)", worst, worst))
    return rows


def check_official(tmp: Path, tf_python: str) -> list[tuple[str, float, float]]:
    import importlib.util

    from hamgan.checkpoint import load_checkpoint
    from hamgan.config import from_dict
    from hamgan.nn.from_config import discriminator_from_config, generator_from_config

    spec = importlib.util.spec_from_file_location("parity", ROOT / "scripts" / "check_tfgan_parity.py")
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    out = tmp / "hamgan_baby.pt"
    lines = convert(["official-tf", str(tmp / "official" / "model.ckpt-912000"), "--config",
                     str(ROOT / "configs" / "imagenet128_hamgan_baby.yaml"), "--out", str(out), "--tf-python",
                     tf_python])
    print("\n".join(f"  {line}" for line in lines))
    state = load_checkpoint(out)
    assert state["step"] == 912000 and state["converted_from"]["counters"]["global_step"] == 912000
    cfg = from_dict(state["config"])
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
    exported = {**parity.tf_weights(G, "G"), **parity.tf_weights(D, "D")}
    variables = json.loads(REFERENCE.read_text())["hamgan_baby"]["variables"]
    wrong = []
    for k, v in enumerate(variables):
        bare = v["name"].replace("Generator/", "").replace("Discriminator/", "")  # the exporter's names
        if not np.array_equal(parity.tf_value(bare, exported).reshape(v["shape"]), pattern(v["shape"], k)):
            wrong.append(v["name"])
    if wrong:
        raise AssertionError(f"values not where the official layout puts them: {wrong}")
    rows = [(f"official HamGAN list: {len(variables)} variables placed, values bit for bit", 0.0, 0.0)]
    # the same file truncated to half: refused, naming the variables TF cannot read, and no output file
    import contextlib
    import io
    import shutil

    from hamgan.convert import cli

    cut = tmp / "truncated"
    shutil.copytree(tmp / "official", cut)
    data = next(cut.glob("model.ckpt-912000.data-*"))
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    out, stderr = tmp / "truncated.pt", io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        status = cli.main(["official-tf", str(cut / "model.ckpt-912000"), "--config",
                           str(ROOT / "configs" / "imagenet128_hamgan_baby.yaml"), "--out", str(out),
                           "--tf-python", tf_python])
    message = stderr.getvalue()
    named = [v["name"] for v in variables if f"- {v['name']}: " in message]
    print(f"  truncated file: exit status {status}, {len(named)} variables named, e.g. "
          f"{next((line.strip() for line in message.splitlines() if 'Read less bytes' in line), message[-300:])}")
    if status != cli.EXIT_BAD_INPUT or not named or out.exists() or list(tmp.glob("truncated.pt*")):
        raise AssertionError(f"a truncated checkpoint must fail naming its variables and leave no file: {message}")
    rows.append((f"truncated data file: refused, {len(named)} unreadable variables named, no output", 0.0, 0.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=Path("~/.cache/hamgan/tf215-venv").expanduser())
    parser.add_argument("--gf", type=int, default=16, help="gf_dim = df_dim of the SAGAN check (official: 64)")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--tf-worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tf_worker:
        out, *numbers = args.tf_worker
        tf_worker(out, *(int(n) for n in numbers))
        return 0
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    from check_tfgan_parity import ensure_venv

    tf_python = str(ensure_venv(args.venv.expanduser()))
    with tempfile.TemporaryDirectory(prefix="hamgan-convert-check-") as tmp:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run([tf_python, __file__, "--tf-worker", tmp, str(args.gf), str(args.classes),
                               str(args.batch), str(args.seed)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            print("error: the TF side failed (above)", file=sys.stderr)
            return 2
        print(f"TF-GAN SAGAN (gf = df = {args.gf}, {args.classes} classes, batch {args.batch}), trained 3 steps by "
              "TF, converted with --with-optimizer:")
        rows = check_sagan(Path(tmp), tf_python, args)
        print("official HamGAN-baby variable list, written by TF:")
        rows += check_official(Path(tmp), tf_python)
    print(f"\n| check | max abs diff | max rel diff | ok |\n| --- | ---: | ---: | --- |")
    for check, diff, rel in rows:
        print(f"| {check} | {diff:.2e} | {rel:.2e} | {'yes' if rel <= args.tol else 'NO'} |")
    failed = [r[0] for r in rows if not r[2] <= args.tol]
    print(f"\n{'FAIL: ' + '; '.join(failed) if failed else 'all checks agree'} (tolerance {args.tol:g} relative)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
