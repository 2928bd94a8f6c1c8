"""Baselines a downscaling model must beat: interpolation and a lapse-rate correction.

Every baseline maps a coarse field onto the high-resolution grid that
:func:`xr_dl4ds.downscale` produces for it (the coordinates of
:func:`xr_dl4ds.grid.highres_coords`, block-mean convention), so a baseline and a model's
output compare like for like: ``xr.align(baseline, downscaled, join="exact")`` holds.

- :func:`interpolate`: nearest, bilinear or bicubic interpolation (the same one the
  networks' residual skip starts from);
- :func:`lapse_rate`: bicubic temperature plus a lapse-rate correction for the orography
  the coarse grid does not resolve;
- :func:`baseline`: either of them by name, as :func:`xr_dl4ds.evaluate` uses them.

torch is imported only when an interpolation actually runs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from .cf import VALUE_ATTRS
from .exceptions import ConfigError, GridError, ScaleError, UnitsError, VariableError
from .grid import (
    check_scale,
    coarsen,
    get_spatial_dims,
    highres_bounds,
    highres_coords,
    is_periodic,
)

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)
SpatialDims = Sequence[Hashable] | Mapping[str, Hashable] | None

__all__ = [
    "BASELINES",
    "INTERPOLATION_METHODS",
    "LAPSE_RATE",
    "baseline",
    "interpolate",
    "lapse_rate",
]

#: Interpolation methods of :func:`interpolate`.
INTERPOLATION_METHODS = ("bicubic", "bilinear", "nearest")

#: Baseline names understood by :func:`baseline` and :func:`xr_dl4ds.evaluate`.
BASELINES = (*INTERPOLATION_METHODS, "lapse_rate")

#: Standard-atmosphere temperature lapse rate, K per m (temperature falls with height).
LAPSE_RATE = -0.0065


def _interp_kernel(arr: np.ndarray, *, scale: int, method: str, halo: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    lead, (h, w) = arr.shape[:-2], arr.shape[-2:]
    dtype = np.float64 if arr.dtype == np.float64 else np.float32  # float64 stays exact
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype).reshape(-1, 1, h, w))
    if halo:
        x = torch.cat([x[..., -halo:], x, x[..., :halo]], dim=-1)
    kwargs = {} if method == "nearest" else {"align_corners": False}
    y = F.interpolate(x, scale_factor=scale, mode=method, **kwargs)
    if halo:
        y = y[..., halo * scale : y.shape[-1] - halo * scale]
    return y.numpy().reshape(lead + (h * scale, w * scale)).astype(arr.dtype, copy=False)


def _check_method(method: str) -> str:
    if method not in INTERPOLATION_METHODS:
        raise ConfigError(
            f"method={method!r} is not an interpolation method; choose one of "
            f"{INTERPOLATION_METHODS}."
        )
    return method


def interpolate(
    coarse: T_Xarray,
    *,
    scale: int,
    method: str = "bicubic",
    spatial_dims: SpatialDims = None,
) -> T_Xarray:
    """Interpolate coarse fields onto the high-resolution grid: the baseline to beat.

    The fine grid is the one :func:`xr_dl4ds.downscale` produces for ``coarse`` (derived
    with :func:`xr_dl4ds.grid.highres_coords` under the block-mean convention of
    :func:`xr_dl4ds.coarsen`): 1-D spatial coordinates, 2-D auxiliary coordinates of
    rotated grids and cell bounds are refined, every other coordinate is kept. Periodic
    longitudes (a global grid) wrap around; other borders are extended by replication
    (``align_corners=False``). It is the same interpolation that the networks' residual
    skip starts from. Missing coarse cells spread to the fine cells whose stencil holds
    them. Dask input stays lazy (the spatial dims are gathered into one chunk).

    Parameters
    ----------
    coarse : DataArray or Dataset
        Coarse data. In a Dataset every variable with both spatial dims is interpolated,
        variables without spatial dims are kept, the CF bounds of the spatial coordinates
        are refined and other variables along one spatial dim are dropped.
    scale : int
        Refinement factor (>= 2).
    method : {"bicubic", "bilinear", "nearest"}, default "bicubic"
    spatial_dims : (y, x) or {"y": ..., "x": ...}, optional
        Override the detection of the spatial dims.

    Returns
    -------
    DataArray or Dataset
        Same type as ``coarse``, ``scale`` times finer along both spatial dims, with the
        attrs of each variable (``units``, ``long_name``...), less those that describe
        the stored coarse values (``valid_range``, ``_FillValue``, ``scale_factor``...).

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> hr = synthetic_dataarray(ny=32, nx=48)
    >>> interpolate(hr.dl4ds.coarsen(scale=4), scale=4).shape
    (8, 32, 48)
    >>> coarse = hr.dl4ds.coarsen(scale=4)
    >>> fine = coarse.dl4ds.interpolate(scale=4, method="nearest")
    >>> bool((fine.isel(lat=slice(0, 4), lon=slice(0, 4)) == coarse.isel(lat=0, lon=0)).all())
    True
    """
    scale = check_scale(scale)
    _check_method(method)
    y, x = get_spatial_dims(coarse, spatial_dims)
    halo = min(4, coarse.sizes[x]) if x in coarse.coords and is_periodic(coarse[x]) else 0
    coords = highres_coords(coarse, scale, spatial_dims=(y, x))

    def one(da: xr.DataArray) -> xr.DataArray:
        dims = list(da.dims)
        if da.chunks is not None:
            da = da.chunk({y: -1, x: -1})
        out = (
            xr.apply_ufunc(
                _interp_kernel,
                da,
                input_core_dims=[[y, x]],
                output_core_dims=[["_y_hr", "_x_hr"]],
                exclude_dims={y, x},
                dask="parallelized",
                output_dtypes=[da.dtype],
                dask_gufunc_kwargs={
                    "output_sizes": {"_y_hr": da.sizes[y] * scale, "_x_hr": da.sizes[x] * scale}
                },
                kwargs={"scale": scale, "method": method, "halo": halo},
                keep_attrs=True,
            )
            .rename({"_y_hr": y, "_x_hr": x})
            .transpose(*dims)
        )
        out.attrs = {k: v for k, v in da.attrs.items() if k not in VALUE_ATTRS}
        return out.assign_coords({k: v for k, v in coords.items() if set(v.dims) <= set(out.dims)})

    if isinstance(coarse, xr.DataArray):
        return one(coarse)
    bounds = highres_bounds(coarse, scale, spatial_dims=(y, x))
    data_vars: dict[Hashable, Any] = {}
    for name, da in coarse.data_vars.items():
        if {y, x} <= set(da.dims):
            data_vars[name] = one(da).variable
        elif name in bounds:
            data_vars[name] = bounds[name]
        elif not {y, x} & set(da.dims):
            data_vars[name] = da.variable
    out_coords = {
        k: v.variable for k, v in coarse.coords.items() if not {y, x} & set(v.dims)
    } | dict(coords)
    return xr.Dataset(data_vars, coords=out_coords, attrs=coarse.attrs)


def _units_factor(from_units: str, to_units: str) -> tuple[float, float]:
    from .data.normalization import unit_conversion

    return unit_conversion(from_units, to_units)


def _is_temperature(units: Any) -> bool:
    if not isinstance(units, str) or not units:
        return False
    try:
        _units_factor(units, "K")
    except UnitsError:
        return False
    return True


def _check_temperature(da: xr.DataArray, name: Hashable) -> str:
    units = da.attrs.get("units")
    if units is None:
        raise UnitsError(
            f"The lapse-rate baseline corrects temperatures, but variable {name!r} has no "
            "'units' attribute. Set it, e.g. da.attrs['units'] = 'K'."
        )
    if not _is_temperature(units):
        raise UnitsError(
            f"The lapse-rate baseline corrects temperatures, but variable {name!r} is in "
            f"{units!r}, which is not a temperature (K, degC, degF...). Use an interpolation "
            "baseline ('bicubic', 'bilinear', 'nearest') for this variable."
        )
    return str(units)


def _lapse_rate_k_per_m(value: float | str) -> float:
    """The lapse rate in K/m, from a number (K/m) or a pint string like "-6.5 K/km"."""
    if isinstance(value, str):
        from .data.normalization import _registry

        try:
            return float(_registry().Quantity(value).to("K/m").magnitude)
        except Exception as err:  # pint raises several types
            raise UnitsError(
                f"lapse_rate={value!r} is not a temperature gradient: {err}. Pass a number "
                "in K/m (e.g. -0.0065) or a string with units (e.g. '-6.5 K/km')."
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(
            f"lapse_rate={value!r} must be a number in K/m (e.g. -0.0065) or a string "
            "with units (e.g. '-6.5 K/km')."
        )
    return float(value)


def _orography_in_m(orography: Any, y: Hashable, x: Hashable) -> xr.DataArray:
    if not isinstance(orography, xr.DataArray):
        raise ConfigError(
            f"orography must be a DataArray on the high-resolution grid, got "
            f"{type(orography).__name__}. Pass e.g. hr['orog']."
        )
    if not {y, x} <= set(orography.dims):
        raise GridError(
            f"orography has dims {orography.dims}; it needs the spatial dims ({y!r}, {x!r}) "
            "of the coarse data, on the high-resolution grid."
        )
    units = orography.attrs.get("units")
    if units is None:
        raise UnitsError(
            "orography has no 'units' attribute; set it (e.g. orog.attrs['units'] = 'm') so "
            "that the lapse rate is applied to heights in metres."
        )
    try:
        factor, offset = _units_factor(str(units), "m")
    except UnitsError:
        raise UnitsError(
            f"orography is in {units!r}, which is not a length; it must be a surface "
            "altitude in m, km, ft..."
        ) from None
    if factor == 1.0 and offset == 0.0:
        return orography
    return orography * factor + offset


def _infer_scale(fine_sizes: Mapping[Hashable, int], coarse: Any, y: Hashable, x: Hashable) -> int:
    ratios = {d: fine_sizes[d] / coarse.sizes[d] for d in (y, x)}
    values = set(ratios.values())
    if len(values) != 1 or not next(iter(values)).is_integer() or next(iter(values)) < 2:
        raise ScaleError(
            f"Cannot infer the scale: the high-resolution field has "
            f"{[fine_sizes[d] for d in (y, x)]} cells along ({y!r}, {x!r}) and the coarse "
            f"data {[coarse.sizes[d] for d in (y, x)]} (ratios {list(ratios.values())}). "
            "They must differ by one integer factor >= 2; pass scale= to check explicitly."
        )
    return int(values.pop())


def _check_on_grid(
    field: xr.DataArray,
    coords: Mapping[Hashable, xr.Variable],
    dims: Sequence[Hashable],
    what: str,
) -> None:
    """Raise unless the 1-D coords of ``field`` along ``dims`` match ``coords``."""
    for d in dims:
        if d not in field.coords or d not in coords:
            continue
        want = np.asarray(coords[d].values, np.float64)
        got = np.asarray(field[d].values, np.float64)
        spacing = float(np.median(np.abs(np.diff(want)))) if want.size > 1 else 1.0
        if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=0.01 * spacing):
            raise GridError(
                f"{what}: its {d!r} coordinate does not match the high-resolution grid "
                f"derived from the coarse data (first values {got[:3].tolist()} vs "
                f"{want[:3].tolist()}). Pass it on that grid (the block refinement of the "
                "coarse cells, as downscale produces)."
            )


def lapse_rate(
    coarse: T_Xarray,
    orography: xr.DataArray,
    *,
    scale: int | None = None,
    lapse_rate: float | str = LAPSE_RATE,
    method: str = "bicubic",
    spatial_dims: SpatialDims = None,
) -> T_Xarray:
    """Interpolated temperature corrected for the orography the coarse grid misses.

    .. math::

        T_{hr} = I(T_{lr}) + \\gamma \\, (z_{hr} - I(\\overline{z_{hr}}))

    with :math:`I` the interpolation (:func:`interpolate`), :math:`\\gamma` the lapse
    rate and :math:`\\overline{z_{hr}}` the block mean of the high-resolution orography
    over each coarse cell (:func:`xr_dl4ds.coarsen`): where a fine cell lies higher than
    the smoothed orography of the coarse grid it is colder by :math:`\\gamma` per metre.
    A baseline of physics, not only of interpolation, that a model must beat.

    Parameters
    ----------
    coarse : DataArray or Dataset
        Coarse temperature(s); the ``units`` of each variable with spatial dims must be a
        temperature (K, degC, degF...): anything else is refused.
    orography : DataArray
        Surface altitude on the high-resolution grid of ``coarse`` (the grid
        :func:`interpolate` produces), with ``units`` of length (m, km, ft: converted with
        pint). Missing values give missing output.
    scale : int, optional
        Refinement factor; default: the ratio of the orography's and the coarse grid's
        sizes (which must be one integer).
    lapse_rate : float or str, default -0.0065
        Temperature change with height: a number in K/m, or a string with units such as
        ``"-6.5 K/km"``. It is converted to the units of each temperature (a temperature
        difference: 1 K = 1 degC = 1.8 degF).
    method : {"bicubic", "bilinear", "nearest"}, default "bicubic"
        Interpolation of the temperature and of the coarse orography.
    spatial_dims : (y, x) or {"y": ..., "x": ...}, optional
        Override the detection of the spatial dims.

    Returns
    -------
    DataArray or Dataset
        Same type as ``coarse``, on the high-resolution grid, in the units of ``coarse``.
        Dask input stays lazy.

    Raises
    ------
    UnitsError
        A variable that is not a temperature, orography that is not a length, or missing
        ``units``.
    GridError, ScaleError
        Orography that is not on the high-resolution grid of ``coarse``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> coarse = xr.DataArray(
    ...     np.full((2, 2), 280.0), dims=("y", "x"), coords={"y": [0.5, 2.5], "x": [0.5, 2.5]},
    ...     attrs={"units": "K"},
    ... )
    >>> orog = xr.DataArray(  # block mean 200 m everywhere: the coarse grid sees 200 m
    ...     np.array([[0.0, 400.0, 0.0, 400.0]] * 4), dims=("y", "x"), attrs={"units": "m"}
    ... )
    >>> lapse_rate(coarse, orog).isel(y=0).values.round(2)  # 280 K -/+ 6.5 K/km * 200 m
    array([281.3, 278.7, 281.3, 278.7])
    """
    _check_method(method)
    y, x = get_spatial_dims(coarse, spatial_dims)
    gamma = _lapse_rate_k_per_m(lapse_rate)
    orog = _orography_in_m(orography, y, x)
    if scale is None:
        scale = _infer_scale(orog.sizes, coarse, y, x)
    scale = check_scale(scale)
    for d in (y, x):
        if orog.sizes[d] != coarse.sizes[d] * scale:
            raise GridError(
                f"orography has {orog.sizes[d]} cells along {d!r}; the high-resolution grid "
                f"of the coarse data at scale={scale} has {coarse.sizes[d] * scale} "
                f"(x{scale} its {coarse.sizes[d]} cells)."
            )
    variables = (
        {coarse.name: coarse}
        if isinstance(coarse, xr.DataArray)
        else {n: v for n, v in coarse.data_vars.items() if {y, x} <= set(v.dims)}
    )
    if not variables:
        raise VariableError(
            f"The coarse Dataset has no variable with the spatial dims ({y!r}, {x!r}) to correct."
        )
    units = {n: _check_temperature(v, n) for n, v in variables.items()}

    base = interpolate(coarse, scale=scale, method=method, spatial_dims=(y, x))
    hr = highres_coords(coarse, scale, spatial_dims=(y, x))
    _check_on_grid(orog, hr, (y, x), "orography")
    # the orography the coarse grid misses: fine minus interpolated block mean
    z = orog.reset_coords(drop=True).drop_vars([y, x], errors="ignore")
    z_lr = coarsen(z, scale, spatial_dims=(y, x))
    missed = z - interpolate(z_lr, scale=scale, method=method, spatial_dims=(y, x))
    missed = missed.drop_vars([c for c in missed.coords if {y, x} & set(missed[c].dims)])

    def corrected(da: xr.DataArray, name: Hashable) -> xr.DataArray:
        per_kelvin, _ = _units_factor("K", units[name])  # a difference of 1 K in these units
        dtype = da.dtype if da.dtype.kind == "f" else np.dtype(np.float64)
        corr = (missed * (gamma * per_kelvin)).astype(dtype)
        out: xr.DataArray = da + corr.assign_coords({d: da[d] for d in (y, x) if d in da.coords})
        out.attrs = da.attrs
        out.encoding = {}
        order = [*da.dims, *(d for d in out.dims if d not in da.dims)]
        return out.transpose(*order)

    if isinstance(base, xr.DataArray):
        return corrected(base, coarse.name).rename(base.name)
    return base.assign({n: corrected(base[n], n) for n in variables})


def baseline(
    coarse: T_Xarray,
    name: str,
    *,
    scale: int,
    orography: xr.DataArray | None = None,
    spatial_dims: SpatialDims = None,
) -> T_Xarray:
    """The baseline called ``name`` (one of :data:`BASELINES`) for ``coarse``.

    ``"nearest"``, ``"bilinear"`` and ``"bicubic"`` are :func:`interpolate`;
    ``"lapse_rate"`` is :func:`lapse_rate` (bicubic, -6.5 K/km) and needs ``orography``.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(ny=32, nx=48)
    >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
    >>> baseline(coarse, "lapse_rate", scale=4, orography=hr["orog"]).sizes["lon"]
    48
    """
    if name in INTERPOLATION_METHODS:
        return interpolate(coarse, scale=scale, method=name, spatial_dims=spatial_dims)
    if name == "lapse_rate":
        if orography is None:
            raise ConfigError(
                "The 'lapse_rate' baseline needs the high-resolution orography: pass "
                "orography= (e.g. hr['orog'], in m)."
            )
        return lapse_rate(coarse, orography, scale=scale, spatial_dims=spatial_dims)
    raise ConfigError(f"Unknown baseline {name!r}; choose from {BASELINES}.")
