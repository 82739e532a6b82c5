"""hamgan.migrate: configs, overrides and checkpoints of the schema before per-network context settings load and
give the outputs they gave on main before the change (tests/fixtures/legacy, made at d46b03c with 2 threads).

CPU kernels round differently with other thread counts (and instruction sets), so the tests run on 2 threads and
compare sums and sampled values to 1e-6; on the machine that made the fixtures the outputs are equal bit for bit
(sha256 in expected.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hamgan.checkpoint import load_checkpoint, load_generator
from hamgan.config import ConfigError, from_dict, load_config, to_dict
from hamgan.migrate import main, migrate, translate_override
from hamgan.nn.networks import Discriminator, Generator

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "tests" / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


@pytest.fixture(autouse=True)
def two_threads():
    """The fixtures were computed with 2 threads; other tests (the trainer's train.threads=1) change the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def check(t: torch.Tensor, expected: dict) -> None:
    """``t`` against a digest of expected.json: sums and every (numel // 16)-th value, to 1e-6."""
    flat = t.detach().double().flatten()
    assert flat.sum().item() == pytest.approx(expected["sum"], rel=1e-6, abs=1e-6)
    assert flat.abs().sum().item() == pytest.approx(expected["abs"], rel=1e-6, abs=1e-6)
    values = flat[:: max(1, flat.numel() // 16)][: len(expected["values"])]
    torch.testing.assert_close(values, torch.tensor(expected["values"], dtype=torch.float64), rtol=1e-6, atol=1e-6)


def inputs(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(6, cfg.model.z_dim, generator=torch.Generator().manual_seed(0))
    return z, torch.arange(6) % cfg.model.num_classes


@pytest.mark.parametrize("name", ["ham_nmf_v1", "ham_cd_v2", "attention"])
def test_old_checkpoints_give_the_same_outputs_bit_for_bit(name):
    state = load_checkpoint(LEGACY / f"{name}.pt")
    assert "context" in state["config"]["model"]  # written in the old schema
    cfg = from_dict(state["config"])
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    z, y = inputs(cfg)
    for mode in ("eval", "train"):  # train: batch statistics and a power iteration
        G.train(mode == "train"), D.train(mode == "train")
        torch.manual_seed(1)
        with torch.no_grad():
            x = G(z, y)
            check(x, EXPECTED[name][f"G_{mode}"])
            check(D(x, y), EXPECTED[name][f"D_{mode}"])


@pytest.mark.parametrize("model", ["hamgan", "sagan", "none", "ham-cd", "ham-vq"])
def test_committed_study_checkpoints_give_the_same_samples(model):
    """The study's generators (step 4000) give what they gave when the study was reported (digests written by
    tests/fixtures/make_study_samples.py). The earlier study's checkpoints, in the old schema, were replaced with it;
    its "results/fmnist32/..." entries in expected.json are kept as made at d46b03c, and old-schema checkpoints stay
    covered by the legacy fixtures above."""
    expected = json.loads((REPO / "tests" / "fixtures" / "study_samples.json").read_text())[model]
    G, cfg, step = load_generator(REPO / "results" / "fmnist32" / "checkpoints" / f"{model}-seed0.pt")
    assert step == expected["step"]
    assert cfg.model.init == "orthogonal" and cfg.model.sn.bound == "exact" and cfg.data.resize == "pil-bicubic"
    z, y = inputs(cfg)
    for mode in ("eval", "train"):
        G.train(mode == "train")
        torch.manual_seed(1)
        with torch.no_grad():
            check(G(z, y), expected[f"G_{mode}"])


@pytest.mark.parametrize("name", ["fmnist32_hamgan", "fmnist32_sagan", "fmnist32_none"])
@pytest.mark.parametrize("where", ["legacy", "configs"])
def test_old_and_new_fmnist_configs_initialise_the_networks_as_before(name, where):
    folder = LEGACY / "configs" if where == "legacy" else REPO / "configs"
    cfg = load_config(folder / f"{name}.yaml")
    torch.manual_seed(0)
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    for label, net in (("G", G), ("D", D)):
        state = net.state_dict()
        assert len(state) == EXPECTED["init"][name][label]["n"]
        check(torch.cat([v.detach().double().flatten() for v in state.values()]), EXPECTED["init"][name][label])


def test_migration_of_an_old_mapping():
    old = {"model": {"context": "attention", "ham": {"kind": "cd", "steps": 3},
                     "g": {"channels": 8, "context_res": 16, "ham_dim": 12, "ham_rank": 4}, "d": {"ham_rank": 2}},
           "train": {"steps": 5}}
    new = migrate(old)
    assert "context" in old["model"]  # not modified in place
    m = new["model"]
    assert "context" not in m and "ham" not in m
    assert m["init"] == "orthogonal" and m["bn"] == {"eps": 1e-5, "momentum": 0.1, "running_var": "unbiased"}
    assert m["sn"] == {"bound": "exact", "context_bound": "exact", "eval_iteration": False, "warmup": 15}
    assert m["g"] == {"channels": 8, "context_res": 16, "context": "attention",
                      "ham": {"kind": "cd", "steps": 3, "eval_steps": None, "grad": "one_step", "version": "v1",
                              "groups": 1, "dim": 12, "rank": 4}}  # no Hamburger here: its new defaults stay
    assert new["data"] == {"resize": "pil-bicubic"} and new["train"] == {"steps": 5}
    ham = migrate({"model": {"context": "ham", "d": {"ham_rank": 2}}})["model"]
    assert ham["d"]["ham"]["bread_bias"] is True and ham["d"]["ham"]["v2_cheese"] == "legacy"
    assert ham["g"]["ham"]["rank"] == 32 and ham["d"]["ham"]["rank"] == 2  # the old per-network defaults
    fresh = {"model": {"g": {"context": "ham"}}}
    assert migrate(fresh) is fresh  # the new schema passes through


def test_mixing_old_and_new_keys_says_how_to_update():
    with pytest.raises(ConfigError, match=r"mixes .*model.context.* with keys of the new one \(model.bn\); "
                                          r"write the old keys in the new form: model.context -> model.g.context"):
        from_dict({"model": {"context": "ham", "bn": {"eps": 0.1}}})
    with pytest.raises(ConfigError, match=r"model.g.ham_rank.*model.g.ham.*model.<g\|d>.ham_rank -> "
                                          r"model.<g\|d>.ham.rank"):
        from_dict({"model": {"g": {"ham_rank": 3, "ham": {}}}})


def test_old_overrides_set_the_new_keys():
    assert translate_override("model.context", "none") == [("model.g.context", "none"), ("model.d.context", "none")]
    assert translate_override("model.ham.kind", "cd") == [("model.g.ham.kind", "cd"), ("model.d.ham.kind", "cd")]
    assert translate_override("model.d.ham_rank", 3) == [("model.d.ham.rank", 3)]
    assert translate_override("train.steps", 3) == [("train.steps", 3)]
    cfg = load_config(REPO / "configs" / "fmnist32_hamgan.yaml", ["model.ham.kind=vq", "model.context=attention",
                                                                  "model.g.ham_dim=16"])
    assert (cfg.model.g.ham.kind, cfg.model.d.ham.kind, cfg.model.g.ham.dim) == ("vq", "vq", 16)
    assert cfg.model.g.context == cfg.model.d.context == "attention"


def test_read_only_aliases_of_the_old_attributes():
    cfg = load_config(LEGACY / "configs" / "fmnist32_hamgan.yaml").model
    assert cfg.context == "ham" and cfg.ham.kind == "nmf" and cfg.g.ham_rank == 4 and cfg.d.ham_dim is None
    mixed = load_config(None, ["model.g.context=none", "model.d.ham.kind=cd"]).model
    assert mixed.context == "g=none,d=ham" and mixed.ham.kind == "cd"  # D's, the only Hamburger


def test_old_style_fixture_checkpoints_of_conftest_load(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint(tmp_path / "ckpt.pt", context="attention")
    G, cfg, step = load_generator(path)
    assert cfg.model.g.context == "attention" and step == 7


def test_cli_prints_the_new_form(tmp_path, capsys):
    old = LEGACY / "configs" / "fmnist32_hamgan.yaml"
    assert main([str(old)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "context" not in printed["model"] and printed["model"]["g"]["context"] == "ham"
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert to_dict(load_config(path)) == to_dict(load_config(old))
    assert main([str(tmp_path / "missing.yaml")]) == 2


def test_context_name_reads_old_and_per_network_configs(tiny_model):
    from hamgan.evaluate import context_name

    assert context_name(from_dict({"model": tiny_model}).model) == "ham-nmf @16/16"  # old schema
    assert context_name(load_config(REPO / "configs" / "imagenet128_ylg.yaml").model) == "ylg @32/32"
    mixed = load_config(None, ["model.d.context=none", "model.g.context_res=64"]).model
    assert context_name(mixed) == "G ham-nmf @64, D none"
    nmf_cd = load_config(None, ["model.d.ham.kind=cd"]).model
    assert context_name(nmf_cd) == "G ham-nmf @32, D ham-cd @32"
