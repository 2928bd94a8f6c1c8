"""Checks of the inputs of :func:`~xr_dl4ds.pair`, :func:`~xr_dl4ds.fit` and
:func:`~xr_dl4ds.downscale`, made before any expensive work.

Two kinds:

- *structure* (coordinates, dims, dtypes, calendars, units): from metadata and
  coordinate values only, never from the data, so they are free on dask-backed inputs;
- *values* (infinite values, undeclared fill values, incomplete static fields, a
  constant target): in :func:`value_summary`, one pass over the data that also gives the
  normalization statistics, so the training data are read once before training starts.

Every failure is a :class:`~xr_dl4ds.exceptions.DL4DSError` subclass whose message says
what was received, what is allowed and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable, Sequence

import dask
import numpy as np
import xarray as xr

from ..exceptions import DataError, GridError, UnitsError, VariableError
from ..grid import _is_longitude

__all__ = [
    "FILL_LIKE",
    "ValueSummary",
    "check_block_values",
    "check_calendars",
    "check_dtype",
    "check_spatial_coords",
    "check_time_coord",
    "check_units",
    "check_variable_dims",
    "mask_declared_fill",
    "value_summary",
]

#: Values at or above this magnitude are taken for undeclared fill values (netCDF's
#: default fill of floats is 9.97e36; CMIP and CORDEX files use 1e20). No physical field
#: in climate data comes near it in its usual units.
FILL_LIKE = 1e15

_STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


# --------------------------------------------------------------------------- structure


def check_spatial_coords(
    obj: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    *,
    what: str,
    tolerance: float = 0.05,
) -> None:
    """The 1-D coordinates of the spatial ``dims`` are finite, strictly monotonic and
    regularly spaced (every step within ``tolerance`` of the median step).

    Longitudes may wrap (``350, 355, 0, 5``): they are unwrapped first. Dims without a
    coordinate, or with a non-numeric one, are not checked.

    Raises
    ------
    GridError
    """
    for d in dims:
        if d not in obj.coords or obj[d].ndim != 1 or obj.sizes[d] < 2:
            continue
        coord = obj[d]
        if not np.issubdtype(coord.dtype, np.number):
            continue
        values = np.asarray(coord.values, np.float64)
        if not np.isfinite(values).all():
            raise GridError(
                f"The {what} coordinate {d!r} has {int((~np.isfinite(values)).sum())} missing "
                f"or infinite value(s). Allowed: finite cell centres. Fix: drop those cells "
                f"(e.g. obj.dropna({d!r}) on the coordinate) or rebuild the coordinate."
            )
        if _is_longitude(coord):
            values = np.unwrap(values, period=360.0)
        step = np.diff(values)
        if not ((step > 0).all() or (step < 0).all()):
            bad = int(np.flatnonzero(np.sign(step) != np.sign(np.median(step)))[0])
            kind = "repeats" if step[bad] == 0 else "turns back"
            raise GridError(
                f"The {what} coordinate {d!r} is not strictly monotonic: it {kind} at index "
                f"{bad + 1} ({values[bad]:.6g} -> {values[bad + 1]:.6g}). Allowed: strictly "
                f"increasing or decreasing cell centres. Fix: obj.sortby({d!r}) and drop "
                f"duplicated cells (obj.drop_duplicates({d!r}))."
            )
        median = float(np.median(step))
        worst = int(np.argmax(np.abs(step - median)))
        if abs(step[worst] - median) > tolerance * abs(median):
            raise GridError(
                f"The {what} coordinate {d!r} is not regularly spaced: step {worst} is "
                f"{step[worst]:.6g}, the median step {median:.6g} (allowed: within "
                f"{tolerance:g} of it). Downscaling works on regular grids, where a coarse "
                "cell is the block mean of scale x scale fine cells. Fix: regrid onto a "
                "regular grid first (xarray's .interp, or xESMF), or select a regular part."
            )


def check_time_coord(obj: xr.DataArray | xr.Dataset, tdim: Hashable, *, what: str) -> None:
    """The time coordinate has no duplicates and increases.

    Raises
    ------
    DataError
    """
    if tdim not in obj.coords or obj[tdim].ndim != 1 or obj.sizes[tdim] < 2:
        return
    index = obj.indexes[tdim] if tdim in obj.indexes else None
    if index is None:
        return
    if index.has_duplicates:
        dups = index[index.duplicated()]
        raise DataError(
            f"The {what} time coordinate {tdim!r} has {len(dups)} duplicated step(s) (first: "
            f"{dups[0]}). Allowed: one field per time step. Fix: "
            f"obj.drop_duplicates({tdim!r}), or check how the files were concatenated."
        )
    if not index.is_monotonic_increasing:
        first = next(i for i in range(1, len(index)) if index[i] < index[i - 1])
        raise DataError(
            f"The {what} time coordinate {tdim!r} is not increasing: step {first} "
            f"({index[first]}) comes before step {first - 1} ({index[first - 1]}). "
            f"Allowed: steps in time order. Fix: obj.sortby({tdim!r})."
        )


def check_variable_dims(
    da: xr.DataArray, allowed: Sequence[Hashable], *, role: str, tdim: Hashable | None
) -> None:
    """``da`` has no dims but ``allowed`` (the spatial dims, and the time dim).

    Raises
    ------
    VariableError
    """
    extra = [d for d in da.dims if d not in allowed]
    if not extra:
        return
    d = extra[0]
    first = da[d].values[0].item() if d in da.coords else None
    example = f"{da.name}.isel({d}=0)" if first is None else f"{da.name}.sel({d}={first!r})"
    stack = (
        f", or treat each {d} as more samples by stacking it into the time dim before "
        f"pairing: obj.stack(sample=({tdim!r}, {d!r})) with time_dim='sample'"
        if tdim is not None and role in ("target",)
        else ""
    )
    raise VariableError(
        f"The {role} {da.name!r} has dims {tuple(da.dims)}: {extra} beyond the "
        f"{'time and ' if tdim is not None else ''}spatial dims {tuple(allowed)}. Allowed: "
        f"only those. Fix: select one {d} (e.g. {example}), or make each {d} a variable of "
        f"its own (obj.to_dataset({d!r})) and pass them as separate "
        f"{'targets' if role == 'target' else role + 's'}{stack}."
    )


def check_dtype(da: xr.DataArray, *, role: str) -> None:
    """Targets and predictors are float32 or float64; static fields any real number type.

    Integers in a target or predictor are usually packed data that were not decoded
    (``scale_factor``/``add_offset``); float16 keeps about 3 significant digits, less than
    a temperature in kelvin needs.

    Raises
    ------
    DataError
    """
    dtype = da.dtype
    if role == "static field":
        if dtype.kind in "biuf":
            return
    elif dtype.kind == "f" and dtype.itemsize >= 4:
        return
    if dtype.kind in "iub":
        packed = [k for k in ("scale_factor", "add_offset") if k in da.attrs or k in da.encoding]
        hint = (
            f" It carries {packed}: the data were not decoded; open the file with "
            "xr.open_dataset(..., mask_and_scale=True) (the default) or xr.decode_cf(ds)."
            if packed
            else ""
        )
        raise DataError(
            f"The {role} {da.name!r} is {dtype} (integers). Allowed: float32 or float64.{hint} "
            f"Fix: decode packed data, or cast: obj[{str(da.name)!r}].astype('float32')."
        )
    if dtype.kind == "f":
        raise DataError(
            f"The {role} {da.name!r} is {dtype}, which keeps about 3 significant digits "
            f"(280.3 K is stored as 280.25). Allowed: float32 or float64. Fix: "
            f"obj[{str(da.name)!r}].astype('float32') (the precision already lost does not "
            "come back: use a float32 source if there is one)."
        )
    raise DataError(
        f"The {role} {da.name!r} has dtype {dtype}, not a number type. Allowed: float32 or "
        "float64 (integers or booleans for static fields). Fix: convert it, or pass "
        "another variable."
    )


def check_units(da: xr.DataArray, *, role: str, required: bool) -> None:
    """The ``units`` attribute is present (when ``required``) and pint can read it.

    Targets and predictors need units: the model stores them and converts the input of
    ``downscale`` to them.

    Raises
    ------
    UnitsError
    """
    units = da.attrs.get("units")
    if units is None:
        if required:
            raise UnitsError(
                f"The {role} {da.name!r} has no 'units' attribute. Allowed: CF units that "
                "pint reads (e.g. 'K', 'degC', 'kg m-2 s-1', 'm s-1', '1'). The model stores "
                "them and converts the input of downscale() to them. Fix: "
                f"obj[{str(da.name)!r}].attrs['units'] = 'K' (its real units)."
            )
        return
    from .normalization import _registry

    try:
        _registry().Unit(str(units))
    except Exception as err:  # pint raises several types for unreadable strings
        raise UnitsError(
            f"The {role} {da.name!r} has units {units!r}, which pint (with cf-xarray's CF "
            f"unit registry) cannot read: {err}. Allowed: CF/UDUNITS strings such as 'K', "
            "'degC', 'kg m-2 s-1', 'm s-1', '1'. Fix: set the attribute to its units "
            f"written that way: obj[{str(da.name)!r}].attrs['units'] = '...'."
        ) from None


def _calendar(t: xr.DataArray) -> str | None:
    if np.issubdtype(t.dtype, np.datetime64):
        return "proleptic_gregorian"
    if t.dtype == object and t.size:
        first = t.values.reshape(-1)[0]
        cal = getattr(first, "calendar", None)
        return None if cal is None else str(cal)
    return None


def check_calendars(a: xr.DataArray, b: xr.DataArray, *, what: str) -> None:
    """Two time coordinates use the same calendar (``standard``, ``gregorian`` and
    ``proleptic_gregorian`` count as one: they agree after 1582).

    Raises
    ------
    DataError
    """
    ca, cb = _calendar(a), _calendar(b)
    if ca is None or cb is None:
        return
    numpy_a, numpy_b = (np.issubdtype(t.dtype, np.datetime64) for t in (a, b))
    if (ca == cb or {ca, cb} <= _STANDARD_CALENDARS) and numpy_a == numpy_b:
        return
    if {ca, cb} <= _STANDARD_CALENDARS:  # one side numpy datetime64, the other cftime
        raise DataError(
            f"The time coordinates are of two kinds: the high-resolution one holds "
            f"{'numpy datetime64' if numpy_a else 'cftime'} dates, the {what} "
            f"{'numpy datetime64' if numpy_b else 'cftime'} dates (both {cb!r} calendar), "
            "which cannot be matched. Allowed: the same kind. Fix: convert the cftime side, "
            "e.g. lowres = lowres.convert_calendar('standard', use_cftime=False)."
        )
    raise DataError(
        f"The calendars differ: the high-resolution time uses {ca!r}, the {what} uses {cb!r}. "
        "Allowed: the same calendar (model output often uses 'noleap' or '360_day', "
        "reanalyses 'standard'), so that the time steps can be matched. Fix: convert one, "
        "e.g. lowres = lowres.convert_calendar('standard', align_on='date', "
        "use_cftime=False) (see xarray's convert_calendar for 360_day)."
    )


def mask_declared_fill(da: xr.DataArray) -> xr.DataArray:
    """Cells equal to a ``_FillValue`` or ``missing_value`` *attribute* become NaN.

    xarray moves these to ``.encoding`` when it decodes a file; in ``.attrs`` they mean
    the data were not decoded (``decode_cf=False``, or a hand-made array). Lazy.
    """
    fills = []
    for key in ("_FillValue", "missing_value"):
        if key in da.attrs:
            fills.extend(np.atleast_1d(np.asarray(da.attrs[key])).tolist())
    if not fills or da.dtype.kind != "f":
        return da
    attrs = {k: v for k, v in da.attrs.items() if k not in ("_FillValue", "missing_value")}
    keep = da.notnull()
    for f in fills:
        keep = keep & (da != f)
    out = da.where(keep)
    out.attrs = attrs
    return out


# --------------------------------------------------------------------------- values


def check_block_values(arr: np.ndarray, channels: Sequence[str], axis: int = -3) -> None:
    """One block of the input of ``downscale`` (channels along ``axis``) has no infinite
    value and no undeclared fill value; run inside each task, so a lazy input is checked
    as it is computed (a failing task stops the computation: ``to_zarr`` then leaves an
    incomplete store that does not claim to be complete).

    Raises
    ------
    DataError
    """
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(arr) < FILL_LIKE) & ~np.isnan(arr)
    if not bad.any():
        return
    where = np.moveaxis(bad, axis, 0).reshape(bad.shape[axis], -1).sum(axis=1)
    name = channels[int(np.argmax(where))] if len(channels) == where.size else "?"
    values = arr[bad]
    kind = "infinite values" if np.isinf(values).any() else "undeclared fill values"
    raise DataError(
        f"The input {name!r} of downscale holds {int(bad.sum())} {kind} in this chunk "
        f"(e.g. {float(values[0]):.6g}; values of magnitude >= {FILL_LIKE:g} count as fill "
        "values). Allowed: finite values, NaN for missing ones. Fix: mask them first, e.g. "
        f"da.where(np.isfinite(da) & (abs(da) < {FILL_LIKE:g})), or declare the fill value "
        "(_FillValue) and decode the file."
    )


@dataclasses.dataclass(frozen=True)
class ValueSummary:
    """What one pass over a variable found: counts, moments and extremes (float64)."""

    name: str
    role: str
    size: int
    count: int  # finite values
    n_inf: int
    total: float
    total_sq: float
    absmax: float  # of the finite values; nan when there is none

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def std(self) -> float:
        return math.sqrt(max(self.total_sq / self.count - self.mean**2, 0.0))

    @property
    def constant(self) -> bool:
        """No variation beyond float64 rounding of the mean."""
        return not self.std > 1e-12 * max(1.0, abs(self.mean))


def value_summary(fields: Iterable[tuple[str, str, xr.DataArray]]) -> dict[str, ValueSummary]:
    """One pass (one ``dask.compute``) over ``(key, role, field)`` triples: counts of
    finite and infinite values, sums, sums of squares and the largest magnitude; then the
    checks of every field's values.

    Roles: ``"target"``, ``"low-resolution target"``, ``"predictor"``, ``"static field"``.

    Raises
    ------
    DataError
        Infinite values anywhere; values of magnitude >= :data:`FILL_LIKE` (undeclared
        fill values); a field with no valid value; a static field with missing cells; a
        constant target.
    """
    items = list(fields)
    lazy = []
    for _, _, da in items:
        x = da.astype(np.float64)
        finite = np.isfinite(x)
        xf = x.where(finite)
        lazy.append((finite.sum(), np.isinf(x).sum(), xf.sum(), (xf * xf).sum(), abs(xf).max()))
    (computed,) = dask.compute(lazy)
    out = {}
    for (key, role, da), (count, n_inf, total, total_sq, absmax) in zip(
        items, computed, strict=True
    ):
        s = ValueSummary(
            name=str(da.name),
            role=role,
            size=int(da.size),
            count=int(count),
            n_inf=int(n_inf),
            total=float(total),
            total_sq=float(total_sq),
            absmax=float(absmax),
        )
        _check_values(s, da)
        out[key] = s
    return out


def _check_values(s: ValueSummary, da: xr.DataArray) -> None:
    what = f"The {s.role} {s.name!r}"
    if s.n_inf:
        raise DataError(
            f"{what} has {s.n_inf} infinite value(s). Allowed: finite values, NaN for "
            f"missing ones. Fix: obj[{s.name!r}] = obj[{s.name!r}].where(np.isfinite("
            f"obj[{s.name!r}])) to mark them missing, or find where they come from (a "
            "division by zero, a log of 0)."
        )
    if s.count == 0:
        raise DataError(
            f"{what} has no valid value (all NaN) in the training data. Check the selected "
            "period and region, or drop the variable."
        )
    if s.absmax >= FILL_LIKE:
        n = int((abs(da) >= FILL_LIKE).sum())
        raise DataError(
            f"{what} holds {n} value(s) of magnitude >= {FILL_LIKE:g} (largest "
            f"{s.absmax:.6g}): fill values that are not declared. Allowed: missing values "
            "as NaN, or declared in a _FillValue/missing_value attribute. Fix: declare it "
            "(obj[name].attrs['_FillValue'] = 1e20 before xr.decode_cf, or "
            "mask_and_scale=True when opening), or mask them: "
            f"obj[{s.name!r}].where(abs(obj[{s.name!r}]) < 1e15)."
        )
    if s.role == "static field" and s.count < s.size:
        raise DataError(
            f"{what} has {s.size - s.count} missing cell(s) of {s.size}. Allowed: static "
            "fields defined everywhere (the network sees them at every cell; filling with "
            "the mean would put the mean orography over the sea). Fix: fill them with "
            f"their physical value, e.g. obj[{s.name!r}].fillna(0) for orography or a "
            "land fraction over the sea."
        )
    if s.role == "target" and s.constant:
        raise DataError(
            f"{what} is constant ({s.mean:.6g} {da.attrs.get('units', '')}".rstrip()
            + ") over the training period: there is nothing to learn. Allowed: a target "
            "that varies. Fix: check the variable, the period (val_time/val_fraction take "
            "steps away) and the region."
        )
