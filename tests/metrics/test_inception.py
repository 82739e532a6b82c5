import urllib.error

import pytest
import torch
from pytorch_fid import inception as pfid

from hamgan.metrics.inception import WEIGHTS_NAME, InceptionFeatures, InceptionWeightsError, hub_checkpoint_dir


def test_hub_checkpoint_dir_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert hub_checkpoint_dir() == tmp_path / "hub" / "checkpoints"


def test_no_weights_and_no_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(pfid, "load_state_dict_from_url", offline)
    with pytest.raises(InceptionWeightsError) as err:
        InceptionFeatures()
    message = str(err.value)
    assert WEIGHTS_NAME in message
    assert str(tmp_path / "hub" / "checkpoints" / WEIGHTS_NAME) in message
    assert "--inception-weights" in message


def test_missing_or_wrong_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(InceptionWeightsError, match="no file at --inception-weights"):
        InceptionFeatures(tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InceptionWeightsError, match="does not hold the FID Inception weights"):
        InceptionFeatures(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(InceptionWeightsError, match="not a readable weights file"):
        InceptionFeatures(garbage)


def test_bad_input_is_a_clear_error_and_float_equals_uint8():
    net = InceptionFeatures.__new__(InceptionFeatures)  # preprocess needs no weights
    torch.nn.Module.__init__(net)
    net.resize = "torch"
    with pytest.raises(ValueError, match=r"expected uint8 images \(or float in \[0, 255\]\) of shape"):
        InceptionFeatures.preprocess(net, torch.zeros(2, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"of shape \(B, 3, H, W\)"):
        InceptionFeatures.preprocess(net, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    u8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(net.preprocess(u8), net.preprocess(u8.float()))
    net.resize = "tf1"
    assert net.preprocess(u8).shape == (2, 3, 299, 299)
    assert not torch.allclose(net.preprocess(u8), InceptionFeatures.preprocess(
        type("N", (), {"resize": "torch"})(), u8))


def test_logits_leave_out_the_bias(fid_weights):
    net = InceptionFeatures()
    features, logits = net(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    torch.testing.assert_close(logits, features @ net.net.fc.weight.T)
    assert net.logits_bias.shape == (1008,)
    with pytest.raises(ValueError, match="resize must be one of"):
        InceptionFeatures(fid_weights, resize="antialias")
