"""PyTorch networks for downscaling (no xarray here).

Importing this package imports torch and registers the built-in backbones
(``"resnet"``) and upsampling methods (``"spc"``).
"""

from __future__ import annotations

from xr_dl4ds.models import resnet as _resnet  # noqa: F401  (registers "resnet")
from xr_dl4ds.models import upsampling as _upsampling  # noqa: F401  (registers "spc")
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.models.net import DownscalingNet
from xr_dl4ds.models.registry import (
    create_model,
    list_backbones,
    list_upsamplings,
    register_backbone,
    register_upsampling,
)

__all__ = [
    "DownscalingNet",
    "ModelConfig",
    "create_model",
    "list_backbones",
    "list_upsamplings",
    "register_backbone",
    "register_upsampling",
]
