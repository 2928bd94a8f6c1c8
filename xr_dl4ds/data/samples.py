"""From a :class:`~xr_dl4ds.data.pairing.Pair` to normalized arrays, and random patches.

Channel order of the low-resolution network input (the contract with ``models``):
target variable(s) first, then predictors, then the block-mean static fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import xarray as xr

from ..exceptions import ConfigError, DataError
from ..grid import coarsen
from .normalization import VariableStats, normalize
from .pairing import Pair

__all__ = [
    "TrainingArrays",
    "to_arrays",
    "Batch",
    "random_patches",
    "whole_fields",
    "patch_shape",
    "n_windows",
]


class LazyArray:
    """A normalized (T, C, y, x) stack of variables, read lazily: indexing reads only
    the cells asked for (and the dask/zarr chunks holding them).

    Supports the indexing the samplers use: a tuple of ints and slices, one per axis.
    """

    def __init__(self, da: xr.DataArray) -> None:
        self.da = da
        self.shape = tuple(int(n) for n in da.shape)
        self.ndim = da.ndim
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        sel = dict(zip(self.da.dims, key, strict=False))
        return np.asarray(self.da.isel(sel).values, dtype=np.float32)

    def any_valid(self) -> np.ndarray:
        """Per channel and cell: valid (not NaN) at some time step (computed lazily)."""
        return np.asarray(self.da.notnull().any([self.da.dims[0]]).values)


ArrayLike = np.ndarray | LazyArray


@dataclasses.dataclass(frozen=True)
class TrainingArrays:
    """Normalized float32 arrays of a pair (NaNs of inputs filled with 0, the mean).

    ``lowres``: (T, C_lr, h, w) target + predictors; ``static_lowres``: (C_s, h, w);
    ``static``: (C_s, H, W); ``highres``: (T, C_out, H, W) with NaN where missing.
    ``lowres`` and ``highres`` are numpy arrays, or :class:`LazyArray` for data read
    lazily (``to_arrays(..., lazy=True)``); the static fields are always in memory.
    """

    lowres: ArrayLike
    static_lowres: np.ndarray
    static: np.ndarray
    highres: ArrayLike

    @property
    def n_samples(self) -> int:
        return int(self.lowres.shape[0])

    def valid_cells(self) -> np.ndarray:
        """(C_out, H, W): cells of the target with data at some time step."""
        if isinstance(self.highres, LazyArray):
            return self.highres.any_valid()
        return np.asarray(np.isfinite(self.highres).any(axis=0))


def _stack_lazy(
    ds: xr.Dataset,
    names: tuple[str, ...],
    stats: Mapping[str, VariableStats],
    dims: tuple,
    fill: bool,
) -> xr.DataArray:
    arrays = []
    for n in names:
        da = normalize(ds[n], stats[n]).transpose(*dims)
        arrays.append(da.fillna(0.0) if fill else da)
    out = xr.concat(
        arrays, dim="dl4ds_channel", coords="minimal", compat="override", join="override"
    )
    return out.transpose(dims[0], "dl4ds_channel", *dims[1:]).astype(np.float32)


def _stack(
    ds: xr.Dataset, names: tuple[str, ...], stats: Mapping[str, VariableStats], dims: tuple
) -> np.ndarray:
    if not names:
        return np.zeros((0,), np.float32)
    arrays = [normalize(ds[n], stats[n]).transpose(*dims).values for n in names]
    return np.stack(arrays, axis=-3).astype(np.float32, copy=False)


def to_arrays(p: Pair, stats: Mapping[str, VariableStats], *, lazy: bool = False) -> TrainingArrays:
    """Normalize the pair: into memory, or (``lazy=True``) as arrays read on demand."""
    y, x = p.spatial_dims
    t = p.time_dim
    lr_names = p.target + p.predictors
    lowres: ArrayLike
    highres: ArrayLike
    if lazy:
        lowres = LazyArray(_stack_lazy(p.lowres, lr_names, stats, (t, y, x), fill=True))
        highres = LazyArray(_stack_lazy(p.highres, p.target, stats, (t, y, x), fill=False))
    else:
        lowres = np.nan_to_num(_stack(p.lowres, lr_names, stats, (t, y, x)), nan=0.0)
        highres = _stack(p.highres, p.target, stats, (t, y, x))
    if p.static_names:
        static = _stack(p.static, p.static_names, stats, (y, x))
        static_lr = _stack(
            coarsen(p.static, p.scale, spatial_dims=(y, x)), p.static_names, stats, (y, x)
        )
    else:
        h, w = lowres.shape[-2:]
        static = np.zeros((0, h * p.scale, w * p.scale), np.float32)
        static_lr = np.zeros((0, h, w), np.float32)
    if not np.isfinite(static).all():
        static = np.nan_to_num(static, nan=0.0)
        static_lr = np.nan_to_num(static_lr, nan=0.0)
    arrays = TrainingArrays(lowres=lowres, static_lowres=static_lr, static=static, highres=highres)
    if not lazy and not np.isfinite(np.asarray(highres)).any():
        raise DataError(
            f"The target {list(p.target)} is NaN everywhere in the training period: there is "
            "nothing to learn from. Check the time selection and the missing-value encoding."
        )
    return arrays


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch: network input, static input, target, validity mask and patch positions.

    Spatial models: ``lowres`` (B, C_in, h, w), ``target``/``mask`` (B, C_out, H, W).
    Spatio-temporal models (``time_window=T``): ``lowres`` (B, T, C_in, h, w),
    ``target``/``mask`` (B, T, C_out, H, W). ``static`` is (B, C_s, H, W) or None;
    ``offset`` (B, 2) is the high-resolution (row, column) of each patch's top-left
    cell in the training grid (used by the localized convolution).
    """

    lowres: np.ndarray
    static: np.ndarray | None
    target: np.ndarray  # NaN replaced by 0
    mask: np.ndarray  # float 0/1
    offset: np.ndarray


def _make_batch(
    arrays: TrainingArrays,
    t: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    ph: int,
    pw: int,
    scale: int,
    window: int | None = None,
) -> Batch:
    lr_list, s_list, y_list = [], [], []
    for ti, yi, xi in zip(t, ys, xs, strict=True):
        lr_sl = (slice(yi, yi + ph), slice(xi, xi + pw))
        hr_sl = (slice(yi * scale, (yi + ph) * scale), slice(xi * scale, (xi + pw) * scale))
        st_lr = arrays.static_lowres[(slice(None), *lr_sl)]
        if window is None:
            lr = np.concatenate([arrays.lowres[(int(ti), slice(None), *lr_sl)], st_lr], axis=0)
            y = arrays.highres[(int(ti), slice(None), *hr_sl)]
        else:  # frames ti .. ti + window - 1, static channels repeated on every frame
            frames = arrays.lowres[(slice(int(ti), int(ti) + window), slice(None), *lr_sl)]
            st = np.broadcast_to(st_lr, (window, *st_lr.shape))
            lr = np.concatenate([frames, st], axis=1)
            y = arrays.highres[(slice(int(ti), int(ti) + window), slice(None), *hr_sl)]
        lr_list.append(lr)
        s_list.append(arrays.static[(slice(None), *hr_sl)])
        y_list.append(y)
    target = np.stack(y_list)
    mask = np.isfinite(target)
    return Batch(
        lowres=np.ascontiguousarray(np.stack(lr_list), dtype=np.float32),
        static=np.stack(s_list) if arrays.static.shape[0] else None,
        target=np.where(mask, target, 0.0).astype(np.float32),
        mask=mask.astype(np.float32),
        offset=np.stack([np.asarray(ys) * scale, np.asarray(xs) * scale], axis=1).astype(np.int64),
    )


def n_windows(arrays: TrainingArrays, window: int | None) -> int:
    """Number of samples: time steps, or windows of ``window`` consecutive steps."""
    return arrays.n_samples if window is None else arrays.n_samples - window + 1


def patch_shape(
    patch_size: int | Mapping[str, int] | None, scale: int, lr_shape: tuple[int, int]
) -> tuple[int, int]:
    """Low-resolution patch (height, width) for a high-resolution ``patch_size``.

    ``None`` or a size at least the grid means whole fields.
    """
    h, w = lr_shape
    if patch_size is None:
        return h, w
    if isinstance(patch_size, Mapping):
        sizes = list(patch_size.values())
        if len(sizes) != 2:
            raise ConfigError(
                f"patch_size={dict(patch_size)!r} must give two sizes, one per spatial dim."
            )
        py, px = sizes
    else:
        py = px = patch_size
    out = []
    for p, n in ((py, h), (px, w)):
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < scale or p % scale:
            raise ConfigError(
                f"patch_size={patch_size!r}: each size must be an integer multiple of "
                f"scale={scale} (in high-resolution cells), e.g. patch_size={scale * 16}."
            )
        out.append(min(p // scale, n))
    return out[0], out[1]


def random_patches(
    arrays: TrainingArrays,
    *,
    scale: int,
    patch: tuple[int, int],
    batch_size: int,
    n_batches: int,
    rng: np.random.Generator,
    window: int | None = None,
    workers: int = 0,
) -> Iterator[Batch]:
    """``n_batches`` batches of random time steps (or windows) and random patch positions.

    The positions of the whole epoch are drawn here, in this process, so the batches do
    not depend on ``workers``: with ``workers > 0`` they are read (lazily, for
    :class:`LazyArray` data) in that many worker processes, a few batches ahead.
    """
    n = n_windows(arrays, window)
    _, _, h, w = arrays.lowres.shape
    ph, pw = patch
    specs = []
    for _ in range(n_batches):
        t = rng.integers(0, n, size=batch_size)
        ys = rng.integers(0, h - ph + 1, size=batch_size)
        xs = rng.integers(0, w - pw + 1, size=batch_size)
        specs.append((t, ys, xs, ph, pw))
    return _batches(arrays, specs, scale, window, workers)


def _batches(
    arrays: TrainingArrays, specs: list[tuple], scale: int, window: int | None, workers: int
) -> Iterator[Batch]:
    if workers <= 0:
        return (
            _make_batch(arrays, t, ys, xs, ph, pw, scale, window) for t, ys, xs, ph, pw in specs
        )
    from torch.utils.data import DataLoader

    dataset = _SpecDataset(arrays, specs, scale, window)
    # spawned, not forked, workers: forking a process that runs dask and torch threads
    # can deadlock the children
    return iter(
        DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            collate_fn=_identity,  # type: ignore[arg-type]
            prefetch_factor=2,
            persistent_workers=False,
            multiprocessing_context="spawn",
            worker_init_fn=_init_worker,
        )
    )


def _init_worker(worker_id: int) -> None:
    """Each loader worker reads with dask's synchronous scheduler, one thread."""
    import dask

    dask.config.set(scheduler="synchronous")


class _SpecDataset:
    """Map-style dataset: item ``i`` is the ``i``-th batch of the epoch (for DataLoader)."""

    def __init__(self, arrays: TrainingArrays, specs: list[tuple], scale: int, window: int | None):
        self.arrays, self.specs, self.scale, self.window = arrays, specs, scale, window

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> Batch:
        t, ys, xs, ph, pw = self.specs[i]
        return _make_batch(self.arrays, t, ys, xs, ph, pw, self.scale, self.window)


def _identity(batch: Batch) -> Batch:
    return batch


def whole_fields(
    arrays: TrainingArrays, *, scale: int, batch_size: int, window: int | None = None
) -> Iterator[Batch]:
    """All samples, whole fields, in order (for validation). With ``window``, windows
    start every ``window`` steps, the last one ending on the last step, so every step is
    covered."""
    n, _, h, w = arrays.lowres.shape
    if window is None:
        starts = np.arange(n)
    else:
        starts = np.unique(np.append(np.arange(0, n - window + 1, window), n - window))
    for first in range(0, len(starts), batch_size):
        t = starts[first : first + batch_size]
        zeros = np.zeros_like(t)
        yield _make_batch(arrays, t, zeros, zeros, h, w, scale, window)
