"""Distributed inference: downscale lazily on a dask cluster and write zarr, resumably.

Starts a :class:`dask.distributed.LocalCluster` (or connects to a running scheduler with
``--scheduler tcp://HOST:8786``, e.g. one started by dask-jobqueue on an HPC system),
opens coarse data as dask arrays chunked along time, downscales them lazily with
``downscale(model, tile=...)`` (each dask task runs the network tile by tile, so worker
memory is bounded by the tile) and writes the result with
``xr_dl4ds.to_zarr(..., mode="resume")``: regions are recorded as they are written, so
re-running the same command after a crash writes only the missing ones. The store is
then checked with :func:`xr_dl4ds.writing.is_complete` and compared with an in-memory
downscaling.

The model is the one given with ``--model FILE.dl4ds`` (e.g. written by
``examples/rotated_pole.py``) or, by default, a tiny one trained here on synthetic data.

Run:  python examples/distributed_inference.py [--out DIR] [--model FILE] [--workers N]
      [--scheduler ADDRESS] [--nt N] [--quick]
(``--quick``: small data, 1 worker and a tiny model, a few seconds; used by the tests.)
Writes into DIR (default ./distributed_inference_output): tas_downscaled.zarr and, when
no --model is given, tas_tiny.dl4ds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr

import xr_dl4ds
from xr_dl4ds.testing import synthetic_dataset


def main(
    out: Path,
    model_path: Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    nt: int = 32,
    quick: bool = False,
) -> dict:
    from dask.distributed import Client, LocalCluster

    out.mkdir(parents=True, exist_ok=True)
    ny, nx = (32, 48) if quick else (128, 192)
    if model_path is None:
        train = synthetic_dataset(nt=8, ny=ny, nx=nx, seed=0)  # same grid, other weather
        model = train.dl4ds.fit(
            target="tas",
            scale=4,
            epochs=1 if quick else 5,
            patch_size=16,
            batch_size=4,
            steps_per_epoch=3 if quick else 20,
            n_filters=8,
            n_blocks=2,
            device="cpu",
            progress=False,
        )
        model_path = out / "tas_tiny.dl4ds"
        model.save(model_path)
        print(f"trained a tiny model: {model_path}")
    model = xr_dl4ds.load(model_path)
    scale = model.scale

    # the coarse input to downscale (other days, as dask arrays) and the static fields;
    # a model given with --model must have been trained at this coarse resolution
    hr = synthetic_dataset(nt=nt, ny=ny, nx=nx, scale=scale, seed=1)
    coarse = hr["tas"].dl4ds.coarsen(scale=scale).chunk(time=4)
    static = hr[list(model.static_names)] if model.static_names else None

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    print(
        f"dask cluster: {len(client.scheduler_info()['workers'])} workers at {client.scheduler.address}"
    )
    try:
        t0 = time.perf_counter()
        fine = coarse.dl4ds.downscale(model, tile=8, static=static, device="cpu")
        store = out / "tas_downscaled.zarr"
        xr_dl4ds.to_zarr(fine.to_dataset(), store, mode="resume", progress=False)
        seconds = time.perf_counter() - t0
        # a second call finds the store complete and writes nothing
        xr_dl4ds.to_zarr(fine.to_dataset(), store, mode="resume", progress=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    complete = xr_dl4ds.writing.is_complete(store)
    written = xr.open_zarr(store)["tas"]
    reference = (
        coarse.isel(time=slice(0, 4)).compute().dl4ds.downscale(model, static=static, device="cpu")
    )
    diff = float(np.abs(written.isel(time=slice(0, 4)) - reference).max())
    print(
        f"downscaled {nt} steps {dict(coarse.sizes)} -> {dict(written.sizes)} in {seconds:.1f} s; "
        f"store complete: {complete}; max |zarr - in-memory| {diff:.2e}"
    )
    return {"seconds": seconds, "complete": complete, "max_diff": diff}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("distributed_inference_output"))
    parser.add_argument("--model", type=Path, default=None, help="a saved .dl4ds model")
    parser.add_argument("--scheduler", default=None, help="address of a running scheduler")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    parser.add_argument("--nt", type=int, default=32, help="time steps to downscale")
    parser.add_argument("--quick", action="store_true", help="small data and model")
    args = parser.parse_args()
    main(args.out, args.model, args.scheduler, args.workers, args.nt, args.quick)
    print(f"xr_dl4ds {xr_dl4ds.__version__}")
