"""Verification metrics over named dimensions, and the interpolation baseline.

Every metric skips cells where either field is missing (NaN).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from .exceptions import ConfigError
from .grid import check_scale, get_spatial_dims, highres_coords, is_periodic

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

__all__ = ["rmse", "mae", "bias", "interpolate", "INTERPOLATION_METHODS"]

INTERPOLATION_METHODS = ("bicubic", "bilinear", "nearest")


def _valid_pair(a: T_Xarray, b: T_Xarray) -> tuple[T_Xarray, T_Xarray]:
    a, b = xr.align(a, b, join="exact")
    valid = a.notnull() & b.notnull()
    return a.where(valid), b.where(valid)


def rmse(
    prediction: T_Xarray, truth: T_Xarray, dim: str | Sequence[Hashable] | None = None
) -> T_Xarray:
    """Root-mean-square error over ``dim`` (all dims by default), NaNs skipped.

    Examples
    --------
    >>> import xarray as xr
    >>> float(rmse(xr.DataArray([1.0, 2.0]), xr.DataArray([1.0, 4.0])))
    1.4142135623730951
    """
    a, b = _valid_pair(prediction, truth)
    return ((a - b) ** 2).mean(dim) ** 0.5


def mae(
    prediction: T_Xarray, truth: T_Xarray, dim: str | Sequence[Hashable] | None = None
) -> T_Xarray:
    """Mean absolute error over ``dim`` (all dims by default), NaNs skipped."""
    a, b = _valid_pair(prediction, truth)
    return abs(a - b).mean(dim)


def bias(
    prediction: T_Xarray, truth: T_Xarray, dim: str | Sequence[Hashable] | None = None
) -> T_Xarray:
    """Mean of ``prediction - truth`` over ``dim`` (all dims by default), NaNs skipped."""
    a, b = _valid_pair(prediction, truth)
    return (a - b).mean(dim)


def _interp_kernel(arr: np.ndarray, *, scale: int, method: str, halo: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    lead, (h, w) = arr.shape[:-2], arr.shape[-2:]
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32).reshape(-1, 1, h, w))
    if halo:
        x = torch.cat([x[..., -halo:], x, x[..., :halo]], dim=-1)
    kwargs = {} if method == "nearest" else {"align_corners": False}
    y = F.interpolate(x, scale_factor=scale, mode=method, **kwargs)
    if halo:
        y = y[..., halo * scale : y.shape[-1] - halo * scale]
    return y.numpy().reshape(lead + (h * scale, w * scale)).astype(arr.dtype, copy=False)


def interpolate(
    coarse: T_Xarray,
    *,
    scale: int,
    method: str = "bicubic",
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> T_Xarray:
    """Interpolate coarse fields onto the high-resolution grid: the baseline to beat.

    Uses the block-mean convention of :func:`xr_dl4ds.coarsen` (the fine grid is the one
    :func:`xr_dl4ds.grid.highres_coords` derives); periodic longitudes wrap around, other
    borders are extended by replication. It is the same interpolation that the networks'
    residual skip starts from. Dask input stays lazy.

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataarray
    >>> hr = synthetic_dataarray(ny=32, nx=48)
    >>> interpolate(hr.dl4ds.coarsen(scale=4), scale=4).shape
    (8, 32, 48)
    """
    scale = check_scale(scale)
    if method not in INTERPOLATION_METHODS:
        raise ConfigError(f"method={method!r} is not one of {INTERPOLATION_METHODS}.")
    y, x = get_spatial_dims(coarse, spatial_dims)
    halo = min(4, coarse.sizes[x]) if x in coarse.coords and is_periodic(coarse[x]) else 0
    coords = highres_coords(coarse, scale, spatial_dims=(y, x))

    def one(da: xr.DataArray) -> xr.DataArray:
        if not {y, x} <= set(da.dims):
            return da
        dims = list(da.dims)
        if da.chunks is not None:
            da = da.chunk({y: -1, x: -1})
        out = (
            xr.apply_ufunc(
                _interp_kernel,
                da,
                input_core_dims=[[y, x]],
                output_core_dims=[["_y_hr", "_x_hr"]],
                exclude_dims={y, x},
                dask="parallelized",
                output_dtypes=[da.dtype],
                dask_gufunc_kwargs={
                    "output_sizes": {"_y_hr": da.sizes[y] * scale, "_x_hr": da.sizes[x] * scale}
                },
                kwargs={"scale": scale, "method": method, "halo": halo},
                keep_attrs=True,
            )
            .rename({"_y_hr": y, "_x_hr": x})
            .transpose(*dims)
        )
        return out.assign_coords({k: v for k, v in coords.items() if set(v.dims) <= set(out.dims)})

    if isinstance(coarse, xr.DataArray):
        return one(coarse)
    return coarse.map(one, keep_attrs=True).assign_coords({k: v for k, v in coords.items()})
