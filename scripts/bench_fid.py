"""Side-by-side speed and parity of folder FID: pytorch-fid's own feature path vs hamgan.metrics.

    python scripts/bench_fid.py --fmnist 500                  # writes two folders of Fashion-MNIST PNGs first
    python scripts/bench_fid.py A B [--device cuda]

pytorch-fid is run as its command runs it (``InceptionV3([3])``, the loop of ``get_activations`` with batch 50 and
``min(8, cpus)`` loader workers); hamgan as ``hamgan-eval fid`` runs it (``folder_batches`` with a worker per core,
``InceptionFeatures``). The two alternate batch by batch (and which goes first alternates), so load from other
processes hits both alike. Model loading is timed separately, and one untimed warm-up batch goes through each
network first; neither counts in images/s. Prints images/s of both, the ratio, the largest absolute difference of
the pool3 features, and both FIDs. Then the Fréchet distance itself on the same statistics: ours
(:func:`hamgan.metrics.fid.frechet_distance`, eigenvalues, no sqrtm) beside pytorch-fid's algorithm (``scipy.linalg.
sqrtm`` of sigma1 sigma2, called as every SciPy from 1.10 to 1.18 accepts it: ``method="sqrtm"``, ``hamgan-eval
--distance sqrtm``), with the time of each.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import scipy
import torch
import torchvision.transforms as TF
from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3

from hamgan.metrics.features import default_workers, folder_batches, list_images
from hamgan.metrics.fid import frechet_distance
from hamgan.metrics.stats import FeatureStats
from hamgan.metrics.summary import frechet_distance_of_features
from hamgan.metrics.inception import InceptionFeatures


TARGET_SPEEDUP = 2.0  # issue 9: hamgan's feature extraction at least twice pytorch-fid's images/s


class Recording(torch.nn.Module):
    """Wraps InceptionFeatures and keeps every batch of features (to compare them with pytorch-fid's)."""

    def __init__(self, inception: InceptionFeatures):
        super().__init__()
        self.inception = inception
        self.features: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.inception(images)
        self.features.append(features.cpu())
        return features, logits


def write_fmnist_folders(n: int, root: Path) -> tuple[Path, Path]:
    """First ``n`` Fashion-MNIST train and test images (IDX order) as RGB PNGs, unchanged 28x28 grey."""
    from PIL import Image

    from hamgan.data.fmnist import DEBIAN_ROOT, read_idx

    folders = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        folder = root / f"fmnist-{split}-{n}"
        if not folder.is_dir() or len(list(folder.glob("*.png"))) != n:
            folder.mkdir(parents=True, exist_ok=True)
            images = read_idx(DEBIAN_ROOT / f"{prefix}-images-idx3-ubyte.gz")[:n]
            for i, image in enumerate(images):
                Image.fromarray(image).convert("RGB").save(folder / f"{i:05d}.png")
        folders.append(folder)
    return folders[0], folders[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="*", help="two image folders (or use --fmnist N)")
    p.add_argument("--fmnist", type=int, default=None, metavar="N", help="bench on N Fashion-MNIST train/test PNGs")
    p.add_argument("--workdir", default="/tmp/hamgan_bench_fid", help="where --fmnist writes its folders")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=50, help="hamgan batch size (pytorch-fid: its default 50)")
    p.add_argument("--num-workers", type=int, default=default_workers(),
                   help="hamgan decoding workers (default: one per core, as hamgan-eval)")
    args = p.parse_args()
    if args.fmnist is not None:
        folders = list(write_fmnist_folders(args.fmnist, Path(args.workdir)))
    elif len(args.folders) == 2:
        folders = [Path(f) for f in args.folders]
    else:
        p.error("give two folders or --fmnist N")
    device = torch.device(args.device)
    pfid_workers = min(8, len(os.sched_getaffinity(0)))
    print(f"device {device}, torch threads {torch.get_num_threads()}, pytorch-fid workers {pfid_workers}, "
          f"hamgan workers {args.num_workers}, batch {args.batch_size}")

    t = time.perf_counter()
    theirs_model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()  # as get_activations
    load_theirs = time.perf_counter() - t
    t = time.perf_counter()
    ours_model = Recording(InceptionFeatures().to(device))
    load_ours = time.perf_counter() - t

    # one untimed batch through each network first: oneDNN builds its kernels on the first call, which a short run
    # would otherwise charge to whichever path happens to go first
    from PIL import Image

    width, height = Image.open(list_images(folders[0])[0]).size
    warm = torch.randint(0, 256, (50, 3, height, width), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        theirs_model(warm.float() / 255)  # pytorch-fid: ToTensor's [0, 1]
        ours_model(warm)  # hamgan: uint8
    ours_model.features.clear()
    time_theirs = time_ours = 0.0
    n_total = 0
    stats_theirs, stats_ours, acts, max_diff = [], [], [], 0.0
    for k, folder in enumerate(folders):
        files = list_images(folder)
        n_total += len(files)
        # pytorch-fid's get_activations loop (its dataset, ToTensor, loader workers, model, squeeze), one batch at a
        # time, alternating batch by batch with hamgan's folder path, so a change of machine load hits both alike
        theirs_loader = iter(torch.utils.data.DataLoader(
            fid_score.ImagePathDataset(files, transforms=TF.ToTensor()), batch_size=50, shuffle=False,
            drop_last=False, num_workers=pfid_workers))
        ours_loader, _ = folder_batches(folder, args.batch_size, args.num_workers)
        theirs_act, ours_stats = [], FeatureStats()
        ours_model.features.clear()
        for b in range(-(-len(files) // 50)):
            for who in (("theirs", "ours") if (b + k) % 2 == 0 else ("ours", "theirs")):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                with torch.no_grad() if who == "theirs" else torch.inference_mode():
                    if who == "theirs":
                        pred = theirs_model(next(theirs_loader).to(device))[0]
                        theirs_act.append(pred.squeeze(3).squeeze(2).cpu().numpy())
                        time_theirs += time.perf_counter() - t
                    else:
                        ours_stats.update(ours_model(next(ours_loader).to(device))[0])
                        time_ours += time.perf_counter() - t
        act = np.concatenate(theirs_act)
        acts.append(act)
        stats_theirs.append((np.mean(act, axis=0), np.cov(act, rowvar=False)))
        stats_ours.append((ours_stats.mean(), ours_stats.cov()))
        ours_act = torch.cat(ours_model.features).double().numpy()
        max_diff = max(max_diff, float(np.abs(ours_act - act).max()))

    fid_theirs = frechet_distance(*stats_theirs[0], *stats_theirs[1])
    fid_ours = frechet_distance(*stats_ours[0], *stats_ours[1])
    speed_theirs, speed_ours = n_total / time_theirs, n_total / time_ours
    print()
    print("| path | model load s | images | feature s | images/s | FID |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| pytorch-fid get_activations | {load_theirs:.1f} | {n_total} | {time_theirs:.1f} | {speed_theirs:.2f} "
          f"| {fid_theirs:.6f} |")
    print(f"| hamgan folder_batches + InceptionFeatures | {load_ours:.1f} | {n_total} | {time_ours:.1f} | {speed_ours:.2f} "
          f"| {fid_ours:.6f} |")
    print()
    ratio = speed_ours / speed_theirs
    print(f"speed ratio hamgan / pytorch-fid: {ratio:.2f}x (target >= {TARGET_SPEEDUP}x: "
          f"{'met' if ratio >= TARGET_SPEEDUP else 'NOT met'})")
    print(f"max |feature difference|: {max_diff:.2e}")
    print(f"|FID difference|: {abs(fid_ours - fid_theirs):.2e}")

    t = time.perf_counter()
    fid_eig = frechet_distance(*stats_theirs[0], *stats_theirs[1])
    time_eig = time.perf_counter() - t
    t = time.perf_counter()
    fid_sqrtm = frechet_distance(*stats_theirs[0], *stats_theirs[1], method="sqrtm")
    time_sqrtm = time.perf_counter() - t
    print(f"\nFréchet distance of pytorch-fid's statistics (2048-d, {n_total // len(folders)} images per side), "
          f"SciPy {scipy.__version__}:\n")
    print("| distance | s | FID |")
    print("| --- | ---: | ---: |")
    print(f"| hamgan frechet_distance (eigenvalues, float64) | {time_eig:.2f} | {fid_eig:.6f} |")
    print(f"| pytorch-fid algorithm (scipy.linalg.sqrtm) | {time_sqrtm:.2f} | {fid_sqrtm:.6f} |")
    exact = frechet_distance_of_features(torch.from_numpy(acts[0]), torch.from_numpy(acts[1]))
    print(f"| exact: SVD of the centred features' cross product | | {exact:.6f} |")
    print(f"\nrelative difference to sqrtm {abs(fid_eig - fid_sqrtm) / fid_sqrtm:.1e}, to the exact value "
          f"{abs(fid_eig - exact) / exact:.1e} (sqrtm's: {abs(fid_sqrtm - exact) / exact:.1e})")


if __name__ == "__main__":
    main()
