"""CF-compliant output of :func:`xr_dl4ds.downscale`: high-res coordinates, attrs, provenance.

What the output carries (see :func:`assemble_output`):

- the high-resolution spatial coordinates, with their CF attrs (``units``,
  ``standard_name``, ``axis``: filled in where the input left them out and the
  coordinate is recognisably latitude/longitude), the training high-res coordinates
  when the input is on the training grid, and derived by the block-mean convention of
  :mod:`xr_dl4ds.grid` elsewhere;
- cell bounds of the 1-D spatial coordinates when the input had them (each coarse
  cell split into ``scale`` sub-cells, named like the input's); other bounds (time
  bounds...) are kept; bounds of 2-D auxiliary coordinates (vertices) are dropped;
- for rotated-pole and other projected grids: the 2-D ``lat``/``lon`` auxiliary
  coordinates on the high-res grid and the grid-mapping variable;
- the variables' attrs (``units`` = the training units), minus those that describe
  the stored coarse values (``valid_range``, ``actual_range``, ``cell_measures``...);
- provenance: ``Conventions``, a new first ``history`` line (UTC time, call, package
  version, model id), ``source``;
- encodings that write a valid file with :meth:`~xarray.Dataset.to_netcdf` and
  :meth:`~xarray.Dataset.to_zarr` as they are: float32 data with a ``_FillValue`` for
  masked cells, netCDF chunk sizes, no fill value on coordinates, 32-bit time.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .grid import _bounds_name, highres_bounds, highres_coords

if TYPE_CHECKING:
    from .downscaler import Downscaler

__all__ = ["assemble_output", "history_line", "source_attr", "FILL_VALUE"]

_OUT = ("dl4ds_variable", "dl4ds_y", "dl4ds_x")

#: ``_FillValue`` of the downscaled variables (as in CMIP data): masked cells.
FILL_VALUE = np.float32(1e20)

CONVENTIONS = "CF-1.8"

#: attrs that describe a variable's stored (coarse) values, not values derived from them
VALUE_ATTRS = frozenset(
    {
        "_FillValue",
        "missing_value",
        "scale_factor",
        "add_offset",
        "_Unsigned",
        "valid_range",
        "valid_min",
        "valid_max",
        "actual_range",
    }
)
# attrs of the input variables that do not carry over to the output
_DROP_ATTRS = VALUE_ATTRS | {
    "cell_measures",
    "ancillary_variables",
    "coordinates",
    "bounds",
    "grid_mapping",
    "chunksizes",
}
# encodings that say what a value means (kept); storage layout ones are dropped, since
# they may not fit the output's shape or dask chunks (zarr refuses such a "chunks")
_KEEP_ENCODING = ("units", "calendar", "dtype", "_FillValue", "missing_value")
# standard names of coordinates whose canonical units are "1"
_DIMENSIONLESS = frozenset({"realization"})
# netCDF chunks of the downscaled variables: one step, spatial tiles up to 4 MiB
_CHUNK_ELEMENTS = 1024 * 1024


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _description(model: Downscaler) -> str:
    from . import __version__

    c = model.config
    return (
        f"downscaled x{c.scale} with xr_dl4ds {__version__} "
        f"({c.backbone}+{c.upsampling}, target {', '.join(model.target)})"
    )


def history_line(model: Downscaler, *, call: str = "", model_id: str = "") -> str:
    """The ``history`` line that :func:`xr_dl4ds.downscale` prepends.

    ``"<UTC time>: <call> (model <id>): downscaled x<scale> with xr_dl4ds <version>
    (<backbone>+<upsampling>, target <names>)"``.
    """
    call = call or "xr_dl4ds.downscale"
    ident = model_id or _model_id(model)
    return f"{_now()}: {call} (model {ident}): {_description(model)}"


def source_attr(model: Downscaler, *, model_id: str = "") -> str:
    """The ``source`` attr: ``"xr_dl4ds <version>: <backbone>+<upsampling> x<scale> model
    <id>"``."""
    from . import __version__

    c = model.config
    ident = model_id or _model_id(model)
    return f"xr_dl4ds {__version__}: {c.backbone}+{c.upsampling} x{c.scale} model {ident}"


def _model_id(model: Downscaler) -> str:
    from .io import model_id

    return model_id(model)


def _prepend_history(attrs: Mapping[Hashable, Any], line: str) -> dict[Hashable, Any]:
    out = dict(attrs)
    old = out.get("history")
    out["history"] = f"{line}\n{old}" if old else line
    return out


def _with_source(attrs: Mapping[Hashable, Any], source: str) -> dict[Hashable, Any]:
    out = dict(attrs)
    old = out.get("source")
    out["source"] = f"{source}; input source: {old}" if old and old != source else source
    return out


def _conventions(old: Any) -> str:
    """``Conventions`` naming at least CF-1.8; other conventions (ACDD...) are kept."""
    if not isinstance(old, str) or not old.strip():
        return CONVENTIONS
    tokens = old.replace(",", " ").split()
    for i, tok in enumerate(tokens):
        m = re.fullmatch(r"CF-(\d+)\.(\d+)", tok)
        if m:
            if (int(m.group(1)), int(m.group(2))) < (1, 8):
                tokens[i] = CONVENTIONS
            return " ".join(tokens)
    return " ".join([CONVENTIONS, *tokens])


def _grid_mapping_names(value: Any) -> list[str]:
    """Grid-mapping variable names in a ``grid_mapping`` attr (short or extended form)."""
    if not isinstance(value, str) or not value.strip():
        return []
    if ":" not in value:
        return [value.strip()]
    return [t.rstrip(":") for t in value.split() if t.endswith(":")]


def _cf_coord_attrs(name: Hashable, var: xr.Variable, axis: str, rotated: bool) -> xr.Variable:
    """Fill in the CF attrs a 1-D spatial dimension coordinate lacks (never overwrite)."""
    attrs = dict(var.attrs)
    attrs.setdefault("axis", axis)
    lname = str(name).lower()
    units = attrs.get("units")
    sn = attrs.get("standard_name")
    if rotated and lname in ("rlat", "rlon") and sn is None:
        attrs["standard_name"] = "grid_latitude" if axis == "Y" else "grid_longitude"
        attrs.setdefault("units", "degrees")
    elif sn in ("latitude", "longitude") or lname in ("lat", "latitude", "lon", "longitude"):
        is_y = axis == "Y"
        if sn is None and (units is None or str(units).startswith("degree")):
            attrs["standard_name"] = "latitude" if is_y else "longitude"
        if units is None and attrs.get("standard_name") in ("latitude", "longitude"):
            attrs["units"] = "degrees_north" if is_y else "degrees_east"
    if "standard_name" not in attrs and "long_name" not in attrs:
        attrs["long_name"] = str(name)
    return xr.Variable(var.dims, var.data, attrs=attrs, encoding=var.encoding)


def _time_encoding(var: xr.Variable, parent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Encoding of a datetime variable with a CF-1.8 data type: int32 when the numbers
    fit, float64 (exact below 2**53) rather than int64. ``parent``: the encoding of the
    coordinate whose bounds ``var`` is (same units and calendar)."""
    enc = {k: var.encoding[k] for k in ("units", "calendar", "dtype") if k in var.encoding}
    if parent is not None:
        enc.update({k: parent[k] for k in ("units", "calendar") if k in parent})
    if var.size == 0 or var.dtype.kind not in "MO":
        return enc
    dtype = np.dtype(enc.get("dtype", np.int64))
    if dtype.kind not in "iu" or dtype.itemsize < 8:
        return enc
    fixed = {k: parent[k] for k in ("units", "calendar") if k in parent} if parent else {}
    if var.chunks is not None:
        # lazy: xarray needs both units and dtype, or neither
        return {**enc, "dtype": "float64"} if "units" in enc else enc
    try:
        values = np.asarray(var.values)
        if var.dtype.kind == "M" and np.isnat(values).any():
            return enc
        num, units, calendar = xr.coding.times.encode_cf_datetime(
            values, enc.get("units"), enc.get("calendar")
        )
    except Exception:  # cftime oddities: let xarray choose
        return enc
    num = np.asarray(num)
    if num.dtype.kind not in "iu":
        return enc
    big = int(np.abs(num).max())
    if big <= np.iinfo(np.int32).max:
        return {**enc, "units": units, "calendar": calendar, "dtype": "int32", **fixed}
    if big < 2**53:
        return {**enc, "units": units, "calendar": calendar, "dtype": "float64", **fixed}
    return enc


def _coord_encoding(var: xr.Variable, parent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Coordinates (and bounds, grid mappings): no ``_FillValue`` (CF 2.5.1)."""
    if var.dtype.kind in "MO" or "calendar" in var.encoding:
        enc = _time_encoding(var, parent)
    else:
        enc = {k: var.encoding[k] for k in ("units", "dtype") if k in var.encoding}
    if var.dtype.kind in "fcMmO":
        enc["_FillValue"] = None
    return enc


def _encode_coords(variables: Mapping[Hashable, xr.Variable], names: set[Hashable]) -> None:
    """Set the encodings of the coordinate-like ``names``; bounds after their parent."""
    parent_of = {_bounds_name(v): n for n, v in variables.items() if n in names}
    todo = [n for n in variables if n in names and n not in parent_of]
    todo += [n for n in variables if n in names and n in parent_of]
    for name in todo:
        var = variables[name]
        parent = parent_of.get(name)
        var.encoding = _coord_encoding(var, None if parent is None else variables[parent].encoding)


def _netcdf_chunks(var: xr.Variable, spatial: tuple[Hashable, Hashable]) -> tuple[int, ...] | None:
    """netCDF chunk sizes: 1 along non-spatial dims, spatial tiles of at most 4 MiB."""
    if 0 in var.shape or var.ndim == 0:
        return None
    sizes = dict(zip(var.dims, var.shape, strict=True))
    ny, nx = sizes.get(spatial[0], 1), sizes.get(spatial[1], 1)
    tile = int(np.sqrt(_CHUNK_ELEMENTS))
    cy, cx = (ny, nx) if ny * nx <= _CHUNK_ELEMENTS else (min(ny, tile), min(nx, tile))
    return tuple(cy if d == spatial[0] else cx if d == spatial[1] else 1 for d in var.dims)


def _data_encoding(var: xr.Variable, spatial: tuple[Hashable, Hashable]) -> dict[str, Any]:
    """Downscaled variables: float32 with a fill value for masked cells; netCDF chunks
    (ignored by zarr, which takes the dask chunks)."""
    enc: dict[str, Any] = {"dtype": "float32", "_FillValue": FILL_VALUE}
    chunks = _netcdf_chunks(var, spatial)
    if chunks is not None:
        enc["chunksizes"] = chunks
    return enc


def _clean_encoding(var: xr.Variable) -> dict[str, Any]:
    """Keep the encodings that say what values mean, drop the storage layout."""
    return {k: var.encoding[k] for k in _KEEP_ENCODING if k in var.encoding}


def _highres_grid(
    ds: xr.Dataset,
    model: Downscaler,
    offset: tuple[int, int] | None,
    y: Hashable,
    x: Hashable,
) -> tuple[dict[Hashable, xr.Variable], dict[Hashable, xr.Variable]]:
    """High-res coordinates (with spatial dims) and the bounds data variables."""
    s = model.scale
    derived = highres_coords(ds, s, spatial_dims=(y, x))
    coords: dict[Hashable, xr.Variable] = {}
    if offset is not None:
        iy, ix = offset
        g = model.grid
        h, w = ds.sizes[y], ds.sizes[x]
        sub = g.highres.isel(
            {g.y: slice(iy * s, (iy + h) * s), g.x: slice(ix * s, (ix + w) * s)}
        ).rename({g.y: y, g.x: x})
        training_bounds = {_bounds_name(c) for c in sub.coords.values()} - {None}
        for n, c in sub.coords.items():
            if n in training_bounds:  # bounds come from the input's, below
                continue
            attrs = {k: v for k, v in c.attrs.items() if k != "bounds"}
            coords[n] = xr.Variable(c.dims, c.variable.data, attrs=attrs)
    for name, var in derived.items():
        coords.setdefault(name, var)
    # bounds: those of the input's 1-D spatial coordinates, split by the scale
    bounds = highres_bounds(ds, s, spatial_dims=(y, x))
    bound_vars: dict[Hashable, xr.Variable] = {}
    for dim in (y, x):
        name = _bounds_name(ds[dim]) if dim in ds.coords else None
        if dim in coords and name is not None and name in bounds:
            coords[dim].attrs = {**coords[dim].attrs, "bounds": name}
            if name in ds.coords:
                coords[name] = bounds[name]
            else:
                bound_vars[name] = bounds[name]
    # CF attrs of the spatial dimension coordinates
    gm = model.grid.grid_mapping
    rotated = False
    if gm and gm in model.grid.highres.variables:
        gmattrs = model.grid.highres[gm].attrs
        rotated = gmattrs.get("grid_mapping_name") == "rotated_latitude_longitude"
    for dim, axis in ((y, "Y"), (x, "X")):
        if dim in coords and coords[dim].ndim == 1:
            coords[dim] = _cf_coord_attrs(dim, coords[dim], axis, rotated)
    return coords, bound_vars


def _data_attrs(src: Mapping[Hashable, Any], units: str | None) -> dict[Hashable, Any]:
    attrs = {k: v for k, v in src.items() if k not in _DROP_ATTRS}
    if units is not None:
        attrs["units"] = units
    return attrs


def _dimensionless_units(variables: Mapping[Hashable, xr.Variable]) -> None:
    """``units = "1"`` on coordinates whose standard name is dimensionless (CF 3.1), e.g.
    the ``realization`` of an ensemble."""
    for var in variables.values():
        if var.attrs.get("standard_name") in _DIMENSIONLESS and "units" not in var.attrs:
            var.attrs["units"] = "1"


def _drop_dangling(variables: Mapping[Hashable, xr.Variable]) -> None:
    """Remove ``bounds`` attrs and encodings that name a variable the output lacks."""
    for var in variables.values():
        for where in (var.attrs, var.encoding):
            if "bounds" in where and where["bounds"] not in variables:
                del where["bounds"]


def assemble_output(
    out: xr.DataArray,
    ds: xr.Dataset,
    model: Downscaler,
    *,
    offset: tuple[int, int] | None,
    spatial_dims: tuple[Hashable, Hashable],
    template_dims: Sequence[Hashable],
    dataarray_name: Hashable | None,
    is_dataarray: bool,
    input_coords: Mapping[Hashable, Any],
    call: str = "",
    model_id: str = "",
) -> Any:
    """Build the downscaled DataArray or Dataset from the network output.

    ``out`` is in the training units of the targets. Restores the masked cells as
    missing, puts the variables on the high-resolution grid with CF coordinates, bounds
    and grid mapping, and adds the provenance attrs and the encodings for writing. Dask
    data stays lazy.

    Parameters
    ----------
    out : DataArray
        The network output in the training units, with dims ``(..., dl4ds_variable, dl4ds_y,
        dl4ds_x)``.
    ds : Dataset
        The coarse input (a DataArray input as a one-variable Dataset with its attrs).
    model : Downscaler
        The model that made ``out``.
    offset : (int, int) or None
        Position of the input in the model's low-res grid; None when it is elsewhere
        (the high-res coordinates are then derived from the input's).
    spatial_dims : (y, x)
        The input's spatial dims.
    template_dims : sequence
        Order of the output dims.
    dataarray_name : hashable or None
        Name of the output DataArray.
    is_dataarray : bool
        Return a DataArray (else a Dataset).
    input_coords : mapping
        Coordinates of the input object (for a DataArray, its grid-mapping coord).
    call : str, optional
        How downscale was called, e.g. ``"downscale(model=..., batch_size=8)"``, for the
        ``history`` line. Default ``"xr_dl4ds.downscale"``.
    model_id : str, optional
        Content hash of the model (:func:`xr_dl4ds.io.model_id`); computed when empty.

    Returns
    -------
    DataArray or Dataset
        A Dataset holds the downscaled targets, the input's variables without spatial
        dims (predictors and spatial fields are left out), bounds and the grid-mapping
        variable; global attrs ``Conventions``, ``title``, ``history`` and ``source``.
        A DataArray carries ``history`` and ``source`` in its attrs, its grid-mapping
        variable as a scalar coordinate and ``grid_mapping`` in its encoding (so that
        :meth:`~xarray.DataArray.to_netcdf` does not list it as a coordinate); it cannot
        hold cell bounds (their bounds dim is not one of its dims).

    Examples
    --------
    What :func:`xr_dl4ds.downscale` does with the network output, here a constant 280 K
    from a model trained on land-only data on a rotated-pole grid:

    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16, grid="rotated", mask=True)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> coarse = hr[["tas"]].dl4ds.coarsen(scale=4)  # on the training low-res grid
    >>> out = xr.DataArray(np.full((2, 1, 16, 16), 280.0, np.float32),
    ...                    dims=("time", "dl4ds_variable", "dl4ds_y", "dl4ds_x"),
    ...                    coords={"time": coarse["time"]})
    >>> fine = assemble_output(out, coarse, model, offset=(0, 0),
    ...                        spatial_dims=("rlat", "rlon"),
    ...                        template_dims=("time", "rlat", "rlon"), dataarray_name=None,
    ...                        is_dataarray=False, input_coords=coarse.coords,
    ...                        call="xr_dl4ds.downscale(model)")
    >>> dict(fine.sizes), sorted(fine.coords), list(fine.data_vars)
    ({'time': 2, 'rlat': 16, 'rlon': 16}, ['lat', 'lon', 'rlat', 'rlon', 'time'],
     ['tas', 'rotated_pole'])
    >>> bool((fine["lat"] == hr["lat"]).all())  # the training high-res 2-D latitude
    True
    >>> fine["tas"].isnull().equals(hr["tas"].isnull())  # the sea is missing again
    True
    >>> fine["tas"].attrs["units"], fine["tas"].attrs["grid_mapping"]
    ('K', 'rotated_pole')
    >>> fine["rotated_pole"].attrs["grid_mapping_name"]
    'rotated_latitude_longitude'
    >>> print(fine["tas"].encoding["_FillValue"])  # of the masked cells, when written
    1e+20
    >>> print(fine.attrs["history"].splitlines()[0].split(": ", 1)[1])  # after UTC time
    xr_dl4ds.downscale(model) (model ...): downscaled x4 with xr_dl4ds ... (resnet+spc,
    target tas)
    """
    y, x = spatial_dims
    needed = list(model.target + model.predictors)
    h, w = ds.sizes[y], ds.sizes[x]
    s = model.scale
    ident = model_id or _model_id(model)
    hr_coords, bound_vars = _highres_grid(ds, model, offset, y, x)
    mask = None
    if offset is not None and model.mask is not None:
        iy, ix = offset
        mask = model.mask[:, iy * s : (iy + h) * s, ix * s : (ix + w) * s]

    # the grid mapping: from the input, else from the training grid
    gm_name: str | None = None
    gm_var: xr.Variable | None = None
    for n in model.target:
        names = _grid_mapping_names(
            ds[n].attrs.get("grid_mapping") or ds[n].encoding.get("grid_mapping")
        )
        if names:
            gm_name = names[0]
            break
    gm_name = gm_name or model.grid.grid_mapping
    if gm_name is not None:
        if gm_name in input_coords:
            gm_var = input_coords[gm_name].variable
        elif gm_name in ds.variables:
            gm_var = ds[gm_name].variable
        elif gm_name in model.grid.highres.variables:
            gm_var = model.grid.highres[gm_name].variable
    if gm_var is not None:
        gm_var = xr.Variable(gm_var.dims, gm_var.data, attrs=gm_var.attrs)
        gm_var.encoding = _coord_encoding(gm_var)
    elif gm_name is not None:
        gm_name = None  # no grid-mapping variable to point to

    results = {}
    coord_vars = {c: v for c, v in hr_coords.items() if not (set(v.dims) - {y, x})}
    for k, n in enumerate(model.target):
        da = out.isel({_OUT[0]: k}, drop=True).rename({_OUT[1]: y, _OUT[2]: x})
        da = da.astype(np.float32, copy=False)
        if mask is not None and not mask[k].all():
            da = da.where(xr.DataArray(mask[k], dims=(y, x)))
        order = [d for d in template_dims if d in da.dims]
        da = da.transpose(*order)
        da = da.assign_coords(coord_vars)
        da.attrs = _data_attrs(ds[n].attrs, model.stats[n].units)
        da.encoding = _data_encoding(da.variable, (y, x))
        results[n] = da.rename(n)

    history = history_line(model, call=call, model_id=ident)
    source = source_attr(model, model_id=ident)
    if is_dataarray:
        result = results[model.target[0]].rename(dataarray_name)
        if gm_name is not None and gm_var is not None:
            result = result.assign_coords({gm_name: gm_var})
        result = result.copy(deep=False)  # own attrs and encodings, same (lazy) data
        result.attrs = _with_source(_prepend_history(result.attrs, history), source)
        if gm_name is not None and gm_var is not None:
            result.encoding["grid_mapping"] = gm_name
        _encode_coords(result.coords.variables, set(result.coords))
        _dimensionless_units(result.coords.variables)
        for var in result.coords.variables.values():
            var.attrs.pop("bounds", None)  # a DataArray cannot hold cell bounds
        return result

    keep = {
        n: v.variable
        for n, v in ds.data_vars.items()
        if not ({y, x} & set(v.dims)) and n not in needed and n != gm_name
    }
    out_ds = xr.Dataset(results)
    extra = {
        n: v.variable
        for n, v in ds.coords.items()  # non-spatial coords the targets lack (time bounds...)
        if n not in out_ds.variables and not ({y, x} & set(v.dims)) and n != gm_name
    }
    extra.update({n: v for n, v in hr_coords.items() if n not in out_ds.variables})
    out_ds = out_ds.assign_coords(extra)
    if gm_name is not None and gm_name in out_ds.coords:
        out_ds = out_ds.reset_coords(gm_name, drop=True)
    data_vars = {**keep, **bound_vars}
    if gm_name is not None and gm_var is not None:
        data_vars[gm_name] = gm_var
    out_ds = out_ds.assign(data_vars).copy(deep=False)
    attrs = _with_source(_prepend_history(ds.attrs, history), source)
    attrs["Conventions"] = _conventions(attrs.get("Conventions"))
    attrs.setdefault("title", f"{', '.join(model.target)} downscaled x{s} by xr_dl4ds")
    out_ds.attrs = attrs
    bounds_names = {_bounds_name(v) for v in out_ds.variables.values()} - {None}
    coord_like = set(out_ds.coords) | bounds_names | ({gm_name} - {None})
    _encode_coords(out_ds.variables, coord_like)
    _dimensionless_units(out_ds.coords.variables)
    for name, var in out_ds.variables.items():
        if name in results:
            if gm_name is not None:
                var.attrs["grid_mapping"] = gm_name
        elif name not in coord_like:
            var.encoding = _clean_encoding(var)
    _drop_dangling(out_ds.variables)
    return out_ds
