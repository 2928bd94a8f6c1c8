"""Train and evaluate several configurations on one split: :func:`compare`.

:func:`compare` trains every configuration (a dict of :func:`xr_dl4ds.fit` options) on the
same training period with the same seed and the same budget (epochs or wall-clock
seconds), downscales the same test period with each model, scores every model and
baseline with :func:`xr_dl4ds.evaluate`, and returns a tidy table: a
:class:`pandas.DataFrame` with one row per configuration and one per baseline. With
``output_dir`` it also writes the table (CSV and Markdown), the scores (netCDF) and the
figures of :mod:`xr_dl4ds.plot`.

With several CUDA devices, configurations train at the same time, one process per GPU.

This module does not import torch (the functions it calls do, when they run).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .exceptions import ConfigError, DataError, DL4DSError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

    from .downscaler import Downscaler

__all__ = [
    "INFO_COLUMNS",
    "baseline_fields",
    "compare",
    "config_keys",
    "plan_devices",
    "schedule",
    "scores_to_frame",
    "to_markdown",
    "write_figures",
    "write_table",
]

#: The columns of :func:`compare`'s table before the scores, in order (the index is
#: ``name``).
INFO_COLUMNS = (
    "kind",
    "backbone",
    "upsampling",
    "options",
    "parameters",
    "epochs",
    "train_seconds",
    "infer_seconds",
    "device",
)

#: Options of fit that are the same for every configuration: they are arguments of
#: compare (or shared ``**fit_options``), never keys of one configuration.
_SHARED: dict[str, str] = {
    "seed": "compare(seed=...)",
    "epochs": "compare(epochs=...) or compare(time_budget=...)",
    "device": "compare(device=...)",
    "progress": "compare(progress=...)",
    "target": "compare(target=...)",
    "scale": "compare(scale=...)",
    "static": "compare(static=...)",
    "lowres": "compare(lowres=...)",
    "predictors": "compare(predictors=...)",
    "val_time": "compare(val_time=...)",
    "val_fraction": "compare(val_fraction=...)",
    "spatial_dims": "compare(spatial_dims=...)",
    "time_dim": "compare(time_dim=...)",
}

#: Options of fit that compare sets itself.
_UNSUPPORTED: dict[str, str] = {
    "devices": "compare runs each configuration in one process (one per GPU when there are "
    "several)",
    "callback": "compare uses the callback for its time budget",
    "checkpoint_path": "compare keeps no checkpoints (save_models=True keeps the models)",
    "checkpoint_every": "compare keeps no checkpoints (save_models=True keeps the models)",
    "resume": "compare trains every configuration from scratch",
}

#: Cap on the epochs of a run limited by ``time_budget`` alone.
_MAX_EPOCHS = 100_000


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------


def _option_kinds() -> dict[str, str]:
    """``{option: kind}`` of every option of fit (the command line's discovery)."""
    from .cli import fit_options

    return {name: o.kind for name, o in fit_options().items()}


def _unknown(where: str, keys: Sequence[str], valid: Sequence[str]) -> ConfigError:
    hint = did_you_mean(keys, valid)
    return ConfigError(
        f"Unknown option(s) {', '.join(map(repr, keys))} in {where}.{hint} Valid options: "
        f"{', '.join(valid)}."
    )


def config_keys() -> list[str]:
    """The keys a configuration of :func:`compare` may set: ``name`` and the options of
    :func:`xr_dl4ds.fit` that may differ between configurations."""
    kinds = _option_kinds()
    keys = [
        k
        for k, kind in kinds.items()
        if kind != "data" and k not in _SHARED and k not in _UNSUPPORTED
    ]
    return ["name", *keys]


def _check_configs(
    configs: Any, fit_options: Mapping[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The names and the fit options of every configuration, checked before any training."""
    kinds = _option_kinds()
    for key in fit_options:
        if key in _UNSUPPORTED:
            raise ConfigError(f"compare() does not take {key}=: {_UNSUPPORTED[key]}.")
    unknown = sorted(k for k in fit_options if k not in kinds)
    if unknown:
        import inspect

        own = set(inspect.signature(compare).parameters)
        valid = [k for k in kinds if k not in _UNSUPPORTED and k not in own]
        raise _unknown("the shared fit options of compare()", unknown, valid)
    if isinstance(configs, Mapping) or isinstance(configs, (str, bytes)):
        raise ConfigError(
            "configs must be a list of dicts of fit options, e.g. [{'backbone': 'resnet'}, "
            f"{{'backbone': 'unet', 'upsampling': 'pin'}}]; got a {type(configs).__name__}."
        )
    configs = list(configs)
    if not configs:
        raise ConfigError("configs is empty: pass at least one configuration (a dict).")
    valid = config_keys()
    names: list[str | None] = []
    options: list[dict[str, Any]] = []
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"configs[{i}] is a {type(config).__name__}; every configuration is a dict of "
                "fit options, e.g. {'name': 'unet', 'backbone': 'unet', 'upsampling': 'pin'}."
            )
        name = config.get("name")
        label = f"configs[{i}]" + (f" ({name!r})" if name is not None else "")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"{label}: name must be a non-empty string, got {name!r}.")
        for key in config:
            if key in _UNSUPPORTED:
                raise ConfigError(f"{label} sets {key!r}: {_UNSUPPORTED[key]}.")
            if key in _SHARED:
                raise ConfigError(
                    f"{label} sets {key!r}, which is the same for every configuration (same "
                    f"split, seed and budget): pass it as {_SHARED[key]}."
                )
        unknown = sorted(k for k in config if k not in valid)
        if unknown:
            raise _unknown(label, unknown, valid)
        names.append(name)
        options.append({k: v for k, v in config.items() if k != "name"})
    given = [n for n in names if n is not None]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise ConfigError(f"The configuration name(s) {twice} are used more than once.")
    resolved: list[str] = []
    for name, opts in zip(names, options, strict=True):
        if name is None:
            both = {**fit_options, **opts}
            base = f"{both.get('backbone', 'resnet')}+{both.get('upsampling', 'spc')}"
            name, k = base, 2
            while name in given or name in resolved:
                name, k = f"{base}-{k}", k + 1
        resolved.append(name)
    return resolved, options


def _check_network(
    name: str, opts: Mapping[str, Any], *, scale: int, channels: tuple[int, int, int], shape: Any
) -> None:
    """Build the configuration's network, loop options and loss now, so that a bad value
    fails before anything trains."""
    from .losses import get_loss
    from .models import ModelConfig, create_model
    from .training.supervised import LoopOptions

    network = {k: v for k, v in opts.items() if k in _network_fields()}
    if network.get("localcon"):
        network["grid_shape"] = shape
    loop_fields = {f.name for f in dataclasses.fields(LoopOptions)} - {
        "checkpoint_every",
        "checkpoint_path",
        "progress",
    }
    try:
        config = ModelConfig(
            backbone=opts.get("backbone", "resnet"),
            upsampling=opts.get("upsampling", "spc"),
            scale=scale,
            in_channels=channels[0],
            out_channels=channels[1],
            static_channels=channels[2],
            **network,
        )
        create_model(config)
        LoopOptions(epochs=1, **{k: v for k, v in opts.items() if k in loop_fields - {"epochs"}})
        get_loss(opts.get("loss", "mae"))
    except DL4DSError as err:
        raise type(err)(f"Configuration {name!r}: {err}") from None


def _network_fields() -> set[str]:
    return {k for k, kind in _option_kinds().items() if kind == "network"}


def _check_positive(name: str, value: Any, *, integer: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and isinstance(value, int) and value >= 1
    else:
        ok = ok and math.isfinite(value) and value > 0
    if not ok:
        what = "an integer >= 1" if integer else "a positive number of seconds"
        raise ConfigError(f"{name}={value!r} must be None or {what}.")


# ----------------------------------------------------------------------------------------
# the test split
# ----------------------------------------------------------------------------------------


def _test_steps(times: xr.DataArray, test_time: Any, test_fraction: float | None) -> np.ndarray:
    """A boolean mask of the test steps: ``test_time`` (a slice or labels) or the last
    ``test_fraction`` of the steps (default 0.25)."""
    n = times.size
    if test_time is not None and test_fraction is not None:
        raise ConfigError("Pass either test_time= or test_fraction=, not both.")
    if test_time is not None:
        index = times.to_index()
        is_test = np.zeros(n, bool)
        if isinstance(test_time, slice):
            is_test[index.slice_indexer(test_time.start, test_time.stop)] = True
        else:
            sel = times.sel({times.dims[0]: test_time})
            is_test = np.isin(times.values, np.atleast_1d(sel.values))
    else:
        fraction = 0.25 if test_fraction is None else test_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ConfigError(f"test_fraction={test_fraction!r} must be a number in (0, 1).")
        if not 0 < fraction < 1:
            raise ConfigError(
                f"test_fraction={test_fraction!r} must be between 0 and 1 (exclusive), e.g. 0.25."
            )
        n_test = max(1, int(round(n * fraction)))
        is_test = np.zeros(n, bool)
        is_test[n - n_test :] = True  # the last steps: a split by time, not at random
    if is_test.all() or not is_test.any():
        raise ConfigError(
            f"The test split leaves {int((~is_test).sum())} training and {int(is_test.sum())} "
            f"test steps out of {n}; both must be at least 1. Adjust test_time= / "
            "test_fraction=."
        )
    return is_test


def _restrict_time(obj: Any, times: np.ndarray, time_dim: Hashable | None = None) -> Any:
    """``obj`` at the given time steps (those it has), or ``obj`` if it has no time dim."""
    from .data.pairing import get_time_dim

    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        return obj
    t = time_dim if time_dim is not None and time_dim in obj.dims else get_time_dim(obj)
    if t is None or t not in obj.coords:
        return obj
    return obj.isel({t: np.flatnonzero(np.isin(obj[t].values, times))})


def _find_orography(data: Any, static: Any) -> xr.DataArray | None:
    """The high-resolution surface altitude among the data and static fields, if any."""
    candidates: list[xr.DataArray] = []
    for obj in (static, data):
        if isinstance(obj, xr.Dataset):
            candidates += list(obj.data_vars.values())
        elif isinstance(obj, xr.DataArray):
            candidates.append(obj)
    for da in candidates:
        if da.attrs.get("standard_name") == "surface_altitude":
            return da
    for da in candidates:
        if da.name in ("orog", "orography"):
            return da
    return None


# ----------------------------------------------------------------------------------------
# running the configurations
# ----------------------------------------------------------------------------------------


def plan_devices(device: str, n_configs: int, n_gpus: int | None = None) -> list[str]:
    """The devices that train configurations at the same time, one process each.

    With ``device="auto"`` (or ``"cuda"``) and more than one CUDA device, one slot per
    GPU (``cuda:0``, ``cuda:1``...; no more than there are configurations); otherwise the
    one ``device``, in this process.

    Parameters
    ----------
    device : str
        As given to :func:`compare`.
    n_configs : int
    n_gpus : int, optional
        The number of CUDA devices; default :func:`torch.cuda.device_count`.

    Examples
    --------
    >>> plan_devices("auto", 3, n_gpus=2)
    ['cuda:0', 'cuda:1']
    >>> plan_devices("auto", 3, n_gpus=1), plan_devices("cuda:1", 3, n_gpus=4)
    (['auto'], ['cuda:1'])
    """
    if device not in ("auto", "cuda"):
        return [device]
    if n_gpus is None:
        import torch

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus > 1 and n_configs > 1:
        return [f"cuda:{i}" for i in range(min(n_gpus, n_configs))]
    return [device]


def schedule(
    jobs: Sequence[Any],
    slots: Sequence[str],
    run: Callable[[Any, str], Any],
    *,
    processes: bool,
) -> list[Any]:
    """``[run(job, slot) for job in jobs]``, each slot running one job at a time.

    With one slot and ``processes=False`` the jobs run here, in order. Otherwise each slot
    has a thread that takes the next job from a shared queue and runs it, in its own
    spawned process when ``processes`` (one long-lived process per slot: one per GPU), so
    that every slot is busy until the queue is empty. Results come back in the order of
    ``jobs``; the first failure stops the slots from taking new jobs and is raised.

    Parameters
    ----------
    jobs : sequence
        The work items, e.g. the configurations of :func:`compare`.
    slots : sequence of str
        One per job running at a time, e.g. the devices of :func:`plan_devices`.
    run : callable
        ``run(job, slot)``; with ``processes``, a picklable (module-level) function.
    processes : bool
        Run each slot's jobs in a spawned process of its own.

    Returns
    -------
    list
        ``run(job, slot)`` of every job, in the order of ``jobs``.

    Examples
    --------
    With one slot, in order, here:

    >>> schedule(["a", "b", "c"], ["cpu"], lambda job, slot: f"{job} on {slot}",
    ...          processes=False)
    ['a on cpu', 'b on cpu', 'c on cpu']

    With two slots, two jobs run at a time (in threads here; in one process per slot with
    ``processes=True``); the later jobs finish first, yet the results keep the order of
    the jobs:

    >>> import time
    >>> def run(job, slot):
    ...     time.sleep(0.01 * (4 - job))
    ...     return f"job {job} on {slot}"
    >>> schedule(range(4), ["cuda:0", "cuda:1"], run, processes=False)
    ['job 0 on cuda:...', 'job 1 on cuda:...', 'job 2 on cuda:...', 'job 3 on cuda:...']

    The first failure is raised:

    >>> def run(job, slot):
    ...     if job == 1:
    ...         raise ValueError(f"job {job} failed on {slot}")
    ...     return job
    >>> schedule(range(3), ["cpu"], run, processes=False)
    Traceback (most recent call last):
    ...
    ValueError: job 1 failed on cpu
    """
    if len(slots) == 1 and not processes:
        return [run(job, slots[0]) for job in jobs]
    import multiprocessing

    queue = collections.deque(range(len(jobs)))
    lock = threading.Lock()
    results: list[Any] = [None] * len(jobs)
    failed = threading.Event()

    def worker(slot: str) -> None:
        executor = (
            concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn")
            )
            if processes
            else None
        )
        try:
            while not failed.is_set():
                with lock:
                    if not queue:
                        return
                    i = queue.popleft()
                try:
                    if executor is not None:
                        results[i] = executor.submit(run, jobs[i], slot).result()
                    else:
                        results[i] = run(jobs[i], slot)
                except BaseException:
                    failed.set()
                    raise
        finally:
            if executor is not None:
                executor.shutdown(cancel_futures=True)

    with concurrent.futures.ThreadPoolExecutor(len(slots)) as threads:
        futures = [threads.submit(worker, slot) for slot in slots]
        for future in futures:
            future.result()
    return results


@dataclasses.dataclass
class _Job:
    index: int
    total: int
    name: str
    data: Any
    fit_kwargs: dict[str, Any]
    coarse: xr.Dataset
    time_budget: float | None
    progress: bool
    threads: int | None = None  # torch's CPU threads, in a process of its own


@dataclasses.dataclass
class _Outcome:
    model: Downscaler
    prediction: xr.Dataset
    train_seconds: float
    infer_seconds: float
    stopped_by_budget: bool


def _fit_within_budget(
    data: Any, kwargs: Mapping[str, Any], budget: float | None
) -> tuple[Downscaler, float, bool]:
    """Train; with a budget, stop after the first epoch that ends past it (``fit``'s
    epoch callback returns True to stop)."""
    from .downscaler import fit

    start = time.perf_counter()
    stopped = False

    def callback(epoch: int, values: Mapping[str, float]) -> bool:
        nonlocal stopped
        stopped = time.perf_counter() - start >= budget  # type: ignore[operator]
        return stopped

    if budget is None:
        model = fit(data, **kwargs)
    else:
        model = fit(data, **kwargs, callback=callback)
    return model, time.perf_counter() - start, stopped


def _run_job(job: _Job, device: str) -> _Outcome:
    """Train one configuration on ``device`` and downscale the test period with it."""
    from .inference import downscale

    kwargs = {**job.fit_kwargs, "device": device}
    if job.threads is not None:  # share the CPU cores among the processes running at once
        import torch

        torch.set_num_threads(job.threads)
    if job.progress:
        from .training.supervised import resolve_device

        where = resolve_device(device)
        print(f"[{job.index + 1}/{job.total}] {job.name}: training on {where}", flush=True)
    model, train_seconds, stopped = _fit_within_budget(job.data, kwargs, job.time_budget)
    start = time.perf_counter()
    prediction = downscale(job.coarse, model, device=device).compute()
    infer_seconds = time.perf_counter() - start
    if job.progress:
        epochs = model.history.sizes.get("epoch", 0)
        budget = f" (time budget of {job.time_budget:g} s reached)" if stopped else ""
        print(
            f"[{job.index + 1}/{job.total}] {job.name}: {epochs} epoch{'s' * (epochs != 1)} in "
            f"{train_seconds:.1f} s"
            f"{budget}, inference {infer_seconds:.2f} s",
            flush=True,
        )
    return _Outcome(model, prediction, train_seconds, infer_seconds, stopped)


def _n_parameters(model: Downscaler) -> int:
    return int(sum(p.numel() for p in model.network("cpu").parameters()))


def _options_text(opts: Mapping[str, Any]) -> str:
    rest = {k: v for k, v in opts.items() if k not in ("backbone", "upsampling")}
    if not rest:
        return "-"
    return ", ".join(f"{k}={getattr(v, '__name__', v)}" for k, v in rest.items())


# ----------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------


def scores_to_frame(scores: xr.Dataset) -> pd.DataFrame:
    """The scores of :func:`xr_dl4ds.evaluate` as a table: one row per model and baseline.

    Parameters
    ----------
    scores : Dataset
        Overall scores (reduced over every dim): one data variable per metric and skill
        score with dim ``model`` (and ``variable``, ``quantile``...).

    Returns
    -------
    pandas.DataFrame
        Index ``name`` (the ``model`` labels); a column ``kind`` (``"model"`` or
        ``"baseline"``), then one column per data variable of ``scores``. A score with
        more dims than ``model`` gives one column per value, named ``<metric>_<value>``
        (e.g. ``rmse_tas`` and ``rmse_pr`` for two variables; a single variable adds no
        suffix). ``table.attrs["units"]`` maps columns to units.

    Examples
    --------
    >>> import xarray as xr
    >>> scores = xr.Dataset(
    ...     {"rmse": ("model", [0.8, 1.2], {"units": "K"})},
    ...     coords={"model": ["resnet", "bicubic"], "kind": ("model", ["model", "baseline"])},
    ... )
    >>> table = scores_to_frame(scores)
    >>> float(table.loc["resnet", "rmse"]), table.attrs["units"]
    (0.8, {'rmse': 'K'})
    """
    import pandas as pd

    if not isinstance(scores, xr.Dataset) or "model" not in scores.dims:
        raise ConfigError(
            "scores must be the Dataset of xr_dl4ds.evaluate (with a 'model' dimension), got "
            f"{type(scores).__name__}."
        )
    spatial = [d for d in scores.dims if d not in ("model", "variable", "quantile")]
    if spatial:
        raise DataError(
            f"scores has the dims {spatial} besides model/variable: a table needs overall "
            "scores (evaluate without dim= / per_cell=)."
        )
    models = [str(m) for m in scores["model"].values]
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    for name, da in scores.data_vars.items():
        if "variable" in da.dims and da.sizes["variable"] == 1:
            var_units = str(da["variable_units"].values[0]) if "variable_units" in da.coords else ""
            da = da.isel(variable=0, drop=True)
            if not da.attrs.get("units") and var_units:
                da.attrs["units"] = var_units
        other = [d for d in da.dims if d != "model"]
        da = da.transpose("model", *other)
        if not other:
            columns[str(name)] = np.asarray(da.values)
            if da.attrs.get("units"):
                units[str(name)] = str(da.attrs["units"])
            continue
        shape = [da.sizes[d] for d in other]
        for index in np.ndindex(*shape):
            sel = dict(zip(other, index, strict=True))
            part = da.isel(sel)
            labels = [str(da[d].values[i]) if d in da.coords else str(i) for d, i in sel.items()]
            col = "_".join([str(name), *labels])
            columns[col] = np.asarray(part.values)
            unit = da.attrs.get("units") or (
                str(part["variable_units"].values) if "variable_units" in part.coords else ""
            )
            if unit:
                units[col] = str(unit)
    table = pd.DataFrame(columns, index=pd.Index(models, name="name"))
    kinds = scores["kind"].values if "kind" in scores.coords else ["model"] * len(models)
    table.insert(0, "kind", [str(k) for k in kinds])
    table.attrs["units"] = units
    return table


def _format_cell(column: str, value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if column == "parameters" else str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        if column.endswith("_seconds"):
            return f"{value:.2f}"
        return f"{value:.4g}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame) -> str:
    """A table (e.g. of :func:`compare`) as a GitHub-flavoured Markdown table.

    The index is the first column; headers get the units of ``table.attrs["units"]``
    (``rmse [K]``; not the dimensionless ``"1"``); numbers are rounded to 4 significant digits (seconds to 2 decimals,
    parameters with thousands separators); missing values are written ``n/a``.

    Examples
    --------
    >>> import pandas as pd
    >>> print(to_markdown(pd.DataFrame({"rmse": [0.81234]}, index=pd.Index(["a"], name="name"))))
    | name | rmse |
    |:--|--:|
    | a | 0.8123 |
    """
    units = table.attrs.get("units", {})
    index_name = table.index.name or ""
    headers = [str(index_name)] + [
        f"{c} [{units[c]}]" if units.get(c) not in (None, "", "1") else str(c)
        for c in table.columns
    ]
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    numeric = [
        is_numeric_dtype(table[c].dtype) and not is_bool_dtype(table[c].dtype)
        for c in table.columns
    ]
    align = [":--"] + ["--:" if n else ":--" for n in numeric]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for label, row in zip(table.index, table.itertuples(index=False), strict=True):
        cells = [_format_cell("", label)]
        cells += [_format_cell(str(c), v) for c, v in zip(table.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(table: pd.DataFrame, output_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``table.csv`` (full precision) and ``table.md`` (:func:`to_markdown`) into
    ``output_dir`` (created if needed); returns the paths.

    Parameters
    ----------
    table : pandas.DataFrame
        The table of :func:`compare` (or of :func:`scores_to_frame`).
    output_dir : path
        Files of the same names are replaced.

    Returns
    -------
    list of pathlib.Path
        ``[output_dir / "table.csv", output_dir / "table.md"]``.

    Examples
    --------
    A table built as :func:`compare` builds it, from the scores of
    :func:`xr_dl4ds.evaluate`:

    >>> import pandas as pd
    >>> import xarray as xr
    >>> scores = xr.Dataset(
    ...     {
    ...         "rmse": ("model", [0.8497, 1.0813], {"units": "K"}),
    ...         "skill_rmse_vs_bicubic": ("model", [0.2142, 0.0], {"units": "1"}),
    ...     },
    ...     coords={"model": ["resnet+spc", "bicubic"], "kind": ("model", ["model", "baseline"])},
    ... )
    >>> table = scores_to_frame(scores)
    >>> table.insert(1, "parameters", [29425, 0])
    >>> paths = write_table(table, "results")
    >>> [p.as_posix() for p in paths]
    ['results/table.csv', 'results/table.md']
    >>> print(paths[1].read_text())
    | name | kind | parameters | rmse [K] | skill_rmse_vs_bicubic |
    |:--|:--|--:|--:|--:|
    | resnet+spc | model | 29,425 | 0.8497 | 0.2142 |
    | bicubic | baseline | 0 | 1.081 | 0 |
    <BLANKLINE>

    The CSV keeps every digit:

    >>> float(pd.read_csv(paths[0], index_col="name").loc["bicubic", "rmse"])
    1.0813
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "table.csv", out / "table.md"
    table.to_csv(csv)
    md.write_text(to_markdown(table) + "\n", encoding="utf-8")
    return [csv, md]


def baseline_fields(
    coarse: xr.Dataset,
    names: Sequence[str],
    *,
    scale: int,
    orography: xr.DataArray | None = None,
    spatial_dims: Sequence[Hashable] | None = None,
) -> tuple[dict[str, xr.Dataset], dict[str, float]]:
    """The baselines ``names`` of the variables of ``coarse``, computed, and the seconds
    each took; ``"lapse_rate"`` covers only the temperatures (an error when none is)."""
    from .baselines import _is_temperature, baseline

    fields: dict[str, xr.Dataset] = {}
    seconds: dict[str, float] = {}
    for b in names:
        subset = list(coarse.data_vars)
        if b == "lapse_rate":
            subset = [n for n in subset if _is_temperature(coarse[n].attrs.get("units"))]
            if not subset:
                units = {str(n): coarse[n].attrs.get("units") for n in coarse.data_vars}
                raise ConfigError(
                    f"The 'lapse_rate' baseline corrects temperatures, and no variable is one "
                    f"(units {units}). Drop it from the baselines, or set the units."
                )
        start = time.perf_counter()
        fields[b] = baseline(
            coarse[subset], b, scale=scale, orography=orography, spatial_dims=spatial_dims
        ).compute()
        seconds[b] = time.perf_counter() - start
    return fields, seconds


def _variable(obj: xr.DataArray | xr.Dataset, name: Hashable) -> xr.DataArray:
    return obj if isinstance(obj, xr.DataArray) else obj[name]


def write_figures(
    output_dir: str | os.PathLike[str],
    *,
    scores: xr.Dataset,
    truth: xr.Dataset,
    predictions: Mapping[str, xr.Dataset],
    baselines: Mapping[str, xr.Dataset] | None = None,
    coarse: xr.Dataset | None = None,
    models: Mapping[str, Any] | None = None,
    variable: Hashable | None = None,
    dpi: int = 100,
) -> list[Path]:
    """Write the figures of a comparison into ``output_dir`` (matplotlib).

    ``maps.png`` (:func:`xr_dl4ds.plot.maps` of the first time step: coarse input,
    baselines, models, truth and their errors), ``metrics.png``
    (:func:`~xr_dl4ds.plot.metric_bars` of the first error metric, ``rmse`` when there,
    and of its skill over each baseline), ``spectra.png``
    (:func:`~xr_dl4ds.plot.spectra` of the truth, baselines and models, averaged over
    time) and, with ``models`` (Downscalers or their histories, by name),
    ``learning_curves.png`` (with the learning rate only when it changes). Maps and
    spectra show ``variable`` (default: the first variable of the predictions).

    Parameters
    ----------
    output_dir : path
        Created if needed; files of the same names are replaced.
    scores : Dataset
        Overall scores from :func:`xr_dl4ds.evaluate`.
    truth, coarse : Dataset
        The high-resolution truth and the coarse input of the scored period.
    predictions, baselines : mapping of name to Dataset
        The fields scored, on the grid of ``truth``.
    models : mapping of name to Downscaler or history Dataset, optional
    variable : str, optional
    dpi : int, default 100

    Returns
    -------
    list of pathlib.Path
        The files written.

    Examples
    --------
    Two interpolations stand in for the trained models here (``predictions`` holds the
    output of :func:`xr_dl4ds.downscale` in a comparison), with a hand-made history:

    >>> import matplotlib
    >>> matplotlib.use("Agg")  # write files, open no window
    >>> import xarray as xr
    >>> import xr_dl4ds
    >>> from xr_dl4ds.baselines import interpolate
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> truth = synthetic_dataarray(nt=2, ny=16, nx=24)
    >>> coarse = truth.dl4ds.coarsen(scale=4)
    >>> predictions = {"bilinear": interpolate(coarse, scale=4, method="bilinear")}
    >>> baselines = {"bicubic": interpolate(coarse, scale=4)}
    >>> scores = xr_dl4ds.evaluate(
    ...     truth, predictions, coarse=coarse, scale=4, baselines="bicubic", metrics="rmse"
    ... )
    >>> history = xr.Dataset(
    ...     {"loss": ("epoch", [0.9, 0.5, 0.4]), "val_loss": ("epoch", [1.0, 0.7, 0.6])},
    ...     coords={"epoch": [1, 2, 3]},
    ... )
    >>> paths = write_figures(
    ...     "figures", scores=scores, truth=truth, predictions=predictions,
    ...     baselines=baselines, coarse=coarse, models={"bilinear": history}, dpi=50,
    ... )
    >>> [p.as_posix() for p in paths]
    ['figures/metrics.png', 'figures/maps.png', 'figures/spectra.png',
     'figures/learning_curves.png']
    """
    from . import plot

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    baselines = dict(baselines or {})
    if variable is None:
        first = next(iter(predictions.values()))
        variable = first.name if isinstance(first, xr.DataArray) else next(iter(first.data_vars))
    written = []
    plain = [
        str(n)
        for n, da in scores.data_vars.items()
        if not str(n).startswith("skill_") and set(da.dims) <= {"model", "variable"}
    ]
    if plain:
        primary = "rmse" if "rmse" in plain else plain[0]
        bars = [primary] + [
            f"skill_{primary}_vs_{b}"
            for b in scores.attrs.get("baselines", "").split(", ")
            if f"skill_{primary}_vs_{b}" in scores
        ]
        fig = plot.metric_bars(scores, metrics=bars)
        written.append(plot.save(fig, out / "metrics.png", dpi=dpi, close=True))
    fields = {str(k): _variable(v, variable) for k, v in predictions.items()}
    base_fields = {  # a baseline may lack a variable ("lapse_rate": temperatures only)
        str(k): _variable(v, variable)
        for k, v in baselines.items()
        if isinstance(v, xr.DataArray) or variable in v.data_vars
    }
    truth_da = _variable(truth, variable)
    fig = plot.maps(
        truth_da,
        coarse=None if coarse is None else _variable(coarse, variable),
        predictions=fields,
        baselines=base_fields,
        time=0,
    )
    written.append(plot.save(fig, out / "maps.png", dpi=dpi, close=True))
    fig = plot.spectra({"truth": truth_da, **base_fields, **fields})
    written.append(plot.save(fig, out / "spectra.png", dpi=dpi, close=True))
    if models:
        histories = {}
        for name, m in models.items():
            h = m if isinstance(m, xr.Dataset) else m.history
            lr = h.get("learning_rate")
            if lr is not None and lr.size and bool((lr == lr[0]).all()):
                h = h.drop_vars("learning_rate")  # a constant learning rate adds only clutter
            histories[str(name)] = h
        plt = plot._pyplot()
        _, ax = plt.subplots(figsize=(7.0, 4.5), layout="constrained")
        fig = plot.learning_curves(histories, ax=ax)
        written.append(plot.save(fig, out / "learning_curves.png", dpi=dpi, close=True))
    return written


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "model"


# ----------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------


def compare(
    data: xr.DataArray | xr.Dataset,
    configs: Sequence[Mapping[str, Any]],
    *,
    scale: int,
    target: str | Sequence[str] | None = None,
    static: str | Sequence[str] | xr.DataArray | xr.Dataset | None = None,
    test_time: Any = None,
    test_fraction: float | None = None,
    epochs: int | None = None,
    time_budget: float | None = None,
    seed: int | None = 0,
    baselines: str | Sequence[str] | None = ("bicubic",),
    metrics: str | Sequence[str] | None = None,
    orography: xr.DataArray | None = None,
    device: str = "auto",
    output_dir: str | os.PathLike[str] | None = None,
    save_models: bool = False,
    progress: bool = True,
    **fit_options: Any,
) -> pd.DataFrame:
    """Train several configurations on one split and score them next to the baselines.

    Every configuration is trained with :func:`xr_dl4ds.fit` on the same training
    period, with the same seed and the same budget, and downscales the same test period
    (the coarse counterpart of the held-out high-resolution steps: their block mean, or
    ``lowres`` for MOS). :func:`xr_dl4ds.evaluate` then scores every model and baseline
    on the same cells of the test period. Everything is validated (option names and
    values, network shapes, baselines, metrics, the split) before anything trains.

    Parameters
    ----------
    data : DataArray or Dataset
        High-resolution data with a time dimension, as for :func:`xr_dl4ds.fit`.
    configs : sequence of dict
        One dict of :func:`xr_dl4ds.fit` options per configuration (``backbone``,
        ``upsampling``, ``loss``, ``learning_rate``, network options such as
        ``n_filters``...), overriding the shared ``**fit_options``, with an optional
        ``"name"`` (default ``"<backbone>+<upsampling>"``, numbered when repeated). The
        options that must be equal for a fair comparison (``seed``, ``epochs``, the
        data, the split, ``device``) are arguments of compare and not allowed here; an
        unknown key is an error that lists the valid ones (:func:`config_keys`).
    scale : int
        Refinement factor.
    target, static : optional
        As for :func:`xr_dl4ds.fit`; ``lowres=``, ``predictors=`` and the other options
        that take data go in ``**fit_options`` and are split by time like ``data``.
    test_time : slice or labels, optional
        The time steps held out for testing, e.g. ``slice("2010", "2012")``.
    test_fraction : float, optional
        Hold out the last ``test_fraction`` of the time steps instead (default 0.25 when
        neither is given). The training period is the rest (``val_fraction=`` or
        ``val_time=`` in ``**fit_options`` hold out validation steps from it, the same
        for every configuration).
    epochs : int, optional
        Epochs of every configuration; default ``fit``'s (30) without ``time_budget``,
        no limit but the budget with it.
    time_budget : float, optional
        Wall-clock seconds of training per configuration (data preparation included):
        training stops after the first epoch that ends past the budget (so at least one
        epoch runs, and a run overshoots by at most one epoch; keep epochs short with
        ``steps_per_epoch``). With ``epochs`` too, whichever comes first. Learning-rate
        schedules see ``epochs`` (or 100,000 without it).
    seed : int or None, default 0
        The seed of every configuration (weights and patches).
    baselines : str or sequence of str, default ("bicubic",)
        Names of :data:`xr_dl4ds.baselines.BASELINES` (``"lapse_rate"`` needs the
        orography: ``orography=``, or a variable of ``data`` or ``static`` whose
        standard_name is ``surface_altitude`` or named ``orog``/``orography``).
    metrics : str or sequence of str, optional
        Names of :data:`xr_dl4ds.evaluation.METRICS`; default those of
        :func:`xr_dl4ds.evaluate`.
    orography : DataArray, optional
        High-resolution surface altitude for ``"lapse_rate"``.
    device : str, default "auto"
        ``"auto"`` or ``"cuda"`` with several CUDA devices: the configurations train at
        the same time, one process per GPU (:func:`plan_devices`), each taking the next
        configuration when it is done. Otherwise they train one after the other here, on
        ``device`` (``"auto"``: CUDA when present).
    output_dir : path, optional
        Write ``table.csv`` and ``table.md`` (:func:`write_table`), ``scores.nc`` (the
        Dataset of :func:`xr_dl4ds.evaluate`), and the figures ``maps.png``,
        ``metrics.png``, ``spectra.png``, ``learning_curves.png``
        (:func:`write_figures`, needs matplotlib) into this directory (created; files
        of the same names are replaced).
    save_models : bool, default False
        Also save every model as ``output_dir/models/<name>.dl4ds``.
    progress : bool, default True
        Print a line when each configuration starts and ends (and, when they run one
        after the other here, fit's progress bar).
    **fit_options
        Options of :func:`xr_dl4ds.fit` shared by every configuration (e.g.
        ``batch_size``, ``patch_size``, ``steps_per_epoch``, ``val_fraction``,
        ``lowres``, ``n_filters``).

    Returns
    -------
    pandas.DataFrame
        Index ``name``: the configurations in order, then the baselines. Columns:

        - ``kind``: ``"model"`` or ``"baseline"``;
        - ``backbone``, ``upsampling``: the configuration's (``"-"`` for baselines);
        - ``options``: its other options, ``"k=v, ..."`` (``"-"`` when none);
        - ``parameters``: trainable parameters (0 for baselines);
        - ``epochs``: epochs trained (0 for baselines);
        - ``train_seconds``: wall-clock seconds of ``fit`` (0 for baselines);
        - ``infer_seconds``: seconds to downscale the test period (for a baseline:
          to compute it);
        - ``device``: where it trained and ran (``"cpu"`` for baselines);
        - one column per metric (``rmse``, ``mae``...), then ``skill_<metric>_vs_<baseline>``
          (see :func:`xr_dl4ds.evaluate`; several target variables or a ``quantile``
          dim give one column per value, see :func:`scores_to_frame`).

        Every cell is filled, with two exceptions where a value does not apply: a
        baseline's score for a variable it cannot produce (``"lapse_rate"`` for a
        variable that is not a temperature) and the skills derived from it are NaN. The
        skill of a baseline over itself is 0. ``table.attrs["units"]`` gives the units
        of the score columns.

    Raises
    ------
    ConfigError
        An unknown option (named, with the valid ones), an option that must be shared
        set in one configuration, a bad value, a bad split, or duplicate names.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> table = xr_dl4ds.compare(
    ...     synthetic_dataset(nt=6),
    ...     [{"backbone": "resnet"}, {"backbone": "convnet", "upsampling": "rc"}],
    ...     scale=4, epochs=1, patch_size=16, batch_size=4, steps_per_epoch=2, n_filters=4,
    ...     metrics=["rmse", "mae"], progress=False, device="cpu",
    ... )
    >>> table.index.tolist()
    ['resnet+spc', 'convnet+rc', 'bicubic']
    >>> float(table.loc["bicubic", "skill_rmse_vs_bicubic"])
    0.0
    """
    from .baselines import BASELINES
    from .data.pairing import pair
    from .evaluation import METRICS, evaluate

    # -- everything that can be checked without the data -------------------------------
    names, options = _check_configs(configs, fit_options)
    _check_positive("epochs", epochs, integer=True)
    _check_positive("time_budget", time_budget, integer=False)
    base_names = (
        [] if baselines is None else [baselines] if isinstance(baselines, str) else list(baselines)
    )
    unknown = [b for b in base_names if b not in BASELINES]
    if unknown:
        raise ConfigError(f"Unknown baseline(s) {unknown}; choose from {list(BASELINES)}.")
    clash = [n for n in names if n in base_names]
    if clash:
        raise ConfigError(
            f"The configuration name(s) {clash} are also baseline names; rename them "
            "(configs[i]['name'])."
        )
    if metrics is not None:
        metric_list = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metric_list if m not in METRICS]
        if unknown:
            raise ConfigError(f"Unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    if not isinstance(device, str):
        raise ConfigError(f"device={device!r} must be a string, e.g. 'auto', 'cpu', 'cuda:0'.")
    # -- the split, the network shapes, the baselines: still before any training -------
    p = pair(
        data,
        scale=scale,
        target=target,
        lowres=fit_options.get("lowres"),
        static=static,
        predictors=fit_options.get("predictors"),
        spatial_dims=fit_options.get("spatial_dims"),
        time_dim=fit_options.get("time_dim"),
    )
    t = p.time_dim
    y, x = p.spatial_dims
    is_test = _test_steps(p.highres[t], test_time, test_fraction)
    times = p.highres[t].values
    train_times, test_times = times[~is_test], times[is_test]
    channels = (
        len(p.target) + len(p.predictors) + len(p.static_names),
        len(p.target),
        len(p.static_names),
    )
    shape = (p.highres.sizes[y], p.highres.sizes[x])
    merged = [{**fit_options, **o} for o in options]
    for name, opts in zip(names, merged, strict=True):
        _check_network(name, opts, scale=p.scale, channels=channels, shape=shape)

    truth = p.highres.isel({t: np.flatnonzero(is_test)})
    coarse_input = p.lowres.isel({t: np.flatnonzero(is_test)})
    coarse = coarse_input[list(p.target)]
    orog = orography
    if orog is None and "lapse_rate" in base_names:
        orog = _find_orography(data, static if static is not None else p.static)
    if orog is not None and (y in orog.dims and x in orog.dims):
        orog = orog.sel({d: truth[d] for d in (y, x) if d in orog.coords and d in truth.coords})
    base_fields, base_seconds = baseline_fields(
        coarse, base_names, scale=p.scale, orography=orog, spatial_dims=(y, x)
    )

    # -- train and downscale -----------------------------------------------------------
    train_data = _restrict_time(data, train_times, t)
    shared = dict(fit_options)
    for key in ("lowres", "predictors"):
        if key in shared:
            shared[key] = _restrict_time(shared[key], train_times)
    slots = plan_devices(device, len(names))
    in_process = len(slots) == 1
    threads = None if in_process else max(1, (os.cpu_count() or 1) // len(slots))
    jobs = []
    for i, (name, opts) in enumerate(zip(names, options, strict=True)):
        kwargs = {
            **shared,
            **opts,
            "scale": scale,
            "target": target,
            "static": static,
            "seed": seed,
            "progress": progress and in_process,
        }
        if epochs is not None:
            kwargs["epochs"] = epochs
        elif time_budget is not None:
            kwargs["epochs"] = _MAX_EPOCHS
        jobs.append(
            _Job(
                i,
                len(names),
                name,
                train_data,
                kwargs,
                coarse_input,
                time_budget,
                progress,
                threads,
            )
        )
    if progress:
        from .training.supervised import resolve_device

        limits = [f"{epochs} epoch{'s' * (epochs != 1)}"] if epochs is not None else []
        if time_budget is not None:
            limits.append(f"{time_budget:g} s of training")
        budget = " or ".join(limits) if limits else "fit's default epochs"
        if time_budget is not None:
            budget = f"at most {budget}"
        where = (
            f"on {resolve_device(slots[0])}"
            if in_process
            else f"{len(slots)} at a time, one process per GPU ({', '.join(slots)})"
        )
        print(
            f"compare: {len(names)} configuration(s) and {len(base_names)} baseline(s); "
            f"{train_times.size} training and {test_times.size} test steps; {budget}; "
            f"{where}",
            file=sys.stdout,
            flush=True,
        )
    outcomes: list[_Outcome] = schedule(jobs, slots, _run_job, processes=not in_process)

    # -- score and tabulate ------------------------------------------------------------
    predictions = {name: o.prediction for name, o in zip(names, outcomes, strict=True)}
    scores = evaluate(
        truth,
        predictions,
        coarse=coarse,
        scale=p.scale,
        baselines=base_names,
        orography=orog,
        metrics=metrics,
        spatial_dims=(y, x),
    )
    for b in base_names:  # a baseline's skill over itself: 0 (also when it is perfect)
        itself = scores["model"] == b
        for var in [v for v in scores.data_vars if str(v).endswith(f"_vs_{b}")]:
            metric = str(var)[len("skill_") : -len(f"_vs_{b}")]
            da = scores[var]
            fill = itself & da.isnull() & scores[metric].notnull()
            scores[var] = da.where(~fill, 0.0).assign_attrs(da.attrs)
    score_table = scores_to_frame(scores)
    info = {
        "backbone": [o.model.config.backbone for o in outcomes] + ["-"] * len(base_names),
        "upsampling": [o.model.config.upsampling for o in outcomes] + ["-"] * len(base_names),
        "options": [_options_text(o) for o in options] + ["-"] * len(base_names),
        "parameters": [_n_parameters(o.model) for o in outcomes] + [0] * len(base_names),
        "epochs": [int(o.model.history.sizes.get("epoch", 0)) for o in outcomes]
        + [0] * len(base_names),
        "train_seconds": [o.train_seconds for o in outcomes] + [0.0] * len(base_names),
        "infer_seconds": [o.infer_seconds for o in outcomes]
        + [base_seconds[b] for b in base_names],
        "device": [str(o.model.training.get("device", "")) for o in outcomes]
        + ["cpu"] * len(base_names),
    }
    for position, (column, values) in enumerate(info.items(), start=1):
        score_table.insert(position, column, values)
    table = score_table
    table.attrs["title"] = (
        f"xr_dl4ds.compare: x{p.scale}, {train_times.size} training and {test_times.size} "
        f"test steps, seed {seed}"
    )

    if output_dir is not None:
        out = Path(output_dir)
        write_table(table, out)
        scores.to_netcdf(out / "scores.nc")
        write_figures(
            out,
            scores=scores,
            truth=truth,
            predictions=predictions,
            baselines=base_fields,
            coarse=coarse,
            models={name: o.model for name, o in zip(names, outcomes, strict=True)},
        )
        if save_models:
            for name, o in zip(names, outcomes, strict=True):
                path = out / "models" / f"{_safe_filename(name)}.dl4ds"
                path.parent.mkdir(parents=True, exist_ok=True)
                o.model.save(path)
    return table
