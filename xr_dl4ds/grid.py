"""Spatial grids: finding the spatial dims, scale checks, block-mean coarsening and the
high-resolution coordinates that belong to a coarse grid.

Conventions
-----------
Coarsening is a block mean over ``scale x scale`` high-resolution cells. Coarse cell ``i``
is therefore centred on the mean of the fine centres ``i*scale ... i*scale + scale - 1``,
i.e. at fine fractional index ``i*scale + (scale - 1) / 2``. :func:`refine_coords` inverts
exactly that mapping, so ``coarsen(refine(c)) == c`` for any regular coordinate.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from .exceptions import DL4DSWarning, GridError, ScaleError

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

__all__ = [
    "get_spatial_dims",
    "check_scale",
    "trim_to_scale",
    "coarsen",
    "refine_coords",
    "refine_bounds",
    "highres_coords",
    "highres_bounds",
    "is_periodic",
    "locate_subgrid",
    "T_Xarray",
]

# (y, x) name pairs tried after cf-xarray, in order.
_NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("lat", "lon"),
    ("latitude", "longitude"),
    ("rlat", "rlon"),
    ("y", "x"),
    ("nav_lat", "nav_lon"),
)
_Y_STANDARD_NAMES = {"latitude", "grid_latitude", "projection_y_coordinate"}
_X_STANDARD_NAMES = {"longitude", "grid_longitude", "projection_x_coordinate"}
_Y_UNITS = {"degrees_north", "degree_north", "degree_N", "degrees_N", "degreeN", "degreesN"}
_X_UNITS = {"degrees_east", "degree_east", "degree_E", "degrees_E", "degreeE", "degreesE"}


def _axis_of(obj: xr.DataArray | xr.Dataset, dim: Hashable) -> str | None:
    """'Y', 'X' or None for a dimension, from the CF attrs of its coordinate."""
    if dim not in obj.coords:
        return None
    attrs = obj[dim].attrs
    axis = str(attrs.get("axis", "")).upper()
    if axis in ("X", "Y"):
        return axis
    sn = attrs.get("standard_name")
    if sn in _Y_STANDARD_NAMES:
        return "Y"
    if sn in _X_STANDARD_NAMES:
        return "X"
    units = attrs.get("units")
    if units in _Y_UNITS:
        return "Y"
    if units in _X_UNITS:
        return "X"
    return None


def _cf_spatial_dims(obj: xr.DataArray | xr.Dataset) -> tuple[Hashable, Hashable] | None:
    """(y, x) from cf-xarray: the X/Y axes (axis attr, grid_latitude, projection_x...),
    then the latitude/longitude coordinates (standard_name, units), among the dims."""
    import cf_xarray  # noqa: F401  (registers .cf)

    dims = set(obj.dims)
    for y_key, x_key, lookup in (("Y", "X", "axes"), ("latitude", "longitude", "coordinates")):
        try:
            table = getattr(obj.cf, lookup)
        except Exception:  # cf-xarray may choke on unusual attrs: fall back to our rules
            return None
        ys = [d for d in table.get(y_key, []) if d in dims]
        xs = [d for d in table.get(x_key, []) if d in dims]
        if len(ys) == 1 and len(xs) == 1:
            return ys[0], xs[0]
    return None


def get_spatial_dims(
    obj: xr.DataArray | xr.Dataset,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> tuple[Hashable, Hashable]:
    """Find the ``(y, x)`` spatial dimensions of an xarray object.

    The search goes: an explicit ``spatial_dims`` override; then cf-xarray's X/Y axes
    (``axis`` attr, ``grid_latitude``, ``projection_y_coordinate``...) and its
    latitude/longitude coordinates (``standard_name``, ``units``), among the dimension
    coordinates; then the same CF attributes read directly; then the common names
    ``lat/lon``, ``latitude/longitude``, ``rlat/rlon``, ``y/x``, ``nav_lat/nav_lon``.

    Parameters
    ----------
    obj : DataArray or Dataset
    spatial_dims : (y, x) sequence or {"y": ..., "x": ...} mapping, optional
        Override the detection.

    Returns
    -------
    tuple
        ``(y_dim, x_dim)``.

    Raises
    ------
    GridError
        When no pair of spatial dimensions can be found, or an override names a
        dimension that does not exist.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> get_spatial_dims(synthetic_dataset())
    ('lat', 'lon')
    """
    dims = tuple(obj.dims)
    if spatial_dims is not None:
        if isinstance(spatial_dims, Mapping):
            try:
                pair = (spatial_dims["y"], spatial_dims["x"])
            except KeyError:
                raise GridError(
                    f"spatial_dims={dict(spatial_dims)!r} must have the keys 'y' and 'x', "
                    "e.g. spatial_dims={'y': 'rlat', 'x': 'rlon'}."
                ) from None
        else:
            pair = tuple(spatial_dims)  # type: ignore[assignment]
            if len(pair) != 2:
                raise GridError(
                    f"spatial_dims={spatial_dims!r} must name exactly two dimensions (y, x)."
                )
        missing = [d for d in pair if d not in dims]
        if missing:
            raise GridError(
                f"spatial_dims={tuple(pair)!r}: dimension(s) {missing} not found; the object "
                f"has dims {dims}. Pass the names of its (y, x) dimensions."
            )
        return pair[0], pair[1]

    found = _cf_spatial_dims(obj)
    if found is not None:
        return found
    ys = [d for d in dims if _axis_of(obj, d) == "Y"]
    xs = [d for d in dims if _axis_of(obj, d) == "X"]
    if len(ys) == 1 and len(xs) == 1:
        return ys[0], xs[0]
    for y, x in _NAME_PAIRS:
        if y in dims and x in dims:
            return y, x
    raise GridError(
        f"Could not find the spatial dimensions of this object: its dims are {dims}. "
        "xr_dl4ds looks for dimension coordinates with CF attrs (axis='Y'/'X', "
        "standard_name latitude/longitude/grid_latitude/projection_y_coordinate..., units "
        "degrees_north/degrees_east) and then for the names lat/lon, latitude/longitude, "
        "rlat/rlon and y/x. To fix, pass spatial_dims=('<y dim>', '<x dim>'), or set "
        "obj['<dim>'].attrs['axis'] = 'Y' / 'X'."
    )


def check_scale(scale: Any) -> int:
    """Return ``scale`` as an ``int`` after checking it is an integer >= 2.

    Raises
    ------
    ScaleError
        For anything that is not an integer (``2.0`` is accepted) of at least 2.

    Examples
    --------
    >>> check_scale(4), check_scale(2.0), check_scale(np.int64(8))
    (4, 2, 8)
    >>> check_scale(2.5)  # only integer refinement factors
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ScaleError: scale must be an integer >= 2, got 2.5. ...
    >>> check_scale("4")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.ScaleError: scale must be an integer >= 2 (...), got '4' of type str. ...
    """
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ScaleError(
            f"scale must be an integer >= 2 (the ratio of low- to high-resolution grid "
            f"spacing), got {scale!r} of type {type(scale).__name__}. Pass e.g. scale=4."
        )
    if not float(scale).is_integer() or scale < 2:
        raise ScaleError(
            f"scale must be an integer >= 2, got {scale!r}. Only integer refinement factors "
            "are supported: regrid the low-resolution data so that each coarse cell holds "
            "scale x scale fine cells, then pass that integer."
        )
    return int(float(scale))


def trim_to_scale(
    obj: T_Xarray,
    scale: int,
    *,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> T_Xarray:
    """Drop trailing rows/columns so that both spatial sizes are multiples of ``scale``.

    Issues a :class:`~xr_dl4ds.exceptions.DL4DSWarning` that says how many were dropped;
    returns the object unchanged (no warning) when nothing needs trimming.

    Examples
    --------
    ERA5's 1 degree grid has 181 latitudes (90 to -90), which 4 does not divide:

    >>> import warnings
    >>> from xr_dl4ds import tutorial
    >>> era5 = tutorial.open_dataset("era5_t2m")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     trimmed = trim_to_scale(era5, 4)
    >>> dict(trimmed.sizes), float(trimmed["lat"][-1])
    ({'time': 24, 'lat': 180, 'lon': 360}, -89.0)
    >>> print(caught[0].category.__name__, caught[0].message)
    DL4DSWarning The grid (lat: 181, lon: 360) is not a multiple of scale=4: dropping the last
    1 row(s) of 'lat' and the last 0 column(s) of 'lon'. ...
    >>> trim_to_scale(trimmed, 4) is trimmed  # nothing to trim: the same object, no warning
    True
    """
    scale = check_scale(scale)
    ydim, xdim = get_spatial_dims(obj, spatial_dims)
    ny, nx = obj.sizes[ydim], obj.sizes[xdim]
    dy, dx = ny % scale, nx % scale
    if dy == 0 and dx == 0:
        return obj
    if ny < scale or nx < scale:
        raise GridError(
            f"The grid ({ydim}: {ny}, {xdim}: {nx}) is smaller than one coarse cell at "
            f"scale={scale}. Use a larger domain or a smaller scale."
        )
    warnings.warn(
        f"The grid ({ydim}: {ny}, {xdim}: {nx}) is not a multiple of scale={scale}: "
        f"dropping the last {dy} row(s) of {ydim!r} and the last {dx} column(s) of "
        f"{xdim!r}. To choose which cells go, select them yourself first, e.g. "
        f"obj.isel({ydim}=slice(0, {ny - dy}), {xdim}=slice(0, {nx - dx})).",
        DL4DSWarning,
        stacklevel=3,
    )
    return obj.isel({ydim: slice(0, ny - dy), xdim: slice(0, nx - dx)})


def _is_longitude(coord: xr.DataArray) -> bool:
    attrs = coord.attrs
    return (
        attrs.get("standard_name") == "longitude"
        or attrs.get("units") in _X_UNITS
        or str(coord.name).lower() in ("lon", "longitude", "nav_lon")
    )


def _wrap_longitude(values: Any, like: np.ndarray) -> Any:
    """``values`` wrapped into the convention of the longitudes ``like``: 0..360 when
    they have no negative value, else -180..180 when none is above 180, else as is."""
    if np.nanmin(like) >= 0:
        return np.mod(values, 360.0)
    if np.nanmax(like) <= 180:
        return (values + 180.0) % 360.0 - 180.0
    return values


def _block_mean_coord(coord: xr.DataArray, dims: Mapping[Hashable, int]) -> xr.DataArray:
    """Block mean of a coordinate variable; longitudes are averaged on the circle (1-D
    ones that cross the wrap point of their convention: unwrapped, then wrapped back)."""
    cdims = {d: s for d, s in dims.items() if d in coord.dims}
    if not cdims:
        return coord
    if _is_longitude(coord) and coord.ndim == 1 and coord.chunks is None:
        values = np.asarray(coord.values, dtype=np.float64)
        unwrapped = np.unwrap(values, period=360.0)
        if np.any(np.abs(unwrapped - values) > 0):  # it crosses the wrap point
            means = xr.DataArray(unwrapped, dims=coord.dims).coarsen(cdims).mean()
            wrapped = _wrap_longitude(means.values, values)
            if coord.dtype.kind == "f":
                wrapped = wrapped.astype(coord.dtype)
            return xr.DataArray(wrapped, dims=coord.dims, name=coord.name, attrs=coord.attrs)
    if _is_longitude(coord) and coord.ndim > 1:
        rad = coord * (np.pi / 180.0)
        s = xr.apply_ufunc(np.sin, rad).coarsen(cdims).mean()
        c = xr.apply_ufunc(np.cos, rad).coarsen(cdims).mean()
        out = xr.apply_ufunc(np.arctan2, s, c) * (180.0 / np.pi)
        # keep the original convention (0..360 or -180..180)
        if float(coord.min()) >= 0:
            out = out % 360
        return out.assign_attrs(coord.attrs)
    return coord.coarsen(cdims).mean().assign_attrs(coord.attrs)


def _spatial_bounds(
    obj: xr.DataArray | xr.Dataset, dims: Sequence[Hashable]
) -> dict[Hashable, tuple[Hashable, Hashable]]:
    """``{bounds name: (dim, vertex dim)}`` for the CF bounds ``(n, 2)`` of the 1-D
    dimension coordinates along ``dims`` (a coordinate or, in a Dataset, a variable)."""
    variables: Mapping[Hashable, xr.Variable] = (
        obj.coords.variables if isinstance(obj, xr.DataArray) else obj.variables
    )
    out: dict[Hashable, tuple[Hashable, Hashable]] = {}
    for dim in dims:
        if dim not in obj.coords:
            continue
        name = _bounds_name(obj[dim])
        if name is None or name not in variables:
            continue
        b = variables[name]
        if b.ndim != 2 or dim not in b.dims:
            continue
        vdim = next(d for d in b.dims if d != dim)
        if b.sizes[vdim] == 2:
            out[name] = (dim, vdim)
    return out


def _bounds_sides(data: Any) -> tuple[Any, Any, Any]:
    """``(start, end, b0_first)`` of ``(n, 2)`` bounds: the side of each cell that comes
    first along the dimension, the other side, and whether column 0 is that first side.
    Works lazily on dask arrays."""
    n = data.shape[0]
    b0, b1 = data[:, 0], data[:, 1]
    if n > 1:
        ascending = (b0[-1:] + b1[-1:]) >= (b0[:1] + b1[:1])  # (1,): stays lazy for dask
    else:
        ascending = b1 >= b0
    b0_first = (b1 >= b0) == ascending
    return np.where(b0_first, b0, b1), np.where(b0_first, b1, b0), b0_first


def _coarsen_bounds(var: xr.Variable, dim: Hashable, vdim: Hashable, scale: int) -> xr.Variable:
    """Coarse CF bounds: each coarse cell spans from the first side of its first fine
    cell to the other side of its last one (keeping the column order of the input),
    the exact inverse of :func:`refine_bounds` for a regular grid."""
    b = var.transpose(dim, vdim)
    start, end, b0_first = _bounds_sides(b.data)
    cstart, cend = start[::scale], end[scale - 1 :: scale]
    flip = ~b0_first[::scale]
    data = np.stack([np.where(flip, cend, cstart), np.where(flip, cstart, cend)], axis=-1)
    return xr.Variable((dim, vdim), data, attrs=var.attrs).transpose(*var.dims)


def coarsen(
    obj: T_Xarray,
    scale: int,
    *,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> T_Xarray:
    """Block-mean coarsening by ``scale`` in both spatial dimensions.

    Missing values are skipped (a coarse cell is the mean of its valid fine cells, NaN
    only when all of them are missing). Grids that are not a multiple of ``scale`` are
    trimmed first, with a warning. The coarse coordinates are the block means of the
    fine ones (longitudes of 2-D auxiliary coordinates averaged on the circle); the CF
    bounds ``(n, 2)`` of the 1-D spatial coordinates are merged, each coarse cell
    spanning its ``scale`` fine cells (the inverse of :func:`refine_bounds`); every
    attribute, non-spatial coordinate and variable without spatial dims is kept.
    Dask-backed input stays lazy.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(ny=32, nx=48)
    >>> dict(coarsen(hr, 4)["tas"].sizes)
    {'time': 8, 'lat': 8, 'lon': 12}
    """
    scale = check_scale(scale)
    ydim, xdim = get_spatial_dims(obj, spatial_dims)
    obj = trim_to_scale(obj, scale, spatial_dims=(ydim, xdim))
    dims = {ydim: scale, xdim: scale}

    def _coarsen_da(da: xr.DataArray) -> xr.DataArray:
        cdims = {d: s for d, s in dims.items() if d in da.dims}
        if not cdims:
            return da
        if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.bool_):
            raise GridError(
                f"Cannot block-average the non-numeric variable {da.name!r} "
                f"(dtype {da.dtype}). Drop it before coarsening."
            )
        data = da.variable.coarsen(cdims, func="mean", keep_attrs=True)
        return xr.DataArray(data, dims=da.dims, name=da.name, attrs=da.attrs)

    bounds = _spatial_bounds(obj, (ydim, xdim))
    coords = {
        name: (
            _coarsen_bounds(coord.variable, *bounds[name], scale)
            if name in bounds
            else _block_mean_coord(xr.DataArray(coord.variable, name=name), dims).variable
        )
        for name, coord in obj.coords.items()
    }
    if isinstance(obj, xr.DataArray):
        out = _coarsen_da(obj.drop_vars(list(obj.coords))).assign_coords(coords)
        return out
    data_vars = {
        name: (
            xr.DataArray(_coarsen_bounds(da.variable, *bounds[name], scale), name=name)
            if name in bounds
            else _coarsen_da(da.drop_vars(list(da.coords)))
        )
        for name, da in obj.data_vars.items()
    }
    out_ds = xr.Dataset(data_vars, coords=coords, attrs=obj.attrs)
    for name in obj.data_vars:
        out_ds[name].encoding = {}
    return out_ds


def _fractional_fine_index(n_fine: int, scale: int) -> np.ndarray:
    """Coarse fractional index of each fine cell centre under block-mean coarsening."""
    j = np.arange(n_fine, dtype=np.float64)
    return (j - (scale - 1) / 2.0) / scale


def _interp_linear_extrap(xq: np.ndarray, values: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` (sampled at 0..n-1 along ``axis``) at ``xq``,
    with linear extrapolation beyond the ends."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = values.shape[0]
    if n == 1:
        out = np.repeat(values, len(xq), axis=0)
        return np.moveaxis(out, 0, axis)
    i0 = np.clip(np.floor(xq).astype(int), 0, n - 2)
    w = (xq - i0).reshape((-1,) + (1,) * (values.ndim - 1))
    out = values[i0] * (1 - w) + values[i0 + 1] * w
    return np.moveaxis(out, 0, axis)


def refine_coords(
    values: np.ndarray, scale: int, *, axis: int = 0, longitude: bool = False
) -> np.ndarray:
    """High-resolution coordinate values for coarse ``values`` along ``axis``.

    The inverse of block-mean coarsening: fine cell ``j`` sits at coarse fractional
    index ``(j - (scale - 1)/2) / scale``, interpolated linearly (extrapolated linearly
    at the edges). For a regular coordinate with spacing ``d`` this gives the fine
    centres ``c_i + (k - (scale - 1)/2) * d / scale``, ``k = 0..scale-1``.
    Longitudes that cross the wrap point of their convention (the 0/360 meridian, or
    the date line at -180/180) are unwrapped before and wrapped back after (keeping the
    0..360 or -180..180 convention); a longitude that does not cross it is refined as
    it is, so it stays monotonic (its outer fine cells may lie just beyond 0 or 180).

    Examples
    --------
    >>> refine_coords(np.array([1.5, 5.5]), 4)
    array([0., 1., 2., 3., 4., 5., 6., 7.])
    >>> refine_coords(np.array([358.0, 2.0]), 2, longitude=True)  # across 0/360
    array([357., 359.,   1.,   3.])
    >>> refine_coords(np.array([0.0, 1.0]), 2, longitude=True)  # does not cross: as it is
    array([-0.25,  0.25,  0.75,  1.25])
    """
    scale = check_scale(scale)
    values = np.asarray(values)
    if values.dtype.kind in "mM":
        raise GridError("Spatial coordinates must be numeric, got datetimes.")
    v = values.astype(np.float64)
    wrap = False
    if longitude:
        unwrapped = np.unwrap(v, period=360.0, axis=axis)
        wrap = bool(np.any(np.abs(unwrapped - v) > 0))  # it crosses the wrap point
        v = unwrapped
    n_fine = values.shape[axis] * scale
    out = _interp_linear_extrap(_fractional_fine_index(n_fine, scale), v, axis)
    if wrap:
        out = _wrap_longitude(out, values)
    if values.dtype.kind == "f":
        out = out.astype(values.dtype)
    return out


def refine_bounds(bounds: Any, scale: int) -> Any:
    """High-resolution cell bounds: each coarse cell split into ``scale`` equal sub-cells.

    Exact under the block-mean convention of :func:`coarsen`: the ``scale`` fine cells of
    a coarse cell tile it, so a coarse cell ``[lo, hi]`` becomes ``[lo, lo + d]``,
    ``[lo + d, lo + 2d]``, ... ``[hi - d, hi]`` with ``d = (hi - lo) / scale``. The fine
    cells come in the order of the coarse ones (ascending or descending); each keeps the
    column order of its coarse cell (``bounds[i, 0]`` is on the side of the previous
    cell, or the other way round, as in the input). Works on numpy and dask arrays
    (lazily).

    Parameters
    ----------
    bounds : array of shape (n, 2)
        CF bounds of a 1-D coordinate (the vertex dimension last).
    scale : int
        Refinement factor (>= 2).

    Returns
    -------
    array of shape (n * scale, 2)

    Examples
    --------
    >>> refine_bounds(np.array([[30.0, 40.0], [40.0, 50.0]]), 2)
    array([[30., 35.],
           [35., 40.],
           [40., 45.],
           [45., 50.]])
    >>> refine_bounds(np.array([[50.0, 40.0], [40.0, 30.0]]), 2)  # descending
    array([[50., 45.],
           [45., 40.],
           [40., 35.],
           [35., 30.]])
    """
    scale = check_scale(scale)
    if bounds.ndim != 2 or bounds.shape[1] != 2:
        raise GridError(
            f"Cell bounds must have the shape (n, 2) (vertex dimension last), got "
            f"{tuple(bounds.shape)}."
        )
    n = bounds.shape[0]
    # the direction of the grid: the side of each cell that comes first along the dim
    start, end, b0_first = _bounds_sides(bounds)
    start, end = start[:, None], end[:, None]
    frac = np.arange(scale + 1, dtype=np.float64) / scale
    points = start + (end - start) * frac[None, :-1]  # (n, scale): sub-cell starts
    nxt = np.concatenate([points[:, 1:], end], axis=1)  # (n, scale): sub-cell ends
    flip = ~b0_first[:, None]
    col0 = np.where(flip, nxt, points)
    col1 = np.where(flip, points, nxt)
    out = np.stack([col0, col1], axis=-1).reshape((n * scale, 2))
    return out.astype(bounds.dtype) if bounds.dtype.kind == "f" else out


def _bounds_name(var: xr.Variable | xr.DataArray) -> Hashable | None:
    """The name in the CF ``bounds`` attribute (or encoding) of a coordinate."""
    name = var.attrs.get("bounds") or var.encoding.get("bounds")
    return name if isinstance(name, str) and name else None


def _refine_variable(
    var: xr.Variable, scale: int, sdims: Sequence[Hashable], longitude: bool
) -> xr.Variable:
    """Refine a coordinate variable along its spatial dims; dask data stays lazy."""

    def refine(values: np.ndarray) -> np.ndarray:
        for d in sdims:
            values = refine_coords(values, scale, axis=var.dims.index(d), longitude=longitude)
        return values

    if var.chunks is None:
        data: Any = refine(np.asarray(var.values))
    else:
        whole = var.data.rechunk(-1)
        dtype = whole.dtype if whole.dtype.kind == "f" else np.float64
        chunks = tuple(
            (n * scale,) if d in sdims else (n,) for d, n in zip(var.dims, var.shape, strict=True)
        )
        data = whole.map_blocks(refine, chunks=chunks, dtype=dtype)
    return xr.Variable(var.dims, data, attrs=var.attrs)


def highres_bounds(
    obj: xr.DataArray | xr.Dataset,
    scale: int,
    *,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> dict[Hashable, xr.Variable]:
    """The high-resolution CF bounds of the 1-D spatial coordinates of ``obj``.

    For each dimension coordinate along a spatial dim whose ``bounds`` attribute (or
    encoding) names an ``(n, 2)`` variable of ``obj`` (a coordinate or, in a Dataset, a
    data variable), the bounds split exactly by :func:`refine_bounds`, under the same
    name and with the same attrs. Dask data stays lazy.

    Examples
    --------
    >>> coarse = xr.Dataset(
    ...     coords={
    ...         "lat": ("lat", [35.0, 45.0], {"units": "degrees_north", "bounds": "lat_bnds"}),
    ...         "lon": ("lon", [5.0, 15.0], {"units": "degrees_east"}),
    ...         "lat_bnds": (("lat", "nv"), [[30.0, 40.0], [40.0, 50.0]]),
    ...     }
    ... )
    >>> fine = highres_bounds(coarse, 2)  # lon has no bounds: not returned
    >>> list(fine), fine["lat_bnds"].dims
    (['lat_bnds'], ('lat', 'nv'))
    >>> fine["lat_bnds"].values
    array([[30., 35.],
           [35., 40.],
           [40., 45.],
           [45., 50.]])
    """
    scale = check_scale(scale)
    variables: Mapping[Hashable, xr.Variable] = (
        obj.coords.variables if isinstance(obj, xr.DataArray) else obj.variables
    )
    out: dict[Hashable, xr.Variable] = {}
    for name, (dim, vdim) in _spatial_bounds(obj, get_spatial_dims(obj, spatial_dims)).items():
        b = variables[name].transpose(dim, vdim)
        out[name] = xr.Variable((dim, vdim), refine_bounds(b.data, scale), attrs=b.attrs)
    return out


def highres_coords(
    obj: xr.DataArray | xr.Dataset,
    scale: int,
    *,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> dict[Hashable, xr.Variable]:
    """The high-resolution versions of every coordinate of ``obj`` that has a spatial dim.

    1-D dimension coordinates and 2-D auxiliary coordinates (e.g. ``lat(rlat, rlon)``
    of a rotated-pole grid) are refined with :func:`refine_coords`; attrs are kept.
    Coordinates that are CF bounds of a 1-D spatial coordinate (``lat_bounds(lat, 2)``)
    are split exactly with :func:`refine_bounds`; other bounds with spatial dims (the
    vertices of 2-D auxiliary coordinates) are left out, and their coordinate loses its
    ``bounds`` attribute. Coordinates without spatial dims are not returned. Dask-backed
    coordinates stay lazy.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> coarse = synthetic_dataarray(ny=8, nx=8).dl4ds.coarsen(scale=4)
    >>> highres_coords(coarse, 4)["lat"].values
    array([32.5, 37.5, 42.5, 47.5, 52.5, 57.5, 62.5, 67.5])
    """
    scale = check_scale(scale)
    ydim, xdim = get_spatial_dims(obj, spatial_dims)
    bounds = highres_bounds(obj, scale, spatial_dims=(ydim, xdim))
    bounds_of = {n: _bounds_name(c) for n, c in obj.coords.items()}
    all_bounds = {b for b in bounds_of.values() if b is not None}
    out: dict[Hashable, xr.Variable] = {}
    for name, coord in obj.coords.items():
        sdims = [d for d in coord.dims if d in (ydim, xdim)]
        if not sdims:
            continue
        if name in all_bounds:
            if name in bounds:
                out[name] = bounds[name]
            continue
        out[name] = _refine_variable(coord.variable, scale, sdims, _is_longitude(coord))
    for name, var in out.items():
        b = bounds_of.get(name)
        if b is not None and b in obj.coords and b not in out:
            var.attrs = {k: v for k, v in var.attrs.items() if k != "bounds"}
    return out


def is_periodic(coord: xr.DataArray | np.ndarray, *, rtol: float = 1e-3) -> bool:
    """True when a 1-D longitude coordinate is regular and spans exactly 360 degrees.

    A periodic grid wraps around: the networks then pad and tile across the date line.
    A DataArray must look like longitude (``standard_name``, ``units`` or name); a plain
    array is taken as longitude. ``rtol`` is the tolerance on the regularity and the span.

    Examples
    --------
    >>> from xr_dl4ds import tutorial
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> is_periodic(tutorial.open_dataset("era5_t2m")["lon"])  # 0, 1, ..., 359
    True
    >>> is_periodic(synthetic_dataset(nt=1, ny=8, nx=8)["lon"])  # a regional domain
    False
    >>> is_periodic(np.arange(0.0, 360.0, 45.0)), is_periodic(np.arange(0.0, 315.0, 45.0))
    (True, False)
    >>> is_periodic(xr.DataArray(np.arange(0.0, 360.0, 45.0), dims="x", name="x"))  # not lon
    False
    """
    values = np.asarray(coord, dtype=np.float64)
    if isinstance(coord, xr.DataArray) and not _is_longitude(coord):
        return False
    if values.ndim != 1 or values.size < 3:
        return False
    d = np.diff(values)
    if not np.allclose(d, d[0], rtol=rtol, atol=0):
        return False
    return math.isclose(abs(d[0]) * values.size, 360.0, rel_tol=rtol)


def _spacing(values: np.ndarray) -> float:
    if values.size < 2:
        return 1.0
    return float(np.median(np.abs(np.diff(values))))


def locate_subgrid(
    reference: np.ndarray,
    query: np.ndarray,
    *,
    tolerance: float = 0.01,
    name: str = "coordinate",
    longitude: bool = False,
) -> int:
    """Offset at which ``query`` appears as a contiguous run inside ``reference``.

    Both are 1-D coordinate arrays. ``tolerance`` is a fraction of the grid spacing of
    ``reference``. Raises :class:`~xr_dl4ds.exceptions.GridError` when ``query`` is not such a run.
    With ``longitude=True`` values are compared modulo 360 degrees.

    Examples
    --------
    >>> lat = np.arange(30.5, 40.0)  # 30.5, 31.5, ..., 39.5
    >>> locate_subgrid(lat, np.array([33.5, 34.5, 35.5]))
    3
    >>> locate_subgrid(lat, np.array([33.503, 34.5]))  # within 1% of a grid spacing
    3
    >>> lon = np.arange(0.0, 360.0, 10.0)  # 0..350; the query in -180..180
    >>> locate_subgrid(lon, np.array([-170.0, -160.0]), longitude=True)  # 190, 200
    19
    >>> locate_subgrid(lat, np.array([33.0, 34.0]), name="lat")  # between the cell centres
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.GridError: The lat values (2 values from 33 to 34, step 1) do not match ...
    """
    ref = np.asarray(reference, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    atol = tolerance * _spacing(ref)

    def _diff(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
        d = a - b
        if longitude:
            d = (d + 180.0) % 360.0 - 180.0
        return np.abs(d)

    if q.size <= ref.size:
        starts = np.flatnonzero(_diff(ref, q[0]) <= atol)
        for s in starts:
            if s + q.size <= ref.size and np.all(_diff(ref[s : s + q.size], q) <= atol):
                return int(s)
    raise GridError(
        f"The {name} values ({_describe(q)}) do not match the expected grid "
        f"({_describe(ref)}) within {tolerance:g} grid spacings. They must be the same "
        "cell centres, or a contiguous part of them."
    )


def _describe(values: np.ndarray) -> str:
    values = np.asarray(values)
    if values.size == 0:
        return "empty"
    if values.size == 1:
        return f"1 value: {values[0]:.6g}"
    step = values[1] - values[0]
    return f"{values.size} values from {values[0]:.6g} to {values[-1]:.6g}, step {step:.6g}"
