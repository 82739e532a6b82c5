"""notebooks/quickstart.ipynb: stored clean and valid, and runs end to end (nbclient) on a tiny budget."""

import os
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_valid_and_stored_without_outputs():
    nb = read_notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "HAMGAN_NB_STEPS" in code[0].source


def execute(monkeypatch, env: dict[str, str]) -> tuple[str, int]:
    """Run the notebook with ``env`` set; returns its printed text and the number of figures."""
    from nbclient import NotebookClient

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HAMGAN_NB_THREADS", "1")
    monkeypatch.setenv("HAMGAN_CONFIGS", str(REPO / "configs"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend returns the figures
    nb = read_notebook()
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) when a cell fails

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "coefficient maps: (1, 1, 4, 16, 16)" in text
    assert "attention maps: (1, 16, 16, 8, 8)" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    return text, len(figures)


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    if not FMNIST.is_dir() and not os.environ.get("CI"):
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST} (apt-get install dataset-fashion-mnist)")
    text, figures = execute(monkeypatch, {"HAMGAN_NB_STEPS": "4", "HAMGAN_NB_OUT": str(tmp_path / "runs")})
    assert figures == 5  # two class grids, the interpolation, the NMF maps, the attention maps
    for name in ("hamgan", "sagan"):
        assert (tmp_path / "runs" / name / "ckpt-000000004.pt").is_file()


@pytest.mark.slow
def test_notebook_shows_the_committed_study_checkpoints(tmp_path, monkeypatch):
    """The README's way of looking at the study's generators: no training, the 4000-step checkpoints."""
    ckpts = REPO / "results" / "fmnist32" / "checkpoints"
    text, figures = execute(monkeypatch, {"HAMGAN_NB_HAM": str(ckpts / "hamgan-seed0.pt"),
                                          "HAMGAN_NB_SAGAN": str(ckpts / "sagan-seed0.pt"),
                                          "HAMGAN_NB_OUT": str(tmp_path / "runs")})
    assert figures == 5
    assert "HamGAN generator at step 4000" in text and "SAGAN generator at step 4000" in text
    assert not (tmp_path / "runs").exists()  # nothing was trained
