"""hamgan.train: the loop, exact resume, SIGKILL recovery, bad configs and checkpoints, NaN handling, samples."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from hamgan.train import loop as loop_mod
from hamgan.train.compiled import compiler
from hamgan.train.window import LogWindow
from hamgan.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint
from hamgan.config import load_config, save_config
from hamgan.train import GRID_COLUMNS, Trainer, main, resolve_config, run

ROOT = Path(__file__).resolve().parent.parent

TINY = Path(__file__).resolve().parent / "tiny_train.yaml"  # resolution 32, width 8, synthetic data, 1 thread


def tiny_config(tmp_path: Path, overrides: list[str] = ()) -> Path:
    """tests/tiny_train.yaml + overrides, resolved and written as a YAML file."""
    path = tmp_path / "tiny.yaml"
    save_config(load_config(TINY, list(overrides)), path)
    return path


def train(tmp_path: Path, out: Path, steps: int, overrides: list[str] = ()) -> dict:
    cfg, notes = resolve_config(tiny_config(tmp_path, overrides), out, [], steps)
    return run(cfg, out, notes)


def assert_same_state(a: dict, b: dict) -> None:
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name} differs"
    for opt in ("opt_G", "opt_D"):
        for pid, s in a[opt]["state"].items():
            for k, v in s.items():
                assert torch.equal(v, b[opt]["state"][pid][k]), f"{opt} state {pid}.{k} differs"
    assert a["step"] == b["step"]
    assert a["data"] == b["data"]


# --------------------------------------------------------------------------------------------------------------------
# Exact resume
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_is_bit_exact(tmp_path, num_workers):
    """2N steps in one run == N steps + resume + N steps, across an epoch boundary (8 batches per epoch)."""
    overrides = [f"data.num_workers={num_workers}", "train.ckpt_every=5"]
    train(tmp_path, tmp_path / "once", 10, overrides)
    train(tmp_path, tmp_path / "twice", 5, overrides)
    train(tmp_path, tmp_path / "twice", 10, overrides)
    once = load_checkpoint(tmp_path / "once" / "ckpt-000000010.pt")
    twice = load_checkpoint(tmp_path / "twice" / "ckpt-000000010.pt")
    assert once["data"]["epoch"] == 1  # the run crossed an epoch boundary
    assert_same_state(once, twice)
    # the resumed run's metrics file holds each step once
    steps = [json.loads(line)["step"] for line in (tmp_path / "twice" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 10


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    """A training process killed with SIGKILL resumes from its last checkpoint and finishes, bit-exactly."""
    cfg = tiny_config(tmp_path, ["train.ckpt_every=3"])
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hamgan.train", str(cfg), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--steps", "100000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list_checkpoints(out) or list_checkpoints(out)[-1].name < "ckpt-000000006.pt":
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # leftovers of a save cut short by the kill: a temporary file, and metrics logged after the last checkpoint
    (out / "ckpt-000999999.pt.x1y2.tmp").write_bytes(b"\x00" * 100)
    last_step = load_checkpoint(list_checkpoints(out)[-1])["step"]
    total = last_step + 3
    result = subprocess.run([*cmd, "--steps", str(total)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resumed from {out / f'ckpt-{last_step:09d}.pt'} at step {last_step}" in result.stdout
    assert not list((out).glob("*.tmp"))
    resumed = load_checkpoint(out / f"ckpt-{total:09d}.pt")
    assert resumed["step"] == total
    train(tmp_path, tmp_path / "straight", total, ["train.ckpt_every=3"])
    assert_same_state(load_checkpoint(tmp_path / "straight" / f"ckpt-{total:09d}.pt"), resumed)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_exact(tmp_path):
    """SIGTERM (preemption): the step finishes, a checkpoint is written, exit 143; resuming matches a straight run."""
    cfg = tiny_config(tmp_path, ["train.ckpt_every=1000", "train.log_every=1"])
    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "hamgan.train", str(cfg), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--steps", "100000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM after step" in err and "Traceback" not in err
    [ckpt] = list_checkpoints(out)
    step = load_checkpoint(ckpt)["step"]
    assert step >= 1
    result = subprocess.run([*cmd, "--steps", str(step + 2)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    train(tmp_path, tmp_path / "straight", step + 2, ["train.ckpt_every=1000"])
    assert_same_state(load_checkpoint(tmp_path / "straight" / f"ckpt-{step + 2:09d}.pt"),
                      load_checkpoint(out / f"ckpt-{step + 2:09d}.pt"))


# --------------------------------------------------------------------------------------------------------------------
# Bad input: configs, checkpoints
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_config_exits_2_without_traceback(tmp_path):
    cfg = tiny_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "hamgan.train", str(cfg), "--out", str(tmp_path / "r"), "train.lr=1e-3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hamgan-train: error: unknown config key 'train.lr'.")
    assert "train.lr_g" in lines[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=not-a-number", "train.batch_size' must be of type int"),
        ("model.g.context=transformer", "model.g.context' must be one of"),
        ("train.accumulate=3", "multiple of world_size x train.accumulate"),
        ("model.g.context_res=64", "context_res=64 (config: model.g.context_res) is impossible"),
        ("model.img_channels=2", "model.img_channels must be 1 or 3"),
        ("train.keep_last=0", "train.keep_last' must be >= 1"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, capsys, override, message):
    assert main([str(tiny_config(tmp_path)), "--out", str(tmp_path / "r"), override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_with_other_architecture_is_refused(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    assert main([str(cfg), "--out", str(tmp_path / "r"), "--steps", "2"]) == 0
    assert main([str(cfg), "--out", str(tmp_path / "r"), "--steps", "4", "model.g.context=attention"]) == 2
    err = capsys.readouterr().err
    assert "model.g.context: 'ham' in the run, 'attention' given" in err
    # same run without CONFIG: resumes with the saved config
    assert main(["--out", str(tmp_path / "r"), "--steps", "4", "log.tqdm=false"]) == 0
    assert load_checkpoint(list_checkpoints(tmp_path / "r")[-1])["step"] == 4


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path, capsys):
    train(tmp_path, tmp_path / "none", 2, ["model.g.context=none", "model.d.context=none"])
    other = tmp_path / "ham"
    train(tmp_path, other, 2)
    for ckpt in list_checkpoints(other):
        ckpt.unlink()
    shutil.copy(tmp_path / "none" / "ckpt-000000002.pt", other / "ckpt-000000002.pt")
    assert main([str(tiny_config(tmp_path)), "--out", str(other), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another architecture" in err and "model.g.context: 'none' in the checkpoint" in err


def test_truncated_checkpoint_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "r"
    train(tmp_path, out, 2)
    ckpt = list_checkpoints(out)[-1]
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main([str(tiny_config(tmp_path)), "--out", str(out), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and ckpt.name in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------------------------
# NaN / inf
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["D", "G"])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys, network):
    """A NaN loss at step 3 stops the run (exit 3) naming the step and the network; ckpt at step 2 is intact."""
    name = "d_loss" if network == "D" else "g_loss"
    real_loss = getattr(loop_mod, name)
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    out = tmp_path / "r"
    monkeypatch.setattr(loop_mod, name, poisoned)
    assert main([str(tiny_config(tmp_path)), "--out", str(out), "--steps", "6"]) == 3
    err = capsys.readouterr().err
    assert f"diverged at step 3: the {network} loss is nan" in err
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000000002.pt"]
    good = load_checkpoint(out / "ckpt-000000002.pt")
    assert good["step"] == 2 and all(torch.isfinite(v).all() for v in good["G"].values() if v.is_floating_point())
    report = json.loads((out / "nan_report.json").read_text())
    assert report["step"] == 3 and report["network"] == network
    assert report["tensors"]["fake"]["shape"] == [8, 3, 32, 32]
    assert report["tensors"]["fake_logits"]["nonfinite"] == 0  # the logits were fine, the loss was poisoned
    if network == "D":
        assert set(report["tensors"]) == {"real", "fake", "real_logits", "fake_logits"}
        assert -1.0 <= report["tensors"]["real"]["min"] <= report["tensors"]["real"]["max"] <= 1.0


# --------------------------------------------------------------------------------------------------------------------
# Loop details, logging, samples, checkpoints
# --------------------------------------------------------------------------------------------------------------------


def test_accumulation_and_d_steps_consume_the_global_batch(tmp_path):
    cfg = load_config(tiny_config(tmp_path), ["train.accumulate=2", "train.d_steps=2"])
    from hamgan import distributed

    trainer = Trainer(cfg, tmp_path / "r", distributed.setup("cpu"))
    assert trainer.micro == 4
    trainer.train_step()
    # 2 D updates x 2 micro-batches x 4 images
    assert trainer.data.position() == {"epoch": 0, "index": 16}
    assert trainer.step == 1


@pytest.mark.slow
def test_rotation_keeps_scheduled_checkpoints_across_interrupted_sessions(tmp_path):
    """keep_last counts the ckpt_every schedule: the off-schedule checkpoints of sessions ending at odd steps (as a
    SIGTERM does) never push a scheduled one out, and go once older than the oldest scheduled one kept."""
    out = tmp_path / "r"
    rotation = ["train.keep_last=2", "train.sample_every=100"]  # tiny_train.yaml: ckpt_every 2
    train(tmp_path, out, 3, rotation)
    train(tmp_path, out, 5, rotation)
    assert [checkpoint_step(p) for p in list_checkpoints(out)] == [2, 3, 4, 5]  # before: [4, 5], step 2 gone
    train(tmp_path, out, 6, rotation)
    assert [checkpoint_step(p) for p in list_checkpoints(out)] == [4, 5, 6]


@pytest.mark.slow
def test_metrics_samples_and_checkpoint_rotation(tmp_path):
    out = tmp_path / "r"
    train(tmp_path, out, 6, ["train.sample_every=3", "train.keep_last=2", "train.loss=nonsaturating"])
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000000004.pt", "ckpt-000000006.pt"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    for key in ("loss_g", "loss_d", "d_real", "d_fake", "lr_g", "lr_d", "images_per_s", "peak_mem_mb", "train_s"):
        assert all(isinstance(r[key], float) for r in records), key
    assert 0 < records[0]["train_s"] < records[1]["train_s"] < records[2]["train_s"]  # cumulative training time
    assert records[0]["lr_d"] == 4e-4 and records[0]["lr_g"] == 1e-4
    grid = Image.open(out / "samples" / "step-000000006.png")
    # 4 classes -> 4 rows, GRID_COLUMNS columns of 32 px with 1 px padding
    assert grid.size == (GRID_COLUMNS * 33 + 1, 4 * 33 + 1)
    assert (out / "samples" / "step-000000003.png").is_file()
    assert load_config(out / "config.yaml").train.steps == 6


@pytest.mark.parametrize("mode", ["auto", "running", "batch"])
def test_sample_grid_uses_the_configured_batch_norm_statistics(tmp_path, mode):
    """The grid of the EMA generator uses train.fid.bn (auto: standing statistics for an EMA generator), exactly as
    hamgan-sample would draw it from the checkpoint (regression: grids used the raw G's copied running stats)."""
    import numpy as np

    from hamgan.bn_modes import BNMode
    from hamgan.checkpoint import load_generator
    from hamgan.sample import class_grid

    out = tmp_path / "r"
    train(tmp_path, out, 4, ["train.sample_every=4", f"train.fid.bn={mode}", "train.fid.bn_batches=2",
                             "train.fid.bn_batch_size=8", "train.fid.sn_refresh=0"])
    saved = np.asarray(Image.open(out / "samples" / "step-000000004.png"))
    G, cfg, _ = load_generator(out / "ckpt-000000004.pt", ema=True)
    expected_mode = {"auto": "standing"}.get(mode, mode)
    grids = {m: class_grid(G, [0, 1, 2, 3], GRID_COLUMNS, seed=cfg.train.seed,
                           bn=BNMode(m, batches=2, batch_size=8, sn_iterations=0))
             for m in ("standing", "running", "batch")}

    def png(grid):
        path = tmp_path / "expected.png"
        torchvision_save_image(grid, path)
        return np.asarray(Image.open(path))

    assert np.array_equal(saved, png(grids[expected_mode]))
    assert all(not np.array_equal(saved, png(grids[m])) for m in grids if m != expected_mode)


def torchvision_save_image(grid, path):
    from torchvision.utils import save_image

    save_image(grid, path, nrow=GRID_COLUMNS, padding=1)


@pytest.mark.slow
def test_best_fid_checkpoint(tmp_path, monkeypatch):
    fids = iter([5.0, 3.0, 4.0])
    monkeypatch.setattr(Trainer, "measure_fid", lambda self: next(fids))
    out = tmp_path / "r"
    train(tmp_path, out, 6, ["train.fid.every=2"])
    best = load_checkpoint(out / "ckpt-best.pt")
    assert best["step"] == 4 and best["metrics"]["best_fid"] == 3.0
    last = load_checkpoint(out / "ckpt-000000006.pt")
    assert last["metrics"]["best_fid"] == 3.0 and last["metrics"]["fid"] == 4.0
    fid_records = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "fid" in r]
    assert [(r["step"], r["fid"]) for r in fid_records] == [(2, 5.0), (4, 3.0), (6, 4.0)]


@pytest.mark.slow
def test_real_fid_during_training(tmp_path, fid_weights):
    """Periodic FID with the real Inception: logged, reference cached, best kept, training streams untouched."""
    fid = ["train.fid.every=2", "train.fid.n_samples=6", "train.fid.ref_n=8", "train.fid.batch_size=6"]
    with pytest.warns(UserWarning, match="biased"):
        train(tmp_path, tmp_path / "fid", 4, fid)
    train(tmp_path, tmp_path / "plain", 4)
    out = tmp_path / "fid"
    records = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "fid" in r]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["fid"] > 0 for r in records)
    for r in records:  # every FID record says how it was measured
        assert (r["fid_n"], r["fid_protocol"], r["fid_ref"]) == (6, "pytorch-fid", str(out / "fid_ref.npz"))
        assert r["fid_model"] == "ema" and r["fid_bn"] == "standing" and r["fid_sn_iterations"] == 20
        assert r["fid_bn_batches"] > 0 and r["fid_bn_batch_size"] > 0
    assert (out / "fid_ref.npz").is_file() and (out / "ckpt-best.pt").is_file()
    assert load_checkpoint(out / "ckpt-best.pt")["metrics"]["best_fid"] == min(r["fid"] for r in records)
    assert_same_state(load_checkpoint(out / "ckpt-000000004.pt"),
                      load_checkpoint(tmp_path / "plain" / "ckpt-000000004.pt"))


@pytest.mark.slow
def test_sampling_does_not_change_training(tmp_path):
    """Sample grids draw no numbers from the training RNG streams (the weights match a run without grids)."""
    train(tmp_path, tmp_path / "a", 4, ["train.sample_every=1"])
    train(tmp_path, tmp_path / "b", 4, ["train.sample_every=0"])
    assert_same_state(load_checkpoint(tmp_path / "a" / "ckpt-000000004.pt"),
                      load_checkpoint(tmp_path / "b" / "ckpt-000000004.pt"))


def test_bf16_autocast_channels_last_and_no_ema(tmp_path):
    out = tmp_path / "r"
    last = train(tmp_path, out, 2, ["train.amp=bf16", "train.channels_last=true", "train.ema.enabled=false",
                                    "train.sample_every=2"])
    assert all(torch.isfinite(torch.tensor(v)) for v in (last["loss_d"], last["loss_g"]))
    assert load_checkpoint(out / "ckpt-000000002.pt")["G_ema"] is None


@pytest.mark.slow
def test_cli_overrides_and_module_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "hamgan.train", str(tiny_config(tmp_path)), "--out", str(tmp_path / "r"),
         "--steps", "1", "train.batch_size=4", "log.tqdm=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr
    saved = load_config(tmp_path / "r" / "config.yaml")
    assert saved.train.batch_size == 4 and saved.train.steps == 1


# --------------------------------------------------------------------------------------------------------------------
# Batch norm groups, cross-replica BN in one process, torch.compile
# --------------------------------------------------------------------------------------------------------------------


def test_bn_sees_micro_batches_and_warns_below_16_images(tmp_path):
    """train.accumulate splits the BN batch: every BN layer of G normalises over one micro-batch (8 / 2 = 4)."""
    from hamgan import distributed
    from hamgan.distributed import CrossReplicaBatchNorm2d

    cfg = load_config(TINY, ["train.accumulate=2", "train.sync_bn=true"])
    with pytest.warns(UserWarning, match=r"batch norm in G normalises over 4 images per group "
                                         r"\(train.batch_size=8 / train.accumulate=2; accumulation splits"):
        trainer = Trainer(cfg, tmp_path / "r", distributed.setup("cpu"))
    sizes = []
    for m in trainer.G.modules():
        assert not isinstance(m, CrossReplicaBatchNorm2d)  # sync_bn is a no-op in a single process
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    trainer.train_step()
    trainer.close()
    assert len(sizes) > 0 and set(sizes) == {4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(load_config(TINY, ["train.batch_size=32"]), tmp_path / "r32", distributed.setup("cpu")).close()


def test_bn_group_of_several_ranks():
    from hamgan.train.loop import bn_group_warning

    assert bn_group_warning(micro=8, world_size=4, sync_bn=True, batch=64, accumulate=2) is None  # 32 per group
    text = bn_group_warning(micro=8, world_size=4, sync_bn=False, batch=64, accumulate=2)
    assert "over 8 images per group (train.batch_size=64 / train.accumulate=2 / 4 ranks" in text
    assert text.endswith("or set train.sync_bn=true")
    text = bn_group_warning(micro=2, world_size=4, sync_bn=True, batch=16, accumulate=2)
    assert "over 8 images per group (train.batch_size=16 / train.accumulate=2 over 4 ranks with train.sync_bn" in text


@pytest.mark.slow
def test_compile_matches_eager_on_cpu(tmp_path):
    """train.compile=true (inductor, C++ on the CPU) trains like eager: the first step's losses agree to 1e-4 and the
    weights after 3 steps to 1e-4 relative (L2 over each network). fallback_random makes compiled code draw the Hamburger's
    random bases as eager does.

    Biases and running means are bounded apart: G's biases sit in front of batch norm, whose exact gradient is
    zero, so the computed one is rounding noise of either sign, and Adam with beta1 = 0 makes it a step of
    lr * |g_t| / sqrt(v_t / (1 - beta2^t)) <= lr * sqrt(t) whatever its size: two runs may differ there by up to
    2 * lr * (1 + sqrt(2) + sqrt(3)) after 3 steps (with them, G's weights differed by 1.1e-4 relative on an
    AVX-512 CPU). Measured without them on this recipe: 3e-5 relative; losses 4e-7 at step 1, 1e-4 at step 3."""
    import math

    import torch._inductor.config as inductor_config

    from hamgan import distributed

    results = []
    for compile_ in (False, True):
        cfg = load_config(TINY, [f"train.compile={str(compile_).lower()}"])
        trainer = Trainer(cfg, tmp_path / f"c{compile_}", distributed.setup("cpu"))
        # torch's own patch context: monkeypatch.setattr on inductor's config deletes the key when it undoes
        with inductor_config.patch(fallback_random=True):
            losses = [{k: float(v) for k, v in trainer.train_step().items()} for _ in range(3)]
        trainer.close()
        states = [{k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}
                  for net in (trainer.G, trainer.D)]
        results.append((losses, states))
    (eager_losses, eager_states), (comp_losses, comp_states) = results
    # the first step's losses: rounding only (the later ones carry the Adam steps of rounding noise below)
    for k in eager_losses[0]:
        assert comp_losses[0][k] == pytest.approx(eager_losses[0][k], rel=1e-4, abs=1e-5), k
    adam_bound = 2 * max(cfg.train.lr_g, cfg.train.lr_d) * sum(math.sqrt(t) for t in (1, 2, 3))
    for e, c in zip(eager_states, comp_states):
        weights = [k for k in e if not k.endswith(("bias", "running_mean"))]
        w_e, w_c = (torch.cat([s[k].flatten() for k in weights]) for s in (e, c))
        assert (w_c - w_e).norm() / w_e.norm() < 1e-4
        for k in set(e) - set(weights):
            assert (c[k] - e[k]).abs().max() <= adam_bound, k


def test_both_generator_forwards_run_compiled(tmp_path, monkeypatch):
    """Issue 21, point 5: with train.compile every forward of G (the fakes of the D update and the G update) goes
    through a compiled module; torch.compile is replaced by a wrapper that counts the calls it serves."""
    from hamgan import distributed

    served = []

    class Compiled(torch.nn.Module):
        def __init__(self, module: torch.nn.Module, **options) -> None:
            super().__init__()
            self._orig_mod = module

        def forward(self, *args):
            served.append(distributed.unwrap(self._orig_mod))
            return self._orig_mod(*args)

    monkeypatch.setattr(torch, "compile", Compiled)
    trainer = Trainer(load_config(TINY, ["train.compile=true", "train.d_steps=2"]), tmp_path / "r",
                      distributed.setup("cpu"))
    forwards = []
    trainer.G.register_forward_pre_hook(lambda module, args: forwards.append(module))
    trainer.train_step()
    trainer.close()
    assert len(forwards) == 3  # two D updates and one G update
    assert sum(m is trainer.G for m in served) == 3
    assert sum(m is trainer.D for m in served) == 3


def test_d_sees_the_fakes_in_the_autocast_dtype(tmp_path):
    """``fake.to(x.dtype)`` upcast the bf16 fakes into an extra float32 copy before D; now the reals join the fakes'
    dtype and D's input is bf16 under bf16 autocast (float32 without autocast)."""
    from hamgan import distributed

    for amp, dtype in (("bf16", torch.bfloat16), ("none", torch.float32)):
        trainer = Trainer(load_config(TINY, [f"train.amp={amp}"]), tmp_path / amp, distributed.setup("cpu"))
        seen = []
        trainer.D.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
        trainer.d_update()
        trainer.close()
        assert seen == [dtype], amp


def test_adam_is_fused_on_cuda_only():
    """Fused Adam on CUDA (one kernel per step for all parameters); torch's default implementation elsewhere."""
    params = [torch.nn.Parameter(torch.ones(2))]
    assert loop_mod.make_adam(params, 1e-3, (0.0, 0.9), 1e-8, torch.device("cuda", 0)).defaults["fused"] is True
    cpu = loop_mod.make_adam(params, 1e-3, (0.0, 0.9), 1e-8, torch.device("cpu"))
    assert not cpu.defaults["fused"] and cpu.defaults["betas"] == (0.0, 0.9)


def test_peak_memory_is_the_windows_peak_on_cuda(monkeypatch):
    """On CUDA the peak is reset, so a reading holds the window since the last reset, not a lifetime peak (which
    would include FID's Inception); mocked torch.cuda functions."""
    state = {"now": 100 * 2**20, "peak": 900 * 2**20}  # 900 MB: an earlier FID's Inception
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: state.update(peak=state["now"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    window = LogWindow(torch.device("cuda", 0))
    state["peak"] = 300 * 2**20  # a training step
    assert window.peak_memory_mb() == 300
    state["peak"] = 900 * 2**20
    with window.paused():  # the work between steps
        pass
    assert window.peak_memory_mb() == 100
    assert LogWindow(torch.device("cpu")).peak_memory_mb() > 0  # the process's peak resident set


def test_log_window_means_and_time_without_the_pauses(monkeypatch):
    """close(): each scalar's mean over the window's steps; its seconds leave out the paused work; a new window."""
    clock = iter([0.0, 1.0, 11.0, 12.0, 12.0])  # open, pause from 1 to 11, close at 12, reopen
    monkeypatch.setattr("hamgan.train.window.time.perf_counter", lambda: next(clock))
    window = LogWindow(torch.device("cpu"))
    window.add({"loss": torch.tensor(1.0)})
    with window.paused():
        window.add({"loss": torch.tensor(3.0)})
    means, seconds, steps = window.close()
    assert means == {"loss": 2.0} and seconds == 2.0 and steps == 2
    assert window.steps == 0 and window.sums == {}


@pytest.mark.slow
def test_loop_resets_the_peak_after_work_between_steps(tmp_path, monkeypatch):
    """The loop resets the peak when training starts and after the work between steps (logs, sample grids, FID,
    checkpoints), so each logged peak_mem_mb is that of training steps."""
    from hamgan import distributed

    events = []
    monkeypatch.setattr(LogWindow, "reset_peak_memory", lambda self: events.append(("reset", trainer.step)))
    monkeypatch.setattr(LogWindow, "peak_memory_mb", lambda self: events.append(("read", trainer.step)) or 0.0)
    cfg = load_config(TINY, ["train.log_every=2", "train.ckpt_every=4", "train.sample_every=3", "train.steps=4"])
    trainer = Trainer(cfg, tmp_path / "r", distributed.setup("cpu"))
    trainer.fit()
    assert events == [("reset", 0), ("read", 2), ("reset", 2), ("reset", 3), ("read", 4), ("reset", 4), ("reset", 4)]


# --------------------------------------------------------------------------------------------------------------------
# Periodic FID: fail early, errors logged
# --------------------------------------------------------------------------------------------------------------------


def test_fid_network_is_loaded_at_start_and_fails_early(tmp_path, monkeypatch, capsys):
    import hamgan.train.periodic
    from hamgan.metrics import InceptionWeightsError

    def missing(*args, **kwargs):
        raise InceptionWeightsError("the FID Inception weights could not be loaded (no file)")

    monkeypatch.setattr(hamgan.train.periodic, "InceptionFeatures", missing)
    out = tmp_path / "r"
    assert main([str(tiny_config(tmp_path)), "--out", str(out), "--steps", "4", "train.fid.every=2"]) == 2
    assert "Inception weights could not be loaded" in capsys.readouterr().err
    assert not list_checkpoints(out)  # stopped before the first step


@pytest.mark.slow
def test_an_error_inside_a_periodic_fid_is_logged_and_training_goes_on(tmp_path, monkeypatch, capsys, fid_weights):
    import numpy as np

    import hamgan.train.periodic

    ref = tmp_path / "ref.npz"
    np.savez(ref, mu=np.zeros(2048), sigma=np.eye(2048))

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(hamgan.train.periodic, "generator_statistics", broken)
    out = tmp_path / "r"
    assert main([str(tiny_config(tmp_path)), "--out", str(out), "--steps", "4", "train.fid.every=2",
                 f"train.fid.ref_stats={ref}"]) == 0
    printed = capsys.readouterr().out
    assert "step 2: FID failed (rank 0: RuntimeError: CUDA out of memory (simulated)); training continues" in printed
    assert load_checkpoint(out / "ckpt-000000004.pt")["step"] == 4
    assert not [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "fid" in r]


def test_old_schema_run_folder_and_checkpoint_are_one_clear_error(tmp_path, capsys):
    """A run folder or checkpoint written before per-network context settings (model.context, model.ham,
    model.<g|d>.ham_rank) is refused with one line that names the schema change and how to write the keys."""
    import yaml

    from hamgan.checkpoint import load_generator
    from hamgan.config import ConfigError

    old = tmp_path / "old"
    train(tmp_path, old, 2)
    old_model = yaml.safe_load((old / "config.yaml").read_text())["model"]
    old_model["context"], old_model["ham"] = "ham", {"steps": 2}
    for net in ("g", "d"):
        old_model[net] = {"channels": 8, "context_res": 16, "ham_rank": 4}
    saved = yaml.safe_load((old / "config.yaml").read_text())
    saved["model"] = old_model
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert main(["--out", str(old), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to the schema before per-network context settings" in err
    assert "write model.context as model.g.context and model.d.context" in err
    ckpt_path = old / "ckpt-000000002.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    ckpt["config"]["model"] = old_model
    torch.save(ckpt, ckpt_path)
    with pytest.raises(ConfigError, match="'model.context' belongs to the schema before per-network context"):
        load_generator(ckpt_path)


@pytest.mark.slow
def test_compiled_training_has_no_graph_break_and_reports_it(tmp_path):
    """train.compile with paired streams (the default: the Hamburger draws its bases from a device-side counter)
    compiles G and D without a graph break; RUN/compile.json says so. The eager backend: dynamo's capture, the same
    as inductor's, without code generation (aot_eager reads inductor's config, which another test patches)."""
    from hamgan import distributed

    cfg = load_config(TINY, ["train.compile=true", "train.compile_backend=eager", "train.steps=2"])
    torch._dynamo.reset()
    Trainer(cfg, tmp_path / "run", distributed.setup("cpu")).fit()
    report = json.loads((tmp_path / "run" / "compile.json").read_text())
    assert report["backend"] == "eager" and report["graphs"] >= 1
    assert report["graph_breaks"] == 0, report["break_reasons"]


def test_an_unknown_compile_backend_is_refused_naming_the_choices():
    from hamgan.config import ConfigError

    with pytest.raises(ConfigError, match="compile_backend='tpu'.*inductor"):
        compiler("tpu")

