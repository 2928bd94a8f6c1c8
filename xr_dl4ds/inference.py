"""Downscaling with a trained model: ``xr.apply_ufunc`` over dask chunks along time."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import xarray as xr

from .cf import _OUT, assemble_output
from .data.normalization import convert_units, normalize
from .data.pairing import _as_dataset, get_time_dim
from .exceptions import ConfigError, GridError, ScaleError, VariableError
from .grid import (
    _is_longitude,
    _spacing,
    get_spatial_dims,
    is_periodic,
    locate_subgrid,
)
from .options import OPTIONS

if TYPE_CHECKING:
    from .downscaler import Downscaler

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

__all__ = ["downscale"]

# One forward pass at a time per process: torch already uses every core inside a pass, and
# dask's threads each starting one would oversubscribe the CPU (measured on 2 cores: a
# training step ran 5-30x slower while another busy process competed for the cores).
_TORCH_LOCK = threading.Lock()

_CHANNEL = "dl4ds_channel"


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


def _locate(ds: xr.Dataset, model: Downscaler, y: Hashable, x: Hashable) -> tuple[int, int] | None:
    """Offset of the input grid inside the model's low-res grid; None when it is elsewhere
    (allowed only for models without static fields or mask)."""
    g = model.grid
    ref = {
        y: g.lowres[g.y] if g.y in g.lowres.coords else None,
        x: g.lowres[g.x] if g.x in g.lowres.coords else None,
    }
    needs_grid = bool(model.static_names) or model.mask is not None or model.config.localcon
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
                    "regrid it onto model.grid.lowres (the coarse grid of the training data)."
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


class _Runner:
    """Runs the network on normalized numpy samples of one block: adds the static
    channels of the block's place, wraps periodic longitudes, batches, and crops."""

    def __init__(
        self,
        model: Downscaler,
        offset: tuple[int, int] | None,
        shape: tuple[int, int],
        *,
        batch_size: int,
        device: str,
        halo: int,
    ) -> None:
        import torch

        s = model.scale
        h, w = shape
        if offset is not None and model.static_names:
            iy, ix = offset
            st_lr = model.static_lowres[:, iy : iy + h, ix : ix + w]
            st_hr = model.static[:, iy * s : (iy + h) * s, ix * s : (ix + w) * s]
        else:
            st_lr = np.zeros((0, h, w), np.float32)
            st_hr = None
        if halo:  # periodic longitude: wrap the x border around
            st_lr = _wrap(st_lr, halo)
            if st_hr is not None:
                st_hr = _wrap(st_hr, halo * s)
        self.model, self.halo, self.batch_size = model, halo, batch_size
        self.dev = torch.device(device)
        self.net = model.network(device)
        self.st_lr = torch.from_numpy(np.ascontiguousarray(st_lr)).to(self.dev)
        self.st_hr = (
            None if st_hr is None else torch.from_numpy(np.ascontiguousarray(st_hr)).to(self.dev)
        )
        # high-res position of the output's top-left cell in the training grid
        self.hr_offset = None
        if model.config.localcon and offset is not None:
            self.hr_offset = (offset[0] * s, (offset[1] - halo) * s)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(B, [T,] C, h, w) -> (B, [T,] C_out, H, W), in batches of ``batch_size``."""
        import torch

        s, halo = self.model.scale, self.halo
        if halo:
            samples = _wrap(samples, halo)
        h, w = samples.shape[-2:]
        out_shape = samples.shape[:-3] + (self.model.config.out_channels, h * s, (w - 2 * halo) * s)
        out = np.empty(out_shape, np.float32)
        kwargs = {} if self.hr_offset is None else {"offset": self.hr_offset}
        with _TORCH_LOCK, torch.inference_mode():
            for start in range(0, samples.shape[0], self.batch_size):
                xb = torch.from_numpy(
                    np.ascontiguousarray(samples[start : start + self.batch_size], np.float32)
                ).to(self.dev)
                n = xb.shape[0]
                st = self.st_lr.expand(*xb.shape[:-3], -1, -1, -1)
                xb = torch.cat([xb, st], dim=-3)
                sb = None if self.st_hr is None else self.st_hr.expand(n, -1, -1, -1)
                yb = self.net(xb, sb, **kwargs)
                if halo:
                    yb = yb[..., halo * s : yb.shape[-1] - halo * s]
                out[start : start + n] = yb.float().cpu().numpy()
        return out


def _wrap(a: np.ndarray, n: int) -> np.ndarray:
    """Pad the last axis circularly by ``n`` on both sides."""
    return np.concatenate([a[..., -n:], a, a[..., :n]], axis=-1)


def _kernel(
    arr: np.ndarray,
    *,
    model: Downscaler,
    offset: tuple[int, int] | None,
    batch_size: int,
    device: str,
    halo: int,
) -> np.ndarray:
    """Spatial models: (..., C, h, w) normalized low-res -> (..., C_out, H, W)."""
    lead, (c, h, w) = arr.shape[:-3], arr.shape[-3:]
    s = model.scale
    flat = arr.reshape((-1, c, h, w))
    if flat.shape[0] == 0:
        return np.empty(lead + (model.config.out_channels, h * s, w * s), np.float32)
    run = _Runner(model, offset, (h, w), batch_size=batch_size, device=device, halo=halo)
    out = run(flat)
    return out.reshape(lead + out.shape[1:])


def _windows_kernel(
    arr: np.ndarray,
    *,
    model: Downscaler,
    offset: tuple[int, int] | None,
    batch_size: int,
    device: str,
    halo: int,
    n_out: int,
) -> np.ndarray:
    """Spatio-temporal models: (..., T_in, C, h, w) -> (..., n_out, C_out, H, W).

    The last ``n_out`` steps get an output; the ``T_in - n_out`` steps before them are
    the halo from the previous chunk. Step ``t`` is the last frame of the network's
    output for the window of steps ``t - time_window + 1 .. t`` (shorter at the very
    start of the series), so the result does not depend on the chunking.
    """
    window = int(model.config.time_window)  # type: ignore[arg-type]
    lead, (t_in, c, h, w) = arr.shape[:-4], arr.shape[-4:]
    s = model.scale
    flat = arr.reshape((-1, t_in, c, h, w))
    out = np.empty((flat.shape[0], n_out, model.config.out_channels, h * s, w * s), np.float32)
    if flat.size == 0 or n_out == 0:
        return out.reshape(lead + out.shape[1:])
    run = _Runner(model, offset, (h, w), batch_size=batch_size, device=device, halo=halo)
    first = t_in - n_out
    full = [t for t in range(first, t_in) if t >= window - 1]
    for t in range(first, t_in):  # start of the series: shorter windows, one by one
        if t < window - 1:
            out[:, t - first] = run(flat[:, : t + 1])[:, -1]
    if full:
        starts = np.asarray(full) - window + 1
        for b in range(flat.shape[0]):
            windows = np.stack([flat[b, i : i + window] for i in starts])
            out[b, np.asarray(full) - first] = run(windows)[:, -1]
    return out.reshape(lead + out.shape[1:])


def _apply_windows(
    stacked: xr.DataArray,
    tdim: Hashable,
    y: Hashable,
    x: Hashable,
    kwargs: dict[str, Any],
    out_sizes: tuple[int, int, int],
) -> xr.DataArray:
    """Run ``_windows_kernel`` over (lazy) data, chunked along time with a halo of
    ``time_window - 1`` steps from the previous chunk."""
    lead = [d for d in stacked.dims if d not in (tdim, _CHANNEL, y, x)]
    stacked = stacked.transpose(*lead, tdim, _CHANNEL, y, x)
    window = int(kwargs["model"].config.time_window)
    data = stacked.data
    t_axis = len(lead)
    n_var, hh, ww = out_sizes
    if not isinstance(data, np.ndarray) and hasattr(data, "dask"):
        import dask.array as dsa

        data = data.rechunk({t_axis + 1: -1, t_axis + 2: -1, t_axis + 3: -1})
        if min(data.chunks[t_axis]) < window - 1:  # every chunk must hold a whole halo
            data = data.rechunk({t_axis: max(window - 1, int(np.median(data.chunks[t_axis])))})
        tchunks = data.chunks[t_axis]
        depth: dict[int, int | tuple[int, int]] = {i: 0 for i in range(data.ndim)}
        depth[t_axis] = (window - 1, 0)
        over = dsa.overlap.overlap(data, depth=depth, boundary="none")

        def block(a: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
            assert block_id is not None
            return _windows_kernel(a, n_out=tchunks[block_id[t_axis]], **kwargs)

        out_chunks = (*data.chunks[:t_axis], tchunks, (n_var,), (hh,), (ww,))
        result = over.map_blocks(block, chunks=out_chunks, dtype=np.float32)
    else:
        result = _windows_kernel(np.asarray(data), n_out=data.shape[t_axis], **kwargs)
    coords = {n: c.variable for n, c in stacked.coords.items() if set(c.dims) <= set(lead) | {tdim}}
    return xr.DataArray(result, dims=(*lead, tdim, *_OUT), coords=coords)


def downscale(
    obj: T_Xarray,
    model: Downscaler | str | None = None,
    *,
    batch_size: int = 8,
    device: str = "auto",
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> T_Xarray:
    """Downscale coarse data with a trained model.

    Runs the network with :func:`xarray.apply_ufunc` (``dask="parallelized"``): dask-backed
    input stays lazy and is computed chunk by chunk along time (and every other
    non-spatial dim); the spatial dims are gathered into one chunk per task if they were
    split. Inputs are converted to the training units with pint, normalized, passed
    through the network (on the GPU when ``device="auto"`` finds one) and denormalized.

    The output is on the high-resolution grid: on the training grid (or a part of it) its
    spatial coordinates are exactly the training high-resolution ones; elsewhere (models
    without static fields) they are derived from the input's by the block-mean
    convention. It keeps every non-spatial coordinate, the attrs of each variable (with
    the training units), the global attrs, the grid-mapping variable, and gets one new
    ``history`` line.

    Parameters
    ----------
    obj : DataArray or Dataset
        Coarse data: the model's target variable(s) (and predictors, in a Dataset).
    model : Downscaler or path, optional
        Default: ``xr_dl4ds.set_options(model=...)``.
    batch_size : int
        Samples per forward pass.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
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
    """
    from .training.supervised import resolve_device

    model = _resolve_model(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1.")
    dev = str(resolve_device(device))
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
    offset = _locate(ds, model, y, x)
    s = model.scale
    halo = 0
    # periodic longitude: wrap a halo around the date line (not for the localized
    # convolution, whose per-pixel weights are indexed on the unwrapped training grid)
    if model.grid.periodic and x in ds.coords and is_periodic(ds[x]) and not model.config.localcon:
        halo = min(8, ds.sizes[x])

    # lazily: units -> normalize -> fill -> stack channels
    channels = []
    for n in needed:
        da = convert_units(ds[n], model.stats[n].units, name=n)
        channels.append(normalize(da, model.stats[n]).fillna(0.0))
    template_dims = [d for d in ds[model.target[0]].dims]
    stacked = xr.concat(
        channels, dim=_CHANNEL, coords="minimal", compat="override", join="override"
    )
    if stacked.chunks is not None:
        stacked = stacked.chunk({_CHANNEL: -1, y: -1, x: -1})
    h, w = ds.sizes[y], ds.sizes[x]
    kwargs = {
        "model": model,
        "offset": offset,
        "batch_size": batch_size,
        "device": dev,
        "halo": halo,
    }
    if model.config.time_window is not None:
        tdim = model.grid.time_dim if model.grid.time_dim in stacked.dims else get_time_dim(stacked)
        if tdim is None:
            raise GridError(
                f"The model is spatio-temporal (time_window={model.config.time_window}) and "
                f"needs a time dimension; the input has dims {tuple(ds[model.target[0]].dims)}."
            )
        out = _apply_windows(stacked, tdim, y, x, kwargs, (len(model.target), h * s, w * s))
    else:
        out = xr.apply_ufunc(
            _kernel,
            stacked,
            input_core_dims=[[_CHANNEL, y, x]],
            output_core_dims=[list(_OUT)],
            exclude_dims={y, x},
            dask="parallelized",
            output_dtypes=[np.float32],
            dask_gufunc_kwargs={
                "output_sizes": {_OUT[0]: len(model.target), _OUT[1]: h * s, _OUT[2]: w * s}
            },
            kwargs=kwargs,
            keep_attrs=True,  # keeps the attrs of non-spatial coords; variable attrs set below
        )

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
    )
