"""Sample data bundled with xr_dl4ds, for tutorials, docs and tests.

The data ship inside the package: opening them never touches the network.

``"era5_t2m"``
    Real ERA5 2 m temperature on the global 1 degree grid (``t2m(time, lat, lon)`` in K,
    24 time steps from 2026-03-25 00:00 to 2026-03-31 23:00, 7 to 8 hours apart), with
    static ``orography(lat, lon)`` (surface altitude in m, 0 over the ocean) and
    ``lsm(lat, lon)`` (land-sea mask, 1 = land) derived from the ETOPO5 relief.
    Latitude is in ERA5's descending order (90 to -90) and longitude runs 0 to 359, so
    the grid is periodic in longitude. ERA5 is CC-BY-4.0: keep the ``attribution``
    attribute (see ``xr_dl4ds/data/DATA_LICENSE.md``) with anything you redistribute.
"""

from __future__ import annotations

from importlib import resources

import xarray as xr

from xr_dl4ds.exceptions import ConfigError

__all__ = ["available_datasets", "open_dataset"]

_DATASETS: dict[str, str] = {
    "era5_t2m": "era5_t2m.nc",
}


def available_datasets() -> list[str]:
    """Names of the sample datasets bundled with xr_dl4ds.

    Returns
    -------
    list of str
        The names :func:`open_dataset` accepts, sorted.

    Examples
    --------
    >>> from xr_dl4ds import tutorial
    >>> tutorial.available_datasets()
    ['era5_t2m']
    """
    return sorted(_DATASETS)


def open_dataset(name: str = "era5_t2m", *, decode_times: bool = True) -> xr.Dataset:
    """Open a sample dataset bundled with xr_dl4ds, loaded into memory.

    The file is read from the installed package (no download, no network access) and
    closed before returning, so the dataset can be modified and written freely.

    Parameters
    ----------
    name : str, default "era5_t2m"
        Which dataset; see :func:`available_datasets`.
    decode_times : bool, default True
        Decode the time coordinate to ``datetime64``; with False it stays as stored
        (integer hours since 1940-01-01 with CF ``units`` and ``calendar`` attributes).

    Returns
    -------
    xarray.Dataset
        The dataset, with numpy-backed variables and CF attributes.

    Raises
    ------
    ConfigError
        If `name` is not a bundled dataset; the message lists the available ones.

    See Also
    --------
    xr_dl4ds.testing.synthetic_dataset : Synthetic data of any size with known fine structure.

    Notes
    -----
    ``"era5_t2m"`` contains ERA5 data (CC-BY-4.0, ECMWF / Copernicus Climate Change
    Service) and ETOPO5 data (public domain, NOAA NGDC); its ``attribution``,
    ``references`` and ``license`` attributes say how to credit them.

    Examples
    --------
    >>> from xr_dl4ds import tutorial
    >>> ds = tutorial.open_dataset("era5_t2m")
    >>> ds["t2m"].dims, ds["t2m"].shape, str(ds["t2m"].dtype)
    (('time', 'lat', 'lon'), (24, 181, 360), 'float32')
    >>> ds["t2m"].attrs["units"], ds["orography"].attrs["units"]
    ('K', 'm')
    >>> float(ds["lat"][0]), float(ds["lat"][-1])
    (90.0, -90.0)
    """
    if name not in _DATASETS:
        raise ConfigError(
            f"unknown tutorial dataset {name!r}. Available datasets: "
            f"{', '.join(repr(n) for n in available_datasets())}; "
            "xr_dl4ds.tutorial.available_datasets() lists them."
        )
    resource = resources.files("xr_dl4ds") / "data" / _DATASETS[name]
    with resources.as_file(resource) as path:
        with xr.open_dataset(path, decode_times=decode_times) as ds:
            return ds.load()
