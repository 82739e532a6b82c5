"""hamgan.config: YAML loading, dotted overrides, unknown keys with suggestions, type errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from hamgan.config import Config, ConfigError, from_dict, load_config, parse_override, save_config, to_dict

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_are_the_paper_settings():
    cfg = load_config()
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.betas, cfg.train.loss) == (1e-4, 4e-4, [0.0, 0.999], "hinge")
    assert (cfg.model.ham.kind, cfg.model.ham.steps, cfg.model.ham.groups) == ("nmf", 6, 1)


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr_g: 1e-4\n  batch_size: 64\nmodel:\n  g: {channels: 32}\n")
    cfg = load_config(path, ["train.lr_g=2e-4", "train.betas=[0.5,0.9]", "model.context=attention",
                             "model.d.ham_dim=null", "train.ema.enabled=false", "data.root=/some/where"])
    assert cfg.train.lr_g == 2e-4 and isinstance(cfg.train.lr_g, float)
    assert cfg.train.betas == [0.5, 0.9]
    assert cfg.model.context == "attention" and cfg.model.d.ham_dim is None
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
        ("model.context=transformer", "config key 'model.context' must be one of 'ham', 'attention', 'none'"),
        ("model.resolution=48", "config key 'model.resolution' must be one of 32, 64, 128"),
        ("train.betas=0.9", "config key 'train.betas' must be a list"),
        ("train.betas=[0.0,x]", "config key 'train.betas[1]' must be of type float"),
        ("model.ham=3", "config key 'model.ham' is a section"),
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
    cfg = load_config(None, ["model.context=none", "train.betas=[0.0,0.9]", "data.root=/x"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and isinstance(again, Config)
    assert to_dict(again)["model"]["context"] == "none"


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
    context_keys = {"model.context"} | {k for k in ham if k.startswith(("model.ham.", "model.g.", "model.d."))}
    for other in (sagan, none):
        differing = {k for k in ham if ham[k] != other[k]}
        assert differing <= context_keys, differing - context_keys
    assert (ham["model.context"], sagan["model.context"], none["model.context"]) == ("ham", "attention", "none")
    assert ham["model.g.channels"] == sagan["model.g.channels"] == none["model.g.channels"]
    assert ham["model.resolution"] == 32 and ham["model.img_channels"] == 1 and ham["data.name"] == "fmnist"


def test_imagenet_configs_follow_the_paper():
    from hamgan.nn.networks import valid_context_res

    for name, batch, steps in [("hamgan_baby", 256, 2_000_000), ("hamgan_strong", 1024, 1_000_000),
                               ("sagan", 256, 2_000_000), ("sagan64", 256, 2_000_000)]:
        cfg = load_config(CONFIGS / f"imagenet128_{name}.yaml")
        t, m = cfg.train, cfg.model
        assert (t.batch_size, t.steps, t.lr_g, t.lr_d, t.betas, t.loss, t.d_steps) == (
            batch, steps, 1e-4, 4e-4, [0.0, 0.999], "hinge", 1), name
        assert not t.ema.enabled  # the paper used no EMA
        assert (m.resolution, m.num_classes, m.z_dim, m.g.channels, m.d.channels) == (128, 1000, 128, 64, 64)
        res = 64 if name == "sagan64" else 32
        assert m.g.context_res == m.d.context_res == res
        assert res in valid_context_res(128, "g") and res in valid_context_res(128, "d")
        if name.startswith("hamgan"):
            assert (m.context, m.ham.kind, m.ham.version, m.ham.groups, m.ham.steps, m.ham.grad) == (
                "ham", "nmf", "v1", 1, 6, "one_step")
            assert (m.g.ham_dim, m.g.ham_rank, m.d.ham_dim, m.d.ham_rank) == (256, 32, 128, 16)
        else:
            assert m.context == "attention"


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
