"""Every model of the zoo through the xarray API: fit, downscale (numpy and dask), save/load."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds.exceptions import GridError, RegistryError
from xr_dl4ds.metrics import interpolate, rmse
from xr_dl4ds.models import list_backbones, valid_combinations
from xr_dl4ds.testing import synthetic_dataset

TINY = {"n_filters": 4, "n_blocks": 2, "device": "cpu", "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def split():
    ds = synthetic_dataset(nt=10, ny=32, nx=48, seed=0)
    return ds.isel(time=slice(0, 8)), ds.isel(time=slice(8, 10))


def _fit(data, **kwargs):
    options = {"scale": 4, "epochs": 1, "patch_size": 16, "batch_size": 4, "steps_per_epoch": 2}
    return data.dl4ds.fit(**{**options, **TINY, **kwargs})


@pytest.mark.parametrize(("backbone", "upsampling"), valid_combinations())
def test_every_combination_fits_downscales_and_round_trips(split, backbone, upsampling, tmp_path):
    train, test = split
    m = _fit(train, backbone=backbone, upsampling=upsampling)
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    eager = coarse.dl4ds.downscale(m)
    assert eager.shape == test["tas"].shape and np.isfinite(eager).all()
    lazy = coarse.chunk({"time": 1}).dl4ds.downscale(m)
    xr.testing.assert_allclose(lazy.compute(), eager, rtol=1e-5, atol=1e-4)
    m.save(tmp_path / "m.dl4ds")
    again = coarse.dl4ds.downscale(xr_dl4ds.load(tmp_path / "m.dl4ds"))
    np.testing.assert_array_equal(again.values, eager.values)


@pytest.mark.parametrize(
    ("backbone", "upsampling"),
    [
        ("convnet", "spc"),
        ("resnet", "spc"),
        ("densenet", "spc"),
        ("convnext", "spc"),
        ("unet", "pin"),
        ("resnet", "rc"),
        ("resnet", "dc"),
        ("resnet", "pin"),
    ],
)
def test_each_backbone_and_upsampling_beats_bicubic(split, backbone, upsampling):
    train, test = split
    m = _fit(
        train,
        backbone=backbone,
        upsampling=upsampling,
        epochs=4,
        batch_size=8,
        steps_per_epoch=10,
        learning_rate=3e-3,
    )
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    model_rmse = float(rmse(coarse.dl4ds.downscale(m), test["tas"]))
    bicubic_rmse = float(rmse(interpolate(coarse, scale=4), test["tas"]))
    # measured ratios 0.69 (resnet+dc) to 0.80 (convnet+spc)
    assert model_rmse < 0.9 * bicubic_rmse


def test_all_five_dl4ds_backbones_are_registered():
    assert {"convnet", "resnet", "densenet", "convnext", "unet"} <= set(list_backbones())


def test_invalid_combination_lists_the_valid_ones(split):
    with pytest.raises(RegistryError, match=r"valid upsamplings for 'unet': \['pin'\]"):
        _fit(split[0], backbone="unet", upsampling="spc")


@pytest.mark.parametrize(
    ("variant", "varies"),
    [("mcdrop", True), ("mcspatialdrop", True), ("vanilla", False), ("spatial", False)],
)
def test_monte_carlo_dropout_varies_between_calls(split, variant, varies):
    train, test = split
    m = _fit(train, dropout_rate=0.3, dropout_variant=variant)
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    a, b = coarse.dl4ds.downscale(m).values, coarse.dl4ds.downscale(m).values
    assert (not np.array_equal(a, b)) is varies


def test_localized_convolution_lives_on_the_training_grid(split, tmp_path):
    train, test = split
    m = _fit(train, localcon=True)
    assert m.config.grid_shape == (32, 48)
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    full = coarse.dl4ds.downscale(m)
    assert full.shape == (2, 32, 48) and np.isfinite(full).all()
    lcb = m.network().output.localized.local  # the per-pixel weights were trained
    assert any(p.abs().sum() > 0 for p in lcb.parameters())
    # a part of the grid uses the weights of its own place: the block gets its offset
    seen = []
    original = lcb.forward

    def spy(x, offset=None):
        seen.append(tuple(int(v) for v in offset))
        return original(x, offset)

    lcb.forward = spy
    try:
        part = coarse.isel(lat=slice(2, 6), lon=slice(3, 9)).dl4ds.downscale(m)
    finally:
        del lcb.forward
    assert part.shape == (2, 16, 24) and seen == [(8, 12)]
    with pytest.raises(GridError, match="tied to its training grid"):
        coarse.assign_coords(lon=coarse.lon + 100.0).dl4ds.downscale(m)
    m.save(tmp_path / "lcb.dl4ds")
    assert xr_dl4ds.load(tmp_path / "lcb.dl4ds").config.grid_shape == (32, 48)


@pytest.mark.parametrize("backbone", ["convnet", "resnet", "densenet"])
def test_spatio_temporal_models_through_the_xarray_api(split, backbone, tmp_path):
    train, _ = split
    full = synthetic_dataset(nt=10, ny=32, nx=48, seed=0)
    m = _fit(train, backbone=backbone, time_window=3, n_blocks=1)
    assert type(m.network()).__name__ == "SpatioTemporalNet"
    coarse = full["tas"].dl4ds.coarsen(scale=4)
    eager = coarse.dl4ds.downscale(m)
    # every time step gets exactly one output, on the input's time axis
    assert eager.shape == full["tas"].shape
    xr.testing.assert_identical(eager["time"], full["time"])
    # windows see their neighbours across dask chunk boundaries: chunking changes nothing
    for chunks in (1, 2, 4):
        lazy = coarse.chunk({"time": chunks}).dl4ds.downscale(m)
        assert lazy.chunks[0] == coarse.chunk({"time": max(chunks, 2)}).chunks[0]
        xr.testing.assert_allclose(lazy.compute(), eager, rtol=1e-5, atol=1e-4)
    # step t depends on steps t-2..t only
    bumped = coarse.copy(data=coarse.values.copy())
    bumped[5] += 5.0
    changed = ~np.isclose(bumped.dl4ds.downscale(m).values, eager.values, atol=1e-4).all(
        axis=(1, 2)
    )
    assert list(np.flatnonzero(changed)) == [5, 6, 7]
    m.save(tmp_path / "st.dl4ds")
    np.testing.assert_array_equal(
        coarse.dl4ds.downscale(xr_dl4ds.load(tmp_path / "st.dl4ds")).values, eager.values
    )


def test_spatio_temporal_needs_enough_steps(split):
    with pytest.raises(Exception, match="time_window=9 needs at least 9 consecutive"):
        _fit(split[0], time_window=9)


def test_a_registered_backbone_is_usable_in_fit(split, tmp_path):
    # the example of docs/models.md
    from torch import nn

    from xr_dl4ds.models import register_backbone
    from xr_dl4ds.models.base import Backbone

    @register_backbone("tiny_docs_example")
    class TinyBackbone(Backbone):
        def __init__(self, in_channels, *, n_filters=8, **options):
            super().__init__()
            self.out_channels = n_filters
            self.body = nn.Sequential(
                nn.Conv2d(in_channels, n_filters, 3, padding=1, padding_mode="replicate"),
                nn.ReLU(),
            )

        def forward(self, x):
            return self.body(x)

    train, test = split
    m = _fit(train, backbone="tiny_docs_example")
    assert isinstance(m.network().backbone, TinyBackbone)
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    m.save(tmp_path / "tiny.dl4ds")
    np.testing.assert_array_equal(
        coarse.dl4ds.downscale(xr_dl4ds.load(tmp_path / "tiny.dl4ds")).values,
        coarse.dl4ds.downscale(m).values,
    )
    with pytest.raises(RegistryError, match="already registered"):
        register_backbone("tiny_docs_example")(TinyBackbone)
