from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xr_dl4ds.data.normalization import (
    VariableStats,
    compute_stats,
    convert_units,
    denormalize,
    normalize,
    unit_conversion,
)
from xr_dl4ds.exceptions import UnitsError
from xr_dl4ds.testing import raise_if_dask_computes


def test_stats_match_numpy_and_skip_nan():
    values = np.array([[1.0, 2.0], [np.nan, 5.0]])
    ds = xr.Dataset(
        {"a": (("y", "x"), values, {"units": "K"}), "c": (("y", "x"), np.full((2, 2), 3.0))}
    )
    stats = compute_stats(ds)
    assert stats["a"].mean == pytest.approx(np.nanmean(values))
    assert stats["a"].std == pytest.approx(np.nanstd(values))
    assert stats["a"].units == "K"
    assert stats["c"] == VariableStats(mean=3.0, std=1.0, units=None)  # constant: std 1


def test_stats_are_one_compute(hr):
    lazy = hr.chunk({"time": 1})
    with raise_if_dask_computes(max_computes=1):
        stats = compute_stats(lazy)
    assert stats["tas"].mean == pytest.approx(float(hr.tas.mean()), rel=1e-6)


def test_normalize_roundtrip_and_dtype():
    da = xr.DataArray(np.array([270.0, 280.0, 290.0]))
    s = VariableStats(mean=280.0, std=10.0, units="K")
    n = normalize(da, s)
    np.testing.assert_allclose(n.values, [-1, 0, 1])
    assert n.dtype == np.float32
    np.testing.assert_allclose(denormalize(n, s).values, da.values)


def test_unit_conversion_is_lazy_and_exact():
    da = xr.DataArray(
        np.array([0.0, 10.0]), dims="x", attrs={"units": "degC", "long_name": "t"}
    ).chunk()
    with raise_if_dask_computes():
        out = convert_units(da, "K")
    np.testing.assert_allclose(out.values, [273.15, 283.15])
    assert out.attrs == {"units": "K", "long_name": "t"}
    assert unit_conversion("km", "m") == (1000.0, 0.0)


def test_unit_errors():
    da = xr.DataArray([1.0], dims="x", attrs={"units": "m"}, name="tas")
    with pytest.raises(UnitsError, match="'m' to 'K'"):
        convert_units(da, "K")
    with pytest.raises(UnitsError, match="no 'units' attribute.*attrs\\['units'\\] = 'K'"):
        convert_units(xr.DataArray([1.0], dims="x", name="tas"), "K")
