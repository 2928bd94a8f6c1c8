"""The ``"convnet"`` backbone (DL4DS §2.2): plain convolution blocks, no skips."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import ConvBlock, conv3x3, make_activation
from xr_dl4ds.models.dropout import make_dropout
from xr_dl4ds.models.registry import register_backbone

if TYPE_CHECKING:
    pass

__all__ = ["ConvNetBackbone"]


@register_backbone("convnet")
class ConvNetBackbone(Backbone):
    """Plain convolutional backbone, registered as ``"convnet"``.

    With ``f0 = n_filters`` and ``N = n_blocks``:

    1. ``b = Conv3x3(f0)(input)`` (linear);
    2. for ``i = 1..N``: ``b = ConvBlock(f0 * i)(b)`` (the width grows linearly);
    3. ``out = dropout(act(Conv3x3(f_N)(b)))``; there is no global skip.

    Fully convolutional and size-preserving, so it runs on the low-resolution grid
    (``spc``, ``rc``, ``dc``) as well as on the high-resolution one (``pin``).

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    n_filters : int, default 8
        ``f0``.
    n_blocks : int, default 6
        ``N``; the output has ``f0 * N`` channels.
    normalization : {None, "bn", "ln"}, default None
        Normalization inside the blocks.
    activation : str, default "relu"
        Hidden activation.
    attention : bool, default False
        Channel attention at the end of every block.
    dropout_rate : float, default 0.0
        Dropout before every convolution of the blocks and after the trailing conv.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.

    Attributes
    ----------
    out_channels : int
        ``n_filters * n_blocks``.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.convnet import ConvNetBackbone
    >>> net = ConvNetBackbone(3, n_filters=4, n_blocks=2)
    >>> net(torch.zeros(1, 3, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
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
    ) -> None:
        super().__init__()
        f0 = n_filters
        widths = [f0 * i for i in range(1, n_blocks + 1)]
        self.in_channels = in_channels
        self.out_channels = widths[-1]
        self.head = conv3x3(in_channels, f0)
        self.blocks = nn.Sequential(
            *(
                ConvBlock(
                    w_in,
                    w_out,
                    activation=activation,
                    normalization=normalization,
                    dropout_rate=dropout_rate,
                    dropout_variant=dropout_variant,
                    attention=attention,
                )
                for w_in, w_out in zip([f0, *widths[:-1]], widths, strict=True)
            )
        )
        self.tail = nn.Sequential(
            conv3x3(self.out_channels, self.out_channels),
            make_activation(activation),
            make_dropout(dropout_rate, dropout_variant),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.blocks(self.head(x)))
