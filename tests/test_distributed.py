"""hamgan.distributed: batch splitting, the resumable sharded sampler, and 2-process DDP training with gloo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from hamgan import distributed
from hamgan.distributed import DistInfo, ResumableSampler, micro_batch_size


def test_micro_batch_size():
    assert micro_batch_size(256, 4, 1) == 64
    assert micro_batch_size(256, 4, 2) == 32
    with pytest.raises(ValueError, match="train.batch_size=250 .* multiple of world_size x train.accumulate"):
        micro_batch_size(250, 4, 1)
    with pytest.raises(ValueError, match="multiple"):
        micro_batch_size(2, 4, 1)


def test_sampler_shards_and_resumes():
    data = TensorDataset(torch.arange(20))
    ranks = [ResumableSampler(data, DistInfo(rank=r, world_size=2), seed=3) for r in range(2)]
    for s in ranks:
        s.set_position(epoch=1)
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 10
    assert sorted(shards[0] + shards[1]) == list(range(20))  # disjoint, complete
    ranks[0].set_position(epoch=1, start=4)
    assert list(ranks[0]) == shards[0][4:] and len(ranks[0]) == 6
    ranks[0].set_position(epoch=2)
    assert list(ranks[0]) != shards[0]  # a new permutation every epoch
    ranks[0].set_position(epoch=1)
    assert list(ranks[0]) == shards[0]  # ... the same one for the same epoch


def test_unwrap_compiled_module():
    net = torch.nn.Linear(2, 2)
    assert distributed.unwrap(net) is net
    assert distributed.unwrap(torch.compile(net)) is net


TINY = Path(__file__).resolve().parent / "tiny_train.yaml"
ROOT = Path(__file__).resolve().parent.parent

# One rank of the DDP test, launched by torchrun: trains through hamgan.train, then saves its own weights.
WORKER = """
import sys
from pathlib import Path
import torch
from hamgan import distributed, train

config, out, results = sys.argv[1:4]
cfg, notes = train.resolve_config(config, out, ["train.ckpt_every=4"], 4)
info = distributed.setup("cpu")
trainer = train.Trainer(cfg, out, info, notes)
trainer.fit()
torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "data": trainer.data.position(),
            "micro": trainer.micro, "world_size": info.world_size}, Path(results) / f"rank{info.rank}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    """torchrun, 2 ranks, gloo on CPU, 4 steps: both ranks end with the same weights and spectral-norm vectors."""
    worker, out, results = tmp_path / "worker.py", tmp_path / "run", tmp_path / "results"
    worker.write_text(WORKER)
    results.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(TINY), str(out), str(results)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(results / f"rank{r}.pt") for r in range(2))
    assert r0["world_size"] == 2 and r0["micro"] == 4  # global batch 8 split over 2 ranks
    for net in ("G", "D"):
        for name, value in r0[net].items():
            if "running_" in name or "num_batches_tracked" in name:
                continue  # per-rank batch-norm statistics (rank 0's are broadcast at each forward of the DDP G)
            assert torch.equal(value, r1[net][name]), f"{net}.{name} differs between ranks"
    assert r0["data"] == r1["data"] == {"epoch": 0, "index": 16}  # 4 steps x 4 images per rank
    ckpt = torch.load(out / "ckpt-000000004.pt", weights_only=False)
    assert len(ckpt["rng"]) == 2 and ckpt["data"]["world_size"] == 2  # every rank's RNG state
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank seeds
    for name, value in ckpt["G"].items():
        assert torch.equal(value, r0["G"][name])  # rank 0 wrote the checkpoint
