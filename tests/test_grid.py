from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds import grid
from xr_dl4ds.exceptions import DL4DSWarning, GridError, ScaleError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataarray, synthetic_dataset


def _plain(dims=("t", "a", "b"), shape=(2, 4, 8), **coords):
    return xr.DataArray(
        np.arange(np.prod(shape), dtype=float).reshape(shape), dims=dims, coords=coords
    )


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        (("time", "lat", "lon"), ("lat", "lon")),
        (("time", "latitude", "longitude"), ("latitude", "longitude")),
        (("time", "rlat", "rlon"), ("rlat", "rlon")),
        (("time", "y", "x"), ("y", "x")),
    ],
)
def test_spatial_dims_by_name(dims, expected):
    assert grid.get_spatial_dims(_plain(dims)) == expected


def test_spatial_dims_from_cf_attrs_take_precedence_over_names():
    # dims named oddly, found through axis / standard_name / units, in that spirit
    da = _plain(("time", "south_north", "west_east"), (1, 3, 4))
    da = da.assign_coords(
        south_north=("south_north", [1.0, 2, 3], {"standard_name": "projection_y_coordinate"}),
        west_east=("west_east", [1.0, 2, 3, 4], {"units": "degrees_east"}),
    )
    assert grid.get_spatial_dims(da) == ("south_north", "west_east")
    da2 = _plain(("time", "lat", "lon", "j", "i"), (1, 1, 1, 3, 4)).assign_coords(
        j=("j", [0, 1, 2], {"axis": "Y"}), i=("i", [0, 1, 2, 3], {"axis": "X"})
    )
    assert grid.get_spatial_dims(da2) == ("j", "i")


def test_spatial_dims_override_and_errors():
    da = _plain(("t", "a", "b"))
    assert grid.get_spatial_dims(da, ("a", "b")) == ("a", "b")
    assert grid.get_spatial_dims(da, {"y": "b", "x": "a"}) == ("b", "a")
    with pytest.raises(GridError, match=r"dims are \('t', 'a', 'b'\).*spatial_dims="):
        grid.get_spatial_dims(da)
    with pytest.raises(GridError, match=r"\['c'\] not found"):
        grid.get_spatial_dims(da, ("a", "c"))
    # the accessor property calls the same function
    assert synthetic_dataset().dl4ds.spatial_dims == ("lat", "lon")


@pytest.mark.parametrize("bad", [1, 0, -4, 2.5, "4", None, True])
def test_check_scale_rejects(bad):
    with pytest.raises(ScaleError, match="integer >= 2"):
        grid.check_scale(bad)


def test_check_scale_accepts_integral_float():
    assert grid.check_scale(4.0) == 4 and isinstance(grid.check_scale(4.0), int)


def test_coarsen_block_mean_values_and_coords():
    lat = np.arange(4) * 1.0 + 0.5
    lon = np.arange(8) * 1.0 + 0.5
    da = _plain(("time", "lat", "lon"), (2, 4, 8), lat=lat, lon=lon).assign_attrs(units="K")
    da["lat"].attrs = {"units": "degrees_north"}
    out = grid.coarsen(da, 2)
    expected = da.values.reshape(2, 2, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(out.values, expected)
    np.testing.assert_array_equal(out["lat"].values, [1.0, 3.0])
    np.testing.assert_array_equal(out["lon"].values, [1.0, 3.0, 5.0, 7.0])
    assert out.attrs == {"units": "K"}
    assert out["lat"].attrs == {"units": "degrees_north"}


def test_coarsen_skips_nan_and_keeps_all_nan_blocks_nan():
    da = xr.DataArray(
        np.array([[1.0, np.nan, np.nan, np.nan], [3.0, 5.0, np.nan, np.nan]]), dims=("y", "x")
    )
    out = grid.coarsen(da, 2)
    np.testing.assert_array_equal(out.values, [[3.0, np.nan]])


def test_coarsen_trims_with_warning_saying_how_much():
    da = synthetic_dataarray(ny=32, nx=48).isel(lat=slice(0, 30), lon=slice(0, 47))
    with pytest.warns(DL4DSWarning, match=r"last 2 row\(s\) of 'lat' and the last 3 column"):
        out = grid.coarsen(da, 4)
    assert out.sizes == {"time": 8, "lat": 7, "lon": 11}


def test_coarsen_is_lazy_and_equals_numpy(hr):
    lazy = hr.chunk({"time": 2})
    with raise_if_dask_computes():
        out = lazy.dl4ds.coarsen(scale=4)
    xr.testing.assert_identical(out.compute(), hr.dl4ds.coarsen(scale=4))


def test_coarsen_accessor_identical_to_function(hr):
    xr.testing.assert_identical(hr.dl4ds.coarsen(scale=4), xr_dl4ds.coarsen(hr, 4))
    xr.testing.assert_identical(hr.tas.dl4ds.coarsen(scale=4), xr_dl4ds.coarsen(hr.tas, 4))


def test_coarsen_rotated_keeps_grid_mapping_and_averages_aux_coords(rotated_hr):
    out = rotated_hr.dl4ds.coarsen(scale=4)
    assert out["lat"].dims == ("rlat", "rlon") and out["lat"].shape == (4, 6)
    np.testing.assert_allclose(
        out["lat"].values, rotated_hr["lat"].values.reshape(4, 4, 6, 4).mean(axis=(1, 3))
    )
    assert "rotated_pole" in out and out["tas"].attrs["grid_mapping"] == "rotated_pole"


def test_coarsen_longitude_aux_coord_is_circular_mean():
    lon = np.array([[359.0, 1.0], [358.0, 2.0]])
    da = xr.DataArray(
        np.zeros((2, 2)),
        dims=("rlat", "rlon"),
        coords={"lon": (("rlat", "rlon"), lon, {"standard_name": "longitude"})},
    )
    out = grid.coarsen(da, 2)
    np.testing.assert_allclose(out["lon"].values % 360, [[0.0]], atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
def test_refine_inverts_block_mean(scale):
    coarse = np.array([10.0, 12.5, 15.0, 17.5])
    fine = grid.refine_coords(coarse, scale)
    spacing = 2.5 / scale
    np.testing.assert_allclose(np.diff(fine), spacing)
    np.testing.assert_allclose(fine.reshape(-1, scale).mean(axis=1), coarse)
    # descending works the same way
    np.testing.assert_allclose(grid.refine_coords(coarse[::-1], scale), fine[::-1])


def test_refine_longitude_wraps():
    out = grid.refine_coords(np.array([358.0, 2.0]), 2, longitude=True)
    np.testing.assert_allclose(out, [357.0, 359.0, 1.0, 3.0])


def test_highres_coords_round_trip_exactly_for_synthetic_grid(hr):
    coarse = hr.dl4ds.coarsen(scale=4)
    fine = grid.highres_coords(coarse, 4)
    np.testing.assert_allclose(fine["lat"].values, hr["lat"].values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fine["lon"].values, hr["lon"].values, rtol=0, atol=1e-9)
    assert fine["lat"].attrs == hr["lat"].attrs


def test_is_periodic():
    assert grid.is_periodic(xr.DataArray(np.arange(360.0), dims="lon", name="lon"))
    assert grid.is_periodic(np.arange(0, 360, 2.5))
    assert not grid.is_periodic(np.arange(0, 350, 2.5))
    assert not grid.is_periodic(np.array([0.0, 1.0, 5.0]))


def test_locate_subgrid():
    ref = np.arange(10.0)
    assert grid.locate_subgrid(ref, np.arange(3.0, 7.0)) == 3
    assert grid.locate_subgrid(ref, np.arange(3.0, 7.0) + 0.005) == 3
    with pytest.raises(GridError, match="do not match"):
        grid.locate_subgrid(ref, np.arange(3.0, 7.0) + 0.5)
    assert (
        grid.locate_subgrid(np.array([350.0, 355.0, 0.0]), np.array([-5.0, 0.0]), longitude=True)
        == 1
    )
