"""Sampling a trained generator: truncated latents, uint8 images as PNG would store them, class grids, interpolation.

Library (reused by the evaluator, the trainer and the notebook)::

    z = truncated_z(n, z_dim, truncation, generator)          # (n, z_dim), normal truncated to [-T, T]
    x = sample_images(G, n, classes, truncation, seed, bn="standing")   # uint8 (n, 3, R, R)
    grid = class_grid(G, classes, per_class, truncation, seed)  # float (len(classes) * per_class, C, R, R) in [0,1]

Every sampling function puts G in eval mode for the call and leaves it as it was; ``bn`` chooses the batch-norm
statistics (:mod:`hamgan.bn_modes`: "running", "standing", "batch" or a :class:`~hamgan.bn_modes.BNMode`; None:
as an enclosing ``bn_mode`` block set them, else running).

CLI ``hamgan-sample CKPT --out PATH``: ``--out grid.png`` writes one row per class, ``--out folder`` one PNG per
image, ``--npz`` an ``arr_0`` array of uint8 (N, H, W, 3) images and their labels ``arr_1`` (N,) for external
evaluators (plus how they were made: ``source``, ``step``, ``bn`` as JSON, ``truncation`` (NaN: none), ``seed``),
``--interpolate A,B`` a row per class walking from seed A's latent to seed B's. ``--bn`` defaults to
standing statistics for the EMA generator and running ones for the raw G.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torchvision.utils import save_image

from hamgan.bn_modes import BN_MODES, SN_REFRESH_EMA, BNMode, default_mode, sampling_mode
from hamgan.checkpoint import CheckpointError, load_generator_ema
from hamgan.data.fmnist import CLASSES as FMNIST_CLASSES
from hamgan.latents import check_classes, label_pool, seeded_rng, truncated_z


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output float (B, C, H, W) in [-1, 1] -> uint8 (B, 3, H, W), exactly as ``save_image`` to PNG.

    ``(x + 1) / 2``, then torchvision's ``mul(255).add_(0.5).clamp_(0, 255)`` and truncation to uint8; a grey image
    (C = 1) is repeated to 3 channels, as reading its PNG with ``.convert('RGB')`` does.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
    u8 = ((x.float() + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return u8.expand(-1, 3, -1, -1).contiguous() if u8.shape[1] == 1 else u8


def to_float255(x: torch.Tensor) -> torch.Tensor:
    """Generator output float (B, C, H, W) in [-1, 1] -> float32 (B, 3, H, W) in [0, 255], not quantised."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
    f = (x.float() + 1) * 127.5
    return f.expand(-1, 3, -1, -1).contiguous() if f.shape[1] == 1 else f


def iter_samples(
    G: nn.Module, n: int, batch_size: int = 100, classes: Sequence[int] | None = None,
    truncation: float | None = None, seed: int = 0, device: str | torch.device | None = None,
    *, bn: BNMode | str | None = None, labels: bool = False, quantize: bool = True,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` images of G as uint8 (B, 3, R, R) batches (on ``device``), labels uniform over ``classes`` (all).

    Latents and labels are drawn on the CPU from ``seed``; the global RNG (Hamburger bases) is seeded per batch
    from ``seed`` and the batch index, so samples are reproducible for a given seed and batch size. G is in eval
    mode with the ``bn`` statistics while the batches are drawn. ``labels``: yield ``(images, labels (B,))``.
    ``quantize=False``: float32 images in [0, 255] instead of uint8 (no PNG quantisation).
    """
    if n <= 0:
        raise ValueError(f"number of samples must be positive, got {n}")
    if device is None:
        device = next(G.parameters()).device
    pool = label_pool(G, classes)
    gen = torch.Generator().manual_seed(seed)
    z = truncated_z(n, G.z_dim, truncation, gen)
    y = pool[torch.randint(len(pool), (n,), generator=gen)]
    convert = to_uint8 if quantize else to_float255
    with sampling_mode(G, bn, classes, truncation, seed, device), torch.inference_mode():
        for k, i in enumerate(range(0, n, batch_size)):
            with seeded_rng(seed * 1_000_003 + k, device):
                x = convert(G(z[i:i + batch_size].to(device), y[i:i + batch_size].to(device)))
            yield (x, y[i:i + batch_size]) if labels else x


def sample_images(
    G: nn.Module, n: int, classes: Sequence[int] | None = None, truncation: float | None = None, seed: int = 0,
    batch_size: int = 100, device: str | torch.device | None = None, *, bn: BNMode | str | None = None,
) -> torch.Tensor:
    """``n`` images of G as one uint8 (n, 3, R, R) CPU tensor; see :func:`iter_samples`."""
    return torch.cat([b.cpu() for b in iter_samples(G, n, batch_size, classes, truncation, seed, device, bn=bn)])


def class_names(dataset: str, num_classes: int) -> list[str] | None:
    """The names of the classes of a model trained on ``dataset`` (``data.name``), by label; None if unknown.

    ImageNet: the 1000 class names of torchvision's ImageNet weights (``categories``), in the order of the sorted
    synsets (n01440764 tench, n01443537 goldfish, ...), which is how the official pipeline and ImageFolder number the
    classes. Fashion-MNIST: its 10 garment names.
    """
    if dataset == "imagenet" and num_classes == 1000:
        from torchvision.models import ResNet50_Weights  # the names live with torchvision's ImageNet weights' metadata

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if dataset == "fmnist" and num_classes == len(FMNIST_CLASSES):
        return list(FMNIST_CLASSES)
    return None


def class_grid(
    G: nn.Module, classes: Sequence[int], per_class: int = 8, truncation: float | None = None, seed: int = 0,
    device: str | torch.device | None = None, *, bn: BNMode | str | None = None,
) -> torch.Tensor:
    """Float (len(classes) * per_class, C, R, R) in [0, 1]: row k shows ``per_class`` samples of ``classes[k]``.

    The same ``per_class`` latents are used in every row, so columns show one latent across classes.
    Pass to ``save_image(grid, path, nrow=per_class)``. Standing statistics (``bn``) follow the grid's classes.
    """
    check_classes(classes, G.num_classes)
    device = next(G.parameters()).device if device is None else device
    z = truncated_z(per_class, G.z_dim, truncation, torch.Generator().manual_seed(seed))
    z = z.repeat(len(classes), 1)
    y = torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(per_class)
    with sampling_mode(G, bn, classes, truncation, seed, device), torch.inference_mode(), seeded_rng(seed, device):
        x = G(z.to(device), y.to(device))
    return ((x.float() + 1) / 2).clamp(0, 1).cpu()


def interpolation_grid(
    G: nn.Module, classes: Sequence[int], seed_a: int, seed_b: int, steps: int = 8,
    truncation: float | None = None, device: str | torch.device | None = None, *, bn: BNMode | str | None = None,
) -> torch.Tensor:
    """Float (len(classes) * steps, C, R, R) in [0, 1]: per class, linear path from seed_a's latent to seed_b's."""
    if steps < 2:
        raise ValueError(f"--steps must be at least 2, got {steps}")
    check_classes(classes, G.num_classes)
    device = next(G.parameters()).device if device is None else device
    za = truncated_z(1, G.z_dim, truncation, torch.Generator().manual_seed(seed_a))
    zb = truncated_z(1, G.z_dim, truncation, torch.Generator().manual_seed(seed_b))
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    z = ((1 - t) * za + t * zb).repeat(len(classes), 1)
    y = torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(steps)
    with (sampling_mode(G, bn, classes, truncation, seed_a, device), torch.inference_mode(),
          seeded_rng(seed_a, device)):
        x = G(z.to(device), y.to(device))
    return ((x.float() + 1) / 2).clamp(0, 1).cpu()


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,3, got '{text}'") from None


def _seed_pair(text: str) -> tuple[int, int]:
    values = _int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two seeds SEED_A,SEED_B, got '{text}'")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hamgan-sample", description="Sample a trained HamGAN generator: class grid, PNG folder or .npz.")
    p.add_argument("checkpoint", help="checkpoint file (ckpt-*.pt) or run folder (latest checkpoint)")
    p.add_argument("--out", required=True,
                   help="grid.png: one row per class; a path without .png: a folder of PNGs (or .npz with --npz)")
    p.add_argument("--classes", type=_int_list, default=None,
                   help="comma-separated class indices (default: the first min(10, num_classes) for grids, all "
                        "for folders/npz)")
    p.add_argument("--n", type=int, default=None,
                   help="images per class in a grid (default 8), or total images for a folder / .npz "
                        "(default 50000)")
    p.add_argument("--truncation", type=float, default=None,
                   help="truncation T > 0: latents from the normal truncated to [-T, T]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA generator (default) or the raw G (--no-ema)")
    p.add_argument("--npz", action="store_true",
                   help="write uint8 (N, H, W, 3) images as 'arr_0' and their labels as 'arr_1' to OUT(.npz)")
    p.add_argument("--interpolate", type=_seed_pair, default=None, metavar="SEED_A,SEED_B",
                   help="grid of latent interpolations between two seeds, one row per class")
    p.add_argument("--steps", type=int, default=8, help="images per interpolation row")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_bn_arguments(p)
    return p


def add_bn_arguments(p: argparse.ArgumentParser) -> None:
    """--bn, --bn-batches, --bn-batch-size, --sn-refresh (shared with hamgan-eval)."""
    g = p.add_argument_group("batch-norm statistics (hamgan.bn_modes)")
    g.add_argument("--bn", choices=("auto",) + BN_MODES, default="auto",
                   help="running: stored statistics; standing: recomputed on S batches of samples (BigGAN); batch: "
                        "per-batch statistics (official HamGAN). auto (default): standing for the EMA generator, "
                        "running for the raw G")
    g.add_argument("--bn-batches", type=int, default=16, metavar="S", help="standing: batches accumulated (16)")
    g.add_argument("--bn-batch-size", type=int, default=100, help="standing: images per batch (100)")
    g.add_argument("--sn-refresh", type=int, default=None, metavar="K",
                   help="power iterations re-estimating spectral-norm u, v for the sampled weights (default: "
                        f"{SN_REFRESH_EMA} for the EMA generator, 0 for the raw G)")


def bn_from_args(args: argparse.Namespace, ema: bool, mode: str | None = None) -> BNMode:
    """The BNMode of parsed --bn* arguments for an EMA (``ema``) or raw generator; ``mode`` overrides --bn."""
    mode = mode or (default_mode(ema) if args.bn == "auto" else args.bn)
    sn = args.sn_refresh if args.sn_refresh is not None else (SN_REFRESH_EMA if ema else 0)
    return BNMode(mode, args.bn_batches, args.bn_batch_size, sn)


def run(args: argparse.Namespace) -> str:
    """Do what the parsed command line asks; returns a one-line summary."""
    from tqdm import tqdm

    if args.truncation is not None and args.truncation <= 0:
        raise ValueError(f"--truncation must be > 0, got {args.truncation}")
    if args.n is not None and args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    G, cfg, step, is_ema = load_generator_ema(args.checkpoint, args.ema, args.device)
    bn = bn_from_args(args, ema=is_ema)
    print(f"batch norm: {bn.describe()}", file=sys.stderr)
    if args.classes is not None:
        check_classes(args.classes, G.num_classes)
    out = Path(args.out)
    out_is_grid = out.suffix.lower() == ".png"

    if args.interpolate is not None or (out_is_grid and not args.npz):
        classes = args.classes if args.classes is not None else list(range(min(10, G.num_classes)))
        if args.interpolate is not None:
            grid = interpolation_grid(G, classes, *args.interpolate, args.steps, args.truncation, args.device, bn=bn)
            nrow = args.steps
        else:
            nrow = args.n or 8
            grid = class_grid(G, classes, nrow, args.truncation, args.seed, args.device, bn=bn)
        if out.suffix.lower() != ".png":
            out = out.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, out, nrow=nrow, padding=2)
        legend = out.with_suffix(".txt")
        names = class_names(cfg.data.name, G.num_classes)
        legend.write_text("".join(f"row {r}: class {k}" + (f" {names[k]}" if names else "") + "\n"
                                  for r, k in enumerate(classes)))
        return f"wrote {out} ({len(classes)} rows x {nrow}, step {step}, BN {bn.describe()}; rows named in {legend})"

    n = args.n or 50_000
    batches = iter_samples(G, n, args.batch_size, args.classes, args.truncation, args.seed, args.device, bn=bn,
                           labels=True)
    bar = tqdm(total=n, desc="sampling", unit="img", disable=n < 1000)
    if args.npz:
        out = out if out.suffix == ".npz" else out.with_suffix(".npz")
        images, labels = [], []
        for b, y in batches:
            images.append(b.permute(0, 2, 3, 1).cpu().numpy())
            labels.append(y.numpy())
            bar.update(len(b))
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, arr_0=np.concatenate(images), arr_1=np.concatenate(labels), source=str(args.checkpoint),
                 step=step, bn=json.dumps(bn.as_dict()), truncation=np.nan if args.truncation is None
                 else args.truncation, seed=args.seed)
        bar.close()
        return (f"wrote {n} images to {out} (arr_0: uint8 (N, H, W, 3), arr_1: labels (N,), step {step}, "
                f"BN {bn.describe()})")
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    i = 0
    for b, _ in batches:
        for image in b.permute(0, 2, 3, 1).cpu().numpy():
            Image.fromarray(image).save(out / f"{i:06d}.png")
            i += 1
        bar.update(len(b))
    bar.close()
    return f"wrote {n} PNGs to {out}/ (step {step}, BN {bn.describe()})"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(run(args))
    except (ValueError, CheckpointError) as e:
        print(f"hamgan-sample: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
