"""studies.fmnist32.plan: the models, `name:k` parsing, run order, checkpoint schedule, threads, commands, options."""

from pathlib import Path

import pytest

from hamgan.config import load_config
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from studies.fmnist32.plan import (DEFAULT_MODELS, MODELS, StudyError, StudyOptions, check_options, checkpoint_schedule,
                               default_eval_steps, eval_specs, model_overrides, parse_models, parse_pairs, plan_runs,
                               threads_per_job, train_command)

EXPECTED = {  # model: (G context kind, D context kind, Ham kind)
    "hamgan": ("Hamburger", "Hamburger", "nmf"), "sagan": ("SelfAttention", "SelfAttention", None),
    "none": (None, None, None), "ham-cd": ("Hamburger", "Hamburger", "cd"), "ham-vq": ("Hamburger", "Hamburger", "vq"),
    "ham-g": ("Hamburger", None, "nmf"), "ham-d": (None, "Hamburger", "nmf"),
}


def options(**kw) -> StudyOptions:
    return StudyOptions(**{"models": {"hamgan": (0, 1), "none": (0,)}, "steps": 4000, **kw})


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_builds_the_expected_context_blocks(model):
    cfg = load_config(Path("configs") / MODELS[model].config, model_overrides(model, options())).model
    g_kind, d_kind, ham = EXPECTED[model]
    G, D = generator_from_config(cfg, spectral_norm=False), discriminator_from_config(cfg, spectral_norm=False)
    assert (type(G.context).__name__ if G.context is not None else None) == g_kind
    assert (type(D.context).__name__ if D.context is not None else None) == d_kind
    if ham is not None:
        assert ham in {cfg.g.ham.kind, cfg.d.ham.kind} and (cfg.g.ham.kind if g_kind else cfg.d.ham.kind) == ham
    assert cfg.g.channels == cfg.d.channels == 8  # identical sizes everywhere


def test_model_seed_counts_and_bare_names():
    assert parse_models("hamgan:5,sagan,none:1", (3, 4)) == {"hamgan": (0, 1, 2, 3, 4), "sagan": (3, 4), "none": (0,)}
    study = parse_models(DEFAULT_MODELS)
    assert {m: len(s) for m, s in study.items()} == {"hamgan": 5, "sagan": 5, "none": 5, "ham-cd": 3, "ham-vq": 3}
    assert set(parse_models("ham-g:3,ham-d:3")) == {"ham-g", "ham-d"}
    for bad, message in [("gan", "unknown model 'gan'"), ("hamgan:0", "integer >= 1"), ("hamgan:x", "integer"),
                         ("hamgan,hamgan:2", "given twice"), (",", "names no model")]:
        with pytest.raises(StudyError, match=message):
            parse_models(bad)


def test_runs_go_seeds_outer_models_inner():
    runs = plan_runs(options(models={"hamgan": (0, 1, 2), "none": (0, 1), "ham-g": (0,)}, work=Path("w")))
    assert [r.name for r in runs] == ["hamgan-seed0", "none-seed0", "ham-g-seed0", "hamgan-seed1", "none-seed1",
                                      "hamgan-seed2"]
    assert runs[0].folder == Path("w/hamgan-seed0")


def test_checkpoint_schedule_and_default_eval_steps():
    assert default_eval_steps(4000) == (1000, 2000, 3000)
    assert checkpoint_schedule(4000, (1000, 2000, 3000)) == (1000, 5)
    assert checkpoint_schedule(8000, (1000, 3000, 7000)) == (1000, 9)
    every, keep = checkpoint_schedule(2000, (300,))
    assert every == 100 and keep * every > 2000
    o = options(eval_steps=(1500, 4000))
    check_options(o)
    assert o.eval_steps == (1500,) and o.all_eval_steps == [1500, 4000]  # the final step is always evaluated


def test_threads_per_job():
    assert threads_per_job(2, cores=2) == 1 and threads_per_job(2, cores=16) == 8 and threads_per_job(4, cores=2) == 1
    assert threads_per_job(2, threads=3, cores=2) == 3


def test_train_command_sets_seed_schedule_threads_and_model_overrides():
    o = options(models={"ham-d": (2,)}, jobs=2, threads=None, overrides=("train.batch_size=16",), work=Path("w"))
    check_options(o)
    cmd = train_command(plan_runs(o)[0], o, python="py")
    assert cmd[:4] == ["py", "-m", "hamgan.train", str(o.configs / "fmnist32_hamgan.yaml")]
    assert cmd[cmd.index("--out") + 1] == "w/ham-d-seed2" and cmd[cmd.index("--steps") + 1] == "4000"
    tail = cmd[cmd.index("--steps") + 2:]
    assert tail[:2] == ["model.g.context=none", "train.batch_size=16"]
    assert {"train.seed=2", "train.ckpt_every=1000", "train.keep_last=5", f"train.threads={threads_per_job(2)}",
            "log.wandb=disabled", "log.tqdm=false"} <= set(tail)


def test_eval_specs_mid_and_final():
    o = options(steps=4000, mid_n=2000, final_n=5000, bn_batches=8, bn_batch_size=50, fid_seed=3)
    check_options(o)
    specs = eval_specs(o)
    assert sorted(specs) == [1000, 2000, 3000, 4000]
    assert specs[1000].n == 2000 and specs[1000].metrics == ("fid",) and specs[1000].fid_subsets == ()
    final = specs[4000]
    assert final.n == 5000 and final.metrics == ("fid", "kid", "pr", "dc") and final.fid_subsets == (2000,)
    assert {s.seed for s in specs.values()} == {3} and final.bn.mode == "standing" and final.bn.batches == 8


@pytest.mark.parametrize("change, message", [
    ({"overrides": ("train.seed=3",)}, "set by the study itself"),
    ({"overrides": ("train.threads=2",)}, "set by the study itself"),
    ({"overrides": ("train.keep_last=2",)}, "set by the study itself"),
    ({"overrides": ("train.batch_size",)}, "dotted.key=value"),
    ({"final_n": 1000}, "--allow-small-n"),
    ({"final_n": 8, "mid_n": 16, "allow_small_n": True}, "--mid-n 16 exceeds --final-n 8"),
    ({"eval_steps": (0, 1000)}, "outside 1..--steps"),
    ({"eval_steps": (5000,)}, "outside 1..--steps"),
    ({"models": {"hamgan": (0, 0)}}, "duplicate seeds"),
    ({"models": {"gan": (0,)}}, "unknown model"),
    ({"configs": Path("/nonexistent")}, "not found"),
    ({"jobs": 0}, "--jobs must be >= 1"),
    ({"pairs": (("hamgan", "hamgan"),)}, "with itself"),
])
def test_refused_options(change, message):
    with pytest.raises(StudyError, match=message):
        check_options(options(**change))


def test_small_n_is_allowed_when_asked_and_pairs_parse():
    check_options(options(final_n=8, mid_n=4, allow_small_n=True))
    assert parse_pairs("hamgan-sagan,ham-cd-none") == (("hamgan", "sagan"), ("ham-cd", "none"))
    with pytest.raises(StudyError, match="not A-B"):
        parse_pairs("hamgan+sagan")
