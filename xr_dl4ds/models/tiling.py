"""Exact, seam-free tiled inference of the downscaling networks (torch and numpy only).

:func:`tiled_forward` runs a :class:`~xr_dl4ds.models.DownscalingNet` or a
:class:`~xr_dl4ds.models.SpatioTemporalNet` window by window over a low-resolution
field, so that the memory of the device is bounded by the size of a tile and of a
batch, not by the domain, and the result equals the network applied to the whole field
(to float32 rounding, eval mode). Three things make it exact:

* **Halo.** Each tile (the *core*) is run with a margin (the *halo*) of at least the
  network's receptive field (:func:`receptive_field`), and only the core of each
  window's output is kept. Windows are clipped at the borders of the field (never
  zero-padded), so the network's own replicated borders act there as on the whole
  field. With ``periodic=True`` the x axis wraps: windows (and the halo of the single
  window of ``tile=None``) take their columns circularly.
* **Global channel attention.** Every :class:`~xr_dl4ds.models.blocks.ChannelAttention`
  rescales its input by a function of its *spatial mean over the whole field*. With
  several windows per sample, :func:`tiled_forward` makes one pass over the windows
  per attention layer: pass ``k`` uses the means of layers ``1..k-1`` found by the
  earlier passes, sums the input of layer ``k`` over each window's core (mapped to the
  layer's resolution), and stops the forward there; the mean over the field is the sum
  of the cores' sums over the sum of their areas. A last pass applies every mean and
  keeps the output. A network with ``K`` attention layers thus costs ``K + 1`` passes,
  ``K`` of them partial. With one window per sample (``tile=None``, or a tile as large
  as the field) a single pass takes each mean over the core only, which with
  ``periodic=True`` excludes the wrapped halo columns.
* **UNet pooling grid.** The ``"unet"`` backbone pads its input after the last row
  and column, so its pooling grid starts at the first row and column of its input.
  Windows start on multiples of :func:`tile_alignment` from the start of the untiled
  window (cores are multiples of it; a halo is grown to it at a clipped border, and
  along a periodic x every window starts ``hx`` before its core, as the wrapped window
  of ``tile=None`` does), so every window pools on the grid of the whole field, and
  each window runs with the number of levels of the whole field
  (:meth:`UNetBackbone.fixed_levels <xr_dl4ds.models.unet.UNetBackbone.fixed_levels>`).
  The rows and columns the UNet pads after the field count in the attention means, as
  in the untiled network: they belong to the core of the windows that end at the
  field's last row or column.

The means are per sample, and per frame in the head of spatio-temporal networks, as in
the untiled network. The attention layers are found by the hook of
:func:`~xr_dl4ds.models.blocks.attention_mean_hook`, so a backbone registered by a
plug-in is tiled exactly as long as its layers are local (besides channel attention)
and its unpadded features keep a fixed ratio to the high-resolution grid.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import numbers
import weakref
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any, TypeGuard

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.blocks import ChannelAttention, attention_mean_hook
from xr_dl4ds.models.dropout import has_monte_carlo_dropout
from xr_dl4ds.models.output import LocallyConnected1x1
from xr_dl4ds.models.recurrent import SpatioTemporalNet
from xr_dl4ds.models.unet import UNetBackbone

__all__ = ["frozen_attention", "receptive_field", "tile_alignment", "tiled_forward"]

# an "infinite" end of a core, in high-resolution pixels (the core reaches the end of
# the field, so the pixels a UNet pads after it count)
_OPEN = 1 << 40
# the largest probe of receptive_field, in low-resolution pixels along the probed axis
_MAX_PROBE = 1 << 14


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _scale(net: object, where: str) -> int:
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"{where}: expected a network (torch.nn.Module), received {type(net).__name__}. "
            "Allowed: a DownscalingNet or SpatioTemporalNet (xr_dl4ds.models.create_model). "
            "Fix: pass the network, e.g. model.network() of a Downscaler."
        )
    scale = getattr(net, "scale", None)
    if scale is None:
        scale = getattr(getattr(net, "config", None), "scale", None)
    if not _is_int(scale) or int(scale) < 2:
        raise ConfigError(
            f"{where}: the network {type(net).__name__} has no integer scale >= 2 "
            f"(received scale={scale!r}). Allowed: a DownscalingNet or SpatioTemporalNet, "
            "which have one. Fix: build the network with xr_dl4ds.models.create_model."
        )
    return int(scale)


def _unets(net: nn.Module) -> list[UNetBackbone]:
    return [m for m in net.modules() if isinstance(m, UNetBackbone)]


def _has_localcon(net: nn.Module) -> bool:
    return any(isinstance(m, LocallyConnected1x1) for m in net.modules())


def _device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in net.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _pair(value: object, name: str, minimum: int, meaning: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_int(v) and int(v) >= minimum for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ConfigError(
        f"tiled_forward: invalid {name}={value!r}. Allowed: None or a pair of integers "
        f">= {minimum} ({meaning}, in low-resolution pixels along (y, x)). Fix: pass e.g. "
        f"{name}=({max(minimum, 1) * 64}, {max(minimum, 1) * 64})."
    )


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _hr_support(grad: Tensor, scale: int) -> Tensor:
    """The low-resolution cells under the non-zero entries of a ``(..., H, W)``
    high-resolution gradient, as a ``(H // scale, W // scale)`` boolean map."""
    hit = grad.abs().reshape(-1, *grad.shape[-2:]).sum(0) > 0
    h, w = hit.shape[0] // scale, hit.shape[1] // scale
    return hit.reshape(h, scale, w, scale).any(dim=3).any(dim=1)


# --------------------------------------------------------------------------- alignment


def tile_alignment(net: nn.Module) -> int:
    """The low-resolution multiple on which tiled windows must start.

    Windows of :func:`tiled_forward` start on multiples of this number (of low-resolution
    pixels, from the first row and column of the field), so that every window computes
    what the whole field computes. It is 1 for every network without a UNet. A
    ``"unet"`` backbone with ``N = n_blocks`` levels pools on a grid of ``2**N``
    high-resolution pixels, that is ``2**N / gcd(2**N, scale)`` low-resolution pixels:
    16 for the default ``n_blocks=6`` at ``scale=4``.

    Parameters
    ----------
    net : DownscalingNet or SpatioTemporalNet

    Returns
    -------
    int
        ``>= 1``.

    Raises
    ------
    ConfigError
        ``net`` is not a downscaling network.

    Examples
    --------
    >>> from xr_dl4ds.models import create_model
    >>> from xr_dl4ds.models.tiling import tile_alignment
    >>> tile_alignment(create_model("resnet", scale=4))
    1
    >>> tile_alignment(create_model("unet", upsampling="pin", scale=4, n_blocks=6))
    16
    >>> tile_alignment(create_model("unet", upsampling="pin", scale=3, n_blocks=2))
    4
    """
    scale = _scale(net, "tile_alignment")
    align = 1
    for unet in _unets(net):
        step = 2**unet.n_blocks
        align = math.lcm(align, step // math.gcd(step, scale))
    return align


# --------------------------------------------------------------------------- attention hooks


def _constant_mean(module: ChannelAttention, x: Tensor) -> Tensor:
    return x.new_zeros(x.shape[0], x.shape[1], 1, 1)


@contextlib.contextmanager
def frozen_attention() -> Iterator[None]:
    """Freeze every channel attention to a constant mean inside the ``with`` block.

    Each :class:`~xr_dl4ds.models.blocks.ChannelAttention` then uses a mean of zero
    instead of the mean of its input, so it scales each channel by a constant and the
    network becomes local: an output cell depends only on the input cells within its
    receptive field. :func:`receptive_field` measures the network so; tests use it to
    check that measure by brute force. It applies to the current thread only.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import create_model
    >>> from xr_dl4ds.models.tiling import frozen_attention
    >>> net = create_model("convnet", scale=2, n_filters=4, n_blocks=1).eval()
    >>> x = torch.rand(1, 1, 12, 12)
    >>> far = x.clone()
    >>> far[..., 0, 0] += 1.0  # a cell far from the output cell (11, 11)
    >>> with frozen_attention():
    ...     torch.equal(net(x)[..., 22:, 22:], net(far)[..., 22:, 22:])
    True
    """
    with attention_mean_hook(_constant_mean):
        yield


class _StopPass(Exception):
    """Raised by a collecting hook once its attention layer has been collected."""


@dataclasses.dataclass(frozen=True)
class _Window:
    """One window: low-resolution rows ``y`` and columns ``x`` (columns may leave
    ``[0, w)`` when periodic) and its core, with whether the core reaches the end of a
    non-periodic axis (then the pixels a UNet pads after the field belong to it)."""

    y: tuple[int, int]
    x: tuple[int, int]
    core_y: tuple[int, int]
    core_x: tuple[int, int]
    open_y: bool
    open_x: bool

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y[1] - self.y[0], self.x[1] - self.x[0])

    def core_hr(self, scale: int) -> tuple[int, int, int, int]:
        """The core in high-resolution pixels relative to the window's first cell."""
        y0, y1 = ((c - self.y[0]) * scale for c in self.core_y)
        x0, x1 = ((c - self.x[0]) * scale for c in self.core_x)
        return (y0, _OPEN if self.open_y else y1, x0, _OPEN if self.open_x else x1)


class _Means:
    """The attention means of one batch of samples, found pass by pass."""

    def __init__(self, n_samples: int) -> None:
        self.n = n_samples
        self.fixed: list[Tensor] = []  # per attention call: (n, m, C) float64
        self.sums: Tensor | None = None
        self.counts: Tensor | None = None

    def add(self, rows: Tensor, sums: Tensor, counts: Tensor) -> None:
        if self.sums is None or self.counts is None:
            self.sums = sums.new_zeros(self.n, *sums.shape[1:])
            self.counts = counts.new_zeros(self.n)
        self.sums.index_add_(0, rows, sums)
        self.counts.index_add_(0, rows, counts)

    def close_pass(self) -> None:
        if self.sums is None or self.counts is None or bool((self.counts <= 0).any()):
            raise RuntimeError(  # an internal invariant: every sample has a core
                "tiled_forward: an attention pass collected no area for some sample."
            )
        self.fixed.append(self.sums / self.counts[:, None, None])
        self.sums = self.counts = None


class _Hook:
    """The attention hook of one forward call over ``R`` rows (sample, window) that
    share a window shape.

    ``immediate``: each row holds the whole core of its sample, so each mean is taken
    over the row's core at once. Otherwise the calls before ``len(means.fixed)`` use the
    fixed means, and the next one is collected and stops the pass.
    """

    def __init__(
        self,
        means: _Means,
        rows: Tensor,
        cores: Tensor,
        window_hr: tuple[int, int],
        padded: dict[int, tuple[int, int]],
        *,
        immediate: bool,
    ) -> None:
        self.means = means
        self.rows = rows  # (R,) sample index in the batch, on the device
        self.cores = cores  # (R, 4) int64: y0, y1, x0, x1 (HR, window-relative)
        self.window_hr = window_hr
        self.padded = padded  # id(attention) -> padded HR size of its UNet input
        self.immediate = immediate
        self.calls = 0

    def _masks(self, module: ChannelAttention, x: Tensor) -> tuple[Tensor, Tensor]:
        hl, wl = int(x.shape[-2]), int(x.shape[-1])
        ref = self.padded.get(id(module), self.window_hr)
        masks = []
        for size, ref_size, (lo, hi) in ((hl, ref[0], (0, 1)), (wl, ref[1], (2, 3))):
            step = Fraction(ref_size, size)  # high-resolution pixels per layer pixel
            pos = torch.arange(size, device=x.device, dtype=torch.int64) * step.numerator
            start = self.cores[:, lo : lo + 1] * step.denominator
            end = self.cores[:, hi : hi + 1] * step.denominator
            masks.append(((pos >= start) & (pos < end)).to(x.dtype))
        return masks[0], masks[1]

    def _sums(self, module: ChannelAttention, x: Tensor) -> tuple[Tensor, Tensor, int]:
        r = int(self.rows.shape[0])
        b, c = int(x.shape[0]), int(x.shape[1])
        if b % r:
            raise ConfigError(
                f"tiled_forward: a channel attention received a batch of {b}, not a "
                f"multiple of the {r} rows (sample, window) of the forward pass, so its "
                "means cannot be told apart per sample. Allowed: networks whose "
                "attention layers see the batch, possibly with frames folded into it. "
                "Fix: run this network with tile=None and periodic=False."
            )
        m = b // r
        dtype = torch.promote_types(x.dtype, torch.float32)  # no half-precision sums
        my, mx = (mask.to(dtype) for mask in self._masks(module, x))
        xs = x.reshape(r, m, c, *x.shape[-2:]).to(dtype)
        sums = torch.einsum("rmchw,rh,rw->rmc", xs, my, mx).to(torch.float64)
        counts = my.sum(1).to(torch.float64) * mx.sum(1).to(torch.float64)
        return sums, counts, m

    def __call__(self, module: ChannelAttention, x: Tensor) -> Tensor:
        call = self.calls
        self.calls += 1
        b, c = int(x.shape[0]), int(x.shape[1])
        if self.immediate:
            sums, counts, _ = self._sums(module, x)
            return (sums / counts[:, None, None]).to(x.dtype).reshape(b, c, 1, 1)
        if call < len(self.means.fixed):
            mean = self.means.fixed[call][self.rows]  # (R, m, C)
            return mean.to(x.dtype).reshape(b, c, 1, 1)
        sums, counts, _ = self._sums(module, x)
        self.means.add(self.rows, sums, counts)
        raise _StopPass


# --------------------------------------------------------------------------- windows


def _axis_windows(
    n: int, tile: int | None, halo: int, align: int, periodic: bool
) -> list[tuple[int, int, int, int, bool]]:
    """Windows ``(start, end, core_start, core_end, open_end)`` along one axis."""
    step = n if tile is None else _round_up(tile, align)
    out = []
    for c0 in range(0, n, step):
        c1 = min(c0 + step, n)
        if periodic:
            out.append((c0 - halo, c1 + halo, c0, c1, False))
        else:
            start = max(0, ((c0 - halo) // align) * align)
            out.append((start, min(n, c1 + halo), c0, c1, c1 == n))
    return out


def _windows(
    size: tuple[int, int],
    tile: tuple[int, int] | None,
    halo: tuple[int, int],
    align: int,
    periodic: bool,
) -> list[_Window]:
    ys = _axis_windows(size[0], None if tile is None else tile[0], halo[0], align, False)
    xs = _axis_windows(size[1], None if tile is None else tile[1], halo[1], align, periodic)
    return [
        _Window((y0, y1), (x0, x1), (cy0, cy1), (cx0, cx1), oy, ox)
        for (y0, y1, cy0, cy1, oy) in ys
        for (x0, x1, cx0, cx1, ox) in xs
    ]


def _take(t: Tensor, y: tuple[int, int], x: tuple[int, int], width: int) -> Tensor:
    """Rows ``y`` and columns ``x`` (wrapped modulo ``width``) of ``t[..., H, W]``."""
    t = t[..., y[0] : y[1], :]
    if 0 <= x[0] and x[1] <= width:
        return t[..., x[0] : x[1]]
    cols = torch.arange(x[0], x[1], device=t.device) % width
    return t.index_select(-1, cols)


# --------------------------------------------------------------------------- inputs


def _as_input(x: object, temporal: bool, net_name: str) -> Tensor:
    ndim = 5 if temporal else 4
    layout = "(N, T, C_in, h, w)" if temporal else "(N, C_in, h, w)"
    t: object = x
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(t, Tensor) or t.ndim != ndim or not t.is_floating_point():
        received = (
            f"shape {tuple(t.shape)} and dtype {t.dtype}"
            if isinstance(t, Tensor)
            else type(x).__name__
        )
        raise ConfigError(
            f"tiled_forward: expected x as a floating-point {ndim}-D tensor or numpy array "
            f"{layout} for a {net_name}, received {received}. Fix: stack the samples on "
            "the first axis and the low-resolution rows and columns on the last two."
        )
    if min(t.shape[-2:]) < 1 or t.shape[0] < 1:
        raise ConfigError(
            f"tiled_forward: x of shape {tuple(t.shape)} is empty. Allowed: at least one "
            "sample and one low-resolution cell. Fix: pass a non-empty field."
        )
    return t


def _as_static(static: object, n: int, size: tuple[int, int]) -> Tensor | None:
    if static is None:
        return None
    t: object = static
    if isinstance(static, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(static))
    if isinstance(t, Tensor) and t.ndim == 3:
        t = t.unsqueeze(0)
    if (
        not isinstance(t, Tensor)
        or t.ndim != 4
        or not t.is_floating_point()
        or tuple(t.shape[-2:]) != size
        or t.shape[0] not in (1, n)
    ):
        received = (
            f"shape {tuple(static.shape)}"
            if isinstance(static, (Tensor, np.ndarray))
            else type(static).__name__
        )
        raise ConfigError(
            f"tiled_forward: expected static as a floating-point (C_s, {size[0]}, "
            f"{size[1]}) or ({n}, C_s, {size[0]}, {size[1]}) tensor or array (the "
            f"high-resolution static fields on the grid of the output), received "
            f"{received}. Fix: give the static fields at scale times the size of x."
        )
    return t


def _as_offset(offset: object) -> tuple[int, int] | None:
    if offset is None:
        return None
    if isinstance(offset, np.ndarray | Tensor):
        values = offset.tolist() if offset.ndim == 1 else None
    else:
        values = offset
    if isinstance(values, (tuple, list)) and len(values) == 2 and all(map(_is_int, values)):
        return (int(values[0]), int(values[1]))
    raise ConfigError(
        f"tiled_forward: invalid offset={offset!r}. Allowed: None or a pair of integers "
        "(oy, ox), the high-resolution position of the first cell of x in the training "
        "grid of a model with localcon. Fix: pass e.g. offset=(0, 0)."
    )


def _batch_seed(seed: int, first: int) -> int:
    return int(np.random.SeedSequence([seed, first]).generate_state(1)[0])


@contextlib.contextmanager
def _forked_rng(device: torch.device, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    # torch.manual_seed seeds every CUDA device: keep all their states
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


# --------------------------------------------------------------------------- tiled forward


def tiled_forward(
    net: nn.Module,
    x: Tensor | np.ndarray,
    static: Tensor | np.ndarray | None = None,
    offset: Sequence[int] | None = None,
    *,
    tile: tuple[int, int] | None = None,
    halo: tuple[int, int] | None = None,
    periodic: bool = False,
    batch_size: int = 8,
    seed: int | None = None,
    output_affine: tuple[ArrayLike, ArrayLike] | None = None,
) -> Tensor:
    """Run a downscaling network over a field tile by tile, with the untiled result.

    The field is cut into cores of ``tile`` low-resolution pixels (the last ones
    smaller); each core is run with ``halo`` more pixels on every side (clipped at
    the borders of the field, wrapped along x when ``periodic``) and only the core of
    the output is kept. Channel attention gets the mean over the whole field by one
    pass over the windows per attention layer (see :mod:`xr_dl4ds.models.tiling`);
    a window holds ``batch_size`` samples, is moved to the device of the network's
    parameters and its output back to the CPU, so the device holds one window batch
    at a time.

    With the default halo the result equals ``tiled_forward(net, x, tile=None)`` to
    float32 rounding, and with ``tile=None`` and ``periodic=False`` it is
    ``net(x, static, offset)``. Call ``net.eval()`` first: in training mode batch
    statistics and dropout differ between windows.

    Parameters
    ----------
    net : DownscalingNet or SpatioTemporalNet
        The network, on any device.
    x : Tensor or numpy.ndarray
        ``(N, C_in, h, w)``, or ``(N, T, C_in, h, w)`` for a spatio-temporal network:
        the low-resolution input, with the coarsened static channels, on the CPU.
    static : Tensor or numpy.ndarray, optional
        ``(C_s, h * scale, w * scale)`` (shared by the samples) or
        ``(N, C_s, h * scale, w * scale)``: the high-resolution static fields of a
        network with ``static_channels > 0``.
    offset : pair of int, optional
        The high-resolution ``(row, col)`` of the first cell of ``x`` in the training
        grid of a network with ``localcon``; each window gets
        ``(oy + y0 * scale, ox + x0 * scale)`` for its first cell ``(y0, x0)``. None is
        ``(0, 0)``; ignored without ``localcon``.
    tile : (int, int), optional
        Low-resolution size ``(ty, tx)`` of the cores, rounded up to a multiple of
        :func:`tile_alignment`. None runs the whole field as one window.
    halo : (int, int), optional
        Low-resolution margin ``(hy, hx)`` of each window. None is
        :func:`receptive_field` (with ``time_window=T`` of ``x`` for spatio-temporal
        networks), which makes tiling exact; a smaller halo trades exactness for speed.
        Not used with ``tile=None`` and ``periodic=False``.
    periodic : bool, default False
        The x axis wraps (a global longitude): windows take their columns circularly,
        also the single window of ``tile=None``, which then has a halo on both sides.
        Not allowed with ``localcon``.
    batch_size : int, default 8
        Samples per forward pass. When ``N < batch_size``, windows of the same shape
        are batched together up to ``batch_size`` rows (not with ``localcon`` nor with
        Monte-Carlo dropout).
    seed : int, optional
        Seed of the random layers (Monte-Carlo dropout): the generator is reseeded with
        the same value, derived from ``seed`` and the batch's first sample, before every
        forward of a batch of samples, in every pass and window, inside
        :func:`torch.random.fork_rng` (the caller's generator is untouched). Channel
        dropout (``"mcspatialdrop"``) then draws the same masks in every window, so the
        tiled output equals the untiled one with the same ``seed`` and ``batch_size``;
        element-wise variants draw a new mask per window (statistically the same).
        None leaves the generator alone.
    output_affine : (sequence of float, sequence of float), optional
        ``(scale, offset)`` per output channel: the output is ``y * scale + offset``
        (in float32, a multiplication then an addition), computed on the network's
        device before the copy back to the CPU — how :meth:`Downscaler.downscale
        <xr_dl4ds.Downscaler>` denormalizes without another pass over the output on
        the CPU. None returns the network's output.

    Returns
    -------
    Tensor
        ``(N, C_out, h * scale, w * scale)`` or ``(N, T, C_out, h * scale, w * scale)``,
        float32, on the CPU.

    Raises
    ------
    ConfigError
        An argument has the wrong type, shape or value, or ``periodic=True`` with a
        ``localcon`` network.

    Notes
    -----
    *Cost.* Each window computes ``(ty + 2 hy) (tx + 2 hx)`` cells for ``ty tx`` kept,
    and a network with ``K`` channel attention layers makes ``K + 1`` passes over the
    windows when a sample has several (pass ``k`` stops at attention layer ``k``). Every
    network has one in its output head, so the default (``attention=False``) costs two
    passes, the first one nearly complete; ``attention=True`` adds one per backbone
    block (two per level for a UNet). The halo of the default UNet (``n_blocks=6``,
    176 low-resolution pixels at ``scale=4``) makes small tiles expensive: prefer tiles
    several times the halo, or ``tile=None`` when the field fits.

    *Rounding.* Windows of different sizes may run different convolution algorithms,
    so tiled and untiled outputs differ by float32 rounding, amplified by deep
    networks (up to about ``1e-5`` for the small UNets of the tests, more with a
    layer normalization over few channels). On CUDA, float32 convolutions use TF32 by
    default (``torch.backends.cudnn.allow_tf32``), and the differences grow to about
    ``1e-4`` to ``1e-3``; turn TF32 off to get float32 rounding.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import create_model
    >>> from xr_dl4ds.models.tiling import tiled_forward
    >>> net = create_model("resnet", scale=2, n_filters=4, n_blocks=1, attention=True).eval()
    >>> x = torch.rand(2, 1, 13, 17)
    >>> whole = tiled_forward(net, x)
    >>> tiled = tiled_forward(net, x, tile=(5, 6))
    >>> tiled.shape, bool((tiled - whole).abs().max() < 1e-5)
    (torch.Size([2, 1, 26, 34]), True)
    """
    scale = _scale(net, "tiled_forward")
    temporal = isinstance(net, SpatioTemporalNet)
    xt = _as_input(x, temporal, type(net).__name__)
    n = int(xt.shape[0])
    h, w = int(xt.shape[-2]), int(xt.shape[-1])
    st = _as_static(static, n, (h * scale, w * scale))
    tile = _pair(tile, "tile", 1, "the size of the cores")
    halo = _pair(halo, "halo", 0, "the margin of each window")
    if not isinstance(periodic, bool):
        raise ConfigError(
            f"tiled_forward: invalid periodic={periodic!r}. Allowed: True or False. Fix: "
            "pass periodic=True for a field that wraps along x (global longitude)."
        )
    if not _is_int(batch_size) or int(batch_size) < 1:
        raise ConfigError(
            f"tiled_forward: invalid batch_size={batch_size!r}. Allowed: an integer >= 1 "
            "(samples per forward pass). Fix: pass e.g. batch_size=8."
        )
    if seed is not None and (not _is_int(seed) or int(seed) < 0):
        raise ConfigError(
            f"tiled_forward: invalid seed={seed!r}. Allowed: None or an integer >= 0. "
            "Fix: pass e.g. seed=0."
        )
    base = _as_offset(offset)
    affine = _as_affine(output_affine, net)
    localcon = _has_localcon(net)
    if periodic and localcon:
        raise ConfigError(
            "tiled_forward: periodic=True with a network with localcon. Allowed: "
            "periodic=False for localcon models, whose per-pixel weights live on the "
            "training grid and do not wrap. Fix: pass periodic=False."
        )
    device, dtype = _device_dtype(net)
    with torch.no_grad(), _forked_rng(device, seed is not None):
        if not periodic and (tile is None or (tile[0] >= h and tile[1] >= w)):
            return _untiled(net, xt, st, base, int(batch_size), seed, device, dtype, affine)
        if halo is None:
            halo = receptive_field(net, time_window=int(xt.shape[1]) if temporal else None)
        return _tiled(
            net,
            xt,
            st,
            base,
            tile=tile,
            halo=halo,
            periodic=periodic,
            batch_size=int(batch_size),
            seed=seed,
            device=device,
            dtype=dtype,
            localcon=localcon,
            affine=affine,
        )


def _as_affine(
    affine: tuple[ArrayLike, ArrayLike] | None, net: nn.Module
) -> tuple[Tensor, Tensor] | None:
    """``output_affine`` as two float32 (C_out, 1, 1) tensors on the network's device."""
    if affine is None:
        return None
    config = getattr(net, "config", None)
    n_out = getattr(config, "out_channels", None)
    pair: list[np.ndarray] = []
    try:
        pair = [np.asarray(a, np.float32).reshape(-1) for a in affine]
    except (TypeError, ValueError):
        pass
    if (
        len(pair) != 2
        or pair[0].shape != pair[1].shape
        or (n_out is not None and pair[0].shape[0] != int(n_out))
    ):
        raise ConfigError(
            f"tiled_forward: invalid output_affine={affine!r}. Allowed: None or a pair "
            f"(scale, offset) of sequences with one number per output channel "
            f"({n_out if n_out is not None else 'C_out'}). Fix: pass e.g. "
            "output_affine=(stds, means) of the targets."
        )
    device = next(net.parameters()).device
    scale, offset = (torch.from_numpy(a).reshape(-1, 1, 1).to(device) for a in pair)
    return scale, offset


def _finish(y: Tensor, affine: tuple[Tensor, Tensor] | None) -> Tensor:
    """The network's output in float32 with ``affine`` applied, still on its device."""
    y = y.float()
    if affine is not None:
        y = y * affine[0]
        y += affine[1]
    return y


def _static_rows(st: Tensor, first: int, last: int) -> Tensor:
    return st.expand(last - first, *st.shape[1:]) if st.shape[0] == 1 else st[first:last]


def _untiled(
    net: nn.Module,
    xt: Tensor,
    st: Tensor | None,
    offset: tuple[int, int] | None,
    batch_size: int,
    seed: int | None,
    device: torch.device,
    dtype: torch.dtype,
    affine: tuple[Tensor, Tensor] | None,
) -> Tensor:
    n = int(xt.shape[0])
    out: Tensor | None = None
    for first in range(0, n, batch_size):
        last = min(first + batch_size, n)
        xb = xt[first:last].to(device=device, dtype=dtype)
        sb = None if st is None else _static_rows(st, first, last).to(device=device, dtype=dtype)
        if seed is not None:
            torch.manual_seed(_batch_seed(seed, first))
        y = _finish(net(xb, sb, offset), affine)
        if out is None:  # written batch by batch: no concatenation of the whole output
            out = torch.empty((n, *y.shape[1:]), dtype=torch.float32)
        out[first:last].copy_(y)
    assert out is not None  # n >= 1 (checked by _as_input)
    return out


def _tiled(
    net: nn.Module,
    xt: Tensor,
    st: Tensor | None,
    base: tuple[int, int] | None,
    *,
    tile: tuple[int, int] | None,
    halo: tuple[int, int],
    periodic: bool,
    batch_size: int,
    seed: int | None,
    device: torch.device,
    dtype: torch.dtype,
    localcon: bool,
    affine: tuple[Tensor, Tensor] | None,
) -> Tensor:
    scale = _scale(net, "tiled_forward")
    n = int(xt.shape[0])
    h, w = int(xt.shape[-2]), int(xt.shape[-1])
    align = tile_alignment(net)
    windows = _windows((h, w), tile, halo, align, periodic)
    # the number of levels of every UNet: that of the untiled reference (the single
    # window of tile=None, with its halo along x when periodic)
    ref_w = w + 2 * halo[1] if periodic else w
    levels = [(u, u.levels(h * scale, ref_w * scale)) for u in _unets(net)]
    single = len(windows) == 1

    samples = min(batch_size, n)
    grouped = not (localcon or has_monte_carlo_dropout(net))
    per_forward = max(1, batch_size // samples) if grouped else 1
    by_shape: dict[tuple[int, int], list[_Window]] = {}
    for win in windows:
        by_shape.setdefault(win.shape, []).append(win)
    groups = [
        ws[i : i + per_forward] for ws in by_shape.values() for i in range(0, len(ws), per_forward)
    ]
    oy, ox = base if base is not None else (0, 0)

    out: Tensor | None = None
    for first in range(0, n, samples):
        last = min(first + samples, n)
        nb = last - first
        means = _Means(nb)
        while True:
            finished = stopped = 0
            for group in groups:
                wh, ww = group[0].shape
                hr = (wh * scale, ww * scale)
                padded: dict[int, tuple[int, int]] = {}
                for unet, lv in levels:
                    step = 2**lv
                    size = (_round_up(hr[0], step), _round_up(hr[1], step))
                    for m in unet.modules():
                        if isinstance(m, ChannelAttention):
                            padded[id(m)] = size
                xb = torch.cat([_take(xt[first:last], g.y, g.x, w) for g in group])
                xb = xb.to(device=device, dtype=dtype)
                sb = None
                if st is not None:
                    sb = torch.cat(
                        [
                            _take(
                                _static_rows(st, first, last),
                                (g.y[0] * scale, g.y[1] * scale),
                                (g.x[0] * scale, g.x[1] * scale),
                                w * scale,
                            )
                            for g in group
                        ]
                    ).to(device=device, dtype=dtype)
                rows = torch.arange(nb, device=device).repeat(len(group))
                cores = torch.tensor(
                    [g.core_hr(scale) for g in group for _ in range(nb)],
                    dtype=torch.int64,
                    device=device,
                )
                hook = _Hook(means, rows, cores, hr, padded, immediate=single)
                off = (oy + group[0].y[0] * scale, ox + group[0].x[0] * scale)
                if seed is not None:
                    torch.manual_seed(_batch_seed(seed, first))
                try:
                    with contextlib.ExitStack() as stack:
                        for unet, lv in levels:
                            stack.enter_context(unet.fixed_levels(lv))
                        stack.enter_context(attention_mean_hook(hook))
                        y = net(xb, sb, off if localcon else base)
                except _StopPass:
                    stopped += 1
                    continue
                finished += 1
                y = _finish(y, affine).to("cpu")
                if out is None:
                    out = torch.empty(n, *y.shape[1:-2], h * scale, w * scale)
                for k, g in enumerate(group):
                    (cy0, cy1), (cx0, cx1) = g.core_y, g.core_x
                    dy, dx = (cy0 - g.y[0]) * scale, (cx0 - g.x[0]) * scale
                    ch, cw = (cy1 - cy0) * scale, (cx1 - cx0) * scale
                    out[first:last, ..., cy0 * scale : cy1 * scale, cx0 * scale : cx1 * scale] = y[
                        k * nb : (k + 1) * nb, ..., dy : dy + ch, dx : dx + cw
                    ]
            if finished and stopped:
                raise ConfigError(
                    "tiled_forward: the windows of one pass called different numbers of "
                    "channel attention layers, so their means cannot be matched. Allowed: "
                    "networks that run the same layers whatever the size of their input. "
                    "Fix: run this network with tile=None and periodic=False."
                )
            if finished:
                break
            means.close_pass()
    assert out is not None  # at least one window ran to the end
    return out


# --------------------------------------------------------------------------- receptive field

_RF_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[int | None, tuple[int, int]]] = (
    weakref.WeakKeyDictionary()
)


def receptive_field(net: nn.Module, *, time_window: int | None = None) -> tuple[int, int]:
    """A conservative radius ``(ry, rx)`` of the network's local receptive field, in
    low-resolution pixels.

    An input cell (or high-resolution static cell) farther than ``ry`` rows or ``rx``
    columns from an output cell's low-resolution cell does not influence it, once every
    channel attention is frozen to a constant (:func:`frozen_attention`; their global
    means are handled exactly by :func:`tiled_forward`). It is the default halo of
    :func:`tiled_forward`.

    It is measured, not derived from the architecture, so it holds for any registered
    backbone and upsampling, with static fields, ``localcon`` and spatio-temporal
    networks: a float64 copy of ``net`` with fresh random weights (so a zero-initialised
    or trained-to-zero layer hides nothing), dropout off and attention frozen, is run
    on random inputs shaped as strips along each axis; the support of the gradient of
    one output cell (several cells, one per residue modulo :func:`tile_alignment`, for
    a UNet, which runs with all ``n_blocks`` levels) gives the radius, and the strip is
    doubled until the support stays away from its ends. The result adds a margin of one
    pixel (and of :func:`tile_alignment` for a UNet) and is rounded up to a multiple
    of :func:`tile_alignment`. It is cached per network and ``time_window``.

    Parameters
    ----------
    net : DownscalingNet or SpatioTemporalNet
    time_window : int, optional
        For spatio-temporal networks: the number of frames of the sequences it will
        run on (the receptive field of a ConvLSTM grows with the sequence); None is
        ``net.config.time_window``. Ignored for spatial networks.

    Returns
    -------
    (int, int)
        ``(ry, rx)``.

    Raises
    ------
    ConfigError
        ``net`` is not a downscaling network, or ``time_window`` is not an integer >= 1.

    Examples
    --------
    >>> from xr_dl4ds.models import create_model
    >>> from xr_dl4ds.models.tiling import receptive_field
    >>> receptive_field(create_model("convnet", scale=2, n_filters=4, n_blocks=1))
    (8, 8)
    """
    scale = _scale(net, "receptive_field")
    frames: int | None = None
    if isinstance(net, SpatioTemporalNet):
        frames = net.config.time_window if time_window is None else time_window
        if not _is_int(frames) or int(frames) < 1:
            raise ConfigError(
                f"receptive_field: invalid time_window={time_window!r}. Allowed: None (the "
                "model's time_window) or an integer >= 1, the length of the sequences. "
                "Fix: pass e.g. time_window=x.shape[1]."
            )
        frames = int(frames)
    cache = _RF_CACHE.setdefault(net, {})
    if frames not in cache:
        align = tile_alignment(net)
        radius = _measure(net, scale, frames, align)
        margin = 1 + (align if align > 1 else 0)
        cache[frames] = (
            _round_up(radius[0] + margin, align),
            _round_up(radius[1] + margin, align),
        )
    return cache[frames]


# pointwise activations, replaced by the identity in the probe of receptive_field: they
# spread nothing in space, and a ReLU that is off for one input hides a path
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
)


def _probe_copy(net: nn.Module, device: torch.device) -> nn.Module:
    """A float64 copy of ``net`` in eval mode with random non-zero weights, the identity
    for its activation modules and no dropout."""
    probe = copy.deepcopy(net).to(device=device, dtype=torch.float64).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            size = torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5
            sign = torch.randint(0, 2, p.shape, generator=gen).to(torch.float64) * 2 - 1
            p.copy_((size * sign / math.sqrt(fan_in)).to(p.device))
        for name, m in list(probe.named_modules()):
            if name and isinstance(m, _POINTWISE):
                parent, _, child = name.rpartition(".")
                setattr(probe.get_submodule(parent), child, nn.Identity())
        for m in probe.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
            if isinstance(getattr(m, "rate", None), float):
                setattr(m, "rate", 0.0)  # noqa: B010  (GaussianDropout, SpatialDropout)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return probe


def _widen_localcon(probe: nn.Module, grid: tuple[int, int]) -> None:
    """Give the per-pixel layers of the probe random weights on a grid of ``grid``
    (a per-pixel layer spreads nothing in space, whatever its weights)."""
    gen = torch.Generator().manual_seed(1)
    for m in probe.modules():
        if isinstance(m, LocallyConnected1x1):
            device = m.weight.device
            shape = (m.out_channels, m.in_channels, *grid)
            weight = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5
            bias = torch.rand((m.out_channels, *grid), generator=gen, dtype=torch.float64)
            m.weight = nn.Parameter(weight.to(device))
            m.bias = nn.Parameter(bias.to(device))
            m.grid_shape = grid


def _twin(net: nn.Module) -> nn.Module:
    """A narrow network with the spatial structure of ``net``, to probe cheaply.

    The kernels, poolings, upsamplings and levels of the built-in backbones and
    upsamplings do not depend on the widths, so a copy built with ``n_filters=2`` and
    ``width_cap=8`` has the receptive field of ``net``. Other networks (plug-in
    backbones or upsamplings) are probed as they are.
    """
    from xr_dl4ds.models.net import DownscalingNet

    config = getattr(net, "config", None)
    if not isinstance(net, DownscalingNet | SpatioTemporalNet) or config is None:
        return net
    parts = [getattr(net, "backbone", None), getattr(net, "upsampling", None)]
    if not all(type(p).__module__.startswith("xr_dl4ds.models.") for p in parts):
        return net
    narrow = dataclasses.replace(
        config, n_filters=min(config.n_filters, 2), width_cap=min(config.width_cap, 8)
    )
    with torch.random.fork_rng(devices=[]):  # its initialisation draws from the generator
        return type(net)(narrow)


def _measure(net: nn.Module, scale: int, frames: int | None, align: int) -> tuple[int, int]:
    device, _ = _device_dtype(net)
    if device.type == "mps":  # no float64 there
        device = torch.device("cpu")
    probe = _probe_copy(_twin(net), device)
    config: Any = getattr(net, "config", None)
    channels = (int(getattr(config, "in_channels", 1)), int(getattr(config, "static_channels", 0)))
    unets = _unets(probe)
    width = max(3, align)  # the short side of the strips
    radius = []
    for axis in (0, 1):
        length, thorough = max(16, 4 * align), False
        while True:
            size = (length, width) if axis == 0 else (width, length)
            _widen_localcon(probe, (size[0] * scale, size[1] * scale))
            r, touches = _probe_axis(
                probe,
                unets,
                size,
                axis,
                scale=scale,
                frames=frames,
                channels=channels,
                align=align,
                thorough=thorough,
                device=device,
            )
            if not touches and thorough:
                break
            if touches:
                if length >= _MAX_PROBE:
                    raise ConfigError(
                        f"receptive_field: the receptive field of {type(net).__name__} "
                        f"along {'yx'[axis]} exceeds {_MAX_PROBE} low-resolution pixels. "
                        "Fix: pass halo= explicitly to tiled_forward."
                    )
                length *= 2
            thorough = thorough or not touches
        radius.append(r)
    return (radius[0], radius[1])


def _probe_axis(
    probe: nn.Module,
    unets: list[UNetBackbone],
    size: tuple[int, int],
    axis: int,
    *,
    scale: int,
    frames: int | None,
    channels: tuple[int, int],
    align: int,
    thorough: bool,
    device: torch.device,
) -> tuple[int, bool]:
    """Radius of the gradient support along ``axis`` on a probe of ``size``, and whether
    the support reached an end of the probe.

    A quick probe (``thorough=False``, to grow the strip) takes one input and one
    output cell; a thorough one two random inputs and the cells at the residues
    ``0, align // 2, align - 1`` (modulo ``align``) from a multiple of ``align`` near
    the middle of the strip.
    """
    in_channels, static_channels = channels
    gen = torch.Generator().manual_seed(2)
    lead = (1, frames) if frames is not None else (1,)
    length = size[axis]
    center = (length // 2 // align) * align
    residues = sorted({0, align // 2, align - 1}) if thorough else [0]
    other = size[1 - axis] // 2
    radius, touches = 0, False
    for _ in range(2 if thorough else 1):  # a max-pool may hide a path for one input
        x = torch.randn(*lead, in_channels, *size, generator=gen, dtype=torch.float64)
        x = x.to(device).requires_grad_(True)
        inputs = [x]
        static = None
        if static_channels:
            hr = (size[0] * scale, size[1] * scale)
            static = torch.randn(1, static_channels, *hr, generator=gen, dtype=torch.float64)
            static = static.to(device).requires_grad_(True)
            inputs.append(static)
        with torch.enable_grad(), contextlib.ExitStack() as stack:
            stack.enter_context(frozen_attention())
            for unet in unets:
                stack.enter_context(unet.fixed_levels(unet.n_blocks))
            out = probe(x, static, None)
            for res in residues:
                c = center + res
                cell = (c, other) if axis == 0 else (other, c)
                seed = torch.zeros_like(out)
                block = seed[..., cell[0] * scale : (cell[0] + 1) * scale, :]
                block = block[..., cell[1] * scale : (cell[1] + 1) * scale]
                block.copy_(torch.randn(block.shape, generator=gen, dtype=torch.float64))
                grads = torch.autograd.grad(out, inputs, seed, retain_graph=True)
                maps = [grads[0].abs().reshape(-1, *size).sum(0) > 0]
                if static is not None:
                    maps.append(_hr_support(grads[1], scale))
                for hit in maps:
                    where = torch.nonzero(hit.any(dim=1 - axis))[:, 0]
                    if where.numel() == 0:
                        continue
                    radius = max(radius, int((where - c).abs().max()))
                    touches = touches or int(where.min()) == 0 or int(where.max()) == length - 1
    return radius, touches
