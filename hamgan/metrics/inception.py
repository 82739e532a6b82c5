"""The FID Inception-v3 (TF graph of 2015-12-05, as ported by pytorch-fid): pool3 features and 1008-way logits.

The network and its weights are pytorch-fid's (``pytorch_fid.inception``); preprocessing is exactly that of
``pytorch_fid.inception.InceptionV3(resize_input=True, normalize_input=True)`` fed by ``ToTensor()``:

    uint8 (B, 3, H, W) -> float / 255 -> bilinear resize to 299x299 (align_corners=False) -> 2x - 1 -> network

so features of a uint8 batch equal pytorch-fid's features of the same images read from PNG files. Float images
(values in [0, 255], unquantised) take the same path. ``resize="tf1"`` resizes as TF1's legacy bilinear
``tf.compat.v1.image.resize`` instead (the official HamGAN evaluation, :mod:`hamgan.metrics.resize`).

Logits are returned **without** the classifier bias (``pool3 @ W^T``, 1008 classes), as the original Inception Score
code (improved-gan) and BigGAN's TF IS compute them; ``logits_bias`` is the bias that TF-GAN and StudioGAN add
(``hamgan-eval --is-bias``).

Weights are looked up like pytorch-fid does it, in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``, downloaded there on first use), or read from
an explicit file (``--inception-weights PATH``).

Speed on CPU (features unchanged to ~1e-5): batch norms folded into the convolutions, each convolution and its ReLU
one fused oneDNN call, the 1x1 convolution of each average-pool branch before the pool (they commute), one
concatenation per block, channels_last memory format (oneDNN's native layout), ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_fid import inception as pfid
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hamgan import tf32
from hamgan.metrics.resize import tf1_resize_bilinear

WEIGHTS_NAME = os.path.basename(pfid.FID_WEIGHTS_URL)  # pt_inception-2015-12-05-6726825d.pth
FEATURE_DIM = 2048
NUM_LOGITS = 1008
RESIZES = ("torch", "tf1")  # pytorch-fid's F.interpolate bilinear; TF1's legacy bilinear


class InceptionWeightsError(RuntimeError):
    """The FID Inception weights cannot be found, downloaded or read."""


def hub_checkpoint_dir() -> Path:
    """Where torch hub (and so pytorch-fid) keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _missing_weights_error(reason: str) -> InceptionWeightsError:
    target = hub_checkpoint_dir() / WEIGHTS_NAME
    return InceptionWeightsError(
        f"the FID Inception weights could not be loaded ({reason}). Put {WEIGHTS_NAME} at {target} "
        f"(the torch hub cache, set by $TORCH_HOME), or pass --inception-weights PATH. "
        f"Download: {pfid.FID_WEIGHTS_URL}"
    )


def load_inception_state_dict(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of pytorch-fid's FID Inception: from ``weights`` or from the torch hub cache (downloading)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise _missing_weights_error(f"no file at --inception-weights {path}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise _missing_weights_error(f"'{path}' is not a readable weights file: {type(e).__name__}: {e}") from None
    try:
        return pfid.load_state_dict_from_url(pfid.FID_WEIGHTS_URL, progress=True, map_location="cpu")
    except Exception as e:  # no network (URLError), truncated file, ...
        raise _missing_weights_error(f"{type(e).__name__}: {e}") from None


def fid_inception_v3(weights: str | Path | None = None) -> nn.Module:
    """pytorch-fid's FID Inception-v3 (``pytorch_fid.inception.fid_inception_v3``), weights from ``weights`` or hub.

    Same construction as pytorch-fid's function; rebuilt here only so the weights can come from a given file.
    """
    net = pfid._inception_v3(num_classes=NUM_LOGITS, aux_logits=False, weights=None)
    net.Mixed_5b = pfid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfid.FIDInceptionE_1(1280)
    net.Mixed_7c = pfid.FIDInceptionE_2(2048)
    state = load_inception_state_dict(weights)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise _missing_weights_error(f"the file does not hold the FID Inception weights: {str(e)[:200]}") from None
    return net.eval()


class ConvReLU(nn.Module):
    """A ``BasicConv2d`` with its batch norm folded in: ``relu(conv(x))``, one fused oneDNN call on the CPU."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.fused = hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if self.fused and x.device.type == "cpu" and x.dtype == torch.float32:
            return torch.ops.mkldnn._convolution_pointwise(x, c.weight, c.bias, c.padding, c.stride, c.dilation,
                                                           c.groups, "relu", [], "")
        return F.relu(c(x), inplace=True)


def _pool_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv1x1(avg_pool3x3(x)))`` computed as ``relu(avg_pool3x3(conv1x1(x)))``: both maps are linear and
    the pool (count_include_pad=False) averages with weights summing to 1, so they commute; the pool then runs on
    the conv's few output channels instead of all input channels."""
    pooled = F.avg_pool2d(block.branch_pool.conv(x), kernel_size=3, stride=1, padding=1, count_include_pad=False)
    return F.relu_(pooled)


def _forward_a(self, x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's FIDInceptionA.forward (same outputs), with the pool branch of :func:`_pool_branch`."""
    return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                      self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))), _pool_branch(self, x)], 1)


def _forward_c(self, x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's FIDInceptionC.forward, with the pool branch of :func:`_pool_branch`."""
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    d = x
    for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
        d = layer(d)
    return torch.cat([self.branch1x1(x), b7, d, _pool_branch(self, x)], 1)


def _forward_e(self, x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's FIDInceptionE_1 / E_2 forward (same channel order) with one concatenation instead of three;
    E_1's average-pool branch as :func:`_pool_branch` (E_2 max-pools, which does not commute with the conv)."""
    b3 = self.branch3x3_1(x)
    d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    if isinstance(self, pfid.FIDInceptionE_2):
        pool = self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
    else:
        pool = _pool_branch(self, x)
    return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3), self.branch3x3dbl_3a(d),
                      self.branch3x3dbl_3b(d), pool], 1)


_FAST_FORWARDS = ((pfid.FIDInceptionA, _forward_a), (pfid.FIDInceptionC, _forward_c),
                  (pfid.FIDInceptionE_1, _forward_e), (pfid.FIDInceptionE_2, _forward_e))


def _fast_forwards(net: nn.Module) -> None:
    """Give the FID Inception blocks the cheaper forwards above (after :func:`_fold_batch_norms`)."""
    for module in net.modules():
        for cls, forward in _FAST_FORWARDS:
            if type(module) is cls:
                module.forward = types.MethodType(forward, module)


def _fold_batch_norms(module: nn.Module) -> None:
    """Replace every eval-mode ``BasicConv2d`` (conv without bias -> BN -> ReLU) by a :class:`ConvReLU`."""
    for name, child in module.named_children():
        if hasattr(child, "conv") and isinstance(getattr(child, "bn", None), nn.BatchNorm2d):
            setattr(module, name, ConvReLU(fuse_conv_bn_eval(child.conv, child.bn)))
        else:
            _fold_batch_norms(child)


class InceptionFeatures(nn.Module):
    """Images -> (pool3 features (B, 2048), logits without bias (B, 1008)), both float32.

    Input: uint8 (B, 3, H, W) RGB, or float (B, 3, H, W) with values in [0, 255]; any H, W (resized to 299).

    Args:
        weights: the weights file (default: the torch hub cache, as pytorch-fid).
        fast: fold batch norms into convolutions and use channels-last (features unchanged to ~1e-5).
        resize: "torch" (pytorch-fid's bilinear, align_corners=False) or "tf1" (TF1 legacy bilinear).
    """

    def __init__(self, weights: str | Path | None = None, fast: bool = True, resize: str = "torch"):
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        self.net = fid_inception_v3(weights)
        self.fast = fast
        self.resize = resize
        if fast:
            _fold_batch_norms(self.net)
            _fast_forwards(self.net)
            self.net = self.net.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    @property
    def head_is_zero(self) -> bool:
        """True for weight files without the 1008-class head (IS is then always 1 and meaningless)."""
        fc = self.net.fc
        return bool((fc.weight == 0).all() and (fc.bias == 0).all())

    @property
    def logits_bias(self) -> torch.Tensor:
        """The classifier bias (1008,) float32 on the CPU: add it to the logits for TF-GAN / StudioGAN's IS."""
        return self.net.fc.bias.detach().float().cpu()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float [0, 255] (B, 3, H, W) -> float (B, 3, 299, 299) in [-1, 1], as pytorch-fid
        (ToTensor + InceptionV3) with ``resize="torch"``."""
        if images.dim() != 4 or images.shape[1] != 3 or not (images.dtype == torch.uint8
                                                             or images.is_floating_point()):
            raise ValueError(f"expected uint8 images (or float in [0, 255]) of shape (B, 3, H, W), got "
                             f"{images.dtype} {tuple(images.shape)}")
        x = images.float().div(255)
        if self.resize == "tf1":
            x = tf1_resize_bilinear(x, 299)
        else:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """In true float32: on CUDA without TF32 unless ``train.tf32=all`` (:mod:`hamgan.tf32`)."""
        return tf32.exact(self._features, images.device, images)

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(images)
        if self.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1,
                      n.Conv2d_4a_3x3, n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b,
                      n.Mixed_6c, n.Mixed_6d, n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):  # fmt: skip
            x = layer(x)
        features = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)  # pool3, (B, 2048)
        logits = features @ n.fc.weight.T  # (B, 1008), without the bias (improved-gan's IS); dropout: identity
        return features, logits
