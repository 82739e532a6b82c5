"""hamgan.convert without TensorFlow: the official layout variable by variable, each layout change on its own,
every failure named, and the converted checkpoint as hamgan-sample / hamgan-eval / hamgan-train read it.

A "TF checkpoint" here is a DictReader of arrays; scripts/check_tf_convert.py (make convert-check) does the same
with checkpoints TensorFlow writes and TF-GAN's graphs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hamgan.config import load_config
from hamgan.convert import cli
from hamgan.convert.mapping import find_root, g_linear_order, layout, optimizer_variable, to_hamgan, to_tf
from hamgan.convert.official import ConvertError, convert_official
from hamgan.convert.tf_reader import DictReader, ReadError, SubprocessReader, normalize_prefix
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.networks import Discriminator, Generator

ROOT = Path(__file__).resolve().parent.parent
# every variable of the official HamGAN and TF-GAN SAGAN checkpoints (names, shapes, dtypes): a copy of the project's
# shared reference, kept here so that the tests run wherever the repository is cloned
REFERENCE = ROOT / "tests" / "fixtures" / "official_tf_variables.json"
# the official recipe (SN bounds, BN decay 0.999 and biased variance, eval-mode power iteration), shrunk
SMALL = ["model.resolution=32", "model.num_classes=3", "model.z_dim=16", "model.g.channels=4", "model.d.channels=4",
         "model.g.context_res=16", "model.d.context_res=16", "model.g.ham.dim=8", "model.g.ham.rank=2",
         "model.d.ham.dim=8", "model.d.ham.rank=2", "model.g.ham.steps=2", "model.d.ham.steps=2"]


def small_cfg(context: str = "ham", extra: list[str] = ()):
    config = "imagenet128_hamgan_baby.yaml" if context == "ham" else "imagenet128_sagan.yaml"
    return load_config(ROOT / "configs" / config, [*SMALL, *extra])


def perturbed(cfg, seed: int = 0) -> tuple[Generator, Discriminator]:
    """G and D of ``cfg`` with every tensor random (gains, biases, sigma, moving statistics, u and v)."""
    torch.manual_seed(seed)
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    with torch.no_grad():
        for net in (G, D):
            for key, t in net.state_dict(keep_vars=True).items():
                if t.is_floating_point():
                    t.copy_(torch.rand_like(t) + 0.5 if key.endswith(("running_var", "gain")) else torch.randn_like(t))
    return G, D


def export(G, D, roots=None) -> dict[str, np.ndarray]:
    """The TF checkpoint of G and D as the official graph would hold it (float32 arrays by TF name)."""
    roots = roots or {}
    out = {}
    for net, module in (("G", G), ("D", D)):
        state = module.state_dict()
        for e in layout(module, net, roots.get(net)):
            out[e.tf_name] = to_tf(e, state[e.key].numpy()).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def small():
    cfg = small_cfg()
    G, D = perturbed(cfg)
    return cfg, G, D, export(G, D)


# ---- the layout, one change at a time ------------------------------------------------------------------------------


def test_conv_kernel_hwio_to_oihw_element_by_element():
    G, _ = perturbed(small_cfg())
    e = next(e for e in layout(G, "G") if e.key == "blocks.0.conv1.parametrizations.weight.original")
    assert e.tf_name == "Generator/generator/g_block1/snconv1/snconv1/kernel" and e.kind == "conv"
    k = np.random.default_rng(0).standard_normal(e.tf_shape).astype(np.float32)  # (kh, kw, in, out)
    w = to_hamgan(e, k)
    assert w.shape == e.shape == tuple(G.blocks[0].conv1.parametrizations.weight.original.shape)
    for kh, kw, i, o in [(0, 0, 0, 0), (2, 1, 3, 5), (1, 2, e.tf_shape[2] - 1, e.tf_shape[3] - 1)]:
        assert w[o, i, kh, kw] == k[kh, kw, i, o]
    # and as a convolution: TF's NHWC conv with k equals torch's NCHW conv with w
    x = torch.randn(1, e.tf_shape[2], 5, 5)
    ours = F.conv2d(x, torch.from_numpy(w), padding=1)
    manual = sum(np.einsum("bchw,co->bohw", F.pad(x, (1, 1, 1, 1))[:, :, i:i + 5, j:j + 5].numpy(), k[i, j])
                 for i in range(3) for j in range(3))
    np.testing.assert_allclose(ours.numpy(), manual, rtol=1e-5, atol=1e-5)  # float32 sums of 9 * in terms


def test_dense_kernel_is_transposed_and_the_generator_input_layer_permuted_to_channels_first():
    cfg = small_cfg()
    G, D = perturbed(cfg)
    d = next(e for e in layout(D, "D") if e.key == "linear.parametrizations.weight.original")
    k = np.random.default_rng(1).standard_normal(d.tf_shape).astype(np.float32)  # (in, out)
    assert d.kind == "dense" and np.array_equal(to_hamgan(d, k), k.T)
    g = {e.key: e for e in layout(G, "G")}
    gk, gb = g["linear.parametrizations.weight.original"], g["linear.bias"]
    assert gk.tf_name == "Generator/generator/g_snh0/dense/kernel" and gk.kind == "dense_g"
    rng = np.random.default_rng(2)
    kernel, bias = rng.standard_normal(gk.tf_shape).astype(np.float32), rng.standard_normal(gb.tf_shape)
    z = rng.standard_normal((3, gk.tf_shape[0])).astype(np.float32)
    channels = gk.tf_shape[1] // 16
    tf_map = (z @ kernel + bias).reshape(3, 4, 4, channels)  # TF: dense output reshaped NHWC (4, 4, C)
    ours = (z @ to_hamgan(gk, kernel).T + to_hamgan(gb, bias)).reshape(3, channels, 4, 4)  # hamgan: (C, 4, 4)
    np.testing.assert_allclose(ours.transpose(0, 2, 3, 1), tf_map, rtol=1e-5, atol=1e-5)
    assert sorted(g_linear_order(32)) == list(range(32))


def tf_power_iteration(w_tf: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
    """TF-GAN's compute_spectral_norm in float64: w_tf (fan_in, out), u (fan_in, 1) -> (sigma, new u)."""
    normalize = lambda a: a / max(np.linalg.norm(a), 1e-12)  # noqa: E731
    v = normalize(w_tf.T @ u)
    u = normalize(w_tf @ v)
    return float((u.T @ w_tf @ v).item()), u


@pytest.mark.parametrize("key", ["blocks.1.conv1", "blocks.0.shortcut", "linear", "context.lower"])
def test_spectral_norm_vector_gives_tf_gans_sigma_in_train_and_eval_mode(key: str):
    """TF-GAN's u (fan_in, 1) over (kh, kw, in) is hamgan's v over (in, kh, kw): one power iteration from it gives
    the same sigma (eval: hamgan's eval_iteration, TF's training=False) and, in training, the same new vector."""
    cfg = small_cfg()
    G, _ = perturbed(cfg)
    entries = {e.key: e for e in layout(G, "G")}
    w_entry = entries[f"{key}.parametrizations.weight.original"]
    u_entry = entries[f"{key}.parametrizations.weight.0._v"]
    assert u_entry.tf_name == (f"{w_entry.tf_name.rsplit('/', 1)[0]}/{w_entry.tf_name}/spectral_normalize/"
                               "spectral_norm/spectral_norm_u")
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal(w_entry.tf_shape).astype(np.float32)
    u = rng.standard_normal(u_entry.tf_shape).astype(np.float32)
    sigma_tf, u_next = tf_power_iteration(kernel.reshape(-1, kernel.shape[-1]).astype(np.float64), u.astype(np.float64))
    if w_entry.kind == "dense_g":  # the row permutation does not change sigma; TF's matrix is the kernel itself
        sigma_tf, u_next = tf_power_iteration(kernel.astype(np.float64), u.astype(np.float64))
    layer = G.get_submodule(key)
    sn = layer.parametrizations.weight[0]
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(torch.from_numpy(to_hamgan(w_entry, kernel)))
        sn._v.copy_(torch.from_numpy(to_hamgan(u_entry, u)))
        w = layer.parametrizations.weight.original.flatten(1)
        sn.eval()
        assert sn.eval_iteration  # the official recipe
        np.testing.assert_allclose(float(sn.sigma(w)), sigma_tf, rtol=1e-5)  # float32 vs float64 matmuls
        sn.train()
        np.testing.assert_allclose(float(sn.sigma(w)), sigma_tf, rtol=1e-5)
        np.testing.assert_allclose(to_tf(u_entry, sn._v.numpy()), u_next, rtol=1e-4, atol=1e-6)


def test_embedding_and_its_vector_keep_their_layout():
    cfg = small_cfg()
    _, D = perturbed(cfg)
    entries = {e.key: e for e in layout(D, "D")}
    emb, u = entries["embedding.parametrizations.weight.original"], entries["embedding.parametrizations.weight.0._v"]
    assert emb.tf_name == "Discriminator/discriminator/d_embedding/embedding_map"
    assert u.tf_name == "Discriminator/discriminator/d_embedding/spectral_normalize/spectral_norm/spectral_norm_u"
    table = np.random.default_rng(4).standard_normal(emb.tf_shape).astype(np.float32)  # (classes, dim)
    vec = np.random.default_rng(5).standard_normal(u.tf_shape).astype(np.float32)  # (dim, 1): TF normalises map^T
    assert np.array_equal(to_hamgan(emb, table), table) and np.array_equal(to_hamgan(u, vec), vec[:, 0])
    sigma_tf, _ = tf_power_iteration(table.T.astype(np.float64), vec.astype(np.float64))
    sn = D.embedding.parametrizations.weight[0]
    with torch.no_grad():
        D.embedding.parametrizations.weight.original.copy_(torch.from_numpy(table))
        sn._v.copy_(torch.from_numpy(vec[:, 0]))
        sn.eval()
        np.testing.assert_allclose(float(sn.sigma(torch.from_numpy(table))), sigma_tf, rtol=1e-5)


def test_batch_norm_gammas_betas_and_moving_statistics():
    cfg = small_cfg()
    G, _ = perturbed(cfg)
    entries = {e.tf_name: e for e in layout(G, "G")}
    gamma = entries["Generator/generator/g_block2/cbn_1/gamma"]
    assert gamma.key == "blocks.1.bn2.gain" and gamma.tf_shape == (3, 1, 1, gamma.shape[1])
    values = np.random.default_rng(6).standard_normal(gamma.tf_shape).astype(np.float32)
    assert np.array_equal(to_hamgan(gamma, values), values[:, 0, 0, :])
    assert entries["Generator/generator/g_block2/cbn_1/moving_variance"].key == "blocks.1.bn2.bn.running_var"
    assert entries["Generator/generator/g_bn/gamma"].key == "bn.weight"
    assert entries["Generator/generator/g_bn/gamma"].tf_shape == (1, 1, 1, 16)  # 4 * width at resolution 32
    assert entries["Generator/generator/g_ops/upper_bread_bn/beta"].key == "context.norm.bias"
    assert entries["Generator/generator/g_ops/sigma_ratio"].key == "context.sigma"
    # the running statistics mean TF's: decay 0.999 (momentum 0.001) over the biased batch variance
    assert cfg.model.bn.momentum == pytest.approx(0.001) and cfg.model.bn.running_var == "biased"


# ---- the official variable lists ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_networks():
    """G and D of the official HamGAN and SAGAN configs at full size (42M + 39M parameters: built once)."""
    nets = {}
    for name in ("hamgan_baby", "sagan"):
        cfg = load_config(ROOT / "configs" / f"imagenet128_{name}.yaml")
        torch.manual_seed(0)
        nets[name] = (cfg, generator_from_config(cfg.model), discriminator_from_config(cfg.model))
    return nets


@pytest.mark.slow
def test_layout_is_exactly_the_official_variable_list(full_networks):
    """Every variable of official_tf_variables.json (names, shapes, trainable) and nothing else, for the three
    graphs; no hamgan tensor left without one (the 'unfilled' check)."""
    reference = json.loads(REFERENCE.read_text())
    for graph, nets in (("hamgan_baby", "hamgan_baby"), ("hamgan_strong", "hamgan_baby"), ("sagan_tfgan", "sagan")):
        _, G, D = full_networks[nets]
        entries = layout(G, "G") + layout(D, "D")
        ours = {e.tf_name: (list(e.tf_shape), e.trainable) for e in entries}
        theirs = {v["name"]: (v["shape"], v["trainable"]) for v in reference[graph]["variables"]}
        assert ours == theirs, graph
        assert len(entries) == len(ours)  # each name once
        assert len({(e.net, e.key) for e in entries}) == len(entries)  # each hamgan tensor once


@pytest.mark.slow
def test_full_official_hamgan_checkpoint_every_value_lands_where_tf_gans_layout_says(full_networks):
    """A checkpoint with exactly the official HamGAN variable list (random values, + global_step, beta powers and
    Adam slots of two variables) converts; exporting the result with scripts/check_tfgan_parity.py's independent
    exporter (checked against TF-GAN by make parity) gives back every value bit for bit."""
    spec = importlib.util.spec_from_file_location("parity", ROOT / "scripts" / "check_tfgan_parity.py")
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    cfg = full_networks["hamgan_baby"][0]
    rng = np.random.default_rng(7)
    variables = json.loads(REFERENCE.read_text())["hamgan_baby"]["variables"]
    arrays = {v["name"]: rng.standard_normal(v["shape"], dtype=np.float32) for v in variables}
    assert all(a.dtype.name == v["dtype"] for a, v in zip(arrays.values(), variables))
    extra = {"global_step": np.int64(912_000), "beta1_power": np.float32(0.0), "beta2_power_1": np.float32(0.4),
             "Generator/generator/g_ops/sigma_ratio/Adam": np.float32(0.1),
             "Generator/generator/g_ops/sigma_ratio/Adam_1": np.float32(0.2)}
    state, report = convert_official(DictReader({**arrays, **extra}), cfg)
    per_net = {net: sum(v["name"].startswith(root) for v in variables)
               for net, root in (("G", "Generator/"), ("D", "Discriminator/"))}
    assert report.placed == per_net == {"G": 104, "D": 61} and report.step == 912_000 and report.slots == 2
    assert report.counters == {"global_step": 912_000, "beta1_power": 0.0, "beta2_power_1": pytest.approx(0.4)}
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
    exported = {**parity.tf_weights(G, "G"), **parity.tf_weights(D, "D")}
    for name, value in arrays.items():
        bare = name.replace("Generator/", "").replace("Discriminator/", "")  # the exporter's names have no roots
        assert np.array_equal(parity.tf_value(bare, exported).reshape(value.shape), value), name


# ---- conversion: round trip, outputs, optimizer --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("context", ["ham", "attention"])
def test_converted_networks_give_the_same_outputs_in_train_and_eval_mode(context: str):
    cfg = small_cfg(context)
    G0, D0 = perturbed(cfg, seed=1)
    state, _ = convert_official(DictReader(export(G0, D0)), cfg)
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
    for key, value in G0.state_dict().items():
        if not key.endswith(("._u", "num_batches_tracked", "_extra_state")):
            assert torch.equal(state["G"][key], value), key
    z, y, x = torch.randn(4, cfg.model.z_dim), torch.tensor([0, 1, 2, 1]), torch.rand(4, 3, 32, 32) * 2 - 1
    for mode in ("train", "eval"):
        torch.manual_seed(5)  # the NMF bases of the Hamburger
        a = getattr(G0, mode)()(z, y), getattr(D0, mode)()(x, y)
        torch.manual_seed(5)
        b = getattr(G, mode)()(z, y), getattr(D, mode)()(x, y)
        for ours, theirs in zip(b, a):  # same numbers, same ops: equal up to summation order
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # u is derived: normalize(W v) (TF's v of the next power iteration)
    prefix = "blocks.0.conv1.parametrizations.weight"
    w, v = state["G"][f"{prefix}.original"].flatten(1), state["G"][f"{prefix}.0._v"]
    torch.testing.assert_close(state["G"][f"{prefix}.0._u"], F.normalize(w @ v, dim=0, eps=1e-6))


def test_with_optimizer_carries_adam_moments_through_the_layout_change(small):
    cfg, G0, D0, tf = small
    rng = np.random.default_rng(8)
    trainable = [e for net, m in (("G", G0), ("D", D0)) for e in layout(m, net) if e.trainable]
    slots = {f"{e.tf_name}/{s}": rng.random(e.tf_shape, dtype=np.float32)
             for e in trainable for s in ("Adam", "Adam_1")}
    reader = DictReader({**tf, **slots, "global_step": np.int64(41)})
    state, report = convert_official(reader, cfg, with_optimizer=True)
    assert report.step == 41 and state["step"] == 41 and report.slots == len(slots)
    G = generator_from_config(cfg.model)
    G.load_state_dict(state["G"])
    opt = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=tuple(cfg.train.betas))
    opt.load_state_dict(state["opt_G"])
    conv = G.blocks[0].conv1.parametrizations.weight.original
    m = opt.state[conv]["exp_avg"].numpy()
    k = slots["Generator/generator/g_block1/snconv1/snconv1/kernel/Adam"]
    assert np.array_equal(m, k.transpose(3, 2, 0, 1)) and float(opt.state[conv]["step"]) == 41
    v = opt.state[G.linear.parametrizations.weight.original]["exp_avg_sq"].numpy()
    assert np.array_equal(v[g_linear_order(v.shape[0])].T, slots["Generator/generator/g_snh0/dense/kernel/Adam_1"])
    assert len(opt.state) == len(list(G.parameters()))
    # without the flag, fresh Adam states; with it and a slot missing, the slot is named
    fresh, report = convert_official(reader, cfg)
    assert fresh["opt_G"]["state"] == {} and "skipped" in report.lines()[2]
    del slots["Discriminator/discriminator/d_embedding/embedding_map/Adam_1"]
    with pytest.raises(ConvertError, match="d_embedding/embedding_map/Adam_1"):
        convert_official(DictReader({**tf, **slots}), cfg, with_optimizer=True)


# ---- failures are named -------------------------------------------------------------------------------------------


def test_missing_renamed_misshapen_and_unplaceable_variables_are_all_named(small):
    cfg, _, _, tf = small
    broken = dict(tf)
    missing = "Generator/generator/g_block2/snconv2/snconv2/bias"
    del broken[missing]
    old = "Discriminator/discriminator/d_block2/sn_conv1/sn_conv1/kernel"
    broken[old.replace("sn_conv1/sn_conv1", "sn_conv1/sn_convX")] = broken.pop(old)
    shape = "Generator/generator/g_block1/cbn_0/gamma"
    broken[shape] = np.zeros((7, 1, 1, 16), np.float32)
    broken["Generator/generator/g_ops/sigma_ratio"] = np.float64(0.5)
    with pytest.raises(ConvertError) as info:
        convert_official(DictReader(broken), cfg)
    message = str(info.value)
    assert f"missing from the checkpoint: {missing}" in message.replace("variable(s) ", "").replace("2 ", "")
    assert old in message and old.replace("sn_conv1/sn_conv1", "sn_conv1/sn_convX") in message  # renamed: both
    assert f"{shape}: [7, 1, 1, 16] in the checkpoint, [3, 1, 1, 16] in the official graph" in message
    assert "not float32: Generator/generator/g_ops/sigma_ratio: float64" in message


def test_a_checkpoint_of_the_other_model_is_refused_with_a_hint():
    cfg = small_cfg("attention")
    G, D = perturbed(small_cfg("ham"))
    with pytest.raises(ConvertError, match="(?s)sn_lower_bread.*imagenet128_sagan.yaml"):
        convert_official(DictReader(export(G, D)), cfg)


def test_tensors_without_an_official_variable_are_named(small):
    """A config with layers the official graph has not: the legacy v2 cheese has no TF scope (hamgan tensors left
    unfilled); the breads' biases would have one, which the checkpoint lacks."""
    cfg = small_cfg(extra=["model.g.ham.version=v2", "model.g.ham.v2_cheese=legacy"])
    with pytest.raises(ConvertError, match=r"G tensor\(s\) of this config have no variable.*context\.cheese\.0"):
        convert_official(DictReader(small[3]), cfg)
    cfg = small_cfg(extra=["model.g.ham.bread_bias=true"])
    with pytest.raises(ConvertError, match=r"missing from the checkpoint: Generator/generator/g_ops/sn_lower_bread/b"):
        convert_official(DictReader(small[3]), cfg)


def test_roots_follow_the_explicit_rule(small):
    """No estimator scope, or an outer (TPU) scope: the roots are found from the anchor names, and the spectral-norm
    names repeat them, as TF-GAN builds them; a second candidate root is refused unless given; --skip is exact."""
    cfg, G, D, _ = small
    for roots in ({"G": "", "D": ""}, {"G": "tpu/Generator/", "D": "tpu/Discriminator/"}):
        tf = export(G, D, roots)
        r = roots["G"]
        assert f"{r}generator/g_snh0/dense/{r}generator/g_snh0/dense/kernel/spectral_normalize/spectral_norm/" \
               "spectral_norm_u" in tf
        state, report = convert_official(DictReader(tf), cfg)
        assert report.roots == roots and torch.equal(state["G"]["linear.bias"], G.linear.bias.detach())
    assert find_root({"Generator/generator/g_snh0/dense/kernel", "x/ygenerator/g_snh0/dense/kernel"}, "G") == \
        "Generator/"  # a root is empty or ends in '/': nothing is matched inside a scope name
    with pytest.raises(ValueError, match="found it under"):
        find_root({"a/generator/g_snh0/dense/kernel", "b/generator/g_snh0/dense/kernel"}, "G")
    tf = export(G, D, {"G": "a/", "D": "a/"})
    tf["b/generator/g_snh0/dense/kernel"] = tf["a/generator/g_snh0/dense/kernel"]
    with pytest.raises(ConvertError, match="--g-root"):
        convert_official(DictReader(tf), cfg)
    with pytest.raises(ConvertError, match="cannot be placed.*b/generator/g_snh0/dense/kernel"):
        convert_official(DictReader(tf), cfg, roots={"G": "a/", "D": None})
    _, report = convert_official(DictReader(tf), cfg, roots={"G": "a/", "D": None}, skip=["b/.*"])
    assert report.skipped == ["b/generator/g_snh0/dense/kernel"] and "skipped by --skip: 1" in report.lines()[-1]


def test_optimizer_variables_and_counters_are_recognised_exactly():
    trainable = {"Generator/generator/g_snh0/dense/kernel"}
    assert optimizer_variable("Generator/generator/g_snh0/dense/kernel/Adam_1", trainable) == "slot"
    assert optimizer_variable("Generator/generator/g_snh0/dense/bias/Adam", trainable) is None  # not mapped
    assert optimizer_variable("Generator/generator/g_snh0/dense/kernel/Adam_2", trainable) is None
    for name in ("global_step", "beta1_power", "beta2_power_1", "Generator/beta1_power"):
        assert optimizer_variable(name, trainable) == "counter", name
    assert optimizer_variable("global_step_x", trainable) is None


def test_unreadable_variables_are_named_and_no_output_file_is_left(small, tmp_path: Path, monkeypatch, capsys):
    cfg, _, _, tf = small

    class Truncated(DictReader):
        def read(self, names):
            raise ReadError("cannot read 1 variable(s) of model.ckpt-5",
                            {"Discriminator/discriminator/d_sn_linear/dense/bias": "IndexError: Read less bytes "
                             "than requested"})

    out = tmp_path / "out" / "model.pt"
    for reader, expected in [(Truncated(tf), "d_sn_linear/dense/bias: IndexError"),
                             (DictReader({k: v for k, v in tf.items() if "g_block3/cbn_0/beta" not in k}),
                              "g_block3/cbn_0/beta")]:
        monkeypatch.setattr("hamgan.convert.tf_reader.open_reader", lambda *a, reader=reader: reader)
        status = cli.main(["official-tf", "model.ckpt-5", "--config", str(ROOT / "configs" /
                                                                          "imagenet128_hamgan_baby.yaml"),
                           "--out", str(out), *SMALL])
        assert status == cli.EXIT_BAD_INPUT and expected in capsys.readouterr().err
        assert not out.exists() and not list(tmp_path.rglob("*.tmp"))


def test_readers_without_tensorflow_say_how_to_get_it(tmp_path: Path):
    assert normalize_prefix("d/model.ckpt-5.index") == "d/model.ckpt-5"
    assert normalize_prefix("d/model.ckpt-5.data-00000-of-00001") == "d/model.ckpt-5"
    assert normalize_prefix("d/model.ckpt-5") == "d/model.ckpt-5"
    with pytest.raises(ReadError, match=r"hamgan\[convert\]"):
        SubprocessReader(tmp_path / "model.ckpt-5", tmp_path / "no-python")
    has_tf = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True).returncode == 0
    if not has_tf:
        with pytest.raises(ReadError, match=r"pip install 'hamgan\[convert\]'"):
            SubprocessReader(tmp_path / "model.ckpt-5", sys.executable)


@pytest.mark.slow
def test_the_core_package_never_imports_tensorflow():
    code = ("import sys, hamgan.convert.cli, hamgan.convert.official, hamgan.convert.tf_reader, hamgan.train, "
            "hamgan.sample, hamgan.evaluate; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tensorflow_checkpoint_reader')]; assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


TF_PYTHON = Path("~/.cache/hamgan/tf215-venv/bin/python").expanduser()  # made by make parity / make convert-check


@pytest.mark.slow
@pytest.mark.skipif(not TF_PYTHON.is_file(), reason="no TF venv (make parity creates it; make convert-check runs "
                    "the TF-side checks in CI)")
def test_subprocess_reader_reads_what_tensorflow_writes_and_names_what_it_cannot(tmp_path: Path):
    """TensorFlow writes a checkpoint (a scalar, an int64 step, a kernel); the reader gives back names, shapes,
    dtypes and values bit for bit, from the prefix, its .index file or its folder; a truncated data file is a
    ReadError naming each variable TF cannot read."""
    values = {"Generator/generator/g_ops/sigma_ratio": np.float32(0.25), "global_step": np.int64(12),
              "Generator/generator/g_block1/snconv1/snconv1/kernel": np.arange(3 * 3 * 4 * 5, dtype=np.float32)
              .reshape(3, 3, 4, 5) / 7}
    np.savez(tmp_path / "values.npz", **{f"v{i}": v for i, v in enumerate(values.values())})
    (tmp_path / "names.json").write_text(json.dumps(list(values)))
    code = ("import json, numpy as np, tensorflow.compat.v1 as tf; tf.disable_eager_execution(); "
            f"names = json.load(open({str(tmp_path / 'names.json')!r})); v = np.load({str(tmp_path / 'values.npz')!r})"
            "; vs = [tf.Variable(v[f'v{i}'], name=n) for i, n in enumerate(names)]; s = tf.Session(); "
            "s.run(tf.global_variables_initializer()); "
            f"tf.train.Saver(vs).save(s, {str(tmp_path / 'ckpt' / 'model.ckpt')!r}, global_step=12, "
            "write_meta_graph=False)")
    done = subprocess.run([str(TF_PYTHON), "-c", code], capture_output=True, text=True,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    for given in ("model.ckpt-12", "model.ckpt-12.index", ""):
        reader = SubprocessReader(tmp_path / "ckpt" / given, TF_PYTHON)
        assert reader.source == str(tmp_path / "ckpt" / "model.ckpt-12")
        assert reader.variables() == {n: (np.shape(v), np.asarray(v).dtype.name) for n, v in values.items()}
    read = reader.read(list(values))  # TF starts in a few seconds: one read
    for name, value in values.items():
        assert read[name].dtype == np.asarray(value).dtype and read[name].tobytes() == np.asarray(value).tobytes()
    data = next((tmp_path / "ckpt").glob("model.ckpt-12.data-*"))
    with open(data, "r+b") as f:
        f.truncate(8)
    with pytest.raises(ReadError) as info:
        SubprocessReader(tmp_path / "ckpt" / "model.ckpt-12", TF_PYTHON).read(list(values))
    assert "Generator/generator/g_block1/snconv1/snconv1/kernel" in info.value.errors
