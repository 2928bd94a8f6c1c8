"""Resumable, region-by-region writing of large (lazy) outputs to zarr.

:func:`to_zarr` writes a DataArray or Dataset, usually the lazy result of
``coarse.dl4ds.downscale(model)``, one region of whole zarr chunks at a time along one
dimension, and records every completed region in the store itself, so that a run that was
killed (out of memory, end of a batch job, ctrl-C) can be resumed with ``mode="resume"``
and computes only what is missing. :func:`is_complete` tells a reader whether a store is
finished.

The marker
----------
While a store is being written, its root group has one attribute, ``_xr_dl4ds_to_zarr``
(a JSON string), that holds the layout of the write (dimension, chunk size, a fingerprint
of the variables and index coordinates) and the zarr chunks along the dimension already
written. It is created together with the group, before any array, and removed as the
very last metadata change, after which the metadata is consolidated. A store is complete
when its root group exists and has no such attribute. Because the marker is a group
attribute, it works with every zarr store (local directory, fsspec mapper, object store,
in-memory dict).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from .data.pairing import get_time_dim
from .exceptions import ChunkError, ConfigError, DataError, DL4DSError

__all__ = [
    "MARKER_ATTR",
    "StoreExistsError",
    "WriteSummary",
    "is_complete",
    "to_zarr",
]

log = logging.getLogger(__name__)

#: Name of the root-group attribute that marks a store as being written.
MARKER_ATTR = "_xr_dl4ds_to_zarr"
_MARKER_FORMAT = 1
# the names xarray gives a DataArray written as a Dataset (DataArray.to_zarr)
_DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"
_DATAARRAY_NAME = "__xarray_dataarray_name__"
_MODES = ("w-", "w", "resume")
_CHUNK_KEYS = ("chunks", "preferred_chunks", "shards")

Mode = Literal["w-", "w", "resume"]
StoreLike = str | os.PathLike[str] | MutableMapping[str, Any] | Any


class StoreExistsError(DL4DSError, FileExistsError):
    """The output store already exists and ``mode="w-"`` refuses to overwrite it.

    Also a :class:`FileExistsError`. The message says whether the store is complete and
    how to overwrite (``mode="w"``) or finish it (``mode="resume"``).

    Examples
    --------
    >>> from xr_dl4ds.exceptions import DL4DSError
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    >>> _ = to_zarr(ds, "fine.zarr", progress=False)
    >>> to_zarr(ds, "fine.zarr", progress=False)  # mode="w-" by default
    Traceback (most recent call last):
        ...
    xr_dl4ds.writing.StoreExistsError: The store 'fine.zarr' exists and is complete. Pass
    mode='w' to overwrite it, or mode='resume' to finish an interrupted write ...
    >>> issubclass(StoreExistsError, FileExistsError), issubclass(StoreExistsError, DL4DSError)
    (True, True)
    >>> to_zarr(ds, "fine.zarr", mode="w", progress=False).chunks_written  # overwrite
    2
    """


@dataclass(frozen=True)
class WriteSummary:
    """What a call of :func:`to_zarr` did.

    Attributes
    ----------
    dim : hashable or None
        The dimension written region by region (``None``: the object has no dimension).
    chunk_size : int
        Size of the zarr chunks along `dim` (the whole dimension when it is not split).
    n_chunks : int
        Number of zarr chunks along `dim`.
    chunks_written : int
        Chunks along `dim` computed and written by this call.
    chunks_skipped : int
        Chunks found complete in the store (written by an earlier, interrupted call) and
        not recomputed.
    regions_written : int
        Number of ``to_zarr(region=...)`` writes this call made.
    already_complete : bool
        True when the store was already complete and the call did nothing.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> ds = synthetic_dataset(nt=8, ny=8, nx=8, chunks={"time": 2})
    >>> to_zarr(ds, "fine.zarr", progress=False, chunks_per_region=2)
    WriteSummary(dim='time', chunk_size=2, n_chunks=4, chunks_written=4, chunks_skipped=0,
                 regions_written=2, already_complete=False)

    A write interrupted after two of its four regions (one chunk each), then resumed:
    only the missing chunks are computed.

    >>> def kill(i, region):  # stands for a crash or a job killed at its time limit
    ...     if i == 1:
    ...         raise RuntimeError(f"killed after writing {region}")
    >>> try:
    ...     to_zarr(ds, "other.zarr", progress=False, chunks_per_region=1, on_region=kill)
    ... except RuntimeError as err:
    ...     print(err)
    killed after writing {'time': slice(2, 4, None)}
    >>> is_complete("other.zarr")
    False
    >>> summary = to_zarr(ds, "other.zarr", mode="resume", progress=False, chunks_per_region=1)
    >>> summary.chunks_skipped, summary.chunks_written, is_complete("other.zarr")
    (2, 2, True)
    >>> to_zarr(ds, "other.zarr", mode="resume", progress=False).already_complete
    True
    """

    dim: Hashable | None
    chunk_size: int
    n_chunks: int
    chunks_written: int
    chunks_skipped: int
    regions_written: int
    already_complete: bool


# ----------------------------------------------------------------------------------------
# zarr helpers
# ----------------------------------------------------------------------------------------


def _zarr_kwargs(
    storage_options: Mapping[str, Any] | None, zarr_format: int | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if storage_options is not None:
        kwargs["storage_options"] = dict(storage_options)
    if zarr_format is not None:
        kwargs["zarr_format"] = zarr_format
    return kwargs


def _open_group(
    store: StoreLike,
    mode: Literal["r", "r+", "w", "w-"],
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """``zarr.open_group`` on the live (not consolidated) metadata."""
    import zarr

    if storage_options is not None:
        kwargs["storage_options"] = dict(storage_options)
    kwargs.setdefault("use_consolidated", False)
    return zarr.open_group(store, mode=mode, **kwargs)


def _read_state(
    store: StoreLike, storage_options: Mapping[str, Any] | None
) -> tuple[bool, dict[str, Any] | None]:
    """(a zarr group exists at `store`, its marker or None)."""
    try:
        group = _open_group(store, "r", storage_options)
    except FileNotFoundError:
        return False, None
    raw = group.attrs.get(MARKER_ATTR)
    if raw is None:
        return True, None
    try:
        marker = json.loads(raw)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"The store {_describe(store)} has a {MARKER_ATTR!r} attribute that is not a "
            f"marker of xr_dl4ds.to_zarr ({raw!r:.80}). Overwrite the store with mode='w'."
        ) from err
    return True, marker


def _describe(store: StoreLike) -> str:
    if isinstance(store, str | os.PathLike):
        return repr(os.fspath(store))
    return f"<{type(store).__name__}>"


def is_complete(store: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a zarr store is complete, i.e. not being (or left half-) written by
    :func:`to_zarr`.

    :func:`to_zarr` marks a store as incomplete from its creation until its last region
    is written (a ``_xr_dl4ds_to_zarr`` attribute of the root group, see
    :mod:`xr_dl4ds.writing`). A reader of a store written by a job that may have died
    should check this before trusting the data: the arrays of an incomplete store have
    their full shape, and the regions not yet written read as the fill value (NaN).

    Parameters
    ----------
    store : str, os.PathLike, MutableMapping or zarr store
        The store (a path or URL, an fsspec mapper, a dict, a zarr ``Store``).
    storage_options : mapping, optional
        Passed to fsspec for URLs (``"s3://..."``), as in :func:`xarray.open_zarr`.

    Returns
    -------
    bool
        True when `store` holds a zarr group without the marker of an unfinished
        :func:`to_zarr` (this includes stores written by other tools), False when the
        marker is there.

    Raises
    ------
    FileNotFoundError
        If there is no zarr group at `store`.

    Examples
    --------
    >>> import os, tempfile
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> path = os.path.join(tempfile.mkdtemp(), "fine.zarr")
    >>> _ = to_zarr(synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2}), path,
    ...             progress=False)
    >>> is_complete(path)
    True
    """
    exists, marker = _read_state(store, storage_options)
    if not exists:
        raise FileNotFoundError(
            f"There is no zarr group at {_describe(store)}: nothing was written there yet."
        )
    return marker is None


# ----------------------------------------------------------------------------------------
# the layout of a write: dimension, chunks, fingerprint
# ----------------------------------------------------------------------------------------


def _as_dataset(obj: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """The Dataset that ``obj.to_zarr`` would write (DataArray naming as in xarray)."""
    if isinstance(obj, xr.Dataset):
        return obj
    if not isinstance(obj, xr.DataArray):
        raise ConfigError(
            f"to_zarr writes an xarray DataArray or Dataset, got {type(obj).__name__}."
        )
    if obj.name is None:
        return obj.to_dataset(name=_DATAARRAY_VARIABLE)
    if obj.name in obj.coords or obj.name in obj.dims:
        ds = obj.to_dataset(name=_DATAARRAY_VARIABLE)
        ds.attrs[_DATAARRAY_NAME] = obj.name
        return ds
    return obj.to_dataset()


def _is_index(ds: xr.Dataset, name: Hashable) -> bool:
    return name in ds.xindexes


def _choose_dim(ds: xr.Dataset, dim: Hashable | None) -> Hashable | None:
    if dim is not None:
        if dim not in ds.dims:
            raise ConfigError(
                f"dim={dim!r} is not a dimension of the object to write (dimensions: "
                f"{tuple(ds.dims)}). Pass one of them, or dim=None for the time dimension."
            )
        return dim
    time_dim = get_time_dim(ds)
    if time_dim is not None:
        return time_dim
    candidates = [v for name, v in ds.variables.items() if v.ndim and not _is_index(ds, name)]
    lazy = [v for v in candidates if v.chunks is not None]
    if lazy:
        largest = max(lazy, key=lambda v: v.size * v.dtype.itemsize)
        for d, chunks in zip(largest.dims, largest.chunks or (), strict=True):
            if len(chunks) > 1:
                return d
        return largest.dims[0]
    if candidates:
        return max(candidates, key=lambda v: v.size * v.dtype.itemsize).dims[0]
    return next(iter(ds.dims), None)


def _is_regular(chunks: tuple[int, ...]) -> bool:
    """Zarr-compatible: all chunks equal except a smaller last one."""
    return len(chunks) <= 1 or (
        all(c == chunks[0] for c in chunks[:-1]) and chunks[-1] <= chunks[0]
    )


def _regular_chunks(size: int, chunk: int) -> tuple[int, ...]:
    n, rest = divmod(size, chunk)
    return (chunk,) * n + ((rest,) if rest else ())


def _chunk_size(ds: xr.Dataset, dim: Hashable, names: list[Hashable]) -> int:
    """The zarr chunk size along `dim`: the dask chunks of the largest dask variable
    (their largest chunk when they are irregular), the whole dimension otherwise."""
    size = ds.sizes[dim]
    lazy = [ds.variables[n] for n in names if ds.variables[n].chunks is not None]
    if not lazy or size == 0:
        return max(size, 1)
    largest = max(lazy, key=lambda v: v.size * v.dtype.itemsize)
    chunks = dict(zip(largest.dims, largest.chunks or (), strict=True))[dim]
    return max(chunks[0] if _is_regular(chunks) else max(chunks), 1)


def _index_digest(index: Any) -> str:
    values = np.asarray(index)
    h = hashlib.sha256(str(values.dtype).encode())
    if values.dtype.kind == "O":
        h.update("\x1f".join(map(repr, values.tolist())).encode())
    else:
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()[:16]


def _prepare(
    ds: xr.Dataset, dim: Hashable | None, encoding: Mapping[Hashable, Mapping[str, Any]]
) -> tuple[xr.Dataset, dict[Hashable, dict[str, Any]], list[Hashable], list[Hashable], int]:
    """Rechunk `ds` for region writing and set the zarr chunks of its variables.

    Returns (dataset, encoding to pass to xarray, region variables, static variables,
    chunk size along dim). Region variables are the dask variables with `dim`, static
    ones the dask variables without it (written once); in-memory variables are written
    with the template, as ``to_zarr(compute=False)`` does.
    """
    unknown = [k for k in encoding if k not in ds.variables]
    if unknown:
        raise ConfigError(
            f"encoding has entries for {unknown}, which are not variables of the object "
            f"to write ({list(ds.variables)})."
        )
    lazy = [n for n, v in ds.variables.items() if not _is_index(ds, n) and v.chunks is not None]
    region = [n for n in lazy if dim in ds.variables[n].dims]
    static = [n for n in lazy if dim not in ds.variables[n].dims]
    chunk = _chunk_size(ds, dim, region) if dim is not None else 1
    ds = ds.copy(deep=False)
    xr_encoding: dict[Hashable, dict[str, Any]] = {}
    new_data: dict[Hashable, xr.Variable] = {}
    new_coords: dict[Hashable, xr.Variable] = {}
    for name in region + static:
        var = ds.variables[name]
        spec: dict[Hashable, int] = {}
        for d, chunks in zip(var.dims, var.chunks or (), strict=True):
            if d == dim:
                if chunks != _regular_chunks(var.sizes[d], chunk):
                    spec[d] = chunk
            elif not _is_regular(chunks):
                spec[d] = max(chunks)
        if spec:
            log.info("to_zarr: rechunking %r to %s to match zarr chunks", name, spec)
            var = var.chunk(spec)
        zchunks = [max(c[0], 1) for c in var.chunks or ()]
        if name in encoding:
            enc = dict(encoding[name])
            if "chunks" in enc and dim in var.dims:
                given = tuple(enc["chunks"])
                axis = var.dims.index(dim)
                if len(given) != var.ndim or given[axis] != chunk:
                    raise ChunkError(
                        f"encoding[{name!r}]['chunks'] = {given}, but the zarr chunks of "
                        f"{name!r} along {dim!r} must be {chunk}, the dask chunks written "
                        f"region by region. Rechunk the object instead "
                        f"(obj.chunk({{{dim!r}: n}})) or leave 'chunks' out of encoding."
                    )
            enc.setdefault("chunks", tuple(zchunks))
            xr_encoding[name] = enc
        else:
            enc = {k: v for k, v in var.encoding.items() if k not in _CHUNK_KEYS}
            enc["chunks"] = tuple(zchunks)
            var.encoding = enc
        (new_coords if name in ds.coords else new_data)[name] = var
    for name, given_enc in encoding.items():
        if name not in xr_encoding:
            xr_encoding[name] = dict(given_enc)
    ds = ds.assign_coords(new_coords).assign(new_data)
    return ds, xr_encoding, region, static, chunk


def _fingerprint(
    ds: xr.Dataset, xr_encoding: Mapping[Hashable, Mapping[str, Any]]
) -> dict[str, Any]:
    variables = {}
    for name, var in ds.variables.items():
        chunks = xr_encoding.get(name, var.encoding).get("chunks")
        variables[str(name)] = {
            "dims": [str(d) for d in var.dims],
            "shape": list(var.shape),
            "dtype": str(var.dtype),
            "chunks": None if chunks is None else [int(c) for c in chunks],
        }
    indexes = {str(k): _index_digest(idx) for k, idx in ds.indexes.items()}
    return {"variables": variables, "indexes": indexes}


def _describe_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    sv, nv = stored["fingerprint"]["variables"], new["fingerprint"]["variables"]
    if only := sorted(set(sv) - set(nv)):
        out.append(f"variables only in the store: {only}")
    if only := sorted(set(nv) - set(sv)):
        out.append(f"variables only in the object: {only}")
    for name in sorted(set(sv) & set(nv)):
        for key in ("dims", "shape", "dtype", "chunks"):
            if sv[name][key] != nv[name][key]:
                out.append(
                    f"{name!r}: {key} {sv[name][key]} in the store, {nv[name][key]} in the object"
                )
    si, ni = stored["fingerprint"]["indexes"], new["fingerprint"]["indexes"]
    for name in sorted(set(si) | set(ni)):
        if si.get(name) != ni.get(name):
            out.append(f"the values of the index coordinate {name!r} differ")
    return out


# ----------------------------------------------------------------------------------------
# chunk bookkeeping: half-open ranges of zarr chunk indices along dim
# ----------------------------------------------------------------------------------------


def _add_range(ranges: list[list[int]], start: int, stop: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for a, b in sorted([*ranges, [start, stop]]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _missing(ranges: list[list[int]], n: int) -> Iterator[tuple[int, int]]:
    pos = 0
    for a, b in sorted(ranges):
        if a > pos:
            yield pos, min(a, n)
        pos = max(pos, b)
    if pos < n:
        yield pos, n


def _count(ranges: list[list[int]]) -> int:
    return sum(b - a for a, b in ranges)


def _default_chunks_per_region() -> int:
    """Enough chunks per region to keep every worker thread busy."""
    import dask

    if "distributed" in sys.modules:  # a client exists only if distributed was imported
        try:
            from distributed import default_client

            return max(1, sum(default_client().nthreads().values()))
        except (ImportError, ValueError):
            pass
    workers = dask.config.get("num_workers", None)
    return max(1, int(workers or dask.system.CPU_COUNT))


# ----------------------------------------------------------------------------------------
# to_zarr
# ----------------------------------------------------------------------------------------


class _Progress:
    """A per-chunk counter on stderr (tqdm), independent of the dask scheduler."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar: Any = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="chunk", file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_zarr_version() -> None:
    import zarr

    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(
            f"xr_dl4ds.to_zarr needs zarr >= 3, found zarr {zarr.__version__}. Upgrade it "
            "(pip install -U zarr), or write with obj.to_zarr(...), which cannot resume."
        )


def _say(progress: bool, message: str) -> None:
    log.info(message)
    if progress:
        print(message, file=sys.stderr, flush=True)


def to_zarr(
    obj: xr.DataArray | xr.Dataset,
    store: StoreLike,
    *,
    dim: Hashable | None = None,
    mode: Mode = "w-",
    progress: bool = True,
    encoding: Mapping[Hashable, Mapping[str, Any]] | None = None,
    zarr_format: int | None = None,
    consolidated: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    chunks_per_region: int | None = None,
    on_region: Callable[[int, dict[Hashable, slice]], object] | None = None,
) -> WriteSummary:
    """Write `obj` to a zarr store region by region along `dim`, resumably.

    The store is first created from `obj`'s template (``to_zarr(compute=False)``: all
    metadata, index coordinates and in-memory variables, no dask computation). The dask
    variables are then computed and written in regions of whole zarr chunks along `dim`
    (``to_zarr(region=...)``, with the current dask scheduler, ``dask.distributed``
    included), and each region is recorded in the store after its data are written. If
    the run is interrupted, calling again with ``mode="resume"`` checks that the store
    was created for the same object and writes only the missing regions; the result is
    identical to an uninterrupted run. The store is marked complete (see
    :func:`is_complete`) only when everything is written; its metadata is then
    consolidated.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        What to write, lazy (dask) or in memory; typically
        ``coarse.dl4ds.downscale(model)``. A DataArray is written as
        :meth:`xarray.DataArray.to_zarr` writes it (read it back with
        ``xr.open_dataarray(store, engine="zarr")``).
    store : str, os.PathLike, MutableMapping or zarr store
        Where to write: a path or URL, an fsspec mapper, a dict or a zarr ``Store``.
    dim : hashable, optional
        The dimension to write region by region. Default: the time dimension
        (:func:`xr_dl4ds.data.pairing.get_time_dim`); without one, the first dimension
        split into several dask chunks of the largest dask variable (or its first
        dimension); without dask variables, the first dimension of the largest variable.
        When resuming, the dimension recorded in the store.
    mode : {"w-", "w", "resume"}, default "w-"
        ``"w-"``: create the store, fail (:class:`StoreExistsError`) if something
        exists there. ``"w"``: create it, overwriting anything there. ``"resume"``:
        write what is missing: continue an incomplete store created by this function
        for the same object, do nothing (and say so) on a complete one, start a new one
        where there is none. Calling with ``"resume"`` until it returns is therefore
        always safe.
    progress : bool, default True
        Show a progress bar of the chunks along `dim` on stderr (it counts regions as
        they are written, so it works with every dask scheduler) and a message when the
        store is already complete.
    encoding : mapping, optional
        Per-variable zarr encoding, as in :meth:`xarray.Dataset.to_zarr` (it replaces the
        variable's own ``.encoding``). ``"chunks"`` may be given, but along `dim` it must
        equal the dask chunks written region by region.
    zarr_format : {2, 3}, optional
        Zarr format of a new store (default: zarr's default).
    consolidated : bool, default True
        Consolidate the metadata once the store is complete.
    storage_options : mapping, optional
        Passed to fsspec for URLs, as in :meth:`xarray.Dataset.to_zarr`.
    chunks_per_region : int, optional
        Zarr chunks along `dim` per region, i.e. computed at once and recorded together.
        Default: the number of worker threads of the current scheduler (those of the
        ``dask.distributed`` client if there is one), so that every thread has work.
        Larger regions use the threads better, smaller ones lose less work to a kill.
        It may differ between a run and its resumption.
    on_region : callable, optional
        ``on_region(i, region)`` is called after the `i`-th region of this call
        (0, 1, ...) is written and recorded, with ``region = {dim: slice(start, stop)}``;
        for logging, and for tests that interrupt a write.

    Returns
    -------
    WriteSummary
        What was written, skipped or found complete.

    Raises
    ------
    StoreExistsError
        With ``mode="w-"``, if the store exists (a :class:`FileExistsError`); the
        message says whether it is complete and how to overwrite or resume.
    DataError
        With ``mode="resume"``, if the store holds a different object (variables, dims,
        shapes, dtypes, chunks or index values differ; the message lists them).
    ConfigError
        If `dim` is not a dimension of `obj`, `mode` or `chunks_per_region` is invalid,
        or `encoding` names an unknown variable.
    ChunkError
        If ``encoding[...]["chunks"]`` disagrees with the chunks along `dim`.

    Notes
    -----
    Zarr regions must be made of whole zarr chunks, so the zarr chunks along `dim` of
    the dask variables are their dask chunks along `dim`, and these must be regular (all
    equal but a smaller last one). Irregular ones (e.g. months of 28 to 31 days) are
    rechunked to the largest chunk of the largest dask variable; every dask variable
    with `dim` is rechunked to that size along `dim`, and irregular chunks along other
    dimensions to their largest chunk. Along the other dimensions the zarr chunks are
    the dask chunks. Dask variables without `dim` are written once, before the regions.
    In-memory (numpy) variables, index coordinates included, are written with the
    template, as ``to_zarr(compute=False)`` writes them (with xarray's default chunks
    and encodings), so an object without dask variables is written in one go
    (``regions_written == 0``).

    The attributes and encodings written are those of the first call; a resumed call
    only checks the layout, so a different ``history`` attribute (e.g. the time stamp
    added by ``downscale``) does not prevent resuming. Only one process may write a
    store at a time.

    Examples
    --------
    >>> import os, tempfile
    >>> import xarray as xr
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> ds = synthetic_dataset(nt=8, ny=8, nx=8, chunks={"time": 2})
    >>> path = os.path.join(tempfile.mkdtemp(), "fine.zarr")
    >>> summary = to_zarr(ds, path, progress=False, chunks_per_region=1)
    >>> summary.n_chunks, summary.regions_written, is_complete(path)
    (4, 4, True)
    >>> xr.testing.assert_identical(xr.open_zarr(path).compute(), ds.compute())
    >>> to_zarr(ds, path, mode="resume", progress=False).already_complete
    True
    """
    if mode not in _MODES:
        raise ConfigError(
            f"mode={mode!r} is not one of {_MODES}: 'w-' creates a new store, 'w' "
            "overwrites, 'resume' continues an interrupted write."
        )
    if chunks_per_region is not None and (
        not isinstance(chunks_per_region, int | np.integer) or chunks_per_region < 1
    ):
        raise ConfigError(f"chunks_per_region must be an integer >= 1, got {chunks_per_region!r}.")
    _check_zarr_version()
    ds = _as_dataset(obj).copy(deep=False)
    ds.attrs.pop(MARKER_ATTR, None)  # e.g. an object opened from an incomplete store

    exists, stored = (False, None) if mode == "w" else _read_state(store, storage_options)
    if mode == "resume" and stored is not None and dim is None:
        stored_dim = stored.get("dim")
        dim = stored_dim if stored_dim in ds.dims else None
    dim = _choose_dim(ds, dim)
    ds, xr_encoding, region_vars, static_vars, chunk = _prepare(ds, dim, encoding or {})
    size = ds.sizes[dim] if dim is not None else 0
    n_chunks = -(-size // chunk) if dim is not None else 0
    marker: dict[str, Any] = {
        "format": _MARKER_FORMAT,
        "dim": None if dim is None else str(dim),
        "chunk": chunk,
        "size": size,
        "n_chunks": n_chunks,
        "template": False,
        "static": not static_vars,
        "done": [],
        "fingerprint": _fingerprint(ds, xr_encoding),
    }

    if exists and mode == "w-":
        raise StoreExistsError(_exists_message(store, stored))
    if exists and mode == "resume":
        if stored is None:
            _check_complete_store(store, ds, storage_options)
            _ensure_consolidated(store, storage_options, consolidated)
            _say(progress, f"xr_dl4ds.to_zarr: {_describe(store)} is already complete.")
            return WriteSummary(dim, chunk, n_chunks, 0, n_chunks, 0, True)
        _check_resumable(store, stored, marker, zarr_format, storage_options)
        if stored["template"]:
            marker = {**marker, "template": True}
            marker["static"] = stored["static"]
            marker["done"] = stored["done"]
    skipped = _count(marker["done"])
    if not marker["template"]:
        overwrite = mode == "w" or exists  # "resume": killed while creating the template
        with _explain_failure(store, "creating the store", marker):
            _create_template(
                ds, store, marker, xr_encoding, zarr_format, storage_options, overwrite=overwrite
            )
            marker["template"] = True
            _write_marker(store, storage_options, marker)
    elif skipped:
        _say(
            progress,
            f"xr_dl4ds.to_zarr: resuming {_describe(store)}: {skipped} of {n_chunks} chunks "
            f"along {dim!r} already written.",
        )

    group = _open_group(store, "r+", storage_options)
    to_zarr_kwargs = _zarr_kwargs(storage_options, None)
    if not marker["static"]:
        static = ds.drop_vars([n for n in ds.variables if n not in static_vars])
        with _explain_failure(store, "writing the variables without the dimension", marker):
            static.to_zarr(store, mode="r+", consolidated=False, **to_zarr_kwargs)
            marker["static"] = True
            group.attrs[MARKER_ATTR] = json.dumps(marker)

    per_region = chunks_per_region or _default_chunks_per_region()
    sub = ds.drop_vars([n for n in ds.variables if n not in region_vars])
    bar = _Progress(progress and bool(region_vars), n_chunks, skipped, f"to_zarr {dim}")
    n_regions = 0
    try:
        for first, stop in list(_missing(marker["done"], n_chunks)) if region_vars else []:
            for a in range(first, stop, per_region):
                b = min(a + per_region, stop)
                assert dim is not None  # region_vars is empty when dim is None
                region: dict[Any, slice] = {dim: slice(a * chunk, min(b * chunk, size))}
                what = f"writing the chunks {a} to {b - 1} along {dim!r} (region {region})"
                with _explain_failure(store, what, marker):
                    sub.isel(region).to_zarr(
                        store, region=region, mode="r+", consolidated=False, **to_zarr_kwargs
                    )
                    marker["done"] = _add_range(marker["done"], a, b)
                    group.attrs[MARKER_ATTR] = json.dumps(marker)
                bar.update(b - a)
                if on_region is not None:
                    on_region(n_regions, region)
                n_regions += 1
    finally:
        bar.close()

    with _explain_failure(store, "marking the store complete", marker):
        del group.attrs[MARKER_ATTR]  # the store is complete from here on
    _ensure_consolidated(store, storage_options, consolidated)
    written = n_chunks - skipped
    log.info("to_zarr: %s complete (%d chunks written, %d skipped)", store, written, skipped)
    return WriteSummary(dim, chunk, n_chunks, written, skipped, n_regions, False)


@contextlib.contextmanager
def _explain_failure(store: StoreLike, what: str, marker: Mapping[str, Any]) -> Iterator[None]:
    """Add a note to an exception raised while writing `store`: what failed, what is in
    the store now and how to finish it (the exception keeps its type, so ``except
    OSError`` still catches a full disk; the note is shown with the traceback)."""
    try:
        yield
    except Exception as err:
        where = _describe(store)
        if marker.get("template"):
            state = (
                "The store is not complete (is_complete() is False; "
                f"{_count(marker['done'])} of {marker['n_chunks']} chunks along "
                f"{marker['dim']!r} are written and kept)."
            )
        else:
            state = "The store was not created, or is not complete (it holds no data yet)."
        note = (
            f"xr_dl4ds.to_zarr failed while {what} of {where}. {state} Fix the cause (disk "
            "space, permissions, the connection to the store...), then call to_zarr again "
            "with the same object and mode='resume' (xr-dl4ds downscale: rerun the command "
            "with --resume) to write only what is missing."
        )
        add_note = getattr(err, "add_note", None)  # Python >= 3.11
        if add_note is not None:
            add_note(note)
        else:
            log.error(note)
        raise


def _exists_message(store: StoreLike, stored: dict[str, Any] | None) -> str:
    where = _describe(store)
    if stored is None:
        state = "exists and is complete"
    else:
        state = (
            f"exists and is incomplete ({_count(stored.get('done', []))} of "
            f"{stored.get('n_chunks')} chunks along {stored.get('dim')!r} written)"
        )
    return (
        f"The store {where} {state}. Pass mode='w' to overwrite it, or mode='resume' to "
        "finish an interrupted write of the same object (a no-op on a complete store)."
    )


def _check_resumable(
    store: StoreLike,
    stored: dict[str, Any],
    marker: dict[str, Any],
    zarr_format: int | None,
    storage_options: Mapping[str, Any] | None,
) -> None:
    where = _describe(store)
    if stored.get("format") == _MARKER_FORMAT and not stored.get("template"):
        return  # killed while creating the template: it is created again
    if stored.get("format") != _MARKER_FORMAT:
        raise DataError(
            f"The incomplete store {where} was written by another version of "
            f"xr_dl4ds.to_zarr (marker format {stored.get('format')!r}, this one reads "
            f"{_MARKER_FORMAT}). Overwrite it with mode='w'."
        )
    if stored["dim"] != marker["dim"]:
        raise ConfigError(
            f"The incomplete store {where} is written region by region along "
            f"{stored['dim']!r}, not {marker['dim']!r}. Pass dim={stored['dim']!r} (or "
            "dim=None) to resume it, or mode='w' to start over."
        )
    if zarr_format is not None:
        group = _open_group(store, "r", storage_options)
        if group.metadata.zarr_format != zarr_format:
            raise ConfigError(
                f"The store {where} has zarr format {group.metadata.zarr_format}, not "
                f"zarr_format={zarr_format}. Leave zarr_format out to resume it."
            )
    problems = []
    if stored["chunk"] != marker["chunk"]:
        problems.append(
            f"chunks along {stored['dim']!r}: {stored['chunk']} in the store, "
            f"{marker['chunk']} in the object (rechunk it: "
            f"obj.chunk({{{stored['dim']!r}: {stored['chunk']}}}))"
        )
    problems += _describe_differences(stored, marker)
    if problems:
        raise DataError(
            f"The incomplete store {where} was created for another object, so it cannot "
            "be resumed with this one:\n  - "
            + "\n  - ".join(problems)
            + "\nPass the same object (variables, sizes, dtypes, chunks and coordinates) "
            "to resume, or mode='w' to overwrite the store."
        )
    _check_arrays(store, stored["fingerprint"]["variables"], storage_options)


def _store_arrays(
    store: StoreLike, storage_options: Mapping[str, Any] | None
) -> dict[str, tuple[tuple[int, ...], tuple[str, ...] | None]]:
    group = _open_group(store, "r", storage_options)
    out = {}
    for name, array in group.arrays():
        dims = getattr(array.metadata, "dimension_names", None)
        if dims is None:
            dims = array.attrs.get("_ARRAY_DIMENSIONS")
        out[name] = (tuple(array.shape), None if dims is None else tuple(dims))
    return out


def _check_arrays(
    store: StoreLike, variables: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> None:
    arrays = _store_arrays(store, storage_options)
    problems = [
        f"{name!r}: missing or of shape {arrays[name][0] if name in arrays else None}"
        for name, v in variables.items()
        if name not in arrays or list(arrays[name][0]) != v["shape"]
    ]
    if problems:
        raise DataError(
            f"The incomplete store {_describe(store)} is damaged (arrays: "
            f"{'; '.join(problems)}). Overwrite it with mode='w'."
        )


def _check_complete_store(
    store: StoreLike, ds: xr.Dataset, storage_options: Mapping[str, Any] | None
) -> None:
    arrays = _store_arrays(store, storage_options)
    problems = []
    if only := sorted(set(arrays) - {str(n) for n in ds.variables}):
        problems.append(f"variables only in the store: {only}")
    for name, var in ds.variables.items():
        if str(name) not in arrays:
            problems.append(f"variable {name!r} is not in the store")
            continue
        shape, dims = arrays[str(name)]
        if shape != var.shape or (dims is not None and dims != tuple(map(str, var.dims))):
            problems.append(
                f"{name!r}: dims {dims} and shape {shape} in the store, "
                f"{tuple(var.dims)} and {var.shape} in the object"
            )
    if problems:
        raise DataError(
            f"The complete store {_describe(store)} holds another object:\n  - "
            + "\n  - ".join(problems)
            + "\nOverwrite it with mode='w', or write to another path."
        )


def _write_marker(
    store: StoreLike, storage_options: Mapping[str, Any] | None, marker: dict[str, Any]
) -> None:
    group = _open_group(store, "r+", storage_options)
    group.attrs[MARKER_ATTR] = json.dumps(marker)


def _create_template(
    ds: xr.Dataset,
    store: StoreLike,
    marker: dict[str, Any],
    xr_encoding: Mapping[Hashable, Mapping[str, Any]],
    zarr_format: int | None,
    storage_options: Mapping[str, Any] | None,
    *,
    overwrite: bool,
) -> None:
    """Create the group with its marker in one metadata write, then add the arrays (with
    fill values), the index coordinates and the in-memory variables; no dask compute."""
    kwargs: dict[str, Any] = {"attributes": {MARKER_ATTR: json.dumps(marker)}}
    if zarr_format is not None:
        kwargs["zarr_format"] = zarr_format
    try:
        _open_group(store, "w" if overwrite else "w-", storage_options, **kwargs)
    except FileExistsError as err:  # something that is not a zarr group is there
        raise StoreExistsError(
            f"{_describe(store)} already holds data that is not a zarr group. Pass "
            "mode='w' to overwrite it, or write to another path."
        ) from err
    template = ds.assign_attrs({MARKER_ATTR: json.dumps(marker)})
    template.to_zarr(
        store,
        mode="a",
        compute=False,
        consolidated=False,
        encoding=dict(xr_encoding),
        **_zarr_kwargs(storage_options, None),
    )


def _ensure_consolidated(
    store: StoreLike, storage_options: Mapping[str, Any] | None, consolidated: bool
) -> None:
    if not consolidated:
        return
    import zarr

    group = _open_group(store, "r+", storage_options, use_consolidated=None)
    if getattr(group.metadata, "consolidated_metadata", None) is not None:
        return
    with warnings.catch_warnings():
        # zarr 3 notes that consolidated metadata is not in its v3 spec; xarray reads
        # (and by default expects) it all the same
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(group.store, path=group.path or None)
