"""Base classes of the registered parts of a :class:`~xr_dl4ds.models.DownscalingNet`.

A new backbone is one module with one class deriving from :class:`Backbone`, decorated
with :func:`~xr_dl4ds.models.register_backbone`; a new upsampling method likewise derives
from :class:`Upsampling` and is decorated with :func:`~xr_dl4ds.models.register_upsampling`.
The network builds them through their :meth:`from_config` class methods, which a subclass
overrides when its constructor takes other arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from xr_dl4ds.models.config import ModelConfig

__all__ = ["Backbone", "Upsampling"]


class Backbone(nn.Module):
    """A spatial feature extractor, size-preserving.

    Subclasses map ``(N, in_channels, h, w)`` to ``(N, out_channels, h, w)`` for any
    ``h, w >= 1`` and set ``out_channels`` in their constructor. The backbone works on the
    low-resolution grid, or on the high-resolution grid after a pre-upsampling
    (:attr:`Upsampling.is_pre`, e.g. ``"pin"``).

    Attributes
    ----------
    out_channels : int
        Width of the output, read by the upsampling and the output module.
    """

    out_channels: int

    @staticmethod
    def config_options(config: ModelConfig) -> dict[str, Any]:
        """The keyword options every backbone constructor takes, read from ``config``:
        ``n_filters``, ``n_blocks``, ``normalization``, ``activation``, ``attention``,
        ``dropout_rate`` and ``dropout_variant``."""
        return {
            "n_filters": config.n_filters,
            "n_blocks": config.n_blocks,
            "normalization": config.normalization,
            "activation": config.activation,
            "attention": config.attention,
            "dropout_rate": config.dropout_rate,
            "dropout_variant": config.dropout_variant,
        }

    @classmethod
    def from_config(cls, config: ModelConfig) -> Backbone:
        """Build the backbone from a :class:`~xr_dl4ds.models.ModelConfig`.

        The default calls ``cls(config.in_channels, **Backbone.config_options(config))``;
        override it when the constructor takes other options.
        """
        return cls(config.in_channels, **cls.config_options(config))


class Upsampling(nn.Module):
    """An upsampling by an integer ``scale``, before or after the backbone.

    Subclasses map ``(N, in_channels, h, w)`` to ``(N, out_channels, h*scale, w*scale)``
    and set ``out_channels`` and ``scale`` in their constructor.

    The class attribute :attr:`is_pre` says where the network applies it:

    * ``False`` (post-upsampling, the default: ``"spc"``, ``"rc"``, ``"dc"``): after the
      backbone, on its low-resolution features;
    * ``True`` (pre-upsampling: ``"pin"``): on the network input, before the backbone,
      which then runs on the high-resolution grid; it keeps the width
      (``out_channels == in_channels``).

    Attributes
    ----------
    is_pre : bool
        Class attribute: applied before the backbone (True) or after it (False).
    out_channels : int
        Width of the output.
    scale : int
        The scale factor.
    """

    is_pre: bool = False
    out_channels: int
    scale: int

    @classmethod
    def from_config(cls, in_channels: int, config: ModelConfig) -> Upsampling:
        """Build the upsampling for an input of width ``in_channels``.

        ``in_channels`` is the backbone's width for a post-upsampling and
        ``config.in_channels`` for a pre-upsampling. The default keeps the width, as
        DL4DS does: ``cls(in_channels, in_channels, config.scale)``.
        """
        return cls(in_channels, in_channels, config.scale)
