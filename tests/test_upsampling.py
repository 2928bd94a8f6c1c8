"""Tests of the upsampling methods (spc, rc, dc, pin) and of the registry's combinations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xr_dl4ds.exceptions import RegistryError, ScaleError
from xr_dl4ds.models import (
    ModelConfig,
    create_model,
    list_backbones,
    list_upsampling,
    list_upsamplings,
    register_backbone,
    valid_combinations,
)
from xr_dl4ds.models import registry as registry_module
from xr_dl4ds.models.base import Backbone, Upsampling
from xr_dl4ds.models.registry import get_upsampling, is_compatible
from xr_dl4ds.models.upsampling import (
    Deconvolution,
    PreInterpolation,
    ResizeConvolution,
    deconvolution_geometry,
)

METHODS = ["spc", "rc", "dc", "pin"]
SCALES = list(range(2, 11))
SMALL = {"n_filters": 4, "n_blocks": 1}


def _x(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", METHODS)
def test_network_output_shape_is_exact(method: str, scale: int) -> None:
    torch.manual_seed(0)
    net = create_model(
        backbone="resnet",
        upsampling=method,
        scale=scale,
        in_channels=3,
        out_channels=2,
        static_channels=1,
        **SMALL,
    )
    for h, w in [(5, 3), (1, 2)]:  # odd, non-square; and a single row
        x = _x(2, 3, h, w)
        static = _x(2, 1, h * scale, w * scale, seed=1)
        actual = net(x, static)
        assert actual.shape == (2, 2, h * scale, w * scale)
        # a fresh residual network is the interpolation, exactly
        expected = F.interpolate(x[:, :2], scale_factor=scale, mode="bicubic", align_corners=False)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("method", METHODS)
def test_module_output_shape_is_exact(method: str, scale: int) -> None:
    cfg = ModelConfig(upsampling=method, scale=scale, in_channels=6, n_filters=4)
    module = get_upsampling(method).from_config(6, cfg)
    assert isinstance(module, Upsampling)
    assert module.scale == scale
    actual = module(_x(2, 6, 5, 3))
    assert actual.shape == (2, module.out_channels, 5 * scale, 3 * scale)
    assert module.out_channels == 6  # every method keeps the width by default
    assert torch.isfinite(actual).all()


@pytest.mark.parametrize("scale", SCALES)
def test_deconvolution_geometry_gives_exact_size(scale: int) -> None:
    stages = deconvolution_geometry(scale)
    expected_strides = {4: [2, 2], 8: [2, 2, 2]}.get(scale, [scale])
    assert [g["stride"] for g in stages] == expected_strides
    for g in stages:
        k, s, p, op = g["kernel_size"], g["stride"], g["padding"], g["output_padding"]
        assert k >= s  # no fine pixel is left without a tap
        assert 0 <= op < s and p >= 0
        for h in [1, 2, 5, 7]:  # ConvTranspose2d output length
            assert (h - 1) * s - 2 * p + k + op == h * s


def test_deconvolution_geometry_table() -> None:
    actual = {s: [tuple(g.values()) for g in deconvolution_geometry(s)] for s in SCALES}
    expected = {
        2: [(9, 2, 4, 1)],
        3: [(9, 3, 3, 0)],
        4: [(9, 2, 4, 1)] * 2,
        5: [(9, 5, 2, 0)],
        6: [(9, 6, 2, 1)],
        7: [(9, 7, 1, 0)],
        8: [(9, 2, 4, 1)] * 3,
        9: [(9, 9, 0, 0)],
        10: [(10, 10, 0, 0)],
    }
    assert actual == expected


def test_dc_x4_is_x4_not_x16() -> None:
    # DL4DS runs the x4 stages and then the one-stage branch too (report §5.7, bug 1)
    dc = Deconvolution(8, 8, 4, mid_channels=4)
    assert len(dc.deconvs) == 2
    assert dc(_x(1, 8, 5, 3)).shape == (1, 8, 20, 12)
    net = create_model(upsampling="dc", scale=4, **SMALL)
    assert net(_x(1, 1, 5, 3)).shape == (1, 1, 20, 12)


def test_dc_structure_follows_dl4ds() -> None:
    net = create_model(upsampling="dc", scale=8, n_filters=4, n_blocks=3)
    dc = net.upsampling
    assert isinstance(dc, Deconvolution)
    assert dc.transition.conv.out_channels == 4  # 1x1 transition to f0 first
    assert [(d.in_channels, d.out_channels) for d in dc.deconvs] == [(4, 4), (4, 4), (4, 12)]
    assert all(d.bias is None and d.kernel_size == (9, 9) for d in dc.deconvs)
    assert len({id(d.weight) for d in dc.deconvs}) == 3  # no shared weights


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_rc_is_one_resize_then_a_conv(mode: str) -> None:
    rc = ResizeConvolution(2, 2, 3, mode=mode)
    with torch.no_grad():  # make the conv the identity (centre tap, diagonal)
        rc.conv.weight.zero_()
        rc.conv.weight[0, 0, 1, 1] = rc.conv.weight[1, 1, 1, 1] = 1.0
        assert rc.conv.bias is not None
        rc.conv.bias.zero_()
    x = _x(1, 2, 4, 5)
    align = None if mode == "nearest" else False
    expected = F.interpolate(x, scale_factor=3, mode=mode, align_corners=align)
    torch.testing.assert_close(rc(x), expected)


def test_rc_uses_rc_interpolation() -> None:
    net = create_model(upsampling="rc", rc_interpolation="nearest", scale=2, **SMALL)
    assert isinstance(net.upsampling, ResizeConvolution)
    assert net.upsampling.mode == "nearest"
    assert create_model(upsampling="rc", scale=2, **SMALL).upsampling.mode == "bilinear"


def test_bad_scale_on_a_module_raises() -> None:
    with pytest.raises(ScaleError, match="integer >= 2"):
        ResizeConvolution(2, 2, 1)
    with pytest.raises(ScaleError, match="integer >= 2"):
        deconvolution_geometry(1)


# --------------------------------------------------------------------------- pre / post


def test_pre_or_post_is_a_class_attribute() -> None:
    assert {u: get_upsampling(u).is_pre for u in METHODS} == {
        "spc": False,
        "rc": False,
        "dc": False,
        "pin": True,
    }
    assert Upsampling.is_pre is False


@pytest.mark.parametrize("method", METHODS)
def test_backbone_resolution_follows_pre_or_post(method: str) -> None:
    scale, h, w = 3, 5, 4
    net = create_model(upsampling=method, scale=scale, in_channels=2, interpolation="bilinear")
    seen: list[torch.Tensor] = []
    handle = net.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = _x(2, 2, h, w)
    net(x)
    handle.remove()
    (actual,) = seen
    if method == "pin":
        assert net.is_pre
        # all channels interpolated with config.interpolation, align_corners=False
        expected = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    else:
        assert not net.is_pre
        torch.testing.assert_close(actual, x, rtol=0, atol=0)


def test_pin_has_no_upsampling_layer() -> None:
    net = create_model(upsampling="pin", scale=4, in_channels=3, static_channels=1, **SMALL)
    assert isinstance(net.upsampling, PreInterpolation)
    assert list(net.upsampling.parameters()) == []
    assert net.upsampling.mode == "bicubic"
    assert net.output.transition.conv.in_channels == 2 * net.backbone.out_channels
    # the static branch gets the high-resolution fields
    static = _x(1, 1, 20, 12)
    assert net(_x(1, 3, 5, 3), static).shape == (1, 1, 20, 12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("residual", [True, False])
def test_every_parameter_gets_a_gradient(method: str, residual: bool) -> None:
    torch.manual_seed(0)
    net = create_model(
        upsampling=method,
        scale=2,
        in_channels=2,
        static_channels=1,
        residual=residual,
        localcon=True,
        grid_shape=(12, 12),
        **SMALL,
    )
    x, static = _x(3, 2, 4, 5), _x(3, 1, 8, 10, seed=1)
    offset = torch.tensor([[0, 0], [4, 0], [2, 1]])
    net(x, static, offset=offset).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        # With residual=True the last conv starts at zero, so nothing before it gets a
        # signal yet. The attention's one-unit ReLU bottleneck may be off for a batch.
        if not residual and ".attention." not in name:
            assert p.grad.abs().sum() > 0, name
    assert net.output.final.conv2.weight.grad is not None
    assert net.output.final.conv2.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- registry


def test_list_upsampling_is_an_alias() -> None:
    assert list_upsampling() == list_upsamplings()
    assert set(METHODS) <= set(list_upsamplings())


def test_valid_combinations() -> None:
    actual = valid_combinations()
    assert actual == sorted(actual)
    expected = [(b, u) for b in list_backbones() for u in list_upsamplings() if is_compatible(b, u)]
    assert actual == expected
    for u in METHODS:
        assert ("resnet", u) in actual


def test_invalid_combination_lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_BACKBONES", dict(registry_module._BACKBONES))

    @register_backbone("hr_only", upsamplings=("pin",))
    class HrOnly(Backbone):
        def __init__(self, in_channels: int, *, n_filters: int, **_: object) -> None:
            super().__init__()
            self.out_channels = n_filters
            self.conv = nn.Conv2d(in_channels, n_filters, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    assert [u for b, u in valid_combinations() if b == "hr_only"] == ["pin"]
    for method in ["spc", "rc", "dc"]:
        with pytest.raises(RegistryError, match="cannot be combined") as err:
            create_model(backbone="hr_only", upsampling=method, scale=2)
        message = str(err.value)
        assert "valid upsamplings for 'hr_only': ['pin']" in message
        assert "('hr_only', 'pin')" in message and "Fix" in message
    net = create_model("hr_only", upsampling="pin", scale=3, n_filters=4)
    assert net(_x(1, 1, 5, 3)).shape == (1, 1, 15, 9)
    monkeypatch.undo()
    assert "hr_only" not in list_backbones()
    assert all(b != "hr_only" for b, _ in valid_combinations())


def test_create_model_keyword_form() -> None:
    net = create_model(
        "resnet",
        upsampling="rc",
        scale=3,
        in_channels=2,
        out_channels=1,
        static_channels=0,
        time_window=None,
        n_blocks=1,
    )
    expected = ModelConfig(backbone="resnet", upsampling="rc", scale=3, in_channels=2, n_blocks=1)
    assert net.config == expected
    assert net(_x(1, 2, 5, 3)).shape == (1, 1, 15, 9)
