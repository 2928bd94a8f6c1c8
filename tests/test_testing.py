"""Synthetic data and the lazy-compute guard of ``xr_dl4ds.testing``."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from xr_dl4ds.exceptions import ConfigError, GridError, ScaleError
from xr_dl4ds.testing import (
    LAPSE_RATE,
    raise_if_dask_computes,
    rotated_to_geographic,
    synthetic_dataarray,
    synthetic_dataset,
)


@pytest.mark.parametrize(
    ("kwargs", "expected_sizes"),
    [
        ({}, {"time": 8, "lat": 32, "lon": 48}),
        ({"nt": 3, "ny": 12, "nx": 20, "scale": 4}, {"time": 3, "lat": 12, "lon": 20}),
        ({"ny": 9, "nx": 15, "scale": 3}, {"time": 8, "lat": 9, "lon": 15}),
        ({"grid": "rotated"}, {"time": 8, "rlat": 32, "rlon": 48}),
        ({"periodic": True, "ny": 16, "nx": 32}, {"time": 8, "lat": 16, "lon": 32}),
    ],
)
def test_sizes(kwargs: dict, expected_sizes: dict) -> None:
    ds = synthetic_dataset(**kwargs)
    assert dict(ds.sizes) == expected_sizes
    ydim, xdim = list(expected_sizes)[1:]
    assert ds["tas"].dims == ("time", ydim, xdim)
    assert ds["orog"].dims == ds["sftlf"].dims == (ydim, xdim)


def test_cf_attrs_latlon() -> None:
    ds = synthetic_dataset()
    expected = {
        "tas": ("K", "air_temperature"),
        "orog": ("m", "surface_altitude"),
        "sftlf": ("1", "land_binary_mask"),
        "lat": ("degrees_north", "latitude"),
        "lon": ("degrees_east", "longitude"),
    }
    for name, (units, standard_name) in expected.items():
        assert ds[name].attrs["units"] == units, name
        assert ds[name].attrs["standard_name"] == standard_name, name
        assert ds[name].attrs["long_name"], name
    assert ds["lat"].attrs["axis"] == "Y"
    assert ds["lon"].attrs["axis"] == "X"
    assert ds["time"].attrs["standard_name"] == "time"
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["title"]
    assert "synthetic_dataset(" in ds.attrs["history"]
    assert "grid_mapping" not in ds["tas"].attrs


def test_time_is_daily_from_2000() -> None:
    time = synthetic_dataset(nt=5)["time"].values
    expected = np.arange("2000-01-01", "2000-01-06", dtype="datetime64[D]").astype("datetime64[ns]")
    np.testing.assert_array_equal(time, expected)


def test_regular_cell_centres() -> None:
    ds = synthetic_dataset(ny=16, nx=24)
    lat, lon = ds["lat"].values, ds["lon"].values
    np.testing.assert_allclose(np.diff(lat), 2.5)  # 40 degrees / 16
    np.testing.assert_allclose(np.diff(lon), 2.5)  # 60 degrees / 24
    np.testing.assert_allclose([lat[0], lat[-1]], [31.25, 68.75])
    np.testing.assert_allclose([lon[0], lon[-1]], [-18.75, 38.75])


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_descending_lat(grid: str) -> None:
    ydim = "lat" if grid == "latlon" else "rlat"
    asc = synthetic_dataset(grid=grid)
    desc = synthetic_dataset(grid=grid, descending_lat=True)
    assert (np.diff(desc[ydim].values) < 0).all()
    assert (np.diff(asc[ydim].values) > 0).all()
    # the same field, only the row order differs (and the history line)
    assert "descending_lat=True" in desc.attrs["history"]
    xr.testing.assert_identical(desc.sortby(ydim).assign_attrs(history=asc.attrs["history"]), asc)


@pytest.mark.parametrize("nx", [24, 48, 100])
def test_periodic_longitude(nx: int) -> None:
    ds = synthetic_dataset(periodic=True, ny=20, nx=nx, scale=4)
    lon = ds["lon"].values
    assert lon[0] == 0.0
    np.testing.assert_allclose(np.diff(lon), 360.0 / nx)
    np.testing.assert_allclose(lon[-1] + 360.0 / nx, 360.0)  # spans exactly 360 degrees
    lat = ds["lat"].values
    np.testing.assert_allclose([lat[0], lat[-1]], [-90 + 90 / 20, 90 - 90 / 20])
    # the fields continue smoothly across the date line: the jump from the last column
    # to the first is no larger than the jumps between neighbouring columns
    for name in ("orog", "tas"):
        values = ds[name].values
        inner = np.abs(np.diff(values, axis=-1)).max()
        wrap = np.abs(values[..., 0] - values[..., -1]).max()
        assert wrap <= inner * 1.0001, name


def test_not_periodic_by_default() -> None:
    lon = synthetic_dataset()["lon"].values
    span = lon[-1] - lon[0] + (lon[1] - lon[0])
    assert span == pytest.approx(60.0)


def test_rotated_grid() -> None:
    ds = synthetic_dataset(grid="rotated", ny=16, nx=24)
    assert ds["rlat"].attrs == {
        "units": "degrees",
        "standard_name": "grid_latitude",
        "long_name": "latitude in rotated pole grid",
        "axis": "Y",
    }
    assert ds["rlon"].attrs["standard_name"] == "grid_longitude"
    assert ds["rlon"].attrs["axis"] == "X"
    for name in ("lat", "lon"):
        assert name in ds.coords
        assert ds[name].dims == ("rlat", "rlon")
        assert ds[name].shape == (16, 24)
    assert ds["lat"].attrs["units"] == "degrees_north"
    assert ds["lon"].attrs["units"] == "degrees_east"
    pole = ds["rotated_pole"]
    assert pole.ndim == 0 and np.issubdtype(pole.dtype, np.integer)
    assert pole.attrs["grid_mapping_name"] == "rotated_latitude_longitude"
    assert pole.attrs["grid_north_pole_latitude"] == 39.25
    assert pole.attrs["grid_north_pole_longitude"] == -162.0
    for name in ("tas", "orog", "sftlf"):
        assert ds[name].attrs["grid_mapping"] == "rotated_pole"


def test_rotated_aux_coords_cover_europe() -> None:
    ds = synthetic_dataset(grid="rotated", ny=40, nx=60)
    lat, lon = ds["lat"].values, ds["lon"].values
    # EURO-CORDEX-like pole: the domain covers Europe, North Africa and the North Atlantic
    assert 20.0 < lat.min() < 30.0 and 65.0 < lat.max() < 75.0
    assert -50.0 < lon.min() < -30.0 and 60.0 < lon.max() < 85.0
    # the centre of the rotated grid is at 50.75N 18E, in Central Europe
    np.testing.assert_allclose(rotated_to_geographic(0.0, 0.0), (50.75, 18.0), atol=1e-12)
    # the rotated north pole is where the attributes say it is
    np.testing.assert_allclose(rotated_to_geographic(90.0, 0.0), (39.25, -162.0), atol=1e-9)
    # rotated rows are curved in geographic space: latitude along a row varies
    assert np.ptp(lat[20]) > 2.0


def test_rotated_transform_matches_spherical_formula() -> None:
    rlat, rlon = np.meshgrid(np.linspace(-30, 30, 7), np.linspace(-40, 40, 9), indexing="ij")
    lat, lon = rotated_to_geographic(rlat, rlon)
    # the textbook formulas (e.g. the COSMO model documentation), written independently
    pr, pl = np.deg2rad(39.25), np.deg2rad(-162.0)
    phi, lam = np.deg2rad(rlat), np.deg2rad(rlon)
    expected_lat = np.rad2deg(
        np.arcsin(np.sin(phi) * np.sin(pr) + np.cos(phi) * np.cos(lam) * np.cos(pr))
    )
    expected_lon = np.rad2deg(
        pl
        + np.pi
        + np.arctan2(
            np.cos(phi) * np.sin(lam),
            np.sin(pr) * np.cos(phi) * np.cos(lam) - np.cos(pr) * np.sin(phi),
        )
    )
    expected_lon = (expected_lon + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(lat, expected_lat, atol=1e-10)
    np.testing.assert_allclose(lon, expected_lon, atol=1e-10)


def test_known_fine_structure() -> None:
    ds = synthetic_dataset(nt=10, grid="rotated", seed=3)
    t = np.arange(10.0)[:, None, None]
    lat = np.deg2rad(ds["lat"].values)[None]
    lon = np.deg2rad(ds["lon"].values)[None]
    land, orog = ds["sftlf"].values[None], ds["orog"].values[None]
    expected = (
        280.0
        + 15.0 * np.cos(lat)
        + 4.0 * np.sin(2.0 * lon - 2.0 * np.pi * t / 6.0)
        + land * (2.0 + 1.5 * np.cos(2.0 * np.pi * t / 7.0))
        - LAPSE_RATE * orog
    )
    np.testing.assert_allclose(ds["tas"].values, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_static_fields_have_sub_coarse_structure(scale: int) -> None:
    ds = synthetic_dataset(ny=8 * scale, nx=12 * scale, scale=scale)
    orog, land = ds["orog"], ds["sftlf"]
    assert set(np.unique(land.values).tolist()) == {0.0, 1.0}
    assert 0.5 < float(land.mean()) < 0.7
    assert float(orog.where(land == 0).max()) == 0.0
    assert 1000.0 < float(orog.max()) < 3000.0
    assert float(orog.min()) == 0.0
    # what block-averaging by `scale` removes is a large part of the orography signal
    coarse = orog.coarsen(lat=scale, lon=scale).mean()
    back = coarse.reindex_like(orog, method="nearest")
    residual = float((orog - back).std())
    assert residual > 80.0
    assert residual > 0.2 * float(orog.std())


def test_tas_range_and_lapse_rate() -> None:
    ds = synthetic_dataset(nt=4)
    tas = ds["tas"]
    assert 260.0 < float(tas.min()) and float(tas.max()) < 305.0
    # high ground is colder (correlation over land, time mean)
    land = ds["sftlf"] == 1
    corr = xr.corr(tas.mean("time").where(land), ds["orog"].where(land))
    assert float(corr) < -0.5


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_mask_nan_exactly_on_sea(grid: str) -> None:
    ds = synthetic_dataset(grid=grid, mask=True)
    sea = (ds["sftlf"] == 0).broadcast_like(ds["tas"])
    xr.testing.assert_equal(ds["tas"].isnull(), sea.rename(None))
    unmasked = synthetic_dataset(grid=grid)
    xr.testing.assert_identical(ds["tas"], unmasked["tas"].where(~sea))


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_chunks_give_dask_arrays(grid: str) -> None:
    ds = synthetic_dataset(grid=grid, nt=6, chunks={"time": 2})
    assert isinstance(ds["tas"].data, da.Array)
    assert ds["tas"].chunks == ((2, 2, 2), (32,), (48,))
    assert isinstance(ds["orog"].data, da.Array)
    if grid == "rotated":
        assert isinstance(ds["rotated_pole"].data, np.ndarray)
    expected = synthetic_dataset(grid=grid, nt=6)
    xr.testing.assert_identical(
        ds.compute().assign_attrs(history=expected.attrs["history"]), expected
    )


def test_no_chunks_gives_numpy() -> None:
    ds = synthetic_dataset()
    for name in ds.variables:
        assert isinstance(ds[name].data, np.ndarray), name


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float64])
def test_dtype(dtype: str) -> None:
    ds = synthetic_dataset(dtype=dtype)
    for name in ("tas", "orog", "sftlf"):
        assert ds[name].dtype == np.dtype(dtype)
    assert ds["lat"].dtype == np.float64


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_deterministic_with_seed(grid: str) -> None:
    a = synthetic_dataset(grid=grid, seed=7)
    b = synthetic_dataset(grid=grid, seed=7)
    xr.testing.assert_identical(a, b)
    c = synthetic_dataset(grid=grid, seed=8)
    assert not np.array_equal(a["orog"].values, c["orog"].values)
    assert not np.array_equal(a["tas"].values, c["tas"].values)


def test_without_static() -> None:
    ds = synthetic_dataset(with_static=False)
    assert list(ds.data_vars) == ["tas"]
    rot = synthetic_dataset(with_static=False, grid="rotated")
    assert sorted(rot.data_vars) == ["rotated_pole", "tas"]


def test_netcdf_roundtrip(tmp_path) -> None:
    ds = synthetic_dataset(grid="rotated", nt=3, ny=8, nx=8, mask=True)
    path = tmp_path / "synthetic.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_allclose(back["tas"], ds["tas"])
        assert back["lat"].dims == ("rlat", "rlon")
        assert "rotated_pole" in back.variables


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_synthetic_dataarray(grid: str) -> None:
    actual = synthetic_dataarray(grid=grid, nt=3, ny=8, nx=12, seed=2)
    ds = synthetic_dataset(grid=grid, nt=3, ny=8, nx=12, seed=2)
    assert isinstance(actual, xr.DataArray)
    assert actual.name == "tas"
    expected = ds["tas"]
    if grid == "rotated":
        expected = expected.assign_coords(rotated_pole=ds["rotated_pole"])
    xr.testing.assert_identical(actual, expected)
    if grid == "rotated":
        assert actual["lat"].dims == ("rlat", "rlon")
        assert actual["lon"].shape == (8, 12)
        assert actual["rotated_pole"].attrs["grid_north_pole_latitude"] == 39.25
    else:
        assert set(actual.coords) == {"time", "lat", "lon"}


def test_synthetic_dataarray_chunks() -> None:
    actual = synthetic_dataarray(chunks={"time": 4})
    assert isinstance(actual.data, da.Array)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ny": 30}, GridError, r"ny=30 is not a multiple of scale=4.*ny=28 or ny=32"),
        ({"nx": 50}, GridError, r"nx=50 is not a multiple of scale=4"),
        ({"ny": 9, "nx": 9, "scale": 2}, GridError, r"ny=9 is not a multiple of scale=2"),
        ({"ny": 3, "scale": 4}, GridError, r"Use ny=4"),
        ({"scale": 1}, ScaleError, r"scale must be an integer >= 2"),
        ({"scale": 2.0}, ScaleError, r"scale must be an integer >= 2"),
        ({"nt": 0}, ConfigError, r"nt must be an integer >= 1"),
        ({"grid": "mercator"}, ConfigError, r"grid must be 'latlon' or 'rotated'"),
        ({"grid": "rotated", "periodic": True}, ConfigError, r"periodic=True needs"),
        ({"dtype": "int16"}, ConfigError, r"floating dtype"),
        ({"dtype": "not-a-dtype"}, ConfigError, r"floating dtype"),
    ],
)
def test_invalid_options(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        synthetic_dataset(**kwargs)
    with pytest.raises(ValueError):
        synthetic_dataset(**kwargs)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        synthetic_dataset(8)  # type: ignore[misc]


def test_raise_if_dask_computes_raises_on_compute() -> None:
    tas = synthetic_dataarray(nt=4, ny=8, nx=8, chunks={"time": 2})
    with pytest.raises(RuntimeError, match="Too many computes"):
        with raise_if_dask_computes():
            tas.compute()
    with pytest.raises(RuntimeError, match="Too many computes"):
        with raise_if_dask_computes():
            tas.mean().values  # noqa: B018
    with pytest.raises(RuntimeError, match="Too many computes"):
        with raise_if_dask_computes():
            float(tas.max())


def test_raise_if_dask_computes_allows_lazy_ops() -> None:
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    with raise_if_dask_computes() as scheduler:
        anomaly = ds["tas"] - ds["tas"].mean("time")
        coarse = ds["tas"].coarsen(lat=4, lon=4).mean()
        lapse = ds["tas"] + LAPSE_RATE * ds["orog"]
        doubled = xr.apply_ufunc(
            lambda x: 2 * x, ds["tas"], dask="parallelized", output_dtypes=[np.float32]
        )
    assert scheduler.total_computes == 0
    for result in (anomaly, coarse, lapse, doubled):
        assert isinstance(result.data, da.Array)
    # outside the block computing works again, with the default scheduler
    np.testing.assert_allclose(doubled.values, 2 * ds["tas"].values)


def test_raise_if_dask_computes_max_computes() -> None:
    tas = synthetic_dataarray(nt=4, ny=8, nx=8, chunks={"time": 2})
    with raise_if_dask_computes(max_computes=2) as scheduler:
        tas.compute()
        tas.mean().compute()
        assert scheduler.total_computes == 2
        with pytest.raises(RuntimeError, match="Total: 3 > max: 2"):
            tas.max().compute()


def test_raise_if_dask_computes_restores_the_scheduler() -> None:
    before = dask.config.get("scheduler", None)
    with raise_if_dask_computes():
        pass
    assert dask.config.get("scheduler", None) == before
