"""Run configuration: typed dataclasses, loaded from YAML, overridden from the command line.

A config file is a nested mapping whose keys mirror the dataclasses below, e.g.::

    model:
      resolution: 128
      context: ham
      g: {channels: 64, context_res: 32, ham_rank: 32}
    train:
      batch_size: 256

Every key may be overridden with ``dotted.key=value`` (the value is parsed as YAML, so ``train.lr_g=2e-4``,
``model.context=attention`` and ``train.betas=[0.0,0.9]`` all work). An unknown key or a value of the wrong type
raises :class:`ConfigError`, naming the key and the nearest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# --------------------------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class HamConfig:
    """Settings of the Hamburger context block (shared by G and D; rank/dim are per network)."""

    kind: Literal["nmf", "vq", "cd"] = "nmf"
    steps: int = 6  # K, iterations of the matrix decomposition in training
    eval_steps: int | None = None  # K at eval time (None: same as steps)
    grad: Literal["one_step", "bptt"] = "one_step"
    version: Literal["v1", "v2"] = "v1"
    groups: int = 1  # S


@dataclass
class NetConfig:
    """Per-network settings (G or D)."""

    channels: int = 64  # gf_dim / df_dim: width multiplier of the architecture table
    context_res: int = 32  # resolution at which the context block sits
    ham_dim: int | None = None  # D of the Hamburger (None: the channels at context_res)
    ham_rank: int = 32  # R of the Hamburger


@dataclass
class ModelConfig:
    resolution: Literal[32, 64, 128] = 128
    img_channels: int = 3
    num_classes: int = 1000
    z_dim: int = 128
    context: Literal["ham", "attention", "none"] = "ham"
    init: Literal["orthogonal", "xavier", "normal"] = "orthogonal"
    ham: HamConfig = field(default_factory=HamConfig)
    g: NetConfig = field(default_factory=lambda: NetConfig(channels=64, context_res=32, ham_rank=32))
    d: NetConfig = field(default_factory=lambda: NetConfig(channels=64, context_res=32, ham_rank=16))


@dataclass
class DataConfig:
    name: Literal["fmnist", "cifar10", "imagenet", "synthetic"] = "fmnist"
    root: str | None = None  # data set location (None: the data set's default search path)
    packed: str | None = None  # path of a packed uint8 array file (ImageNet), see scripts/pack_imagenet.py
    split: str = "train"
    hflip: bool = False
    download: bool = True  # torchvision download when nothing is found locally
    num_workers: int = 2
    synthetic_size: int = 512  # number of images of the synthetic data set


@dataclass
class EMAConfig:
    enabled: bool = True
    start: int = 1000  # step at which EMA starts (before: copy of G)
    decay: float = 0.9999


@dataclass
class FIDConfig:
    every: int = 0  # steps between FID evaluations (0: never during training)
    n_samples: int = 5000
    ref_stats: str | None = None  # .npz with mu/sigma; None: computed once from the data set and cached in the run
    ref_n: int | None = 10000  # training images for the computed reference (None: all, the ImageNet convention)
    batch_size: int = 100
    use_ema: bool = True
    # batch-norm statistics of the sampled G, for the periodic FID and the sample grids (hamgan.bn_modes):
    bn: Literal["auto", "running", "standing", "batch"] = "auto"  # auto: standing for the EMA G, running for raw G
    bn_batches: int = 16  # standing: S batches accumulated
    bn_batch_size: int = 100  # standing: images per batch
    sn_refresh: int | None = None  # power iterations re-estimating SN u, v (None: 20 for the EMA G, 0 for raw G)


@dataclass
class TrainConfig:
    steps: int = 1_000_000  # total G steps
    batch_size: int = 256  # global batch size (split over all ranks)
    loss: Literal["hinge", "nonsaturating"] = "hinge"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.999])
    eps: float = 1e-8
    d_steps: int = 1  # D updates per G update
    accumulate: int = 1  # micro-batches per update (batch_size is split into this many)
    ema: EMAConfig = field(default_factory=EMAConfig)
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"  # auto: bf16 on GPU, none on CPU
    compile: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads (0: torch default)
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    fid: FIDConfig = field(default_factory=FIDConfig)


@dataclass
class LogConfig:
    wandb: Literal["offline", "online", "disabled"] = "offline"
    project: str = "hamgan"
    name: str | None = None
    tqdm: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


# --------------------------------------------------------------------------------------------------------------------
# Building a typed config from plain data
# --------------------------------------------------------------------------------------------------------------------


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, leaves and sections, e.g. ``['model', 'model.resolution', ...]``."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        keys.append(key)
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(all_keys(hint, key + "."))
    return keys


def _unknown_key(key: str) -> ConfigError:
    near = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.5)
    if not near:  # match on the last component, e.g. "lr" -> train.lr_g
        last = key.split(".")[-1]
        near = [k for k in all_keys() if difflib.get_close_matches(last, [k.split(".")[-1]], cutoff=0.6)][:3]
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    return ConfigError(f"unknown config key '{key}'.{hint}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{key}' may not be null")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' is a section; give a mapping, got {value!r}")
        return _build(hint, value, key + ".")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool) and hint is not bool):
        raise ConfigError(f"config key '{key}' must be of type {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key(prefix + str(key))
    default = cls()
    kwargs = {}
    for name in names:
        if name in data:
            value = data[name]
            if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict):
                # merge a partial section into that section's defaults
                merged = {**dataclasses.asdict(getattr(default, name)), **value}
                kwargs[name] = _build(hints[name], merged, prefix + name + ".")
            else:
                kwargs[name] = _coerce(prefix + name, value, hints[name])
    return dataclasses.replace(default, **kwargs)


def from_dict(data: dict) -> Config:
    """A :class:`Config` from a nested mapping; missing keys take their defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    return _build(Config, data)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.batch_size=64'`` -> ``('train.batch_size', 64)``; the value is parsed as YAML.

    YAML 1.1 reads ``2e-4`` as a string; the schema converts it to float when the config is built.
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like dotted.key=value, e.g. train.batch_size=64")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"override '{text}': the value is not valid YAML ({problem})") from None
    return key, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested mapping (a copy); unknown keys raise :class:`ConfigError`."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy through plain YAML types
    valid = set(all_keys())
    for text in overrides:
        key, value = parse_override(text)
        if key not in valid:
            raise _unknown_key(key)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``dotted.key=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            configs = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
            raise ConfigError(f"config file '{path}' does not exist. Available in configs/: {', '.join(configs)}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(e, "problem", None) or type(e).__name__
            raise ConfigError(f"config file '{path}' is not valid YAML{line}: {problem}") from None
    return from_dict(apply_overrides(data, list(overrides)))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
