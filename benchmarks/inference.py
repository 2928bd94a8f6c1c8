"""Inference at scale: downscale vs a bare torch forward, tiling, dask workers, memory.

Run:  python benchmarks/inference.py [--out FILE] [--quick] [--big] [--parts 1,2,3,4]
                                    [--json FILE]
      python benchmarks/inference.py --device cuda --scale-up 4 --workers 1,4 --out FILE

Four measurements, side by side in one run; compare the ratios, not the absolute
numbers, which depend on the machine and on what else runs on it. Timings are repeated
in interleaved rounds (every variant once per round, in reverse order every other
round); the best round, the median and the range are reported, and ratios are taken
round by round (a variant's time over the reference's in the same round), so that a
slow spell of a shared machine cancels out.

1. Overhead of ``downscale``. A model with the default network (resnet + spc,
   ``n_filters=8, n_blocks=6``, 2 static fields) is fitted for one step on
   ``synthetic_dataset(nt=32, ny=192, nx=192)`` (its weights do not matter for timing);
   the input is its ``tas`` coarsened by 4 (32 steps of 48 x 48 coarse cells). The
   outputs of the variants are compared (they agree to float32 rounding). Timed on
   the same input, batches of 8: a bare torch loop (``net(x, static)`` per batch under
   ``torch.no_grad()``, each batch copied to the device and its output back; the input
   normalized and the static channels added before the clock starts, the output left
   normalized), :func:`~xr_dl4ds.models.tiling.tiled_forward` with ``tile=None``, and
   ``coarse.dl4ds.downscale(model)`` on numpy input and on dask input (time chunks of
   the batch size, threaded scheduler), building the graph included. The ratio to the
   bare loop is the overhead of the package (unit conversion, normalization, static
   channels, dask, output assembly).
2. Tiled vs untiled. ``downscale(model, tile=n)`` with tiles of 1/2 and 1/4 of the
   domain and the default halo (the network's receptive field) on the first 4 steps:
   time ratio, the cells computed per cell kept, and the largest difference from the
   untiled output (it should stay within float32 rounding, <= 1e-4 K).
3. Throughput vs workers. The dask input of part 1 computed with the threaded scheduler
   and with ``dask.distributed.LocalCluster(processes=True)`` of 1 and 2 workers, the
   threads per worker chosen so that workers x threads = cores: samples (time steps)
   per second of a warm run (the network is already built in every worker), the first
   (cold) run apart. Worker processes start with ``OMP_NUM_THREADS=1`` (dask's default
   ``distributed.nanny.pre-spawn-environ``), so torch runs one thread per worker; a
   cluster of workers with several threads is also timed with ``OMP_NUM_THREADS`` set
   to their thread count.
4. Peak memory vs output size. In a fresh process per size, a lazily generated coarse
   input (time chunks of 16 steps, never in memory as a whole) is downscaled with a
   small network (``n_filters=2, n_blocks=1``, so that the data, not the network,
   dominates) and written with :func:`xr_dl4ds.to_zarr`; the peak resident memory of
   the process (``VmHWM``, reset after a warm-up) against the size of the output. For
   comparison, the largest output is also computed into memory (``.compute()``).

``--scale-up K`` multiplies the side of the domain of parts 1-3 and the number of time
steps of parts 1 and 3 by K (their work by K^3), and the output sizes of part 4 by K^2
(same domain and chunks, more of them), to keep a GPU busy. ``--big`` multiplies the output sizes of
part 4 by 8 (0.25 to 2 GiB instead of 32 to 256 MiB). ``--parts`` runs some parts only.
The default run takes 4 to 5 minutes on 2 CPU cores, and the GPU run above about 3 on an
H200 with 16 cores; ``--quick`` (smaller sizes, one worker count) is a smoke test of
every part, well under a minute. ``--json FILE`` writes the measurements and the ratios
that ``benchmarks/run_all.py`` collects (:func:`ratios`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:  # run from a source checkout without installing the package
    import xr_dl4ds  # noqa: F401
except ImportError:
    _ROOT = str(Path(__file__).resolve().parents[1])
    sys.path.insert(0, _ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p
    )

SCALE = 4
FULL = {
    "side": 192,  # high-resolution cells a side (parts 1-3)
    "nt": 32,  # time steps (parts 1 and 3)
    "batch": 8,
    "rounds": 4,
    "tile_nt": 4,  # time steps of part 2
    "tile_rounds": 3,
    "tile_fractions": (2, 4),  # tiles of 1/2 and 1/4 of the domain
    "workers": (1, 2),
    "worker_rounds": 2,
    "mem_side": 256,  # high-resolution cells a side (part 4)
    "mem_chunk": 16,  # time steps per chunk (part 4)
    "mem_sizes": (1 / 32, 1 / 16, 1 / 8, 1 / 4),  # GiB of output (part 4)
}
QUICK = {
    "side": 64,
    "nt": 8,
    "batch": 4,
    "rounds": 2,
    "tile_nt": 4,
    "tile_rounds": 1,
    "tile_fractions": (2, 4),
    "workers": (2,),
    "worker_rounds": 1,
    "mem_side": 64,
    "mem_chunk": 8,
    "mem_sizes": (1 / 256, 1 / 128),
}
DEFAULT_NET = {}  # the DL4DS default widths: n_filters=8, n_blocks=6
SMALL_NET = {"n_filters": 2, "n_blocks": 1}
# targets the project states: the overhead of downscale over a bare forward
# (docs/benchmarks-inference.md), and tiled outputs equal to the untiled one to float32
# rounding (part 2 above)
OVERHEAD_TARGET = {"op": "<=", "value": 1.2, "source": "docs/benchmarks-inference.md"}
TILE_DIFF_TARGET = {"op": "<=", "value": 1e-4, "source": "benchmarks/inference.py"}


# -- models -----------------------------------------------------------------------------
def fit_model(side: int, nt: int, **net):
    """A model on the synthetic grid of ``side`` high-resolution cells, one training
    step (timing does not depend on the weights); its high-resolution dataset."""
    from xr_dl4ds.testing import synthetic_dataset

    hr = synthetic_dataset(nt=nt, ny=side, nx=side, scale=SCALE, seed=0)
    model = hr.dl4ds.fit(
        scale=SCALE,
        epochs=1,
        steps_per_epoch=1,
        batch_size=2,
        patch_size=min(32, side),
        device="cpu",
        progress=False,
        seed=0,
        **net,
    )
    return model, hr


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def timed_rounds(variants: dict, rounds: int, device: str) -> tuple[dict, dict, dict]:
    """Each variant once per round, interleaved, in reverse order every other round (so
    that a slow spell of a shared machine hits every variant): times, last result, GPU
    peak."""
    times: dict = {k: [] for k in variants}
    results, peaks = {}, {}
    for r in range(rounds):
        order = list(variants.items())
        for name, fn in order if r % 2 == 0 else order[::-1]:
            _gpu_reset(device)
            _sync(device)
            t0 = time.perf_counter()
            results[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
            peak = _gpu_peak(device)
            if peak is not None:
                peaks[name] = max(peak, peaks.get(name, 0.0))
    return times, results, peaks


# -- 1. overhead ------------------------------------------------------------------------
def overhead(model, coarse, cfg: dict, device: str) -> dict:
    import numpy as np
    import torch

    from xr_dl4ds.models.tiling import tiled_forward

    b = cfg["batch"]
    net = model.network(device)
    st = model.stats["tas"]
    xn = ((coarse.values - st.mean) / st.std).astype(np.float32)[:, None]
    lowres = np.broadcast_to(model.static_lowres, (xn.shape[0], *model.static_lowres.shape))
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate([xn, lowres], axis=1)))
    static = torch.from_numpy(np.ascontiguousarray(model.static, np.float32))
    chunked = coarse.chunk({"time": b})

    def bare():
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], b):
                xb = x[i : i + b].to(device)
                sb = static.expand(xb.shape[0], *static.shape).to(device)
                outs.append(net(xb, sb).to("cpu"))
        return torch.cat(outs)

    variants = {
        "bare": bare,
        "tiled_forward": lambda: tiled_forward(net, x, static, tile=None, batch_size=b),
        "numpy": lambda: coarse.dl4ds.downscale(model, batch_size=b, device=device).values,
        "dask": lambda: chunked.dl4ds.downscale(model, batch_size=b, device=device).compute(
            scheduler="threads"
        ),
    }
    # warm-up on one batch: the network is built and cached, kernels chosen
    coarse.isel(time=slice(0, b)).dl4ds.downscale(model, batch_size=b, device=device).compute()
    with torch.no_grad():
        net(x[:b].to(device), static.expand(b, *static.shape).to(device))
    times, results, peaks = timed_rounds(variants, cfg["rounds"], device)
    ref = results["bare"].numpy()[:, 0] * st.std + st.mean
    diff = {
        k: float(np.abs(np.asarray(results[k]).reshape(ref.shape) - ref).max())
        for k in ("numpy", "dask")
    }
    diff["tiled_forward"] = float(
        np.abs(results["tiled_forward"].numpy() - results["bare"].numpy()).max()
    )
    return {"times": times, "peaks": peaks, "diff": diff, "n": int(x.shape[0])}


# -- 2. tiling --------------------------------------------------------------------------
def _cells_computed(n: int, tile: int, halo: int) -> int:
    """Cells computed along one axis by windows of ``tile`` + ``halo`` (clipped)."""
    return sum(min(n, c + tile + halo) - max(0, c - halo) for c in range(0, n, tile))


def tiling(model, coarse, cfg: dict, device: str) -> dict:
    import numpy as np

    from xr_dl4ds.models.blocks import ChannelAttention
    from xr_dl4ds.models.tiling import receptive_field, tile_alignment

    net = model.network(device)
    halo = receptive_field(net)
    align = tile_alignment(net)
    attention = sum(isinstance(m, ChannelAttention) for m in net.modules())
    sub = coarse.isel(time=slice(0, cfg["tile_nt"]))
    h = sub.sizes["lat"]
    tiles = {}
    for f in cfg["tile_fractions"]:
        t = -(-max(1, h // f) // align) * align
        tiles[f"1/{f}"] = t
    b = cfg["batch"]

    def run(tile):
        return lambda: sub.dl4ds.downscale(model, tile=tile, batch_size=b, device=device).values

    variants = {"untiled": run(None), **{k: run(t) for k, t in tiles.items()}}
    # warm-up on one time step: the receptive field (the default halo) is measured once
    # per network, kernels are chosen for the window shapes
    for tile in (None, *tiles.values()):
        sub.isel(time=[0]).dl4ds.downscale(model, tile=tile, batch_size=b, device=device).compute()
    times, results, peaks = timed_rounds(variants, cfg["tile_rounds"], device)
    ref = results["untiled"]
    diff = {k: float(np.abs(results[k] - ref).max()) for k in tiles}
    cells = {
        k: _cells_computed(h, t, halo[0])
        * _cells_computed(sub.sizes["lon"], t, halo[1])
        / (h * sub.sizes["lon"])
        for k, t in tiles.items()
    }
    return {
        "times": times,
        "peaks": peaks,
        "diff": diff,
        "tiles": tiles,
        "cells": cells,
        "halo": halo,
        "passes": attention + 1,
        "shape": (cfg["tile_nt"], h, sub.sizes["lon"]),
    }


# -- 3. throughput vs workers -----------------------------------------------------------
def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def workers(model, coarse, cfg: dict, device: str, worker_counts, cores: int) -> list:
    import dask
    import torch
    from distributed import Client, LocalCluster

    chunked = coarse.chunk({"time": cfg["batch"]})
    n = coarse.sizes["time"]
    rounds = cfg["worker_rounds"]

    def run() -> float:
        t0 = time.perf_counter()
        chunked.dl4ds.downscale(model, batch_size=cfg["batch"], device=device).compute()
        return time.perf_counter() - t0

    with dask.config.set(scheduler="threads"):
        run()  # warm (parts 1-2 built the network in this process already)
        warm = [run() for _ in range(rounds)]
    threads = dask.system.CPU_COUNT
    rows = [
        {
            "label": "threaded scheduler (this process)",
            "layout": f"1 x {threads}",
            "torch": torch.get_num_threads(),
            "cold": None,
            "warm": warm,
            "n": n,
        }
    ]
    for nw in worker_counts:
        tpw = max(1, cores // nw)
        # dask starts worker processes with OMP_NUM_THREADS=1 (and MKL, OpenBLAS): torch
        # then runs one thread per worker; the second cluster lets it use the worker's.
        # The nanny takes these from os.environ first (where the first cluster has left
        # its "1"), then from distributed.nanny.pre-spawn-environ
        env = {f"{lib}_NUM_THREADS": str(tpw) for lib in ("OMP", "MKL", "OPENBLAS")}
        for label, environ in (("", {}), (f", `OMP_NUM_THREADS={tpw}`", env)):
            if environ and tpw == 1:
                continue
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(environ)
            with (
                LocalCluster(
                    n_workers=nw, threads_per_worker=tpw, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                got = sorted(set(client.run(_torch_threads).values()))
                cold = run()
                warm = [run() for _ in range(rounds)]
            for k, v in saved.items():  # as before this cluster (the nanny sets them too)
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            rows.append(
                {
                    "label": f"LocalCluster, {nw} worker{'s' if nw > 1 else ''}{label}",
                    "layout": f"{nw} x {tpw}",
                    "torch": "/".join(map(str, got)),
                    "cold": cold,
                    "warm": warm,
                    "n": n,
                }
            )
            print(rows[-1], flush=True)
    return rows


# -- 4. peak memory vs output size: one process per size --------------------------------
_MEMORY_CHILD = r"""
import gc, json, os, shutil, sys, time
model_path, store, nt, chunk, mode, device = sys.argv[1:7]
nt, chunk = int(nt), int(chunk)

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return out

import dask.array as da
import numpy as np
import pandas as pd
import torch
import xarray as xr
import xr_dl4ds
from xr_dl4ds.testing import synthetic_dataset

model = xr_dl4ds.load(model_path)
side = model.grid.highres.sizes[model.grid.y]
template = synthetic_dataset(nt=8, ny=side, nx=side, scale=model.scale)["tas"]
template = template.dl4ds.coarsen(scale=model.scale)
base = template.values

def block(block_info=None):
    t0, t1 = block_info[None]["array-location"][0]
    t = np.arange(t0, t1)
    return (base[t % base.shape[0]] + np.float32(0.5) * np.sin(t)[:, None, None]).astype(
        np.float32
    )

data = da.map_blocks(
    block,
    chunks=(tuple(min(chunk, nt - i) for i in range(0, nt, chunk)), (base.shape[1],),
            (base.shape[2],)),
    dtype=np.float32,
)
coarse = xr.DataArray(
    data,
    dims=template.dims,
    coords={"time": pd.date_range("2000-01-01", periods=nt, freq="D"),
            template.dims[1]: template[template.dims[1]],
            template.dims[2]: template[template.dims[2]]},
    attrs=template.attrs,
    name="tas",
)
fine = coarse.dl4ds.downscale(model, device=device)
fine.isel(time=slice(0, chunk)).compute()  # warm-up: network built, kernels chosen
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident memory (VmHWM) to the current one
before = status()["VmRSS"]
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
if mode == "zarr":
    summary = xr_dl4ds.to_zarr(fine, store, mode="w", progress=False)
    per_region = summary.n_chunks // max(1, summary.regions_written)
else:
    result = fine.compute()
    per_region = 0
wall = time.perf_counter() - t0
peak = status()["VmHWM"]
gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
disk = 0
if mode == "zarr":
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs)
    shutil.rmtree(store)
print(json.dumps({"before": before, "peak": peak, "wall": wall, "gpu": gpu,
                  "out_bytes": fine.nbytes, "in_bytes": coarse.nbytes, "disk": disk,
                  "chunk_bytes": fine.nbytes // nt * chunk, "per_region": per_region,
                  "torch_threads": torch.get_num_threads()}))
"""


def _child(code: str, *args: object) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(tmp: Path, cfg: dict, sizes_gib, device: str) -> list:
    model, _ = fit_model(cfg["mem_side"], 4, **SMALL_NET)
    path = tmp / "small.dl4ds"
    model.save(path)
    step_bytes = 4 * cfg["mem_side"] ** 2
    chunk = cfg["mem_chunk"]
    rows = []
    runs = [("zarr", s) for s in sizes_gib] + [("compute", sizes_gib[-1])]
    for mode, gib in runs:
        nt = -(-round(gib * 2**30 / step_bytes) // chunk) * chunk
        r = _child(_MEMORY_CHILD, path, tmp / "fine.zarr", nt, chunk, mode, device)
        r.update(mode=mode, nt=nt)
        print(f"memory {mode} {gib:.4g} GiB: {r}", flush=True)
        rows.append(r)
    return rows


# -- report -----------------------------------------------------------------------------
def _med(v: list) -> float:
    return statistics.median(v)


def _range(v: list, digits: int = 2) -> str:
    return f"{min(v):.{digits}f}-{max(v):.{digits}f}"


def _ratios(t: list, ref: list) -> list:
    """Per-round ratios: each round's time over the reference's in the same round."""
    return [a / b for a, b in zip(t, ref, strict=True)]


def _size(nbytes: float) -> str:
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.2f} GiB"
    return f"{nbytes / 2**20:.{0 if nbytes >= 2**24 else 1}f} MiB"


def ratios(results: dict) -> list[dict]:
    """The ratios of a run, from the ``results`` of ``--json`` (parts that did not run
    give none): `downscale` over the bare forward, tiled over untiled (and the largest
    difference of their outputs), throughput of each dask cluster over the threaded
    scheduler, and the peak memory of `to_zarr` as the output grows and against
    `.compute()`."""
    out = []
    over = results.get("overhead")
    if over:
        t0 = over["times"]["bare"]
        labels = {
            "numpy": ("`downscale`, numpy input", OVERHEAD_TARGET),
            "dask": ("`downscale`, dask input", OVERHEAD_TARGET),
            "tiled_forward": ("`tiled_forward(tile=None)`", None),
        }
        for key, (label, target) in labels.items():
            q = _ratios(over["times"][key], t0)
            out.append(
                {
                    "name": f"{label} / bare forward",
                    "compares": f"wall time of {label} over a bare torch loop on the same "
                    f"{over['n']} time steps (median of {len(q)} interleaved rounds)",
                    "value": _med(q),
                    "range": [min(q), max(q)],
                    "target": target,
                }
            )
    tiles = results.get("tiling")
    if tiles:
        ut = tiles["times"]["untiled"]
        for key, size in tiles["tiles"].items():
            q = _ratios(tiles["times"][key], ut)
            out.append(
                {
                    "name": f"tiled ({key} of the domain) / untiled",
                    "compares": f"`downscale(tile={size})` over `tile=None`, halo "
                    f"{tiles['halo'][0]}: the windows compute {tiles['cells'][key]:.2f} cells "
                    "per cell kept",
                    "value": _med(q),
                    "range": [min(q), max(q)],
                }
            )
        if tiles["diff"]:
            out.append(
                {
                    "name": "tiled vs untiled output, max abs difference (K)",
                    "compares": "largest difference of the tiled outputs from the untiled one "
                    "(not a ratio: float32 rounding expected)",
                    "value": max(tiles["diff"].values()),
                    "target": TILE_DIFF_TARGET,
                }
            )
    thr = results.get("workers") or []
    if thr:
        ref = min(thr[0]["warm"])
        for r in thr[1:]:
            out.append(
                {
                    "name": f"{r['label'].replace('`', '')} / threaded scheduler",
                    "compares": f"samples/s of a warm `downscale(...).compute()` on "
                    f"{r['layout']} workers x threads (torch threads {r['torch']}) over the "
                    f"threaded scheduler ({thr[0]['layout']})",
                    "value": ref / min(r["warm"]),
                }
            )
    mem = [r for r in results.get("memory") or [] if "error" not in r]
    zarr = sorted((r for r in mem if r["mode"] == "zarr"), key=lambda r: r["out_bytes"])
    if len(zarr) > 1:
        small, big = zarr[0], zarr[-1]
        out.append(
            {
                "name": "to_zarr peak memory, largest / smallest output",
                "compares": "growth of the peak resident memory while writing with "
                f"`to_zarr`, {_size(big['out_bytes'])} over {_size(small['out_bytes'])} of "
                f"output ({big['out_bytes'] / small['out_bytes']:.0f}x the output; 1: "
                "bounded)",
                "value": (big["peak"] - big["before"]) / (small["peak"] - small["before"]),
            }
        )
    computed = [r for r in mem if r["mode"] == "compute"]
    if zarr and computed:
        c = computed[-1]
        z = next((r for r in zarr if r["out_bytes"] == c["out_bytes"]), zarr[-1])
        out.append(
            {
                "name": "to_zarr / compute peak memory",
                "compares": "growth of the peak resident memory writing "
                f"{_size(z['out_bytes'])} with `to_zarr` over computing it into memory",
                "value": (z["peak"] - z["before"]) / (c["peak"] - c["before"]),
            }
        )
    return out


def table_overhead(over: dict, cfg: dict, gpu: bool, cache: dict) -> list[str]:
    b = cfg["batch"]
    lines = [
        "**1. Overhead of `downscale` over a bare torch forward**",
        "",
        "| path | best (s) | median (s) | range (s) | samples/s (best) | ratio to bare, "
        "median of rounds | ratio to bare, range of rounds |"
        + (" GPU peak (MiB) |" if gpu else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""),
    ]
    labels = {
        "bare": "bare torch loop (`net(x, static)` per batch)",
        "tiled_forward": "`tiled_forward(net, x, static, tile=None)`",
        "numpy": "`downscale`, numpy input",
        "dask": f"`downscale`, dask input (time chunks of {b}), threads",
    }
    t0 = over["times"]["bare"]
    for key, label in labels.items():
        t = over["times"][key]
        q = _ratios(t, t0)
        row = (
            f"| {label} | {min(t):.3f} | {_med(t):.3f} | {_range(t, 3)} | "
            f"{over['n'] / min(t):.1f} | {_med(q):.2f} | {_range(q)} |"
        )
        if gpu:
            row += f" {over['peaks'].get(key, 0):.0f} |"
        lines.append(row)
    lines += [
        "",
        f"{over['n']} time steps; interleaved rounds: {cfg['rounds']}, after a warm-up batch; "
        "a round's ratio is its time over the bare loop's in the same round. "
        "The bare loop gets its input normalized, with the coarsened static channels, "
        "before the clock starts (normalization excluded), copies each batch to the "
        "device and its output back, and leaves the output normalized; the `downscale` "
        "rows include building the graph, unit conversion, normalization, the forward "
        "passes, denormalization and assembling the output. Largest difference from the "
        "bare loop: "
        + ", ".join(f"{k} {v:.1e}" for k, v in over["diff"].items())
        + " (K, after denormalizing the bare output; `tiled_forward` in normalized "
        f"units). Network cache of this process after parts 1-2: {cache['misses']} "
        f"build(s), {cache['hits']} reuse(s).",
    ]
    return lines


def table_tiling(tiles: dict, cfg: dict, gpu: bool) -> list[str]:
    lines = [
        "**2. Tiled vs untiled `downscale`**",
        "",
        "| tile (coarse cells) | best (s) | range (s) | ratio to untiled, median of rounds | "
        "cells computed / kept | max abs difference (K) |" + (" GPU peak (MiB) |" if gpu else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""),
    ]
    ut = tiles["times"]["untiled"]
    for key in ["untiled", *tiles["tiles"]]:
        t = tiles["times"][key]
        name = "none (whole field)" if key == "untiled" else f"{tiles['tiles'][key]} ({key})"
        cells = "1.00" if key == "untiled" else f"{tiles['cells'][key]:.2f}"
        diff = "-" if key == "untiled" else f"{tiles['diff'][key]:.1e}"
        q = _med(_ratios(t, ut))
        row = f"| {name} | {min(t):.3f} | {_range(t, 3)} | {q:.2f} | {cells} | {diff} |"
        if gpu:
            row += f" {tiles['peaks'].get(key, 0):.0f} |"
        lines.append(row)
    tnt, th, tw = tiles["shape"]
    lines += [
        "",
        f"{tnt} time steps of {th} x {tw} coarse cells; interleaved rounds: "
        f"{cfg['tile_rounds']}, after a warm-up of every variant on one time step; the default halo, the receptive field "
        f"of the network, is {tiles['halo'][0]} x {tiles['halo'][1]} coarse cells. Cells "
        "computed / kept: the cells of the windows (tile + halo on each side, clipped at "
        "the borders) over those of the domain. With several windows the network makes "
        f"{tiles['passes']} passes over them: one per channel attention layer (the output "
        "head has one), each stopping at its layer, and a last complete one.",
    ]
    return lines


def table_workers(thr: list, cfg: dict) -> list[str]:
    lines = [
        "**3. Throughput vs dask workers**",
        "",
        "| scheduler | workers x threads | torch threads per worker | first run (s) | "
        "warm, best (s) | warm, range (s) | samples/s (best) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in thr:
        cold = "-" if r["cold"] is None else f"{r['cold']:.2f}"
        lines.append(
            f"| {r['label']} | {r['layout']} | {r['torch']} | {cold} | {min(r['warm']):.2f} | "
            f"{_range(r['warm'])} | {r['n'] / min(r['warm']):.1f} |"
        )
    n = thr[0]["n"] if thr else 0
    lines += [
        "",
        f"The dask input of part 1 ({n} time steps in chunks of {cfg['batch']}), "
        f"`downscale(...).compute()`; warm runs: {cfg['worker_rounds']}, after the first "
        "one, which ships the model to the workers and builds the network in each (the "
        "threaded scheduler reuses the network this process has built). Cluster start-up "
        "is not counted.",
    ]
    return lines


def table_memory(mem: list, cfg: dict, gpu: bool) -> list[str]:
    lines = [
        "**4. Peak memory vs output size, written with `xr_dl4ds.to_zarr`**",
        "",
        "| output | time steps | coarse input (lazy) | written with | chunks per region | "
        "RSS before (MiB) | peak RSS (MiB) | peak - before (MiB) | time (s) | MiB/s |"
        + (" GPU peak (MiB) |" if gpu else ""),
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""),
    ]
    for r in mem:
        if "error" in r:
            lines.append(f"| {r['nt']} steps | {r['mode']} | error: {r['error']} |||||||")
            continue
        how = "`to_zarr`" if r["mode"] == "zarr" else "`.compute()` (in memory)"
        per = r["per_region"] or "-"
        row = (
            f"| {_size(r['out_bytes'])} | {r['nt']} | {_size(r['in_bytes'])} | {how} | "
            f"{per} | {r['before']:.0f} | {r['peak']:.0f} | {r['peak'] - r['before']:.0f} | "
            f"{r['wall']:.1f} | {r['out_bytes'] / 2**20 / r['wall']:.0f} |"
        )
        if gpu:
            row += f" {r['gpu'] or 0:.0f} |"
        lines.append(row)
    ms = cfg["mem_side"]
    chunk = next((_size(r["chunk_bytes"]) for r in mem if "error" not in r), "?")
    lines += [
        "",
        f"One fresh process per row: a small network ({SMALL_NET['n_filters']} filters, "
        f"{SMALL_NET['n_blocks']} block) on {ms} x {ms} high-resolution cells, the coarse "
        f"input generated chunk by chunk ({cfg['mem_chunk']} time steps, {chunk} of "
        "output, per chunk). RSS before: the process after downscaling a first "
        "chunk (torch and the network loaded); peak RSS: the largest resident memory "
        "during the write (`VmHWM`, reset after that first chunk). `to_zarr` computes one "
        "region of chunks (one per worker thread) at a time; MiB/s is output per second.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown tables here")
    parser.add_argument("--quick", action="store_true", help="a smoke test of every part")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1... (default cpu)")
    parser.add_argument(
        "--scale-up",
        type=int,
        default=1,
        metavar="K",
        help="domain side of parts 1-3 and time steps of parts 1 and 3 x K, output sizes "
        "of part 4 x K^2 (to keep a GPU busy)",
    )
    parser.add_argument(
        "--big", action="store_true", help="output sizes of part 4 x 8 (0.25 to 2 GiB)"
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="worker counts of part 3, comma-separated (default 1,2; --quick: 2)",
    )
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run (default all)")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the measurements and ratios here"
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="keep torch's TF32 default on CUDA (off otherwise: float32 rounding in part 2)",
    )
    args = parser.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    k = args.scale_up
    cfg["side"] *= k
    cfg["nt"] *= k
    sizes = [s * k * k * (8 if args.big else 1) for s in cfg["mem_sizes"]]
    counts = tuple(int(w) for w in args.workers.split(",")) if args.workers else cfg["workers"]
    parts = {int(p) for p in args.parts.split(",")}
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    shown = list(sys.argv[1:])
    for opt in ("--out", "--json"):  # where the results go is not part of the measurement
        if opt in shown:
            i = shown.index(opt)
            del shown[i : i + 2]
        shown = [a for a in shown if not a.startswith(opt)]
    command = " ".join(["python benchmarks/inference.py", *shown])

    # 4. first, while this process is small (its children report their own peak anyway)
    mem = []
    if 4 in parts:
        with tempfile.TemporaryDirectory() as tmp:
            mem = memory(Path(tmp), cfg, sizes, args.device)

    import torch

    import xr_dl4ds.inference

    if args.device.startswith("cuda") and not args.tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    over = tiles = None
    thr: list = []
    n_params = 0
    if parts & {1, 2, 3}:
        model, hr = fit_model(cfg["side"], cfg["nt"], **DEFAULT_NET)
        coarse = hr["tas"].dl4ds.coarsen(scale=SCALE)
        n_params = sum(p.numel() for p in model.network("cpu").parameters())
        if 1 in parts:
            over = overhead(model, coarse, cfg, args.device)
            print(f"overhead: {over}", flush=True)
        if 2 in parts:
            tiles = tiling(model, coarse, cfg, args.device)
            print(f"tiling: {tiles}", flush=True)
        cache = xr_dl4ds.inference.cache_info()
        if 3 in parts:
            thr = workers(model, coarse, cfg, args.device, counts, cores)
    total = time.perf_counter() - start

    # -- tables ---------------------------------------------------------------------
    gpu = args.device.startswith("cuda")
    dev = args.device
    if gpu:
        dev = f"{torch.cuda.get_device_name(args.device)} ({args.device})"
    side, cside = cfg["side"], cfg["side"] // SCALE
    lines = [
        f"Measured with `{command}` on {dev}, {cores} CPU cores ({platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}"
        + (f", TF32 {'on' if args.tf32 else 'off'}" if gpu else "")
        + f"), {datetime.date.today().isoformat()}; one run, {total:.0f} s in all; load "
        f"average {load_before:.2f} when it started."
        + (
            f" Parts 1-3: the default resnet + spc network ({n_params:,} parameters), "
            f"scale {SCALE}, {cfg['nt']} time steps of {cside} x {cside} coarse cells "
            f"({side} x {side} high-resolution cells), batches of {cfg['batch']}."
            if n_params
            else ""
        ),
    ]
    for part in (
        over and table_overhead(over, cfg, gpu, cache),
        tiles and table_tiling(tiles, cfg, gpu),
        thr and table_workers(thr, cfg),
        mem and table_memory(mem, cfg, gpu),
    ):
        if part:
            lines += ["", *part]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    if args.json:
        results = {
            "config": cfg,
            "n_params": n_params,
            "overhead": over,
            "tiling": tiles,
            "workers": thr,
            "memory": mem,
        }
        data = {
            "benchmark": "inference",
            "command": command,
            "quick": args.quick,
            "device": dev,
            "seconds": total,
            "load_average": load_before,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "results": results,
            "ratios": ratios(results),
        }
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(text)


if __name__ == "__main__":
    main()
