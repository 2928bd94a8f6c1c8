"""Registries of backbones and upsampling methods, and :func:`create_model`.

In the style of torchvision and timm: a decorator registers a class under a name and
refuses a duplicate; ``list_*`` return the sorted names; unknown names raise
:class:`~xr_dl4ds.exceptions.RegistryError` listing the valid ones.

Compatibility between a backbone and an upsampling is declared at registration, on
either side (``register_backbone(name, upsamplings=...)`` or
``register_upsampling(name, backbones=...)``); ``None`` means "works with all".
:func:`valid_combinations` lists the pairs that can be built.

Whether an upsampling runs before the backbone (pre-upsampling, ``"pin"``) or after it
(post-upsampling, ``"spc"``, ``"rc"``, ``"dc"``) is the class attribute
:attr:`Upsampling.is_pre <xr_dl4ds.models.base.Upsampling.is_pre>` of the registered
class (``get_upsampling(name).is_pre``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from xr_dl4ds.exceptions import ConfigError, RegistryError
from xr_dl4ds.models.base import Backbone, Upsampling
from xr_dl4ds.models.config import ModelConfig

if TYPE_CHECKING:
    from xr_dl4ds.models.net import DownscalingNet
    from xr_dl4ds.models.recurrent import SpatioTemporalNet

__all__ = [
    "compatible_pairs",
    "create_model",
    "get_backbone",
    "get_upsampling",
    "is_compatible",
    "list_backbones",
    "list_upsampling",
    "list_upsamplings",
    "register_backbone",
    "register_upsampling",
    "valid_combinations",
]

B = TypeVar("B", bound=type[Backbone])
U = TypeVar("U", bound=type[Upsampling])


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    cls: type
    compatible: frozenset[str] | None  # names on the other side; None = all


_BACKBONES: dict[str, _Entry] = {}
_UPSAMPLINGS: dict[str, _Entry] = {}


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise RegistryError(
            f"Cannot register {kind} {name!r}: the name must be a non-empty string. "
            f"Fix: decorate with @register_{kind}('my_name')."
        )
    return name


def _register(
    kind: str,
    table: dict[str, _Entry],
    base: type,
    name: str,
    compatible: Iterable[str] | None,
) -> Callable[[Any], Any]:
    name = _check_name(kind, name)
    if isinstance(compatible, str):
        compatible = [compatible]
    others = None if compatible is None else frozenset(compatible)

    def decorator(cls: Any) -> Any:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"@register_{kind}({name!r}) decorates a subclass of "
                f"xr_dl4ds.models.base.{base.__name__}, received {cls!r}."
            )
        if name in table:
            raise RegistryError(
                f"A {kind} named {name!r} is already registered "
                f"({table[name].cls.__module__}.{table[name].cls.__qualname__}). "
                f"Registered {kind}s: {sorted(table)}. Fix: choose another name."
            )
        table[name] = _Entry(name, cls, others)
        return cls

    return decorator


def register_backbone(name: str, *, upsamplings: Iterable[str] | None = None) -> Callable[[B], B]:
    """Class decorator registering a :class:`~xr_dl4ds.models.base.Backbone` as ``name``.

    Parameters
    ----------
    name : str
        The name users pass as ``backbone=``.
    upsamplings : iterable of str, optional
        The upsampling methods this backbone works with; None (default) means all.

    Raises
    ------
    RegistryError
        A backbone with this name is already registered.

    Examples
    --------
    A backbone maps ``(N, in_channels, h, w)`` to ``(N, out_channels, h, w)``; its
    constructor receives ``in_channels`` and the options of
    :meth:`Backbone.config_options <xr_dl4ds.models.base.Backbone.config_options>`:

    >>> import torch
    >>> from torch import nn
    >>> from xr_dl4ds.models import create_model, list_backbones, register_backbone
    >>> from xr_dl4ds.models.base import Backbone
    >>> @register_backbone("two_convs", upsamplings=["spc", "rc"])
    ... class TwoConvs(Backbone):
    ...     def __init__(self, in_channels, *, n_filters=8, **options):
    ...         super().__init__()
    ...         self.out_channels = n_filters
    ...         self.body = nn.Sequential(
    ...             nn.Conv2d(in_channels, n_filters, 3, padding=1),
    ...             nn.ReLU(),
    ...             nn.Conv2d(n_filters, n_filters, 3, padding=1),
    ...         )
    ...     def forward(self, x):
    ...         return self.body(x)
    >>> "two_convs" in list_backbones()
    True
    >>> net = create_model("two_convs", upsampling="spc", scale=3, in_channels=2, n_filters=4)
    >>> type(net.backbone).__name__, net.backbone.out_channels
    ('TwoConvs', 4)
    >>> net(torch.zeros(1, 2, 4, 5)).shape
    torch.Size([1, 1, 12, 15])

    The declared compatibility is checked, and names are unique:

    >>> create_model("two_convs", upsampling="pin", scale=3)
    Traceback (most recent call last):
    ...
    xr_dl4ds.exceptions.RegistryError: backbone='two_convs' cannot be combined with
    upsampling='pin': valid upsamplings for 'two_convs': ['rc', 'spc']; ...
    >>> register_backbone("two_convs")(TwoConvs)
    Traceback (most recent call last):
    ...
    xr_dl4ds.exceptions.RegistryError: A backbone named 'two_convs' is already registered ...

    There is no public way to unregister; this example removes its entry by hand so
    that it leaves the registry as it found it:

    >>> from xr_dl4ds.models import registry
    >>> del registry._BACKBONES["two_convs"]
    """
    return _register("backbone", _BACKBONES, Backbone, name, upsamplings)


def register_upsampling(name: str, *, backbones: Iterable[str] | None = None) -> Callable[[U], U]:
    """Class decorator registering an :class:`~xr_dl4ds.models.base.Upsampling` as ``name``.

    Parameters
    ----------
    name : str
        The name users pass as ``upsampling=``.
    backbones : iterable of str, optional
        The backbones this method works with; None (default) means all.

    Raises
    ------
    RegistryError
        An upsampling with this name is already registered.

    Examples
    --------
    An upsampling maps ``(N, in_channels, h, w)`` to
    ``(N, out_channels, h * scale, w * scale)``; the default
    :meth:`~xr_dl4ds.models.base.Upsampling.from_config` builds it as
    ``cls(in_channels, in_channels, scale)``, ``in_channels`` being the backbone's width:

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from xr_dl4ds.models import create_model, register_upsampling, valid_combinations
    >>> from xr_dl4ds.models.base import Upsampling
    >>> @register_upsampling("nearest_conv")
    ... class NearestConv(Upsampling):
    ...     def __init__(self, in_channels, out_channels, scale):
    ...         super().__init__()
    ...         self.out_channels, self.scale = out_channels, scale
    ...         self.conv = nn.Conv2d(in_channels, out_channels, 1)
    ...     def forward(self, x):
    ...         return self.conv(F.interpolate(x, scale_factor=self.scale))
    >>> ("resnet", "nearest_conv") in valid_combinations()
    True
    >>> net = create_model("resnet", upsampling="nearest_conv", scale=4, n_filters=4, n_blocks=2)
    >>> net.upsampling
    NearestConv(
      (conv): Conv2d(8, 8, kernel_size=(1, 1), stride=(1, 1))
    )
    >>> net(torch.zeros(2, 1, 3, 5)).shape
    torch.Size([2, 1, 12, 20])

    There is no public way to unregister; this example removes its entry by hand so
    that it leaves the registry as it found it:

    >>> from xr_dl4ds.models import registry
    >>> del registry._UPSAMPLINGS["nearest_conv"]
    """
    return _register("upsampling", _UPSAMPLINGS, Upsampling, name, backbones)


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted.

    Returns
    -------
    list of str
        The names :func:`create_model` accepts as ``backbone=``, including those
        registered by :func:`register_backbone`.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import create_model, list_backbones
    >>> list_backbones()
    ['convnet', 'convnext', 'densenet', 'resnet', 'unet']

    Every backbone works with the ``"pin"`` pre-upsampling (``"unet"`` only with it):

    >>> x = torch.zeros(1, 1, 3, 5)
    >>> for name in list_backbones():
    ...     net = create_model(name, upsampling="pin", scale=2, n_filters=4, n_blocks=1)
    ...     print(name, type(net.backbone).__name__, tuple(net(x).shape))
    convnet ConvNetBackbone (1, 1, 6, 10)
    convnext ConvNeXtBackbone (1, 1, 6, 10)
    densenet DenseNetBackbone (1, 1, 6, 10)
    resnet ResNetBackbone (1, 1, 6, 10)
    unet UNetBackbone (1, 1, 6, 10)
    """
    return sorted(_BACKBONES)


def list_upsamplings() -> list[str]:
    """Names of the registered upsampling methods, sorted.

    Returns
    -------
    list of str
        The names :func:`create_model` accepts as ``upsampling=``, including those
        registered by :func:`register_upsampling`.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import create_model, list_upsamplings
    >>> list_upsamplings()
    ['dc', 'pin', 'rc', 'spc']

    Each method, with the ``"resnet"`` backbone: ``"pin"`` interpolates the input before
    the backbone, the others upsample the backbone's features after it:

    >>> x = torch.zeros(1, 1, 3, 5)
    >>> for name in list_upsamplings():
    ...     net = create_model("resnet", upsampling=name, scale=2, n_filters=4, n_blocks=1)
    ...     print(name, type(net.upsampling).__name__, net.is_pre, tuple(net(x).shape))
    dc Deconvolution False (1, 1, 6, 10)
    pin PreInterpolation True (1, 1, 6, 10)
    rc ResizeConvolution False (1, 1, 6, 10)
    spc SubpixelConvolution False (1, 1, 6, 10)
    """
    return sorted(_UPSAMPLINGS)


#: Alias of :func:`list_upsamplings`.
list_upsampling = list_upsamplings


def _lookup(kind: str, table: dict[str, _Entry], name: str) -> _Entry:
    try:
        return table[name]
    except (KeyError, TypeError):
        hint = ""
        if isinstance(name, str) and name.lower() in table:
            hint = f" (names are lower case: {name.lower()!r})"
        raise RegistryError(
            f"Unknown {kind} {name!r}. Valid {kind}s: {sorted(table)}. "
            f"Fix: pass {kind}= one of these names{hint}, or register a new one with "
            f"@xr_dl4ds.models.register_{kind}."
        ) from None


def get_backbone(name: str) -> type[Backbone]:
    """The backbone class registered as ``name``.

    Raises
    ------
    RegistryError
        No backbone has this name; the message lists the valid names.
    """
    return _lookup("backbone", _BACKBONES, name).cls


def get_upsampling(name: str) -> type[Upsampling]:
    """The upsampling class registered as ``name``.

    Raises
    ------
    RegistryError
        No upsampling has this name; the message lists the valid names.
    """
    return _lookup("upsampling", _UPSAMPLINGS, name).cls


def is_compatible(backbone: str, upsampling: str) -> bool:
    """Whether the registered ``backbone`` and ``upsampling`` can be combined.

    Raises
    ------
    RegistryError
        Either name is not registered.
    """
    b = _lookup("backbone", _BACKBONES, backbone)
    u = _lookup("upsampling", _UPSAMPLINGS, upsampling)
    return (b.compatible is None or u.name in b.compatible) and (
        u.compatible is None or b.name in u.compatible
    )


def compatible_pairs() -> list[tuple[str, str]]:
    """All registered ``(backbone, upsampling)`` pairs that can be combined, sorted."""
    return [(b, u) for b in list_backbones() for u in list_upsamplings() if is_compatible(b, u)]


def valid_combinations() -> list[tuple[str, str]]:
    """All registered ``(backbone, upsampling)`` pairs that can be combined, sorted.

    The same as :func:`compatible_pairs`.

    Examples
    --------
    >>> from xr_dl4ds.models import valid_combinations
    >>> ("resnet", "spc") in valid_combinations()
    True
    """
    return compatible_pairs()


def resolve(config: ModelConfig) -> tuple[type[Backbone], type[Upsampling]]:
    """The backbone and upsampling classes named by ``config``, checked for compatibility.

    Raises
    ------
    RegistryError
        A name is unknown, or the two are registered but cannot be combined.
    """
    backbone = get_backbone(config.backbone)
    upsampling = get_upsampling(config.upsampling)
    if not is_compatible(config.backbone, config.upsampling):
        b, u = config.backbone, config.upsampling
        ok_ups = [name for name in list_upsamplings() if is_compatible(b, name)]
        ok_bb = [name for name in list_backbones() if is_compatible(name, u)]
        example = f", e.g. backbone={b!r}, upsampling={ok_ups[0]!r}" if ok_ups else ""
        raise RegistryError(
            f"backbone={b!r} cannot be combined with upsampling={u!r}: valid upsamplings "
            f"for {b!r}: {ok_ups}; valid backbones for {u!r}: {ok_bb}. Valid combinations "
            f"(backbone, upsampling): {valid_combinations()}. Fix: pick a valid "
            f"pair{example}."
        )
    return backbone, upsampling


def create_model(
    config: ModelConfig | str | None = None, /, **kwargs: Any
) -> DownscalingNet | SpatioTemporalNet:
    """Build a :class:`~xr_dl4ds.models.DownscalingNet`, or a
    :class:`~xr_dl4ds.models.SpatioTemporalNet` when ``time_window`` is set.

    Parameters
    ----------
    config : ModelConfig or str, optional
        A configuration to start from; keyword arguments override its fields (through
        :func:`dataclasses.replace`). A string is taken as the backbone name, as in
        ``timm.create_model("resnet", ...)``, so the call
        ``create_model(name, *, upsampling, scale, in_channels, out_channels,
        static_channels=0, time_window=None, **options)`` works as expected. Without
        it, the keyword arguments build a new :class:`~xr_dl4ds.models.ModelConfig`.
    **kwargs
        Fields of :class:`~xr_dl4ds.models.ModelConfig` (``backbone``, ``upsampling``,
        ``scale``, ``in_channels``, ``out_channels``, ``static_channels``,
        ``time_window``, ...); see :func:`valid_combinations` for the backbone and
        upsampling pairs.

    Returns
    -------
    DownscalingNet or SpatioTemporalNet
        A freshly initialised network; ``net.config`` is the full configuration.

    Raises
    ------
    ConfigError
        An unknown keyword or an invalid option value.
    ScaleError
        ``scale`` is not an integer >= 2.
    RegistryError
        An unknown backbone or upsampling name, or an incompatible pair.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import create_model, list_backbones
    >>> 'resnet' in list_backbones()
    True
    >>> net = create_model(backbone="resnet", upsampling="spc", scale=2, in_channels=2)
    >>> net(torch.zeros(1, 2, 5, 7)).shape
    torch.Size([1, 1, 10, 14])
    >>> create_model(net.config, scale=3).config.scale
    3
    >>> pin = create_model("resnet", upsampling="pin", scale=4, in_channels=2, out_channels=1)
    >>> pin(torch.zeros(1, 2, 5, 7)).shape
    torch.Size([1, 1, 20, 28])
    """
    fields = ModelConfig.field_names()
    unknown = sorted(k for k in kwargs if k not in fields)
    if unknown:
        raise ConfigError(
            f"create_model: unknown option(s) {unknown}. Allowed options (fields of "
            f"ModelConfig): {list(fields)}. Fix: remove or rename them."
        )
    if isinstance(config, str):
        if "backbone" in kwargs:
            raise ConfigError(
                f"create_model: the backbone is given twice, as {config!r} and "
                f"backbone={kwargs['backbone']!r}. Fix: pass only one."
            )
        config, kwargs = None, {"backbone": config, **kwargs}
    if config is None:
        cfg = ModelConfig(**kwargs)
    elif isinstance(config, ModelConfig):
        cfg = dataclasses.replace(config, **kwargs) if kwargs else config
    else:
        raise ConfigError(
            f"create_model: expected a ModelConfig, a backbone name or nothing as the "
            f"first argument, received {type(config).__name__}. Fix: pass "
            "ModelConfig(...) or keyword options, or use ModelConfig.from_dict(d) for a dict."
        )
    if cfg.time_window is not None:
        from xr_dl4ds.models.recurrent import SpatioTemporalNet

        return SpatioTemporalNet(cfg)
    from xr_dl4ds.models.net import DownscalingNet

    return DownscalingNet(cfg)
