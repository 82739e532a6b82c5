"""ImageFolder data sets: layout, labels, centre crop, unreadable files, layout errors, the index file (beside the
data, in the run folder, read by every rank of a multi-node run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.config import load_config
from hamgan.data import DatasetError, build_dataset
from hamgan.data.imagenet import ImageFolderDataset

CLASSES = ["n01_b", "n02_a", "n03_c"]  # sorted order = label order
SIZES = [(150, 90), (90, 200), (128, 128), (301, 157)]  # (W, H)
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]


def write_folder(root: Path) -> Path:
    """root/<class>/<k>.JPEG: 3 classes x 4 images of odd sizes, each class a flat colour."""
    for c, colour in zip(CLASSES, COLOURS):
        (root / c).mkdir(parents=True)
        for k, size in enumerate(SIZES):
            Image.new("RGB", size, colour).save(root / c / f"img{k}.JPEG", quality=95)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "imagenet" / "train")


@pytest.mark.parametrize("resize", ["tf-bilinear", "pil-bicubic"])
def test_shapes_range_and_folder_order_labels(folder: Path, resize: str):
    """The official TF-bilinear path serves float32 in [-1, 1] ("kept in float"), the PIL paths uint8 pixels."""
    cfg = load_config(None, [f"data.root={folder.parent}", "data.name=imagenet", "model.num_classes=3",
                             f"data.resize={resize}"])
    ds = build_dataset(cfg)  # resolves root/train
    assert len(ds) == 12 and ds.classes == CLASSES and ds.num_classes == 3
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 128, 128)
        if resize == "tf-bilinear":
            assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
            x = (x + 1) * 127.5
        else:
            assert x.dtype == torch.uint8
        assert y == i // 4
        # a flat colour stays that colour (within JPEG error)
        expected = torch.tensor(COLOURS[y], dtype=torch.float32)
        assert torch.allclose(x.float().mean((1, 2)), expected, atol=0.05 * 127.5)
        assert ds.get_uint8(i).shape == (128, 128, 3) and ds.get_uint8(i).dtype == np.uint8


def test_root_without_split_folder(folder: Path):
    ds = ImageFolderDataset(folder, split="val", resolution=32)  # folder/val does not exist: folder is the data set
    assert len(ds) == 12 and ds[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize("size", [(150, 90), (90, 150)])
def test_centre_crop_keeps_the_centre(tmp_path: Path, size: tuple[int, int]):
    """Red bands on the long sides, blue centre square: the crop is blue."""
    w, h = size
    s = min(w, h)
    image = np.zeros((h, w, 3), np.uint8)
    image[...] = (255, 0, 0)
    top, left = (h - s) // 2, (w - s) // 2
    image[top:top + s, left:left + s] = (0, 0, 255)
    (tmp_path / "only").mkdir()
    Image.fromarray(image).save(tmp_path / "only" / "a.png")
    out = ImageFolderDataset(tmp_path, resolution=64).get_uint8(0).astype(int)
    assert out.shape == (64, 64, 3)
    assert (out[..., 2] >= 250).all() and (out[..., 0] <= 5).all()


def test_unreadable_header_is_skipped_with_one_warning(folder: Path):
    (folder / CLASSES[1] / "garbage.JPEG").write_bytes(b"this is not a jpeg" * 10)
    (folder / CLASSES[2] / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\) of 14") as record:
        ds = ImageFolderDataset(folder, resolution=32)
    assert len([r for r in record if "unreadable" in str(r.message)]) == 1
    assert "garbage.JPEG" in str(record[0].message)
    assert len(ds) == 12 and ds.num_skipped == 2


def test_truncated_jpeg_is_replaced_by_the_next_image(folder: Path):
    path = folder / CLASSES[0] / "img1.JPEG"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, scan data cut
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ImageFolderDataset(folder, resolution=32)  # the header is intact: not detected yet
    assert len(ds) == 12
    with pytest.warns(UserWarning, match="img1.JPEG"):
        image, label = ds.load(1)
    assert np.array_equal(image, ds.load(2)[0]) and label == 0


def test_empty_class_folder_is_an_error(folder: Path):
    (folder / "n04_empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty class folder.*n04_empty"):
        ImageFolderDataset(folder)


def test_images_directly_in_root_is_an_error(tmp_path: Path):
    for k in range(3):
        Image.new("RGB", (40, 30)).save(tmp_path / f"{k}.jpg")
    with pytest.raises(DatasetError, match=r"no class folders: found 3 images directly in it.*<class>/<image>"):
        ImageFolderDataset(tmp_path)


def test_missing_root_is_an_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
    cfg = load_config(None, ["data.name=imagenet"])
    with pytest.raises(DatasetError, match="needs data.root"):
        build_dataset(cfg)


def test_num_classes_mismatch(folder: Path):
    cfg = load_config(None, [f"data.root={folder}", "data.name=imagenet", "model.num_classes=1000"])
    with pytest.raises(ValueError, match=r"3 classes but model.num_classes=1000; set model.num_classes=3"):
        build_dataset(cfg)


@pytest.mark.parametrize("resize", ["tf-bilinear", "pil-bicubic"])
def test_hflip_flips_half_the_time(tmp_path: Path, resize: str):
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white
    (tmp_path / "c").mkdir()
    Image.fromarray(image).save(tmp_path / "c" / "a.png")
    ds = ImageFolderDataset(tmp_path, resolution=32, hflip=True, resize=resize)
    torch.manual_seed(0)

    def left(x: torch.Tensor) -> float:  # mean of the left quarter in [-1, 1] (float items) or from uint8 items
        v = x[:, :, :8].float().mean().item()
        return v if x.is_floating_point() else v / 127.5 - 1

    lefts = [left(ds[0][0]) for _ in range(40)]
    assert 5 < sum(v > 0 for v in lefts) < 35  # white on the left (not flipped) some of the time
    assert all(abs(v) > 0.9 for v in lefts)  # and always either flipped or not


# ------------------------------------------------------------------------------------------------------------------
# The official float path and the index file (issue 11 item 7: built once, in parallel, read by later runs)
# ------------------------------------------------------------------------------------------------------------------


def test_tf_bilinear_items_are_unquantised_floats(folder: Path):
    noise = np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / CLASSES[0] / "noise.png")
    ds = ImageFolderDataset(folder, resolution=32, resize="tf-bilinear")
    i = next(k for k, (path, _) in enumerate(ds.samples) if path.endswith("noise.png"))
    raw = ds.get_float(i)
    assert raw.dtype == np.float32 and raw.shape == (32, 32, 3) and not np.array_equal(raw, np.round(raw))
    x, _ = ds[i]
    torch.testing.assert_close(x, torch.from_numpy(raw).permute(2, 0, 1) * (2 / 255) - 1)
    assert np.array_equal(ds.get_uint8(i), np.clip(np.rint(raw), 0, 255).astype(np.uint8))
    pil = ImageFolderDataset(folder, resolution=32, resize="pil-bicubic")
    assert np.array_equal(pil.get_float(1), pil.get_uint8(1).astype(np.float32))


def test_index_is_written_beside_the_data_and_read_by_later_runs(folder: Path, monkeypatch):
    import hamgan.data.imagenet as imagenet

    first = ImageFolderDataset(folder, resolution=32)
    assert first.index_file == folder / ".hamgan-index.json" and first.index_file.is_file()

    def no_header_reads(path):
        raise AssertionError("a cached index must not open the images")

    monkeypatch.setattr(imagenet, "header_error", no_header_reads)
    again = ImageFolderDataset(folder, resolution=32)
    assert again.samples == first.samples and again.classes == first.classes
    # a file added to a class folder changes its modification time: the index is rebuilt
    monkeypatch.undo()
    Image.new("RGB", (40, 40)).save(folder / CLASSES[2] / "new.JPEG")
    assert len(ImageFolderDataset(folder, resolution=32)) == 13


def test_unreadable_files_are_reported_again_from_the_index(folder: Path):
    (folder / CLASSES[1] / "garbage.JPEG").write_bytes(b"not an image" * 10)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) of 13"):
        ImageFolderDataset(folder, resolution=32)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) of 13.*garbage.JPEG"):
        ds = ImageFolderDataset(folder, resolution=32)
    assert ds.num_skipped == 1 and len(ds) == 12


def test_index_in_a_given_folder_and_the_trainer_api(folder: Path, tmp_path: Path):
    from hamgan.data.imagenet import index_path, load_or_build_index

    cache = tmp_path / "run"
    index = load_or_build_index(folder.parent, "train", cache_dir=cache, workers=0)  # rank 0, before a barrier
    assert index.cache == index_path(folder.parent, "train", cache) and index.cache.parent == cache
    assert index.classes == CLASSES and len(index.samples) == 12 and not (folder / ".hamgan-index.json").exists()
    cfg = load_config(None, [f"data.root={folder.parent}", "data.name=imagenet", "model.num_classes=3",
                             "model.resolution=32"])
    ds = build_dataset(cfg, index_cache=str(cache))  # every rank: reads the file
    assert ds.index_file == index.cache and ds.samples == index.samples


def test_unwritable_data_folder_falls_back_to_the_user_cache(folder: Path, tmp_path: Path, monkeypatch):
    import hamgan.data.imagenet as imagenet

    monkeypatch.setattr(imagenet, "USER_INDEX_CACHE", tmp_path / "user-cache")
    replace = imagenet.os.replace

    def read_only_data(src, dst):  # as root, permissions do not stop writes: refuse the data folder by hand
        if Path(dst).parent == folder:
            raise PermissionError(f"read-only: {dst}")
        return replace(src, dst)

    monkeypatch.setattr(imagenet.os, "replace", read_only_data)
    ds = ImageFolderDataset(folder, resolution=32)
    assert not (folder / ".hamgan-index.json").exists() and not list(folder.glob(".*tmp*"))
    assert ds.index_file is not None and ds.index_file.parent == tmp_path / "user-cache"
    assert ImageFolderDataset(folder, resolution=32).index_file == ds.index_file


@pytest.mark.slow
def test_headers_are_checked_in_parallel_processes(folder: Path):
    from hamgan.data.imagenet import _check_headers

    (folder / CLASSES[0] / "bad.JPEG").write_bytes(b"x" * 50)
    paths = sorted(str(p) for p in folder.rglob("*.JPEG"))
    serial = _check_headers(paths, workers=0)
    assert _check_headers(paths, workers=2, chunk=4) == serial
    assert sum(e is not None for e in serial) == 1


# ------------------------------------------------------------------------------------------------------------------
# The index for a multi-node run (issue 11): the run folder as a shared cache; every rank reads rank 0's file
# ------------------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def make_read_only(folder: Path, monkeypatch) -> None:
    """chmod a-w ``folder``, and (as root ignores permissions) refuse writes into it by hand."""
    import hamgan.data.imagenet as imagenet

    folder.chmod(0o555)
    replace = imagenet.os.replace

    def refuse(src, dst):
        if Path(dst).parent == folder:
            raise PermissionError(f"read-only: {dst}")
        return replace(src, dst)

    monkeypatch.setattr(imagenet.os, "replace", refuse)


@pytest.fixture
def count_builds(monkeypatch) -> list[str]:
    """The folders whose index is built (scanned and every header opened) during the test."""
    import hamgan.data.imagenet as imagenet

    builds: list[str] = []
    scan = imagenet.scan_image_folder
    monkeypatch.setattr(imagenet, "scan_image_folder", lambda folder: builds.append(str(folder)) or scan(folder))
    return builds


def test_a_later_run_reads_the_index_beside_the_data_not_its_run_folder(folder, tmp_path, monkeypatch, count_builds):
    import hamgan.data.imagenet as imagenet
    from hamgan.data.imagenet import load_or_build_index

    monkeypatch.setattr(imagenet, "USER_INDEX_CACHE", tmp_path / "user-cache")
    first = load_or_build_index(folder.parent, "train", shared_dir=tmp_path / "run1", workers=0)
    assert first.cache == folder / ".hamgan-index.json" and not (tmp_path / "run1").exists()
    later = load_or_build_index(folder.parent, "train", shared_dir=tmp_path / "run2", workers=0)
    assert later.cache == first.cache and later.samples == first.samples
    assert count_builds == [str(folder)] and not (tmp_path / "run2").exists()


def test_read_only_data_puts_the_index_in_the_run_folder_and_the_user_cache(folder, tmp_path, monkeypatch,
                                                                             count_builds):
    """The run folder is shared by all ranks; the user-cache copy serves later runs of this host in other run
    folders."""
    import hamgan.data.imagenet as imagenet
    from hamgan.data.imagenet import load_or_build_index, shared_index_path

    monkeypatch.setattr(imagenet, "USER_INDEX_CACHE", tmp_path / "user-cache")
    make_read_only(folder, monkeypatch)
    try:
        index = load_or_build_index(folder.parent, "train", shared_dir=tmp_path / "run1", workers=0)
        assert index.cache == shared_index_path(folder.parent, "train", tmp_path / "run1")
        assert index.cache == tmp_path / "run1" / "imagefolder-index-train.json" and index.cache.is_file()
        assert not (folder / ".hamgan-index.json").exists()
        assert len(list((tmp_path / "user-cache").glob("*.json"))) == 1
        resumed = load_or_build_index(folder.parent, "train", shared_dir=tmp_path / "run1", workers=0)
        other_run = load_or_build_index(folder.parent, "train", shared_dir=tmp_path / "run2", workers=0)
        assert resumed.cache == index.cache and other_run.cache.parent == tmp_path / "user-cache"
        assert resumed.samples == other_run.samples == index.samples
        assert count_builds == [str(folder)]  # built once
    finally:
        folder.chmod(0o755)


def test_an_index_file_is_valid_wherever_the_data_is_mounted(folder, tmp_path, count_builds):
    """Another node mounts the data at another path (here: a copy with the same modification times): the index
    file rank 0 wrote describes it; a file of other data is refused with a warning naming it, and built here."""
    first = ImageFolderDataset(folder, resolution=32)
    mounted = tmp_path / "elsewhere" / "train"
    shutil.copytree(folder, mounted)  # copies the modification times too
    (mounted / ".hamgan-index.json").unlink()
    other = ImageFolderDataset(mounted, resolution=32, index_file=str(first.index_file))
    assert other.index_file == first.index_file and count_builds == [str(folder)]
    assert [(Path(p).relative_to(mounted), y) for p, y in other.samples] == \
        [(Path(p).relative_to(folder), y) for p, y in first.samples]
    Image.new("RGB", (40, 40)).save(mounted / CLASSES[0] / "extra.JPEG")  # now other data
    expected = f"the index file '{first.index_file}' does not describe '{mounted}' on this host: class folders"
    with pytest.warns(UserWarning, match=re.escape(expected) + ".* changed since it was written"):
        rebuilt = ImageFolderDataset(mounted, resolution=32, index_file=str(first.index_file))
    assert len(rebuilt) == 13 and rebuilt.index_file == mounted / ".hamgan-index.json"
    assert count_builds == [str(folder), str(mounted)]


# Two ranks build the training data set of a read-only ImageFolder that rank 1 sees at another path, each rank with
# its own (host-local) user cache: rank 0 builds the index into the run folder, rank 1 reads that file.
INDEX_WORKER = """
import json, os, sys
from pathlib import Path
import hamgan.data.imagenet as imagenet
from hamgan import distributed
from hamgan.config import load_config
from hamgan.train.stream import build_training_dataset

roots, run_dir, results = sys.argv[1].split(","), Path(sys.argv[2]), Path(sys.argv[3])
info = distributed.setup("cpu")
r = info.rank
imagenet.USER_INDEX_CACHE = results / f"home{r}"  # each host its own ~/.cache
builds = []
scan, replace = imagenet.scan_image_folder, imagenet.os.replace
imagenet.scan_image_folder = lambda folder: builds.append(str(folder)) or scan(folder)
def read_only(src, dst):  # as root, permissions do not stop writes
    if Path(dst).parent.name == "train" and Path(dst).parent.parent.name in ("data", "mounted"):
        raise PermissionError(f"read-only: {dst}")
    return replace(src, dst)
imagenet.os.replace = read_only
cfg = load_config(None, [f"data.root={roots[r]}", "data.name=imagenet", "model.num_classes=3", "model.resolution=32",
                         "data.resize=pil-bicubic"])
ds = build_training_dataset(cfg, info, run_dir)
(results / f"rank{r}.json").write_text(json.dumps({"builds": builds, "index_file": str(ds.index_file),
                                                   "samples": ds.samples}))
distributed.cleanup()
"""


@pytest.mark.slow
def test_two_ranks_on_other_hosts_read_the_index_rank_0_wrote_to_the_run_folder(tmp_path):
    """First run: rank 0 builds the index into the run folder (and its host's cache). A second run in a new run
    folder: rank 0 finds its host's cache copy, which rank 1's host cannot see, so it shares a copy in the new run
    folder; rank 1 again builds nothing (a regression: it got the path of rank 0's ~/.cache file and rebuilt)."""
    data = write_folder(tmp_path / "data" / "train").parent
    mounted = tmp_path / "mounted"
    shutil.copytree(data, mounted)  # rank 1's node mounts the data at another path
    results = tmp_path / "results"
    results.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(INDEX_WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(run_dir: Path) -> tuple[dict, dict, str]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
               f"{data},{mounted}", str(run_dir), str(results)]
        for folder in (data / "train", mounted / "train"):
            folder.chmod(0o555)
        try:
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
        finally:
            for folder in (data / "train", mounted / "train"):
                folder.chmod(0o755)
        assert result.returncode == 0, result.stderr[-3000:]
        r0, r1 = (json.loads((results / f"rank{r}.json").read_text()) for r in range(2))
        return r0, r1, result.stderr

    r0, r1, stderr = run(tmp_path / "run1")
    shared = tmp_path / "run1" / "imagefolder-index-train.json"
    assert r0["builds"] == [str(data / "train")] and r1["builds"] == []  # built once, by rank 0
    assert r0["index_file"] == r1["index_file"] == str(shared)
    assert not (results / "home1").exists()  # rank 1 wrote nothing to its host's cache
    assert len(list((results / "home0").glob("*.json"))) == 1  # rank 0's copy for later runs of its host
    assert [(Path(p).relative_to(mounted), y) for p, y in r1["samples"]] == \
        [(Path(p).relative_to(data), y) for p, y in r0["samples"]]
    assert not (data / "train" / ".hamgan-index.json").exists()
    assert "does not describe" not in stderr

    r0, r1, stderr = run(tmp_path / "run2")  # a new run folder: rank 0 reads its host cache, shares a copy
    assert r0["builds"] == [] and r1["builds"] == []
    assert r0["index_file"] == r1["index_file"] == str(tmp_path / "run2" / "imagefolder-index-train.json")
    assert not (results / "home1").exists() and "does not describe" not in stderr
