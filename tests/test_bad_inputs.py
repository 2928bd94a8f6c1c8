"""The bad-input catalogue: malformed inputs through ``pair``, ``fit``, ``downscale``,
``evaluate`` and the CLI.

Each case expects one specific :class:`~xr_dl4ds.DL4DSError` subclass, a message that
names the problem and says how to fix it, and nothing written to disk: every case runs in
an empty working directory (``fit`` with a checkpoint path in it, the CLI with its output
paths in it), which must still be empty afterwards. The cases raise before training or
downscaling starts, so the module is fast.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds.exceptions import (
    ConfigError,
    DataError,
    DL4DSError,
    GridError,
    ModelFileError,
    RegistryError,
    ScaleError,
    UnitsError,
    VariableError,
)
from xr_dl4ds.testing import synthetic_dataset

TINY = {
    "target": "tas",
    "scale": 4,
    "epochs": 1,
    "steps_per_epoch": 1,
    "batch_size": 2,
    "patch_size": 8,
    "n_filters": 4,
    "n_blocks": 1,
    "progress": False,
    "device": "cpu",
    "seed": 0,
}


def _hr() -> xr.Dataset:
    return synthetic_dataset(nt=4, ny=16, nx=24, seed=0)


@pytest.fixture(scope="module")
def model():
    return _hr().dl4ds.fit(**TINY)


def _coarse() -> xr.DataArray:
    return _hr()["tas"].dl4ds.coarsen(scale=4)


def _edit(ds: xr.Dataset, name: str, fn: Callable[[np.ndarray], None]) -> xr.Dataset:
    ds = ds.copy(deep=True)
    fn(ds[name].values)
    return ds


def _with(ds: xr.Dataset, **variables) -> xr.Dataset:
    return ds.assign(variables)


def _predictor(values: float = 1000.0) -> xr.Dataset:
    hr = _hr()
    psl = (hr["tas"] * 0 + values).assign_attrs(units="hPa")
    return hr.assign(psl=psl)


def _fit(ds, **kw):
    """fit with a checkpoint path in the working directory: nothing may appear there."""
    return ds.dl4ds.fit(**{**TINY, "checkpoint_path": "ckpt.pt", **kw})


def _lowres() -> xr.DataArray:
    return _hr()["tas"].dl4ds.coarsen(scale=4)


@dataclass
class Case:
    id: str
    call: Callable[..., object]
    error: type[DL4DSError]
    match: tuple[str, ...]  # regexes the message must contain (problem and fix)


def _set_nan(values):
    values[0, 0] = np.nan


# -- pair / fit -------------------------------------------------------------------------
FIT_CASES = [
    Case(
        "non-monotonic longitude",
        lambda: _fit(_hr().isel(lon=np.r_[1, 0, 2:24])),
        GridError,
        (r"'lon' is not strictly monotonic", r"sortby\('lon'\)"),
    ),
    Case(
        "repeated latitude",
        lambda: _fit(_hr().isel(lat=np.r_[0, 0, 1:15])),
        GridError,
        (r"'lat' is not strictly monotonic: it repeats", r"drop_duplicates"),
    ),
    Case(
        "duplicated times",
        lambda: _fit(_hr().isel(time=[0, 1, 1, 2])),
        DataError,
        (r"1 duplicated step", r"drop_duplicates\('time'\)"),
    ),
    Case(
        "times out of order",
        lambda: _fit(_hr().isel(time=[0, 2, 1, 3])),
        DataError,
        (r"'time' is not increasing", r"sortby\('time'\)"),
    ),
    Case(
        "irregular grid spacing",
        lambda: _fit(_hr().assign_coords(lon=_hr().lon + np.r_[0, 0.4, np.zeros(22)])),
        GridError,
        (r"'lon' is not regularly spaced", r"regrid onto a regular grid"),
    ),
    Case(
        "1-pixel domain",
        lambda: _fit(_hr().isel(lat=[0], lon=[0])),
        GridError,
        (r"\(lat: 1, lon: 1\) is smaller than one coarse cell", r"smaller scale"),
    ),
    Case(
        "grid smaller than one coarse cell along one dim",
        lambda: _fit(_hr().isel(lat=slice(0, 3))),
        GridError,
        (r"smaller than one coarse cell at scale=4", r"larger domain"),
    ),
    Case(
        "scale larger than the grid",
        lambda: _fit(_hr(), scale=32),
        GridError,
        (r"smaller than one coarse cell at scale=32", r"smaller scale"),
    ),
    Case(
        "patch not a multiple of scale",
        lambda: _fit(_hr(), patch_size=10),
        ConfigError,
        (r"patch_size=10", r"multiple of scale=4"),
    ),
    Case(
        "scale 1",
        lambda: _fit(_hr(), scale=1),
        ScaleError,
        (r"integer >= 2, got 1", r"regrid the low-resolution data"),
    ),
    Case(
        "fractional scale",
        lambda: _fit(_hr(), scale=2.5),
        ScaleError,
        (r"got 2.5", r"pass that integer"),
    ),
    Case(
        "integer target",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].astype("int16"))),
        DataError,
        (r"'tas' is int16 \(integers\)", r"astype\('float32'\)"),
    ),
    Case(
        "packed integer target (scale_factor not decoded)",
        lambda: _fit(
            _with(_hr(), tas=(_hr()["tas"] * 100).astype("int16").assign_attrs(scale_factor=0.01))
        ),
        DataError,
        (r"\['scale_factor'\]: the data were not decoded", r"decode_cf"),
    ),
    Case(
        "float16 target",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].astype("float16"))),
        DataError,
        (r"float16, which keeps about 3 significant digits", r"astype\('float32'\)"),
    ),
    Case(
        "undeclared fill value 1e20 in the target",
        lambda: _fit(_edit(_hr(), "tas", lambda v: v.__setitem__((0, 0, slice(0, 5)), 1e20))),
        DataError,
        (r"5 value\(s\) of magnitude >= 1e\+15 \(largest 1e\+20\)", r"_FillValue"),
    ),
    Case(
        "netCDF default fill 9.97e36 in a static field",
        lambda: _fit(_edit(_hr(), "orog", lambda v: v.__setitem__((0, 0), 9.969209968386869e36))),
        DataError,
        (r"static field 'orog' holds 1 value", r"mask them"),
    ),
    Case(
        "infinite value in a predictor",
        lambda: _fit(
            _edit(_predictor(), "psl", lambda v: v.__setitem__((1, 2, 3), np.inf)),
            predictors=["psl"],
        ),
        DataError,
        (r"predictor 'psl' has 1 infinite value", r"np\.isfinite"),
    ),
    Case(
        "-inf in the target",
        lambda: _fit(_edit(_hr(), "tas", lambda v: v.__setitem__((0, 1, 1), -np.inf))),
        DataError,
        (r"target 'tas' has 1 infinite value", r"where\(np\.isfinite"),
    ),
    Case(
        "static field with NaN",
        lambda: _fit(_edit(_hr(), "orog", _set_nan)),
        DataError,
        (r"static field 'orog' has 1 missing cell", r"fillna\(0\)"),
    ),
    Case(
        "ensemble member dim without a role",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].expand_dims(member=3))),
        VariableError,
        (r"\['member'\] beyond the time and spatial dims", r"isel\(member=0\)", r"stack"),
    ),
    Case(
        "level dim without a role",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].expand_dims(level=[850, 500]))),
        VariableError,
        (r"\['level'\] beyond", r"sel\(level=850\)"),
    ),
    Case(
        "predictor with a level dim",
        lambda: _fit(
            _predictor().assign(psl=_predictor()["psl"].expand_dims(plev=[850.0, 500.0])),
            predictors=["psl"],
        ),
        VariableError,
        (r"predictor 'psl' has dims \('plev'", r"to_dataset\('plev'\)"),
    ),
    Case(
        "static field with a time dim",
        lambda: _fit(_hr(), static=["tas"], target=None),
        VariableError,
        (r"'tas'",),
    ),
    Case(
        "calendars differ (noleap low-res, standard high-res)",
        lambda: _fit(_hr(), lowres=_lowres().convert_calendar("noleap", use_cftime=True)),
        DataError,
        (r"'proleptic_gregorian', the low-resolution data uses 'noleap'", r"convert_calendar"),
    ),
    Case(
        "units missing on the target",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].drop_attrs())),
        UnitsError,
        (r"'tas' has no 'units' attribute", r"attrs\['units'\] = "),
    ),
    Case(
        "units unparseable",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"].assign_attrs(units="Kelvins please"))),
        UnitsError,
        (r"units 'Kelvins please', which pint .* cannot read", r"attrs\['units'\]"),
    ),
    Case(
        "MOS low-res in units that do not convert",
        lambda: _fit(_hr(), lowres=_lowres().assign_attrs(units="m")),
        UnitsError,
        (r"low-resolution 'tas' is in 'm'", r"'K'"),
    ),
    Case(
        "constant target",
        lambda: _fit(_with(_hr(), tas=(_hr()["tas"] * 0 + 280.0).assign_attrs(units="K"))),
        DataError,
        (r"'tas' is constant \(280 K\)", r"nothing to learn"),
    ),
    Case(
        "target all NaN",
        lambda: _fit(_with(_hr(), tas=_hr()["tas"] * np.nan)),
        DataError,
        (r"'tas' has no valid value \(all NaN\)", r"selected period"),
    ),
    Case(
        "empty time selection",
        lambda: _fit(_hr().sel(time=slice("1990", "1991"))),
        DataError,
        (r"no time step along 'time'", r"sel\(time=slice"),
    ),
    Case(
        "Dataset with no data variables",
        lambda: _fit(_hr().drop_vars(["tas", "orog", "sftlf"])),
        VariableError,
        (r"not found", r"data variables are \[\]"),
    ),
    Case(
        "DataArray without a name",
        lambda: _fit(_hr()["tas"].rename(None), target=None),
        VariableError,
        (r"DataArray has no name", r"da\.rename\('tas'\)"),
    ),
    Case(
        "target not in the Dataset",
        lambda: _fit(_hr(), target="pr"),
        VariableError,
        (r"\['pr'\] not found", r"'tas'"),
    ),
    Case(
        "no time dimension",
        lambda: _fit(_hr()["tas"].isel(time=0, drop=True)),
        GridError,
        (r"No time dimension found", r"time_dim="),
    ),
    Case(
        "MOS low-res not nested in the high-res grid",
        lambda: _fit(_hr(), lowres=_lowres().assign_coords(lat=_lowres().lat + 1.3)),
        GridError,
        (r"does not nest", r"regrid the low-res data conservatively"),
    ),
    Case(
        "MOS low-res with no common time step",
        lambda: _fit(
            _hr(), lowres=_lowres().assign_coords(time=_lowres().time + np.timedelta64(100, "D"))
        ),
        DataError,
        (r"no time step in common", r"align them"),
    ),
    Case(
        "unknown backbone",
        lambda: _fit(_hr(), backbone="resnt"),
        RegistryError,
        (r"Unknown backbone 'resnt'", r"Valid backbones"),
    ),
    Case(
        "negative epochs",
        lambda: _fit(_hr(), epochs=-1),
        ConfigError,
        (r"epochs=-1", r"integer >= 1"),
    ),
]


# -- downscale ----------------------------------------------------------------------------
def _down(model, x, **kw):
    return x.dl4ds.downscale(model, device="cpu", **kw).compute()


DOWNSCALE_CASES = [
    Case(
        "input on the high-resolution grid",
        lambda m: _down(m, _hr()["tas"]),
        GridError,
        (r"does not match the model's low-resolution grid", r"expected grid"),
    ),
    Case(
        "input variable renamed",
        lambda m: _down(m, _coarse().rename("pr")),
        VariableError,
        (r"named 'pr' but the model was trained on 'tas'", r"rename\('tas'\)"),
    ),
    Case(
        "input units that do not convert",
        lambda m: _down(m, _coarse().assign_attrs(units="m")),
        UnitsError,
        (r"Cannot convert units 'm' to 'K'", r"'units' attribute"),
    ),
    Case(
        "input without units",
        lambda m: _down(m, _coarse().drop_attrs()),
        UnitsError,
        (r"no 'units' attribute", r"attrs\['units'\] = 'K'"),
    ),
    Case(
        "integer input",
        lambda m: _down(m, _coarse().astype("int32")),
        DataError,
        (r"input 'tas' is int32", r"astype\('float32'\)"),
    ),
    Case(
        "infinite value in a lazy input (found by its task)",
        lambda m: _down(m, _coarse().where(_coarse().lon < 0, np.inf).chunk(time=2)),
        DataError,
        (r"input 'tas' of downscale holds \d+ infinite values", r"np\.isfinite"),
    ),
    Case(
        "undeclared fill value in the input",
        lambda m: _down(m, _coarse().where(_coarse().lat < 50, 1e20)),
        DataError,
        (r"undeclared fill values", r"_FillValue"),
    ),
    Case(
        "tile of 0 cells",
        lambda m: _down(m, _coarse(), tile=0),
        ConfigError,
        (r"tile along 'lat' is 0", r"integer >= 1"),
    ),
    Case(
        "negative halo",
        lambda m: _down(m, _coarse(), tile=2, halo=-1),
        ConfigError,
        (r"halo along 'lat' is -1", r"integer >= 0"),
    ),
    Case(
        "samples from a model without Monte-Carlo dropout",
        lambda m: _down(m, _coarse(), samples=3),
        ConfigError,
        (r"samples=3 needs Monte-Carlo dropout", r"dropout_variant='mcdrop'"),
    ),
    Case(
        "not a model",
        lambda m: _coarse().dl4ds.downscale(42),
        ConfigError,
        (r"got int", r"xr_dl4ds\.load\(\)"),
    ),
    Case(
        "a model file that is not one",
        lambda m: (open("fake.dl4ds", "wb").write(b"not a model"), _down("fake.dl4ds", _coarse())),
        ModelFileError,
        (r"fake\.dl4ds",),
    ),
]


# -- evaluate -----------------------------------------------------------------------------
def _pred(m):
    return _coarse().dl4ds.downscale(m, device="cpu")


EVALUATE_CASES = [
    Case(
        "unknown metric",
        lambda m: xr_dl4ds.evaluate(_hr()["tas"], _pred(m), metrics=["rmsee"]),
        ConfigError,
        (r"Unknown metric\(s\) \['rmsee'\]", r"choose from"),
    ),
    Case(
        "prediction on another grid",
        lambda m: xr_dl4ds.evaluate(_hr()["tas"].isel(lat=slice(0, 8)), _pred(m)),
        GridError,
        (r"not on the truth's grid", r"Select the same cells"),
    ),
    Case(
        "prediction in units that do not convert",
        lambda m: xr_dl4ds.evaluate(_hr()["tas"], _pred(m).assign_attrs(units="m")),
        UnitsError,
        (r"in 'm' and the truth in 'K'", r"'units' attribute"),
    ),
    Case(
        "unknown baseline",
        lambda m: xr_dl4ds.evaluate(_hr()["tas"], _pred(m), baselines=["bicubik"]),
        ConfigError,
        (r"Unknown baseline\(s\) \['bicubik'\]", r"choose from"),
    ),
    Case(
        "reduction over a dim the data lack",
        lambda m: xr_dl4ds.evaluate(_hr()["tas"], _pred(m), dim="member"),
        ConfigError,
        (r"dim='member'", r"not among the truth's dims"),
    ),
]


# -- the CLI ------------------------------------------------------------------------------
def _config(text: str) -> str:
    with open("config.toml", "w") as f:
        f.write(text)
    return "config.toml"


def _cli(argv: list[str]):
    """Run one subcommand the way main() does, but let the error through (main prints it
    and exits with 2: test_cli_prints_the_error_and_exits_2)."""
    from xr_dl4ds.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def _write_hr(ds: xr.Dataset | None = None) -> str:
    (ds if ds is not None else _hr()).to_netcdf("hr.nc")
    return "hr.nc"


def _fit_config(data: str = 'path = "hr.nc"', fit: str = "", output: str = "") -> str:
    return _config(
        f"[data]\n{data}\n[fit]\ntarget = 'tas'\nscale = 4\nepochs = 1\n"
        f"steps_per_epoch = 1\npatch_size = 8\nn_filters = 4\nn_blocks = 1\n"
        f"device = 'cpu'\nprogress = false\n{fit}\n"
        f"[output]\nmodel = 'out/model.dl4ds'\n{output}\n"
    )


CLI_CASES = [
    Case(
        "cli fit: unknown [fit] key",
        lambda m: (_write_hr(), _cli(["fit", _fit_config(fit="epoch = 3")])),
        ConfigError,
        (r"epoch", r"epochs"),
    ),
    Case(
        "cli fit: data file missing",
        lambda m: _cli(["fit", _fit_config(data='path = "nowhere.nc"')]),
        ConfigError,
        (r"nowhere\.nc",),
    ),
    Case(
        "cli fit: integer target in the file",
        lambda m: (
            _write_hr(_with(_hr(), tas=_hr()["tas"].round().astype("int32"))),
            _cli(["fit", _fit_config()]),
        ),
        DataError,
        (r"'tas' is int32 \(integers\)", r"astype\('float32'\)"),
    ),
    Case(
        "cli fit: fill values 1e20 not declared in the file",
        lambda m: (
            _write_hr(_edit(_hr(), "tas", lambda v: v.__setitem__((0, 0, 0), 1e20))),
            _cli(["fit", _fit_config()]),
        ),
        DataError,
        (r"magnitude >= 1e\+15", r"_FillValue"),
    ),
    Case(
        "cli downscale: input in units that do not convert",
        lambda m: (
            m.save("m.dl4ds"),
            _coarse().assign_attrs(units="m").to_netcdf("coarse.nc"),
            _cli(["downscale", "m.dl4ds", "coarse.nc", "out.nc", "--device", "cpu"]),
        ),
        UnitsError,
        (r"'m' to 'K'",),
    ),
    Case(
        "cli downscale: a non-monotonic input grid",
        lambda m: (
            m.save("m.dl4ds"),
            _coarse().isel(lon=[1, 0, 2, 3, 4, 5]).to_netcdf("coarse.nc"),
            _cli(["downscale", "m.dl4ds", "coarse.nc", "out.zarr", "--device", "cpu"]),
        ),
        GridError,
        (r"'lon'",),
    ),
    Case(
        "cli evaluate: prediction on another grid",
        lambda m: (
            _hr()["tas"].to_netcdf("truth.nc"),
            _pred(m).isel(lat=slice(0, 8)).to_netcdf("pred.nc"),
            _cli(["evaluate", "truth.nc", "pred.nc", "--out", "report"]),
        ),
        GridError,
        (r"not on the truth's grid",),
    ),
]

# files a CLI case writes itself, as its inputs; anything else is an output
_INPUTS = {"config.toml", "hr.nc", "m.dl4ds", "coarse.nc", "truth.nc", "pred.nc", "fake.dl4ds"}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses(case: Case, model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(case.error) as info:
        case.call(model)
    _check(case, info.value)
    written = sorted(set(os.listdir(tmp_path)) - _INPUTS)
    assert written == [], f"outputs left behind: {written}"


def test_cli_prints_the_error_and_exits_2(tmp_path, monkeypatch, capsys) -> None:
    from xr_dl4ds.cli import main

    monkeypatch.chdir(tmp_path)
    _write_hr(_with(_hr(), tas=_hr()["tas"].drop_attrs()))
    assert main(["fit", _fit_config()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xr-dl4ds: error: The target 'tas' has no 'units'")
    assert "Traceback" not in err[0]
    assert sorted(os.listdir(tmp_path)) == ["config.toml", "hr.nc"]


@contextlib.contextmanager
def _nothing_written(tmp_path):
    before = sorted(os.listdir(tmp_path))
    yield
    after = sorted(p for p in os.listdir(tmp_path) if p != "fake.dl4ds")
    assert after == [p for p in before if p != "fake.dl4ds"], f"written: {after}"


def _check(case: Case, err: BaseException) -> None:
    assert type(err) is case.error or isinstance(err, case.error), type(err)
    message = str(err)
    for pattern in case.match:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"


@pytest.mark.parametrize("case", FIT_CASES, ids=[c.id for c in FIT_CASES])
def test_fit_refuses(case: Case, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with _nothing_written(tmp_path), pytest.raises(case.error) as info:
        case.call()
    _check(case, info.value)


PAIR_CASES = [
    Case(
        "pair: non-monotonic latitude",
        lambda: xr_dl4ds.pair(_hr().isel(lat=np.r_[3, 2, 1, 0, 4:16]), scale=4),
        GridError,
        (r"'lat' is not strictly monotonic", r"sortby\('lat'\)"),
    ),
    Case(
        "pair: float16 static field is fine, float16 predictor is not",
        lambda: xr_dl4ds.pair(
            _predictor().assign(psl=_predictor()["psl"].astype("float16")),
            scale=4,
            predictors=["psl"],
        ),
        DataError,
        (r"predictor 'psl' is float16", r"astype\('float32'\)"),
    ),
    Case(
        "pair: predictor calendar differs",
        lambda: xr_dl4ds.pair(
            _hr(),
            scale=4,
            predictors=_predictor()[["psl"]].convert_calendar(
                "360_day", use_cftime=True, align_on="year"
            ),
        ),
        DataError,
        (r"predictor 'psl' uses '360_day'", r"convert_calendar"),
    ),
    Case(
        "pair: predictor without units",
        lambda: xr_dl4ds.pair(
            _predictor().assign(psl=_predictor()["psl"].drop_attrs()), scale=4, predictors="psl"
        ),
        UnitsError,
        (r"predictor 'psl' has no 'units'", r"attrs\['units'\]"),
    ),
    Case(
        "pair: static field on another grid",
        lambda: xr_dl4ds.pair(
            _hr(), scale=4, static=_hr()["orog"].assign_coords(lon=_hr().lon + 100)
        ),
        GridError,
        (r"static field 'orog' is on another grid", r"Regrid it onto the target grid"),
    ),
]


@pytest.mark.parametrize("case", PAIR_CASES, ids=[c.id for c in PAIR_CASES])
def test_pair_refuses(case: Case) -> None:
    with pytest.raises(case.error) as info:
        case.call()
    _check(case, info.value)


@pytest.mark.parametrize("case", DOWNSCALE_CASES, ids=[c.id for c in DOWNSCALE_CASES])
def test_downscale_refuses(case: Case, model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with _nothing_written(tmp_path), pytest.raises(case.error) as info:
        case.call(model)
    _check(case, info.value)


@pytest.mark.parametrize("case", EVALUATE_CASES, ids=[c.id for c in EVALUATE_CASES])
def test_evaluate_refuses(case: Case, model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with _nothing_written(tmp_path), pytest.raises(case.error) as info:
        case.call(model)
    _check(case, info.value)


def test_the_catalogue_is_large_and_distinct() -> None:
    cases = FIT_CASES + PAIR_CASES + DOWNSCALE_CASES + EVALUATE_CASES + CLI_CASES
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)) >= 30
    kinds = {c.error for c in cases}
    assert {GridError, DataError, VariableError, UnitsError, ConfigError, ScaleError} <= kinds


# -- what is accepted: the right thing instead of an error --------------------------------
def test_declared_fill_values_in_attrs_are_missing_cells() -> None:
    """A _FillValue attribute (data not decoded) marks missing cells, as CF decoding
    would; the cells are left out of the statistics instead of being learned as -999."""
    hr = _hr()
    raw = hr.copy(deep=True)
    raw["tas"].values[0, 0, :5] = -999.0
    raw["tas"].attrs["_FillValue"] = -999.0
    p = xr_dl4ds.pair(raw, scale=4)
    assert int(p.highres["tas"].isnull().sum()) == 5
    assert "_FillValue" not in p.highres["tas"].attrs
    decoded = hr.copy(deep=True)
    decoded["tas"].values[0, 0, :5] = np.nan
    xr.testing.assert_identical(p.highres["tas"], xr_dl4ds.pair(decoded, scale=4).highres["tas"])


def test_mos_low_res_in_other_units_is_converted() -> None:
    hr = _hr()
    lr_k = _lowres()
    lr_c = (lr_k - 273.15).assign_attrs({**lr_k.attrs, "units": "degC"})
    a = xr_dl4ds.pair(hr, scale=4, lowres=lr_k).lowres["tas"]
    b = xr_dl4ds.pair(hr, scale=4, lowres=lr_c).lowres["tas"]
    assert b.attrs["units"] == "K"
    np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-4)


def test_longitudes_that_wrap_are_monotonic() -> None:
    """A regional grid across the prime meridian in 0..360 (350, 355, 0, 5, ...)."""
    hr = _hr()
    lon = (hr.lon.values % 360).astype(float)
    assert (np.diff(lon) < 0).any()  # the coordinate really wraps
    p = xr_dl4ds.pair(hr.assign_coords(lon=("lon", lon, hr.lon.attrs)), scale=4)
    assert p.highres.sizes["lon"] == 24


def test_noleap_on_both_sides_is_fine() -> None:
    hr = _hr().convert_calendar("noleap", use_cftime=True)
    lr = _lowres().convert_calendar("noleap", use_cftime=True)
    p = xr_dl4ds.pair(hr, scale=4, lowres=lr)
    assert p.mode == "mos" and p.highres.sizes["time"] == 4


def test_integer_land_sea_mask_is_a_valid_static_field() -> None:
    hr = _hr()
    p = xr_dl4ds.pair(hr.assign(sftlf=(hr["sftlf"] > 0.5).astype("int8")), scale=4)
    assert "sftlf" in p.static_names


def test_an_ensemble_member_dim_is_downscaled_member_by_member(model) -> None:
    """At inference every dim but the spatial ones is a batch dim: members need no role."""
    coarse = _coarse()
    ens = xr.concat([coarse, coarse + 1.0], dim="member").assign_attrs(coarse.attrs)
    out = ens.dl4ds.downscale(model, device="cpu")
    assert out.sizes["member"] == 2
    one = coarse.dl4ds.downscale(model, device="cpu")
    np.testing.assert_array_equal(out.isel(member=0).values, one.values)


def test_nan_in_predictors_is_filled_not_refused(tmp_path) -> None:
    """Documented: NaN in inputs (e.g. SST over land) are filled with the training mean;
    only infinite values are refused."""
    ds = _edit(_predictor(), "psl", lambda v: v.__setitem__((0, 0, 0), np.nan))
    ds["psl"].values[...] += np.random.default_rng(0).normal(size=ds["psl"].shape)
    model = ds.dl4ds.fit(**{**TINY, "predictors": ["psl"]})
    assert model.predictors == ("psl",)


def test_a_member_dim_declared_as_samples_trains() -> None:
    """The fix the member-dim error suggests: stack the members into the sample dim."""
    hr = _hr()
    ens = hr.assign(tas=xr.concat([hr["tas"], hr["tas"] + 1.0], dim="member"))
    samples = ens.stack(sample=("time", "member"))
    model = samples.dl4ds.fit(**{**TINY, "time_dim": "sample"})
    assert model.stats["tas"].mean == pytest.approx(float(hr["tas"].mean()) + 0.5, rel=1e-6)


def test_a_360_day_calendar_trains_splits_and_downscales() -> None:
    hr = synthetic_dataset(nt=8, ny=16, nx=24, seed=0).convert_calendar(
        "360_day", use_cftime=True, align_on="year"
    )
    model = hr.dl4ds.fit(**{**TINY, "val_time": slice("2000-01-07", "2000-01-08")})
    assert np.isfinite(model.history["val_loss"].values).all()
    out = hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
    assert out.time.dt.calendar == "360_day"
    xr.testing.assert_identical(out.time, hr.time)
