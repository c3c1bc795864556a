"""The notebooks run top to bottom in a fresh kernel and show what they promise.

Each notebook runs with nbclient in its own folder (as Jupyter would run it). The quickstart
gets shorter settings through a cell inserted after its ``parameters`` cell; the results
notebook reads a small ``results.json`` named by ``QMIMIC_BENCH_RESULTS``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import bench_results_example, tiny_overrides

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300

SHORT_SCHEDULE = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.budget.rpn_pre_nms_top_n_train=100",
    "data.budget.rpn_post_nms_top_n_train=30",
    "data.budget.rpn_pre_nms_top_n_test=50",
    "data.budget.rpn_post_nms_top_n_test=10",
    "data.budget.box_batch_size_per_image=8",
]


def with_parameters(notebook: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """``notebook`` with a cell assigning ``values`` right after its ``parameters`` cell."""
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged, "the notebook has no cell tagged 'parameters'"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source))
    return notebook


def execute(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` run in a fresh ``python3`` kernel in the notebooks folder, outputs filled.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised.
    """
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    return client.execute()


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    """Every output of every code cell, in order."""
    return [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]


def rich(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    """The ``mime`` payloads of the displayed results (``display_data`` or ``execute_result``)."""
    return [o["data"][mime] for o in outputs(notebook) if mime in o.get("data", {})]


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the cells wrote to stdout and stderr."""
    return "".join(o["text"] for o in outputs(notebook) if o["output_type"] == "stream")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.cells[0].metadata.get("tags") == ["parameters"]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


@pytest.mark.slow
def test_quickstart_trains_and_draws_detections(
    shapes_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("QMIMIC_CACHE", str(shapes_cache))
    notebook = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    run_dir = tmp_path / "quickstart"
    overrides = [*tiny_overrides(shapes_cache, tmp_path / "logs"), *SHORT_SCHEDULE]
    notebook = with_parameters(
        notebook, OUTPUT_DIR=str(run_dir), OVERRIDES=overrides, NUM_IMAGES=2, SCORE_THRESHOLD=0.0
    )

    executed = execute(notebook)

    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 2
    assert 0.0 <= results["test/voc07_map"] <= 1.0
    assert printed(executed).count("test_0000") == 2  # one line of detections per image
    assert len(rich(executed, "image/png")) == 1  # the grid of drawn images


@pytest.mark.slow
def test_results_shows_tables_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(bench_results_example()))
    monkeypatch.setenv("QMIMIC_BENCH_RESULTS", str(results_path))

    executed = execute(nbformat.read(NOTEBOOKS / "02_results.ipynb", as_version=4))

    tables = rich(executed, "text/markdown")
    assert len(tables) == 1
    assert "| ResNet18 qmimic |" in tables[0]
    assert "## int8 export" in tables[0]
    assert len(rich(executed, "image/png")) == 3  # quality, width and latency plots


@pytest.mark.slow
def test_results_without_file_says_to_run_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("QMIMIC_BENCH_RESULTS", str(tmp_path / "missing.json"))

    executed = execute(nbformat.read(NOTEBOOKS / "02_results.ipynb", as_version=4))

    assert "run `make bench`" in printed(executed)
    assert rich(executed, "text/markdown") == []
    assert rich(executed, "image/png") == []
