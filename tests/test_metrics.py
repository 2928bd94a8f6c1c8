"""Verification metrics: hand-computed values, masks, area weights, spectra, laziness."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter
from xarray.testing import assert_allclose, assert_identical

from xr_dl4ds import metrics
from xr_dl4ds.exceptions import ConfigError, GridError
from xr_dl4ds.metrics import (
    area_weights,
    bias,
    mae,
    pearson_r,
    power_spectrum,
    psnr,
    quantile_error,
    rmse,
    spearman_r,
    spectral_ratio,
    ssim,
)
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataarray, synthetic_dataset

# the metrics with (dim, weights, mask)
POINTWISE = [rmse, mae, bias, psnr, pearson_r, spearman_r]


def _field(values, dims=("time",), name="tas", units="K", **coords):
    return xr.DataArray(
        np.asarray(values, dtype=float), dims=dims, name=name, coords=coords,
        attrs={"units": units},
    )  # fmt: skip


def _global(ny=36, nx=8, nt=3, seed=0):
    """A global lat/lon field (5-degree rows from -87.5 to 87.5)."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-87.5, 87.5, ny)
    lon = np.arange(nx) * 360.0 / nx
    return xr.DataArray(
        rng.normal(280.0, 5.0, (nt, ny, nx)),
        dims=("time", "lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name="tas",
        attrs={"units": "K"},
    )


# -- hand-computed values ----------------------------------------------------------------


def test_errors_hand_computed():
    t = _field([0.0, 0.0, 0.0, 0.0])
    p = _field([1.0, -1.0, 3.0, 1.0])
    assert float(rmse(p, t)) == pytest.approx(np.sqrt(12 / 4))
    assert float(mae(p, t)) == pytest.approx(6 / 4)
    assert float(bias(p, t)) == pytest.approx(4 / 4)
    # psnr: range of the truth [0, 10], mse 1
    t2, p2 = _field([0.0, 10.0, 0.0, 10.0]), _field([1.0, 9.0, 1.0, 9.0])
    assert float(psnr(p2, t2)) == pytest.approx(20.0)
    assert float(psnr(p2, t2, data_range=1000.0)) == pytest.approx(60.0)
    assert float(psnr(t2, t2)) == np.inf


def test_rmse_is_the_root_of_the_mean_not_a_map_of_squares():
    t = _field(np.zeros((2, 3)), dims=("time", "x"))
    p = _field([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]], dims=("time", "x"))
    expected = np.sqrt([(1 + 9) / 2, (4 + 4) / 2, 0.0])  # in K, not K^2
    np.testing.assert_allclose(rmse(p, t, dim="time").values, expected)
    assert rmse(p, t, dim="time").attrs["units"] == "K"


def test_correlations_hand_computed():
    t = _field([1.0, 2.0, 3.0, 4.0])
    p = _field([1.0, 3.0, 2.0, 4.0])
    assert float(pearson_r(p, t)) == pytest.approx(0.8)
    # ranks of [10, 30, 20, 40] are those of p: Spearman = Pearson of the ranks = 0.8
    assert float(spearman_r(_field([10.0, 300.0, 20.0, 4000.0]), t)) == pytest.approx(0.8)
    # ties get their mean rank: ranks [1.5, 1.5, 3, 4] against [1, 2, 3, 4]
    r = np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1]
    assert float(spearman_r(_field([5.0, 5.0, 6.0, 9.0]), t)) == pytest.approx(r)
    assert float(pearson_r(-t, t)) == pytest.approx(-1.0)


def test_quantile_error_hand_computed():
    t = _field(np.arange(11.0))
    err = quantile_error(2 * t, t, q=[0.1, 0.5, 0.9])
    np.testing.assert_allclose(err.values, [1.0, 5.0, 9.0])
    assert err.dims == ("quantile",)
    np.testing.assert_allclose(err["quantile"].values, [0.1, 0.5, 0.9])
    default = quantile_error(t + 3.0, t)
    np.testing.assert_allclose(default["quantile"].values, [0.01, 0.99])
    np.testing.assert_allclose(default.values, [3.0, 3.0])
    assert quantile_error(2 * t, t, q=0.5).dims == ()


def test_ssim_of_constant_fields_is_the_luminance_term():
    t = _field(np.full((9, 9), 10.0), dims=("y", "x"))
    p = t + 2.0
    c1 = (0.01 * 10.0) ** 2  # data_range = 10
    expected = (2 * 10 * 12 + c1) / (10**2 + 12**2 + c1)  # contrast-structure term is 1
    assert float(ssim(p, t, data_range=10.0)) == pytest.approx(expected)
    assert float(ssim(t, t)) == pytest.approx(1.0)  # a constant truth: range 0 still works


def _ssim_brute_force(x, y, window, sigma, data_range):
    """Direct SSIM: a Gaussian-weighted window at every valid centre, then the mean."""
    r = (window - 1) // 2
    taps = np.exp(-((np.arange(window) - r) ** 2) / (2 * sigma**2))
    g = np.outer(taps, taps) / np.outer(taps, taps).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(r, x.shape[0] - r):
        for j in range(r, x.shape[1] - r):
            a = x[i - r : i + r + 1, j - r : j + r + 1]
            b = y[i - r : i + r + 1, j - r : j + r + 1]
            ma, mb = (g * a).sum(), (g * b).sum()
            va, vb = (g * a * a).sum() - ma**2, (g * b * b).sum() - mb**2
            cov = (g * a * b).sum() - ma * mb
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return np.mean(values)


def test_ssim_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(13, 12)).cumsum(0)
    p = t + rng.normal(scale=0.5, size=t.shape)
    expected = _ssim_brute_force(p, t, 7, 1.5, float(t.max() - t.min()))
    da_t, da_p = (_field(v, dims=("y", "x")) for v in (t, p))
    assert float(ssim(da_p, da_t, window=7, sigma=1.5)) == pytest.approx(expected, rel=1e-10)
    # default: the 11 x 11 window, sigma 1.5
    expected = _ssim_brute_force(p, t, 11, 1.5, float(t.max() - t.min()))
    assert float(ssim(da_p, da_t)) == pytest.approx(expected, rel=1e-10)


def test_ssim_is_per_sample():
    truth = synthetic_dataarray(nt=3, ny=16, nx=16)
    noise = truth.copy(data=np.random.default_rng(0).normal(size=truth.shape))
    noisy = truth + xr.DataArray([0.0, 0.5, 2.0], dims="time") * noise
    out = ssim(noisy, truth)
    assert out.dims == ("time",)
    assert out.attrs == {"long_name": "structural similarity (SSIM) of tas", "units": "1"}
    v = out.values
    assert v[0] == pytest.approx(1.0) and v[0] > v[1] > v[2]


# -- masks and missing values ------------------------------------------------------------


def _masked_case(ny=6, nx=7):
    rng = np.random.default_rng(3)
    t = _field(rng.normal(size=(2, ny, nx)).cumsum(1), dims=("time", "y", "x"))
    p = t + rng.normal(scale=0.3, size=t.shape)
    bad = p.copy()
    bad[:, 2, 3] = 1e6  # a huge error in one cell
    mask = xr.DataArray(np.ones((ny, nx), bool), dims=("y", "x"))
    mask[2, 3] = False
    return p, bad, t, mask


@pytest.mark.parametrize("metric", POINTWISE + [quantile_error])
def test_masked_and_nan_cells_do_not_count(metric):
    p, bad, t, mask = _masked_case()
    kw = {"dim": ["y", "x"]}
    expected = metric(p, t, mask=mask, **kw)
    assert_allclose(metric(bad, t, mask=mask, **kw), expected)
    # a NaN in either field is the same as a masked cell
    assert_allclose(metric(bad.where(mask), t, **kw), expected)
    assert_allclose(metric(bad, t.where(mask), **kw), expected)
    assert not np.allclose(metric(bad, t, **kw).values, expected.values)


def test_ssim_masked_and_nan_cells_do_not_count():
    p, bad, t, mask = _masked_case(ny=14, nx=15)
    kw = {"spatial_dims": ("y", "x"), "window": 7}
    expected = ssim(p, t, mask=mask, **kw)
    assert_allclose(ssim(bad, t, mask=mask, **kw), expected)
    assert_allclose(ssim(bad.where(mask), t, **kw), expected)
    assert_allclose(ssim(bad, t.where(mask), **kw), expected)
    assert (ssim(bad, t, **kw) < expected - 0.01).all()


def test_fully_masked_reduction_is_nan():
    t = _field([1.0, 2.0])
    assert np.isnan(float(rmse(t, t, mask=xr.DataArray([False, False], dims="time"))))


def test_mask_must_be_boolean_and_on_the_grid():
    t = _field([1.0, 2.0])
    with pytest.raises(ConfigError, match="boolean"):
        rmse(t, t, mask=xr.DataArray([1.0, 0.0], dims="time"))
    with pytest.raises(ConfigError, match="not dims of the data"):
        rmse(t, t, mask=xr.DataArray([True, False], dims="other"))


# -- area weighting ----------------------------------------------------------------------


def test_weighted_rmse_hand_computed():
    lat = {"lat": ("lat", [0.0, 60.0], {"units": "degrees_north"})}
    t = _field(np.zeros((2, 3)), dims=("lat", "lon"), lon=[0.0, 1.0, 2.0], **lat)
    p = _field([[1.0] * 3, [2.0] * 3], dims=("lat", "lon"), lon=[0.0, 1.0, 2.0], **lat)
    # cos(0) = 1, cos(60) = 0.5: (1 * 1 + 0.5 * 4) / 1.5 = 2
    assert float(rmse(p, t)) == pytest.approx(np.sqrt(2.0))
    assert float(rmse(p, t, weights=None)) == pytest.approx(np.sqrt(2.5))
    w = xr.DataArray([1.0, 3.0], dims="lat", coords={"lat": [0.0, 60.0]})
    assert float(mae(p, t, weights=w)) == pytest.approx((1 + 3 * 2) / 4)


@pytest.mark.parametrize("metric", [rmse, mae, bias, psnr, pearson_r, spearman_r])
def test_errors_near_the_poles_count_less_with_weighting(metric):
    truth = _global()
    polar = np.abs(truth["lat"]) > 80
    noise = truth.copy(data=np.random.default_rng(5).normal(0.0, 10.0, truth.shape))
    pred = truth + xr.where(polar, 20.0 + noise, 0.1 * noise)
    weighted = metric(pred, truth, dim=["lat", "lon"])
    unweighted = metric(pred, truth, dim=["lat", "lon"], weights=None)
    if metric in (psnr, pearson_r, spearman_r):  # higher is better
        assert (weighted > unweighted).all()
    else:
        assert (abs(weighted) < abs(unweighted)).all()


def test_quantiles_near_the_poles_count_less_with_weighting():
    truth = _global()
    polar = np.abs(truth["lat"]) > 80  # 11 % of the cells, 1.5 % of the area
    pred = truth + xr.where(polar, 100.0, 0.0)
    weighted = quantile_error(pred, truth, q=0.9, dim=["lat", "lon"])
    unweighted = quantile_error(pred, truth, q=0.9, dim=["lat", "lon"], weights=None)
    assert (abs(weighted) < 1.0).all() and (unweighted > 20.0).all()


def test_weights_only_matter_along_the_dims_they_vary_along():
    truth = _global()
    pred = truth + np.random.default_rng(2).normal(size=truth.shape)
    assert_identical(rmse(pred, truth, dim="time"), rmse(pred, truth, dim="time", weights=None))


def test_area_weights_of_the_grids():
    latlon = synthetic_dataarray(nt=1, ny=8, nx=8)
    w = area_weights(latlon)
    assert w.dims == ("lat",)
    np.testing.assert_allclose(w.values, np.cos(np.deg2rad(latlon["lat"].values)))
    # rotated pole: cell areas follow the rotated latitude, not the geographic one
    rot = synthetic_dataarray(nt=1, ny=8, nx=8, grid="rotated")
    w = area_weights(rot)
    assert w.dims == ("rlat",)
    np.testing.assert_allclose(w.values, np.cos(np.deg2rad(rot["rlat"].values)))
    # a projected grid: equal-area cells (None); no spatial dims: None
    proj = rot.rename(rlat="y", rlon="x")
    proj["y"].attrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    proj["x"].attrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
    assert area_weights(proj) is None
    assert area_weights(xr.DataArray([1.0, 2.0], dims="time")) is None
    # a curvilinear grid with index dims and a 2-D latitude
    curvi = rot.drop_vars(["rlat", "rlon"]).rename(rlat="y", rlon="x")
    np.testing.assert_allclose(area_weights(curvi).values, np.cos(np.deg2rad(curvi["lat"])))
    # CF cell_measures win
    area = xr.DataArray(np.arange(1.0, 9.0), dims="lat", coords={"lat": latlon["lat"]})
    with_area = latlon.assign_coords(areacella=area).assign_attrs(cell_measures="area: areacella")
    np.testing.assert_allclose(area_weights(with_area).values, area.values)


# -- maps, Datasets, attrs ---------------------------------------------------------------


def test_maps_are_high_res_dataarrays_with_units_and_long_name():
    truth = synthetic_dataarray(nt=4, ny=8, nx=12, grid="rotated")
    pred = truth + 1.0
    expected = {
        rmse: ("root mean square error of tas", "K"),
        mae: ("mean absolute error of tas", "K"),
        bias: ("bias (prediction minus truth) of tas", "K"),
        pearson_r: ("Pearson correlation of tas", "1"),
        spearman_r: ("Spearman rank correlation of tas", "1"),
        psnr: ("peak signal-to-noise ratio of tas", "dB"),
        quantile_error: ("quantile error (prediction minus truth) of tas", "K"),
    }
    for metric, (long_name, units) in expected.items():
        out = metric(pred, truth, dim="time")
        assert set(out.dims) - {"quantile"} == {"rlat", "rlon"}, metric
        assert out.name == "tas"
        assert out.attrs["long_name"] == long_name and out.attrs["units"] == units
        assert out.attrs["grid_mapping"] == "rotated_pole"
        assert out["lat"].dims == ("rlat", "rlon")  # 2-D geographic coords are kept
        assert_identical(out["rlat"], truth["rlat"])
    np.testing.assert_allclose(rmse(pred, truth, dim="time").values, 1.0)
    np.testing.assert_allclose(pearson_r(pred, truth, dim="time").values, 1.0)


def test_spatial_score_per_time_step():
    truth = synthetic_dataarray(nt=4, ny=8, nx=12)
    out = rmse(truth + xr.DataArray(np.arange(4.0), dims="time"), truth, dim=["lat", "lon"])
    assert out.dims == ("time",)
    np.testing.assert_allclose(out.values, np.arange(4.0))
    assert out["time"].size == 4


def test_dataset_is_scored_per_variable():
    ds = synthetic_dataset(nt=3, ny=8, nx=8, grid="rotated")  # tas, orog, sftlf, rotated_pole
    pred = ds.copy()
    pred["tas"] = ds["tas"] + 2.0
    pred["orog"] = ds["orog"] - 1.0
    out = rmse(pred, ds)
    assert isinstance(out, xr.Dataset)
    assert set(out.data_vars) == {"tas", "orog", "sftlf"}
    assert float(out["tas"]) == pytest.approx(2.0) and float(out["orog"]) == pytest.approx(1.0)
    assert out["orog"].attrs == {"long_name": "root mean square error of orog", "units": "m"}
    # variables without the reduced dim are left out
    assert set(rmse(pred, ds, dim="time").data_vars) == {"tas"}
    assert set(ssim(pred, ds).data_vars) == {"tas", "orog", "sftlf"}
    assert set(power_spectrum(ds).data_vars) == {"tas", "orog", "sftlf"}
    assert power_spectrum(ds)["tas"].attrs["units"] == "K^2"


def test_prediction_may_have_extra_dims():
    truth = synthetic_dataarray(nt=3, ny=8, nx=8)
    members = xr.concat([truth + 1.0, truth - 3.0], dim="member")
    out = rmse(members, truth, dim=["time", "lat", "lon"])
    np.testing.assert_allclose(out.values, [1.0, 3.0])
    assert pearson_r(members, truth, dim="time").dims == ("member", "lat", "lon")


def test_old_call_forms_still_work():
    truth = synthetic_dataarray(nt=3, ny=8, nx=8)
    assert float(rmse(truth + 1.0, truth)) == pytest.approx(1.0)
    assert rmse(truth + 1.0, truth, dim="time").dims == ("lat", "lon")


def test_inputs_are_checked():
    truth = synthetic_dataarray(nt=3, ny=8, nx=8)
    with pytest.raises(GridError, match="not on the same grid"):
        rmse(truth.isel(time=slice(1, None)), truth)
    with pytest.raises(ConfigError, match="both be DataArrays or both Datasets"):
        rmse(truth.to_dataset(), truth)
    with pytest.raises(ConfigError, match="not among the dims"):
        rmse(truth, truth, dim="member")
    with pytest.raises(ConfigError, match="weights='cos'"):
        rmse(truth, truth, weights="cos")
    with pytest.raises(ConfigError, match="q must be"):
        quantile_error(truth, truth, q=1.5)
    with pytest.raises(ConfigError, match="odd"):
        ssim(truth, truth, window=8)
    with pytest.raises(ConfigError, match="data_range"):
        psnr(truth, truth, data_range=-1.0)


# -- spectra -----------------------------------------------------------------------------


def _wave(m_y, m_x, ny=64, nx=64):
    j, i = np.meshgrid(np.arange(nx), np.arange(ny))
    values = np.cos(2 * np.pi * (m_x * j / nx + m_y * i / ny))
    return xr.DataArray(values, dims=("y", "x"), name="tas", attrs={"units": "K"})


@pytest.mark.parametrize(("m_y", "m_x"), [(0, 8), (5, 0), (3, 4)])
def test_spectrum_of_a_sinusoid_peaks_at_its_wavenumber(m_y, m_x):
    ps = power_spectrum(_wave(m_y, m_x), taper=False)
    k = np.hypot(m_y, m_x) / 64  # cycles per grid cell
    assert float(ps.idxmax("wavenumber")) == pytest.approx(k)
    assert float(ps["wavelength"][ps.argmax("wavenumber")]) == pytest.approx(1 / k)
    assert ps.attrs == {"long_name": "radially averaged power spectrum of tas", "units": "K^2"}
    assert ps["wavenumber"].attrs["units"] == "cycles per grid cell"
    peak = float(ps.max())
    assert float(ps.where(ps["wavenumber"] != ps.idxmax("wavenumber")).max()) < 1e-20 * peak
    # the Hann taper widens the peak, but it stays at the wave's wavenumber
    tapered = power_spectrum(_wave(m_y, m_x))
    assert float(tapered.idxmax("wavenumber")) == pytest.approx(k, abs=0.5 / 64)
    far = abs(tapered["wavenumber"] - k) > 3 / 64
    assert float(tapered.where(far).max()) < 1e-3 * float(tapered.max())


def test_spectrum_of_a_rectangular_grid_and_of_white_noise():
    ps = power_spectrum(_wave(0, 6, ny=32, nx=48))  # 6 cycles over 48 cells
    assert ps.sizes["wavenumber"] == 16  # bins of 1 / min(ny, nx), up to Nyquist
    assert float(ps.idxmax("wavenumber")) == pytest.approx(6 / 48, abs=0.5 / 32)
    noise = xr.DataArray(
        np.random.default_rng(0).normal(0.0, 2.0, (20, 32, 32)), dims=("time", "y", "x")
    )
    flat = power_spectrum(noise)
    assert flat.dims == ("wavenumber",)
    np.testing.assert_allclose(flat.values, 4.0, rtol=0.25)  # flat at the variance
    assert power_spectrum(noise, dim_mean=False).dims == ("time", "wavenumber")


def test_spectral_ratio():
    truth = synthetic_dataarray(nt=2, ny=32, nx=32, seed=1)
    one = spectral_ratio(truth, truth)
    np.testing.assert_allclose(one.values, 1.0)
    assert one.attrs == {
        "long_name": "power spectral ratio (prediction / truth) of tas",
        "units": "1",
    }
    smooth = truth.copy(data=gaussian_filter(truth.values, sigma=(0, 1.5, 1.5)))
    ratio = spectral_ratio(smooth, truth)
    assert float(ratio.isel(wavenumber=0)) > 0.8
    assert (ratio.sel(wavenumber=slice(0.25, None)) < 0.3).all()
    # NaN cells are left out of both spectra alike
    assert np.isfinite(spectral_ratio(truth, truth.where(truth.lat > 0)).values).all()


# -- laziness ----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["latlon", "rotated"])
def test_metrics_are_lazy_with_dask(grid):
    ds = synthetic_dataset(nt=4, ny=16, nx=16, grid=grid, chunks={"time": 2})
    truth = ds["tas"]
    pred = truth + 0.5 * np.sin(truth)  # lazy
    y, x = truth.dims[1:]
    mask = ds["sftlf"] > 0.5
    calls = {
        "rmse": lambda: rmse(pred, truth, mask=mask),
        "mae": lambda: mae(pred, truth, dim="time"),
        "bias": lambda: bias(pred, truth, dim=[y, x]),
        "psnr": lambda: psnr(pred, truth, dim=[y, x]),
        "pearson_r": lambda: pearson_r(pred, truth, dim=[y, x], mask=mask),
        "spearman_r": lambda: spearman_r(pred, truth, dim="time"),
        "quantile_error": lambda: quantile_error(pred, truth, dim=[y, x]),
        "ssim": lambda: ssim(pred, truth, mask=mask),
        "power_spectrum": lambda: power_spectrum(pred),
        "spectral_ratio": lambda: spectral_ratio(pred, truth),
    }
    with raise_if_dask_computes():
        lazy = {name: call() for name, call in calls.items()}
    for name, out in lazy.items():
        assert out.chunks is not None, name
    eager_pred, eager_truth, eager_mask = pred.compute(), truth.compute(), mask.compute()
    assert_allclose(lazy["rmse"].compute(), rmse(eager_pred, eager_truth, mask=eager_mask))
    assert_allclose(
        lazy["pearson_r"].compute(),
        pearson_r(eager_pred, eager_truth, dim=[y, x], mask=eager_mask),
    )
    assert_allclose(lazy["spearman_r"].compute(), spearman_r(eager_pred, eager_truth, dim="time"))
    assert_allclose(lazy["ssim"].compute(), ssim(eager_pred, eager_truth, mask=eager_mask))
    assert_allclose(
        lazy["quantile_error"].compute(), quantile_error(eager_pred, eager_truth, dim=[y, x])
    )
    assert_allclose(lazy["power_spectrum"].compute(), power_spectrum(eager_pred))


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0
