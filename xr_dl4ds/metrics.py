r"""Verification metrics over named dimensions, and the interpolation baseline.

Conventions shared by every metric
----------------------------------
- **Inputs.** ``prediction`` and ``truth`` come first, both DataArrays or both Datasets
  on the same grid (their indexes must be equal, otherwise a
  :class:`~xr_dl4ds.exceptions.GridError` says where they differ). A Dataset is scored
  per data variable: the variables present in both, numeric and not 0-d, that have every
  dimension the metric reduces over; the others are left out.
- **Dimensions.** ``dim`` names the dimension(s) to reduce over, ``None`` meaning all of
  them. "Spatial, per time step" is ``dim=["lat", "lon"]`` (a value per time step);
  "temporal, per grid cell" is ``dim="time"`` (a map on the high-resolution grid, with
  every coordinate of that grid kept, 2-D ``lat``/``lon`` of rotated grids included).
- **Missing values and masks.** A cell where either field is NaN is skipped in both
  (pairwise), so a NaN never turns a score into NaN and never changes the other cells'
  contribution. ``mask`` (a boolean DataArray, ``True`` = use the cell, that broadcasts
  against the data, e.g. ``sftlf > 0.5``) removes more cells the same way. A reduction
  with no valid cell gives NaN.
- **Area weighting.** With ``weights="auto"`` (the default) the cells are weighted by
  their area, see :func:`area_weights`: ``cos(latitude)`` on latitude/longitude grids,
  ``cos(grid_latitude)`` on rotated-pole grids, the CF ``cell_measures`` area where the
  data has one. Weights only matter along the dims they vary along, so a reduction over
  ``"time"`` alone is unweighted. ``weights=None`` turns weighting off; a DataArray (non-
  negative, broadcasting against the data) is used as given.
- **Laziness.** Dask-backed input gives dask-backed output, and nothing is computed until
  asked (``.compute()``, ``float()``, ``.values``). Means, RMSE, MAE, bias and PSNR are
  tree reductions that work with any chunking. Correlations, quantiles, SSIM and spectra
  need each sample whole: they rechunk the dims they reduce over to a single chunk (and
  let dask size the other dims), which holds one sample at a time in memory.
- **Output.** The same type as the input, named after the variable, with ``long_name``
  (e.g. ``"root mean square error of tas"``) and ``units``: the variable's units for RMSE,
  MAE, bias and quantile errors, ``"1"`` for correlations, SSIM and spectral ratios,
  ``"dB"`` for PSNR and the squared units for power spectra. Maps keep the
  ``grid_mapping`` attribute.

RMSE, MAE and bias are (weighted) means computed here: :mod:`xskillscore` computes them
too, but only with each reduced dim in one dask chunk, which would load a whole
time-chunked dataset at once for ``dim=None``. Pearson and Spearman correlations build on
:func:`xskillscore.pearson_r` (Spearman ranks the valid pairs first, because
``xskillscore.spearman_r`` gives NaN for any series with a missing value). SSIM, PSNR,
quantile errors and spectra are written here.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np
import xarray as xr

from .baselines import INTERPOLATION_METHODS, interpolate
from .exceptions import ConfigError, GridError
from .grid import _Y_UNITS, get_spatial_dims, is_periodic

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

__all__ = [
    "rmse",
    "mae",
    "bias",
    "pearson_r",
    "spearman_r",
    "ssim",
    "psnr",
    "quantile_error",
    "power_spectrum",
    "spectral_ratio",
    "area_weights",
    "interpolate",
    "INTERPOLATION_METHODS",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
]

#: Side of the Gaussian SSIM window, in grid cells (as in Wang et al. 2004 and ``losses``).
SSIM_WINDOW = 11
#: Standard deviation of the Gaussian SSIM window, in grid cells.
SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
# a dynamic range of 0 (a constant truth) would make SSIM 0 / 0
_MIN_DATA_RANGE = 1e-12
_LENGTH_UNITS = {"m", "km", "metre", "meter", "metres", "meters", "kilometre", "kilometer"}

Weights: TypeAlias = xr.DataArray | Literal["auto"] | None
SpatialDims: TypeAlias = Sequence[Hashable] | Mapping[str, Hashable] | None
Dim: TypeAlias = str | Sequence[Hashable] | None

# -- shared machinery --------------------------------------------------------------------


def _check_pair(prediction: T_Xarray, truth: T_Xarray) -> tuple[T_Xarray, T_Xarray]:
    """Check the types and that both are on the same grid (exact alignment)."""
    if not isinstance(truth, (xr.DataArray, xr.Dataset)) or type(prediction) is not type(truth):
        raise ConfigError(
            "prediction and truth must both be DataArrays or both Datasets, got "
            f"{type(prediction).__name__} and {type(truth).__name__}. To score one variable "
            "of a Dataset, pass ds['name']."
        )
    try:
        prediction, truth = xr.align(prediction, truth, join="exact")
    except ValueError as err:
        raise GridError(
            f"prediction and truth are not on the same grid: {err} Metrics compare "
            "cell by cell: select or interpolate one onto the other first, e.g. "
            "prediction.interp_like(truth) or truth.sel(time=prediction.time)."
        ) from None
    return prediction, truth


def _align_to(obj: xr.DataArray, like: xr.DataArray, what: str) -> xr.DataArray:
    """``obj`` checked to be on the grid of ``like`` (dims among its dims, equal indexes)."""
    extra = [d for d in obj.dims if d not in like.dims]
    if extra:
        raise ConfigError(
            f"{what} has dims {obj.dims}, but {extra} are not dims of the data {like.dims}. "
            f"Pass a {what} whose dims are among the data's, e.g. over the spatial dims only."
        )
    try:
        return xr.align(like, obj, join="exact")[1]
    except ValueError as err:
        raise GridError(
            f"{what} is not on the grid of the data: {err} Give it the data's coordinates."
        ) from None


def _reduce_dims(dim: Dim, da: xr.DataArray) -> list[Hashable]:
    """The dims to reduce over, of the (broadcast) pair ``da``."""
    if dim is None:
        return list(da.dims)
    dims = [dim] if isinstance(dim, str) else list(dim)
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ConfigError(
            f"dim={dim!r}: {missing} not among the dims {da.dims} of {da.name!r}. Pass "
            "dimension names of the data, e.g. dim='time' for a map or the spatial dims "
            "for a value per time step; dim=None reduces over all of them."
        )
    return list(dict.fromkeys(dims))


def _valid_pair(
    p: xr.DataArray, t: xr.DataArray, mask: xr.DataArray | None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Both fields, broadcast against each other (a prediction may have extra dims, e.g.
    ensemble members), with NaN wherever either is NaN or ``mask`` is False."""
    # the truth's coordinates only: comparing the prediction's (dask) auxiliary
    # coordinates with the truth's would compute them
    p = p.reset_coords(drop=True)
    valid = p.notnull() & t.notnull()
    if mask is not None:
        if not isinstance(mask, xr.DataArray):
            raise ConfigError(
                f"mask must be a boolean DataArray (True = use the cell), got "
                f"{type(mask).__name__}."
            )
        if mask.dtype != bool:
            raise ConfigError(
                f"mask must be boolean (True = use the cell), got dtype {mask.dtype}. Make "
                "one with a comparison, e.g. mask=ds['sftlf'] > 0.5."
            )
        valid = valid & _align_to(mask, valid, "mask")
    return p.where(valid), t.where(valid)


def _resolve_weights(
    weights: Weights, truth: xr.DataArray | xr.Dataset
) -> tuple[xr.DataArray | None, bool]:
    """(weights, whether they are the automatic area weights)."""
    if weights is None:
        return None, False
    if isinstance(weights, str):
        if weights != "auto":
            raise ConfigError(
                f"weights={weights!r} is not allowed: pass 'auto' (area weights where the "
                "data has a latitude), None (unweighted) or a DataArray of weights."
            )
        return area_weights(truth), True
    if isinstance(weights, xr.DataArray):
        return weights, False
    raise ConfigError(f"weights must be 'auto', None or a DataArray, got {type(weights).__name__}.")


def _weights_for(
    w: xr.DataArray | None, auto: bool, t: xr.DataArray, dims: Sequence[Hashable]
) -> xr.DataArray | None:
    """The weights of one variable; None where they cannot vary along ``dims``."""
    if w is None or not set(w.dims) & set(dims):
        return None
    if auto and not set(w.dims) <= set(t.dims):
        return None
    return _align_to(w, t, "weights")


def _wmean(x: xr.DataArray, w: xr.DataArray | None, dims: Sequence[Hashable]) -> xr.DataArray:
    """Mean over ``dims`` skipping NaN, weighted by ``w``; NaN where nothing is valid."""
    if w is None:
        return x.mean(dims, skipna=True)
    den = w.where(x.notnull()).sum(dims)
    return (x * w).sum(dims, skipna=True) / den.where(den > 0)


def _single_chunk(da: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    """Dask arrays with ``dims`` in one chunk, the other dims sized by dask."""
    if da.chunks is None:
        return da
    spec: dict[Hashable, Any] = {d: ("auto" if d not in dims else -1) for d in da.dims}
    return da.chunk(spec)


def _data_range(value: float | xr.DataArray | None) -> xr.DataArray | None:
    """A ``data_range`` option as a DataArray (None: derive it from the truth)."""
    if value is None or isinstance(value, xr.DataArray):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigError(
            f"data_range must be a positive number or a DataArray, got {value!r}. It is the "
            "span of possible values, e.g. data_range=float(truth.max() - truth.min())."
        )
    return xr.DataArray(float(value))


def _units_of(p: xr.DataArray, t: xr.DataArray) -> str | None:
    units = t.attrs.get("units", p.attrs.get("units"))
    return None if units is None else str(units)


def _squared_units(units: str | None) -> str | None:
    if units is None or units in ("1", ""):
        return units
    simple = all(c.isalpha() or c == "_" for c in units)
    return f"{units}^2" if simple else f"({units})^2"


def _finish(out: xr.DataArray, t: xr.DataArray, long_name: str, units: str | None) -> xr.DataArray:
    """Name and attrs of a result; maps keep the grid mapping."""
    name = t.name
    attrs: dict[str, Any] = {"long_name": long_name if name is None else f"{long_name} of {name}"}
    if units is not None:
        attrs["units"] = units
    if "grid_mapping" in t.attrs:
        try:
            y, x = get_spatial_dims(t)
        except GridError:
            pass
        else:
            if y in out.dims and x in out.dims:
                attrs["grid_mapping"] = t.attrs["grid_mapping"]
    # the truth's coordinates, attrs included (some reductions drop coordinate attrs)
    same = {
        k: t.coords[k]
        for k in out.coords
        if k in t.coords and t.coords[k].dims == out.coords[k].dims
    }
    out = out.assign_coords(same)
    out = out.rename(name) if name is not None else out
    out.attrs = attrs
    return out


def _scorable(da: xr.DataArray, required: Sequence[Hashable]) -> bool:
    return da.ndim > 0 and da.dtype.kind in "biuf" and set(required) <= set(da.dims)


def _map_vars(
    one: Callable[[xr.DataArray, xr.DataArray, xr.DataArray | None], xr.DataArray],
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    mask: xr.DataArray | xr.Dataset | None,
    required: Sequence[Hashable] = (),
) -> T_Xarray:
    """Apply ``one(p, t, mask)`` to a pair of DataArrays, or per variable of Datasets."""
    prediction, truth = _check_pair(prediction, truth)
    if isinstance(truth, xr.DataArray):
        if isinstance(mask, xr.Dataset):
            raise ConfigError("mask must be a DataArray when the data are DataArrays.")
        return one(prediction, truth, mask)
    out = {}
    for name, t in truth.data_vars.items():
        if name not in prediction.data_vars or not _scorable(t, required):
            continue
        m = mask.get(name) if isinstance(mask, xr.Dataset) else mask
        out[name] = one(prediction[name], t, m)
    if not out:
        raise ConfigError(
            f"No data variable to score: prediction has {list(prediction.data_vars)}, "
            f"truth has {list(truth.data_vars)}; a variable is scored when both have it, it "
            f"is numeric and it has the dims {tuple(required)}."
        )
    return xr.Dataset(out)


def _required(dim: Dim) -> tuple[Hashable, ...]:
    if dim is None:
        return ()
    return (dim,) if isinstance(dim, str) else tuple(dim)


# -- area weights ------------------------------------------------------------------------


def _cell_area(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | None:
    """The CF ``cell_measures`` area variable, where the object carries it."""
    holders = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for da in holders:
        words = str(da.attrs.get("cell_measures", "")).replace(":", ": ").split()
        for key, value in zip(words[:-1], words[1:], strict=True):
            if key == "area:" and (
                value in obj.coords or (isinstance(obj, xr.Dataset) and value in obj.variables)
            ):
                return obj[value]
    return None


def _is_degrees_latitude(coord: xr.DataArray) -> bool:
    attrs = coord.attrs
    if attrs.get("standard_name") in ("latitude", "grid_latitude"):
        return True
    if attrs.get("units") in _Y_UNITS:
        return True
    units = attrs.get("units")
    named = str(coord.name).lower() in ("lat", "latitude", "rlat", "nav_lat")
    return named and units in (None, "degrees", "degree")


def area_weights(
    obj: xr.DataArray | xr.Dataset, *, spatial_dims: SpatialDims = None
) -> xr.DataArray | None:
    r"""Area weights of the grid cells, or None where they cannot be known.

    In order:

    1. the cell areas named by a CF ``cell_measures = "area: <name>"`` attribute, when
       ``<name>`` is a coordinate (or a variable of the Dataset);
    2. :math:`\cos\varphi` of a 1-D latitude along the y dimension: geographic latitude on
       lat/lon grids, and ``grid_latitude`` (``rlat``) on rotated-pole grids. A rotated
       grid is a latitude/longitude grid on a rotated sphere, so its cell areas follow the
       *rotated* latitude, not the geographic one of its 2-D ``lat`` coordinate (on the
       EURO-CORDEX grid the two differ by a factor of 3);
    3. nothing (None) on projected grids (y in metres, ``projection_y_coordinate``),
       whose cells are taken to be of equal area: pass the cell areas as ``weights``
       if they are not;
    4. :math:`\cos\varphi` of a 2-D latitude auxiliary coordinate over the spatial dims
       of other curvilinear grids;
    5. None when the object has no spatial dims or no latitude.

    Parameters
    ----------
    obj : DataArray or Dataset
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims
        (:func:`xr_dl4ds.grid.get_spatial_dims`).

    Returns
    -------
    DataArray or None
        Non-negative weights over (some of) the spatial dims, named ``"area_weights"``,
        with only index coordinates (so they broadcast cleanly against the data).

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> w = area_weights(synthetic_dataarray(ny=4, nx=8))
    >>> w.dims, w.round(3).values
    (('lat',), array([0.819, 0.707, 0.574, 0.423]))
    >>> area_weights(synthetic_dataarray(ny=4, nx=8, grid="rotated")).dims
    ('rlat',)
    """
    area = _cell_area(obj)
    if area is not None:
        w = area
    else:
        try:
            y, x = get_spatial_dims(obj, spatial_dims)
        except GridError:
            if spatial_dims is not None:
                raise
            return None
        ycoord = obj.coords.get(y)
        if ycoord is not None and ycoord.dims == (y,) and _is_degrees_latitude(ycoord):
            lat = ycoord
        elif ycoord is not None and (
            ycoord.attrs.get("standard_name") == "projection_y_coordinate"
            or ycoord.attrs.get("units") in _LENGTH_UNITS
        ):
            return None
        else:
            candidates = [
                c
                for c in obj.coords.values()
                if set(c.dims) == {y, x} and _is_degrees_latitude(c) and c.name != y
            ]
            if len(candidates) != 1:
                return None
            lat = candidates[0]
        w = np.cos(np.deg2rad(lat)).clip(min=0.0)
        w.attrs = {"long_name": f"area weight, cos({lat.name})", "units": "1"}
    return w.reset_coords(drop=True).rename("area_weights")


# -- errors: RMSE, MAE, bias, PSNR -------------------------------------------------------

_COMMON_PARAMETERS = """\
    prediction, truth : DataArray or Dataset
        The fields to compare, on the same grid; a Dataset is scored per variable.
    dim : str or sequence of str, optional
        The dimension(s) to reduce over; None (the default) reduces over all of them.
        ``dim="time"`` gives a map, the spatial dims a value per time step.
    weights : "auto", None or DataArray, default "auto"
        ``"auto"``: area weights (:func:`area_weights`) where the data has a latitude and
        ``dim`` includes the spatial dims; None: unweighted; a DataArray: those weights.
    mask : boolean DataArray, optional
        ``True`` where the cells count, e.g. ``ds["sftlf"] > 0.5``. NaN cells of either
        field are always left out."""


def _mean_error(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim,
    weights: Weights,
    mask: xr.DataArray | xr.Dataset | None,
    error: Callable[[xr.DataArray], xr.DataArray],
    post: Callable[[xr.DataArray], xr.DataArray],
    long_name: str,
) -> T_Xarray:
    w_all, auto = _resolve_weights(weights, truth)

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        dims = _reduce_dims(dim, b)
        out = post(_wmean(error(a - b), _weights_for(w_all, auto, b, dims), dims))
        return _finish(out, t, long_name, _units_of(p, t))

    return _map_vars(one, prediction, truth, mask=mask, required=_required(dim))


def rmse(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Root mean square error :math:`\sqrt{\sum w (p - t)^2 / \sum w}` over ``dim``.

    The square root is taken *after* the mean, so ``rmse(..., dim="time")`` is a map of
    root mean square errors in the variable's units (not a map of squared errors).

    Parameters
    ----------
    {common}

    Returns
    -------
    DataArray or Dataset
        Same type as the input, with ``long_name`` ``"root mean square error of <name>"``
        and the variable's ``units``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = xr.DataArray([0.0, 0.0, 0.0, 0.0], dims="x", name="tas", attrs={{"units": "K"}})
    >>> p = xr.DataArray([1.0, -1.0, 3.0, np.nan], dims="x")
    >>> r = rmse(p, t)  # sqrt((1 + 1 + 9) / 3): the NaN cell is skipped
    >>> round(float(r), 6), r.attrs["long_name"], r.attrs["units"]
    (1.914854, 'root mean square error of tas', 'K')

    A map of the error at every grid cell, and one value per time step (area-weighted):

    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> truth = synthetic_dataarray(nt=4, ny=8, nx=12)
    >>> rmse(truth + 1.0, truth, dim="time").dims
    ('lat', 'lon')
    >>> rmse(truth + 1.0, truth, dim=["lat", "lon"]).round(6).values
    array([1., 1., 1., 1.])
    """
    return _mean_error(
        prediction,
        truth,
        dim=dim,
        weights=weights,
        mask=mask,
        error=lambda d: d**2,
        post=np.sqrt,
        long_name="root mean square error",
    )


def mae(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Mean absolute error :math:`\sum w |p - t| / \sum w` over ``dim``.

    Parameters
    ----------
    {common}

    Returns
    -------
    DataArray or Dataset
        With ``long_name`` ``"mean absolute error of <name>"`` and the variable's units.

    Examples
    --------
    >>> import xarray as xr
    >>> t = xr.DataArray([0.0, 0.0, 0.0, 0.0], dims="x")
    >>> p = xr.DataArray([1.0, -1.0, 3.0, 100.0], dims="x")
    >>> float(mae(p, t))
    26.25
    >>> float(mae(p, t, mask=xr.DataArray([True, True, True, False], dims="x")))
    1.6666666666666667
    """
    return _mean_error(
        prediction,
        truth,
        dim=dim,
        weights=weights,
        mask=mask,
        error=abs,
        post=lambda x: x,
        long_name="mean absolute error",
    )


def bias(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Mean error (bias) :math:`\sum w (p - t) / \sum w` over ``dim``: positive when the
    prediction is too high.

    Parameters
    ----------
    {common}

    Returns
    -------
    DataArray or Dataset
        With ``long_name`` ``"bias (prediction minus truth) of <name>"`` and the
        variable's units.

    Examples
    --------
    >>> import xarray as xr
    >>> t = xr.DataArray([0.0, 0.0, 0.0], dims="x")
    >>> float(bias(xr.DataArray([1.0, -1.0, 3.0], dims="x"), t))
    1.0
    """
    return _mean_error(
        prediction,
        truth,
        dim=dim,
        weights=weights,
        mask=mask,
        error=lambda d: d,
        post=lambda x: x,
        long_name="bias (prediction minus truth)",
    )


def psnr(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    data_range: float | xr.DataArray | None = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Peak signal-to-noise ratio :math:`10 \log_{{10}}(L^2 / \mathrm{{MSE}})` in dB.

    The MSE is the (weighted, mask-aware) mean squared error over ``dim``, as in
    :func:`rmse`. Higher is better; identical fields give ``inf``.

    Parameters
    ----------
    {common}
    data_range : float or DataArray, optional
        :math:`L`. By default the range ``max - min`` of the valid ``truth`` cells over
        ``dim`` (per time step when ``dim`` is the spatial dims). Pass a fixed value to
        compare scores across samples, e.g. the range over the whole test period. When
        the range is 0 (a constant truth) the PSNR is NaN.

    Returns
    -------
    DataArray or Dataset
        With ``long_name`` ``"peak signal-to-noise ratio of <name>"`` and units ``"dB"``.

    Examples
    --------
    >>> import xarray as xr
    >>> t = xr.DataArray([0.0, 10.0, 0.0, 10.0], dims="x")
    >>> p = xr.DataArray([1.0, 9.0, 1.0, 9.0], dims="x")
    >>> float(psnr(p, t))  # 10 log10(10**2 / 1)
    20.0
    >>> float(psnr(p, t, data_range=100.0))
    40.0
    """
    span = _data_range(data_range)
    w_all, auto = _resolve_weights(weights, truth)

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        dims = _reduce_dims(dim, b)
        mse = _wmean((a - b) ** 2, _weights_for(w_all, auto, b, dims), dims)
        L = b.max(dims) - b.min(dims) if span is None else span
        ratio = (L**2).where(L > 0) / mse.where(mse > 0)
        out = (10.0 * xr.apply_ufunc(np.log10, ratio, dask="allowed")).where(mse != 0, np.inf)
        return _finish(out, t, "peak signal-to-noise ratio", "dB")

    return _map_vars(one, prediction, truth, mask=mask, required=_required(dim))


# -- correlations ------------------------------------------------------------------------


def _rank_kernel(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(a, axis=-1, nan_policy="omit"), dtype=np.float64)


def _correlation(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim,
    weights: Weights,
    mask: xr.DataArray | xr.Dataset | None,
    rank: bool,
) -> T_Xarray:
    import xskillscore as xs

    w_all, auto = _resolve_weights(weights, truth)
    long_name = "Spearman rank correlation" if rank else "Pearson correlation"

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        dims = _reduce_dims(dim, b)
        w = _weights_for(w_all, auto, b, dims)
        if w is not None and not set(w.dims) <= set(dims):
            raise ConfigError(
                f"Weights over {w.dims} vary along dims that {long_name} does not reduce "
                f"over ({dims}); weights of a correlation may vary only along dim. Pass "
                "weights over the reduced dims, or weights=None."
            )
        if not dims:
            raise ConfigError(f"{long_name} needs at least one dim to reduce over, got dim=[].")
        # coordinates along the reduced dims go (the result has none of them)
        a, b = (
            _single_chunk(x.drop_vars([c for c in x.coords if set(x[c].dims) & set(dims)]), dims)
            for x in (a, b)
        )
        sizes = {d: b.sizes[d] for d in dims}
        core: Hashable = dims[0]
        if len(dims) > 1:
            core = "_sample"
            a = a.stack({core: dims}, create_index=False)
            b = b.stack({core: dims}, create_index=False)
        if w is not None:
            # xskillscore wants weights of exactly the reduced dims' sizes
            w = w.reset_coords(drop=True).expand_dims(
                {d: sizes[d] for d in dims if d not in w.dims}
            )
            w = w.transpose(*dims).drop_vars(list(dims), errors="ignore")
            if len(dims) > 1:
                w = w.stack({core: dims}, create_index=False)
        if rank:
            a, b = (
                xr.apply_ufunc(
                    _rank_kernel,
                    x,
                    input_core_dims=[[core]],
                    output_core_dims=[[core]],
                    dask="parallelized",
                    output_dtypes=[np.float64],
                )
                for x in (a, b)
            )
        out = xs.pearson_r(a, b, dim=core, weights=w, skipna=True)
        return _finish(out, t, long_name, "1")

    return _map_vars(one, prediction, truth, mask=mask, required=_required(dim))


def pearson_r(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Pearson correlation over ``dim``, computed by :func:`xskillscore.pearson_r`.

    With ``dim`` the spatial dims it is the spatial (pattern) correlation of each time
    step; with ``dim="time"`` the temporal correlation at each grid cell, a map. The
    weighted form uses weighted means, covariance and variances.

    Parameters
    ----------
    {common}

    Returns
    -------
    DataArray or Dataset
        In [-1, 1] (NaN for a constant series), with ``long_name``
        ``"Pearson correlation of <name>"`` and units ``"1"``.

    Examples
    --------
    >>> import xarray as xr
    >>> t = xr.DataArray([1.0, 2.0, 3.0, 4.0], dims="time")
    >>> p = xr.DataArray([1.0, 3.0, 2.0, 4.0], dims="time")
    >>> float(pearson_r(p, t))
    0.8
    """
    return _correlation(prediction, truth, dim=dim, weights=weights, mask=mask, rank=False)


def spearman_r(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Spearman rank correlation over ``dim``: the Pearson correlation of the ranks.

    The valid pairs are ranked (ties get their mean rank), then correlated with
    :func:`xskillscore.pearson_r`; with weights, the correlation of the ranks is weighted
    (the ranks themselves are not), as in xskillscore.

    Parameters
    ----------
    {common}

    Returns
    -------
    DataArray or Dataset
        In [-1, 1], with ``long_name`` ``"Spearman rank correlation of <name>"`` and
        units ``"1"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = xr.DataArray([1.0, 2.0, 3.0, 4.0, 5.0], dims="time")
    >>> p = xr.DataArray([1.0, 8.0, 27.0, np.nan, 125.0], dims="time")
    >>> float(spearman_r(p, t))  # monotonic on the valid pairs
    1.0
    """
    return _correlation(prediction, truth, dim=dim, weights=weights, mask=mask, rank=True)


# -- quantile errors ---------------------------------------------------------------------


def quantile_error(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    q: float | Sequence[float] = (0.01, 0.99),
    dim: Dim = None,
    weights: Weights = "auto",
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Quantile of the prediction minus the same quantile of the truth, over ``dim``.

    Both quantiles are taken over the same valid cells (linear interpolation between
    order statistics, numpy's default). With ``dim="time"`` it is a map of, e.g., the
    error in the 99th percentile at every grid cell. With area weights (a reduction over
    the spatial dims on a lat/lon grid) the quantiles are weighted
    (:meth:`xarray.DataArray.weighted`).

    Parameters
    ----------
    {common}
    q : float or sequence of float, default (0.01, 0.99)
        Quantile(s) in [0, 1].

    Returns
    -------
    DataArray or Dataset
        With a ``quantile`` dim (a scalar ``quantile`` coordinate for a scalar ``q``),
        ``long_name`` ``"quantile error (prediction minus truth) of <name>"`` and the
        variable's units.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = xr.DataArray(np.arange(11.0), dims="time")
    >>> err = quantile_error(2 * t, t, q=[0.1, 0.5, 0.9])
    >>> err.values  # quantiles of 2t (2, 10, 18) minus those of t (1, 5, 9)
    array([1., 5., 9.])
    """
    qs = np.atleast_1d(np.asarray(q, dtype=float))
    if qs.ndim != 1 or qs.size == 0 or not np.all((qs >= 0) & (qs <= 1)):
        raise ConfigError(f"q must be a quantile or a sequence of quantiles in [0, 1], got {q!r}.")
    w_all, auto = _resolve_weights(weights, truth)

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        dims = _reduce_dims(dim, b)
        w = _weights_for(w_all, auto, b, dims)
        a, b = _single_chunk(a, dims), _single_chunk(b, dims)
        if w is None:
            qa, qb = (x.quantile(q, dim=dims, skipna=True) for x in (a, b))
        else:
            qa, qb = (x.weighted(w).quantile(q, dim=dims, skipna=True) for x in (a, b))
        return _finish(qa - qb, t, "quantile error (prediction minus truth)", _units_of(p, t))

    return _map_vars(one, prediction, truth, mask=mask, required=_required(dim))


# -- SSIM --------------------------------------------------------------------------------


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    return g / g.sum()


def _ssim_kernel(
    x: np.ndarray,
    y: np.ndarray,
    data_range: np.ndarray,
    *,
    window: int,
    sigma: float,
) -> np.ndarray:
    """Mask-aware SSIM of each (..., ny, nx) plane: 'valid' Gaussian windows, normalized
    (mask-weighted) local statistics, windows weighted by mask-at-centre times mask mass."""
    from scipy.ndimage import correlate1d

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = np.isfinite(x) & np.isfinite(y)  # the masked cells are NaN by now
    mf = m.astype(np.float64)
    ny, nx = x.shape[-2:]
    size = min(window, ny, nx)
    size -= 1 - size % 2
    g = _gaussian_taps(size, sigma * size / window)
    r = (size - 1) // 2

    def filt(a: np.ndarray) -> np.ndarray:
        out = correlate1d(a, g, axis=-2, mode="constant")
        out = correlate1d(out, g, axis=-1, mode="constant")
        return out[..., r : ny - r, r : nx - r]

    # centre on a per-plane constant (mathematically neutral) against cancellation
    n = mf.sum((-2, -1), keepdims=True)
    ref = np.where(m, y, 0.0).sum((-2, -1), keepdims=True) / np.maximum(n, 1.0)
    d = np.where(m, x - ref, 0.0)
    e = np.where(m, y - ref, 0.0)
    wsum, sd, se, sdd, see, sde = (filt(a) for a in (mf, d, e, d * d, e * e, d * e))
    wc = np.maximum(wsum, 1e-12)
    mu_d, mu_e = sd / wc, se / wc
    var_x = sdd / wc - mu_d**2
    var_y = see / wc - mu_e**2
    cov = sde / wc - mu_d * mu_e
    mu_x, mu_y = mu_d + ref, mu_e + ref
    span = np.maximum(np.asarray(data_range, dtype=np.float64), _MIN_DATA_RANGE)[..., None, None]
    c1, c2 = (_SSIM_K1 * span) ** 2, (_SSIM_K2 * span) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    weight = mf[..., r : ny - r, r : nx - r] * wsum
    total = weight.sum((-2, -1))
    num = (weight * np.where(weight > 0, smap, 0.0)).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, num / np.where(total > 0, total, 1.0), np.nan)


def ssim(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    spatial_dims: SpatialDims = None,
    data_range: float | xr.DataArray | None = None,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Structural similarity (SSIM, Wang et al. 2004) of each sample over the spatial dims.

    One value per sample (per time step, member...): averaging over samples is left to
    the caller. The conventions are those of ``tf.image.ssim`` and
    :func:`xr_dl4ds.losses.masked_ssim`, without the DL4DS shift of negative fields:

    - a ``window`` x ``window`` Gaussian window of standard deviation ``sigma``
      (11 x 11, 1.5 cells), :math:`k_1 = 0.01`, :math:`k_2 = 0.03`; fields smaller than
      the window use the largest odd window that fits, with ``sigma`` scaled alike;
    - *valid* windows only (those that lie inside the field: no padding invented);
    - mask-aware by normalized filtering: with :math:`G` the window and :math:`m` the
      valid cells, :math:`\mu_x = G*(mx) / G*m` and likewise for the variances and the
      covariance, so a masked or NaN cell enters no local statistic; the SSIM map is
      averaged with weights :math:`m_c \, (G*m)`, leaving out windows centred on a masked
      cell and down-weighting those mostly masked. Without missing cells this is the plain
      mean of the SSIM map, as skimage's ``structural_similarity(gaussian_weights=True,
      use_sample_covariance=False)`` computes it;
    - not area-weighted (the windows are in grid cells).

    Parameters
    ----------
    prediction, truth : DataArray or Dataset
        Fields on the same grid; a Dataset is scored per variable with the spatial dims.
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims.
    data_range : float or DataArray, optional
        :math:`L` in :math:`C_1 = (k_1 L)^2, C_2 = (k_2 L)^2`. By default the range of
        the valid truth cells of each sample. Pass a fixed value to make the scores of
        different samples comparable.
    window : int, default 11
        Side of the (odd) Gaussian window, in grid cells.
    sigma : float, default 1.5
        Standard deviation of the Gaussian, in grid cells.
    mask : boolean DataArray, optional
        ``True`` where the cells count; NaN cells of either field never count.

    Returns
    -------
    DataArray or Dataset
        Over the non-spatial dims, at most 1 (identical fields), with ``long_name``
        ``"structural similarity (SSIM) of <name>"`` and units ``"1"``.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> truth = synthetic_dataarray(nt=3, ny=16, nx=16)
    >>> ssim(truth, truth).values
    array([1., 1., 1.])
    >>> bool((ssim(truth + 2.0, truth) < 1).all())
    True
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be a positive odd integer, got {window!r}.")
    if window % 2 == 0:
        raise ConfigError(f"window must be odd (a centred window), got {window}; try {window + 1}.")
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma!r}.")
    span = _data_range(data_range)
    y, x = get_spatial_dims(truth, spatial_dims)

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        L = b.max([y, x]) - b.min([y, x]) if span is None else span
        a, b = _single_chunk(a, (y, x)), _single_chunk(b, (y, x))
        out = xr.apply_ufunc(
            _ssim_kernel,
            a,
            b,
            L,
            input_core_dims=[[y, x], [y, x], []],
            dask="parallelized",
            output_dtypes=[np.float64],
            kwargs={"window": int(window), "sigma": float(sigma)},
        )
        return _finish(out, t, "structural similarity (SSIM)", "1")

    return _map_vars(one, prediction, truth, mask=mask, required=(y, x))


# -- power spectra -----------------------------------------------------------------------


def _hann(n: int) -> np.ndarray:
    """Hann window sampled at the cell centres (no zero weights)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(n) + 0.5) / n)


def _spectrum_kernel(a: np.ndarray, *, nbins: int, taper_y: bool, taper_x: bool) -> np.ndarray:
    """Radially averaged power of each (..., ny, nx) plane in ``nbins`` wavenumber bins."""
    a = np.asarray(a, dtype=np.float64)
    lead, (ny, nx) = a.shape[:-2], a.shape[-2:]
    a = a.reshape((-1, ny, nx))
    valid = np.isfinite(a)
    n_valid = valid.sum((-2, -1), keepdims=True)
    mean = np.where(valid, a, 0.0).sum((-2, -1), keepdims=True) / np.maximum(n_valid, 1)
    taper = np.outer(_hann(ny) if taper_y else np.ones(ny), _hann(nx) if taper_x else np.ones(nx))
    anom = np.where(valid, a - mean, 0.0) * taper
    # missing cells hold the mean (zero anomaly): normalize by the taper energy of the
    # valid cells, so that white noise of variance s2 gives s2 at every wavenumber
    energy = (np.where(valid, taper**2, 0.0)).sum((-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        power = np.abs(np.fft.rfft2(anom)) ** 2 / np.where(energy > 0, energy, np.nan)
    # rfft2 holds half the plane: every column but kx = 0 (and kx = Nyquist) stands for two
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    mult = np.full(kx.shape, 2.0)
    mult[0, 0] = 1.0
    if nx % 2 == 0:
        mult[0, -1] = 1.0
    k = np.hypot(ky, kx)
    idx = np.rint(k * min(ny, nx)).astype(np.int64)
    idx = np.where((idx >= 1) & (idx <= nbins), idx - 1, nbins)  # bin nbins: discarded
    mult_full = np.broadcast_to(mult, idx.shape)
    counts = np.bincount(idx.ravel(), weights=mult_full.ravel(), minlength=nbins + 1)
    n_planes = a.shape[0]
    flat = (idx[None] + (nbins + 1) * np.arange(n_planes)[:, None, None]).ravel()
    sums = np.bincount(flat, weights=(power * mult).ravel(), minlength=n_planes * (nbins + 1))
    out = sums.reshape(n_planes, nbins + 1)[:, :nbins] / counts[:nbins]
    return out.reshape(lead + (nbins,))


def _spectrum(
    da: xr.DataArray, y: Hashable, x: Hashable, dim_mean: bool, taper: bool
) -> xr.DataArray:
    ny, nx = da.sizes[y], da.sizes[x]
    n = min(ny, nx)
    if n < 2:
        raise GridError(
            f"A power spectrum needs at least 2 cells along both spatial dims, got "
            f"{y}: {ny}, {x}: {nx}."
        )
    nbins = n // 2
    out = xr.apply_ufunc(
        _spectrum_kernel,
        _single_chunk(da, (y, x)),
        input_core_dims=[[y, x]],
        output_core_dims=[["wavenumber"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": nbins}},
        kwargs={
            "nbins": nbins,
            "taper_y": taper,
            "taper_x": taper and not (x in da.coords and is_periodic(da[x])),
        },
    )
    wavenumber = np.arange(1, nbins + 1) / n
    out = out.assign_coords(
        wavenumber=(
            "wavenumber",
            wavenumber,
            {"long_name": "wavenumber", "units": "cycles per grid cell"},
        ),
        wavelength=(
            "wavenumber",
            1.0 / wavenumber,
            {"long_name": "wavelength", "units": "grid cells"},
        ),
    )
    if dim_mean:
        out = out.mean([d for d in out.dims if d != "wavenumber"])
    return out


def power_spectrum(
    field: T_Xarray,
    *,
    spatial_dims: SpatialDims = None,
    dim_mean: bool = True,
    taper: bool = True,
) -> T_Xarray:
    r"""Radially averaged power spectrum of a field over its spatial dims.

    For each sample the mean is removed, the field tapered (see below), the 2-D FFT
    :math:`F` taken, and the power :math:`|F(k_y, k_x)|^2 / \sum w^2` averaged over rings
    of radial wavenumber :math:`k = \sqrt{k_y^2 + k_x^2}` (:math:`w` the taper).

    - **Wavenumber units: cycles per grid cell.** The Nyquist wavenumber is 0.5 along
      both axes whatever the grid; the wavelength is :math:`1/k` grid cells (a
      ``wavelength`` coordinate). Bins are centred on :math:`n / N`,
      :math:`n = 1 \dots N/2`, with :math:`N = \min(n_y, n_x)`, and are :math:`1/N`
      wide; on a square domain bin :math:`n` holds the waves of :math:`n` cycles per
      domain length. The zero wavenumber (the mean) is left out, as are the corners
      beyond the Nyquist wavenumber.
    - **Normalization**: white noise of variance :math:`\sigma^2` has a flat spectrum at
      :math:`\sigma^2`; the units are the field's units squared.
    - **Taper.** The FFT takes the domain as periodic. A regional field is not: the jump
      between its opposite edges leaks power into every wavenumber and swamps the small
      scales (on the synthetic temperature, a Gaussian smoothing of 1.5 cells then showed
      a spectral ratio of 0.3-0.7 at the highest wavenumbers instead of about 0). So, by
      default, each non-periodic axis is multiplied by a Hann window (sampled at the cell
      centres); a longitude that spans 360 degrees is periodic and is left untapered.
      With the taper the same smoothing gives ratios within a few hundredths of its
      transfer function. ``taper=False`` gives the raw periodogram, exact for periodic
      fields.
    - **Missing cells** (NaN) are set to the sample mean (a zero anomaly), and the
      power is normalized by the taper energy of the valid cells only; spectra of heavily
      masked fields are approximate.

    Parameters
    ----------
    field : DataArray or Dataset
        A Dataset gives one spectrum per variable that has the spatial dims.
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims.
    dim_mean : bool, default True
        Average the spectra over every non-spatial dim (time, member...). False keeps
        one spectrum per sample.
    taper : bool, default True
        Taper the non-periodic axes with a Hann window (see above).

    Returns
    -------
    DataArray or Dataset
        Over ``wavenumber`` (and the non-spatial dims when ``dim_mean=False``), with a
        ``wavelength`` coordinate, ``long_name``
        ``"radially averaged power spectrum of <name>"`` and units the squared units.

    Examples
    --------
    A wave with 8 cycles along x of a 64 x 64 grid peaks at 8 / 64 cycles per cell:

    >>> import numpy as np, xarray as xr
    >>> j = np.arange(64)
    >>> wave = xr.DataArray(
    ...     np.broadcast_to(np.cos(2 * np.pi * 8 * j / 64), (64, 64)), dims=("y", "x")
    ... )
    >>> ps = power_spectrum(wave)
    >>> float(ps.idxmax("wavenumber")), float(ps["wavelength"][ps.argmax("wavenumber")])
    (0.125, 8.0)

    White noise of variance 4 is flat at 4:

    >>> rng = np.random.default_rng(0)
    >>> noise = xr.DataArray(rng.normal(0, 2, (50, 32, 32)), dims=("t", "y", "x"))
    >>> bool(abs(power_spectrum(noise) / 4 - 1).max() < 0.2)
    True
    """
    y, x = get_spatial_dims(field, spatial_dims)
    if isinstance(field, xr.DataArray):
        out = _spectrum(field, y, x, dim_mean, taper)
        return _finish(
            out,
            field,
            "radially averaged power spectrum",
            _squared_units(_units_of(field, field)),
        )
    out_vars = {}
    for name, da in field.data_vars.items():
        if _scorable(da, (y, x)):
            out_vars[name] = _finish(
                _spectrum(da, y, x, dim_mean, taper),
                da,
                "radially averaged power spectrum",
                _squared_units(_units_of(da, da)),
            )
    if not out_vars:
        raise ConfigError(
            f"No data variable of {list(field.data_vars)} has the spatial dims {(y, x)}."
        )
    return xr.Dataset(out_vars)


def spectral_ratio(
    prediction: T_Xarray,
    truth: T_Xarray,
    *,
    spatial_dims: SpatialDims = None,
    dim_mean: bool = True,
    taper: bool = True,
    mask: xr.DataArray | xr.Dataset | None = None,
) -> T_Xarray:
    r"""Power spectrum of the prediction over that of the truth, per wavenumber.

    Both spectra (:func:`power_spectrum`, averaged over the non-spatial dims unless
    ``dim_mean=False``) are taken over the same valid cells: those valid in both fields
    and in ``mask``. A ratio of 1 means the right
    amount of variability at that scale; below 1 at high wavenumbers is a too smooth
    prediction (typical of MSE-trained networks and of interpolation), above 1 is noise.

    Parameters
    ----------
    prediction, truth : DataArray or Dataset
        Fields on the same grid.
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims.
    dim_mean : bool, default True
        Average the spectra over the non-spatial dims before dividing.
    taper : bool, default True
        Taper the non-periodic axes with a Hann window, see :func:`power_spectrum`.
    mask : boolean DataArray, optional
        ``True`` where the cells count.

    Returns
    -------
    DataArray or Dataset
        Over ``wavenumber``, with ``long_name``
        ``"power spectral ratio (prediction / truth) of <name>"`` and units ``"1"``.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> truth = synthetic_dataarray(nt=2, ny=16, nx=16)
    >>> spectral_ratio(truth, truth).values
    array([1., 1., 1., 1., 1., 1., 1., 1.])
    """
    y, x = get_spatial_dims(truth, spatial_dims)

    def one(p: xr.DataArray, t: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
        a, b = _valid_pair(p, t, m)
        out = _spectrum(a, y, x, dim_mean, taper) / _spectrum(b, y, x, dim_mean, taper)
        return _finish(out, t, "power spectral ratio (prediction / truth)", "1")

    return _map_vars(one, prediction, truth, mask=mask, required=(y, x))


for _f in (rmse, mae, bias, psnr, pearson_r, spearman_r, quantile_error):
    if _f.__doc__:
        _f.__doc__ = _f.__doc__.replace("{common}", _COMMON_PARAMETERS.strip())
        _f.__doc__ = _f.__doc__.replace("{{", "{").replace("}}", "}")
del _f
