"""Upsampling methods (reference report §1.4), each by an integer ``scale >= 2``.

Post-upsampling, learned, after the backbone on low-resolution features
(``Upsampling.is_pre = False``):

* ``"spc"``: :class:`SubpixelConvolution` (ESPCN pixel shuffle);
* ``"rc"``: :class:`ResizeConvolution` (interpolate, then a 3x3 convolution);
* ``"dc"``: :class:`Deconvolution` (1x1 transition, then transposed convolutions).

Pre-upsampling, before the backbone (``Upsampling.is_pre = True``):

* ``"pin"``: :class:`PreInterpolation` (the input is interpolated to the fine grid and
  the backbone runs there; no learned upsampling layer).

Every method maps ``(N, C, h, w)`` to exactly ``(N, C', h * scale, w * scale)``; all
interpolations use ``align_corners=False`` (coarse cell ``i`` centred on fine index
``i * scale + (scale - 1) / 2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError, ScaleError
from xr_dl4ds.models.base import Upsampling
from xr_dl4ds.models.blocks import TransitionBlock, conv3x3, init_conv_
from xr_dl4ds.models.config import INTERPOLATIONS
from xr_dl4ds.models.registry import register_upsampling

if TYPE_CHECKING:
    from xr_dl4ds.models.config import ModelConfig

__all__ = [
    "Deconvolution",
    "PreInterpolation",
    "ResizeConvolution",
    "SubpixelConvolution",
    "deconvolution_geometry",
    "interpolate",
    "prime_factors",
]


def _check_scale(scale: object) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ScaleError(
            f"Invalid scale {scale!r}. Allowed: an integer >= 2. Fix: pass e.g. scale=4."
        )
    return scale


def _check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in INTERPOLATIONS:
        raise ConfigError(
            f"Invalid interpolation {mode!r}. Allowed: "
            f"{', '.join(repr(m) for m in INTERPOLATIONS)}. Fix: pass one of these names."
        )
    return mode


def interpolate(x: Tensor, scale: int, mode: str) -> Tensor:
    """Interpolate ``(N, C, h, w)`` to ``(N, C, h * scale, w * scale)``.

    ``mode`` is ``"bicubic"``, ``"bilinear"`` or ``"nearest"``; the first two use
    ``align_corners=False``. This is the interpolation of the residual skip of
    :class:`~xr_dl4ds.models.DownscalingNet`, of ``"pin"`` and of the resize step of
    ``"rc"``.
    """
    return F.interpolate(
        x,
        scale_factor=float(scale),
        mode=mode,
        align_corners=None if mode == "nearest" else False,
    )


def prime_factors(n: int) -> list[int]:
    """The prime factors of ``n >= 2`` in ascending order (``12 -> [2, 2, 3]``)."""
    n = _check_scale(n)
    factors: list[int] = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


class _PixelShuffleStage(nn.Module):
    """One stage: 3x3 conv to ``out_channels * r**2`` channels, then pixel shuffle by r."""

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = conv3x3(in_channels, out_channels * factor**2)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """ICNR initialisation: the ``r**2`` sub-pixels of a channel start with equal
        weights, so the fresh stage is a convolution followed by nearest-neighbour
        upsampling, with no checkerboard pattern."""
        r2 = self.factor**2
        out = self.conv.out_channels // r2
        base = init_conv_(nn.Conv2d(self.conv.in_channels, out, 3))
        self.conv.weight.copy_(base.weight.repeat_interleave(r2, dim=0))
        if self.conv.bias is not None:
            self.conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), self.factor)


@register_upsampling("spc")
class SubpixelConvolution(Upsampling):
    """Sub-pixel convolution (pixel shuffle, ESPCN), registered as ``"spc"``.

    The scale is split into prime stages (4 = 2·2, 6 = 2·3, 8 = 2·2·2, 10 = 2·5, a prime
    scale in one stage). Each stage is a 3x3 convolution (replicated borders, linear) to
    ``out_channels * r**2`` channels followed by :func:`torch.nn.functional.pixel_shuffle`
    by ``r``; every stage has its own convolution (DL4DS shares one across its x2 stages).
    Output channel ``c`` at fine pixel ``(r*i + a, r*j + b)`` is conv channel
    ``c*r**2 + a*r + b`` at coarse pixel ``(i, j)``.

    The convolutions are ICNR-initialised (all sub-pixels of a channel start equal).

    Parameters
    ----------
    in_channels : int
        Channels of the low-resolution features.
    out_channels : int
        Channels of the high-resolution output.
    scale : int
        Integer scale factor >= 2.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.upsampling import SubpixelConvolution
    >>> spc = SubpixelConvolution(8, 4, 6)
    >>> spc.factors
    [2, 3]
    >>> spc(torch.zeros(1, 8, 3, 5)).shape
    torch.Size([1, 4, 18, 30])
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int) -> None:
        super().__init__()
        factors = prime_factors(scale)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = scale
        self.stages = nn.ModuleList(
            _PixelShuffleStage(in_channels if k == 0 else out_channels, out_channels, r)
            for k, r in enumerate(factors)
        )

    @property
    def factors(self) -> list[int]:
        """The prime factor of each stage, in order.

        Examples
        --------
        >>> from xr_dl4ds.models.upsampling import SubpixelConvolution
        >>> {scale: SubpixelConvolution(8, 1, scale).factors for scale in (2, 4, 6, 7, 10)}
        {2: [2], 4: [2, 2], 6: [2, 3], 7: [7], 10: [2, 5]}
        """
        return [stage.factor for stage in self._stages()]

    @property
    def convs(self) -> list[nn.Conv2d]:
        """The convolution of each stage, in order.

        Examples
        --------
        By 6 from 8 to 4 channels: a x2 stage (8 to ``4 * 2**2`` channels), then a x3
        stage (4 to ``4 * 3**2``):

        >>> import torch
        >>> from xr_dl4ds.models.upsampling import SubpixelConvolution
        >>> spc = SubpixelConvolution(8, 4, 6)
        >>> [tuple(conv.weight.shape) for conv in spc.convs]
        [(16, 8, 3, 3), (36, 4, 3, 3)]

        ICNR initialisation: the 4 sub-pixels of output channel 0 (conv channels 0-3)
        start with the same weights, those of channel 1 with others:

        >>> w = spc.convs[0].weight
        >>> torch.equal(w[0], w[3]), torch.equal(w[0], w[4])
        (True, False)
        """
        return [stage.conv for stage in self._stages()]

    def _stages(self) -> list[_PixelShuffleStage]:
        return [stage for stage in self.stages if isinstance(stage, _PixelShuffleStage)]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


@register_upsampling("rc")
class ResizeConvolution(Upsampling):
    """Resize convolution, registered as ``"rc"``.

    One interpolation by ``scale`` (``mode``, ``align_corners=False``), then one 3x3
    convolution (replicated borders, linear) to ``out_channels``, as DL4DS's
    ``ResizeConvolutionBlock``: the resize is not factorised. Resizing first avoids the
    checkerboard artefacts of transposed convolutions.

    Parameters
    ----------
    in_channels : int
        Channels of the low-resolution features.
    out_channels : int
        Channels of the high-resolution output.
    scale : int
        Integer scale factor >= 2.
    mode : {"bilinear", "bicubic", "nearest"}, default "bilinear"
        The interpolation (``config.rc_interpolation``).

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.upsampling import ResizeConvolution
    >>> ResizeConvolution(8, 4, 3)(torch.zeros(1, 8, 5, 2)).shape
    torch.Size([1, 4, 15, 6])
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale: int, *, mode: str = "bilinear"
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = _check_scale(scale)
        self.mode = _check_mode(mode)
        self.conv = conv3x3(in_channels, out_channels)

    @classmethod
    def from_config(cls, in_channels: int, config: ModelConfig) -> ResizeConvolution:
        """``cls(in_channels, in_channels, config.scale, mode=config.rc_interpolation)``."""
        return cls(in_channels, in_channels, config.scale, mode=config.rc_interpolation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(interpolate(x, self.scale, self.mode))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode!r}"


#: Kernel size of the transposed convolutions of ``"dc"`` (DL4DS: 9x9).
DECONV_KERNEL = 9


def deconvolution_geometry(scale: int, kernel_size: int = DECONV_KERNEL) -> list[dict[str, int]]:
    """The transposed-convolution stages of ``"dc"`` for ``scale``.

    The stages follow DL4DS: stride 2 twice for x4, three times for x8, otherwise one
    stage of stride ``scale``. A :class:`torch.nn.ConvTranspose2d` of kernel ``k``,
    stride ``s``, padding ``p`` and output padding ``op`` maps ``h`` to
    ``(h - 1) * s - 2 * p + k + op``, which is ``h * s`` for every ``h`` exactly when
    ``2 * p - op = k - s``. Each stage takes

    * ``k = max(kernel_size, s)``: 9, or ``s`` when the stride exceeds 9 (a kernel shorter
      than the stride would leave fine pixels that no coarse pixel reaches);
    * ``p = ceil((k - s) / 2)`` and ``op = 2 * p - (k - s)`` (0 or 1, always < ``s``).

    For the scales 2..10 (``k, s, p, op`` per stage):

    ======  ==================================
    scale   stages
    ======  ==================================
    2       (9, 2, 4, 1)
    3       (9, 3, 3, 0)
    4       (9, 2, 4, 1) twice
    5       (9, 5, 2, 0)
    6       (9, 6, 2, 1)
    7       (9, 7, 1, 0)
    8       (9, 2, 4, 1) three times
    9       (9, 9, 0, 0)
    10      (10, 10, 0, 0)
    ======  ==================================

    Returns
    -------
    list of dict
        One dict per stage with keys ``kernel_size``, ``stride``, ``padding`` and
        ``output_padding``.

    Examples
    --------
    >>> from xr_dl4ds.models.upsampling import deconvolution_geometry
    >>> deconvolution_geometry(4)
    [{'kernel_size': 9, 'stride': 2, 'padding': 4, 'output_padding': 1}, {'kernel_size': 9, 'stride': 2, 'padding': 4, 'output_padding': 1}]
    """
    scale = _check_scale(scale)
    strides = {4: [2, 2], 8: [2, 2, 2]}.get(scale, [scale])
    stages = []
    for s in strides:
        k = max(kernel_size, s)
        p = (k - s + 1) // 2
        stages.append(
            {"kernel_size": k, "stride": s, "padding": p, "output_padding": 2 * p - (k - s)}
        )
    return stages


@register_upsampling("dc")
class Deconvolution(Upsampling):
    """Deconvolution (transposed convolution, FSRCNN-style), registered as ``"dc"``.

    As DL4DS's ``dc``: ``TransitionBlock(mid_channels)`` (1x1 conv + activation), then
    linear transposed convolutions without bias, 9x9, with the stages of
    :func:`deconvolution_geometry` (stride 2 twice for x4, three times for x8, otherwise
    one stage of stride ``scale``). The intermediate stages keep ``mid_channels``; the
    last one maps to ``out_channels``. Every stage has its own weights.

    Unlike DL4DS (reference report §5.7, bug 1: its x4 runs the x4 stages and then the
    one-stage branch, giving x16), the output is exactly ``(h * scale, w * scale)`` for
    every scale. The transposed convolutions pad with zeros (PyTorch has no other mode
    for them), so the outermost fine pixels receive fewer taps.

    Parameters
    ----------
    in_channels : int
        Channels of the low-resolution features.
    out_channels : int
        Channels of the high-resolution output.
    scale : int
        Integer scale factor >= 2.
    mid_channels : int, optional
        Width of the transition (DL4DS: ``n_filters``); defaults to ``in_channels``.
    activation : str, default "relu"
        Activation of the transition.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.upsampling import Deconvolution
    >>> Deconvolution(16, 16, 4, mid_channels=4)(torch.zeros(1, 16, 5, 3)).shape
    torch.Size([1, 16, 20, 12])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int,
        *,
        mid_channels: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        mid = in_channels if mid_channels is None else mid_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid
        self.scale = _check_scale(scale)
        self.transition = TransitionBlock(in_channels, mid, activation=activation)
        geometry = deconvolution_geometry(self.scale)
        widths = [mid] * len(geometry) + [out_channels]
        deconvs = [
            nn.ConvTranspose2d(
                c_in,
                c_out,
                g["kernel_size"],
                stride=g["stride"],
                padding=g["padding"],
                output_padding=g["output_padding"],
                bias=False,
            )
            for c_in, c_out, g in zip(widths[:-1], widths[1:], geometry, strict=True)
        ]
        for deconv in deconvs:  # Glorot-uniform, as Keras (and init_conv_)
            nn.init.xavier_uniform_(deconv.weight)
        self.deconvs = nn.ModuleList(deconvs)

    @classmethod
    def from_config(cls, in_channels: int, config: ModelConfig) -> Deconvolution:
        """``cls(in_channels, in_channels, config.scale, mid_channels=config.n_filters,
        activation=config.activation)``."""
        return cls(
            in_channels,
            in_channels,
            config.scale,
            mid_channels=config.n_filters,
            activation=config.activation,
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.transition(x)
        for deconv in self.deconvs:
            x = deconv(x)
        return x


@register_upsampling("pin")
class PreInterpolation(Upsampling):
    """Pre-upsampling by interpolation, registered as ``"pin"`` (``is_pre = True``).

    The whole low-resolution input (target, predictors and coarsened static fields) is
    interpolated to the fine grid (``mode``, ``align_corners=False``) before the
    backbone, which then runs at high resolution; there is no learned upsampling layer
    and no parameters. The width is unchanged.

    Parameters
    ----------
    in_channels : int
        Channels of the network input (also of the output).
    scale : int
        Integer scale factor >= 2.
    mode : {"bicubic", "bilinear", "nearest"}, default "bicubic"
        The interpolation (``config.interpolation``).

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.upsampling import PreInterpolation
    >>> PreInterpolation.is_pre
    True
    >>> PreInterpolation(3, 4)(torch.zeros(2, 3, 5, 3)).shape
    torch.Size([2, 3, 20, 12])
    """

    is_pre = True

    def __init__(self, in_channels: int, scale: int, *, mode: str = "bicubic") -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.scale = _check_scale(scale)
        self.mode = _check_mode(mode)

    @classmethod
    def from_config(cls, in_channels: int, config: ModelConfig) -> PreInterpolation:
        """``cls(in_channels, config.scale, mode=config.interpolation)``; ``in_channels``
        is ``config.in_channels``, the width of the network input."""
        return cls(in_channels, config.scale, mode=config.interpolation)

    def forward(self, x: Tensor) -> Tensor:
        return interpolate(x, self.scale, self.mode)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, scale={self.scale}, mode={self.mode!r}"
