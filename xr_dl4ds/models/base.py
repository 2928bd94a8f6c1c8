"""Base classes of the registered parts of a :class:`~xr_dl4ds.models.DownscalingNet`.

A new backbone is one module with one class deriving from :class:`Backbone`, decorated
with :func:`~xr_dl4ds.models.register_backbone`; a new upsampling method likewise derives
from :class:`Upsampling` and is decorated with :func:`~xr_dl4ds.models.register_upsampling`.
The network builds them through their :meth:`from_config` class methods, which a subclass
overrides when its constructor takes other arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from xr_dl4ds.models.config import ModelConfig

__all__ = ["Backbone", "Upsampling"]


class Backbone(nn.Module):
    """A spatial feature extractor working on the low-resolution grid.

    Subclasses map ``(N, in_channels, h, w)`` to ``(N, out_channels, h, w)`` for any
    ``h, w >= 1`` and set ``out_channels`` in their constructor.

    Attributes
    ----------
    out_channels : int
        Width of the output, read by the upsampling and the output module.
    """

    out_channels: int

    @classmethod
    def from_config(cls, config: ModelConfig) -> Backbone:
        """Build the backbone from a :class:`~xr_dl4ds.models.ModelConfig`.

        The default calls ``cls(config.in_channels, n_filters=..., n_blocks=...,
        normalization=..., activation=..., attention=..., dropout_rate=...)``.
        """
        return cls(
            config.in_channels,
            n_filters=config.n_filters,
            n_blocks=config.n_blocks,
            normalization=config.normalization,
            activation=config.activation,
            attention=config.attention,
            dropout_rate=config.dropout_rate,
        )


class Upsampling(nn.Module):
    """A learned upsampling by an integer ``scale``, after the backbone.

    Subclasses map ``(N, in_channels, h, w)`` to ``(N, out_channels, h*scale, w*scale)``
    and set ``out_channels`` and ``scale`` in their constructor.

    Attributes
    ----------
    out_channels : int
        Width of the output.
    scale : int
        The scale factor.
    """

    out_channels: int
    scale: int

    @classmethod
    def from_config(cls, in_channels: int, config: ModelConfig) -> Upsampling:
        """Build the upsampling that follows a backbone of width ``in_channels``.

        The default keeps the width, as DL4DS does: ``cls(in_channels, in_channels,
        config.scale)``.
        """
        return cls(in_channels, in_channels, config.scale)
