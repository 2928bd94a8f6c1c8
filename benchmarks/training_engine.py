"""Training engine: batch loader vs training step, memory from a zarr store, DDP overhead.

Run:  python benchmarks/training_engine.py [--out docs/benchmarks-training.md] [--quick]
                                          [--json FILE]

Three measurements, side by side in one run; compare the ratios, not the absolute
numbers, which depend on the machine and on what else runs on it.

1. Loader vs training step. A zarr store on disk holds ``synthetic_dataset(nt=64,
   ny=256, nx=256)`` (one time step per chunk). It is paired, normalized and read lazily
   (``to_arrays(..., lazy=True)``), and ``random_patches`` delivers batches of 16
   patches of 64 x 64 high-resolution cells (scale 4) with 0, 1 and 2 worker processes.
   The worker start-up (time to the first batch) is reported apart; the read rate is
   timed once the batches asked for at start-up (2 per worker) have arrived. The
   training step (forward, backward and Adam of the default resnet + spc network) runs
   on those batches, held in memory. ``loader / step`` above 1 means that the loader
   delivers samples faster than the step consumes them. The last column trains with
   the loader feeding the step (end to end), where both share the same cores.
2. Peak memory of ``fit`` from that store, lazily and with ``in_memory=True``, each in
   its own process: the peak resident memory of the process (``ru_maxrss``), its growth
   over the fit, and the tracemalloc peak of a second, identical fit call in the same
   process (numpy and Python allocations; torch's own allocations are not traced).
3. Data-parallel overhead: ``fit(devices=2, device="cpu")`` against
   ``fit(device="cpu")`` with the same global batch and steps, each started from its own
   process; the training time is the sum of the epoch durations of the history (process
   start-up excluded), the total is the wall time of the ``fit`` call (spawning the
   workers, pairing, statistics and the model file that rank 0 hands back included).

The whole run takes about 3 minutes on 2 CPU cores. ``--quick`` is a smoke test of every
part (a 16 x 128 x 128 store, fewer batches, workers 0 and 2, no end-to-end column); it
is dominated by starting processes that import torch, about a minute on 2 cores.
``--json FILE`` writes the measurements and the ratios that ``benchmarks/run_all.py``
collects (:func:`ratios`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALE, BATCH, PATCH = 4, 16, 64  # patch side in high-resolution cells

FULL = {
    "store": {"nt": 64, "ny": 256, "nx": 256},
    "workers": (0, 1, 2),
    "loader_batches": 32,  # batches read per worker count
    "step_batches": 12,  # training steps timed (after one warm-up step)
    "end_to_end_batches": 12,
    "memory_steps": 4,
    "ddp": {"epochs": 2, "steps_per_epoch": 8},
}
QUICK = {
    "store": {"nt": 16, "ny": 128, "nx": 128},
    "workers": (0, 2),
    "loader_batches": 8,
    "step_batches": 4,
    "end_to_end_batches": 0,  # skipped
    "memory_steps": 2,
    "ddp": {"epochs": 1, "steps_per_epoch": 4},
}

# -- 2. memory: one process per mode ----------------------------------------------------
_MEMORY_CHILD = r"""
import json, resource, sys, time, tracemalloc
import torch, xarray as xr
from xr_dl4ds import fit
from xr_dl4ds.testing import synthetic_dataset
store, in_memory, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
kw = dict(scale=%(scale)d, epochs=1, batch_size=%(batch)d, patch_size=%(patch)d,
          steps_per_epoch=steps, in_memory=in_memory, device="cpu", progress=False, seed=0)
# a tiny fit first: imports and lazy initialisations are done before measuring
fit(synthetic_dataset(nt=2, ny=16, nx=16), **dict(kw, patch_size=16, steps_per_epoch=1))
ds = xr.open_zarr(store, consolidated=False)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
before = rss()
t0 = time.perf_counter()
fit(ds, **kw)
wall = time.perf_counter() - t0
peak = rss()
tracemalloc.start()
fit(ds, **kw)
_, traced = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"rss_before": before, "rss_peak": peak, "traced": traced / 2**20,
                  "wall": wall}))
"""

# -- 3. data-parallel overhead: one process per run -------------------------------------
_DDP_CHILD = r"""
import json, sys, time
from xr_dl4ds import fit
from xr_dl4ds.testing import synthetic_dataset
devices, epochs, steps, nt, ny, nx = (int(a) for a in sys.argv[1:7])
ds = synthetic_dataset(nt=nt, ny=ny, nx=nx)  # in memory: the batches cost little to make
t0 = time.perf_counter()
model = fit(ds, scale=%(scale)d, batch_size=%(batch)d, patch_size=%(patch)d, epochs=epochs,
            steps_per_epoch=steps, device="cpu", devices=None if devices == 1 else devices,
            progress=False, seed=0)
wall = time.perf_counter() - t0
print(json.dumps({"train": float(model.history["duration"].sum()), "wall": wall,
                  "loss": float(model.history["loss"][-1]),
                  "processes": model.training["processes"]}))
"""


def _child(code: str, *args: object) -> dict:
    code = code % {"scale": SCALE, "batch": BATCH, "patch": PATCH}
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_store(tmp: Path, nt: int, ny: int, nx: int) -> tuple[Path, float]:
    """The synthetic dataset as a zarr store, one time step per chunk; its size in MiB."""
    from xr_dl4ds.testing import synthetic_dataset

    ds = synthetic_dataset(nt=nt, ny=ny, nx=nx)
    store = tmp / "synthetic.zarr"
    ds.chunk({"time": 1}).to_zarr(store, consolidated=False)
    return store, ds["tas"].nbytes / 2**20


# -- 1. loader vs training step ---------------------------------------------------------
def lazy_arrays(store: Path):
    import xarray as xr

    from xr_dl4ds.data.normalization import compute_stats
    from xr_dl4ds.data.pairing import pair
    from xr_dl4ds.data.samples import to_arrays

    p = pair(xr.open_zarr(store, consolidated=False), scale=SCALE)
    stats = compute_stats(p.highres)
    stats.update(compute_stats(p.static))
    return to_arrays(p, stats, lazy=True)


def batches(arrays, n: int, workers: int, seed: int = 0):
    import numpy as np

    from xr_dl4ds.data.samples import random_patches

    side = PATCH // SCALE
    return random_patches(
        arrays,
        scale=SCALE,
        patch=(side, side),
        batch_size=BATCH,
        n_batches=n,
        rng=np.random.default_rng(seed),
        workers=workers,
    )


def _timed_from(workers: int) -> int:
    """Index of the batch whose arrival starts the clock.

    The loader asks each worker for 2 batches at start-up (``prefetch_factor=2``), which
    the workers read while the others still start, and which then arrive together;
    timing from the last of them counts only batches read by workers all running.
    """
    return max(0, 2 * workers - 1)


def time_loader(arrays, n: int, workers: int) -> tuple[dict, list]:
    """Start-up (to the first batch) and samples/s once the loader runs steadily."""
    t0 = time.perf_counter()
    it = batches(arrays, n, workers)
    arrivals, out = [], []
    for b in it:
        arrivals.append(time.perf_counter())
        out.append(b)
    first = _timed_from(workers)
    rate = BATCH * (n - 1 - first) / (arrivals[-1] - arrivals[first])
    return {"startup": arrivals[0] - t0, "rate": rate}, out


def make_step():
    """A training step (forward, backward, Adam) of the default network."""
    import torch

    from xr_dl4ds.losses import get_loss
    from xr_dl4ds.models import ModelConfig, create_model

    torch.manual_seed(0)
    # target + 2 coarsened static fields in, the 2 static fields at high resolution
    net = create_model(ModelConfig(scale=SCALE, in_channels=3, out_channels=1, static_channels=2))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = get_loss("mae")

    def step(b) -> float:
        x, s = torch.from_numpy(b.lowres), torch.from_numpy(b.static)
        y, m = torch.from_numpy(b.target), torch.from_numpy(b.mask)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x, s), y, m)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in net.parameters())


def time_step(step, held: list, n: int) -> float:
    step(held[0])  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        step(held[(i + 1) % len(held)])
    return BATCH * n / (time.perf_counter() - t0)


def time_end_to_end(step, arrays, n: int, workers: int) -> float:
    """Samples/s of training fed by the loader, once it runs steadily."""
    first = _timed_from(workers)
    t0 = None
    for i, b in enumerate(batches(arrays, n, workers, seed=1)):
        step(b)
        if i == first:
            t0 = time.perf_counter()
    return BATCH * (n - 1 - first) / (time.perf_counter() - t0)


# -- report -----------------------------------------------------------------------------
def ratios(results: dict) -> list[dict]:
    """The ratios of a run, from the ``results`` of ``--json``.

    Loader over training step (and end to end over the step) per worker count, the
    memory of a lazy ``fit`` over an ``in_memory=True`` one, and two data-parallel
    processes over one (training time and the whole ``fit`` call).
    """
    out = []
    step = results["step_rate"]
    for r in results["loader"]:
        w = r["workers"]
        out.append(
            {
                "name": f"loader / training step, {w} worker{'s' if w != 1 else ''}",
                "compares": "samples/s read lazily from zarr by the patch loader with "
                f"{w} worker process{'es' if w != 1 else ''} over samples/s of a training "
                "step (above 1: the loader keeps up)",
                "value": r["rate"] / step,
            }
        )
    for r in results["end_to_end"]:
        w = r["workers"]
        out.append(
            {
                "name": f"end to end / training step, {w} worker{'s' if w != 1 else ''}",
                "compares": "samples/s of training fed by the loader "
                f"({w} worker{'s' if w != 1 else ''}) over samples/s of the step on batches "
                "in memory",
                "value": r["rate"] / step,
            }
        )
    lazy, eager = results["memory"]["lazy"], results["memory"]["in_memory"]
    if "error" not in lazy and "error" not in eager:
        out += [
            {
                "name": "fit memory, lazy / in_memory (tracemalloc)",
                "compares": "tracemalloc peak (numpy and Python allocations) of `fit` reading "
                "the zarr store lazily over `fit(in_memory=True)`",
                "value": lazy["traced"] / eager["traced"],
            },
            {
                "name": "fit memory, lazy / in_memory (RSS growth)",
                "compares": "growth of the peak resident memory during `fit`, lazy over "
                "`in_memory=True` (torch's activations and optimizer state included)",
                "value": (lazy["rss_peak"] - lazy["rss_before"])
                / (eager["rss_peak"] - eager["rss_before"]),
            },
        ]
    one, two = results["ddp"]["1"], results["ddp"]["2"]
    if "error" not in one and "error" not in two:
        out += [
            {
                "name": "data-parallel / single process, training",
                "compares": '`fit(devices=2, device="cpu")` over `fit(device="cpu")`: sum of '
                "the epoch durations, same global batch and steps",
                "value": two["train"] / one["train"],
            },
            {
                "name": "data-parallel / single process, whole `fit`",
                "compares": "the same, wall time of the whole `fit` call (spawning the "
                "processes and handing the model back included)",
                "value": two["wall"] / one["wall"],
            },
        ]
    return out


def _fmt(v: float, digits: int = 1) -> str:
    return f"{v:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write Markdown tables here")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the measurements and ratios here"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: a smaller store, fewer batches, workers 0 and 2, no end-to-end",
    )
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    load_before = os.getloadavg()[0]  # other work on the machine skews every timing
    start = time.perf_counter()
    sizes = cfg["store"]
    with tempfile.TemporaryDirectory() as tmp:
        store, tas_mib = make_store(Path(tmp), **sizes)
        store_mib = _dir_size(store) / 2**20
        print(f"store: {store_mib:.1f} MiB on disk, tas {tas_mib:.1f} MiB", flush=True)

        # 2. memory, first: Linux carries a process's peak RSS over to the children it
        # starts (ru_maxrss survives fork and exec), so they are started from this
        # process while it is still small (torch not imported, nothing trained)
        memory = {}
        for in_memory in (False, True):
            memory[in_memory] = _child(_MEMORY_CHILD, store, int(in_memory), cfg["memory_steps"])
            print(f"memory in_memory={in_memory}: {memory[in_memory]}", flush=True)

        # 1. loader vs training step
        import torch

        arrays = lazy_arrays(store)
        loader, held = {}, []
        for w in cfg["workers"]:
            loader[w], got = time_loader(arrays, cfg["loader_batches"], w)
            held = held or got
            print(f"loader workers={w}: {loader[w]}", flush=True)
        step, n_params = make_step()
        step_rate = time_step(step, held, cfg["step_batches"])
        print(f"training step: {step_rate:.1f} samples/s", flush=True)
        e2e = {}
        if cfg["end_to_end_batches"]:
            for w in cfg["workers"]:
                e2e[w] = time_end_to_end(step, arrays, cfg["end_to_end_batches"], w)
                print(f"end to end workers={w}: {e2e[w]:.1f} samples/s", flush=True)

    # 3. DDP overhead
    d = cfg["ddp"]
    ddp = {}
    for devices in (1, 2):
        ddp[devices] = _child(
            _DDP_CHILD,
            devices,
            d["epochs"],
            d["steps_per_epoch"],
            sizes["nt"],
            sizes["ny"],
            sizes["nx"],
        )
        print(f"devices={devices}: {ddp[devices]}", flush=True)
    total = time.perf_counter() - start

    # -- tables ---------------------------------------------------------------------
    shape = f"{sizes['nt']} x {sizes['ny']} x {sizes['nx']}"
    lines = [
        f"Measured with `python benchmarks/training_engine.py{' --quick' if args.quick else ''}` "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}); one run, "
        f"{total:.0f} s in all; load average {load_before:.2f} when it started. Data: "
        f"`synthetic_dataset` with {shape} (time x y x x) cells "
        f"of `tas` ({tas_mib:.1f} MiB) in a zarr store of {store_mib:.1f} MiB, one time "
        f"step per chunk; batches of {BATCH} patches of {PATCH} x {PATCH} cells, scale "
        f"{SCALE}; the default resnet + spc network ({n_params:,} parameters).",
        "",
        "**Loader vs training step**",
        "",
        "| loader workers | worker start-up (s) | loader (samples/s) | training step "
        "(samples/s) | loader / step | end to end (samples/s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for w in cfg["workers"]:
        r = loader[w]
        e = _fmt(e2e[w]) if w in e2e else "-"
        lines.append(
            f"| {w} | {_fmt(r['startup'], 2)} | {_fmt(r['rate'])} | {_fmt(step_rate)} | "
            f"{_fmt(r['rate'] / step_rate, 2)} | {e} |"
        )
    lines += [
        "",
        f"Loader: {cfg['loader_batches']} batches per worker count, timed once the 2 "
        "batches per worker asked for at start-up have arrived; training step: "
        f"{cfg['step_batches']} steps on batches already in memory, after a warm-up step; "
        + (
            f"end to end: {cfg['end_to_end_batches']} batches, the step fed by the loader "
            "(timed like the loader). "
            if e2e
            else "end to end: skipped with `--quick`. "
        )
        + "Worker start-up is the time to the first batch (spawning the workers and "
        "importing the package in them); `fit` pays it once per epoch.",
        "",
        "**Peak memory of `fit` from the zarr store**",
        "",
        "| data | store on disk (MiB) | `tas` in memory (MiB) | peak RSS (MiB) | "
        "RSS growth in `fit` (MiB) | tracemalloc peak of `fit` (MiB) | `fit` (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for in_memory, label in ((False, "read lazily (default)"), (True, "`in_memory=True`")):
        m = memory[in_memory]
        if "error" in m:
            lines.append(f"| {label} | error: {m['error']} | | | | | |")
            continue
        lines.append(
            f"| {label} | {_fmt(store_mib)} | {_fmt(tas_mib)} | {_fmt(m['rss_peak'], 0)} | "
            f"{_fmt(m['rss_peak'] - m['rss_before'], 0)} | {_fmt(m['traced'])} | "
            f"{_fmt(m['wall'])} |"
        )
    lines += [
        "",
        f"`fit(store, epochs=1, steps_per_epoch={cfg['memory_steps']})` in a fresh process "
        "that has already trained a tiny model (imports done). Peak RSS is the whole "
        "process (torch included); its growth is over the `fit` call; the tracemalloc "
        "peak is that of a second, identical `fit` call (numpy and Python allocations, "
        "not torch's).",
        "",
        "**Data-parallel overhead on CPU**",
        "",
        "| run | processes x threads | training (s) | total `fit` call (s) | final loss |",
        "|---|---|---:|---:|---:|",
    ]
    threads = {1: f"1 x {os.cpu_count()}", 2: f"2 x {max(1, (os.cpu_count() or 1) // 2)}"}
    for devices, label in ((1, '`fit(device="cpu")`'), (2, '`fit(devices=2, device="cpu")`')):
        r = ddp[devices]
        if "error" in r:
            lines.append(f"| {label} | {threads[devices]} | error: {r['error']} | | |")
            continue
        lines.append(
            f"| {label} | {threads[devices]} | {_fmt(r['train'], 2)} | {_fmt(r['wall'], 2)} | "
            f"{r['loss']:.4f} |"
        )
    if "error" not in ddp[1] and "error" not in ddp[2]:
        lines.append(
            f"| ratio (2 processes / 1) | | {ddp[2]['train'] / ddp[1]['train']:.2f} | "
            f"{ddp[2]['wall'] / ddp[1]['wall']:.2f} | |"
        )
    lines += [
        "",
        f"Same global batch ({BATCH}), {d['epochs']} epoch(s) of {d['steps_per_epoch']} "
        "steps, data in memory. Training is the sum of the epoch durations of the "
        "history (rank 0's for two processes); the total `fit` call adds spawning the "
        "workers, pairing, statistics, and saving and loading rank 0's model.",
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    if args.json:
        results = {
            "store": {**sizes, "disk_mib": store_mib, "tas_mib": tas_mib},
            "batch": BATCH,
            "patch": PATCH,
            "scale": SCALE,
            "n_params": n_params,
            "loader": [{"workers": w, **loader[w]} for w in cfg["workers"]],
            "step_rate": step_rate,
            "end_to_end": [{"workers": w, "rate": e2e[w]} for w in e2e],
            "memory": {"lazy": memory[False], "in_memory": memory[True]},
            "ddp": {str(k): v for k, v in ddp.items()},
        }
        Path(args.json).write_text(
            json.dumps(
                {
                    "benchmark": "training",
                    "command": "python benchmarks/training_engine.py"
                    + (" --quick" if args.quick else ""),
                    "quick": args.quick,
                    "device": "cpu",
                    "seconds": total,
                    "load_average": load_before,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "python": platform.python_version(),
                    "config": cfg,
                    "results": results,
                    "ratios": ratios(results),
                },
                indent=1,
                default=str,
            )
            + "\n"
        )
    print(text)


if __name__ == "__main__":
    main()
