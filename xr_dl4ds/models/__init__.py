"""PyTorch networks for downscaling (no xarray here).

Importing this package imports torch and registers the built-in backbones
(``"resnet"``) and upsampling methods (``"spc"``, ``"rc"``, ``"dc"``, ``"pin"``).
"""

from __future__ import annotations

from xr_dl4ds.models import convnet as _convnet  # noqa: F401  (registers "convnet")
from xr_dl4ds.models import convnext as _convnext  # noqa: F401  (registers "convnext")
from xr_dl4ds.models import densenet as _densenet  # noqa: F401  (registers "densenet")
from xr_dl4ds.models import resnet as _resnet  # noqa: F401  (registers "resnet")
from xr_dl4ds.models import unet as _unet  # noqa: F401  (registers "unet", pin only)
from xr_dl4ds.models import upsampling as _upsampling  # noqa: F401  (spc, rc, dc, pin)
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.models.discriminator import ResidualDiscriminator as ResidualDiscriminator
from xr_dl4ds.models.net import DownscalingNet
from xr_dl4ds.models.recurrent import SpatioTemporalNet, list_recurrent_backbones
from xr_dl4ds.models.registry import (
    create_model,
    list_backbones,
    list_upsampling,
    list_upsamplings,
    register_backbone,
    register_upsampling,
    valid_combinations,
)

__all__ = [
    "DownscalingNet",
    "ModelConfig",
    "SpatioTemporalNet",
    "create_model",
    "list_backbones",
    "list_recurrent_backbones",
    "list_upsampling",
    "list_upsamplings",
    "register_backbone",
    "register_upsampling",
    "valid_combinations",
]
