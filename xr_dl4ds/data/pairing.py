"""Pairing high- and low-resolution fields: perfect prognosis and MOS.

A :class:`Pair` holds, on one time axis, the high-resolution target(s), the matching
low-resolution input(s), coarse predictors and high-resolution static fields, after every
check that can be made without computing data.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..exceptions import DataError, DL4DSWarning, GridError, UnitsError, VariableError
from ..grid import (
    _is_longitude,
    check_scale,
    coarsen,
    get_spatial_dims,
    locate_subgrid,
    trim_to_scale,
)
from .checks import (
    check_calendars,
    check_dtype,
    check_spatial_coords,
    check_time_coord,
    check_units,
    check_variable_dims,
    mask_declared_fill,
)

__all__ = ["Pair", "pair", "get_time_dim", "select_target"]

_TIME_NAMES = ("time", "t", "valid_time", "date")


def get_time_dim(
    obj: xr.DataArray | xr.Dataset, time_dim: Hashable | None = None
) -> Hashable | None:
    """The time dimension of ``obj``: ``time_dim`` if given, else a datetime-valued dim
    coordinate, else one named time/t/valid_time/date, else ``None`` (static data).

    Parameters
    ----------
    obj : DataArray or Dataset
    time_dim : hashable, optional
        An explicit choice; it must be a dimension of ``obj``.

    Returns
    -------
    hashable or None
        A datetime (or cftime) dim coordinate, or one with ``axis="T"``, is found
        whatever its name.

    Raises
    ------
    GridError
        If ``time_dim`` is given but is not a dimension of ``obj``.

    Examples
    --------
    >>> from xr_dl4ds import tutorial
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=8, nx=8)
    >>> get_time_dim(hr), get_time_dim(hr["orog"])  # orog is static: no time dim
    ('time', None)
    >>> get_time_dim(hr.rename(time="valid_date"))  # datetime values, any name
    'valid_date'
    >>> get_time_dim(tutorial.open_dataset("era5_t2m", decode_times=False))  # CF axis="T"
    'time'
    >>> get_time_dim(hr, "member")
    Traceback (most recent call last):
        ...
    xr_dl4ds.exceptions.GridError: time_dim='member' is not a dimension of this object ...
    """
    if time_dim is not None:
        if time_dim not in obj.dims:
            raise GridError(
                f"time_dim={time_dim!r} is not a dimension of this object (dims: "
                f"{tuple(obj.dims)}). Pass the name of its time dimension."
            )
        return time_dim
    for d in obj.dims:
        if d in obj.coords and obj[d].dtype.kind == "M":
            return d
        if d in obj.coords and obj[d].attrs.get("axis") == "T":
            return d
    for d in obj.dims:
        if d in obj.coords and type(obj[d].values.flat[0]).__module__.startswith("cftime"):
            return d
    for name in _TIME_NAMES:
        if name in obj.dims:
            return name
    return None


def _as_dataset(obj: xr.DataArray | xr.Dataset, default_name: str = "target") -> xr.Dataset:
    if isinstance(obj, xr.Dataset):
        return obj
    name = obj.name if obj.name is not None else default_name
    return obj.to_dataset(name=name, promote_attrs=False)


def select_target(
    ds: xr.Dataset,
    target: str | Sequence[str] | None,
    spatial: tuple[Hashable, Hashable],
    time_dim: Hashable | None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Names of the target variables of ``ds`` (validated); without ``target``, the only
    ``(time, y, x)`` variable that is not in ``exclude`` (the predictors)."""
    if target is None:
        excluded = set(exclude)
        candidates = [
            str(n)
            for n, v in ds.data_vars.items()
            if set(spatial) <= set(v.dims)
            and time_dim is not None
            and time_dim in v.dims
            and str(n) not in excluded
        ]
        if len(candidates) == 1:
            return candidates
        if not candidates:
            raise VariableError(
                f"No target variable found: a target needs the spatial dims {spatial} and a "
                f"time dim ({time_dim!r}); the data variables are "
                f"{ {str(n): tuple(map(str, v.dims)) for n, v in ds.data_vars.items()} }. "
                "Pass target='<name>'."
            )
        raise VariableError(
            f"The target is ambiguous: {candidates} all have dims {spatial} and a time dim. "
            f"Pass target='{candidates[0]}' (or a list of names to downscale several)."
        )
    names = [target] if isinstance(target, str) else list(target)
    if not names:
        raise VariableError("target=[] names no variable. Pass at least one variable name.")
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise VariableError(
            f"Target variable(s) {missing} not found. The data variables are "
            f"{sorted(map(str, ds.data_vars))}. Pass one of those as target=."
        )
    for n in names:
        if not set(spatial) <= set(ds[n].dims):
            raise VariableError(
                f"Target variable {n!r} has dims {ds[n].dims}, without both spatial dims "
                f"{spatial}. A target must be a (time, y, x) field."
            )
    return names


@dataclasses.dataclass(frozen=True)
class Pair:
    """Paired high- and low-resolution data, ready for normalization and training.

    Attributes
    ----------
    highres : Dataset
        Target variable(s) on the high-resolution grid, dims ``(time, y, x)``.
    lowres : Dataset
        The same variable(s) on the coarse grid (block means for perfect prognosis, the
        given fields for MOS), plus coarse predictors.
    static : Dataset
        High-resolution static fields (no time dim); may be empty.
    target, predictors, static_names : tuple of str
    scale : int
    spatial_dims : (y, x)
    time_dim : str
    mode : {"perfect_prognosis", "mos"}

    Examples
    --------
    Made by :func:`xr_dl4ds.pair`; perfect prognosis (the low-resolution input is the
    block mean of the target), with the static fields of the Dataset:

    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=4, ny=16, nx=16)
    >>> p = xr_dl4ds.pair(hr, scale=4)
    >>> p
    <xr_dl4ds.Pair mode=perfect_prognosis scale=4>
      target:     tas
      predictors: -
      static:     orog, sftlf
      highres:    time: 4, lat: 16, lon: 16
      lowres:     time: 4, lat: 4, lon: 4
    >>> p.lowres["lat"].values  # coarse cell centres: block means of the fine ones
    array([35., 45., 55., 65.])
    >>> round(float(p.lowres["tas"][0, 0, 0]), 3), round(float(hr["tas"][0, :4, :4].mean()), 3)
    (290.466, 290.466)

    MOS: the low-resolution input comes from another source on the nested coarse grid
    (here the block mean plus a 1 K bias):

    >>> p = xr_dl4ds.pair(hr, scale=4, lowres=hr["tas"].dl4ds.coarsen(scale=4) + 1.0)
    >>> p.mode, float((p.lowres["tas"] - hr["tas"].dl4ds.coarsen(scale=4)).mean())
    ('mos', 1.0)
    """

    highres: xr.Dataset
    lowres: xr.Dataset
    static: xr.Dataset
    target: tuple[str, ...]
    predictors: tuple[str, ...]
    static_names: tuple[str, ...]
    scale: int
    spatial_dims: tuple[Hashable, Hashable]
    time_dim: Hashable
    mode: Literal["perfect_prognosis", "mos"]

    def to_datatree(self) -> xr.DataTree:
        """The pair as a :class:`xarray.DataTree` with groups ``highres``, ``lowres``, ``static``.

        The root's attrs record the mode, scale and variable roles (``dl4ds_*``), so the
        tree can be inspected or written (``tree.to_zarr(...)``) in one piece.

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> tree = xr_dl4ds.pair(synthetic_dataset(nt=4, ny=16, nx=16), scale=4).to_datatree()
        >>> list(tree.children)
        ['highres', 'lowres', 'static']
        >>> tree["lowres/tas"].shape, tree["highres/tas"].shape
        ((4, 4, 4), (4, 16, 16))
        >>> sorted(tree["static"].data_vars), tree.attrs["dl4ds_static"]
        (['orog', 'sftlf'], 'orog sftlf')
        >>> tree.attrs["dl4ds_mode"], tree.attrs["dl4ds_scale"]
        ('perfect_prognosis', 4)
        """
        root = xr.Dataset(
            attrs={
                "dl4ds_mode": self.mode,
                "dl4ds_scale": self.scale,
                "dl4ds_target": " ".join(self.target),
                "dl4ds_predictors": " ".join(self.predictors),
                "dl4ds_static": " ".join(self.static_names),
            }
        )
        return xr.DataTree.from_dict(
            {"/": root, "highres": self.highres, "lowres": self.lowres, "static": self.static}
        )

    def isel_time(self, indexer: Any) -> Pair:
        """The same pair restricted to some time steps.

        Parameters
        ----------
        indexer : int, slice or array of int
            Positional indexer along ``time_dim``, applied to ``highres`` and ``lowres``
            together (the static fields have no time).

        Examples
        --------
        A split by time into training and validation periods, as ``fit(val_time=...)``
        does:

        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> p = xr_dl4ds.pair(synthetic_dataset(nt=8, ny=16, nx=16), scale=4)
        >>> train, val = p.isel_time(slice(0, 6)), p.isel_time(slice(6, None))
        >>> train.highres.sizes["time"], val.lowres.sizes["time"]
        (6, 2)
        >>> str(val.highres["time"].values[0])[:10], val.static_names
        ('2000-01-07', ('orog', 'sftlf'))
        """
        t = self.time_dim
        return dataclasses.replace(
            self,
            highres=self.highres.isel({t: indexer}),
            lowres=self.lowres.isel({t: indexer}),
        )

    def __repr__(self) -> str:
        y, x = self.spatial_dims
        hs, ls = self.highres.sizes, self.lowres.sizes
        return (
            f"<xr_dl4ds.Pair mode={self.mode} scale={self.scale}>\n"
            f"  target:     {', '.join(self.target)}\n"
            f"  predictors: {', '.join(self.predictors) or '-'}\n"
            f"  static:     {', '.join(self.static_names) or '-'}\n"
            f"  highres:    {self.time_dim}: {hs[self.time_dim]}, {y}: {hs[y]}, {x}: {hs[x]}\n"
            f"  lowres:     {self.time_dim}: {ls[self.time_dim]}, {y}: {ls[y]}, {x}: {ls[x]}"
        )


def _names(arg: str | Iterable[str] | None) -> list[str]:
    if arg is None:
        return []
    if isinstance(arg, str):
        return [arg]
    return list(arg)


def _check_variable(
    da: xr.DataArray, role: str, allowed: tuple[Hashable, ...], tdim: Hashable
) -> None:
    """Dims, dtype and units of a target, low-resolution target or predictor."""
    check_variable_dims(da, allowed, role=role, tdim=tdim)
    check_dtype(da, role=role)
    check_units(da, role=role, required=True)


def _to_units_of(lr: xr.DataArray, hr: xr.DataArray) -> xr.DataArray:
    """MOS: the low-resolution target in the units of the high-resolution one (lazy)."""
    from .normalization import convert_units

    hr_units, lr_units = hr.attrs.get("units"), lr.attrs.get("units")
    if hr_units is None or lr_units is None or hr_units == lr_units:
        return lr
    try:
        return convert_units(lr, str(hr_units), name=str(lr.name))
    except UnitsError as err:
        raise UnitsError(
            f"The low-resolution {lr.name!r} is in {lr_units!r}, the high-resolution one in "
            f"{hr_units!r}, and one cannot be converted to the other: {err}"
        ) from None


def _check_same_grid(
    field: xr.DataArray,
    ref: xr.Dataset,
    spatial: tuple[Hashable, Hashable],
    what: str,
    tolerance: float,
) -> xr.DataArray:
    """Check that ``field`` lies on the grid of ``ref`` (or contains it); return it on that grid."""
    for d in spatial:
        if d not in field.dims:
            raise GridError(
                f"The {what} {field.name!r} has dims {field.dims}; it must have the spatial "
                f"dims {spatial} of the target."
            )
    for d in spatial:
        if d not in ref.coords or d not in field.coords:
            if field.sizes[d] != ref.sizes[d]:
                raise GridError(
                    f"The {what} {field.name!r} has {field.sizes[d]} cells along {d!r} but "
                    f"the target grid has {ref.sizes[d]}, and there are no coordinates to "
                    "align them by. Put it on the target grid."
                )
            continue
        try:
            off = locate_subgrid(
                field[d].values,
                ref[d].values,
                tolerance=tolerance,
                name=f"{d!r} of the target",
                longitude=_is_longitude(ref[d]),
            )
        except GridError:
            raise GridError(
                f"The {what} {field.name!r} is on another grid than the target along {d!r}: "
                f"its {d} runs {float(field[d][0]):.6g}..{float(field[d][-1]):.6g} "
                f"({field.sizes[d]} cells), the target's {float(ref[d][0]):.6g}.."
                f"{float(ref[d][-1]):.6g} ({ref.sizes[d]} cells). Regrid it onto the target "
                "grid (or select the same cells) first."
            ) from None
        field = field.isel({d: slice(off, off + ref.sizes[d])})
        field = field.assign_coords({d: ref[d].variable})
    return field


def pair(
    obj: xr.DataArray | xr.Dataset,
    *,
    scale: int,
    target: str | Sequence[str] | None = None,
    lowres: xr.DataArray | xr.Dataset | None = None,
    static: str | Sequence[str] | xr.DataArray | xr.Dataset | None = None,
    predictors: str | Sequence[str] | xr.DataArray | xr.Dataset | None = None,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
    time_dim: Hashable | None = None,
    tolerance: float = 0.05,
) -> Pair:
    """Pair high-resolution data with its low-resolution counterpart.

    Parameters
    ----------
    obj : DataArray or Dataset
        High-resolution data. A DataArray is the target itself; in a Dataset the target
        is ``target`` (or the only ``(time, y, x)`` variable) and the variables without a
        time dim are static fields unless ``static`` says otherwise.
    scale : int
        Refinement factor (integer >= 2).
    target : str or list of str, optional
    lowres : DataArray or Dataset, optional
        MOS training: the low-resolution inputs for the target variable(s) (same names),
        from another source. Its grid must nest in the high-resolution one at ``scale``
        (its cell centres equal the block means of the fine ones, within ``tolerance``
        fine grid spacings; a larger coarse domain is cut to the fine one). Only common
        time steps are kept. Without it (perfect prognosis) the low-resolution input is
        the block mean of ``obj``.
    static : names, DataArray or Dataset, optional
        High-resolution static fields (orography, land-sea mask); default: the data
        variables of ``obj`` without a time dim that have both spatial dims.
    predictors : names, DataArray or Dataset, optional
        Time-varying predictors. Names refer to high-resolution variables of ``obj``
        (coarsened by block mean) or, when a Dataset/DataArray is given, to fields on the
        low-resolution grid (or on the high-resolution grid, then coarsened).
    spatial_dims : optional
        ``(y, x)`` override, see :func:`xr_dl4ds.grid.get_spatial_dims`.
    time_dim : optional
    tolerance : float
        Allowed mismatch of coordinates, as a fraction of a fine grid spacing.

    Returns
    -------
    Pair

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> p = pair(synthetic_dataset(), scale=4)
    >>> p.target, p.static_names, p.mode
    (('tas',), ('orog', 'sftlf'), 'perfect_prognosis')
    """
    scale = check_scale(scale)
    ds = _as_dataset(obj)
    ydim, xdim = get_spatial_dims(ds, spatial_dims)
    spatial = (ydim, xdim)
    tdim = get_time_dim(ds, time_dim)
    if tdim is None:
        raise GridError(
            f"No time dimension found (dims: {tuple(ds.dims)}). Training needs samples "
            "along a time-like dimension: pass time_dim='<name>'."
        )
    named_predictors = (
        [] if isinstance(predictors, (xr.DataArray, xr.Dataset)) else _names(predictors)
    )
    if isinstance(obj, xr.DataArray) and obj.name is None:
        raise VariableError(
            "The DataArray has no name. Allowed: a named DataArray (its name becomes the "
            "model's target: the variable downscale() looks for and writes). Fix: "
            "da.rename('tas') with the variable's name, or pass a Dataset."
        )
    targets = select_target(ds, target, spatial, tdim, exclude=named_predictors)
    if ds.sizes[tdim] == 0:
        raise DataError(
            f"The high-resolution data have no time step along {tdim!r} (an empty "
            "selection?). Allowed: at least one step (more for a validation split). Fix: "
            f"check the period selected, e.g. that obj.sel({tdim}=slice(start, end)) covers "
            f"the data ({tdim!r} must be sorted for slicing by dates)."
        )
    check_spatial_coords(ds, spatial, what="high-resolution", tolerance=tolerance)
    check_time_coord(ds, tdim, what="high-resolution")
    for n in targets:
        if tdim not in ds[n].dims:
            raise VariableError(
                f"Target variable {n!r} has no time dimension {tdim!r} (dims {ds[n].dims})."
            )
        _check_variable(ds[n], "target", (tdim, *spatial), tdim)
    ds = trim_to_scale(ds, scale, spatial_dims=spatial)
    highres = ds[targets]
    # cells equal to a _FillValue/missing_value attribute are missing; only the variables
    # that change are assigned back (assigning a MultiIndex-stacked one again warns)
    masked = {n: (da, mask_declared_fill(da)) for n, da in highres.data_vars.items()}
    changed = {n: m for n, (da, m) in masked.items() if m is not da}
    if changed:
        highres = highres.assign(changed)

    # static fields
    if isinstance(static, (xr.DataArray, xr.Dataset)):
        static_ds = _as_dataset(static, "static")
        static_fields = [static_ds[n].rename(n) for n in static_ds.data_vars]
    else:
        if static is None:
            names = [
                str(n)
                for n, v in ds.data_vars.items()
                if n not in targets and tdim not in v.dims and set(spatial) <= set(v.dims)
            ]
        else:
            names = _names(static)
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise VariableError(
                f"Static field(s) {missing} not found among the data variables "
                f"{sorted(map(str, ds.data_vars))}."
            )
        static_fields = [ds[n] for n in names]
    static_vars = {}
    for f in static_fields:
        if tdim in f.dims:
            raise VariableError(
                f"Static field {f.name!r} has a time dimension {tdim!r}; static fields are "
                "fixed in time. Pass it as a predictor instead, or select one time step."
            )
        extra = [d for d in f.dims if d not in spatial]
        if extra:
            raise VariableError(
                f"Static field {f.name!r} has dims {f.dims}; only the spatial dims {spatial} "
                "are allowed. Select or reduce the others first."
            )
        check_dtype(f, role="static field")
        check_units(f, role="static field", required=False)
        f = mask_declared_fill(f)
        static_vars[str(f.name)] = _check_same_grid(f, highres, spatial, "static field", tolerance)
    static_ds = xr.Dataset(static_vars)

    # low-resolution target
    if lowres is None:
        mode: Literal["perfect_prognosis", "mos"] = "perfect_prognosis"
        lr = coarsen(highres, scale, spatial_dims=spatial)
    else:
        mode = "mos"
        lr_ds = _as_dataset(lowres, targets[0] if len(targets) == 1 else "target")
        missing = [n for n in targets if n not in lr_ds.data_vars]
        if missing:
            raise VariableError(
                f"The low-resolution data has no variable(s) {missing}; it has "
                f"{sorted(map(str, lr_ds.data_vars))}. Its variables must have the target "
                "names: rename them, e.g. lowres.rename({'old': 'new'})."
            )
        lr_ds = lr_ds[targets]
        lr_spatial = get_spatial_dims(lr_ds, spatial_dims)
        if lr_spatial != spatial:
            lr_ds = lr_ds.rename(dict(zip(lr_spatial, spatial, strict=True)))
        lr_tdim = get_time_dim(lr_ds, time_dim or tdim)
        if lr_tdim is None:
            raise GridError("The low-resolution data has no time dimension.")
        if lr_tdim != tdim:
            lr_ds = lr_ds.rename({lr_tdim: tdim})
        check_spatial_coords(lr_ds, spatial, what="low-resolution", tolerance=tolerance)
        check_time_coord(lr_ds, tdim, what="low-resolution")
        check_calendars(highres[tdim], lr_ds[tdim], what="low-resolution data")
        converted = {}
        for n in targets:
            _check_variable(lr_ds[n], "low-resolution target", (tdim, *spatial), tdim)
            converted[n] = _to_units_of(mask_declared_fill(lr_ds[n]), highres[n])
        lr_ds = lr_ds.assign(converted)
        lr = _nest_lowres(lr_ds, highres, scale, spatial, tolerance)
        common = np.intersect1d(highres[tdim].values, lr[tdim].values)
        if common.size == 0:
            raise DataError(
                f"The high- and low-resolution data have no time step in common: high-res "
                f"{_time_range(highres[tdim])}, low-res {_time_range(lr[tdim])}. MOS pairs "
                "need the same time stamps (e.g. both daily at 00:00): align them first, e.g. "
                "lowres['time'] = lowres.indexes['time'].normalize()."
            )
        dropped = highres.sizes[tdim] - common.size, lr.sizes[tdim] - common.size
        if any(dropped):
            warnings.warn(
                f"MOS pairing keeps the {common.size} common time steps; dropped "
                f"{dropped[0]} high-res and {dropped[1]} low-res steps.",
                DL4DSWarning,
                stacklevel=2,
            )
        highres = highres.sel({tdim: common})
        lr = lr.sel({tdim: common})

    # predictors (on the coarse grid)
    predictor_names: list[str] = []
    if predictors is not None:
        if isinstance(predictors, (xr.DataArray, xr.Dataset)):
            pred_ds = _as_dataset(predictors, "predictor")
        else:
            names = _names(predictors)
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise VariableError(
                    f"Predictor(s) {missing} not found among the data variables "
                    f"{sorted(map(str, ds.data_vars))}. Pass their names, or pass the "
                    "predictors themselves as a Dataset."
                )
            pred_ds = ds[names]
        for n in map(str, pred_ds.data_vars):
            if n in targets:
                raise VariableError(f"Predictor {n!r} is also a target; rename it.")
            p = pred_ds[n]
            p_spatial = get_spatial_dims(p, spatial_dims)
            if p_spatial != spatial:
                p = p.rename(dict(zip(p_spatial, spatial, strict=True)))
            p_t = get_time_dim(p, None)
            if p_t is not None and p_t != tdim:
                p = p.rename({p_t: tdim})
            if tdim not in p.dims:
                raise VariableError(
                    f"Predictor {n!r} has no time dimension; static fields go in static=."
                )
            _check_variable(p, "predictor", (tdim, *spatial), tdim)
            check_spatial_coords(p, spatial, what=f"predictor {n!r}", tolerance=tolerance)
            check_time_coord(p, tdim, what=f"predictor {n!r}")
            check_calendars(lr[tdim], p[tdim], what=f"predictor {n!r}")
            p = mask_declared_fill(p)
            if p.sizes[ydim] == highres.sizes[ydim] and p.sizes[xdim] == highres.sizes[xdim]:
                p = coarsen(
                    _check_same_grid(p, highres, spatial, "predictor", tolerance),
                    scale,
                    spatial_dims=spatial,
                )
            else:
                p = _check_same_grid(p, lr, spatial, "predictor", tolerance / scale)
            missing_t = np.setdiff1d(lr[tdim].values, p[tdim].values)
            if missing_t.size:
                raise DataError(
                    f"Predictor {n!r} lacks {missing_t.size} of the {lr.sizes[tdim]} time "
                    f"steps of the target (first missing: {missing_t[0]})."
                )
            lr[str(n)] = p.sel({tdim: lr[tdim]}).drop_vars(
                [c for c in p.coords if c not in p.dims and c not in lr.coords], errors="ignore"
            )
            predictor_names.append(str(n))

    return Pair(
        highres=highres,
        lowres=lr,
        static=static_ds,
        target=tuple(targets),
        predictors=tuple(predictor_names),
        static_names=tuple(static_vars),
        scale=scale,
        spatial_dims=spatial,
        time_dim=tdim,
        mode=mode,
    )


def _time_range(t: xr.DataArray) -> str:
    if t.size == 0:
        return "no steps"
    return f"{t.size} steps from {t.values[0]} to {t.values[-1]}"


def _nest_lowres(
    lr: xr.Dataset, hr: xr.Dataset, scale: int, spatial: tuple[Hashable, Hashable], tolerance: float
) -> xr.Dataset:
    """Check that ``lr`` nests in ``hr`` at ``scale``; cut it to the high-res domain."""
    grid_only = xr.Dataset(
        coords={n: c.variable for n, c in hr.coords.items() if set(c.dims) & set(spatial)}
    )
    expected = coarsen(grid_only, scale, spatial_dims=spatial)
    for d in spatial:
        if d not in lr.coords or d not in expected.coords:
            want = hr.sizes[d] // scale
            if lr.sizes[d] != want:
                raise GridError(
                    f"The low-resolution grid has {lr.sizes[d]} cells along {d!r}; at "
                    f"scale={scale} the high-resolution grid ({hr.sizes[d]} cells) needs {want}."
                )
            continue
        try:
            off = locate_subgrid(
                lr[d].values,
                expected[d].values,
                tolerance=tolerance / scale,
                name=f"block-mean {d!r} of the high-res grid",
                longitude=_is_longitude(hr[d]),
            )
        except GridError:
            e = expected[d].values
            raise GridError(
                f"The low-resolution grid does not nest in the high-resolution grid at "
                f"scale={scale} along {d!r}: the coarse cell centres must be the means of "
                f"{scale} fine centres, i.e. {e[0]:.6g}, {e[1] if e.size > 1 else e[0]:.6g}, ... "
                f"({e.size} cells), but the low-res {d} has {lr.sizes[d]} values "
                f"{float(lr[d][0]):.6g}, ... step "
                f"{float(lr[d][1] - lr[d][0]) if lr.sizes[d] > 1 else float('nan'):.6g}. "
                "Check the scale, or regrid the low-res data conservatively onto the coarsened "
                "high-res grid (xr_dl4ds.coarsen(hr, scale=...) gives that grid)."
            ) from None
        lr = lr.isel({d: slice(off, off + expected.sizes[d])}).assign_coords(
            {d: expected[d].variable}
        )
    return lr
