"""hamgan.train.stream: the stream serves the data set's pixels mapped to [-1, 1] with their labels, flips on the
device side from its own seeded generator, and moves uint8 batches to the device before converting them."""

from __future__ import annotations

import pytest
import torch

from hamgan.data.synthetic import synthetic
from hamgan.distributed import DistInfo, ResumableSampler
from hamgan.train.stream import DataStream, to_model_input

BATCH = 16
SEED = 3


def stream(hflip: bool, flip_seed: int = 0, device: str = "cpu") -> DataStream:
    data = synthetic(size=40, resolution=8, num_classes=5)
    data.images[:, 0, 0] = 255  # a white top-left pixel (the background is dark): no image is its own mirror
    return DataStream(data, DistInfo(device=torch.device(device)), batch=BATCH, seed=SEED, num_workers=0,
                      hflip=hflip, flip=torch.Generator().manual_seed(flip_seed))


def first_batch_indices(s: DataStream) -> list[int]:
    """The data-set indices of the stream's first batch: epoch 0 of the same seeded sampler."""
    return list(ResumableSampler(s.loader.dataset, DistInfo(), seed=SEED))[:BATCH]


def dataset_pixels(s: DataStream, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, C, R, R) images and (B,) labels read from the data set itself."""
    items = [s.loader.dataset[i] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def test_without_flip_the_stream_serves_the_dataset_pixels_in_minus_one_one():
    s = stream(hflip=False)
    x, y = s.next()
    raw, labels = dataset_pixels(s, first_batch_indices(s))
    assert raw.dtype == torch.uint8 and x.dtype == torch.float32 and x.shape == (BATCH, 3, 8, 8)
    torch.testing.assert_close(x, raw.float() / 127.5 - 1, rtol=0, atol=0)
    assert torch.equal(y, labels) and y.dtype == torch.long
    assert len(set(labels.tolist())) > 1  # a real check of the pairing: the batch mixes classes


def test_uint8_maps_to_minus_one_one_exactly():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    out = to_model_input(x)
    assert out.dtype == torch.float32 and out[0].item() == -1.0 and out[2].item() == 1.0
    assert out[1].item() == pytest.approx(-0.6, abs=1e-7)


def test_flip_mirrors_some_images_of_a_batch_as_its_seed_decides():
    s = stream(hflip=True, flip_seed=7)
    x, y = s.next()
    raw, labels = dataset_pixels(s, first_batch_indices(s))
    original = raw.float() / 127.5 - 1
    mirrored = original.flip(-1)
    assert all(not torch.equal(a, b) for a, b in zip(original, mirrored))  # no image is its own mirror
    flipped = []
    for out, a, b in zip(x, original, mirrored):
        assert torch.equal(out, a) or torch.equal(out, b)  # each image is exactly the original or its mirror
        flipped.append(torch.equal(out, b))
    assert 0 < sum(flipped) < BATCH
    assert torch.equal(y, labels)  # flips leave labels alone
    # the decisions are the stream's own generator's draws: rand(B) < 1/2 from its seed
    assert flipped == (torch.rand(BATCH, generator=torch.Generator().manual_seed(7)) < 0.5).tolist()
    # the same seed gives the same pixels; another seed other flips of the same images
    again, _ = stream(hflip=True, flip_seed=7).next()
    assert torch.equal(again, x)
    other, _ = stream(hflip=True, flip_seed=8).next()
    assert not torch.equal(other, x)


@pytest.mark.parametrize("hflip", [False, True])
def test_uint8_batches_cross_to_the_device_before_conversion(hflip, monkeypatch):
    """The images move as uint8 (the conversion to float runs on the device). The 'meta' device stands in for a GPU:
    a tensor moved there has no data, so a result on it proves the conversion ran after the move."""
    moved: list[tuple[torch.dtype, tuple[int, ...]]] = []
    to = torch.Tensor.to

    def recording_to(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = to(self, *args, **kwargs)
        if out.device.type == "meta" and self.device.type != "meta":
            moved.append((self.dtype, tuple(self.shape)))
        return out

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    x, y = stream(hflip=hflip, device="meta").next()
    assert (x.device.type, x.dtype, x.shape) == ("meta", torch.float32, (BATCH, 3, 8, 8))
    assert y.device.type == "meta"
    images = [dtype for dtype, shape in moved if len(shape) == 4]
    assert images == [torch.uint8]
    if hflip:  # the flip decisions travel as a (B,) bool mask
        assert (torch.bool, (BATCH,)) in moved


# --------------------------------------------------------------------------------------------------------------------
# Latents and labels (LatentStream) and the pairing of two models' batches
# --------------------------------------------------------------------------------------------------------------------


def test_seeded_latent_stream_depends_on_seed_rank_and_step_only():
    """Step s draws from its own generator: the same whatever came before (a resumed run needs only the step), and
    the global generator is neither read nor advanced."""
    from hamgan.train.stream import LatentStream

    a = LatentStream(16, 5, torch.device("cpu"), seed=3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    z0, y0 = a.next(8, step=0)
    z0b, y0b = a.next(8, step=0)  # the second draw of the same step (e.g. the G update after the D update)
    z1, _ = a.next(8, step=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert z0.shape == (8, 16) and y0.dtype == torch.long and 0 <= int(y0.min()) and int(y0.max()) < 5
    assert not torch.equal(z0, z0b) and not torch.equal(z0, z1)
    b = LatentStream(16, 5, torch.device("cpu"), seed=3)  # a fresh stream (a resumed run) at step 1
    torch.manual_seed(123)
    assert torch.equal(b.next(8, step=1)[0], z1)
    assert torch.equal(b.next(8, step=0)[0], z0) and torch.equal(b.next(8, step=0)[0], z0b)
    assert not torch.equal(LatentStream(16, 5, torch.device("cpu"), seed=4).next(8, 0)[0], z0)  # another seed
    assert not torch.equal(LatentStream(16, 5, torch.device("cpu"), seed=3, rank=1).next(8, 0)[0], z0)  # rank
    unpaired = LatentStream(16, 5, torch.device("cpu"))  # seed None: the global generator, as before
    torch.manual_seed(9)
    z, y = unpaired.next(4, step=0)
    torch.manual_seed(9)
    assert torch.equal(z, torch.randn(4, 16)) and torch.equal(y, torch.randint(0, 5, (4,)))


def spied_batches(tmp_path, context: str, steps: int = 3, paired: bool = True) -> dict[str, list[torch.Tensor]]:
    """Real images, labels, latents and fake labels of ``steps`` training steps of the tiny trainer with
    ``context`` in G and D (spying on the trainer's data stream and latent stream)."""
    from pathlib import Path

    from hamgan import distributed
    from hamgan.config import load_config
    from hamgan.train import Trainer

    tiny = Path(__file__).resolve().parent / "tiny_train.yaml"
    cfg = load_config(tiny, [f"model.g.context={context}", f"model.d.context={context}",
                             f"train.paired={str(paired).lower()}"])
    trainer = Trainer(cfg, tmp_path / context, distributed.setup("cpu"))
    seen: dict[str, list[torch.Tensor]] = {"x": [], "y": [], "z": [], "y_fake": []}
    data_next, latents_next = trainer.data.next, trainer.latents.next

    def data_spy():
        x, y = data_next()
        seen["x"].append(x.clone())
        seen["y"].append(y.clone())
        return x, y

    def latents_spy(n, step):
        z, y = latents_next(n, step)
        seen["z"].append(z.clone())
        seen["y_fake"].append(y.clone())
        return z, y

    trainer.data.next, trainer.latents.next = data_spy, latents_spy
    try:
        for _ in range(steps):
            trainer.train_step()
    finally:
        trainer.close()
    return seen


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:batch norm in G normalises over 8 images")
def test_hamgan_and_sagan_of_one_seed_train_on_the_same_batches_and_latents(tmp_path):
    """3 steps of HamGAN and of SAGAN (train.paired, the default): the same real images and labels (data order and
    flips), and the same latents and fake labels, draw for draw. Unpaired (the global generator), the Hamburger's
    bases would shift the latents after the first forward."""
    ham = spied_batches(tmp_path, "ham")
    sagan = spied_batches(tmp_path, "attention")
    for key in ("x", "y", "z", "y_fake"):
        assert len(ham[key]) == len(sagan[key]) > 0
        for i, (a, b) in enumerate(zip(ham[key], sagan[key])):
            assert torch.equal(a, b), f"{key} #{i} differs"
    assert len(ham["z"]) == 6  # a D and a G update per step
    ham_old = spied_batches(tmp_path / "unpaired", "ham", paired=False)
    sagan_old = spied_batches(tmp_path / "unpaired", "attention", paired=False)
    assert torch.equal(ham_old["z"][0], sagan_old["z"][0])  # the first draw precedes every Hamburger forward
    assert not torch.equal(ham_old["z"][1], sagan_old["z"][1])
