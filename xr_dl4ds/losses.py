"""Named training losses. All are mask-aware: cells where ``mask == 0`` (missing values,
ocean in land-only data) contribute nothing, and the mean is over valid cells only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .exceptions import RegistryError

if TYPE_CHECKING:
    import torch

__all__ = ["get_loss", "list_losses", "masked_mae", "masked_mse"]

LossFn = Callable[..., "torch.Tensor"]


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return err.mean()
    # clamp the count so an all-masked batch gives 0, not NaN
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def masked_mae(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over the valid cells."""
    return _masked_mean((pred - target).abs(), mask)


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over the valid cells."""
    return _masked_mean((pred - target) ** 2, mask)


_LOSSES: dict[str, LossFn] = {"mae": masked_mae, "mse": masked_mse}


def list_losses() -> list[str]:
    """Names accepted by ``loss=``."""
    return sorted(_LOSSES)


def get_loss(name: str | LossFn) -> LossFn:
    """The loss function called ``name`` (a callable ``f(pred, target, mask)`` passes through)."""
    if callable(name):
        return name
    try:
        return _LOSSES[name]
    except (KeyError, TypeError):
        raise RegistryError(
            f"Unknown loss {name!r}. Available: {list_losses()}; or pass a callable "
            "loss(pred, target, mask) -> scalar tensor."
        ) from None
