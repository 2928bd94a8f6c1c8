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

    Examples
    --------
    Every registered backbone keeps the spatial size and reports its width:

    >>> import torch
    >>> from xr_dl4ds.models import ModelConfig, list_backbones
    >>> from xr_dl4ds.models.registry import get_backbone
    >>> config = ModelConfig(in_channels=3, n_filters=4, n_blocks=2)
    >>> x = torch.zeros(1, 3, 5, 7)
    >>> for name in list_backbones():
    ...     backbone = get_backbone(name).from_config(config)
    ...     print(name, isinstance(backbone, Backbone), backbone.out_channels,
    ...           tuple(backbone(x).shape))
    convnet True 8 (1, 8, 5, 7)
    convnext True 8 (1, 8, 5, 7)
    densenet True 8 (1, 8, 5, 7)
    resnet True 8 (1, 8, 5, 7)
    unet True 4 (1, 4, 5, 7)

    A new backbone is written and registered as in
    :func:`~xr_dl4ds.models.register_backbone`.
    """

    out_channels: int

    @staticmethod
    def config_options(config: ModelConfig) -> dict[str, Any]:
        """The keyword options every backbone constructor takes, read from ``config``:
        ``n_filters``, ``n_blocks``, ``normalization``, ``activation``, ``attention``,
        ``dropout_rate`` and ``dropout_variant``.

        Examples
        --------
        >>> from xr_dl4ds.models import ModelConfig
        >>> Backbone.config_options(ModelConfig(n_filters=16, n_blocks=4, attention=True))
        {'n_filters': 16, 'n_blocks': 4, 'normalization': None, 'activation': 'relu',
         'attention': True, 'dropout_rate': 0.0, 'dropout_variant': None}
        """
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

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from xr_dl4ds.models import ModelConfig
        >>> from xr_dl4ds.models.resnet import ResNetBackbone
        >>> config = ModelConfig(in_channels=3, n_filters=4, n_blocks=2)
        >>> ResNetBackbone.from_config(config).out_channels  # n_filters * n_blocks
        8

        A backbone whose constructor takes other arguments overrides it:

        >>> class OneConv(Backbone):
        ...     def __init__(self, in_channels, width):
        ...         super().__init__()
        ...         self.out_channels = width
        ...         self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        ...     def forward(self, x):
        ...         return self.conv(x)
        ...     @classmethod
        ...     def from_config(cls, config):
        ...         return cls(config.in_channels, width=config.n_filters * config.n_blocks)
        >>> backbone = OneConv.from_config(config)
        >>> backbone(torch.zeros(1, 3, 5, 7)).shape
        torch.Size([1, 8, 5, 7])
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

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import ModelConfig, list_upsamplings
    >>> from xr_dl4ds.models.registry import get_upsampling
    >>> {name: get_upsampling(name).is_pre for name in list_upsamplings()}
    {'dc': False, 'pin': True, 'rc': False, 'spc': False}

    A post-upsampling of 8-channel backbone features by 3:

    >>> up = get_upsampling("rc").from_config(8, ModelConfig(scale=3))
    >>> isinstance(up, Upsampling), up.scale, up.out_channels
    (True, 3, 8)
    >>> up(torch.zeros(1, 8, 4, 5)).shape
    torch.Size([1, 8, 12, 15])

    A new method is written and registered as in
    :func:`~xr_dl4ds.models.register_upsampling`.
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

        Examples
        --------
        >>> from xr_dl4ds.models import ModelConfig
        >>> from xr_dl4ds.models.upsampling import PreInterpolation, SubpixelConvolution
        >>> config = ModelConfig(scale=4, in_channels=3, interpolation="bilinear")
        >>> spc = SubpixelConvolution.from_config(16, config)  # after a 16-wide backbone
        >>> spc.out_channels, spc.scale, spc.factors
        (16, 4, [2, 2])

        ``"pin"`` overrides it to take the interpolation of the configuration; it works
        on the network input, ``config.in_channels`` wide:

        >>> PreInterpolation.from_config(config.in_channels, config)
        PreInterpolation(3, scale=4, mode='bilinear')
        """
        return cls(in_channels, in_channels, config.scale)
