"""Named random streams: seeds derived from (run seed, name), for paired runs (common random numbers).

Runs of one seed that differ only in their context block should share every other random number: the initial
weights of the layers they have in common, the latents and labels they train on, the data order. A single global
generator cannot give that: a model with one more layer draws its numbers in another order, and everything after
that layer shifts. Here each consumer draws from a generator of its own, seeded by the run seed and a name::

    derive_seed(seed, "G.blocks.0.conv1.weight")    the initial weight of one layer (hamgan.nn.layers.init_weights)
    derive_seed(seed, "G.context.bases")            the Hamburger's random bases (hamgan.nn.hamburger)
    derive_seed(seed, "latents", rank, step)        a training step's latents and labels (hamgan.train.stream)

The derivation is SHA-256 of the text ``"<seed>/<name>/<name>..."`` (not Python's ``hash()``, which is salted per
process), truncated to 63 bits: the same on every machine and Python version, and two different names collide with
probability ~2^-63.
"""

from __future__ import annotations

import hashlib

import torch

SEED_BITS = 63  # torch.Generator.manual_seed takes a signed 64-bit seed; keep it non-negative


def derive_seed(seed: int, *names: object) -> int:
    """A seed in [0, 2^63) for the stream ``names`` of run seed ``seed`` (names are joined with '/' as text)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    text = "/".join([str(seed), *(str(n) for n in names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << SEED_BITS) - 1)


def named_generator(seed: int, *names: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` ``(seed, *names)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *names))


__all__ = ["SEED_BITS", "derive_seed", "named_generator"]
