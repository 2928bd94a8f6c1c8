from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import SMALL_NET, train_small

import xr_dl4ds
from xr_dl4ds.exceptions import ConfigError, RegistryError
from xr_dl4ds.losses import get_loss, list_losses, masked_mae, masked_mse
from xr_dl4ds.metrics import interpolate, rmse
from xr_dl4ds.testing import synthetic_dataset


def test_history_is_a_dataset(model):
    h = model.history
    assert isinstance(h, xr.Dataset)
    assert list(h["epoch"].values) == [1, 2]
    assert set(h.data_vars) == {"loss", "learning_rate", "duration"}
    assert np.isfinite(h["loss"]).all() and (h["loss"] > 0).all()
    assert h["duration"].attrs["units"] == "s"


def test_same_seed_same_model_on_cpu(hr):
    a = train_small(hr, seed=3)
    b = train_small(hr, seed=3)
    c = train_small(hr, seed=4)
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], rtol=0, atol=0)
    np.testing.assert_array_equal(a.history["loss"].values, b.history["loss"].values)
    assert any(not torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)


def test_validation_split_by_time(hr):
    m = train_small(hr, val_fraction=1 / 3)
    assert m.training["train_steps"] == 4 and m.training["val_steps"] == 2
    assert m.training["val_period"][0].startswith("2000-01-05")
    assert "val_loss" in m.history and np.isfinite(m.history["val_loss"]).all()
    m2 = train_small(hr, val_time=slice("2000-01-02", "2000-01-03"))
    assert m2.training["train_steps"] == 4 and m2.training["val_steps"] == 2
    assert m2.training["val_period"] == [
        "2000-01-02T00:00:00.000000000",
        "2000-01-03T00:00:00.000000000",
    ]


def test_training_learns_fine_structure_beyond_bicubic():
    ds = synthetic_dataset(nt=10, ny=32, nx=48, seed=0)
    train, test = ds.isel(time=slice(0, 8)), ds.isel(time=slice(8, 10))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = train.dl4ds.fit(
            scale=4,
            epochs=4,
            patch_size=16,
            batch_size=8,
            steps_per_epoch=10,
            progress=False,
            learning_rate=3e-3,
            device="cpu",
            **SMALL_NET,
        )
    finally:
        torch.set_num_threads(torch_threads)
    coarse = test["tas"].dl4ds.coarsen(scale=4)
    model_rmse = float(rmse(coarse.dl4ds.downscale(m), test["tas"]))
    bicubic_rmse = float(rmse(interpolate(coarse, scale=4), test["tas"]))
    # measured 0.718 K vs 0.915 K (ratio 0.78)
    assert model_rmse < 0.88 * bicubic_rmse
    assert m.history["loss"][-1] < 0.8 * m.history["loss"][0]


def test_progress_bar(hr, capsys):
    train_small(hr, epochs=1, progress=True)
    err = capsys.readouterr().err
    assert "training" in err and "1/1" in err


def test_whole_fields_without_patches(hr):
    m = train_small(hr, patch_size=None, steps_per_epoch=None, epochs=1)
    assert m.training["patch_size"] is None and m.training["steps_per_epoch"] == 2  # 6 fields / 4


def test_patch_larger_than_grid_is_whole_field(hr):
    m = train_small(hr, patch_size=400, epochs=1)
    assert m.training["patch_size"] == [32, 48]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epochs": 0}, "epochs=0 must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"learning_rate": -1.0}, "learning_rate=-1.0 must be a positive number"),
        ({"n_filter": 3}, r"Unknown option\(s\) \['n_filter'\].*n_filters"),
        ({"patch_size": 18}, "multiple of scale=4"),
        ({"val_fraction": 1.5}, "between 0 and 1"),
        ({"val_fraction": 0.2, "val_time": slice("2000", "2001")}, "not both"),
        ({"val_time": slice("1990", "1991")}, "leaves 6 training and 0 validation"),
        ({"device": "cuda:0"} if not torch.cuda.is_available() else {"device": "tpu"}, "device="),
        ({"backbone": "transformer"}, "transformer"),
    ],
)
def test_bad_options(hr, options, match):
    with pytest.raises((ConfigError, RegistryError), match=match):
        train_small(hr, **options)


def test_unknown_loss(hr):
    with pytest.raises(RegistryError, match=r"Unknown loss 'ssim'.*\['dssim', .*'mae', .*'mse'\]"):
        train_small(hr, loss="ssim")
    assert list_losses() == [
        "dssim",
        "dssim_mae",
        "dssim_mae_mse",
        "dssim_mse",
        "mae",
        "msdssim",
        "msdssim_mae",
        "msdssim_mae_mse",
        "mse",
    ]


def test_masked_losses_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert float(masked_mae(pred, target, mask)) == pytest.approx(2.0)
    assert float(masked_mse(pred, target, mask)) == pytest.approx(14 / 3)
    assert float(masked_mae(pred, target)) == pytest.approx(4.0)
    assert float(masked_mae(pred, target, torch.zeros(2, 2))) == 0.0
    assert get_loss("mse") is masked_mse


def test_masked_cells_are_not_learned():
    # land-only data: the ocean is NaN. Were NaN learned as a number (0 after filling), the
    # normalized loss would be about |mean/std| (~30 here); masked, it stays below 1.
    ds = synthetic_dataset(nt=4, ny=16, nx=16, mask=True)
    assert ds["tas"].isnull().mean() > 0.2
    m = train_small(ds, epochs=1)
    loss = float(m.history["loss"][0])
    assert np.isfinite(loss) and loss < 1.0
    assert all(torch.isfinite(v).all() for v in m.state_dict.values())
    stats = m.stats["tas"]
    assert abs(stats.mean / stats.std) > 10  # so the threshold above is meaningful


def test_fit_accessor_identical_to_function(hr):
    a = train_small(hr, epochs=1)
    b = xr_dl4ds.fit(
        hr,
        scale=4,
        epochs=1,
        patch_size=16,
        batch_size=4,
        steps_per_epoch=3,
        progress=False,
        seed=0,
        device="cpu",
        **SMALL_NET,
    )
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], rtol=0, atol=0)
    coarse = hr["tas"].dl4ds.coarsen(scale=4)
    xr.testing.assert_identical(
        coarse.dl4ds.downscale(a).drop_attrs(), xr_dl4ds.downscale(coarse, b).drop_attrs()
    )


def test_repr(model):
    text = repr(model)
    assert text.startswith("<xr_dl4ds.Downscaler resnet+spc x4>")
    assert "tas [K]" in text and "orog, sftlf" in text and "lat: 8 -> 32, lon: 12 -> 48" in text
    assert "2 epochs, loss=mae" in text


def test_mos_training(hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4) + 0.5  # a biased "GCM"
    m = train_small(hr, lowres=coarse, epochs=1)
    assert m.training["mode"] == "mos"
    out = coarse["tas"].dl4ds.downscale(m)
    assert out.shape == hr["tas"].shape


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_cftime_calendars_in_time_splits(hr, calendar):
    times = xr.date_range("2001-02-25", periods=6, freq="D", calendar=calendar, use_cftime=True)
    ds = hr.assign_coords(time=times)
    m = train_small(ds, epochs=1, val_time=slice("2001-02-28", None))
    # noleap: Feb 28, Mar 1, 2 held out; 360_day: Feb 28, 29, 30 held out
    assert m.training["train_steps"] == 3 and m.training["val_steps"] == 3
    assert m.training["val_period"][0].startswith("2001-02-28")
    out = ds["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(m)
    xr.testing.assert_identical(out["time"], ds["time"])


@pytest.mark.parametrize("adversarial", [False, True])
def test_callback_returning_true_stops_training(hr, adversarial):
    seen = []

    def callback(epoch, values):
        seen.append(epoch)
        return epoch == 1  # stop after the second epoch

    m = train_small(hr, epochs=5, callback=callback, adversarial=adversarial)
    assert seen == [0, 1]
    assert m.history.sizes["epoch"] == 2
