"""Named evaluation protocols: how images reach the Inception and how many are drawn.

=============  =========================================================================================================
protocol       what it fixes
=============  =========================================================================================================
pytorch-fid    the default. Images quantised to uint8 exactly as a PNG stores them; pytorch-fid's resize to 299
               (``F.interpolate`` bilinear, align_corners=False); 50,000 samples; generator BN: ``--bn`` (auto:
               standing statistics for the EMA generator). Reference: whatever is given (the ImageNet convention is
               the training set).
hamgan-tf      the official HamGAN (TF-GAN SAGAN) evaluation, to set a number beside the paper's 16.05 / 14.77 /
               18.28: images kept in float (no quantisation); TF1 ``tf.compat.v1.image.resize`` bilinear to 299
               (align_corners=False, half_pixel_centers=False, :mod:`hamgan.metrics.resize`); 50,176 samples
               (49 x 1024) generated in batches of 1024; generator BN in ``batch`` mode; reference: the ImageNet
               **validation** split preprocessed as the official pipeline (largest centre square, bilinear resize
               without antialiasing, kept in float: a data set config with the recipe's ``data.resize`` option and
               ``data.split=val``), read through ``get_float``.
=============  =========================================================================================================

Both use pytorch-fid's port of the 2015-12-05 Inception graph (TF-GAN's ``run_inception`` runs the same graph).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    name: str
    quantize: bool  # uint8 as PNG before the Inception
    resize: str  # InceptionFeatures resize: "torch" or "tf1"
    n: int  # generated samples by default
    bn: str | None  # generator BN mode it fixes (None: --bn decides)
    batch_size: int | None  # generator batch it fixes (None: --batch-size); matters with batch-mode BN

    def describe(self) -> str:
        return (f"{self.name} ({'uint8' if self.quantize else 'float'} images, {self.resize} bilinear resize to "
                f"299{', generator BN ' + self.bn if self.bn else ''})")


PROTOCOLS = {
    "pytorch-fid": Protocol("pytorch-fid", quantize=True, resize="torch", n=50_000, bn=None, batch_size=None),
    "hamgan-tf": Protocol("hamgan-tf", quantize=False, resize="tf1", n=50_176, bn="batch", batch_size=1024),
}
DEFAULT_PROTOCOL = "pytorch-fid"


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{name}'; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
