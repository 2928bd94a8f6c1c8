"""Tests of xr_dl4ds.models.recurrent: ConvLSTM, recurrent backbones, SpatioTemporalNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xr_dl4ds.exceptions import ConfigError, RegistryError
from xr_dl4ds.models import DownscalingNet, ModelConfig, create_model
from xr_dl4ds.models.recurrent import (
    ConvLSTM2d,
    RecurrentBackbone,
    RecurrentConvBlock,
    SpatioTemporalNet,
    list_recurrent_backbones,
)

BACKBONES = ["convnet", "resnet", "densenet"]
UPSAMPLINGS = ["spc", "rc", "dc", "pin"]
SCALES = [2, 3, 4]


def _net(**options: object) -> SpatioTemporalNet:
    defaults: dict[str, object] = {"n_filters": 4, "n_blocks": 1, "time_window": 3, "scale": 2}
    return SpatioTemporalNet(ModelConfig(**{**defaults, **options}))  # type: ignore[arg-type]


def _inputs(
    cfg: ModelConfig, n: int = 2, t: int = 3, h: int = 5, w: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, cfg.in_channels, h, w, generator=g)
    static = None
    if cfg.static_channels:
        static = torch.randn(n, cfg.static_channels, h * cfg.scale, w * cfg.scale, generator=g)
    return x, static


def _per_frame_interpolation(x: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    frames = [
        F.interpolate(
            x[:, k],
            scale_factor=scale,
            mode=mode,
            align_corners=None if mode == "nearest" else False,
        )
        for k in range(x.shape[1])
    ]
    return torch.stack(frames, dim=1)


# --------------------------------------------------------------------------- ConvLSTM


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_convlstm_shapes_and_parameters(kernel_size: int) -> None:
    lstm = ConvLSTM2d(3, 6, kernel_size)
    for t, h, w in [(1, 5, 3), (4, 1, 1), (2, 7, 4)]:
        actual = lstm(torch.randn(2, t, 3, h, w))
        assert actual.shape == (2, t, 6, h, w)
    k2 = kernel_size**2
    expected = k2 * 3 * 24 + 24 + k2 * 6 * 24  # input kernel + bias + recurrent kernel
    assert sum(p.numel() for p in lstm.parameters()) == expected
    assert lstm.input_conv.padding_mode == "replicate"
    assert lstm.hidden_conv.padding_mode == "replicate"
    # gates (i, f, g, o): bias 1 on the forget (Keras' unit_forget_bias) and output gates
    bias = lstm.input_conv.bias
    assert bias is not None
    expected_bias = torch.tensor([0.0] * 6 + [1.0] * 6 + [0.0] * 6 + [1.0] * 6)
    torch.testing.assert_close(bias, expected_bias, rtol=0, atol=0)


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_convlstm_is_causal_and_recurrent(t: int) -> None:
    torch.manual_seed(0)
    lstm = ConvLSTM2d(2, 4, 3)
    x = torch.randn(1, 5, 2, 4, 4)
    perturbed = x.clone()
    perturbed[:, t] += 1.0
    expected, actual = lstm(x), lstm(perturbed)
    # earlier steps do not see the future
    torch.testing.assert_close(actual[:, :t], expected[:, :t], rtol=0, atol=0)
    # step t and every later step change (later ones only through the hidden state)
    for k in range(t, 5):
        assert (actual[:, k] - expected[:, k]).abs().max() > 1e-4, k


def test_convlstm_matches_a_step_by_step_reference() -> None:
    torch.manual_seed(1)
    lstm = ConvLSTM2d(2, 3, 3)
    x = torch.randn(2, 3, 2, 4, 5)
    h = torch.zeros(2, 3, 4, 5)
    c = torch.zeros_like(h)
    expected = []
    for k in range(3):
        gates = lstm.input_conv(x[:, k]) + lstm.hidden_conv(h)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        expected.append(h)
    torch.testing.assert_close(lstm(x), torch.stack(expected, dim=1))


def test_convlstm_refuses_wrong_shapes() -> None:
    lstm = ConvLSTM2d(2, 3, 3)
    with pytest.raises(ConfigError, match=r"in_channels=2.*received \(1, 2, 4, 4\)"):
        lstm(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ConfigError, match=r"received \(1, 3, 1, 4, 4\)"):
        lstm(torch.zeros(1, 3, 1, 4, 4))
    with pytest.raises(ConfigError, match="odd"):
        ConvLSTM2d(2, 3, 4)


@pytest.mark.parametrize("normalization", [None, "bn", "ln"])
def test_recurrent_conv_block(normalization: str | None) -> None:
    block = RecurrentConvBlock(3, 4, normalization=normalization)
    assert (block.lstm1.kernel_size, block.lstm2.kernel_size) == (5, 3)
    actual = block(torch.randn(2, 3, 3, 5, 4))
    assert actual.shape == (2, 3, 4, 5, 4)
    assert (actual >= 0).all()  # ends with the ReLU


@pytest.mark.parametrize(("kind", "width"), [("convnet", 4), ("resnet", 4), ("densenet", 8)])
def test_recurrent_backbone_has_n_plus_one_blocks_of_constant_width(kind: str, width: int) -> None:
    backbone = RecurrentBackbone(3, kind=kind, n_filters=4, n_blocks=2)
    assert backbone.out_channels == width
    blocks = [backbone.head, *backbone.blocks]
    assert len(blocks) == 3
    assert [b.out_channels for b in blocks] == [4, 4, 4]
    assert backbone(torch.randn(1, 2, 3, 5, 3)).shape == (1, 2, width, 5, 3)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("upsampling", UPSAMPLINGS)
@pytest.mark.parametrize("scale", SCALES)
def test_output_shape(backbone: str, upsampling: str, scale: int) -> None:
    net = _net(
        backbone=backbone,
        upsampling=upsampling,
        scale=scale,
        in_channels=3,
        out_channels=2,
        time_window=2,
    )
    for t, h, w in [(1, 5, 3), (2, 3, 5), (3, 1, 1), (4, 3, 3)]:  # T need not be time_window
        x, _ = _inputs(net.config, t=t, h=h, w=w)
        actual = net(x)
        assert actual.shape == (2, t, 2, h * scale, w * scale)
        assert torch.isfinite(actual).all()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("static_channels", [0, 2])
def test_output_shape_with_and_without_static(backbone: str, static_channels: int) -> None:
    net = _net(backbone=backbone, scale=3, in_channels=2, static_channels=static_channels)
    for t in (1, 4):
        x, static = _inputs(net.config, t=t, h=3, w=5)
        assert (static is None) == (static_channels == 0)
        assert net(x, static).shape == (2, t, 1, 9, 15)


def test_static_fields_change_every_frame() -> None:
    torch.manual_seed(0)
    net = _net(static_channels=1, residual=False)
    x, static = _inputs(net.config, t=3)
    assert static is not None
    delta = net(x, static + 1.0) - net(x, static)
    assert (delta.abs().amax(dim=(0, 2, 3, 4)) > 1e-6).all()


def test_network_is_causal_in_time() -> None:
    torch.manual_seed(0)
    net = _net(backbone="densenet", residual=False, static_channels=1).eval()
    x, static = _inputs(net.config, n=1, t=4)
    perturbed = x.clone()
    perturbed[:, 2] += 1.0
    expected, actual = net(x, static), net(perturbed, static)
    torch.testing.assert_close(actual[:, :2], expected[:, :2], rtol=0, atol=0)
    assert (actual[:, 3] - expected[:, 3]).abs().max() > 1e-6


# --------------------------------------------------------------------------- residual


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize(("out_channels", "static_channels"), [(1, 0), (2, 1)])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_fresh_residual_net_is_the_interpolation_of_every_frame(
    interpolation: str, out_channels: int, static_channels: int, backbone: str
) -> None:
    net = _net(
        backbone=backbone,
        scale=3,
        in_channels=3,
        out_channels=out_channels,
        static_channels=static_channels,
        interpolation=interpolation,
    )
    x, static = _inputs(net.config, t=3, h=4, w=3)
    expected = _per_frame_interpolation(x[:, :, :out_channels], 3, interpolation)
    torch.testing.assert_close(net(x, static), expected, rtol=0, atol=0)
    torch.testing.assert_close(net.interpolate(x), expected, rtol=0, atol=0)


def test_output_activation_applies_to_the_prediction() -> None:
    net = _net(output_activation="relu")
    x, _ = _inputs(net.config, t=2)
    expected = F.relu(_per_frame_interpolation(x, 2, "bicubic"))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- pin, localcon, dropout


def test_pin_runs_the_backbone_on_the_fine_grid() -> None:
    net = _net(upsampling="pin", scale=3, in_channels=2, static_channels=1)
    assert net.is_pre
    assert net.transition.conv.out_channels == 4  # Transition(f0), as DL4DS' recnet_pin
    seen = []
    net.backbone.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    x, static = _inputs(net.config, t=2, h=3, w=4)
    assert net(x, static).shape == (2, 2, 1, 9, 12)
    assert seen == [(2, 2, 4, 9, 12)]


def test_post_upsampling_transition_halves_the_width() -> None:
    net = _net(backbone="densenet", upsampling="spc", static_channels=1)
    assert not net.is_pre
    # densenet: 2 f0 = 8 upsampled channels, + f0 = 4 static channels -> 12 // 2
    assert net.transition.conv.in_channels == 12
    assert net.transition.conv.out_channels == 6


def test_localized_conv_block_uses_the_offset_of_each_sample() -> None:
    torch.manual_seed(0)
    net = _net(localcon=True, grid_shape=(12, 12), residual=False, static_channels=1).eval()
    assert net.localized is not None
    with torch.no_grad():
        net.localized.local.bias.normal_()  # make the position matter
    x, static = _inputs(net.config, n=2, t=3, h=2, w=3)
    both = net(x, static, torch.tensor([[0, 0], [4, 6]]))
    assert both.shape == (2, 3, 1, 4, 6)
    first = net(x[:1], static[:1] if static is not None else None, (0, 0))
    second = net(x[1:], static[1:] if static is not None else None, (4, 6))
    torch.testing.assert_close(both, torch.cat([first, second]))
    assert not torch.allclose(net(x, static, (0, 0)), net(x, static, (4, 6)))
    with pytest.raises(ConfigError, match=r"offset of shape \(2, 2\).*\(3, 2\)"):
        net(x, static, torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="outside the training grid"):
        net(x, static, (10, 0))


def test_spatial_dropout_drops_channels_over_all_time_steps() -> None:
    torch.manual_seed(0)
    net = _net(dropout_rate=0.5, dropout_variant="spatial", n_blocks=2)
    drop = net.backbone.drop
    x = torch.ones(2, 4, 6, 3, 3)
    y = drop.train()(x)
    kept = y[:, :, :, 0, 0]  # (N, T, C): a channel is kept or dropped for all steps
    assert ((kept == 0) | (kept == 2)).all()
    assert (kept == kept[:, :1]).all()
    assert (kept == 0).any() and (kept == 2).any()
    torch.testing.assert_close(drop.eval()(x), x)


def test_monte_carlo_dropout_stays_active_in_eval() -> None:
    torch.manual_seed(0)
    net = _net(dropout_rate=0.3, dropout_variant="mcdrop", residual=False).eval()
    x, _ = _inputs(net.config, t=2)
    assert not torch.equal(net(x), net(x))
    plain = _net(dropout_rate=0.3, residual=False).eval()
    torch.testing.assert_close(plain(x), plain(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- training


def test_every_parameter_gets_a_gradient() -> None:
    # Seed 1: with seed 0 the single ReLU unit of a channel attention's squeeze starts
    # dead (negative for every sample), which is a property of blocks.ChannelAttention
    # with few channels, not of the recurrent parts.
    torch.manual_seed(1)
    net = _net(
        backbone="resnet",
        n_filters=8,
        in_channels=2,
        static_channels=1,
        normalization="ln",
        attention=True,
        residual=False,
    )
    x, static = _inputs(net.config, t=3)
    net(x, static).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_adam_steps_reduce_the_loss() -> None:
    # The target adds half of the previous frame, which only a recurrent model can know.
    torch.manual_seed(0)
    net = _net(backbone="densenet", n_filters=8, n_blocks=1, scale=2, time_window=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 1, 5, 5, generator=g)
    fine = _per_frame_interpolation(x, 2, "bicubic")
    target = fine + 0.5 * torch.cat([torch.zeros_like(fine[:, :1]), fine[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(31):
        loss = (net(x) - target).abs().mean()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # measured: 0.226 -> 0.050 (x4.5) with torch 2.13 on CPU
    assert losses[0] / losses[-1] > 2.0, losses


def test_the_default_backbone_keeps_the_signal() -> None:
    # 14 unnormalised ConvLSTM layers: with Keras' initialisation the output std is ~1e-13
    torch.manual_seed(0)
    x = torch.randn(2, 4, 1, 12, 12)
    for kind in BACKBONES:
        backbone = RecurrentBackbone(1, kind=kind, n_filters=8, n_blocks=6)
        with torch.no_grad():
            assert backbone(x).std() > 1e-3, kind


# --------------------------------------------------------------------------- parameters


def test_parameter_count_of_a_small_configuration() -> None:
    net = _net(
        backbone="resnet",
        upsampling="spc",
        scale=2,
        in_channels=2,
        out_channels=1,
        static_channels=1,
        n_filters=4,
        n_blocks=1,
    )
    # ConvLSTM(cin, h, k) = k*k*cin*4h (input kernel) + 4h (bias) + k*k*h*4h (recurrent)
    lstm_5x5_2_to_4 = 25 * 2 * 16 + 16 + 25 * 4 * 16  # 2416
    lstm_5x5_4_to_4 = 25 * 4 * 16 + 16 + 25 * 4 * 16  # 3216
    lstm_3x3_4_to_4 = 9 * 4 * 16 + 16 + 9 * 4 * 16  # 1168
    backbone = (lstm_5x5_2_to_4 + lstm_3x3_4_to_4) + (lstm_5x5_4_to_4 + lstm_3x3_4_to_4)  # 7968
    spc = 9 * 4 * 16 + 16  # one x2 stage: 3x3 conv 4 -> 4*2*2, with bias: 592
    static = (9 * 1 * 4 + 4) + (9 * 4 * 4 + 4)  # ConvBlock(1 -> 4): 188
    transition = 8 * 4 + 4  # 1x1 conv (4 upsampled + 4 static) -> 8 // 2: 36
    attention = (4 * 1 + 1) + (1 * 4 + 4)  # squeeze 4 -> 1, excite 1 -> 4: 13
    refine = (9 * 4 * 4 + 4) * 2 + attention  # ConvBlock(4 -> 4) + attention: 309
    final = (9 * 4 * 1 + 1) + (9 * 1 * 1 + 1)  # ConvBlock(4 -> 1): 47
    expected = backbone + spc + static + transition + refine + final
    assert expected == 9140
    assert sum(p.numel() for p in net.parameters()) == expected


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("backbone", ["convnext", "unet", "not_a_backbone"])
def test_backbones_without_recurrent_variant_are_refused(backbone: str) -> None:
    for build in (_net, create_model):
        with pytest.raises(RegistryError, match=f"backbone='{backbone}'") as err:
            build(backbone=backbone, upsampling="pin", time_window=3)
        message = str(err.value)
        assert "['convnet', 'densenet', 'resnet']" in message
        assert "Fix" in message
    assert list_recurrent_backbones() == ["convnet", "densenet", "resnet"]


def test_create_model_dispatches_on_time_window() -> None:
    net = create_model("densenet", upsampling="rc", scale=2, time_window=4, n_blocks=1)
    assert isinstance(net, SpatioTemporalNet)
    assert net.config.time_window == 4 and net.time_window == 4
    assert net(torch.zeros(1, 4, 1, 3, 3)).shape == (1, 4, 1, 6, 6)
    spatial = create_model(net.config, time_window=None)
    assert isinstance(spatial, DownscalingNet)
    assert isinstance(create_model(spatial.config, time_window=2), SpatioTemporalNet)


def test_unknown_upsampling_is_refused() -> None:
    with pytest.raises(RegistryError, match="Unknown upsampling 'xyz'"):
        _net(upsampling="xyz")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="expected a ModelConfig"):
        SpatioTemporalNet({"time_window": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="time_window=None"):
        SpatioTemporalNet(ModelConfig())


def test_input_shapes_are_checked() -> None:
    net = _net(in_channels=2, static_channels=1)
    x = torch.zeros(1, 3, 2, 4, 5)
    static = torch.zeros(1, 1, 8, 10)
    assert net(x, static).shape == (1, 3, 1, 8, 10)
    with pytest.raises(ConfigError, match=r"in_channels=2.*received \(1, 2, 4, 5\)"):
        net(x[:, 0], static)  # a single frame without the time dimension
    with pytest.raises(ConfigError, match=r"received \(1, 3, 1, 4, 5\)"):
        net(x[:, :, :1], static)
    with pytest.raises(ConfigError, match=r"no static fields.*\(1, 1, 8, 10\)"):
        net(x)
    with pytest.raises(
        ConfigError, match=r"expected static of shape \(1, 1, 8, 10\).*\(1, 3, 1, 8, 10\)"
    ):
        net(x, static[:, None].expand(1, 3, 1, 8, 10))
    plain = _net()
    with pytest.raises(ConfigError, match="static_channels=0"):
        plain(torch.zeros(1, 2, 1, 3, 3), torch.zeros(1, 1, 6, 6))
