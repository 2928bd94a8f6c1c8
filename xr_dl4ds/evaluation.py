"""Score downscaled fields against the truth, next to baselines, as a tidy Dataset.

:func:`evaluate` scores one or several predictions (models) and the baselines of
:mod:`xr_dl4ds.baselines` with the metrics of :mod:`xr_dl4ds.metrics`, all on the same
cells, and adds skill scores relative to each baseline.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import metrics as _metrics
from .baselines import BASELINES, baseline
from .exceptions import ConfigError, GridError, ScaleError, UnitsError, VariableError
from .grid import check_scale, coarsen, get_spatial_dims

__all__ = ["METRICS", "DEFAULT_METRICS", "evaluate"]


@dataclasses.dataclass(frozen=True)
class _Metric:
    """How :func:`evaluate` calls one metric and describes its scores."""

    long_name: str
    units: str | None  # None: the units of the data
    perfect: float | None  # the perfect score (None: no skill score)
    kind: str = "pointwise"  # "pointwise" (dim, weights, mask) or "spatial" (per sample)


#: The metrics :func:`evaluate` knows: functions of :mod:`xr_dl4ds.metrics`.
METRICS: dict[str, _Metric] = {
    "rmse": _Metric("root-mean-square error", None, 0.0),
    "mae": _Metric("mean absolute error", None, 0.0),
    "bias": _Metric("mean error (prediction - truth)", None, None),
    "pearson_r": _Metric("Pearson correlation coefficient", "1", 1.0),
    "spearman_r": _Metric("Spearman rank correlation coefficient", "1", 1.0),
    "ssim": _Metric("structural similarity index", "1", 1.0, kind="spatial"),
    "psnr": _Metric("peak signal-to-noise ratio", "dB", None),
    "quantile_error": _Metric("error of the quantiles (prediction - truth)", None, None),
}

#: The metrics :func:`evaluate` computes by default (those that apply).
DEFAULT_METRICS = ("rmse", "mae", "bias", "pearson_r", "spearman_r", "ssim", "psnr")

_SOURCE_SCALE = re.compile(r"xr_dl4ds \S+: \S+ x(\d+) model")


def _names(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _predictions(prediction: Any) -> dict[str, Any]:
    if isinstance(prediction, (xr.DataArray, xr.Dataset)):
        return {"prediction": prediction}
    if isinstance(prediction, Mapping):
        if not prediction:
            raise ConfigError("prediction={} is empty; pass at least one prediction.")
        out = {}
        for k, v in prediction.items():
            if not isinstance(v, (xr.DataArray, xr.Dataset)):
                raise ConfigError(
                    f"prediction[{k!r}] is a {type(v).__name__}; every prediction must be a "
                    "DataArray or Dataset."
                )
            out[str(k)] = v
        return out
    raise ConfigError(
        f"prediction must be a DataArray, a Dataset or a dict {{name: prediction}}, got "
        f"{type(prediction).__name__}."
    )


def _as_variables(
    obj: xr.DataArray | xr.Dataset, names: Sequence[Hashable], what: str, *, any_name: bool
) -> dict[Hashable, xr.DataArray]:
    """``{name: DataArray}`` of ``obj``; a DataArray stands for the only variable (under any
    name when the truth is a DataArray too)."""
    if isinstance(obj, xr.DataArray):
        if len(names) == 1 and (any_name or obj.name is None or obj.name == names[0]):
            return {names[0]: obj}
        raise VariableError(
            f"{what} is a DataArray named {obj.name!r}; the truth has the variables "
            f"{list(names)}. Pass a Dataset with them."
        )
    missing = [n for n in names if n not in obj.data_vars]
    if missing:
        raise VariableError(
            f"{what} lacks the variable(s) {missing}; it has {sorted(map(str, obj.data_vars))}."
        )
    return {n: obj[n] for n in names}


def _to_units(da: xr.DataArray, units: Any, what: str) -> xr.DataArray:
    from .data.normalization import unit_conversion

    have = da.attrs.get("units")
    if units is None or have is None or have == units:
        return da
    try:
        factor, offset = unit_conversion(str(have), str(units))
    except UnitsError:
        raise UnitsError(
            f"{what} is in {have!r} and the truth in {units!r}, which cannot be converted "
            "into each other. Fix the 'units' attribute."
        ) from None
    return (da * factor + offset).assign_attrs({**da.attrs, "units": units})


def _check_aligned(pred: xr.DataArray, truth: xr.DataArray, what: str) -> None:
    try:
        xr.align(pred, truth, join="exact", copy=False)
    except ValueError:
        details = []
        for d in truth.dims:
            if (
                d in pred.indexes
                and d in truth.indexes
                and not pred.indexes[d].equals(truth.indexes[d])
            ):
                details.append(f"{d!r} ({pred.sizes[d]} vs {truth.sizes[d]} values)")
        raise GridError(
            f"{what} is not on the truth's grid: the coordinate(s) "
            f"{', '.join(details) or '?'} differ. Select the same cells and time steps "
            "(e.g. truth.sel(time=prediction.time)), or downscale onto the truth's grid."
        ) from None
    missing = [d for d in truth.dims if d not in pred.dims]
    if missing:
        raise GridError(
            f"{what} lacks the dimension(s) {missing} of the truth (dims {truth.dims})."
        )


def _check_mask(mask: xr.DataArray, truth: xr.DataArray) -> None:
    extra = [d for d in mask.dims if d not in truth.dims]
    if extra:
        raise ConfigError(
            f"mask has dims {mask.dims}; {extra} are not dims of the truth {truth.dims}."
        )
    try:
        xr.align(truth, mask, join="exact", copy=False)
    except ValueError:
        raise GridError(
            "mask is not on the truth's grid (its coordinates differ); give it the truth's "
            "coordinates, e.g. mask=hr['sftlf'] > 0.5 on the high-resolution grid."
        ) from None


def _onto(field: xr.DataArray, truth: xr.DataArray, y: Hashable, x: Hashable) -> xr.DataArray:
    """A baseline with the truth's spatial coordinates (after checking they match)."""
    for d in (y, x):
        if d in field.coords and d in truth.coords:
            want = np.asarray(truth[d].values, np.float64)
            got = np.asarray(field[d].values, np.float64)
            spacing = float(np.median(np.abs(np.diff(want)))) if want.size > 1 else 1.0
            if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=0.01 * spacing):
                raise GridError(
                    f"The baselines' high-resolution {d!r} coordinate (first values "
                    f"{got[:3].tolist()}) does not match the truth's ({want[:3].tolist()}): "
                    "the coarse input is not the block mean of the truth's grid. Pass the "
                    "coarse field that belongs to the truth."
                )
    spatial = [c for c in field.coords if {y, x} & set(field[c].dims)]
    out = field.drop_vars(spatial)
    return out.assign_coords({c: v for c, v in truth.coords.items() if {y, x} & set(v.dims)})


def _infer_scale(
    truth: xr.Dataset,
    coarse: xr.Dataset | None,
    predictions: Mapping[str, Any],
    y: Hashable,
    x: Hashable,
) -> int:
    if coarse is not None:
        ratios = [truth.sizes[d] / coarse.sizes[d] for d in (y, x)]
        if ratios[0] != ratios[1] or not ratios[0].is_integer() or ratios[0] < 2:
            raise ScaleError(
                f"Cannot infer the scale from the grids: the truth has "
                f"{[truth.sizes[d] for d in (y, x)]} cells along ({y!r}, {x!r}) and coarse= "
                f"{[coarse.sizes[d] for d in (y, x)]}; they must differ by one integer factor."
            )
        return int(ratios[0])
    found = set()
    for p in predictions.values():
        m = _SOURCE_SCALE.search(str(p.attrs.get("source", "")))
        if m:
            found.add(int(m.group(1)))
    if len(found) == 1:
        return found.pop()
    raise ScaleError(
        "The baselines interpolate the block mean of the truth, and evaluate cannot tell at "
        "which scale: pass scale= (e.g. scale=4), or coarse= (the scale is then the ratio "
        "of the grids). It is read from the predictions' 'source' attribute only when "
        "xr_dl4ds.downscale wrote it" + (f" (they disagree: {sorted(found)})." if found else ".")
    )


def _orography(truth: Any, orography: xr.DataArray | None) -> xr.DataArray | None:
    if orography is not None or not isinstance(truth, xr.Dataset):
        return orography
    for name, v in truth.data_vars.items():
        if name == "orog" or v.attrs.get("standard_name") == "surface_altitude":
            return v
    return None


def _reduce_dims(
    truth: xr.DataArray, dim: str | Sequence[Hashable] | None
) -> list[Hashable] | None:
    if dim is None:
        return None
    dims: list[Hashable] = [dim] if isinstance(dim, str) else list(dim)
    missing = [d for d in dims if d not in truth.dims]
    if missing:
        raise ConfigError(f"dim={dim!r}: {missing} not among the truth's dims {truth.dims}.")
    return dims


def _score(
    name: str,
    pred: xr.DataArray,
    truth: xr.DataArray,
    mask: xr.DataArray,
    *,
    dims: list[Hashable] | None,
    per_cell: bool,
    weights: Any,
    y: Hashable,
    x: Hashable,
) -> xr.DataArray:
    fn = getattr(_metrics, name)
    info = METRICS[name]
    if info.kind == "spatial":
        per_sample = fn(pred, truth, spatial_dims=(y, x), mask=mask)
        return per_sample.mean([d for d in per_sample.dims if dims is None or d in dims])
    pdims = dims
    if per_cell:  # every dim of the pair but the spatial ones (a prediction's realization too)
        pdims = [d for d in dict.fromkeys([*pred.dims, *truth.dims]) if d not in (y, x)]
    return fn(pred, truth, dim=pdims, weights=weights, mask=mask)


def _stack(objs: Sequence[xr.DataArray], names: Sequence[str], dim: str) -> xr.DataArray:
    """Concatenate scores along a new ``dim`` labelled ``names`` (broadcast if needed)."""
    if len({frozenset(o.dims) for o in objs}) > 1:
        objs = list(xr.broadcast(*objs))
    out = xr.concat(objs, dim=dim, coords="minimal", compat="override", join="override")
    # a numpy str index (pandas may infer its string dtype, which .sel does not match)
    return out.assign_coords({dim: np.array([str(n) for n in names])})


def evaluate(
    truth: xr.DataArray | xr.Dataset,
    prediction: xr.DataArray | xr.Dataset | Mapping[str, xr.DataArray | xr.Dataset],
    *,
    coarse: xr.DataArray | xr.Dataset | None = None,
    scale: int | None = None,
    baselines: str | Sequence[str] | None = ("bicubic",),
    orography: xr.DataArray | None = None,
    metrics: str | Sequence[str] | None = None,
    dim: str | Sequence[Hashable] | None = None,
    per_cell: bool = False,
    weights: Any = "auto",
    mask: xr.DataArray | None = None,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> xr.Dataset:
    """Score predictions and baselines against the truth: a tidy Dataset of metrics and skills.

    Every method (each prediction, then each baseline) is scored on the same cells: those
    where the truth, every prediction and every baseline are valid (and ``mask`` is
    true), so the scores compare like for like. The baselines are computed from
    ``coarse`` onto the truth's grid (:mod:`xr_dl4ds.baselines`). All scores are
    computed together in one :func:`dask.compute`.

    Parameters
    ----------
    truth : DataArray or Dataset
        The high-resolution reference. In a Dataset, the variables scored are those of the
        predictions (other variables, e.g. ``orog``, are ignored).
    prediction : DataArray, Dataset or dict of them
        The downscaled field(s), on the truth's grid (same coordinates: ``downscale``
        output of the truth's coarse counterpart is). A dict ``{name: prediction}``
        compares several models; a single prediction is called ``"prediction"``. Units
        are converted to the truth's (pint).
    coarse : DataArray or Dataset, optional
        The coarse input of the baselines (e.g. what was downscaled). Default: the block
        mean of the truth at ``scale`` (:func:`xr_dl4ds.coarsen`), the perfect-prognosis
        input.
    scale : int, optional
        Refinement factor. Default: the ratio of the truth's and ``coarse``'s grids when
        ``coarse`` is given, else the scale written by :func:`xr_dl4ds.downscale` in the
        predictions' ``source`` attribute; otherwise it must be given (when there are
        baselines).
    baselines : str or sequence of str, default ("bicubic",)
        Names among :data:`xr_dl4ds.baselines.BASELINES`: ``"nearest"``, ``"bilinear"``,
        ``"bicubic"``, ``"lapse_rate"`` (bicubic + -6.5 K/km times the orography the
        coarse grid misses, :func:`xr_dl4ds.baselines.lapse_rate`: temperatures only;
        for other variables of a Dataset its scores are NaN). ``None`` or ``()``: none.
    orography : DataArray, optional
        High-resolution surface altitude for ``"lapse_rate"``. Default: the truth's
        variable ``orog`` (or the one whose standard_name is ``surface_altitude``).
    metrics : str or sequence of str, optional
        Names among :data:`METRICS` (functions of :mod:`xr_dl4ds.metrics`). Default
        :data:`DEFAULT_METRICS` (``rmse``, ``mae``, ``bias``, ``pearson_r``,
        ``spearman_r``, ``ssim``, ``psnr``), less ``ssim`` for per-cell scores.
    dim : str or sequence of str, optional
        The dims to reduce. Default: all (one overall score per method and variable,
        area-weighted with ``weights="auto"``). ``dim="time"`` gives maps.
    per_cell : bool, default False
        Scores per high-res cell: reduce every dim but the spatial ones (maps). ``ssim``
        (a spatial statistic) does not apply.
    weights : "auto", DataArray or None, default "auto"
        Passed to the metrics: ``"auto"`` weights cells by area (cos latitude) on
        latitude/longitude grids.
    mask : DataArray of bool, optional
        Cells to score (true) and to leave out (false); broadcast against the truth.
    spatial_dims : (y, x) or {"y": ..., "x": ...}, optional
        Override the detection of the spatial dims.

    Returns
    -------
    Dataset
        - dim ``model``: the predictions' names, then the baselines'; a coordinate
          ``kind`` (``"model"`` or ``"baseline"``) along it, e.g.
          ``scores.sel(model="bicubic")`` (the dim is not called ``method``, which
          :meth:`~xarray.Dataset.sel` would read as its own inexact-matching option);
        - for a Dataset truth, dim ``variable`` (the variables scored), with a
          coordinate ``variable_units``;
        - one data variable per metric (``rmse``, ``mae``...), dims ``(model,
          [variable])`` (plus the spatial dims for maps, and any dim a metric adds, e.g.
          ``quantile``), with ``long_name`` and ``units`` (the data's units for
          rmse/mae/bias/quantile_error when all variables share them, ``"1"`` for
          correlations and SSIM, ``"dB"`` for PSNR);
        - ``skill_<metric>_vs_<baseline>`` for every metric with a perfect value (rmse,
          mae: 0; pearson_r, spearman_r, ssim: 1) and every baseline:
          ``(score - score_baseline) / (perfect - score_baseline)``, i.e.
          ``1 - rmse / rmse_baseline`` for errors, and the fraction of the baseline's
          gap to a perfect correlation that is closed for correlations. 1 is perfect, 0
          is no better than the baseline, negative is worse. bias and psnr get no skill.

    Raises
    ------
    GridError
        A prediction that is not on the truth's grid.
    ScaleError
        Baselines without a known scale.
    UnitsError
        ``"lapse_rate"`` with no temperature to correct; units that do not convert.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=24)
    >>> bilinear = xr_dl4ds.interpolate(hr["tas"].dl4ds.coarsen(scale=4), scale=4, method="bilinear")
    >>> scores = hr["tas"].dl4ds.evaluate(
    ...     bilinear, scale=4, baselines=["bicubic", "lapse_rate"], orography=hr["orog"],
    ...     metrics=["rmse", "mae"],
    ... )
    >>> scores["model"].values.tolist()
    ['prediction', 'bicubic', 'lapse_rate']
    >>> sorted(scores.data_vars)[:3]
    ['mae', 'rmse', 'skill_mae_vs_bicubic']
    >>> float(scores["skill_rmse_vs_lapse_rate"].sel(model="lapse_rate"))
    0.0
    """
    import dask

    if not isinstance(truth, (xr.DataArray, xr.Dataset)):
        raise ConfigError(f"truth must be a DataArray or Dataset, got {type(truth).__name__}.")
    preds = _predictions(prediction)
    base_names = _names(baselines)
    unknown = [b for b in base_names if b not in BASELINES]
    if unknown:
        raise ConfigError(f"Unknown baseline(s) {unknown}; choose from {BASELINES}.")
    if len(set(base_names)) != len(base_names):
        raise ConfigError(f"baselines={base_names} names a baseline twice.")
    clash = [n for n in preds if n in base_names]
    if clash:
        raise ConfigError(
            f"The prediction name(s) {clash} are also baseline names; rename them, e.g. "
            f"prediction={{'model': ...}}."
        )
    explicit = metrics is not None
    metric_names = _names(metrics) if explicit else list(DEFAULT_METRICS)
    unknown = [m for m in metric_names if m not in METRICS]
    if unknown:
        raise ConfigError(f"Unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    if isinstance(per_cell, (bool, np.bool_)) is False:
        raise ConfigError(f"per_cell={per_cell!r} must be True or False.")

    y, x = get_spatial_dims(truth, spatial_dims)
    is_da = isinstance(truth, xr.DataArray)
    truth_vars: dict[Hashable, xr.DataArray]
    if isinstance(truth, xr.DataArray):
        tname: Hashable = truth.name if truth.name is not None else "truth"
        names: list[Hashable] = [tname]
        truth_ds = truth.to_dataset(name=tname, promote_attrs=False)
        truth_vars = {tname: truth}
        for k, p in preds.items():
            if not isinstance(p, xr.DataArray):
                raise VariableError(
                    f"The truth is a DataArray, prediction {k!r} a Dataset: pass "
                    f"prediction[{tname!r}] or the truth as a Dataset."
                )
    else:
        first = next(iter(preds.values()))
        if isinstance(first, xr.DataArray):
            names = [first.name if first.name is not None else ""]
        else:
            names = [n for n, v in first.data_vars.items() if {y, x} <= set(v.dims)]
        missing = [n for n in names if n not in truth.data_vars]
        if missing or not names:
            raise VariableError(
                f"The truth lacks the predicted variable(s) {missing or names}; it has "
                f"{sorted(map(str, truth.data_vars))}."
            )
        truth_ds = truth
        truth_vars = {n: truth[n] for n in names}
    pred_vars = {
        k: {
            n: _to_units(da, truth_vars[n].attrs.get("units"), f"prediction {k!r} ({n!r})")
            for n, da in _as_variables(p, names, f"prediction {k!r}", any_name=is_da).items()
        }
        for k, p in preds.items()
    }
    for k, pv in pred_vars.items():
        for n, da in pv.items():
            _check_aligned(da, truth_vars[n], f"prediction {k!r} ({n!r})")

    if per_cell and dim is not None:
        raise ConfigError(
            "Pass either per_cell=True (scores per high-res cell, over every other dim) or "
            f"dim= (the dims to reduce), not both; got dim={dim!r}."
        )
    dims = _reduce_dims(truth_vars[names[0]], dim)
    spatial_reduced = not per_cell and (dims is None or {y, x} <= set(dims))
    if not spatial_reduced:
        if explicit and "ssim" in metric_names:
            raise ConfigError(
                "ssim is one value per field (over the spatial dims); it cannot be computed "
                "per cell. Leave it out of metrics=, or reduce the spatial dims too."
            )
        metric_names = [m for m in metric_names if METRICS[m].kind != "spatial"]

    # baselines, on the truth's grid
    base_vars: dict[str, dict[Hashable, xr.DataArray | None]] = {}
    if base_names:
        coarse_ds: xr.Dataset | None = None
        if coarse is not None:
            coarse_ds = xr.Dataset(_as_variables(coarse, names, "coarse", any_name=is_da))
        s = (
            check_scale(scale)
            if scale is not None
            else _infer_scale(truth_ds, coarse_ds, preds, y, x)
        )
        if coarse_ds is None:
            coarse_ds = coarsen(xr.Dataset(truth_vars), s, spatial_dims=(y, x))
        else:
            for d in (y, x):
                if coarse_ds.sizes[d] * s != truth_ds.sizes[d]:
                    raise GridError(
                        f"coarse= has {coarse_ds.sizes[d]} cells along {d!r}; at scale={s} "
                        f"the truth's {truth_ds.sizes[d]} need {truth_ds.sizes[d] / s:g}."
                    )
            coarse_ds = coarse_ds.assign(
                {
                    n: _to_units(coarse_ds[n], truth_vars[n].attrs.get("units"), f"coarse {n!r}")
                    for n in names
                }
            )
        orog = _orography(truth, orography)
        for b in base_names:
            subset = list(names)
            if b == "lapse_rate":
                from .baselines import _is_temperature

                subset = [n for n in names if _is_temperature(coarse_ds[n].attrs.get("units"))]
                if not subset:
                    units = {str(n): coarse_ds[n].attrs.get("units") for n in names}
                    raise UnitsError(
                        f"The 'lapse_rate' baseline corrects temperatures, and no variable "
                        f"is one (units {units}). Drop it from baselines=, or set the units."
                    )
            fields = baseline(coarse_ds[subset], b, scale=s, orography=orog, spatial_dims=(y, x))
            base_vars[b] = {
                n: _onto(fields[n], truth_vars[n], y, x) if n in subset else None for n in names
            }

    methods: list[str] = [*preds, *base_names]
    fields_of = {k: dict(v) for k, v in pred_vars.items()} | base_vars

    # the cells every method is scored on
    if mask is not None:
        if not isinstance(mask, xr.DataArray):
            raise ConfigError(
                f"mask must be a boolean DataArray (True = score the cell), got "
                f"{type(mask).__name__}."
            )
        _check_mask(mask, truth_vars[names[0]])
    valid: dict[Hashable, xr.DataArray] = {}
    for n in names:
        ok = truth_vars[n].notnull()
        for k in methods:
            f = fields_of[k][n]
            if f is not None:
                ok = ok & f.notnull()
        if mask is not None:
            m = mask if mask.dtype == bool else mask.fillna(0) != 0
            ok = ok & m
        valid[n] = ok

    lazy: dict[tuple[str, Hashable, str], xr.DataArray] = {}
    for metric in metric_names:
        for n in names:
            t = truth_vars[n].where(valid[n])
            for k in methods:
                f = fields_of[k][n]
                if f is not None:
                    lazy[(metric, n, k)] = _score(
                        metric,
                        f.where(valid[n]),
                        t,
                        valid[n],
                        dims=dims,
                        per_cell=per_cell,
                        weights=weights,
                        y=y,
                        x=x,
                    )
    keys = list(lazy)
    (computed,) = dask.compute([lazy[k] for k in keys])
    scores = dict(zip(keys, computed, strict=True))

    units_of = {n: truth_vars[n].attrs.get("units") for n in names}
    shared_units = set(units_of.values())
    out: dict[str, xr.DataArray] = {}
    for metric in metric_names:
        info = METRICS[metric]
        per_var = []
        for n in names:
            got = [scores.get((metric, n, k)) for k in methods]
            template = next(g for g in got if g is not None)
            filled = [g if g is not None else xr.full_like(template, np.nan) for g in got]
            per_var.append(_stack(filled, methods, "model"))
        da = per_var[0] if is_da else _stack(per_var, [str(n) for n in names], "variable")
        lead = ["model"] if is_da else ["model", "variable"]
        da = da.transpose(*lead, ...).rename(metric)
        attrs = {"long_name": info.long_name}
        if info.units is not None:
            attrs["units"] = info.units
        elif len(shared_units) == 1 and None not in shared_units:
            attrs["units"] = str(next(iter(shared_units)))
        da.attrs = attrs  # not the first variable's attrs that concat kept
        out[metric] = da
    for metric in metric_names:
        info = METRICS[metric]
        if info.perfect is None:
            continue
        for b in base_names:
            ref = out[metric].sel(model=b, drop=True)
            skill = (out[metric] - ref) / (info.perfect - ref) + 0.0  # + 0.0: no -0.0
            formula = (
                f"1 - {metric} / {metric}({b})"
                if info.perfect == 0
                else f"({metric} - {metric}({b})) / ({info.perfect:g} - {metric}({b}))"
            )
            out[f"skill_{metric}_vs_{b}"] = skill.assign_attrs(
                long_name=f"skill score of {metric} relative to the {b} baseline: {formula}",
                units="1",
            )
    result = xr.Dataset(out)
    result = result.assign_coords(
        kind=("model", ["model"] * len(preds) + ["baseline"] * len(base_names))
    )
    if not is_da:
        result = result.assign_coords(
            variable_units=(
                "variable",
                [str(units_of[n]) if units_of[n] is not None else "" for n in names],
            )
        )
    result.attrs = {
        "title": "Verification scores of downscaled fields (xr_dl4ds.evaluate)",
        "baselines": ", ".join(base_names),
        "reduced_dims": (
            "all but the spatial ones"
            if per_cell
            else "all"
            if dims is None
            else ", ".join(map(str, dims))
        ),
        "comment": (
            "Every method is scored on the cells where the truth and every method are "
            "valid. skill_<metric>_vs_<baseline> = (score - baseline score) / (perfect - "
            "baseline score): 1 perfect, 0 as good as the baseline, < 0 worse."
        ),
    }
    return result
