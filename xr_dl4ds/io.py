"""The model file: one self-describing file, read without executing code.

Layout (``torch.save`` of plain containers, read with ``torch.load(weights_only=True)``,
which refuses pickled code)::

    {
      "format": "xr_dl4ds.Downscaler",
      "format_version": 1,
      "metadata": "<JSON: config, variables, normalization with units, attrs, grids,
                   training options, package versions>",
      "state_dict": {name: tensor, ...},           # network weights
      "arrays": {"static": ..., "static_lowres": ..., "mask": ...,
                 "grid/lowres/<coord>": ..., "grid/highres/<coord>": ...,
                 "history/<var>": ...},
    }
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .exceptions import DL4DSError, ModelFileError, RegistryError

if TYPE_CHECKING:
    from .downscaler import Downscaler

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "xr_dl4ds.Downscaler"
FORMAT_VERSION = 1


def _to_json(value: Any) -> Any:
    """Attribute values to JSON, tagging numpy arrays so they come back as arrays."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


#: The largest item of an attribute array read back (bytes): a model file cannot make
#: ``load`` allocate gigabytes from a few bytes of JSON.
_MAX_ITEMSIZE = 4096


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            dtype = np.dtype(value["dtype"])
            if dtype.itemsize > _MAX_ITEMSIZE:  # e.g. "U999999999": gigabytes per item
                raise ValueError(f"an attribute array has the dtype {dtype}, too large an item")
            return np.asarray(value["__ndarray__"], dtype=dtype)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _dataset_to_payload(ds: xr.Dataset, prefix: str, arrays: dict[str, Any]) -> dict[str, Any]:
    import torch

    spec: dict[str, Any] = {}
    # coordinates first, then data variables: the order load() rebuilds them in, so a
    # model and its reloaded copy serialize (and hash, model_id) the same
    for name in [*ds.coords, *ds.data_vars]:
        var = ds.variables[name]
        values = np.asarray(var.values)
        if values.dtype.kind not in "biuf":
            raise ModelFileError(
                f"Cannot store the variable {name!r} of dtype {values.dtype} in a model file "
                "(only numeric grid coordinates are stored)."
            )
        spec[str(name)] = {
            "dims": [str(d) for d in var.dims],
            "attrs": _to_json(var.attrs),
            "dtype": str(values.dtype),
            "coord": name in ds.coords,
        }
        arrays[f"{prefix}/{name}"] = torch.from_numpy(np.array(values, copy=True, order="C"))
    return spec


def _dataset_from_payload(
    spec: Mapping[str, Any], prefix: str, arrays: Mapping[str, Any]
) -> xr.Dataset:
    coords: dict[str, xr.Variable] = {}
    data_vars: dict[str, xr.Variable] = {}
    for name, s in spec.items():
        dtype = np.dtype(s["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"{prefix}/{name} has the dtype {dtype}; grid variables are numeric")
        values = arrays[f"{prefix}/{name}"].numpy().astype(dtype, copy=False)
        var = xr.Variable(tuple(s["dims"]), values, attrs=_from_json(s["attrs"]))
        (coords if s["coord"] else data_vars)[name] = var
    return xr.Dataset(data_vars, coords=coords)


def save(model: Downscaler, path: str | os.PathLike[str] | IO[bytes]) -> None:
    """Write ``model`` to ``path`` (atomically: a failed write leaves no partial file).

    The same as :meth:`xr_dl4ds.Downscaler.save`. The file holds the weights, the
    configuration, the normalization statistics with their units, the variable attrs,
    the grids, the static fields and the training history: :func:`load` needs nothing
    else.

    Parameters
    ----------
    model : Downscaler
    path : str, os.PathLike or binary file object

    Examples
    --------
    >>> import os
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> save(model, "tas_x4.dl4ds")
    >>> [name for name in os.listdir(".") if "tas_x4" in name]  # no temporary file left
    ['tas_x4.dl4ds']
    >>> loaded = load("tas_x4.dl4ds")
    >>> loaded.stats == model.stats, loaded.grid.highres_shape, loaded.static_names
    (True, (16, 16), ('orog', 'sftlf'))
    >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
    >>> a = coarse.dl4ds.downscale(model, device="cpu")
    >>> bool((a == coarse.dl4ds.downscale(loaded, device="cpu")).all())
    True
    """
    import torch

    arrays: dict[str, Any] = {
        "static": torch.from_numpy(np.ascontiguousarray(model.static)),
        "static_lowres": torch.from_numpy(np.ascontiguousarray(model.static_lowres)),
    }
    if model.mask is not None:
        arrays["mask"] = torch.from_numpy(np.ascontiguousarray(model.mask))
    g = model.grid
    metadata = {
        "config": model.config.to_dict(),
        "target": list(model.target),
        "predictors": list(model.predictors),
        "static_names": list(model.static_names),
        "stats": {k: v.to_dict() for k, v in model.stats.items()},
        "attrs": _to_json(model.attrs),
        "grid": {
            "y": g.y,
            "x": g.x,
            "time_dim": g.time_dim,
            "periodic": g.periodic,
            "grid_mapping": g.grid_mapping,
            "lowres": _dataset_to_payload(g.lowres, "grid/lowres", arrays),
            "highres": _dataset_to_payload(g.highres, "grid/highres", arrays),
        },
        "history": _dataset_to_payload(model.history, "history", arrays),
        "training": _to_json(model.training),
        "versions": dict(model.versions),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(metadata),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict.items()},
        "arrays": arrays,
    }
    if not isinstance(path, (str, os.PathLike)):
        torch.save(payload, path)
        return
    save_atomic(payload, path)


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``:
    a failed or killed write never leaves a partial file (nor a leftover ``.*.tmp``)."""
    import torch

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str] | IO[bytes]) -> Downscaler:
    """Read a model written by :meth:`xr_dl4ds.Downscaler.save`.

    The file is read with ``torch.load(weights_only=True)``: no pickled code is executed.
    A file that holds pickled Python objects (other than tensors and plain containers) is
    refused before any of them is created, and the content is checked for consistency
    (the weights against the network configuration, the scale against the grids and the
    static fields, the channels against the variables), so that a damaged or tampered
    file is refused here with a message naming the problem instead of failing, or
    silently giving wrong values, in :func:`~xr_dl4ds.downscale`.

    Raises
    ------
    ModelFileError
        When the file is not an xr_dl4ds model (a directory included), holds pickled
        code, is truncated, corrupt or inconsistent, or was written by a newer version of
        xr_dl4ds.
    FileNotFoundError
        When ``path`` does not exist.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> model = synthetic_dataset().dl4ds.fit(scale=4, epochs=1, patch_size=16, progress=False)
    >>> model.save("example.dl4ds")
    >>> xr_dl4ds.load("example.dl4ds").target
    ('tas',)
    """
    from .data.normalization import VariableStats
    from .downscaler import Downscaler, GridInfo
    from .models import ModelConfig

    where = path if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<file object>")
    payload = _read_payload(path, str(where))
    try:
        meta = json.loads(payload["metadata"])
        arrays = payload["arrays"]
        g = meta["grid"]
        grid = GridInfo(
            lowres=_dataset_from_payload(g["lowres"], "grid/lowres", arrays),
            highres=_dataset_from_payload(g["highres"], "grid/highres", arrays),
            y=g["y"],
            x=g["x"],
            time_dim=g["time_dim"],
            periodic=bool(g["periodic"]),
            grid_mapping=g["grid_mapping"],
        )
        mask = arrays["mask"].numpy() if "mask" in arrays else None
        model = Downscaler(
            config=ModelConfig.from_dict(meta["config"]),
            state_dict=payload["state_dict"],
            target=meta["target"],
            predictors=meta["predictors"],
            static_names=meta["static_names"],
            stats={k: VariableStats.from_dict(v) for k, v in meta["stats"].items()},
            attrs=_from_json(meta["attrs"]),
            grid=grid,
            static=arrays["static"].numpy(),
            static_lowres=arrays["static_lowres"].numpy(),
            mask=mask,
            history=_dataset_from_payload(meta["history"], "history", arrays),
            training=_from_json(meta["training"]),
            versions=meta["versions"],
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise ModelFileError(
            f"{where!s} has the xr_dl4ds header but its content is incomplete or damaged "
            f"({type(err).__name__}: {_first_line(err)}). Save the model again."
        ) from None
    problems = _inconsistencies(model)
    weights = _weight_problems(model, str(where))
    if problems or weights:
        what = "its content is inconsistent" if problems else "its stored weights do not fit"
        if not problems:
            what += " the stored network configuration"
        raise ModelFileError(
            f"{where!s} has the xr_dl4ds header but {what}, so the file is damaged or was "
            "tampered with:\n  - "
            + "\n  - ".join(problems + weights)
            + "\nDo not use it: save the model again from the training session, or get an "
            "intact copy from a source you trust."
        )
    try:
        model.network("cpu")  # the weights must fit the architecture in the config
    except (RuntimeError, DL4DSError) as err:
        raise ModelFileError(
            f"{where!s}: the stored weights do not fit the stored network configuration "
            f"({type(err).__name__}: {_first_line(err)}). The file is damaged; save the "
            "model again."
        ) from None
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


#: Every model file starts with this: torch.save writes a zip archive.
_ZIP_MAGIC = b"PK\x03\x04"


def _read_payload(path: str | os.PathLike[str] | IO[bytes], where: str) -> dict[str, Any]:
    """The checked top level of a model file: a dict with the xr_dl4ds header, a supported
    format version and plain containers of the right types."""
    import pickle

    import torch

    if isinstance(path, (str, os.PathLike)):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such model file: {os.fspath(path)!r}")
        if os.path.isdir(path):
            raise ModelFileError(
                f"{where} is a directory, not a model file. Pass the path of a file written "
                "by Downscaler.save() / model.save() (e.g. 'tas_x4.dl4ds')."
            )
    _check_zip(path, where)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        raise ModelFileError(
            f"{where} was refused: it holds pickled Python objects that are not tensors or "
            f"plain containers ({detail}). Such objects can run code when they are loaded, "
            "and xr_dl4ds never loads them; a file written by Downscaler.save() holds none, "
            "so this one was not written by xr_dl4ds or was tampered with. Do not open it "
            "with torch.load(weights_only=False); save the model again, or get it from a "
            "source you trust."
        ) from None
    except Exception as err:
        raise ModelFileError(
            f"{where} could not be read as an xr_dl4ds model file ({type(err).__name__}: "
            f"{_first_line(err)}). The file is not a model saved by Downscaler.save(), or it "
            "is truncated or corrupt (an interrupted copy?). Save or copy it again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            f"{where} is not an xr_dl4ds model file (no '{FORMAT}' header). Load files "
            "written by Downscaler.save() / model.save()."
        )
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"{where} has the xr_dl4ds header but an invalid model-file format version "
            f"{version!r} (allowed: an integer from 1 to {FORMAT_VERSION}). The file is "
            "damaged; save the model again."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has model-file format version {version!r}, newer than this xr_dl4ds "
            f"reads (version {FORMAT_VERSION}). Upgrade xr_dl4ds: pip install -U xr_dl4ds."
        )
    problems = []
    if not isinstance(payload.get("metadata"), str):
        problems.append(f"'metadata' is a {type(payload.get('metadata')).__name__}, not JSON text")
    for key in ("state_dict", "arrays"):
        value = payload.get(key)
        if not isinstance(value, dict):
            problems.append(f"{key!r} is a {type(value).__name__}, not a dict of tensors")
            continue
        bad = [k for k, v in value.items() if not isinstance(k, str) or not torch.is_tensor(v)]
        if bad:
            problems.append(f"{key!r} holds entries that are not tensors: {bad[:5]}")
    if problems:
        raise ModelFileError(
            f"{where} has the xr_dl4ds header but its content is incomplete or damaged ("
            + "; ".join(problems)
            + "). Save the model again."
        )
    return payload


def _check_zip(path: str | os.PathLike[str] | IO[bytes], where: str) -> None:
    """Check the archive before unpickling anything: torch.save writes a zip archive of
    uncompressed records, so anything else (a raw pickle for the legacy reader, a
    compressed record that could expand without bound) is refused, and every record must
    pass its CRC-32 check (torch.load does not check those of the tensors, so a damaged
    copy would otherwise load with wrong weights)."""
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            _check_zip_stream(f, where)
        return
    try:
        pos = path.tell()
    except (AttributeError, OSError, ValueError):
        return  # not seekable: torch.load reports what it cannot read
    try:
        _check_zip_stream(path, where)
    finally:
        path.seek(pos)


def _check_zip_stream(f: IO[bytes], where: str) -> None:
    import zipfile

    head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        if not head:
            what = "it is empty"
        elif head[:1] == b"\x80":
            what = f"it starts with {head!r}, a raw pickle"
        else:
            what = f"it starts with {head!r}"
        raise ModelFileError(
            f"{where} could not be read as an xr_dl4ds model file: {what}, while model files "
            "are zip archives written by torch.save() (starting with b'PK'). Pass a file "
            "written by Downscaler.save() / model.save(); if this is one, it is truncated or "
            "corrupt (an interrupted copy?): save or copy it again."
        )
    try:
        with zipfile.ZipFile(f) as archive:
            compressed = [i.filename for i in archive.infolist() if i.compress_type]
            bad = None if compressed else archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{where} could not be read as an xr_dl4ds model file: its zip archive is "
            f"truncated or corrupt ({type(err).__name__}: {_first_line(err)}). Save or copy "
            "it again (an interrupted copy?)."
        ) from None
    if compressed:
        raise ModelFileError(
            f"{where} is not an xr_dl4ds model file: its zip archive has compressed records "
            f"({compressed[:3]}), and torch.save() writes none. Pass a file written by "
            "Downscaler.save() / model.save() (do not re-zip it)."
        )
    if bad is not None:
        raise ModelFileError(
            f"{where} is corrupt: the record {bad!r} of its zip archive fails its CRC-32 "
            "check, so its bytes changed after it was written (a damaged disk or copy). "
            "Save or copy it again (truncated or corrupt files cannot be repaired)."
        )


def _unpickler_detail(err: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to retry with
    ``weights_only=False`` or to allowlist the global (either would run the code)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = ""
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.partition("WeightsUnpickler error:")[2].strip()
            if not detail and i + 1 < len(lines):
                detail = lines[i + 1]
            break
    else:
        detail = next((line for line in lines if "GLOBAL" in line), "")
    detail = re.split(r"\.\s+(?:Please|Re-running|Check the documentation)", detail)[0]
    detail = detail.strip().rstrip(".")
    return f"{type(err).__name__}: {detail[:300]}" if detail else type(err).__name__


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in a.shape)


def _inconsistencies(model: Downscaler) -> list[str]:
    """What does not fit together in a loaded model (empty for a file written by save)."""
    out: list[str] = []
    c, g = model.config, model.grid
    names = {
        "target": model.target,
        "predictors": model.predictors,
        "static_names": model.static_names,
    }
    for key, value in names.items():
        if not all(isinstance(n, str) and n for n in value):
            out.append(f"{key} {list(value)!r} must be variable names (non-empty strings)")
    if not model.target:
        out.append("target is empty: a model predicts at least one variable")
    every = [*model.target, *model.predictors, *model.static_names]
    if len(set(every)) != len(every):
        out.append(f"the variable names {every} repeat")
    n_t, n_p, n_s = len(model.target), len(model.predictors), len(model.static_names)
    if c.out_channels != n_t:
        out.append(f"config out_channels={c.out_channels}, but there are {n_t} target variable(s)")
    if c.static_channels != n_s:
        out.append(f"config static_channels={c.static_channels}, but there are {n_s} static fields")
    if c.in_channels != n_t + n_p + n_s:
        out.append(
            f"config in_channels={c.in_channels}, but target + predictors + static fields "
            f"are {n_t} + {n_p} + {n_s} = {n_t + n_p + n_s}"
        )
    for n in every:
        s = model.stats.get(n)
        if s is None:
            out.append(f"no normalization statistics for {n!r}")
        elif not (np.isfinite(s.mean) and np.isfinite(s.std) and s.std > 0):
            out.append(
                f"the normalization statistics of {n!r} (mean={s.mean}, std={s.std}) must be "
                "finite with std > 0"
            )
    static, static_lr = model.static, model.static_lowres
    if static.ndim != 3 or static_lr.ndim != 3:
        out.append(
            f"the static fields have shapes {_shape(static)} (high-res) and {_shape(static_lr)} "
            "(low-res); both must be (fields, y, x)"
        )
        return out
    for what, a in (("high-res", static), ("low-res", static_lr)):
        if a.shape[0] != n_s:
            out.append(f"the {what} static array holds {a.shape[0]} fields, not the {n_s} named")
        if a.dtype.kind != "f":
            out.append(f"the {what} static array has dtype {a.dtype}, not a float dtype")
    hi, lo = _shape(static)[1:], _shape(static_lr)[1:]
    if hi != (lo[0] * c.scale, lo[1] * c.scale):
        implied = {hi[i] / lo[i] for i in range(2) if lo[i]}
        hint = f" (they imply scale {implied.pop():g})" if len(implied) == 1 else ""
        out.append(
            f"config scale={c.scale}, but the static fields are {hi[0]}x{hi[1]} on the "
            f"high-res grid and {lo[0]}x{lo[1]} on the low-res grid{hint}; the high-res grid "
            "must be scale times the low-res one"
        )
    for what, ds, expected in (("high-res", g.highres, hi), ("low-res", g.lowres, lo)):
        for name, var in ds.variables.items():
            if var.dtype.kind not in "biuf":
                out.append(f"the {what} grid variable {name!r} has dtype {var.dtype}, not numeric")
            if var.ndim and not set(var.dims) & {g.y, g.x}:
                out.append(
                    f"the {what} grid variable {name!r} has dims {var.dims}, which include "
                    f"neither of the spatial dims y={g.y!r}, x={g.x!r}"
                )
        for dim, size in zip((g.y, g.x), expected, strict=True):
            if dim in ds.sizes and ds.sizes[dim] != size:
                out.append(
                    f"the {what} grid has {ds.sizes[dim]} {dim!r} coordinates, but the "
                    f"{what} static fields have {size}"
                )
    if c.grid_shape is not None and tuple(c.grid_shape) != hi:
        out.append(f"config grid_shape={tuple(c.grid_shape)}, but the high-res grid is {hi}")
    if model.mask is not None:
        if _shape(model.mask) != (n_t, *hi) or model.mask.dtype != np.bool_:
            out.append(
                f"the mask has shape {_shape(model.mask)} and dtype {model.mask.dtype}; "
                f"expected {(n_t, *hi)} and bool (one high-res field per target)"
            )
    return out


def _weight_problems(model: Downscaler, where: str) -> list[str]:
    """Compare the stored weights with the network the configuration describes, built on
    the meta device (no memory is allocated, whatever sizes the configuration claims)."""
    import torch

    from .models import create_model

    try:
        with torch.device("meta"):
            expected = create_model(model.config).state_dict()
    except RegistryError as err:
        raise ModelFileError(
            f"{where} needs a network part that is not registered in this session "
            f"({_first_line(err)}). If a plug-in provides it, import the plug-in before "
            "loading the model; otherwise the file is damaged: save the model again."
        ) from None
    except DL4DSError as err:
        return [f"the network configuration cannot be built: {_first_line(err)}"]
    except Exception:  # e.g. a plug-in that cannot be built on the meta device
        return []  # then network() checks the weights (allocating them)
    stored = model.state_dict
    out = []
    if missing := [k for k in expected if k not in stored]:
        out.append(
            f"{len(missing)} weight tensor(s) of the configured network are missing: {missing[:5]}"
        )
    if extra := [k for k in stored if k not in expected]:
        out.append(
            f"{len(extra)} weight tensor(s) do not belong to the configured network: {extra[:5]}"
        )
    c = model.config
    arch = f"{c.backbone}+{c.upsampling} x{c.scale}, n_filters={c.n_filters}, n_blocks={c.n_blocks}"
    wrong = [
        f"weight {k!r} has shape {_shape(stored[k])} in the file, but the configured network "
        f"({arch}) needs {_shape(v)}"
        for k, v in expected.items()
        if k in stored and _shape(stored[k]) != _shape(v)
    ]
    out += wrong[:5] + ([f"... and {len(wrong) - 5} more"] if len(wrong) > 5 else [])
    kinds = [
        f"weight {k!r} has dtype {stored[k].dtype}, expected {v.dtype}"
        for k, v in expected.items()
        if k in stored and stored[k].dtype.is_floating_point != v.dtype.is_floating_point
    ]
    return out + kinds[:5]


def dumps(model: Downscaler) -> bytes:
    """The model file as bytes (for tests and object stores).

    The bytes :func:`save` writes; :func:`load` reads them back from a file object.

    Examples
    --------
    >>> import io
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> data = dumps(model)
    >>> data[:2]  # a zip archive, written by torch.save
    b'PK'
    >>> load(io.BytesIO(data)).target
    ('tas',)
    >>> save(model, "tas_x4.dl4ds")
    >>> with open("tas_x4.dl4ds", "rb") as f:
    ...     f.read() == data
    True
    """
    buf = _io.BytesIO()
    save(model, buf)
    return buf.getvalue()


def model_id(model: Downscaler) -> str:
    """A content hash of the model file: the first 16 hex digits of the SHA-256 of
    :func:`dumps`. The same model (one file, saved and loaded, or shipped to a worker)
    gets the same id; it names the model in output provenance and keys the per-process
    network cache. The file also holds the training history with its timings, so two
    trainings that give bitwise-equal weights still get two ids.

    Examples
    --------
    >>> import io
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> ident = model_id(model)
    >>> len(ident), int(ident, 16) >= 0  # 16 hex digits
    (16, True)
    >>> model_id(load(io.BytesIO(dumps(model)))) == ident  # survives a save and load
    True
    >>> fine = hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
    >>> ident in fine.attrs["source"]  # names the model in the output's provenance
    True
    >>> other = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None, seed=1,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> model_id(other) == ident  # other weights
    False
    """
    import hashlib

    return hashlib.sha256(dumps(model)).hexdigest()[:16]
