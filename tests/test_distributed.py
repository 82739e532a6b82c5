"""hamgan.distributed and the multi-rank trainer on 2 gloo processes: batch splitting, the resumable sharded sampler,
DDP training, cross-replica BN, all-reduced FID statistics, resume by consensus, a killed rank, the peer monitor,
the process-group timeout, and the consensus over the resolved config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """torchrun, 2 ranks on this CPU (gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


# Collectives on 2 ranks without a trainer: cross-replica BN, FeatureStats all-reduce, main_rank_first.
COLLECTIVES = """
import sys, time
from pathlib import Path
import torch
from hamgan import distributed
from hamgan.metrics import FeatureStats

results = Path(sys.argv[1])
info = distributed.setup("cpu")
r = info.rank
torch.manual_seed(0)
x = torch.randn(6, 3, 4, 4) * 3 + 2          # the global batch; rank r holds rows 3r .. 3r+2
w = torch.randn(6, 3, 4, 4)
bn = distributed.convert_cross_replica_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0]
bn.weight.data.uniform_(0.5, 1.5)
mine = x[3 * r:3 * r + 3].clone().requires_grad_(True)
y = bn(mine)
(y * w[3 * r:3 * r + 3]).sum().backward()
running = bn.running_mean.clone(), bn.running_var.clone()
with distributed.local_batch_norm(bn):
    local = bn(mine.detach())                 # this rank's batch only, no collective
from hamgan.nn.layers import batch_norm      # TF's biased running variance, counted over the global batch
bn_tf = distributed.convert_cross_replica_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.5)))[0]
batch_norm(bn_tf, mine.detach(), True)
stats = FeatureStats(5)
stats.update(torch.arange(10.0 * (r + 1)).reshape(-1, 5))
distributed.all_reduce_feature_stats(stats)
flag = results / "built-by-rank-0"
with distributed.main_rank_first("writing a cache"):
    if r == 0:
        time.sleep(1)
        flag.write_text("x")
    seen = flag.is_file()
try:
    with distributed.main_rank_first("failing on rank 0"):
        if r == 0:
            raise ValueError("no data here")
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
torch.save({"y": y.detach(), "grad": mine.grad, "running_mean": running[0], "running_var": running[1],
            "local": local, "running_var_biased": bn_tf.running_var, "n": stats.n, "sum": stats.sum, "sum_outer": stats.sum_outer, "seen": seen,
            "error": error}, results / f"rank{r}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_collectives_on_two_gloo_ranks(tmp_path):
    """Cross-replica BN equals one BatchNorm2d over the global batch (outputs, input gradients, running statistics,
    also TF's biased running variance);
    FeatureStats sums over ranks; rank 0 runs main_rank_first bodies first and its error reaches the others."""
    worker = tmp_path / "collectives.py"
    worker.write_text(COLLECTIVES)
    result = launch(worker, [str(tmp_path)], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 4, 4) * 3 + 2).requires_grad_(True)
    w = torch.randn(6, 3, 4, 4)
    bn = torch.nn.BatchNorm2d(3)
    bn.weight.data.uniform_(0.5, 1.5)
    y = bn(x)
    (y * w).sum().backward()
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r0["grad"], r1["grad"]]), x.grad, atol=1e-5, rtol=1e-5)
    for r in (r0, r1):
        torch.testing.assert_close(r["running_mean"], bn.running_mean)
        torch.testing.assert_close(r["running_var"], bn.running_var)
        biased = 0.5 * torch.ones(3) + 0.5 * x.detach().var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(r["running_var_biased"], biased)
    # local_batch_norm: rank 0's own 3 images only
    local = torch.nn.functional.batch_norm(x[:3].detach(), None, None, bn.weight, bn.bias, training=True)
    torch.testing.assert_close(r0["local"], local, atol=1e-5, rtol=1e-5)
    features = torch.cat([torch.arange(10.0).reshape(-1, 5), torch.arange(20.0).reshape(-1, 5)]).double()
    for r in (r0, r1):
        assert r["n"] == 6
        torch.testing.assert_close(r["sum"], features.sum(0))
        torch.testing.assert_close(r["sum_outer"], features.T @ features)
    assert r1["seen"]  # rank 1 ran its body after rank 0 wrote the file
    assert r0["error"] == "ValueError: no data here"
    assert r1["error"] == "MainRankFailed: rank 0 failed while failing on rank 0: ValueError: no data here"


# Cross-replica BN under torch.compile on 2 ranks: collectives counted per direction, dynamo's graphs and breaks,
# compiled values against eager.
COMPILED_BN = """
import copy, sys, warnings
from pathlib import Path
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from hamgan import distributed
from hamgan.nn.from_config import generator_from_config
from hamgan.train import resolve_config

results, config = Path(sys.argv[1]), sys.argv[2]
info = distributed.setup("cpu")
r = info.rank


class CountAllReduces(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.n += "all_reduce" in name or "allreduce" in name
        return func(*args, **(kwargs or {}))


cfg, _ = resolve_config(config, str(results / "run"), [], 4)
torch.manual_seed(0)
G = distributed.convert_cross_replica_bn(generator_from_config(cfg.model))
layers = sum(isinstance(m, distributed.CrossReplicaBatchNorm2d) for m in G.modules())
z, y = torch.randn(4, cfg.model.z_dim), torch.randint(0, cfg.model.num_classes, (4,))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with CountAllReduces() as forward:
        out = G(z, y)
    with CountAllReduces() as backward:
        out.sum().backward()
G_explain = torch._dynamo.explain(G)(z, y)

torch.manual_seed(1)
net = distributed.convert_cross_replica_bn(torch.nn.Sequential(
    torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 1),
    torch.nn.BatchNorm2d(4)))
twin = copy.deepcopy(net)
x = torch.randn(3, 3, 8, 8) * 2 + r
explain = torch._dynamo.explain(copy.deepcopy(net))(x)
xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
ye, yc = net(xe), torch.compile(twin, backend="aot_eager")(xc)
w = torch.randn_like(ye)
(ye * w).sum().backward()
(yc * w).sum().backward()

torch.manual_seed(2)
far = torch.randn(6, 3, 4, 4) + 1000.0       # mean^2 / var = 1e6: a float32 sum of squares keeps no digit of var
bn = distributed.convert_cross_replica_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=1.0)))[0]
far_y = bn(far[3 * r:3 * r + 3]).detach()
reference = far.double()
far_var = reference.var(dim=(0, 2, 3))       # unbiased, as the running variance
far_ref = torch.nn.functional.batch_norm(reference, None, None, training=True)[3 * r:3 * r + 3]
torch.save({"layers": layers, "forward": forward.n, "backward": backward.n,
            "warnings": [f"{c.category.__name__}: {c.message}" for c in caught],
            "G_graphs": G_explain.graph_count, "G_breaks": G_explain.graph_break_count,
            "G_reasons": [str(b.reason) for b in G_explain.break_reasons],
            "graphs": explain.graph_count, "breaks": explain.graph_break_count,
            "eager": [ye.detach(), xe.grad, net[0].weight.grad, net[1].running_mean, net[1].running_var,
                      net[4].running_var],
            "compiled": [yc.detach(), xc.grad, twin[0].weight.grad, twin[1].running_mean, twin[1].running_var,
                         twin[4].running_var],
            "far_var": (bn.running_var.double() / far_var - 1).abs().max().item(),
            "far_y": (far_y.double() - far_ref).abs().max().item()}, results / f"rank{r}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_cross_replica_bn_compiles_with_one_collective_per_layer_and_direction(tmp_path):
    """Issue 21, points 3 and 4: every cross-replica BN of G makes one all-reduce forward and one backward (packed
    sum, sum of squares and count), with no FutureWarning; dynamo traces the whole tiny G with sync BN into one
    graph without a break; a compiled conv + cross-replica BN stack equals eager (outputs, gradients, running
    statistics). The old differentiable torch.distributed.nn all_reduce made 2 + 2 and abandoned the frame."""
    worker = tmp_path / "compiled_bn.py"
    worker.write_text(COMPILED_BN)
    result = launch(worker, [str(tmp_path), str(TINY)], timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    for r in (torch.load(tmp_path / f"rank{k}.pt") for k in range(2)):
        assert r["layers"] == 8
        assert (r["forward"], r["backward"]) == (8, 8), (r["forward"], r["backward"])
        assert r["warnings"] == []
        assert r["G_graphs"] >= 1 and r["G_breaks"] == 0, r["G_reasons"]
        assert r["graphs"] >= 1 and r["breaks"] == 0
        # aot_eager runs the traced ATen graph of the same float32 ops: equal up to the order of a few sums
        for eager, compiled in zip(r["eager"], r["compiled"]):
            torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
        # statistics far from zero (mean 1000, std 1): the packed sums combine in float64, so the variance keeps
        # float32's relative precision (~1e-7; a float32 S2 / N - mean^2 would be off by ~1e-7 * 1e6 = 10%);
        # outputs: x - mean in float32 rounds x ~ 1000 to 6e-5
        assert r["far_var"] < 1e-5, r["far_var"]
        assert r["far_y"] < 1e-3, r["far_y"]


def test_buffers_are_broadcast_only_where_they_can_drift():
    """Spectral-norm vectors (power iterations of identical weights) and the statistics of a syncing cross-replica
    BN are equal on all ranks; a local batch norm's running statistics and unknown buffers can drift."""
    from hamgan.nn.spectral_norm import spectral_norm

    sn = torch.nn.Sequential(spectral_norm(torch.nn.Conv2d(3, 3, 3)), torch.nn.ReLU())
    assert not distributed.buffers_can_drift(sn)
    local = torch.nn.Sequential(spectral_norm(torch.nn.Conv2d(3, 3, 3)), torch.nn.BatchNorm2d(3))
    assert distributed.buffers_can_drift(local)
    crossed = distributed.convert_cross_replica_bn(local)
    assert not distributed.buffers_can_drift(crossed)
    with distributed.local_batch_norm(crossed):
        assert distributed.buffers_can_drift(crossed)
    odd = torch.nn.Linear(2, 2)
    odd.register_buffer("count", torch.zeros(()))
    assert distributed.buffers_can_drift(odd)


def test_wrap_sets_bucket_views_and_buffer_sync(monkeypatch):
    """DDP gets gradient_as_bucket_view=True and syncs buffers only where they can drift (or when asked)."""
    seen = []

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, **kwargs):
            super().__init__()
            seen.append(kwargs)

    import inspect
    real = inspect.signature(torch.nn.parallel.DistributedDataParallel)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    monkeypatch.setattr(distributed.inspect, "signature", lambda f: real)
    info = DistInfo(rank=0, world_size=2)
    bn = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3))
    distributed.wrap(bn, info)
    distributed.wrap(distributed.convert_cross_replica_bn(bn), info)
    distributed.wrap(torch.nn.Linear(2, 2), info, sync_buffers=True)
    sync = "forward_sync_buffers" if "forward_sync_buffers" in real.parameters else "broadcast_buffers"
    assert [kw[sync] for kw in seen] == [True, False, True]
    assert all(kw["gradient_as_bucket_view"] for kw in seen)
    assert distributed.wrap(bn, DistInfo()) is bn  # one process: no wrapper


# Resume by consensus. Phase A trains 4 steps (checkpoints at 2 and 4, cross-replica BN on). Phase B resumes to 6
# while rank 1's listing of the run folder hides the newest checkpoint (a stale NFS view). Phase C resumes while
# rank 1's file read returns the older checkpoint: the ranks must refuse to train.
CONSENSUS = """
import sys
from pathlib import Path
import torch
import hamgan.checkpoint as ckpt_mod
from hamgan import distributed
from hamgan.checkpoint import CheckpointError
from hamgan.train import Trainer, loop, resolve_config, run_folder

config, out, results = sys.argv[1:4]
info = distributed.setup("cpu")
overrides = ["train.ckpt_every=2", "train.sync_bn=true"]

def trainer(steps):
    cfg, notes = resolve_config(config, out, overrides, steps)
    return Trainer(cfg, out, info, notes)

trainer(4).fit()
if info.rank == 1:  # a listing that misses the newest checkpoint
    real = ckpt_mod.list_checkpoints
    hidden = lambda run_dir: real(run_dir)[:-1]
    ckpt_mod.list_checkpoints = hidden
    ckpt_mod.latest_checkpoint = lambda run_dir: (hidden(run_dir) or [None])[-1]
    run_folder.latest_checkpoint = ckpt_mod.latest_checkpoint
t = trainer(6)
resumed = t.step
bn_types = {name: type(m).__name__ for name, m in distributed.unwrap(t.G_train).named_modules()
            if isinstance(m, torch.nn.BatchNorm2d)}
ema_bn_types = {type(m).__name__ for m in t.ema.model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
t.fit()
torch.save({"resumed": resumed, "G": t.G.state_dict(), "D": t.D.state_dict(), "G_ema": t.ema.state_dict(),
            "bn_types": bn_types, "ema_bn_types": ema_bn_types}, Path(results) / f"rank{info.rank}.pt")
if info.rank == 1:  # reading the file gives the older checkpoint's content
    real_load = ckpt_mod.load_checkpoint
    loop.load_checkpoint = lambda path, map_location="cpu": real_load(Path(path).with_name("ckpt-000000004.pt"),
                                                                      map_location)
try:
    trainer(8)
    message = None
except CheckpointError as e:
    message = str(e)
(Path(results) / f"error{info.rank}.txt").write_text(str(message))
distributed.cleanup()
"""


@pytest.mark.slow
def test_resume_by_consensus_with_a_stale_listing_on_rank_1(tmp_path):
    worker, out, results = tmp_path / "consensus.py", tmp_path / "run", tmp_path / "results"
    worker.write_text(CONSENSUS)
    results.mkdir()
    result = launch(worker, [str(TINY), str(out), str(results)])
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(results / f"rank{r}.pt") for r in range(2))
    assert r0["resumed"] == r1["resumed"] == 4  # rank 1 loaded the checkpoint rank 0 chose, not its newest
    for net in ("G", "D", "G_ema"):
        for name, value in r0[net].items():
            assert torch.equal(value, r1[net][name]), f"{net}.{name} differs between ranks"
    # the cross-replica BN statistics agree without DDP's buffer broadcast, as all ranks normalise the same batch
    assert any("running_mean" in name for name in r0["G"])
    # train.sync_bn: every BN of the trained G is cross-replica: those inside the conditional BNs of the blocks,
    # the Hamburger's upper_bread_bn (context.norm) and the output BN; the EMA copy samples locally (plain BN)
    for r in (r0, r1):
        assert {"blocks.0.bn1.bn", "blocks.2.bn2.bn", "context.norm.bn", "bn"} <= r["bn_types"].keys()
        assert set(r["bn_types"].values()) == {"CrossReplicaBatchNorm2d"}, r["bn_types"]
        assert r["ema_bn_types"] == {"BatchNorm2d"}
    errors = [(results / f"error{r}.txt").read_text() for r in range(2)]
    assert errors[0] == errors[1]
    assert "the ranks disagree after loading" in errors[0] and "ckpt-000000006.pt" in errors[0]
    assert "rank 0: step 6" in errors[0] and "rank 1: step 4" in errors[0]


# A killed rank: two processes started by hand (no torchrun agent to tear the group down), short timeout; rank 1
# SIGKILLs itself at step 3; rank 0 must stop by itself, naming rank 1.
KILLED = """
import os, signal, sys
from hamgan.train import Trainer, main

if os.environ["RANK"] == "1":
    step = Trainer.train_step
    def dying(self):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self)
    Trainer.train_step = dying
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_rank_stops_the_others_naming_it(tmp_path):
    worker = tmp_path / "killed.py"
    worker.write_text(KILLED)
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        cmd = [sys.executable, str(worker), str(TINY), "--out", str(tmp_path / "run"), "--steps", "1000",
               "train.dist_timeout_min=0.25", "train.log_every=1000", "train.ckpt_every=1000"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        procs[1].wait(timeout=180)
        assert procs[1].returncode == -signal.SIGKILL
        died = time.time()
        _, err = procs[0].communicate(timeout=60)
        took = time.time() - died
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 5, err[-3000:]
    assert took < 15, f"rank 0 took {took:.0f} s to stop (process-group timeout 15 s)"
    last = err.strip().splitlines()[-1]
    assert last.startswith("hamgan-train: rank 0 stops: rank 1 (") and "stopped responding" in last, err[-3000:]
    assert f"pid {procs[1].pid}" in last and "Traceback" not in err


@pytest.mark.slow
def test_peer_monitor_names_a_failed_and_a_silent_rank(monkeypatch):
    """In one process: rank 1 leaves a failure note -> rank 0's monitor names it at once; rank 1 goes silent ->
    named after `stale` seconds; a rank that finished (`done`) is not reported."""
    from hamgan.train.peers import PeerMonitor

    port = free_port()
    server = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    for kind in ("failed", "silent", "done"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", kind)  # a fresh key space per case
        m0 = PeerMonitor(0, 2, timeout_min=0.2, grace=1e6)  # interval 0.6 s, stale 3 s
        m1 = PeerMonitor(1, 2, timeout_min=0.2, grace=1e6)
        start = time.time()
        if kind == "failed":
            m1.close(RuntimeError("CUDA out of memory"))
        elif kind == "silent":
            m1._stop.set()  # the thread stops beating, no note: as after SIGKILL
        else:
            m1.close()
        found = m0._found.wait(6)
        m0.close()
        if kind == "done":
            assert not found and m0.verdict is None
            continue
        assert found, kind
        assert m0.verdict.startswith(f"rank 1 ({socket.gethostname()} pid {os.getpid()})")
        if kind == "failed":
            assert "failed: RuntimeError: CUDA out of memory" in m0.verdict and time.time() - start < 2.5
        else:
            assert "stopped responding" in m0.verdict and time.time() - start >= 3
    del server


@pytest.mark.slow
def test_torchrun_cli_with_peer_monitor(tmp_path):
    """hamgan.train under torchrun, as the launch script runs it: the peer monitors join the agent's store (3 s
    staleness here), and the ranks finish with exit 0 without a false alarm when one rank ends before the other."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "hamgan.train", str(TINY), "--out", str(out), "--steps", "3", "train.dist_timeout_min=0.2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stops:" not in result.stderr and "cannot reach the store" not in result.stderr
    assert (out / "ckpt-000000003.pt").is_file() and not (out / "train.lock").exists()


# --------------------------------------------------------------------------------------------------------------------
# The process-group timeout and the consensus over the config
# --------------------------------------------------------------------------------------------------------------------


def test_process_group_timeout_is_train_dist_timeout_min(tmp_path, monkeypatch):
    """hamgan-train's run() joins the process group with timeout=timedelta(minutes=train.dist_timeout_min); the gloo
    control group of an NCCL run gets the same timeout."""
    import datetime

    from hamgan.config import load_config
    from hamgan.train import cli

    calls: dict[str, dict] = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.setdefault("init", kw))
    monkeypatch.setattr(distributed.dist, "new_group", lambda **kw: calls.setdefault("control", kw))
    monkeypatch.setattr(distributed, "_CONTROL", None)

    class Quiet:  # no peer monitor (it would join a store)
        def __init__(self, *args) -> None: ...
        def close(self, error=None) -> None: ...

    class Done:  # no trainer: only the set-up is under test
        def __init__(self, cfg, run_dir, info, notes) -> None:
            calls["info"] = {"rank": info.rank, "world_size": info.world_size}

        def fit(self) -> dict:
            return {}

    monkeypatch.setattr(cli, "PeerMonitor", Quiet)
    monkeypatch.setattr(cli, "Trainer", Done)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(TINY, ["train.dist_timeout_min=7.5", "train.device=cpu"])
    assert cli.run(cfg, tmp_path / "run") == {}
    init = calls["init"]
    assert init["timeout"] == datetime.timedelta(minutes=7.5)
    assert (init["backend"], init["rank"], init["world_size"]) == ("gloo", 1, 2)
    assert calls["info"] == {"rank": 1, "world_size": 2} and "control" not in calls  # gloo: no separate group
    calls.clear()
    distributed.setup("cpu", 2.5, "nccl")  # the NCCL path: a gloo group for control messages
    assert calls["init"]["timeout"] == calls["control"]["timeout"] == datetime.timedelta(minutes=2.5)
    assert calls["control"]["backend"] == "gloo"


def test_config_hash_ignores_only_node_local_keys():
    from hamgan.config import load_config
    from hamgan.train.run_folder import NODE_LOCAL_KEYS, config_hash

    base = config_hash(load_config(TINY))
    assert base == config_hash(load_config(TINY)) and len(base) == 16
    # where a node finds its files may differ between nodes
    assert config_hash(load_config(TINY, ["data.root=/mnt/a/imagenet", "data.index_cache=/tmp/x"])) == base
    assert set(NODE_LOCAL_KEYS) == {"data.root", "data.packed", "data.index_cache", "train.fid.ref_stats"}
    for override in ["train.lr_g=0.0003", "train.steps=5", "model.z_dim=8", "train.sync_bn=true", "log.name=x"]:
        assert config_hash(load_config(TINY, [override])) != base, override


def test_consensus_error_names_the_ranks_and_config_hashes_that_differ():
    from hamgan.config import load_config
    from hamgan.train.run_folder import config_hash, config_settings, consensus_error

    cfg, stale = load_config(TINY), load_config(TINY, ["train.lr_g=0.0003", "train.steps=9"])
    good = (4, "a" * 32, config_hash(cfg), config_settings(cfg))
    assert consensus_error([good, good], None) is None
    bad = (4, "a" * 32, config_hash(stale), config_settings(stale))
    message = consensus_error([good, good, bad], Path("run/ckpt-000000004.pt"))
    assert message.startswith("the ranks disagree after loading run/ckpt-000000004.pt: ")
    assert f"rank 0: step 4, weights {'a' * 12}, config {config_hash(cfg)}" in message
    assert f"rank 2: step 4, weights {'a' * 12}, config {config_hash(stale)}" in message
    assert "The config differs from rank 0's (rank 2: train.lr_g, train.steps)" in message
    assert "config.yaml" in message and "different models" not in message  # same weights: only the config
    both = consensus_error([good, (2, "b" * 32, *bad[2:])], None)
    assert "no checkpoint (fresh start)" in both and "rank 1: step 2" in both and "different models" in both


def test_check_consensus_raises_on_every_rank_with_the_gathered_views(monkeypatch):
    """check_consensus gathers (step, weights, config hash, settings) and raises when rank 1's config differs."""
    from hamgan.checkpoint import CheckpointError
    from hamgan.config import load_config
    from hamgan.train import run_folder

    cfg = load_config(TINY)
    stale = run_folder.config_settings(load_config(TINY, ["train.ema.decay=0.5"]))
    gathered = []

    def gather(view):
        gathered.append(view)
        return [view, (view[0], view[1], "f" * 16, stale)]

    monkeypatch.setattr(distributed, "all_gather_object", gather)
    with pytest.raises(CheckpointError, match=r"rank 1: step 3, weights c+, config f{16}.*\(rank 1: train.ema.decay\)"):
        run_folder.check_consensus(3, "c" * 32, None, cfg)
    assert gathered[0][:3] == (3, "c" * 32, run_folder.config_hash(cfg))
    monkeypatch.setattr(distributed, "all_gather_object", lambda view: [view, view])
    run_folder.check_consensus(3, "c" * 32, None, cfg)  # agreement: no error
