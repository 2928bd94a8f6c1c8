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

__all__ = ["VariableStats", "compute_stats", "normalize", "denormalize", "convert_units"]


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


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    from cf_xarray.units import units  # pint registry that understands CF unit strings

    return units


@functools.lru_cache(maxsize=256)
def unit_conversion(from_units: str, to_units: str) -> tuple[float, float]:
    """``(factor, offset)`` such that ``value_in_to = factor * value_in_from + offset``."""
    ureg = _registry()
    try:
        q0 = ureg.Quantity(0.0, from_units).to(to_units).magnitude
        q1 = ureg.Quantity(1.0, from_units).to(to_units).magnitude
    except Exception as err:  # pint raises several types: undefined, dimensionality...
        raise UnitsError(
            f"Cannot convert units {from_units!r} to {to_units!r}: {err}. The input must be "
            f"in units convertible to {to_units!r} (the units the model was trained with); "
            "fix the 'units' attribute of the input."
        ) from None
    return float(q1 - q0), float(q0)


def convert_units(
    da: xr.DataArray, to_units: str | None, *, name: Hashable | None = None
) -> xr.DataArray:
    """Convert ``da`` to ``to_units`` with pint, lazily (a scalar factor and offset).

    Returns ``da`` unchanged when the units are equal or the model has no units. The
    result's ``units`` attribute is set to ``to_units``.
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
    factor, offset = unit_conversion(str(from_units), str(to_units))
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
