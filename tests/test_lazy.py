"""Training on data bigger than memory: patches read lazily from dask/zarr, in workers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import torch
import xarray as xr
from conftest import train_small

from xr_dl4ds.data.samples import LazyArray
from xr_dl4ds.testing import synthetic_dataset


def _same_weights(a, b):
    return all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_lazy_training_equals_in_memory_training(hr):
    eager = train_small(hr, val_fraction=1 / 3)
    lazy = train_small(hr.chunk({"time": 1}), val_fraction=1 / 3)
    forced = train_small(hr, val_fraction=1 / 3, in_memory=False)
    workers = train_small(hr.chunk({"time": 1}), val_fraction=1 / 3, loader_workers=2)
    assert _same_weights(eager, lazy) and _same_weights(eager, forced)
    assert _same_weights(eager, workers)
    np.testing.assert_array_equal(lazy.history["val_loss"].values, eager.history["val_loss"].values)


def test_lazy_array_reads_only_what_is_asked(hr):
    from xr_dl4ds.data.normalization import compute_stats
    from xr_dl4ds.data.pairing import pair
    from xr_dl4ds.data.samples import to_arrays
    from xr_dl4ds.testing import raise_if_dask_computes

    p = pair(hr.assign(tas=hr["tas"].chunk({"time": 1})), scale=4)  # static fields in memory
    stats = compute_stats(p.highres)
    stats.update(compute_stats(p.static))
    with raise_if_dask_computes():  # building the arrays reads no time-varying data
        arrays = to_arrays(p, stats, lazy=True)
    assert isinstance(arrays.highres, LazyArray) and arrays.highres.shape == (6, 1, 32, 48)
    eager = to_arrays(p, stats)
    np.testing.assert_array_equal(
        arrays.highres[(2, slice(None), slice(4, 8), slice(0, 12))], eager.highres[2, :, 4:8, 0:12]
    )
    np.testing.assert_array_equal(
        arrays.lowres[(slice(1, 3), slice(None), slice(0, 2), slice(1, 3))],
        eager.lowres[1:3, :, 0:2, 1:3],
    )


def test_training_from_a_zarr_store_larger_than_the_memory_budget(tmp_path):
    big = synthetic_dataset(nt=96, ny=384, nx=384, seed=2)
    store = tmp_path / "big.zarr"
    big.chunk({"time": 1}).to_zarr(store, consolidated=False)
    size_mb = big["tas"].nbytes / 2**20
    assert size_mb > 50
    ds = xr.open_zarr(store, consolidated=False)
    train_small(synthetic_dataset(nt=2, ny=16, nx=16))  # imports done: measure data, not code
    budget_mb = 20  # the memory the whole fit may allocate at once (numpy, Python)
    tracemalloc.start()
    try:
        m = train_small(ds, patch_size=32, batch_size=4, steps_per_epoch=3, epochs=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.history.sizes["epoch"] == 1 and np.isfinite(m.history["loss"]).all()
    assert peak / 2**20 < budget_mb, f"peak {peak / 2**20:.1f} MiB for a {size_mb:.0f} MiB store"
