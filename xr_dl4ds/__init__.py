"""xr_dl4ds: deep-learning downscaling of gridded climate data, xarray-native.

``import xr_dl4ds`` registers the ``.dl4ds`` accessor on DataArray and Dataset. torch is
imported only when a network is built or run.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import accessor as _accessor  # noqa: F401  (registers .dl4ds)
from .baselines import interpolate
from .comparison import compare
from .data.pairing import Pair, pair
from .downscaler import Downscaler, fit
from .evaluation import evaluate
from .exceptions import DL4DSError, DL4DSWarning
from .grid import coarsen, get_spatial_dims
from .inference import downscale
from .io import load
from .options import get_options, set_options
from .writing import to_zarr

try:
    __version__ = _version("xr_dl4ds")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "DL4DSError",
    "DL4DSWarning",
    "Downscaler",
    "Pair",
    "coarsen",
    "compare",
    "downscale",
    "evaluate",
    "fit",
    "get_options",
    "get_spatial_dims",
    "interpolate",
    "load",
    "pair",
    "set_options",
    "to_zarr",
    "__version__",
]

# submodules reachable as attributes without importing them all up front (``plot`` needs
# matplotlib, ``models`` torch): ``xr_dl4ds.tutorial.open_dataset(...)`` after
# ``import xr_dl4ds``
_SUBMODULES = frozenset(
    {"baselines", "cf", "metrics", "models", "plot", "testing", "tutorial", "writing"}
)


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
