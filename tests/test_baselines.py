"""Interpolation and lapse-rate baselines (xr_dl4ds.baselines)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds import baselines, metrics
from xr_dl4ds.baselines import interpolate, lapse_rate
from xr_dl4ds.exceptions import ConfigError, GridError, ScaleError, UnitsError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset

METHODS = ["nearest", "bilinear", "bicubic"]


@pytest.fixture(scope="module")
def small():
    return synthetic_dataset(nt=2, ny=16, nx=24, seed=3)


def _tiny(values, units="K"):
    """A coarse (y, x) field on unit cells, high-res grid has centres 0..n*scale-1."""
    values = np.asarray(values, dtype=np.float64)
    ny, nx = values.shape
    return xr.DataArray(
        values,
        dims=("y", "x"),
        coords={"y": 2.0 * np.arange(ny) + 0.5, "x": 2.0 * np.arange(nx) + 0.5},
        name="tas",
        attrs={"units": units, "long_name": "air temperature"},
    )


def _orog(values, units="m"):
    return xr.DataArray(np.asarray(values, np.float64), dims=("y", "x"), attrs={"units": units})


# --- interpolate ---------------------------------------------------------------------


def test_public_and_compatible_names():
    assert xr_dl4ds.interpolate is interpolate
    assert metrics.interpolate is interpolate  # the old import path keeps working
    assert metrics.INTERPOLATION_METHODS == baselines.INTERPOLATION_METHODS


def test_accessor_is_the_function(small):
    coarse = small.dl4ds.coarsen(scale=4)
    for obj in (coarse, coarse["tas"]):
        xr.testing.assert_identical(
            obj.dl4ds.interpolate(scale=4, method="bilinear"),
            interpolate(obj, scale=4, method="bilinear"),
        )


@pytest.mark.parametrize("as_dataset", [False, True])
def test_interpolate_has_the_coords_downscale_produces(hr, model, as_dataset):
    coarse = hr.dl4ds.coarsen(scale=4)
    coarse = coarse[["tas"]] if as_dataset else coarse["tas"]
    fine = coarse.dl4ds.downscale(model)
    actual = coarse.dl4ds.interpolate(scale=4)
    xr.align(fine, actual, join="exact")  # raises if the grids differ
    assert set(actual.coords) == set(fine.coords)
    for name in fine.coords:
        xr.testing.assert_identical(actual[name], fine[name])
    assert type(actual) is type(fine)


def test_interpolate_rotated_grid_keeps_aux_coords_and_grid_mapping(rotated_hr):
    coarse = rotated_hr.dl4ds.coarsen(scale=4)[["tas", "rotated_pole"]]
    actual = interpolate(coarse, scale=4)
    assert actual["tas"].dims == rotated_hr["tas"].dims
    assert actual["lat"].dims == ("rlat", "rlon") and actual["lat"].shape == (16, 24)
    xr.testing.assert_identical(actual["rlat"], rotated_hr["rlat"])
    assert "rotated_pole" in actual.data_vars
    assert actual["tas"].attrs["grid_mapping"] == "rotated_pole"


@pytest.mark.parametrize("method", METHODS)
def test_interpolate_keeps_attrs_but_not_value_attrs(small, method):
    coarse = small["tas"].dl4ds.coarsen(scale=4).assign_attrs(valid_range=[200.0, 330.0])
    actual = interpolate(coarse, scale=4, method=method)
    assert actual.attrs["units"] == "K"
    assert actual.attrs["standard_name"] == small["tas"].attrs["standard_name"]
    assert "valid_range" not in actual.attrs
    assert actual.dtype == coarse.dtype and actual.name == "tas"


def test_nearest_repeats_each_coarse_cell(small):
    coarse = small["tas"].dl4ds.coarsen(scale=4)
    actual = interpolate(coarse, scale=4, method="nearest")
    expected = np.repeat(np.repeat(coarse.values, 4, axis=-2), 4, axis=-1)
    np.testing.assert_array_equal(actual.values, expected)


def test_bicubic_keeps_a_constant_field(small):
    coarse = xr.full_like(small["tas"].dl4ds.coarsen(scale=4), 280.0)
    np.testing.assert_allclose(interpolate(coarse, scale=4).values, 280.0, rtol=0, atol=1e-4)


def test_periodic_longitude_wraps_around():
    ds = synthetic_dataset(nt=1, ny=8, nx=32, periodic=True)
    coarse = ds["tas"].dl4ds.coarsen(scale=4)
    shift = 3  # rolling the input rolls the output: only true if the date line wraps
    actual = interpolate(coarse.roll(lon=shift, roll_coords=False), scale=4).values
    expected = np.roll(interpolate(coarse, scale=4).values, shift * 4, axis=-1)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_descending_latitude_is_the_flipped_ascending():
    ds = synthetic_dataset(nt=1, ny=16, nx=16)
    coarse = ds["tas"].dl4ds.coarsen(scale=4)
    ascending = interpolate(coarse, scale=4)
    descending = interpolate(coarse.isel(lat=slice(None, None, -1)), scale=4)
    xr.testing.assert_allclose(descending, ascending.isel(lat=slice(None, None, -1)))


def test_dataset_bounds_are_refined_and_other_variables_kept(small):
    coarse = small.dl4ds.coarsen(scale=4)
    lat = coarse["lat"].values
    step = float(lat[1] - lat[0])
    coarse = coarse.assign(
        lat_bnds=(("lat", "bnds"), np.stack([lat - step / 2, lat + step / 2], axis=1)),
        weight=((), 2.0),
    )
    coarse["lat"].attrs["bounds"] = "lat_bnds"
    actual = interpolate(coarse, scale=4)
    assert actual["lat_bnds"].shape == (16, 2)
    np.testing.assert_allclose(actual["lat_bnds"].mean("bnds"), small["lat"])
    assert float(actual["weight"]) == 2.0
    assert set(actual.data_vars) == {"tas", "orog", "sftlf", "lat_bnds", "weight"}


def test_interpolate_stays_lazy():
    ds = synthetic_dataset(nt=4, ny=16, nx=16, chunks={"time": 2})
    with raise_if_dask_computes():
        actual = interpolate(ds.dl4ds.coarsen(scale=4), scale=4)
    assert actual["tas"].chunks is not None
    expected = interpolate(ds.compute().dl4ds.coarsen(scale=4), scale=4)
    xr.testing.assert_allclose(actual.compute(), expected)


def test_interpolate_refuses_unknown_method(small):
    with pytest.raises(ConfigError, match="bicubic"):
        interpolate(small["tas"], scale=2, method="cubic")


# --- lapse_rate ----------------------------------------------------------------------


def test_lapse_rate_hand_computed():
    # constant 280 K; each 2x2 block has 0 m and 400 m: the coarse grid sees 200 m, and
    # bicubic interpolation of a constant is that constant
    coarse = _tiny(np.full((2, 3), 280.0))
    orog = _orog(np.tile([0.0, 400.0], (4, 3)))
    actual = lapse_rate(coarse, orog)
    expected = np.tile([280.0 + 1.3, 280.0 - 1.3], (4, 3))
    np.testing.assert_allclose(actual.values, expected, rtol=0, atol=1e-5)
    assert actual.attrs == coarse.attrs and actual.name == "tas"
    xr.testing.assert_identical(actual["x"], interpolate(coarse, scale=2)["x"])


def test_lapse_rate_nearest_is_block_anomaly_of_any_orography():
    rng = np.random.default_rng(0)
    coarse = _tiny(rng.normal(280.0, 5.0, (3, 4)))
    z = rng.uniform(0.0, 3000.0, (9, 12))
    actual = lapse_rate(coarse, _orog(z), method="nearest")
    block = z.reshape(3, 3, 4, 3).mean(axis=(1, 3))
    up = np.repeat(np.repeat(coarse.values, 3, 0), 3, 1)
    expected = up - 0.0065 * (z - np.repeat(np.repeat(block, 3, 0), 3, 1))
    np.testing.assert_allclose(actual.values, expected, rtol=1e-10)


@pytest.mark.parametrize(("orog_units", "factor"), [("m", 1.0), ("km", 1e-3), ("ft", 1 / 0.3048)])
def test_lapse_rate_converts_orography_units(orog_units, factor):
    coarse = _tiny(np.full((2, 2), 280.0))
    z = np.tile([0.0, 400.0], (4, 2))
    expected = lapse_rate(coarse, _orog(z))
    actual = lapse_rate(coarse, _orog(z * factor, orog_units))
    xr.testing.assert_allclose(actual, expected)


@pytest.mark.parametrize(("units", "per_kelvin"), [("degC", 1.0), ("degF", 1.8)])
def test_lapse_rate_in_other_temperature_units(units, per_kelvin):
    coarse = _tiny(np.full((2, 2), 10.0), units)
    actual = lapse_rate(coarse, _orog(np.tile([0.0, 400.0], (4, 2))))
    np.testing.assert_allclose(
        actual.values[0, :2], [10.0 + 1.3 * per_kelvin, 10 - 1.3 * per_kelvin]
    )
    assert actual.attrs["units"] == units


def test_lapse_rate_value_with_units():
    coarse = _tiny(np.full((2, 2), 280.0))
    orog = _orog(np.tile([0.0, 400.0], (4, 2)))
    xr.testing.assert_allclose(
        lapse_rate(coarse, orog, lapse_rate="-6.5 K/km"), lapse_rate(coarse, orog)
    )
    np.testing.assert_allclose(
        lapse_rate(coarse, orog, lapse_rate=-0.0098).values[0, 0], 280.0 + 0.0098 * 200
    )
    with pytest.raises(UnitsError, match="temperature gradient"):
        lapse_rate(coarse, orog, lapse_rate="3 m/s")


def test_lapse_rate_refuses_non_temperature():
    pr = _tiny(np.ones((2, 2)), "kg m-2 s-1").rename("pr")
    orog = _orog(np.zeros((4, 4)))
    with pytest.raises(UnitsError, match="'pr' is in 'kg m-2 s-1', which is not a temperature"):
        lapse_rate(pr, orog)
    with pytest.raises(UnitsError, match="no 'units'"):
        lapse_rate(pr.drop_attrs(), orog)
    with pytest.raises(UnitsError, match="not a length"):
        lapse_rate(_tiny(np.ones((2, 2))), _orog(np.zeros((4, 4)), "K"))
    with pytest.raises(UnitsError, match="orography has no 'units'"):
        lapse_rate(_tiny(np.ones((2, 2))), _orog(np.zeros((4, 4))).drop_attrs())


def test_lapse_rate_checks_the_grid():
    coarse = _tiny(np.full((2, 2), 280.0))
    with pytest.raises(ScaleError, match="infer the scale"):
        lapse_rate(coarse, _orog(np.zeros((4, 6))))
    with pytest.raises(GridError, match="has 4 cells along 'y'"):
        lapse_rate(coarse, _orog(np.zeros((4, 4))), scale=3)
    shifted = _orog(np.zeros((4, 4))).assign_coords(y=np.arange(4) + 10.0)
    with pytest.raises(GridError, match="'y' coordinate does not match"):
        lapse_rate(coarse, shifted)


def test_lapse_rate_beats_bicubic_on_synthetic_temperature(small):
    # the synthetic tas falls by 6.5 K/km with its orography
    truth = small["tas"]
    coarse = truth.dl4ds.coarsen(scale=4)
    corrected = lapse_rate(coarse, small["orog"])
    xr.align(corrected, truth, join="exact")
    bicubic_rmse = float(metrics.rmse(interpolate(coarse, scale=4), truth))
    assert float(metrics.rmse(corrected, truth)) < 0.9 * bicubic_rmse


def test_lapse_rate_dataset_and_dask(small):
    ds = small[["tas"]].chunk({"time": 1})
    with raise_if_dask_computes():
        actual = lapse_rate(ds.dl4ds.coarsen(scale=4), small["orog"].chunk())
    expected = lapse_rate(small["tas"].dl4ds.coarsen(scale=4), small["orog"])
    xr.testing.assert_allclose(actual["tas"].compute(), expected, atol=1e-4)
    assert actual["tas"].dims == small["tas"].dims


def test_baseline_by_name(small):
    coarse = small["tas"].dl4ds.coarsen(scale=4)
    xr.testing.assert_identical(
        baselines.baseline(coarse, "bilinear", scale=4),
        interpolate(coarse, scale=4, method="bilinear"),
    )
    with pytest.raises(ConfigError, match="needs the high-resolution orography"):
        baselines.baseline(coarse, "lapse_rate", scale=4)
    with pytest.raises(ConfigError, match="Unknown baseline 'linear'"):
        baselines.baseline(coarse, "linear", scale=4)
