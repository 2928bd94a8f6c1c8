"""The Pangeo-style example notebook runs end to end (one short epoch) and is stored clean."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "downscaling_era5.ipynb"
PARAMETERS = "EPOCHS = 12\nSTEPS_PER_EPOCH = 12"


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in _code_cells(nb):
        assert cell.outputs == [], cell.source
        assert cell.execution_count is None, cell.source
    # the first code cell holds the parameters the test overrides
    assert _code_cells(nb)[0].source == PARAMETERS


def test_notebook_executes(tmp_path, monkeypatch):
    output = tmp_path / "output"
    monkeypatch.setenv("XR_DL4DS_OUTPUT", str(output))  # inherited by the kernel
    # one torch thread in the kernel too (see conftest.one_torch_thread)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = _code_cells(nb)[0]
    first.source = "EPOCHS = 1\nSTEPS_PER_EPOCH = 2"
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()  # raises CellExecutionError on any failing cell

    # the evaluate cell printed the RMSE of the model and of both baselines
    text = "".join(
        out.get("text", "")
        for cell in _code_cells(nb)
        for out in cell.outputs
        if out.output_type == "stream"
    )
    found = dict(re.findall(r"RMSE (\w+): (\S+) K", text))
    assert set(found) == {"resnet", "bicubic", "lapse_rate"}, text
    assert math.isfinite(float(found["resnet"]))
    assert float(found["bicubic"]) > 1.0

    # maps, metric bars and learning curves were rendered
    images = [
        out
        for cell in _code_cells(nb)
        for out in cell.outputs
        if out.output_type == "display_data" and "image/png" in out.get("data", {})
    ]
    assert len(images) >= 3
    # the lazy downscaling shows its dask repr
    html = "".join(
        out.get("data", {}).get("text/html", "")
        for cell in _code_cells(nb)
        for out in cell.outputs
        if out.output_type == "execute_result"
    )
    assert "dask.array" in html
    # the outputs went to $XR_DL4DS_OUTPUT, nothing to the working directory
    assert sorted(p.name for p in output.iterdir()) == ["t2m_downscaled.zarr", "t2m_resnet.dl4ds"]
    assert list(cwd.iterdir()) == []
