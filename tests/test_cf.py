"""CF-compliant output of downscale: coords, bounds, grid mapping, attrs, provenance,
encodings, laziness, file round trips, and an independent CF checker."""

from __future__ import annotations

import re
import socket
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import train_small

import xr_dl4ds
from xr_dl4ds import cf, grid
from xr_dl4ds.io import model_id
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset

SCALE = 4


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def masked_hr():
    """Land-only temperature: NaN over the sea, so the model has a mask."""
    return synthetic_dataset(nt=4, ny=16, nx=16, mask=True, seed=3)


@pytest.fixture(scope="module")
def masked_model(masked_hr):
    return train_small(masked_hr, epochs=1, steps_per_epoch=1, patch_size=8, n_blocks=1)


@pytest.fixture(scope="module")
def coarse(masked_hr):
    """Coarse input with CF bounds on lat/lon (as cf-xarray makes) and time bounds."""
    c = masked_hr[["tas"]].dl4ds.coarsen(scale=SCALE).cf.add_bounds(["lat", "lon"])
    t = c["time"].values
    c = c.assign_coords(time_bnds=(("time", "bnds"), np.stack([t, t + np.timedelta64(1, "D")], 1)))
    c["time"].attrs["bounds"] = "time_bnds"
    return c


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Nothing here may use the network (the CF checker runs offline)."""

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def cf_check(path, tmp_path):
    """Run the IOOS compliance-checker's CF-1.8 suite; its errors and warnings as
    ``"section: message"`` lists (its high and medium priorities)."""
    import json

    runner = pytest.importorskip("compliance_checker.runner")
    with warnings.catch_warnings():  # its deprecated ioos_sos plugin warns on import
        warnings.simplefilter("ignore", DeprecationWarning)
        runner.CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.stem}.json"
    _, crashed = runner.ComplianceChecker.run_checker(
        str(path), ["cf:1.8"], 0, "strict", output_filename=str(report), output_format="json"
    )
    assert not crashed, "a compliance-checker check raised"
    result = json.loads(report.read_text())["cf:1.8"]

    def failures(key):
        return sorted(
            f"{r['name']}: {m}"
            for r in result[key]
            if r["value"][0] != r["value"][1]
            for m in r["msgs"] or ["(no message)"]
        )

    return failures("high_priorities"), failures("medium_priorities")


# ----------------------------------------------------------------------------- bounds


def test_refine_bounds_by_hand():
    # ascending, columns (lower, upper)
    b = np.array([[30.0, 40.0], [40.0, 50.0]])
    expected = np.array([[30.0, 32.5], [32.5, 35.0], [35.0, 37.5], [37.5, 40.0]])
    np.testing.assert_array_equal(grid.refine_bounds(b, 4)[:4], expected)
    np.testing.assert_array_equal(grid.refine_bounds(b, 4)[4:], expected + 10.0)
    # descending grid, columns (upper, lower): the first fine cell is the northernmost
    d = np.array([[50.0, 40.0], [40.0, 30.0]])
    np.testing.assert_array_equal(
        grid.refine_bounds(d, 2), [[50.0, 45.0], [45.0, 40.0], [40.0, 35.0], [35.0, 30.0]]
    )
    # descending grid with columns (lower, upper): each row keeps its column order
    d2 = d[:, ::-1]
    np.testing.assert_array_equal(
        grid.refine_bounds(d2, 2), [[45.0, 50.0], [40.0, 45.0], [35.0, 40.0], [30.0, 35.0]]
    )
    # neighbouring fine cells share their bound exactly, and dask stays lazy
    import dask.array as dsa

    irregular = np.array([[0.0, 0.3], [0.3, 1.0], [1.0, 1.1]])
    fine = grid.refine_bounds(irregular, 3)
    np.testing.assert_array_equal(fine[1:, 0], fine[:-1, 1])
    with raise_if_dask_computes():
        lazy = grid.refine_bounds(dsa.from_array(irregular, chunks=2), 3)
    np.testing.assert_array_equal(lazy.compute(), fine)
    with pytest.raises(xr_dl4ds.exceptions.GridError, match=r"shape \(n, 2\)"):
        grid.refine_bounds(np.zeros((3, 4)), 2)


def test_highres_coords_splits_bounds_and_drops_vertices():
    rot = synthetic_dataset(nt=1, ny=8, nx=8, grid="rotated", with_static=False)
    c = rot.dl4ds.coarsen(scale=4).cf.add_bounds(["rlat", "rlon"])
    c = c.cf.add_bounds(["lat", "lon"], output_dim="vertices")
    assert c["lat_bounds"].ndim == 3  # vertices of the 2-D auxiliary latitude
    assert c["lat"].attrs["bounds"] == "lat_bounds"
    fine = grid.highres_coords(c, 4)
    # rlat spans -20..20 in two coarse cells: eight 5-degree cells
    lower = np.arange(-20.0, 20.0, 5.0)
    np.testing.assert_array_equal(fine["rlat_bounds"].values, np.stack([lower, lower + 5], 1))
    assert fine["rlat_bounds"].dims == ("rlat", "bounds")
    assert fine["rlat"].attrs["bounds"] == "rlat_bounds"
    assert "lat_bounds" not in fine and "lon_bounds" not in fine
    assert "bounds" not in fine["lat"].attrs
    # dask-backed coordinates (2-D lat/lon, bounds) are refined lazily
    with raise_if_dask_computes():
        lazy = grid.highres_coords(c.chunk(), 4)
    assert lazy["lat"].chunks is not None and lazy["rlat_bounds"].chunks is not None
    for name, var in fine.items():
        xr.testing.assert_identical(lazy[name].compute(), var)


def test_dataset_output_has_split_bounds_and_keeps_time_bounds(coarse, masked_model):
    out = coarse.dl4ds.downscale(masked_model)
    # coarse lat cells: 30-40, 40-50, 50-60, 60-70 degrees; four 2.5-degree cells each
    lower = 30.0 + 2.5 * np.arange(16)
    expected = xr.DataArray(
        np.stack([lower, lower + 2.5], axis=1),
        dims=("lat", "bounds"),
        coords={"lat": out["lat"]},
        name="lat_bounds",
        attrs=coarse["lat_bounds"].attrs,
    )
    xr.testing.assert_identical(out["lat_bounds"].reset_coords(drop=True), expected)
    assert out["lat"].attrs["bounds"] == "lat_bounds"
    assert out["lon"].attrs["bounds"] == "lon_bounds"
    # each fine centre lies in the middle of its cell
    np.testing.assert_allclose(out["lon_bounds"].mean("bounds"), out["lon"], atol=1e-12)
    assert "lat_bounds" in out.coords and "lon_bounds" in out.coords  # like the input
    xr.testing.assert_identical(out["time_bnds"], coarse["time_bnds"])
    assert out["time"].attrs["bounds"] == "time_bnds"


def test_bounds_held_as_data_variables_stay_data_variables(coarse, masked_model):
    # what xr.open_dataset makes of a file with bounds (decode_coords=True)
    src = coarse.reset_coords(["lat_bounds", "lon_bounds", "time_bnds"])
    out = src.dl4ds.downscale(masked_model)
    assert {"lat_bounds", "lon_bounds", "time_bnds"} <= set(out.data_vars)
    assert out["lat_bounds"].shape == (16, 2) and out["lat"].attrs["bounds"] == "lat_bounds"


def test_input_without_bounds_gives_none_and_no_dangling_attr(coarse, masked_model):
    src = coarse.drop_vars(["lat_bounds", "lon_bounds"])
    out = src.dl4ds.downscale(masked_model)
    assert "lat_bounds" not in out.variables
    assert "bounds" not in out["lat"].attrs and "bounds" not in out["lon"].attrs


# ----------------------------------------------------------------------------- rotated pole


def test_rotated_pole_output(rotated_hr, rotated_model):
    coarse = rotated_hr.dl4ds.coarsen(scale=4)[["tas", "rotated_pole"]]
    out = coarse.dl4ds.downscale(rotated_model)
    for name in ("rlat", "rlon", "lat", "lon"):
        xr.testing.assert_identical(out[name], rotated_hr[name])
    assert set(out.data_vars) == {"tas", "rotated_pole"} and "rotated_pole" not in out.coords
    xr.testing.assert_identical(out["rotated_pole"], rotated_hr["rotated_pole"])
    assert out["tas"].attrs["grid_mapping"] == "rotated_pole"
    # DataArray: the grid mapping is a scalar coordinate, named in the encoding
    da = coarse["tas"].assign_coords(rotated_pole=coarse["rotated_pole"])
    da_out = da.dl4ds.downscale(rotated_model)
    xr.testing.assert_identical(
        da_out["rotated_pole"].variable, rotated_hr["rotated_pole"].variable
    )
    assert da_out.encoding["grid_mapping"] == "rotated_pole"
    assert "grid_mapping" not in da_out.attrs
    xr.testing.assert_identical(da_out["lat"].variable, rotated_hr["lat"].variable)


def test_rotated_pole_off_the_training_grid_derives_2d_coords(rotated_hr):
    m = train_small(rotated_hr, static=[], epochs=1, steps_per_epoch=1, patch_size=8)
    coarse = rotated_hr.dl4ds.coarsen(scale=4)[["tas", "rotated_pole"]]
    moved = coarse.assign_coords(rlon=coarse["rlon"] + 40.0)
    out = moved.dl4ds.downscale(m)
    np.testing.assert_allclose(out["rlon"], rotated_hr["rlon"] + 40.0)
    expected_lat = grid.refine_coords(grid.refine_coords(moved["lat"].values, 4, axis=0), 4, axis=1)
    np.testing.assert_allclose(out["lat"].values, expected_lat)
    assert out["lat"].dims == ("rlat", "rlon") and out["lat"].attrs == rotated_hr["lat"].attrs
    assert out["tas"].attrs["grid_mapping"] == "rotated_pole" and "rotated_pole" in out


# ----------------------------------------------------------------------------- attrs


def test_dataarray_attrs_provenance_and_mask(coarse, masked_model, masked_hr):
    out = coarse["tas"].dl4ds.downscale(masked_model)
    for key in ("units", "standard_name", "long_name", "cell_methods"):
        assert out.attrs[key] == masked_hr["tas"].attrs[key]
    np.testing.assert_array_equal(out.isel(time=0).notnull().values, masked_hr["sftlf"].values == 1)
    ident = model_id(masked_model)
    first = out.attrs["history"].splitlines()[0]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: \S.* \(model [0-9a-f]{16}\): downscaled x4 with "
        r"xr_dl4ds \S+ \(resnet\+spc, target tas\)",
        first,
    ), first
    assert f"(model {ident})" in first and xr_dl4ds.__version__ in first
    assert out.attrs["source"] == f"xr_dl4ds {xr_dl4ds.__version__}: resnet+spc x4 model {ident}"
    for name in ("lat", "lon"):
        assert {"units", "standard_name", "axis"} <= set(out[name].attrs)
        assert "bounds" not in out[name].attrs  # a DataArray cannot hold them
    assert "bounds" not in out["time"].attrs


def test_dataset_global_attrs(coarse, masked_model):
    src = coarse.assign_attrs(Conventions="CF-1.6 ACDD-1.3", source="ERA5", title="t")
    out = src.dl4ds.downscale(masked_model)
    assert out.attrs["Conventions"] == "CF-1.8 ACDD-1.3"
    assert out.attrs["title"] == "t"
    assert out.attrs["source"].endswith("; input source: ERA5")
    assert out.attrs["source"].startswith(f"xr_dl4ds {xr_dl4ds.__version__}: resnet+spc x4")
    lines = out.attrs["history"].splitlines()
    assert "downscaled x4" in lines[0] and lines[1:] == coarse.attrs["history"].splitlines()
    bare = coarse.copy()
    bare.attrs = {}
    bare = bare.dl4ds.downscale(masked_model)
    assert bare.attrs["Conventions"] == "CF-1.8"
    assert bare.attrs["title"] == "tas downscaled x4 by xr_dl4ds"
    newer = coarse.assign_attrs(Conventions="CF-1.10").dl4ds.downscale(masked_model)
    assert newer.attrs["Conventions"] == "CF-1.10"


def test_attrs_that_describe_the_coarse_values_are_dropped(coarse, masked_model):
    src = coarse.copy()
    src["tas"].attrs.update(
        valid_range=[200.0, 330.0], actual_range=[250.0, 300.0], cell_measures="area: areacella"
    )
    out = src.dl4ds.downscale(masked_model)
    assert not {"valid_range", "actual_range", "cell_measures"} & set(out["tas"].attrs)
    assert out["tas"].attrs["cell_methods"] == "time: mean"


def test_call_and_model_id_are_recorded(coarse, masked_model):
    # what downscale passes: the network output in training units on the high-res grid
    ds = coarse
    out = xr.DataArray(
        np.full((4, 1, 16, 16), 280.0, np.float32),
        dims=("time", *cf._OUT),
        coords={"time": ds["time"]},
    )
    result = cf.assemble_output(
        out,
        ds,
        masked_model,
        offset=(0, 0),
        spatial_dims=("lat", "lon"),
        template_dims=["time", "lat", "lon"],
        dataarray_name=None,
        is_dataarray=False,
        input_coords=ds.coords,
        call="downscale(model='m.pt', batch_size=8)",
        model_id="0123456789abcdef",
    )
    first = result.attrs["history"].splitlines()[0]
    assert ": downscale(model='m.pt', batch_size=8) (model 0123456789abcdef): " in first
    assert result.attrs["source"].endswith("x4 model 0123456789abcdef")
    # the values pass through, except in the masked cells
    field = result["tas"].isel(time=0)
    assert 0 < int(field.isnull().sum()) < field.size
    np.testing.assert_array_equal(field.fillna(280.0).values, 280.0)


# ----------------------------------------------------------------------------- encodings


def test_encodings(coarse, masked_model):
    out = coarse.dl4ds.downscale(masked_model)
    enc = out["tas"].encoding
    assert out["tas"].dtype == np.float32
    assert enc["dtype"] == "float32" and enc["_FillValue"] == cf.FILL_VALUE
    assert enc["chunksizes"] == (1, 16, 16)
    for name in ("lat", "lon", "time", "lat_bounds", "lon_bounds", "time_bnds"):
        assert out[name].encoding.get("_FillValue", "unset") is None, name
    assert out["time"].encoding["dtype"] == "int32"  # CF-1.8 has no int64
    assert out["time_bnds"].encoding["units"] == out["time"].encoding["units"]
    # the input is not changed
    assert "dtype" not in coarse["time"].encoding
    assert "_FillValue" not in coarse["lat"].encoding


def test_netcdf_chunks_are_tiles_of_at_most_4_mib():
    var = xr.Variable(("time", "y", "x"), np.empty((2, 3000, 500), np.float32))
    assert cf._netcdf_chunks(var, ("y", "x")) == (1, 1024, 500)
    small = xr.Variable(("t", "y", "x"), np.empty((2, 30, 50), np.float32))
    assert cf._netcdf_chunks(small, ("y", "x")) == (1, 30, 50)


def test_storage_encodings_of_the_input_are_dropped(coarse, masked_model, tmp_path):
    # zarr refuses a "chunks" encoding that does not fit the dask chunks
    src = coarse.chunk({"time": 3})
    src["time_bnds"].encoding.update(chunks=(4, 2), chunksizes=(4, 2), zlib=True)
    src["time"].encoding.update(chunks=(4,), preferred_chunks={"time": 4})
    out = src.dl4ds.downscale(masked_model)
    assert not {"chunks", "chunksizes", "zlib"} & set(out["time_bnds"].encoding)
    assert "chunks" not in out["time"].encoding
    out.to_zarr(tmp_path / "out.zarr", mode="w", consolidated=False)


# ----------------------------------------------------------------------------- laziness and files


@pytest.mark.parametrize("kind", ["DataArray", "Dataset"])
def test_lazy_and_round_trips(coarse, masked_model, tmp_path, kind):
    src = coarse.chunk({"time": 2})
    obj = src["tas"] if kind == "DataArray" else src
    with raise_if_dask_computes():
        lazy = obj.dl4ds.downscale(masked_model)
    if kind == "Dataset":
        assert lazy["lat_bounds"].chunks is not None  # bounds were dask: still lazy
    eager = (coarse["tas"] if kind == "DataArray" else coarse).dl4ds.downscale(masked_model)
    expected = lazy.compute()
    xr.testing.assert_allclose(expected, eager.assign_attrs(expected.attrs), atol=1e-5)
    nc, zarr = tmp_path / "out.nc", tmp_path / "out.zarr"
    lazy.to_netcdf(nc)
    lazy.to_zarr(zarr, mode="w", consolidated=False)
    if kind == "DataArray":
        with xr.open_dataarray(nc) as back:
            xr.testing.assert_identical(back.load(), expected)
        back_z = xr.open_dataarray(zarr, engine="zarr", consolidated=False).compute()
        xr.testing.assert_identical(back_z, expected)
    else:
        with xr.open_dataset(nc) as back:
            xr.testing.assert_identical(back.load(), expected)
        xr.testing.assert_identical(xr.open_zarr(zarr, consolidated=False).compute(), expected)
    assert np.isnan(expected["tas"] if kind == "Dataset" else expected).any()  # masked


# ----------------------------------------------------------------------------- CF checker


def test_cf_checker_dataarray(coarse, masked_model, tmp_path):
    path = tmp_path / "dataarray.nc"
    coarse["tas"].dl4ds.downscale(masked_model).to_netcdf(path)
    errors, warns = cf_check(path, tmp_path)
    assert errors == []
    # a DataArray has no global attrs: only Conventions, history and title are missing
    assert warns and all("§2.6" in w for w in warns), warns


def test_cf_checker_dataset(coarse, masked_model, tmp_path):
    path = tmp_path / "dataset.nc"
    coarse.dl4ds.downscale(masked_model).to_netcdf(path)
    assert cf_check(path, tmp_path) == ([], [])


@pytest.mark.parametrize("kind", ["DataArray", "Dataset"])
def test_cf_checker_rotated_pole(rotated_hr, rotated_model, tmp_path, kind):
    coarse = rotated_hr.dl4ds.coarsen(scale=4)[["tas", "rotated_pole"]]
    obj = (
        coarse
        if kind == "Dataset"
        else coarse["tas"].assign_coords(rotated_pole=coarse["rotated_pole"])
    )
    path = tmp_path / f"rotated_{kind}.nc"
    obj.dl4ds.downscale(rotated_model).to_netcdf(path)
    errors, warns = cf_check(path, tmp_path)
    assert errors == []
    assert warns == [] if kind == "Dataset" else all("§2.6" in w for w in warns), warns


def test_cf_checker_sees_errors(tmp_path):
    # the check above can fail: xarray's defaults give coordinates a _FillValue
    path = tmp_path / "plain.nc"
    xr.Dataset({"tas": ("lat", [280.0])}, coords={"lat": [1.0]}).to_netcdf(path)
    errors, _ = cf_check(path, tmp_path)
    assert any("'lat' must not have the _FillValue" in e for e in errors), errors


def test_cf_checker_ensemble(coarse, masked_hr, masked_model, tmp_path):
    other = train_small(masked_hr, epochs=1, steps_per_epoch=1, patch_size=8, n_blocks=1, seed=1)
    out = coarse.dl4ds.downscale([masked_model, other])
    assert out["realization"].attrs["units"] == "1"  # CF 3.1: realization is dimensionless
    path = tmp_path / "ensemble.nc"
    out.to_netcdf(path)
    assert cf_check(path, tmp_path) == ([], [])
