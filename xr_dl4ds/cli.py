"""The ``xr-dl4ds`` command: ``fit``, ``downscale``, ``evaluate`` and ``compare`` for batch
and HPC jobs.

``xr-dl4ds fit CONFIG`` trains a model from a TOML or YAML file with three sections:
``[data]`` (what to open and which part of it), ``[fit]`` (any keyword option of
:func:`xr_dl4ds.fit`, network options included) and ``[output]`` (where to write the
model and its training history). The valid ``[fit]`` keys are read from the signature of
:func:`xr_dl4ds.fit` and the fields of :class:`~xr_dl4ds.models.ModelConfig` when the
command runs, so options added to ``fit`` later work here without touching this module.

``xr-dl4ds downscale MODEL INPUT OUTPUT`` downscales a netCDF file or a zarr store lazily,
chunk by chunk (tile by tile with ``--tile``; with an ensemble of models or Monte-Carlo
samples; on a dask.distributed cluster with ``--scheduler``). A netCDF OUTPUT is written
atomically (a failure never leaves a partial file); a zarr OUTPUT is written region by
region with :func:`xr_dl4ds.to_zarr`, marked incomplete until it is finished, and an
interrupted run is finished with ``--resume``.

``xr-dl4ds evaluate TRUTH PREDICTION... --out DIR`` scores downscaled files next to
baselines (:func:`xr_dl4ds.evaluate`) and writes the table (CSV and Markdown) and figures;
``xr-dl4ds compare CONFIG`` trains and scores several configurations on one split
(:func:`xr_dl4ds.compare`) from a file with the sections ``[data]`` (as for fit),
``[compare]`` and ``[output]``.

Errors of xr_dl4ds (:class:`~xr_dl4ds.DL4DSError`, configuration errors included) are
printed as ``xr-dl4ds: error: <message>`` and exit with status 2; anything else is a bug
and keeps its traceback. The same entry point runs as ``python -m xr_dl4ds``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import glob
import importlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from .exceptions import ConfigError, DL4DSError, VariableError, did_you_mean

__all__ = [
    "main",
    "build_parser",
    "load_config",
    "validate_config",
    "validate_compare_config",
    "fit_options",
]

PROG = "xr-dl4ds"
SECTIONS = ("data", "fit", "output")
_DATA_KEYS = ("path", "engine", "chunks", "isel", "sel")
_OUTPUT_KEYS = ("model", "history")
_NONE_STRINGS = ("none", "null")
_EMPTY = inspect.Parameter.empty

EXAMPLE_TOML = """\
# era5_t2m.toml -- train resnet+spc x4 on 2 m temperature with orography
[data]
path = "era5_t2m.nc"              # netCDF file, glob ("t2m_*.nc") or zarr store ("t2m.zarr")
# chunks = {time = 8}             # passed to xarray when opening (dask)
isel = {lat = [0, 180]}           # index ranges [start, stop), applied first
sel = {time = ["2026-03-25", "2026-03-30"]}   # label ranges [start, stop], inclusive
# lowres_path = "gcm_t2m.nc"      # MOS: the coarse input from another source
# predictors_path = "gcm_extra.nc"  # coarse predictors (fit.predictors picks variables)

[fit]
target = "t2m"
scale = 4
static = ["orography", "lsm"]
backbone = "resnet"
upsampling = "spc"
loss = "mae"
epochs = 12
batch_size = 16
patch_size = 64
val_fraction = 0.25
seed = 0
device = "auto"
n_filters = 8                     # network options (ModelConfig fields) go here too
n_blocks = 6

[output]
model = "t2m_resnet.dl4ds"        # written with model.save()
history = "t2m_resnet_history.nc" # optional: the training history (netCDF)
"""


# ----------------------------------------------------------------------------------------
# the options of fit(), discovered at run time
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FitOption:
    """One option of :func:`xr_dl4ds.fit` as the command line sees it.

    ``kind`` is ``"training"`` (a named parameter of fit), ``"network"`` (a field of
    ModelConfig, passed through ``**model_options``), ``"data"`` (takes xarray data only:
    given as ``[data] <name>_path``) or ``"python"`` (a callable: Python only).
    """

    name: str
    kind: str
    default: Any
    annotation: str
    doc: str
    takes_data: bool = False

    @property
    def required(self) -> bool:
        return self.default is _EMPTY

    @property
    def settable(self) -> bool:
        return self.kind in ("training", "network")


def _annotation_text(annotation: Any) -> str:
    if annotation is _EMPTY:
        return ""
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _param_docs(obj: Any) -> dict[str, str]:
    """First sentence of each parameter's description in a numpydoc docstring."""
    lines = (inspect.getdoc(obj) or "").splitlines()
    start = None
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}:
            start = i + 2
            break
    if start is None:
        return {}
    entries: list[tuple[list[str], str, list[str]]] = []
    i = start
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line and not line[0].isspace():
            if nxt and set(nxt) == {"-"}:  # the next section begins
                break
            head, _, typ = line.partition(":")
            names = [n.strip() for n in head.split(",") if n.strip()]
            entries.append((names, typ.strip(), []))
        elif line.strip() and entries:
            entries[-1][2].append(line.strip())
        i += 1
    docs: dict[str, str] = {}
    for names, typ, desc in entries:
        text = " ".join(desc)
        # the first sentence (not cut at "e.g." or "i.e.")
        m = re.match(r"(.+?(?<!e\.g)(?<!i\.e)\.)(\s|$)", text)
        first = m.group(1) if m else text
        first = first.replace("``", "")
        first = re.sub(r":\w+:`~?([^`]+)`", r"\1", first)
        for name in names:
            docs[name] = first or typ
    return docs


def _fit_function() -> Callable[..., Any]:
    import xr_dl4ds

    return xr_dl4ds.fit


def fit_options() -> dict[str, FitOption]:
    """Every option of :func:`xr_dl4ds.fit`, read from its signature and from
    :class:`~xr_dl4ds.models.ModelConfig` now (so options added later are included)."""
    from .models.config import FIT_DERIVED_FIELDS, ModelConfig

    fit = _fit_function()
    docs = _param_docs(fit)
    options: dict[str, FitOption] = {}
    for name, p in inspect.signature(fit).parameters.items():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue  # the data (positional) and **model_options
        ann = _annotation_text(p.annotation)
        takes_data = "DataArray" in ann or "Dataset" in ann
        if "Callable" in ann or "callable" in ann:
            kind = "python"
        elif takes_data and not re.search(r"\bstr\b", ann):
            kind = "data"
        else:
            kind = "training"
        options[name] = FitOption(
            name, kind, p.default, ann, docs.get(name, ""), takes_data=takes_data
        )
    model_docs = _param_docs(ModelConfig)
    for f in dataclasses.fields(ModelConfig):
        if f.name in FIT_DERIVED_FIELDS or f.name in options or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _EMPTY
        options[f.name] = FitOption(
            f.name, "network", default, _annotation_text(f.type), model_docs.get(f.name, "")
        )
    return options


def _data_keys(options: Mapping[str, FitOption]) -> list[str]:
    keys = list(_DATA_KEYS)
    keys += [f"{o.name}_path" for o in options.values() if o.takes_data]
    return keys


# ----------------------------------------------------------------------------------------
# reading, overriding and validating a configuration
# ----------------------------------------------------------------------------------------


def _tomllib() -> Any:
    for name in ("tomllib", "tomli"):  # tomllib from Python 3.11, tomli before
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            pass
    raise ConfigError("Reading TOML on Python 3.10 needs the tomli package: pip install tomli")


def _normalize(value: Any) -> Any:
    """Config values as fit() wants them: "none"/"null" -> None, dates -> ISO strings."""
    if isinstance(value, str) and value.strip().lower() in _NONE_STRINGS:
        return None
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal when it is one (``3``, ``true``, ``[1, 2]``,
    ``{time = 8}``, ``"x"``), else the text itself as a string."""
    tomllib = _tomllib()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:
        return text


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``SECTION.KEY[.SUBKEY...]=VALUE`` overrides to ``config`` (in place)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set fit.epochs=3 or "
                f"--set data.path=other.nc (sections: {', '.join(SECTIONS)})."
            )
        node = config
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"--set {item!r}: {where} is {child!r}, not a table, so it has no key "
                    f"{parts[depth + 1]!r}."
                )
            node = child
        node[parts[-1]] = parse_value(text.strip())
    return config


def load_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) configuration, apply
    ``--set`` overrides and normalize the values (no validation: see
    :func:`validate_config`)."""
    p = Path(path)
    ext = p.suffix.lower()
    if not p.is_file():
        raise ConfigError(f"The configuration file {os.fspath(path)!r} does not exist.")
    if ext == ".toml":
        tomllib = _tomllib()
        try:
            with open(p, "rb") as f:
                config = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{os.fspath(path)}: invalid TOML: {err}") from None
    elif ext in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ConfigError(
                f"Reading the YAML configuration {os.fspath(path)!r} needs PyYAML: "
                "pip install pyyaml (or write the configuration as TOML)."
            ) from None
        try:
            with open(p, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"{os.fspath(path)}: invalid YAML: {err}") from None
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError(
                f"{os.fspath(path)}: the top level must be a mapping with the sections "
                f"{', '.join(SECTIONS)}; got a {type(config).__name__}."
            )
    else:
        raise ConfigError(
            f"Cannot tell the format of the configuration {os.fspath(path)!r} from its "
            f"extension {ext or '(none)'!r}: use .toml, .yaml or .yml."
        )
    apply_overrides(config, overrides)
    return _normalize(config)


def _unknown_keys_message(section: str, unknown: Sequence[str], valid: Sequence[str]) -> str:
    hint = did_you_mean(unknown, valid)
    return f"Unknown key(s) in [{section}]: {', '.join(map(repr, unknown))}.{hint}"


def _validate_data_section(data: Mapping[str, Any], options: Mapping[str, FitOption]) -> None:
    """Check the [data] section (shared by fit and compare); opens no file."""
    data_keys = _data_keys(options)
    unknown = sorted(set(data) - set(data_keys))
    if unknown:
        raise ConfigError(
            _unknown_keys_message("data", unknown, data_keys)
            + f" Valid keys in [data]: {', '.join(data_keys)}."
        )
    path = data.get("path")
    if path is None:
        raise ConfigError('[data] needs path = "<netCDF file, glob or zarr store>".')
    if not (isinstance(path, str) or (isinstance(path, list) and path)):
        raise ConfigError(f"[data] path must be a string or a list of strings, got {path!r}.")
    for key in ("isel", "sel"):
        if not isinstance(data.get(key, {}), Mapping):
            raise ConfigError(
                f"[data] {key} must be a table of dimension = value, e.g. "
                f"{key} = {{time = [...]}}, got {data[key]!r}."
            )


def _check_sections(config: Mapping[str, Any], sections: Sequence[str]) -> None:
    """Only known sections, each a table of keys."""
    unknown = sorted(set(config) - set(sections))
    if unknown:
        raise ConfigError(
            f"Unknown section(s) {', '.join(f'[{s}]' for s in unknown)}. "
            f"Valid sections: {', '.join(f'[{s}]' for s in sections)}."
        )
    for section in sections:
        value = config.get(section, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{section}] must be a table of keys, got {value!r}.")


def validate_config(
    config: Mapping[str, Any], options: Mapping[str, FitOption] | None = None
) -> None:
    """Check the sections, the keys and the required values; opens no file."""
    if options is None:
        options = fit_options()
    _check_sections(config, SECTIONS)
    _validate_data_section(config.get("data", {}), options)

    fit = config.get("fit", {})
    settable = [n for n, o in options.items() if o.settable]
    problems = []
    for key in sorted(fit):
        opt = options.get(key)
        if opt is None or opt.settable:
            continue
        if opt.kind == "data":
            problems.append(f"{key!r} takes data: give the file as [data] {key}_path")
        else:
            problems.append(f"{key!r} takes a Python callable and cannot be set from a file")
    if problems:
        raise ConfigError(f"In [fit]: {'; '.join(problems)}.")
    unknown = sorted(set(fit) - set(settable))
    if unknown:
        training = [n for n in settable if options[n].kind == "training"]
        network = [n for n in settable if options[n].kind == "network"]
        raise ConfigError(
            _unknown_keys_message("fit", unknown, settable)
            + f" Valid keys in [fit]: training options: {', '.join(training)}; "
            f"network options: {', '.join(network)}."
        )
    missing = [n for n, o in options.items() if o.settable and o.required and n not in fit]
    if missing:
        raise ConfigError(
            f"[fit] needs {', '.join(missing)} (no default), e.g. "
            + ", ".join(f"{m} = 4" if m == "scale" else f"{m} = ..." for m in missing)
            + "."
        )

    output = config.get("output", {})
    unknown = sorted(set(output) - set(_OUTPUT_KEYS))
    if unknown:
        raise ConfigError(
            _unknown_keys_message("output", unknown, _OUTPUT_KEYS)
            + f" Valid keys in [output]: {', '.join(_OUTPUT_KEYS)}."
        )
    if not isinstance(output.get("model"), str) or not output["model"]:
        raise ConfigError(
            '[output] needs model = "<path of the model file>" (written with model.save).'
        )
    if "history" in output and not isinstance(output["history"], str):
        raise ConfigError(f"[output] history must be a path, got {output['history']!r}.")


# ----------------------------------------------------------------------------------------
# writing a configuration back as TOML
# ----------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (None as ``"none"``, which reads back as None)."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def format_config(config: Mapping[str, Any], options: Mapping[str, FitOption] | None = None) -> str:
    """The configuration as TOML; with ``options``, the [fit] options left at their
    defaults follow as comments."""
    out = []
    for section in SECTIONS:
        values = config.get(section, {})
        out.append(f"[{section}]")
        out += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in values.items()]
        if section == "fit" and options is not None:
            rest = [o for o in options.values() if o.settable and o.name not in values]
            if rest:
                out.append("# defaults:")
                out += [f"# {o.name} = {toml_value(o.default)}" for o in rest]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# opening data
# ----------------------------------------------------------------------------------------

_UNSET: Any = object()


def _is_zarr(path: str, engine: str | None) -> bool:
    if engine is not None:
        return engine == "zarr"
    p = path.rstrip("/\\")
    if p.endswith(".zarr"):
        return True
    return os.path.isdir(p) and any(
        os.path.exists(os.path.join(p, marker)) for marker in (".zgroup", "zarr.json")
    )


def _glob(pattern: str, what: str) -> list[str]:
    """The files matching ``pattern``, sorted; an error naming ``what`` when none does."""
    found = sorted(glob.glob(pattern))
    if not found:
        raise ConfigError(
            f"{what}: no file matches {pattern!r} (relative paths are relative to the "
            f"working directory {os.getcwd()!r})."
        )
    return found


def open_data(
    path: str | os.PathLike[str] | Sequence[str],
    *,
    engine: str | None = None,
    chunks: Any = _UNSET,
    what: str = "data",
) -> xr.Dataset:
    """Open a netCDF file, a list or glob of netCDF files, or a zarr store.

    ``.zarr`` stores (or ``engine="zarr"``) go through :func:`xarray.open_zarr`, several
    files through :func:`xarray.open_mfdataset`, everything else through
    :func:`xarray.open_dataset`; ``chunks`` is passed on when given.
    """
    kwargs: dict[str, Any] = {} if chunks is _UNSET else {"chunks": chunks}
    if isinstance(path, (str, os.PathLike)):
        patterns = [os.fspath(path)]
    else:
        patterns = [os.fspath(p) for p in path]
    p = patterns[0]
    if len(patterns) > 1 or any(c in p for c in "*?["):
        files: list[str] = []
        for pattern in patterns:
            files += _glob(pattern, what)
        if len(files) > 1:
            # variables without the concatenated dim (orography...) are taken from the
            # first file, not stacked along time
            return xr.open_mfdataset(
                files,
                engine=engine,
                combine="by_coords",
                data_vars="minimal",
                coords="minimal",
                compat="override",
                **kwargs,
            )
        p = files[0]
    if not os.path.exists(p):
        raise ConfigError(
            f"{what}: {p!r} does not exist (relative paths are relative to the working "
            f"directory {os.getcwd()!r})."
        )
    if _is_zarr(p, engine):
        return xr.open_zarr(p, **kwargs)
    return xr.open_dataset(p, engine=engine, **kwargs)


def _as_slice(value: Any) -> Any:
    """``[a, b]`` and ``{start=a, stop=b, step=c}`` -> ``slice``; anything else as is."""
    if isinstance(value, list) and len(value) == 2:
        return slice(value[0], value[1])
    if isinstance(value, Mapping) and value and set(value) <= {"start", "stop", "step"}:
        return slice(value.get("start"), value.get("stop"), value.get("step"))
    return value


def _select(
    ds: xr.Dataset, isel: Mapping[str, Any], sel: Mapping[str, Any], *, strict: bool, what: str
) -> xr.Dataset:
    for method, spec in (("isel", isel), ("sel", sel)):
        if not spec:
            continue
        missing = [d for d in spec if d not in ds.dims]
        if missing and strict:
            raise ConfigError(
                f"[data] {method} names {missing}, which are not dimensions of {what} "
                f"(its dimensions: {list(map(str, ds.dims))})."
            )
        indexers = {d: _as_slice(v) for d, v in spec.items() if d in ds.dims}
        if indexers:
            ds = getattr(ds, method)(indexers)
    return ds


def _subset(ds: xr.Dataset, names: str | Sequence[str], what: str) -> xr.Dataset:
    names = [names] if isinstance(names, str) else list(names)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise VariableError(
            f"{what} has no variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}."
        )
    return ds[names]


# ----------------------------------------------------------------------------------------
# writing outputs
# ----------------------------------------------------------------------------------------


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _check_output(
    path: str | os.PathLike[str], overwrite: bool, what: str, *, resume: bool = False
) -> None:
    """Refuse an existing output unless ``overwrite`` (or ``resume``, zarr: the store is
    checked and finished by :func:`xr_dl4ds.to_zarr`)."""
    if resume or overwrite or not os.path.lexists(path):
        return
    if _is_zarr_output(path):
        from .writing import is_complete

        try:
            complete = is_complete(os.fspath(path))
        except Exception:  # not a zarr group, or unreadable: not something to resume
            complete = True
        if not complete:
            raise ConfigError(
                f"{what} {os.fspath(path)!r} already exists: an incomplete store left by an "
                "interrupted run. Pass --resume to finish it (with the options of that "
                "run), --overwrite to start over, or choose another path."
            )
    raise ConfigError(
        f"{what} {os.fspath(path)!r} already exists. Pass --overwrite to replace it, "
        "or choose another path."
    )


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it to ``path``, on any
    failure remove it, so ``path`` is either the complete new output or untouched."""
    final = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if os.path.lexists(final):
            if not overwrite:
                raise ConfigError(
                    f"{final!r} appeared while writing; the new output was discarded. "
                    "Pass --overwrite to replace it."
                )
            if os.path.isdir(final) and not os.path.islink(final):
                old = f"{tmp}.old"
                os.replace(final, old)  # a directory cannot be replaced in one step
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                if os.path.isdir(tmp):
                    os.unlink(final)
                os.replace(tmp, final)
        else:
            os.replace(tmp, final)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def _clean_encoding(ds: xr.Dataset) -> xr.Dataset:
    """Drop the on-disk encoding inherited from the input (chunk sizes, compression,
    packing) that may not fit the new output; keep the time units and calendar."""
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("units", "calendar")}
    return ds


def _is_zarr_output(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).rstrip("/\\").endswith(".zarr")


def _client() -> Any:
    """The dask.distributed client in use, or None (local scheduler)."""
    if "distributed" not in sys.modules:  # a client exists only if distributed was imported
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


class _Throttled:
    """A text stream for progress bars: redraws (writes starting with ``\\r``) reach
    ``out`` at most every ``dt`` seconds, the last one held back is written before
    anything else (the final state and its newline), so that a batch log gets a line
    every ``dt`` while the bar itself is polled often (and stops without waiting)."""

    def __init__(self, out: Any, dt: float) -> None:
        self.out, self.dt = out, dt
        self.last = -math.inf
        self.pending = ""

    def write(self, text: str) -> int:
        now = time.monotonic()
        if text.startswith("\r") and now - self.last < self.dt:
            self.pending = text
            return len(text)
        if self.pending and not text.startswith("\r"):
            self.out.write(self.pending)
        self.pending = ""
        self.last = now if text.startswith("\r") else self.last
        return int(self.out.write(text) or 0)

    def flush(self) -> None:
        self.out.flush()


def _write_netcdf(ds: xr.Dataset, path: str, *, progress: bool) -> None:
    """``ds.to_netcdf(path)`` with a progress bar on stderr: dask's for the local
    scheduler, distributed's for a dask.distributed client."""
    # a batch log (stderr not a terminal) gets a line every 10 s, not every 0.1 s
    out: Any = sys.stderr if sys.stderr.isatty() else _Throttled(sys.stderr, 10.0)
    client = _client() if progress else None
    if client is not None:
        from distributed import progress as distributed_progress

        future = client.compute(ds.to_netcdf(path, compute=False))
        with contextlib.redirect_stdout(out):  # distributed draws on stdout
            distributed_progress(future, interval="100ms")
        if not sys.stderr.isatty():  # the bar ends with a carriage return
            print(file=sys.stderr, flush=True)
        future.result()
        return
    if progress:
        from dask.diagnostics import ProgressBar

        bar: contextlib.AbstractContextManager[Any] = ProgressBar(dt=0.1, out=out)
    else:
        bar = contextlib.nullcontext()
    with bar:
        ds.to_netcdf(path)


def write_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    progress: bool = False,
    resume: bool = False,
) -> Any:
    """Write ``ds`` to ``path``, computing it with the current dask scheduler.

    ``.zarr``: a zarr store written region by region with :func:`xr_dl4ds.to_zarr` on
    the final path (marked incomplete until it is finished; ``resume`` finishes an
    interrupted write, ``overwrite`` replaces an existing store) and returns its
    :class:`~xr_dl4ds.writing.WriteSummary`. Else netCDF, written to a temporary file
    that is renamed when complete, so a failure never leaves a partial file; returns
    None. ``progress`` shows a progress bar on stderr.
    """
    ds = _clean_encoding(ds)
    if _is_zarr_output(path):
        from .writing import to_zarr

        if isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path):
            parent = os.path.dirname(os.path.abspath(os.fspath(path)))
            os.makedirs(parent, exist_ok=True)
        mode: Literal["w-", "w", "resume"] = "resume" if resume else "w" if overwrite else "w-"
        with warnings.catch_warnings():
            # zarr 3 notes that consolidated metadata is not in its v3 spec; xarray
            # still reads it (and warns when it is missing), so keep writing it
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            return to_zarr(ds, os.fspath(path), mode=mode, progress=progress)
    if resume:
        raise ConfigError(_resume_netcdf_message(path))
    try:
        with _atomic_path(path, overwrite=overwrite) as tmp, _deferred_interrupt() as event:
            if event is not None:
                ds = _interruptible(ds, event)
            _write_netcdf(ds, tmp, progress=progress)
    except Exception as err:
        add_note = getattr(err, "add_note", None)  # Python >= 3.11
        if add_note is not None and not isinstance(err, DL4DSError):
            add_note(
                f"{PROG}: writing {os.fspath(path)!r} failed, so nothing was written there "
                "(the partial temporary file was removed). Fix the cause (disk space, "
                "permissions...) and rerun the command."
            )
        raise
    return None


class _Interrupted(Exception):
    """Raised by a dask task of a netCDF write once ctrl-C was pressed."""


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[threading.Event | None]:
    """Turn ctrl-C (SIGINT) during a netCDF write into an event that the write checks
    between chunks (see :func:`_interruptible`), then raise KeyboardInterrupt once the
    writer has closed the file.

    A KeyboardInterrupt raised at an arbitrary point of the writer can land between the
    acquisition and the release of one of xarray's file locks: closing the file then
    waits for that lock forever (the process hangs instead of exiting). A second ctrl-C
    interrupts at once. Yields None (nothing deferred) outside the main thread, under a
    dask.distributed client (whose tasks cannot share the event) or when SIGINT has a
    handler other than Python's default.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        or _client() is not None
    ):
        yield None
        return
    event = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():  # pressed twice: stop now
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    except _Interrupted:
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if event.is_set():  # pressed after the last chunk: the file is discarded all the same
        raise KeyboardInterrupt


def _stop_if_interrupted(block: Any, event: threading.Event) -> Any:
    if event.is_set():
        raise _Interrupted("interrupted")
    return block


def _interruptible(ds: xr.Dataset, event: threading.Event) -> xr.Dataset:
    """``ds`` whose dask chunks raise :class:`_Interrupted` once ``event`` is set, so a
    write stops at the next chunk through the writer's own error handling."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        data = var.data
        if hasattr(data, "dask") and hasattr(data, "map_blocks"):
            checked = data.map_blocks(
                _stop_if_interrupted, event, dtype=data.dtype, meta=getattr(data, "_meta", None)
            )
            out[name] = var.copy(data=checked)
    return out


def _resume_netcdf_message(path: str | os.PathLike[str]) -> str:
    return (
        f"--resume works only for zarr outputs (a path ending in .zarr); OUTPUT "
        f"{os.fspath(path)!r} is netCDF, which is written in one go to a temporary file "
        "and renamed, so an interrupted run leaves nothing to resume. Write to a .zarr "
        "store to be able to resume (e.g. OUTPUT fine.zarr), or drop --resume."
    )


def _make_readable(path: str | os.PathLike[str]) -> None:
    """Give a file written through a private temporary file the usual permissions
    (0666 minus the umask), as if it had been created directly."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# ----------------------------------------------------------------------------------------
# the subcommands
# ----------------------------------------------------------------------------------------


def _fit_kwargs(fit_cfg: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(fit_cfg)
    if "val_time" in kwargs:
        kwargs["val_time"] = _as_slice(kwargs["val_time"])
    return kwargs


def _open_inputs(
    stack: contextlib.ExitStack,
    data: Mapping[str, Any],
    kwargs: dict[str, Any],
    options: Mapping[str, FitOption],
) -> xr.Dataset:
    """Open [data] path (selected) and put the data of every ``<option>_path`` into
    ``kwargs`` (variables picked by ``kwargs[option]`` when set); the files stay open
    until ``stack`` closes."""
    chunks = data.get("chunks", _UNSET)
    engine = data.get("engine")
    isel, sel = data.get("isel", {}), data.get("sel", {})
    ds = stack.enter_context(
        open_data(data["path"], engine=engine, chunks=chunks, what="[data] path")
    )
    obj = _select(ds, isel, sel, strict=True, what=f"{data['path']!r}")
    for opt in options.values():
        key = f"{opt.name}_path"
        if not opt.takes_data or key not in data:
            continue
        extra = stack.enter_context(
            open_data(data[key], engine=engine, chunks=chunks, what=f"[data] {key}")
        )
        extra = _select(extra, {}, sel, strict=False, what=f"{data[key]!r}")
        if kwargs.get(opt.name) is not None:  # variable names picked from that file
            extra = _subset(extra, kwargs[opt.name], f"[data] {key} {data[key]!r}")
        kwargs[opt.name] = extra
    return obj


def _cmd_fit(args: argparse.Namespace) -> int:
    options = fit_options()
    config = load_config(args.config, args.set)
    validate_config(config, options)
    data, fit_cfg, output = config.get("data", {}), config.get("fit", {}), config["output"]
    outputs = [("[output] model", output["model"])]
    if output.get("history"):
        outputs.append(("[output] history", output["history"]))
    for what, path in outputs:
        _check_output(path, args.overwrite, what)
    main_process = _is_main_process()
    if args.dry_run:
        print(format_config(config, options), end="")
        return 0
    if main_process:
        print(f"# {PROG} fit {args.config}: configuration\n{format_config(config)}", flush=True)

    import xr_dl4ds

    kwargs = _fit_kwargs(fit_cfg)
    with contextlib.ExitStack() as stack:
        obj = _open_inputs(stack, data, kwargs, options)
        model = xr_dl4ds.fit(obj, **kwargs)

    if main_process:
        path = output["model"]
        with _atomic_path(path, overwrite=args.overwrite) as tmp:
            model.save(tmp)
        _make_readable(path)
        if output.get("history"):
            write_dataset(model.history, output["history"], overwrite=args.overwrite)
        print(repr(model))
        written = ", ".join(repr(p) for _, p in outputs)
        print(f"{PROG}: wrote {written}", flush=True)
    return 0


def _parse_chunks(items: Sequence[str] | None) -> dict[Hashable, Any] | None:
    if not items:
        return None
    chunks: dict[Hashable, Any] = {}
    for item in items:
        for part in item.split(","):
            dim, sep, size = part.partition("=")
            if not sep or not dim.strip() or not size.strip():
                raise ConfigError(
                    f"--chunks {item!r}: expected DIM=SIZE, e.g. --chunks time=8 "
                    "(several: time=8,lat=-1; SIZE may be -1 for one chunk or 'auto')."
                )
            size = size.strip()
            try:
                chunks[dim.strip()] = int(size)
            except ValueError:
                chunks[dim.strip()] = size
    return chunks


def _parse_variables(items: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    renames: dict[str, str] = {}
    for item in items or []:
        name, sep, model_name = item.partition("=")
        name, model_name = name.strip(), model_name.strip()
        if not name or (sep and not model_name):
            raise ConfigError(
                f"--variable {item!r}: expected NAME or NAME=MODEL_NAME, e.g. --variable tas "
                "or --variable tas=t2m."
            )
        names.append(name)
        if sep and model_name != name:
            renames[name] = model_name
    return names, renames


_SIZE_SYNTAX = {
    "--tile": (
        "N or DIM=N[,DIM=N], e.g. --tile 64 (cores of 64 x 64 coarse cells) or --tile "
        "lat=64,lon=128; N >= 1, or -1 for no tiling along that dim"
    ),
    "--halo": (
        "N or DIM=N[,DIM=N], e.g. --halo 8 or --halo lat=8,lon=8 (coarse cells of context "
        "around each tile); N >= 0"
    ),
}


def _parse_sizes(
    items: Sequence[str] | None, option: str, *, minimum: int
) -> int | dict[Hashable, int] | None:
    """``--tile``/``--halo``: ``N`` (both spatial dims) or ``DIM=N[,DIM=N]`` (repeatable,
    like --chunks) -> an int or ``{dim: n}``; ``--tile`` also takes -1 (no tiling)."""
    if not items:
        return None
    syntax = _SIZE_SYNTAX[option]
    both: int | None = None
    sizes: dict[Hashable, int] = {}
    for item in items:
        for part in item.split(","):
            dim, sep, text = part.rpartition("=")
            dim, text = dim.strip(), text.strip()
            if (sep and not dim) or not text:
                raise ConfigError(f"{option} {item!r}: expected {syntax}.")
            try:
                n = int(text)
            except ValueError:
                raise ConfigError(
                    f"{option} {item!r}: {text!r} is not an integer; expected {syntax}."
                ) from None
            if n < minimum and not (option == "--tile" and n == -1):
                raise ConfigError(f"{option} {item!r}: {n} is too small; expected {syntax}.")
            if not sep:
                if both is not None and both != n:
                    raise ConfigError(f"{option} is given twice ({both} and {n}); give it once.")
                both = n
            elif sizes.get(dim, n) != n:
                raise ConfigError(
                    f"{option} gives two sizes for {dim!r} ({sizes[dim]} and {n}); give one."
                )
            else:
                sizes[dim] = n
    if both is not None and sizes:
        raise ConfigError(
            f"{option} mixes a size for both spatial dims ({both}) with sizes per dim "
            f"({', '.join(f'{d}={n}' for d, n in sizes.items())}); expected {syntax}."
        )
    return both if both is not None else sizes


def _check_size_dims(
    sizes: int | Mapping[Hashable, int] | None,
    option: str,
    spatial: tuple[Hashable, Hashable],
    dims: Sequence[Hashable],
) -> None:
    if not isinstance(sizes, Mapping):
        return
    wrong = [d for d in sizes if d not in spatial]
    if wrong:
        y, x = map(str, spatial)
        raise ConfigError(
            f"{option} names {list(map(str, wrong))}, which "
            + (
                "are not spatial dimensions"
                if all(d in dims for d in wrong)
                else "are not dimensions"
            )
            + f" of the input (its dimensions: {list(map(str, dims))}; spatial: {y}, {x}). "
            f"Sizes are in coarse cells along the spatial dims, e.g. {option} {y}=64,{x}=64 "
            f"or {option} 64 for both."
        )


def _model_paths(text: str) -> list[str]:
    """MODEL: one model file, or several (an ensemble) as a comma-separated list of
    files and/or glob patterns, e.g. ``a.dl4ds,b.dl4ds`` or ``'members/*.dl4ds'``."""
    if os.path.exists(text):  # a path that happens to hold a comma or a glob character
        return [text]
    paths: list[str] = []
    items = [item.strip() for item in text.split(",")]
    for item in items:
        if not item:
            raise ConfigError(
                f"MODEL {text!r} has an empty item. Expected a model file, or several (an "
                "ensemble) separated by commas, e.g. m1.dl4ds,m2.dl4ds, or a quoted glob such "
                "as 'members/*.dl4ds'."
            )
        if any(c in item for c in "*?["):
            paths += _glob(item, "MODEL")
        elif os.path.exists(item):
            paths.append(item)
        else:
            part = f" (in MODEL {text!r})" if len(items) > 1 else ""
            raise ConfigError(
                f"MODEL {item!r}{part} does not exist (relative paths are relative to the "
                f"working directory {os.getcwd()!r})."
            )
    seen: set[str] = set()
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(
                f"MODEL {text!r} names the model file {path!r} twice; an ensemble needs "
                "different models (each gives one realization)."
            )
        seen.add(key)
    return paths


@contextlib.contextmanager
def _dask_client(address: str | None, scheduler_file: str | None) -> Iterator[Any]:
    """Connect a dask.distributed client to a running scheduler (``--scheduler``,
    ``--scheduler-file``) and make it the default for the block; without either, yield
    None and compute with the local threaded scheduler."""
    if address is None and scheduler_file is None:
        yield None
        return
    option = "--scheduler" if address is not None else "--scheduler-file"
    try:
        from distributed import Client
    except ModuleNotFoundError:
        raise ConfigError(
            f"{option} needs dask.distributed: pip install distributed (or "
            "'dask[distributed]'), or leave it out to compute with local threads."
        ) from None
    if scheduler_file is not None and not os.path.isfile(scheduler_file):
        raise ConfigError(
            f"--scheduler-file {scheduler_file!r} does not exist. It is the JSON file written "
            "by 'dask scheduler --scheduler-file PATH' (or dask-mpi/dask-jobqueue); start "
            "the scheduler first, or pass its address with --scheduler tcp://HOST:8786."
        )
    where = address if address is not None else f"the scheduler file {scheduler_file!r}"
    try:
        client = Client(address, scheduler_file=scheduler_file, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(
            f"{option}: could not connect to the dask scheduler at {where}: {err}. Expected "
            "the address of a running scheduler, e.g. tcp://HOST:8786 (started with 'dask "
            "scheduler'), reachable from this host; or leave the option out to compute "
            "with local threads."
        ) from None
    with client:
        workers = client.scheduler_info().get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        print(
            f"{PROG}: computing on the dask scheduler {client.scheduler.address} "
            f"({len(workers)} workers, {threads} threads; dashboard: {client.dashboard_link})"
            + ("; it has no workers yet: the work starts when some join" if not workers else ""),
            file=sys.stderr,
            flush=True,
        )
        yield client


# options of xr_dl4ds.downscale as the command line spells them (for its error messages)
_CLI_SPELLING = {
    "static=": "--static FILE",
    "tile=": "--tile",
    "halo=": "--halo",
    "samples=": "--samples N",
    "seed=": "--seed",
    "device=": "--device",
    "batch_size=": "--batch-size",
    "mode='w'": "--overwrite",
    "mode='resume'": "--resume",
}


def _with_cli_spelling(err: DL4DSError) -> DL4DSError:
    """``err`` with a note on how its Python names are given on the command line."""
    message = str(err)
    notes = [f"{k} is {v}" for k, v in _CLI_SPELLING.items() if k in message]
    if "list of models" in message:
        notes.append("a deep ensemble is several MODEL files separated by commas")
    if not notes:
        return err
    new = type(err)(f"{message} (On the command line: {'; '.join(notes)}.)")
    return new


def _cmd_downscale(args: argparse.Namespace) -> int:
    import xr_dl4ds
    from xr_dl4ds.data.pairing import get_time_dim

    # everything that needs no data first: the syntax of the options, the output
    is_zarr = _is_zarr_output(args.output)
    if args.resume and not is_zarr:
        raise ConfigError(_resume_netcdf_message(args.output))
    _check_output(args.output, args.overwrite, "OUTPUT", resume=args.resume)
    chunks = _parse_chunks(args.chunks)
    names, renames = _parse_variables(args.variable)
    tile = _parse_sizes(args.tile, "--tile", minimum=1)
    halo = _parse_sizes(args.halo, "--halo", minimum=0)
    model_paths = _model_paths(args.model)
    models = [xr_dl4ds.load(p) for p in model_paths]
    model = models[0]
    with contextlib.ExitStack() as stack:
        ds = stack.enter_context(
            open_data(args.input, engine=args.engine, chunks=None, what="INPUT")
        )
        static = None
        if args.static is not None:
            static = stack.enter_context(open_data(args.static, chunks=None, what="--static"))
        if not names:
            names = [n for n in model.target + model.predictors]
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise VariableError(
                    f"INPUT {args.input!r} lacks the variable(s) {missing} the model needs "
                    f"(target {list(model.target)}, predictors {list(model.predictors)}); it "
                    f"has {sorted(map(str, ds.data_vars))}. If a variable has another name "
                    "here, pass --variable NAME=MODEL_NAME."
                )
        coarse = _subset(ds, names, f"INPUT {args.input!r}").rename(renames)
        if chunks is None:
            tdim: Hashable | None = model.grid.time_dim
            if tdim not in coarse.dims:
                tdim = get_time_dim(coarse)
            chunks = {} if tdim is None else {tdim: 8}
        missing_dims = [d for d in chunks if d not in coarse.dims]
        if missing_dims:
            raise ConfigError(
                f"--chunks names {missing_dims}, which are not dimensions of the input "
                f"(its dimensions: {list(map(str, coarse.dims))})."
            )
        if isinstance(tile, Mapping) or isinstance(halo, Mapping):
            if model.grid.y in coarse.dims and model.grid.x in coarse.dims:
                spatial: tuple[Hashable, Hashable] = (model.grid.y, model.grid.x)
            else:
                spatial = xr_dl4ds.get_spatial_dims(coarse)
            _check_size_dims(tile, "--tile", spatial, list(coarse.dims))
            _check_size_dims(halo, "--halo", spatial, list(coarse.dims))
        coarse = coarse.chunk(chunks)
        if args.coarsen is not None:
            scale = model.scale if args.coarsen == "model" else args.coarsen
            coarse = xr_dl4ds.coarsen(coarse, scale)
        if len(models) > 1:
            members = ", ".join(f"{i}: {p}" for i, p in enumerate(model_paths))
            print(
                f"{PROG}: ensemble of {len(models)} models (realization {members})", file=sys.stderr
            )
        # connect last, so that mistakes above are reported without waiting for it
        stack.enter_context(_dask_client(args.scheduler, args.scheduler_file))
        try:
            fine = xr_dl4ds.downscale(
                coarse,
                models if len(models) > 1 else model,
                tile=tile,
                halo=halo,
                batch_size=args.batch_size,
                device=args.device,
                samples=args.samples,
                seed=args.seed,
                static=static,
            )
        except DL4DSError as err:
            raise _with_cli_spelling(err) from None
        back = {v: k for k, v in renames.items() if v in fine.variables}
        if back:
            fine = fine.rename(back)
        try:
            summary = write_dataset(
                fine,
                args.output,
                overwrite=args.overwrite,
                progress=args.progress,
                resume=args.resume,
            )
        except DL4DSError as err:
            if args.resume and not isinstance(err, ConfigError):
                raise type(err)(
                    f"{_with_cli_spelling(err)}\nTo resume, rerun with the MODEL, INPUT and "
                    "options (--variable, --chunks, --coarsen, --samples...) of the "
                    "interrupted run; or pass --overwrite instead of --resume to start over."
                ) from None
            raise _with_cli_spelling(err) from None
    if summary is not None and summary.already_complete:
        print(f"{PROG}: {args.output!r} is already complete; nothing to do.")
        return 0
    sizes = ", ".join(f"{d}: {n}" for d, n in fine.sizes.items())
    resumed = ""
    if summary is not None and summary.chunks_skipped:
        resumed = (
            f"; resumed: {summary.chunks_skipped} of {summary.n_chunks} chunks were already written"
        )
    print(
        f"{PROG}: wrote {args.output!r} ({', '.join(map(str, fine.data_vars))}; {sizes}{resumed})"
    )
    return 0


# ----------------------------------------------------------------------------------------
# evaluate and compare
# ----------------------------------------------------------------------------------------

COMPARE_SECTIONS = ("data", "compare", "output")
_COMPARE_OUTPUT_KEYS = ("dir", "models")
#: Arguments of xr_dl4ds.compare that a [compare] section does not set: the data (given
#: in [data]) and the outputs (given in [output]).
_COMPARE_NOT_IN_FILE = frozenset({"orography", "output_dir", "save_models"})
#: What evaluate and compare write into their output directory.
_REPORT_FILES = (
    "table.csv",
    "table.md",
    "scores.nc",
    "maps.png",
    "metrics.png",
    "spectra.png",
    "learning_curves.png",
)

EXAMPLE_COMPARE_TOML = """\
# compare.toml -- four configurations on the bundled ERA5 t2m sample, x4
[data]
path = "era5_t2m.nc"
isel = {lat = [0, 180]}           # 181 latitudes: keep a multiple of the scale

[compare]
target = "t2m"
scale = 4
static = ["orography", "lsm"]
test_fraction = 0.25              # the last 6 of 24 steps (or test_time = [a, b])
epochs = 10                       # the same budget for all (or time_budget = 120, seconds)
seed = 0
baselines = ["bicubic", "lapse_rate"]
batch_size = 16                   # any other key: a fit option shared by every configuration
patch_size = 64
steps_per_epoch = 12
n_filters = 8

[[compare.configs]]               # one table per configuration: fit options, and a name
backbone = "resnet"

[[compare.configs]]
backbone = "unet"
upsampling = "pin"

[[compare.configs]]
name = "resnet-rc-mse"
backbone = "resnet"
upsampling = "rc"
loss = "mse"

[output]
dir = "compare_t2m"               # table.csv, table.md, scores.nc and figures (png)
models = false                    # true: also models/<name>.dl4ds
"""


def compare_arguments() -> list[str]:
    """The keys of [compare] that are arguments of :func:`xr_dl4ds.compare` (read from its
    signature), ``configs`` first."""
    from .comparison import compare

    names = [
        n
        for n, p in inspect.signature(compare).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _COMPARE_NOT_IN_FILE
    ]
    return ["configs", *names]


def validate_compare_config(
    config: Mapping[str, Any], options: Mapping[str, FitOption] | None = None
) -> None:
    """Check a ``compare`` configuration (sections, keys, every configuration's options and
    the required values); opens no file."""
    from .comparison import _UNSUPPORTED, _check_configs

    if options is None:
        options = fit_options()
    _check_sections(config, COMPARE_SECTIONS)
    _validate_data_section(config.get("data", {}), options)

    settings = dict(config.get("compare", {}))
    own = compare_arguments()
    problems = []
    for key in sorted(settings):
        opt = options.get(key)
        if key in own or opt is None:
            continue
        if opt.kind == "data":
            problems.append(f"{key!r} takes data: give the file as [data] {key}_path")
        elif opt.kind == "python":
            problems.append(f"{key!r} takes a Python callable and cannot be set from a file")
        elif key in _UNSUPPORTED:
            problems.append(f"{key!r} is not supported: {_UNSUPPORTED[key]}")
    if problems:
        raise ConfigError(f"In [compare]: {'; '.join(problems)}.")
    shared = [
        n for n, o in options.items() if o.settable and n not in own and n not in _UNSUPPORTED
    ]
    unknown = sorted(set(settings) - set(own) - set(shared))
    if unknown:
        raise ConfigError(
            _unknown_keys_message("compare", unknown, own + shared)
            + f" Valid keys in [compare]: arguments of xr_dl4ds.compare: {', '.join(own)}; "
            f"fit options shared by every configuration: {', '.join(shared)}."
        )
    if settings.get("scale") is None:
        raise ConfigError("[compare] needs scale = <refinement factor>, e.g. scale = 4.")
    configs = settings.get("configs")
    if not isinstance(configs, list) or not configs:
        raise ConfigError(
            "[compare] needs configs: a list of tables of fit options, one per configuration, "
            'e.g. [[compare.configs]] backbone = "resnet" (TOML) or configs: [{backbone: '
            "resnet}] (YAML)."
        )
    _check_configs(configs, {k: v for k, v in settings.items() if k in shared})

    output = config.get("output", {})
    unknown = sorted(set(output) - set(_COMPARE_OUTPUT_KEYS))
    if unknown:
        raise ConfigError(
            _unknown_keys_message("output", unknown, _COMPARE_OUTPUT_KEYS)
            + f" Valid keys in [output]: {', '.join(_COMPARE_OUTPUT_KEYS)}."
        )
    if not isinstance(output.get("dir"), str) or not output["dir"]:
        raise ConfigError(
            '[output] needs dir = "<directory>" (for table.csv, table.md and the figures).'
        )
    if not isinstance(output.get("models", False), bool):
        raise ConfigError(f"[output] models must be true or false, got {output['models']!r}.")


def format_compare_config(config: Mapping[str, Any]) -> str:
    """A ``compare`` configuration as TOML (the configurations as ``[[compare.configs]]``)."""
    out = []
    for section in COMPARE_SECTIONS:
        values = dict(config.get(section, {}))
        configs = values.pop("configs", None) if section == "compare" else None
        out.append(f"[{section}]")
        out += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in values.items()]
        out.append("")
        for c in configs or []:
            out.append("[[compare.configs]]")
            out += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in c.items()]
            out.append("")
    return "\n".join(out)


def _check_report_dir(path: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse an output directory that already holds a table or figures, unless
    ``overwrite``."""
    if overwrite or not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise ConfigError(f"The output directory {os.fspath(path)!r} exists and is not one.")
    found = [f for f in _REPORT_FILES if os.path.lexists(os.path.join(path, f))]
    if found:
        raise ConfigError(
            f"The output directory {os.fspath(path)!r} already holds {', '.join(found)}. Pass "
            "--overwrite to replace them, or choose another directory."
        )


def _cmd_compare(args: argparse.Namespace) -> int:
    options = fit_options()
    config = load_config(args.config, args.set)
    validate_compare_config(config, options)
    output = config["output"]
    _check_report_dir(output["dir"], args.overwrite)
    if args.dry_run:
        print(format_compare_config(config), end="")
        return 0
    print(f"# {PROG} compare {args.config}: configuration\n{format_compare_config(config)}")

    import xr_dl4ds

    from .comparison import to_markdown

    kwargs = _fit_kwargs(config.get("compare", {}))
    if "test_time" in kwargs:
        kwargs["test_time"] = _as_slice(kwargs["test_time"])
    configs = kwargs.pop("configs")
    with contextlib.ExitStack() as stack:
        obj = _open_inputs(stack, config.get("data", {}), kwargs, options)
        table = xr_dl4ds.compare(
            obj,
            configs,
            output_dir=output["dir"],
            save_models=bool(output.get("models", False)),
            **kwargs,
        )
    print(to_markdown(table))
    written = [f for f in _REPORT_FILES if os.path.exists(os.path.join(output["dir"], f))]
    models = " and models/" if output.get("models") else ""
    print(f"{PROG}: wrote {', '.join(written)}{models} in {output['dir']!r}", flush=True)
    return 0


def _prediction_paths(items: Sequence[str]) -> dict[str, str]:
    """``{name: path}`` of the PREDICTION arguments (``NAME=PATH`` or ``PATH``, named
    after the file)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or os.path.exists(item):
            name, path = Path(item.rstrip("/\\")).stem, item
        name = name.strip()
        if name in out:
            raise ConfigError(
                f"Two predictions are called {name!r} ({out[name]!r} and {path!r}); name them "
                "with NAME=PATH, e.g. resnet=a/fine.nc unet=b/fine.nc."
            )
        out[name] = path
    return out


def _names_list(text: str | None, what: str) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; ``"none"`` -> ``[]``; None -> None (the default)."""
    if text is None:
        return None
    if text.strip().lower() in _NONE_STRINGS or not text.strip():
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ConfigError(f"{what} {text!r}: expected names separated by commas, e.g. a,b.")
    return names


def _at_times(obj: xr.Dataset, like: xr.Dataset, what: str) -> xr.Dataset:
    """``obj`` at the time steps of ``like`` when both have them (else ``obj``)."""
    from .data.pairing import get_time_dim

    t = get_time_dim(like)
    if t is None or t not in obj.dims or t not in obj.coords or t not in like.coords:
        return obj
    if obj.sizes[t] == like.sizes[t] and obj.indexes[t].equals(like.indexes[t]):
        return obj
    missing = ~like.indexes[t].isin(obj.indexes[t])
    if missing.any():
        first = like.indexes[t][missing][0]
        raise ConfigError(
            f"{what} lacks {int(missing.sum())} of the predictions' {like.sizes[t]} time steps "
            f"(the first: {first}). Evaluate over a period that both cover."
        )
    return obj.sel({t: like.indexes[t]})


def _orography_arg(value: str | None, truth: xr.Dataset) -> xr.DataArray | None:
    if value is None:
        from .comparison import _find_orography

        return _find_orography(truth, None)
    if value in truth.data_vars:
        return truth[value]
    if not os.path.exists(value):
        raise VariableError(
            f"--orography {value!r} is neither a variable of TRUTH (it has "
            f"{sorted(map(str, truth.data_vars))}) nor a file."
        )
    from .comparison import _find_orography

    ds = open_data(value, what="--orography")
    found = _find_orography(ds, None)
    if found is None and len(ds.data_vars) == 1:
        found = next(iter(ds.data_vars.values()))
    if found is None:
        raise VariableError(
            f"--orography {value!r}: cannot tell which variable is the orography among "
            f"{sorted(map(str, ds.data_vars))}; give it standard_name = 'surface_altitude' or "
            "the name 'orog'."
        )
    return found


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import xr_dl4ds

    from .baselines import BASELINES
    from .comparison import (
        baseline_fields,
        scores_to_frame,
        to_markdown,
        write_figures,
        write_table,
    )
    from .evaluation import _infer_scale

    _check_report_dir(args.out, args.overwrite)
    paths = _prediction_paths(args.predictions)
    base_names = _names_list(args.baselines, "--baselines")
    if base_names is None:
        base_names = ["bicubic"]
    unknown = [b for b in base_names if b not in BASELINES]
    if unknown:
        raise ConfigError(f"--baselines: unknown {unknown}; choose from {', '.join(BASELINES)}.")
    metrics = _names_list(args.metrics, "--metrics")
    with contextlib.ExitStack() as stack:
        truth = stack.enter_context(open_data(args.truth, engine=args.engine, what="TRUTH"))
        preds = {
            name: stack.enter_context(open_data(p, engine=args.engine, what=f"PREDICTION {p!r}"))
            for name, p in paths.items()
        }
        first_name, first = next(iter(preds.items()))
        y, x = xr_dl4ds.get_spatial_dims(truth)
        names = args.variable or [
            str(n)
            for n, v in first.data_vars.items()
            if {y, x} <= set(v.dims) and n in truth.data_vars
        ]
        if not names:
            raise VariableError(
                f"PREDICTION {paths[first_name]!r} has no variable of TRUTH on the grid: it "
                f"has {sorted(map(str, first.data_vars))}, TRUTH "
                f"{sorted(map(str, truth.data_vars))}. Pass --variable NAME."
            )
        preds = {k: _subset(v, names, f"PREDICTION {paths[k]!r}").load() for k, v in preds.items()}
        orography = (
            _orography_arg(args.orography, truth)
            if "lapse_rate" in base_names or args.orography
            else None
        )
        truth_vars = _at_times(
            _subset(truth, names, f"TRUTH {args.truth!r}"), preds[first_name], "TRUTH"
        ).load()
        coarse = None
        if args.coarse is not None:
            coarse_ds = stack.enter_context(
                open_data(args.coarse, engine=args.engine, what="--coarse")
            )
            coarse = _at_times(
                _subset(coarse_ds, names, f"--coarse {args.coarse!r}"), truth_vars, "--coarse"
            ).load()
        scores = xr_dl4ds.evaluate(
            truth_vars,
            preds,
            coarse=coarse,
            scale=args.scale,
            baselines=base_names,
            orography=orography,
            metrics=metrics,
        )
    table = scores_to_frame(scores)
    write_table(table, args.out)
    scores.to_netcdf(Path(args.out) / "scores.nc")
    if args.figures:
        scale = args.scale
        if scale is None and base_names:
            scale = _infer_scale(truth_vars, coarse, preds, y, x)
        base_fields: dict[str, xr.Dataset] = {}
        if base_names and scale is not None:
            source = coarse if coarse is not None else xr_dl4ds.coarsen(truth_vars, scale)
            base_fields, _ = baseline_fields(
                source, base_names, scale=scale, orography=orography, spatial_dims=(y, x)
            )
        write_figures(
            args.out,
            scores=scores,
            truth=truth_vars,
            predictions=preds,
            baselines=base_fields,
            coarse=coarse,
        )
    print(to_markdown(table))
    written = [f for f in _REPORT_FILES if os.path.exists(os.path.join(args.out, f))]
    print(f"{PROG}: wrote {', '.join(written)} in {args.out!r}", flush=True)
    return 0


# ----------------------------------------------------------------------------------------
# the parser
# ----------------------------------------------------------------------------------------


def _describe_options(options: Mapping[str, FitOption], width: int = 88) -> str:
    def block(kind: str) -> list[str]:
        lines = []
        for o in options.values():
            if o.kind != kind:
                continue
            if o.required:
                head = f"  {o.name}  (required)"
            elif o.default is None:
                head = f"  {o.name}  (default: none)"
            else:
                head = f"  {o.name} = {toml_value(o.default)}"
            doc = o.doc
            if o.kind == "data":
                doc = f"set [data] {o.name}_path (a file). {doc}"
            elif o.kind == "python":
                doc = f"Python only (not settable from a file). {doc}"
            elif o.takes_data:
                doc = f"{doc} Or variables of the file [data] {o.name}_path."
            text = textwrap.fill(
                doc.strip(), width=width, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
            lines.append(head + ("\n" + text if text.strip() else ""))
        return lines

    parts = ["[fit] training options (keyword options of xr_dl4ds.fit):", *block("training")]
    parts += ["", "[fit] network options (fields of xr_dl4ds.models.ModelConfig):"]
    parts += block("network")
    other = block("data") + block("python")
    if other:
        parts += ["", "options of xr_dl4ds.fit not set in [fit]:", *other]
    return "\n".join(parts)


_FIT_DESCRIPTION = """\
Train a downscaling model from a configuration file (TOML, or YAML when PyYAML is
installed; chosen by the extension .toml / .yaml / .yml) and write it to [output] model.

The file has three sections:

  [data]    path         netCDF file, list or glob of files (open_mfdataset), or zarr store
            engine       xarray engine (optional; "zarr" forces a zarr store)
            chunks       passed to xarray when opening, e.g. {time = 8} (dask)
            isel, sel    selections {dim = value}, isel applied first; a 2-element list is
                         a range: isel [start, stop) by index, sel [start, stop] by label
                         (e.g. time = ["2000", "2009"]; "none" leaves an end open);
                         {start = .., stop = .., step = ..} also works
            <option>_path  a file for a fit option that takes data: lowres_path (MOS: the
                         coarse input from another source), predictors_path, static_path;
                         fit.predictors / fit.static then pick variables of that file.
                         sel is applied to these files too (dims they lack are skipped).
  [fit]     any keyword option of xr_dl4ds.fit (listed below), network options included.
            The string "none" means None; dates become ISO strings; val_time = [a, b] is
            a range like sel.
  [output]  model        path of the model file (required)
            history      netCDF path for the training history (optional)

Unknown sections and keys are errors (listing the valid keys), found before any data is
opened. Relative paths are relative to the working directory. Outputs are written
atomically and never replace existing files without --overwrite.

Several processes: launch the same command with torchrun, e.g.
  torchrun --nproc-per-node=4 -m xr_dl4ds fit config.toml
fit() joins the process group itself (RANK/WORLD_SIZE); only the process with RANK 0
(or no RANK) writes the output files and prints the summary.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be computed when help is shown
    (``epilog_factory``), so that ``xr-dl4ds --help`` does not import torch."""

    def __init__(
        self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
            self._epilog_factory = None
        return super().format_help()


def _fit_epilog() -> str:
    return (
        "example configuration:\n\n"
        + textwrap.indent(EXAMPLE_TOML, "  ")
        + "\n"
        + _describe_options(fit_options())
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``xr-dl4ds`` argument parser (the fit options are listed from the current
    signature of :func:`xr_dl4ds.fit`)."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description=(
            "Deep-learning downscaling of gridded climate data (xr_dl4ds) from the\n"
            "command line, for batch and HPC jobs."
        ),
        epilog=textwrap.dedent(
            f"""\
            commands:
              {PROG} fit CONFIG [--set KEY=VALUE ...] [--dry-run]
                  train a model from a TOML/YAML configuration
              {PROG} downscale MODEL INPUT OUTPUT [options]
                  downscale a netCDF file or zarr store with a trained model
              {PROG} evaluate TRUTH PREDICTION [PREDICTION ...] --out DIR [options]
                  score downscaled files next to baselines: table and figures
              {PROG} compare CONFIG [--set KEY=VALUE ...] [--dry-run]
                  train and score several configurations on one split

            examples:
              {PROG} fit config.toml --set fit.epochs=3 --dry-run
              torchrun --nproc-per-node=4 -m xr_dl4ds fit config.toml
              {PROG} downscale t2m.dl4ds gcm_t2m.nc t2m_fine.zarr --chunks time=8
              {PROG} evaluate era5_test.nc t2m_fine.nc --scale 4 --out evaluation
              {PROG} compare compare.toml --set compare.time_budget=60

            Errors in the data or the configuration print '{PROG}: error: ...' and exit
            with status 2. '{PROG} COMMAND --help' documents each command.
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    p_fit = sub.add_parser(
        "fit",
        help="train a model from a TOML/YAML configuration file",
        description=_FIT_DESCRIPTION,
        epilog_factory=_fit_epilog,  # the options of fit() as they are now
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_fit.add_argument("config", metavar="CONFIG", help="configuration file (.toml, .yaml, .yml)")
    p_fit.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a configuration value, e.g. --set fit.epochs=3 --set "
        'data.sel.time=\'["2000", "2009"]\'; VALUE is read as a TOML literal when it is '
        "one, else as a string (repeatable)",
    )
    p_fit.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the configuration, print it resolved (with the defaults as comments) "
        "and exit without opening any data",
    )
    p_fit.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (checked before training starts)",
    )
    p_fit.set_defaults(func=_cmd_fit)

    p_ds = sub.add_parser(
        "downscale",
        help="downscale a netCDF file or zarr store with a trained model",
        description=textwrap.dedent(
            """\
            Downscale INPUT (netCDF file, glob of files, or zarr store) with MODEL (a file
            written by fit / model.save; several, comma-separated or a quoted glob, make a
            deep ensemble) and write OUTPUT: a zarr store when OUTPUT ends in .zarr, else
            netCDF. The input is read lazily in chunks along time and computed chunk by
            chunk (on the GPU when there is one), with a progress bar on stderr; with
            --tile, each chunk runs tile by tile, so the device memory is bounded by the
            tile and not by the domain.

            A netCDF OUTPUT is written to a temporary path next to it and renamed when
            complete, so a failure never leaves a partial file. A zarr OUTPUT is written
            region by region on its final path and marked incomplete until the last
            region is written (xr_dl4ds.writing.is_complete); an interrupted run (killed,
            out of memory, end of the job's time) is finished by running the same command
            with --resume, which computes only the missing regions. An existing OUTPUT is
            kept unless --overwrite (or, for zarr, --resume) is given.

            Computation uses local threads, or a dask.distributed cluster with
            --scheduler / --scheduler-file (the workers must read INPUT, MODEL and OUTPUT
            at the same paths).
            """
        ),
        epilog=textwrap.dedent(
            f"""\
            sizes (--tile, --halo) are in cells of the coarse input (after --coarsen):
              N                  the same size along both spatial dims
              DIM=N[,DIM=N]      per spatial dim, e.g. lat=64,lon=128 (repeatable, like
                                 --chunks); --tile DIM=-1: no tiling along DIM

            examples:
              {PROG} downscale t2m.dl4ds gcm_t2m.nc t2m_fine.nc
              {PROG} downscale t2m.dl4ds gcm.zarr fine.zarr --variable tas=t2m --chunks time=16
              # perfect-prognosis evaluation: coarsen high-res truth by the model's scale first
              {PROG} downscale t2m.dl4ds era5_t2m.nc t2m_pp.nc --coarsen
              # a large domain on a GPU: tiles of 64 x 64 coarse cells
              {PROG} downscale t2m.dl4ds gcm.zarr fine.zarr --tile 64 --device cuda
              # deep ensemble and Monte-Carlo dropout: a 'realization' dimension
              {PROG} downscale seed0.dl4ds,seed1.dl4ds,seed2.dl4ds gcm.nc ens.zarr
              {PROG} downscale 'members/*.dl4ds' gcm.nc ens.zarr
              {PROG} downscale mc.dl4ds gcm.nc mc.zarr --samples 20 --seed 1
              # another domain: its high-resolution static fields (orography...)
              {PROG} downscale t2m.dl4ds gcm_alps.nc alps.zarr --static alps_static.nc
              # on a dask cluster; rerun with --resume after an interruption
              {PROG} downscale t2m.dl4ds gcm.zarr fine.zarr --scheduler tcp://node1:8786
              {PROG} downscale t2m.dl4ds gcm.zarr fine.zarr --scheduler tcp://node1:8786 --resume
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_ds.add_argument(
        "model",
        metavar="MODEL",
        help="model file (from fit / model.save); several models, separated by commas "
        "(a.dl4ds,b.dl4ds) or matching a quoted glob ('members/*.dl4ds', sorted), are a deep "
        "ensemble: one member each along a 'realization' dimension, in that order",
    )
    p_ds.add_argument("input", metavar="INPUT", help="coarse data: netCDF, glob, or .zarr")
    p_ds.add_argument("output", metavar="OUTPUT", help="result: .zarr store, else netCDF")
    p_ds.add_argument(
        "--variable",
        metavar="NAME[=MODEL_NAME]",
        action="append",
        help="variable of INPUT to downscale (repeatable; default: the model's target and "
        "predictor variables). NAME=MODEL_NAME uses INPUT's NAME as the model's MODEL_NAME "
        "(the output keeps NAME)",
    )
    p_ds.add_argument(
        "--chunks",
        metavar="DIM=SIZE",
        action="append",
        help="dask chunks of INPUT, e.g. --chunks time=8 or time=8,member=1 (repeatable; "
        "default: 8 time steps per chunk). Memory per task grows with the chunk size",
    )
    p_ds.add_argument(
        "--tile",
        metavar="N|DIM=N",
        action="append",
        help="run the network tile by tile, on cores of N x N coarse cells (or DIM=N per "
        "spatial dim, e.g. lat=64,lon=128; -1: no tiling along DIM). The output is the same "
        "as without tiling; device memory is bounded by the tile (default: no tiling)",
    )
    p_ds.add_argument(
        "--halo",
        metavar="N|DIM=N",
        action="append",
        help="coarse cells of context around each tile (N or DIM=N, N >= 0; default: the "
        "network's receptive field, which makes tiled output equal untiled output; smaller "
        "is faster but approximate near tile edges)",
    )
    p_ds.add_argument(
        "--coarsen",
        metavar="SCALE",
        nargs="?",
        const="model",
        type=_scale_arg,
        help="block-mean coarsen INPUT by SCALE first (without a value: the model's scale), "
        "to evaluate on high-resolution data (perfect prognosis)",
    )
    p_ds.add_argument(
        "--static",
        metavar="FILE",
        help="netCDF file or zarr store with the high-resolution static fields the model "
        "uses (e.g. orography), for INPUT on another grid than the training grid: on the "
        "high-resolution grid of INPUT (its cells split SCALE x SCALE)",
    )
    p_ds.add_argument(
        "--samples",
        metavar="N",
        type=_int_arg(1),
        help="Monte-Carlo dropout samples per model (models trained with dropout_variant "
        "'mcdrop', 'mcspatialdrop' or 'mcgaussiandrop'): adds a 'realization' dimension of "
        "N members (times the number of models)",
    )
    p_ds.add_argument(
        "--seed",
        metavar="N",
        type=_int_arg(0),
        default=0,
        help="seed of the Monte-Carlo samples (default: 0); the same seed gives the same "
        "samples whatever the chunks, tiles or scheduler",
    )
    p_ds.add_argument("--engine", help="xarray engine for INPUT (default: from the path)")
    p_ds.add_argument(
        "--device",
        default="auto",
        help='torch device: "auto" (default: CUDA where the work runs, when it has it), '
        '"cpu", "cuda", "cuda:N"',
    )
    p_ds.add_argument(
        "--batch-size",
        metavar="N",
        type=_int_arg(1),
        default=8,
        help="samples per forward pass (default: 8)",
    )
    sched = p_ds.add_mutually_exclusive_group()
    sched.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="compute on a running dask.distributed scheduler, e.g. tcp://node1:8786 "
        "(default: local threads)",
    )
    sched.add_argument(
        "--scheduler-file",
        metavar="PATH",
        help="compute on the dask.distributed scheduler described by this JSON file (dask "
        "scheduler --scheduler-file PATH, dask-mpi, dask-jobqueue)",
    )
    p_ds.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show a progress bar on stderr (default: on)",
    )
    write = p_ds.add_mutually_exclusive_group()
    write.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    write.add_argument(
        "--resume",
        action="store_true",
        help="zarr OUTPUT only: finish the store an interrupted run left (computing only the "
        "missing regions; run with the same MODEL, INPUT and options), do nothing if it is "
        "complete, start it if it does not exist",
    )
    p_ds.set_defaults(func=_cmd_downscale)

    p_ev = sub.add_parser(
        "evaluate",
        help="score downscaled files against the truth, next to baselines",
        description=textwrap.dedent(
            """\
            Score one or several PREDICTION files (netCDF or zarr, e.g. written by
            downscale) against TRUTH (high-resolution netCDF or zarr) with
            xr_dl4ds.evaluate, next to baselines computed from the coarse input (--coarse
            FILE, or the block mean of TRUTH at --scale N), on the same cells, and write
            into --out DIR:

              table.csv, table.md   one row per prediction and baseline: every metric and
                                    the skill over each baseline (Markdown rounded)
              scores.nc             the same scores as an xarray Dataset
              maps.png              coarse input, baselines, predictions, truth and errors
                                    at the first time step
              metrics.png           bars of the RMSE and of its skill over each baseline
              spectra.png           power spectra averaged over time

            The variables scored are those of the first PREDICTION that TRUTH has
            (--variable to choose). TRUTH and --coarse are restricted to the predictions'
            time steps. The scale is read from --scale, from --coarse, or from the 'source'
            attribute that downscale writes.
            """
        ),
        epilog=textwrap.dedent(
            f"""\
            examples:
              {PROG} evaluate era5_test.nc resnet_fine.nc --scale 4 --out eval
              {PROG} evaluate era5_test.nc resnet=a/fine.nc unet=b/fine.nc \\
                  --coarse era5_test_4deg.nc --baselines bicubic,lapse_rate --out eval
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_ev.add_argument("truth", metavar="TRUTH", help="high-resolution truth: netCDF or .zarr")
    p_ev.add_argument(
        "predictions",
        metavar="PREDICTION",
        nargs="+",
        help="downscaled file(s) on TRUTH's grid, as NAME=PATH or PATH (named after the file)",
    )
    p_ev.add_argument(
        "--out", metavar="DIR", required=True, help="directory for the table and figures"
    )
    scale_group = p_ev.add_mutually_exclusive_group()
    scale_group.add_argument(
        "--coarse",
        metavar="FILE",
        help="the coarse input of the baselines (e.g. what was downscaled)",
    )
    scale_group.add_argument(
        "--scale",
        metavar="N",
        type=_int_arg(2),
        help="the baselines interpolate the block mean of TRUTH at this scale",
    )
    p_ev.add_argument(
        "--baselines",
        metavar="NAMES",
        help="comma-separated baselines among bicubic, bilinear, nearest, lapse_rate "
        "(default: bicubic; 'none': no baseline)",
    )
    p_ev.add_argument(
        "--metrics",
        metavar="NAMES",
        help="comma-separated metrics (default: rmse, mae, bias, pearson_r, spearman_r, "
        "ssim, psnr)",
    )
    p_ev.add_argument(
        "--variable",
        metavar="NAME",
        action="append",
        help="variable to score (repeatable; default: those of the first PREDICTION that "
        "TRUTH has)",
    )
    p_ev.add_argument(
        "--orography",
        metavar="NAME|FILE",
        help="high-resolution orography for lapse_rate: a variable of TRUTH or a file "
        "(default: TRUTH's variable with standard_name surface_altitude, or orog)",
    )
    p_ev.add_argument("--engine", help="xarray engine for the input files (default: from the path)")
    p_ev.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the figures (default: on; needs matplotlib)",
    )
    p_ev.add_argument(
        "--overwrite", action="store_true", help="replace the table and figures in DIR"
    )
    p_ev.set_defaults(func=_cmd_evaluate)

    p_cmp = sub.add_parser(
        "compare",
        help="train and score several configurations on one split (TOML/YAML)",
        description=textwrap.dedent(
            """\
            Train several configurations on the same split, with the same seed and budget,
            and score them next to baselines on the same test period (xr_dl4ds.compare).
            The configuration file (TOML, or YAML with PyYAML) has three sections:

              [data]     as for fit: path, engine, chunks, isel, sel, <option>_path
              [compare]  arguments of xr_dl4ds.compare: target, scale, static, test_time
                         ([a, b]: a range of labels) or test_fraction, epochs or
                         time_budget (seconds per configuration), seed, baselines,
                         metrics, device, progress; any other key is a fit option shared
                         by every configuration (batch_size, patch_size, n_filters...);
                         configs: the list of configurations, each a table of fit
                         options ([[compare.configs]] in TOML) with an optional name
              [output]   dir (required): table.csv, table.md, scores.nc, maps.png,
                         metrics.png, spectra.png, learning_curves.png;
                         models = true: also models/<name>.dl4ds

            Unknown keys, in [compare] and in every configuration, are errors that list the
            valid ones, found before any data is opened. With several GPUs the
            configurations train at the same time, one process per GPU.
            """
        ),
        epilog="example configuration:\n\n" + textwrap.indent(EXAMPLE_COMPARE_TOML, "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_cmp.add_argument("config", metavar="CONFIG", help="configuration file (.toml, .yaml, .yml)")
    p_cmp.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a configuration value, e.g. --set compare.epochs=3 (repeatable)",
    )
    p_cmp.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the configuration, print it and exit without opening any data",
    )
    p_cmp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the table and figures in [output] dir (checked before training)",
    )
    p_cmp.set_defaults(func=_cmd_compare)
    return parser


def _int_arg(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return n

    parse.__name__ = "integer"
    return parse


def _scale_arg(text: str) -> int | str:
    if text == "model":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SCALE must be an integer, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xr-dl4ds`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    xr_dl4ds errors (configuration errors included) are printed as
    ``xr-dl4ds: error: <message>`` with status 2; an interruption (ctrl-C, SIGINT) is
    printed as one line, ``xr-dl4ds: interrupted: <what is left and how to go on>``, with
    status 130 (128 + SIGINT, as shells report it); other exceptions propagate.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DL4DSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: {_interrupted_message(args)}", file=sys.stderr, flush=True)
        return 130


def _interrupted_message(args: argparse.Namespace) -> str:
    """What an interrupted command left behind and how to go on (one line)."""
    command = getattr(args, "func", None)
    if command is _cmd_fit:
        return (
            "the outputs not yet written are absent, none is partial. If [fit] "
            "checkpoint_path is set, continue from the last checkpoint: rerun with "
            "--set fit.resume=<checkpoint_path>."
        )
    if command is _cmd_downscale:
        if _is_zarr_output(args.output):
            from .writing import is_complete

            try:
                complete = is_complete(os.fspath(args.output))
            except Exception:  # no store there (interrupted before it was created)
                complete = True
            if not complete:
                return (
                    f"the zarr store {args.output!r} is incomplete (its finished chunks are "
                    "kept): rerun the same command with --resume to write the rest."
                )
        return f"nothing was written to {args.output!r}: rerun the command."
    if command in (_cmd_evaluate, _cmd_compare):
        return "the report may be incomplete: rerun the command with --overwrite."
    return "stopped before the end."
