"""The ``"convnext"`` backbone (DL4DS §2.2): ConvNeXt blocks with a global skip."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import ConvNeXtBlock, TransitionBlock, conv_same
from xr_dl4ds.models.registry import register_backbone

if TYPE_CHECKING:
    pass

__all__ = ["ConvNeXtBackbone"]


@register_backbone("convnext")
class ConvNeXtBackbone(Backbone):
    """ConvNeXt backbone, registered as ``"convnext"``.

    With ``f0 = n_filters`` and ``N = n_blocks``:

    1. ``x = b = Conv7x7(f0)(input)`` (linear, replicated borders);
    2. for ``i = 1..N``: ``b = ConvNeXtBlock(f0 * i)(b)`` (depthwise 7x7, norm,
       pointwise ``4 f``, activation, pointwise ``f``, residual; a 1x1 conv on the skip
       when the width changes, i.e. for ``i > 1``);
    3. global skip: ``out = TransitionBlock(f_N)(x) + b`` (1x1 conv + activation).

    As in DL4DS there is no trailing convolution. Unlike DL4DS, the blocks work with
    ``normalization=None`` (bug 2 of the reference report, §5.7), and
    ``dropout_rate`` / ``attention`` act inside the blocks (DL4DS' ConvNeXt ignores
    them): dropout before the second pointwise conv, channel attention on the residual
    branch.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    n_filters : int, default 8
        ``f0``.
    n_blocks : int, default 6
        ``N``; the output has ``f0 * N`` channels.
    normalization : {None, "bn", "ln"}, default None
        Normalization after each depthwise convolution (``"ln"`` as in ConvNeXt).
    activation : str, default "relu"
        Hidden activation (ConvNeXt uses ``"gelu"``).
    attention : bool, default False
        Channel attention in every block.
    dropout_rate : float, default 0.0
        Dropout inside every block.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.

    Attributes
    ----------
    out_channels : int
        ``n_filters * n_blocks``.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.convnext import ConvNeXtBackbone
    >>> net = ConvNeXtBackbone(3, n_filters=4, n_blocks=2)
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
        self.head = conv_same(in_channels, f0, 7)
        self.blocks = nn.Sequential(
            *(
                ConvNeXtBlock(
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
        self.skip = TransitionBlock(f0, self.out_channels, activation=activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        return self.skip(x) + self.blocks(x)
