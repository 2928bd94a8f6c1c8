"""Adversarial (cGAN) training and the DL4DS losses through fit."""

from __future__ import annotations

import pytest
from conftest import SMALL_NET

from xr_dl4ds.exceptions import ConfigError
from xr_dl4ds.losses import get_loss
from xr_dl4ds.metrics import interpolate, rmse
from xr_dl4ds.testing import synthetic_dataset


@pytest.fixture(scope="module")
def split():
    ds = synthetic_dataset(nt=10, ny=32, nx=48, seed=0)
    return ds.isel(time=slice(0, 8)), ds.isel(time=slice(8, 10))


GAN = {
    "scale": 4,
    "epochs": 4,
    "patch_size": 16,
    "batch_size": 8,
    "steps_per_epoch": 10,
    "learning_rate": 2e-3,
    "progress": False,
    "device": "cpu",
    "seed": 0,
    **SMALL_NET,
}


# measured ratios to bicubic: 0.76 with the static fields (orography explains the fine
# structure), 0.96 without them
@pytest.mark.parametrize(("static", "ratio"), [(None, 0.85), ([], 0.99)])
def test_cgan_improves_on_its_initial_generator(split, static, ratio):
    train, test = split
    m = train.dl4ds.fit(
        adversarial=True,
        static=static,
        val_fraction=0.25,
        discriminator_options={"n_filters": 8, "n_res_blocks": 1},
        **GAN,
    )
    h = m.history
    assert {"pixel_loss", "adversarial_loss", "discriminator_loss", "val_loss"} <= set(h.data_vars)
    assert m.training["adversarial"] is True
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    # the residual generator starts as bicubic: training must beat it
    model_rmse = float(rmse(coarse.dl4ds.downscale(m), test["tas"]))
    assert model_rmse < ratio * float(rmse(interpolate(coarse, scale=4), test["tas"]))


def test_cgan_refuses_what_it_does_not_support(split):
    with pytest.raises(ConfigError, match=r"does not support \['scheduler'\]"):
        split[0].dl4ds.fit(adversarial=True, scheduler="cosine", **GAN)
    with pytest.raises(ConfigError, match="several processes"):
        split[0].dl4ds.fit(adversarial=True, devices=2, **GAN)


@pytest.mark.parametrize("loss", ["dssim_mae", "msdssim_mae_mse", "mse"])
def test_dl4ds_losses_train_through_fit(split, loss):
    train, _ = split
    m = train.dl4ds.fit(loss=loss, **{**GAN, "epochs": 2, "steps_per_epoch": 3})
    assert m.training["loss"] == loss and m.history["loss"].notnull().all()


def test_custom_mixing_weights_through_fit(split):
    train, _ = split
    m = train.dl4ds.fit(
        loss=get_loss("dssim_mae", weights=(0.5, 0.5)), **{**GAN, "epochs": 1, "steps_per_epoch": 2}
    )
    assert m.history["loss"].notnull().all()
