"""Tests of the output module and of the Localized Conv Block (per-pixel weights on the
high-resolution training grid, picked by the patch offset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models import DownscalingNet, create_model
from xr_dl4ds.models.output import LocalizedConvBlock, LocallyConnected1x1

GRID = (16, 20)  # high-resolution training grid
SMALL = {"n_filters": 4, "n_blocks": 1}


def _x(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _lcb_net(upsampling: str = "spc", **options: object) -> DownscalingNet:
    torch.manual_seed(0)
    kwargs: dict[str, object] = {
        "upsampling": upsampling,
        "scale": 2,
        "in_channels": 2,
        "static_channels": 1,
        "localcon": True,
        "grid_shape": GRID,
        "residual": False,
        **SMALL,
    }
    kwargs.update(options)
    net = create_model(**kwargs)
    local = _local(net)
    with torch.no_grad():  # non-zero biases, so that every cell is distinct
        local.bias.normal_()
    return net


def _local(net: DownscalingNet) -> LocallyConnected1x1:
    assert net.output.localized is not None
    return net.output.localized.local


def _manual(local: LocallyConnected1x1, x: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """The locally connected layer written out cell by cell, at offset (row, col)."""
    _, _, h, w = x.shape
    out = torch.zeros(x.shape[0], local.out_channels, h, w)
    for i in range(h):
        for j in range(w):
            weight = local.weight[:, :, row + i, col + j]  # (out, in)
            out[:, :, i, j] = x[:, :, i, j] @ weight.T + local.bias[:, row + i, col + j]
    return out


# --------------------------------------------------------------------------- structure


def test_lcb_parameters_live_on_the_training_grid() -> None:
    net = _lcb_net()
    local = _local(net)
    assert local.weight.shape == (2, 2, *GRID)
    assert local.bias.shape == (2, *GRID)
    fresh = create_model(localcon=True, grid_shape=GRID, scale=2, **SMALL)
    assert torch.count_nonzero(_local(fresh).bias) == 0  # zero-initialised biases
    # the parameter count grows with the grid: 2x2 weights + 2 biases per cell
    plain = create_model(scale=2, **SMALL)
    f_n, f0 = plain.backbone.out_channels, plain.config.n_filters
    lcb_net = create_model(localcon=True, grid_shape=(7, 9), scale=2, **SMALL)

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    transition = f_n * 2 + 2  # 1x1 conv to 2 channels
    transition_last = 2 * f0  # two more input channels of the 1x1 TransitionLast
    assert count(lcb_net) - count(plain) == transition + 6 * 7 * 9 + transition_last


def test_lcb_widths_follow_the_reference_example() -> None:
    # resnet + spc, f0 = 8, N = 6, one static field: 48 -> LCB 50 -> static 98 -> 8 -> 1
    net = create_model(scale=2, static_channels=1, localcon=True, grid_shape=(8, 8))
    assert net.backbone.out_channels == 48
    assert net.output.transition.conv.in_channels == 98
    assert net.output.final.conv2.out_channels == 1


def test_without_localcon_there_is_no_lcb_and_offset_is_ignored() -> None:
    net = create_model(scale=2, residual=False, **SMALL)
    assert net.output.localized is None
    x = _x(2, 1, 3, 5)
    expected = net(x)
    torch.testing.assert_close(net(x, offset=(1000, -3)), expected, rtol=0, atol=0)
    torch.testing.assert_close(net(x, None, torch.zeros(7, 5)), expected, rtol=0, atol=0)


@pytest.mark.parametrize("upsampling", ["spc", "pin"])
def test_fresh_residual_lcb_network_is_the_interpolation(upsampling: str) -> None:
    net = create_model(
        upsampling=upsampling, scale=2, localcon=True, grid_shape=GRID, in_channels=2, **SMALL
    )
    x = _x(3, 2, 4, 5)
    expected = F.interpolate(x[:, :1], scale_factor=2, mode="bicubic", align_corners=False)
    actual = net(x, offset=torch.tensor([[0, 0], [8, 10], [3, 7]]))
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- position


@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (9, 12)])
def test_locally_connected_uses_the_weights_under_the_patch(offset: tuple[int, int]) -> None:
    torch.manual_seed(0)
    local = LocallyConnected1x1(2, 2, (12, 16))
    with torch.no_grad():
        local.bias.normal_()
    x = _x(2, 2, 3, 4)
    expected = _manual(local, x, *offset)
    torch.testing.assert_close(local(x, offset), expected)
    # the same offset given per sample, as a tensor, gives the same result
    per_sample = torch.tensor([offset, offset])
    torch.testing.assert_close(local(x, per_sample), expected)


@pytest.mark.parametrize("upsampling", ["spc", "dc", "pin"])
def test_network_passes_the_offset_to_the_lcb(upsampling: str) -> None:
    net = _lcb_net(upsampling)
    local = _local(net)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = local.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    x, static = _x(1, 2, 4, 5), _x(1, 1, 8, 10, seed=1)
    net(x, static, offset=(6, 9))
    handle.remove()
    ((lcb_in, lcb_out),) = seen
    assert lcb_in.shape[-2:] == (8, 10)  # the LCB works on the high-resolution output
    torch.testing.assert_close(lcb_out, _manual(local, lcb_in, 6, 9))


@pytest.mark.parametrize("upsampling", ["spc", "pin"])
def test_batch_with_per_sample_offsets_equals_each_sample_alone(upsampling: str) -> None:
    net = _lcb_net(upsampling)
    offsets = [(0, 0), (8, 10), (3, 7), (8, 0)]  # output patches of 8 x 10 in a 16 x 20 grid
    x, static = _x(4, 2, 4, 5), _x(4, 1, 8, 10, seed=1)
    actual = net(x, static, offset=torch.tensor(offsets))
    for k, offset in enumerate(offsets):
        expected = net(x[k : k + 1], static[k : k + 1], offset=offset)
        torch.testing.assert_close(actual[k : k + 1], expected, rtol=1e-5, atol=1e-6)
    # the patches differ only through their position
    same_x = net(
        x[:1].expand(4, -1, -1, -1), static[:1].expand(4, -1, -1, -1), torch.tensor(offsets)
    )
    assert not torch.allclose(same_x[0], same_x[1])


def test_changing_one_cell_changes_only_the_patches_covering_it() -> None:
    net = _lcb_net(activation="elu")  # no dead ReLU can hide the change
    local = _local(net)
    h, w = 8, 10  # output patch
    x, static = _x(1, 2, 4, 5), _x(1, 1, h, w, seed=1)
    offsets = [(a, b) for a in range(0, GRID[0] - h + 1, 2) for b in range(0, GRID[1] - w + 1, 3)]
    before = [net(x, static, offset=o) for o in offsets]
    row, col = 9, 11
    with torch.no_grad():
        local.weight[:, :, row, col] += 1.0
        local.bias[:, row, col] += 1.0
    covering = 0
    for (a, b), old in zip(offsets, before, strict=True):
        new = net(x, static, offset=(a, b))
        covers = a <= row < a + h and b <= col < b + w
        covering += covers
        assert torch.equal(new, old) == (not covers), (a, b)
    assert 0 < covering < len(offsets)


@pytest.mark.parametrize("upsampling", ["spc", "pin"])
def test_offset_none_is_the_origin(upsampling: str) -> None:
    net = _lcb_net(upsampling)
    x, static = _x(2, 2, 4, 5), _x(2, 1, 8, 10, seed=1)
    expected = net(x, static, offset=(0, 0))
    torch.testing.assert_close(net(x, static), expected, rtol=0, atol=0)
    zeros = torch.zeros(2, 2, dtype=torch.long)
    torch.testing.assert_close(net(x, static, offset=zeros), expected)
    # numpy offsets (e.g. from a batch sampler) and other integer dtypes are accepted
    as_numpy = np.array([[0, 0], [0, 0]], dtype=np.int32)
    torch.testing.assert_close(net(x, static, offset=as_numpy), expected)
    torch.testing.assert_close(net(x, static, offset=torch.tensor([0, 0])), expected)


def test_full_grid_prediction() -> None:
    net = _lcb_net()
    actual = net(_x(1, 2, 8, 10), _x(1, 1, *GRID, seed=1))
    assert actual.shape == (1, 1, *GRID)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("offset", "received"),
    [
        ((-1, 0), r"offset = \(-1, 0\)"),
        ((0, -1), r"offset = \(0, -1\)"),
        ((9, 0), r"offset = \(9, 0\)"),
        ((0, 11), r"offset = \(0, 11\)"),
        (torch.tensor([[0, 0], [8, 11]]), r"offset\[1\] = \(8, 11\) \(sample 1 of 2\)"),
    ],
)
def test_out_of_grid_offset_raises(offset: object, received: str) -> None:
    net = _lcb_net()
    x, static = _x(2, 2, 4, 5), _x(2, 1, 8, 10, seed=1)
    with pytest.raises(ConfigError, match=received) as err:
        net(x, static, offset=offset)
    message = str(err.value)
    assert "grid_shape=(16, 20)" in message
    assert "Allowed: 0 <= row <= 8 and 0 <= col <= 10" in message
    assert "Fix" in message


def test_patch_larger_than_the_grid_raises() -> None:
    net = _lcb_net()
    with pytest.raises(ConfigError, match="larger than the grid, so no offset fits"):
        net(_x(1, 2, 9, 5), _x(1, 1, 18, 10))


@pytest.mark.parametrize(
    "offset",
    [
        (1.0, 2),
        (True, 0),
        (1, 2, 3),
        "0,0",
        torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        torch.zeros(3, 2, dtype=torch.long),  # not one per sample
        torch.zeros(2, 2, 1, dtype=torch.long),
    ],
)
def test_malformed_offset_raises(offset: object) -> None:
    net = _lcb_net()
    x, static = _x(2, 2, 4, 5), _x(2, 1, 8, 10, seed=1)
    with pytest.raises(ConfigError, match="invalid offset") as err:
        net(x, static, offset=offset)
    assert "shape (2, 2)" in str(err.value) and "Fix" in str(err.value)


def test_lcb_block_appends_two_channels() -> None:
    block = LocalizedConvBlock(6, (5, 7))
    x = _x(2, 6, 5, 7)
    actual = block(x)
    assert actual.shape == (2, 8, 5, 7)
    torch.testing.assert_close(actual[:, :6], x, rtol=0, atol=0)
    assert block.grid_shape == (5, 7)
