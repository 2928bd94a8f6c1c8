from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
import xarray as xr

import xr_dl4ds
from xr_dl4ds.exceptions import ModelFileError
from xr_dl4ds.io import FORMAT_VERSION


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.dl4ds"
    model.save(path)
    return path


def test_save_load_gives_identical_predictions_and_metadata(model, saved, hr):
    loaded = xr_dl4ds.load(saved)
    coarse = hr["tas"].dl4ds.coarsen(scale=4)
    a = coarse.dl4ds.downscale(model)
    b = coarse.dl4ds.downscale(loaded)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    np.testing.assert_array_equal(a.values, b.values)
    assert loaded.config == model.config
    assert loaded.stats == model.stats
    assert loaded.target == model.target and loaded.static_names == model.static_names
    assert loaded.attrs == model.attrs
    xr.testing.assert_identical(loaded.history, model.history)
    xr.testing.assert_identical(loaded.grid.highres, model.grid.highres)
    xr.testing.assert_identical(loaded.grid.lowres, model.grid.lowres)
    for field in ("y", "x", "time_dim", "periodic", "grid_mapping"):
        assert getattr(loaded.grid, field) == getattr(model.grid, field)
    np.testing.assert_array_equal(loaded.static, model.static)
    assert loaded.training == model.training
    assert set(loaded.versions) >= {"xr_dl4ds", "torch", "xarray", "numpy"}
    assert repr(loaded) == repr(model)


def test_rotated_grid_mapping_round_trips(rotated_model, tmp_path):
    rotated_model.save(tmp_path / "r.dl4ds")
    loaded = xr_dl4ds.load(tmp_path / "r.dl4ds")
    xr.testing.assert_identical(loaded.grid.highres, rotated_model.grid.highres)
    assert loaded.grid.grid_mapping == "rotated_pole"
    assert (
        loaded.grid.highres["rotated_pole"].attrs["grid_mapping_name"]
        == "rotated_latitude_longitude"
    )


def test_array_attrs_round_trip(model, tmp_path):
    from xr_dl4ds.io import _from_json, _to_json

    attrs = {"valid_range": np.array([200.0, 330.0], dtype=np.float32), "n": np.int64(3), "s": "x"}
    back = _from_json(_to_json(attrs))
    np.testing.assert_array_equal(back["valid_range"], attrs["valid_range"])
    assert back["valid_range"].dtype == np.float32 and back["n"] == 3


def test_downscale_accepts_a_path(saved, hr, model):
    coarse = hr["tas"].dl4ds.coarsen(scale=4)
    np.testing.assert_array_equal(
        coarse.dl4ds.downscale(str(saved)).values, coarse.dl4ds.downscale(model).values
    )


def test_not_our_file(tmp_path, hr):
    nc = tmp_path / "data.nc"
    hr.to_netcdf(nc)
    with pytest.raises(ModelFileError, match="could not be read as an xr_dl4ds model file"):
        xr_dl4ds.load(nc)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="is not an xr_dl4ds model file"):
        xr_dl4ds.load(other)
    with pytest.raises(FileNotFoundError, match="No such model file"):
        xr_dl4ds.load(tmp_path / "missing.dl4ds")


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    cut = tmp_path / "cut.dl4ds"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        xr_dl4ds.load(cut)


def test_newer_format_version(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.dl4ds"
    torch.save(payload, newer)
    with pytest.raises(
        ModelFileError, match=f"format version {FORMAT_VERSION + 1}.*Upgrade xr_dl4ds"
    ):
        xr_dl4ds.load(newer)


class _Evil:
    ran = False

    def __reduce__(self):
        return (_Evil._trigger, ())

    @staticmethod
    def _trigger():
        _Evil.ran = True
        return "pwned"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_loading_never_executes_pickled_code(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)
    payload["metadata"] = _Evil()
    evil = tmp_path / "evil.dl4ds"
    torch.save(payload, evil)
    with pytest.raises(ModelFileError):
        xr_dl4ds.load(evil)
    assert _Evil.ran is False
    with pytest.raises(ModelFileError):
        xr_dl4ds.load(io.BytesIO(pickle.dumps({"format": "xr_dl4ds.Downscaler"})))


def test_damaged_content_with_valid_header(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)
    del payload["arrays"]["static"]
    bad = tmp_path / "bad.dl4ds"
    torch.save(payload, bad)
    with pytest.raises(ModelFileError, match="incomplete or damaged"):
        xr_dl4ds.load(bad)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    payload = torch.load(saved, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    bad = tmp_path / "bad.dl4ds"
    torch.save(payload, bad)
    with pytest.raises(ModelFileError, match="weights do not fit"):
        xr_dl4ds.load(bad)


def test_failed_save_keeps_the_old_file(model, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temp file left


def test_save_to_file_object(model):
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    assert xr_dl4ds.load(buf).config == model.config


def test_model_id_survives_a_reload_with_a_validation_history(hr):
    """History variables (loss, val_loss, ...) are stored in the order load() rebuilds
    them, so a model and its reloaded copy have one id."""
    from conftest import train_small

    from xr_dl4ds.io import dumps, load, model_id

    m = train_small(hr, val_fraction=0.25)
    assert "val_loss" in m.history
    assert model_id(load(io.BytesIO(dumps(m)))) == model_id(m)


def test_repr_of_a_model_trained_without_spatial_coordinates(hr):
    from conftest import train_small

    m = train_small(hr.drop_vars(["lat", "lon"]), spatial_dims=("lat", "lon"))
    text = repr(m)
    assert "grid:       lat: ? -> ?, lon: ? -> ?" in text and "tas [K]" in text
