"""CF-compliant output of :func:`xr_dl4ds.downscale`: high-res coordinates, attrs, provenance."""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from .data.normalization import denormalize
from .grid import highres_coords

if TYPE_CHECKING:
    from .downscaler import Downscaler

__all__ = ["assemble_output"]

_OUT = ("dl4ds_variable", "dl4ds_y", "dl4ds_x")


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


def assemble_output(
    out: xr.DataArray,
    ds: xr.Dataset,
    model: Downscaler,
    *,
    offset: tuple[int, int] | None,
    spatial_dims: tuple[Hashable, Hashable],
    template_dims: Sequence[Hashable],
    dataarray_name: Hashable | None,
    is_dataarray: bool,
    input_coords: Mapping[Hashable, Any],
) -> Any:
    """Turn the network output ``out`` (normalized; dims ``(..., dl4ds_variable, dl4ds_y,
    dl4ds_x)``) into the downscaled DataArray or Dataset: denormalized, masked, with the
    high-res coordinates, the variables' attrs and the provenance attrs."""
    y, x = spatial_dims
    needed = list(model.target + model.predictors)
    h, w = ds.sizes[y], ds.sizes[x]
    s = model.scale
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
    if is_dataarray:
        result = results[model.target[0]]
        result = result.rename(dataarray_name)
        result.attrs = _prepend_history(result.attrs, history)
        if gm and gm in input_coords:
            result = result.assign_coords({gm: input_coords[gm]})
        elif gm and gm in model.grid.highres.variables:
            # keep the CF grid mapping with the data, so to_netcdf writes it
            result = result.assign_coords({gm: model.grid.highres[gm].variable})
        return result
    keep = {n: v for n, v in ds.data_vars.items() if not ({y, x} & set(v.dims)) and n not in needed}
    out_ds = xr.Dataset({**results, **keep}, attrs=_prepend_history(ds.attrs, history))
    if gm and gm not in out_ds.variables and gm in model.grid.highres.variables:
        out_ds[gm] = model.grid.highres[gm]
    out_ds.attrs.setdefault("Conventions", "CF-1.8")
    return out_ds
