"""Per-variable normalization statistics with units, and lazy unit conversion (pint)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..exceptions import UnitsError

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
    """Mean and standard deviation of one variable over the training period, in ``units``.

    A :class:`~xr_dl4ds.Downscaler` keeps one per variable (``model.stats``): inputs are
    converted to ``units``, then normalized with ``mean`` and ``std``.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> stats = compute_stats(synthetic_dataset(nt=4, ny=16, nx=16))["tas"]
    >>> round(stats.mean, 3), round(stats.std, 3), stats.units
    (287.451, 4.353, 'K')
    >>> VariableStats(mean=280.0, std=5.0, units="K")
    VariableStats(mean=280.0, std=5.0, units='K')
    >>> stats.mean = 0.0  # frozen: statistics do not change after training
    Traceback (most recent call last):
        ...
    dataclasses.FrozenInstanceError: cannot assign to field 'mean'
    """

    mean: float
    std: float
    units: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-serializable dict (how the model file stores them).

        Examples
        --------
        >>> import json
        >>> d = VariableStats(mean=280.0, std=5.0, units="K").to_dict()
        >>> d
        {'mean': 280.0, 'std': 5.0, 'units': 'K'}
        >>> json.dumps(d)
        '{"mean": 280.0, "std": 5.0, "units": "K"}'
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariableStats:
        """The inverse of :meth:`to_dict`; ``units`` may be missing (no units).

        Examples
        --------
        >>> import json
        >>> VariableStats.from_dict(json.loads('{"mean": 280, "std": 5, "units": "K"}'))
        VariableStats(mean=280.0, std=5.0, units='K')
        >>> stats = VariableStats(mean=0.5, std=0.25)
        >>> VariableStats.from_dict(stats.to_dict()) == stats
        True
        """
        return cls(mean=float(d["mean"]), std=float(d["std"]), units=d.get("units"))


def compute_stats(
    ds: xr.Dataset, names: Iterable[Hashable] | None = None
) -> dict[str, VariableStats]:
    """Mean and standard deviation of each variable over all its cells, NaNs skipped.

    Everything is computed in one pass (one ``dask.compute`` of the sums, counts and sums
    of squares of all variables together), in float64. A constant field gets ``std = 1``
    so that normalizing it does not divide by zero. The same pass checks the values
    (:func:`xr_dl4ds.data.checks.value_summary`).

    Parameters
    ----------
    ds : Dataset
    names : iterable of hashable, optional
        The variables; default: all the data variables.

    Returns
    -------
    dict of str to VariableStats
        With the ``units`` attribute of each variable.

    Raises
    ------
    DataError
        When a variable has no valid value at all, infinite values, or values of
        magnitude >= 1e15 (undeclared fill values).

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=4, ny=16, nx=16)
    >>> for name, s in compute_stats(hr).items():
    ...     print(name, round(s.mean, 3), round(s.std, 3), s.units)
    tas 287.451 4.353 K
    orog 301.197 366.507 m
    sftlf 0.598 0.49 1
    >>> compute_stats(hr.assign(flat=hr["orog"] * 0 + 5), ["flat"])  # constant: std 1
    {'flat': VariableStats(mean=5.0, std=1.0, units='m')}
    >>> compute_stats(hr.assign(tas=hr["tas"] * np.nan), ["tas"])
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.DataError: The variable 'tas' has no valid value (all NaN) ...
    """
    from .checks import value_summary

    keys: list[str] = [str(n) for n in (names if names is not None else ds.data_vars)]
    summaries = value_summary((n, "variable", ds[n]) for n in keys)
    return {n: stats_from_summary(summaries[n], ds[n].attrs.get("units")) for n in keys}


def stats_from_summary(summary: Any, units: str | None) -> VariableStats:
    """The :class:`VariableStats` of a :class:`~xr_dl4ds.data.checks.ValueSummary`: its
    mean and standard deviation, ``std = 1`` for a constant field."""
    return VariableStats(
        mean=summary.mean, std=1.0 if summary.constant else summary.std, units=units
    )


def normalize(da: xr.DataArray, stats: VariableStats) -> xr.DataArray:
    """``(da - mean) / std`` as float32, lazily for dask input.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> tas = synthetic_dataset(nt=4, ny=16, nx=16)["tas"]
    >>> z = normalize(tas, compute_stats(tas.to_dataset())["tas"])
    >>> str(z.dtype), round(float(z.mean()), 4), round(float(z.std()), 4)
    ('float32', 0.0, 1.0)
    >>> normalize(tas.chunk(time=2), VariableStats(mean=280.0, std=5.0)).chunks  # lazy
    ((2, 2), (16,), (16,))
    """
    return ((da - stats.mean) / stats.std).astype(np.float32)


def denormalize(da: xr.DataArray, stats: VariableStats) -> xr.DataArray:
    """Inverse of :func:`normalize`: ``da * std + mean`` as float32.

    Examples
    --------
    >>> import xarray as xr
    >>> stats = VariableStats(mean=280.0, std=5.0, units="K")
    >>> denormalize(xr.DataArray([-1.0, 0.0, 2.0], dims="x"), stats).values
    array([275., 280., 290.], dtype=float32)
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> tas = synthetic_dataset(nt=4, ny=16, nx=16)["tas"]
    >>> back = denormalize(normalize(tas, stats), stats)
    >>> float(abs(back - tas).max()) < 1e-4
    True
    """
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

    Raises
    ------
    UnitsError
        When ``da`` has no ``units`` attribute, or its units do not convert to
        ``to_units`` (pint).

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> tas = synthetic_dataset(nt=4, ny=16, nx=16)["tas"]
    >>> celsius = convert_units(tas, "degC")
    >>> celsius.attrs["units"], str(celsius.dtype)
    ('degC', 'float32')
    >>> round(float(tas[0, 0, 0]), 2), round(float(celsius[0, 0, 0]), 2)
    (288.55, 15.4)
    >>> convert_units(tas, "K") is tas  # already in K: unchanged
    True

    Precipitation as a mass flux to a depth per day: liquid water, declared with a
    context:

    >>> import xarray as xr
    >>> pr = xr.DataArray([1e-5, 2e-5], dims="x", attrs={"units": "kg m-2 s-1"})
    >>> convert_units(pr, "mm/day", context="hydro").round(3).values
    array([0.864, 1.728])
    >>> convert_units(pr, "mm/day", name="pr")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.UnitsError: Cannot convert units 'kg m-2 s-1' to 'mm/day': ...
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
