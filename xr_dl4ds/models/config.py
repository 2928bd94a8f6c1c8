"""The configuration of a downscaling network.

A :class:`ModelConfig` is a frozen, keyword-only dataclass holding every choice that
shapes a :class:`~xr_dl4ds.models.DownscalingNet`. It is saved next to the weights as a
plain dict (:meth:`ModelConfig.to_dict`) and read back with :meth:`ModelConfig.from_dict`,
so a saved model is rebuilt without executing code.

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

from xr_dl4ds.exceptions import ConfigError, ScaleError

__all__ = [
    "ACTIVATIONS",
    "DECODER_UPSAMPLINGS",
    "DROPOUT_VARIANTS",
    "FIT_DERIVED_FIELDS",
    "INTERPOLATIONS",
    "NORMALIZATIONS",
    "OUTPUT_ACTIVATIONS",
    "ModelConfig",
]

#: Hidden-layer activations (``activation=``).
ACTIVATIONS: tuple[str, ...] = ("relu", "elu", "gelu", "leaky_relu", "selu", "silu")
#: Activations allowed on the network output (``output_activation=``), besides ``None``.
OUTPUT_ACTIVATIONS: tuple[str, ...] = (*ACTIVATIONS, "sigmoid", "softplus", "tanh")
#: Normalization layers (``normalization=``), besides ``None``.
NORMALIZATIONS: tuple[str, ...] = ("bn", "ln")
#: Interpolations of the coarse target used by the residual skip (``interpolation=``).
INTERPOLATIONS: tuple[str, ...] = ("bicubic", "bilinear", "nearest")
#: Dropout variants (``dropout_variant=``); the ``mc*`` ones stay active at inference
#: (Monte-Carlo dropout), the others only act in training.
DROPOUT_VARIANTS: tuple[str, ...] = (
    "vanilla",
    "gaussian",
    "spatial",
    "mcdrop",
    "mcgaussiandrop",
    "mcspatialdrop",
)
#: Fields that :func:`xr_dl4ds.fit` derives from the data (or names as its own
#: parameters), so they are not ``**model_options`` of fit nor keys of a CLI config.
FIT_DERIVED_FIELDS: frozenset[str] = frozenset(
    {
        "backbone",
        "upsampling",
        "scale",
        "in_channels",
        "out_channels",
        "static_channels",
        "grid_shape",
    }
)
#: Upsampling used inside the UNet decoder (``decoder_upsampling=``), each by 2.
DECODER_UPSAMPLINGS: tuple[str, ...] = ("rc", "spc", "dc")


def _invalid(name: str, received: Any, allowed: str, fix: str) -> ConfigError:
    return ConfigError(f"ModelConfig: invalid {name}={received!r}. Allowed: {allowed}. Fix: {fix}.")


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _invalid(
            name, value, f"an integer >= {minimum}", f"pass an int, e.g. {name}={max(minimum, 1)}"
        )
    if value < minimum:
        raise _invalid(name, value, f"an integer >= {minimum}", f"pass {name}={minimum} or more")
    return int(value)


def _as_choice(name: str, value: Any, choices: tuple[str, ...], *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, str) and value in choices:
        return value
    allowed = ", ".join(repr(c) for c in choices)
    if optional:
        allowed = "None, " + allowed
    hint = ""
    if isinstance(value, str) and value.lower() in choices:
        hint = f" (names are lower case: {value.lower()!r})"
    raise _invalid(name, value, allowed, f"pass one of the allowed values{hint}")


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid(name, value, "True or False", f"pass {name}=True or {name}=False")
    return value


def _as_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(
            name,
            value,
            "a registered name (see xr_dl4ds.models.list_backbones / list_upsamplings)",
            f"pass the name as a string, e.g. {name}='resnet'"
            if name == "backbone"
            else f"pass the name as a string, e.g. {name}='spc'",
        )
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Every option that shapes a :class:`~xr_dl4ds.models.DownscalingNet`.

    The names of the backbone and of the upsampling are checked against the registries
    when the network is built (:func:`~xr_dl4ds.models.create_model`), so that backbones
    registered later by plug-ins can be named here.

    Parameters
    ----------
    backbone : str, default "resnet"
        Name of the spatial backbone, see :func:`~xr_dl4ds.models.list_backbones`.
    upsampling : str, default "spc"
        Name of the upsampling method, see :func:`~xr_dl4ds.models.list_upsamplings`.
    scale : int, default 4
        Integer scale factor between the low- and the high-resolution grids (>= 2);
        an integer-valued float such as ``4.0`` is stored as ``4``.
    in_channels : int, default 1
        Channels of the low-resolution input: the target variable(s) first, then the
        coarse predictors, then the coarsened static fields.
    out_channels : int, default 1
        Channels of the high-resolution output (the target variables).
    static_channels : int, default 0
        High-resolution static fields fed to the static branch of the output module.
    n_filters : int, default 8
        Width ``f0`` of the first convolution; block ``i`` of the backbone has ``f0 * i``
        channels.
    n_blocks : int, default 6
        Number of blocks ``N`` of the backbone.
    normalization : {None, "bn", "ln"}, default None
        ``"bn"`` is :class:`torch.nn.BatchNorm2d`; ``"ln"`` is a channels-first layer
        normalization (each pixel normalised over its channels, as Keras'
        ``LayerNormalization(axis=-1)`` in DL4DS).
    activation : {"relu", "elu", "gelu", "leaky_relu", "selu", "silu"}, default "relu"
        Activation of the hidden layers.
    attention : bool, default False
        Channel attention (squeeze-and-excitation) at the end of every backbone block.
    dropout_rate : float, default 0.0
        Dropout rate in ``[0, 1)`` of the backbone blocks and of the output module.
    output_activation : str or None, default None
        Activation of the network output: None (linear) or one of
        ``"relu", "elu", "gelu", "leaky_relu", "selu", "silu", "sigmoid", "softplus",
        "tanh"``. With ``residual=True`` it is applied after the interpolation is added,
        so it constrains the prediction itself (e.g. ``"relu"`` for precipitation).
    residual : bool, default True
        Predict a correction that is added to an interpolation of the coarse target
        (the first ``out_channels`` input channels) onto the high-resolution grid.
        Requires ``in_channels >= out_channels``.
    interpolation : {"bicubic", "bilinear", "nearest"}, default "bicubic"
        Interpolation used by the residual skip, and by ``pin`` pre-upsampling.
    dropout_variant : str or None, default None
        One of ``"vanilla", "gaussian", "spatial", "mcdrop", "mcgaussiandrop",
        "mcspatialdrop"`` (None means ``"vanilla"``). The ``mc*`` variants stay active at
        inference, so repeated predictions sample the model's uncertainty.
    rc_interpolation : {"bicubic", "bilinear", "nearest"}, default "bilinear"
        Interpolation of the resize step of ``rc`` (resize-convolution) upsampling.
    decoder_upsampling : {"rc", "spc", "dc"}, default "rc"
        How the UNet decoder upsamples by 2 at each level.
    width_cap : int, default 256
        Largest width of the UNet levels.
    localcon : bool, default False
        DL4DS's localized convolution block: per-pixel weights and biases that live on
        the high-resolution training grid (``grid_shape``); each patch uses the weights of
        its own position.
    grid_shape : (int, int) or None, default None
        ``(H, W)`` of the high-resolution training grid; required with ``localcon``.
    time_window : int or None, default None
        Spatio-temporal (recurrent, ConvLSTM) model over windows of this many time steps
        (>= 2); None for spatial models.

    Raises
    ------
    ConfigError
        An option has a wrong type or value.
    ScaleError
        ``scale`` is not an integer >= 2.

    Examples
    --------
    >>> from xr_dl4ds.models import ModelConfig
    >>> cfg = ModelConfig(scale=2, in_channels=3, static_channels=1)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    backbone: str = "resnet"
    upsampling: str = "spc"
    scale: int = 4
    in_channels: int = 1
    out_channels: int = 1
    static_channels: int = 0
    n_filters: int = 8
    n_blocks: int = 6
    normalization: str | None = None
    activation: str = "relu"
    attention: bool = False
    dropout_rate: float = 0.0
    output_activation: str | None = None
    residual: bool = True
    interpolation: str = "bicubic"
    dropout_variant: str | None = None
    rc_interpolation: str = "bilinear"
    decoder_upsampling: str = "rc"
    width_cap: int = 256
    localcon: bool = False
    grid_shape: tuple[int, int] | None = None
    time_window: int | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("backbone", _as_name("backbone", self.backbone))
        put("upsampling", _as_name("upsampling", self.upsampling))

        scale = self.scale
        # same rule as xr_dl4ds.grid.check_scale (which this torch-side module cannot
        # import without xarray): integer-valued numbers >= 2, 4.0 accepted as 4
        if (
            isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not float(scale).is_integer()
            or scale < 2
        ):
            raise ScaleError(
                f"ModelConfig: invalid scale={scale!r}. Allowed: an integer >= 2 "
                "(the ratio of high- to low-resolution grid spacing). Fix: pass an integer "
                "scale such as 2, 3 or 4; non-integer ratios need regridding first."
            )
        put("scale", int(scale))

        put("in_channels", _as_int("in_channels", self.in_channels, 1))
        put("out_channels", _as_int("out_channels", self.out_channels, 1))
        put("static_channels", _as_int("static_channels", self.static_channels, 0))
        put("n_filters", _as_int("n_filters", self.n_filters, 1))
        put("n_blocks", _as_int("n_blocks", self.n_blocks, 1))
        put(
            "normalization",
            _as_choice("normalization", self.normalization, NORMALIZATIONS, optional=True),
        )
        put("activation", _as_choice("activation", self.activation, ACTIVATIONS, optional=False))
        put(
            "output_activation",
            _as_choice(
                "output_activation", self.output_activation, OUTPUT_ACTIVATIONS, optional=True
            ),
        )
        put("attention", _as_bool("attention", self.attention))
        put("residual", _as_bool("residual", self.residual))
        put(
            "interpolation",
            _as_choice("interpolation", self.interpolation, INTERPOLATIONS, optional=False),
        )

        rate = self.dropout_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, numbers.Real)
            or not (0.0 <= float(rate) < 1.0)
        ):
            raise _invalid("dropout_rate", rate, "a float in [0, 1)", "pass e.g. dropout_rate=0.1")
        put("dropout_rate", float(rate))

        put(
            "dropout_variant",
            _as_choice("dropout_variant", self.dropout_variant, DROPOUT_VARIANTS, optional=True),
        )
        put(
            "rc_interpolation",
            _as_choice("rc_interpolation", self.rc_interpolation, INTERPOLATIONS, optional=False),
        )
        put(
            "decoder_upsampling",
            _as_choice(
                "decoder_upsampling", self.decoder_upsampling, DECODER_UPSAMPLINGS, optional=False
            ),
        )
        put("width_cap", _as_int("width_cap", self.width_cap, 1))
        put("localcon", _as_bool("localcon", self.localcon))
        if self.grid_shape is not None:
            gs = self.grid_shape
            if isinstance(gs, (str, bytes)) or not hasattr(gs, "__len__") or len(gs) != 2:
                raise _invalid(
                    "grid_shape",
                    gs,
                    "None or a pair of integers (H, W)",
                    "pass the high-resolution training grid size, e.g. grid_shape=(180, 360)",
                )
            put(
                "grid_shape",
                (_as_int("grid_shape[0]", gs[0], 1), _as_int("grid_shape[1]", gs[1], 1)),
            )
        if self.localcon and self.grid_shape is None:
            raise ConfigError(
                "ModelConfig: localcon=True needs grid_shape=(H, W), the size of the "
                "high-resolution training grid the per-pixel weights live on. Fix: pass "
                "grid_shape (fit() sets it for you)."
            )
        if self.time_window is not None:
            put("time_window", _as_int("time_window", self.time_window, 2))

        if self.residual and self.in_channels < self.out_channels:
            raise ConfigError(
                f"ModelConfig: residual=True needs the coarse target in the first "
                f"out_channels={self.out_channels} input channels, but in_channels="
                f"{self.in_channels}. Allowed: in_channels >= out_channels when "
                "residual=True. Fix: put the target variable(s) first in the input, "
                "or pass residual=False."
            )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a plain, JSON-serialisable dict.

        Returns
        -------
        dict
            One key per field; values are str, int, float, bool or None.

        Examples
        --------
        >>> import json
        >>> from xr_dl4ds.models import ModelConfig
        >>> d = ModelConfig(scale=2, localcon=True, grid_shape=(64, 96)).to_dict()
        >>> d["backbone"], d["scale"], d["grid_shape"]
        ('resnet', 2, [64, 96])
        >>> json.loads(json.dumps(d)) == d  # JSON-serialisable as it is
        True
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["grid_shape"] is not None:
            out["grid_shape"] = list(out["grid_shape"])
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build a configuration from a dict written by :meth:`to_dict`.

        Missing keys take their defaults; unknown keys are refused.

        Parameters
        ----------
        d : Mapping
            Field names to values.

        Returns
        -------
        ModelConfig

        Raises
        ------
        ConfigError
            ``d`` is not a mapping or holds keys that are not fields of ModelConfig.

        Examples
        --------
        A round trip through JSON, as in a model file:

        >>> import json
        >>> from xr_dl4ds.models import ModelConfig
        >>> cfg = ModelConfig(scale=2, localcon=True, grid_shape=(64, 96))
        >>> ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        True

        Missing keys take their defaults; unknown keys are refused:

        >>> cfg = ModelConfig.from_dict({"backbone": "unet", "upsampling": "pin"})
        >>> cfg.scale, cfg.n_filters
        (4, 8)
        >>> ModelConfig.from_dict({"n_filter": 16})
        Traceback (most recent call last):
        ...
        xr_dl4ds.exceptions.ConfigError: ModelConfig.from_dict: unknown key(s) ['n_filter'].
        Allowed keys: [...]. Fix: remove the unknown keys (...).
        """
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"ModelConfig.from_dict: expected a mapping of field names to values, "
                f"received {type(d).__name__}. Fix: pass the dict written by "
                "ModelConfig.to_dict()."
            )
        known = cls.field_names()
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(
                f"ModelConfig.from_dict: unknown key(s) {unknown}. Allowed keys: "
                f"{sorted(known)}. Fix: remove the unknown keys (a model file written by "
                "a newer xr_dl4ds may need a newer version to load)."
            )
        return cls(**dict(d))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the configuration fields, in declaration order.

        These are the keyword options of :func:`~xr_dl4ds.models.create_model` and the
        keys of :meth:`to_dict`.

        Examples
        --------
        >>> from xr_dl4ds.models import ModelConfig
        >>> ModelConfig.field_names()[:6]
        ('backbone', 'upsampling', 'scale', 'in_channels', 'out_channels', 'static_channels')
        >>> set(ModelConfig.field_names()) == set(ModelConfig().to_dict())
        True
        """
        return tuple(f.name for f in dataclasses.fields(cls))
