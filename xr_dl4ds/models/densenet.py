"""The ``"densenet"`` backbone (DL4DS §2.2): pre-activation dense blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import DenseBlock, TransitionBlock, conv3x3, make_activation
from xr_dl4ds.models.dropout import make_dropout
from xr_dl4ds.models.registry import register_backbone

if TYPE_CHECKING:
    pass

__all__ = ["DenseNetBackbone"]


@register_backbone("densenet")
class DenseNetBackbone(Backbone):
    """Densely connected backbone, registered as ``"densenet"``.

    With ``f0 = n_filters`` and ``N = n_blocks``:

    1. ``x = b = Conv3x3(f0)(input)`` (linear);
    2. for ``i = 1..N``: ``b = DenseBlock(f0 * i)(b)`` (adds ``f0 * i`` channels to its
       input, through a pre-activated 1x1 bottleneck of ``4 f0 i`` channels and a 3x3
       conv), then ``b = TransitionBlock(c // 2)(b)`` (1x1 conv + activation) halves
       its ``c`` channels (rounded down);
    3. ``b = dropout(act(Conv3x3(f_N)(b)))``;
    4. global skip: ``out = TransitionBlock(f_N)(concat[x, b])``.

    For ``f0 = 8, N = 6`` the widths after the transitions are 8, 12, 18, 25, 32, 40,
    and the output has 48 channels. The dense blocks use their pre-activation (DL4DS'
    bug 3 is fixed, see :class:`~xr_dl4ds.models.blocks.DenseBlock`).

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    n_filters : int, default 8
        ``f0``.
    n_blocks : int, default 6
        ``N``; the output has ``f0 * N`` channels.
    normalization : {None, "bn", "ln"}, default None
        Normalization of the pre-activations inside the dense blocks.
    activation : str, default "relu"
        Hidden activation (also of the transitions and of the trailing conv).
    attention : bool, default False
        Channel attention on the new features of every dense block.
    dropout_rate : float, default 0.0
        Dropout before every convolution of the dense blocks and after the trailing conv.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.

    Attributes
    ----------
    out_channels : int
        ``n_filters * n_blocks``.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.densenet import DenseNetBackbone
    >>> net = DenseNetBackbone(3, n_filters=4, n_blocks=2)
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
        self.in_channels = in_channels
        self.out_channels = f0 * n_blocks
        self.head = conv3x3(in_channels, f0)
        layers: list[nn.Module] = []
        width = f0
        for i in range(1, n_blocks + 1):
            dense = DenseBlock(
                width,
                f0 * i,
                activation=activation,
                normalization=normalization,
                dropout_rate=dropout_rate,
                dropout_variant=dropout_variant,
                attention=attention,
            )
            half = max(1, dense.out_channels // 2)
            layers += [dense, TransitionBlock(dense.out_channels, half, activation=activation)]
            width = half
        self.blocks = nn.Sequential(*layers)
        self.tail = nn.Sequential(
            conv3x3(width, self.out_channels),
            make_activation(activation),
            make_dropout(dropout_rate, dropout_variant),
        )
        self.skip = TransitionBlock(
            f0 + self.out_channels, self.out_channels, activation=activation
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        b = self.tail(self.blocks(x))
        return self.skip(torch.cat([x, b], dim=1))
