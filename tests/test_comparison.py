"""xr_dl4ds.compare: several configurations on one split, one tidy table, figures."""

from __future__ import annotations

import operator
import threading
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds import comparison
from xr_dl4ds.comparison import (
    INFO_COLUMNS,
    plan_devices,
    schedule,
    scores_to_frame,
    to_markdown,
)
from xr_dl4ds.exceptions import ConfigError, DL4DSError
from xr_dl4ds.testing import synthetic_dataset

#: Small enough for about a second per configuration on one core.
TINY = {
    "scale": 4,
    "epochs": 1,
    "patch_size": 16,
    "batch_size": 4,
    "steps_per_epoch": 2,
    "n_filters": 4,
    "n_blocks": 1,
    "progress": False,
    "device": "cpu",
}
FIGURES = ("maps.png", "metrics.png", "spectra.png", "learning_curves.png")


@pytest.fixture(scope="module")
def hr():
    return synthetic_dataset(nt=6, ny=32, nx=48)


@pytest.fixture(scope="module")
def result(hr, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    configs = [
        {"backbone": "resnet"},
        {"name": "cnn", "backbone": "convnet", "upsampling": "rc", "learning_rate": 2e-3},
        {"backbone": "resnet"},  # the same as the first: the same scores
    ]
    table = xr_dl4ds.compare(
        hr, configs, baselines=["bicubic", "lapse_rate"], output_dir=out, **TINY
    )
    return table, out


def test_one_row_per_configuration_then_the_baselines(result):
    table, _ = result
    assert table.index.tolist() == ["resnet+spc", "cnn", "resnet+spc-2", "bicubic", "lapse_rate"]
    assert table.index.name == "name"
    assert table["kind"].tolist() == ["model"] * 3 + ["baseline"] * 2
    assert table.columns[: len(INFO_COLUMNS)].tolist() == list(INFO_COLUMNS)
    metrics = ["rmse", "mae", "bias", "pearson_r", "spearman_r", "ssim", "psnr"]
    assert set(metrics) <= set(table.columns)
    for m in ("rmse", "mae", "pearson_r", "spearman_r", "ssim"):
        for b in ("bicubic", "lapse_rate"):
            assert f"skill_{m}_vs_{b}" in table.columns
    assert table.attrs["units"]["rmse"] == "K"


def test_every_cell_is_filled(result):
    table, _ = result
    assert not table.isna().any().any(), table.columns[table.isna().any()].tolist()
    models = table[table["kind"] == "model"]
    assert (models["parameters"] > 0).all() and (models["epochs"] == 1).all()
    assert (models["train_seconds"] > 0).all() and (models["infer_seconds"] > 0).all()
    assert models.loc["cnn", ["backbone", "upsampling"]].tolist() == ["convnet", "rc"]
    assert models.loc["cnn", "options"] == "learning_rate=0.002"
    assert models.loc["resnet+spc", "options"] == "-"
    baselines = table[table["kind"] == "baseline"]
    assert (baselines[["parameters", "epochs", "train_seconds"]] == 0).all().all()
    assert (baselines["infer_seconds"] > 0).all()
    assert (baselines[["backbone", "upsampling", "options"]] == "-").all().all()
    assert table.loc["bicubic", "skill_rmse_vs_bicubic"] == 0.0
    assert table.loc["lapse_rate", "skill_rmse_vs_lapse_rate"] == 0.0


def test_same_split_and_seed_give_the_same_scores(result):
    table, _ = result
    scores = [c for c in table.columns if c not in INFO_COLUMNS]
    expected = table.loc["resnet+spc", scores].astype(float)
    actual = table.loc["resnet+spc-2", scores].astype(float)
    pd.testing.assert_series_equal(actual, expected, check_names=False)
    assert table.loc["resnet+spc", "parameters"] == table.loc["resnet+spc-2", "parameters"]


def test_scores_match_evaluate_on_the_test_period(hr, result):
    """The baselines are scored on the last quarter of the steps (the default split)."""
    table, _ = result
    test = hr["tas"].isel(time=slice(4, 6))  # round(6 * 0.25) = 2 steps
    expected = xr_dl4ds.evaluate(test, test, scale=4, metrics=["rmse"])
    assert table.loc["bicubic", "rmse"] == pytest.approx(
        float(expected["rmse"].sel(model="bicubic"))
    )


def test_files_are_written(result):
    table, out = result
    for name in FIGURES:
        assert (out / name).stat().st_size > 5_000, name
    csv = pd.read_csv(out / "table.csv", index_col="name")
    assert csv.index.tolist() == table.index.tolist()
    np.testing.assert_allclose(csv["rmse"], table["rmse"])
    md = (out / "table.md").read_text()
    assert md.startswith("| name | kind |") and "rmse [K]" in md
    assert len(md.strip().splitlines()) == 2 + len(table)
    with xr.open_dataset(out / "scores.nc") as scores:
        assert scores.sizes["model"] == len(table)


def test_time_budget_stops_training(hr, tmp_path):
    options = {**TINY, "epochs": 50}
    start = time.perf_counter()
    table = xr_dl4ds.compare(
        hr,
        [{"backbone": "resnet"}],
        time_budget=0.001,  # reached after the first epoch
        metrics=["rmse"],
        output_dir=tmp_path,
        save_models=True,
        **options,
    )
    assert time.perf_counter() - start < 60
    assert table.loc["resnet+spc", "epochs"] == 1 < 50
    assert not table.isna().any().any()
    model = xr_dl4ds.load(tmp_path / "models" / "resnet+spc.dl4ds")
    assert model.history.sizes["epoch"] == 1
    assert model.training["epochs"] == 1


def test_time_budget_with_validation_keeps_the_history(hr):
    table = xr_dl4ds.compare(
        hr,
        [{"backbone": "convnet"}],
        time_budget=1e-3,
        val_fraction=0.25,
        metrics=["rmse"],
        **{**TINY, "epochs": 5},
    )
    assert table.loc["convnet+spc", "epochs"] == 1


# -- one process per GPU ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "n_configs", "n_gpus", "expected"),
    [
        ("auto", 3, 0, ["auto"]),
        ("auto", 3, 1, ["auto"]),
        ("auto", 3, 2, ["cuda:0", "cuda:1"]),
        ("cuda", 5, 4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]),
        ("auto", 2, 8, ["cuda:0", "cuda:1"]),  # no more slots than configurations
        ("auto", 1, 4, ["auto"]),
        ("cuda:1", 3, 4, ["cuda:1"]),  # an explicit device: one after the other
        ("cpu", 3, 4, ["cpu"]),
    ],
)
def test_plan_devices(device, n_configs, n_gpus, expected):
    assert plan_devices(device, n_configs, n_gpus=n_gpus) == expected


def test_plan_devices_reads_the_gpu_count(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert plan_devices("auto", 4) == ["cuda:0", "cuda:1", "cuda:2"]


def test_schedule_runs_one_job_per_slot_at_a_time():
    busy: dict[str, int] = {}
    lock = threading.Lock()
    seen = []

    def run(job, slot):
        with lock:
            busy[slot] = busy.get(slot, 0) + 1
            assert busy[slot] == 1, f"two jobs at once on {slot}"
            seen.append((job, slot))
        time.sleep(0.01 * (job % 3))
        with lock:
            busy[slot] -= 1
        return job * 10

    jobs = list(range(7))
    assert schedule(jobs, ["cuda:0", "cuda:1"], run, processes=False) == [j * 10 for j in jobs]
    assert sorted(j for j, _ in seen) == jobs
    assert {s for _, s in seen} == {"cuda:0", "cuda:1"}


def test_schedule_stops_at_the_first_failure():
    def run(job, slot):
        if job == 1:
            raise ConfigError("bad job")
        return job

    with pytest.raises(ConfigError, match="bad job"):
        schedule(list(range(4)), ["a", "b"], run, processes=False)


def test_schedule_in_spawned_processes():
    """One long-lived spawned process per slot (the path taken with several GPUs)."""
    assert schedule(["a", "b", "c"], ["0", "1"], operator.add, processes=True) in (
        ["a0", "b1", "c0"],
        ["a0", "b1", "c1"],
        ["a1", "b0", "c0"],
        ["a1", "b0", "c1"],
        ["a0", "b0", "c1"],
        ["a1", "b1", "c0"],
        ["a0", "b0", "c0"],
        ["a1", "b1", "c1"],
    )


def test_compare_with_several_gpus_trains_concurrently(hr, monkeypatch):
    """Two slots (as with two GPUs), mocked onto the CPU in threads: every configuration
    runs once, on one slot, and the rows keep the order of the configurations."""
    used = []
    original = comparison._run_job

    def run_job(job, device):
        used.append((job.name, device))
        return original(job, "cpu")

    def fake_schedule(jobs, slots, run, *, processes):
        assert slots == ["cuda:0", "cuda:1"] and processes
        return schedule(jobs, slots, run_job, processes=False)

    monkeypatch.setattr(comparison, "plan_devices", lambda d, n: ["cuda:0", "cuda:1"])
    monkeypatch.setattr(comparison, "schedule", fake_schedule)
    configs = [{"backbone": "convnet"}, {"backbone": "resnet"}, {"backbone": "convnet"}]
    table = xr_dl4ds.compare(hr, configs, metrics=["rmse"], **{**TINY, "device": "auto"})
    assert table.index.tolist() == ["convnet+spc", "resnet+spc", "convnet+spc-2", "bicubic"]
    assert sorted(n for n, _ in used) == ["convnet+spc", "convnet+spc-2", "resnet+spc"]
    assert {d for _, d in used} <= {"cuda:0", "cuda:1"}
    assert not table.isna().any().any()
    # (threads share torch's global seed, so identical configurations may differ here;
    # the spawned processes of a real multi-GPU run each have their own)


def test_compare_in_spawned_processes(hr, monkeypatch):
    """The real multi-GPU path, with two CPU slots: one spawned process each; the models
    and predictions come back, and identical configurations give identical scores."""
    monkeypatch.setattr(comparison, "plan_devices", lambda d, n: ["cpu", "cpu"])
    configs = [{"backbone": "resnet"}, {"backbone": "convnet"}, {"backbone": "resnet"}]
    table = xr_dl4ds.compare(hr, configs, metrics=["rmse"], **TINY)
    assert table.index.tolist() == ["resnet+spc", "convnet+spc", "resnet+spc-2", "bicubic"]
    assert not table.isna().any().any()
    assert table.loc["resnet+spc", "rmse"] == table.loc["resnet+spc-2", "rmse"]


# -- errors, before anything trains ---------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained although the configuration is invalid")

    monkeypatch.setattr(comparison, "_run_job", fail)


@pytest.mark.parametrize(
    ("configs", "options", "match"),
    [
        ([{"backbone": "resnet", "n_filter": 4}], {}, r"'n_filter'.*'n_filters'\?.*Valid"),
        ([{"backbone": "resnet"}, {"seed": 1}], {}, r"configs\[1\] sets 'seed'.*compare\(seed"),
        ([{"epochs": 3}], {}, r"'epochs'.*same for every configuration"),
        ([{"val_fraction": 0.2}], {}, r"'val_fraction'.*same for every"),
        ([{"callback": print}], {}, r"'callback'.*time budget"),
        ([{"backbone": "nope"}], {}, r"Configuration 'nope\+spc'.*nope"),
        ([{"backbone": "unet", "upsampling": "spc"}], {}, r"unet\+spc"),
        ([{"backbone": "resnet", "n_blocks": 0}], {}, r"n_blocks"),
        ([{"backbone": "resnet", "optimizer": "sgd"}], {}, r"optimizer"),
        ([{"loss": "huber"}], {}, r"huber"),
        ([{"name": "a"}, {"name": "a"}], {}, r"\['a'\] are used more than once"),
        ([{"name": "bicubic"}], {}, r"also baseline names"),
        ([{"name": ""}], {}, r"non-empty string"),
        ([], {}, r"configs is empty"),
        ({"backbone": "resnet"}, {}, r"list of dicts"),
        (["resnet"], {}, r"configs\[0\] is a str"),
        ([{}], {"n_filter": 4}, r"'n_filter' in the shared fit options"),
        ([{}], {"devices": 2}, r"devices="),
        ([{}], {"test_fraction": 1.5}, r"test_fraction=1.5"),
        ([{}], {"test_fraction": 0.5, "test_time": slice(None)}, r"either test_time"),
        ([{}], {"test_time": slice("2001", "2002")}, r"0 test steps"),
        ([{}], {"baselines": ["cubic"]}, r"Unknown baseline"),
        ([{}], {"metrics": ["rsme"]}, r"Unknown metric"),
        ([{}], {"time_budget": -1}, r"time_budget=-1"),
    ],
)
def test_bad_configurations_fail_before_training(hr, no_training, configs, options, match):
    kwargs = {**TINY, "metrics": ["rmse"], **options}
    with pytest.raises(DL4DSError, match=match):
        xr_dl4ds.compare(hr, configs, **kwargs)


def test_lapse_rate_needs_orography(hr, no_training):
    with pytest.raises(DL4DSError, match="orography"):
        xr_dl4ds.compare(hr["tas"], [{}], baselines=["lapse_rate"], **TINY)


# -- the table ----------------------------------------------------------------------------


def test_scores_to_frame_several_variables_and_quantiles():
    scores = xr.Dataset(
        {
            "rmse": (("model", "variable"), [[1.0, 2.0], [3.0, 4.0]]),
            "quantile_error": (("model", "quantile"), [[0.1, 0.2], [0.3, 0.4]], {"units": "K"}),
        },
        coords={
            "model": ["m", "bicubic"],
            "kind": ("model", ["model", "baseline"]),
            "variable": ["tas", "pr"],
            "variable_units": ("variable", ["K", "mm/day"]),
            "quantile": [0.01, 0.99],
        },
    )
    table = scores_to_frame(scores)
    assert table.columns.tolist() == [
        "kind",
        "rmse_tas",
        "rmse_pr",
        "quantile_error_0.01",
        "quantile_error_0.99",
    ]
    assert table.loc["bicubic", "rmse_pr"] == 4.0
    assert table.attrs["units"] == {
        "rmse_tas": "K",
        "rmse_pr": "mm/day",
        "quantile_error_0.01": "K",
        "quantile_error_0.99": "K",
    }


def test_scores_to_frame_refuses_maps():
    scores = xr.Dataset({"rmse": (("model", "lat"), [[1.0, 2.0]])}, coords={"model": ["m"]})
    with pytest.raises(DL4DSError, match="overall scores"):
        scores_to_frame(scores)


def test_to_markdown():
    table = pd.DataFrame(
        {
            "kind": ["model", "baseline"],
            "parameters": [12345, 0],
            "train_seconds": [1.23456, 0.0],
            "rmse": [0.123456, np.nan],
        },
        index=pd.Index(["a|b", "bicubic"], name="name"),
    )
    table.attrs["units"] = {"rmse": "K", "kind": "1"}
    expected = (
        "| name | kind | parameters | train_seconds | rmse [K] |\n"
        "|:--|:--|--:|--:|--:|\n"
        "| a\\|b | model | 12,345 | 1.23 | 0.1235 |\n"
        "| bicubic | baseline | 0 | 0.00 | n/a |"
    )
    assert to_markdown(table) == expected
