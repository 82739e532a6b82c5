"""Run configuration: typed dataclasses, loaded from YAML, overridden from the command line.

A config file is a nested mapping whose keys mirror the dataclasses below, e.g.::

    model:
      resolution: 128
      g: {channels: 64, context: ham, context_res: 32, ham: {dim: 256, rank: 32}}
      d: {channels: 64, context: ham, context_res: 32, ham: {dim: 128, rank: 16}}
    train:
      batch_size: 256

Every key may be overridden with ``dotted.key=value`` (the value is parsed as YAML, so ``train.lr_g=2e-4``,
``model.g.context=attention`` and ``train.betas=[0.0,0.9]`` all work). An unknown key or a value of the wrong type
raises :class:`ConfigError`, naming the key and the nearest valid keys.

A YAML file may start from others: ``include: [other.yaml, presets/biggan_pytorch.yaml]`` (paths relative to the
file) merges those first, in order, then the file's own keys on top.

Configs, overrides and checkpoints of the schema before per-network context settings (``model.context``,
``model.ham.*``, ``model.g.ham_dim`` / ``ham_rank``) are refused with one error that says how to write them
(:func:`old_schema_error`).
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


ContextBlock = Literal["none", "ham", "attention", "ylg"]
Init = Literal["xavier", "orthogonal", "normal"]
Bound = Literal["at_most_one", "exact"]
Resize = Literal["tf-bilinear", "pil-bicubic", "pil-bilinear", "pil-lanczos"]


@dataclass
class HamConfig:
    """One network's Hamburger (reference §1); used when that network's ``context`` is ``ham``."""

    kind: Literal["nmf", "vq", "cd"] = "nmf"
    steps: int = 6  # K, iterations of the matrix decomposition in training
    eval_steps: int | None = None  # K at eval time (None: same as steps)
    grad: Literal["one_step", "bptt"] = "one_step"
    version: Literal["v1", "v2"] = "v1"
    groups: int = 1  # S
    dim: int | None = None  # D (None: the channels at context_res)
    rank: int = 32  # R
    bread_bias: bool = False  # biases on the breads (official: none; true: hamgan's layout before issue 10)
    v2_cheese: Literal["official", "legacy"] = "official"  # the v2 cheese, see hamgan.nn.hamburger.Hamburger


@dataclass
class YLGConfig:
    """One network's YLG attention (hamgan.nn.ylg); used when that network's ``context`` is ``ylg``."""

    heads: int = 8


@dataclass
class NetConfig:
    """Per-network settings (G or D): width and context block."""

    channels: int = 64  # gf_dim / df_dim: width multiplier of the architecture table
    context: ContextBlock = "ham"  # the global-context block of this network
    context_res: int = 32  # resolution at which the context block sits
    ham: HamConfig = field(default_factory=HamConfig)
    ylg: YLGConfig = field(default_factory=YLGConfig)


@dataclass
class BNConfig:
    """Batch norm of the generator (and of any BN in a context block). Official: TF-GAN's eps 1e-3, moving-average
    decay 0.999 (momentum 0.001) with the biased batch variance; torch: eps 1e-5, momentum 0.1, unbiased."""

    eps: float = 1e-3
    momentum: float = 0.001
    running_var: Literal["biased", "unbiased"] = "biased"


@dataclass
class SNConfig:
    """Spectral norm (hamgan.nn.spectral_norm). Official: W / max(1, sigma) on the residual networks' convs (3x3 and
    the 1x1 shortcuts), linears and embedding (``snconv2d``, ``snlinear``, ``sn_embedding``), W / sigma on the 1x1
    convs inside the context blocks (``sn_conv1x1``); one power iteration also in eval mode (not stored); no
    warm-up iterations. Torch's spectral norm: exact everywhere, no eval iteration, 15 warm-up iterations."""

    bound: Bound = "at_most_one"  # residual-network convs, linears, embedding
    context_bound: Bound = "exact"  # 1x1 convs of the context blocks
    eval_iteration: bool = True
    warmup: int = 0


@dataclass
class ModelConfig:
    """The networks. The defaults are the official HamGAN-128 recipe (TF-GAN SAGAN with Hamburgers)."""

    resolution: Literal[32, 64, 128] = 128
    img_channels: int = 3
    num_classes: int = 1000
    z_dim: int = 128
    init: Init = "xavier"  # official: Glorot uniform on every conv, linear and embedding; biases 0
    bn: BNConfig = field(default_factory=BNConfig)
    sn: SNConfig = field(default_factory=SNConfig)
    g: NetConfig = field(default_factory=lambda: NetConfig(ham=HamConfig(rank=32)))
    d: NetConfig = field(default_factory=lambda: NetConfig(ham=HamConfig(rank=16)))


@dataclass
class DataConfig:
    name: Literal["fmnist", "cifar10", "imagenet", "synthetic"] = "fmnist"
    root: str | None = None  # data set location (None: the data set's default search path)
    packed: str | None = None  # path of a packed uint8 array file (ImageNet), see scripts/pack_imagenet.py
    split: str = "train"
    # Resizing to model.resolution (hamgan.data.transforms). tf-bilinear: the official pipeline (largest centre
    # square, TF crop_and_resize bilinear without antialiasing, kept in float); pil-*: PIL with antialiasing, uint8.
    resize: Resize = "tf-bilinear"
    hflip: bool = False  # random horizontal flips (the official recipe has none)
    download: bool = True  # torchvision download when nothing is found locally
    num_workers: int = 2
    synthetic_size: int = 512  # number of images of the synthetic data set
    index_cache: str | None = None  # folder of the ImageFolder index file (None: beside the data, see data.imagenet)


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
    # auto: none on CPU; on GPU bf16 where native (compute capability >= 8), else fp16 + loss scaling
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"
    # TF32 for float32 convs/matmuls on CUDA (compute capability >= 8; no effect on the CPU), hamgan.tf32.
    # layers: the networks' layers, as the GPU anchors train; the Hamburger decomposition and FID's Inception keep
    # true float32. all: TF32 there too. none: true float32 everywhere. Rank 0 decides for every rank.
    tf32: Literal["layers", "all", "none"] = "layers"
    compile: bool = False
    # torch.compile backend: inductor (generated kernels, the fast one), or aot_eager / eager (dynamo's graphs run by
    # eager kernels: checks graph capture without code generation, e.g. make rehearse on the CPU). RUN/compile.json
    # records the graphs and graph breaks of the first step.
    compile_backend: str = "inductor"
    channels_last: bool = False
    # cross-replica batch norm in G: statistics over the micro-batches of all ranks (the official TPU code's
    # cross-replica BN); a no-op in a single process. False: each rank's own micro-batch.
    sync_bn: bool = False
    seed: int = 0
    # paired initialisation and streams (common random numbers across models of one seed): every layer's initial
    # weight, the Hamburger's bases and each step's latents/labels come from generators seeded by (seed, name), so
    # runs of one seed differ only in their context block (hamgan.seeds). False: torch's global generator, as before.
    paired: bool = True
    device: str = "auto"  # auto | cpu | cuda
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: NCCL on GPU, gloo on CPU
    dist_timeout_min: float = 30.0  # timeout of every collective; a dead rank is named within a quarter of it
    threads: int = 0  # torch CPU threads (0: torch default)
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3  # scheduled checkpoints kept (stop-signal / final ones off the schedule do not count)
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


OLD_SCHEMA_HELP = (
    "write model.context as model.g.context and model.d.context; model.ham.<key> as model.g.ham.<key> and "
    "model.d.ham.<key>; model.<g|d>.ham_dim / ham_rank as model.<g|d>.ham.dim / ham.rank. The old schema also "
    "implied the recipe of hamgan's first version, which the new defaults (the official recipe) replace: to keep "
    "its networks set model.init=orthogonal, model.bn={eps: 1e-5, momentum: 0.1, running_var: unbiased}, "
    "model.sn={bound: exact, context_bound: exact, eval_iteration: false, warmup: 15}, "
    "model.<g|d>.ham.bread_bias=true, data.resize=pil-bicubic, and the old default ranks model.g.ham.rank=32, "
    "model.d.ham.rank=16 (configs/fmnist32_hamgan.yaml is written so)"
)


def is_old_schema_key(key: str) -> bool:
    """Whether dotted ``key`` belongs to the schema before per-network context settings: ``model.context``,
    ``model.ham[.*]``, ``model.<g|d>.ham_dim`` or ``model.<g|d>.ham_rank``."""
    parts = key.split(".")
    if parts[0] != "model" or len(parts) < 2:
        return False
    return parts[1] in ("context", "ham") or (len(parts) == 3 and parts[1] in ("g", "d")
                                                and parts[2] in ("ham_dim", "ham_rank"))


def old_schema_error(key: str) -> ConfigError:
    """The one error for a key of the schema before per-network context settings, saying how to write it."""
    return ConfigError(f"config key '{key}' belongs to the schema before per-network context settings (one "
                       f"model.context / model.ham for both networks), which hamgan no longer reads: "
                       f"{OLD_SCHEMA_HELP}")


def _unknown_key(key: str) -> ConfigError:
    if is_old_schema_key(key):
        return old_schema_error(key)
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


def _build(cls: type, data: dict, prefix: str = "", default: Any = None) -> Any:
    """``cls`` from the mapping ``data``; missing keys keep ``default``'s values (``cls()`` when None), also inside
    partial sub-sections (so ``d: {ham: {kind: cd}}`` keeps D's own Hamburger defaults)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key(prefix + str(key))
    default = cls() if default is None else default
    kwargs = {}
    for name in names:
        if name in data:
            value = data[name]
            if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict):
                kwargs[name] = _build(hints[name], value, prefix + name + ".", getattr(default, name))
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


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The mapping of YAML file ``path`` with its ``include:`` files merged underneath (see the module doc)."""
    if not path.is_file():
        where = f" (included from '{seen[-1]}')" if seen else ""
        configs = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
        raise ConfigError(f"config file '{path}'{where} does not exist. Available in configs/: {', '.join(configs)}")
    if path.resolve() in seen:
        raise ConfigError(f"config file '{path}' includes itself (through {' -> '.join(map(str, seen))})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config file '{path}' is not valid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must be a mapping of sections, got {type(data).__name__}")
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    old = [f"model.{k}" for k in model if is_old_schema_key(f"model.{k}")] + [
        f"model.{net}.{k}" for net in ("g", "d") if isinstance(model.get(net), dict) for k in model[net]
        if is_old_schema_key(f"model.{net}.{k}")]
    if old:
        raise ConfigError(f"config file '{path}': {old_schema_error(old[0])}")
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for name in includes:
        _deep_merge(merged, _read_yaml(path.parent / name, (*seen, path.resolve())))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, top: dict) -> dict:
    """``top`` merged into ``base`` in place (sections recursively, other values replaced); returns ``base``."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``dotted.key=value`` overrides."""
    data = _read_yaml(Path(path)) if path is not None else {}
    return from_dict(apply_overrides(data, list(overrides)))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
