"""Paired initialisation (hamgan.seeds, init_weights with a seed): HamGAN, SAGAN and no-context networks built with
one seed start from equal weights in every layer they share, and their context blocks shift nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hamgan.config import load_config
from hamgan.nn.from_config import discriminator_from_config, generator_from_config
from hamgan.nn.hamburger import Hamburger, seed_bases_streams
from hamgan.seeds import derive_seed

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELS = ("hamgan", "sagan", "none")


def build(model: str, seed: int | None, overrides: list[str] = ()) -> dict[str, dict[str, torch.Tensor]]:
    cfg = load_config(CONFIGS / f"fmnist32_{model}.yaml", list(overrides)).model
    return {"G": generator_from_config(cfg, seed=seed).state_dict(),
            "D": discriminator_from_config(cfg, seed=seed).state_dict()}


def shared(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if k in b and a[k].shape == b[k].shape]


@pytest.mark.parametrize("overrides", [[], ["model.init=xavier", "model.sn.warmup=0"]],
                         ids=["orthogonal-torch-sn", "xavier-tf-sn"])
def test_every_shared_tensor_is_equal_across_hamgan_sagan_and_no_context(overrides):
    """Every tensor of the state dicts (weights, biases, BN statistics, spectral-norm u and v) whose name and shape
    two models share is bit-equal, for each pair of the three models; the global RNG state plays no part."""
    nets = {}
    for i, model in enumerate(MODELS):
        torch.manual_seed(100 + i)  # a different global state per model: paired init must not read it
        nets[model] = build(model, seed=5, overrides=overrides)
    for net in ("G", "D"):
        none = nets["none"][net]
        for a, b in (("hamgan", "sagan"), ("hamgan", "none"), ("sagan", "none")):
            names = shared(nets[a][net], nets[b][net])
            assert len(names) >= len(none) - 1  # all of the no-context network's tensors (less the Ham's extra state)
            for name in names:
                assert torch.equal(nets[a][net][name], nets[b][net][name]), f"{net}.{name} differs ({a} vs {b})"
        # the context blocks exist only in their models, under names no other layer has
        for model in ("hamgan", "sagan"):
            own = set(nets[model][net]) - set(none)
            assert own and all(k.startswith("context.") for k in own)
    # the random tensors really are random draws (not constants that would be equal anyway), u and v included
    g = nets["none"]["G"]
    assert g["blocks.2.conv1.parametrizations.weight.original"].std() > 0
    assert not torch.equal(g["blocks.1.conv1.parametrizations.weight.original"],
                           g["blocks.2.conv1.parametrizations.weight.original"])
    v = "conv1.parametrizations.weight.0._v"
    assert not torch.equal(g[f"blocks.1.{v}"], g[f"blocks.2.{v}"])


def test_block_names_do_not_shift_with_the_context_block():
    """The layers after the context block keep their qualified names (the init key): the context block is an
    attribute beside ``blocks``, not an entry of it."""
    names = {m: list(build(m, seed=0)["G"]) for m in MODELS}
    after = [k for k in names["none"] if k.startswith(("blocks.2.", "bn.", "conv_out."))]
    assert after and all(k in names["hamgan"] and k in names["sagan"] for k in after)


def test_unpaired_networks_differ_where_paired_ones_agree():
    """Without a seed (train.paired=false: the global generator, the old behaviour) the context block's draws
    shift the layers built after it; G and D of one seed draw from different streams."""
    torch.manual_seed(0)
    ham = build("hamgan", seed=None)
    torch.manual_seed(0)
    none = build("none", seed=None)
    late = "conv_out.parametrizations.weight.original"  # built after the context block
    assert not torch.equal(ham["G"][late], none["G"][late])
    paired = build("hamgan", seed=0)
    # G and D share a layer name with one shape at 32x32 (blocks.1.conv1: 32 -> 32, 3x3): different streams
    key = "blocks.1.conv1.parametrizations.weight.original"
    assert paired["G"][key].shape == paired["D"][key].shape
    assert not torch.equal(paired["G"][key], paired["D"][key])
    # another seed, other weights; the same seed, the same weights
    assert not torch.equal(build("hamgan", seed=1)["G"][late], paired["G"][late])
    assert torch.equal(build("hamgan", seed=0)["G"][late], paired["G"][late])


def test_paired_init_keeps_the_scheme_statistics():
    """A named stream draws the same distribution as the global one: orthogonal weights stay orthogonal."""
    sd = build("none", seed=3)["G"]
    w = sd["blocks.0.conv1.parametrizations.weight.original"].flatten(1)  # (32, 288): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)


def test_hamburger_bases_streams_are_their_own():
    """seed_bases_streams gives each Hamburger a stream keyed by (seed, network.module name, key): it draws nothing
    from the global generator, the same (seed, key) redraws the same bases from the first forward on, and another
    key or network draws others. The streams are no state: the state dict is unchanged."""
    cfg = load_config(CONFIGS / "fmnist32_hamgan.yaml").model
    G, D = generator_from_config(cfg, seed=7).train(), discriminator_from_config(cfg, seed=7).train()
    keys = set(G.state_dict())
    assert isinstance(G.context, Hamburger) and not G.context.seeded
    seed_bases_streams({"G": G, "D": D}, 7, 0, 12)  # rank 0, step 12
    def key_seed(block: Hamburger) -> int:
        low, high, draws = block.bases_key.tolist()
        assert draws == 0
        return low | high << 32

    assert G.context.seeded and key_seed(G.context) == derive_seed(7, "G.context.bases", 0, 12)
    assert key_seed(D.context) == derive_seed(7, "D.context.bases", 0, 12) != key_seed(G.context)
    assert set(G.state_dict()) == keys
    z, y = torch.randn(4, cfg.z_dim), torch.randint(0, cfg.num_classes, (4,))
    G.context.sigma.data.fill_(1.0)  # let the bases reach the output
    initial = {k: v.clone() for k, v in G.state_dict().items()}  # forwards in training mode update BN and SN
    with torch.no_grad():
        global_state = torch.get_rng_state()
        first, second = G(z, y), G(z, y)
        assert torch.equal(torch.get_rng_state(), global_state)  # nothing drawn from the global generator
        assert G.context.bases_key[2] == 2 and not torch.equal(first, second)  # fresh bases each forward
        G.load_state_dict(initial)
        seed_bases_streams({"G": G}, 7, 0, 12)  # the same step again (a resumed run): the same bases
        assert torch.equal(G(z, y), first)
        G.load_state_dict(initial)
        seed_bases_streams({"G": G}, 7, 0, 13)  # the next step: other bases
        assert not torch.equal(G(z, y), first)
        G.load_state_dict(initial)
        G.context.seed_bases(None)  # back to the global generator
        torch.manual_seed(0)
        a = G(z, y)
        G.load_state_dict(initial)
        torch.manual_seed(0)
        assert torch.equal(G(z, y), a) and not torch.equal(torch.get_rng_state(), global_state)


# --------------------------------------------------------------------------------------------------------------------
# The counter-based bases draw: exact integer hashing, the right distributions, one compiled graph
# --------------------------------------------------------------------------------------------------------------------


def _lowbias32(x: int) -> int:
    """The reference hash in Python's exact integers (an independent computation of hamburger._hash32)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_counter_bits_equal_the_python_reference_hash():
    from hamgan.seeds import counter_bits

    key = torch.tensor([0xDEADBEEF, 7, 3])
    got = counter_bits(300, key, stream=2).tolist()
    want = []
    for i in range(300):
        h = _lowbias32((i + 2 * 0x9E3779B9) & 0xFFFFFFFF)
        for k in key.tolist():
            h = _lowbias32(h ^ k)
        want.append(h)
    assert got == want


def test_counter_draws_have_the_distributions_of_rand_and_randn():
    """Moments within 5 standard errors (n = 2^18): uniform mean 1/2, variance 1/12; normal mean 0, variance 1."""
    from hamgan.seeds import counter_normal, counter_uniform

    n = 2**18
    key = torch.tensor([12345, 678, 0])
    u = counter_uniform((n,), key).double()
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 5 * (1 / 12 / n) ** 0.5
    assert abs(u.var() - 1 / 12) < 5 * (1 / 180 / n) ** 0.5  # var of (U - 1/2)^2 is 1/180
    z = counter_normal((n,), key).double()
    assert abs(z.mean()) < 5 / n**0.5 and abs(z.var() - 1) < 5 * (2 / n) ** 0.5
    assert not torch.equal(counter_uniform((64,), key), counter_uniform((64,), key + torch.tensor([0, 0, 1])))


@pytest.mark.slow
@pytest.mark.parametrize("ham", ["nmf", "cd"])
def test_seeded_bases_compile_into_one_graph_equal_to_eager(ham):
    """The seeded draw is in the graph (no graph break), advances its counter on the device, and gives eager's
    values: the same key, the same bases, on every forward."""
    torch.manual_seed(0)
    block = Hamburger(16, ham=ham, dim=16, rank=4, steps=2).eval()
    block.sigma.data.fill_(1.0)  # let the bases reach the output
    x = torch.randn(2, 16, 4, 4)
    block.seed_bases(derive_seed(0, "G.context.bases", 0, 0))
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    block.seed_bases(derive_seed(0, "G.context.bases", 0, 0))
    eager = [block(x), block(x)]
    assert block.bases_key[2].item() == 2 and not torch.equal(eager[0], eager[1])
    block.seed_bases(derive_seed(0, "G.context.bases", 0, 0))
    compiled = torch.compile(block, backend="aot_eager")
    torch.testing.assert_close(compiled(x), eager[0], rtol=0, atol=0)
    torch.testing.assert_close(compiled(x), eager[1], rtol=0, atol=0)


def test_the_bases_key_is_never_broadcast_between_ranks():
    """Set per rank on purpose: a Hamburger's key makes no module's buffers 'drifting', and DDP is told to ignore
    it."""
    from hamgan.distributed import buffers_can_drift

    block = Hamburger(16, dim=16, rank=4)
    assert "bases_key" in dict(block.named_buffers()) and "bases_key" not in block.state_dict()
    assert not buffers_can_drift(block)
