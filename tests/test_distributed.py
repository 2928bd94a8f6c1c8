"""Data-parallel training on CPU with gloo: fit(devices=2) and torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import train_small

from xr_dl4ds.exceptions import ConfigError

# no dropout and no batch norm: a 2-process run must equal a 1-process run
OPTIONS = {"epochs": 2, "batch_size": 4, "steps_per_epoch": 3}


def _assert_close(a, b, **tol):
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol)


def test_fit_devices_2_matches_one_process(hr):
    single = train_small(hr, **OPTIONS)
    double = train_small(hr, devices=2, **OPTIONS)
    assert double.training["processes"] == 2 and single.training["processes"] == 1
    _assert_close(double.state_dict, single.state_dict, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.tensor(double.history["loss"].values),
        torch.tensor(single.history["loss"].values),
        rtol=1e-4,
        atol=1e-6,
    )


def test_torchrun_ranks_end_identical_and_match_one_process(hr, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import train_small
        from xr_dl4ds.testing import synthetic_dataset
        torch.set_num_threads(1)
        m = train_small(synthetic_dataset(nt=6, ny=32, nx=48, seed=0), epochs=2,
                        batch_size=4, steps_per_epoch=3)
        torch.save(m.state_dict, os.path.join({str(tmp_path)!r}, f"rank{{os.environ['RANK']}}.pt"))
    """)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    _assert_close(r0, r1, rtol=0, atol=0)
    single = train_small(hr, **OPTIONS)
    _assert_close(r0, single.state_dict, rtol=1e-4, atol=1e-5)


def test_bad_devices(hr):
    with pytest.raises(ConfigError, match="devices=0"):
        train_small(hr, devices=0)
    with pytest.raises(ConfigError, match="batch_size=3 cannot be split evenly over devices=2"):
        train_small(hr, devices=2, batch_size=3)
