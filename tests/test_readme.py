"""README.md and docs/ state facts that hold: README is short and undated, every relative link resolves (files and
GitHub's heading anchors), the Hamburger example runs, and README's figures are the ones its linked pages record.
Wording and headings are free; the study's figures are recomputed from the rows in tests/test_results.py."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "results" / "fmnist32" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
# a commit hash: 7 to 40 hex digits with at least one digit and one letter (so no English word or plain number)
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '#' line inside a code block is no heading
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [a or b for a, b in LINK.findall(text)]


def test_github_anchor_rule():
    assert github_anchor("FID speed (`python scripts/bench_fid.py`)") == "fid-speed-python-scriptsbench_fidpy"
    assert github_anchor("At the study's size and at ImageNet-128's (`--configs`)") == \
        "at-the-studys-size-and-at-imagenet-128s---configs"


def test_readme_is_short_and_undated():
    text = README.read_text()
    assert len(text.splitlines()) < 250
    assert DATE.findall(text) == [] and COMMIT.findall(text) == []


def test_commit_pattern_finds_hashes_and_not_words():
    assert COMMIT.findall("at bada50e and 4813821, not in 'decade' or 'effaced' or 1234567") == ["bada50e"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert page.is_file(), page
    broken = []
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # http(s), mailto: not ours to check
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(link)
    assert broken == []


def test_readme_links_every_page_of_docs():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in links(README)}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_hamburger_example_runs():
    """The README's Python block runs as printed and keeps the input's spatial shape."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README's example
    assert namespace["out"].shape == (4, 3, 32, 32)


def test_results_rows_name_a_command_and_a_machine():
    rows = [line for line in README.read_text().splitlines()
            if line.startswith("| [") and line.count(" | ") == 3]
    assert len(rows) >= 5
    for row in rows:
        _, _, command, machine = row.strip("| ").split(" | ")
        assert command.startswith("`") and command.endswith("`") and machine.strip(), row


def test_readme_parity_figure_is_the_recorded_run(readme):
    """README's parity row quotes the check count and the largest relative difference of docs/recipe.md's table."""
    section = readme("Parity with TF-GAN (`make parity`)", "docs/recipe.md")
    rows = [line.strip("| ").split(" | ") for line in section.splitlines()
            if line.startswith("| ") and "---" not in line and not line.startswith("| check")]
    largest = max(rows, key=lambda cells: float(cells[3]))[3]
    row = next(line for line in README.read_text().splitlines() if line.startswith("| [Parity"))
    assert f"all {len(rows)} checks" in row and f"largest relative difference {largest}" in row
