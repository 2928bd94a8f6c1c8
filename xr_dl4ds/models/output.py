"""The DL4DS output module (reference report §2.3), on the high-resolution grid.

Also the Localized Conv Block (:class:`LocalizedConvBlock`): per-pixel weights that live
on the high-resolution *training grid*, each patch using the weights of its position.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.blocks import ConvBlock, TransitionBlock
from xr_dl4ds.models.config import ModelConfig

__all__ = ["LocalizedConvBlock", "LocallyConnected1x1", "Offset", "OutputModule"]

#: Position of a patch in the training grid: the high-resolution ``(row, col)`` of its
#: top-left cell, one pair for the whole batch or a ``(N, 2)`` integer tensor (one pair
#: per sample); None means ``(0, 0)``.
Offset = tuple[int, int] | Sequence[int] | Tensor | None


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _normalise_offset(offset: object, n: int) -> tuple[int, int] | Tensor:
    """``offset`` as a pair of ints (one for the batch) or a ``(n, 2)`` int64 tensor."""
    if offset is None:
        return (0, 0)
    if isinstance(offset, (tuple, list)) and len(offset) == 2 and all(map(_is_int, offset)):
        return (int(offset[0]), int(offset[1]))
    t: object = offset
    if not isinstance(t, Tensor) and hasattr(t, "__array__"):  # e.g. a numpy array
        try:
            t = torch.as_tensor(t)
        except (TypeError, RuntimeError):
            pass
    if isinstance(t, Tensor):
        integer = not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
        if integer and t.shape == (2,):
            row, col = t.tolist()
            return (int(row), int(col))
        if integer and t.shape == (n, 2):
            return t.to(torch.int64)
        received = f"a tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    else:
        received = repr(t)
    raise ConfigError(
        f"LocalizedConvBlock: invalid offset, received {received}. Allowed: None (= (0, 0)), "
        f"a pair of ints (row, col) for the whole batch, or an integer tensor of shape "
        f"({n}, 2), one (row, col) per sample. Fix: pass the high-resolution (row, col) of "
        "the top-left cell of each output patch in the training grid."
    )


class LocallyConnected1x1(nn.Module):
    """A 1x1 locally connected layer whose weights live on a fixed grid.

    Each cell ``(r, c)`` of the ``grid_shape = (H, W)`` grid has its own
    ``out_channels x in_channels`` matrix and bias (no weight sharing, no activation).
    An input patch of size ``(h, w)`` placed at ``offset = (a, b)`` uses the weights of
    the cells ``[a:a+h, b:b+w]``::

        y[n, o, i, j] = sum_k weight[o, k, a+i, b+j] * x[n, k, i, j] + bias[o, a+i, b+j]

    The weights are Glorot-uniform, the biases start at zero (as Keras'
    ``LocallyConnected2D``).

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    grid_shape : (int, int)
        ``(H, W)`` of the grid the weights live on.

    Attributes
    ----------
    weight : Parameter
        ``(out_channels, in_channels, H, W)``.
    bias : Parameter
        ``(out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, grid_shape: tuple[int, int]) -> None:
        super().__init__()
        height, width = (int(v) for v in grid_shape)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.grid_shape = (height, width)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, height, width))
        self.bias = nn.Parameter(torch.zeros(out_channels, height, width))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Glorot-uniform weights (fan-in ``in_channels``, fan-out ``out_channels``), zero
        biases."""
        limit = math.sqrt(6.0 / (self.in_channels + self.out_channels))
        self.weight.uniform_(-limit, limit)
        self.bias.zero_()

    def _check_window(self, offset: tuple[int, int] | Tensor, h: int, w: int) -> None:
        height, width = self.grid_shape
        if isinstance(offset, Tensor):
            rows, cols = offset[:, 0], offset[:, 1]
            bad = (rows < 0) | (cols < 0) | (rows + h > height) | (cols + w > width)
            if not bool(bad.any()):
                return
            k = int(torch.nonzero(bad)[0, 0])
            received = (
                f"offset[{k}] = ({int(rows[k])}, {int(cols[k])}) (sample {k} of {len(offset)})"
            )
        else:
            row, col = offset
            if 0 <= row and 0 <= col and row + h <= height and col + w <= width:
                return
            received = f"offset = ({row}, {col})"
        if h > height or w > width:
            allowed = (
                f"none: the output patch (h, w) = ({h}, {w}) is larger than the grid, so no "
                "offset fits"
            )
        else:
            allowed = (
                f"0 <= row <= {height - h} and 0 <= col <= {width - w} for an output patch "
                f"(h, w) = ({h}, {w})"
            )
        raise ConfigError(
            f"LocalizedConvBlock: the output window at {received} with size (h, w) = "
            f"({h}, {w}) falls outside the training grid grid_shape=({height}, {width}) "
            f"the per-pixel weights live on. Allowed: {allowed}. Fix: pass offset= the "
            "high-resolution (row, col) of the patch's top-left cell in the training grid; "
            "a model with localcon=True applies only within that grid."
        )

    def forward(self, x: Tensor, offset: Offset = None) -> Tensor:
        """Apply the weights of the cells under each patch.

        Parameters
        ----------
        x : Tensor
            ``(N, in_channels, h, w)``.
        offset : pair of ints or Tensor, optional
            Grid ``(row, col)`` of the top-left cell: one pair for the batch, or an
            integer tensor of shape ``(N, 2)``; None means ``(0, 0)``.

        Returns
        -------
        Tensor
            ``(N, out_channels, h, w)``.

        Raises
        ------
        ConfigError
            ``offset`` is malformed, or a window falls outside ``grid_shape``.
        """
        n, _, h, w = x.shape
        where = _normalise_offset(offset, n)
        self._check_window(where, h, w)
        if isinstance(where, tuple):
            row, col = where
            weight = self.weight[:, :, row : row + h, col : col + w]
            bias = self.bias[:, row : row + h, col : col + w]
            return torch.einsum("oihw,nihw->nohw", weight, x) + bias
        where = where.to(self.weight.device)
        rows = where[:, 0:1] + torch.arange(h, device=where.device)  # (N, h)
        cols = where[:, 1:2] + torch.arange(w, device=where.device)  # (N, w)
        rr, cc = rows[:, :, None], cols[:, None, :]  # broadcast to (N, h, w)
        weight = self.weight[:, :, rr, cc]  # (O, I, N, h, w)
        bias = self.bias[:, rr, cc]  # (O, N, h, w)
        return torch.einsum("oinhw,nihw->nohw", weight, x) + bias.transpose(0, 1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, grid_shape={self.grid_shape}"


class LocalizedConvBlock(nn.Module):
    """DL4DS's Localized Conv Block, tied to the high-resolution training grid.

    ``x -> concat[x, LocallyConnected1x1(2, 2)(TransitionBlock(2)(x), offset)]``: a 1x1
    transition to 2 channels (with activation), then per-pixel 2 -> 2 weights and
    zero-initialised biases on ``grid_shape`` (see :class:`LocallyConnected1x1`); the
    result is appended to the input (2 more channels).

    Unlike DL4DS, whose per-pixel weights are tied to the *patch* (so random patches
    blur them), each patch here uses the weights of its own place in the training grid,
    given by ``offset``.

    Parameters
    ----------
    in_channels : int
        Channels of the high-resolution features.
    grid_shape : (int, int)
        ``(H, W)`` of the high-resolution training grid.
    activation : str, default "relu"
        Activation of the transition.
    """

    #: Channels added by the block.
    channels = 2

    def __init__(
        self, in_channels: int, grid_shape: tuple[int, int], *, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.transition = TransitionBlock(in_channels, self.channels, activation=activation)
        self.local = LocallyConnected1x1(self.channels, self.channels, grid_shape)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the grid the weights live on."""
        return self.local.grid_shape

    def forward(self, x: Tensor, offset: Offset = None) -> Tensor:
        return torch.cat([x, self.local(self.transition(x), offset)], dim=1)


class OutputModule(nn.Module):
    """Localized conv, static branch, transition and final convolutions, at high resolution.

    1. Localized Conv Block (when ``config.localcon``): ``x = concat[x, lcb]`` with
       :class:`LocalizedConvBlock` (2 more channels; per-pixel weights on
       ``config.grid_shape``, picked by ``offset``).
    2. Static branch (when ``config.static_channels > 0``): ``s = ConvBlock(f)(static)``
       (activation and normalization as configured, no dropout), then
       ``x = concat[x, s]``; ``f`` is the width of the high-resolution features.
    3. ``x = TransitionBlock(f0)(x)`` (1x1 conv + activation).
    4. ``x = ConvBlock(f0, activation=None, attention=True)(x)`` with the configured
       normalization and dropout: two linear convs and channel attention.
    5. ``y = ConvBlock(out_channels)(x)``: two convs, unnormalised, each followed by
       ``output_activation`` when ``config.residual`` is False. When it is True the block
       is linear (it predicts a correction; the network applies ``output_activation``
       after adding the interpolation) and its last conv is zero-initialised, so a fresh
       network returns the interpolation exactly.

    Step 5 has no normalization, unlike DL4DS: a channels-first layer normalization of a
    single output channel is identically its shift, and the zero-initialised last conv
    needs no normalization after it.

    Parameters
    ----------
    in_channels : int
        Width ``f`` of the high-resolution features.
    config : ModelConfig
        Gives ``localcon``, ``grid_shape``, ``static_channels``, ``n_filters``,
        ``out_channels``, ``activation``, ``normalization``, ``dropout_rate``,
        ``output_activation`` and ``residual``.

    Attributes
    ----------
    localized : LocalizedConvBlock or None
    static_branch : ConvBlock or None
    transition : TransitionBlock
    refine : ConvBlock
    final : ConvBlock
    """

    def __init__(self, in_channels: int, config: ModelConfig) -> None:
        super().__init__()
        f0 = config.n_filters
        self.static_channels = config.static_channels
        width = in_channels
        self.localized: LocalizedConvBlock | None = None
        if config.localcon:
            if config.grid_shape is None:  # ModelConfig refuses this; kept for safety
                raise ConfigError(
                    "OutputModule: localcon=True needs grid_shape=(H, W). Fix: pass grid_shape."
                )
            self.localized = LocalizedConvBlock(
                in_channels, config.grid_shape, activation=config.activation
            )
            width += LocalizedConvBlock.channels
        self.static_branch: ConvBlock | None = None
        if config.static_channels > 0:
            self.static_branch = ConvBlock(
                config.static_channels,
                in_channels,
                activation=config.activation,
                normalization=config.normalization,
                dropout_rate=0.0,
                attention=False,
            )
            width += in_channels
        self.transition, self.refine, self.final = output_head(width, f0, config)

    def forward(self, x: Tensor, static: Tensor | None = None, offset: Offset = None) -> Tensor:
        """Map high-resolution features ``(N, f, H', W')`` to ``(N, out_channels, H', W')``.

        ``static`` is ``(N, static_channels, H', W')``, required when the module has a
        static branch; ``offset`` places the patch in the training grid for the
        Localized Conv Block and is ignored without it.
        """
        if self.localized is not None:
            x = self.localized(x, offset)
        if self.static_branch is not None:
            if static is None:  # DownscalingNet checks this; kept for direct use
                raise ConfigError(
                    f"OutputModule: static_channels={self.static_channels} but no static "
                    "fields were given. Fix: pass static=."
                )
            x = torch.cat([x, self.static_branch(static)], dim=1)
        return self.final(self.refine(self.transition(x)))


def output_head(
    in_channels: int, mid: int, config: ModelConfig
) -> tuple[TransitionBlock, ConvBlock, ConvBlock]:
    """The last blocks of DL4DS's output module (shared by spatial and recurrent nets).

    A 1x1 transition to ``mid`` channels; a conv block to ``n_filters`` channels with
    channel attention, no activation and the configured dropout; the output conv block to
    ``out_channels`` channels, unnormalised, whose last convolution starts at zero when
    ``config.residual`` (so a fresh network returns the interpolation).
    """
    f0 = config.n_filters
    transition = TransitionBlock(in_channels, mid, activation=config.activation)
    refine = ConvBlock(
        mid,
        f0,
        activation=None,
        normalization=config.normalization,
        dropout_rate=config.dropout_rate,
        dropout_variant=config.dropout_variant,
        attention=True,
    )
    final = ConvBlock(
        f0,
        config.out_channels,
        activation=None if config.residual else config.output_activation,
        normalization=None,
        dropout_rate=0.0,
        attention=False,
    )
    if config.residual:
        nn.init.zeros_(final.conv2.weight)
        if final.conv2.bias is not None:  # always: the block is unnormalised
            nn.init.zeros_(final.conv2.bias)
    return transition, refine, final
