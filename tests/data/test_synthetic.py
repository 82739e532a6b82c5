"""The synthetic toy data set: deterministic, class-dependent, any shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hamgan.config import load_config
from hamgan.data import build_dataset
from hamgan.data.synthetic import synthetic


def test_deterministic():
    a, b = synthetic(64, 32, 3, 10), synthetic(64, 32, 3, 10)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, synthetic(64, 32, 3, 10, seed=1).images)


@pytest.mark.parametrize("resolution,channels,num_classes", [(32, 3, 10), (64, 1, 4), (128, 3, 13)])
def test_shapes_and_labels(resolution: int, channels: int, num_classes: int):
    cfg = load_config(None, ["data.name=synthetic", "data.synthetic_size=40", f"model.resolution={resolution}",
                             f"model.img_channels={channels}", f"model.num_classes={num_classes}"])
    ds = build_dataset(cfg)
    assert len(ds) == 40 and ds.num_classes == num_classes and len(ds.classes) == num_classes
    x, y = ds[num_classes + 1]
    assert x.shape == (channels, resolution, resolution) and y == 1
    assert x.dtype == torch.uint8 and x.min() < x.max()
    assert [ds[i][1] for i in range(40)] == [i % num_classes for i in range(40)]


def test_classes_differ():
    """Each class has its own colour: the brightest pixel colour identifies the class."""
    ds = synthetic(60, 32, 3, 12)
    colours = [tuple(ds.get_uint8(i).reshape(-1, 3).max(0)) for i in range(60)]
    assert len(set(colours)) == 12
    assert all(colours[i] == colours[i % 12] for i in range(60))
    grey = synthetic(20, 32, 1, 5)
    assert len({int(grey.get_uint8(i).max()) for i in range(5)}) == 5


def test_hflip_applies_to_items_only():
    ds = synthetic(12, 32, 3, 3, hflip=True)
    torch.manual_seed(0)
    base = torch.from_numpy(ds.get_uint8(5)).permute(2, 0, 1)
    outs = [ds[5][0] for _ in range(30)]
    flipped = sum(torch.equal(o, base.flip(-1)) for o in outs)
    assert 3 < flipped < 27 and all(torch.equal(o, base) or torch.equal(o, base.flip(-1)) for o in outs)
