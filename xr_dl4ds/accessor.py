"""The ``.dl4ds`` accessor on DataArray and Dataset: a thin namespace over public functions.

Each method validates nothing itself and calls exactly one function of the package (whose
docstring has the details); the accessor holds no state and returns new objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import xarray as xr

from . import grid
from .baselines import interpolate
from .data.pairing import Pair, pair
from .downscaler import fit
from .evaluation import evaluate
from .inference import downscale

if TYPE_CHECKING:
    from .downscaler import Downscaler

__all__ = ["DL4DSDataArrayAccessor", "DL4DSDatasetAccessor"]

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)
SpatialDims = Sequence[Hashable] | Mapping[str, Hashable] | None


class _DL4DSAccessor(Generic[T_Xarray]):
    def __init__(self, obj: T_Xarray) -> None:
        self._obj: T_Xarray = obj

    @property
    def spatial_dims(self) -> tuple[Hashable, Hashable]:
        """The ``(y, x)`` spatial dimensions (see :func:`xr_dl4ds.grid.get_spatial_dims`).

        Found from the CF attributes of the coordinates, then from common names; raises
        :class:`~xr_dl4ds.exceptions.GridError` when there are none.

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=8, nx=8)
        >>> hr.dl4ds.spatial_dims, hr["tas"].dl4ds.spatial_dims
        (('lat', 'lon'), ('lat', 'lon'))
        >>> synthetic_dataset(nt=2, ny=8, nx=8, grid="rotated").dl4ds.spatial_dims
        ('rlat', 'rlon')
        >>> renamed = hr["tas"].rename(lat="j", lon="i")  # CF attrs still say latitude
        >>> renamed.dl4ds.spatial_dims
        ('j', 'i')
        """
        return grid.get_spatial_dims(self._obj)

    def coarsen(self, *, scale: int, spatial_dims: SpatialDims = None) -> T_Xarray:
        """Block-mean coarsening by ``scale`` (see :func:`xr_dl4ds.coarsen`).

        Each coarse cell is the mean of ``scale x scale`` fine cells (NaNs skipped), at the
        mean of their centres; attrs, other coordinates and variables are kept.

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
        >>> dict(coarse.sizes), coarse["lat"].values
        ({'time': 2, 'lat': 4, 'lon': 4}, array([35., 45., 55., 65.]))
        >>> round(float(coarse[0, 0, 0]), 3), round(float(hr["tas"][0, :4, :4].mean()), 3)
        (290.466, 290.466)
        >>> coarse.attrs["units"]
        'K'

        On a Dataset, every variable with the spatial dims (static ones too):

        >>> lowres = hr.dl4ds.coarsen(scale=4)
        >>> {name: lowres[name].shape for name in lowres.data_vars}
        {'tas': (2, 4, 4), 'orog': (4, 4), 'sftlf': (4, 4)}
        """
        return grid.coarsen(self._obj, scale, spatial_dims=spatial_dims)

    def pair(self, *, scale: int, **kwargs: Any) -> Pair:
        """Pair high- and low-resolution data (see :func:`xr_dl4ds.pair`).

        Examples
        --------
        A Dataset brings its static fields (variables without time); a DataArray is the
        target alone:

        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=4, ny=16, nx=16)
        >>> p = hr.dl4ds.pair(scale=4)
        >>> p.target, p.static_names, p.mode
        (('tas',), ('orog', 'sftlf'), 'perfect_prognosis')
        >>> dict(p.lowres["tas"].sizes)
        {'time': 4, 'lat': 4, 'lon': 4}
        >>> hr["tas"].dl4ds.pair(scale=4).static_names
        ()
        >>> hr.dl4ds.pair(scale=4, static="orog").static_names
        ('orog',)
        """
        return pair(self._obj, scale=scale, **kwargs)

    def fit(self, *, scale: int, **kwargs: Any) -> Downscaler:
        """Train a downscaling model on this high-resolution data (see :func:`xr_dl4ds.fit`).

        Examples
        --------
        A (tiny) model for ``tas`` with the Dataset's orography and land fraction as
        static inputs; a real one trains longer, on larger patches:

        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> model.target, model.static_names, model.scale
        (('tas',), ('orog', 'sftlf'), 4)
        >>> model.history["loss"].sizes["epoch"], model.training["device"]
        (1, 'cpu')

        From a DataArray, the model learns from the target alone:

        >>> hr["tas"].dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...                     n_filters=4, n_blocks=1, device="cpu", progress=False)
        <xr_dl4ds.Downscaler resnet+spc x4>
          target:     tas [K]
          predictors: -
          static:     -
          grid:       lat: 4 -> 16, lon: 4 -> 16
          ...
        """
        return fit(self._obj, scale=scale, **kwargs)

    def downscale(self, model: Downscaler | str | None = None, **kwargs: Any) -> T_Xarray:
        """Downscale this coarse data with ``model`` (see :func:`xr_dl4ds.downscale`).

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
        >>> fine = coarse.dl4ds.downscale(model, device="cpu")
        >>> fine.dims, fine.shape, fine.attrs["units"]
        (('time', 'lat', 'lon'), (2, 16, 16), 'K')
        >>> bool((fine["lat"] == hr["lat"]).all())  # the training high-res grid
        True
        >>> time, call = fine.attrs["history"].split(": ", 1)  # provenance, after UTC time
        >>> print(call)
        xr_dl4ds.downscale(model='...', device='cpu') (model ...): downscaled x4 with
        xr_dl4ds ... (resnet+spc, target tas)

        A Dataset gives a Dataset of the downscaled target(s), with CF global attrs; dask
        input stays lazy:

        >>> out = hr.dl4ds.coarsen(scale=4).chunk(time=1).dl4ds.downscale(model, device="cpu")
        >>> list(out.data_vars), out["tas"].chunks, out.attrs["Conventions"]
        (['tas'], ((1, 1), (16,), (16,)), 'CF-1.8')
        """
        return downscale(self._obj, model, **kwargs)

    def interpolate(
        self, *, scale: int, method: str = "bicubic", spatial_dims: SpatialDims = None
    ) -> T_Xarray:
        """Interpolate this coarse data onto the high-res grid (see
        :func:`xr_dl4ds.interpolate`).

        The baselines a downscaling model must beat, on the same grid as
        :func:`xr_dl4ds.downscale`'s output. ``method``: ``"nearest"``, ``"bilinear"`` or
        ``"bicubic"``.

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
        >>> fine = coarse.dl4ds.interpolate(scale=4, method="bilinear")
        >>> fine.shape, bool((fine["lon"] == hr["lon"]).all())
        ((2, 16, 16), True)
        >>> for method in ("nearest", "bilinear", "bicubic"):  # mean error against the truth
        ...     error = coarse.dl4ds.interpolate(scale=4, method=method) - hr["tas"]
        ...     print(method, round(float(abs(error).mean()), 3))
        nearest 0.98
        bilinear 0.908
        bicubic 0.869

        A Dataset: each variable with the spatial dims.

        >>> sorted(hr.dl4ds.coarsen(scale=4).dl4ds.interpolate(scale=4).data_vars)
        ['orog', 'sftlf', 'tas']
        """
        return interpolate(self._obj, scale=scale, method=method, spatial_dims=spatial_dims)

    def evaluate(self, prediction: Any, **kwargs: Any) -> xr.Dataset:
        """Score ``prediction`` (and baselines) against this truth (see
        :func:`xr_dl4ds.evaluate`).

        Examples
        --------
        A model's output against the bicubic and nearest-neighbour baselines, made from
        the block mean of the truth (the perfect-prognosis input):

        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> fine = hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
        >>> scores = hr["tas"].dl4ds.evaluate(fine, metrics=["rmse", "mae"],
        ...                                   baselines=["nearest", "bicubic"])
        >>> scores["model"].values.tolist(), scores["kind"].values.tolist()
        (['prediction', 'nearest', 'bicubic'], ['model', 'baseline', 'baseline'])
        >>> sorted(scores.data_vars)
        ['mae', 'rmse', 'skill_mae_vs_bicubic', 'skill_mae_vs_nearest', 'skill_rmse_vs_bicubic',
         'skill_rmse_vs_nearest']
        >>> scores["rmse"].sel(model=["nearest", "bicubic"]).round(3).values
        array([1.332, 1.175])
        >>> scores["rmse"].attrs["units"]
        'K'

        A Dataset truth scores each variable of the prediction (the scale comes from the
        prediction's ``source`` attribute), along a ``variable`` dim:

        >>> fine_ds = hr.dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
        >>> hr.dl4ds.evaluate(fine_ds, metrics=["rmse"])["rmse"].dims
        ('model', 'variable')
        """
        return evaluate(self._obj, prediction, **kwargs)


@xr.register_dataarray_accessor("dl4ds")
class DL4DSDataArrayAccessor(_DL4DSAccessor[xr.DataArray]):
    """``DataArray.dl4ds``: downscaling methods for a DataArray."""


@xr.register_dataset_accessor("dl4ds")
class DL4DSDatasetAccessor(_DL4DSAccessor[xr.Dataset]):
    """``Dataset.dl4ds``: downscaling methods for a Dataset."""
