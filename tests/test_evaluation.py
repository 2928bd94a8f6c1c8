"""xr_dl4ds.evaluate: scores of predictions and baselines, and skill scores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds import metrics
from xr_dl4ds.baselines import interpolate, lapse_rate
from xr_dl4ds.evaluation import DEFAULT_METRICS, evaluate
from xr_dl4ds.exceptions import ConfigError, GridError, ScaleError, UnitsError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset

SKILLED = ("rmse", "mae", "pearson_r", "spearman_r", "ssim")


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(nt=3, ny=16, nx=24, seed=2)


@pytest.fixture(scope="module")
def coarse(data):
    return data["tas"].dl4ds.coarsen(scale=4)


@pytest.fixture(scope="module")
def bilinear(coarse):
    return interpolate(coarse, scale=4, method="bilinear")


def sel(obj, method):
    return obj.sel({"model": method})


def test_dataarray_every_method_and_metric(data, bilinear):
    scores = data["tas"].dl4ds.evaluate(bilinear, scale=4, baselines=["bicubic", "nearest"])
    assert list(scores["model"].values) == ["prediction", "bicubic", "nearest"]
    assert list(scores["kind"].values) == ["model", "baseline", "baseline"]
    expected = set(DEFAULT_METRICS) | {
        f"skill_{m}_vs_{b}" for m in SKILLED for b in ("bicubic", "nearest")
    }
    assert set(scores.data_vars) == expected
    for name, da in scores.data_vars.items():
        assert da.dims == ("model",), name
        assert np.isfinite(da.values).all(), name
        assert da.attrs["long_name"], name
    assert scores["rmse"].attrs["units"] == "K"
    assert scores["pearson_r"].attrs["units"] == "1"
    assert scores["psnr"].attrs["units"] == "dB"
    assert scores["skill_rmse_vs_bicubic"].attrs["units"] == "1"


def test_scores_are_the_metrics(data, coarse, bilinear):
    truth = data["tas"]
    scores = evaluate(truth, bilinear, scale=4, metrics=["rmse", "pearson_r"])
    bicubic = interpolate(coarse, scale=4)
    for method, field in (("prediction", bilinear), ("bicubic", bicubic)):
        for name in ("rmse", "pearson_r"):
            expected = float(getattr(metrics, name)(field, truth))
            assert float(sel(scores[name], method)) == pytest.approx(expected, rel=1e-5)
    rmse = scores["rmse"]
    expected_skill = 1 - float(sel(rmse, "prediction")) / float(sel(rmse, "bicubic"))
    actual = float(sel(scores["skill_rmse_vs_bicubic"], "prediction"))
    assert actual == pytest.approx(expected_skill, rel=1e-6)


def test_skill_perfect_is_one_baseline_is_zero_worse_is_negative(data, coarse):
    truth = data["tas"]
    nearest = interpolate(coarse, scale=4, method="nearest")  # worse than bicubic
    scores = evaluate(
        truth, {"perfect": truth, "worse": nearest}, coarse=coarse, metrics=["rmse", "mae"]
    )
    for m in ("rmse", "mae"):
        skill = scores[f"skill_{m}_vs_bicubic"]
        assert float(sel(skill, "perfect")) == 1.0
        assert float(sel(skill, "bicubic")) == 0.0
        assert float(sel(skill, "worse")) < 0.0
        assert float(sel(scores[m], "perfect")) == 0.0


def test_skill_of_correlations_is_the_gap_closed(data, bilinear):
    scores = evaluate(
        data["tas"],
        {"perfect": data["tas"], "bilinear": bilinear},
        scale=4,
        metrics=["pearson_r", "ssim"],
    )
    for m in ("pearson_r", "ssim"):
        skill = scores[f"skill_{m}_vs_bicubic"]
        assert float(sel(skill, "perfect")) == pytest.approx(1.0)
        assert float(sel(skill, "bicubic")) == 0.0
        r, r_b = (float(sel(scores[m], k)) for k in ("bilinear", "bicubic"))
        assert float(sel(skill, "bilinear")) == pytest.approx((r - r_b) / (1 - r_b))


def test_dataset_truth_has_a_variable_dim(data, bilinear):
    pred = bilinear.to_dataset()
    scores = data.dl4ds.evaluate(pred, scale=4, metrics=["rmse", "bias"])  # orog, sftlf ignored
    assert scores["rmse"].dims == ("model", "variable")
    assert list(scores["variable"].values) == ["tas"]
    assert list(scores["variable_units"].values) == ["K"]
    assert scores["rmse"].attrs["units"] == "K"
    expected = evaluate(data["tas"], bilinear, scale=4, metrics=["rmse", "bias"])
    np.testing.assert_allclose(scores["rmse"].isel(variable=0), expected["rmse"])
    # a DataArray prediction of one of the truth's variables works too
    xr.testing.assert_identical(
        data.dl4ds.evaluate(bilinear, scale=4, metrics=["rmse", "bias"]), scores
    )


def test_several_variables_and_lapse_rate_only_for_temperature(data):
    truth = data[["tas"]].assign(
        pr=(data["tas"].dims, np.abs(data["tas"].values - 280.0), {"units": "mm/day"})
    )
    coarse = truth.dl4ds.coarsen(scale=4)
    pred = interpolate(coarse, scale=4, method="bilinear")
    scores = evaluate(
        truth.assign(orog=data["orog"]),
        pred,
        scale=4,
        baselines=["bicubic", "lapse_rate"],
        metrics=["rmse"],
    )
    assert list(scores["variable"].values) == ["tas", "pr"]
    assert list(scores["variable_units"].values) == ["K", "mm/day"]
    assert "units" not in scores["rmse"].attrs  # differs between the variables
    rmse = scores["rmse"]
    assert np.isnan(float(rmse.sel({"model": "lapse_rate", "variable": "pr"})))
    assert np.isfinite(rmse.sel({"variable": "tas"}).values).all()


def test_lapse_rate_baseline_matches_the_function(data, coarse):
    scores = evaluate(
        data["tas"],
        data["tas"],
        scale=4,
        baselines=["lapse_rate"],
        orography=data["orog"],
        metrics=["rmse"],
    )
    expected = float(metrics.rmse(lapse_rate(coarse, data["orog"]), data["tas"]))
    assert float(sel(scores["rmse"], "lapse_rate")) == pytest.approx(expected, rel=1e-5)
    # the orography of a Dataset truth is found by itself
    from_ds = evaluate(data, data[["tas"]], scale=4, baselines=["lapse_rate"], metrics=["rmse"])
    assert float(sel(from_ds["rmse"], "lapse_rate").squeeze()) == pytest.approx(expected, rel=1e-5)


def test_lapse_rate_errors(data):
    with pytest.raises(ConfigError, match="needs the high-resolution orography"):
        evaluate(data["tas"], data["tas"], scale=4, baselines=["lapse_rate"], metrics=["rmse"])
    pr = data["tas"].assign_attrs(units="mm/day")
    with pytest.raises(UnitsError, match="no variable is one"):
        evaluate(pr, pr, scale=4, baselines="lapse_rate", orography=data["orog"])


def test_per_cell_maps(data, bilinear):
    scores = evaluate(data["tas"], bilinear, scale=4, per_cell=True)
    assert "ssim" not in scores  # one value per field: no map
    assert scores["rmse"].dims == ("model", "lat", "lon")
    xr.testing.assert_identical(scores["lat"], data["lat"])
    assert scores["rmse"].attrs == {"long_name": "root-mean-square error", "units": "K"}
    expected = metrics.rmse(bilinear, data["tas"], dim="time")
    np.testing.assert_allclose(sel(scores["rmse"], "prediction"), expected, rtol=1e-6)
    xr.testing.assert_identical(
        evaluate(data["tas"], bilinear, scale=4, dim="time", metrics=["rmse"])["rmse"],
        scores["rmse"],
    )
    with pytest.raises(ConfigError, match="cannot be computed per cell"):
        evaluate(data["tas"], bilinear, scale=4, per_cell=True, metrics=["ssim"])
    with pytest.raises(ConfigError, match="not both"):
        evaluate(data["tas"], bilinear, scale=4, per_cell=True, dim="time")


def test_all_methods_scored_on_the_same_cells(data, bilinear):
    gappy = bilinear.where(bilinear["lat"] > 40)
    scores = evaluate(data["tas"], gappy, scale=4, metrics=["rmse"])
    north = data["tas"]["lat"] > 40
    alone = evaluate(data["tas"], bilinear, scale=4, metrics=["rmse"], mask=north)
    xr.testing.assert_allclose(scores["rmse"], alone["rmse"])
    with pytest.raises(GridError, match="mask is not on the truth's grid"):
        evaluate(data["tas"], bilinear, scale=4, metrics=["rmse"], mask=north.isel(lat=slice(2)))


def test_scale_from_coarse_or_source_or_error(data, coarse, bilinear):
    from_coarse = evaluate(data["tas"], bilinear, coarse=coarse, metrics=["rmse"])
    from_scale = evaluate(data["tas"], bilinear, scale=4, metrics=["rmse"])
    xr.testing.assert_identical(from_coarse, from_scale)
    stamped = bilinear.assign_attrs(source="xr_dl4ds 0.1: resnet+spc x4 model abc123")
    xr.testing.assert_identical(evaluate(data["tas"], stamped, metrics=["rmse"]), from_scale)
    with pytest.raises(ScaleError, match="pass scale="):
        evaluate(data["tas"], bilinear, metrics=["rmse"])
    no_baseline = evaluate(data["tas"], bilinear, baselines=None, metrics=["rmse"])
    assert list(no_baseline["model"].values) == ["prediction"]


def test_units_are_converted(data, bilinear):
    in_celsius = (bilinear - 273.15).assign_attrs(units="degC")
    actual = evaluate(data["tas"], in_celsius, scale=4, metrics=["rmse"])
    expected = evaluate(data["tas"], bilinear, scale=4, metrics=["rmse"])
    xr.testing.assert_allclose(actual, expected, rtol=1e-4)


def test_refuses_misaligned_or_clashing_input(data, bilinear):
    with pytest.raises(GridError, match="not on the truth's grid"):
        evaluate(data["tas"], bilinear.isel(time=slice(1, None)), scale=4)
    with pytest.raises(ConfigError, match="also baseline names"):
        evaluate(data["tas"], {"bicubic": bilinear}, scale=4)
    with pytest.raises(ConfigError, match="Unknown baseline"):
        evaluate(data["tas"], bilinear, scale=4, baselines=["cubic"])
    with pytest.raises(ConfigError, match="Unknown metric"):
        evaluate(data["tas"], bilinear, scale=4, metrics=["rmsd"])


def test_one_compute_for_all_scores():
    data = synthetic_dataset(nt=4, ny=16, nx=16, seed=1, chunks={"time": 2})
    pred = interpolate(data["tas"].dl4ds.coarsen(scale=4), scale=4, method="bilinear")
    with raise_if_dask_computes(max_computes=1):
        scores = evaluate(data, pred, scale=4, baselines=["bicubic", "lapse_rate"])
    assert np.isfinite(scores["rmse"].values).all()


def test_top_level_export_and_accessor(data, bilinear):
    assert xr_dl4ds.evaluate is evaluate
    xr.testing.assert_identical(
        data["tas"].dl4ds.evaluate(bilinear, scale=4, metrics=["mae"]),
        evaluate(data["tas"], bilinear, scale=4, metrics=["mae"]),
    )


def test_downscaled_output_end_to_end(hr, model):
    fine = hr.dl4ds.coarsen(scale=4)[["tas"]].dl4ds.downscale(model)
    # the scale comes from the output's `source`, the orography from the truth
    scores = hr.dl4ds.evaluate(fine, baselines=["bicubic", "lapse_rate"], metrics=["rmse"])
    assert list(scores["model"].values) == ["prediction", "bicubic", "lapse_rate"]
    assert np.isfinite(scores["skill_rmse_vs_lapse_rate"].values).all()


def test_rotated_grid_maps_carry_the_truth_coords(rotated_hr):
    truth = rotated_hr["tas"]
    scores = evaluate(truth, truth, scale=4, per_cell=True, metrics=["rmse"])
    assert scores["rmse"].dims == ("model", "rlat", "rlon")
    xr.testing.assert_identical(scores["lat"], truth["lat"])  # not refined from coarse
    assert float(sel(scores["rmse"], "prediction").max()) == 0.0
