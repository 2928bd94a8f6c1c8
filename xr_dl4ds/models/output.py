"""The DL4DS output module (reference report §2.3), on the high-resolution grid."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.blocks import ConvBlock, TransitionBlock
from xr_dl4ds.models.config import ModelConfig

__all__ = ["OutputModule"]


class OutputModule(nn.Module):
    """Static branch, transition and final convolutions after the upsampling.

    1. Static branch (when ``config.static_channels > 0``): ``s = ConvBlock(f)(static)``
       (activation and normalization as configured, no dropout), then
       ``x = concat[x, s]``; ``f`` is the width of the upsampled features.
    2. ``x = TransitionBlock(f0)(x)`` (1x1 conv + activation).
    3. ``x = ConvBlock(f0, activation=None, attention=True)(x)`` with the configured
       normalization and dropout: two linear convs and channel attention.
    4. ``y = ConvBlock(out_channels)(x)``: two convs, unnormalised, each followed by
       ``output_activation`` when ``config.residual`` is False. When it is True the block
       is linear (it predicts a correction; the network applies ``output_activation``
       after adding the interpolation) and its last conv is zero-initialised, so a fresh
       network returns the interpolation exactly.

    Step 4 has no normalization, unlike DL4DS: a channels-first layer normalization of a
    single output channel is identically its shift, and the zero-initialised last conv
    needs no normalization after it.

    The Localized Conv Block of DL4DS (per-pixel weights) is left out: it would tie the
    network to one grid size.

    Parameters
    ----------
    in_channels : int
        Width ``f`` of the upsampled features.
    config : ModelConfig
        Gives ``static_channels``, ``n_filters``, ``out_channels``, ``activation``,
        ``normalization``, ``dropout_rate``, ``output_activation`` and ``residual``.
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        f0 = config.n_filters
        self.static_channels = config.static_channels
        self.static_branch: ConvBlock | None = None
        width = in_channels
        if config.static_channels > 0:
            self.static_branch = ConvBlock(
                config.static_channels,
                in_channels,
                activation=config.activation,
                normalization=config.normalization,
                dropout_rate=0.0,
                attention=False,
            )
            width += in_channels
        self.transition = TransitionBlock(width, f0, activation=config.activation)
        self.refine = ConvBlock(
            f0,
            f0,
            activation=None,
            normalization=config.normalization,
            dropout_rate=config.dropout_rate,
            attention=True,
        )
        self.final = ConvBlock(
            f0,
            config.out_channels,
            activation=None if config.residual else config.output_activation,
            normalization=None,
            dropout_rate=0.0,
            attention=False,
        )
        if config.residual:
            nn.init.zeros_(self.final.conv2.weight)
            if self.final.conv2.bias is not None:  # always: the block is unnormalised
                nn.init.zeros_(self.final.conv2.bias)

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        if self.static_branch is not None:
            if static is None:  # DownscalingNet checks this; kept for direct use
                raise ConfigError(
                    f"OutputModule: static_channels={self.static_channels} but no static "
                    "fields were given. Fix: pass static=."
                )
            x = torch.cat([x, self.static_branch(static)], dim=1)
        return self.final(self.refine(self.transition(x)))
