"""studies.fmnist32.evaluation: cached, resumable evaluation of study checkpoints (real Inception, tiny N)."""

import json

import numpy as np
import pytest
import torch

from hamgan.metrics.stats import save_stats
from studies.fmnist32.evaluation import CACHE_NAME, EvalSpec, Evaluator, find_cached, load_cache

SPEC = EvalSpec(n=8, metrics=("fid", "kid", "pr", "dc"), bn_batches=1, bn_batch_size=4, batch_size=4,
                fid_subsets=(8, 6))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A features file of 12 random 'real' features (only the metrics' plumbing is under test here)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.rand(12, 2048, generator=gen).numpy()
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    save_stats(path, features.mean(0), np.cov(features, rowvar=False), features=features,
               labels=np.arange(12) % 3, n=12, protocol="pytorch-fid")
    return path


@pytest.fixture(scope="module")
def evaluator(reference, fid_weights):
    return Evaluator(reference)


@pytest.fixture
def run(tmp_path, tiny_checkpoint):
    tiny_checkpoint(tmp_path / "ckpt-000000007.pt", step=7)
    return tmp_path


@pytest.mark.slow
def test_an_evaluation_is_cached_and_reused_only_under_the_same_options(evaluator, run, monkeypatch):
    row = evaluator.evaluate_cached(run, 7, SPEC)
    assert row["step"] == 7 and row["n"] == 8 and row["bn"] == "standing" and row["ema"] is True
    assert row["bn_batches"] == 1 and row["bn_batch_size"] == 4 and row["sn_iterations"] == 20
    assert row["reference"] == "ref.npz" and row["protocol"] == "pytorch-fid"
    for key in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "fid_at_6", "fid_at_8"):
        assert np.isfinite(row[key]), key
    # the FID of all n samples from the kept float32 features equals the streamed float64 one
    assert row["fid_at_8"] == pytest.approx(row["fid"], rel=1e-4)
    assert len(load_cache(run)) == 1

    def fail(*args, **kwargs):
        raise AssertionError("evaluated again although cached")

    monkeypatch.setattr(evaluator, "evaluate", fail)
    assert evaluator.evaluate_cached(run, 7, SPEC) == row
    monkeypatch.undo()
    other = evaluator.evaluate_cached(run, 7, EvalSpec(n=6, bn_batches=1, bn_batch_size=4, batch_size=3))
    assert other["n"] == 6 and "kid_mean" not in other
    assert len(load_cache(run)) == 2


@pytest.mark.slow
def test_the_same_spec_gives_the_same_numbers(evaluator, run):
    spec = EvalSpec(n=6, bn_batches=1, bn_batch_size=4, batch_size=3)
    a = evaluator.evaluate(run / "ckpt-000000007.pt", spec)
    b = evaluator.evaluate(run / "ckpt-000000007.pt", spec)
    assert a["fid"] == b["fid"]


def test_a_missing_checkpoint_gives_none_and_a_damaged_cache_line_is_skipped(evaluator, run, capsys):
    assert evaluator.evaluate_cached(run, 99, SPEC) is None
    good = {"step": 1, "n": 2, "fid": 3.0}
    (run / CACHE_NAME).write_text(json.dumps(good) + "\n{\"step\": 2, \"n\n")
    assert load_cache(run) == [good]
    assert "damaged" in capsys.readouterr().err
    assert find_cached([good], {"step": 1, "n": 2}) == good
    assert find_cached([good], {"step": 1, "n": 3}) is None


def test_a_checkpoint_without_ema_weights_is_refused(evaluator, tmp_path, tiny_checkpoint):
    path = tiny_checkpoint(tmp_path / "ckpt-000000003.pt", step=3, ema=False)
    with pytest.raises(ValueError, match="no EMA generator"):
        with pytest.warns(UserWarning):
            evaluator.evaluate(path, SPEC)


def test_bad_specs_and_a_reference_without_features_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n >= 2"):
        EvalSpec(n=1)
    with pytest.raises(ValueError, match="metrics must include fid"):
        EvalSpec(n=10, metrics=("kid",))
    with pytest.raises(ValueError, match="metrics must include fid"):
        EvalSpec(n=10, metrics=("fid", "is"))
    with pytest.raises(ValueError, match="fid_subsets"):
        EvalSpec(n=10, fid_subsets=(20,))
    path = tmp_path / "mu_sigma.npz"
    save_stats(path, np.zeros(2048), np.eye(2048))
    with pytest.raises(ValueError, match="--features"):
        Evaluator(path)


def test_cached_row_and_reference_n_read_without_evaluating(reference, tmp_path):
    from studies.fmnist32.evaluation import append_cache, cached_row, reference_n

    spec = EvalSpec(n=4)
    row = {**spec.key(3, "ref.npz"), "fid": 1.5}
    append_cache(tmp_path, row)
    assert cached_row(tmp_path, 3, spec, "ref.npz") == row
    assert cached_row(tmp_path, 3, spec, "other.npz") is None
    assert cached_row(tmp_path, 3, EvalSpec(n=4, seed=1), "ref.npz") is None
    assert reference_n(reference) == 12
    save_stats(tmp_path / "plain.npz", np.zeros(2048), np.eye(2048))
    assert reference_n(tmp_path / "plain.npz") is None
