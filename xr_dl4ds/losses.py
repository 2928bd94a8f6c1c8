r"""Named training losses: the nine DL4DS losses, all mask-aware.

Every loss has the signature ``loss(pred, target, mask=None) -> scalar tensor``. ``mask``
is 1 on valid cells and 0 on missing ones (NaN in the data, ocean in land-only fields); it
broadcasts to ``target``, and fractional values act as weights. Cells where ``mask == 0``
have no influence at all on the value or on the gradients: their values in ``pred`` and
``target`` may be anything, NaN included. ``mask=None`` is the same as a mask of ones.

========================  ===========================================================
name                      definition (default weights are DL4DS's)
========================  ===========================================================
``mae``                   :math:`\mathrm{MAE}`, see :func:`masked_mae`
``mse``                   :math:`\mathrm{MSE}`, see :func:`masked_mse`
``dssim``                 :math:`(1 - \mathrm{SSIM}) / 2`, see :func:`masked_dssim`
``dssim_mae``             :math:`0.8\,\mathrm{DSSIM} + 0.2\,\mathrm{MAE}`
``dssim_mse``             :math:`0.8\,\mathrm{DSSIM} + 0.2\,\mathrm{MSE}`
``dssim_mae_mse``         :math:`0.6\,\mathrm{DSSIM} + 0.2\,\mathrm{MAE} + 0.2\,\mathrm{MSE}`
``msdssim``               :math:`(1 - \mathrm{MS\text{-}SSIM}) / 2`, see :func:`masked_msdssim`
``msdssim_mae``           :math:`0.8\,\mathrm{MSDSSIM} + 0.2\,\mathrm{MAE}`
``msdssim_mae_mse``       :math:`0.6\,\mathrm{MSDSSIM} + 0.2\,\mathrm{MAE} + 0.2\,\mathrm{MSE}`
========================  ===========================================================

The mixing weights can be changed with ``get_loss(name, weights=...)``.

SSIM conventions (shared by ``dssim*`` and ``msdssim*``)
--------------------------------------------------------
- Tensors are (N, C, H, W) or (N, T, C, H, W); T is folded into N. SSIM is computed per
  sample and channel (per plane) and averaged.
- Window: 11 x 11 Gaussian, :math:`\sigma = 1.5`, :math:`k_1 = 0.01`, :math:`k_2 = 0.03`
  (as ``tf.image.ssim`` in DL4DS). *Valid* filtering, as in ``tf.image.ssim``: the SSIM map
  has one value per window that lies fully inside the field, i.e. it is
  :math:`(H - w + 1) \times (W - w + 1)`; no padding is ever invented.
- Small fields: when a field is smaller than the window, the window shrinks to the largest
  odd size :math:`w \le \min(11, H, W)` and :math:`\sigma` shrinks with it,
  :math:`\sigma = 1.5\,w / 11`. Any field of at least 1 x 1 works (an 8 x 8 patch uses a
  7 x 7 window, a 5 x 7 patch a 5 x 5 one).
- Data range :math:`L` (``max_val`` in TF): the dynamic range of the *target* over its valid
  cells, over the whole batch (all samples and channels), as DL4DS does; it is floored at
  ``1e-3`` so that a constant batch gives finite values and gradients. As in DL4DS, when
  the smallest valid target value :math:`t_{min}` is negative, both fields are shifted by
  :math:`-t_{min}` before the luminance term (variances do not depend on the shift).
- Masks: local statistics use normalized (mask-weighted) Gaussian filtering. With
  :math:`G` the Gaussian filter and :math:`m` the mask,

  .. math::

      W = G * m, \quad \mu_x = \frac{G * (m x)}{W}, \quad
      \sigma_x^2 = \frac{G * (m x^2)}{W} - \mu_x^2, \quad
      \sigma_{xy} = \frac{G * (m x y)}{W} - \mu_x \mu_y,

  so a masked cell enters no local statistic. The SSIM map is averaged with the weights
  :math:`m_c W`, where :math:`m_c` is the mask at the window centre: windows centred on
  masked cells do not count, and windows that lie mostly over masked cells count less.
  Without a mask, :math:`W = 1` and this is the plain mean of the map, as in TF.
- MS-SSIM: up to 4 scales. Scale :math:`s + 1` is made by 2 x 2 mask-weighted average
  pooling: a coarse cell holds the mean of its valid fine cells and its mask is the
  fraction of valid fine cells (so it is valid if *any* fine cell is, with less weight).
  Odd sizes are first padded by one row/column of masked cells. A coarser scale is used
  only while its smaller side is at least 11 (the full window fits): 4 scales need fields
  of at least 81 x 81, 3 scales 41 x 41, 2 scales 21 x 21; smaller fields use 1 scale.
  With fewer than 4 scales, the power factors used are rescaled to keep their DL4DS total
  (0.8668). Terms below ``1e-6`` (negative contrast-structure) are raised to ``1e-6``
  before the power.

Examples
--------
>>> import torch
>>> from xr_dl4ds.losses import get_loss, list_losses
>>> list_losses()[:3]
['dssim', 'dssim_mae', 'dssim_mae_mse']
>>> loss = get_loss("dssim_mae", weights=(0.5, 0.5))
>>> y = torch.rand(2, 1, 16, 16)
>>> float(loss(y, y))
0.0
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .exceptions import ConfigError, DataError, RegistryError

if TYPE_CHECKING:
    import torch

__all__ = [
    "WeightedLoss",
    "get_loss",
    "list_losses",
    "masked_dssim",
    "masked_mae",
    "masked_ms_ssim",
    "masked_msdssim",
    "masked_mse",
    "masked_ssim",
]

LossFn = Callable[..., "torch.Tensor"]

SSIM_WINDOW = 11
"""Side of the SSIM Gaussian window (DL4DS / ``tf.image.ssim``)."""
SSIM_SIGMA = 1.5
"""Standard deviation of the 11 x 11 SSIM window, in cells."""
SSIM_K1, SSIM_K2 = 0.01, 0.03
"""SSIM stabilising constants: :math:`C_1 = (k_1 L)^2`, :math:`C_2 = (k_2 L)^2`."""
MS_SSIM_POWERS = (0.0448, 0.2856, 0.3001, 0.2363)
"""MS-SSIM power factors of the 4 scales, finest first (DL4DS)."""
MIN_DATA_RANGE = 1e-3
"""Floor of the data range :math:`L`, so that a constant target stays finite."""
MS_SSIM_FLOOR = 1e-6
"""MS-SSIM terms below this (negative contrast-structure) are raised to it before powering."""
_TINY = 1e-12  # guards divisions by a filtered mask or a weight sum that is exactly 0


# -- MAE / MSE -------------------------------------------------------------------------


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return err.mean()
    import torch

    err, m = torch.broadcast_tensors(err, mask.to(err.dtype))
    # where(): a NaN under the mask must not leak through 0 * NaN
    total = torch.where(m != 0, err * m, torch.zeros_like(err)).sum()
    # an all-masked batch gives 0, not NaN
    return total / m.sum().clamp_min(_TINY)


def _masked_diff(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``pred - target``, 0 on masked cells: a NaN target there reaches neither the value
    nor the gradient (the backward of ``x ** 2`` would multiply a zero gradient by it)."""
    diff = pred - target
    if mask is None:
        return diff
    import torch

    return torch.where(mask.to(diff.dtype) != 0, diff, torch.zeros_like(diff))


def masked_mae(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Mean absolute error over the valid cells.

    .. math:: \mathrm{MAE} = \frac{\sum_i m_i\,|\hat y_i - y_i|}{\sum_i m_i}

    Parameters
    ----------
    pred, target : torch.Tensor
        Prediction and truth, any (equal) shape.
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar; 0 when every cell is masked.

    Examples
    --------
    The last cell is missing (NaN in the data, 0 in the mask), so the mean runs over the
    other three: ``(0 + 2 + 1) / 3``:

    >>> import torch
    >>> pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> target = torch.tensor([[1.0, 0.0], [2.0, float("nan")]])
    >>> mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> masked_mae(pred, target, mask)
    tensor(1.)
    >>> masked_mae(pred, target)  # without the mask the NaN propagates
    tensor(nan)

    The mask broadcasts, here over the rows (first column only: ``(0 + 1) / 2``), and
    fractional values weight the cells (``(0.5 * 2 + 1) / 2.5``):

    >>> masked_mae(pred, target, torch.tensor([1.0, 0.0]))
    tensor(0.5000)
    >>> masked_mae(pred, target, torch.tensor([[1.0, 0.5], [1.0, 0.0]]))
    tensor(0.8000)
    """
    return _masked_mean(_masked_diff(pred, target, mask).abs(), mask)


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Mean squared error over the valid cells.

    .. math:: \mathrm{MSE} = \frac{\sum_i m_i\,(\hat y_i - y_i)^2}{\sum_i m_i}

    Parameters
    ----------
    pred, target : torch.Tensor
        Prediction and truth, any (equal) shape.
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar; 0 when every cell is masked.

    Examples
    --------
    The last cell is missing, so the mean runs over the other three:
    ``(0 + 2**2 + 1**2) / 3``:

    >>> import torch
    >>> pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> target = torch.tensor([[1.0, 0.0], [2.0, float("nan")]])
    >>> mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> masked_mse(pred, target, mask)
    tensor(1.6667)
    >>> masked_mse(pred, target, torch.zeros(2, 2))  # nothing valid: 0, not NaN
    tensor(0.)
    """
    return _masked_mean(_masked_diff(pred, target, mask) ** 2, mask)


# -- SSIM building blocks --------------------------------------------------------------


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """SSIM sums squares of local deviations: keep it out of float16/bfloat16 autocast."""
    import torch

    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _prepare(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes; return (N, C, H, W) float planes with the masked cells set to 0."""
    import torch

    shape = tuple(target.shape)
    if tuple(pred.shape) != shape or len(shape) not in (4, 5):
        raise DataError(
            f"{name} needs pred and target of the same shape, (N, C, H, W) or "
            f"(N, T, C, H, W); received pred {tuple(pred.shape)} and target {shape}. "
            "Fix: add the missing sample/channel axes, e.g. with x[:, None]."
        )
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    if mask is None:
        m = torch.ones(shape, dtype=dtype, device=target.device)
    else:
        try:
            m = mask.to(device=target.device, dtype=dtype).expand(shape)
        except RuntimeError:
            raise DataError(
                f"{name}: the mask of shape {tuple(mask.shape)} does not broadcast to the "
                f"target shape {shape}. Allowed: a mask of the target's shape or one that "
                "broadcasts to it (e.g. (N, 1, H, W)); or mask=None."
            ) from None
    flat = (-1, *shape[-3:])
    m = m.reshape(flat)
    valid = m != 0
    zero = torch.zeros((), dtype=dtype, device=target.device)
    x = torch.where(valid, pred.to(dtype).reshape(flat), zero)
    y = torch.where(valid, target.to(dtype).reshape(flat), zero)
    return x, y, m


def _range_and_shift(y: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch dynamic range of the valid target cells, and DL4DS's shift for negatives."""
    import torch

    with torch.no_grad():
        valid = m != 0
        inf = torch.tensor(math.inf, dtype=y.dtype, device=y.device)
        tmin = torch.where(valid, y, inf).amin()
        tmax = torch.where(valid, y, -inf).amax()
        anyv = valid.any()
        zero = torch.zeros((), dtype=y.dtype, device=y.device)
        tmin = torch.where(anyv, tmin, zero)
        tmax = torch.where(anyv, tmax, zero)
        return (tmax - tmin).clamp_min(MIN_DATA_RANGE), tmin.clamp_max(0.0)


def _window_size(h: int, w: int) -> int:
    size = min(SSIM_WINDOW, h, w)
    return size if size % 2 else size - 1


def _gaussian_matrix(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """(n - size + 1, n) banded matrix: 'valid' Gaussian filtering along one axis.

    The 1-D Gaussian has ``size`` taps and sigma ``1.5 * size / 11``, normalized to sum 1.
    Filtering by matrix products is several times faster on CPU than a 1-channel conv2d.
    """
    import torch

    sigma = SSIM_SIGMA * size / SSIM_WINDOW
    taps = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(taps**2) / (2 * sigma**2))
    g = g / g.sum()
    n_out = n - size + 1
    cols = torch.arange(n_out, device=like.device)[:, None] + torch.arange(size, device=like.device)
    out = torch.zeros(n_out, n, dtype=like.dtype, device=like.device)
    return out.scatter_(1, cols, g.expand(n_out, size))


def _ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    ref: torch.Tensor,
    shift: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Luminance map, contrast-structure map and averaging weights of one scale (valid)."""
    h, w = x.shape[-2:]
    size = _window_size(h, w)
    # centre on a per-plane constant (mathematically neutral) so that E[x^2] - E[x]^2
    # does not cancel catastrophically in float32
    d, e = x - ref, y - ref
    rows, cols = _gaussian_matrix(h, size, x), _gaussian_matrix(w, size, x).T
    md, me = m * d, m * e
    wsum, sd, se, sdd, see, sde = (
        rows @ a @ cols for a in (m, md, me, md * d, me * e, md * e)
    )  # each (N, C, H - size + 1, W - size + 1)
    ho, wo = wsum.shape[-2:]
    wc = wsum.clamp_min(_TINY)
    mu_d, mu_e = sd / wc, se / wc
    var_x = sdd / wc - mu_d**2
    var_y = see / wc - mu_e**2
    cov = sde / wc - mu_d * mu_e
    mu_x, mu_y = mu_d + ref - shift, mu_e + ref - shift
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    r = (size - 1) // 2
    weight = m[..., r : r + ho, r : r + wo] * wsum
    return lum, cs, weight


def _plane_mean(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean of each (sample, channel) plane, a constant for centring."""
    import torch

    with torch.no_grad():
        total = m.sum((-2, -1), keepdim=True).clamp_min(_TINY)
        return (m * y).sum((-2, -1), keepdim=True) / total


def _constants(
    x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data_range, shift = _range_and_shift(y, m)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return _plane_mean(y, m), shift, c1, c2


def _weighted_mean(
    values: torch.Tensor, weights: torch.Tensor, dims: tuple[int, ...] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum w v / sum w, sum w) over ``dims`` (all when None); 0 / 0 gives 0."""
    if dims is None:
        total = weights.sum()
        return (weights * values).sum() / total.clamp_min(_TINY), total
    total = weights.sum(dims)
    return (weights * values).sum(dims) / total.clamp_min(_TINY), total


def _dssim_value(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> torch.Tensor:
    x, y, m = _prepare(pred, target, mask, name)
    with _no_autocast(x.device):
        ref, shift, c1, c2 = _constants(x, y, m)
        lum, cs, weight = _ssim_maps(x, y, m, ref, shift, c1, c2)
        value, _ = _weighted_mean((1 - lum * cs) / 2, weight)
        return value


def masked_ssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Mask-aware structural similarity (SSIM), averaged over planes and windows.

    For each window (11 x 11 Gaussian, see the module notes for small fields),

    .. math::

        \mathrm{SSIM} = \underbrace{\frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}}
        _{\text{luminance } l}\;
        \underbrace{\frac{2\sigma_{xy} + C_2}{\sigma_x^2 + \sigma_y^2 + C_2}}
        _{\text{contrast-structure } cs},
        \qquad C_1 = (0.01 L)^2,\; C_2 = (0.03 L)^2,

    with the local statistics from mask-normalized Gaussian filtering and :math:`L` the
    batch dynamic range of the valid target cells. The result is
    :math:`\sum m_c W\,\mathrm{SSIM} / \sum m_c W` over every window of every sample and
    channel (:math:`m_c`: mask at the window centre, :math:`W`: filtered mask).

    Parameters
    ----------
    pred, target : torch.Tensor
        (N, C, H, W) or (N, T, C, H, W).
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar in [-1, 1]; 1 for identical fields, and 1 when every cell is masked.
    """
    return 1 - 2 * _dssim_value(pred, target, mask, "masked_ssim")


def masked_dssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Structural dissimilarity, DL4DS's ``dssim`` loss: :math:`(1 - \mathrm{SSIM}) / 2`.

    SSIM is :func:`masked_ssim` (mask-aware, per sample and channel, batch data range).

    Parameters
    ----------
    pred, target : torch.Tensor
        (N, C, H, W) or (N, T, C, H, W).
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar in [0, 1]; 0 for identical fields and when every cell is masked.
    """
    return _dssim_value(pred, target, mask, "masked_dssim")


def _downsample(
    x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2 x 2 mask-weighted average pooling; odd sides get a row/column of masked cells."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    pad = (0, w % 2, 0, h % 2)
    msum = F.avg_pool2d(F.pad(m, pad), 2) * 4
    den = msum.clamp_min(_TINY)
    xc = F.avg_pool2d(F.pad(m * x, pad), 2) * 4 / den
    yc = F.avg_pool2d(F.pad(m * y, pad), 2) * 4 / den
    return xc, yc, msum / 4


def _n_scales(h: int, w: int) -> int:
    """Scales whose smaller side is at least the full window (the first always counts)."""
    n = 1
    while n < len(MS_SSIM_POWERS) and min(-(-h // 2**n), -(-w // 2**n)) >= SSIM_WINDOW:
        n += 1
    return n


def _ms_powers(n: int) -> tuple[float, ...]:
    """The first ``n`` power factors, rescaled to DL4DS's total when ``n < 4``."""
    used = MS_SSIM_POWERS[:n]
    factor = sum(MS_SSIM_POWERS) / sum(used)
    return tuple(p * factor for p in used)


def _msdssim_value(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> torch.Tensor:
    import torch

    x, y, m = _prepare(pred, target, mask, name)
    with _no_autocast(x.device):
        ref, shift, c1, c2 = _constants(x, y, m)
        n = _n_scales(*x.shape[-2:])
        result = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        plane_weights = []
        for scale, power in enumerate(_ms_powers(n)):
            if scale:
                x, y, m = _downsample(x, y, m)
            lum, cs, weight = _ssim_maps(x, y, m, ref, shift, c1, c2)
            term = cs if scale < n - 1 else lum * cs
            value, total = _weighted_mean(term, weight, (-2, -1))
            # a plane with no valid window at this scale: neutral factor
            value = torch.where(total > 0, value, torch.ones_like(value))
            result = result * value.clamp_min(MS_SSIM_FLOOR) ** power
            plane_weights.append(total)
        # planes weigh what they weigh at the finest scale
        loss, _ = _weighted_mean((1 - result) / 2, plane_weights[0])
        return loss


def masked_ms_ssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Mask-aware multi-scale SSIM (MS-SSIM), DL4DS's 4 scales.

    Per sample and channel,

    .. math::

        \mathrm{MS\text{-}SSIM} = \Big(\prod_{s=1}^{S-1} \max(\overline{cs}_s, \epsilon)
        ^{\beta_s}\Big)\;\max(\overline{l_S\, cs_S}, \epsilon)^{\beta_S},
        \qquad \beta = (0.0448, 0.2856, 0.3001, 0.2363),\; \epsilon = 10^{-6},

    where :math:`\overline{\cdot}` is the window average of :func:`masked_ssim` (weights
    :math:`m_c W`) at scale :math:`s`, and scale :math:`s + 1` is the 2 x 2 mask-weighted
    average of scale :math:`s` (a coarse cell is valid if any of its fine cells is; its
    mask is the valid fraction). The constants :math:`C_1, C_2` come from the data range
    of the full-resolution target, at every scale. Negative terms are clamped to
    :math:`\epsilon` before the power (a fractional power of a negative number is
    undefined); TF clamps to 0, whose gradient under a fractional power is infinite.

    The number of scales :math:`S` is the largest :math:`\le 4` for which the coarsest
    field still holds an 11 x 11 window (sides :math:`\lceil H / 2^{S-1} \rceil` and
    :math:`\lceil W / 2^{S-1} \rceil` at least 11); at least 1. With :math:`S < 4` the first
    :math:`S` factors are rescaled to sum to :math:`\sum \beta = 0.8668`, as with 4 scales.
    The planes are averaged with weights :math:`\sum m_c W` of the first scale.

    Parameters
    ----------
    pred, target : torch.Tensor
        (N, C, H, W) or (N, T, C, H, W).
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar in (0, 1]; 1 for identical fields, and 1 when every cell is masked.
    """
    return 1 - 2 * _msdssim_value(pred, target, mask, "masked_ms_ssim")


def masked_msdssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Multi-scale structural dissimilarity, DL4DS's ``msdssim``: :math:`(1 - \mathrm{MS\text{-}SSIM}) / 2`.

    MS-SSIM is :func:`masked_ms_ssim` (mask-aware, up to 4 scales).

    Parameters
    ----------
    pred, target : torch.Tensor
        (N, C, H, W) or (N, T, C, H, W).
    mask : torch.Tensor, optional
        1 on valid cells, 0 on missing ones; broadcasts to ``target``. ``None``: all valid.

    Returns
    -------
    torch.Tensor
        A scalar in [0, 0.5); 0 for identical fields and when every cell is masked.
    """
    return _msdssim_value(pred, target, mask, "masked_msdssim")


# -- registry --------------------------------------------------------------------------

_COMPONENTS: dict[str, LossFn] = {
    "mae": masked_mae,
    "mse": masked_mse,
    "dssim": masked_dssim,
    "msdssim": masked_msdssim,
}

_MIXES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "mae": (("mae",), (1.0,)),
    "mse": (("mse",), (1.0,)),
    "dssim": (("dssim",), (1.0,)),
    "dssim_mae": (("dssim", "mae"), (0.8, 0.2)),
    "dssim_mse": (("dssim", "mse"), (0.8, 0.2)),
    "dssim_mae_mse": (("dssim", "mae", "mse"), (0.6, 0.2, 0.2)),
    "msdssim": (("msdssim",), (1.0,)),
    "msdssim_mae": (("msdssim", "mae"), (0.8, 0.2)),
    "msdssim_mae_mse": (("msdssim", "mae", "mse"), (0.6, 0.2, 0.2)),
}


class WeightedLoss:
    r"""A weighted sum of named loss components, :math:`\sum_k w_k\,\mathcal{L}_k`.

    Usually made by :func:`get_loss`; call it as ``loss(pred, target, mask=None)``.

    Parameters
    ----------
    name : str
        One of :func:`list_losses`, e.g. ``"dssim_mae"``.
    weights : sequence of float, optional
        One non-negative weight per component; default DL4DS's.

    Attributes
    ----------
    name : str
    components : tuple of str
        Component names, e.g. ``("dssim", "mae")``.
    weights : tuple of float
        One weight per component.
    """

    def __init__(self, name: str, weights: Sequence[float] | None = None):
        if not isinstance(name, str) or name not in _MIXES:
            raise _unknown(name)
        components, default = _MIXES[name]
        self.name = name
        self.__name__ = name
        self.components = components
        self.weights = (
            default if weights is None else _check_weights(name, weights, components, default)
        )

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        terms = [
            w * _COMPONENTS[c](pred, target, mask)
            for c, w in zip(self.components, self.weights, strict=True)
            if w != 0  # skip the cost of a switched-off component
        ]
        return sum(terms[1:], terms[0])

    def __repr__(self) -> str:
        return f"WeightedLoss({self.name!r}, weights={self.weights})"


def list_losses() -> list[str]:
    """Names accepted by ``loss=`` and :func:`get_loss`, sorted.

    Returns
    -------
    list of str
        ``['dssim', 'dssim_mae', 'dssim_mae_mse', 'dssim_mse', 'mae', 'msdssim',
        'msdssim_mae', 'msdssim_mae_mse', 'mse']``.

    Examples
    --------
    Every loss of a noisy prediction of an 8 x 8 field (one sample, one channel):

    >>> import torch
    >>> from xr_dl4ds.losses import get_loss, list_losses
    >>> target = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8)
    >>> pred = target + 0.1 * torch.cos(torch.arange(64.0)).reshape(1, 1, 8, 8)
    >>> for name in list_losses():
    ...     print(f"{name:16} {float(get_loss(name)(pred, target)):.4f}")
    dssim            0.0695
    dssim_mae        0.0684
    dssim_mae_mse    0.0555
    dssim_mse        0.0566
    mae              0.0641
    msdssim          0.0608
    msdssim_mae      0.0615
    msdssim_mae_mse  0.0503
    mse              0.0051
    """
    return sorted(_MIXES)


def _unknown(name: object) -> RegistryError:
    return RegistryError(
        f"Unknown loss {name!r}. Available: {list_losses()}; or pass a callable "
        "loss(pred, target, mask) -> scalar tensor."
    )


def _check_weights(
    name: str, weights: object, components: tuple[str, ...], default: tuple[float, ...]
) -> tuple[float, ...]:
    n = len(components)
    comps = " + ".join(f"w{i + 1}*{c}" for i, c in enumerate(components))
    fix = f"Fix: pass {n} number(s) >= 0, not all 0, e.g. weights={default} (the default)."
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ConfigError(
            f"weights={weights!r} for loss {name!r}: received a {type(weights).__name__}; "
            f"allowed: a tuple of {n} number(s), one per component ({comps}). {fix}"
        )
    if len(weights) != n:
        raise ConfigError(
            f"Loss {name!r} has {n} component(s) ({comps}); received {len(weights)} "
            f"weight(s) {tuple(weights)!r}. Allowed: exactly {n}. {fix}"
        )
    out = []
    for w in weights:
        ok = isinstance(w, (int, float)) and not isinstance(w, bool)
        if not ok or not math.isfinite(w) or w < 0:
            raise ConfigError(
                f"weights={tuple(weights)!r} for loss {name!r}: received {w!r}; allowed: "
                f"finite numbers >= 0. {fix}"
            )
        out.append(float(w))
    if not any(out):
        raise ConfigError(
            f"weights={tuple(weights)!r} for loss {name!r}: received all zeros, which give "
            f"no training signal; allowed: at least one weight > 0. {fix}"
        )
    return tuple(out)


def get_loss(name: str | LossFn, weights: Sequence[float] | None = None) -> LossFn:
    """The loss called ``name``, optionally with its own mixing weights.

    Parameters
    ----------
    name : str or callable
        One of :func:`list_losses`, or a callable ``loss(pred, target, mask)`` returning a
        scalar tensor, which is returned unchanged.
    weights : sequence of float, optional
        One non-negative weight per component, in the order of the name: ``dssim_mae``
        takes ``(w_dssim, w_mae)``, ``msdssim_mae_mse`` takes ``(w_msdssim, w_mae, w_mse)``,
        single losses take ``(w,)``. Default: DL4DS's (0.8, 0.2) and (0.6, 0.2, 0.2).

    Returns
    -------
    callable
        ``loss(pred, target, mask=None) -> scalar tensor``. Single losses without weights
        are the plain functions (``get_loss("mae") is masked_mae``); the others are
        :class:`WeightedLoss` objects.

    Raises
    ------
    RegistryError
        An unknown name; the message lists the valid ones.
    ConfigError
        ``weights`` of the wrong length, negative, non-finite or all zero, or given with a
        callable.

    Examples
    --------
    >>> from xr_dl4ds.losses import get_loss
    >>> get_loss("dssim_mae")
    WeightedLoss('dssim_mae', weights=(0.8, 0.2))
    >>> get_loss("msdssim_mae_mse", weights=(1, 0, 1))
    WeightedLoss('msdssim_mae_mse', weights=(1.0, 0.0, 1.0))
    """
    if callable(name):
        if weights is not None:
            raise ConfigError(
                f"weights={weights!r} only apply to named losses; received the callable "
                f"{name!r}. Fix: apply the weights inside your callable, or pass one of "
                f"{list_losses()}."
            )
        return name
    if not isinstance(name, str) or name not in _MIXES:
        raise _unknown(name)
    components, _ = _MIXES[name]
    if weights is None and len(components) == 1:
        return _COMPONENTS[components[0]]
    return WeightedLoss(name, weights)
