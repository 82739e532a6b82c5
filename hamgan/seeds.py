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

Where a draw must run inside a compiled graph (the Hamburger's bases, every forward), a ``torch.Generator`` will not
do: :func:`counter_uniform` and :func:`counter_normal` are pure functions of a key tensor and the element index
(a counter-based generator: integer hashing only, exact on every device), so the key can live in a buffer.
"""

from __future__ import annotations

import hashlib
import math

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



# Counter-based draws: a pure function of (key, element index), the same on every device, traceable by torch.compile


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for int64 ``x`` in [0, 2^32) and a 32-bit constant, without int64 overflow (the high
    half of ``x`` only contributes its product's low 16 bits)."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (Wellons' "lowbias32" constants) of int64 ``x`` in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_bits(n: int, key: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """``n`` pseudo-random 32-bit integers (int64 in [0, 2^32)), element i a hash of (key, stream, i).

    ``key`` is an int64 tensor of 32-bit words (e.g. [seed low, seed high, draw]); the result depends on nothing
    else, so the same key gives the same numbers on every device, with or without ``torch.compile`` (integer ops
    only: exact everywhere). Shapes: ``key`` (K,) -> (n,).
    """
    h = torch.arange(n, device=key.device, dtype=torch.int64)
    h = _hash32((h + stream * 0x9E3779B9) & _MASK32)
    for k in range(key.numel()):
        h = _hash32(h ^ key[k])
    return h


def counter_uniform(shape: tuple[int, ...], key: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Uniform [0, 1) float32 of ``shape`` from :func:`counter_bits` (24 random bits each, as ``torch.rand``)."""
    n = math.prod(shape)
    return ((counter_bits(n, key, stream) >> 8).to(torch.float32) * 2.0**-24).view(shape)


def counter_normal(shape: tuple[int, ...], key: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 of ``shape`` from two :func:`counter_uniform` streams (Box-Muller)."""
    u1 = counter_uniform(shape, key, 1).mul_(-1).add_(1)  # (0, 1]: log is finite
    u2 = counter_uniform(shape, key, 2)
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos((2 * math.pi) * u2)


__all__ = ["SEED_BITS", "counter_bits", "counter_normal", "counter_uniform", "derive_seed", "named_generator"]
