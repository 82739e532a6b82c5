"""Tests for hamgan.nn.inspect: the recorded NMF coefficients and attention maps are the ones the forward used."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.config import load_config
from hamgan.nn import Generator
from hamgan.nn.from_config import generator_from_config
from hamgan.nn.inspect import attention_maps, hamburger_coefficients, recording_decompositions
from hamgan.nn.layers import pointwise


def tiny_generator(context: str, *overrides: str) -> Generator:
    cfg = load_config(None, [
        "model.resolution=32", "model.img_channels=1", "model.num_classes=4", "model.z_dim=16",
        f"model.g.context={context}", "model.g.channels=8", "model.g.context_res=16", "model.g.ham.rank=4",
        "model.g.ham.steps=3", *overrides,
    ])
    torch.manual_seed(0)
    G = generator_from_config(cfg.model).eval()
    nn.init.constant_(G.context.sigma if context == "ham" else G.context.gamma, 0.7)  # let the block matter
    return G


def latents(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 16, generator=g), torch.tensor([0, 1, 3][:n])


def block_io(block: nn.Module):
    seen = {}

    def hook(module, args, out):
        seen["x"], seen["y"], seen["out"] = args[0], args[1] if len(args) > 1 else None, out

    return seen, block.register_forward_hook(hook)


@pytest.mark.parametrize("groups", [1, 2])
def test_hamburger_coefficients_reconstruct_the_block_output(groups):
    G = tiny_generator("ham", f"model.g.ham.groups={groups}", "model.g.ham.dim=16")
    block = G.context
    z, y = latents()
    torch.manual_seed(5)  # the same random initial bases in both forwards
    image, coef = hamburger_coefficients(G, z, y)
    assert image.shape == (3, 1, 32, 32)
    assert coef.shape == (3, groups, 4, 16, 16)
    assert coef.min() >= 0  # NMF coefficients
    assert coef.sum() > 0

    torch.manual_seed(5)
    seen, handle = block_io(block)
    with recording_decompositions(block) as records, torch.no_grad():
        torch.testing.assert_close(G(z, y), image)
    handle.remove()
    assert len(records) == 1
    bases, recorded = records[0]  # (B*S, D, R), (B*S, N, R)
    B, C, H, W = seen["x"].shape
    # the maps are C laid out per group and component on the H x W grid
    torch.testing.assert_close(coef, recorded.view(B, groups, H, W, 4).permute(0, 1, 4, 2, 3))
    # and x + sigma * CBN(upper(D C^T)) with them is what the block returned
    low_rank = torch.bmm(bases, recorded.transpose(1, 2)).reshape(B, groups * 16, H * W)
    expected = seen["x"] + block.sigma * block.norm(pointwise(block.upper, low_rank).view(B, C, H, W), seen["y"])
    torch.testing.assert_close(seen["out"], expected, atol=1e-5, rtol=1e-4)
    # component maps differ from each other (the decomposition splits the image)
    assert not torch.allclose(coef[:, :, 0], coef[:, :, 1])


def test_recording_restores_the_block():
    G = tiny_generator("ham")
    with pytest.raises(RuntimeError, match="boom"):
        with recording_decompositions(G.context):
            raise RuntimeError("boom")
    assert "decompose" not in vars(G.context)


def test_attention_maps_are_the_weights_of_the_forward():
    G = tiny_generator("attention")
    block = G.context
    seen, handle = block_io(block)
    z, y = latents()
    image, attn = attention_maps(G, z, y)
    handle.remove()

    assert image.shape == (3, 1, 32, 32)
    assert attn.shape == (3, 16, 16, 8, 8)
    torch.testing.assert_close(attn.sum(dim=(-2, -1)), torch.ones(3, 16, 16))
    # x + gamma * out(g_pooled @ A^T) with the returned maps A gives the block's output
    x = seen["x"]
    B, C, H, W = x.shape
    g = F.max_pool2d(pointwise(block.g, x.flatten(2)).view(B, C // 2, H, W), 2).flatten(2)  # (B, C/2, M)
    weights = attn.reshape(B, H * W, 64)
    expected = x + block.gamma * pointwise(block.out, torch.bmm(g, weights.transpose(1, 2))).view(B, C, H, W)
    torch.testing.assert_close(seen["out"], expected, atol=1e-5, rtol=1e-4)
    # the maps depend on the query pixel
    assert not torch.allclose(attn[:, 0, 0], attn[:, 8, 8])


@pytest.mark.parametrize("context, fn, needed", [
    ("none", hamburger_coefficients, "model.g.context=ham"),
    ("attention", hamburger_coefficients, "model.g.context=ham"),
    ("ham", attention_maps, "model.g.context=attention"),
])
def test_wrong_context_block_is_a_clear_error(context, fn, needed):
    if context == "none":
        cfg = load_config(None, ["model.resolution=32", "model.num_classes=4", "model.z_dim=16",
                                 "model.g.context=none", "model.g.channels=8"])
        G = generator_from_config(cfg.model).eval()
    else:
        G = tiny_generator(context)
    z, y = latents()
    with pytest.raises(ValueError, match=needed):
        fn(G, z, y)
