"""hamgan.train.precision and the AMP placement in the updates: backward() outside autocast; train.amp=auto."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hamgan import distributed
from hamgan.config import ConfigError, load_config
from hamgan.train import Trainer
from hamgan.train.precision import resolve_amp

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
    from hamgan.train import loop, main

    assert main([str(TINY), "--out", str(tmp_path / "cpu"), "--steps", "1", "train.amp=auto"]) == 0
    assert "train.amp=auto: full precision (float32) on the CPU" in capsys.readouterr().out
    seen = []

    def on_a_v100(amp, device):
        seen.append(amp)
        return None, "train.amp=auto: fp16 autocast with loss scaling (Tesla V100 has no native bf16; ...)"

    monkeypatch.setattr(loop, "resolve_amp", on_a_v100)
    assert main([str(TINY), "--out", str(tmp_path / "gpu"), "--steps", "1", "train.amp=auto"]) == 0
    assert seen == ["auto"]
    assert "train.amp=auto: fp16 autocast with loss scaling (Tesla V100" in capsys.readouterr().out
