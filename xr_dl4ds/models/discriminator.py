"""The conditional residual discriminator of DL4DS (reference report §2.5), in PyTorch.

The discriminator judges a *pair*: the low-resolution network input (the condition)
and a high-resolution field, either the target ("real") or a generator's output
("fake"). It is used by :func:`xr_dl4ds.training.adversarial.train_adversarial`
(pix2pix-style conditional GAN, DL4DS's ``CGANTrainer``).

Architecture (``f = n_filters``)::

    low-res input x (N, in_channels, h, w)
      conv3x3(f) + act = a  ->  n_res_blocks x ResidualBlock(f)  ->  conv3x3(f)  -> + a
    high-res field y (N, out_channels [+ static_channels], h*scale, w*scale)
      conv3x3(f) + act  ->  n_res_blocks x ResidualBlock(f)  ->  down to (h, w)
    concat (2f)  ->  ResidualBlock(f)  ->  global average pool  ->  Dropout(dropout)
      ->  Linear(32) + act  ->  Linear(1)  =  logit (N, 1)

Bringing the high-resolution branch down to the low-resolution size:

* ``scale`` a power of 2 (2, 4, 8, ...): ``log2(scale)`` learned stride-2 3x3
  convolutions (each followed by the activation), as DL4DS does for x4;
* any other scale (3, 5, 6, ...): an average pool of each ``scale x scale`` block
  (:func:`torch.nn.functional.adaptive_avg_pool2d` to the low-resolution size, which is
  exactly the block mean since the fine grid is ``scale`` times the coarse one), followed
  by a learned conv3x3 + activation. DL4DS uses two *valid* stride-2 convs plus a crop
  for x5 and a bilinear resize otherwise; a block mean is aligned with the coarse cells
  (block-mean coarsening is the pairing convention of xr_dl4ds) and works for every
  size, including ``h = w = 1``.

Deliberate differences from DL4DS:

* **logits, not probabilities.** The last layer is linear; the loop uses
  :func:`torch.nn.functional.binary_cross_entropy_with_logits`, which is the same loss
  as DL4DS's ``sigmoid`` + BCE but numerically stable (no ``log(0)`` when the
  discriminator saturates). Apply :func:`torch.sigmoid` to get DL4DS's probability;
* **any number of target variables.** The high-resolution branch takes
  ``config.out_channels`` channels; DL4DS hard-codes 1;
* **static fields give context.** When the generator has high-resolution static fields
  (``config.static_channels > 0``), they are concatenated to the high-resolution field,
  so the discriminator judges the field in its geographic context (a sharp gradient on
  a mountain ridge is plausible, on a plain it is not). Without static fields it works
  the same (DL4DS's ``CGANTrainer`` fails then, its bug 5);
* **hidden activation.** ``activation`` (default ``"leaky_relu"``, the usual choice for
  GAN discriminators, which keeps a gradient for negative inputs) is used everywhere,
  including the ``Linear(32)`` layer where DL4DS has a sigmoid;
* **spatio-temporal generators** (``config.time_window`` set): the time axis is folded
  into the batch, so the discriminator judges every frame on its own (with the static
  fields repeated over time) and returns one logit per frame, ``(N * T, 1)``. DL4DS uses
  a recurrent conv block on the input branch and 3-D pooling instead; judging frames
  keeps one architecture and works for windows of any length;
* **pre-upsampling generators** (``"pin"``) need nothing special: their condition is
  still the low-resolution input (the generator interpolates it itself). DL4DS adds a
  conv skip in that case;
* replicated borders in every convolution, as everywhere in xr_dl4ds.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models.blocks import ResidualBlock, conv3x3, make_activation
from xr_dl4ds.models.config import ACTIVATIONS, ModelConfig

__all__ = ["ResidualDiscriminator"]


def _shape(t: object) -> str:
    shape = getattr(t, "shape", None)
    return str(tuple(shape)) if shape is not None else type(t).__name__


def _is_power_of_two(n: int) -> bool:
    return n >= 2 and (n & (n - 1)) == 0


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(
            f"ResidualDiscriminator: invalid {name}={value!r}. Allowed: an integer >= "
            f"{minimum}. Fix: pass e.g. {name}={max(minimum, 1)}."
        )
    return int(value)


def _strided_conv(width: int) -> nn.Conv2d:
    """A 3x3 stride-2 convolution that halves an even size (replicated borders, Glorot)."""
    conv = nn.Conv2d(width, width, 3, stride=2, padding=1, padding_mode="replicate")
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _res_blocks(width: int, n: int, activation: str) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(width, width, activation=activation) for _ in range(n)))


class ResidualDiscriminator(nn.Module):
    """DL4DS's residual discriminator, conditional on the low-resolution input.

    It is built from the generator's :class:`~xr_dl4ds.models.ModelConfig`, which fixes
    the channels (``in_channels``, ``out_channels``, ``static_channels``), the
    ``scale`` and whether samples are sequences (``time_window``). The output is a
    **logit** (see the module docstring for this and the other differences from DL4DS).

    Parameters
    ----------
    config : ModelConfig
        The generator's configuration, kept as ``config``.
    n_filters : int, default 32
        Width ``f`` of both branches (DL4DS: 8 by default, 32 in its CLI).
    n_res_blocks : int, default 4
        Residual blocks in each branch (0 is allowed).
    dropout : float, default 0.4
        Dropout rate before the dense layers, in ``[0, 1)``.
    activation : str, default "leaky_relu"
        Hidden activation, one of ``"relu", "elu", "gelu", "leaky_relu", "selu",
        "silu"``.
    hidden_units : int, default 32
        Width of the hidden dense layer.

    Raises
    ------
    ConfigError
        ``config`` is not a ModelConfig, or an option is invalid.

    Examples
    --------
    >>> import torch
    >>> from xr_dl4ds.models import ModelConfig
    >>> from xr_dl4ds.models.discriminator import ResidualDiscriminator
    >>> cfg = ModelConfig(scale=3, in_channels=2, static_channels=1)
    >>> disc = ResidualDiscriminator(cfg, n_filters=8, n_res_blocks=1)
    >>> x = torch.zeros(2, 2, 5, 4)                 # low-res input (the condition)
    >>> y = torch.zeros(2, 1, 15, 12)               # real or generated high-res field
    >>> s = torch.zeros(2, 1, 15, 12)               # high-res static fields
    >>> disc(x, y, s).shape                         # one logit per sample
    torch.Size([2, 1])
    """

    config: ModelConfig
    n_filters: int
    n_res_blocks: int
    strided: bool
    lr_in: nn.Conv2d
    lr_act: nn.Module
    lr_blocks: nn.Sequential
    lr_out: nn.Conv2d
    hr_in: nn.Conv2d
    hr_act: nn.Module
    hr_blocks: nn.Sequential
    hr_down: nn.Sequential
    merge: ResidualBlock
    dropout: nn.Dropout
    fc: nn.Linear
    fc_act: nn.Module
    logit: nn.Linear

    def __init__(
        self,
        config: ModelConfig,
        *,
        n_filters: int = 32,
        n_res_blocks: int = 4,
        dropout: float = 0.4,
        activation: str = "leaky_relu",
        hidden_units: int = 32,
    ) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(
                "ResidualDiscriminator: expected the generator's ModelConfig, received "
                f"{type(config).__name__}. Fix: pass generator.config."
            )
        f = _check_int("n_filters", n_filters, 1)
        n_res_blocks = _check_int("n_res_blocks", n_res_blocks, 0)
        hidden_units = _check_int("hidden_units", hidden_units, 1)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0.0 <= float(dropout) < 1.0
        ):
            raise ConfigError(
                f"ResidualDiscriminator: invalid dropout={dropout!r}. Allowed: a float in "
                "[0, 1). Fix: pass e.g. dropout=0.4 (DL4DS) or dropout=0.0."
            )
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"ResidualDiscriminator: invalid activation={activation!r}. Allowed: "
                f"{', '.join(repr(a) for a in ACTIVATIONS)}. Fix: pass one of them."
            )
        self.config = config
        self.n_filters = f
        self.n_res_blocks = n_res_blocks

        # condition: the low-resolution input
        self.lr_in = conv3x3(config.in_channels, f)
        self.lr_act = make_activation(activation)
        self.lr_blocks = _res_blocks(f, n_res_blocks, activation)
        self.lr_out = conv3x3(f, f)

        # the real or generated high-resolution field, with the static fields as context
        self.hr_in = conv3x3(config.out_channels + config.static_channels, f)
        self.hr_act = make_activation(activation)
        self.hr_blocks = _res_blocks(f, n_res_blocks, activation)
        self.strided = _is_power_of_two(config.scale)
        down: list[nn.Module] = []
        if self.strided:
            for _ in range(config.scale.bit_length() - 1):
                down += [_strided_conv(f), make_activation(activation)]
        else:  # block-mean pool in forward, then a learned conv
            down += [conv3x3(f, f), make_activation(activation)]
        self.hr_down = nn.Sequential(*down)

        # head
        self.merge = ResidualBlock(2 * f, f, activation=activation)
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(f, hidden_units)
        self.fc_act = make_activation(activation)
        self.logit = nn.Linear(hidden_units, 1)

    @property
    def scale(self) -> int:
        """The scale factor of the generator."""
        return self.config.scale

    # ------------------------------------------------------------------ input checks
    def _fold(
        self, x: Tensor, y: Tensor, static: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Check the shapes; fold time into the batch for spatio-temporal configs."""
        cfg = self.config
        temporal = cfg.time_window is not None
        ndim = 5 if temporal else 4
        lead = "N, T, " if temporal else "N, "
        if getattr(x, "ndim", None) != ndim or x.shape[-3] != cfg.in_channels:
            raise ConfigError(
                f"ResidualDiscriminator: expected the low-resolution input of shape "
                f"({lead}in_channels={cfg.in_channels}, h, w), received {_shape(x)}. Fix: "
                "pass the generator's input (batch.lowres)."
            )
        h, w = x.shape[-2:]
        expected = (*x.shape[:-3], cfg.out_channels, h * cfg.scale, w * cfg.scale)
        if getattr(y, "ndim", None) != ndim or tuple(y.shape) != expected:
            raise ConfigError(
                f"ResidualDiscriminator: expected the high-resolution field of shape "
                f"{expected} ({lead}out_channels, h*scale, w*scale) for a low-resolution "
                f"input of shape {_shape(x)} and scale={cfg.scale}, received {_shape(y)}. "
                "Fix: pass the target or the generator's output for that input."
            )
        n = x.shape[0]
        s_expected = (n, cfg.static_channels, h * cfg.scale, w * cfg.scale)
        if cfg.static_channels == 0:
            if static is not None:
                raise ConfigError(
                    f"ResidualDiscriminator: received static fields of shape {_shape(static)} "
                    "but the generator's config has static_channels=0. Fix: drop static=."
                )
        elif static is None or static.ndim != 4 or tuple(static.shape) != s_expected:
            raise ConfigError(
                f"ResidualDiscriminator: expected static fields of shape {s_expected} (N, "
                f"static_channels, h*scale, w*scale, shared by all time steps), received "
                f"{_shape(static)}. Fix: pass the generator's static input (batch.static)."
            )
        if temporal:
            t = x.shape[1]
            x = x.flatten(0, 1)
            y = y.flatten(0, 1)
            if static is not None:
                static = static.unsqueeze(1).expand(n, t, *static.shape[1:]).flatten(0, 1)
        return x, y, static

    # ------------------------------------------------------------------ forward
    def forward(self, lowres: Tensor, highres: Tensor, static: Tensor | None = None) -> Tensor:
        """Score a (low-resolution input, high-resolution field) pair.

        Parameters
        ----------
        lowres : Tensor
            The condition, the generator's input: ``(N, in_channels, h, w)``, or
            ``(N, T, in_channels, h, w)`` for a spatio-temporal config; ``h, w >= 1``.
        highres : Tensor
            The real or generated field: ``(N, out_channels, h * scale, w * scale)``, or
            ``(N, T, out_channels, h * scale, w * scale)``. Masked cells should be set
            to 0 first (:func:`xr_dl4ds.training.adversarial.apply_mask`).
        static : Tensor, optional
            ``(N, static_channels, h * scale, w * scale)`` high-resolution static fields
            (required when ``config.static_channels > 0``, refused otherwise).

        Returns
        -------
        Tensor
            Logits (positive: "real"): ``(N, 1)``, or ``(N * T, 1)`` (one per frame,
            sample-major) for a spatio-temporal config.

        Raises
        ------
        ConfigError
            An input does not have the expected shape.
        """
        x, y, s = self._fold(lowres, highres, static)
        a = self.lr_act(self.lr_in(x))
        cond = self.lr_out(self.lr_blocks(a)) + a

        if s is not None:
            y = torch.cat([y, s], dim=1)
        hr = self.hr_blocks(self.hr_act(self.hr_in(y)))
        if not self.strided:
            hr = F.adaptive_avg_pool2d(hr, cond.shape[-2:])  # block mean of scale x scale
        hr = self.hr_down(hr)

        z = self.merge(torch.cat([cond, hr], dim=1)).mean(dim=(2, 3))
        z = self.fc_act(self.fc(self.dropout(z)))
        return self.logit(z)

    def extra_repr(self) -> str:
        return (
            f"n_filters={self.n_filters}, n_res_blocks={self.n_res_blocks}, "
            f"scale={self.config.scale}, "
            f"down={'strided convs' if self.strided else 'block-mean pool + conv'}"
        )
