import json

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3
from torchvision.utils import save_image

from hamgan.evaluate import main as eval_main
from hamgan.metrics.features import folder_statistics, list_images
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.stats import FeatureStats, StatsError, load_stats, save_stats, warn_if_biased
from hamgan.metrics.summary import frechet_distance_of_features
from hamgan.metrics.inception import InceptionFeatures
from hamgan.sample import to_uint8

N_PER_FOLDER = 16  # Inception on CPU costs ~0.1-0.3 s per image


@pytest.fixture(scope="module")
def inception(fid_weights) -> InceptionFeatures:
    return InceptionFeatures()


@pytest.fixture(scope="module")
def pfid_model(fid_weights) -> InceptionV3:
    return InceptionV3([3]).eval()


@pytest.fixture(scope="module")
def fmnist_folders(tmp_path_factory):
    """Two folders of Fashion-MNIST PNGs (train[:N] and test[:N]), 28x28 grey saved as RGB."""
    from hamgan.data.fmnist import DEBIAN_ROOT, read_idx

    root = tmp_path_factory.mktemp("fmnist")
    folders = []
    for prefix in ("train", "t10k"):
        path = DEBIAN_ROOT / f"{prefix}-images-idx3-ubyte.gz"
        if not path.is_file():
            pytest.skip(f"Fashion-MNIST not installed at {DEBIAN_ROOT} (apt-get install dataset-fashion-mnist)")
        folder = root / prefix
        folder.mkdir()
        for i, image in enumerate(read_idx(path)[:N_PER_FOLDER]):
            Image.fromarray(image).convert("RGB").save(folder / f"{i:03d}.png")
        folders.append(folder)
    return folders


def random_stats(rng: np.random.Generator, dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    return x.mean(0), np.cov(x, rowvar=False)


# ---- statistics and distance -------------------------------------------------------------------------------------


def test_streaming_stats_equal_numpy_mean_and_cov():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, size=(257, 16)).astype(np.float32)
    stats = FeatureStats(16)
    for chunk in np.array_split(x, 5):
        stats.update(torch.from_numpy(chunk))
    assert stats.n == 257
    assert stats.mean().dtype == np.float64
    np.testing.assert_allclose(stats.mean(), x.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x.astype(np.float64), rowvar=False), rtol=0, atol=1e-10)


def pytorch_fid_distance(*stats) -> float | None:
    """pytorch-fid's calculate_frechet_distance, or None where SciPy's sqrtm no longer takes its ``disp``."""
    try:
        return float(fid_score.calculate_frechet_distance(*stats))
    except TypeError as e:  # SciPy >= 1.18: sqrtm() got an unexpected keyword argument 'disp'
        assert "disp" in str(e)
        return None


def test_pytorch_fid_distance_fails_exactly_where_scipy_dropped_disp():
    """The bug we no longer depend on: pytorch-fid 0.3.0 passes disp=False, which SciPy 1.18 rejects."""
    import inspect

    import scipy.linalg

    has_disp = "disp" in inspect.signature(scipy.linalg.sqrtm).parameters
    rng = np.random.default_rng(0)
    stats = (*random_stats(rng, 4, 10), *random_stats(rng, 4, 10))
    assert (pytorch_fid_distance(*stats) is not None) == has_disp
    assert frechet_distance(*stats) > 0  # ours works with every SciPy


def exact_fid_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """Ground truth: Tr sqrt(S_a S_b) from the singular values of the centred cross product (no sqrtm, no eigh)."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    trace_sqrt = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    d = a.mean(0) - b.mean(0)
    return float(d @ d + (ac * ac).sum() / (len(a) - 1) + (bc * bc).sum() / (len(b) - 1) - 2 * trace_sqrt)


def relu_features(rng: np.random.Generator, n: int, dim: int, scale: float = 1.0) -> np.ndarray:
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return np.abs(rng.normal(size=(n, dim)) @ mix + 0.3) * scale  # non-negative, correlated, like pool3 features


def test_frechet_distance_equals_pytorch_fid():
    rng = np.random.default_rng(1)
    a, b = random_stats(rng, 32, 100), random_stats(rng, 32, 80)
    ours = frechet_distance(*a, *b)
    theirs = pytorch_fid_distance(*a, *b)
    assert theirs is None or ours == pytest.approx(theirs, rel=1e-9, abs=1e-9)
    assert ours > 0
    assert frechet_distance(*a, *a) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("n_a", "n_b"), [(3000, 2500), (1000, 600), (200, 100)])
def test_frechet_distance_2048_full_and_rank_deficient(n_a, n_b):
    """2048-d covariances from N samples: full rank (N > 2048) and rank-deficient (N < 2048).

    Ours equals the exact value (from the features' singular values) to 1e-9 relative in every case, and
    pytorch-fid's sqrtm-based value to 1e-6 relative (sqrtm's own error on singular products is ~1e-7).
    """
    rng = np.random.default_rng(n_a)
    a, b = relu_features(rng, n_a, 2048), relu_features(rng, n_b, 2048, scale=1.1)
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ours = frechet_distance(*stats)
    assert ours == pytest.approx(exact_fid_of_features(a, b), rel=1e-9)
    assert frechet_distance_of_features(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(ours, rel=1e-9)
    theirs = pytorch_fid_distance(*stats)
    assert theirs is None or ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize(("n_a", "n_b"), [(200, 150), (40, 30)])
def test_sqrtm_method_is_pytorch_fids_algorithm(n_a, n_b):
    """method="sqrtm" reproduces pytorch-fid's value to the last digit where its own code still runs (SciPy < 1.18),
    also on rank-deficient covariances where it is ~1e-6 off the exact value; on every SciPy it is that close."""
    rng = np.random.default_rng(n_a)
    a, b = relu_features(rng, n_a, 64), relu_features(rng, n_b, 64, scale=1.1)
    stats = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ours = frechet_distance(*stats, method="sqrtm")
    theirs = pytorch_fid_distance(*stats)
    assert theirs is None or ours == theirs
    assert ours == pytest.approx(exact_fid_of_features(a, b), rel=1e-5)
    assert ours == pytest.approx(frechet_distance(*stats), rel=1e-5)
    with pytest.raises(ValueError, match="unknown Fréchet distance method 'svd'; choose from eig, sqrtm"):
        frechet_distance(*stats, method="svd")


def test_frechet_distance_of_singular_low_dim_covariances_is_exact():
    rng = np.random.default_rng(4)
    a, b = relu_features(rng, 5, 16), relu_features(rng, 9, 16)  # ranks 4 and 8 in 16 dimensions
    ours = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert ours == pytest.approx(exact_fid_of_features(a, b), rel=1e-10)


def test_frechet_distance_rejects_nan():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(StatsError, match="NaN or inf"):
        frechet_distance(mu, sigma * np.nan, mu, sigma)


def test_frechet_distance_of_different_dims_is_an_error():
    rng = np.random.default_rng(2)
    with pytest.raises(StatsError, match="different shapes"):
        frechet_distance(*random_stats(rng, 8, 20), *random_stats(rng, 4, 20))


def test_npz_round_trip_in_pytorch_fid_format(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = random_stats(rng, 2048, 10)
    path = tmp_path / "ref.npz"
    save_stats(path, mu, sigma)
    loaded = load_stats(path)
    np.testing.assert_array_equal(loaded[0], mu)
    np.testing.assert_array_equal(loaded[1], sigma)
    theirs = fid_score.compute_statistics_of_path(str(path), None, 50, 2048, "cpu")  # pytorch-fid reads it back
    np.testing.assert_array_equal(theirs[0], mu)
    np.testing.assert_array_equal(theirs[1], sigma)


def test_stats_file_of_wrong_shape_is_a_clear_error(tmp_path):
    path = tmp_path / "small.npz"
    np.savez(path, mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(StatsError, match=r"mu of shape \(64,\).*expected \(2048,\) and \(2048, 2048\)"):
        load_stats(path)
    np.savez(tmp_path / "other.npz", arr_0=np.zeros(3))
    with pytest.raises(StatsError, match="no mu or sigma"):
        load_stats(tmp_path / "other.npz")
    with pytest.raises(StatsError, match="does not exist"):
        load_stats(tmp_path / "missing.npz")


def test_fewer_samples_than_features_warns_biased():
    with pytest.warns(UserWarning, match="fewer than the 2048 feature dimensions.*biased"):
        warn_if_biased(100)


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(StatsError, match="holds no images"):
        list_images(tmp_path)
    with pytest.raises(StatsError, match="not a folder"):
        list_images(tmp_path / "missing")


# ---- parity with pytorch-fid on real weights ----------------------------------------------------------------------


@pytest.mark.slow
def test_folder_fid_equals_pytorch_fid_command(fmnist_folders, pfid_model, capsys):
    """``hamgan-eval fid A B`` prints what ``python -m pytorch_fid A B`` prints (its path: get_activations, cov)."""
    a, b = fmnist_folders
    theirs, acts = [], []
    for folder in (a, b):
        act = fid_score.get_activations(list_images(folder), pfid_model, 50, 2048, "cpu", 0)
        acts.append(act)
        theirs += [np.mean(act, axis=0), np.cov(act, rowvar=False)]
    theirs_fid = pytorch_fid_distance(*theirs)  # None with SciPy >= 1.18, where pytorch-fid's command crashes
    exact = exact_fid_of_features(*acts)  # the value pytorch-fid's command approximates, independent of SciPy
    capsys.readouterr()  # pytorch-fid's own prints

    with pytest.warns(UserWarning, match="biased"):
        assert eval_main(["fid", str(a), str(b), "--json", "--num-workers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    ours_fid = out["fid"]
    assert ours_fid == pytest.approx(exact, abs=1e-3)
    assert theirs_fid is None or ours_fid == pytest.approx(theirs_fid, abs=1e-3)
    assert ours_fid > 1.0  # train vs test images are not identical
    assert out["protocol"] == "pytorch-fid" and out["a"]["n"] == out["b"]["n"] == N_PER_FOLDER
    # --distance sqrtm: pytorch-fid's algorithm (on pytorch-fid's statistics its value to the last digit, where its
    # own code runs); from our features (float32, 2e-5 apart) the command's value to 1e-6 relative
    assert theirs_fid is None or frechet_distance(*theirs, method="sqrtm") == theirs_fid
    with pytest.warns(UserWarning, match="biased"):
        assert eval_main(["fid", str(a), str(b), "--json", "--num-workers", "1", "--distance", "sqrtm"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["distance"] == "sqrtm" and out["fid"] == pytest.approx(exact, rel=1e-5)
    assert theirs_fid is None or out["fid"] == pytest.approx(theirs_fid, rel=1e-6)
    # real (rank-deficient: 16 images) feature statistics: exact, and pytorch-fid's sqrtm to 1e-6 relative
    assert frechet_distance(*theirs) == pytest.approx(exact, rel=1e-9)
    assert theirs_fid is None or frechet_distance(*theirs) == pytest.approx(theirs_fid, rel=1e-6)


@pytest.mark.slow
def test_generator_output_features_equal_png_round_trip(tmp_path, inception, pfid_model):
    """G output -> to_uint8 -> our features equal pytorch-fid's features of the same images saved as PNG files."""
    torch.manual_seed(0)
    x = (torch.rand(6, 1, 32, 32) * 2.4 - 1.2).clamp(-1, 1)  # grey, as a Fashion-MNIST generator
    x[0, 0, :4] = -1.0
    x[1, 0, :4] = 1.0
    for i, image in enumerate(x):
        save_image((image + 1) / 2, tmp_path / f"{i}.png")
    theirs = fid_score.get_activations(list_images(tmp_path), pfid_model, 50, 2048, "cpu", 0)
    with torch.inference_mode():
        ours, logits = inception(to_uint8(x))
    assert logits.shape == (6, 1008)
    np.testing.assert_allclose(ours.double().numpy(), theirs, rtol=0, atol=1e-4)

    # the folder path (decoding in a worker) gives the same statistics as the in-memory path
    stats = FeatureStats()
    stats.update(ours)
    folder = folder_statistics(tmp_path, inception, batch_size=4, num_workers=1, progress=False)
    assert folder.n == 6
    np.testing.assert_allclose(folder.stats.mean(), stats.mean(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(folder.stats.cov(), stats.cov(), rtol=0, atol=1e-6)
