"""Dropout variants of DL4DS (reference report §1.3), including Monte-Carlo dropout.

:func:`make_dropout` builds the layer named by ``dropout_variant``:

* ``"vanilla"``: single values are dropped (:class:`torch.nn.Dropout`);
* ``"gaussian"``: nothing is dropped, the input is multiplied by ``N(1, rate / (1 -
  rate))`` noise (:class:`GaussianDropout`);
* ``"spatial"``: whole channels of a sample are dropped (:class:`SpatialDropout`);
* ``"mcdrop"``, ``"mcgaussiandrop"``, ``"mcspatialdrop"``: the same three, active in
  ``eval()`` mode too (:class:`MCDropout`, :class:`MCGaussianDropout`,
  :class:`MCSpatialDropout`); the first three act in ``train()`` mode only.

The Monte-Carlo (``mc*``) layers stay active after ``model.eval()``, so repeated
predictions of one input sample the network's uncertainty. They carry the class
attribute ``monte_carlo = True``; :func:`has_monte_carlo_dropout` looks for it.

Every variant keeps the expected value of its input (inverted dropout: kept values are
divided by ``1 - rate``; the Gaussian noise has mean 1).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.config import DROPOUT_VARIANTS

__all__ = [
    "GaussianDropout",
    "MCDropout",
    "MCGaussianDropout",
    "MCSpatialDropout",
    "SpatialDropout",
    "has_monte_carlo_dropout",
    "make_dropout",
]


def _check_rate(rate: object, where: str) -> float:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not (0.0 <= float(rate) < 1.0)
    ):
        raise ConfigError(
            f"{where}: invalid dropout rate {rate!r}. Allowed: a float in [0, 1). "
            "Fix: pass e.g. dropout_rate=0.1, or 0 for no dropout."
        )
    return float(rate)


class GaussianDropout(nn.Module):
    """Multiplicative Gaussian noise ``x * e``, ``e ~ N(1, rate / (1 - rate))``.

    As Keras' ``GaussianDropout``: the noise has the variance of the dropout mask of the
    same ``rate`` (after its ``1 / (1 - rate)`` scaling), and nothing is set to zero.
    Active in training mode only (see :class:`MCGaussianDropout`).

    Parameters
    ----------
    rate : float
        In ``[0, 1)``; 0 adds no noise.
    """

    monte_carlo: bool = False

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = _check_rate(rate, type(self).__name__)

    @property
    def stddev(self) -> float:
        """Standard deviation of the noise, ``sqrt(rate / (1 - rate))``."""
        return math.sqrt(self.rate / (1.0 - self.rate))

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not (self.training or self.monte_carlo):
            return x
        return x * (1.0 + self.stddev * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class SpatialDropout(nn.Module):
    """Channel-wise ("spatial") dropout: each channel of each sample is kept or dropped
    as a whole, over all its other (spatial, temporal) axes.

    As :class:`torch.nn.Dropout2d` / :class:`torch.nn.Dropout3d` and Keras'
    ``SpatialDropout2D/3D``; kept channels are scaled by ``1 / (1 - rate)``. Active in
    training mode only (see :class:`MCSpatialDropout`).

    Parameters
    ----------
    rate : float
        Probability of dropping a channel, in ``[0, 1)``.
    dims : {2, 3}, default 2
        Number of axes besides batch and channel: 2 for ``(N, C, H, W)``, 3 for
        ``(N, C, T, H, W)`` (or ``(N, T, C, H, W)`` with ``channel_axis=2``).
    channel_axis : int, default 1
        Position of the channel axis.

    Raises
    ------
    ConfigError
        ``rate``, ``dims`` or ``channel_axis`` is invalid.
    """

    monte_carlo: bool = False

    def __init__(self, rate: float, *, dims: int = 2, channel_axis: int = 1) -> None:
        super().__init__()
        self.rate = _check_rate(rate, type(self).__name__)
        self.dims = _check_dims(dims, type(self).__name__)
        if (
            isinstance(channel_axis, bool)
            or not isinstance(channel_axis, int)
            or not 1 <= channel_axis <= self.dims + 1
        ):
            raise ConfigError(
                f"{type(self).__name__}: invalid channel_axis={channel_axis!r} for dims={dims}. "
                f"Allowed: an integer in [1, {self.dims + 1}] (axis 0 is the batch). Fix: pass "
                "channel_axis=1 for (N, C, ...) tensors, 2 for (N, T, C, H, W)."
            )
        self.channel_axis = channel_axis

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not (self.training or self.monte_carlo):
            return x
        if x.ndim != self.dims + 2:
            raise ConfigError(
                f"{type(self).__name__}(dims={self.dims}): expected a {self.dims + 2}-D "
                f"tensor (batch, channel and {self.dims} other axes), received shape "
                f"{tuple(x.shape)}. Fix: build the layer with dims={max(x.ndim - 2, 1)}."
            )
        shape = [1] * x.ndim
        shape[0] = x.shape[0]
        shape[self.channel_axis] = x.shape[self.channel_axis]
        keep = 1.0 - self.rate
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}, dims={self.dims}, channel_axis={self.channel_axis}"


class MCDropout(nn.Dropout):
    """Element-wise dropout that stays active in ``eval()`` mode (Monte-Carlo dropout).

    Parameters
    ----------
    rate : float
        In ``[0, 1)``.
    """

    monte_carlo: bool = True

    def __init__(self, rate: float) -> None:
        super().__init__(_check_rate(rate, "MCDropout"))

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=True, inplace=self.inplace)


class MCGaussianDropout(GaussianDropout):
    """:class:`GaussianDropout` that stays active in ``eval()`` mode (Monte-Carlo)."""

    monte_carlo: bool = True


class MCSpatialDropout(SpatialDropout):
    """:class:`SpatialDropout` that stays active in ``eval()`` mode (Monte-Carlo)."""

    monte_carlo: bool = True


def _check_dims(dims: object, where: str) -> int:
    if not isinstance(dims, bool) and dims in (2, 3):
        return 2 if dims == 2 else 3
    raise ConfigError(
        f"{where}: invalid dims={dims!r}. Allowed: 2 (N, C, H, W) or 3 (sequences or "
        "volumes, N, C, T, H, W). Fix: pass dims=2 for spatial models."
    )


def make_dropout(
    rate: float, variant: str | None = None, *, dims: int = 2, channel_axis: int = 1
) -> nn.Module:
    """Return the dropout layer of DL4DS' ``dropout_variant`` with ``rate``.

    Parameters
    ----------
    rate : float
        Dropout rate in ``[0, 1)``; 0 gives :class:`torch.nn.Identity` whatever the
        variant.
    variant : str or None, default None
        One of ``"vanilla", "gaussian", "spatial", "mcdrop", "mcgaussiandrop",
        "mcspatialdrop"``; None means ``"vanilla"``.
    dims : {2, 3}, default 2
        Axes besides batch and channel of the tensors it will see; only the spatial
        variants use it (``(N, C, H, W)`` for 2, ``(N, C, T, H, W)`` for 3).
    channel_axis : int, default 1
        Position of the channel axis, for the spatial variants.

    Returns
    -------
    torch.nn.Module
        :class:`torch.nn.Dropout`, :class:`GaussianDropout`, :class:`SpatialDropout`,
        :class:`MCDropout`, :class:`MCGaussianDropout`, :class:`MCSpatialDropout` or
        :class:`torch.nn.Identity`.

    Raises
    ------
    ConfigError
        Unknown variant, rate outside ``[0, 1)`` or invalid ``dims``.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.dropout import make_dropout, has_monte_carlo_dropout
    >>> make_dropout(0.0, "mcdrop")
    Identity()
    >>> layer = make_dropout(0.5, "mcdrop").eval()
    >>> has_monte_carlo_dropout(layer)
    True
    >>> bool((layer(torch.ones(1000)) == 0).any())  # still dropping in eval mode
    True
    """
    rate = _check_rate(rate, "make_dropout")
    dims = _check_dims(dims, "make_dropout")
    name = "vanilla" if variant is None else variant
    if not isinstance(name, str) or name not in DROPOUT_VARIANTS:
        hint = ""
        if isinstance(name, str) and name.lower() in DROPOUT_VARIANTS:
            hint = f" (names are lower case: {name.lower()!r})"
        raise ConfigError(
            f"make_dropout: unknown dropout variant {variant!r}. Allowed: None, "
            f"{', '.join(repr(v) for v in DROPOUT_VARIANTS)}. Fix: pass one of these{hint}."
        )
    if rate == 0.0:
        return nn.Identity()
    if name == "vanilla":
        return nn.Dropout(rate)
    if name == "gaussian":
        return GaussianDropout(rate)
    if name == "spatial":
        return SpatialDropout(rate, dims=dims, channel_axis=channel_axis)
    if name == "mcdrop":
        return MCDropout(rate)
    if name == "mcgaussiandrop":
        return MCGaussianDropout(rate)
    return MCSpatialDropout(rate, dims=dims, channel_axis=channel_axis)


def has_monte_carlo_dropout(module: nn.Module) -> bool:
    """Whether ``module`` or any of its submodules is a Monte-Carlo dropout layer.

    A layer counts when it has the attribute ``monte_carlo = True`` (the ``mc*``
    variants of :func:`make_dropout` do) and a non-zero rate, i.e. when the module's
    output is random even in ``eval()`` mode.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    bool
    """
    for m in module.modules():
        if getattr(m, "monte_carlo", False) is True:
            rate = getattr(m, "rate", getattr(m, "p", 1.0))
            if rate > 0:
                return True
    return False
