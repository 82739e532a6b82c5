import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hamgan.config import from_dict
from hamgan.evaluate import ZERO_HEAD_WARNING, context_name, main, parse_source
from hamgan.metrics.fid import StatsError, frechet_distance, load_stats, save_stats

def random_stats(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Well-conditioned 2048-d statistics (a singular sigma makes scipy's sqrtm run twice: slow)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=2048), np.diag(rng.uniform(0.5, 2.0, size=2048))


def test_sources_are_classified(tmp_path):
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt-000000001.pt").write_bytes(b"")
    (tmp_path / "c.pt").write_bytes(b"")
    assert parse_source(str(tmp_path / "ref.npz")).kind == "npz"
    assert parse_source(str(tmp_path / "imgs")).kind == "folder"
    assert parse_source(str(tmp_path / "run")).kind == "checkpoint"
    assert parse_source(str(tmp_path / "c.pt")).kind == "checkpoint"
    assert parse_source("configs/x.yaml", ["data.split=test"]).overrides == ["data.split=test"]
    with pytest.raises(ValueError, match="does not exist"):
        parse_source(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StatsError, match="holds no images"):
        parse_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="only apply to a data set config"):
        parse_source(str(tmp_path / "imgs"), ["data.split=test"])


def test_context_names(tiny_model):
    assert context_name(from_dict({"model": tiny_model}).model) == "ham-nmf @16/16"
    assert context_name(from_dict({"model": {**tiny_model, "context": "attention"}}).model) == "attention @16/16"
    assert context_name(from_dict({"model": {**tiny_model, "context": "none"}}).model) == "none"


def test_fid_of_two_npz_files(tmp_path, capsys):
    a, b = random_stats(0), random_stats(1)
    save_stats(tmp_path / "a.npz", *a)
    save_stats(tmp_path / "b.npz", *b)
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == frechet_distance(*a, *b)


def test_cli_errors(tmp_path, capsys):
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    save_stats(tmp_path / "ok.npz", *random_stats(0))
    assert main(["fid", str(tmp_path / "small.npz"), str(tmp_path / "ok.npz")]) == 2
    assert "mu of shape (64,)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fid", str(tmp_path / "empty"), str(tmp_path / "ok.npz")]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "ok.npz"), str(tmp_path / "ok.npz"), "--truncation", "-1"]) == 2
    assert "--truncation must be > 0" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "c.pt"), "--ref", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stats_fid_and_compare_on_checkpoints(tmp_path, capsys, fid_weights, tiny_checkpoint, tiny_model):
    """Data set config -> ref.npz; checkpoint vs ref FID; the comparison table and its JSON."""
    ham = tiny_checkpoint(tmp_path / "ham" / "ckpt-000000007.pt", step=7)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": tiny_model, "data": {"name": "synthetic", "synthetic_size": 64}}))
    ref = tmp_path / "ref.npz"
    with pytest.warns(UserWarning, match="biased"):
        assert main(["stats", str(config), "data.synthetic_size=8", "--out", str(ref), "--num-workers", "0"]) == 0
    assert "from 8 images" in capsys.readouterr().out
    mu, sigma = load_stats(ref)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)

    with pytest.warns(UserWarning, match="biased"):
        assert main(["fid", str(ham), str(ref), "--n", "6", "--batch-size", "4"]) == 0
    assert float(capsys.readouterr().out.removeprefix("FID: ")) > 0

    from hamgan.nn.networks import Generator

    sagan = tiny_checkpoint(tmp_path / "sagan.pt", step=3, context="attention", ema=False)
    out = tmp_path / "compare.json"
    with pytest.warns(UserWarning):  # biased FID; no EMA in the sagan checkpoint
        assert main(["compare", str(tmp_path / "ham"), str(sagan), "--ref", str(ref), "--n", "6",
                     "--splits", "2", "--json-out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| checkpoint | steps | context | params G | params D | FID | IS (2 splits) |" in captured.out
    assert "| 7 | ham-nmf @16/16 |" in captured.out and "| 3 | attention @16/16 |" in captured.out
    rows = json.loads(out.read_text())
    assert [r["step"] for r in rows] == [7, 3]
    assert rows[0]["params_g"] == sum(p.numel() for p in Generator(from_dict({"model": tiny_model}).model).parameters())
    assert all(r["fid"] > 0 and r["is_splits"] == 2 and r["n"] == 6 for r in rows)
    if not rows[0]["is_meaningful"]:  # the local weights file has a zero 1008-class head
        assert ZERO_HEAD_WARNING in captured.err
        assert all(r["is_mean"] == pytest.approx(1.0) for r in rows)


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "hamgan.evaluate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "compare" in out.stdout
