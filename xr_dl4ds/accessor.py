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
        """The ``(y, x)`` spatial dimensions (see :func:`xr_dl4ds.grid.get_spatial_dims`)."""
        return grid.get_spatial_dims(self._obj)

    def coarsen(self, *, scale: int, spatial_dims: SpatialDims = None) -> T_Xarray:
        """Block-mean coarsening by ``scale`` (see :func:`xr_dl4ds.coarsen`)."""
        return grid.coarsen(self._obj, scale, spatial_dims=spatial_dims)

    def pair(self, *, scale: int, **kwargs: Any) -> Pair:
        """Pair high- and low-resolution data (see :func:`xr_dl4ds.pair`)."""
        return pair(self._obj, scale=scale, **kwargs)

    def fit(self, *, scale: int, **kwargs: Any) -> Downscaler:
        """Train a downscaling model on this high-resolution data (see :func:`xr_dl4ds.fit`)."""
        return fit(self._obj, scale=scale, **kwargs)

    def downscale(self, model: Downscaler | str | None = None, **kwargs: Any) -> T_Xarray:
        """Downscale this coarse data with ``model`` (see :func:`xr_dl4ds.downscale`)."""
        return downscale(self._obj, model, **kwargs)

    def interpolate(
        self, *, scale: int, method: str = "bicubic", spatial_dims: SpatialDims = None
    ) -> T_Xarray:
        """Interpolate this coarse data onto the high-res grid (see
        :func:`xr_dl4ds.interpolate`)."""
        return interpolate(self._obj, scale=scale, method=method, spatial_dims=spatial_dims)

    def evaluate(self, prediction: Any, **kwargs: Any) -> xr.Dataset:
        """Score ``prediction`` (and baselines) against this truth (see
        :func:`xr_dl4ds.evaluate`)."""
        return evaluate(self._obj, prediction, **kwargs)


@xr.register_dataarray_accessor("dl4ds")
class DL4DSDataArrayAccessor(_DL4DSAccessor[xr.DataArray]):
    """``DataArray.dl4ds``: downscaling methods for a DataArray."""


@xr.register_dataset_accessor("dl4ds")
class DL4DSDatasetAccessor(_DL4DSAccessor[xr.Dataset]):
    """``Dataset.dl4ds``: downscaling methods for a Dataset."""
