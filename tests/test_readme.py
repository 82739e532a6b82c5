"""README keeps the sections the issues ask for, and its links to its own headings resolve (GitHub's anchors)."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
HEADINGS = re.findall(r"^#{2,3} (.+)$", README, re.M)

REQUIRED = (  # the start of each heading
    "Two commands", "Training", "Runbook: ImageNet 128x128 on GPUs", "Evaluation and sampling",
    "Configs and model sizes", "The official recipe, row by row", "Parity with TF-GAN",
    "Layout of HamGAN-128 beside the official one", "Cost of the context block", "Training throughput",
    "GPU check", "FID speed", "Reproducing the paper's claim at small scale", "Batch-norm statistics of the study",
    "The pilot", "Tests",
)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_github_anchor_rule():
    assert github_anchor("FID speed (`python scripts/bench_fid.py`)") == "fid-speed-python-scriptsbench_fidpy"
    assert github_anchor("At the study's size and at ImageNet-128's (`--configs`)") == \
        "at-the-studys-size-and-at-imagenet-128s---configs"


def test_readme_keeps_the_required_sections():
    missing = [name for name in REQUIRED if not any(h.startswith(name) for h in HEADINGS)]
    assert missing == []


def test_links_to_headings_resolve():
    anchors = {github_anchor(h) for h in HEADINGS}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links and [link for link in links if link not in anchors] == []
