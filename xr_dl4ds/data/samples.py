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

__all__ = ["TrainingArrays", "to_arrays", "Batch", "random_patches", "whole_fields", "patch_shape"]


@dataclasses.dataclass(frozen=True)
class TrainingArrays:
    """Normalized float32 arrays of a pair (NaNs of inputs filled with 0, the mean).

    ``lowres``: (T, C_lr, h, w) target + predictors; ``static_lowres``: (C_s, h, w);
    ``static``: (C_s, H, W); ``highres``: (T, C_out, H, W) with NaN where missing.
    """

    lowres: np.ndarray
    static_lowres: np.ndarray
    static: np.ndarray
    highres: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.lowres.shape[0])


def _stack(
    ds: xr.Dataset, names: tuple[str, ...], stats: Mapping[str, VariableStats], dims: tuple
) -> np.ndarray:
    if not names:
        return np.zeros((0,), np.float32)
    arrays = [normalize(ds[n], stats[n]).transpose(*dims).values for n in names]
    return np.stack(arrays, axis=-3).astype(np.float32, copy=False)


def to_arrays(p: Pair, stats: Mapping[str, VariableStats]) -> TrainingArrays:
    """Load and normalize the pair into memory (one compute per variable)."""
    y, x = p.spatial_dims
    t = p.time_dim
    lr_names = p.target + p.predictors
    lowres = _stack(p.lowres, lr_names, stats, (t, y, x))
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
    valid = np.isfinite(highres)
    if not valid.any():
        raise DataError(
            f"The target {list(p.target)} is NaN everywhere in the training period: there is "
            "nothing to learn from. Check the time selection and the missing-value encoding."
        )
    if not np.isfinite(static).all():
        static = np.nan_to_num(static, nan=0.0)
        static_lr = np.nan_to_num(static_lr, nan=0.0)
    return TrainingArrays(
        lowres=np.nan_to_num(lowres, nan=0.0),
        static_lowres=static_lr,
        static=static,
        highres=highres,
    )


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch: network input, static input, target and validity mask (float 0/1)."""

    lowres: np.ndarray  # (B, C_in, h, w): time-varying channels + static_lowres
    static: np.ndarray | None  # (B, C_s, H, W)
    target: np.ndarray  # (B, C_out, H, W), NaN replaced by 0
    mask: np.ndarray  # (B, C_out, H, W)


def _make_batch(
    arrays: TrainingArrays,
    t: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    ph: int,
    pw: int,
    scale: int,
) -> Batch:
    lr_list, s_list, y_list = [], [], []
    for ti, yi, xi in zip(t, ys, xs, strict=True):
        lr_sl = (slice(yi, yi + ph), slice(xi, xi + pw))
        hr_sl = (slice(yi * scale, (yi + ph) * scale), slice(xi * scale, (xi + pw) * scale))
        lr_list.append(
            np.concatenate(
                [
                    arrays.lowres[ti][(slice(None), *lr_sl)],
                    arrays.static_lowres[(slice(None), *lr_sl)],
                ],
                axis=0,
            )
        )
        s_list.append(arrays.static[(slice(None), *hr_sl)])
        y_list.append(arrays.highres[ti][(slice(None), *hr_sl)])
    target = np.stack(y_list)
    mask = np.isfinite(target)
    return Batch(
        lowres=np.stack(lr_list),
        static=np.stack(s_list) if arrays.static.shape[0] else None,
        target=np.where(mask, target, 0.0).astype(np.float32),
        mask=mask.astype(np.float32),
    )


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
) -> Iterator[Batch]:
    """``n_batches`` batches of random time steps and random patch positions."""
    n, _, h, w = arrays.lowres.shape
    ph, pw = patch
    for _ in range(n_batches):
        t = rng.integers(0, n, size=batch_size)
        ys = rng.integers(0, h - ph + 1, size=batch_size)
        xs = rng.integers(0, w - pw + 1, size=batch_size)
        yield _make_batch(arrays, t, ys, xs, ph, pw, scale)


def whole_fields(arrays: TrainingArrays, *, scale: int, batch_size: int) -> Iterator[Batch]:
    """All samples, whole fields, in order (for validation)."""
    n, _, h, w = arrays.lowres.shape
    for start in range(0, n, batch_size):
        t = np.arange(start, min(start + batch_size, n))
        zeros = np.zeros_like(t)
        yield _make_batch(arrays, t, zeros, zeros, h, w, scale)
