"""The supervised training loop (knows tensors, not xarray)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ..exceptions import ConfigError

__all__ = ["resolve_device", "train_supervised", "evaluate_loss", "BatchLike"]

# a batch is anything with .lowres, .static, .target, .mask numpy arrays
BatchLike = Any


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is checked."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device={device!r} is not a torch device. Use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was asked for but CUDA is not available on this machine. "
            "Use device='auto' (GPU when present, else CPU) or device='cpu'."
        )
    return dev


def _to_tensors(
    batch: BatchLike, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    x = torch.from_numpy(batch.lowres).to(device, non_blocking=True)
    s = (
        None
        if batch.static is None
        else torch.from_numpy(batch.static).to(device, non_blocking=True)
    )
    y = torch.from_numpy(batch.target).to(device, non_blocking=True)
    m = torch.from_numpy(batch.mask).to(device, non_blocking=True)
    offset = getattr(batch, "offset", None)
    o = None if offset is None else torch.from_numpy(offset).to(device, non_blocking=True)
    return x, s, y, m, o


def _forward(
    net: torch.nn.Module, x: torch.Tensor, s: torch.Tensor | None, o: torch.Tensor | None
) -> torch.Tensor:
    """Call the network; patch positions only go to networks that use them."""
    if o is not None and getattr(getattr(net, "config", None), "localcon", False):
        return net(x, s, offset=o)
    return net(x, s)


@torch.no_grad()
def evaluate_loss(
    net: torch.nn.Module, batches: Iterable[BatchLike], loss_fn: Callable, device: torch.device
) -> float:
    """Mask-weighted mean of ``loss_fn`` over ``batches`` (weights = valid cells)."""
    net.eval()
    total, weight = 0.0, 0.0
    for batch in batches:
        x, s, y, m, o = _to_tensors(batch, device)
        pred = _forward(net, x, s, o)
        w = float(m.sum())
        total += float(loss_fn(pred, y, m)) * w
        weight += w
    return total / weight if weight else math.nan


def train_supervised(
    net: torch.nn.Module,
    train_batches: Callable[[int], Iterator[BatchLike]],
    *,
    epochs: int,
    loss_fn: Callable,
    learning_rate: float = 1e-3,
    device: torch.device,
    val_batches: Callable[[], Iterable[BatchLike]] | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``net`` with Adam; return the per-epoch history.

    Parameters
    ----------
    train_batches : callable
        ``train_batches(epoch)`` yields the batches of one epoch.
    val_batches : callable, optional
        Yields the validation batches (evaluated after each epoch).

    Returns
    -------
    dict
        ``{"loss": [...], "val_loss": [...], "learning_rate": [...], "time": [...]}`` with
        one value per epoch (``val_loss`` only with validation data).
    """
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    history: dict[str, list[float]] = {"loss": [], "learning_rate": [], "time": []}
    if val_batches is not None:
        history["val_loss"] = []
    bar = _progress_bar(epochs, progress)
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            net.train()
            total, weight = 0.0, 0.0
            for batch in train_batches(epoch):
                x, s, y, m, o = _to_tensors(batch, device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(_forward(net, x, s, o), y, m)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"The training loss became {float(loss)} at epoch {epoch + 1}. Lower "
                        "learning_rate, or check the inputs for infinite values."
                    )
                loss.backward()
                opt.step()
                w = float(m.sum())
                total += float(loss.detach()) * w
                weight += w
            history["loss"].append(total / weight if weight else math.nan)
            history["learning_rate"].append(float(opt.param_groups[0]["lr"]))
            if val_batches is not None:
                history["val_loss"].append(evaluate_loss(net, val_batches(), loss_fn, device))
            history["time"].append(time.perf_counter() - t0)
            last = {k: v[-1] for k, v in history.items()}
            if bar is not None:
                bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "val_loss") if k in last})
                bar.update(1)
            if callback is not None:
                callback(epoch, last)
    finally:
        if bar is not None:
            bar.close()
    net.eval()
    return history


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="epoch")


def seed_everything(seed: int | None) -> np.random.Generator:
    """Seed torch (CPU and CUDA) and return a numpy Generator for patch sampling."""
    if seed is not None:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)
