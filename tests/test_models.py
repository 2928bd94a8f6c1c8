"""Tests of xr_dl4ds.models: registry, config, blocks, upsampling, resnet, DownscalingNet."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xr_dl4ds.exceptions import ConfigError, RegistryError, ScaleError
from xr_dl4ds.models import (
    DownscalingNet,
    ModelConfig,
    create_model,
    list_backbones,
    list_upsamplings,
    register_backbone,
    register_upsampling,
)
from xr_dl4ds.models import registry as registry_module
from xr_dl4ds.models.base import Backbone, Upsampling
from xr_dl4ds.models.blocks import LayerNorm2d, ResidualBlock
from xr_dl4ds.models.registry import compatible_pairs, get_backbone
from xr_dl4ds.models.resnet import ResNetBackbone
from xr_dl4ds.models.upsampling import SubpixelConvolution, prime_factors

PAIRS = compatible_pairs()
SCALES = [2, 3, 4]


def _inputs(
    cfg: ModelConfig, n: int = 2, h: int = 5, w: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.in_channels, h, w, generator=g)
    static = None
    if cfg.static_channels:
        static = torch.randn(n, cfg.static_channels, h * cfg.scale, w * cfg.scale, generator=g)
    return x, static


# --------------------------------------------------------------------------- registry


def test_builtin_names_are_registered() -> None:
    assert "resnet" in list_backbones()
    assert "spc" in list_upsamplings()
    assert list_backbones() == sorted(list_backbones())
    assert list_upsamplings() == sorted(list_upsamplings())
    assert ("resnet", "spc") in PAIRS


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(RegistryError, match="Unknown backbone 'swin'") as err:
        create_model(backbone="swin")
    message = str(err.value)
    for name in list_backbones():
        assert repr(name) in message
    assert "Fix" in message
    assert isinstance(err.value, KeyError)  # also a builtin KeyError


def test_unknown_upsampling_lists_valid_names() -> None:
    with pytest.raises(RegistryError, match=r"Unknown upsampling 'SPC'.*\[.*'spc'\]"):
        create_model(upsampling="SPC")


def test_duplicate_registration_raises() -> None:
    class Other(Backbone):
        pass

    class OtherUps(Upsampling):
        pass

    with pytest.raises(RegistryError, match="already registered"):
        register_backbone("resnet")(Other)
    with pytest.raises(RegistryError, match="already registered"):
        register_upsampling("spc")(OtherUps)
    assert get_backbone("resnet") is ResNetBackbone


def test_registration_refuses_non_subclass() -> None:
    with pytest.raises(TypeError, match="Backbone"):
        register_backbone("not_a_backbone")(nn.Conv2d)  # type: ignore[type-var]
    assert "not_a_backbone" not in list_backbones()


def test_incompatible_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_UPSAMPLINGS", dict(registry_module._UPSAMPLINGS))

    @register_upsampling("only_for_unet", backbones=["unet"])
    class OnlyUnet(Upsampling):
        pass

    assert "only_for_unet" in list_upsamplings()
    assert ("resnet", "only_for_unet") not in compatible_pairs()
    with pytest.raises(RegistryError, match="cannot be combined") as err:
        create_model(upsampling="only_for_unet")
    assert "'spc'" in str(err.value)  # the compatible alternatives are listed


def test_new_backbone_is_one_class_and_one_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_BACKBONES", dict(registry_module._BACKBONES))

    @register_backbone("tiny")
    class Tiny(Backbone):
        def __init__(self, in_channels: int, *, n_filters: int, **_: object) -> None:
            super().__init__()
            self.out_channels = n_filters
            self.conv = nn.Conv2d(in_channels, n_filters, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    net = create_model(backbone="tiny", scale=2, n_filters=4)
    assert isinstance(net.backbone, Tiny)
    assert net(torch.zeros(1, 1, 3, 4)).shape == (1, 1, 6, 8)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("scale", [1, 0, -2, 2.5, 1.0, float("nan"), True, "4", None])
def test_bad_scale_raises_scale_error(scale: object) -> None:
    with pytest.raises(ScaleError, match="integer >= 2"):
        ModelConfig(scale=scale)  # type: ignore[arg-type]
    with pytest.raises(ScaleError):
        create_model(scale=scale)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("normalization", "batch", "normalization='batch'"),
        ("activation", "tanh", "activation='tanh'"),
        ("activation", "ReLU", "lower case"),
        ("output_activation", "linear", "output_activation='linear'"),
        ("interpolation", "cubic", "interpolation='cubic'"),
        ("dropout_rate", 1.0, r"\[0, 1\)"),
        ("dropout_rate", -0.1, r"\[0, 1\)"),
        ("n_blocks", 0, "n_blocks=0"),
        ("n_filters", 2.0, "n_filters=2.0"),
        ("in_channels", 0, "in_channels=0"),
        ("static_channels", -1, "static_channels=-1"),
        ("attention", 1, "attention=1"),
        ("backbone", "", "backbone=''"),
    ],
)
def test_bad_option_raises_config_error(option: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        ModelConfig(**{option: value})  # type: ignore[arg-type]
    assert "Allowed" in str(err.value) and "Fix" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_integer_valued_scale_is_stored_as_int() -> None:
    cfg = ModelConfig(scale=4.0)  # type: ignore[arg-type]
    assert cfg.scale == 4 and type(cfg.scale) is int


def test_residual_needs_the_target_channels_first() -> None:
    with pytest.raises(ConfigError, match="in_channels >= out_channels"):
        ModelConfig(in_channels=1, out_channels=2)
    assert ModelConfig(in_channels=1, out_channels=2, residual=False).out_channels == 2


def test_config_is_frozen_and_keyword_only() -> None:
    cfg = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scale = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelConfig("resnet")  # type: ignore[call-arg]


def test_config_json_round_trip() -> None:
    expected = ModelConfig(
        scale=3,
        in_channels=4,
        out_channels=2,
        static_channels=1,
        n_filters=6,
        n_blocks=3,
        normalization="ln",
        activation="gelu",
        attention=True,
        dropout_rate=0.25,
        output_activation="softplus",
        interpolation="bilinear",
    )
    text = json.dumps(expected.to_dict())
    actual = ModelConfig.from_dict(json.loads(text))
    assert actual == expected
    assert ModelConfig.from_dict({}) == ModelConfig()


def test_from_dict_refuses_unknown_keys() -> None:
    d = {**ModelConfig().to_dict(), "n_layers": 3, "lr": 1e-3}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr', 'n_layers'\]"):
        ModelConfig.from_dict(d)
    with pytest.raises(ConfigError, match="expected a mapping"):
        ModelConfig.from_dict([("scale", 2)])  # type: ignore[arg-type]


def test_create_model_from_config_and_overrides() -> None:
    base = ModelConfig(scale=2, n_blocks=2, in_channels=2)
    assert create_model(base).config == base
    net = create_model(base, scale=3, static_channels=1)
    assert net.config == dataclasses.replace(base, scale=3, static_channels=1)
    assert create_model("resnet", n_blocks=1).config.backbone == "resnet"
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['blocks'\]"):
        create_model(blocks=3)
    with pytest.raises(ConfigError, match="expected a ModelConfig"):
        create_model({"scale": 2})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("backbone", "upsampling"), PAIRS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("static_channels", [0, 2])
def test_output_shape(backbone: str, upsampling: str, scale: int, static_channels: int) -> None:
    net = create_model(
        backbone=backbone,
        upsampling=upsampling,
        scale=scale,
        in_channels=3,
        out_channels=2,
        static_channels=static_channels,
        n_blocks=2,
    )
    for h, w in [(5, 3), (1, 4), (1, 1)]:
        x, static = _inputs(net.config, h=h, w=w)
        actual = net(x, static)
        assert actual.shape == (2, 2, h * scale, w * scale)
        assert torch.isfinite(actual).all()


@pytest.mark.parametrize(("backbone", "upsampling"), PAIRS)
@pytest.mark.parametrize("scale", SCALES)
def test_same_seed_same_network(backbone: str, upsampling: str, scale: int) -> None:
    kwargs = dict(
        backbone=backbone,
        upsampling=upsampling,
        scale=scale,
        in_channels=2,
        static_channels=1,
        n_blocks=2,
        residual=False,
    )
    torch.manual_seed(42)
    a = create_model(**kwargs)
    torch.manual_seed(42)
    b = create_model(**kwargs)
    torch.manual_seed(7)
    c = create_model(**kwargs)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    x, static = _inputs(a.config, h=3, w=4)
    torch.testing.assert_close(a(x, static), b(x, static), rtol=0, atol=0)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert not torch.equal(a(x, static), c(x, static))


# --------------------------------------------------------------------------- residual


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize(("out_channels", "static_channels"), [(1, 0), (2, 1)])
def test_fresh_residual_net_is_the_interpolation(
    interpolation: str, out_channels: int, static_channels: int
) -> None:
    net = create_model(
        scale=3,
        in_channels=3,
        out_channels=out_channels,
        static_channels=static_channels,
        interpolation=interpolation,
    )
    x, static = _inputs(net.config, h=4, w=7)
    expected = F.interpolate(
        x[:, :out_channels],
        scale_factor=3,
        mode=interpolation,
        align_corners=None if interpolation == "nearest" else False,
    )
    torch.testing.assert_close(net(x, static), expected, rtol=0, atol=0)
    torch.testing.assert_close(net.interpolate(x), expected, rtol=0, atol=0)


def test_residual_default_is_bicubic_align_corners_false() -> None:
    net = create_model(scale=4, n_blocks=1)
    x = torch.randn(1, 1, 6, 5)
    expected = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("scale", SCALES)
def test_constant_field_stays_constant(scale: int) -> None:
    net = create_model(scale=scale, in_channels=2, static_channels=1, n_blocks=2)
    x = torch.full((1, 2, 4, 5), 3.5)
    x[:, 1] = -1.0  # a predictor; only the target is interpolated
    static = torch.randn(1, 1, 4 * scale, 5 * scale)
    expected = torch.full((1, 1, 4 * scale, 5 * scale), 3.5)
    torch.testing.assert_close(net(x, static), expected)


@pytest.mark.parametrize("scale", [2, 4, 6])
def test_fresh_net_without_skip_has_no_border_or_checkerboard_artefacts(scale: int) -> None:
    # Replicated padding keeps a constant field constant up to the borders, and the ICNR
    # initialisation of the pixel shuffle starts without a checkerboard.
    torch.manual_seed(0)
    net = create_model(scale=scale, residual=False, n_blocks=3)
    actual = net(torch.full((1, 1, 5, 4), 2.0))
    expected = actual[..., :1, :1].expand_as(actual)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    backbone_out = net.backbone(torch.full((1, 1, 5, 4), 2.0))
    assert backbone_out.std(dim=(2, 3)).max() < 1e-5


def test_output_activation_applies_to_the_prediction() -> None:
    net = create_model(scale=2, output_activation="relu", n_blocks=1)
    x = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]])
    expected = F.relu(F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- pixel shuffle


def test_pixel_shuffle_places_sub_pixels_by_hand() -> None:
    spc = SubpixelConvolution(1, 1, 2)
    (conv,) = spc.convs
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for k in range(4):  # conv channel k = (k + 1) * input (centre tap only)
            conv.weight[k, 0, 1, 1] = k + 1
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # fine pixel (2i + a, 2j + b) takes conv channel 2a + b at coarse pixel (i, j)
    expected = torch.tensor(
        [
            [
                [
                    [1.0, 2.0, 2.0, 4.0],
                    [3.0, 4.0, 6.0, 8.0],
                    [3.0, 6.0, 4.0, 8.0],
                    [9.0, 12.0, 12.0, 16.0],
                ]
            ]
        ]
    )
    torch.testing.assert_close(spc(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("scale", "factors"),
    [(2, [2]), (3, [3]), (4, [2, 2]), (6, [2, 3]), (8, [2, 2, 2]), (10, [2, 5]), (7, [7])],
)
def test_spc_stages_are_prime_and_unshared(scale: int, factors: list[int]) -> None:
    assert prime_factors(scale) == factors
    spc = SubpixelConvolution(8, 4, scale)
    assert spc.factors == factors
    convs = spc.convs
    assert len({id(c) for c in convs}) == len(convs)  # one conv per stage
    assert [c.in_channels for c in convs] == [8] + [4] * (len(factors) - 1)
    assert [c.out_channels for c in convs] == [4 * r * r for r in factors]
    assert all(c.padding_mode == "replicate" for c in convs)
    assert spc(torch.zeros(2, 8, 3, 2)).shape == (2, 4, 3 * scale, 2 * scale)


# --------------------------------------------------------------------------- blocks


def test_layernorm2d_normalises_each_pixel_over_channels() -> None:
    ln = LayerNorm2d(5)
    x = torch.randn(2, 5, 3, 4) * 3 + 1
    y = ln(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3, rtol=0)
    # no statistics over space: a pixel's output does not depend on the others
    torch.testing.assert_close(ln(x[..., :1, :2]), y[..., :1, :2])


@pytest.mark.parametrize("normalization", [None, "bn", "ln"])
def test_conv_bias_is_off_when_normalised(normalization: str | None) -> None:
    net = create_model(normalization=normalization, n_blocks=2, scale=2)
    assert isinstance(net.backbone, ResNetBackbone)
    block = net.backbone.blocks[1]
    assert isinstance(block, ResidualBlock)
    assert (block.conv1.bias is None) == (normalization is not None)
    assert block.conv1.padding_mode == "replicate"
    x = torch.randn(2, 1, 4, 3)
    assert net(x).shape == (2, 1, 8, 6)


# --------------------------------------------------------------------------- parameters


def _conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def _expected_parameter_count(
    *,
    in_channels: int,
    static_channels: int,
    out_channels: int,
    stage_factors: list[int],
    f0: int = 8,
    n: int = 6,
    normalization: str | None = None,
    attention: bool = False,
) -> int:
    """Parameters of resnet + spc + output module, counted from the architecture."""
    normed = normalization is not None
    norm = 2 if normed else 0  # scale + shift per channel (BN running stats are buffers)

    def se(c: int) -> int:
        return _conv(1, c, c // 4) + _conv(1, c // 4, c)

    def conv_block(cin: int, cout: int, *, normed: bool, attention: bool) -> int:
        total = _conv(3, cin, cout, not normed) + _conv(3, cout, cout, not normed)
        total += 2 * cout * (2 if normed else 0)
        return total + (se(cout) if attention else 0)

    f_n = f0 * n
    total = _conv(3, in_channels, f0)  # first conv
    width = f0
    for i in range(1, n + 1):  # residual blocks of width f0 * i
        w = f0 * i
        total += _conv(3, width, w, not normed) + _conv(3, w, w, not normed) + 2 * norm * w
        total += se(w) if attention else 0
        total += _conv(1, width, w) if width != w else 0  # projection on the skip
        width = w
    total += _conv(3, f_n, f_n)  # trailing conv
    total += _conv(1, f0, f_n)  # global skip transition
    for r in stage_factors:  # sub-pixel stages, each with its own conv
        total += _conv(3, f_n, f_n * r * r)
    concat = f_n
    if static_channels:
        total += conv_block(static_channels, f_n, normed=normed, attention=False)
        concat += f_n
    total += _conv(1, concat, f0)  # TransitionLast
    total += conv_block(f0, f0, normed=normed, attention=True)
    total += conv_block(f0, out_channels, normed=False, attention=False)
    return total


@pytest.mark.parametrize(
    ("options", "stage_factors"),
    [
        ({}, [2, 2]),
        ({"in_channels": 3, "static_channels": 2}, [2, 2]),
        ({"in_channels": 2, "out_channels": 2, "scale": 3, "normalization": "bn"}, [3]),
        ({"static_channels": 1, "scale": 2, "normalization": "ln", "attention": True}, [2]),
    ],
)
def test_parameter_count_matches_the_architecture(
    options: dict[str, object], stage_factors: list[int]
) -> None:
    net = create_model(**options)
    cfg = net.config
    expected = _expected_parameter_count(
        in_channels=cfg.in_channels,
        static_channels=cfg.static_channels,
        out_channels=cfg.out_channels,
        stage_factors=stage_factors,
        normalization=cfg.normalization,
        attention=cfg.attention,
    )
    assert sum(p.numel() for p in net.parameters()) == expected


def test_parameter_count_of_the_reference_configuration() -> None:
    net = create_model(backbone="resnet", upsampling="spc", in_channels=3, static_channels=2)
    assert sum(p.numel() for p in net.parameters()) == 309_765


# --------------------------------------------------------------------------- errors


def test_wrong_input_channels_reports_shapes() -> None:
    net = create_model(in_channels=3, n_blocks=1)
    with pytest.raises(ConfigError, match=r"in_channels=3.*received \(2, 2, 5, 5\)"):
        net(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ConfigError, match=r"received \(3, 5, 5\)"):
        net(torch.zeros(3, 5, 5))


def test_static_fields_are_checked() -> None:
    net = create_model(scale=2, static_channels=2, n_blocks=1)
    x = torch.zeros(1, 1, 3, 4)
    with pytest.raises(ConfigError, match=r"no static fields.*\(1, 2, 6, 8\)"):
        net(x)
    with pytest.raises(
        ConfigError, match=r"expected static of shape \(1, 2, 6, 8\).*received \(1, 2, 3, 4\)"
    ):
        net(x, torch.zeros(1, 2, 3, 4))
    with pytest.raises(ConfigError, match=r"received \(1, 1, 6, 8\)"):
        net(x, torch.zeros(1, 1, 6, 8))
    plain = create_model(scale=2, n_blocks=1)
    with pytest.raises(ConfigError, match="static_channels=0"):
        plain(x, torch.zeros(1, 2, 6, 8))


def test_downscaling_net_needs_a_config() -> None:
    with pytest.raises(ConfigError, match="expected a ModelConfig"):
        DownscalingNet({"scale": 2})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- training


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    net = create_model(scale=2, n_filters=8, n_blocks=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 6, 6, generator=g)
    i = torch.arange(12.0)
    detail = 0.5 * torch.sin(i[:, None] * math.pi / 3) * torch.cos(i[None, :] * math.pi / 4)
    target = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False) + detail
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = last = math.nan
    for step in range(51):
        loss = (net(x) - target).abs().mean()
        if step == 0:
            first = loss.item()
        if step == 50:
            last = loss.item()
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # measured: 0.174 -> 0.019 (x9.1) with torch 2.13 on CPU
    assert first / last > 4.0
