"""The contract every model of the zoo keeps, for every valid combination and scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xr_dl4ds.models import create_model, list_recurrent_backbones, valid_combinations

SCALES = [2, 3, 4, 5, 8]
SPATIAL = [(b, u, None) for b, u in valid_combinations()]
TEMPORAL = [(b, u, 2) for b, u in valid_combinations() if b in list_recurrent_backbones()]


def _task(scale: int, window: int | None, seed: int = 0):
    """A learnable target: a smooth nonlinear function of the interpolated coarse field."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 2, 3, 5) if window is None else (2, window, 2, 3, 5)
    x = torch.randn(*shape, generator=g)
    static = torch.randn(2, 1, 3 * scale, 5 * scale, generator=g)
    frames = x.reshape(-1, 2, 3, 5)
    up = F.interpolate(frames[:, :1], scale_factor=scale, mode="bilinear", align_corners=False)
    y = torch.tanh(2 * up) + 0.3 * static.repeat_interleave(frames.shape[0] // 2, dim=0)
    y = y.reshape(*shape[:-3], 1, 3 * scale, 5 * scale)
    return x, static, y


def test_the_combinations_cover_the_zoo():
    assert len(SPATIAL) == 17  # 4 backbones x 4 upsamplings + unet with pin
    assert {b for b, _, _ in TEMPORAL} == {"convnet", "resnet", "densenet"}
    assert len(TEMPORAL) == 12


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(("backbone", "upsampling", "window"), SPATIAL + TEMPORAL)
def test_model_contract(backbone, upsampling, window, scale):
    torch.manual_seed(1)
    net = create_model(
        backbone,
        upsampling=upsampling,
        scale=scale,
        in_channels=2,
        out_channels=1,
        static_channels=1,
        time_window=window,
        n_filters=4,
        n_blocks=2,
        activation="elu",
    )
    x, static, y = _task(scale, window)
    out = net(x, static)
    assert out.shape == y.shape
    assert torch.isfinite(out).all()
    loss = F.l1_loss(out, y)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    # a few optimizer steps reduce the loss on the learnable task (worst measured: 0.80)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = float(loss.detach())
    for _ in range(20):
        opt.zero_grad()
        loss = F.l1_loss(net(x, static), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(F.l1_loss(net(x, static), y)) < 0.9 * first
