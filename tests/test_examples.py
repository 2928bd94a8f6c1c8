"""The examples run end to end at smoke size, write their files and print their numbers:
rotated_pole.py, distributed_inference.py, mos_predictors.py, multi_gpu_training.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

import xr_dl4ds

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script, *args, cmd=None):
    cmd = cmd or [sys.executable, str(EXAMPLES / script)]
    proc = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _number(pattern, out):
    match = re.search(pattern, out)
    assert match, out
    value = float(match.group(1))
    assert np.isfinite(value)
    return value


def test_rotated_pole(tmp_path):
    out = _run("rotated_pole.py", "--quick", "--epochs", 2, "--device", "cpu", "--out", tmp_path)
    model = _number(r"resnet ([\d.]+) K", out)
    bicubic = _number(r"bicubic ([\d.]+) K", out)
    assert 0 < model < 2 * bicubic
    ds = xr.open_dataset(tmp_path / "tas_downscaled.nc", decode_coords="all")
    assert ds["tas"].dims == ("time", "rlat", "rlon") and ds["tas"].shape == (2, 32, 48)
    assert ds["lat"].dims == ("rlat", "rlon") and "rotated_pole" in ds.coords
    assert ds["tas"].encoding["grid_mapping"] == "rotated_pole"
    scores = xr.open_dataset(tmp_path / "scores.nc")
    assert {"resnet", "bicubic", "lapse_rate"} <= set(scores["model"].values)
    assert xr_dl4ds.load(tmp_path / "tas_rotated.dl4ds").scale == 4


def test_distributed_inference(tmp_path):
    out = _run("distributed_inference.py", "--quick", "--workers", 1, "--nt", 8, "--out", tmp_path)
    assert "store complete: True" in out
    assert _number(r"max \|zarr - in-memory\| ([\d.e+-]+)", out) < 1e-3
    store = tmp_path / "tas_downscaled.zarr"
    assert xr_dl4ds.writing.is_complete(store)
    written = xr.open_zarr(store)["tas"]
    assert written.shape == (8, 32, 48) and bool(written.notnull().all())
    # with --model, the saved model is reused and the complete store is left as it is
    out = _run(
        "distributed_inference.py", "--quick", "--workers", 1, "--nt", 8, "--out", tmp_path,
        "--model", tmp_path / "tas_tiny.dl4ds",
    )  # fmt: skip
    assert "trained a tiny model" not in out and "store complete: True" in out


def test_mos_predictors(tmp_path):
    out = _run("mos_predictors.py", "--quick", "--epochs", 3, "--out", tmp_path)
    assert "pair: mode mos" in out
    rmse_mos = _number(r"RMSE mos ([\d.]+) K", out)
    bias_bicubic = _number(r"bias mos [+-][\d.]+ K, bicubic ([+-][\d.]+) K", out)
    assert bias_bicubic > 1.0  # bicubic keeps the coarse model's warm bias
    assert rmse_mos > 0
    fine = xr.open_dataset(tmp_path / "tas_mos.nc")
    assert fine["tas"].shape == (3, 32, 48)
    assert set(xr.open_dataset(tmp_path / "scores.nc")["model"].values) == {"mos", "bicubic"}


def test_multi_gpu_training_devices_2_on_cpu(tmp_path):
    out = _run(
        "multi_gpu_training.py", "--quick", "--epochs", 2, "--device", "cpu", "--devices", 2,
        "--batch-size", 4, "--out", tmp_path,
    )  # fmt: skip
    assert "trained in 2 processes" in out
    _number(r"loss [\d.]+ -> ([\d.]+)", out)
    model = xr_dl4ds.load(tmp_path / "model.dl4ds")
    assert model.training["processes"] == 2
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 3


def test_multi_gpu_training_under_torchrun(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    script = EXAMPLES / "multi_gpu_training.py"
    out = _run(
        None, script, "--quick", "--epochs", 2, "--device", "cpu", "--batch-size", 4,
        "--out", tmp_path, cmd=torchrun,
    )  # fmt: skip
    assert out.count("trained in 2 processes") == 1  # only rank 0 prints
    assert xr_dl4ds.load(tmp_path / "model.dl4ds").training["processes"] == 2
