"""The conditional adversarial (pix2pix) training loop (knows tensors, not xarray).

This is DL4DS's ``CGANTrainer`` (reference report §1.6, §1.9): a generator (any
:class:`~xr_dl4ds.models.DownscalingNet` or
:class:`~xr_dl4ds.models.SpatioTemporalNet`) and a conditional discriminator
(:class:`~xr_dl4ds.models.discriminator.ResidualDiscriminator`) trained in turn, both
with Adam (``2e-4``, ``betas=(0.5, 0.999)``). For every batch:

1. **discriminator step** on the real pair ``(x, y)`` and the *detached* generated pair
   ``(x, G(x))``: ``discriminator_loss = BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)``;
2. **generator step**: ``loss = adversarial_weight * BCE(D(x, G(x)), 1)
   + pixel_weight * pixel_loss(G(x), y, mask)``. With the defaults
   (``adversarial_weight=1``, ``pixel_weight=100``) this is DL4DS's
   ``BCE + 100 * pixel loss``.

Differences from DL4DS, on purpose:

* the discriminator outputs logits and the BCE is
  :func:`~torch.nn.functional.binary_cross_entropy_with_logits` (same loss, numerically
  stable);
* **masks**: the pixel loss gets the mask, and the discriminator sees real and
  generated fields with the masked cells set to 0 in both (:func:`apply_mask`), so those
  cells carry no information and the generator is not pushed to invent values there;
* static fields are optional (DL4DS fails without them, its bug 5) and go to the
  discriminator as context;
* an optional validation set (``val_loss`` is the pixel loss on it, the generator in
  eval mode), early stopping on it and restoring the best generator weights. DL4DS's
  ``CGANTrainer`` has no validation at all;
* the generator's discriminator pass keeps the discriminator in training mode (dropout
  on), as pix2pix does, but its parameters are frozen during that pass so that no
  gradient is accumulated for them.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..exceptions import ConfigError
from .supervised import _forward, _progress_bar, _to_tensors, evaluate_loss, resolve_device

__all__ = ["HISTORY_KEYS", "apply_mask", "train_adversarial"]

# a batch is anything with .lowres, .static, .target, .mask (and .offset) numpy arrays
BatchLike = Any

#: Keys of the history returned by :func:`train_adversarial` (``val_loss`` only with
#: validation batches).
HISTORY_KEYS: tuple[str, ...] = (
    "loss",
    "pixel_loss",
    "adversarial_loss",
    "discriminator_loss",
    "learning_rate",
    "time",
)


def apply_mask(highres: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Set the masked cells of a high-resolution field to 0 before the discriminator.

    Applied identically to the real and the generated field, so that the values under
    the mask (missing in the target, arbitrary in the prediction) cannot tell them apart.

    Parameters
    ----------
    highres : Tensor
        Real or generated field, any shape.
    mask : Tensor or None
        1 on valid cells, 0 on masked ones, broadcastable to ``highres``; None returns
        ``highres`` unchanged.

    Returns
    -------
    Tensor
        ``highres * mask`` (gradients flow through the valid cells only).
    """
    if mask is None:
        return highres
    return highres * mask.to(highres.dtype)


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def _positive(name: str, value: Any, *, allow_zero: bool) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
        and (float(value) >= 0 if allow_zero else float(value) > 0)
    )
    if not ok:
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ConfigError(f"train_adversarial: invalid {name}={value!r}. Allowed: {allowed}.")
    return float(value)


def _check_options(
    epochs: Any,
    pixel_weight: Any,
    adversarial_weight: Any,
    learning_rate: Any,
    discriminator_learning_rate: Any,
    betas: Any,
    early_stopping_patience: Any,
    has_validation: bool,
) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ConfigError(
            f"train_adversarial: invalid epochs={epochs!r}. Allowed: an integer >= 1."
        )
    _positive("pixel_weight", pixel_weight, allow_zero=True)
    _positive("adversarial_weight", adversarial_weight, allow_zero=True)
    _positive("learning_rate", learning_rate, allow_zero=False)
    _positive("discriminator_learning_rate", discriminator_learning_rate, allow_zero=False)
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(
            isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= float(b) < 1
            for b in betas
        )
    ):
        raise ConfigError(
            f"train_adversarial: invalid betas={betas!r}. Allowed: two numbers in [0, 1), "
            "e.g. (0.5, 0.999) (pix2pix, DL4DS)."
        )
    if early_stopping_patience is not None:
        p = early_stopping_patience
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
            raise ConfigError(
                f"train_adversarial: invalid early_stopping_patience={p!r}. Allowed: None "
                "or an integer >= 1 (epochs without improvement of val_loss)."
            )
        if not has_validation:
            raise ConfigError(
                "train_adversarial: early_stopping_patience needs val_batches (it watches "
                "the validation pixel loss). Fix: pass val_batches, or "
                "early_stopping_patience=None."
            )


def train_adversarial(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    train_batches: Callable[[int], Iterator[BatchLike]],
    *,
    epochs: int,
    pixel_loss: Callable[..., torch.Tensor],
    pixel_weight: float = 100.0,
    adversarial_weight: float = 1.0,
    learning_rate: float = 2e-4,
    discriminator_learning_rate: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    device: str | torch.device,
    val_batches: Callable[[], Iterable[BatchLike]] | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], bool | None] | None = None,
    early_stopping_patience: int | None = None,
    restore_best: bool = True,
) -> dict[str, list[float]]:
    """Train ``generator`` against ``discriminator`` (conditional GAN); return the history.

    Parameters
    ----------
    generator : torch.nn.Module
        The downscaling network, called as ``generator(x, static)`` (plus
        ``offset=`` when ``generator.config.localcon``).
    discriminator : torch.nn.Module
        Called as ``discriminator(x, highres, static)``, returning logits; usually
        ``ResidualDiscriminator(generator.config)``.
    train_batches : callable
        ``train_batches(epoch)`` yields the batches of one epoch (objects with numpy
        ``lowres``, ``static``, ``target``, ``mask`` and ``offset``, see
        :class:`xr_dl4ds.data.samples.Batch`).
    epochs : int
        Maximum number of epochs.
    pixel_loss : callable
        ``pixel_loss(pred, target, mask)`` returning a scalar tensor, e.g.
        :func:`xr_dl4ds.losses.masked_mae` (DL4DS: ``"mae"``).
    pixel_weight : float, default 100.0
        Weight of the pixel loss in the generator loss (DL4DS: 100).
    adversarial_weight : float, default 1.0
        Weight of the adversarial term ``BCE(D(x, G(x)), 1)`` (DL4DS: 1).
    learning_rate, discriminator_learning_rate : float, default 2e-4
        Adam learning rates of the generator and the discriminator.
    betas : (float, float), default (0.5, 0.999)
        Adam betas of both optimizers.
    device : str or torch.device
        Where to train (``"auto"``, ``"cpu"``, ``"cuda"``...); both networks are moved
        there.
    val_batches : callable, optional
        ``val_batches()`` yields the validation batches, evaluated after each epoch.
    progress : bool, default True
        Show a progress bar over epochs.
    callback : callable, optional
        ``callback(epoch, last)`` after each epoch, ``last`` holding the epoch's values
        of the history; True stops training.
    early_stopping_patience : int, optional
        Stop when ``val_loss`` has not improved for this many epochs (needs
        ``val_batches``).
    restore_best : bool, default True
        With early stopping, load the generator weights of the epoch with the lowest
        ``val_loss`` at the end of training (whether or not it stopped early). The
        discriminator keeps its last weights.

    Returns
    -------
    dict
        One value per epoch run: ``loss`` (generator total, ``adversarial_weight *
        adversarial_loss + pixel_weight * pixel_loss``), ``pixel_loss`` (mean over valid
        cells), ``adversarial_loss`` (generator's BCE), ``discriminator_loss``
        (``BCE(real, 1) + BCE(fake, 0)``), ``learning_rate`` (generator's), ``time``
        (seconds, validation included) and, with ``val_batches``, ``val_loss`` (the pixel
        loss on the validation batches). With early stopping the lists can be shorter
        than ``epochs``.

    Raises
    ------
    ConfigError
        An option is invalid.
    FloatingPointError
        A loss became NaN or infinite.

    Examples
    --------
    >>> import numpy as np
    >>> from xr_dl4ds.data.samples import Batch
    >>> from xr_dl4ds.losses import masked_mae
    >>> from xr_dl4ds.models import create_model
    >>> from xr_dl4ds.models.discriminator import ResidualDiscriminator
    >>> g = create_model(scale=2, n_filters=4, n_blocks=1)
    >>> d = ResidualDiscriminator(g.config, n_filters=4, n_res_blocks=1)
    >>> rng = np.random.default_rng(0)
    >>> batch = Batch(
    ...     lowres=rng.normal(size=(2, 1, 4, 4)).astype("f4"), static=None,
    ...     target=rng.normal(size=(2, 1, 8, 8)).astype("f4"),
    ...     mask=np.ones((2, 1, 8, 8), "f4"), offset=np.zeros((2, 2), "i8"))
    >>> h = train_adversarial(g, d, lambda epoch: iter([batch]), epochs=2,
    ...                       pixel_loss=masked_mae, device="cpu", progress=False)
    >>> len(h["loss"]), sorted(h)[:3]
    (2, ['adversarial_loss', 'discriminator_loss', 'learning_rate'])
    """
    _check_options(
        epochs,
        pixel_weight,
        adversarial_weight,
        learning_rate,
        discriminator_learning_rate,
        betas,
        early_stopping_patience,
        val_batches is not None,
    )
    dev = resolve_device(device)
    generator.to(dev)
    discriminator.to(dev)
    betas = (float(betas[0]), float(betas[1]))
    opt_g = torch.optim.Adam(generator.parameters(), lr=learning_rate, betas=betas)
    opt_d = torch.optim.Adam(
        discriminator.parameters(), lr=discriminator_learning_rate, betas=betas
    )
    d_params = [p for p in discriminator.parameters() if p.requires_grad]

    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    if val_batches is not None:
        history["val_loss"] = []
    best_val, best_state, since_best = math.inf, None, 0

    bar = _progress_bar(epochs, progress)
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            generator.train()
            discriminator.train()
            pix_sum = pix_w = adv_sum = d_sum = n_sum = 0.0
            for batch in train_batches(epoch):
                x, s, y, m, o = _to_tensors(batch, dev)

                fake = _forward(generator, x, s, o)
                real_d = apply_mask(y, m)
                fake_d = apply_mask(fake, m)

                # -- discriminator: real pairs -> 1, generated pairs (detached) -> 0
                opt_d.zero_grad(set_to_none=True)
                d_loss = _bce(discriminator(x, real_d, s), True) + _bce(
                    discriminator(x, fake_d.detach(), s), False
                )
                _check_finite(d_loss, "discriminator loss", epoch)
                d_loss.backward()
                opt_d.step()

                # -- generator: fool the (updated) discriminator + stay close to the target
                for p in d_params:
                    p.requires_grad_(False)
                try:
                    adv = _bce(discriminator(x, fake_d, s), True)
                finally:
                    for p in d_params:
                        p.requires_grad_(True)
                pix = pixel_loss(fake, y, m)
                g_loss = adversarial_weight * adv + pixel_weight * pix
                _check_finite(g_loss, "generator loss", epoch)
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()

                w = float(m.sum())
                n = float(x.shape[0])
                pix_sum += float(pix.detach()) * w
                pix_w += w
                adv_sum += float(adv.detach()) * n
                d_sum += float(d_loss.detach()) * n
                n_sum += n

            pix_mean = pix_sum / pix_w if pix_w else math.nan
            adv_mean = adv_sum / n_sum if n_sum else math.nan
            history["pixel_loss"].append(pix_mean)
            history["adversarial_loss"].append(adv_mean)
            history["discriminator_loss"].append(d_sum / n_sum if n_sum else math.nan)
            history["loss"].append(adversarial_weight * adv_mean + pixel_weight * pix_mean)
            history["learning_rate"].append(float(opt_g.param_groups[0]["lr"]))

            stop = False
            if val_batches is not None:
                val = evaluate_loss(generator, val_batches(), pixel_loss, dev)
                history["val_loss"].append(val)
                if val < best_val:  # NaN never improves
                    best_val, since_best = val, 0
                    if early_stopping_patience is not None and restore_best:
                        best_state = copy.deepcopy(generator.state_dict())
                else:
                    since_best += 1
                    stop = (
                        early_stopping_patience is not None
                        and since_best >= early_stopping_patience
                    )
            history["time"].append(time.perf_counter() - t0)

            last = {k: v[-1] for k, v in history.items()}
            if bar is not None:
                keys = ("loss", "discriminator_loss", "val_loss")
                bar.set_postfix({k: f"{last[k]:.4g}" for k in keys if k in last})
                bar.update(1)
            if callback is not None and callback(epoch, last):
                break  # the callback asked to stop after this epoch
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        generator.load_state_dict(best_state)
    generator.eval()
    discriminator.eval()
    return history


def _check_finite(loss: torch.Tensor, what: str, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"The {what} became {float(loss.detach())} at epoch {epoch + 1}. Lower learning_rate or "
            "discriminator_learning_rate, or check the inputs for infinite values."
        )
