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


SBATCH = ROOT / "scripts" / "slurm_imagenet128.sbatch"


def test_sbatch_file_is_valid_bash_with_its_slurm_settings():
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    directives = [line.split()[1] for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "--ntasks-per-node=1" in directives  # one torchrun agent per node
    assert "--requeue" in directives and any(d.startswith("--signal=TERM@") for d in directives)


def test_sbatch_runs_train_imagenet128_on_every_node_with_the_rendezvous_of_the_job(tmp_path):
    """srun and scontrol are stand-ins (this machine has no SLURM): srun runs its command once, as on each node;
    train_imagenet128.sh with DRY_RUN=1 prints the torchrun command it would run there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'node017\\nnode018\\n'\n")
    (bin_dir / "srun").write_text('#!/bin/bash\necho "srun $* GLOO=$GLOO_SOCKET_IFNAME NCCL=$NCCL_SOCKET_IFNAME" >&2\n'
                                  'while [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[017-018]", "SLURM_NNODES": "2",
             "SLURM_GPUS_ON_NODE": "8", "SLURM_SUBMIT_DIR": str(ROOT), "IFNAME": "ib0", "DRY_RUN": "1",
             "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = bash("slurm_imagenet128.sbatch", "configs/imagenet128_sagan.yaml", "/shared/runs/sagan",
                  "train.seed=1", **slurm)
    assert result.returncode == 0, result.stderr
    assert "srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 bash scripts/train_imagenet128.sh " \
           "configs/imagenet128_sagan.yaml /shared/runs/sagan train.seed=1 GLOO=ib0 NCCL=ib0" in result.stderr
    assert result.stdout.split() == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                                     "--nproc_per_node", "8", "--max-restarts", "3", "--shutdown-timeout", "300",
                                     "--rdzv_backend", "c10d", "--rdzv_endpoint", "node017:29400", "--rdzv_id",
                                     "4242", "-m", "hamgan.train", "configs/imagenet128_sagan.yaml", "--out",
                                     "/shared/runs/sagan", "train.seed=1"]
    # the defaults: HamGAN-baby into runs/<config name>
    result = bash("slurm_imagenet128.sbatch", **slurm)
    assert result.returncode == 0, result.stderr
    assert "hamgan.train configs/imagenet128_hamgan_baby.yaml --out runs/imagenet128_hamgan_baby" in result.stdout


def test_sbatch_outside_slurm_is_one_line(tmp_path):
    env = {k: "" for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST")}
    result = bash("slurm_imagenet128.sbatch", **env)
    assert result.returncode == 2 and result.stderr.startswith("slurm_imagenet128.sbatch: not inside a SLURM job")
    assert result.stderr.count("\n") == 1
