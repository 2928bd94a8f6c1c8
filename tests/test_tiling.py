"""Tests of exact tiled inference at the torch level (xr_dl4ds.models.tiling)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models import create_model, list_recurrent_backbones, valid_combinations
from xr_dl4ds.models.blocks import ChannelAttention, attention_mean_hook
from xr_dl4ds.models.output import LocallyConnected1x1
from xr_dl4ds.models.tiling import (
    frozen_attention,
    receptive_field,
    tile_alignment,
    tiled_forward,
)
from xr_dl4ds.models.unet import UNetBackbone

SPATIAL = valid_combinations()
TEMPORAL = [(b, u) for b in list_recurrent_backbones() for u in ("spc", "rc", "dc", "pin")]
DOMAIN = (17, 22)  # low-resolution; tiles of (6, 8) leave smaller edge tiles
TILE = (6, 8)
TOL = 1e-5

_NETS: dict[tuple, nn.Module] = {}


def _randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (a fresh network's last convolution is zero, so it
    would return the interpolation), with small positive biases so that ReLUs live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.2 + 0.05)
            else:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        for m in net.modules():
            if isinstance(m, LocallyConnected1x1):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_channels))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(1.0, 2.0)
    return net.eval()


def _net(backbone: str, upsampling: str, dtype=torch.float32, **options) -> nn.Module:
    """A tiny random network, built once per set of options (its receptive field is
    cached on it)."""
    key = (backbone, upsampling, dtype, tuple(sorted(options.items())))
    if key not in _NETS:
        n_blocks = 2 if backbone == "unet" else 1
        config = {"n_filters": 4, "n_blocks": n_blocks, "in_channels": 2, **options}
        net = create_model(backbone, upsampling=upsampling, **config)
        _NETS[key] = _randomize(net, seed=len(_NETS)).to(dtype)
    return _NETS[key]


def _spatial_options(i: int, backbone: str) -> dict:
    # float32 rounding differs between window sizes (other convolution algorithms), and
    # the deeper UNet amplifies it past 1e-5 (up to 2e-4 with "ln" over 4 channels), so
    # its exactness is checked in float64; test_unet_in_float32 bounds float32
    return {
        "scale": (2, 3, 4)[i % 3],
        "normalization": (None, "ln", "bn")[(i // 3) % 3],
        "dtype": torch.float64 if backbone == "unet" else torch.float32,
    }


def _field(backbone: str, scale: int, time_window: int | None = None) -> tuple[int, int]:
    """A field larger than a tile and a receptive field, so that windows are cut."""
    if backbone == "unet" and scale < 4:  # a receptive field of 20 to 22 pixels
        return (31, 34)
    return (21, 25) if time_window else DOMAIN


def _domain(net: nn.Module) -> tuple[int, int]:
    return _field(net.config.backbone, net.scale, net.config.time_window)


def _inputs(net: nn.Module, n: int = 2, size=None, frames: int | None = None, seed=0):
    size = _domain(net) if size is None else size
    g = torch.Generator().manual_seed(seed)
    cfg = net.config
    lead = (n,) if frames is None else (n, frames)
    x = torch.randn(*lead, cfg.in_channels, *size, generator=g)
    static = None
    if cfg.static_channels:
        hr = (size[0] * cfg.scale, size[1] * cfg.scale)
        static = torch.randn(cfg.static_channels, *hr, generator=g)
    return x, static


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def _batched(static, n):
    return None if static is None else static.expand(n, *static.shape)


def _window_shapes(net, *args, **kwargs) -> list[tuple[int, int]]:
    """The low-resolution shapes of the windows of every forward pass."""
    shapes = []
    handle = net.register_forward_pre_hook(lambda _m, a: shapes.append(tuple(a[0].shape[-2:])))
    try:
        tiled_forward(net, *args, **kwargs)
    finally:
        handle.remove()
    return shapes


def _assert_cut(net, field, tile=TILE, frames=None) -> None:
    """The first window ends inside the field along each axis (the test is not trivial)."""
    a, rf = tile_alignment(net), receptive_field(net, time_window=frames)
    assert all(_round_up(t, a) + r < n for t, r, n in zip(tile, rf, field, strict=True))


def _large_tile(net, field, frames=None) -> tuple[int, int]:
    """The largest tile whose first window is still cut inside the field (few windows,
    so a fast test), with smaller tiles at the end of each axis."""
    a, rf = tile_alignment(net), receptive_field(net, time_window=frames)
    tile = []
    for n, r in zip(field, rf, strict=True):
        t = max(a, (n - r - 1) // a * a)
        tile.append(t - a if n % t == 0 and t > a else t)
    _assert_cut(net, field, tile, frames)
    assert all(n % t for n, t in zip(field, tile, strict=True))  # an edge tile
    return (tile[0], tile[1])


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize(("i", "combo"), list(enumerate(SPATIAL)))
def test_untiled_is_the_network_itself(i, combo, attention) -> None:
    net = _net(*combo, attention=attention, static_channels=1, **_spatial_options(i, combo[0]))
    x, static = _inputs(net)
    dtype = next(net.parameters()).dtype
    with torch.no_grad():
        expected = net(x.to(dtype), _batched(static, 2).to(dtype)).float()
    actual = tiled_forward(net, x, static)
    assert actual.dtype == torch.float32 and actual.device.type == "cpu"
    assert _max_diff(actual, expected) <= TOL


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize(("i", "combo"), list(enumerate(SPATIAL)))
def test_tiled_equals_untiled(i, combo, attention) -> None:
    net = _net(*combo, attention=attention, static_channels=1, **_spatial_options(i, combo[0]))
    x, static = _inputs(net)
    expected = tiled_forward(net, x, static)
    actual = tiled_forward(net, x, static, tile=_large_tile(net, x.shape[-2:]))
    assert _max_diff(actual, expected) <= TOL
    assert float(expected.abs().max()) > 0.1  # a live network, not a trivial zero


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize(("i", "combo"), list(enumerate(SPATIAL)))
def test_periodic_tiles_equal_the_periodic_window(i, combo, attention) -> None:
    net = _net(*combo, attention=attention, **_spatial_options(i, combo[0]))
    # the UNet (receptive field 20, alignment 4) is cut along the periodic x only
    size, tile = ((9, 34), (9, 8)) if combo[0] == "unet" else (DOMAIN, TILE)
    x, _ = _inputs(net, size=size)
    expected = tiled_forward(net, x, periodic=True)
    actual = tiled_forward(net, x, tile=tile, periodic=True)
    assert _max_diff(actual, expected) <= TOL


@pytest.mark.parametrize("combo", [("resnet", "spc"), ("convnext", "rc"), ("densenet", "pin")])
def test_periodic_output_turns_with_the_input(combo) -> None:
    # along a periodic axis, rolling the input rolls the output: no seam at the border,
    # and the attention means are over the field, not over its wrapped halo
    net = _net(*combo, attention=True, scale=2)
    x, _ = _inputs(net)
    y = tiled_forward(net, x, periodic=True)
    for k in (3, 7):
        rolled = tiled_forward(net, torch.roll(x, k, dims=-1), tile=(5, 6), periodic=True)
        assert _max_diff(rolled, torch.roll(y, 2 * k, dims=-1)) <= TOL
    # and the non-periodic network differs near the x borders
    assert _max_diff(tiled_forward(net, x), y) > 1e-3


@pytest.mark.parametrize("combo", [("resnet", "dc"), ("unet", "pin")])
def test_periodic_window_is_the_network_on_a_wrapped_field(combo) -> None:
    net = _net(*combo, scale=2)
    x, _ = _inputs(net)
    hx, w = receptive_field(net)[1], x.shape[-1]
    wrapped = torch.cat([x[..., w - hx :], x, x[..., :hx]], dim=-1)

    def mean_over_the_field(module, t):  # the head's attention, at high resolution
        return t[..., 2 * hx : 2 * (hx + w)].mean(dim=(2, 3), keepdim=True)

    with torch.no_grad(), attention_mean_hook(mean_over_the_field):
        expected = net(wrapped)[..., 2 * hx : 2 * (hx + w)]
    assert _max_diff(tiled_forward(net, x, periodic=True), expected) <= TOL


@pytest.mark.parametrize(
    ("normalization", "periodic", "tol"), [(None, True, 3e-5), ("ln", False, 1e-4)]
)
def test_unet_in_float32(normalization, periodic, tol) -> None:
    # float32 rounding differs between windows of different sizes (other convolution
    # algorithms) and the UNet amplifies it, the more with a layer normalization over 4
    # channels; in float64 they agree once cast to float32 (test_tiled_equals_untiled)
    net = _net("unet", "pin", attention=True, normalization=normalization, scale=4)
    x, _ = _inputs(net)
    expected = tiled_forward(net, x, periodic=periodic)
    actual = tiled_forward(net, x, tile=TILE, periodic=periodic)
    assert _max_diff(actual, expected) <= tol


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize(("i", "combo"), list(enumerate(TEMPORAL)))
def test_spatio_temporal_tiles_equal_untiled(i, combo, attention) -> None:
    net = _net(*combo, attention=attention, static_channels=1, time_window=3,
               scale=(2, 3, 4)[i % 3])  # fmt: skip
    x, static = _inputs(net, n=1, frames=2)  # the head's means are per frame
    with torch.no_grad():
        expected = net(x, _batched(static, 1))
    assert _max_diff(tiled_forward(net, x, static), expected) <= TOL
    h, w = x.shape[-2:]
    actual = tiled_forward(net, x, static, tile=_large_tile(net, (h, w), frames=2))
    assert actual.shape == (1, 2, 1, h * net.scale, w * net.scale)
    assert _max_diff(actual, expected) <= TOL


def test_spatio_temporal_periodic_tiles() -> None:
    net = _net("resnet", "spc", attention=True, static_channels=1, time_window=3, scale=2)
    x, static = _inputs(net, frames=2)
    expected = tiled_forward(net, x, static, periodic=True)
    assert _max_diff(tiled_forward(net, x, static, tile=(4, 4), periodic=True), expected) <= TOL


@pytest.mark.parametrize(
    ("combo", "options"),
    [
        (("resnet", "spc"), {"attention": True}),
        (("unet", "pin"), {"attention": True}),
        (("convnet", "dc"), {"static_channels": 1}),
        (("resnet", "rc"), {"time_window": 2}),
    ],
)
def test_localcon_windows_use_their_own_weights(combo, options) -> None:
    scale = 2
    field = _field(combo[0], scale, options.get("time_window"))
    grid = ((field[0] + 4) * scale, (field[1] + 6) * scale)
    net = _net(*combo, localcon=True, grid_shape=grid, scale=scale, **options)
    frames = options.get("time_window")
    x, static = _inputs(net, frames=frames)
    offset = (2 * scale + 1, 3 * scale)  # any high-resolution position in the grid
    with torch.no_grad():
        expected = net(x, _batched(static, 2), offset)
    assert _max_diff(tiled_forward(net, x, static, offset), expected) <= TOL
    # every window gets the offset of its own first cell
    local = next(m for m in net.modules() if isinstance(m, LocallyConnected1x1))
    seen: list[tuple[int, int]] = []
    original = local.forward

    def spy(t, where=None):
        seen.append(tuple(int(v) for v in where))
        return original(t, where)

    local.forward = spy
    try:
        actual = tiled_forward(net, x, static, offset, tile=TILE)
    finally:
        del local.forward
    assert _max_diff(actual, expected) <= TOL
    a, (ry, rx) = tile_alignment(net), receptive_field(net, time_window=frames)
    step_y, step_x = (math.ceil(t / a) * a for t in TILE)
    starts_y = {max(0, (c - ry) // a * a) for c in range(0, field[0], step_y)}
    starts_x = {max(0, (c - rx) // a * a) for c in range(0, field[1], step_x)}
    expected_offsets = {
        (offset[0] + y0 * scale, offset[1] + x0 * scale) for y0 in starts_y for x0 in starts_x
    }
    assert set(seen) == expected_offsets
    with pytest.raises(ConfigError, match="periodic=True with a network with localcon"):
        tiled_forward(net, x, static, offset, periodic=True)


def test_a_halo_smaller_than_the_receptive_field_shows() -> None:
    net = _net("resnet", "spc", attention=True, scale=2)
    x, _ = _inputs(net)
    expected = tiled_forward(net, x)
    rf = receptive_field(net)
    assert _max_diff(tiled_forward(net, x, tile=TILE, halo=rf), expected) <= TOL
    for halo in [(0, 0), (1, 1), (rf[0] // 2, rf[1] // 2)]:
        assert _max_diff(tiled_forward(net, x, tile=TILE, halo=halo), expected) > 1e-3


# --------------------------------------------------------------------------- receptive field


def _brute_force_radius(net, cells, size, frames=None, static_cells=()):
    """Largest low-resolution distance from a perturbed input cell to a changed output
    cell, with the attention frozen, in float64."""
    net64 = _randomize(create_model(net.config), seed=7).double()
    g = torch.Generator().manual_seed(3)
    s = net.scale
    lead = (1,) if frames is None else (1, frames)
    x = torch.randn(*lead, net.config.in_channels, *size, generator=g, dtype=torch.float64)
    static = None
    if net.config.static_channels:
        hr = (size[0] * s, size[1] * s)
        static = torch.randn(1, net.config.static_channels, *hr, generator=g, dtype=torch.float64)
    radius = [0, 0]
    with torch.no_grad(), frozen_attention():
        base = net64(x, static)
        perturbations = []
        for cy, cx in cells:
            xp = x.clone()
            xp[..., cy, cx] += 1.0
            perturbations.append(((cy, cx), xp, static))
        for cy, cx in static_cells:  # a high-resolution static cell in LR cell (cy, cx)
            sp = static.clone()
            sp[..., cy * s, cx * s] += 1.0
            perturbations.append(((cy, cx), x, sp))
        for (cy, cx), xp, sp in perturbations:
            changed = (net64(xp, sp) - base).abs().reshape(-1, size[0] * s, size[1] * s)
            ys, xs = torch.nonzero(changed.sum(0) > 0, as_tuple=True)
            # the change must stay inside the probe, or the field is too small
            assert 0 < int(ys.min()) and int(ys.max()) < size[0] * s - 1
            assert 0 < int(xs.min()) and int(xs.max()) < size[1] * s - 1
            radius[0] = max(radius[0], int((ys // s - cy).abs().max()))
            radius[1] = max(radius[1], int((xs // s - cx).abs().max()))
    return tuple(radius)


@pytest.mark.parametrize(("i", "combo"), list(enumerate(SPATIAL)))
def test_receptive_field_never_underestimates(i, combo) -> None:
    net = _net(*combo, attention=True, static_channels=1, **_spatial_options(i, combo[0]))
    rf = receptive_field(net)
    a = tile_alignment(net)
    size = (2 * rf[0] + 6, 2 * rf[1] + 6)
    c = (size[0] // 2 // a * a, size[1] // 2 // a * a)
    cells = [(c[0] + dy, c[1] + dx) for dy in range(a) for dx in range(a)]
    measured = _brute_force_radius(net, cells, size, static_cells=[c])
    assert measured[0] <= rf[0] and measured[1] <= rf[1]
    # tight: at most the margin (1 pixel, plus 2 alignments for a UNet) above the truth
    assert rf[0] <= measured[0] + 1 + 2 * (a - 1) + (a > 1) * a
    assert measured[0] > 2  # more than the interpolation: the network is live


@pytest.mark.parametrize("combo", TEMPORAL[::3])
def test_receptive_field_of_spatio_temporal_nets_grows_with_time(combo) -> None:
    net = _net(*combo, static_channels=1, time_window=3, scale=2)
    short, long_ = receptive_field(net, time_window=1), receptive_field(net, time_window=4)
    assert long_[0] > short[0] and long_[1] > short[1]
    assert receptive_field(net) == receptive_field(net, time_window=3)
    size = (2 * long_[0] + 6, 2 * long_[1] + 6)
    c = (size[0] // 2, size[1] // 2)
    measured = _brute_force_radius(net, [c], size, frames=4, static_cells=[c])
    assert measured[0] <= long_[0] and measured[1] <= long_[1]
    assert long_[0] <= measured[0] + 1


def test_receptive_field_of_localcon_nets() -> None:
    net = _net("resnet", "spc", localcon=True, grid_shape=(44, 44), scale=2)
    rf = receptive_field(net)  # the probe is larger than the training grid
    measured = _brute_force_radius(net, [(11, 11)], (22, 22))
    assert measured[0] <= rf[0] <= measured[0] + 1


def test_receptive_field_leaves_the_generator_alone() -> None:
    net = create_model("convnext", upsampling="rc", scale=3, n_filters=4, n_blocks=1)
    state = torch.get_rng_state()
    rf = receptive_field(net)
    assert torch.equal(torch.get_rng_state(), state)
    assert receptive_field(net) is rf  # cached per network


def test_tile_alignment() -> None:
    for scale, n_blocks, expected in [(2, 3, 4), (4, 3, 2), (3, 3, 8), (8, 2, 1), (4, 6, 16)]:
        net = create_model("unet", upsampling="pin", scale=scale, n_blocks=n_blocks, n_filters=2)
        assert tile_alignment(net) == expected
    assert tile_alignment(_net("resnet", "dc", scale=4)) == 1
    net = _net("unet", "pin", scale=3)
    assert all(r % tile_alignment(net) == 0 for r in receptive_field(net))


# --------------------------------------------------------------------------- attention passes


@pytest.mark.parametrize(
    ("combo", "options", "attention_layers"),
    [
        (("resnet", "spc"), {"scale": 2}, 1),  # the head's attention only
        (("resnet", "spc"), {"scale": 2, "attention": True}, 2),  # one per block, the head
        (("unet", "pin"), {"scale": 4, "attention": True}, 5),  # 2 down, 2 up, the head
        (("resnet", "pin"), {"scale": 2, "attention": True, "time_window": 2,
                             "static_channels": 1}, 2),  # the static branch, the head
    ],
)  # fmt: skip
def test_one_pass_per_attention_layer(combo, options, attention_layers) -> None:
    net = _net(*combo, **options)
    assert sum(isinstance(m, ChannelAttention) for m in net.modules()) == attention_layers
    x, static = _inputs(net, size=(17, 44), frames=options.get("time_window"))
    (h, w), a = x.shape[-2:], tile_alignment(net)
    windows = math.ceil(h / _round_up(TILE[0], a)) * math.ceil(w / _round_up(TILE[1], a))
    passes = attention_layers + 1
    shapes = _window_shapes(net, x, static, tile=TILE, batch_size=2)
    assert len(shapes) == windows * passes
    assert len(_window_shapes(net, x, static, batch_size=2)) == 1
    assert len(_window_shapes(net, x, static, periodic=True, batch_size=2)) == 1
    # windows of the same shape share forward passes (4 windows of 2 samples at most)
    grouped = _window_shapes(net, x, static, tile=TILE, batch_size=8)
    per_shape = [shapes.count(shape) // passes for shape in set(shapes)]
    assert len(grouped) == passes * sum(math.ceil(c / 4) for c in per_shape)
    assert len(grouped) < len(shapes)


def test_channel_attention_default_is_unchanged() -> None:
    torch.manual_seed(0)
    att = ChannelAttention(6)
    x = torch.randn(3, 6, 5, 7)
    w = x.mean(dim=(2, 3), keepdim=True)
    expected = x * torch.sigmoid(att.excite(torch.relu(att.squeeze(w))))
    assert torch.equal(att(x), expected)


def test_attention_hook_is_local_to_its_thread() -> None:
    net = _net("resnet", "spc", attention=True, scale=2)
    x, _ = _inputs(net)
    with torch.no_grad():
        expected = net(x)
        results = {}
        with frozen_attention():
            frozen = net(x)
            thread = threading.Thread(target=lambda: results.setdefault("y", net(x)))
            thread.start()
            thread.join()
            with attention_mean_hook(None):
                assert torch.equal(net(x), expected)
    assert torch.equal(results["y"], expected)
    assert _max_diff(frozen, expected) > 1e-3


def test_unet_fixed_levels() -> None:
    unet = next(m for m in _net("unet", "pin", scale=2).modules() if isinstance(m, UNetBackbone))
    assert unet.levels(26, 34) == 2 and unet.levels(3, 40) == 1
    with unet.fixed_levels(2):
        assert unet.levels(3, 40) == 2 and unet.padding(3, 40) == (0, 0, 0, 1)
        with unet.fixed_levels(None):
            assert unet.levels(3, 40) == 1
    assert unet.levels(3, 40) == 1
    with pytest.raises(ConfigError, match="levels=3"), unet.fixed_levels(3):
        pass


# --------------------------------------------------------------------------- seeds and batches


@pytest.mark.parametrize(("combo", "scale"), [(("resnet", "spc"), 2), (("unet", "pin"), 4)])
def test_seed_gives_the_same_channel_dropout_masks_in_every_tile(combo, scale) -> None:
    net = _net(*combo, attention=True, dropout_rate=0.5, dropout_variant="mcspatialdrop",
               scale=scale)  # fmt: skip
    x, _ = _inputs(net, n=3)
    state = torch.get_rng_state()
    untiled = tiled_forward(net, x, seed=3, batch_size=2)
    tiled = tiled_forward(net, x, tile=TILE, seed=3, batch_size=2)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert _max_diff(tiled, untiled) <= TOL
    assert _max_diff(tiled_forward(net, x, tile=TILE, seed=4, batch_size=2), untiled) > 1e-3
    # without a seed Monte-Carlo dropout draws new masks
    assert _max_diff(tiled_forward(net, x), tiled_forward(net, x)) > 1e-3


def test_seed_in_spatio_temporal_nets() -> None:
    net = _net("resnet", "spc", time_window=2, dropout_rate=0.5,
               dropout_variant="mcspatialdrop", scale=2)  # fmt: skip
    x, _ = _inputs(net, frames=2)
    untiled = tiled_forward(net, x, seed=0)
    assert _max_diff(tiled_forward(net, x, tile=TILE, seed=0), untiled) <= TOL


@pytest.mark.parametrize(("combo", "scale"), [(("densenet", "rc"), 2), (("unet", "pin"), 4)])
def test_batch_size_does_not_change_the_result(combo, scale) -> None:
    # 3 samples with their own static fields: batches of 1, of 2 then 1, and of 3 with
    # two windows of the same shape per forward pass (6 rows)
    net = _net(*combo, attention=True, static_channels=1, scale=scale)
    x, static = _inputs(net, n=3)
    noise = np.random.default_rng(0).normal(size=(3, *static.shape)).astype(np.float32)
    static_n = static.expand(3, *static.shape) + torch.from_numpy(noise)
    expected = tiled_forward(net, x, static_n, batch_size=3)
    for batch_size in (1, 2, 8):
        assert _max_diff(tiled_forward(net, x, static_n, batch_size=batch_size), expected) <= TOL
        tiled = tiled_forward(net, x, static_n, tile=TILE, batch_size=batch_size)
        assert _max_diff(tiled, expected) <= TOL


def test_numpy_input_and_tiles_larger_than_the_field() -> None:
    net = _net("convnext", "spc", attention=True, scale=2)
    x, _ = _inputs(net)
    expected = tiled_forward(net, x)
    actual = tiled_forward(net, x.numpy().astype(np.float64), tile=(100, 100), halo=(0, 0))
    assert actual.dtype == torch.float32 and _max_diff(actual, expected) <= TOL
    one_axis = tiled_forward(net, x, tile=(4, 100))  # tiled along y only
    assert _max_diff(one_axis, expected) <= TOL


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile": (0, 5)}, r"invalid tile=\(0, 5\).*pair of integers >= 1"),
        ({"tile": 5}, r"invalid tile=5"),
        ({"tile": (4.0, 4)}, r"invalid tile"),
        ({"halo": (-1, 2)}, r"invalid halo=\(-1, 2\).*>= 0"),
        ({"batch_size": 0}, r"invalid batch_size=0.*integer >= 1"),
        ({"batch_size": True}, r"invalid batch_size=True"),
        ({"periodic": "yes"}, r"invalid periodic='yes'"),
        ({"seed": -1}, r"invalid seed=-1"),
        ({"offset": (1, 2, 3)}, r"invalid offset=\(1, 2, 3\)"),
        ({"static": torch.zeros(1, 5, 5)}, r"expected static as a floating-point \(C_s, 34, 44\)"),
        ({"x": torch.zeros(2, 17, 22)}, r"expected x as a floating-point 4-D.*\(N, C_in, h, w\)"),
        ({"x": torch.zeros(2, 2, 17, 22, dtype=torch.int64)}, r"dtype torch.int64"),
        ({"x": torch.zeros(0, 2, 17, 22)}, r"is empty"),
        ({"net": object()}, r"expected a network \(torch.nn.Module\), received object"),
    ],
)
def test_argument_errors(kwargs, match) -> None:
    net = _net("resnet", "spc", scale=2, static_channels=1)
    x, static = _inputs(net)
    arguments = {"net": net, "x": x, "static": static, **kwargs}
    with pytest.raises(ConfigError, match=match):
        tiled_forward(arguments.pop("net"), arguments.pop("x"), **arguments)


def test_receptive_field_argument_errors() -> None:
    net = _net("resnet", "spc", time_window=2, scale=2)
    with pytest.raises(ConfigError, match="invalid time_window=0"):
        receptive_field(net, time_window=0)
    with pytest.raises(ConfigError, match="expected a network"):
        receptive_field("resnet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no integer scale"):
        tile_alignment(nn.Linear(2, 2))


@pytest.mark.parametrize("tile", [None, (5, 6)])
def test_output_affine_denormalizes_each_channel(tile) -> None:
    torch.manual_seed(0)
    net = create_model(
        "resnet", scale=2, n_filters=4, n_blocks=1, in_channels=2, out_channels=2
    ).eval()
    x = torch.rand(3, 2, 9, 11)
    plain = tiled_forward(net, x, tile=tile, batch_size=2)
    std, mean = [2.0, 0.5], [273.15, -1.0]
    out = tiled_forward(net, x, tile=tile, batch_size=2, output_affine=(std, mean))
    assert out.dtype == torch.float32 and out.shape == (3, 2, 18, 22)
    expected = plain * torch.tensor(std).reshape(2, 1, 1) + torch.tensor(mean).reshape(2, 1, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("affine", [([1.0], [0.0, 1.0]), ([1.0, 2.0, 3.0],) * 2, "std"])
def test_output_affine_must_match_the_output_channels(affine) -> None:
    net = create_model(
        "resnet", scale=2, n_filters=4, n_blocks=1, in_channels=2, out_channels=2
    ).eval()
    with pytest.raises(ConfigError, match=r"output_affine=.*one number per output channel \(2\)"):
        tiled_forward(net, torch.rand(1, 2, 4, 4), output_affine=affine)
