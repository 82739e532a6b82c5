"""Shared fixtures: a tiny real checkpoint factory and the FID Inception weights check.

pytest runs with --import-mode=importlib, so test modules cannot import each other: what they share lives here.
"""

import copy
import os
from pathlib import Path
from typing import Callable

import pytest

TINY_MODEL = {"resolution": 32, "num_classes": 3, "z_dim": 16,
              "g": {"channels": 8, "context_res": 16, "ham": {"steps": 2, "rank": 4}},
              "d": {"channels": 8, "context_res": 16, "ham": {"steps": 2, "rank": 4}}}


@pytest.fixture
def tiny_model() -> dict:
    """The model section of a tiny config (resolution 32, width 8, Hamburger context), a fresh copy per test."""
    return copy.deepcopy(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Callable[..., Path]:
    """A factory of real (untrained) tiny Generator/Discriminator checkpoints; G_ema, when kept, differs from G."""
    import torch

    from hamgan.checkpoint import save_checkpoint
    from hamgan.config import from_dict, to_dict
    from hamgan.nn.from_config import discriminator_from_config, generator_from_config

    def write(path, step: int = 7, img_channels: int = 3, context: str = "ham", ema: bool = True) -> Path:
        torch.manual_seed(0)
        model = copy.deepcopy(TINY_MODEL)
        model["img_channels"] = img_channels
        model["g"]["context"] = model["d"]["context"] = context
        cfg = from_dict({"model": model})
        G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
        G_ema = generator_from_config(cfg.model)
        save_checkpoint({"config": to_dict(cfg), "step": step, "G": G.state_dict(), "D": D.state_dict(),
                         "G_ema": G_ema.state_dict() if ema else None}, path)
        return Path(path)

    return write


@pytest.fixture(scope="session")
def fid_weights() -> Path:
    """The real FID Inception weights in the hub cache: skip locally without them, fail in CI."""
    from hamgan.metrics.inception import WEIGHTS_NAME, hub_checkpoint_dir

    path = hub_checkpoint_dir() / WEIGHTS_NAME
    if not path.is_file():
        message = (f"FID Inception weights missing at {path}: copy ../shared/fid-weights/{WEIGHTS_NAME} there "
                   f"(or set TORCH_HOME)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def readme():
    """``readme(heading, page="README.md")``: the section of a Markdown page of the repository (README.md, docs/...,
    results/...) from the ``## `` heading that starts with ``heading`` to the next ``## `` heading."""
    root = Path(__file__).resolve().parent.parent

    def section(heading: str, page: str = "README.md") -> str:
        text = (root / page).read_text()
        start = text.index(f"## {heading}")
        end = text.find("\n## ", start + 1)
        return text[start:] if end < 0 else text[start:end]

    return section
