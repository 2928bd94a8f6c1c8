"""Downscaling with a trained model: ``xr.apply_ufunc`` over dask chunks along time."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import xarray as xr

from .data.normalization import convert_units, denormalize, normalize
from .data.pairing import _as_dataset
from .exceptions import ConfigError, GridError, ScaleError, VariableError
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

__all__ = ["downscale"]

# One forward pass at a time per process: torch already uses every core inside a pass, and
# dask's threads each starting one would oversubscribe the CPU (measured on 2 cores: a
# training step ran 5-30x slower while another busy process competed for the cores).
_TORCH_LOCK = threading.Lock()

_CHANNEL = "dl4ds_channel"
_OUT = ("dl4ds_variable", "dl4ds_y", "dl4ds_x")


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
    needs_grid = bool(model.static_names) or model.mask is not None
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
                    f"{d!r}: {err} The model uses static fields ({', '.join(model.static_names) or 'mask'}) "
                    "on its training grid, so the input must be on that grid or a part of it: "
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


def _kernel(
    arr: np.ndarray,
    *,
    model: Downscaler,
    offset: tuple[int, int] | None,
    batch_size: int,
    device: str,
    halo: int,
) -> np.ndarray:
    """(..., C, h, w) normalized low-res -> (..., C_out, H, W) normalized high-res."""
    import torch

    s = model.scale
    lead, (c, h, w) = arr.shape[:-3], arr.shape[-3:]
    flat = arr.reshape((-1, c, h, w))
    out = np.empty((flat.shape[0], model.config.out_channels, h * s, w * s), np.float32)
    if flat.shape[0] == 0:
        return out.reshape(lead + out.shape[1:])
    if offset is not None and model.static_names:
        iy, ix = offset
        st_lr = model.static_lowres[:, iy : iy + h, ix : ix + w]
        st_hr = model.static[:, iy * s : (iy + h) * s, ix * s : (ix + w) * s]
    else:
        st_lr = np.zeros((0, h, w), np.float32)
        st_hr = None
    if halo:  # periodic longitude: wrap the x border around
        flat = np.concatenate([flat[..., -halo:], flat, flat[..., :halo]], axis=-1)
        st_lr = np.concatenate([st_lr[..., -halo:], st_lr, st_lr[..., :halo]], axis=-1)
        if st_hr is not None:
            hs = halo * s
            st_hr = np.concatenate([st_hr[..., -hs:], st_hr, st_hr[..., :hs]], axis=-1)
    net = model.network(device)
    dev = torch.device(device)
    st_lr_t = torch.from_numpy(np.ascontiguousarray(st_lr)).to(dev)
    st_hr_t = None if st_hr is None else torch.from_numpy(np.ascontiguousarray(st_hr)).to(dev)
    with _TORCH_LOCK, torch.inference_mode():
        for start in range(0, flat.shape[0], batch_size):
            xb = torch.from_numpy(
                np.ascontiguousarray(flat[start : start + batch_size], np.float32)
            ).to(dev)
            n = xb.shape[0]
            xb = torch.cat([xb, st_lr_t.expand(n, -1, -1, -1)], dim=1)
            sb = None if st_hr_t is None else st_hr_t.expand(n, -1, -1, -1)
            yb = net(xb, sb)
            if halo:
                yb = yb[..., halo * s : yb.shape[-1] - halo * s]
            out[start : start + n] = yb.float().cpu().numpy()
    return out.reshape(lead + out.shape[1:])


def _history_line(model: Downscaler) -> str:
    from . import __version__

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    c = model.config
    return (
        f"{now}: downscaled x{c.scale} with xr_dl4ds {__version__} "
        f"({c.backbone}+{c.upsampling}, target {', '.join(model.target)})"
    )


def _prepend_history(attrs: Mapping[str, Any], line: str) -> dict[str, Any]:
    out = dict(attrs)
    old = out.get("history")
    out["history"] = f"{line}\n{old}" if old else line
    return out


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
    if model.grid.periodic and x in ds.coords and is_periodic(ds[x]):
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
        kwargs={
            "model": model,
            "offset": offset,
            "batch_size": batch_size,
            "device": dev,
            "halo": halo,
        },
        keep_attrs=True,  # keeps the attrs of the non-spatial coords; variable attrs are set below
    )

    # high-res coordinates
    if offset is not None:
        iy, ix = offset
        g = model.grid
        hr_coords = {
            n: c.variable
            for n, c in g.highres.isel(
                {g.y: slice(iy * s, (iy + h) * s), g.x: slice(ix * s, (ix + w) * s)}
            )
            .rename({g.y: y, g.x: x})
            .coords.items()
        }
        derived = highres_coords(ds, s, spatial_dims=(y, x))
        for name, var in derived.items():
            hr_coords.setdefault(name, var)
    else:
        hr_coords = highres_coords(ds, s, spatial_dims=(y, x))
    mask = None
    if offset is not None and model.mask is not None:
        iy, ix = offset
        mask = model.mask[:, iy * s : (iy + h) * s, ix * s : (ix + w) * s]
    history = _history_line(model)
    results = {}
    for k, n in enumerate(model.target):
        da = out.isel({_OUT[0]: k}, drop=True).rename({_OUT[1]: y, _OUT[2]: x})
        da = denormalize(da, model.stats[n])
        if mask is not None and not mask[k].all():
            da = da.where(xr.DataArray(mask[k], dims=(y, x)))
        order = [d for d in template_dims if d in da.dims]
        da = da.transpose(*order)
        da = da.assign_coords({c: v for c, v in hr_coords.items()})
        attrs = dict(ds[n].attrs)
        if model.stats[n].units is not None:
            attrs["units"] = model.stats[n].units
        da.attrs = attrs
        da.encoding = {}
        results[n] = da.rename(n)

    gm = model.grid.grid_mapping
    if is_da:
        result = results[model.target[0]]
        result = result.rename(obj.name)
        result.attrs = _prepend_history(result.attrs, history)
        if gm and gm in obj.coords:
            result = result.assign_coords({gm: obj.coords[gm]})
        elif gm and gm in model.grid.highres.variables:
            # keep the CF grid mapping with the data, so to_netcdf writes it
            result = result.assign_coords({gm: model.grid.highres[gm].variable})
        return result  # type: ignore[return-value]
    keep = {n: v for n, v in ds.data_vars.items() if not ({y, x} & set(v.dims)) and n not in needed}
    out_ds = xr.Dataset({**results, **keep}, attrs=_prepend_history(ds.attrs, history))
    if gm and gm not in out_ds.variables and gm in model.grid.highres.variables:
        out_ds[gm] = model.grid.highres[gm]
    out_ds.attrs.setdefault("Conventions", "CF-1.8")
    return out_ds  # type: ignore[return-value]
