"""Synthetic data and helpers for testing code that uses xr_dl4ds.

The synthetic fields are small, fast to make, deterministic for a given ``seed``, carry
CF metadata, and have a *known* fine-scale structure that is explained by the static
fields, so a downscaling model has something real to learn:

.. math::

    tas = 280 + 15 \\cos(lat) + 4 \\sin(2\\,lon - 2\\pi t / 6\\,d)
          + sftlf \\, (2 + 1.5 \\cos(2\\pi t / 7\\,d)) - 0.0065\\, orog

in K, with ``t`` in days since the first step and ``orog`` in m. ``orog`` has massifs of
up to about 2.6 km and ridges whose wavelength is 1 to 2 ``scale`` high-res cells, so
block-averaging by ``scale`` removes most of them; ``sftlf`` has a coastline with detail
at the same scale. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from xr_dl4ds.exceptions import ConfigError, GridError, ScaleError

__all__ = ["raise_if_dask_computes", "synthetic_dataarray", "synthetic_dataset"]

#: Rotated pole of the synthetic rotated grid (the EURO-CORDEX one).
ROTATED_POLE = {"grid_north_pole_latitude": 39.25, "grid_north_pole_longitude": -162.0}

#: Lapse rate (K/m) that links ``tas`` to ``orog``.
LAPSE_RATE = 0.0065

_LAT_BOUNDS = (30.0, 70.0)  # regional latlon domain
_LON_BOUNDS = (-20.0, 40.0)
_RLAT_BOUNDS = (-20.0, 20.0)  # rotated domain, around 50.75N 18E
_RLON_BOUNDS = (-30.0, 30.0)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _centres(lo: float, hi: float, n: int) -> np.ndarray:
    step = (hi - lo) / n
    return lo + step * (np.arange(n) + 0.5)


def rotated_to_geographic(
    rlat: np.ndarray,
    rlon: np.ndarray,
    *,
    pole_latitude: float = ROTATED_POLE["grid_north_pole_latitude"],
    pole_longitude: float = ROTATED_POLE["grid_north_pole_longitude"],
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic latitude and longitude of points of a rotated-pole grid.

    Parameters
    ----------
    rlat, rlon : array_like
        Rotated latitude and longitude in degrees (broadcast against each other).
    pole_latitude, pole_longitude : float
        Geographic position of the rotated grid's north pole (CF
        ``grid_north_pole_latitude`` / ``grid_north_pole_longitude``), in degrees;
        ``north_pole_grid_longitude`` is 0.

    Returns
    -------
    lat, lon : numpy.ndarray
        Geographic latitude in [-90, 90] and longitude in [-180, 180), in degrees.

    Examples
    --------
    >>> lat, lon = rotated_to_geographic(0.0, 0.0)
    >>> round(float(lat), 2), round(float(lon), 2)
    (50.75, 18.0)
    """
    phi_r, lam_r = np.broadcast_arrays(np.deg2rad(rlat), np.deg2rad(rlon))
    phi_p, lam_p = np.deg2rad(pole_latitude), np.deg2rad(pole_longitude)
    # Rotated frame in geographic Cartesian coordinates: z' points to the rotated pole,
    # x' to the point (90 - pole_latitude, pole_longitude + 180), y' = z' x x' (east).
    ez = np.array([np.cos(phi_p) * np.cos(lam_p), np.cos(phi_p) * np.sin(lam_p), np.sin(phi_p)])
    ex = np.array([-np.sin(phi_p) * np.cos(lam_p), -np.sin(phi_p) * np.sin(lam_p), np.cos(phi_p)])
    ey = np.cross(ez, ex)
    xr_, yr_, zr_ = np.cos(phi_r) * np.cos(lam_r), np.cos(phi_r) * np.sin(lam_r), np.sin(phi_r)
    x, y, z = (xr_ * ex[k] + yr_ * ey[k] + zr_ * ez[k] for k in range(3))
    lat = np.rad2deg(np.arcsin(np.clip(z, -1.0, 1.0)))
    lon = (np.rad2deg(np.arctan2(y, x)) + 180.0) % 360.0 - 180.0
    return lat, lon


def _static_fields(
    ny: int, nx: int, scale: int, rng: np.random.Generator, periodic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Orography (m) and land mask (0/1) on an ascending ``(ny, nx)`` index grid."""
    j = np.arange(ny)[:, None]
    i = np.arange(nx)[None, :]
    u = (j + 0.5) / ny
    v = i / nx if periodic else (i + 0.5) / nx  # periodic: lon = 360 v exactly
    two_pi = 2.0 * np.pi

    def wave(wavelength_cells: float, phase: float) -> np.ndarray:
        """A plane wave in index space, periodic in x (integer number of crests)."""
        theta = rng.uniform(0.0, np.pi)
        kx = np.round(nx * np.cos(theta) / wavelength_cells)
        ky = ny * np.sin(theta) / wavelength_cells
        return np.cos(two_pi * (kx * i / nx + ky * j / ny) + phase)

    p = rng.uniform(0.0, 1.0, size=8)
    continent = (
        0.6 * np.cos(two_pi * (v + p[0]))
        + 0.4 * np.cos(two_pi * (u + p[1]))
        + 0.3 * np.cos(two_pi * (2.0 * v + u + p[2]))
        + 0.25 * wave(scale * rng.uniform(1.5, 2.5), two_pi * p[3])
    )
    land = (continent > np.quantile(continent, 0.4)).astype(np.float64)
    massif = (
        (1.0 + np.cos(two_pi * (v - p[4]))) * (1.0 + np.cos(two_pi * (u - p[5])))
        + 0.6 * (1.0 + np.cos(two_pi * (2.0 * v - p[6]))) * (1.0 + np.cos(two_pi * (u - p[7])))
    ) / 6.4
    ridges = 0.5 * (
        ((1.0 + wave(scale * rng.uniform(1.0, 2.0), rng.uniform(0, two_pi))) / 2.0) ** 2
        + ((1.0 + wave(scale * rng.uniform(1.0, 2.0), rng.uniform(0, two_pi))) / 2.0) ** 2
    )
    orog = land * (2000.0 * massif + 600.0 * (0.25 + 0.75 * massif) * ridges)
    return orog, land


def synthetic_dataset(
    *,
    nt: int = 8,
    ny: int = 32,
    nx: int = 48,
    scale: int = 4,
    seed: int = 0,
    grid: Literal["latlon", "rotated"] = "latlon",
    descending_lat: bool = False,
    periodic: bool = False,
    with_static: bool = True,
    mask: bool = False,
    chunks: Mapping[Hashable, int] | int | str | None = None,
    dtype: str | np.dtype = "float32",
) -> xr.Dataset:
    """High-resolution synthetic temperature with static fields and CF metadata.

    ``tas(time, y, x)`` (K) is a smooth large-scale pattern plus fine structure that is
    fully explained by ``orog(y, x)`` (m) and ``sftlf(y, x)`` (0/1), see the module
    docstring for the formula. The grid is made of cell centres; ``ny`` and ``nx`` are
    multiples of ``scale`` so that the grid coarsens exactly by ``scale``.

    Parameters
    ----------
    nt : int, default 8
        Number of daily time steps, from 2000-01-01.
    ny, nx : int, default 32, 48
        Number of high-res cells along y (latitude) and x (longitude); multiples of
        `scale`.
    scale : int, default 4
        The downscaling factor the data are meant for (>= 2); also sets the wavelength of
        the fine-scale ridges and coastline (1 to 2.5 `scale` cells).
    seed : int, default 0
        Seed of the random phases and orientations; equal seeds give identical data.
    grid : {"latlon", "rotated"}, default "latlon"
        ``"latlon"``: 1-D ``lat`` / ``lon`` (regional 30N-70N, 20W-40E unless `periodic`).
        ``"rotated"``: 1-D ``rlat`` / ``rlon`` (-20..20, -30..30 degrees) on the
        EURO-CORDEX rotated pole (39.25N, 162W), 2-D auxiliary ``lat(rlat, rlon)`` and
        ``lon(rlat, rlon)`` coordinates, a ``rotated_pole`` grid-mapping variable, and
        ``grid_mapping="rotated_pole"`` on the data variables.
    descending_lat : bool, default False
        Order ``lat`` (or ``rlat``) from north to south, like ERA5.
    periodic : bool, default False
        Make the grid global: ``lon`` is ``0, 360/nx, ..., 360 - 360/nx`` (spans exactly
        360 degrees) and ``lat`` covers -90..90. Only with ``grid="latlon"``.
    with_static : bool, default True
        Include ``orog`` and ``sftlf``.
    mask : bool, default False
        Land-only data: ``tas`` is NaN where ``sftlf`` is 0.
    chunks : mapping, int, str or None, default None
        If given, passed to :meth:`xarray.Dataset.chunk` (e.g. ``{"time": 2}``): the
        variables and non-index coordinates become dask arrays (``rotated_pole`` stays
        numpy).
    dtype : str or numpy.dtype, default "float32"
        Floating dtype of ``tas``, ``orog`` and ``sftlf``; coordinates are float64.

    Returns
    -------
    xarray.Dataset
        ``tas`` and, with `with_static`, ``orog`` and ``sftlf``, plus ``rotated_pole``
        for rotated grids; global attributes ``Conventions``, ``title`` and ``history``.

    Raises
    ------
    GridError
        If `ny` or `nx` is not a multiple of `scale` (a :class:`ValueError`).
    ScaleError
        If `scale` is not an integer >= 2 (a :class:`ValueError`).
    ConfigError
        For any other invalid option (a :class:`ValueError`).

    See Also
    --------
    synthetic_dataarray : The ``tas`` variable alone.
    xr_dl4ds.tutorial.open_dataset : Real ERA5 sample data.

    Examples
    --------
    >>> ds = synthetic_dataset(nt=4, ny=16, nx=24, scale=4)
    >>> dict(ds.sizes)
    {'time': 4, 'lat': 16, 'lon': 24}
    >>> sorted(ds.data_vars)
    ['orog', 'sftlf', 'tas']
    >>> ds["tas"].attrs["units"], ds["orog"].attrs["standard_name"]
    ('K', 'surface_altitude')
    >>> rot = synthetic_dataset(ny=8, nx=8, grid="rotated")
    >>> rot["lat"].dims
    ('rlat', 'rlon')
    """
    options = {
        "nt": nt,
        "ny": ny,
        "nx": nx,
        "scale": scale,
        "seed": seed,
        "grid": grid,
        "descending_lat": descending_lat,
        "periodic": periodic,
        "with_static": with_static,
        "mask": mask,
        "chunks": chunks,
        "dtype": dtype if isinstance(dtype, str) else str(dtype),
    }
    nt = _check_positive_int("nt", nt)
    ny = _check_positive_int("ny", ny)
    nx = _check_positive_int("nx", nx)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ScaleError(f"scale must be an integer >= 2, got {scale!r}.")
    scale = int(scale)
    for name, n in (("ny", ny), ("nx", nx)):
        if n % scale:
            lower, upper = (n // scale) * scale, (n // scale + 1) * scale
            hint = f"{name}={lower} or {name}={upper}" if lower else f"{name}={upper}"
            raise GridError(
                f"{name}={n} is not a multiple of scale={scale}: the high-res grid must "
                f"nest exactly in the low-res one. Use {hint}."
            )
    if grid not in ("latlon", "rotated"):
        raise ConfigError(f"grid must be 'latlon' or 'rotated', got {grid!r}.")
    if periodic and grid != "latlon":
        raise ConfigError("periodic=True needs grid='latlon' (a global grid); got grid='rotated'.")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = np.dtype("O")
    if np_dtype.kind != "f":
        raise ConfigError(f"dtype must be a floating dtype such as 'float32', got {dtype!r}.")

    rng = np.random.default_rng(seed)
    orog, land = _static_fields(ny, nx, scale, rng, periodic)

    ydim, xdim = ("lat", "lon") if grid == "latlon" else ("rlat", "rlon")
    coords: dict[str, Any] = {}
    if grid == "latlon":
        if periodic:
            y = _centres(-90.0, 90.0, ny)
            x = np.arange(nx) * (360.0 / nx)
        else:
            y = _centres(*_LAT_BOUNDS, ny)
            x = _centres(*_LON_BOUNDS, nx)
        lat2d, lon2d = np.broadcast_arrays(y[:, None], x[None, :])
        coords["lat"] = xr.Variable("lat", y, _lat_attrs(axis=True))
        coords["lon"] = xr.Variable("lon", x, _lon_attrs(axis=True))
    else:
        y = _centres(*_RLAT_BOUNDS, ny)
        x = _centres(*_RLON_BOUNDS, nx)
        lat2d, lon2d = rotated_to_geographic(y[:, None], x[None, :])
        coords["rlat"] = xr.Variable(
            "rlat",
            y,
            {
                "units": "degrees",
                "standard_name": "grid_latitude",
                "long_name": "latitude in rotated pole grid",
                "axis": "Y",
            },
        )
        coords["rlon"] = xr.Variable(
            "rlon",
            x,
            {
                "units": "degrees",
                "standard_name": "grid_longitude",
                "long_name": "longitude in rotated pole grid",
                "axis": "X",
            },
        )
        coords["lat"] = xr.Variable(("rlat", "rlon"), lat2d, _lat_attrs(axis=False))
        coords["lon"] = xr.Variable(("rlat", "rlon"), lon2d, _lon_attrs(axis=False))

    time = pd.date_range("2000-01-01", periods=nt, freq="D").values.astype("datetime64[ns]")
    coords["time"] = xr.Variable(
        "time",
        time,
        {"standard_name": "time", "long_name": "time", "axis": "T"},
        encoding={"units": "days since 2000-01-01", "calendar": "proleptic_gregorian"},
    )

    t = np.arange(nt, dtype=np.float64)[:, None, None]
    lat_r, lon_r = np.deg2rad(lat2d)[None], np.deg2rad(lon2d)[None]
    tas = (
        280.0
        + 15.0 * np.cos(lat_r)
        + 4.0 * np.sin(2.0 * lon_r - 2.0 * np.pi * t / 6.0)
        + land[None] * (2.0 + 1.5 * np.cos(2.0 * np.pi * t / 7.0))
        - LAPSE_RATE * orog[None]
    )
    if mask:
        tas = np.where(land[None] == 1.0, tas, np.nan)

    extra = {"grid_mapping": "rotated_pole"} if grid == "rotated" else {}
    data_vars: dict[str, Any] = {
        "tas": xr.Variable(
            ("time", ydim, xdim),
            tas.astype(np_dtype),
            {
                "units": "K",
                "standard_name": "air_temperature",
                "long_name": "Near-Surface Air Temperature",
                "cell_methods": "time: mean",
                **extra,
            },
        ),
    }
    if with_static:
        data_vars["orog"] = xr.Variable(
            (ydim, xdim),
            orog.astype(np_dtype),
            {
                "units": "m",
                "standard_name": "surface_altitude",
                "long_name": "Surface Altitude",
                **extra,
            },
        )
        data_vars["sftlf"] = xr.Variable(
            (ydim, xdim),
            land.astype(np_dtype),
            {
                "units": "1",
                "standard_name": "land_binary_mask",
                "long_name": "Land Binary Mask (1 = land)",
                **extra,
            },
        )
    if grid == "rotated":
        data_vars["rotated_pole"] = xr.Variable(
            (),
            np.int32(0),
            {
                "grid_mapping_name": "rotated_latitude_longitude",
                **ROTATED_POLE,
                "north_pole_grid_longitude": 0.0,
            },
        )

    arguments = ", ".join(f"{k}={v!r}" for k, v in options.items())
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "Conventions": "CF-1.8",
            "title": "Synthetic near-surface air temperature with orography (xr_dl4ds.testing)",
            "history": f"made by xr_dl4ds.testing.synthetic_dataset({arguments})",
        },
    )
    ds = ds[["tas", *[v for v in ds.data_vars if v != "tas"]]]  # tas first
    if descending_lat:
        ds = ds.isel({ydim: slice(None, None, -1)})
    if chunks is not None:
        chunked = ds.chunk(chunks)
        if "rotated_pole" in ds:
            chunked["rotated_pole"] = ds["rotated_pole"]
        ds = chunked
    return ds


def _lat_attrs(*, axis: bool) -> dict[str, str]:
    attrs = {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}
    return {**attrs, "axis": "Y"} if axis else attrs


def _lon_attrs(*, axis: bool) -> dict[str, str]:
    attrs = {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}
    return {**attrs, "axis": "X"} if axis else attrs


def synthetic_dataarray(**kwargs: Any) -> xr.DataArray:
    """The ``tas`` variable of :func:`synthetic_dataset`, with all its coordinates.

    Parameters
    ----------
    **kwargs
        Keyword arguments of :func:`synthetic_dataset` (``with_static`` has no effect).

    Returns
    -------
    xarray.DataArray
        ``tas(time, y, x)`` in K. On rotated grids it keeps the 2-D ``lat``/``lon``
        auxiliary coordinates and carries ``rotated_pole`` as a scalar coordinate, so its
        ``grid_mapping`` attribute still resolves.

    Examples
    --------
    >>> da = synthetic_dataarray(nt=2, ny=8, nx=12)
    >>> da.name, da.dims, da.shape
    ('tas', ('time', 'lat', 'lon'), (2, 8, 12))
    >>> sorted(synthetic_dataarray(ny=8, nx=8, grid="rotated").coords)
    ['lat', 'lon', 'rlat', 'rlon', 'rotated_pole', 'time']
    """
    ds = synthetic_dataset(**kwargs)
    da = ds["tas"]
    if "rotated_pole" in ds:
        da = da.assign_coords(rotated_pole=ds["rotated_pole"])
    return da


class _CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes``."""

    def __init__(self, max_computes: int) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many computes. Total: {self.total_computes} > max: {self.max_computes}."
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(*, max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Make any dask compute inside the block raise, to prove that code stays lazy.

    Installs, for the duration of the ``with`` block, a synchronous dask scheduler that
    counts the computations it is asked for and raises :class:`RuntimeError`
    (``"Too many computes..."``) once there are more than `max_computes`. Building lazy
    graphs (arithmetic, ``apply_ufunc(..., dask="parallelized")``, ``coarsen``...) does
    not compute and passes.

    Parameters
    ----------
    max_computes : int, default 0
        How many computes are allowed.

    Yields
    ------
    scheduler
        The scheduler; its ``total_computes`` attribute counts the computes so far.

    Raises
    ------
    RuntimeError
        On the compute that exceeds `max_computes`.

    Examples
    --------
    >>> ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    >>> with raise_if_dask_computes():
    ...     anomaly = ds["tas"] - ds["tas"].mean("time")  # lazy: fine
    >>> with raise_if_dask_computes():
    ...     anomaly.compute()
    Traceback (most recent call last):
    ...
    RuntimeError: Too many computes. Total: 1 > max: 0.
    """
    import dask

    max_computes = _check_positive_int("max_computes", max_computes, minimum=0)
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler
