"""Figures of xr_dl4ds.plot: panels, shared colour scales, units, saving, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from xr_dl4ds import metrics
from xr_dl4ds.exceptions import DataError, GridError, VariableError
from xr_dl4ds.testing import synthetic_dataarray

matplotlib = pytest.importorskip("matplotlib")
plot = pytest.importorskip("xr_dl4ds.plot")


@pytest.fixture(autouse=True)
def agg_backend():
    matplotlib.use("Agg")
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def fields():
    truth = synthetic_dataarray(nt=3, ny=16, nx=24, seed=2)
    coarse = truth.dl4ds.coarsen(scale=4)
    bicubic = metrics.interpolate(coarse, scale=4)
    return {"truth": truth, "coarse": coarse, "bicubic": bicubic, "model": truth + 0.5}


def test_import_does_not_load_matplotlib():
    code = "import sys, xr_dl4ds; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_says_how_to_install(monkeypatch, fields):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install xr_dl4ds\[plot\]"):
        plot.maps(fields["truth"])


@pytest.mark.parametrize("descending", [False, True])
def test_maps_shared_scales_titles_and_units(fields, descending):
    flip = (lambda da: da.isel(lat=slice(None, None, -1))) if descending else (lambda da: da)
    truth = flip(fields["truth"])
    fig = plot.maps(
        truth,
        coarse=flip(fields["coarse"]),
        baselines={"bicubic": flip(fields["bicubic"])},
        predictions={"model": flip(fields["model"])},
        time=1,
    )
    n = 4  # coarse, bicubic, model, truth
    panels, error_row, colorbars = fig.axes[:n], fig.axes[n : 2 * n], fig.axes[2 * n :]
    assert len(fig.axes) == 2 * n + 2
    assert [ax.get_title().splitlines()[0] for ax in panels] == [
        "coarse",
        "bicubic",
        "model",
        "truth",
    ]
    assert [ax.axison for ax in error_row] == [False, True, True, False]

    clims = {ax.collections[0].get_clim() for ax in panels}
    assert len(clims) == 1  # one colour scale for every field
    expected = tuple(np.percentile(truth.isel(time=1).values, [2, 98]))
    np.testing.assert_allclose(clims.pop(), expected, rtol=1e-6)

    error_clims = {ax.collections[0].get_clim() for ax in error_row if ax.axison}
    assert len(error_clims) == 1
    lo, hi = error_clims.pop()
    assert lo == -hi and hi > 0

    expected_rmse = float(
        metrics.rmse(fields["bicubic"].isel(time=1), fields["truth"].isel(time=1))
    )
    assert panels[1].get_title().splitlines()[1] == f"RMSE {expected_rmse:.3g} K"
    assert panels[2].get_title() == "model\nRMSE 0.5 K"
    assert colorbars[0].get_ylabel() == "Near-Surface Air Temperature [K]"
    assert colorbars[1].get_ylabel() == "error [K]"
    assert "2000-01-02" in fig.get_suptitle()
    for ax in panels:  # north up, whatever the order of lat
        bottom, top = ax.get_ylim()
        assert bottom < top


def test_maps_time_label_index_and_dask(fields):
    by_index = plot.maps(fields["truth"], predictions={"m": fields["model"]}, time=2)
    by_label = plot.maps(
        fields["truth"].chunk({"time": 1}),
        predictions={"m": fields["model"].chunk({"time": 1})},
        time="2000-01-03",
    )
    for a, b in zip(by_index.axes[:4], by_label.axes[:4], strict=True):
        if a.collections:
            np.testing.assert_array_equal(
                a.collections[0].get_array(), b.collections[0].get_array()
            )


def test_maps_rotated_grid_and_no_error_row():
    truth = synthetic_dataarray(nt=2, ny=16, nx=24, grid="rotated", seed=1)
    coarse = truth.dl4ds.coarsen(scale=4)
    fig = plot.maps(
        truth, coarse=coarse, baselines={"bicubic": metrics.interpolate(coarse, scale=4)}
    )
    assert len(fig.axes) == 3 * 2 + 2
    assert fig.axes[0].get_ylabel() == "rlat [degrees]"
    assert fig.axes[4].get_xlabel() == "rlon [degrees]"  # under the bicubic error map
    fig = plot.maps(truth, coarse=coarse, errors=False)
    assert len(fig.axes) == 2 + 1


def test_maps_converts_units(fields):
    celsius = fields["model"] - 273.15
    celsius.attrs = {**fields["model"].attrs, "units": "degC"}
    fig = plot.maps(fields["truth"], predictions={"model": celsius})
    assert fig.axes[0].get_title() == "model\nRMSE 0.5 K"


def test_maps_prediction_on_another_grid_says_which(fields):
    with pytest.raises(GridError, match=r"predictions\['bad'\] is not on the grid of truth.*'lat'"):
        plot.maps(fields["truth"], predictions={"good": fields["model"], "bad": fields["coarse"]})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"time": "1999-01-01"}, DataError, "time='1999-01-01' is not in"),
        ({"time": 10}, DataError, "out of range"),
        ({"predictions": {"m": "no"}}, TypeError, "must be an xarray DataArray"),
    ],
)
def test_maps_bad_input(fields, kwargs, error, match):
    with pytest.raises(error, match=match):
        plot.maps(fields["truth"], **kwargs)


def test_maps_extra_dims_and_dataset_truth(fields):
    members = xr.concat([fields["model"], fields["model"]], dim="member")
    with pytest.raises(DataError, match="member"):
        plot.maps(fields["truth"], predictions={"ens": members})
    with pytest.raises(TypeError, match=r"ds\['tas'\]"):
        plot.maps(fields["truth"].to_dataset())


def test_save_png(tmp_path, fields):
    fig = plot.maps(fields["truth"], coarse=fields["coarse"], predictions={"m": fields["model"]})
    path = plot.save(fig, tmp_path / "figs" / "maps.png", close=True)
    assert path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scores():
    return xr.Dataset(
        {
            "rmse": ("model", [1.2, 0.9, 0.7], {"units": "K", "long_name": "RMSE"}),
            "mae": ("model", [0.9, 0.7, 0.5], {"units": "K"}),
        },
        coords={"model": ["nearest", "bicubic", "resnet"]},
    )


def test_metric_bars(scores):
    fig = plot.metric_bars(scores, metrics=["rmse", "mae"])
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["rmse [K]", "mae [K]"]
    assert [ax.get_title() for ax in fig.axes] == ["RMSE", "mae"]
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(heights, [1.2, 0.9, 0.7])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["nearest", "bicubic", "resnet"]


def test_metric_bars_per_variable_and_given_ax(scores):
    both = xr.concat([scores, scores * 2], dim=xr.Variable("variable", ["tas", "pr"]))
    both["rmse"].attrs = {}  # units per variable, as evaluate() gives them
    both = both.assign_coords(variable_units=("variable", ["K", "mm day-1"]))
    fig = plot.metric_bars(both, metrics="rmse")
    assert [ax.get_ylabel() for ax in fig.axes] == ["rmse [K]", "rmse [mm day-1]"]
    assert fig.axes[1].get_title() == "rmse: pr"

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert plot.metric_bars(scores, ax=ax) is fig
    with pytest.raises(ValueError, match="ax has 1 Axes but there are 2 panels"):
        plot.metric_bars(scores, metrics=["rmse", "mae"], ax=ax)


def test_metric_bars_of_evaluate(fields):
    evaluation = pytest.importorskip("xr_dl4ds.evaluation")
    scores = evaluation.evaluate(
        fields["truth"],
        {"model": fields["model"]},
        coarse=fields["coarse"],
        baselines=["nearest", "bicubic"],
        metrics=["rmse", "mae"],
    )
    fig = plot.metric_bars(scores, metrics=["rmse", "mae"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["rmse [K]", "mae [K]"]
    colours = [bar.get_facecolor() for bar in fig.axes[0].patches]
    assert colours[1] == colours[2] != colours[0]  # baselines grey, the model in colour


def test_metric_bars_bad_input(scores):
    with pytest.raises(VariableError, match="'crps'.*'mae', 'rmse'"):
        plot.metric_bars(scores, metrics=("crps",))
    with pytest.raises(TypeError, match="'model' dimension"):
        plot.metric_bars(scores.rename(model="method"))
    with pytest.raises(DataError, match="quantile"):
        plot.metric_bars(scores.expand_dims(quantile=[0.1, 0.9]))


def test_spectra(fields):
    fig = plot.spectra({k: fields[k] for k in ("truth", "bicubic", "model")})
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == ["truth", "bicubic", "model"]
    assert all(np.all(line.get_xdata() > 0) for line in ax.get_lines())
    units = metrics.power_spectrum(fields["truth"]).attrs["units"]
    assert ax.get_ylabel() == f"power spectrum [{units}]"
    assert ax.get_xlabel().startswith("wavenumber")


def test_learning_curves_of_a_model(model):
    fig = plot.learning_curves(model)
    ax, lr_ax = fig.axes  # learning rate on a twin axis
    assert ax.get_xlabel() == "epoch"
    assert "loss" in ax.get_ylabel()
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), model.history["loss"].values)
    assert lr_ax.get_ylabel() == "learning rate"


def test_learning_curves_of_several_histories():
    epochs = {"epoch": [1, 2, 3]}
    a = xr.Dataset(
        {"loss": ("epoch", [1.0, 0.5, 0.3]), "val_loss": ("epoch", [1.1, 0.7, 0.6])}, epochs
    )
    b = xr.Dataset({"loss": ("epoch", [0.9, 0.2, 0.1])}, epochs)
    fig = plot.learning_curves({"a": a, "b": b})
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == [
        "a: training",
        "a: validation",
        "b: training",
    ]
    assert ax.get_yscale() == "log"
    with pytest.raises(TypeError, match="Downscaler or its history"):
        plot.learning_curves([1, 2])


def test_maps_of_a_static_field_with_repeated_names(fields):
    truth = fields["truth"].isel(time=0)
    same = {"x": fields["model"].isel(time=0)}
    fig = plot.maps(truth, baselines=same, predictions=same)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x\nRMSE 0.5 K"] * 2 + ["truth"]
    assert fig.get_suptitle() == ""
