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

from .exceptions import ModelFileError

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


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _dataset_to_payload(ds: xr.Dataset, prefix: str, arrays: dict[str, Any]) -> dict[str, Any]:
    import torch

    spec: dict[str, Any] = {}
    for name, var in ds.variables.items():
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
        values = arrays[f"{prefix}/{name}"].numpy().astype(s["dtype"], copy=False)
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

    Raises
    ------
    ModelFileError
        When the file is not an xr_dl4ds model, is truncated or corrupt, or was written
        by a newer version of xr_dl4ds.
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
    import torch

    from .data.normalization import VariableStats
    from .downscaler import Downscaler, GridInfo
    from .models import ModelConfig

    where = path if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<file object>")
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"No such model file: {os.fspath(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(
            f"{where!s} could not be read as an xr_dl4ds model file ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). The file is not a model saved by "
            "Downscaler.save(), or it is truncated or corrupt (an interrupted copy?). Save or "
            "copy it again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            f"{where!s} is not an xr_dl4ds model file (no '{FORMAT}' header). Load files "
            "written by Downscaler.save() / model.save()."
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where!s} has model-file format version {version!r}, newer than this xr_dl4ds "
            f"reads (version {FORMAT_VERSION}). Upgrade xr_dl4ds: pip install -U xr_dl4ds."
        )
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
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(
            f"{where!s} has the xr_dl4ds header but its content is incomplete or damaged "
            f"({type(err).__name__}: {err}). Save the model again."
        ) from None
    try:
        model.network("cpu")  # the weights must fit the architecture in the config
    except RuntimeError as err:
        raise ModelFileError(
            f"{where!s}: the stored weights do not fit the stored network configuration "
            f"({str(err).splitlines()[0]}). The file is damaged; save the model again."
        ) from None
    return model


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
