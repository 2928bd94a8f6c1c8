"""Exceptions and warnings raised by xr_dl4ds.

Every error derives from :class:`DL4DSError` and also from the builtin that fits it,
so ``except ValueError`` keeps working for code that does not know this package.
Messages say what was received, what is allowed and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DL4DSError",
    "DL4DSWarning",
    "GridError",
    "ScaleError",
    "VariableError",
    "UnitsError",
    "DataError",
    "ChunkError",
    "ModelFileError",
    "ConfigError",
    "RegistryError",
]


class DL4DSError(Exception):
    """Base class of every error raised by xr_dl4ds.

    Each subclass also derives from the builtin that fits it (:class:`ValueError`,
    :class:`KeyError`, :class:`FileExistsError`), so one ``except DL4DSError`` catches
    every error of the package and ``except ValueError`` keeps working.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=8, nx=8)
    >>> mistakes = [{"scale": 1}, {"target": "pr"}, {"loss": "l3"}, {"batch_size": 0}]
    >>> for bad in mistakes:  # each is caught before any training
    ...     try:
    ...         xr_dl4ds.fit(hr, **{"scale": 4, **bad}, epochs=1, device="cpu", progress=False)
    ...     except DL4DSError as err:
    ...         print(f"{type(err).__name__}: {str(err).split('. ')[0]}")
    ScaleError: scale must be an integer >= 2, got 1
    VariableError: Target variable(s) ['pr'] not found
    RegistryError: Unknown loss 'l3'
    ConfigError: batch_size=0 must be an integer >= 1.
    >>> issubclass(ScaleError, ValueError), issubclass(VariableError, KeyError)
    (True, True)
    """


class DL4DSWarning(UserWarning):
    """Base class of the warnings issued by xr_dl4ds (grid trimming, dropped steps...).

    A :class:`UserWarning`: filter it like any other, e.g. make it an error with
    ``warnings.simplefilter("error", DL4DSWarning)`` in tests or pipelines that must not
    drop data silently.

    Examples
    --------
    >>> import warnings
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> da = synthetic_dataarray(nt=1, ny=16, nx=16).isel(lat=slice(0, 14))  # 14 rows
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     coarse = xr_dl4ds.coarsen(da, 4)
    >>> caught[0].category is DL4DSWarning, dict(coarse.sizes)
    (True, {'time': 1, 'lat': 3, 'lon': 4})
    >>> print(caught[0].message)
    The grid (lat: 14, lon: 16) is not a multiple of scale=4: dropping the last 2 row(s) of
    'lat' and the last 0 column(s) of 'lon'. ...
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", DL4DSWarning)
    ...     xr_dl4ds.coarsen(da, 4)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.DL4DSWarning: The grid (lat: 14, lon: 16) is not a multiple of ...
    """


class GridError(DL4DSError, ValueError):
    """Spatial dimensions missing, grids that do not nest, fields on the wrong grid.

    Also a :class:`ValueError`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import xr_dl4ds
    >>> da = xr.DataArray(np.zeros((2, 8, 8)), dims=("time", "row", "col"))
    >>> xr_dl4ds.get_spatial_dims(da)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.GridError: Could not find the spatial dimensions of this object: its
    dims are ('time', 'row', 'col'). ... To fix, pass spatial_dims=('<y dim>', '<x dim>'), ...
    >>> xr_dl4ds.get_spatial_dims(da, spatial_dims=("row", "col"))  # the fix
    ('row', 'col')
    >>> issubclass(GridError, DL4DSError), issubclass(GridError, ValueError)
    (True, True)
    """


class ScaleError(DL4DSError, ValueError):
    """A scale factor that is not an integer >= 2, or that does not match the model.

    Also a :class:`ValueError`.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> xr_dl4ds.coarsen(synthetic_dataarray(nt=1, ny=8, nx=8), 2.5)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ScaleError: scale must be an integer >= 2, got 2.5. Only integer
    refinement factors are supported: ...
    >>> issubclass(ScaleError, DL4DSError), issubclass(ScaleError, ValueError)
    (True, True)
    """


class VariableError(DL4DSError, KeyError):
    """A variable that is missing, ambiguous or not the one the model was trained on.

    Also a :class:`KeyError`, whose message stays readable (not quoted).

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=8, nx=8)
    >>> xr_dl4ds.pair(hr, scale=4, target="pr")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.VariableError: Target variable(s) ['pr'] not found. The data variables
    are ['orog', 'sftlf', 'tas']. Pass one of those as target=.
    >>> xr_dl4ds.pair(hr.assign(tas2=hr["tas"] + 1), scale=4)  # two candidate targets
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.VariableError: The target is ambiguous: ['tas', 'tas2'] ...
    >>> issubclass(VariableError, DL4DSError), issubclass(VariableError, KeyError)
    (True, True)
    """

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnitsError(DL4DSError, ValueError):
    """Units that are missing, unknown to pint, or not convertible to the training units.

    Also a :class:`ValueError`.

    Examples
    --------
    >>> from xr_dl4ds.data.normalization import convert_units
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> tas = synthetic_dataarray(nt=1, ny=8, nx=8)
    >>> convert_units(tas.assign_attrs(units="m"), "K")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.UnitsError: Cannot convert units 'm' to 'K': ...
    >>> convert_units(tas.drop_attrs(), "K")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.UnitsError: Variable 'tas' has no 'units' attribute, but the model was
    trained on it in 'K'. Set the units, e.g. da.attrs['units'] = 'K'.
    >>> issubclass(UnitsError, DL4DSError), issubclass(UnitsError, ValueError)
    (True, True)
    """


class DataError(DL4DSError, ValueError):
    """Data that cannot be learned from: all-NaN fields, no overlapping time steps...

    Also a :class:`ValueError`.

    Examples
    --------
    MOS pairs need low-resolution data at the same time stamps as the high-resolution
    ones:

    >>> import numpy as np
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=8, nx=8)
    >>> lowres = hr["tas"].dl4ds.coarsen(scale=4)
    >>> lowres["time"] = lowres["time"] + np.timedelta64(12, "h")  # at noon, not midnight
    >>> xr_dl4ds.pair(hr, scale=4, lowres=lowres)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.DataError: The high- and low-resolution data have no time step in
    common: ...
    >>> issubclass(DataError, DL4DSError), issubclass(DataError, ValueError)
    (True, True)
    """


class ChunkError(DL4DSError, ValueError):
    """A dask chunk layout the operation cannot work with.

    Also a :class:`ValueError`.

    Examples
    --------
    :func:`xr_dl4ds.to_zarr` writes whole zarr chunks region by region, so along the
    written dim they must be the dask chunks:

    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    >>> xr_dl4ds.to_zarr(ds, "out.zarr", encoding={"tas": {"chunks": (3, 8, 8)}},
    ...                  progress=False)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ChunkError: encoding['tas']['chunks'] = (3, 8, 8), but the zarr chunks
    of 'tas' along 'time' must be 2, the dask chunks written region by region. ...
    >>> issubclass(ChunkError, DL4DSError), issubclass(ChunkError, ValueError)
    (True, True)
    """


class ModelFileError(DL4DSError, ValueError):
    """A model file that is not an xr_dl4ds file, is truncated, or is of a newer format.

    Also a :class:`ValueError`. :func:`xr_dl4ds.load` never executes code from the file.

    Examples
    --------
    >>> import xr_dl4ds
    >>> with open("notes.dl4ds", "w") as f:
    ...     _ = f.write("not a model")
    >>> xr_dl4ds.load("notes.dl4ds")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ModelFileError: notes.dl4ds could not be read as an xr_dl4ds model
    file: it starts with b'not ', while model files are zip archives written by
    torch.save() (starting with b'PK'). Pass a file written by Downscaler.save() / ...
    >>> issubclass(ModelFileError, DL4DSError), issubclass(ModelFileError, ValueError)
    (True, True)
    """


class ConfigError(DL4DSError, ValueError):
    """An invalid option value (backbone, loss, patch size, device...).

    Also a :class:`ValueError`.

    Examples
    --------
    >>> import xr_dl4ds
    >>> xr_dl4ds.set_options(modle=None)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ConfigError: Unknown option(s) ['modle'] for set_options(); available:
    ['model'].
    >>> xr_dl4ds.tutorial.open_dataset("era5")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ConfigError: unknown tutorial dataset 'era5'. Available datasets:
    'era5_t2m'; ...
    >>> issubclass(ConfigError, DL4DSError), issubclass(ConfigError, ValueError)
    (True, True)
    """


class RegistryError(DL4DSError, KeyError):
    """An unknown or duplicate name in a registry (backbones, upsamplings, losses).

    Also a :class:`KeyError`, whose message stays readable (not quoted).

    Examples
    --------
    >>> from xr_dl4ds.models import create_model
    >>> create_model("resnett", scale=4)
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.RegistryError: Unknown backbone 'resnett'. Valid backbones: ['convnet',
    'convnext', 'densenet', 'resnet', 'unet']. ...
    >>> issubclass(RegistryError, DL4DSError), issubclass(RegistryError, KeyError)
    (True, True)
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def did_you_mean(keys: Sequence[str], valid: Sequence[str]) -> str:
    """`` Did you mean: 'n_filter' -> 'n_filters'?`` for the keys close to a valid one
    (empty when none is)."""
    import difflib

    hints = []
    for key in keys:
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            hints.append(f"{key!r} -> {close[0]!r}?")
    return f" Did you mean: {', '.join(hints)}" if hints else ""
