"""Figures for evaluating and comparing downscaling models (matplotlib).

matplotlib is an optional dependency: ``pip install xr_dl4ds[plot]``. It is imported when
a function of this module is called, never by ``import xr_dl4ds``.

Every function returns a :class:`matplotlib.figure.Figure`; save it with :func:`save` or
``fig.savefig``. Maps are drawn on the fields' dimension coordinates: ``lat``/``lon`` on a
regular grid, ``rlat``/``rlon`` on a rotated-pole grid (the rectangle the model sees; the
2-D auxiliary ``lat``/``lon`` are not used), with north up whatever the order of the
latitudes.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .data.normalization import convert_units
from .data.pairing import get_time_dim
from .exceptions import ConfigError, DataError, GridError, VariableError
from .grid import get_spatial_dims

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.figure import Figure

__all__ = ["maps", "metric_bars", "spectra", "learning_curves", "save"]

#: Percentiles of the truth that bound the shared colour scale of the field panels.
ROBUST_PERCENTILES = (2.0, 98.0)


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "xr_dl4ds.plot needs matplotlib, which is not installed. Install it with "
            "`pip install xr_dl4ds[plot]` (or `pip install matplotlib`)."
        ) from err
    return plt


def _label(da: xr.DataArray, default: str = "") -> str:
    """``long_name`` (or ``standard_name``, name) and ``[units]`` of a DataArray."""
    name = da.attrs.get("long_name") or da.attrs.get("standard_name") or da.name or default
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def _coord_label(da: xr.DataArray, dim: Hashable) -> str:
    """Short axis label: the coordinate's name and units."""
    units = da[dim].attrs.get("units") if dim in da.coords else None
    return f"{dim} [{units}]" if units else str(dim)


def _format_value(value: Any) -> str:
    """A coordinate value for a message or a title: dates without midnight, 6 digits."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s")).removesuffix("T00:00:00")
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}"
    return str(value)


# -- maps --------------------------------------------------------------------------------


def _as_field(obj: Any, label: str, name: Hashable) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if name not in obj.data_vars:
            raise VariableError(
                f"{label} is a Dataset without the truth's variable {name!r} (it has "
                f"{sorted(map(str, obj.data_vars))}). Pass a DataArray, e.g. {label}[<var>]."
            )
        obj = obj[name]
    if not isinstance(obj, xr.DataArray):
        raise TypeError(f"{label} must be an xarray DataArray, got {type(obj).__name__}.")
    return obj


def _describe_coord(da: xr.DataArray, dim: Hashable) -> str:
    n = da.sizes[dim]
    if dim in da.coords and n:
        values = da[dim].values
        return f"{n} values ({_format_value(values[0])} .. {_format_value(values[-1])})"
    return f"{n} values"


def _check_grid(
    da: xr.DataArray, truth: xr.DataArray, label: str, dims: Sequence[Hashable]
) -> None:
    for dim in dims:
        if dim not in da.dims:
            raise GridError(
                f"{label} has no dimension {dim!r} (its dims are {tuple(da.dims)}), so it is "
                f"not on the grid of truth, whose spatial dims are {tuple(dims)}."
            )
        same = da.sizes[dim] == truth.sizes[dim]
        if same and dim in da.coords and dim in truth.coords:
            same = bool(np.allclose(da[dim].values, truth[dim].values, rtol=0, atol=1e-6))
        if not same:
            raise GridError(
                f"{label} is not on the grid of truth: its {dim!r} has "
                f"{_describe_coord(da, dim)} where truth has {_describe_coord(truth, dim)}. "
                "Predictions and baselines must be on the high-resolution grid of truth: "
                "downscale or interpolate them onto it (xr_dl4ds.metrics.interpolate), "
                "and pass a low-resolution field as coarse=."
            )


def _select(
    da: xr.DataArray, label: str, time_dim: Hashable | None, when: Any, dims: Sequence[Hashable]
) -> xr.DataArray:
    """The 2-D ``(y, x)`` field of ``da`` at time ``when`` (a label, or an index)."""
    if time_dim is not None and time_dim in da.dims:
        try:
            if time_dim in da.coords and not isinstance(when, int):
                da = da.sel({time_dim: when})
            else:
                da = da.isel({time_dim: when})
        except (KeyError, IndexError, TypeError):
            raise DataError(
                f"time={_format_value(when)!r} is not in the {time_dim!r} coordinate of {label} "
                f"({_describe_coord(da, time_dim)}). Pass an index into truth's "
                f"{time_dim!r} or one of its labels, present in every field."
            ) from None
    extra = {d: n for d, n in da.sizes.items() if d not in dims}
    if any(n > 1 for n in extra.values()):
        raise DataError(
            f"{label} has dimensions {extra} besides the spatial {tuple(dims)} after "
            "selecting the time; a map needs one 2-D field. Select one value of each first, "
            f"e.g. {label}.isel({next(iter(extra))}=0)."
        )
    return da.squeeze([d for d in extra]).transpose(*dims).compute()


def _mesh(ax: Axes, da: xr.DataArray, dims: Sequence[Hashable], **kwargs: Any) -> QuadMesh:
    y, x = dims
    xs = da[x].values if x in da.coords else np.arange(da.sizes[x])
    ys = da[y].values if y in da.coords else np.arange(da.sizes[y])
    mesh = ax.pcolormesh(xs, ys, np.asarray(da.values), shading="nearest", **kwargs)
    lo, hi = sorted((float(ys[0]), float(ys[-1])))  # north up, whatever the order of y
    pad = 0.5 * (hi - lo) / max(len(ys) - 1, 1)
    ax.set_ylim(lo - pad, hi + pad)
    return mesh


def _limits(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if lo == hi:
        lo, hi = lo - 0.5 * max(abs(lo), 1.0), hi + 0.5 * max(abs(hi), 1.0)
    return lo, hi


def maps(
    truth: xr.DataArray,
    *,
    coarse: xr.DataArray | None = None,
    predictions: Mapping[str, xr.DataArray] | None = None,
    baselines: Mapping[str, xr.DataArray] | None = None,
    time: Any = 0,
    errors: bool = True,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
    cmap: str | None = None,
    error_cmap: str = "RdBu_r",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Map panel: coarse input, baselines, models and truth, then their error maps.

    The first row shows, left to right, `coarse`, each of `baselines`, each of
    `predictions` and `truth`, with one colour scale (the 2nd to 98th percentiles of the
    truth) and one colour bar labelled with the variable's ``long_name`` and ``units``.
    With `errors`, the second row shows ``field - truth`` under each baseline and model,
    on one symmetric scale (the 98th percentile of the absolute errors). Titles give each
    field's RMSE against the truth, in the truth's units.

    Parameters
    ----------
    truth : DataArray
        High-resolution reference, ``(time, y, x)`` or ``(y, x)``.
    coarse : DataArray, optional
        The low-resolution input, on its own grid.
    predictions, baselines : mapping of name to DataArray (or Dataset), optional
        Fields on the grid of `truth` (e.g. ``{"resnet": model.downscale(coarse)}``,
        ``{"bicubic": interpolate(coarse, scale=4)}``). A Dataset contributes its
        variable named like `truth`. Units are converted to the truth's with pint.
    time : int or label, default 0
        The time step: an index into ``truth``'s time dim (int) or a label such as
        ``"2000-01-03"``; ignored for fields without a time dim.
    errors : bool, default True
        Add the row of error maps.
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims.
    cmap, error_cmap : str, optional
        Colour maps of the fields (matplotlib's default) and of the errors.
    figsize : (width, height), optional
        Figure size in inches; by default 3 x 2.6 inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        With ``n`` panels per row: ``fig.axes[:n]`` are the fields, ``fig.axes[n:2 * n]``
        the error maps (cells without one are switched off), then the colour bars.

    Raises
    ------
    GridError
        A prediction or baseline that is not on the grid of `truth` (the message says
        which one and how its coordinates differ).
    DataError
        A time step missing from a field, or fields with more dims than time and space.
    UnitsError
        Units that cannot be converted to the truth's.

    Examples
    --------
    >>> import tempfile
    >>> from xr_dl4ds.metrics import interpolate
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> truth = synthetic_dataarray(nt=2, ny=16, nx=24)
    >>> coarse = truth.dl4ds.coarsen(scale=4)
    >>> fig = maps(truth, coarse=coarse, baselines={"bicubic": interpolate(coarse, scale=4)})
    >>> [ax.get_title().splitlines()[0] for ax in fig.axes[:3]]
    ['coarse', 'bicubic', 'truth']
    >>> path = save(fig, tempfile.mkdtemp() + "/maps.png")
    """
    plt = _pyplot()
    from . import metrics

    if not isinstance(truth, xr.DataArray):
        raise TypeError(
            f"truth must be an xarray DataArray, got {type(truth).__name__}; "
            "pick one variable, e.g. ds['tas']."
        )
    dims = get_spatial_dims(truth, spatial_dims)
    units = truth.attrs.get("units")
    time_dim = get_time_dim(truth)
    when = time
    if time_dim is not None and isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        when = int(time)
        if time_dim in truth.coords:
            try:
                when = truth[time_dim].values[when]
            except IndexError:
                raise DataError(
                    f"time={time} is out of range: truth has {truth.sizes[time_dim]} "
                    f"steps along {time_dim!r}."
                ) from None

    panels: list[tuple[str, xr.DataArray, bool]] = []  # (title, field, has an error map)
    if coarse is not None:
        c = _as_field(coarse, "coarse", truth.name)
        c_dims = get_spatial_dims(c, dims if set(dims) <= set(c.dims) else None)
        c = _select(c, "coarse", time_dim, when, c_dims)
        renames = {a: b for a, b in zip(c_dims, dims, strict=True) if a != b}
        panels.append(("coarse", c.rename(renames), False))
    for group, fields in (("baselines", baselines), ("predictions", predictions)):
        for name, obj in (fields or {}).items():
            label = f"{group}[{name!r}]"
            da = _as_field(obj, label, truth.name)
            _check_grid(da, truth, label, dims)
            panels.append((str(name), _select(da, label, time_dim, when, dims), True))
    panels.append(("truth", _select(truth, "truth", time_dim, when, dims), False))
    if units is not None:
        panels = [
            (t, convert_units(da, units) if "units" in da.attrs else da, e) for t, da, e in panels
        ]

    truth2d = panels[-1][1].astype(float)
    ref = truth2d.values
    diffs = {
        i: np.asarray(da.values, dtype=float) - ref for i, (_, da, e) in enumerate(panels) if e
    }
    errors = errors and bool(diffs)
    vmin, vmax = _limits(ref, ROBUST_PERCENTILES)
    all_errors = np.concatenate([d.ravel() for d in diffs.values()] or [ref[:0]])
    emax = _limits(np.abs(all_errors), (0.0, 98.0))[1]

    ncols, nrows = len(panels), 2 if errors else 1
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=figsize or (3.0 * ncols + 1.0, 2.6 * nrows + 0.4),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    units_text = f" {units}" if units else ""
    y, x = dims
    for col, (title, da, has_error) in enumerate(panels):
        ax = axes[0, col]
        field_mesh = _mesh(ax, da, dims, cmap=cmap, vmin=vmin, vmax=vmax)
        if has_error:
            score = float(metrics.rmse(truth2d.copy(data=ref + diffs[col]), truth2d))
            title += f"\nRMSE {score:.3g}{units_text}"
        ax.set_title(title, fontsize="medium")
        bottom = axes[1, col] if errors and has_error else ax
        bottom.set_xlabel(_coord_label(truth, x))
        bottom.xaxis.set_tick_params(labelbottom=True)
    axes[0, 0].set_ylabel(_coord_label(truth, y))
    fig.colorbar(field_mesh, ax=axes[0, :].tolist(), label=_label(truth), extend="both")
    if errors:
        for col, (title, da, has_error) in enumerate(panels):
            ax = axes[1, col]
            if not has_error:  # keep the empty cell, so both colour bars line up
                ax.set_axis_off()
                continue
            error = da.copy(data=diffs[col])
            error_mesh = _mesh(ax, error, dims, cmap=error_cmap, vmin=-emax, vmax=emax)
            ax.set_title(f"{title} - truth", fontsize="medium")
        axes[1, min(diffs)].yaxis.set_tick_params(labelleft=True)
        label = f"error [{units}]" if units else "error"
        fig.colorbar(error_mesh, ax=axes[1, :].tolist(), label=label, extend="both")
    if time_dim is not None and time_dim in truth.dims:
        fig.suptitle(f"{truth.name or ''} {time_dim}={_format_value(when)}".strip())
    return fig


# -- metric bars -------------------------------------------------------------------------


def _score_units(da: xr.DataArray) -> str:
    """A score's units: its own, else those of its variable (``variable_units``)."""
    if da.attrs.get("units"):
        return str(da.attrs["units"])
    for name in ("variable_units", "units"):
        if name in da.coords and da[name].ndim == 0:
            return str(da[name].values)
    return ""


def metric_bars(
    scores: xr.Dataset,
    *,
    metrics: str | Sequence[str] = ("rmse",),
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Bar charts of scores per model (and baseline), one panel per metric (and per variable).

    Parameters
    ----------
    scores : Dataset
        The output of :func:`xr_dl4ds.evaluate`: one data variable per metric with a
        ``model`` dim, e.g. ``rmse(model)``, and optionally a ``variable`` dim (one
        row of panels per variable). The y axis is labelled with the metric's name and
        units (the ``units`` attr, else the ``variable_units`` coordinate); the title
        is its ``long_name``. With a ``kind`` coordinate along ``model``, the
        baselines are drawn in grey and the models in colour.
    metrics : str or sequence of str, default ("rmse",)
        The data variables to draw.
    ax : Axes or sequence of Axes, optional
        Where to draw, one Axes per panel; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    VariableError
        A metric that is not in `scores` (the message lists those that are).
    DataError
        A metric with dims other than ``model`` and ``variable`` (e.g. ``quantile``).

    Examples
    --------
    >>> import xarray as xr
    >>> scores = xr.Dataset(
    ...     {"rmse": ("model", [1.2, 0.8], {"units": "K"})},
    ...     coords={"model": ["bicubic", "resnet"]},
    ... )
    >>> metric_bars(scores).axes[0].get_ylabel()
    'rmse [K]'
    """
    plt = _pyplot()
    if not isinstance(scores, xr.Dataset) or "model" not in scores.dims:
        raise TypeError(
            "scores must be an xarray Dataset with a 'model' dimension and one variable per "
            f"metric, e.g. rmse(model); got {type(scores).__name__}"
            + (f" with dims {tuple(scores.dims)}." if hasattr(scores, "dims") else ".")
        )
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    missing = [m for m in metrics if m not in scores.data_vars]
    if missing or not metrics:
        raise VariableError(
            f"metrics={metrics!r}: {missing or 'nothing'} not in scores, which has "
            f"{sorted(map(str, scores.data_vars))}."
        )
    variables = list(scores["variable"].values) if "variable" in scores.dims else [None]
    nrows, ncols = len(variables), len(metrics)
    if ax is None:
        width = max(3.0, 0.7 * scores.sizes["model"] + 1.5)
        fig, grid = plt.subplots(
            nrows, ncols, figsize=(ncols * width, 3.0 * nrows), squeeze=False, layout="constrained"
        )
        axes = list(grid.ravel())
    else:
        axes = [ax] if not isinstance(ax, Sequence) else list(ax)
        if len(axes) != nrows * ncols:
            raise ConfigError(
                f"ax has {len(axes)} Axes but there are {nrows * ncols} panels "
                f"({ncols} metrics x {nrows} variables); pass one Axes per panel or ax=None."
            )
        fig = axes[0].figure
    kinds = scores["kind"].values if "kind" in scores.coords else [None] * scores.sizes["model"]
    colours = ["0.65" if kind == "baseline" else f"C{j}" for j, kind in enumerate(kinds)]
    for panel, (var, metric) in zip(
        axes, ((v, m) for v in variables for m in metrics), strict=True
    ):
        da = scores[metric] if var is None else scores[metric].sel(variable=var)
        other = [d for d in da.dims if d != "model"]
        if other:
            raise DataError(
                f"scores[{metric!r}] has dims {tuple(scores[metric].dims)}; metric_bars draws "
                f"one value per model (and variable). Select or reduce {other} first."
            )
        names = [str(m) for m in da["model"].values]
        bars = panel.bar(names, np.asarray(da.values, dtype=float), color=colours)
        panel.bar_label(bars, fmt="%.3g", fontsize="small")
        panel.axhline(0.0, color="0.3", lw=0.8)
        units = _score_units(da)
        panel.set_ylabel(f"{metric} [{units}]" if units else metric)
        title = textwrap.fill(str(da.attrs.get("long_name", metric)), 40)
        panel.set_title(title if var is None else f"{title}: {var}", fontsize="medium")
        if len(names) > 4:
            panel.tick_params(axis="x", labelrotation=30)
    return fig


# -- spectra -----------------------------------------------------------------------------


def spectra(
    fields: Mapping[str, xr.DataArray] | xr.DataArray,
    *,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Radially averaged power spectra of fields, on log-log axes.

    Each spectrum comes from :func:`xr_dl4ds.metrics.power_spectrum` and is averaged over
    every dim but ``wavenumber`` (time...); the zero wavenumber is left out. The top axis
    gives the wavelength when the spectrum has a ``wavelength`` coordinate.

    Parameters
    ----------
    fields : mapping of name to DataArray, or a DataArray
        The fields to compare, e.g. ``{"truth": hr, "bicubic": ..., "resnet": ...}``.
    spatial_dims : (y, x), optional
        Override the detection of the spatial dims.
    ax : Axes, optional
        Where to draw; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> fig = spectra({"truth": synthetic_dataarray(nt=2, ny=16, nx=24)})
    >>> fig.axes[0].get_ylabel()
    'power spectrum [K^2]'
    """
    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    from . import metrics

    if isinstance(fields, xr.DataArray):
        fields = {str(fields.name or "field"): fields}
    if not fields:
        raise ConfigError("fields is empty: pass a mapping of names to DataArrays.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 3.8), layout="constrained")
    for name, da in fields.items():
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"fields[{name!r}] must be a DataArray, got {type(da).__name__}.")
        ps = metrics.power_spectrum(da, spatial_dims=spatial_dims)
        ps = ps.mean([d for d in ps.dims if d != "wavenumber"])
        ps = ps.where(ps["wavenumber"] > 0, drop=True)
        ax.loglog(ps["wavenumber"].values, np.asarray(ps.values), label=str(name))
    k = ps["wavenumber"]
    axes = [ax.xaxis]
    ax.set_xlabel(_label(k) if k.attrs else "wavenumber [cycles per grid cell]")
    units = ps.attrs.get("units")
    ax.set_ylabel(f"power spectrum [{units}]" if units else "power spectrum")
    if "wavelength" in ps.coords:  # wavelength = 1 / wavenumber, on the top axis

        def inverse(v: Any) -> Any:
            with np.errstate(divide="ignore"):
                return 1.0 / np.asarray(v, dtype=float)

        top = ax.secondary_xaxis("top", functions=(inverse, inverse))
        wavelength = ps["wavelength"]
        top.set_xlabel(_label(wavelength) if wavelength.attrs else "wavelength [grid cells]")
        axes.append(top.xaxis)
    for axis in axes:  # ticks at 1, 2, 5 x 10^n, written plainly: a spectrum spans few decades
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax.figure  # type: ignore[return-value]


# -- learning curves ---------------------------------------------------------------------


def _history(obj: Any, label: str) -> xr.Dataset:
    history = obj if isinstance(obj, xr.Dataset) else getattr(obj, "history", None)
    if not isinstance(history, xr.Dataset):
        raise TypeError(
            f"{label} must be a Downscaler or its history Dataset, got {type(obj).__name__}."
        )
    if "loss" not in history or history["loss"].size == 0:
        raise DataError(
            f"{label} has no training loss to plot: its history has the variables "
            f"{sorted(map(str, history.data_vars))} and {history.sizes.get('epoch', 0)} epochs."
        )
    return history


def learning_curves(
    model_or_history: Any,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Training (and validation) loss per epoch; the learning rate on a twin axis.

    Parameters
    ----------
    model_or_history : Downscaler, Dataset, or mapping of name to either
        A trained model (its :attr:`~xr_dl4ds.Downscaler.history`), a history Dataset
        with dim ``epoch`` and variables ``loss`` and optionally ``val_loss`` and
        ``learning_rate`` (or ``lr``), or several of them by name: one colour each.
    ax : Axes, optional
        Where to draw the losses; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Solid lines: training loss; dashed: validation loss; dotted, on the right axis:
        learning rate. The loss axis is logarithmic when every loss is positive.

    Examples
    --------
    >>> import xarray as xr
    >>> history = xr.Dataset({"loss": ("epoch", [1.0, 0.5, 0.3])}, coords={"epoch": [1, 2, 3]})
    >>> learning_curves(history).axes[0].get_xlabel()
    'epoch'
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if isinstance(model_or_history, Mapping) and not isinstance(model_or_history, xr.Dataset):
        histories = {str(k): _history(v, f"{k!r}") for k, v in model_or_history.items()}
        if not histories:
            raise ConfigError("model_or_history is an empty mapping.")
    else:
        histories = {"": _history(model_or_history, "model_or_history")}
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    lr_ax = None
    positive = True
    for i, (name, h) in enumerate(histories.items()):
        epoch = h["epoch"].values if "epoch" in h.coords else np.arange(1, h.sizes["epoch"] + 1)
        prefix = f"{name}: " if name else ""
        style: dict[str, Any] = {
            "color": f"C{i}",
            "marker": "o" if h.sizes["epoch"] < 20 else None,
            "ms": 3,
        }
        ax.plot(epoch, h["loss"].values, label=f"{prefix}training", **style)
        positive &= bool(np.all(h["loss"].values > 0))
        if "val_loss" in h:
            ax.plot(epoch, h["val_loss"].values, ls="--", label=f"{prefix}validation", **style)
            positive &= bool(np.all(h["val_loss"].values > 0))
        lr = h.get("learning_rate", h.get("lr"))
        if lr is not None:
            lr_ax = lr_ax or ax.twinx()
            lr_ax.plot(
                epoch, lr.values, ls=":", color=f"C{i}", alpha=0.7, label=f"{prefix}learning rate"
            )
    loss = next(iter(histories.values()))["loss"]
    ax.set_xlabel("epoch")
    long_name = str(loss.attrs.get("long_name", "loss")).removeprefix("training ")
    ax.set_ylabel(long_name if len(histories) == 1 else "loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if positive:
        ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if lr_ax is not None:
        lr_ax.set_ylabel("learning rate")
        more = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize="small")
    return ax.figure  # type: ignore[return-value]


# -- saving ------------------------------------------------------------------------------


def save(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150, close: bool = False) -> Path:
    """Save a figure (format from the file suffix: png, pdf, svg...) with tight bounds.

    Parameters
    ----------
    fig : Figure
    path : str or path-like
        Its parent folders are created.
    dpi : int, default 150
    close : bool, default False
        Close the figure afterwards (frees its memory in long scripts).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # write files, open no window
    >>> import matplotlib.pyplot as plt
    >>> import xarray as xr
    >>> scores = xr.Dataset(
    ...     {"rmse": ("model", [1.2, 0.8], {"units": "K"})},
    ...     coords={"model": ["bicubic", "resnet"]},
    ... )
    >>> fig = metric_bars(scores)
    >>> path = save(fig, "figures/rmse.png", dpi=50)
    >>> path.as_posix(), path.stat().st_size > 0
    ('figures/rmse.png', True)

    The suffix picks the format; ``close=True`` frees the figure:

    >>> save(fig, "figures/rmse.pdf", close=True).read_bytes()[:4]
    b'%PDF'
    >>> plt.fignum_exists(fig.number)
    False
    """
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path
