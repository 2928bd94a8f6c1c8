"""Data-parallel (multi-GPU) training, two ways: ``fit(devices=N)`` or ``torchrun``.

1. From a script or a notebook, ``fit(..., devices=N)`` spawns N processes on this
   machine, one per GPU (NCCL), or N CPU processes with ``device="cpu"`` (gloo), trains
   them together (PyTorch DDP) and returns the trained model::

       python examples/multi_gpu_training.py --devices 4            # 4 GPUs
       python examples/multi_gpu_training.py --devices 2 --device cpu --quick

2. Under ``torchrun`` (one or several nodes), every process runs this same script and
   calls ``fit`` *without* ``devices``: each joins the process group (``RANK``,
   ``WORLD_SIZE`` and ``LOCAL_RANK`` come from torchrun; process k uses ``cuda:k``)::

       torchrun --standalone --nproc-per-node=4 examples/multi_gpu_training.py
       torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d \\
           --rdzv-endpoint=HOST:29500 examples/multi_gpu_training.py

In both cases the global ``--batch-size`` is split evenly over the processes, and the
result matches a single-process run with the same global batch. Every rank returns the
same model; only rank 0 saves it and prints. Trains a resnet x4 on the bundled ERA5
sample (``--quick``: a tiny network on small synthetic data, a few seconds on CPU; used
by the tests).

Writes DIR/model.dl4ds and DIR/history.csv (default DIR: ./multi_gpu_output).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import xr_dl4ds


def main(
    out: Path,
    devices: int | None,
    device: str = "auto",
    epochs: int = 10,
    quick: bool = False,
    batch_size: int = 16,
) -> xr_dl4ds.Downscaler:
    rank = int(os.environ.get("RANK", "0"))
    under_torchrun = "WORLD_SIZE" in os.environ
    if quick:
        from xr_dl4ds.testing import synthetic_dataset

        ds, target, static = synthetic_dataset(nt=8, ny=32, nx=48, seed=0), "tas", ["orog", "sftlf"]
        options = {"n_filters": 8, "n_blocks": 2, "patch_size": 16, "steps_per_epoch": 3}
    else:
        from xr_dl4ds import tutorial

        ds = tutorial.open_dataset("era5_t2m").isel(lat=slice(0, 180), time=slice(0, 18))
        target, static = "t2m", ["orography", "lsm"]
        options = {"patch_size": 64, "steps_per_epoch": 24}

    t0 = time.perf_counter()
    model = ds.dl4ds.fit(
        target=target,
        scale=4,
        static=static,
        backbone="resnet",
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=2e-3,
        seed=0,
        device=device,
        # under torchrun the processes already exist: devices must stay unset
        devices=None if under_torchrun else devices,
        progress=False,
        **options,
    )
    seconds = time.perf_counter() - t0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.dl4ds")
        model.history.to_dataframe().to_csv(out / "history.csv")
        loss = model.history["loss"].values
        print(
            f"trained in {model.training['processes']} processes, {epochs} epochs in "
            f"{seconds:.1f} s; loss {loss[0]:.4f} -> {loss[-1]:.4f}"
        )
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("multi_gpu_output"))
    parser.add_argument("--devices", type=int, default=2, help="processes (ignored under torchrun)")
    parser.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu"')
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch size")
    parser.add_argument("--quick", action="store_true", help="tiny network, synthetic data")
    args = parser.parse_args()
    main(args.out, args.devices, args.device, args.epochs, args.quick, args.batch_size)
