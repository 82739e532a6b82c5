"""studies.fmnist32.report.pairing_gains: what the pairing bought per pair, at every evaluated step and the final FID."""

from types import SimpleNamespace

import pytest

from studies.fmnist32.report import pairing_gains
from studies.fmnist32.statistics import pairing_gain


def test_pairing_gains_per_pair_and_step_over_the_seeds_both_models_have():
    o = SimpleNamespace(pairs=[("hamgan", "sagan"), ("hamgan", "none")], mid_n=2000, steps=4000)
    curves = {"hamgan": {3000: {0: 50.0, 1: 44.0, 2: 47.0, 3: 52.0}, 4000: {0: 45.0, 1: 40.0, 2: 46.0}},
              "sagan": {3000: {0: 51.0, 1: 46.0, 2: 46.5}, 4000: {0: 44.0, 1: 43.0, 2: 41.0}},
              "none": {3000: {0: 55.0, 1: 45.0}}}
    final = {"hamgan": {s: {"fid": 40.0 + s} for s in range(3)}, "sagan": {s: {"fid": 41.0 - s} for s in range(3)},
             "none": {}}
    gains = pairing_gains(curves, final, o)
    assert list(gains["hamgan-sagan"]) == ["fid_at_2000@3000", "fid_at_2000@4000", "fid@4000"]
    assert gains["hamgan-sagan"]["fid_at_2000@3000"] == pairing_gain(curves["hamgan"][3000], curves["sagan"][3000])
    assert gains["hamgan-sagan"]["fid_at_2000@3000"]["seeds"] == [0, 1, 2]      # seed 3: hamgan only
    assert gains["hamgan-sagan"]["fid@4000"]["r"] == pytest.approx(-1.0)          # constructed to move apart
    assert gains["hamgan-none"] == {}                                              # two common seeds, no final rows
