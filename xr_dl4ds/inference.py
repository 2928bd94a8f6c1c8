"""Downscaling with a trained model: lazily over dask chunks, tiled inside each task, with
the network built once per process or dask worker."""

from __future__ import annotations

import dataclasses
import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import xarray as xr

from .cf import _OUT, assemble_output
from .data.checks import check_block_values, check_dtype, mask_declared_fill
from .data.normalization import convert_units
from .data.pairing import _as_dataset, get_time_dim
from .exceptions import ConfigError, DataError, GridError, ScaleError, VariableError
from .grid import (
    _is_longitude,
    _spacing,
    get_spatial_dims,
    highres_coords,
    is_periodic,
    locate_subgrid,
)
from .options import OPTIONS

if TYPE_CHECKING:
    from .downscaler import Downscaler

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

__all__ = ["cache_info", "clear_cache", "downscale"]

# One forward pass at a time per process: torch already uses every core inside a pass, and
# dask's threads each starting one would oversubscribe the CPU (measured on 2 cores: a
# training step ran 5-30x slower while another busy process competed for the cores).
_TORCH_LOCK = threading.Lock()

_CHANNEL = "dl4ds_channel"
_REAL = "dl4ds_realization"


def _resolve_model(model: Downscaler | str | None) -> Downscaler:
    from .downscaler import Downscaler
    from .io import load

    if model is None:
        model = OPTIONS["model"]
        if model is None:
            raise ConfigError(
                "No model given. Pass one, coarse.dl4ds.downscale(model), or set a default "
                "with xr_dl4ds.set_options(model=model)."
            )
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load(model)
    if not isinstance(model, Downscaler):
        raise ConfigError(
            f"model must be an xr_dl4ds.Downscaler (from fit() or xr_dl4ds.load()) or the "
            f"path of a saved model, got {type(model).__name__}."
        )
    return model


def _match_spatial_dims(
    ds: xr.Dataset,
    model: Downscaler,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None,
) -> tuple[Hashable, Hashable]:
    if spatial_dims is None and model.grid.y in ds.dims and model.grid.x in ds.dims:
        return model.grid.y, model.grid.x
    return get_spatial_dims(ds, spatial_dims)


def _locate(
    ds: xr.Dataset, model: Downscaler, y: Hashable, x: Hashable, *, new_domain: bool = False
) -> tuple[int, int] | None:
    """Offset of the input grid inside the model's low-res grid; None when it is elsewhere
    (allowed for models without localized convolution whose static fields, if any, are
    given for the new domain: ``new_domain``; the training mask then does not apply)."""
    g = model.grid
    ref = {
        y: g.lowres[g.y] if g.y in g.lowres.coords else None,
        x: g.lowres[g.x] if g.x in g.lowres.coords else None,
    }
    needs_grid = bool(model.config.localcon) or (
        not new_domain and (bool(model.static_names) or model.mask is not None)
    )
    offsets = []
    for d, r in ref.items():
        if r is None or d not in ds.coords:
            n_model = g.lowres.sizes.get(g.y if d == y else g.x)
            if ds.sizes[d] == n_model:
                offsets.append(0)
                continue
            if needs_grid:
                raise GridError(
                    f"The input has {ds.sizes[d]} cells along {d!r} and no coordinate to place "
                    f"them; the model was trained on {n_model}. Give the input the training "
                    "grid's coordinates."
                )
            return None
        try:
            offsets.append(
                locate_subgrid(
                    r.values,
                    ds[d].values,
                    tolerance=0.05,
                    name=f"input {d!r}",
                    longitude=_is_longitude(r),
                )
            )
        except GridError as err:
            if needs_grid:
                raise GridError(
                    f"The input grid does not match the model's low-resolution grid along "
                    f"{d!r}: {err} The model uses fields tied to its training grid "
                    f"({', '.join(model.static_names) or 'mask or localized convolution'}), "
                    "so the input must be on that grid or a part of it: "
                    "regrid it onto model.grid.lowres (the coarse grid of the training data)"
                    + (
                        "; or, for another domain, pass its static fields with static= (on "
                        "the high-resolution grid derived from the input)."
                        if model.static_names and not model.config.localcon
                        else "."
                    )
                ) from None
            spacing_in, spacing_model = _spacing(ds[d].values), _spacing(r.values)
            if not np.isclose(spacing_in, spacing_model, rtol=0.05):
                raise ScaleError(
                    f"The input's grid spacing along {d!r} is {spacing_in:.6g}, but the model "
                    f"was trained on coarse data with spacing {spacing_model:.6g} (x{model.scale} "
                    f"to {spacing_model / model.scale:.6g}). Regrid the input to the model's "
                    "coarse resolution first."
                ) from None
            return None
    return offsets[0], offsets[1]


# ----------------------------------------------------------------------------------------
# the network, once per process (or dask worker)
# ----------------------------------------------------------------------------------------

_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], tuple[Downscaler, Any]] = OrderedDict()
_CACHE_STATS = {"hits": 0, "misses": 0}


def cache_info() -> dict[str, int]:
    """Hits and misses of this process's network cache, and the networks it holds
    (and, on a dask worker's CPU, ``torch_threads`` of its last forward pass).

    ``downscale`` builds each model's network once per process (or dask worker) and
    device, keyed by the model's content hash (:func:`xr_dl4ds.io.model_id`), and keeps
    the last four. Under ``dask.distributed``, ``client.run(xr_dl4ds.inference.cache_info)``
    shows that every worker built each network once.

    Returns
    -------
    dict
        ``hits`` and ``misses`` (networks reused and built since the last
        :func:`clear_cache`) and ``size`` (networks held).

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
    >>> clear_cache()
    >>> _ = coarse.dl4ds.downscale(model, device="cpu")  # builds the network
    >>> info = cache_info()
    >>> info["hits"], info["misses"], info["size"]
    (0, 1, 1)
    >>> _ = coarse.chunk(time=1).dl4ds.downscale(model, device="cpu").compute()  # 2 tasks
    >>> info = cache_info()  # both tasks reused the network
    >>> info["hits"], info["misses"], info["size"]
    (2, 1, 1)
    """
    with _CACHE_LOCK:
        return {**_CACHE_STATS, "size": len(_CACHE)}


def clear_cache() -> None:
    """Drop the cached networks of this process (and free their GPU memory).

    Also resets the counts of :func:`cache_info`. The next ``downscale`` builds its
    network again.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> _ = hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
    >>> cache_info()["size"] >= 1
    True
    >>> clear_cache()
    >>> info = cache_info()
    >>> info["hits"], info["misses"], info["size"]
    (0, 0, 0)
    """
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_STATS.clear()
        _CACHE_STATS.update(hits=0, misses=0)


def _device(name: str) -> Any:
    """The torch device for ``name``, resolved where the task runs (a dask worker may
    have a GPU that the client lacks)."""
    from .training.supervised import resolve_device

    return resolve_device(name)


def _cached_network(key: str, model: Downscaler, device: str) -> tuple[Downscaler, Any]:
    """``(model, network on device)``: built on the first call in this process, then
    reused (the model's own copy may be a fresh unpickled object in each task)."""
    resolved = _device(device)
    if resolved.type == "cuda" and resolved.index is None:  # "cuda" and "cuda:0": one entry
        import torch

        resolved = torch.device("cuda", torch.cuda.current_device())
    dev = str(resolved)
    with _CACHE_LOCK:  # held while building: concurrent tasks wait for the first one
        hit = _CACHE.get((key, dev))
        if hit is not None:
            _CACHE.move_to_end((key, dev))
            _CACHE_STATS["hits"] += 1
            return hit
        _CACHE_STATS["misses"] += 1
        entry = (model, model.network(dev))
        _CACHE[(key, dev)] = entry
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return entry


@dataclasses.dataclass(frozen=True)
class _Member:
    """One model of the ensemble, as each task gets it (a dask graph key, shipped once
    per worker). ``static``/``static_lowres``: the normalized static fields of an input
    off the training grid (None: slice the model's own at ``offset``)."""

    key: str
    model: Downscaler
    static: np.ndarray | None = None
    static_lowres: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What each task needs besides the data and the models (small, pickled per task)."""

    offset: tuple[int, int] | None
    periodic: bool
    tile: tuple[int, int] | None
    halo: tuple[int, int] | None
    batch_size: int
    device: str
    samples: int
    seed: int | None
    channels: tuple[str, ...]


def _static_for(member: _Member, offset: tuple[int, int] | None, shape: tuple[int, int]):
    """Normalized (low-res, high-res) static fields of the block, or (empty, None)."""
    model, s = member.model, member.model.scale
    h, w = shape
    if member.static_lowres is not None:
        return member.static_lowres, member.static
    if offset is not None and model.static_names:
        iy, ix = offset
        return (
            model.static_lowres[:, iy : iy + h, ix : ix + w],
            model.static[:, iy * s : (iy + h) * s, ix * s : (ix + w) * s],
        )
    return np.zeros((0, h, w), np.float32), None


def _forward(
    net: Any,
    x: np.ndarray,
    st_lr: np.ndarray,
    st_hr: np.ndarray | None,
    settings: _Settings,
    hr_offset: tuple[int, int] | None,
    seed: int | None,
    affine: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """(N, [T,] C, h, w) normalized input (static channels not yet added) -> the output
    denormalized by ``affine`` (std, mean) on the network's device."""
    from .models.tiling import tiled_forward

    lead = x.shape[:-3]
    st = np.broadcast_to(st_lr, (*lead, *st_lr.shape))
    xin = np.concatenate([x, st], axis=-3) if st_lr.shape[0] else x
    with _TORCH_LOCK:
        _use_worker_threads(net)
        out = tiled_forward(
            net,
            np.ascontiguousarray(xin, np.float32),
            None if st_hr is None else np.ascontiguousarray(st_hr, np.float32),
            hr_offset,
            tile=settings.tile,
            halo=settings.halo,
            periodic=settings.periodic,
            batch_size=settings.batch_size,
            seed=seed,
            output_affine=affine,
        )
    return out.numpy()


def _use_worker_threads(net: Any) -> None:
    """On the CPU of a dask.distributed worker, let torch use the worker's threads.

    Dask starts workers with ``OMP_NUM_THREADS=1``, so torch would run each forward on
    one thread; since one forward runs at a time per process, it may use all the
    worker's threads (measured on 16 cores: 9.2 -> 34.7 steps/s for one worker of 16
    threads). OpenMP keeps the setting per calling thread: it is set in the task's.
    """
    import torch

    if next(net.parameters()).device.type != "cpu":
        return
    try:
        from distributed import get_worker

        n = int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return
    if torch.get_num_threads() < n:
        torch.set_num_threads(n)
    with _CACHE_LOCK:
        _CACHE_STATS["torch_threads"] = torch.get_num_threads()


def _sample_seed(seed: int, realization: int, sample: np.ndarray) -> int:
    """The seed of one Monte-Carlo draw: a function of the user's seed, the realization
    and the sample's values, so the draw does not depend on chunking, batching or the
    scheduler."""
    crc = zlib.crc32(np.ascontiguousarray(sample).tobytes())
    return (seed * 1_000_003 + realization * 7_919 + crc) % (2**63)


def _normalize_block(arr: np.ndarray, model: Downscaler, channels: Sequence[str]) -> np.ndarray:
    """Training units -> the model's normalized values, missing cells at the mean (0)."""
    mean = np.array([model.stats[c].mean for c in channels], np.float64)
    std = np.array([model.stats[c].std for c in channels], np.float64)
    shape = (len(channels), 1, 1)
    out = (arr - mean.reshape(shape)) / std.reshape(shape)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _member_outputs(
    flat: np.ndarray,
    members: Sequence[_Member],
    settings: _Settings,
) -> list[np.ndarray]:
    """Every realization's output for ``flat`` (N, [T,] C, h, w) in training units, as
    (N, [T,] V, H, W) in the units of the targets (denormalized)."""
    h, w = flat.shape[-2:]
    check_block_values(flat, settings.channels)
    results = []
    for member in members:
        model, net = _cached_network(member.key, member.model, settings.device)
        x = _normalize_block(flat, model, settings.channels)
        st_lr, st_hr = _static_for(member, settings.offset, (h, w))
        hr_offset = None
        if model.config.localcon and settings.offset is not None:
            hr_offset = (settings.offset[0] * model.scale, settings.offset[1] * model.scale)
        affine = (
            np.array([model.stats[t].std for t in model.target], np.float32),
            np.array([model.stats[t].mean for t in model.target], np.float32),
        )
        for r in range(settings.samples):
            if settings.seed is None:
                y = _forward(net, x, st_lr, st_hr, settings, hr_offset, None, affine)
            else:  # Monte-Carlo: each sample's noise depends on its own values only
                y = np.concatenate(
                    [
                        _forward(
                            net,
                            x[i : i + 1],
                            st_lr,
                            st_hr,
                            settings,
                            hr_offset,
                            _sample_seed(settings.seed, r, x[i]),
                            affine,
                        )
                        for i in range(x.shape[0])
                    ]
                )
            results.append(y)
    return results


def _kernel(arr: np.ndarray, members: Sequence[_Member], *, settings: _Settings) -> np.ndarray:
    """Spatial models: (..., C, h, w) in training units -> (..., R, V, H, W)."""
    model = members[0].model
    lead, (c, h, w) = arr.shape[:-3], arr.shape[-3:]
    s, n_real = model.scale, len(members) * settings.samples
    out_shape = (*lead, n_real, model.config.out_channels, h * s, w * s)
    flat = arr.reshape((-1, c, h, w))
    if flat.shape[0] == 0:
        return np.empty(out_shape, np.float32)
    outs = _member_outputs(flat, members, settings)
    if len(outs) == 1:  # no copy of the output for one realization
        return outs[0].reshape(out_shape)
    return np.stack(outs, axis=1).reshape(out_shape)


def _windows_kernel(
    arr: np.ndarray, members: Sequence[_Member], *, settings: _Settings, n_out: int
) -> np.ndarray:
    """Spatio-temporal models: (..., T_in, C, h, w) -> (..., n_out, R, V, H, W).

    The last ``n_out`` steps get an output; the ``T_in - n_out`` steps before them are
    the halo from the previous chunk. Step ``t`` is the last frame of the network's
    output for the window of steps ``t - time_window + 1 .. t`` (shorter at the very
    start of the series), so the result does not depend on the chunking.
    """
    model = members[0].model
    window = int(model.config.time_window)  # type: ignore[arg-type]
    lead, (t_in, c, h, w) = arr.shape[:-4], arr.shape[-4:]
    s, n_real = model.scale, len(members) * settings.samples
    flat = arr.reshape((-1, t_in, c, h, w))
    out = np.empty(
        (flat.shape[0], n_out, n_real, model.config.out_channels, h * s, w * s), np.float32
    )
    if flat.size == 0 or n_out == 0:
        return out.reshape(lead + out.shape[1:])
    first = t_in - n_out
    for t in range(first, t_in):  # start of the series: shorter windows, one by one
        if t < window - 1:
            outs = _member_outputs(flat[:, : t + 1], members, settings)
            out[:, t - first] = np.stack([o[:, -1] for o in outs], axis=1)
    full = np.asarray([t for t in range(first, t_in) if t >= window - 1], int)
    if full.size:
        starts = full - window + 1
        for b in range(flat.shape[0]):
            windows = np.stack([flat[b, i : i + window] for i in starts])
            outs = _member_outputs(windows, members, settings)
            out[b, full - first] = np.stack([o[:, -1] for o in outs], axis=1)
    return out.reshape(lead + out.shape[1:])


def _run(
    data: Any,
    members: Sequence[_Member],
    settings: _Settings,
    *,
    time_axis: int | None,
    out_core: tuple[int, int, int, int],
) -> Any:
    """Run the network over ``data`` (..., [T,] C, h, w), numpy or dask.

    Dask: one task per chunk of the leading dims (spatial dims and channels whole);
    spatio-temporal models get ``time_window - 1`` steps of the previous chunk as a halo.
    The models are one graph key: each worker receives them once, not with every task.
    """
    if not (hasattr(data, "dask") and not isinstance(data, np.ndarray)):
        data = np.asarray(data)
        if time_axis is None:
            return _kernel(data, members, settings=settings)
        return _windows_kernel(data, members, settings=settings, n_out=data.shape[time_axis])

    import dask
    import dask.array as dsa

    key = "-".join(m.key for m in members)
    graph_members = dask.delayed(list(members), pure=True, name=f"dl4ds-models-{key}")
    n_core = 3 if time_axis is None else 4
    data = data.rechunk({data.ndim - i: -1 for i in range(1, 4)})
    lead_chunks = data.chunks[: data.ndim - n_core]
    if time_axis is None:
        out_chunks = (*lead_chunks, *((n,) for n in out_core))
        return dsa.map_blocks(
            _kernel,
            data,
            graph_members,
            settings=settings,
            chunks=out_chunks,
            dtype=np.float32,
            new_axis=[data.ndim],
            token="dl4ds-downscale",
        )
    window = int(members[0].model.config.time_window)  # type: ignore[arg-type]
    if min(data.chunks[time_axis]) < window - 1:  # every chunk must hold a whole halo
        data = data.rechunk({time_axis: max(window - 1, int(np.median(data.chunks[time_axis])))})
    tchunks = data.chunks[time_axis]
    depth: dict[int, int | tuple[int, int]] = {i: 0 for i in range(data.ndim)}
    depth[time_axis] = (window - 1, 0)
    over = dsa.overlap.overlap(data, depth=depth, boundary="none")

    def block(a: np.ndarray, ms: Sequence[_Member], block_id: tuple[int, ...] | None = None):
        assert block_id is not None
        return _windows_kernel(a, ms, settings=settings, n_out=tchunks[block_id[time_axis]])

    out_chunks = (*data.chunks[: time_axis + 1], *((n,) for n in out_core))
    return dsa.map_blocks(
        block,
        over,
        graph_members,
        chunks=out_chunks,
        dtype=np.float32,
        new_axis=[data.ndim],
        token="dl4ds-downscale-st",
    )


def _dim_pair(
    value: int | Mapping[Hashable, int] | None, y: Hashable, x: Hashable, what: str, minimum: int
) -> tuple[int, int] | None:
    """``tile``/``halo`` given as one int or ``{dim: n}`` -> ``(n_y, n_x)``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = [d for d in value if d not in (y, x)]
        if unknown:
            raise ConfigError(
                f"{what}={dict(value)!r} names {unknown}, which are not the spatial dims "
                f"({y!r}, {x!r}). Give sizes for those, e.g. {what}={{{y!r}: 64, {x!r}: 64}}."
            )
        pair = (value.get(y), value.get(x))
    else:
        pair = (value, value)
    out = []
    for d, n in zip((y, x), pair, strict=True):
        if n is None:
            n = -1 if what == "tile" else None
        if what == "tile" and n == -1:
            out.append(-1)
            continue
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
            raise ConfigError(
                f"{what} along {d!r} is {n!r}; it must be an integer >= {minimum}"
                + (" (or -1: no tiling along that dim)." if what == "tile" else ".")
                + f" Sizes are in cells of the coarse input, e.g. {what}={{{y!r}: 64, {x!r}: 64}}."
            )
        out.append(int(n))
    return out[0], out[1]


def _check_device(device: str) -> str:
    """Check the device name now; resolve it where the work runs ('auto' on a dask worker
    with a GPU picks the GPU even when the client has none)."""
    import torch

    if not isinstance(device, str):
        device = str(device)
    if device != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(
                f"device={device!r} is not a torch device. Use 'auto', 'cpu', 'cuda' or 'cuda:N'."
            ) from None
        if dev.type == "cuda" and not _distributed_client():
            _device(device)  # raises when CUDA is not here, before any work
    return device


def _distributed_client() -> bool:
    try:
        from distributed import default_client

        default_client()
    except (ImportError, ValueError):
        return False
    return True


def _members(models: Sequence[Downscaler]) -> list[Downscaler]:
    """Check that the models of an ensemble are interchangeable."""
    first = models[0]
    for k, m in enumerate(models[1:], start=1):
        checks = {
            "target": (first.target, m.target),
            "predictors": (first.predictors, m.predictors),
            "scale": (first.scale, m.scale),
            "static fields": (first.static_names, m.static_names),
            "time_window": (first.config.time_window, m.config.time_window),
            "units": (
                [first.stats[n].units for n in first.target + first.predictors],
                [m.stats[n].units for n in m.target + m.predictors],
            ),
        }
        for what, (a, b) in checks.items():
            if a != b:
                raise ConfigError(
                    f"The ensemble's models differ in {what}: model 0 has {a!r}, model {k} "
                    f"has {b!r}. An ensemble needs models of the same variables, scale and "
                    "units (e.g. several backbones or seeds trained on the same data)."
                )
        if (first.mask is None) != (m.mask is None) or (
            first.mask is not None and not np.array_equal(first.mask, m.mask)  # type: ignore[arg-type]
        ):
            raise ConfigError(
                f"The ensemble's models 0 and {k} were trained with different masks of "
                "missing cells; train them on the same data."
            )
    return list(models)


def _static_member(
    model: Downscaler,
    static: xr.Dataset,
    ds: xr.Dataset,
    y: Hashable,
    x: Hashable,
    units_context: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized high- and low-res static fields for an input off the training grid."""
    from .grid import coarsen

    s = model.scale
    hr = highres_coords(ds, s, spatial_dims=(y, x))
    missing = [n for n in model.static_names if n not in static.data_vars]
    if missing:
        raise VariableError(
            f"static= lacks {missing}; the model uses the static fields "
            f"{list(model.static_names)}. Pass them on the high-resolution grid of the input."
        )
    fields = []
    for n in model.static_names:
        da = static[n]
        if set(da.dims) != {y, x}:
            raise GridError(
                f"static field {n!r} has dims {da.dims}; it must have exactly the spatial "
                f"dims ({y!r}, {x!r}) of the input, on its high-resolution grid."
            )
        for d, size in ((y, ds.sizes[y] * s), (x, ds.sizes[x] * s)):
            if da.sizes[d] != size:
                raise GridError(
                    f"static field {n!r} has {da.sizes[d]} cells along {d!r}; the input's "
                    f"high-resolution grid has {size} (x{s} its {ds.sizes[d]} coarse cells)."
                )
            if d in da.coords and d in hr:
                want = np.asarray(hr[d].values, np.float64)
                got = np.asarray(da[d].values, np.float64)
                spacing = abs(float(np.median(np.diff(want)))) if want.size > 1 else 1.0
                if not np.allclose(got, want, rtol=0, atol=0.01 * spacing):
                    raise GridError(
                        f"static field {n!r}: its {d!r} coordinate does not match the "
                        f"high-resolution grid derived from the input (first values "
                        f"{got[:3].tolist()} vs {want[:3].tolist()}). Regrid the static field "
                        "onto that grid (x{s} block refinement of the coarse cells)."
                    )
        da = convert_units(da, model.stats[n].units, name=n, context=units_context)
        da = da.transpose(y, x)
        fields.append(da.reset_coords(drop=True).drop_vars([y, x], errors="ignore"))
    hr_ds = xr.Dataset({n: f for n, f in zip(model.static_names, fields, strict=True)})
    lr_ds = coarsen(hr_ds, s, spatial_dims=(y, x))

    for n in model.static_names:
        bad = int((~np.isfinite(np.asarray(hr_ds[n].values, np.float64))).sum())
        if bad:
            raise DataError(
                f"static field {n!r} has {bad} missing or infinite cell(s). Allowed: static "
                "fields defined everywhere, as in training. Fix: fill them with their "
                f"physical value, e.g. static[{n!r}].fillna(0) for orography over the sea."
            )

    def stack(d: xr.Dataset) -> np.ndarray:
        arrs = [
            np.nan_to_num(
                (np.asarray(d[n].values, np.float64) - model.stats[n].mean) / model.stats[n].std
            )
            for n in model.static_names
        ]
        return np.stack(arrs).astype(np.float32)

    return stack(hr_ds), stack(lr_ds)


def _call_string(
    models: Sequence[str], options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> str:
    args = [f"model={models[0]!r}" if len(models) == 1 else f"model={list(models)!r}"]
    args += [f"{k}={v!r}" for k, v in options.items() if v != defaults.get(k)]
    return f"xr_dl4ds.downscale({', '.join(args)})"


def downscale(
    obj: T_Xarray,
    model: Downscaler | str | Sequence[Downscaler | str] | None = None,
    *,
    tile: int | Mapping[Hashable, int] | None = None,
    halo: int | Mapping[Hashable, int] | None = None,
    batch_size: int = 8,
    device: str = "auto",
    samples: int | None = None,
    seed: int = 0,
    static: xr.Dataset | Mapping[str, xr.DataArray] | None = None,
    units_context: str | None = None,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> T_Xarray:
    """Downscale coarse data with a trained model (or an ensemble of models).

    Builds a lazy dask graph for dask-backed input (one task per chunk of the
    non-spatial dims; the spatial dims are gathered into one chunk per task) and runs it
    at once for numpy input. Inputs are converted to the training units with pint,
    normalized, passed through the network and denormalized. Inside each task the
    network runs tile by tile with a halo (``tile``), so device memory is bounded by the
    tile, and the output does not depend on the tiling: windows carry a halo that covers
    the network's receptive field and its global channel-attention means are computed
    over the whole field (see :func:`xr_dl4ds.models.tiling.tiled_forward`).

    The network is built once per process or dask worker and device (cached by the
    model's content hash, :func:`xr_dl4ds.io.model_id`); the model travels in the dask
    graph as one key, so each worker receives it once. ``device="auto"`` is resolved
    where the task runs: on a dask worker with a GPU, the GPU.

    The output is on the high-resolution grid: on the training grid (or a part of it) its
    spatial coordinates are exactly the training high-resolution ones; elsewhere (fully
    convolutional models) they are derived from the input's by the block-mean
    convention, and static fields for that domain come from ``static=``. It keeps every
    non-spatial coordinate, the attrs of each variable (with the training units), the
    global attrs and the grid-mapping variable, and gets CF provenance (see
    :mod:`xr_dl4ds.cf`).

    Parameters
    ----------
    obj : DataArray or Dataset
        Coarse data: the model's target variable(s) (and predictors, in a Dataset).
    model : Downscaler, path, or a list of them, optional
        Default: ``xr_dl4ds.set_options(model=...)``. A list is a deep ensemble: each
        model gives one member along a new ``realization`` dim.
    tile : int or dict, optional
        Core tile size in coarse cells, ``{y: n, x: n}`` or one int for both (-1: no
        tiling along a dim). Default: no tiling (each task's field at once).
    halo : int or dict, optional
        Cells of context around each tile. Default: the network's receptive field
        (:func:`xr_dl4ds.models.tiling.receptive_field`), which makes tiled output equal
        untiled output; smaller halos are faster but approximate near tile edges.
    batch_size : int, default 8
        Samples (time steps) per forward pass.
    device : str, default "auto"
        ``"auto"`` (CUDA when the process running the task has it), ``"cpu"``,
        ``"cuda"``, ``"cuda:1"``...
    samples : int, optional
        Monte-Carlo dropout samples per model (models trained with an ``"mc..."``
        ``dropout_variant``): adds a ``realization`` dim of ``samples`` members (times
        the number of models).
    seed : int, default 0
        Seed of the Monte-Carlo samples (sample ``r`` uses ``seed + r``).
    static : Dataset or dict of DataArray, optional
        High-resolution static fields (the model's ``static_names``) for input that is
        not on the training grid: on the high-resolution grid derived from the input.
    units_context : str, optional
        A declared conversion between units of different dimensions, for input in other
        units than the training ones: ``"hydro"`` (liquid water at 1000 kg m-3:
        ``mm/day`` <-> ``kg m-2 s-1``, ``mm`` <-> ``kg m-2``). Compatible units (degC
        for K) are converted without it; the conversion is a lazy scalar factor and
        offset.
    spatial_dims : optional
        ``(y, x)`` override.

    Returns
    -------
    DataArray or Dataset
        Same type as ``obj``; a Dataset holds the downscaled target variable(s).

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(ny=32, nx=48)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, patch_size=16, progress=False)
    >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
    >>> coarse.dl4ds.downscale(model).sizes["lat"]
    32
    >>> coarse.dl4ds.downscale(model, tile={"lat": 4, "lon": 4}).sizes["lon"]
    48
    """
    from .io import model_id

    given: list[Any] = (
        [model] if model is None or not isinstance(model, (list, tuple)) else list(model)
    )
    if not given:
        raise ConfigError("model=[] is an empty ensemble; pass at least one model.")
    models = _members([_resolve_model(m) for m in given])
    model = models[0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1.")
    n_samples = 1 if samples is None else samples
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"samples={samples!r} must be an integer >= 1 (or None).")
    if samples is not None:
        from .models.dropout import has_monte_carlo_dropout

        for k, m in enumerate(models):
            if not has_monte_carlo_dropout(m.network("cpu")):
                raise ConfigError(
                    f"samples={samples} needs Monte-Carlo dropout, but model {k} "
                    f"({m.config.backbone}, dropout_rate={m.config.dropout_rate}, "
                    f"dropout_variant={m.config.dropout_variant!r}) has none. Train with "
                    "dropout_rate > 0 and dropout_variant='mcdrop' (or 'mcspatialdrop', "
                    "'mcgaussiandrop'), or pass a list of models for a deep ensemble."
                )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be an integer.")
    device = _check_device(device)
    is_da = isinstance(obj, xr.DataArray)
    if is_da:
        if model.predictors:
            raise VariableError(
                f"The model also needs the predictor(s) {list(model.predictors)}: pass a "
                f"Dataset with {list(model.target + model.predictors)}."
            )
        if len(model.target) > 1:
            raise VariableError(
                f"The model downscales {list(model.target)} together: pass a Dataset with "
                "all of them."
            )
        name = obj.name if obj.name is not None else model.target[0]
        if name != model.target[0]:
            raise VariableError(
                f"The DataArray is named {obj.name!r} but the model was trained on "
                f"{model.target[0]!r}. If it is the same quantity, rename it: "
                f"da.rename({model.target[0]!r})."
            )
        ds = obj.to_dataset(name=model.target[0], promote_attrs=True)
    else:
        ds = _as_dataset(obj)
    needed = list(model.target + model.predictors)
    missing = [n for n in needed if n not in ds.data_vars]
    if missing:
        raise VariableError(
            f"The input lacks the variable(s) {missing} the model needs; it has "
            f"{sorted(map(str, ds.data_vars))}. The model was trained on target "
            f"{list(model.target)} and predictors {list(model.predictors)}."
        )
    y, x = _match_spatial_dims(ds, model, spatial_dims)
    for n in needed:
        if not {y, x} <= set(ds[n].dims):
            raise GridError(
                f"Variable {n!r} has dims {ds[n].dims}, without the spatial dims ({y!r}, {x!r})."
            )
    if ds.sizes[y] < 1 or ds.sizes[x] < 1:
        raise GridError(f"The input grid is empty ({y}: {ds.sizes[y]}, {x}: {ds.sizes[x]}).")
    tile_pair = _dim_pair(tile, y, x, "tile", 1)
    halo_pair = _dim_pair(halo, y, x, "halo", 0)
    if tile_pair is not None:
        tile_pair = (
            ds.sizes[y] if tile_pair[0] == -1 else tile_pair[0],
            ds.sizes[x] if tile_pair[1] == -1 else tile_pair[1],
        )
    static_ds = None
    if static is not None:
        static_ds = static if isinstance(static, xr.Dataset) else xr.Dataset(dict(static))
    offsets = {_locate(ds, m, y, x, new_domain=static_ds is not None) for m in models}
    if len(offsets) > 1:
        raise GridError(
            "The ensemble's models place the input at different positions of their training "
            f"grids ({sorted(map(str, offsets))}); train them on the same grid."
        )
    offset = offsets.pop()
    if offset is None and any(m.static_names for m in models) and static_ds is None:
        raise GridError(
            f"The input is not on the model's training grid, and the model uses the static "
            f"fields {list(model.static_names)}: pass them for this domain with static= "
            "(on the high-resolution grid derived from the input), or regrid the input onto "
            "model.grid.lowres."
        )
    members = []
    for m in models:
        key = model_id(m)
        if static_ds is not None and m.static_names:
            st_hr, st_lr = _static_member(m, static_ds, ds, y, x, units_context)
            members.append(_Member(key, m, st_hr, st_lr))
        else:
            members.append(_Member(key, m))
    # periodic longitude: windows wrap around the date line (not for the localized
    # convolution, whose per-pixel weights are indexed on the unwrapped training grid)
    periodic = bool(
        model.grid.periodic and x in ds.coords and is_periodic(ds[x]) and not model.config.localcon
    )
    settings = _Settings(
        offset=offset,
        periodic=periodic,
        tile=tile_pair,
        halo=halo_pair,
        batch_size=batch_size,
        device=device,
        samples=n_samples,
        seed=None if samples is None else seed,
        channels=tuple(needed),
    )

    # lazily: units -> stack channels (normalization happens per model in the tasks)
    for n in needed:
        check_dtype(ds[n], role="input")
    channels = [
        convert_units(
            mask_declared_fill(ds[n]), model.stats[n].units, name=n, context=units_context
        )
        for n in needed
    ]
    template_dims: list[Hashable] = list(ds[model.target[0]].dims)
    stacked = xr.concat(
        channels, dim=_CHANNEL, coords="minimal", compat="override", join="override"
    ).astype(np.float32)
    h, w = ds.sizes[y], ds.sizes[x]
    s = model.scale
    n_real = len(members) * n_samples
    out_core = (n_real, len(model.target), h * s, w * s)
    tdim = None
    if model.config.time_window is not None:
        tdim = model.grid.time_dim if model.grid.time_dim in stacked.dims else get_time_dim(stacked)
        if tdim is None:
            raise GridError(
                f"The model is spatio-temporal (time_window={model.config.time_window}) and "
                f"needs a time dimension; the input has dims {tuple(ds[model.target[0]].dims)}."
            )
    lead: list[Hashable] = [d for d in stacked.dims if d not in (tdim, _CHANNEL, y, x)]
    core_in = [_CHANNEL, y, x] if tdim is None else [tdim, _CHANNEL, y, x]
    core_out: list[Hashable] = [_REAL, *_OUT] if tdim is None else [tdim, _REAL, *_OUT]
    stacked = stacked.transpose(*lead, *core_in)
    time_axis = None if tdim is None else len(lead)
    result = _run(stacked.data, members, settings, time_axis=time_axis, out_core=out_core)
    coords = {
        n: c.variable
        for n, c in stacked.coords.items()
        if set(c.dims) <= set(lead) | ({tdim} if tdim is not None else set())
    }
    out = xr.DataArray(result, dims=(*lead, *core_out), coords=coords)
    if n_real == 1 and samples is None:
        out = out.isel({_REAL: 0}, drop=True)
    else:
        out = out.rename({_REAL: "realization"}).assign_coords(
            realization=xr.Variable(
                "realization",
                np.arange(n_real, dtype=np.int32),
                {
                    "standard_name": "realization",
                    "long_name": (
                        "Monte-Carlo dropout sample" if len(members) == 1 else "ensemble member"
                    ),
                },
            ),
            model_id=xr.Variable(
                "realization",
                np.repeat([m.key for m in members], n_samples).astype(object),
                {"long_name": "content hash of the model file (xr_dl4ds.io.model_id)"},
            ),
        )
        template_dims = ["realization", *template_dims]
    return assemble_output(
        out,
        ds,
        model,
        offset=offset,
        spatial_dims=(y, x),
        template_dims=template_dims,
        dataarray_name=obj.name if is_da else None,
        is_dataarray=is_da,
        input_coords=obj.coords,
        call=_call_string(
            [m.key for m in members],
            {
                "tile": tile,
                "halo": halo,
                "batch_size": batch_size,
                "device": device,
                "samples": samples,
                "seed": seed,
                "static": None if static is None else "<given>",
                "units_context": units_context,
            },
            {"batch_size": 8, "device": "auto", "seed": 0},
        ),
        model_id=",".join(m.key for m in members),
    )
