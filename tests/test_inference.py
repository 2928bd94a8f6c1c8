from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import train_small

import xr_dl4ds
from xr_dl4ds.exceptions import ConfigError, GridError, ScaleError, UnitsError, VariableError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset


@pytest.fixture(scope="module")
def coarse(hr):
    return hr[["tas"]].dl4ds.coarsen(scale=4)


@pytest.mark.parametrize("kind", ["DataArray", "Dataset"])
def test_dask_and_numpy_give_equal_output_and_dask_stays_lazy(model, coarse, kind):
    obj = coarse["tas"] if kind == "DataArray" else coarse
    eager = obj.dl4ds.downscale(model)
    with raise_if_dask_computes():
        lazy = obj.chunk({"time": 2}).dl4ds.downscale(model)
    out = lazy["tas"] if kind == "Dataset" else lazy
    assert out.chunks == ((2, 2, 2), (32,), (48,))
    assert type(lazy) is type(obj)
    xr.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6, atol=1e-5)


def test_spatial_dims_split_across_chunks_are_handled(model, coarse):
    eager = coarse["tas"].dl4ds.downscale(model)
    split = coarse["tas"].chunk({"time": 3, "lat": 3, "lon": 5}).dl4ds.downscale(model)
    assert split.chunks[1:] == ((32,), (48,))
    xr.testing.assert_allclose(split.compute(), eager, rtol=1e-6, atol=1e-5)


def test_output_grid_and_metadata(model, coarse, hr):
    out = coarse["tas"].dl4ds.downscale(model)
    assert out.dims == ("time", "lat", "lon") and out.shape == (6, 32, 48)
    # on the training coarse grid, the output coords ARE the training high-res coords
    xr.testing.assert_identical(out["lat"], hr["lat"])
    xr.testing.assert_identical(out["lon"], hr["lon"])
    xr.testing.assert_identical(out["time"], hr["time"])
    for key in ("units", "standard_name", "long_name"):
        assert out.attrs[key] == hr["tas"].attrs[key]
    assert (
        out.attrs["history"]
        .splitlines()[0]
        .endswith(
            "downscaled x4 with xr_dl4ds " + xr_dl4ds.__version__ + " (resnet+spc, target tas)"
        )
    )
    assert out.dtype == np.float32 and out.name == "tas"


def test_dataset_output_keeps_global_attrs_and_history(model, coarse):
    src = coarse.assign_attrs(history="earlier step", title="t")
    out = src.dl4ds.downscale(model)
    assert out.attrs["title"] == "t" and out.attrs["Conventions"] == "CF-1.8"
    lines = out.attrs["history"].splitlines()
    assert len(lines) == 2 and lines[1] == "earlier step" and "downscaled x4" in lines[0]
    assert list(out.data_vars) == ["tas"]


def test_untrained_residual_network_is_exactly_bicubic(hr, coarse):
    from xr_dl4ds.metrics import interpolate

    m = train_small(hr, epochs=1, learning_rate=1e-12, static=[])
    out = coarse["tas"].dl4ds.downscale(m)
    expected = interpolate(coarse["tas"], scale=4)
    xr.testing.assert_allclose(out, expected.assign_attrs(out.attrs), atol=1e-3, rtol=0)


def test_descending_latitude():
    ds = synthetic_dataset(nt=4, ny=16, nx=16, descending_lat=True)
    m = train_small(ds)
    out = ds["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(m)
    xr.testing.assert_identical(out["lat"], ds["lat"])
    assert (np.diff(out["lat"].values) < 0).all()
    # and the model is right side up: the cold north stays north
    assert float(out.isel(lat=0).mean()) < float(out.isel(lat=-1).mean())


def test_rotated_pole(rotated_hr, rotated_model):
    coarse = rotated_hr.dl4ds.coarsen(scale=4)[["tas", "rotated_pole"]]
    out = coarse.dl4ds.downscale(rotated_model)
    for name in ("rlat", "rlon", "lat", "lon"):
        xr.testing.assert_identical(out[name], rotated_hr[name])
    assert out["lat"].dims == ("rlat", "rlon")
    xr.testing.assert_identical(out["rotated_pole"], rotated_hr["rotated_pole"])
    assert out["tas"].attrs["grid_mapping"] == "rotated_pole"
    da_out = coarse["tas"].dl4ds.downscale(rotated_model)
    assert "rotated_pole" in da_out.coords and da_out["lat"].shape == (16, 24)


def test_subdomain_of_training_grid(model, coarse):
    full = coarse["tas"].dl4ds.downscale(model)
    part = coarse["tas"].isel(lat=slice(2, 6), lon=slice(3, 9)).dl4ds.downscale(model)
    xr.testing.assert_identical(part["lat"], full["lat"].isel(lat=slice(8, 24)))
    assert part.shape == (6, 16, 24)


def test_units_are_converted(model, coarse):
    k = coarse["tas"].dl4ds.downscale(model)
    c = (coarse["tas"] - 273.15).assign_attrs(coarse["tas"].attrs, units="degC")
    out = c.dl4ds.downscale(model)
    assert out.attrs["units"] == "K"
    xr.testing.assert_allclose(out, k, atol=2e-4, rtol=0)


def test_mismatches_are_explained(model, coarse):
    da = coarse["tas"]
    with pytest.raises(VariableError, match=r"named 'pr'.*da.rename\('tas'\)"):
        da.rename("pr").dl4ds.downscale(model)
    with pytest.raises(VariableError, match=r"lacks the variable\(s\) \['tas'\]"):
        coarse.rename(tas="pr").dl4ds.downscale(model)
    with pytest.raises(UnitsError, match="'m' to 'K'"):
        da.assign_attrs(units="m").dl4ds.downscale(model)
    no_units = da.copy()
    del no_units.attrs["units"]
    with pytest.raises(UnitsError, match="no 'units' attribute"):
        no_units.dl4ds.downscale(model)
    with pytest.raises(
        GridError, match="does not match the model's low-resolution grid along 'lat'"
    ):
        da.assign_coords(lat=da.lat + 2.0).dl4ds.downscale(model)


def test_scale_mismatch_without_static(hr):
    m = train_small(hr, static=[])
    wrong = hr["tas"].dl4ds.coarsen(scale=2)  # 2x finer than the model's coarse grid
    with pytest.raises(ScaleError, match="spacing along 'lat' is 2.5.*spacing 5"):
        wrong.dl4ds.downscale(m)
    # a coarse grid elsewhere at the right resolution is fine: coords derived
    moved = hr["tas"].dl4ds.coarsen(scale=4)
    moved = moved.assign_coords(lon=moved.lon + 100.0)
    out = moved.dl4ds.downscale(m)
    np.testing.assert_allclose(out["lon"].values, hr["lon"].values + 100.0)


def test_default_model_from_options(model, coarse):
    with pytest.raises(ConfigError, match="No model given"):
        coarse.dl4ds.downscale()
    with xr_dl4ds.set_options(model=model):
        out = coarse.dl4ds.downscale()
    xr.testing.assert_identical(out, coarse.dl4ds.downscale(model).assign_attrs(out.attrs))
    assert xr_dl4ds.get_options()["model"] is None
    with pytest.raises(ConfigError, match="needs an xr_dl4ds.Downscaler"):
        xr_dl4ds.set_options(model="not a model")
    with pytest.raises(ConfigError, match="Unknown option"):
        xr_dl4ds.set_options(colour="red")


def test_masked_cells_are_restored_as_nan():
    ds = synthetic_dataset(nt=4, ny=16, nx=16, mask=True)
    m = train_small(ds)
    out = ds["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(m)
    np.testing.assert_array_equal(out.isel(time=0).notnull().values, ds["sftlf"].values == 1)


def test_periodic_longitude_has_no_seam():
    ds = synthetic_dataset(nt=4, ny=16, nx=32, periodic=True)
    m = train_small(ds, static=[], patch_size=16)
    coarse = ds["tas"].dl4ds.coarsen(scale=4)
    out = coarse.dl4ds.downscale(m)
    # rolling the input around the globe rolls the output: the date line is not an edge
    rolled = coarse.copy(data=np.roll(coarse.values, 3, axis=-1))
    out_rolled = rolled.dl4ds.downscale(m)
    np.testing.assert_allclose(out_rolled.values, np.roll(out.values, 12, axis=-1), atol=1e-3)
