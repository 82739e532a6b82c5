"""hamgan.config: YAML loading, dotted overrides, unknown keys with suggestions, type errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hamgan.config import Config, ConfigError, from_dict, load_config, parse_override, save_config, to_dict

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_are_the_paper_settings():
    cfg = load_config()
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.betas, cfg.train.loss) == (1e-4, 4e-4, [0.0, 0.999], "hinge")
    m = cfg.model
    for net, rank in ((m.g, 32), (m.d, 16)):
        assert (net.context, net.context_res, net.ham.kind, net.ham.steps, net.ham.groups, net.ham.rank) == (
            "ham", 32, "nmf", 6, 1, rank)
        assert (net.ham.version, net.ham.bread_bias, net.ham.v2_cheese) == ("v1", False, "official")
    # the official recipe (README "The official recipe")
    assert m.init == "xavier" and (m.bn.eps, m.bn.momentum, m.bn.running_var) == (1e-3, 0.001, "biased")
    assert (m.sn.bound, m.sn.context_bound, m.sn.eval_iteration, m.sn.warmup) == ("at_most_one", "exact", True, 0)
    assert (cfg.data.resize, cfg.data.hflip) == ("tf-bilinear", False)


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr_g: 1e-4\n  batch_size: 64\nmodel:\n  g: {channels: 32}\n")
    cfg = load_config(path, ["train.lr_g=2e-4", "train.betas=[0.5,0.9]", "model.g.context=attention",
                             "model.d.ham.dim=null", "train.ema.enabled=false", "data.root=/some/where"])
    assert cfg.train.lr_g == 2e-4 and isinstance(cfg.train.lr_g, float)
    assert cfg.train.betas == [0.5, 0.9]
    assert cfg.model.g.context == "attention" and cfg.model.d.context == "ham" and cfg.model.d.ham.dim is None
    assert cfg.train.ema.enabled is False and cfg.data.root == "/some/where"
    assert cfg.train.batch_size == 64 and cfg.model.g.channels == 32
    assert cfg.model.g.context_res == 32  # a partial section keeps the other defaults


def test_yaml_1_1_float_strings_and_ints_as_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr_d: 4e-4, eps: 1}\n")  # PyYAML reads 4e-4 as a string
    cfg = load_config(path)
    assert cfg.train.lr_d == 4e-4 and cfg.train.eps == 1.0 and isinstance(cfg.train.eps, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=1e-3", "unknown config key 'train.lr'. Did you mean: train.lr_g, train.lr_d"),
        ("trian.steps=5", "unknown config key 'trian.steps'. Did you mean: train.steps"),
        ("model.g.chanels=8", "Did you mean: model.g.channels"),
        ("train.batch_size=64.5", "config key 'train.batch_size' must be of type int, got 64.5"),
        ("train.batch_size=true", "config key 'train.batch_size' must be of type int, got True"),
        ("train.compile=yes please", "config key 'train.compile' must be true or false"),
        ("model.g.context=transformer", "config key 'model.g.context' must be one of 'none', 'ham', 'attention', "
                                        "'ylg'"),
        ("model.bn.eps=small", "config key 'model.bn.eps' must be of type float"),
        ("model.sn.bound=two", "config key 'model.sn.bound' must be one of 'at_most_one', 'exact'"),
        ("data.resize=nearest", "config key 'data.resize' must be one of 'tf-bilinear', 'pil-bicubic'"),
        ("model.init=kaiming", "config key 'model.init' must be one of 'xavier', 'orthogonal', 'normal'"),
        ("model.resolution=48", "config key 'model.resolution' must be one of 32, 64, 128"),
        ("train.betas=0.9", "config key 'train.betas' must be a list"),
        ("train.betas=[0.0,x]", "config key 'train.betas[1]' must be of type float"),
        ("model.g.ham=3", "config key 'model.g.ham' is a section"),
        ("train.steps", "override 'train.steps' must look like dotted.key=value"),
        ("train.steps=[1,", "is not valid YAML"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  resolutoin: 32\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.resolutoin'. Did you mean: model.resolution"):
        load_config(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.yaml' does not exist. Available in configs/"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="a config must be a mapping of sections"):
        from_dict([1, 2])


def test_save_load_round_trip(tmp_path):
    cfg = load_config(None, ["model.d.context=none", "train.betas=[0.0,0.9]", "data.root=/x"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and isinstance(again, Config)
    assert to_dict(again)["model"]["d"]["context"] == "none" and "context" not in to_dict(again)["model"]


def test_parse_override():
    assert parse_override("train.steps=5") == ("train.steps", 5)
    assert parse_override("train.betas=[0.0, 0.9]") == ("train.betas", [0.0, 0.9])
    assert parse_override("data.root=") == ("data.root", None)
    assert parse_override("log.name=a=b") == ("log.name", "a=b")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.train.betas == [0.0, 0.999]


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_fmnist_configs_differ_only_in_the_context():
    ham, sagan, none = (_flat(to_dict(load_config(CONFIGS / f"fmnist32_{n}.yaml")))
                        for n in ("hamgan", "sagan", "none"))
    context_keys = {k for k in ham if k.startswith(("model.g.", "model.d."))} - {"model.g.channels", "model.d.channels"}
    for other in (sagan, none):
        differing = {k for k in ham if ham[k] != other[k]}
        assert differing <= context_keys, differing - context_keys
    for net in ("g", "d"):
        assert (ham[f"model.{net}.context"], sagan[f"model.{net}.context"], none[f"model.{net}.context"]) == (
            "ham", "attention", "none")
    assert ham["model.g.channels"] == sagan["model.g.channels"] == none["model.g.channels"]
    assert ham["model.resolution"] == 32 and ham["model.img_channels"] == 1 and ham["data.name"] == "fmnist"
    # the study's recipe (results/fmnist32), stated in the files: hamgan's first PyTorch choices
    assert (ham["model.init"], ham["model.bn.eps"], ham["model.sn.bound"], ham["model.sn.warmup"]) == (
        "orthogonal", 1e-5, "exact", 15)
    assert (ham["model.g.ham.bread_bias"], ham["data.resize"]) == (True, "pil-bicubic")


OLD_SCHEMA = "belongs to the schema before per-network context settings"


@pytest.mark.parametrize("key, model", [
    ("model.context", {"context": "attention"}),
    ("model.ham", {"ham": {"kind": "cd"}}),
    ("model.g.ham_rank", {"g": {"channels": 8, "ham_rank": 4}}),
    ("model.d.ham_dim", {"d": {"ham_dim": 12}}),
])
def test_old_schema_mapping_file_and_override_get_one_error_naming_the_change(tmp_path, key, model):
    """The schema before per-network context settings is refused, wherever it comes from (a checkpoint's config
    mapping, a config file, an override), with one error that says how to write each old key."""
    how = ("write model.context as model.g.context and model.d.context; model.ham.<key> as model.g.ham.<key> and "
           "model.d.ham.<key>; model.<g|d>.ham_dim / ham_rank as model.<g|d>.ham.dim / ham.rank")
    with pytest.raises(ConfigError, match=f"^config key '{key}' {OLD_SCHEMA}") as err:
        from_dict({"model": model})
    assert how in str(err.value) and "model.init=orthogonal" in str(err.value)  # and the old recipe's keys
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"model": model}))
    with pytest.raises(ConfigError, match=f"^config file '{path}': config key '{key}' {OLD_SCHEMA}"):
        load_config(path)
    leaf = {"model.ham": "model.ham.steps", "model.g.ham_rank": "model.g.ham_rank"}.get(key, key)
    with pytest.raises(ConfigError, match=f"^config key '{leaf}' {OLD_SCHEMA}"):
        load_config(None, [f"{leaf}=3"])


def test_new_keys_that_resemble_old_ones_are_not_refused_as_old():
    cfg = load_config(None, ["model.g.context=none", "model.d.ham.rank=3", "model.g.ham.dim=8"])
    assert (cfg.model.g.context, cfg.model.d.ham.rank, cfg.model.g.ham.dim) == ("none", 3, 8)
    with pytest.raises(ConfigError, match="unknown config key 'model.g.ham_size'"):
        load_config(None, ["model.g.ham_size=3"])


def test_include_merges_files_in_order_then_the_file_itself(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "base.yaml").write_text("model: {init: normal, g: {channels: 8}}\ntrain: {steps: 5}\n")
    (tmp_path / "presets" / "p.yaml").write_text("model: {init: orthogonal, bn: {eps: 0.1}}\n")
    (tmp_path / "top.yaml").write_text("include: [base.yaml, presets/p.yaml]\ntrain: {batch_size: 3}\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert (cfg.model.init, cfg.model.bn.eps, cfg.model.g.channels) == ("orthogonal", 0.1, 8)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.model.bn.momentum) == (5, 3, 0.001)
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("include: [nope.yaml]\n")
    with pytest.raises(ConfigError, match="nope.yaml' .included from"):
        load_config(tmp_path / "missing.yaml")


def test_a_partial_network_section_keeps_that_networks_defaults():
    cfg = load_config(None, ["model.d.ham.kind=cd"])
    assert (cfg.model.d.ham.kind, cfg.model.d.ham.rank, cfg.model.g.ham.kind, cfg.model.g.ham.rank) == (
        "cd", 16, "nmf", 32)


def test_imagenet_configs_follow_the_paper():
    from hamgan.nn.networks import valid_context_res

    for name, batch, steps in [("hamgan_baby", 256, 2_000_000), ("hamgan_strong", 1024, 1_000_000),
                               ("sagan", 256, 2_000_000), ("ylg", 256, 1_000_000), ("sagan64", 256, 1_000_000)]:
        cfg = load_config(CONFIGS / f"imagenet128_{name}.yaml")
        t, m, d = cfg.train, cfg.model, cfg.data
        assert (t.batch_size, t.steps, t.lr_g, t.lr_d, t.betas, t.loss, t.d_steps) == (
            batch, steps, 1e-4, 4e-4, [0.0, 0.999], "hinge", 1), name
        assert not t.ema.enabled  # the paper used no EMA
        assert t.sync_bn  # cross-replica BN in G, as on TPU (a no-op in one process)
        assert (m.resolution, m.num_classes, m.z_dim, m.g.channels, m.d.channels) == (128, 1000, 128, 64, 64)
        res = 64 if name == "sagan64" else 32
        assert m.g.context_res == m.d.context_res == res
        assert res in valid_context_res(128, "g") and res in valid_context_res(128, "d")
        if name == "sagan64":  # StudioGAN's SAGAN: its recipe
            assert (m.init, m.bn.eps, m.sn.bound, d.resize, d.hflip) == ("orthogonal", 1e-4, "exact", "pil-lanczos",
                                                                          True)
            continue
        # the official recipe, every row
        assert m.init == "xavier" and (m.bn.eps, m.bn.momentum, m.bn.running_var) == (1e-3, 0.001, "biased")
        assert (m.sn.bound, m.sn.context_bound, m.sn.eval_iteration, m.sn.warmup) == (
            "at_most_one", "exact", True, 0)
        assert (d.resize, d.hflip) == ("tf-bilinear", False)
        kind = {"hamgan_baby": "ham", "hamgan_strong": "ham", "sagan": "attention", "ylg": "ylg"}[name]
        assert m.g.context == m.d.context == kind
        if kind == "ham":
            for net, dim, rank in ((m.g, 256, 32), (m.d, 128, 16)):
                h = net.ham
                assert (h.kind, h.version, h.groups, h.steps, h.eval_steps, h.grad) == (
                    "nmf", "v1", 1, 6, None, "one_step")
                assert (h.dim, h.rank, h.bread_bias) == (dim, rank, False)
        if kind == "ylg":
            assert m.g.ylg.heads == m.d.ylg.heads == 8
        f = t.fid
        assert (f.use_ema, f.bn) == (False, "batch")  # the official code samples G with per-batch statistics


@pytest.mark.parametrize("preset", sorted((CONFIGS / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_apply_on_top_of_a_config(preset, tmp_path):
    top = tmp_path / "c.yaml"
    top.write_text(f"include: [{CONFIGS / 'imagenet128_sagan.yaml'}, {preset}]\n")
    cfg = load_config(top)
    assert cfg.model.init == "orthogonal" and cfg.model.sn.bound == "exact" and cfg.model.g.context == "attention"
    m, t = cfg.model, cfg.train
    if preset.name == "biggan_pytorch.yaml":
        # scripts/launch_BigGAN_bs256x8.sh: no --mybn, so F.batch_norm (unbiased running variance), momentum 0.1;
        # --BN_eps 1e-5 --adam_eps 1e-6; --G_eval_mode --use_ema without --accumulate_stats: running statistics
        assert (m.bn.eps, m.bn.momentum, m.bn.running_var) == (1e-5, 0.1, "unbiased")
        assert (m.sn.eval_iteration, m.sn.warmup) == (True, 0)
        assert t.eps == 1e-6
        assert (cfg.data.resize, cfg.data.hflip) == ("pil-bilinear", False)
        assert (t.ema.enabled, t.ema.start, t.ema.decay) == (True, 20000, 0.9999)
        assert (t.fid.use_ema, t.fid.bn) == (True, "running")
    elif preset.name == "studiogan.yaml":
        # ops.batchnorm_2d: nn.BatchNorm2d(eps=1e-4, momentum=0.1); config.py: Adam eps 1e-6; torch's old SN
        assert (m.bn.eps, m.bn.momentum, m.bn.running_var) == (1e-4, 0.1, "unbiased")
        assert (m.sn.eval_iteration, m.sn.warmup) == (False, 0)
        assert t.eps == 1e-6
        assert (cfg.data.resize, cfg.data.hflip) == ("pil-lanczos", True)
        assert t.fid.bn == "running"
    else:
        pytest.fail(f"no expectations for the preset {preset.name}")


def test_fid_bn_fields_parse_and_default_to_auto():
    from hamgan.bn_modes import BNMode, from_config

    cfg = load_config()
    f = cfg.train.fid
    assert (f.bn, f.bn_batches, f.bn_batch_size, f.sn_refresh) == ("auto", 16, 100, None)
    assert from_config(f, ema=True) == BNMode("standing", 16, 100, 20)
    assert from_config(f, ema=False) == BNMode("running", 16, 100, 0)
    cfg = load_config(None, ["train.fid.bn=batch", "train.fid.bn_batches=4", "train.fid.bn_batch_size=32",
                             "train.fid.sn_refresh=0"])
    assert from_config(cfg.train.fid, ema=True) == BNMode("batch", 4, 32, 0)
    with pytest.raises(ConfigError, match="train.fid.bn' must be one of 'auto', 'running', 'standing', 'batch'"):
        load_config(None, ["train.fid.bn=ema"])
    with pytest.raises(ValueError, match="batches >= 1"):
        from_config(load_config(None, ["train.fid.bn_batches=0"]).train.fid, ema=True)
