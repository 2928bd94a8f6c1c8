"""The ``xr-dl4ds`` command line: fit from TOML/YAML, downscale files, help and errors."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import numpy as np
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


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """High-res and coarsened synthetic data on disk, and a small model trained on it."""
    root = tmp_path_factory.mktemp("cli")
    hr = synthetic_dataset(nt=6, ny=32, nx=48)
    hr.to_netcdf(root / "hr.nc")
    xr_dl4ds.coarsen(hr, 4).to_netcdf(root / "lr.nc")
    model = xr_dl4ds.fit(
        hr,
        scale=4,
        static=["orog", "sftlf"],
        epochs=1,
        patch_size=16,
        batch_size=4,
        steps_per_epoch=2,
        n_filters=4,
        n_blocks=2,
        progress=False,
        device="cpu",
    )
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
