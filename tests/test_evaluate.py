import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hamgan.bn_modes import BNMode
from hamgan.config import from_dict, load_config
from hamgan.evaluate import main
from hamgan.metrics.comparison import ZERO_HEAD_WARNING, context_name
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.sources import EvalOptions, compute, load_inception, parse_source
from hamgan.metrics.stats import StatsError, load_stats, save_stats

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
    for context, name in (("attention", "attention @16/16"), ("none", "none")):
        model = {**tiny_model, **{net: {**tiny_model[net], "context": context} for net in ("g", "d")}}
        assert context_name(from_dict({"model": model}).model) == name
    mixed = load_config(None, ["model.d.context=none", "model.g.context_res=64"]).model
    assert context_name(mixed) == "G ham-nmf @64, D none"
    assert context_name(load_config(None, ["model.d.ham.kind=cd"]).model) == "G ham-nmf @32, D ham-cd @32"


@pytest.mark.slow
def test_fid_of_two_npz_files(tmp_path, capsys):
    a, b = random_stats(0), random_stats(1)
    save_stats(tmp_path / "a.npz", *a)
    save_stats(tmp_path / "b.npz", *b)
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] == frechet_distance(*a, *b) and out["protocol"] == "pytorch-fid"
    assert out["a"] == {"source": str(tmp_path / "a.npz"), "n": None, "protocol": None}


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
    assert main(["fid", str(tmp_path / "ok.npz"), str(tmp_path / "ok.npz"), "--bn-batches", "0"]) == 2
    assert "batches >= 1" in capsys.readouterr().err


def test_eval_options_choose_the_bn_mode_and_check_values():
    assert EvalOptions(bn_batches=2).bn_mode(ema=True) == BNMode("standing", 2, 100, 20)  # auto, EMA G
    assert EvalOptions().bn_mode(ema=False) == BNMode("running")  # auto, raw G
    assert EvalOptions(protocol="hamgan-tf").bn_mode(ema=True).mode == "batch"  # the protocol fixes it
    assert EvalOptions(protocol="hamgan-tf", bn="running", sn_refresh=3).bn_mode(ema=True) == BNMode("running", 16,
                                                                                                   100, 3)
    given = BNMode("standing", 4, 8, 0)
    assert EvalOptions(bn=given).bn_mode(ema=True) is given
    assert EvalOptions().generator_batch_size() == 50 and EvalOptions(batch_size=7).generator_batch_size() == 7
    assert EvalOptions(protocol="hamgan-tf").generator_batch_size() == 1024
    for kwargs, message in [({"truncation": 0.0}, "truncation must be > 0"), ({"n": 0}, "n must be positive"),
                            ({"bn": "mean"}, "batch-norm mode must be"), ({"bn_batches": 0}, "batches >= 1"),
                            ({"protocol": "tf"}, "unknown protocol")]:
        with pytest.raises(ValueError, match=message):
            EvalOptions(**kwargs)
    with pytest.raises(ValueError, match="need the Inception network"):
        compute(parse_source("configs/x.yaml"), EvalOptions(), None)


@pytest.mark.slow
def test_library_compute_with_plain_arguments_equals_the_cli(tmp_path, capsys, fid_weights, tiny_checkpoint):
    """compute() with keyword options (no argparse) gives the statistics behind hamgan-eval fid --json."""
    ham = tiny_checkpoint(tmp_path / "ckpt-000000007.pt", step=7)
    save_stats(tmp_path / "ref.npz", *random_stats(0))
    argv = ["--n", "4", "--batch-size", "2", "--bn-batches", "2", "--bn-batch-size", "4", "--device", "cpu",
            "--num-workers", "0"]
    with pytest.warns(UserWarning, match="biased"):
        assert main(["fid", str(ham), str(tmp_path / "ref.npz"), "--json", *argv]) == 0
    cli = json.loads(capsys.readouterr().out)
    options = EvalOptions(n=4, batch_size=2, bn_batches=2, bn_batch_size=4, device="cpu", num_workers=0)
    with pytest.warns(UserWarning, match="biased"):
        gen = compute(ham, options, load_inception(options))
    ref = compute(tmp_path / "ref.npz", options, None)
    assert gen.describe() == cli["a"] and ref.describe() == cli["b"]
    assert cli["a"]["bn"] == "standing" and cli["a"]["n"] == 4  # auto: standing statistics for the EMA G
    assert frechet_distance(gen.ref.mu, gen.ref.sigma, ref.ref.mu, ref.ref.sigma) == cli["fid"]  # same arithmetic


@pytest.mark.slow
def test_stats_fid_and_compare_on_checkpoints(tmp_path, capsys, fid_weights, tiny_checkpoint, tiny_model):
    """Data set config -> features file; checkpoint vs ref FID in every BN mode; the comparison table and JSON."""
    ham = tiny_checkpoint(tmp_path / "ham" / "ckpt-000000007.pt", step=7)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": tiny_model, "data": {"name": "synthetic", "synthetic_size": 64}}))
    ref = tmp_path / "ref.npz"
    with pytest.warns(UserWarning, match="biased"):
        assert main(["stats", str(config), "data.synthetic_size=8", "--out", str(ref), "--num-workers", "0",
                     "--features"]) == 0
    assert "mu, sigma, features, labels of 8 images" in capsys.readouterr().out
    mu, sigma = load_stats(ref)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    with np.load(ref) as f:
        assert f["features"].shape == (8, 2048) and f["labels"].shape == (8,) and str(f["protocol"]) == "pytorch-fid"

    fids = {}
    for bn in ("running", "standing", "batch"):
        with pytest.warns(UserWarning, match="biased"):
            assert main(["fid", str(ham), str(ref), "--n", "6", "--batch-size", "3", "--bn", bn, "--json",
                         "--bn-batches", "2", "--bn-batch-size", "4"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["a"]["bn"] == bn and out["a"]["n"] == 6 and out["a"]["step"] == 7 and out["b"]["n"] == 8
        assert out["protocol"] == "pytorch-fid" and out["b"]["source"] == str(ref) and out["distance"] == "eig"
        fids[bn] = out["fid"]
    assert len(set(fids.values())) == 3 and all(v > 0 for v in fids.values())  # the modes sample differently
    with pytest.warns(UserWarning, match="biased"):
        assert main(["fid", str(ham), str(ref), "--n", "6", "--batch-size", "3", "--bn", "standing",
                     "--bn-batches", "2", "--bn-batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert float(captured.out.split()[1]) == pytest.approx(fids["standing"])
    assert "BN standing (2 x 4), SN refreshed (20 it.)" in captured.out + captured.err  # default for the EMA G
    g_stats = tmp_path / "g.npz"  # statistics of a checkpoint's samples remember how they were made
    with pytest.warns(UserWarning, match="biased"):
        assert main(["stats", str(ham), "--out", str(g_stats), "--n", "6", "--batch-size", "3", "--bn", "batch"]) == 0
    assert "BN batch, SN refreshed (20 it.)" in capsys.readouterr().out
    with np.load(g_stats) as f:
        assert json.loads(str(f["bn"])) == {"bn": "batch", "sn_iterations": 20}
        assert int(f["step"]) == 7 and int(f["n"]) == 6 and str(f["source"]) == str(ham)
    with np.load(ref) as f:  # a data set's statistics: no generator, so no BN mode
        assert str(f["source"]).startswith(str(config)) and "bn" not in f.files

    from hamgan.nn.from_config import generator_from_config

    sagan = tiny_checkpoint(tmp_path / "sagan.pt", step=3, context="attention", ema=False)
    out = tmp_path / "compare.json"
    with pytest.warns(UserWarning):  # biased FID; no EMA in the sagan checkpoint
        assert main(["compare", str(tmp_path / "ham"), str(sagan), "--n", "6", "--splits", "2", "--json-out",
                     str(out), "--kid-subsets", "3", "--bn-batches", "2", "--per-class", "--ref", str(ref)]) == 0
    captured = capsys.readouterr()
    assert ("| checkpoint | steps | context | params G | params D | BN | FID | KID x 1e3 | precision | recall | "
            "density | coverage | IS (2 splits) | intra-FID |") in captured.out
    assert "| 7 | ham-nmf @16/16 |" in captured.out and "| 3 | attention @16/16 |" in captured.out
    assert "KID: 3 subsets of 6" in captured.out and "IS 2 splits, logits without bias" in captured.out
    rows = json.loads(out.read_text())
    assert [r["is_bias"] for r in rows] == [False, False]  # improved-gan's IS by default
    assert [r["step"] for r in rows] == [7, 3]
    assert [r["bn"] for r in rows] == ["standing", "running"]  # auto: standing for EMA, running for the raw G
    G = generator_from_config(from_dict({"model": tiny_model}).model)
    assert rows[0]["params_g"] == sum(p.numel() for p in G.parameters())
    for r in rows:
        assert r["fid"] > 0 and r["is_splits"] == 2 and r["n"] == 6 and r["protocol"] == "pytorch-fid"
        assert r["distance"] == "eig"
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["coverage"] <= 1 and r["density"] >= 0
        assert r["kid_subset_size"] == 6 and r["ref"] == str(ref) and r["ref_n"] == 8 and r["intra_fid"] > 0
    if not rows[0]["is_meaningful"]:  # the local weights file has a zero 1008-class head
        assert ZERO_HEAD_WARNING in captured.err
        assert all(r["is_mean"] == pytest.approx(1.0) for r in rows)

    # a mu/sigma-only reference: FID and IS, and a note that the rest needs features
    save_stats(tmp_path / "musigma.npz", mu, sigma)
    with pytest.warns(UserWarning):  # --is-bias: TF-GAN / StudioGAN's IS (logits with the classifier's bias)
        assert main(["compare", str(sagan), "--n", "4", "--splits", "1", "--ref", str(tmp_path / "musigma.npz"),
                     "--is-bias", "--json-out", str(tmp_path / "bias.json")]) == 0
    printed = capsys.readouterr().out
    assert "holds only mu/sigma" in printed and "IS 1 splits, logits with bias" in printed
    assert json.loads((tmp_path / "bias.json").read_text())[0]["is_bias"] is True
    with pytest.warns(UserWarning):
        assert main(["compare", str(sagan), "--n", "4", "--metrics", "fid,kid",
                     "--ref", str(tmp_path / "musigma.npz")]) == 2
    assert "needs the reference's features" in capsys.readouterr().err


def write_imagenet_like(root, classes=("n01", "n02", "n03"), per_class=2) -> None:
    """root/val/<class>/<i>.JPEG, non-square RGB images of different sizes (as ImageNet's validation split)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / "val" / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(40, 70)), int(rng.integers(40, 70))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "val" / c / f"{i}.JPEG")


@pytest.mark.slow
def test_hamgan_tf_protocol_on_an_imagenet_like_folder(tmp_path, capsys, fid_weights, tiny_checkpoint, tiny_model):
    ham = tiny_checkpoint(tmp_path / "ckpt-000000005.pt", step=5)
    write_imagenet_like(tmp_path / "imagenet")
    config = tmp_path / "in.yaml"
    config.write_text(yaml.safe_dump({"model": tiny_model, "data": {"name": "imagenet"}}))
    ref = tmp_path / "ref_tf.npz"
    overrides = [f"data.root={tmp_path / 'imagenet'}", "data.split=val"]
    with pytest.warns(UserWarning, match="biased"):
        assert main(["stats", str(config), *overrides, "--out", str(ref), "--protocol", "hamgan-tf",
                     "--num-workers", "0"]) == 0
    assert "of 6 images" in capsys.readouterr().out
    with np.load(ref) as f:
        assert str(f["protocol"]) == "hamgan-tf" and int(f["n"]) == 6
    with pytest.warns(UserWarning, match="biased"):
        assert main(["fid", str(ham), str(ref), "--protocol", "hamgan-tf", "--n", "5", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["protocol"] == "hamgan-tf" and out["a"]["bn"] == "batch" and out["a"]["n"] == 5 and out["fid"] > 0
    # a reference made under the other protocol is refused
    assert main(["fid", str(ham), str(ref), "--n", "5"]) == 2
    assert "computed under protocol hamgan-tf" in capsys.readouterr().err
    # compare against the config itself (features and labels straight from the data set)
    with pytest.warns(UserWarning):
        assert main(["compare", str(ham), "--protocol", "hamgan-tf", "--n", "5", "--splits", "1", "--kid-subsets",
                     "2", "--per-class", "--ref", str(config), *overrides]) == 0
    text = capsys.readouterr().out
    assert "protocol hamgan-tf (float images, tf1 bilinear resize to 299, generator BN batch)" in text
    assert "| batch, SN refreshed (20 it.) |" in text


@pytest.mark.slow
def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "hamgan.evaluate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "compare" in out.stdout
