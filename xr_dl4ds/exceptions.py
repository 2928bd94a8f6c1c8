"""Exceptions and warnings raised by xr_dl4ds.

Every error derives from :class:`DL4DSError` and also from the builtin that fits it,
so ``except ValueError`` keeps working for code that does not know this package.
Messages say what was received, what is allowed and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DL4DSError",
    "DL4DSWarning",
    "GridError",
    "ScaleError",
    "VariableError",
    "UnitsError",
    "DataError",
    "ChunkError",
    "ModelFileError",
    "ConfigError",
    "RegistryError",
]


class DL4DSError(Exception):
    """Base class of every error raised by xr_dl4ds."""


class DL4DSWarning(UserWarning):
    """Base class of the warnings issued by xr_dl4ds (grid trimming, dropped steps...)."""


class GridError(DL4DSError, ValueError):
    """Spatial dimensions missing, grids that do not nest, fields on the wrong grid."""


class ScaleError(DL4DSError, ValueError):
    """A scale factor that is not an integer >= 2, or that does not match the model."""


class VariableError(DL4DSError, KeyError):
    """A variable that is missing, ambiguous or not the one the model was trained on."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnitsError(DL4DSError, ValueError):
    """Units that are missing, unknown to pint, or not convertible to the training units."""


class DataError(DL4DSError, ValueError):
    """Data that cannot be learned from: all-NaN fields, no overlapping time steps..."""


class ChunkError(DL4DSError, ValueError):
    """A dask chunk layout the operation cannot work with."""


class ModelFileError(DL4DSError, ValueError):
    """A model file that is not an xr_dl4ds file, is truncated, or is of a newer format."""


class ConfigError(DL4DSError, ValueError):
    """An invalid option value (backbone, loss, patch size, device...)."""


class RegistryError(DL4DSError, KeyError):
    """An unknown or duplicate name in a registry (backbones, upsamplings, losses)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def did_you_mean(keys: Sequence[str], valid: Sequence[str]) -> str:
    """`` Did you mean: 'n_filter' -> 'n_filters'?`` for the keys close to a valid one
    (empty when none is)."""
    import difflib

    hints = []
    for key in keys:
        close = difflib.get_close_matches(key, valid, n=1)
        if close:
            hints.append(f"{key!r} -> {close[0]!r}?")
    return f" Did you mean: {', '.join(hints)}" if hints else ""
