"""Spatio-temporal (recurrent) downscaling networks with ConvLSTM backbones (DL4DS §2.4).

A spatio-temporal model is an ordinary :class:`~xr_dl4ds.models.ModelConfig` with
``time_window`` set; :func:`~xr_dl4ds.models.create_model` then builds a
:class:`SpatioTemporalNet` instead of a :class:`~xr_dl4ds.models.DownscalingNet`. The
backbone keeps its spatial name (``"convnet"``, ``"resnet"`` or ``"densenet"``) and its
recurrent variant is used. ``"convnext"`` and ``"unet"`` have no recurrent variant.

Tensors are ``(N, T, C, H, W)``: batch, time, channels, rows, columns. Everything except
the ConvLSTM layers works frame by frame (time folded into the batch), so a model built
with ``time_window=T`` runs on windows of any length ``>= 1``. The ConvLSTMs are
unidirectional, so the output at step ``t`` depends only on steps ``<= t``.

Deliberate differences from DL4DS (TensorFlow/Keras):

* convolutions pad by replication, as everywhere in xr_dl4ds (DESIGN.md, "Edges");
* the ConvLSTM gates use the logistic sigmoid, not Keras' default ``hard_sigmoid``;
* the ConvLSTM initialisation keeps the signal alive through the stack (see
  :meth:`ConvLSTM2d.reset_parameters`). With Keras' initialisation the features of the
  default unnormalised backbone (``n_blocks=6``, so 14 ConvLSTM layers) fall to about
  ``1e-13`` of the input;
* the last ConvBlock is unnormalised. With ``residual=True`` it is linear and its last
  convolution is zero-initialised, so a fresh network returns the interpolation (as
  :class:`~xr_dl4ds.models.output.OutputModule` does for spatial models);
* ``residual=True`` (the xr_dl4ds default) adds the interpolation of the coarse target to
  every frame. DL4DS's recurrent models do not do this;
* the Localized Conv Block uses the weights of each patch's own place in the training
  grid (``offset``), as in spatial models.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError, RegistryError
from xr_dl4ds.models.blocks import (
    ConvBlock,
    make_activation,
    make_normalization,
)
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.models.dropout import make_dropout
from xr_dl4ds.models.output import LocalizedConvBlock, Offset, output_head
from xr_dl4ds.models.registry import get_upsampling
from xr_dl4ds.models.upsampling import interpolate

__all__ = [
    "INPUT_GAIN",
    "RECURRENT_BACKBONES",
    "ConvLSTM2d",
    "RecurrentBackbone",
    "RecurrentConvBlock",
    "SpatioTemporalNet",
    "list_recurrent_backbones",
]

#: Backbones that have a recurrent (ConvLSTM) variant, usable with ``time_window``.
RECURRENT_BACKBONES: tuple[str, ...] = ("convnet", "densenet", "resnet")

#: Gain of the input kernel of :class:`ConvLSTM2d`: its weights have standard deviation
#: ``INPUT_GAIN / sqrt(fan_in)``.
INPUT_GAIN = 3.0


def list_recurrent_backbones() -> list[str]:
    """Names of the backbones that work spatio-temporally (``time_window`` set), sorted."""
    return sorted(RECURRENT_BACKBONES)


def _shape(t: object) -> str:
    shape = getattr(t, "shape", None)
    return str(tuple(shape)) if shape is not None else type(t).__name__


def _fold(x: Tensor) -> Tensor:
    """``(N, T, C, H, W) -> (N*T, C, H, W)``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y: Tensor, n: int, t: int) -> Tensor:
    """``(N*T, C, H, W) -> (N, T, C, H, W)``."""
    return y.reshape(n, t, *y.shape[1:])


def _sequence_dropout(rate: float, variant: str | None) -> nn.Module:
    """Dropout of ``variant`` for ``(N, T, C, H, W)`` sequences.

    The spatial variants drop whole channels of a sample over all its time steps, as
    DL4DS' ``SpatialDropout3D``.
    """
    return make_dropout(rate, variant, dims=3, channel_axis=2)


class _PerFrame(nn.Module):
    """Apply a 2-D module to every frame of a ``(N, T, C, H, W)`` sequence."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return _unfold(self.module(_fold(x)), x.shape[0], x.shape[1])


class ConvLSTM2d(nn.Module):
    """A convolutional LSTM layer (Shi et al. 2015) over ``(N, T, C, H, W)`` sequences.

    At each step ``t``, with ``*`` a 2-D convolution ("same" size, replicated borders)::

        i, f, g, o = split(W_x * x_t + W_h * h_{t-1} + b)
        c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
        h_t = sigmoid(o) tanh(c_t)

    The layer starts from ``h_0 = c_0 = 0``. It is unidirectional (``h_t`` depends only
    on ``x_1 .. x_t``) and returns the whole sequence ``h_1 .. h_T``, like Keras'
    ``return_sequences=True``. The input convolution runs on all frames at once; only
    the recurrent one runs step by step.

    The layer has ``k*k*in_channels*4h + 4h + k*k*h*4h`` parameters, with
    ``h = hidden_channels``, as Keras' ``ConvLSTM2D``.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the input frames.
    hidden_channels : int
        Channels ``h`` of the hidden state and of the output.
    kernel_size : int
        Odd size of the square kernels of both convolutions.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.recurrent import ConvLSTM2d
    >>> lstm = ConvLSTM2d(3, 8, 5)
    >>> lstm(torch.zeros(2, 4, 3, 7, 5)).shape
    torch.Size([2, 4, 8, 7, 5])
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int) -> None:
        super().__init__()
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size % 2 != 1
        ):
            raise ConfigError(
                f"ConvLSTM2d: invalid kernel_size={kernel_size!r}. Allowed: a positive odd "
                "integer (so that the output keeps the input size). Fix: pass e.g. "
                "kernel_size=3."
            )
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        pad = kernel_size // 2
        gates = 4 * hidden_channels
        self.input_conv = nn.Conv2d(
            in_channels, gates, kernel_size, padding=pad, padding_mode="replicate"
        )
        self.hidden_conv = nn.Conv2d(
            hidden_channels, gates, kernel_size, padding=pad, padding_mode="replicate", bias=False
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise the layer so that a stack of them keeps the signal alive.

        * The input kernel is uniform with standard deviation
          ``INPUT_GAIN / sqrt(fan_in)``, where ``INPUT_GAIN = 3``.
        * The recurrent kernel is orthogonal, as in Keras.
        * The bias is 1 on the forget gate (Keras' ``unit_forget_bias``) and on the output
          gate, and 0 on the input and candidate gates.

        For small signals a fresh layer scales its input by about
        ``sigmoid(b_i) sigmoid(b_o)``, and the ReLU after it halves the variance. Keras'
        Glorot kernel (whose fan-out counts all 4 gates) is smaller again. With that
        kernel, the features of the default recurrent backbone (14 layers) had a standard
        deviation of about ``3e-13`` for unit-variance input; with this initialisation it
        is about ``1e-2`` to ``2e-1`` (measured with torch 2.13).
        """
        weight = self.input_conv.weight
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        bound = INPUT_GAIN * math.sqrt(3.0 / fan_in)
        nn.init.uniform_(weight, -bound, bound)
        nn.init.orthogonal_(self.hidden_conv.weight)
        h = self.hidden_channels
        bias = self.input_conv.bias
        assert bias is not None  # built with a bias
        bias.zero_()
        bias[h : 2 * h].fill_(1.0)  # forget gate
        bias[3 * h :].fill_(1.0)  # output gate

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer over ``x`` of shape ``(N, T, in_channels, H, W)``, ``T >= 1``.

        Returns
        -------
        Tensor
            ``(N, T, hidden_channels, H, W)``: the hidden state after every step.
        """
        if getattr(x, "ndim", None) != 5 or x.shape[2] != self.in_channels or x.shape[1] < 1:
            raise ConfigError(
                f"ConvLSTM2d: expected x of shape (N, T >= 1, in_channels={self.in_channels}, "
                f"H, W), received {_shape(x)}. Fix: stack the time steps on dimension 1 and "
                "the channels on dimension 2."
            )
        n, t, _, height, width = x.shape
        gates_x = _unfold(self.input_conv(_fold(x)), n, t)
        h = x.new_zeros(n, self.hidden_channels, height, width)
        c = torch.zeros_like(h)
        out = []
        for step in range(t):
            gates = gates_x[:, step] if step == 0 else gates_x[:, step] + self.hidden_conv(h)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}"


class RecurrentConvBlock(nn.Module):
    """Two ConvLSTM layers: ``[drop] LSTM5x5 [norm] act [drop] LSTM3x3 [norm] act``.

    This is DL4DS' ``RecurrentConvBlock`` (reference report §1.3). The normalization
    works on each frame. ``"bn"`` takes its statistics over batch, time and space, as
    Keras' ``BatchNormalization`` on a 5-D tensor. ``"ln"`` normalises each pixel of
    each frame over its channels. The ConvLSTM biases are kept under normalization,
    because they feed the gates and a normalization of the output does not replace them.

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels and width of both ConvLSTM layers.
    activation : str, default "relu"
        Applied after each (normalised) ConvLSTM layer.
    normalization : {None, "bn", "ln"}, default None
    dropout_rate : float, default 0.0
        Dropout before each ConvLSTM layer.
    dropout_variant : str or None, default None
        See :func:`~xr_dl4ds.models.dropout.make_dropout`. The spatial variants drop
        whole channels over all time steps.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        activation: str = "relu",
        normalization: str | None = None,
        dropout_rate: float = 0.0,
        dropout_variant: str | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.drop1 = _sequence_dropout(dropout_rate, dropout_variant)
        self.lstm1 = ConvLSTM2d(in_channels, out_channels, 5)
        self.norm1 = _PerFrame(make_normalization(normalization, out_channels))
        self.act1 = make_activation(activation)
        self.drop2 = _sequence_dropout(dropout_rate, dropout_variant)
        self.lstm2 = ConvLSTM2d(out_channels, out_channels, 3)
        self.norm2 = _PerFrame(make_normalization(normalization, out_channels))
        self.act2 = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.norm1(self.lstm1(self.drop1(x))))
        return self.act2(self.norm2(self.lstm2(self.drop2(y))))


def _no_recurrent_variant(name: object) -> RegistryError:
    return RegistryError(
        f"backbone={name!r} has no spatio-temporal (recurrent) variant. Valid recurrent "
        f"backbones: {list_recurrent_backbones()}. Fix: pass one of these with time_window, "
        "or time_window=None for a spatial model."
    )


class RecurrentBackbone(nn.Module):
    """Recurrent backbone over a sequence of frames (DL4DS §2.4).

    With ``f0 = n_filters`` and ``N = n_blocks``:

    1. ``x = b = RecurrentConvBlock(f0)(input)``, without dropout in this first block, as
       in DL4DS;
    2. ``N`` times ``b = RecurrentConvBlock(f0)(b)``, with no width growth and ``N + 1``
       blocks in all, followed by a dropout;
    3. the skip: ``"convnet"`` has none (``b``), ``"resnet"`` gives ``x + b``, and
       ``"densenet"`` gives ``concat[x, b]`` (``2 f0`` channels).

    Parameters
    ----------
    in_channels : int
        Channels of the input frames.
    kind : {"convnet", "resnet", "densenet"}
        The skip.
    n_filters : int, default 8
    n_blocks : int, default 6
    normalization : {None, "bn", "ln"}, default None
    activation : str, default "relu"
    dropout_rate : float, default 0.0
    dropout_variant : str or None, default None

    Attributes
    ----------
    out_channels : int
        ``n_filters``, or ``2 * n_filters`` for ``"densenet"``.

    Raises
    ------
    RegistryError
        ``kind`` has no recurrent variant.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        kind: str,
        n_filters: int = 8,
        n_blocks: int = 6,
        normalization: str | None = None,
        activation: str = "relu",
        dropout_rate: float = 0.0,
        dropout_variant: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in RECURRENT_BACKBONES:
            raise _no_recurrent_variant(kind)
        f0 = n_filters
        self.kind = kind
        self.in_channels = in_channels
        self.out_channels = 2 * f0 if kind == "densenet" else f0
        self.head = RecurrentConvBlock(
            in_channels, f0, activation=activation, normalization=normalization
        )
        self.blocks = nn.Sequential(
            *(
                RecurrentConvBlock(
                    f0,
                    f0,
                    activation=activation,
                    normalization=normalization,
                    dropout_rate=dropout_rate,
                    dropout_variant=dropout_variant,
                )
                for _ in range(n_blocks)
            )
        )
        self.drop = _sequence_dropout(dropout_rate, dropout_variant)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        b = self.drop(self.blocks(x))
        if self.kind == "resnet":
            return x + b
        if self.kind == "densenet":
            return torch.cat([x, b], dim=2)
        return b


class SpatioTemporalNet(nn.Module):
    """A DL4DS-style recurrent downscaling network over sequences of frames.

    The upsampling determines where the scale changes
    (:attr:`Upsampling.is_pre <xr_dl4ds.models.base.Upsampling.is_pre>`):

    * post-upsampling (``"spc"``, ``"rc"``, ``"dc"``):
      ``y = head(upsampling(backbone(x)), static)``. The :class:`RecurrentBackbone`
      runs on the low-resolution frames and the upsampling is applied to every frame;
    * pre-upsampling (``"pin"``): ``y = head(backbone(upsampling(x)), static)``. Every
      input frame is interpolated to the fine grid first.

    The head works frame by frame:

    1. the static branch (when ``static_channels > 0``):
       ``s = ConvBlock(f0, attention=attention)`` of the high-resolution static fields,
       with no normalization and no dropout. It is computed once per sample, repeated
       along time, and concatenated to every frame;
    2. the Localized Conv Block (when ``localcon``): 2 more channels from per-pixel
       weights on ``grid_shape``, picked by ``offset``;
    3. ``TransitionBlock(width // 2)`` for post-upsampling, or ``TransitionBlock(f0)``
       for ``"pin"``, as DL4DS. This is a 1x1 conv followed by the activation, and
       ``width`` is the number of concatenated channels;
    4. ``ConvBlock(f0, activation=None, attention=True)`` with the configured
       normalization and dropout;
    5. ``ConvBlock(out_channels)``, unnormalised. With ``residual=True`` it is linear,
       its last convolution is zero-initialised, and
       ``y = output_activation(y + interpolate(x[:, :, :out_channels]))`` is computed
       frame by frame. A fresh network therefore returns the interpolation of every
       frame.

    Build it with :func:`~xr_dl4ds.models.create_model` and ``time_window`` set, or
    directly from a :class:`~xr_dl4ds.models.ModelConfig`. ``time_window`` is the length
    of the training windows; any length ``>= 1`` runs.

    Parameters
    ----------
    config : ModelConfig
        The full configuration, with ``time_window`` not None. It is kept as ``config``.

    Attributes
    ----------
    config : ModelConfig
    backbone : RecurrentBackbone
    upsampling : Upsampling
    static_branch : ConvBlock or None
    localized : LocalizedConvBlock or None
    transition : TransitionBlock
    refine : ConvBlock
    final : ConvBlock

    Raises
    ------
    ConfigError
        ``config`` is not a ModelConfig or has ``time_window=None``, or a
        pre-upsampling changes the width.
    RegistryError
        The backbone has no recurrent variant, or the upsampling is unknown.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import ModelConfig
    >>> from xr_dl4ds.models.recurrent import SpatioTemporalNet
    >>> cfg = ModelConfig(backbone="resnet", scale=2, time_window=3, n_filters=4, n_blocks=1)
    >>> net = SpatioTemporalNet(cfg)
    >>> net(torch.zeros(1, 3, 1, 5, 4)).shape
    torch.Size([1, 3, 1, 10, 8])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(
                f"SpatioTemporalNet: expected a ModelConfig, received {type(config).__name__}. "
                "Fix: pass ModelConfig(..., time_window=T) or use "
                "xr_dl4ds.models.create_model(**options)."
            )
        if config.time_window is None:
            raise ConfigError(
                "SpatioTemporalNet: received a config with time_window=None. Allowed: an "
                "integer >= 2. Fix: pass time_window=T for a spatio-temporal model, or "
                "build a spatial DownscalingNet."
            )
        if config.backbone not in RECURRENT_BACKBONES:
            raise _no_recurrent_variant(config.backbone)
        self.config = config
        f0 = config.n_filters
        upsampling_cls = get_upsampling(config.upsampling)
        self.backbone = RecurrentBackbone(
            config.in_channels,
            kind=config.backbone,
            n_filters=f0,
            n_blocks=config.n_blocks,
            normalization=config.normalization,
            activation=config.activation,
            dropout_rate=config.dropout_rate,
            dropout_variant=config.dropout_variant,
        )
        if upsampling_cls.is_pre:
            self.upsampling = upsampling_cls.from_config(config.in_channels, config)
            if self.upsampling.out_channels != config.in_channels:
                raise ConfigError(
                    f"SpatioTemporalNet: the pre-upsampling {config.upsampling!r} changes the "
                    f"width from in_channels={config.in_channels} to "
                    f"{self.upsampling.out_channels}. Allowed: a pre-upsampling "
                    "(is_pre=True) keeps the width, since the backbone is built for "
                    "in_channels. Fix: make its out_channels equal to its in_channels."
                )
            width = self.backbone.out_channels
        else:
            self.upsampling = upsampling_cls.from_config(self.backbone.out_channels, config)
            width = self.upsampling.out_channels

        self.static_branch: ConvBlock | None = None
        if config.static_channels > 0:
            self.static_branch = ConvBlock(
                config.static_channels,
                f0,
                activation=config.activation,
                normalization=None,
                dropout_rate=0.0,
                attention=config.attention,
            )
            width += f0
        self.localized: LocalizedConvBlock | None = None
        if config.localcon:
            assert config.grid_shape is not None  # ModelConfig requires it with localcon
            self.localized = LocalizedConvBlock(
                width, config.grid_shape, activation=config.activation
            )
            width += LocalizedConvBlock.channels
        mid = f0 if upsampling_cls.is_pre else max(1, width // 2)
        self.transition, self.refine, self.final = output_head(width, mid, config)
        self.output_activation = (
            make_activation(config.output_activation) if config.residual else nn.Identity()
        )

    @property
    def scale(self) -> int:
        """The scale factor."""
        return self.config.scale

    @property
    def time_window(self) -> int:
        """The length of the training windows. Windows of any length ``>= 1`` run."""
        assert self.config.time_window is not None  # checked in __init__
        return self.config.time_window

    @property
    def is_pre(self) -> bool:
        """Whether the upsampling comes before the backbone (``"pin"``)."""
        return bool(self.upsampling.is_pre)

    def interpolate(self, x: Tensor) -> Tensor:
        """Interpolate the coarse target (the first ``out_channels`` channels) of every frame.

        This is the baseline that the residual network corrects
        (``config.interpolation``, ``align_corners=False``). It is returned whatever
        ``config.residual`` is.

        Parameters
        ----------
        x : Tensor
            ``(N, T, in_channels, h, w)`` low-resolution sequence.

        Returns
        -------
        Tensor
            ``(N, T, out_channels, h * scale, w * scale)``.
        """
        coarse = _fold(x[:, :, : self.config.out_channels])
        fine = interpolate(coarse, self.config.scale, self.config.interpolation)
        return _unfold(fine, x.shape[0], x.shape[1])

    def _check_inputs(self, x: Tensor, static: Tensor | None, offset: Offset) -> None:
        cfg = self.config
        if (
            getattr(x, "ndim", None) != 5
            or x.shape[2] != cfg.in_channels
            or min(x.shape[1], x.shape[3], x.shape[4]) < 1
        ):
            raise ConfigError(
                f"SpatioTemporalNet: expected x of shape (N, T, in_channels={cfg.in_channels}, "
                f"h, w) with T, h, w >= 1, received {_shape(x)}. Fix: stack the time steps "
                "on dimension 1 and the variables on dimension 2: the target variable(s) "
                "first, then the predictors and the coarsened static fields, "
                f"{cfg.in_channels} channels in all. Or build the model with the matching "
                "in_channels."
            )
        n, _, _, h, w = x.shape
        if self.localized is not None and offset is not None:
            ndim = getattr(offset, "ndim", None)
            if ndim == 2 and tuple(offset.shape) != (n, 2):  # type: ignore[union-attr]
                raise ConfigError(
                    f"SpatioTemporalNet: expected offset of shape ({n}, 2), one (row, col) "
                    f"per sample of x of shape {_shape(x)}, received {_shape(offset)}. "
                    "Allowed: None, a pair of ints for the whole batch, or an (N, 2) "
                    "integer tensor. Fix: give one offset per sample; it applies to all of "
                    "the sample's time steps."
                )
        expected = (n, cfg.static_channels, h * cfg.scale, w * cfg.scale)
        if cfg.static_channels == 0:
            if static is not None:
                raise ConfigError(
                    f"SpatioTemporalNet: received static fields of shape {_shape(static)} "
                    "but the model has static_channels=0. Fix: drop static=, or build the "
                    "model with static_channels set."
                )
            return
        if static is None:
            raise ConfigError(
                f"SpatioTemporalNet: the model has static_channels={cfg.static_channels} but "
                f"no static fields were given. Expected static of shape {expected}: (N, "
                "static_channels, h*scale, w*scale), the same for every time step. "
                "Fix: pass static=."
            )
        if getattr(static, "ndim", None) != 4 or tuple(static.shape) != expected:
            raise ConfigError(
                f"SpatioTemporalNet: expected static of shape {expected} (N, static_channels="
                f"{cfg.static_channels}, h*scale, w*scale) for x of shape {_shape(x)} and "
                f"scale={cfg.scale}, received {_shape(static)}. Fix: give the "
                "high-resolution static fields once per sample, with no time dimension, on "
                "the grid of the output."
            )

    def forward(self, x: Tensor, static: Tensor | None = None, offset: Offset = None) -> Tensor:
        """Downscale every frame of ``x``.

        Parameters
        ----------
        x : Tensor
            ``(N, T, in_channels, h, w)`` low-resolution sequence, with any ``T >= 1``
            (it need not equal ``time_window``) and ``h, w >= 1``.
        static : Tensor, optional
            ``(N, static_channels, h * scale, w * scale)`` high-resolution static fields,
            shared by all time steps. Required when ``static_channels > 0`` and refused
            otherwise.
        offset : pair of ints or Tensor, optional
            Used only with ``config.localcon``: the high-resolution ``(row, col)`` of the
            output's top-left cell in the training grid. Give one pair for the batch, or
            an integer tensor of shape ``(N, 2)`` with one pair per sample; each offset
            applies to all time steps of its sample. None means ``(0, 0)``. Ignored
            without ``localcon``.

        Returns
        -------
        Tensor
            ``(N, T, out_channels, h * scale, w * scale)``.

        Raises
        ------
        ConfigError
            ``x``, ``static`` or ``offset`` does not have the expected shape, or (with
            ``localcon``) the output falls outside ``grid_shape``.
        """
        self._check_inputs(x, static, offset)
        n, t = x.shape[:2]
        if self.upsampling.is_pre:
            fine = _unfold(self.upsampling(_fold(x)), n, t)
            y = _fold(self.backbone(fine))
        else:
            y = self.upsampling(_fold(self.backbone(x)))  # (N*T, C, H, W)
        if self.static_branch is not None:
            assert static is not None  # checked above
            s = self.static_branch(static)  # once per sample: (N, f0, H, W)
            s = s.unsqueeze(1).expand(n, t, *s.shape[1:])
            y = torch.cat([y, _fold(s)], dim=1)
        if self.localized is not None:
            if offset is not None and getattr(offset, "ndim", None) == 2:
                offset = torch.as_tensor(offset).repeat_interleave(t, dim=0)  # per frame
            y = self.localized(y, offset)
        y = _unfold(self.final(self.refine(self.transition(y))), n, t)
        if self.config.residual:
            y = self.output_activation(y + self.interpolate(x))
        return y
