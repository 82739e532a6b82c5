"""hamgan.train.precision and the AMP placement in the updates: backward() outside autocast; train.amp=auto; the
one decision of dtype and TF32 that rank 0 makes for every rank (2 gloo ranks), GPU mismatches across ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hamgan import distributed, tf32
from hamgan.config import ConfigError, load_config
from hamgan.distributed import DistInfo
from hamgan.train import Trainer
from hamgan.train.precision import decide, resolve, resolve_amp

TINY = Path(__file__).resolve().parent / "tiny_train.yaml"


class RecordOps(TorchDispatchMode):
    """Every aten op: (name, inside a backward pass?, input dtypes)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, bool, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        self.ops.append((str(func.overloadpacket.__name__), torch._C._current_graph_task_id() != -1,
                         {t.dtype for t in leaves if isinstance(t, torch.Tensor)}))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("update", ["d_update", "g_update"])
def test_backward_runs_outside_autocast_under_cpu_bf16(tmp_path, update):
    """bf16 autocast covers the forward (convolutions in bf16) but not the backward: gradient hooks see autocast
    off, and the Hamburger's float32 matrix products get float32 backward products (under autocast they ran in
    bf16: measured on the code before this change, every backward bmm was bf16)."""
    cfg = load_config(TINY, ["train.amp=bf16"])
    trainer = Trainer(cfg, tmp_path / "r", distributed.setup("cpu"))
    autocast_in_backward = []
    for p in [*trainer.G.parameters(), *trainer.D.parameters()]:
        p.register_hook(lambda grad: autocast_in_backward.append(torch.is_autocast_enabled("cpu")))
    try:
        with RecordOps() as rec:
            getattr(trainer, update)()
    finally:
        trainer.close()
    assert autocast_in_backward and not any(autocast_in_backward), "backward ran under autocast"
    forward = [(name, dtypes) for name, backward, dtypes in rec.ops if not backward]
    backward = [(name, dtypes) for name, is_backward, dtypes in rec.ops if is_backward]
    assert ("convolution", {torch.bfloat16}) in forward  # autocast is on in the forward
    assert ("bmm", {torch.float32}) in forward  # the Hamburger keeps float32
    assert ("bmm", {torch.float32}) in backward  # ... and so do its gradients


def test_amp_auto_bf16_only_where_native(monkeypatch):
    calls = []

    def supported(including_emulation=True):
        calls.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    gpu = torch.device("cuda", 0)
    native = True
    dtype, note = resolve_amp("auto", gpu)
    assert dtype is torch.bfloat16 and "bf16 autocast (Some GPU computes bf16 natively)" in note
    native = False  # e.g. a V100: bf16 only emulated
    dtype, note = resolve_amp("auto", gpu)
    assert dtype is torch.float16 and "fp16 autocast with loss scaling" in note
    assert calls == [False, False]  # emulated bf16 does not count
    assert resolve_amp("auto", torch.device("cpu"))[0] is None
    assert resolve_amp("bf16", torch.device("cpu"))[0] is torch.bfloat16
    with pytest.raises(ConfigError, match="train.amp=fp16 needs a GPU"):
        resolve_amp("fp16", torch.device("cpu"))


def test_amp_choice_is_logged(tmp_path, capsys):
    from hamgan.train import main

    assert main([str(TINY), "--out", str(tmp_path / "r"), "--steps", "1", "train.amp=bf16"]) == 0
    assert "train.amp=bf16: bf16 autocast" in capsys.readouterr().out


def test_amp_auto_choice_is_logged(tmp_path, capsys, monkeypatch):
    """train.amp=auto names what it chose and why: on the CPU full precision; whatever resolve_amp decides for a
    GPU reaches the run's log line the same way (its sentence, from the trainer's set-up)."""
    from hamgan.train import main, precision

    assert main([str(TINY), "--out", str(tmp_path / "cpu"), "--steps", "1", "train.amp=auto"]) == 0
    assert "train.amp=auto: full precision (float32) on the CPU" in capsys.readouterr().out
    seen = []

    def on_a_v100(amp, device):
        seen.append(amp)
        return None, "train.amp=auto: fp16 autocast with loss scaling (Tesla V100 has no native bf16; ...)"

    monkeypatch.setattr(precision, "resolve_amp", on_a_v100)
    assert main([str(TINY), "--out", str(tmp_path / "gpu"), "--steps", "1", "train.amp=auto"]) == 0
    assert seen == ["auto"]
    assert "train.amp=auto: fp16 autocast with loss scaling (Tesla V100" in capsys.readouterr().out


A100 = {"type": "cuda", "name": "NVIDIA A100", "bf16": True}
V100 = {"type": "cuda", "name": "Tesla V100", "bf16": False}


@pytest.fixture
def rank0_on_an_a100(monkeypatch):
    """torch.cuda answering as an A100 (no GPU here); torch's TF32 / cuDNN flags and the TF32 mode restored."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    (matmul, cudnn), mode, benchmark = tf32.flags(), tf32.mode(), torch.backends.cudnn.benchmark
    yield torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    torch.backends.cudnn.benchmark = benchmark
    tf32.set_mode(mode, cuda=False)


def test_a_rank_without_native_bf16_downgrades_auto_to_fp16_on_every_rank(rank0_on_an_a100):
    gpu = rank0_on_an_a100
    decision = resolve("auto", "layers", [A100, A100], gpu)
    assert decision.amp is torch.bfloat16 and len(decision.notes) == 2
    decision = resolve("auto", "layers", [A100, V100, A100, V100], gpu)
    assert decision.amp is torch.float16
    assert ("train.amp=auto: fp16 autocast with loss scaling on every rank instead of bf16: rank(s) 1 (Tesla V100), "
            "3 (Tesla V100) have no native bf16") in decision.notes
    assert "the ranks run on different GPUs (NVIDIA A100, Tesla V100)" in decision.notes
    decision = resolve("bf16", "layers", [A100, V100], gpu)  # asked for explicitly: kept, and the cost named
    assert decision.amp is torch.bfloat16
    assert "train.amp=bf16: rank(s) 1 (Tesla V100) only emulate bf16 (slow)" in " ".join(decision.notes)
    with pytest.raises(ConfigError, match=r"different kinds of devices \(rank 0: cuda \(NVIDIA A100\), rank 1: cpu"):
        resolve("auto", "layers", [A100, {"type": "cpu", "name": "cpu", "bf16": False}], gpu)


@pytest.mark.parametrize("mode, flags", [("layers", (True, True)), ("all", (True, True)), ("none", (False, False))])
def test_training_set_up_sets_the_tf32_flags_of_train_tf32(rank0_on_an_a100, mode, flags):
    """Before, TF32 was switched on by set_float32_matmul_precision("high") whatever the config said."""
    cfg = load_config(TINY, ["train.amp=auto", f"train.tf32={mode}"])
    decision = decide(cfg.train, DistInfo(device=rank0_on_an_a100))
    assert decision.amp is torch.bfloat16 and decision.tf32 == mode
    assert tf32.flags() == flags and tf32.mode() == mode and torch.backends.cudnn.benchmark
    assert f"train.tf32={mode}: " in decision.notes[-1]


def test_cpu_training_records_the_tf32_mode_and_leaves_torch_flags_alone(tmp_path):
    from hamgan.train import main

    old = tf32.flags(), tf32.mode()
    try:
        assert main([str(TINY), "--out", str(tmp_path / "r"), "--steps", "1", "train.tf32=none"]) == 0
        assert tf32.flags() == old[0] and tf32.mode() == "none"
    finally:
        tf32.set_mode(old[1], cuda=False)


# rank 1 resolves on its own terms (a patched resolve_amp) or reports a GPU that rank 0 cannot pair with a CPU
DECIDE = """
import sys
from pathlib import Path
import torch
from hamgan import distributed
from hamgan.config import ConfigError, load_config
from hamgan.train import precision

config, results = sys.argv[1:3]
info = distributed.setup("cpu")
if info.rank == 1:
    precision.resolve_amp = lambda amp, device: (torch.bfloat16, "rank 1's own resolution")
out = {"auto": precision.decide(load_config(config, ["train.amp=auto"]).train, info)}
if info.rank == 1:
    precision.device_report = lambda device: {"type": "cuda", "name": "Tesla V100", "bf16": False}
try:
    precision.decide(load_config(config, ["train.amp=auto"]).train, info)
except ConfigError as e:
    out["mismatch"] = str(e)
torch.save(out, Path(results) / f"rank{info.rank}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_rank_0_decides_for_every_rank(tmp_path):
    """train.amp=auto was resolved on each rank alone; now every rank runs rank 0's decision, and ranks on different
    devices stop on every rank with an error naming them."""
    worker = tmp_path / "decide.py"
    worker.write_text(DECIDE)
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           str(TINY), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["auto"] == r1["auto"]  # rank 0's decision, its notes included
    assert r1["auto"].amp is None and r1["auto"].notes == ("train.amp=auto: full precision (float32) on the CPU",)
    assert r0["mismatch"] == r1["mismatch"]
    assert r1["mismatch"].startswith("the ranks run on different kinds of devices (rank 0: cpu (cpu), rank 1: cuda "
                                     "(Tesla V100)); run every rank on a GPU")
