"""scripts/train_imagenet128.sh and scripts/gpu_check.sh on a machine without a GPU (this one): clear one-line
errors, and the torchrun command the launch script builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def bash(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable, **env})


def test_launch_script_without_gpu_is_one_line():
    result = bash("train_imagenet128.sh", "configs/imagenet128_hamgan_baby.yaml", "runs/x")
    assert result.returncode == 2
    assert result.stderr.startswith("train_imagenet128.sh: no GPU visible to torch") and result.stderr.count("\n") == 1


def test_launch_script_command_has_restarts_and_shutdown_window():
    """GPUS=2 stands in for two visible GPUs; --shutdown-timeout is in the installed torchrun (checked by the
    script with torchrun --help)."""
    result = bash("train_imagenet128.sh", "c.yaml", "out", "train.seed=1", GPUS="2", DRY_RUN="1",
                  MAX_RESTARTS="5", SHUTDOWN_TIMEOUT="600")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                                     "--nproc_per_node", "2", "--max-restarts", "5", "--shutdown-timeout", "600",
                                     "--standalone", "-m", "hamgan.train", "c.yaml", "--out", "out", "train.seed=1"]


def test_gpu_check_without_gpu_is_one_line(tmp_path):
    result = bash("gpu_check.sh", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("gpu_check.sh: no CUDA GPU visible to torch") and result.stderr.count("\n") == 1
    assert result.stdout == ""
