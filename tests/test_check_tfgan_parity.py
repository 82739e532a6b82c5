"""scripts/check_tfgan_parity.py without TensorFlow: hamgan's SAGAN exports exactly TF-GAN's variables (names and
shapes recorded from tensorflow-gan 2.1.0 in tests/fixtures/tfgan_sagan_variables.json), and the differences."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.config import load_config
from hamgan.nn.networks import Discriminator, Generator

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
    weights = {**parity.tf_weights(Generator(cfg), "G"), **parity.tf_weights(Discriminator(cfg), "D")}
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


def test_readme_records_a_passing_parity_run(readme):
    """Issue 10 item 5: README holds the script's output: whole G and D and every op the issue names, all agreeing."""
    section = readme("Parity with TF-GAN (`make parity`)")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines()
            if line.startswith("| ") and "---" not in line and not line.startswith("| check")}
    for check in ("G images", "G eval images", "D logits", "SN conv 3x3", "SN linear", "conditional BN",
                  "attention block", "G block", "D block", "YLG attention block"):
        assert check in rows and rows[check].endswith("| yes |"), check
    assert all(line.endswith("| yes |") for line in rows.values())
    assert re.search(r"Output of \d{4}-\d{2}-\d{2}", section)
