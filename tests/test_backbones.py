"""Tests of the convnet, densenet, convnext and unet backbones and of the dropout variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.models import ModelConfig, create_model, list_backbones, list_upsamplings
from xr_dl4ds.models.base import Backbone
from xr_dl4ds.models.blocks import ConvNeXtBlock, DenseBlock
from xr_dl4ds.models.convnet import ConvNetBackbone
from xr_dl4ds.models.convnext import ConvNeXtBackbone
from xr_dl4ds.models.densenet import DenseNetBackbone
from xr_dl4ds.models.dropout import (
    GaussianDropout,
    MCDropout,
    MCGaussianDropout,
    MCSpatialDropout,
    SpatialDropout,
    has_monte_carlo_dropout,
    make_dropout,
)
from xr_dl4ds.models.registry import get_backbone, is_compatible
from xr_dl4ds.models.unet import DecoderUpsampling, UNetBackbone, unet_levels

NEW = ["convnet", "densenet", "convnext", "unet"]
CLASSES = {
    "convnet": ConvNetBackbone,
    "densenet": DenseNetBackbone,
    "convnext": ConvNeXtBackbone,
    "unet": UNetBackbone,
}
VARIANTS = ["vanilla", "gaussian", "spatial", "mcdrop", "mcgaussiandrop", "mcspatialdrop"]
MC_VARIANTS = {"mcdrop", "mcgaussiandrop", "mcspatialdrop"}
SMALL = {"n_filters": 4, "n_blocks": 2}


def _config(backbone: str, **options: object) -> ModelConfig:
    upsampling = "pin" if backbone == "unet" else "spc"
    return ModelConfig(backbone=backbone, upsampling=upsampling, **options)  # type: ignore[arg-type]


def _build(backbone: str, **options: object) -> Backbone:
    return CLASSES[backbone].from_config(_config(backbone, **options))


def _x(c: int = 3, h: int = 6, w: int = 5, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- registry


def test_backbones_are_registered_with_their_upsamplings() -> None:
    for name in NEW:
        assert name in list_backbones()
        assert get_backbone(name) is CLASSES[name]
    for upsampling in list_upsamplings():
        assert is_compatible("unet", upsampling) == (upsampling == "pin")
        for name in ["convnet", "densenet", "convnext"]:
            assert is_compatible(name, upsampling)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("backbone", NEW)
@pytest.mark.parametrize("size", [(5, 7), (1, 1), (2, 9), (33, 17)])
def test_output_shape_any_size(backbone: str, size: tuple[int, int]) -> None:
    net = _build(backbone, in_channels=3, **SMALL)
    expected_width = 4 if backbone == "unet" else 4 * 2
    assert net.out_channels == expected_width
    h, w = size
    actual = net(_x(h=h, w=w))
    assert actual.shape == (2, expected_width, h, w)
    assert torch.isfinite(actual).all()


@pytest.mark.parametrize("backbone", NEW)
@pytest.mark.parametrize("normalization", [None, "bn", "ln"])
@pytest.mark.parametrize("attention", [False, True])
def test_every_parameter_gets_a_finite_gradient(
    backbone: str, normalization: str | None, attention: bool
) -> None:
    torch.manual_seed(0)
    net = _build(
        backbone,
        in_channels=3,
        normalization=normalization,
        attention=attention,
        dropout_rate=0.1,
        **SMALL,
    ).train()
    y = net(_x(h=6, w=5))
    assert y.shape == (2, net.out_channels, 6, 5)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * weights).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("backbone", NEW)
def test_convolutions_replicate_their_borders(backbone: str) -> None:
    net = _build(backbone, in_channels=2, **SMALL)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
    assert convs
    assert all(m.padding_mode == "replicate" for m in convs)


@pytest.mark.parametrize("backbone", NEW)
def test_constant_field_stays_constant(backbone: str) -> None:
    # replicated borders (and, for the UNet, replicated padding and the "rc" decoder)
    torch.manual_seed(0)
    net = _build(backbone, in_channels=2, **SMALL).eval()
    y = net(torch.full((1, 2, 9, 7), 1.5))
    assert y.std(dim=(2, 3)).max() < 1e-5


@pytest.mark.parametrize("backbone", ["convnet", "densenet", "convnext"])
def test_end_to_end_with_post_upsampling(backbone: str) -> None:
    net = create_model(backbone=backbone, upsampling="spc", scale=2, in_channels=2, **SMALL)
    assert net(_x(c=2, h=3, w=5)).shape == (2, 1, 6, 10)


def test_unet_end_to_end_with_pin() -> None:
    net = create_model(backbone="unet", upsampling="pin", scale=3, in_channels=2, **SMALL)
    assert net(_x(c=2, h=3, w=5)).shape == (2, 1, 9, 15)


# --------------------------------------------------------------------------- parameters


def _conv(k: int, cin: int, cout: int, *, bias: bool = True, groups: int = 1) -> int:
    return k * k * (cin // groups) * cout + (cout if bias else 0)


def _convnet_count(cin: int, f0: int = 8, n: int = 6) -> int:
    total = _conv(3, cin, f0)  # head
    width = f0
    for i in range(1, n + 1):  # ConvBlock(width -> f0 i): two 3x3 convs with bias
        total += _conv(3, width, f0 * i) + _conv(3, f0 * i, f0 * i)
        width = f0 * i
    return total + _conv(3, width, width)  # trailing conv


def _densenet_count(cin: int, f0: int = 8, n: int = 6) -> int:
    total = _conv(3, cin, f0)  # head
    width = f0
    for i in range(1, n + 1):
        g = f0 * i  # DenseBlock: 1x1 to 4g, 3x3 to g; then a 1x1 transition halving
        total += _conv(1, width, 4 * g) + _conv(3, 4 * g, g)
        total += _conv(1, width + g, (width + g) // 2)
        width = (width + g) // 2
    total += _conv(3, width, f0 * n)  # trailing conv
    return total + _conv(1, f0 + f0 * n, f0 * n)  # transition of concat[x, b]


def _convnext_count(cin: int, f0: int = 8, n: int = 6) -> int:
    total = _conv(7, cin, f0)  # head
    width = f0
    for i in range(1, n + 1):
        f = f0 * i  # depthwise 7x7, pointwise to 4f, pointwise to f, skip projection
        total += _conv(7, width, width, groups=width) + _conv(1, width, 4 * f)
        total += _conv(1, 4 * f, f) + (_conv(1, width, f) if width != f else 0)
        width = f
    return total + _conv(1, f0, f0 * n)  # global-skip transition


@pytest.mark.parametrize(
    ("backbone", "count", "expected"),
    [
        ("convnet", _convnet_count, 114_656),
        ("densenet", _densenet_count, 252_889),
        ("convnext", _convnext_count, 54_968),
    ],
)
def test_parameter_count_of_the_defaults(backbone: str, count: object, expected: int) -> None:
    net = _build(backbone, in_channels=3)
    assert callable(count)
    assert count(3) == expected  # the hand count
    assert _n_params(net) == expected


def test_densenet_widths() -> None:
    net = DenseNetBackbone(3)
    dense = [m for m in net.blocks if isinstance(m, DenseBlock)]
    assert [d.out_channels // 2 for d in dense] == [8, 12, 18, 25, 32, 40]
    assert net.out_channels == 48


def test_unet_widths_are_capped() -> None:
    net = _build("unet", n_filters=4, n_blocks=3, width_cap=12)
    assert isinstance(net, UNetBackbone)
    assert net.widths == [4, 8, 12, 12]
    assert UNetBackbone(1).widths == [8, 16, 32, 64, 128, 256, 256]


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("variant", [None, *VARIANTS])
def test_make_dropout_layers(variant: str | None) -> None:
    assert isinstance(make_dropout(0.0, variant), nn.Identity)
    expected = {
        None: nn.Dropout,
        "vanilla": nn.Dropout,
        "gaussian": GaussianDropout,
        "spatial": SpatialDropout,
        "mcdrop": MCDropout,
        "mcgaussiandrop": MCGaussianDropout,
        "mcspatialdrop": MCSpatialDropout,
    }[variant]
    layer = make_dropout(0.25, variant)
    assert type(layer) is expected
    assert has_monte_carlo_dropout(layer) == (variant in MC_VARIANTS)
    assert not has_monte_carlo_dropout(make_dropout(0.0, variant))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.1, "dropconnect"), "unknown dropout variant 'dropconnect'"),
        ((0.1, "MCDrop"), "lower case"),
        ((1.0, "vanilla"), r"\[0, 1\)"),
        ((-0.1, None), r"\[0, 1\)"),
    ],
)
def test_make_dropout_errors(args: tuple[float, str | None], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        make_dropout(*args)
    assert "Allowed" in str(err.value) and "Fix" in str(err.value)
    with pytest.raises(ConfigError, match="dims=4"):
        make_dropout(0.1, "spatial", dims=4)


def test_gaussian_dropout_noise_has_keras_moments() -> None:
    torch.manual_seed(0)
    rate = 0.2
    layer = GaussianDropout(rate).train()
    y = layer(torch.ones(200_000))
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert abs(float(y.var()) - rate / (1 - rate)) < 0.01
    assert (y != 0).all()  # multiplicative noise, nothing dropped
    assert torch.equal(layer.eval()(torch.ones(10)), torch.ones(10))


@pytest.mark.parametrize("monte_carlo", [False, True])
def test_spatial_dropout_drops_whole_channels(monte_carlo: bool) -> None:
    torch.manual_seed(0)
    cls = MCSpatialDropout if monte_carlo else SpatialDropout
    layer = cls(0.5).train()
    y = layer(torch.ones(4, 32, 5, 6))
    per_channel = y.flatten(2)
    assert torch.equal(per_channel.amin(-1), per_channel.amax(-1))  # constant per channel
    assert set(per_channel[..., 0].unique().tolist()) == {0.0, 2.0}
    # (N, T, C, H, W) sequences: a channel is dropped over all time steps
    seq = cls(0.5, dims=3, channel_axis=2).train()(torch.ones(2, 3, 16, 4, 4))
    assert torch.equal(seq.amin(dim=(1, 3, 4)), seq.amax(dim=(1, 3, 4)))
    with pytest.raises(ConfigError, match="dims=2"):
        layer(torch.ones(2, 3, 4))


@pytest.mark.parametrize("backbone", NEW)
@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_variants_in_eval_mode(backbone: str, variant: str) -> None:
    torch.manual_seed(0)
    plain = _build(backbone, in_channels=2, **SMALL).eval()
    net = _build(backbone, in_channels=2, dropout_rate=0.3, dropout_variant=variant, **SMALL)
    net.load_state_dict(plain.state_dict())  # dropout layers have no parameters
    net.eval()
    x = _x(c=2, h=9, w=8)
    with torch.no_grad():
        reference, first, second = plain(x), net(x), net(x)
    assert has_monte_carlo_dropout(net) == (variant in MC_VARIANTS)
    assert not has_monte_carlo_dropout(plain)
    if variant in MC_VARIANTS:  # Monte-Carlo: still sampling at inference
        assert not torch.equal(first, second)
        assert not torch.equal(first, reference)
    else:
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        torch.testing.assert_close(first, reference, rtol=0, atol=0)
        net.train()
        with torch.no_grad():
            assert not torch.equal(net(x), net(x))  # active in training


# --------------------------------------------------------------------------- densenet


def test_dense_block_uses_its_pre_activation() -> None:
    torch.manual_seed(0)
    block = DenseBlock(4, 3, activation="relu")
    x = _x(c=4, h=5, w=5)
    with torch.no_grad():
        actual = block(x)
        new = block.conv2(F.relu(block.conv1(F.relu(x))))
        dl4ds_bug = block.conv2(F.relu(block.conv1(x)))  # raw input into the 1x1 conv
    assert actual.shape == (2, 7, 5, 5)
    torch.testing.assert_close(actual, torch.cat([x, new], dim=1))
    assert not torch.allclose(actual[:, 4:], dl4ds_bug)


def test_dense_block_normalization_acts_before_the_first_conv() -> None:
    torch.manual_seed(0)
    block = DenseBlock(4, 3, normalization="ln").eval()
    x = _x(c=4, h=5, w=5)
    with torch.no_grad():
        before = block(x)
        block.norm1.weight.mul_(3.0)  # type: ignore[operator]
        block.norm1.bias.add_(0.5)  # type: ignore[operator]
        after = block(x)
    assert not torch.allclose(before[:, 4:], after[:, 4:])
    torch.testing.assert_close(before[:, :4], after[:, :4])  # the input passes through
    assert block.conv1.bias is None and block.conv2.bias is not None


# --------------------------------------------------------------------------- convnext


def test_convnext_works_without_normalization() -> None:
    net = _build("convnext", in_channels=3, normalization=None, **SMALL)
    blocks = [m for m in net.modules() if isinstance(m, ConvNeXtBlock)]
    assert len(blocks) == 2
    assert all(isinstance(b.norm, nn.Identity) for b in blocks)
    assert isinstance(blocks[0].skip, nn.Identity) and isinstance(blocks[1].skip, nn.Conv2d)
    dw = blocks[1].dwconv
    assert dw.kernel_size == (7, 7) and dw.groups == dw.in_channels == 4
    y = net(_x(h=4, w=3))
    assert y.shape == (2, 8, 4, 3) and torch.isfinite(y).all()


def test_convnext_block_is_a_residual() -> None:
    block = ConvNeXtBlock(4, 4)
    with torch.no_grad():
        block.pwconv2.weight.zero_()
        block.pwconv2.bias.zero_()  # type: ignore[union-attr]
    x = _x(c=4, h=3, w=8)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


# --------------------------------------------------------------------------- unet


@pytest.mark.parametrize(
    ("size", "n_blocks", "expected"),
    [
        ((1, 1), 6, 0),
        ((2, 40), 6, 0),
        ((3, 3), 6, 1),
        ((4, 9), 6, 1),
        ((5, 7), 6, 2),
        ((33, 17), 6, 4),
        ((64, 64), 6, 5),
        ((65, 70), 6, 6),
        ((1000, 999), 6, 6),
        ((33, 17), 3, 3),
    ],
)
def test_unet_levels_table(size: tuple[int, int], n_blocks: int, expected: int) -> None:
    assert unet_levels(*size, n_blocks) == expected
    assert UNetBackbone(1, n_filters=2, n_blocks=n_blocks).levels(*size) == expected


def test_unet_levels_rule() -> None:
    # the most poolings (up to n_blocks) that leave >= 2 pixels along the smallest side
    # of the coarsest level of the input padded to a multiple of 2**levels
    for m in range(1, 70):
        for n_blocks in range(1, 8):
            levels = unet_levels(m, m + 5, n_blocks)
            assert 0 <= levels <= n_blocks
            assert levels == 0 or math.ceil(m / 2**levels) >= 2
            assert levels == n_blocks or math.ceil(m / 2 ** (levels + 1)) < 2
    with pytest.raises(ConfigError, match="height=0"):
        unet_levels(0, 4, 3)


def test_unet_padding_is_a_no_op_on_aligned_sizes() -> None:
    torch.manual_seed(0)
    net = _build("unet", in_channels=2, n_filters=4, n_blocks=3)
    assert isinstance(net, UNetBackbone)
    assert net.levels(16, 24) == 3 and net.padding(16, 24) == (0, 0, 0, 0)
    x = _x(c=2, h=16, w=24)
    torch.testing.assert_close(net(x), net.forward_aligned(x, 3), rtol=0, atol=0)


def test_unet_pads_by_replication_and_crops_back() -> None:
    torch.manual_seed(0)
    net = _build("unet", in_channels=2, n_filters=4, n_blocks=3)
    assert isinstance(net, UNetBackbone)
    x = _x(c=2, h=33, w=17)
    levels = net.levels(33, 17)
    left, right, top, bottom = net.padding(33, 17)
    # to 40 x 24, all after the field, so the pooling grid starts at its first row/column
    assert (levels, left, right, top, bottom) == (3, 0, 7, 0, 7)
    padded = F.pad(x, (left, right, top, bottom), mode="replicate")
    expected = net.forward_aligned(padded, levels)[..., :33, :17]
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="not a multiple of 2\\*\\*levels = 8"):
        net.forward_aligned(x, levels)
    with pytest.raises(ConfigError, match="levels=4"):
        net.forward_aligned(padded, 4)


@pytest.mark.parametrize("decoder_upsampling", ["rc", "spc", "dc"])
@pytest.mark.parametrize("size", [(3, 3), (8, 5)])
def test_unet_decoder_upsamplings_use_every_parameter(
    decoder_upsampling: str, size: tuple[int, int]
) -> None:
    # (3, 3) pools once for n_blocks=2: the deeper level runs unpooled
    torch.manual_seed(0)
    net = _build("unet", in_channels=2, decoder_upsampling=decoder_upsampling, **SMALL)
    assert isinstance(net, UNetBackbone)
    ups = [m for m in net.modules() if isinstance(m, DecoderUpsampling)]
    assert {m.mode for m in ups} == {decoder_upsampling}
    y = net(_x(c=2, h=size[0], w=size[1]))
    assert y.shape == (2, 4, *size)
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_unet_encoder_dropout_is_applied() -> None:
    torch.manual_seed(0)
    net = _build("unet", in_channels=2, dropout_rate=0.5, **SMALL)
    assert isinstance(net, UNetBackbone)
    deepest = net.encoder[-1]
    assert isinstance(deepest.drop1, nn.Dropout) and isinstance(deepest.drop2, nn.Dropout)
    outputs: list[torch.Tensor] = []
    deepest.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    net.train()
    x = _x(c=2, h=8, w=8)
    first, second = net(x), net(x)
    assert not torch.equal(outputs[0], outputs[1])  # the encoder level itself is random
    assert not torch.equal(first, second)
    net.eval()
    outputs.clear()
    net(x), net(x)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_unet_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="decoder_upsampling='pin'"):
        UNetBackbone(1, decoder_upsampling="pin")
    with pytest.raises(ConfigError, match="width_cap=0"):
        UNetBackbone(1, width_cap=0)
