"""hamgan.train.periodic: the periodic FID shared by 2 gloo ranks equals the FID of one process over the same samples.

A small deterministic feature extractor stands in for Inception (no weights needed): the mean colour of 4 x 4 image
cells, 48 features instead of the 2048 of pool3 (``hamgan.metrics.features.FEATURE_DIM`` is set to 48 with it: a
Fréchet distance in 2048 dimensions takes about 30 s on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "tiny_train.yaml"
OVERRIDES = ["train.fid.every=1", "train.fid.n_samples=25", "train.fid.batch_size=8"]  # shards of 13 and 12

# Shared by the ranks and the test process (test modules cannot import each other).
TINY_FEATURES = """
import torch
import torch.nn.functional as F


DIM = 48


class TinyFeatures(torch.nn.Module):
    \"\"\"uint8 (B, 3, H, W) -> (features (B, 48): mean colour of 4 x 4 cells, logits (B, 1008): 0).\"\"\"

    def forward(self, images):
        cells = F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
        return cells, cells.new_zeros(len(cells), 1008)
"""

WORKER = TINY_FEATURES + """
import sys
from pathlib import Path
import hamgan.metrics
import hamgan.train.periodic
from hamgan import distributed
from hamgan.config import load_config
from hamgan.data import build_dataset
from hamgan.nn.from_config import generator_from_config
from hamgan.train.periodic import PeriodicFID

config, out, results, overrides = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
hamgan.train.periodic.InceptionFeatures = TinyFeatures  # what PeriodicFID builds on every rank
hamgan.train.periodic.FEATURE_DIM = DIM  # the dimension of an empty shard's statistics
hamgan.metrics.features.FEATURE_DIM = DIM  # the dimension of the statistics extract() accumulates
info = distributed.setup("cpu")
cfg = load_config(config, overrides)
torch.manual_seed(0)
G = generator_from_config(cfg.model)
fid = PeriodicFID(cfg, build_dataset(cfg), out, info, print)
value = fid.measure(G, step=1)
torch.save({"fid": value, "G": G.state_dict()}, results / f"rank{info.rank}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_two_rank_periodic_fid_equals_one_process_over_both_ranks_samples(tmp_path, monkeypatch):
    """Rank r generates shard_sizes(n, 2)[r] samples from seed train.seed + r; the all-reduced statistics give both
    ranks the FID one process computes from the concatenation of those samples, against the reference statistics
    the ranks computed together (equal to one process's)."""
    import hamgan.metrics
    import hamgan.train.periodic
    from hamgan.bn_modes import BNMode, bn_mode
    from hamgan.config import load_config
    from hamgan.data import build_dataset
    from hamgan.distributed import DistInfo, shard_sizes
    from hamgan.metrics import FeatureStats, frechet_distance, generator_statistics, load_stats
    from hamgan.nn.from_config import generator_from_config
    from hamgan.train.periodic import PeriodicFID

    out, results = tmp_path / "run", tmp_path / "results"
    out.mkdir()
    results.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           str(TINY), str(out), str(results), *OVERRIDES]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(results / f"rank{r}.pt") for r in range(2))
    assert r0["fid"] is not None and r0["fid"] == r1["fid"]

    # one process: the same extractor, G and data
    scope: dict = {}
    exec(TINY_FEATURES, scope)
    monkeypatch.setattr(hamgan.train.periodic, "InceptionFeatures", scope["TinyFeatures"])
    monkeypatch.setattr(hamgan.train.periodic, "FEATURE_DIM", scope["DIM"])
    monkeypatch.setattr(hamgan.metrics.features, "FEATURE_DIM", scope["DIM"])
    cfg = load_config(TINY, OVERRIDES)
    single = PeriodicFID(cfg, build_dataset(cfg), tmp_path, DistInfo(), print)  # reference of all images, 1 rank
    mu, sigma = load_stats(out / "fid_ref.npz", dim=scope["DIM"])  # ... as the 2 ranks computed it
    torch.testing.assert_close(torch.from_numpy(mu), torch.from_numpy(single.ref[0]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(torch.from_numpy(sigma), torch.from_numpy(single.ref[1]), rtol=1e-9, atol=1e-12)
    G = generator_from_config(cfg.model)
    G.load_state_dict(r0["G"])

    def fid_of(seeds: list[int]) -> float:
        stats = FeatureStats(scope["DIM"])
        for share, seed in zip(shard_sizes(cfg.train.fid.n_samples, 2), seeds):
            with bn_mode(G, BNMode("running"), seed=cfg.train.seed, device="cpu"):
                part = generator_statistics(G, single.inception, share, cfg.train.fid.batch_size, None, seed, "cpu",
                                            progress=False).stats
            stats.n, stats.sum = stats.n + part.n, stats.sum + part.sum
            stats.sum_outer = stats.sum_outer + part.sum_outer
        assert stats.n == 25
        return frechet_distance(stats.mean(), stats.cov(), *single.ref)

    seed = cfg.train.seed
    assert r0["fid"] == pytest.approx(fid_of([seed, seed + 1]), rel=1e-7)
    assert r0["fid"] != pytest.approx(fid_of([seed, seed]), rel=1e-3)  # the ranks' samples differ
