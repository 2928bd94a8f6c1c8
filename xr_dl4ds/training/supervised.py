"""The supervised training loop (knows tensors, not xarray)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..exceptions import ConfigError, DL4DSWarning
from .distributed import DistContext, all_reduce_sums, shard_batches

__all__ = [
    "BatchLike",
    "LoopOptions",
    "evaluate_loss",
    "read_checkpoint",
    "resolve_device",
    "train_supervised",
    "write_checkpoint",
]

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
    """Call the network (or its DDP wrapper); patch positions only go to networks that
    use them."""
    inner = getattr(net, "module", net)
    if o is not None and getattr(getattr(inner, "config", None), "localcon", False):
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


OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("step", "cosine", "plateau")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_FORMAT = "xr_dl4ds.checkpoint"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """Options of the training loop (validated on construction).

    Parameters
    ----------
    epochs : int
    learning_rate : float
    optimizer : {"adam", "adamw"}
    weight_decay : float
        L2 penalty (Adam) or decoupled weight decay (AdamW).
    scheduler : {None, "step", "cosine", "plateau"}
        Learning-rate schedule, stepped once per epoch: ``"step"`` multiplies the rate by
        ``gamma`` (0.1) every ``step_size`` epochs (a third of the epochs); ``"cosine"``
        anneals it to ``eta_min`` (0) over the epochs; ``"plateau"`` multiplies it by
        ``factor`` (0.1) when the validation loss (else the training loss) has not
        improved for ``patience`` (3) epochs. Override in ``scheduler_options``.
    scheduler_options : dict
    grad_clip : float or None
        Clip the global gradient norm to this value.
    precision : {"fp32", "bf16", "fp16"}
        Mixed precision on CUDA (fp16 with gradient scaling); CPU runs in fp32 (with a
        warning when another precision was asked for).
    early_stopping : int or None
        Stop when the validation loss has not improved by ``min_delta`` for this many
        epochs; needs validation data.
    min_delta : float
    restore_best : bool
        With early stopping, end with the weights of the best validation epoch.
    checkpoint_every : int or None
        Write a checkpoint to ``checkpoint_path`` every this many epochs (and at the end).
    checkpoint_path : str or None
    progress : bool
    """

    epochs: int
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str | None = None
    scheduler_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    grad_clip: float | None = None
    precision: str = "fp32"
    early_stopping: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    checkpoint_every: int | None = None
    checkpoint_path: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, optional: bool = False) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name}={value!r} must be an integer >= 1" + (" or None." if optional else ".")
                )

        def choice(name: str, value: Any, allowed: tuple[str, ...], optional: bool = False) -> None:
            if optional and value is None:
                return
            if value not in allowed:
                raise ConfigError(
                    f"{name}={value!r} is not supported. Allowed: "
                    f"{(['None'] if optional else []) + list(allowed)}."
                )

        positive_int("epochs", self.epochs)
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float))
            or not (lr > 0 and math.isfinite(lr))
        ):
            raise ConfigError(f"learning_rate={lr!r} must be a positive number, e.g. 1e-3.")
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("scheduler", self.scheduler, SCHEDULERS, optional=True)
        choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r} must be a number >= 0.")
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0
        ):
            raise ConfigError(f"grad_clip={self.grad_clip!r} must be None or a positive number.")
        positive_int("early_stopping", self.early_stopping, optional=True)
        positive_int("checkpoint_every", self.checkpoint_every, optional=True)
        if self.checkpoint_every is not None and self.checkpoint_path is None:
            raise ConfigError(
                "checkpoint_every needs checkpoint_path='<file>' to say where to write the "
                "checkpoints."
            )
        known = {
            "step": {"step_size", "gamma"},
            "cosine": {"eta_min"},
            "plateau": {"factor", "patience", "threshold", "min_lr"},
        }
        if self.scheduler_options:
            allowed = known.get(self.scheduler or "", set())
            unknown = sorted(set(self.scheduler_options) - allowed)
            if unknown:
                raise ConfigError(
                    f"scheduler_options {unknown} do not apply to scheduler={self.scheduler!r}; "
                    f"allowed: {sorted(allowed)}."
                )

    def fingerprint(self) -> dict[str, Any]:
        """The options a resumed run must share with the run that wrote the checkpoint."""
        keep = (
            "epochs",
            "learning_rate",
            "optimizer",
            "weight_decay",
            "scheduler",
            "scheduler_options",
            "grad_clip",
            "precision",
            "early_stopping",
            "min_delta",
        )
        return {k: (dict(v) if isinstance(v := getattr(self, k), Mapping) else v) for k in keep}


def _make_optimizer(net: torch.nn.Module, o: LoopOptions) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    return cls(net.parameters(), lr=o.learning_rate, weight_decay=o.weight_decay)


def _make_scheduler(opt: torch.optim.Optimizer, o: LoopOptions) -> Any:
    kw = dict(o.scheduler_options)
    if o.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=kw.get("step_size", max(1, o.epochs // 3)), gamma=kw.get("gamma", 0.1)
        )
    if o.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=o.epochs, eta_min=kw.get("eta_min", 0.0)
        )
    if o.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            factor=kw.get("factor", 0.1),
            patience=kw.get("patience", 3),
            threshold=kw.get("threshold", 1e-4),
            min_lr=kw.get("min_lr", 0.0),
        )
    return None


def _autocast(device: torch.device, precision: str) -> Any:
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def train_supervised(
    net: torch.nn.Module,
    train_batches: Callable[[int], Iterator[BatchLike]],
    *,
    options: LoopOptions,
    loss_fn: Callable,
    device: torch.device,
    val_batches: Callable[[], Iterable[BatchLike]] | None = None,
    rng: np.random.Generator | None = None,
    callback: Callable[[int, dict[str, float]], bool | None] | None = None,
    resume: Mapping[str, Any] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    dist: DistContext | None = None,
) -> dict[str, list[float]]:
    """Train ``net``; return the per-epoch history.

    Parameters
    ----------
    train_batches : callable
        ``train_batches(epoch)`` yields the batches of one epoch (drawing from ``rng``).
    options : LoopOptions
    val_batches : callable, optional
        Yields the validation batches (evaluated after each epoch).
    rng : numpy.random.Generator, optional
        The generator ``train_batches`` draws from; its state is checkpointed so that a
        resumed run draws the same patches as an uninterrupted one.
    callback : callable, optional
        ``callback(epoch, values)`` after each epoch (and after its checkpoint); True
        stops training.
    resume : mapping, optional
        A checkpoint from :func:`read_checkpoint`: training continues after its epoch.
    fingerprint : mapping, optional
        What identifies the run (model config, data...), stored in checkpoints and
        compared on resume.
    dist : DistContext, optional
        Data-parallel run: the network is wrapped in DDP, each rank trains on its slice
        of every batch, epoch losses are summed over ranks, and only rank 0 writes
        checkpoints.

    Returns
    -------
    dict
        ``{"loss", "learning_rate", "time"[, "val_loss"]}``: one value per epoch run,
        fewer than ``options.epochs`` after early stopping.
    """
    o = options
    if o.early_stopping is not None and val_batches is None:
        raise ConfigError(
            f"early_stopping={o.early_stopping} needs validation data: pass val_fraction= "
            "or val_time= to fit()."
        )
    if o.precision != "fp32" and device.type != "cuda":
        warnings.warn(
            f"precision={o.precision!r} needs a CUDA device; training on {device.type} in fp32.",
            DL4DSWarning,
            stacklevel=3,
        )
    net.to(device)
    model = net
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = _make_optimizer(net, o)
    scheduler = _make_scheduler(opt, o)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and o.precision == "fp16")
    history: dict[str, list[float]] = {"loss": [], "learning_rate": [], "time": []}
    if val_batches is not None:
        history["val_loss"] = []
    best: dict[str, Any] = {"value": math.inf, "epoch": -1, "state": None}
    start = 0
    if resume is not None:
        start = _restore(resume, net, opt, scheduler, scaler, rng, history, best, fingerprint, o)
    is_main = dist is None or dist.is_main
    bar = _progress_bar(o.epochs, o.progress and is_main)
    if bar is not None and start:
        bar.update(start)
    try:
        for epoch in range(start, o.epochs):
            t0 = time.perf_counter()
            net.train()
            total, weight = 0.0, 0.0
            batches = train_batches(epoch)
            if dist is not None:
                batches = shard_batches(batches, dist)
            for batch in batches:
                x, s, y, m, off = _to_tensors(batch, device)
                opt.zero_grad(set_to_none=True)
                with _autocast(device, o.precision):
                    loss = loss_fn(_forward(model, x, s, off).float(), y, m)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"The training loss became {float(loss)} at epoch {epoch + 1}. Lower "
                        "learning_rate, or check the inputs for infinite values."
                    )
                scaler.scale(loss).backward()
                if o.grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), o.grad_clip)
                scaler.step(opt)
                scaler.update()
                w = float(m.sum())
                total += float(loss.detach()) * w
                weight += w
            if dist is not None:
                total, weight = all_reduce_sums([total, weight], device)
            history["loss"].append(total / weight if weight else math.nan)
            history["learning_rate"].append(float(opt.param_groups[0]["lr"]))
            monitor = history["loss"][-1]
            if val_batches is not None:
                monitor = evaluate_loss(net, val_batches(), loss_fn, device)
                history["val_loss"].append(monitor)
            history["time"].append(time.perf_counter() - t0)
            if scheduler is not None:
                if o.scheduler == "plateau":
                    scheduler.step(monitor)
                else:
                    scheduler.step()
            stop = False
            if val_batches is not None:
                if monitor < best["value"] - o.min_delta:
                    best.update(
                        value=monitor,
                        epoch=epoch,
                        state={k: v.detach().clone() for k, v in net.state_dict().items()},
                    )
                elif o.early_stopping is not None and epoch - best["epoch"] >= o.early_stopping:
                    stop = True
            last = {k: v[-1] for k, v in history.items()}
            done = stop or epoch + 1 == o.epochs
            if (
                is_main
                and o.checkpoint_path is not None
                and (
                    done
                    or (o.checkpoint_every is not None and (epoch + 1) % o.checkpoint_every == 0)
                )
            ):
                write_checkpoint(
                    o.checkpoint_path,
                    epoch=epoch + 1,
                    net=net,
                    opt=opt,
                    scheduler=scheduler,
                    scaler=scaler,
                    rng=rng,
                    history=history,
                    best=best,
                    fingerprint=fingerprint,
                    options=o,
                    stopped=stop,
                )
            if bar is not None:
                bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "val_loss") if k in last})
                bar.update(1)
            if callback is not None and callback(epoch, last):
                break  # the callback asked to stop after this epoch
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if o.early_stopping is not None and o.restore_best and best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval()
    return history


def write_checkpoint(
    path: str,
    *,
    epoch: int,
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    rng: np.random.Generator | None,
    history: Mapping[str, list[float]],
    best: Mapping[str, Any],
    fingerprint: Mapping[str, Any] | None,
    options: LoopOptions,
    stopped: bool = False,
) -> None:
    """Write the state of a run after ``epoch`` epochs, atomically (temp file + rename)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "format_version": 1,
        "epoch": epoch,
        "stopped": stopped,
        "net": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": None if rng is None else json.dumps(rng.bit_generator.state),
        "history": {k: list(v) for k, v in history.items()},
        "best_value": float(best["value"]),
        "best_epoch": int(best["epoch"]),
        "best_state": best["state"],
        "fingerprint": json.dumps(fingerprint or {}, sort_keys=True, default=str),
        "options": json.dumps(options.fingerprint(), sort_keys=True, default=str),
    }
    from ..io import save_atomic

    save_atomic(state, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written during :func:`xr_dl4ds.fit` (no pickled code is run)."""
    from ..exceptions import ModelFileError

    if not os.path.exists(path):
        raise FileNotFoundError(f"No such checkpoint: {os.fspath(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(
            f"{os.fspath(path)!r} could not be read as a training checkpoint "
            f"({type(err).__name__}). It may be truncated; resume from an earlier one."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(
            f"{os.fspath(path)!r} is not an xr_dl4ds training checkpoint (a saved model is "
            "loaded with xr_dl4ds.load, not resumed)."
        )
    return state


def _restore(
    ckpt: Mapping[str, Any],
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    rng: np.random.Generator | None,
    history: dict[str, list[float]],
    best: dict[str, Any],
    fingerprint: Mapping[str, Any] | None,
    options: LoopOptions,
) -> int:
    theirs = json.loads(ckpt["fingerprint"])
    ours = json.loads(json.dumps(fingerprint or {}, sort_keys=True, default=str))
    their_opts = json.loads(ckpt["options"])
    our_opts = json.loads(json.dumps(options.fingerprint(), sort_keys=True, default=str))
    diff = sorted(
        {k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k)}
        | {k for k in set(their_opts) | set(our_opts) if their_opts.get(k) != our_opts.get(k)}
    )
    if diff:
        raise ConfigError(
            f"The checkpoint was written by a run with other settings: {diff} differ. Resume "
            "with the same data and options as the interrupted run."
        )
    net.load_state_dict(ckpt["net"])
    opt.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if rng is not None and ckpt["numpy_rng"] is not None:
        rng.bit_generator.state = json.loads(ckpt["numpy_rng"])
    for k, v in ckpt["history"].items():
        history[k] = list(v)
    best.update(value=ckpt["best_value"], epoch=ckpt["best_epoch"], state=ckpt["best_state"])
    if ckpt.get("stopped"):
        return options.epochs  # the run had already stopped early: nothing left to do
    return int(ckpt["epoch"])


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
