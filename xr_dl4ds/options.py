"""Global options: ``xr_dl4ds.set_options(model=...)``."""

from __future__ import annotations

from typing import Any

from .exceptions import ConfigError

__all__ = ["OPTIONS", "set_options", "get_options"]

OPTIONS: dict[str, Any] = {"model": None}


class set_options:
    """Set global options, for the session or inside a ``with`` block.

    Parameters
    ----------
    model : Downscaler or None
        Default model of ``coarse.dl4ds.downscale()`` when none is passed.

    Examples
    --------
    >>> import xr_dl4ds
    >>> with xr_dl4ds.set_options(model=None):
    ...     pass
    """

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"Unknown option(s) {unknown} for set_options(); available: {sorted(OPTIONS)}."
            )
        if "model" in kwargs and kwargs["model"] is not None:
            from .downscaler import Downscaler

            if not isinstance(kwargs["model"], Downscaler):
                raise ConfigError(
                    f"set_options(model=...) needs an xr_dl4ds.Downscaler, got "
                    f"{type(kwargs['model']).__name__}. Load a saved one with xr_dl4ds.load(path)."
                )
        self.old = {k: OPTIONS[k] for k in kwargs}
        OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: Any) -> None:
        OPTIONS.update(self.old)


def get_options() -> dict[str, Any]:
    """A copy of the current global options.

    Returns
    -------
    dict
        ``{"model": Downscaler or None}``: the default model of
        ``coarse.dl4ds.downscale()``. Changing the copy changes nothing; use
        :class:`set_options`.

    Examples
    --------
    >>> import xr_dl4ds
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> xr_dl4ds.get_options()
    {'model': None}
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = hr.dl4ds.fit(scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...                      n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> with xr_dl4ds.set_options(model=model):
    ...     print(xr_dl4ds.get_options()["model"] is model)
    ...     print(hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale().sizes["lat"])
    True
    16
    >>> xr_dl4ds.get_options()  # restored when the block ends
    {'model': None}
    >>> options = xr_dl4ds.get_options()
    >>> options["model"] = model  # a copy: the global options do not change
    >>> xr_dl4ds.get_options()["model"] is None
    True
    """
    return dict(OPTIONS)
