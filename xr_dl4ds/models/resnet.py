"""The ``"resnet"`` backbone (DL4DS §2.2, EDSR-style when unnormalised)."""

from __future__ import annotations

from torch import Tensor, nn

from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import (
    ResidualBlock,
    TransitionBlock,
    conv3x3,
    make_activation,
    make_dropout,
)
from xr_dl4ds.models.registry import register_backbone

__all__ = ["ResNetBackbone"]


@register_backbone("resnet")
class ResNetBackbone(Backbone):
    """Residual backbone on the low-resolution grid, registered as ``"resnet"``.

    With ``f0 = n_filters`` and ``N = n_blocks``:

    1. ``x = b = Conv3x3(f0)(input)`` (linear);
    2. for ``i = 1..N``: ``b = ResidualBlock(f0 * i)(b)`` (the width grows linearly; a
       1x1 projection on the skip when the width changes, i.e. for ``i > 1``);
    3. ``b = act(Conv3x3(f_N)(b))``, then dropout;
    4. global skip: ``out = TransitionBlock(f_N)(x) + b`` (1x1 conv + activation).

    Parameters
    ----------
    in_channels : int
        Channels of the low-resolution input.
    n_filters : int, default 8
        ``f0``.
    n_blocks : int, default 6
        ``N``; the output has ``f0 * N`` channels.
    normalization : {None, "bn", "ln"}, default None
        Normalization inside the residual blocks.
    activation : str, default "relu"
        Hidden activation (also of the trailing conv and of the global-skip transition).
    attention : bool, default False
        Channel attention in every residual block.
    dropout_rate : float, default 0.0
        Dropout inside the blocks and after the trailing conv.
    dropout_variant : str or None, default None
        See :func:`~xr_dl4ds.models.dropout.make_dropout` (``mc*`` variants stay on at
        inference).

    Attributes
    ----------
    out_channels : int
        ``n_filters * n_blocks``.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.resnet import ResNetBackbone
    >>> backbone = ResNetBackbone(2, n_filters=4, n_blocks=3)
    >>> [block.conv1.out_channels for block in backbone.blocks], backbone.out_channels
    ([4, 8, 12], 12)
    >>> backbone(torch.zeros(2, 2, 5, 7)).shape
    torch.Size([2, 12, 5, 7])

    It is the default backbone of :func:`~xr_dl4ds.models.create_model`, which passes
    the options of the configuration:

    >>> from xr_dl4ds.models import create_model
    >>> net = create_model(scale=2, n_filters=4, n_blocks=3, normalization="bn")
    >>> type(net.backbone).__name__, net.backbone.out_channels
    ('ResNetBackbone', 12)
    >>> type(net.backbone.blocks[0].norm1).__name__
    'BatchNorm2d'
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
                ResidualBlock(
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
        self.skip = TransitionBlock(f0, self.out_channels, activation=activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        b = self.tail(self.blocks(x))
        return self.skip(x) + b
