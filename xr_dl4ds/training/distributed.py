"""Data-parallel training (torch DDP): one process per device, on one or several nodes.

Two ways in:

- ``fit(..., devices=N)`` from a script or a notebook spawns ``N`` processes on this
  machine (NCCL on GPUs, gloo on CPUs), trains, and returns the model of rank 0.
- Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set), every process calls the same
  ``fit(...)``; it joins the process group and trains its share.

Every rank draws the same global batch from the same seeded generator and trains on its
own slice of it, so the ranks see different samples while the run as a whole matches a
single process with the same global batch (gradients are averaged over equal slices).
Only rank 0 writes files; every rank returns the same trained model.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ..exceptions import ConfigError

__all__ = [
    "DistContext",
    "all_reduce_sums",
    "current_context",
    "dist_requested",
    "shard_batches",
    "spawn_fit",
]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Rank, number of processes and device of this process."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_world() -> tuple[int, int, int] | None:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        world = int(os.environ["WORLD_SIZE"])
        if world > 1:
            rank = int(os.environ["RANK"])
            local = int(os.environ.get("LOCAL_RANK", rank))
            return rank, world, local
    return None


def dist_requested() -> bool:
    """True under torchrun (or a spawned worker) with more than one process."""
    return _env_world() is not None


def current_context(device: torch.device) -> DistContext | None:
    """Join the process group when launched by ``torchrun`` (or by :func:`spawn_fit`).

    Returns None for a single-process run. On CUDA each process uses ``cuda:LOCAL_RANK``.
    """
    import torch.distributed as dist

    env = _env_world()
    if env is None:
        return None
    rank, world, local = env
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def shard_batches(batches: Iterator[Any], ctx: DistContext) -> Iterator[Any]:
    """This rank's equal slice of every global batch."""
    for batch in batches:
        n = batch.lowres.shape[0]
        if n % ctx.world_size:
            raise ConfigError(
                f"batch_size={n} cannot be split evenly over {ctx.world_size} processes. "
                f"Use a batch_size that is a multiple of {ctx.world_size}."
            )
        k = n // ctx.world_size
        sl = slice(ctx.rank * k, (ctx.rank + 1) * k)
        yield dataclasses.replace(
            batch,
            **{
                f.name: (None if getattr(batch, f.name) is None else getattr(batch, f.name)[sl])
                for f in dataclasses.fields(batch)
            },
        )


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all ranks (for epoch losses that every rank reports alike)."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, args: tuple, kwargs: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    import torch.distributed as dist

    from ..downscaler import fit

    # share the cores: N processes with all cores each would oversubscribe the CPU
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        model = fit(*args, **kwargs)
        if rank == 0:
            model.save(out)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn_fit(devices: int, args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """Run ``fit(*args, **kwargs)`` in ``devices`` new processes; return rank 0's model."""
    import torch.multiprocessing as mp

    from ..io import load

    if _env_world() is not None:
        raise ConfigError(
            "devices= spawns processes itself; under torchrun (RANK/WORLD_SIZE set) leave "
            "devices unset: every process calls fit() and they train together."
        )
    if kwargs.get("device") not in (None, "auto", "cpu") and not str(kwargs["device"]).startswith(
        "cuda"
    ):
        raise ConfigError(f"device={kwargs['device']!r} cannot be used with devices={devices}.")
    if str(kwargs.get("device", "auto")).startswith("cuda") or (
        kwargs.get("device", "auto") == "auto" and torch.cuda.is_available()
    ):
        if torch.cuda.device_count() < devices:
            raise ConfigError(
                f"devices={devices} asks for {devices} GPUs but {torch.cuda.device_count()} "
                "are visible. Use fewer devices, or device='cpu' for CPU processes."
            )
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.dl4ds")
        mp.start_processes(
            _worker,
            args=(devices, _free_port(), args, dict(kwargs), out),
            nprocs=devices,
            join=True,
            start_method="spawn",
        )
        return load(out)
