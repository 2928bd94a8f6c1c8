"""The downscaling network: backbone → upsampling → output module (+ interpolation)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.base import Backbone, Upsampling
from xr_dl4ds.models.blocks import make_activation
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.models.output import OutputModule
from xr_dl4ds.models.registry import resolve

__all__ = ["DownscalingNet"]


def _shape(t: object) -> str:
    shape = getattr(t, "shape", None)
    return str(tuple(shape)) if shape is not None else type(t).__name__


class DownscalingNet(nn.Module):
    """A DL4DS-style post-upsampling network, fully convolutional.

    ``y = output(upsampling(backbone(x)), static)``, and with ``config.residual`` (the
    default) ``y = output_activation(y + interpolate(x[:, :out_channels]))``: the network
    predicts a correction to an interpolation of the coarse target onto the fine grid. The
    last convolution starts at zero, so a fresh network returns the interpolation.

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
        self.backbone: Backbone = backbone_cls.from_config(config)
        self.upsampling: Upsampling = upsampling_cls.from_config(self.backbone.out_channels, config)
        self.output = OutputModule(self.upsampling.out_channels, config)
        self.output_activation = (
            make_activation(config.output_activation) if config.residual else nn.Identity()
        )

    @property
    def scale(self) -> int:
        """The scale factor."""
        return self.config.scale

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
        """
        mode = self.config.interpolation
        coarse = x[:, : self.config.out_channels]
        return F.interpolate(
            coarse,
            scale_factor=float(self.config.scale),
            mode=mode,
            align_corners=None if mode == "nearest" else False,
        )

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

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        """Downscale ``x``.

        Parameters
        ----------
        x : Tensor
            ``(N, in_channels, h, w)`` low-resolution input, ``h, w >= 1``.
        static : Tensor, optional
            ``(N, static_channels, h * scale, w * scale)`` high-resolution static fields;
            required when ``static_channels > 0`` and refused otherwise.

        Returns
        -------
        Tensor
            ``(N, out_channels, h * scale, w * scale)``.

        Raises
        ------
        ConfigError
            ``x`` or ``static`` does not have the expected shape.
        """
        self._check_inputs(x, static)
        y = self.output(self.upsampling(self.backbone(x)), static)
        if self.config.residual:
            y = self.output_activation(y + self.interpolate(x))
        return y
