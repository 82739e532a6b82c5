import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from hamgan.sample import class_grid, main, sample_images, to_uint8, truncated_z


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt-000000007.pt")


@pytest.fixture(scope="module")
def G(ckpt):
    from hamgan.checkpoint import load_generator

    return load_generator(ckpt, ema=True)[0]


def test_to_uint8_equals_save_image_png_round_trip(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8) * 2.2 - 1.1  # beyond [-1, 1] too: clamped as save_image does
    x[0, :, 0, :] = torch.linspace(-1, 1, 8)  # exact .5 boundaries
    grey = torch.rand(2, 1, 8, 8) * 2 - 1
    for name, batch in (("rgb", x), ("grey", grey)):
        ours = to_uint8(batch)
        assert ours.dtype == torch.uint8 and ours.shape == (len(batch), 3, 8, 8)
        for i, image in enumerate(batch):
            path = tmp_path / f"{name}{i}.png"
            save_image((image + 1) / 2, path)
            png = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
            assert torch.equal(ours[i], png)


def test_truncated_z_is_the_truncated_normal_by_inverse_cdf():
    z = truncated_z(20000, 8, truncation=0.5, generator=torch.Generator().manual_seed(1))
    assert z.shape == (20000, 8) and z.dtype == torch.float32
    assert z.abs().max() <= 0.5
    # the normal truncated to [-T, T]: variance 1 - 2 T phi(T) / (2 Phi(T) - 1), not that of a clamp or a uniform
    t = torch.tensor(0.5, dtype=torch.float64)
    phi = torch.exp(-t**2 / 2) / (2 * torch.pi) ** 0.5
    var = 1 - 2 * t * phi / torch.special.erf(t / 2**0.5)
    assert float(z.double().var()) == pytest.approx(float(var), rel=0.02)
    assert torch.equal(z, truncated_z(20000, 8, 0.5, torch.Generator().manual_seed(1)))
    tiny = truncated_z(100, 4, 1e-12, torch.Generator().manual_seed(0))  # T -> 0: no endless redraw, z -> 0
    assert tiny.abs().max() <= 1e-12 and tiny.abs().max() > 0
    wide = truncated_z(5, 4, 50.0, torch.Generator().manual_seed(0))
    assert torch.isfinite(wide).all()
    assert truncated_z(3, 4, None, torch.Generator().manual_seed(1)).abs().max() > 0  # no truncation
    with pytest.raises(ValueError, match="truncation must be > 0"):
        truncated_z(3, 4, truncation=0.0)


def test_sample_images_deterministic_without_touching_global_rng(G):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = sample_images(G, 10, seed=3, batch_size=4)
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is untouched
    assert a.dtype == torch.uint8 and a.shape == (10, 3, 32, 32)
    assert torch.equal(a, sample_images(G, 10, seed=3, batch_size=4))
    assert not torch.equal(a, sample_images(G, 10, seed=4, batch_size=4))
    with pytest.raises(ValueError, match="class index 3 is out of range.*3 classes"):
        sample_images(G, 2, classes=[0, 3])


def test_sampling_functions_set_eval_mode_and_restore_it(G):
    G.train()
    try:
        a = sample_images(G, 4, seed=0)
        assert G.training  # left as it was
        G.eval()
        assert torch.equal(a, sample_images(G, 4, seed=0))  # sampled in eval mode (running statistics) both times
    finally:
        G.eval()


def test_cli_bn_modes_change_the_samples(ckpt, tmp_path, capsys):
    arrays = {}
    for bn in ("running", "standing", "batch"):
        assert main([str(ckpt), "--out", str(tmp_path / bn), "--npz", "--n", "4", "--bn", bn, "--bn-batches",
                     "2"]) == 0
        captured = capsys.readouterr()
        assert f"BN {bn}" in captured.out and f"batch norm: {bn}" in captured.err
        with np.load(tmp_path / f"{bn}.npz") as f:
            arrays[bn] = f["arr_0"]
            made = json.loads(str(f["bn"]))  # the file says how its images were made
            assert made["bn"] == bn and made["sn_iterations"] == 20  # EMA G: spectral-norm vectors refreshed
            assert made.get("bn_batches") == (2 if bn == "standing" else None)
            assert str(f["source"]) == str(ckpt) and int(f["step"]) >= 1 and int(f["seed"]) == 0
            assert np.isnan(f["truncation"])
    assert not np.array_equal(arrays["running"], arrays["standing"])
    assert not np.array_equal(arrays["running"], arrays["batch"])


def test_class_grid_rows_share_latents(G):
    grid = class_grid(G, [0, 2], per_class=3, seed=0)
    assert grid.shape == (6, 3, 32, 32)
    assert grid.min() >= 0 and grid.max() <= 1


def test_cli_grid_folder_npz_and_interpolation(ckpt, tmp_path):
    assert main([str(ckpt), "--out", str(tmp_path / "grid.png"), "--classes", "0,2", "--n", "4"]) == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 + 4 * 34, 2 + 2 * 34)  # make_grid padding 2: 4 columns, one row per class

    assert main([str(ckpt), "--out", str(tmp_path / "pngs"), "--n", "5", "--truncation", "1.0", "--no-ema"]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"{i:06d}.png" for i in range(5)]

    assert main([str(ckpt), "--out", str(tmp_path / "samples"), "--npz", "--n", "5", "--no-ema",
                 "--truncation", "1.0"]) == 0
    with np.load(tmp_path / "samples.npz") as f:
        arr, labels = f["arr_0"], f["arr_1"]
    assert arr.dtype == np.uint8 and arr.shape == (5, 32, 32, 3)
    assert labels.shape == (5,) and labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1, 2}
    assert np.array_equal(arr[0], np.asarray(Image.open(tmp_path / "pngs" / "000000.png")))  # same samples

    assert main([str(ckpt), "--out", str(tmp_path / "lerp.png"), "--interpolate", "1,2", "--steps", "5",
                 "--classes", "1"]) == 0
    assert Image.open(tmp_path / "lerp.png").size == (2 + 5 * 34, 2 + 34)


def test_cli_errors(ckpt, tmp_path, capsys):
    assert main([str(ckpt), "--out", str(tmp_path / "g.png"), "--classes", "0,5"]) == 2
    assert "class index 5 is out of range" in capsys.readouterr().err
    assert main([str(ckpt), "--out", str(tmp_path / "g.png"), "--truncation", "0"]) == 2
    assert "--truncation must be > 0" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "g.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_grids_name_their_rows(ckpt, tmp_path):
    """A grid's rows are named beside it (GRID.txt): class index and, for ImageNet and Fashion-MNIST models, the
    class name; ImageNet's names follow the sorted synsets (1 goldfish n01443537, 980 volcano n09472597)."""
    from hamgan.sample import class_names

    assert main([str(ckpt), "--out", str(tmp_path / "grid.png"), "--classes", "0,2", "--n", "2"]) == 0
    assert (tmp_path / "grid.txt").read_text().splitlines()[1].startswith("row 1: class 2")
    names = class_names("imagenet", 1000)
    assert len(names) == 1000 and (names[1], names[207], names[980]) == ("goldfish", "golden retriever", "volcano")
    assert class_names("fmnist", 10)[9] == "Ankle boot" and class_names("synthetic", 4) is None
