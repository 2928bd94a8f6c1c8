"""Per-variable normalization statistics with units, and lazy unit conversion (pint)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..exceptions import DataError, UnitsError

__all__ = [
    "UNIT_CONTEXTS",
    "VariableStats",
    "compute_stats",
    "convert_units",
    "denormalize",
    "normalize",
    "unit_conversion",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class VariableStats:
    """Mean and standard deviation of one variable over the training period, in ``units``."""

    mean: float
    std: float
    units: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariableStats:
        return cls(mean=float(d["mean"]), std=float(d["std"]), units=d.get("units"))


def compute_stats(
    ds: xr.Dataset, names: Iterable[Hashable] | None = None
) -> dict[str, VariableStats]:
    """Mean and standard deviation of each variable over all its cells, NaNs skipped.

    Everything is computed in one pass (one ``dask.compute`` of the sums, counts and sums
    of squares of all variables together), in float64. A constant field gets ``std = 1``
    so that normalizing it does not divide by zero.

    Raises
    ------
    DataError
        When a variable has no valid value at all.
    """
    keys: list[str] = [str(n) for n in (names if names is not None else ds.data_vars)]
    lazy = []
    for n in keys:
        x = ds[n].astype(np.float64)
        lazy.append((x.count(), x.sum(), (x * x).sum()))
    (computed,) = dask.compute(lazy)
    out = {}
    for n, (count, total, total_sq) in zip(keys, computed, strict=True):
        count = int(count)
        if count == 0:
            raise DataError(
                f"Variable {n!r} has no valid value (all NaN) in the training data. Check "
                "the selected period and region, or drop the variable."
            )
        mean = float(total) / count
        var = max(float(total_sq) / count - mean * mean, 0.0)
        std = math.sqrt(var)
        if not std > 1e-12 * max(1.0, abs(mean)):
            std = 1.0
        out[n] = VariableStats(mean=mean, std=std, units=ds[n].attrs.get("units"))
    return out


def normalize(da: xr.DataArray, stats: VariableStats) -> xr.DataArray:
    """``(da - mean) / std`` as float32, lazily for dask input."""
    return ((da - stats.mean) / stats.std).astype(np.float32)


def denormalize(da: xr.DataArray, stats: VariableStats) -> xr.DataArray:
    """Inverse of :func:`normalize`."""
    return (da * stats.std + stats.mean).astype(np.float32)


#: Declared conversions between quantities of different dimensions (pint contexts),
#: for ``convert_units(..., context=...)`` and ``downscale(..., units_context=...)``.
UNIT_CONTEXTS: dict[str, str] = {
    "hydro": (
        "liquid water at 1000 kg m-3: mass flux <-> rate (kg m-2 s-1 <-> mm/day) and "
        "mass per area <-> depth (kg m-2 <-> mm)"
    ),
}

_WATER_DENSITY = "1000 kg m-3"


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    import pint
    from cf_xarray.units import units  # pint registry that understands CF unit strings

    if "hydro" not in units._contexts:
        ctx = pint.Context("hydro")
        rho: Any = units.Quantity(_WATER_DENSITY)

        def to_depth(ureg: Any, value: Any, **kwargs: Any) -> Any:
            return value / rho

        def to_mass(ureg: Any, value: Any, **kwargs: Any) -> Any:
            return value * rho

        for mass, depth in (
            ("[mass] / [length] ** 2 / [time]", "[length] / [time]"),
            ("[mass] / [length] ** 2", "[length]"),
        ):
            ctx.add_transformation(mass, depth, to_depth)
            ctx.add_transformation(depth, mass, to_mass)
        units.add_context(ctx)
    return units


def _check_context(context: str | None) -> None:
    if context is not None and context not in UNIT_CONTEXTS:
        raise UnitsError(
            f"Unknown units context {context!r}. Declared conversions: "
            + "; ".join(f"{k!r} ({v})" for k, v in UNIT_CONTEXTS.items())
            + "."
        )


@functools.lru_cache(maxsize=256)
def unit_conversion(
    from_units: str, to_units: str, context: str | None = None
) -> tuple[float, float]:
    """``(factor, offset)`` such that ``value_in_to = factor * value_in_from + offset``.

    ``context`` names a declared conversion between different dimensions (see
    :data:`UNIT_CONTEXTS`), e.g. ``"hydro"`` for precipitation in ``kg m-2 s-1`` and
    ``mm/day``.

    Examples
    --------
    >>> unit_conversion("degC", "K")
    (1.0, 273.15)
    >>> factor, offset = unit_conversion("kg m-2 s-1", "mm/day", context="hydro")
    >>> round(factor, 6), offset
    (86400.0, 0.0)
    """
    _check_context(context)
    ureg = _registry()
    contexts = () if context is None else (context,)
    try:
        with ureg.context(*contexts):
            q0 = ureg.Quantity(0.0, from_units).to(to_units).magnitude
            q1 = ureg.Quantity(1.0, from_units).to(to_units).magnitude
    except Exception as err:  # pint raises several types: undefined, dimensionality...
        hint = ""
        if context is None:
            try:
                with ureg.context("hydro"):
                    ureg.Quantity(1.0, from_units).to(to_units)
                hint = (
                    " If this is liquid water (precipitation, runoff), declare the conversion "
                    "with units_context='hydro' (density 1000 kg m-3)."
                )
            except Exception:
                hint = ""
        raise UnitsError(
            f"Cannot convert units {from_units!r} to {to_units!r}: {err}. The input must be "
            f"in units convertible to {to_units!r} (the units the model was trained with); "
            f"fix the 'units' attribute of the input.{hint}"
        ) from None
    return float(q1 - q0), float(q0)


def convert_units(
    da: xr.DataArray,
    to_units: str | None,
    *,
    name: Hashable | None = None,
    context: str | None = None,
) -> xr.DataArray:
    """Convert ``da`` to ``to_units`` with pint, lazily (a scalar factor and offset).

    Returns ``da`` unchanged when the units are equal or the model has no units. The
    result's ``units`` attribute is set to ``to_units``. ``context`` declares a conversion
    between different dimensions (:data:`UNIT_CONTEXTS`, e.g. ``"hydro"``).
    """
    name = da.name if name is None else name
    if to_units is None:
        return da
    from_units = da.attrs.get("units")
    if from_units is None:
        raise UnitsError(
            f"Variable {name!r} has no 'units' attribute, but the model was trained on it in "
            f"{to_units!r}. Set the units, e.g. da.attrs['units'] = {to_units!r}."
        )
    if from_units == to_units:
        return da
    factor, offset = unit_conversion(str(from_units), str(to_units), context)
    if factor == 1.0 and offset == 0.0:
        out = da.copy(deep=False)
    else:
        out = (
            da * np.asarray(factor, dtype=da.dtype if da.dtype.kind == "f" else np.float64) + offset
        )
        if da.dtype.kind == "f":
            out = out.astype(da.dtype)
    out.attrs = {**da.attrs, "units": to_units}
    return out
