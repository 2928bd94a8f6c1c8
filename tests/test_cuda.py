"""The CUDA paths: training with mixed precision, NCCL under torchrun, downscaling on the
GPU (also from a dask worker). Skipped without a GPU; run them on a GPU machine with
``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import train_small

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def exact_cuda():
    """Full fp32 convolutions and matmuls (no TF32), so CUDA can be compared with CPU."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def coarse(hr):
    return hr["tas"].dl4ds.coarsen(scale=4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_fit_on_cuda(hr, coarse, precision):
    m = train_small(hr, device="cuda", precision=precision, epochs=3)
    loss = m.history["loss"].values
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert all(t.device.type == "cpu" for t in m.state_dict.values())  # saved on CPU
    out = coarse.dl4ds.downscale(m, device="cpu")
    assert np.isfinite(out.values).all()


def test_downscale_on_cuda_matches_cpu(model, coarse, exact_cuda):
    from xr_dl4ds.inference import cache_info, clear_cache

    cpu = coarse.dl4ds.downscale(model, device="cpu")
    clear_cache()
    auto = coarse.chunk({"time": 2}).dl4ds.downscale(model).compute()  # auto -> cuda
    assert any(k[1].startswith("cuda") for k in __import__("xr_dl4ds").inference._CACHE)
    assert cache_info()["misses"] == 1
    xr.testing.assert_allclose(auto, cpu, rtol=0, atol=2e-4)
    tiled = coarse.dl4ds.downscale(model, device="cuda:0", tile={"lat": 3, "lon": 5})
    xr.testing.assert_allclose(tiled, cpu, rtol=0, atol=2e-4)


def _cached_devices() -> list[str]:
    from xr_dl4ds.inference import _CACHE

    return sorted({key[1] for key in _CACHE})


def test_dask_worker_uses_its_gpu(model, coarse, exact_cuda):
    from distributed import Client, LocalCluster

    from xr_dl4ds.inference import clear_cache

    cpu = coarse.dl4ds.downscale(model, device="cpu")
    lazy = coarse.chunk({"time": 3}).dl4ds.downscale(model)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(clear_cache)  # a forked worker may inherit this process's cache
        out = lazy.compute()
        # the worker's own cache (a function that imports it there: a closure over this
        # process's _CACHE would ship a copy of the client's cache)
        (devices,) = client.run(_cached_devices).values()
    assert devices == ["cuda:0"]
    xr.testing.assert_allclose(out, cpu, rtol=0, atol=1e-3)


def test_devices_beyond_the_gpus_are_refused(hr):
    from xr_dl4ds.exceptions import ConfigError

    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"asks for {n + 1} GPUs but {n}"):
        train_small(hr, device="cuda", devices=n + 1, batch_size=4 * (n + 1))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs 2 GPUs (one per rank)")
def test_torchrun_uses_nccl(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, torch
        import torch.distributed as dist
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import train_small
        from xr_dl4ds.testing import synthetic_dataset
        seen = []
        real = dist.init_process_group
        def spy(*a, **k):
            real(*a, **k)
            seen.append(dist.get_backend())
        dist.init_process_group = spy
        m = train_small(synthetic_dataset(nt=6, ny=32, nx=48, seed=0), device="cuda")
        print("BACKEND", seen, "PROCESSES", m.training["processes"])
    """)
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BACKEND ['nccl'] PROCESSES 2" in proc.stdout, proc.stdout[-2000:]
