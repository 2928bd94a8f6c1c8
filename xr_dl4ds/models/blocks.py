"""Building blocks of the DL4DS networks, in PyTorch (channels-first, ``N, C, H, W``).

Semantics follow DL4DS' ``dl4ds.models.blocks`` (see the reference report, §1.3), with
two deliberate changes:

* every 3x3 convolution pads its borders by **replication** (``padding_mode="replicate"``)
  instead of zeros, so a constant field stays constant up to the border and border rows
  are not pulled toward zero (DESIGN.md, "Edges");
* ``"ln"`` is a *channels-first layer normalization* (:class:`LayerNorm2d`): each pixel
  is normalised over its channels, with a per-channel scale and shift. That is what
  Keras' ``LayerNormalization(axis=-1)`` does in DL4DS, and, unlike ``GroupNorm(1, C)``,
  it uses no statistics over space, so a network's output does not depend on the size
  of the domain or tile it is applied to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.config import ACTIVATIONS, NORMALIZATIONS, OUTPUT_ACTIVATIONS
from xr_dl4ds.models.dropout import make_dropout

__all__ = [
    "ChannelAttention",
    "ConvBlock",
    "ConvNeXtBlock",
    "DenseBlock",
    "LayerNorm2d",
    "ResidualBlock",
    "TransitionBlock",
    "attention_mean_hook",
    "conv1x1",
    "conv3x3",
    "conv_same",
    "init_conv_",
    "make_activation",
    "make_dropout",
    "make_normalization",
]

_ACTIVATION_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}


def make_activation(name: str | None) -> nn.Module:
    """Return the activation layer called ``name`` (``None`` gives :class:`nn.Identity`).

    Parameters
    ----------
    name : str or None
        One of ``"relu", "elu", "gelu", "leaky_relu", "selu", "silu"`` (hidden layers),
        ``"sigmoid", "softplus", "tanh"`` (output only), or None for a linear layer.

    Raises
    ------
    ConfigError
        ``name`` is not a known activation.
    """
    if name is None:
        return nn.Identity()
    factory = _ACTIVATION_FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError(
            f"Unknown activation {name!r}. Allowed: None, "
            f"{', '.join(repr(a) for a in OUTPUT_ACTIVATIONS)} (the last three on the output "
            f"only: {', '.join(repr(a) for a in ACTIVATIONS)} for hidden layers). "
            "Fix: pass one of the allowed names."
        )
    return factory()


class LayerNorm2d(nn.Module):
    """Layer normalization over the channel dimension of a ``(N, C, H, W)`` tensor.

    Each pixel is normalised by the mean and variance of its ``C`` channels, then scaled
    and shifted per channel. No statistics are taken over space.

    Parameters
    ----------
    num_channels : int
        ``C``.
    eps : float, default 1e-5
        Added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


def make_normalization(name: str | None, num_channels: int) -> nn.Module:
    """Return the normalization layer for ``num_channels`` channels.

    Parameters
    ----------
    name : {None, "bn", "ln"}
        ``"bn"``: :class:`torch.nn.BatchNorm2d`; ``"ln"``: :class:`LayerNorm2d`
        (channels-first layer normalization); None: :class:`torch.nn.Identity`.
    num_channels : int
        Channels of the normalised tensor.

    Raises
    ------
    ConfigError
        ``name`` is not a known normalization.
    """
    if name is None:
        return nn.Identity()
    if name == "bn":
        return nn.BatchNorm2d(num_channels)
    if name == "ln":
        return LayerNorm2d(num_channels)
    raise ConfigError(
        f"Unknown normalization {name!r}. Allowed: None, "
        f"{', '.join(repr(n) for n in NORMALIZATIONS)}. Fix: pass one of the allowed values."
    )


@torch.no_grad()
def init_conv_(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialise ``conv`` in place as Keras (and so DL4DS) does: Glorot-uniform weights,
    zero bias.

    PyTorch's default (uniform with variance ``1 / (3 fan_in)``) shrinks the signal by
    about ``1/sqrt(3)`` per linear layer; through the output module that starves the
    zero-initialised last convolution of gradient (measured: one-sample overfitting
    stalled for most seeds with the default, for none with Glorot).
    """
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution with "same" size and replicated borders (Glorot init, zero bias)."""
    return init_conv_(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="replicate", bias=bias)
    )


def conv1x1(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    """A 1x1 convolution (Glorot init, zero bias)."""
    return init_conv_(nn.Conv2d(in_channels, out_channels, 1, bias=bias))


#: Signature of the hooks of :func:`attention_mean_hook`: ``hook(module, x)`` returns
#: the ``(N, C, 1, 1)`` mean that ``module`` (a :class:`ChannelAttention`) uses for ``x``.
AttentionMeanHook = Callable[["ChannelAttention", Tensor], Tensor]

_MEAN_HOOK: ContextVar[AttentionMeanHook | None] = ContextVar(
    "xr_dl4ds_attention_mean_hook", default=None
)


@contextlib.contextmanager
def attention_mean_hook(hook: AttentionMeanHook | None) -> Iterator[None]:
    """Let ``hook`` give the spatial mean of every :class:`ChannelAttention` in the block.

    Inside the ``with`` block, a channel attention called on ``x`` uses
    ``hook(module, x)`` (an ``(N, C, 1, 1)`` tensor) instead of
    ``x.mean(dim=(2, 3), keepdim=True)``. Tiled inference
    (:mod:`xr_dl4ds.models.tiling`) uses it to apply the mean over the whole domain to
    each tile, or to freeze the attention to a constant. The hook is held in a
    :class:`contextvars.ContextVar`, so it applies to the current thread (and asyncio
    task) only: other threads running the same network are not affected. ``None``
    restores the default for the block.

    Parameters
    ----------
    hook : callable or None
        ``hook(module, x) -> mean``. It may raise to stop the forward pass.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models.blocks import ChannelAttention, attention_mean_hook
    >>> att = ChannelAttention(4)
    >>> x = torch.rand(1, 4, 3, 3)
    >>> with attention_mean_hook(lambda module, t: t.new_zeros(t.shape[0], t.shape[1], 1, 1)):
    ...     frozen = att(x)
    >>> torch.allclose(frozen, x / 2)  # zero biases: the excitation is sigmoid(0) = 1/2
    True
    """
    token = _MEAN_HOOK.set(hook)
    try:
        yield
    finally:
        _MEAN_HOOK.reset(token)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention.

    Global spatial mean → 1x1 conv to ``max(1, C // reduction)`` channels + ReLU → 1x1
    conv back to ``C`` channels + sigmoid → the input is rescaled channel by channel.

    Note the global mean: the output at a pixel depends on the whole field it is given.
    Inside :func:`attention_mean_hook` the mean is the hook's instead (tiled inference
    gives every tile the mean over the whole domain).

    Parameters
    ----------
    channels : int
        ``C``.
    reduction : int, default 4
        Channel reduction of the bottleneck.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = conv1x1(channels, hidden)
        self.excite = conv1x1(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        hook = _MEAN_HOOK.get()
        w = x.mean(dim=(2, 3), keepdim=True) if hook is None else hook(self, x)
        w = torch.sigmoid(self.excite(F.relu(self.squeeze(w))))
        return x * w


class ConvBlock(nn.Module):
    """Two 3x3 convolutions: ``[drop] conv [norm] act [drop] conv [norm] act [attention]``.

    Conv biases are off when a normalization follows (it has its own shift).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    activation : str or None, default "relu"
        Applied after each convolution; None keeps the block linear.
    normalization : {None, "bn", "ln"}, default None
        Applied after each convolution.
    dropout_rate : float, default 0.0
        Dropout before each convolution.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout` (None is
        ``"vanilla"``).
    attention : bool, default False
        Channel attention at the end of the block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        activation: str | None = "relu",
        normalization: str | None = None,
        dropout_rate: float = 0.0,
        dropout_variant: str | None = None,
        attention: bool = False,
    ) -> None:
        super().__init__()
        bias = normalization is None
        self.drop1 = make_dropout(dropout_rate, dropout_variant)
        self.conv1 = conv3x3(in_channels, out_channels, bias=bias)
        self.norm1 = make_normalization(normalization, out_channels)
        self.act1 = make_activation(activation)
        self.drop2 = make_dropout(dropout_rate, dropout_variant)
        self.conv2 = conv3x3(out_channels, out_channels, bias=bias)
        self.norm2 = make_normalization(normalization, out_channels)
        self.act2 = make_activation(activation)
        self.attention = ChannelAttention(out_channels) if attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.norm1(self.conv1(self.drop1(x))))
        y = self.act2(self.norm2(self.conv2(self.drop2(y))))
        return self.attention(y)


class ResidualBlock(nn.Module):
    """A residual block: ``act(F(x) + skip(x))`` (EDSR-style when unnormalised).

    ``F`` is ``[drop] conv [norm] act [drop] conv [norm] [attention]``; ``skip`` is the
    identity, or a 1x1 convolution (with bias) when the width changes.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels; a 1x1 projection is used on the skip when they differ.
    activation : str, default "relu"
        Activation after the first convolution and after the addition.
    normalization : {None, "bn", "ln"}, default None
        Applied after each convolution (whose bias is then off).
    dropout_rate : float, default 0.0
        Dropout before each convolution.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout` (None is
        ``"vanilla"``).
    attention : bool, default False
        Channel attention on the residual branch, before the addition.
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
        attention: bool = False,
    ) -> None:
        super().__init__()
        bias = normalization is None
        self.drop1 = make_dropout(dropout_rate, dropout_variant)
        self.conv1 = conv3x3(in_channels, out_channels, bias=bias)
        self.norm1 = make_normalization(normalization, out_channels)
        self.act1 = make_activation(activation)
        self.drop2 = make_dropout(dropout_rate, dropout_variant)
        self.conv2 = conv3x3(out_channels, out_channels, bias=bias)
        self.norm2 = make_normalization(normalization, out_channels)
        self.attention = ChannelAttention(out_channels) if attention else nn.Identity()
        self.skip: nn.Module = (
            conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        )
        self.act_out = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.norm1(self.conv1(self.drop1(x))))
        y = self.attention(self.norm2(self.conv2(self.drop2(y))))
        return self.act_out(y + self.skip(x))


class TransitionBlock(nn.Module):
    """A 1x1 convolution followed by an activation (changes the width only).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    activation : str or None, default "relu"
        Activation after the convolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, activation: str | None = "relu"
    ) -> None:
        super().__init__()
        self.conv = conv1x1(in_channels, out_channels)
        self.act = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


# --------------------------------------------------------------------------- densenet, convnext


def conv_same(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    bias: bool = True,
    groups: int = 1,
) -> nn.Conv2d:
    """A ``kernel_size`` x ``kernel_size`` convolution with "same" size and replicated
    borders (Glorot init, zero bias).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    kernel_size : int
        An odd kernel size (``3`` is :func:`conv3x3`, ``7`` the ConvNeXt kernel).
    bias : bool, default True
        Whether the convolution has a bias.
    groups : int, default 1
        ``in_channels`` for a depthwise convolution.

    Raises
    ------
    ConfigError
        ``kernel_size`` is not a positive odd integer.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size % 2 != 1:
        raise ConfigError(
            f"conv_same: invalid kernel_size={kernel_size!r}. Allowed: a positive odd "
            "integer (the output keeps the input size). Fix: pass e.g. 3 or 7."
        )
    return init_conv_(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode="replicate" if kernel_size > 1 else "zeros",
            bias=bias,
            groups=groups,
        )
    )


class DenseBlock(nn.Module):
    """A DenseNet-BC block with pre-activation: ``concat[x, F(x)]``.

    ``F`` is ``[norm] act [drop] conv1x1(4 f) [norm] act [drop] conv3x3(f) [attention]``,
    so the output has ``in_channels + f`` channels. DL4DS builds the same pre-activation
    but feeds the raw input to the 1x1 convolution (its bug 3, reference report §5.7);
    here the 1x1 convolution sees the normalised and activated input.

    The 1x1 convolution has no bias when a normalization follows it; the 3x3 one always
    has a bias (nothing follows it inside the block).

    Parameters
    ----------
    in_channels : int
        Input channels.
    growth : int
        ``f``: the channels added to the input.
    activation : str, default "relu"
        Activation of the two pre-activations.
    normalization : {None, "bn", "ln"}, default None
        Normalization of the two pre-activations.
    dropout_rate : float, default 0.0
        Dropout before each convolution.
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.
    attention : bool, default False
        Channel attention on ``F(x)``, before the concatenation.

    Attributes
    ----------
    out_channels : int
        ``in_channels + growth``.
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        *,
        activation: str = "relu",
        normalization: str | None = None,
        dropout_rate: float = 0.0,
        dropout_variant: str | None = None,
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = in_channels + growth
        self.norm1 = make_normalization(normalization, in_channels)
        self.act1 = make_activation(activation)
        self.drop1 = make_dropout(dropout_rate, dropout_variant)
        self.conv1 = conv1x1(in_channels, 4 * growth, bias=normalization is None)
        self.norm2 = make_normalization(normalization, 4 * growth)
        self.act2 = make_activation(activation)
        self.drop2 = make_dropout(dropout_rate, dropout_variant)
        self.conv2 = conv3x3(4 * growth, growth)
        self.attention = ChannelAttention(growth) if attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.drop1(self.act1(self.norm1(x))))
        y = self.conv2(self.drop2(self.act2(self.norm2(y))))
        return torch.cat([x, self.attention(y)], dim=1)


class ConvNeXtBlock(nn.Module):
    """A ConvNeXt block (Liu et al. 2022) with a projected skip when the width changes.

    ``skip(x) + [attention](pw2([drop](act(pw1(norm(dw7x7(x)))))))``: a depthwise 7x7
    convolution (replicated borders) on the ``in_channels``, a normalization, a
    pointwise expansion to ``4 * out_channels``, the activation, and a pointwise
    projection to ``out_channels``. ``skip`` is the identity, or a 1x1 convolution when
    the width changes. No layer scale and no stochastic depth (DL4DS sets both off).

    With ``normalization=None`` the normalization is the identity; DL4DS' block fails
    there (its bug 2, reference report §5.7). ``"ln"`` is the channels-first
    :class:`LayerNorm2d` of the original ConvNeXt. The depthwise convolution has no
    bias when a normalization follows it.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    activation : str, default "relu"
        Activation between the two pointwise convolutions (ConvNeXt uses "gelu").
    normalization : {None, "bn", "ln"}, default None
        Normalization after the depthwise convolution.
    dropout_rate : float, default 0.0
        Dropout after the activation, before the second pointwise convolution (DL4DS'
        block has no dropout).
    dropout_variant : str or None, default None
        Kind of dropout, see :func:`~xr_dl4ds.models.dropout.make_dropout`.
    attention : bool, default False
        Channel attention on the residual branch, before the addition.
    kernel_size : int, default 7
        Kernel of the depthwise convolution (odd).
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
        attention: bool = False,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        self.dwconv = conv_same(
            in_channels,
            in_channels,
            kernel_size,
            bias=normalization is None,
            groups=in_channels,
        )
        self.norm = make_normalization(normalization, in_channels)
        self.pwconv1 = conv1x1(in_channels, 4 * out_channels)
        self.act = make_activation(activation)
        self.drop = make_dropout(dropout_rate, dropout_variant)
        self.pwconv2 = conv1x1(4 * out_channels, out_channels)
        self.attention = ChannelAttention(out_channels) if attention else nn.Identity()
        self.skip: nn.Module = (
            conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.pwconv1(self.norm(self.dwconv(x))))
        y = self.attention(self.pwconv2(self.drop(y)))
        return self.skip(x) + y
