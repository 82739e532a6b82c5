"""scripts/check_tfgan_parity.py without TensorFlow: hamgan's SAGAN exports exactly TF-GAN's variables (names and
shapes recorded from tensorflow-gan 2.1.0 in tests/fixtures/tfgan_sagan_variables.json), and the differences."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.config import load_config
from hamgan.nn.from_config import discriminator_from_config, generator_from_config

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_tfgan_parity", ROOT / "scripts" / "check_tfgan_parity.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)


@pytest.mark.slow
def test_every_tf_gan_variable_gets_a_hamgan_value_of_its_shape():
    """The official layout, variable by variable: the TF-GAN SAGAN graph (gf = df = 64, 5 classes) has 169
    variables; each gets exactly one hamgan array of the same number of elements, and nothing is left over."""
    variables = json.loads((ROOT / "tests" / "fixtures" / "tfgan_sagan_variables.json").read_text())
    cfg = load_config(ROOT / "configs" / "imagenet128_sagan.yaml", ["model.num_classes=5"]).model
    torch.manual_seed(0)
    weights = {**parity.tf_weights(generator_from_config(cfg), "G"),
               **parity.tf_weights(discriminator_from_config(cfg), "D")}
    used = set()
    for name, shape in variables.items():
        value = parity.tf_value(name, weights)
        assert value.size == int(np.prod(shape)), (name, value.shape, shape)
        assert value.reshape(shape).shape == tuple(shape)
        used.add(next(k for k, v in weights.items() if v is value))
    assert used == set(weights) and len(variables) == 169


def test_differences_are_absolute_and_relative_to_the_reference():
    diff, rel = parity.differences(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    assert (diff, rel) == (2.0, 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        parity.differences(np.zeros(2), np.zeros(3))
    with pytest.raises(KeyError, match="no hamgan value"):
        parity.tf_value("generator/nothing/kernel", {})


def test_docs_record_a_passing_parity_run(readme):
    """Issue 10 item 5: docs/recipe.md holds the script's output: whole G and D and every op the issue names, each
    within the script's bound (relative difference <= 1e-4) and marked as agreeing."""
    section = readme("Parity with TF-GAN (`make parity`)", "docs/recipe.md")
    rows = {cells[0]: cells for cells in (line.strip("| ").split(" | ") for line in section.splitlines()
                                          if line.startswith("| ") and "---" not in line)
            if cells[0] != "check"}
    for check in ("G images", "G eval images", "D logits", "SN conv 3x3", "SN linear", "conditional BN",
                  "attention block", "G block", "D block", "YLG attention block"):
        assert check in rows, check
    for check, (_, _, diff, rel, ok) in rows.items():
        assert ok == "yes" and float(rel) <= 1e-4 and float(diff) >= 0, check  # 1e-4: the script's --tol default


def test_the_tf_venv_is_checked_by_running_this_script_not_a_python_string(tmp_path, monkeypatch):
    """ensure_venv runs this file with ``--tf-check`` under the venv's python (no ``python -c`` program); the check
    imports TF-GAN's example, so in hamgan's own venv (no TensorFlow) it fails."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.touch()
    calls = []
    monkeypatch.setattr(parity.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or parity.subprocess.CompletedProcess(cmd, 0))
    assert parity.ensure_venv(tmp_path) == python
    assert calls == [[str(python), parity.__file__, "--tf-check"]]
    if importlib.util.find_spec("tensorflow_gan") is None:
        with pytest.raises(ImportError):
            parity.main(["--tf-check"])
