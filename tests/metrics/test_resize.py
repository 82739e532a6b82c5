"""hamgan.metrics.resize: TF1 legacy bilinear resize, checked against arrays computed once with TensorFlow."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hamgan.metrics.resize import tf1_resize_bilinear

EXPECTED = Path(__file__).parent / "data" / "tf1_resize_expected.npz"  # scripts/make_tf_resize_expected.py


def cases() -> list[str]:
    with np.load(EXPECTED) as f:
        return sorted({k.split("/")[0] for k in f.files if "/" in k})


@pytest.mark.parametrize("case", cases())
def test_equals_tensorflow_compat_v1_resize_bilinear(case):
    with np.load(EXPECTED) as f:
        x, expected = f[f"{case}/input"], f[f"{case}/output"]
    ours = tf1_resize_bilinear(torch.from_numpy(x).permute(0, 3, 1, 2), expected.shape[1:3])
    np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), expected, rtol=0, atol=1e-6)


def test_differs_from_pytorch_half_pixel_resize():
    with np.load(EXPECTED) as f:
        x, expected = f["up_128_to_299/input"], f["up_128_to_299/output"]
    torch_resize = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1).numpy()
    assert np.abs(torch_resize - expected).max() > 0.1  # the two conventions are not interchangeable


def test_hand_computed_upsampling():
    # 2 -> 4: source coordinates 0, 0.5, 1, 1.5 (scale 1/2, no half-pixel offset); the last clamps to pixel 1
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
    y = tf1_resize_bilinear(x, (2, 4))
    assert y.tolist() == [[[[0.0, 1.0, 2.0, 2.0], [4.0, 5.0, 6.0, 6.0]]]]
    with pytest.raises(ValueError, match=r"expected images \(B, C, H, W\)"):
        tf1_resize_bilinear(torch.zeros(3, 4, 4), 8)
