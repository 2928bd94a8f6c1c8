"""The ``xr-dl4ds`` command line: fit from TOML/YAML, downscale files, help and errors."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds import cli
from xr_dl4ds.models.config import ModelConfig
from xr_dl4ds.testing import synthetic_dataset

TINY_FIT = """\
[fit]
target = "tas"
scale = 4
static = ["orog", "sftlf"]
epochs = 1
patch_size = 16
batch_size = 4
steps_per_epoch = 2
n_filters = 4
n_blocks = 2
progress = false
device = "cpu"
"""


def toml_config(data_path, model_path, history_path=None, data_extra="", fit_extra=""):
    output = f'[output]\nmodel = "{model_path}"\n'
    if history_path is not None:
        output += f'history = "{history_path}"\n'
    return f'[data]\npath = "{data_path}"\n{data_extra}\n{TINY_FIT}{fit_extra}\n{output}'


def _fit_tiny(hr, **extra):
    """The small model of these tests (about a second on one core)."""
    options = {
        "scale": 4,
        "static": ["orog", "sftlf"],
        "epochs": 1,
        "patch_size": 16,
        "batch_size": 4,
        "steps_per_epoch": 2,
        "n_filters": 4,
        "n_blocks": 2,
        "progress": False,
        "device": "cpu",
    }
    return xr_dl4ds.fit(hr, **{**options, **extra})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """High-res and coarsened synthetic data on disk, and a small model trained on it."""
    root = tmp_path_factory.mktemp("cli")
    hr = synthetic_dataset(nt=6, ny=32, nx=48)
    hr.to_netcdf(root / "hr.nc")
    xr_dl4ds.coarsen(hr, 4).to_netcdf(root / "lr.nc")
    model = _fit_tiny(hr)
    model.save(root / "model.dl4ds")
    return {
        "hr": root / "hr.nc",
        "lr": root / "lr.nc",
        "model": root / "model.dl4ds",
    }


def run_cli(*args):
    return cli.main([str(a) for a in args])


# -- fit ----------------------------------------------------------------------------------


def test_fit_toml(files, tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(
        toml_config(
            files["hr"],
            tmp_path / "out" / "model.dl4ds",
            tmp_path / "out" / "history.nc",
            data_extra='isel = {lat = [0, 16]}\nsel = {time = ["2000-01-01", "2000-01-05"]}',
        )
    )
    assert run_cli("fit", config) == 0
    stdout = capsys.readouterr().out
    assert "<xr_dl4ds.Downscaler resnet+spc x4>" in stdout

    model = xr_dl4ds.load(tmp_path / "out" / "model.dl4ds")
    assert model.target == ("tas",)
    assert model.static_names == ("orog", "sftlf")
    assert model.config.n_filters == 4 and model.config.n_blocks == 2
    assert model.grid.highres_shape == (16, 48)  # isel lat = [0, 16)
    assert model.training["train_period"][0].startswith("2000-01-01")
    assert model.training["train_period"][1].startswith("2000-01-05")  # sel: inclusive
    history = xr.open_dataset(tmp_path / "out" / "history.nc")
    np.testing.assert_allclose(history["loss"].values, model.history["loss"].values)
    history.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["history.nc", "model.dl4ds"]


def test_fit_yaml(files, tmp_path):
    pytest.importorskip("yaml")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data:\n  path: {files['hr']}\n"
        "fit:\n  target: tas\n  scale: 4\n  epochs: 1\n  patch_size: 16\n  batch_size: 4\n"
        "  steps_per_epoch: 2\n  n_filters: 4\n  n_blocks: 2\n  progress: false\n"
        "  device: cpu\n  scheduler: null\n"
        f"output:\n  model: {tmp_path / 'm.dl4ds'}\n"
    )
    assert run_cli("fit", config) == 0
    model = xr_dl4ds.load(tmp_path / "m.dl4ds")
    assert model.target == ("tas",) and model.config.n_filters == 4


def test_fit_set_overrides(files, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(toml_config("does-not-exist.nc", tmp_path / "ignored.dl4ds"))
    out = tmp_path / "m.dl4ds"
    status = run_cli(
        "fit",
        config,
        "--set",
        f"data.path={files['hr']}",  # not a TOML literal: read as a string
        "--set",
        "fit.epochs=2",
        "--set",
        "fit.static=['orog']",
        "--set",
        f"output.model={out}",
    )
    assert status == 0
    model = xr_dl4ds.load(out)
    assert model.history.sizes["epoch"] == 2
    assert model.static_names == ("orog",)
    assert not (tmp_path / "ignored.dl4ds").exists()


def test_fit_mos_lowres_path(files, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        toml_config(files["hr"], tmp_path / "m.dl4ds", data_extra=f'lowres_path = "{files["lr"]}"')
    )
    assert run_cli("fit", config) == 0
    assert xr_dl4ds.load(tmp_path / "m.dl4ds").training["mode"] == "mos"


def test_fit_writes_only_on_rank_0(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")  # without WORLD_SIZE, fit() trains alone
    config = tmp_path / "config.toml"
    config.write_text(toml_config(files["hr"], tmp_path / "m.dl4ds", tmp_path / "h.nc"))
    assert run_cli("fit", config) == 0
    assert list(tmp_path.iterdir()) == [config]
    assert capsys.readouterr().out == ""


def test_fit_unknown_key_lists_valid_keys_before_opening_data(tmp_path, capsys, monkeypatch):
    def no_open(*args, **kwargs):
        raise AssertionError("data was opened")

    monkeypatch.setattr(xr, "open_dataset", no_open)
    monkeypatch.setattr(xr, "open_zarr", no_open)
    config = tmp_path / "config.toml"
    config.write_text(
        toml_config(tmp_path / "missing.nc", tmp_path / "m.dl4ds", fit_extra="epoch = 3\n")
    )
    assert run_cli("fit", config) == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-dl4ds: error: Unknown key(s) in [fit]: 'epoch'.")
    assert "'epochs'?" in err  # the close match
    assert "Traceback" not in err
    valid = [
        n
        for n, p in inspect.signature(xr_dl4ds.fit).parameters.items()
        if p.kind is p.KEYWORD_ONLY and n not in ("lowres", "callback")
    ]
    for name in valid + ["n_filters", "n_blocks", "time_window"]:
        assert name in err
    assert not (tmp_path / "m.dl4ds").exists()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("[model]\nx = 1\n", "Unknown section(s) [model]"),
        ('[output]\nmodel = "m.dl4ds"\nplot = "p.png"\n', "Unknown key(s) in [output]: 'plot'"),
        ("[extra]\n", "Unknown section(s) [extra]"),
        ('[output]\nmodel = "m.dl4ds"\n[data.sel]\ntime = 1\n', "Cannot declare"),
    ],
)
def test_fit_config_errors(tmp_path, capsys, section, expected):
    config = tmp_path / "config.toml"
    config.write_text(f'[data]\npath = "x.nc"\nsel = {{}}\n[fit]\nscale = 4\n{section}')
    if "[output]" not in section:
        config.write_text(config.read_text() + '[output]\nmodel = "m.dl4ds"\n')
    assert run_cli("fit", config) == 2
    assert expected in capsys.readouterr().err


def test_fit_data_only_option_in_fit_section(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(toml_config("x.nc", "m.dl4ds", fit_extra='lowres = "lr.nc"\n'))
    assert run_cli("fit", config) == 2
    assert "'lowres' takes data: give the file as [data] lowres_path" in capsys.readouterr().err


def test_fit_missing_data_file_is_an_error(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(toml_config(tmp_path / "missing.nc", tmp_path / "m.dl4ds"))
    assert run_cli("fit", config) == 2
    assert "missing.nc' does not exist" in capsys.readouterr().err


def test_fit_dry_run(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text(toml_config(tmp_path / "missing.nc", tmp_path / "m.dl4ds"))
    assert run_cli("fit", config, "--dry-run", "--set", "fit.learning_rate=0.01") == 0
    out = capsys.readouterr().out
    assert "learning_rate = 0.01\n" in out
    assert "# loss = " in out  # defaults listed as comments
    assert list(tmp_path.iterdir()) == [config]
    # the printed configuration is valid TOML that reads back to the same values
    resolved = cli.load_config(_write(tmp_path / "resolved.toml", out))
    assert resolved == cli.load_config(config, ["fit.learning_rate=0.01"])


def test_fit_refuses_to_overwrite_before_training(files, tmp_path, capsys):
    model = tmp_path / "m.dl4ds"
    model.write_bytes(b"old")
    config = tmp_path / "config.toml"
    config.write_text(toml_config(files["hr"], model))
    assert run_cli("fit", config) == 2
    assert "already exists" in capsys.readouterr().err
    assert model.read_bytes() == b"old"


def test_yaml_without_pyyaml(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails
    config = _write(tmp_path / "c.yaml", "data: {path: x.nc}\n")
    assert run_cli("fit", config) == 2
    assert "pip install pyyaml" in capsys.readouterr().err


def test_bad_config_files(tmp_path, capsys):
    assert run_cli("fit", _write(tmp_path / "c.ini", "[data]\n")) == 2
    assert "use .toml, .yaml or .yml" in capsys.readouterr().err
    assert run_cli("fit", _write(tmp_path / "c.toml", "[data\n")) == 2
    assert "invalid TOML" in capsys.readouterr().err
    assert run_cli("fit", tmp_path / "nope.toml") == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("1e-3", 1e-3),
        ("true", True),
        ('["a", "b"]', ["a", "b"]),
        ("{time = 8}", {"time": 8}),
        ("era5.nc", "era5.nc"),
        ('"3"', "3"),
    ],
)
def test_parse_value(text, expected):
    assert cli.parse_value(text) == expected


def test_none_and_dates_are_normalized(tmp_path):
    config = _write(
        tmp_path / "c.toml",
        '[data]\npath = "x.nc"\nsel = {time = [2000-01-01, "none"]}\n[fit]\nscheduler = "None"\n',
    )
    loaded = cli.load_config(config)
    assert loaded["data"]["sel"]["time"] == ["2000-01-01", None]
    assert loaded["fit"]["scheduler"] is None


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr 3
def test_open_data(tmp_path):
    hr = synthetic_dataset(nt=6, ny=8, nx=8)
    hr.isel(time=slice(0, 3)).to_netcdf(tmp_path / "part_1.nc")
    hr.isel(time=slice(3, 6)).to_netcdf(tmp_path / "part_2.nc")
    hr.chunk(time=2).to_zarr(tmp_path / "hr.zarr")
    opened = [
        cli.open_data(str(tmp_path / "part_*.nc")),
        cli.open_data([str(tmp_path / "part_1.nc"), str(tmp_path / "part_2.nc")]),
        cli.open_data(str(tmp_path / "hr.zarr"), chunks={"time": 2}),
    ]
    for ds in opened:
        xr.testing.assert_allclose(ds.load(), hr)
        ds.close()
    with pytest.raises(xr_dl4ds.DL4DSError, match="no file matches"):
        cli.open_data(str(tmp_path / "other_*.nc"))


# -- downscale ----------------------------------------------------------------------------


def _expected(files):
    model = xr_dl4ds.load(files["model"])
    with xr.open_dataset(files["lr"]) as lr:
        return xr_dl4ds.downscale(lr[["tas"]], model, device="cpu").compute()


@pytest.mark.parametrize("ext", [".nc", ".zarr"])
def test_downscale(files, tmp_path, ext):
    out = tmp_path / f"fine{ext}"
    assert run_cli("downscale", files["model"], files["lr"], out, "--device", "cpu") == 0
    opener = xr.open_zarr if ext == ".zarr" else xr.open_dataset
    with opener(out) as actual:
        expected = _expected(files)
        xr.testing.assert_allclose(actual, expected)
        assert actual.sizes == {"time": 6, "lat": 32, "lon": 48}
        assert actual.attrs["Conventions"] == "CF-1.8"
        assert "downscaled x4 with xr_dl4ds" in actual.attrs["history"]
        assert actual["tas"].attrs["units"] == "K"
        assert actual["lat"].attrs["units"] == "degrees_north"
        assert actual["lon"].attrs["standard_name"] == "longitude"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left


def test_downscale_progress_in_a_batch_log(files, tmp_path, capsys):
    # stderr is not a terminal here: the bar is drawn at most every 10 s, its final
    # state is written, and the command does not wait for the next draw to end
    start = time.monotonic()
    assert (
        run_cli("downscale", files["model"], files["lr"], tmp_path / "f.nc", "--device", "cpu") == 0
    )
    assert time.monotonic() - start < 8
    err = capsys.readouterr().err
    assert err.count("% Completed") <= 2 and "100% Completed" in err


def test_downscale_coarsen_first(files, tmp_path):
    out = tmp_path / "pp.nc"
    args = ["--coarsen", "--chunks", "time=4", "--no-progress", "--device", "cpu"]
    assert run_cli("downscale", files["model"], files["hr"], out, *args) == 0
    with xr.open_dataset(out) as actual:
        xr.testing.assert_allclose(actual, _expected(files))


def test_downscale_variable_rename(files, tmp_path):
    renamed = tmp_path / "renamed.nc"
    with xr.open_dataset(files["lr"]) as lr:
        lr.rename(tas="gcm_tas").to_netcdf(renamed)
    out = tmp_path / "fine.nc"
    args = ["--variable", "gcm_tas=tas", "--no-progress", "--device", "cpu"]
    assert run_cli("downscale", files["model"], renamed, out, *args) == 0
    with xr.open_dataset(out) as actual:
        xr.testing.assert_allclose(actual["gcm_tas"], _expected(files)["tas"].rename("gcm_tas"))


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr 3, writing "old"
@pytest.mark.parametrize("ext", [".nc", ".zarr"])
def test_downscale_overwrite(files, tmp_path, capsys, ext):
    out = tmp_path / f"fine{ext}"
    args = [files["model"], files["lr"], out, "--no-progress", "--device", "cpu"]
    xr.Dataset({"old": ("x", [1.0])}).pipe(
        lambda d: d.to_zarr(out) if ext == ".zarr" else d.to_netcdf(out)
    )
    assert run_cli("downscale", *args) == 2
    assert "already exists. Pass --overwrite" in capsys.readouterr().err
    opener = xr.open_zarr if ext == ".zarr" else xr.open_dataset
    with opener(out) as kept:
        assert list(kept.data_vars) == ["old"]
    assert run_cli("downscale", *args, "--overwrite") == 0
    with opener(out) as new:
        assert list(new.data_vars) == ["tas"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_downscale_failure_leaves_no_output(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "fine.nc"
    args = [files["model"], files["lr"], out, "--no-progress", "--device", "cpu"]
    assert run_cli("downscale", *args, "--variable", "pr") == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-dl4ds: error: INPUT") and "'pr'" in err
    assert list(tmp_path.iterdir()) == []

    # a failure while the output is being computed and written: nothing is left either
    def broken(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(xr_dl4ds.inference, "_kernel", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_cli("downscale", *args)
    assert list(tmp_path.iterdir()) == []


def test_downscale_bad_chunks(files, tmp_path, capsys):
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, "--chunks", "member=2") == 2
    assert "not dimensions of the input" in capsys.readouterr().err
    assert not out.exists()


# -- downscale at scale: tiles, ensembles, samples, static fields, resume, scheduler ----------

CPU = ("--no-progress", "--device", "cpu")


@pytest.fixture(scope="module")
def mc_model(files):
    """A small model with Monte-Carlo dropout, trained on the same data as files["model"]."""
    hr = xr.open_dataset(files["hr"]).load()
    model = _fit_tiny(hr, dropout_rate=0.2, dropout_variant="mcdrop", seed=1)
    path = files["model"].parent / "mc.dl4ds"
    model.save(path)
    return path


@pytest.fixture
def spy(monkeypatch):
    """The keyword arguments of every call of xr_dl4ds.downscale by the command."""
    calls = []
    original = xr_dl4ds.downscale

    def downscale(obj, model, **kwargs):
        calls.append({"model": model, **kwargs})
        return original(obj, model, **kwargs)

    monkeypatch.setattr(xr_dl4ds, "downscale", downscale)
    return calls


@pytest.mark.parametrize(
    ("args", "tile", "halo"),
    [
        (["--tile", "3"], 3, None),
        (
            ["--tile", "lat=3,lon=5", "--halo", "lat=9", "--halo", "lon=9"],
            {"lat": 3, "lon": 5},
            {"lat": 9, "lon": 9},
        ),
        (["--tile", "lat=-1,lon=4"], {"lat": -1, "lon": 4}, None),
    ],
)
def test_downscale_tile_halo(files, tmp_path, spy, args, tile, halo):
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, *args, *CPU) == 0
    assert spy[0]["tile"] == tile and spy[0]["halo"] == halo
    with xr.open_dataset(out) as actual:
        expected = _expected(files)
        assert abs(actual["tas"] - expected["tas"]).max() < 1e-4  # K
        assert actual.sizes == expected.sizes


def test_downscale_batch_size_device_reach_downscale(files, tmp_path, spy):
    out = tmp_path / "fine.nc"
    args = ["--batch-size", "2", "--device", "cpu", "--no-progress"]
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 0
    assert spy[0]["batch_size"] == 2 and spy[0]["device"] == "cpu"
    assert spy[0]["samples"] is None and spy[0]["static"] is None and spy[0]["seed"] == 0


def test_downscale_samples(files, mc_model, tmp_path, spy):
    out = tmp_path / "mc.zarr"
    args = ["--samples", "3", "--seed", "5", *CPU]
    assert run_cli("downscale", mc_model, files["lr"], out, *args) == 0
    assert spy[0]["samples"] == 3 and spy[0]["seed"] == 5
    with xr.open_zarr(out) as actual, xr.open_dataset(files["lr"]) as lr:
        assert actual.sizes == {"realization": 3, "time": 6, "lat": 32, "lon": 48}
        expected = xr_dl4ds.downscale(lr[["tas"]], mc_model, samples=3, seed=5, device="cpu")
        xr.testing.assert_allclose(actual["tas"], expected["tas"].compute(), atol=1e-4)
        members = actual["tas"].values
        assert not np.allclose(members[0], members[1])  # different samples


def test_downscale_samples_need_mc_dropout(files, tmp_path, capsys):
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, "--samples", "2", *CPU) == 2
    err = capsys.readouterr().err
    assert "needs Monte-Carlo dropout" in err
    assert "samples= is --samples N" in err and "several MODEL files" in err
    assert not out.exists()


def test_downscale_ensemble(files, mc_model, tmp_path, spy, capsys):
    out = tmp_path / "ens.nc"
    models = f"{files['model']},{mc_model}"
    assert run_cli("downscale", models, files["lr"], out, *CPU) == 0
    assert len(spy[0]["model"]) == 2
    assert "ensemble of 2 models" in capsys.readouterr().err
    with xr.open_dataset(out) as actual:
        assert actual.sizes == {"realization": 2, "time": 6, "lat": 32, "lon": 48}
        ids = [xr_dl4ds.io.model_id(xr_dl4ds.load(p)) for p in (files["model"], mc_model)]
        assert list(actual["model_id"].values) == ids  # in the order given
        xr.testing.assert_allclose(
            actual["tas"].isel(realization=0, drop=True),
            _expected(files)["tas"],
            atol=1e-4,
        )
    # a glob: the same members, sorted (mc.dl4ds, model.dl4ds)
    out2 = tmp_path / "ens2.nc"
    pattern = files["model"].parent / "m*.dl4ds"
    assert run_cli("downscale", pattern, files["lr"], out2, *CPU) == 0
    with xr.open_dataset(out) as a, xr.open_dataset(out2) as b:
        xr.testing.assert_allclose(
            a["tas"].isel(realization=0, drop=True), b["tas"].isel(realization=1, drop=True)
        )


def test_downscale_static_new_domain(files, tmp_path, capsys):
    # the same fields 100 degrees further east: off the training grid, so the static
    # fields of that domain are needed
    shifted_lr, shifted_hr = tmp_path / "lr_east.nc", tmp_path / "static_east.nc"
    with xr.open_dataset(files["lr"]) as lr, xr.open_dataset(files["hr"]) as hr:
        lr.assign_coords(lon=lr.lon + 100).to_netcdf(shifted_lr)
        hr[["orog", "sftlf"]].assign_coords(lon=hr.lon + 100).to_netcdf(shifted_hr)
    out = tmp_path / "east.nc"
    assert run_cli("downscale", files["model"], shifted_lr, out, *CPU) == 2
    assert "static= is --static FILE" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli("downscale", files["model"], shifted_lr, out, "--static", shifted_hr, *CPU) == 0
    with xr.open_dataset(out) as actual:
        expected = _expected(files)
        np.testing.assert_allclose(actual["tas"].values, expected["tas"].values, atol=1e-4)
        np.testing.assert_allclose(actual["lon"].values, expected["lon"].values + 100)
    assert (
        run_cli(
            "downscale",
            files["model"],
            shifted_lr,
            tmp_path / "x.nc",
            "--static",
            tmp_path / "no.nc",
        )
        == 2
    )
    assert "--static: " in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr 3
def test_downscale_resume(files, tmp_path, monkeypatch, capsys):
    args = ["--chunks", "time=2", *CPU]  # 3 chunks along time
    reference = tmp_path / "reference.zarr"
    assert run_cli("downscale", files["model"], files["lr"], reference, *args) == 0
    out = tmp_path / "fine.zarr"

    original = xr_dl4ds.writing.to_zarr

    def interrupted(*a, **k):
        def stop(i, region):
            raise KeyboardInterrupt  # the job is killed after its first region

        return original(*a, **k, chunks_per_region=1, on_region=stop)

    monkeypatch.setattr(xr_dl4ds.writing, "to_zarr", interrupted)
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 130  # ctrl-C
    err = capsys.readouterr().err
    assert "interrupted: the zarr store" in err and "with --resume to write the rest" in err
    monkeypatch.setattr(xr_dl4ds.writing, "to_zarr", original)
    assert not xr_dl4ds.writing.is_complete(out)

    # without --resume: refused, and the message says how to go on
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 2
    assert "incomplete store left by an interrupted run. Pass --resume" in capsys.readouterr().err

    # another layout cannot resume it
    assert run_cli("downscale", files["model"], files["lr"], out, "--resume", *CPU) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and "rerun with the MODEL, INPUT and options" in err

    assert run_cli("downscale", files["model"], files["lr"], out, "--resume", *args) == 0
    assert "resumed: 1 of 3 chunks were already written" in capsys.readouterr().out
    assert xr_dl4ds.writing.is_complete(out)
    with xr.open_zarr(out) as actual, xr.open_zarr(reference) as expected:
        xr.testing.assert_identical(actual.drop_attrs(deep=False), expected.drop_attrs(deep=False))
        xr.testing.assert_allclose(actual, _expected(files))

    assert run_cli("downscale", files["model"], files["lr"], out, "--resume", *args) == 0
    assert "is already complete; nothing to do" in capsys.readouterr().out
    # --resume on a missing store starts it
    new = tmp_path / "new.zarr"
    assert run_cli("downscale", files["model"], files["lr"], new, "--resume", *args) == 0
    assert xr_dl4ds.writing.is_complete(new)


def test_downscale_resume_netcdf_is_an_error(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(xr_dl4ds, "load", _must_not_run)
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, "--resume") == 2
    err = capsys.readouterr().err
    assert "--resume works only for zarr outputs" in err and "'" + str(out) + "' is netCDF" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as exc:
        run_cli(
            "downscale", files["model"], files["lr"], tmp_path / "f.zarr", "--resume", "--overwrite"
        )
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr 3
def test_downscale_scheduler(files, tmp_path, local_cluster, capsys):
    from distributed import Client

    out = tmp_path / "fine.zarr"
    address = local_cluster.scheduler_address
    args = ["--chunks", "time=2", "--device", "cpu", "--scheduler", address]
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 0
    assert (
        f"computing on the dask scheduler {address} (1 workers, 2 threads"
        in capsys.readouterr().err
    )
    with xr.open_zarr(out) as actual:
        xr.testing.assert_allclose(actual, _expected(files))
    # netCDF through a scheduler file, with distributed's progress bar
    scheduler_file = tmp_path / "scheduler.json"
    with Client(address) as client:
        client.write_scheduler_file(str(scheduler_file))
    out = tmp_path / "fine.nc"
    args = ["--device", "cpu", "--progress", "--scheduler-file", scheduler_file]
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 0
    assert "100% Completed" in capsys.readouterr().err
    with xr.open_dataset(out) as actual:
        xr.testing.assert_allclose(actual, _expected(files))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.nc", "fine.zarr", "scheduler.json"]


def test_downscale_bad_scheduler(files, tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, "--scheduler", "node1") == 2
    err = capsys.readouterr().err
    assert "--scheduler: could not connect to the dask scheduler at node1" in err
    assert "tcp://HOST:8786" in err
    missing = tmp_path / "scheduler.json"
    assert run_cli("downscale", files["model"], files["lr"], out, "--scheduler-file", missing) == 2
    assert "--scheduler-file" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def _must_not_run(*args, **kwargs):
    raise AssertionError("an expensive step ran before the options were checked")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tile", "big"], "--tile 'big': 'big' is not an integer; expected N or DIM=N"),
        (["--tile", "lat="], "--tile 'lat=': expected N or DIM=N[,DIM=N]"),
        (["--tile", "=4"], "--tile '=4': expected N or DIM=N"),
        (["--tile", "0"], "--tile '0': 0 is too small"),
        (["--tile", "4,lat=4"], "--tile mixes a size for both spatial dims (4) with sizes per dim"),
        (["--tile", "lat=4", "--tile", "lat=8"], "--tile gives two sizes for 'lat' (4 and 8)"),
        (["--halo", "-1"], "--halo '-1': -1 is too small; expected N or DIM=N"),
        (["--halo", "lat=two"], "--halo 'lat=two': 'two' is not an integer"),
    ],
)
def test_downscale_bad_tile_syntax(files, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.setattr(xr_dl4ds, "load", _must_not_run)  # raised before the model is read
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xr-dl4ds: error: {expected}"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--tile", "time=4"],
            "--tile names ['time'], which are not spatial dimensions of the input",
        ),
        (["--halo", "y=4"], "--halo names ['y'], which are not dimensions of the input"),
    ],
)
def test_downscale_tile_dims(files, tmp_path, capsys, args, expected):
    out = tmp_path / "fine.nc"
    assert run_cli("downscale", files["model"], files["lr"], out, *args, *CPU) == 2
    err = capsys.readouterr().err
    assert expected in err and "e.g. " + args[0] + " lat=64,lon=64" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("{m},,{m}", "has an empty item"),
        ("{m},{m}", "names the model file"),
        ("{m},missing.dl4ds", "MODEL 'missing.dl4ds' (in MODEL"),
        ("{d}/none_*.dl4ds", "MODEL: no file matches"),
    ],
)
def test_downscale_bad_model_list(files, tmp_path, capsys, monkeypatch, model, expected):
    monkeypatch.setattr(xr_dl4ds, "load", _must_not_run)
    text = model.format(m=files["model"], d=files["model"].parent)
    assert run_cli("downscale", text, files["lr"], tmp_path / "fine.nc") == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--samples", "0"], "argument --samples: expected an integer >= 1, got '0'"),
        (["--batch-size", "x"], "argument --batch-size: expected an integer >= 1, got 'x'"),
        (["--seed", "-3"], "argument --seed: expected an integer >= 0, got '-3'"),
        (["--scheduler", "a", "--scheduler-file", "b"], "not allowed with argument"),
    ],
)
def test_downscale_bad_arguments(files, tmp_path, capsys, args, expected):
    with pytest.raises(SystemExit) as exc:
        run_cli("downscale", files["model"], files["lr"], tmp_path / "fine.nc", *args)
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


# -- help and version ---------------------------------------------------------------------


def test_fit_help_lists_every_fit_option(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("fit", "--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    names = [
        n for n, p in inspect.signature(xr_dl4ds.fit).parameters.items() if p.kind is p.KEYWORD_ONLY
    ]
    derived = {"backbone", "upsampling", "scale", "in_channels", "out_channels"}
    derived |= {"static_channels", "grid_shape"}
    names += [f.name for f in dataclasses.fields(ModelConfig) if f.name not in derived]
    missing = [n for n in names if f"\n  {n} " not in out]
    assert not missing
    assert "[data]" in out and "[output]" in out and "torchrun" in out and "RANK" in out


def test_help_and_version(capsys):
    for args in (["--help"], ["downscale", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exc:
            run_cli(*args)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--no-progress" in out and "--overwrite" in out and "--coarsen" in out
    assert out.rstrip().endswith(f"xr-dl4ds {xr_dl4ds.__version__}")


def test_python_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "xr_dl4ds", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert result.stdout.startswith("usage: xr-dl4ds")
    assert "fit" in result.stdout and "downscale" in result.stdout


def _write(path, text):
    path.write_text(text)
    return path


# -- evaluate -----------------------------------------------------------------------------

REPORT_FIGURES = ("maps.png", "metrics.png", "spectra.png")


@pytest.fixture(scope="module")
def prediction(files, tmp_path_factory):
    """The model's perfect-prognosis prediction of hr.nc (downscale --coarsen)."""
    path = tmp_path_factory.mktemp("evaluate") / "fine.nc"
    assert (
        run_cli("downscale", files["model"], files["hr"], path, "--coarsen", "--no-progress") == 0
    )
    return path


def _check_report(out, rows, figures=REPORT_FIGURES):
    table = pd.read_csv(out / "table.csv", index_col="name")
    assert table.index.tolist() == rows
    assert not table.isna().any().any()
    md = (out / "table.md").read_text().strip().splitlines()
    assert len(md) == 2 + len(rows) and md[0].startswith("| name | kind |")
    for name in figures:
        assert (out / name).stat().st_size > 5_000, name
    with xr.open_dataset(out / "scores.nc") as scores:
        assert scores["model"].values.tolist() == rows
    return table


def test_evaluate(files, prediction, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", files["hr"], f"resnet={prediction}", "--scale", 4, "--out", out]
    assert run_cli(*args, "--baselines", "bicubic,lapse_rate") == 0
    table = _check_report(out, ["resnet", "bicubic", "lapse_rate"])
    assert table.loc["bicubic", "skill_rmse_vs_bicubic"] == 0
    expected = xr_dl4ds.evaluate(
        xr.open_dataset(files["hr"]),
        {"resnet": xr.open_dataset(prediction)},
        scale=4,
        baselines=["bicubic", "lapse_rate"],
    )
    np.testing.assert_allclose(table["rmse"], expected["rmse"].squeeze().values)
    stdout = capsys.readouterr().out
    assert "| resnet | model |" in stdout and "wrote table.csv, table.md" in stdout
    # an existing report is kept unless --overwrite
    assert run_cli(*args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run_cli(*args, "--overwrite", "--metrics", "rmse", "--no-figures") == 0
    assert pd.read_csv(out / "table.csv").columns.tolist() == [
        "name",
        "kind",
        "rmse",
        "skill_rmse_vs_bicubic",
    ]


def test_evaluate_coarse_file_and_time_subset(files, prediction, tmp_path):
    """--coarse gives the scale; TRUTH and --coarse follow the predictions' time steps."""
    part = tmp_path / "part.nc"
    xr.open_dataset(prediction).isel(time=slice(2, 5)).to_netcdf(part)
    out = tmp_path / "eval"
    assert run_cli("evaluate", files["hr"], part, part.parent / "x=fine.nc", "--out", out) == 2
    assert run_cli("evaluate", files["hr"], part, "--coarse", files["lr"], "--out", out) == 0
    table = _check_report(out, ["part", "bicubic"])
    with xr.open_dataset(out / "scores.nc") as scores:
        assert scores.sizes["model"] == 2
    assert table["rmse"].gt(0).all()


def test_evaluate_errors(files, prediction, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run_cli("evaluate", files["hr"], prediction, prediction, "--scale", 4, "--out", out) == 2
    assert "Two predictions are called 'fine'" in capsys.readouterr().err
    assert run_cli("evaluate", files["hr"], prediction, "--baselines", "cubic", "--out", out) == 2
    assert "unknown ['cubic']" in capsys.readouterr().err
    assert not out.exists()


# -- compare ------------------------------------------------------------------------------

COMPARE_TOML = """\
[data]
path = "{data}"

[compare]
target = "tas"
scale = 4
static = ["orog", "sftlf"]
test_time = ["2000-01-05", "2000-01-06"]
epochs = 1
baselines = ["bicubic", "lapse_rate"]
metrics = ["rmse", "mae"]
device = "cpu"
progress = false
patch_size = 16
batch_size = 4
steps_per_epoch = 2
n_filters = 4
n_blocks = 1
{extra}
[[compare.configs]]
backbone = "resnet"

[[compare.configs]]
name = "cnn"
backbone = "convnet"
upsampling = "rc"
{config_extra}
[output]
dir = "{out}"
models = true
"""


def compare_config(tmp_path, data, out, extra="", config_extra=""):
    text = COMPARE_TOML.format(data=data, out=out, extra=extra, config_extra=config_extra)
    return _write(tmp_path / "compare.toml", text)


def test_compare(files, tmp_path, capsys):
    out = tmp_path / "report"
    config = compare_config(tmp_path, files["hr"], out)
    assert run_cli("compare", config) == 0
    table = _check_report(
        out,
        ["resnet+spc", "cnn", "bicubic", "lapse_rate"],
        REPORT_FIGURES + ("learning_curves.png",),
    )
    assert table["epochs"].tolist() == [1, 1, 0, 0]
    assert table.loc["cnn", "backbone"] == "convnet"
    assert xr_dl4ds.load(out / "models" / "cnn.dl4ds").config.upsampling == "rc"
    stdout = capsys.readouterr().out
    assert "| cnn | model | convnet | rc |" in stdout
    # the report is not replaced without --overwrite, and that is checked before training
    assert run_cli("compare", config) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_compare_dry_run_and_example(tmp_path, capsys):
    config = compare_config(tmp_path, tmp_path / "missing.nc", tmp_path / "out")
    assert run_cli("compare", config, "--dry-run", "--set", "compare.epochs=3") == 0
    out = capsys.readouterr().out
    assert "epochs = 3\n" in out and out.count("[[compare.configs]]") == 2
    resolved = cli.load_config(_write(tmp_path / "resolved.toml", out))
    assert resolved == cli.load_config(config, ["compare.epochs=3"])
    assert not (tmp_path / "out").exists()
    example = cli.load_config(_write(tmp_path / "example.toml", cli.EXAMPLE_COMPARE_TOML))
    cli.validate_compare_config(example)
    assert len(example["compare"]["configs"]) == 3


@pytest.mark.parametrize(
    ("extra", "config_extra", "expected"),
    [
        ("", "n_filter = 4\n", r"Unknown option(s) 'n_filter' in configs[1] ('cnn')"),
        ("", "seed = 1\n", "configs[1] ('cnn') sets 'seed', which is the same for every"),
        ("epoch = 2\n", "", "Unknown key(s) in [compare]: 'epoch'. Did you mean: 'epoch' -> "),
        ('lowres = "lr.nc"\n', "", "'lowres' takes data: give the file as [data] lowres_path"),
        ("checkpoint_path = 'c.pt'\n", "", "'checkpoint_path' is not supported"),
    ],
)
def test_compare_config_errors_before_opening_data(
    tmp_path, capsys, monkeypatch, extra, config_extra, expected
):
    def no_open(*args, **kwargs):
        raise AssertionError("data was opened")

    monkeypatch.setattr(xr, "open_dataset", no_open)
    config = compare_config(
        tmp_path, tmp_path / "missing.nc", tmp_path / "out", extra, config_extra
    )
    assert run_cli("compare", config) == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-dl4ds: error: ") and expected in err
    if "Unknown" in expected:
        assert "n_filters" in err and "learning_rate" in err  # the valid keys are listed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[data]\npath = "x.nc"\n[compare]\nscale = 4\n[output]\ndir = "o"\n', "needs configs"),
        ('[data]\npath = "x.nc"\n[compare]\nconfigs = [{}]\n[output]\ndir = "o"\n', "needs scale"),
        ('[data]\npath = "x.nc"\n[compare]\nscale = 4\nconfigs = [{}]\n', "needs dir"),
        ('[data]\npath = "x.nc"\n[fit]\nscale = 4\n', "Unknown section(s) [fit]"),
    ],
)
def test_compare_incomplete_configs(tmp_path, capsys, text, expected):
    assert run_cli("compare", _write(tmp_path / "c.toml", text)) == 2
    assert expected in capsys.readouterr().err
