"""Faults: a dask worker killed while downscaling, writes that fail half way, and the
command line interrupted with ctrl-C (SIGINT)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import torch
import xarray as xr
import zarr

import xr_dl4ds
from xr_dl4ds import cli
from xr_dl4ds.testing import synthetic_dataset
from xr_dl4ds.writing import is_complete, to_zarr

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # zarr 3

TINY = {
    "scale": 4,
    "epochs": 1,
    "steps_per_epoch": 1,
    "patch_size": None,
    "n_filters": 4,
    "n_blocks": 1,
    "device": "cpu",
    "progress": False,
}


@pytest.fixture(scope="module")
def hr():
    return synthetic_dataset(nt=8, ny=16, nx=16, seed=5)


@pytest.fixture(scope="module")
def model(hr):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return xr_dl4ds.fit(hr, **TINY)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coarse(hr):
    return hr["tas"].dl4ds.coarsen(scale=4)


def _env():
    """The environment of a child python: this checkout importable, one thread."""
    root = str(Path(xr_dl4ds.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _wait_for(condition, timeout, proc=None, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}:\n{err}")
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# ----------------------------------------------------------------------------------------
# (a) a dask worker killed during downscale
# ----------------------------------------------------------------------------------------


def _logged_sleep(block, log, delay):
    """Identity on a block that records which process started it, then sleeps, so that a
    worker can be killed while it is certainly in the middle of a task."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(delay)
    return block


@pytest.mark.slow
def test_worker_killed_during_downscale_gives_the_identical_result(model, coarse, tmp_path):
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    log = tmp_path / "starts.log"
    lazy = coarse.chunk({"time": 1})  # 8 tasks
    slow = lazy.data.map_blocks(
        _logged_sleep, str(log), 0.3, dtype=lazy.dtype, meta=np.empty((0, 0, 0), lazy.dtype)
    )
    fine = xr_dl4ds.downscale(lazy.copy(data=slow), model, device="cpu")
    expected = fine.compute(scheduler="sync")  # the single-process result, same graph
    log.unlink()

    # the workers cannot import this test module: ship _logged_sleep by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with (
            # forked from a fresh server process: the restarted worker is up sooner, and
            # the cluster closes without waiting for a spawned interpreter to start
            dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}),
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            victim = next(iter(client.run(os.getpid).values()))
            future = client.compute(fine)

            def victim_is_working():
                return log.exists() and str(victim) in log.read_text().split()

            _wait_for(victim_is_working, 120, what="a task on the first worker")
            os.kill(victim, signal.SIGKILL)  # in the middle of its task's sleep
            actual = future.result(timeout=180)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    starts = log.read_text().split()
    assert starts.count(str(victim)) == 1, starts  # killed in its first task
    assert len(starts) >= 9, starts  # 8 tasks, and the killed one again elsewhere
    xr.testing.assert_identical(actual, expected)
    assert actual.values.tobytes() == expected.values.tobytes()  # bit for bit, NaNs too
    assert actual.attrs == expected.attrs


# ----------------------------------------------------------------------------------------
# (b) writes that fail half way
# ----------------------------------------------------------------------------------------


def _no_space():
    return OSError(errno.ENOSPC, "No space left on device")


class FullDiskStore(dict):
    """An in-memory zarr store that fails like a full disk after ``room`` chunk writes of
    the variable ``name`` (metadata writes still succeed)."""

    def __init__(self, room: int | None, name: str = "tas"):
        super().__init__()
        self.room, self.name, self.chunk_writes = room, name, 0

    def __setitem__(self, key, value):
        if key.startswith(f"{self.name}/c"):
            if self.room is not None and self.chunk_writes >= self.room:
                raise _no_space()
            self.chunk_writes += 1
        super().__setitem__(key, value)


def _lazy_fine(model, coarse):
    return xr_dl4ds.downscale(coarse.chunk({"time": 2}), model, device="cpu")  # 4 chunks


def _notes(err: BaseException) -> str:
    return "\n".join(getattr(err, "__notes__", []))


def test_store_that_fills_up_is_left_incomplete_and_resumes(model, coarse):
    fine = _lazy_fine(model, coarse)
    store = FullDiskStore(room=3)  # the 4th chunk does not fit
    with pytest.raises(OSError, match="No space left on device") as info:
        to_zarr(fine, store, progress=False, chunks_per_region=1)
    assert info.value.errno == errno.ENOSPC  # the original error, type kept
    note = _notes(info.value)
    if sys.version_info >= (3, 11):
        assert "xr_dl4ds.to_zarr failed while writing the chunks 3 to 3 along 'time'" in note
        assert "is_complete() is False; 3 of 4 chunks along 'time' are written" in note
        assert "mode='resume'" in note and "--resume" in note
    assert store.chunk_writes == 3
    assert not is_complete(store)
    stored = xr.open_zarr(store, consolidated=False)["tas"].values
    assert np.isfinite(stored[:6]).all() and np.isnan(stored[6:]).all()  # fill value

    store.room = None  # space is freed
    summary = to_zarr(fine, store, mode="resume", progress=False, chunks_per_region=1)
    assert (summary.chunks_skipped, summary.chunks_written) == (3, 1)
    assert is_complete(store)

    reference = FullDiskStore(room=None)
    to_zarr(fine, reference, progress=False)
    assert store.keys() == reference.keys()
    for key in reference:
        assert store[key].to_bytes() == reference[key].to_bytes(), key
    xr.testing.assert_identical(xr.open_zarr(store)["tas"].compute(), fine.compute())


def test_local_store_that_fills_up_mid_region(model, coarse, tmp_path, monkeypatch):
    """A real directory whose disk fills up in the middle of a region of two chunks: the
    first chunk of the region is on disk, but the region is not recorded."""
    fine = _lazy_fine(model, coarse)
    original = zarr.storage.LocalStore.set
    writes = []

    async def set_until_full(self, key, value):
        if key.startswith("tas/c"):
            if len(writes) >= 3:
                raise _no_space()
            writes.append(key)
        await original(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_until_full)
    path = tmp_path / "fine.zarr"
    with pytest.raises(OSError, match="No space left on device") as info:
        to_zarr(fine, path, progress=False, chunks_per_region=2)
    if sys.version_info >= (3, 11):
        assert "writing the chunks 2 to 3 along 'time'" in _notes(info.value)
        assert "2 of 4 chunks along 'time' are written and kept" in _notes(info.value)
    assert not is_complete(path)
    assert len(writes) == 3  # a chunk of the failed region reached the disk

    monkeypatch.setattr(zarr.storage.LocalStore, "set", original)
    summary = to_zarr(fine, path, mode="resume", progress=False, chunks_per_region=2)
    assert (summary.chunks_skipped, summary.chunks_written) == (2, 2)
    to_zarr(fine, tmp_path / "reference.zarr", progress=False, chunks_per_region=2)
    assert _tree(path) == _tree(tmp_path / "reference.zarr")


def _skip_unless_permissions_apply(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").write_bytes(b"")
    except PermissionError:
        return
    finally:
        probe.chmod(0o755)
    pytest.skip("file permissions do not stop this user (root with CAP_DAC_OVERRIDE)")


def test_directory_made_read_only_during_the_write(model, coarse, tmp_path):
    _skip_unless_permissions_apply(tmp_path)
    fine = _lazy_fine(model, coarse)
    path = tmp_path / "fine.zarr"
    chunks = path / "tas" / "c"

    def lock(i, region):
        if i == 1:
            for d in [chunks, *chunks.rglob("*")]:
                if d.is_dir():
                    d.chmod(0o555)

    with pytest.raises(PermissionError) as info:
        to_zarr(fine, path, progress=False, chunks_per_region=1, on_region=lock)
    if sys.version_info >= (3, 11):
        assert "2 of 4 chunks along 'time' are written and kept" in _notes(info.value)
    assert not is_complete(path)
    for d in [chunks, *chunks.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    assert to_zarr(fine, path, mode="resume", progress=False).chunks_skipped == 2
    to_zarr(fine, tmp_path / "reference.zarr", progress=False, chunks_per_region=1)
    assert _tree(path) == _tree(tmp_path / "reference.zarr")


def test_cli_netcdf_write_that_fails_leaves_no_file(model, coarse, tmp_path, monkeypatch):
    model_path, lr = tmp_path / "model.dl4ds", tmp_path / "lr.nc"
    model.save(model_path)
    coarse.to_dataset().to_netcdf(lr)
    out = tmp_path / "out" / "fine.nc"
    seen = {}
    original = cli._write_netcdf

    def fail_after_two_chunks(ds, path, *, progress):
        calls = []

        def disk_full_at_third(block):
            calls.append(1)
            if len(calls) == 3:
                seen["files"] = sorted(p.name for p in out.parent.iterdir())
                seen["size"] = os.path.getsize(path)
                raise _no_space()
            return block

        ds = ds.copy()
        data = ds["tas"].data
        ds["tas"].data = data.map_blocks(disk_full_at_third, dtype=data.dtype, meta=data._meta)
        return original(ds, path, progress=progress)

    monkeypatch.setattr(cli, "_write_netcdf", fail_after_two_chunks)
    argv = ["downscale", str(model_path), str(lr), str(out), "--chunks", "time=2"]
    with pytest.raises(OSError, match="No space left on device") as info:
        cli.main([*argv, "--device", "cpu", "--no-progress"])
    # while it ran, a partial file existed under a temporary name, never at the final path
    assert len(seen["files"]) == 1 and seen["files"][0].startswith(".fine.nc.")
    assert seen["size"] > 0
    assert list(out.parent.iterdir()) == []  # nothing at the final path, no temporary file
    if sys.version_info >= (3, 11):
        assert f"writing {str(out)!r} failed, so nothing was written there" in _notes(info.value)

    monkeypatch.setattr(cli, "_write_netcdf", original)  # the fault is gone
    assert cli.main([*argv, "--device", "cpu", "--no-progress"]) == 0
    with xr.open_dataset(out) as written:
        expected = xr_dl4ds.downscale(coarse, model, device="cpu")
        np.testing.assert_array_equal(written["tas"].values, expected.values)


# ----------------------------------------------------------------------------------------
# (c) ctrl-C on the command line
# ----------------------------------------------------------------------------------------


def test_ctrl_c_during_a_netcdf_write_stops_at_the_next_chunk(model, coarse, tmp_path):
    """SIGINT while the netCDF writer runs: the write stops at the next chunk through the
    writer's own error handling (a KeyboardInterrupt raised inside xarray's locked file
    code could leave a lock held and hang the process), and KeyboardInterrupt is raised
    once the temporary file is closed and removed."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has another handler here")
    fine = xr_dl4ds.downscale(coarse.chunk({"time": 1}), model, device="cpu").to_dataset()
    computed = []

    def ctrl_c_at_third(block):
        computed.append(1)
        if len(computed) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread
            time.sleep(0.2)
        return block

    data = fine["tas"].data
    fine["tas"] = fine["tas"].copy(
        data=data.map_blocks(ctrl_c_at_third, dtype=data.dtype, meta=data._meta)
    )
    out = tmp_path / "out" / "fine.nc"
    with dask.config.set(scheduler="threads", num_workers=1):
        with pytest.raises(KeyboardInterrupt) as info:
            cli.write_dataset(fine, out, overwrite=False)
    # raised by the CLI once the writer is done, not from inside xarray's or dask's code
    assert Path(info.traceback[-1].path).name == "cli.py", info.traceback[-1]
    assert len(computed) < 8  # stopped early, not after the whole write
    assert list(out.parent.iterdir()) == []  # no file, no temporary file
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "xr_dl4ds", *map(str, args)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell starts background jobs with SIGINT ignored; the child must get it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt(proc):
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the command did not stop on SIGINT:\n{err}")
    return proc.returncode, out, err


def _check_one_line(err, expected):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("xr-dl4ds: interrupted: "), err
    assert expected in lines[-1], err
    assert sum("interrupted" in line for line in lines) == 1, err


@pytest.mark.slow
def test_ctrl_c_during_fit_exits_130_and_leaves_a_resumable_checkpoint(hr, tmp_path):
    hr.to_netcdf(tmp_path / "hr.nc")
    ckpt, model_path = tmp_path / "run.ckpt", tmp_path / "out" / "model.dl4ds"
    fit_options = {
        "target": "tas",
        "scale": 4,
        "static": ["orog", "sftlf"],
        "epochs": 100_000,  # runs until interrupted
        "batch_size": 2,
        "steps_per_epoch": 2,
        "patch_size": 16,
        "n_filters": 4,
        "n_blocks": 1,
        "seed": 0,
        "device": "cpu",
        "progress": False,
        "checkpoint_every": 1,
    }
    lines = [f"{k} = {cli.toml_value(v)}" for k, v in fit_options.items()]
    (tmp_path / "config.toml").write_text(
        f'[data]\npath = "{tmp_path / "hr.nc"}"\n\n[fit]\n'
        + "\n".join(lines)
        + f'\ncheckpoint_path = "{ckpt}"\n\n[output]\nmodel = "{model_path}"\n'
    )
    proc = _start(["fit", "config.toml"], tmp_path)
    _wait_for(ckpt.exists, 120, proc, "the first checkpoint")
    time.sleep(0.2)  # a few epochs on
    status, out, err = _interrupt(proc)

    assert status == 130, err
    _check_one_line(err, "the outputs not yet written are absent, none is partial")
    assert "--set fit.resume=" in err
    assert not model_path.exists()
    left = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert left == []  # no temporary model or checkpoint file

    from xr_dl4ds.training.supervised import read_checkpoint

    done = int(read_checkpoint(ckpt)["epoch"])
    assert done >= 1
    # the checkpoint resumes: the same options, stopped one epoch later by a callback
    with xr.open_dataset(tmp_path / "hr.nc") as data:
        model = xr_dl4ds.fit(
            data,
            **{k: v for k, v in fit_options.items()},
            checkpoint_path=tmp_path / "resumed.ckpt",
            resume=ckpt,
            callback=lambda epoch, values: True,
        )
    assert model.history.sizes["epoch"] == done + 1
    np.testing.assert_array_equal(
        model.history["loss"].values[:done], read_checkpoint(ckpt)["history"]["loss"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_ctrl_c_during_downscale_exits_130_and_leaves_no_partial_output(
    model, tmp_path, monkeypatch, suffix
):
    model.save(tmp_path / "model.dl4ds")
    long = synthetic_dataset(nt=2000, ny=16, nx=16, seed=1)["tas"].dl4ds.coarsen(scale=4)
    long.to_dataset().to_netcdf(tmp_path / "lr.nc")
    out = tmp_path / "out" / f"fine{suffix}"
    # 50 chunks (25 zarr regions of 2): a second or two of work to interrupt
    args = ["downscale", "model.dl4ds", "lr.nc", out, "--chunks", "time=40", "--device", "cpu"]
    proc = _start([*args, "--no-progress"], tmp_path)

    def writing():
        if suffix == ".zarr":
            return (out / "tas" / "c").exists()  # the first region is being written
        return out.parent.exists() and any(p.suffix == ".tmp" for p in out.parent.iterdir())

    _wait_for(writing, 120, proc, "the output to be written")
    status, _, err = _interrupt(proc)
    assert status == 130, err
    if suffix == ".nc":
        _check_one_line(err, f"nothing was written to {str(out)!r}: rerun the command")
        assert list(out.parent.iterdir()) == []  # neither the file nor a temporary one
        return
    _check_one_line(err, "is incomplete (its finished chunks are kept): rerun the same")
    assert not is_complete(out)
    # finishing it with --resume gives the store an uninterrupted run writes
    monkeypatch.chdir(tmp_path)
    assert cli.main([str(a) for a in args] + ["--resume", "--no-progress"]) == 0
    assert is_complete(out)
    reference = tmp_path / "reference.zarr"
    assert cli.main([str(a) for a in args[:3]] + [str(reference), *map(str, args[4:])]) == 0
    with xr.open_zarr(out) as a, xr.open_zarr(reference) as b:
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))
