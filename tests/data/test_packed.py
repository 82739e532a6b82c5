"""Packing an image folder into a memory-mapped array: same pixels, atomic, corrupt files skipped."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hamgan.data.packed as packed
from hamgan.config import load_config
from hamgan.data import DatasetError, build_dataset
from hamgan.data.imagenet import ImageFolderDataset
from hamgan.data.packed import PackedDataset, pack_image_folder

ROOT = Path(__file__).resolve().parents[2]


def write_folder(root: Path) -> Path:
    """root/train/<class>/*.JPEG: 3 classes x 4 noisy images of odd sizes."""
    rng = np.random.default_rng(0)
    for c in ["b", "a", "c"]:
        (root / "train" / c).mkdir(parents=True)
        for k, (w, h) in enumerate([(150, 90), (90, 200), (64, 64), (301, 157)]):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "train" / c / f"{k}.JPEG")
    return root


@pytest.mark.parametrize("workers, resize", [(0, "pil-bicubic"), (2, "tf-bilinear")])
def test_packed_equals_folder_pixel_for_pixel(tmp_path: Path, workers: int, resize: str):
    root = write_folder(tmp_path / "in")
    meta = pack_image_folder(root, tmp_path / "out", resolution=64, workers=workers, chunk=5, progress=False,
                             resize=resize)
    assert meta["count"] == 12 and meta["classes"] == ["a", "b", "c"] and meta["split"] == "train"
    assert meta["resize"] == resize and meta["resolution"] == 64
    folder = ImageFolderDataset(root, resolution=64, resize=resize)
    ds = PackedDataset(tmp_path / "out", resolution=64, split="train", resize=resize)
    assert len(ds) == len(folder) == 12 and ds.classes == folder.classes
    assert isinstance(ds.images, np.memmap)
    for i in range(12):
        assert np.array_equal(ds.get_uint8(i), folder.get_uint8(i))
        x, y = ds[i]
        assert y == folder[i][1] == i // 4
        assert x.shape == (3, 64, 64)
        if resize == "tf-bilinear":  # the folder keeps the official floats, the pack rounds them to uint8
            assert x.dtype == torch.uint8 and folder[i][0].dtype == torch.float32
            assert (x.float() / 127.5 - 1 - folder[i][0]).abs().max() <= 0.5 / 127.5 + 1e-6
        else:
            assert (x == folder[i][0]).all()


def test_pickles_without_the_pixels(tmp_path: Path):
    pack_image_folder(write_folder(tmp_path / "in"), tmp_path / "out", resolution=64, workers=0, progress=False)
    ds = PackedDataset(tmp_path / "out")
    blob = pickle.dumps(ds)
    assert len(blob) < 12 * 64 * 64 * 3 // 4
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap) and np.array_equal(copy.get_uint8(5), ds.get_uint8(5))


def test_corrupt_images_are_skipped_with_one_warning(tmp_path: Path):
    root = write_folder(tmp_path / "in")
    (root / "train" / "a" / "garbage.JPEG").write_bytes(b"\x00garbage" * 100)
    truncated = root / "train" / "c" / "1.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:2000])  # header intact: fails only when decoded
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\) of 13") as record:
        meta = pack_image_folder(root, tmp_path / "out", resolution=32, workers=2, progress=False)
    # one warning of ours; Python >= 3.12 adds DeprecationWarnings about fork() in a multi-threaded process
    ours = [w for w in record if issubclass(w.category, UserWarning)]
    assert len(ours) == 1 and "garbage.JPEG" in str(ours[0].message)
    assert meta["count"] == 11 and meta["num_skipped"] == 2
    ds = PackedDataset(tmp_path / "out")
    assert ds.images.shape == (11, 32, 32, 3)
    assert np.bincount(ds.labels).tolist() == [4, 4, 3]
    # the rows are the readable images in order; the folder data set finds only the garbage file up front
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) of 13"):
        folder = ImageFolderDataset(root, resolution=32)
    assert folder.samples[9][0] == str(truncated)
    readable = [i for i in range(12) if i != 9]
    assert all(np.array_equal(ds.get_uint8(row), folder.get_uint8(i)) for row, i in enumerate(readable))


def test_interrupted_pack_leaves_nothing(tmp_path: Path, monkeypatch):
    root = write_folder(tmp_path / "in")
    calls = []

    def crash(path, resolution, method):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return np.zeros((resolution, resolution, 3), np.uint8)

    monkeypatch.setattr(packed, "load_image", crash)
    with pytest.raises(KeyboardInterrupt):
        pack_image_folder(root, tmp_path / "out", resolution=32, workers=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no temporary directory


def test_existing_output_needs_overwrite(tmp_path: Path):
    root = write_folder(tmp_path / "in")
    pack_image_folder(root, tmp_path / "out", resolution=32, workers=0, progress=False)
    with pytest.raises(DatasetError, match="already exists.*--overwrite"):
        pack_image_folder(root, tmp_path / "out", resolution=32, workers=0, progress=False)
    pack_image_folder(root, tmp_path / "out", resolution=16, workers=0, overwrite=True, progress=False)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["resolution"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_build_dataset_selects_packed_and_checks_it(tmp_path: Path):
    root = write_folder(tmp_path / "in")
    pack_image_folder(root, tmp_path / "out", resolution=32, workers=0, progress=False)
    base = ["data.name=imagenet", f"data.packed={tmp_path / 'out'}", "model.num_classes=3"]
    ds = build_dataset(load_config(None, base + ["model.resolution=32"]))
    assert isinstance(ds, PackedDataset) and ds[0][0].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="packed at resolution 32 but model.resolution=128"):
        build_dataset(load_config(None, base))
    with pytest.raises(DatasetError, match="split 'train' but data.split='val'"):
        build_dataset(load_config(None, base + ["model.resolution=32", "data.split=val"]))
    with pytest.raises(DatasetError, match="not a packed data set"):
        PackedDataset(tmp_path / "in")


def test_reading_a_pack_with_another_resize_method_names_both(tmp_path: Path):
    root = write_folder(tmp_path / "in")
    pack_image_folder(root, tmp_path / "out", resolution=32, workers=0, progress=False, resize="pil-bicubic")
    base = ["data.name=imagenet", f"data.packed={tmp_path / 'out'}", "model.num_classes=3", "model.resolution=32"]
    with pytest.raises(DatasetError, match="packed with resize method pil-bicubic but data.resize=tf-bilinear; "
                                           "set data.resize=pil-bicubic or pack again with --resize tf-bilinear"):
        build_dataset(load_config(None, base))
    assert len(build_dataset(load_config(None, base + ["data.resize=pil-bicubic"]))) == 12
    # a pack made before the method was recorded is pil-bicubic, the only method then
    meta_path = tmp_path / "out" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["resize"]
    meta_path.write_text(json.dumps(meta))
    assert len(PackedDataset(tmp_path / "out", resize="pil-bicubic")) == 12
    with pytest.raises(DatasetError, match="resize method pil-bicubic but data.resize=pil-lanczos"):
        PackedDataset(tmp_path / "out", resize="pil-lanczos")


def test_pack_script(tmp_path: Path, capsys):
    spec = importlib.util.spec_from_file_location("pack_imagenet", ROOT / "scripts" / "pack_imagenet.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = write_folder(tmp_path / "in")
    script.main([str(root), "--out", str(tmp_path / "out"), "--resolution", "32", "--workers", "0"])
    assert "packed 12 images of 3 classes at 32x32 (tf-bilinear)" in capsys.readouterr().out
    script.main([str(root), "--out", str(tmp_path / "out2"), "--resolution", "16", "--workers", "0",
                 "--resize", "pil-bilinear"])
    assert json.loads((tmp_path / "out2" / "meta.json").read_text())["resize"] == "pil-bilinear"
    assert len(PackedDataset(tmp_path / "out")) == 12
    with pytest.raises(SystemExit, match="error: .*already exists"):
        script.main([str(root), "--out", str(tmp_path / "out")])
