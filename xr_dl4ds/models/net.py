"""The downscaling network: [pre-upsampling →] backbone [→ post-upsampling] → output
module (+ interpolation)."""

from __future__ import annotations

from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.base import Backbone, Upsampling
from xr_dl4ds.models.blocks import make_activation
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.models.output import Offset, OutputModule
from xr_dl4ds.models.registry import resolve
from xr_dl4ds.models.upsampling import interpolate

__all__ = ["DownscalingNet"]


def _shape(t: object) -> str:
    shape = getattr(t, "shape", None)
    return str(tuple(shape)) if shape is not None else type(t).__name__


class DownscalingNet(nn.Module):
    """A DL4DS-style downscaling network, fully convolutional (except with ``localcon``).

    The upsampling says where the scale changes (:attr:`Upsampling.is_pre
    <xr_dl4ds.models.base.Upsampling.is_pre>`):

    * post-upsampling (``"spc"``, ``"rc"``, ``"dc"``):
      ``y = output(upsampling(backbone(x)), static, offset)``, the backbone on the
      low-resolution grid;
    * pre-upsampling (``"pin"``): ``y = output(backbone(upsampling(x)), static, offset)``,
      the whole input interpolated to the fine grid first and the backbone on it.

    With ``config.residual`` (the default)
    ``y = output_activation(y + interpolate(x[:, :out_channels]))``: the network predicts
    a correction to an interpolation of the coarse target onto the fine grid. The last
    convolution starts at zero, so a fresh network returns the interpolation.

    The interpolation uses ``align_corners=False``: coarse cell ``i`` is centred on fine
    index ``i * scale + (scale - 1) / 2``, the convention of block-mean coarsening.

    Build it with :func:`~xr_dl4ds.models.create_model`, or directly from a
    :class:`~xr_dl4ds.models.ModelConfig`.

    Parameters
    ----------
    config : ModelConfig
        The full configuration, kept as ``config``.

    Attributes
    ----------
    config : ModelConfig
    backbone : Backbone
    upsampling : Upsampling
    output : OutputModule

    Raises
    ------
    RegistryError
        The backbone or upsampling name is unknown, or the pair is incompatible.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import DownscalingNet, ModelConfig
    >>> net = DownscalingNet(ModelConfig(scale=2, in_channels=2, n_filters=4, n_blocks=2))
    >>> type(net.backbone).__name__, type(net.upsampling).__name__, net.is_pre
    ('ResNetBackbone', 'SubpixelConvolution', False)

    The input stacks the coarse target (first) and a coarse predictor; the output is the
    target on the grid twice as fine. A fresh network returns the interpolation of the
    coarse target, which training then corrects:

    >>> x = torch.rand(3, 2, 6, 8)
    >>> y = net(x)
    >>> y.shape
    torch.Size([3, 1, 12, 16])
    >>> torch.allclose(y, net.interpolate(x))
    True

    High-resolution static fields (e.g. the orography) enter through ``static``:

    >>> net = DownscalingNet(ModelConfig(scale=2, in_channels=2, static_channels=1))
    >>> net(x, static=torch.rand(3, 1, 12, 16)).shape
    torch.Size([3, 1, 12, 16])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(
                f"DownscalingNet: expected a ModelConfig, received {type(config).__name__}. "
                "Fix: pass ModelConfig(...) or use xr_dl4ds.models.create_model(**options)."
            )
        self.config = config
        backbone_cls, upsampling_cls = resolve(config)
        self.backbone: Backbone
        self.upsampling: Upsampling
        if upsampling_cls.is_pre:
            self.upsampling = upsampling_cls.from_config(config.in_channels, config)
            if self.upsampling.out_channels != config.in_channels:
                raise ConfigError(
                    f"DownscalingNet: the pre-upsampling {config.upsampling!r} changes the "
                    f"width from in_channels={config.in_channels} to "
                    f"{self.upsampling.out_channels}. Allowed: a pre-upsampling "
                    "(is_pre=True) keeps the width, since the backbone is built for "
                    "in_channels. Fix: make its out_channels equal to its in_channels."
                )
            self.backbone = backbone_cls.from_config(config)
            width = self.backbone.out_channels
        else:
            self.backbone = backbone_cls.from_config(config)
            self.upsampling = upsampling_cls.from_config(self.backbone.out_channels, config)
            width = self.upsampling.out_channels
        self.output = OutputModule(width, config)
        self.output_activation = (
            make_activation(config.output_activation) if config.residual else nn.Identity()
        )

    @property
    def scale(self) -> int:
        """The scale factor: the output has ``scale`` times the rows and columns of the
        input (``config.scale``).

        Examples
        --------
        >>> import torch
        >>> from xr_dl4ds.models import create_model
        >>> net = create_model(scale=3, n_filters=4, n_blocks=1)
        >>> net.scale
        3
        >>> net(torch.zeros(1, 1, 4, 5)).shape[-2:] == (4 * net.scale, 5 * net.scale)
        True
        """
        return self.config.scale

    @property
    def is_pre(self) -> bool:
        """Whether the upsampling comes before the backbone (``"pin"``).

        A pre-upsampling network runs its backbone on the high-resolution grid (slower,
        ``scale**2`` times the cells); a post-upsampling one on the low-resolution grid.

        Examples
        --------
        >>> from xr_dl4ds.models import create_model
        >>> create_model(upsampling="pin", scale=4).is_pre
        True
        >>> create_model(upsampling="spc", scale=4).is_pre
        False
        """
        return bool(self.upsampling.is_pre)

    def interpolate(self, x: Tensor) -> Tensor:
        """Interpolate the coarse target (the first ``out_channels`` channels of ``x``).

        This is the baseline the residual network corrects (``config.interpolation``,
        ``align_corners=False``), returned whatever ``config.residual`` is.

        Parameters
        ----------
        x : Tensor
            ``(N, in_channels, h, w)`` low-resolution input.

        Returns
        -------
        Tensor
            ``(N, out_channels, h * scale, w * scale)``.

        Examples
        --------
        With ``interpolation="nearest"`` each coarse cell becomes a ``scale x scale``
        block; the second input channel (a predictor) is not interpolated:

        >>> import torch
        >>> from xr_dl4ds.models import create_model
        >>> net = create_model(scale=2, in_channels=2, interpolation="nearest")
        >>> x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[9.0, 9.0], [9.0, 9.0]]]])
        >>> net.interpolate(x)
        tensor([[[[0., 0., 1., 1.],
                  [0., 0., 1., 1.],
                  [2., 2., 3., 3.],
                  [2., 2., 3., 3.]]]])
        """
        coarse = x[:, : self.config.out_channels]
        return interpolate(coarse, self.config.scale, self.config.interpolation)

    def _check_inputs(self, x: Tensor, static: Tensor | None) -> None:
        cfg = self.config
        if getattr(x, "ndim", None) != 4 or x.shape[1] != cfg.in_channels:
            raise ConfigError(
                f"DownscalingNet: expected x of shape (N, in_channels={cfg.in_channels}, h, w), "
                f"received {_shape(x)}. Fix: stack the target variable(s) first, then the "
                f"coarse predictors and coarsened static fields, {cfg.in_channels} channels "
                "in all, or build the model with the matching in_channels."
            )
        n, _, h, w = x.shape
        expected = (n, cfg.static_channels, h * cfg.scale, w * cfg.scale)
        if cfg.static_channels == 0:
            if static is not None:
                raise ConfigError(
                    f"DownscalingNet: received static fields of shape {_shape(static)} but "
                    "the model has static_channels=0. Fix: drop static=, or build the model "
                    f"with static_channels={static.shape[1] if getattr(static, 'ndim', 0) > 1 else '...'}."
                )
            return
        if static is None:
            raise ConfigError(
                f"DownscalingNet: the model has static_channels={cfg.static_channels} but no "
                f"static fields were given. Expected static of shape {expected} (N, "
                "static_channels, h*scale, w*scale). Fix: pass static=."
            )
        if getattr(static, "ndim", None) != 4 or tuple(static.shape) != expected:
            raise ConfigError(
                f"DownscalingNet: expected static of shape {expected} (N, static_channels="
                f"{cfg.static_channels}, h*scale, w*scale) for x of shape {_shape(x)} and "
                f"scale={cfg.scale}, received {_shape(static)}. Fix: give the high-resolution "
                "static fields on the grid of the output, broadcast over the batch."
            )

    def forward(self, x: Tensor, static: Tensor | None = None, offset: Offset = None) -> Tensor:
        """Downscale ``x``.

        Parameters
        ----------
        x : Tensor
            ``(N, in_channels, h, w)`` low-resolution input, ``h, w >= 1``.
        static : Tensor, optional
            ``(N, static_channels, h * scale, w * scale)`` high-resolution static fields;
            required when ``static_channels > 0`` and refused otherwise.
        offset : pair of ints or Tensor, optional
            Only with ``config.localcon``: the high-resolution ``(row, col)`` of the
            output's top-left cell in the training grid (``config.grid_shape``), one pair
            for the batch or an integer tensor of shape ``(N, 2)``, one per sample.
            None means ``(0, 0)``. Ignored without ``localcon``.

        Returns
        -------
        Tensor
            ``(N, out_channels, h * scale, w * scale)``.

        Raises
        ------
        ConfigError
            ``x`` or ``static`` does not have the expected shape, or (with ``localcon``)
            ``offset`` is malformed or puts the output outside ``grid_shape``.
        """
        self._check_inputs(x, static)
        if self.upsampling.is_pre:
            features = self.backbone(self.upsampling(x))
        else:
            features = self.upsampling(self.backbone(x))
        y = self.output(features, static, offset)
        if self.config.residual:
            y = self.output_activation(y + self.interpolate(x))
        return y
