"""The ``"unet"`` backbone (DL4DS ``unet_pin``, §2.2): an encoder-decoder at high resolution.

UNet works only with ``pin`` pre-upsampling: the network interpolates the coarse input
onto the fine grid and the UNet refines it there. The backbone itself is
resolution-agnostic: ``(N, C_in, H, W) -> (N, out_channels, H, W)`` for any ``H, W >= 1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import ConvBlock, conv3x3, init_conv_
from xr_dl4ds.models.config import DECODER_UPSAMPLINGS, INTERPOLATIONS
from xr_dl4ds.models.dropout import make_dropout
from xr_dl4ds.models.registry import register_backbone

if TYPE_CHECKING:
    from xr_dl4ds.models.config import ModelConfig

__all__ = ["DecoderUpsampling", "UNetBackbone", "unet_levels"]


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"invalid {name}={value!r}. Allowed: an integer >= {minimum}. "
            f"Fix: pass e.g. {name}={max(minimum, 1)}."
        )
    return value


def unet_levels(height: int, width: int, n_blocks: int) -> int:
    """Number of 2x2 max-poolings the UNet applies to an ``height`` x ``width`` input.

    The largest ``L <= n_blocks`` for which the coarsest level of the padded input
    still has at least 2 pixels along its smallest side. The input is padded to a
    multiple of ``2**L``, so the coarsest level has ``ceil(m / 2**L)`` pixels along
    ``m = min(height, width)``, and the rule is ``L = min(n_blocks, L_max)`` with
    ``L_max`` the largest integer such that ``m > 2**L_max`` (0 when ``m <= 2``).

    Parameters
    ----------
    height, width : int
        Size of the input, ``>= 1``.
    n_blocks : int
        Number of encoder levels of the network, ``>= 1``.

    Returns
    -------
    int
        ``L`` in ``[0, n_blocks]``; all levels pool when ``min(height, width) >
        2**n_blocks``.

    Raises
    ------
    ConfigError
        A size or ``n_blocks`` is not a positive integer.

    Examples
    --------
    >>> from xr_dl4ds.models.unet import unet_levels
    >>> [unet_levels(m, m, 6) for m in (1, 2, 3, 4, 5, 8, 9, 16, 17, 64, 65, 1000)]
    [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 6]
    >>> unet_levels(33, 17, 6)  # 17 -> padded to 32, coarsest 2 after 4 poolings
    4
    """
    m = min(_positive_int("height", height, 1), _positive_int("width", width, 1))
    n_blocks = _positive_int("n_blocks", n_blocks, 1)
    levels = 0
    while levels < n_blocks and m > 2 ** (levels + 1):
        levels += 1
    return levels


# levels forced by UNetBackbone.fixed_levels, by id() of the backbone; a ContextVar, so
# that threads sharing one network do not see each other's setting
_FIXED_LEVELS: ContextVar[Mapping[int, int] | None] = ContextVar(
    "xr_dl4ds_unet_fixed_levels", default=None
)


class DecoderUpsampling(nn.Module):
    """The x2 upsampling of a UNet decoder level, to the size of its skip connection.

    * ``"rc"``: resize (``interpolation``, ``align_corners=False``), then a 3x3 conv;
    * ``"spc"``: a 3x3 conv to ``4 * out_channels`` channels, then ``pixel_shuffle(2)``
      (ICNR-initialised: the four sub-pixels of a channel start equal);
    * ``"dc"``: a 2x2 transposed convolution with stride 2.

    All three are linear. Borders are replicated (3x3 convs); the 2x2 stride-2
    transposed convolution needs no padding.

    ``forward(x, size)`` returns ``size``: twice the size of ``x`` below a pooling
    level. At a level that did not pool (see :class:`UNetBackbone`), ``size`` is the
    size of ``x``: ``"rc"`` then skips the resize (an exact identity) and ``"spc"`` /
    ``"dc"`` average their 2x2 output blocks, so the level keeps its parameters.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    mode : {"rc", "spc", "dc"}
        The upsampling method.
    interpolation : {"bilinear", "bicubic", "nearest"}, default "bilinear"
        Resize of ``"rc"``.

    Raises
    ------
    ConfigError
        ``mode`` or ``interpolation`` is unknown.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mode: str,
        *,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if mode not in DECODER_UPSAMPLINGS:
            raise ConfigError(
                f"DecoderUpsampling: unknown decoder_upsampling={mode!r}. Allowed: "
                f"{', '.join(repr(m) for m in DECODER_UPSAMPLINGS)}. Fix: pass one of these."
            )
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"DecoderUpsampling: unknown interpolation={interpolation!r}. Allowed: "
                f"{', '.join(repr(m) for m in INTERPOLATIONS)}. Fix: pass one of these."
            )
        self.mode = mode
        self.interpolation = interpolation
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.layer: nn.Module
        if mode == "rc":
            self.layer = conv3x3(in_channels, out_channels)
        elif mode == "spc":
            conv = conv3x3(in_channels, 4 * out_channels)
            with torch.no_grad():  # ICNR: one kernel per output channel, repeated x4
                base = init_conv_(nn.Conv2d(in_channels, out_channels, 3)).weight
                conv.weight.copy_(base.repeat_interleave(4, dim=0))
            self.layer = conv
        else:
            deconv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            nn.init.xavier_uniform_(deconv.weight)
            if deconv.bias is not None:
                nn.init.zeros_(deconv.bias)
            self.layer = deconv

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        size = (int(size[0]), int(size[1]))
        if self.mode == "rc":
            if tuple(x.shape[-2:]) != size:
                mode = self.interpolation
                x = F.interpolate(
                    x, size=size, mode=mode, align_corners=None if mode == "nearest" else False
                )
            return self.layer(x)
        y = self.layer(x)
        if self.mode == "spc":
            y = F.pixel_shuffle(y, 2)
        if tuple(y.shape[-2:]) != size:
            y = F.adaptive_avg_pool2d(y, size)
        return y

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (
            f", interpolation={self.interpolation!r}" if self.mode == "rc" else ""
        )


@register_backbone("unet", upsamplings=("pin",))
class UNetBackbone(Backbone):
    """Encoder-decoder (U-Net) backbone, registered as ``"unet"`` (with ``pin`` only).

    With ``f0 = n_filters``, ``N = n_blocks`` and ``w_j = min(f0 * 2**j, width_cap)``:

    1. encoder, ``j = 0..N-1``: ``s_j = ConvBlock(w_j)(x)`` (kept as the skip
       connection), then ``x = MaxPool2x2(s_j)``; dropout only in the deepest level
       ``j = N - 1``;
    2. bottleneck: ``x = ConvBlock(w_N)(x)``, without normalization and with dropout
       (DL4DS, after Isola et al.);
    3. decoder, ``j = N-1..0``: ``x = up(x)`` by 2 (``decoder_upsampling``, see
       :class:`DecoderUpsampling`) to ``w_j`` channels,
       ``x = ConvBlock(w_j)(concat[x, s_j])``;
    4. ``out = dropout(x)``, with ``w_0`` channels.

    **Any input size.** The number of poolings ``L`` is chosen per input by
    :func:`unet_levels`: ``L = min(N, L_max)`` with ``L_max`` the most halvings that
    leave at least 2 pixels along the smallest side of the coarsest level
    (:meth:`fixed_levels` imposes another ``L``). The input is padded after its last row
    and column (replicated borders) to a multiple of ``2**L`` and the output is cropped
    back. Levels ``j >= L`` run without pooling (and their decoder upsampling keeps the
    size, see :class:`DecoderUpsampling`), so every parameter is used whatever the size.
    Inputs with ``min(H, W) > 2**n_blocks`` pool at every level; train on patches at
    least that large so that inference on larger domains runs the same architecture.

    **Tiling.** Padding only after the input anchors the pooling grid at the first row
    and column: pixel ``i`` of level ``j`` covers input rows ``[i 2**j, (i+1) 2**j)``.
    A window of a larger field whose first row and column are multiples of ``2**L`` in
    that field therefore pools on the field's own grid, and with
    :meth:`fixed_levels` set to the field's ``L`` it computes, away from its cut
    borders, what the whole field computes (:mod:`xr_dl4ds.models.tiling`). The
    padded rows and columns count in the spatial mean of the channel attention, as any
    other pixel.

    Unlike DL4DS, the encoder dropout is applied (DL4DS gates it on a level index the
    loop never reaches: bug 4 of the reference report, §5.7), and odd sizes are padded
    by replication before the encoder instead of zero-padding the decoder features.

    Parameters
    ----------
    in_channels : int
        Channels of the (high-resolution) input.
    n_filters : int, default 8
        ``f0``, the width of the first level and of the output.
    n_blocks : int, default 6
        ``N``, the number of encoder (and decoder) levels.
    normalization : {None, "bn", "ln"}, default None
        Normalization in the encoder and decoder blocks.
    activation : str, default "relu"
        Hidden activation.
    attention : bool, default False
        Channel attention at the end of the encoder and decoder blocks.
    dropout_rate : float, default 0.0
        Dropout in the deepest encoder level, in the bottleneck and on the output.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.
    decoder_upsampling : {"rc", "spc", "dc"}, default "rc"
        Upsampling of the decoder levels.
    rc_interpolation : {"bilinear", "bicubic", "nearest"}, default "bilinear"
        Resize of the ``"rc"`` decoder upsampling.
    width_cap : int, default 256
        Largest width of a level.

    Attributes
    ----------
    out_channels : int
        ``min(n_filters, width_cap)``.
    widths : list of int
        ``w_0 .. w_N`` (the last is the bottleneck's).

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.unet import UNetBackbone
    >>> net = UNetBackbone(2, n_filters=4, n_blocks=3)
    >>> net.widths
    [4, 8, 16, 32]
    >>> net.levels(33, 17)
    3
    >>> net.padding(33, 17)  # (left, right, top, bottom): to 40 x 24, after the field
    (0, 7, 0, 7)
    >>> net(torch.zeros(1, 2, 33, 17)).shape
    torch.Size([1, 4, 33, 17])
    >>> with net.fixed_levels(1):
    ...     net.levels(33, 17), net.padding(33, 17)
    (1, (0, 1, 0, 1))
    """

    def __init__(
        self,
        in_channels: int,
        *,
        n_filters: int = 8,
        n_blocks: int = 6,
        normalization: str | None = None,
        activation: str = "relu",
        attention: bool = False,
        dropout_rate: float = 0.0,
        dropout_variant: str | None = None,
        decoder_upsampling: str = "rc",
        rc_interpolation: str = "bilinear",
        width_cap: int = 256,
    ) -> None:
        super().__init__()
        f0 = _positive_int("n_filters", n_filters, 1)
        n = _positive_int("n_blocks", n_blocks, 1)
        cap = _positive_int("width_cap", width_cap, 1)
        self.in_channels = in_channels
        self.n_blocks = n
        self.widths = [min(f0 * 2**j, cap) for j in range(n + 1)]
        self.out_channels = self.widths[0]
        self.decoder_upsampling = decoder_upsampling
        self.encoder = nn.ModuleList(
            ConvBlock(
                in_channels if j == 0 else self.widths[j - 1],
                self.widths[j],
                normalization=normalization,
                dropout_rate=dropout_rate if j == n - 1 else 0.0,
                dropout_variant=dropout_variant,
                activation=activation,
                attention=attention,
            )
            for j in range(n)
        )
        self.bottleneck = ConvBlock(
            self.widths[n - 1],
            self.widths[n],
            activation=activation,
            normalization=None,
            dropout_rate=dropout_rate,
            dropout_variant=dropout_variant,
        )
        self.upsamplings = nn.ModuleList(
            DecoderUpsampling(
                self.widths[j + 1],
                self.widths[j],
                decoder_upsampling,
                interpolation=rc_interpolation,
            )
            for j in range(n)
        )
        self.decoder = nn.ModuleList(
            ConvBlock(
                2 * self.widths[j],
                self.widths[j],
                activation=activation,
                normalization=normalization,
                attention=attention,
            )
            for j in range(n)
        )
        self.dropout = make_dropout(dropout_rate, dropout_variant)

    @classmethod
    def from_config(cls, config: ModelConfig) -> UNetBackbone:
        """Build the backbone from a :class:`~xr_dl4ds.models.ModelConfig` (also reads
        ``decoder_upsampling``, ``rc_interpolation`` and ``width_cap``)."""
        return cls(
            config.in_channels,
            **cls.config_options(config),
            decoder_upsampling=config.decoder_upsampling,
            rc_interpolation=config.rc_interpolation,
            width_cap=config.width_cap,
        )

    def _valid_levels(self, levels: object) -> bool:
        return (
            isinstance(levels, int)
            and not isinstance(levels, bool)
            and 0 <= levels <= self.n_blocks
        )

    def levels(self, height: int, width: int) -> int:
        """Poolings applied to an ``height`` x ``width`` input: :func:`unet_levels`, or
        the number set by :meth:`fixed_levels` inside its ``with`` block."""
        fixed = _FIXED_LEVELS.get()
        if fixed is not None and id(self) in fixed:
            _positive_int("height", height, 1)
            _positive_int("width", width, 1)
            return fixed[id(self)]
        return unet_levels(height, width, self.n_blocks)

    @contextlib.contextmanager
    def fixed_levels(self, levels: int | None) -> Iterator[None]:
        """Run this backbone with ``levels`` poolings whatever its input size.

        Tiled inference uses it so that every window pools as often as the whole
        field (``levels = self.levels(H, W)`` of the field). A small input is then
        padded to a multiple of ``2**levels``. The setting is held in a
        :class:`contextvars.ContextVar`: it applies to the current thread only, and
        None restores the default (:func:`unet_levels`) in the block.

        Parameters
        ----------
        levels : int or None
            In ``[0, n_blocks]``.

        Raises
        ------
        ConfigError
            ``levels`` is not an integer in ``[0, n_blocks]``.
        """
        if levels is not None and not self._valid_levels(levels):
            raise ConfigError(
                f"UNetBackbone.fixed_levels: invalid levels={levels!r}. Allowed: None or "
                f"an integer in [0, n_blocks={self.n_blocks}]. Fix: pass "
                "self.levels(H, W) of the whole field."
            )
        fixed = dict(_FIXED_LEVELS.get() or {})
        if levels is None:
            fixed.pop(id(self), None)
        else:
            fixed[id(self)] = levels
        token = _FIXED_LEVELS.set(fixed)
        try:
            yield
        finally:
            _FIXED_LEVELS.reset(token)

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Replicated padding ``(left, right, top, bottom)`` of an input of this size.

        Brings both sides to the next multiple of ``2**levels(height, width)``, all of
        it after the last row and column (``left = top = 0``), so that the pooling grid
        starts at the first row and column whatever the size.
        """
        step = 2 ** self.levels(height, width)
        return (0, (-width) % step, 0, (-height) % step)

    def forward(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        pad = self.padding(h, w)
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        y = self.forward_aligned(x, self.levels(h, w))
        if any(pad):
            y = y[..., :h, :w]
        return y

    def forward_aligned(self, x: Tensor, levels: int) -> Tensor:
        """Run the network with ``levels`` poolings on an input whose height and width
        are multiples of ``2**levels`` (no padding, no crop).

        :meth:`forward` pads to such a size and calls this with
        ``levels = self.levels(H, W)`` of the unpadded size.

        Raises
        ------
        ConfigError
            ``levels`` is outside ``[0, n_blocks]`` or a side is not a multiple of
            ``2**levels``.
        """
        if not self._valid_levels(levels):
            raise ConfigError(
                f"UNetBackbone.forward_aligned: invalid levels={levels!r}. Allowed: an "
                f"integer in [0, n_blocks={self.n_blocks}]. Fix: use "
                "self.levels(height, width), or call forward()."
            )
        step = 2**levels
        if x.shape[-2] % step or x.shape[-1] % step:
            raise ConfigError(
                f"UNetBackbone.forward_aligned: the input size {tuple(x.shape[-2:])} is not "
                f"a multiple of 2**levels = {step}. Fix: call forward(), which pads by "
                "replication and crops back."
            )
        skips: list[Tensor] = []
        for j, block in enumerate(self.encoder):
            s = block(x)
            skips.append(s)
            x = F.max_pool2d(s, 2) if j < levels else s
        x = self.bottleneck(x)
        for j in reversed(range(self.n_blocks)):
            s = skips[j]
            x = self.upsamplings[j](x, (s.shape[-2], s.shape[-1]))
            x = self.decoder[j](torch.cat([x, s], dim=1))
        return self.dropout(x)

    def extra_repr(self) -> str:
        return (
            f"widths={self.widths}, decoder_upsampling={self.decoder_upsampling!r}, "
            f"levels=min({self.n_blocks}, halvings to >= 2 px)"
        )
