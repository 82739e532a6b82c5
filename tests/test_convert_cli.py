"""A converted checkpoint used as hamgan's own: every command of docs/pretrained.md's bash blocks (hamgan-convert,
hamgan-sample grids, truncation and interpolation, hamgan-eval fid under both protocols, hamgan-train resuming 2
steps with the converted Adam moments on the CPU from a synthetic ImageNet folder).

The "TF checkpoint" is a DictReader of the official graph's variables (the official recipe at width 4, 1000
classes); make convert-check runs the same path with files TensorFlow writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.checkpoint import load_checkpoint
from hamgan.config import load_config
from hamgan.convert import cli
from hamgan.convert.mapping import layout, to_tf
from hamgan.convert.tf_reader import DictReader
from hamgan.nn.from_config import discriminator_from_config, generator_from_config

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "pretrained.md"
MODEL = ["model.resolution=32", "model.num_classes=1000", "model.z_dim=16", "model.g.channels=4",
         "model.d.channels=4", "model.g.context_res=16", "model.d.context_res=16", "model.g.ham.dim=8",
         "model.g.ham.rank=2", "model.d.ham.dim=8", "model.d.ham.rank=2", "model.g.ham.steps=2", "model.d.ham.steps=2"]
TRAIN = ["train.batch_size=4", "train.threads=1", "train.fid.every=0", "train.sample_every=0", "train.ckpt_every=1",
         "log.wandb=disabled", "log.tqdm=false", "data.num_workers=0"]
STEP = 900_000
EVAL = ["--n", "4", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]


def official_checkpoint() -> dict[str, np.ndarray]:
    """The official graph's variables of the small model, Adam slots and counters: random, non-trivial."""
    cfg = load_config(ROOT / "configs" / "imagenet128_hamgan_baby.yaml", MODEL)
    torch.manual_seed(0)
    G, D = generator_from_config(cfg.model), discriminator_from_config(cfg.model)
    rng = np.random.default_rng(0)
    arrays = {"global_step": np.int64(STEP), "beta1_power": np.float32(0.0), "beta2_power": np.float32(0.3)}
    for net, module in (("G", G), ("D", D)):
        state = module.state_dict()
        for e in layout(module, net):
            value = to_tf(e, state[e.key].numpy())
            if e.key.endswith(("running_var", "gain")):
                value = rng.uniform(0.5, 1.5, e.tf_shape)
            elif e.key.endswith(("running_mean", ".bias", "sigma")):
                value = rng.uniform(-0.3, 0.3, e.tf_shape)
            arrays[e.tf_name] = np.asarray(value, np.float32)
            if e.trainable:
                arrays[f"{e.tf_name}/Adam"] = rng.normal(0, 1e-3, e.tf_shape).astype(np.float32)
                arrays[f"{e.tf_name}/Adam_1"] = rng.uniform(0, 1e-6, e.tf_shape).astype(np.float32)
    return arrays


def write_imagenet(root: Path, classes: int = 1000) -> None:
    """root/{train,val}/n<k>/0.JPEG: one small image per class (wnid-like names sort in class order)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for k in range(classes):
            (root / split / f"n{k:08d}").mkdir(parents=True)
            image = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"n{k:08d}" / "0.JPEG")


def doc_commands(path: Path = DOC) -> list[str]:
    """The commands of the fenced bash blocks of the "Pretrained models" section of ``path`` (docs/pretrained.md)."""
    text = path.read_text()
    section = text.split("## Pretrained models", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()
            and not line.strip().startswith("#")]


def test_docs_section_has_the_commands_the_issue_asks_for():
    commands = doc_commands()
    tools = [c.split()[0] for c in commands]
    assert tools.count("hamgan-convert") == 2 and "hamgan-train" in tools
    assert any("--truncation" in c for c in commands) and any("--interpolate" in c for c in commands)
    assert any("--protocol hamgan-tf" in c and c.startswith("hamgan-eval fid") for c in commands)
    assert any(c.startswith("hamgan-eval fid") and "--protocol" not in c for c in commands)
    assert "| HamGAN-baby | 16.05 |" in DOC.read_text() and "| HamGAN-strong | 14.77 |" in DOC.read_text()


def test_readme_commands_are_docs_commands_that_the_slow_test_runs():
    """README's "Pretrained models" commands are among docs/pretrained.md's, which the next test runs."""
    readme = doc_commands(ROOT / "README.md")
    assert [c.split()[0] for c in readme] == ["pip", "hamgan-convert", "hamgan-sample"]
    assert set(readme) <= set(doc_commands())


@pytest.mark.slow
def test_every_command_of_the_docs_runs_on_a_converted_checkpoint(tmp_path: Path, monkeypatch, capsys, fid_weights):
    from hamgan.evaluate import main as eval_main
    from hamgan.sample import main as sample_main
    from hamgan.train import main as train_main

    tf = DictReader(official_checkpoint(), source="HamGAN-baby/model.ckpt-900000")
    opened = []
    monkeypatch.setattr("hamgan.convert.tf_reader.open_reader", lambda path, python=None: opened.append(path) or tf)
    write_imagenet(tmp_path / "imagenet")
    monkeypatch.chdir(tmp_path)
    tools = {"hamgan-convert": cli.main, "hamgan-sample": sample_main, "hamgan-eval": eval_main,
             "hamgan-train": train_main}
    ran = []
    for command in doc_commands():
        if command.startswith(("pip ", "make ")):
            continue
        argv = shlex.split(command.replace("configs/", f"{ROOT}/configs/").replace("/data/imagenet",
                                                                                   str(tmp_path / "imagenet")))
        tool, args = argv[0], argv[1:]
        if tool == "hamgan-convert":
            args += MODEL
        elif tool == "hamgan-sample":
            args += ["--device", "cpu", "--batch-size", "4"]
        elif tool == "hamgan-eval":
            args += EVAL
        elif tool == "hamgan-train":
            args += [*MODEL, *TRAIN, "--steps", str(STEP + 2)]
        status = tools[tool](args)
        captured = capsys.readouterr()
        assert status in (0, None), f"{command}: {captured.err[-2000:]}"
        ran.append((tool, args, captured.out))
    assert opened == ["HamGAN-baby", "HamGAN-baby"]
    assert [t for t, *_ in ran].count("hamgan-eval") == 4
    for name in ("hamgan_baby_grid.png", "hamgan_baby_truncated.png", "hamgan_baby_interpolation.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    fids = [out for tool, args, out in ran if tool == "hamgan-eval" and args[0] == "fid"]
    assert len(fids) == 2 and all('"fid"' in out for out in fids)
    # hamgan-train resumed the converted run: 2 more steps, the optimizer moments carried on
    run = tmp_path / "runs" / "hamgan_baby"
    first, last = load_checkpoint(run / f"ckpt-{STEP:09d}.pt"), load_checkpoint(run / f"ckpt-{STEP + 2:09d}.pt")
    assert first["step"] == STEP and last["step"] == STEP + 2
    assert int(first["opt_G"]["state"][0]["step"]) == STEP and int(last["opt_G"]["state"][0]["step"]) == STEP + 2


def test_docs_record_a_passing_convert_check():
    """make convert-check's table in docs/pretrained.md: every row agrees, the TF-GAN outputs in both modes."""
    section = DOC.read_text().split("## Checks against TensorFlow", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| check")]
    assert len(rows) == 8 and all(row.endswith("| yes |") for row in rows)
    for check in ("G images, training mode", "G images, eval mode", "D logits, training mode",
                  "official HamGAN list", "truncated data file"):
        assert any(row.startswith(f"| {check}") for row in rows), check
    assert re.search(r"Output of \d{4}-\d{2}-\d{2}", section)
