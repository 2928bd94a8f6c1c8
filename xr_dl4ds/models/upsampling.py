"""Learned upsampling methods (after the backbone, on low-resolution features).

* ``"spc"``: :class:`SubpixelConvolution` (ESPCN pixel shuffle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ScaleError
from xr_dl4ds.models.base import Upsampling
from xr_dl4ds.models.blocks import conv3x3, init_conv_
from xr_dl4ds.models.registry import register_upsampling

__all__ = ["SubpixelConvolution", "prime_factors"]


def prime_factors(n: int) -> list[int]:
    """The prime factors of ``n >= 2`` in ascending order (``12 -> [2, 2, 3]``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ScaleError(f"Invalid scale {n!r}. Allowed: an integer >= 2. Fix: pass e.g. scale=4.")
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
        """The prime factor of each stage, in order."""
        return [stage.factor for stage in self._stages()]

    @property
    def convs(self) -> list[nn.Conv2d]:
        """The convolution of each stage, in order."""
        return [stage.conv for stage in self._stages()]

    def _stages(self) -> list[_PixelShuffleStage]:
        return [stage for stage in self.stages if isinstance(stage, _PixelShuffleStage)]

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
