"""What evaluation statistics are computed from: a source (statistics file, image folder, data set config or
checkpoint) and the options every evaluation shares.

    options = EvalOptions(n=5000, batch_size=50, device="cuda")        # protocol pytorch-fid, EMA G, BN auto
    result = compute("runs/x", options, load_inception(options))    # Result: .ref (mu, sigma, n), .ext, .bn, ...
    ref = compute("ref.npz", options, None).ref                     # a statistics file needs no Inception

``hamgan-eval`` (:mod:`hamgan.evaluate`) builds one :class:`EvalOptions` from its command line and calls these.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hamgan.bn_modes import SN_REFRESH_EMA, BNMode, resolve_mode
from hamgan.checkpoint import load_generator_ema
from hamgan.config import load_config
from hamgan.data import build_dataset
from hamgan.metrics.features import (
    Extraction,
    Reference,
    dataset_statistics,
    default_workers,
    folder_statistics,
    generator_statistics,
    list_images,
    load_reference,
)
from hamgan.metrics.inception import InceptionFeatures
from hamgan.metrics.protocol import DEFAULT_PROTOCOL, Protocol, get_protocol
from hamgan.metrics.stats import StatsError, warn_if_biased

DEFAULT_BATCH_SIZE = 50  # images per batch unless given (or fixed by the protocol for a generator)


@dataclass
class Source:
    """A statistics source.

    kind: "npz" (mu/sigma or features file), "folder" (image files), "checkpoint" (samples of G) or "config".
    """

    kind: str
    path: Path
    overrides: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return str(self.path) + "".join(f" {o}" for o in self.overrides)


def parse_source(text: str | Path, overrides: Sequence[str] = ()) -> Source:
    """Classify a path: ``.npz``, ``.yaml``/``.yml`` config, image folder, checkpoint file or run folder."""
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return Source("npz", path)
    if suffix in (".yaml", ".yml"):
        return Source("config", path, list(overrides))
    if overrides:
        raise ValueError(f"config overrides {list(overrides)} only apply to a data set config source (.yaml), "
                         f"not to '{path}'")
    if not path.exists():
        raise ValueError(f"'{path}' does not exist; give an image folder, a .npz statistics file, a checkpoint "
                         f"(.pt or run folder) or a data set config (.yaml)")
    if path.is_dir():
        try:
            list_images(path)
            return Source("folder", path)
        except StatsError:
            if any(path.glob("ckpt-*.pt")):
                return Source("checkpoint", path)
            raise
    return Source("checkpoint", path)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class EvalOptions:
    """How sources are evaluated: the options every ``hamgan-eval`` command shares.

    Attributes:
        protocol: a :class:`~hamgan.metrics.protocol.Protocol` or its name (:data:`PROTOCOLS`).
        n: samples of a generator (None: the protocol's) or images of a data set config (None: all).
        batch_size: images per batch (None: 50; for a generator the protocol's batch when it fixes one).
        seed: seed of the latents and labels (and of data set subsets).
        device: where the Inception (and the generator) run.
        num_workers: image decoding processes of a folder or data set (0: in the main process).
        truncation: latent truncation T > 0 (None: none).
        ema: sample the EMA generator (when the checkpoint has one) or the raw G.
        bn: a generator's batch-norm statistics: a :class:`~hamgan.bn_modes.BNMode`, a mode name, or "auto" (the
            protocol's mode, else standing for the EMA generator and running for the raw G).
        bn_batches, bn_batch_size, sn_refresh: for a mode given by name or "auto": standing statistics' batches
            and images per batch, spectral-norm power iterations (None: 20 for the EMA generator, 0 for the raw G).
        inception_weights: the FID Inception weights file (None: the torch hub cache).
    """

    protocol: Protocol | str = DEFAULT_PROTOCOL
    n: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = field(default_factory=_default_device)
    num_workers: int = field(default_factory=default_workers)
    truncation: float | None = None
    ema: bool = True
    bn: BNMode | str = "auto"
    bn_batches: int = 16
    bn_batch_size: int = 100
    sn_refresh: int | None = None
    inception_weights: str | Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.protocol, str):
            object.__setattr__(self, "protocol", get_protocol(self.protocol))
        for name in ("n", "batch_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.truncation is not None and self.truncation <= 0:
            raise ValueError(f"truncation must be > 0, got {self.truncation}")
        if isinstance(self.bn, str):
            if self.bn != "auto":
                resolve_mode(self.bn, ema=True)  # checks the name
            BNMode(batches=self.bn_batches, batch_size=self.bn_batch_size, sn_iterations=self.sn_refresh or 0)

    def bn_mode(self, ema: bool) -> BNMode:
        """The batch-norm statistics of an EMA (``ema``) or raw generator under these options."""
        if isinstance(self.bn, BNMode):
            return self.bn
        mode = self.protocol.bn if self.bn == "auto" and self.protocol.bn else resolve_mode(self.bn, ema)
        sn = self.sn_refresh if self.sn_refresh is not None else (SN_REFRESH_EMA if ema else 0)
        return BNMode(mode, self.bn_batches, self.bn_batch_size, sn)

    def generator_batch_size(self) -> int:
        """Images per generator batch: ``batch_size`` when given, else the protocol's, else 50."""
        if self.batch_size is not None:
            return self.batch_size
        return self.protocol.batch_size if self.protocol.batch_size is not None else DEFAULT_BATCH_SIZE


@dataclass
class Result:
    """Statistics of a source (``ext`` None for a .npz) and how they were made."""

    ref: Reference
    ext: Extraction | None = None
    step: int | None = None
    bn: BNMode | None = None
    cfg: object = None
    G: torch.nn.Module | None = None

    def describe(self) -> dict:
        out = {"source": self.ref.source, "n": self.ref.n, "protocol": self.ref.protocol}
        if self.bn is not None:
            out.update(step=self.step, **self.bn.as_dict())
        return out


def compute(source: Source | str | Path, options: EvalOptions, inception: InceptionFeatures | None,
            keep_logits: bool = False, keep_features: bool = False) -> Result:
    """Statistics of ``source`` (a :class:`Source`, or a path classified by :func:`parse_source`) under ``options``.

    ``inception`` may be None for a .npz source only. A checkpoint's step, G, BN mode and sample count are printed
    to stderr.
    """
    source = source if isinstance(source, Source) else parse_source(source)
    protocol: Protocol = options.protocol
    if source.kind == "npz":
        ref = load_reference(source.path)
        if ref.protocol is not None and ref.protocol != protocol.name:
            raise StatsError(f"'{source.path}' was computed under protocol {ref.protocol}, this evaluation uses "
                             f"{protocol.name}; recompute it with hamgan-eval stats ... --protocol {protocol.name}")
        if ref.protocol is None and protocol.name != DEFAULT_PROTOCOL:
            warnings.warn(f"'{source.path}' does not say which protocol made it; it must be {protocol.name}'s "
                          f"(hamgan-eval stats --protocol {protocol.name})", stacklevel=2)
        return Result(ref)
    if inception is None:
        raise ValueError(f"'{source}' is a {source.kind} source: its statistics need the Inception network "
                         "(load_inception(options)); only a .npz source is read without it")
    common = dict(keep_logits=keep_logits, keep_features=keep_features)
    batch_size = options.batch_size if options.batch_size is not None else DEFAULT_BATCH_SIZE
    if source.kind == "folder":
        ext = folder_statistics(source.path, inception, batch_size, options.device, options.num_workers, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext)
    elif source.kind == "config":
        cfg = load_config(source.path, source.overrides)
        dataset = build_dataset(cfg)
        ext = dataset_statistics(dataset, inception, options.n, batch_size, options.device, options.num_workers,
                                 options.seed, quantize=protocol.quantize, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext)
    else:
        G, cfg, step, is_ema = load_generator_ema(source.path, options.ema, options.device)
        bn = options.bn_mode(is_ema)
        n = options.n if options.n is not None else protocol.n
        print(f"{source}: step {step}, {'EMA' if is_ema else 'raw'} G, BN {bn.describe()}, {n} samples",
              file=sys.stderr)
        ext = generator_statistics(G, inception, n, options.generator_batch_size(), options.truncation, options.seed,
                                   options.device, bn=bn, quantize=protocol.quantize, **common)
        result = Result(Reference.from_extraction(ext, protocol.name, str(source)), ext, step, bn, cfg, G)
    warn_if_biased(result.ref.n)
    return result


def load_inception(options: EvalOptions) -> InceptionFeatures:
    """The FID Inception of ``options`` (its weights, the protocol's resize) on ``options.device``."""
    return InceptionFeatures(options.inception_weights, resize=options.protocol.resize).to(options.device)


def stats_provenance(result: Result) -> dict[str, str | int]:
    """What a statistics file stores besides mu/sigma about how it was made: the source, and for samples of a
    generator its step and batch-norm mode (``bn``: the JSON of :meth:`BNMode.as_dict`)."""
    made: dict[str, str | int] = {"source": result.ref.source}
    if result.bn is not None:
        made.update(step=result.step, bn=json.dumps(result.bn.as_dict()))
    return made
