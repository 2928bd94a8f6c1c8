"""The quickstart runs end to end (one short epoch here; the README runs the full one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xr_dl4ds

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart.py"


def test_quickstart_runs_and_writes_everything(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        scores = module.main(tmp_path, epochs=1)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "RMSE on the 6 test steps: model" in out
    assert scores["bicubic"] > 1.0 and np.isfinite(scores["model"])
    # even one epoch of residual learning starts from bicubic and must not be worse
    assert scores["model"] < scores["bicubic"]
    nc = xr.open_dataset(tmp_path / "t2m_downscaled.nc")
    zarr = xr.open_zarr(tmp_path / "t2m_downscaled.zarr", consolidated=False)
    for ds in (nc, zarr):
        assert ds["t2m"].shape == (6, 180, 360)
        assert ds["t2m"].attrs["units"] == "K"
        assert ds["t2m"].attrs["standard_name"] == "air_temperature"
        np.testing.assert_array_equal(ds["lat"].values, np.arange(90.0, -90.0, -1.0))
    xr.testing.assert_allclose(nc["t2m"], zarr["t2m"].compute())
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    assert xr_dl4ds.load(tmp_path / "t2m_resnet.dl4ds").grid.periodic
