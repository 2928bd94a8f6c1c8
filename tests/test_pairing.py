from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds.exceptions import DataError, DL4DSWarning, GridError, ScaleError, VariableError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset


def test_perfect_prognosis_pair(hr):
    p = xr_dl4ds.pair(hr, scale=4)
    assert p.mode == "perfect_prognosis"
    assert p.target == ("tas",) and p.static_names == ("orog", "sftlf") and p.predictors == ()
    xr.testing.assert_identical(p.lowres, hr[["tas"]].dl4ds.coarsen(scale=4))
    xr.testing.assert_identical(p.static["orog"], hr["orog"])
    assert p.spatial_dims == ("lat", "lon") and p.time_dim == "time"
    assert "mode=perfect_prognosis scale=4" in repr(p)
    tree = p.to_datatree()
    assert set(tree.children) == {"highres", "lowres", "static"}


def test_pair_accessor_equals_function(hr):
    a = hr.dl4ds.pair(scale=4, static=["orog"])
    b = xr_dl4ds.pair(hr, scale=4, static=["orog"])
    xr.testing.assert_identical(a.lowres, b.lowres)
    xr.testing.assert_identical(a.static, b.static)
    assert a.static_names == ("orog",)


def test_pair_is_lazy(hr):
    with raise_if_dask_computes():
        p = xr_dl4ds.pair(hr.chunk({"time": 2}), scale=4)
    assert p.lowres["tas"].chunks is not None


def test_dataarray_is_the_target(hr):
    p = xr_dl4ds.pair(hr["tas"], scale=4)
    assert p.target == ("tas",) and p.static_names == ()


def test_mos_pair_nests_cuts_and_intersects_times(hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4) + 1.0
    # a larger coarse domain (one extra column each side) and shifted times
    wide = coarse.pad(lon=1, mode="edge")
    wide["lon"] = np.concatenate([[coarse.lon[0] - 5], coarse.lon, [coarse.lon[-1] + 5]])
    wide = wide.isel(time=slice(2, None))
    with pytest.warns(DL4DSWarning, match="keeps the 4 common time steps; dropped 2 high-res"):
        p = xr_dl4ds.pair(hr, scale=4, lowres=wide)
    assert p.mode == "mos"
    assert p.lowres.sizes == {"time": 4, "lat": 8, "lon": 12}
    xr.testing.assert_allclose(p.lowres["tas"], coarse["tas"].isel(time=slice(2, None)))
    assert p.highres.sizes["time"] == 4


def test_mos_grid_that_does_not_nest(hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4)
    shifted = coarse.assign_coords(lat=coarse.lat + 1.0)  # off by 0.8 fine cells
    with pytest.raises(
        GridError, match="does not nest in the high-resolution grid at scale=4 along 'lat'"
    ):
        xr_dl4ds.pair(hr, scale=4, lowres=shifted)
    with pytest.raises(GridError, match="does not nest"):
        xr_dl4ds.pair(hr, scale=2, lowres=coarse)


def test_mos_no_common_time(hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4)
    later = coarse.assign_coords(time=coarse.time + np.timedelta64(365, "D"))
    with pytest.raises(DataError, match="no time step in common.*2000-01-01.*2001"):
        xr_dl4ds.pair(hr, scale=4, lowres=later)


def test_mos_missing_variable(hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4).rename(tas="t2m")
    with pytest.raises(VariableError, match=r"no variable\(s\) \['tas'\].*rename"):
        xr_dl4ds.pair(hr, scale=4, lowres=coarse)


@pytest.mark.parametrize("scale", [1, 2.5, "x"])
def test_bad_scale(hr, scale):
    with pytest.raises(ScaleError, match="integer >= 2"):
        xr_dl4ds.pair(hr, scale=scale)


def test_no_spatial_dims():
    da = xr.DataArray(np.zeros((2, 4, 4)), dims=("time", "p", "q"))
    with pytest.raises(GridError, match="Could not find the spatial dimensions"):
        xr_dl4ds.pair(da, scale=2)


def test_target_missing_or_ambiguous(hr):
    with pytest.raises(VariableError, match=r"\['pr'\] not found.*\['orog', 'sftlf', 'tas'\]"):
        xr_dl4ds.pair(hr, scale=4, target="pr")
    two = hr.assign(tas2=hr.tas + 1)
    with pytest.raises(VariableError, match=r"ambiguous: \['tas', 'tas2'\].*target='tas'"):
        xr_dl4ds.pair(two, scale=4)
    p = xr_dl4ds.pair(two, scale=4, target=["tas", "tas2"])
    assert p.target == ("tas", "tas2")


def test_static_on_another_grid(hr):
    other = hr["orog"].assign_coords(lat=hr.lat + 0.3).rename("orog2")
    with pytest.raises(GridError, match="static field 'orog2' is on another grid.*'lat'"):
        xr_dl4ds.pair(hr, scale=4, static=other)
    small = hr["orog"].isel(lat=slice(0, 16)).rename("orog3")
    with pytest.raises(GridError, match="another grid"):
        xr_dl4ds.pair(hr, scale=4, static=small)
    with pytest.raises(VariableError, match="has a time dimension"):
        xr_dl4ds.pair(hr, scale=4, static=hr["tas"].rename("x"))


def test_static_on_a_larger_grid_is_cut(hr):
    big = hr["orog"].pad(lat=2, mode="edge").rename("orog_big")
    big["lat"] = np.concatenate([hr.lat[:2] - 5, hr.lat, hr.lat[-2:] + 5])
    p = xr_dl4ds.pair(hr, scale=4, static=big)
    np.testing.assert_array_equal(p.static["orog_big"].values, hr["orog"].values)


def test_predictors_highres_are_coarsened_lowres_kept(hr):
    ds = hr.assign(hurs=hr.tas * 0 + 50.0)
    p = xr_dl4ds.pair(ds, scale=4, predictors="hurs", static=[])
    assert p.predictors == ("hurs",) and p.static_names == ()
    np.testing.assert_allclose(p.lowres["hurs"].values, 50.0)
    assert p.lowres["hurs"].shape == (6, 8, 12)
    coarse_pred = (hr.tas.dl4ds.coarsen(scale=4) * 0 + 7.0).rename("zg").to_dataset()
    p2 = xr_dl4ds.pair(hr, scale=4, predictors=coarse_pred)
    np.testing.assert_allclose(p2.lowres["zg"].values, 7.0)


def test_isel_time_and_trimming(hr):
    odd = hr.isel(lat=slice(0, 31))
    with pytest.warns(DL4DSWarning, match="dropping the last 3 row"):
        p = xr_dl4ds.pair(odd, scale=4)
    assert p.highres.sizes["lat"] == 28
    sub = p.isel_time([0, 2])
    assert sub.highres.sizes["time"] == 2 and sub.lowres.sizes["time"] == 2


def test_missing_values_become_masks_in_arrays():
    from xr_dl4ds.data.normalization import compute_stats
    from xr_dl4ds.data.samples import to_arrays

    ds = synthetic_dataset(nt=2, ny=16, nx=16, mask=True)
    p = xr_dl4ds.pair(ds, scale=4)
    stats = compute_stats(p.highres)
    stats.update(compute_stats(p.static))
    arrays = to_arrays(p, stats)
    land = ds["sftlf"].values == 1
    np.testing.assert_array_equal(np.isfinite(arrays.highres[0, 0]), land)
    assert np.isfinite(arrays.lowres).all()  # inputs are filled with 0 (the mean)


def test_all_nan_target():
    from xr_dl4ds.exceptions import DataError

    ds = synthetic_dataset(nt=2, ny=16, nx=16)
    ds["tas"][:] = np.nan
    with pytest.raises(DataError, match="'tas' has no valid value"):
        ds.dl4ds.fit(scale=4, epochs=1, progress=False)
