"""xr_dl4ds.to_zarr: resumable, region-by-region writing of (lazy) outputs to zarr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import xr_dl4ds
from xr_dl4ds.exceptions import ChunkError, ConfigError, DataError, DL4DSError
from xr_dl4ds.testing import raise_if_dask_computes, synthetic_dataset
from xr_dl4ds.writing import MARKER_ATTR, StoreExistsError, is_complete, to_zarr

# xarray's own to_zarr (the reference) warns that zarr 3 has no consolidated metadata spec
pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")

# A deterministic lazy dataset whose dask blocks record when they are computed. The same
# source builds it in a subprocess that is killed mid-write and in the test process that
# resumes the write, so both see identical objects.
BUILD = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd
    import xarray as xr
    import dask.array as da

    CALLS = []  # start (along time) of every tas block computed
    STATIC_CALLS = []  # every orog block computed

    def tas_block(x, block_info=None):
        loc = block_info[0]["array-location"]
        CALLS.append(loc[0][0])
        t, y, x = np.meshgrid(*(np.arange(a, b) for a, b in loc), indexing="ij")
        out = (280.0 + 10.0 * np.sin(0.7 * t + 0.3 * y) + 0.01 * x).astype("float32")
        out[(t + y + x) % 7 == 0] = np.nan
        return out

    def orog_block(x, block_info=None):
        STATIC_CALLS.append(block_info[0]["array-location"])
        (y0, y1), (x0, x1) = block_info[0]["array-location"]
        return np.add.outer(np.arange(y0, y1) * 100.0, np.arange(x0, x1))

    def build(nt=12, chunk=2):
        ny, nx = 6, 5
        tas = da.zeros((nt, ny, nx), chunks=(chunk, ny, nx), dtype="float32").map_blocks(
            tas_block, dtype="float32", meta=np.empty((0, 0, 0), "float32")
        )
        orog = da.zeros((ny, nx), chunks=(3, nx)).map_blocks(
            orog_block, dtype="float64", meta=np.empty((0, 0))
        )
        time = pd.date_range("2000-01-01", periods=nt, freq="D")
        bounds = np.stack([time, time + pd.Timedelta("1D")], axis=1)
        ds = xr.Dataset(
            {
                "tas": (("time", "y", "x"), tas, {"units": "K", "long_name": "temperature"}),
                "orog": (("y", "x"), orog, {"units": "m"}),
                "land": (("y", "x"), np.arange(ny * nx).reshape(ny, nx) % 3 == 0),
            },
            coords={
                "time": ("time", time, {"axis": "T"}),
                "y": ("y", np.arange(ny) * 0.5, {"units": "km"}),
                "x": ("x", np.arange(nx) * 0.5, {"units": "km"}),
                "time_bnds": (("time", "bnds"), bounds),
            },
            attrs={"title": "to_zarr test", "history": "built for a test"},
        )
        ds["tas"].encoding = {
            "dtype": "int16", "scale_factor": 0.01, "add_offset": 280.0, "_FillValue": -32768
        }
        return ds
    """
)


def build_ns() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(BUILD, ns)
    return ns


def marker(path: Any) -> dict[str, Any]:
    return json.loads(zarr.open_group(path, mode="r", use_consolidated=False).attrs[MARKER_ATTR])


def assert_same_store(actual: Any, expected: Any) -> None:
    """Every array bit for bit, with the same metadata (chunks, codecs, fill value,
    attributes, i.e. the encodings) and the same group attributes."""
    a = zarr.open_group(actual, mode="r", use_consolidated=False)
    b = zarr.open_group(expected, mode="r", use_consolidated=False)
    assert dict(a.attrs) == dict(b.attrs)
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for name in a.array_keys():
        x, y = a[name], b[name]
        assert x.metadata.to_dict() == y.metadata.to_dict(), name
        assert x.dtype == y.dtype and x[...].tobytes() == y[...].tobytes(), name


def open_quietly(path: Any, **kwargs: Any) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no consolidated metadata
        return xr.open_zarr(path, **kwargs)


class Stop(Exception):
    pass


def stop_after(n: int):
    def on_region(i: int, region: dict) -> None:
        if i + 1 == n:
            raise Stop

    return on_region


# ----------------------------------------------------------------------------------------
# round trips
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [{"time": 2}, {"time": 3, "rlat": 4}, None])
def test_round_trip_equals_xarray_to_zarr(tmp_path, chunks):
    ds = synthetic_dataset(nt=7, ny=8, nx=8, chunks=chunks, grid="rotated")
    summary = to_zarr(ds, tmp_path / "ours.zarr", progress=False)
    ds.to_zarr(tmp_path / "plain.zarr")

    actual = xr.open_zarr(tmp_path / "ours.zarr")
    expected = xr.open_zarr(tmp_path / "plain.zarr")
    xr.testing.assert_identical(actual, expected)
    xr.testing.assert_identical(actual.compute(), ds.compute())
    assert dict(actual.attrs) == ds.attrs and MARKER_ATTR not in actual.attrs
    assert is_complete(tmp_path / "ours.zarr")
    assert summary.dim == "time" and not summary.already_complete
    if chunks is None:  # in memory: written with the template
        assert (summary.n_chunks, summary.regions_written, summary.chunk_size) == (1, 0, 7)
    else:
        assert actual["tas"].encoding["chunks"][0] == chunks["time"]
        assert summary.chunks_written == summary.n_chunks == -(-7 // chunks["time"])


@pytest.mark.parametrize("name", ["tas", None, "lat"])
def test_dataarray(tmp_path, name):
    da = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 1})["tas"].rename(name)
    to_zarr(da, tmp_path / "ours.zarr", progress=False, chunks_per_region=3)
    da.to_zarr(tmp_path / "plain.zarr")
    actual = xr.open_dataarray(tmp_path / "ours.zarr", engine="zarr")
    expected = xr.open_dataarray(tmp_path / "plain.zarr", engine="zarr")
    xr.testing.assert_identical(actual, expected)
    xr.testing.assert_identical(actual.compute(), da.compute())


def test_full_write_keeps_encodings_and_computes_each_block_once(tmp_path):
    ns = build_ns()
    ds = ns["build"]()
    summary = to_zarr(ds, tmp_path / "ours.zarr", progress=False, chunks_per_region=4)
    assert sorted(ns["CALLS"]) == [0, 2, 4, 6, 8, 10]  # once each: the template is lazy
    assert len(ns["STATIC_CALLS"]) == 2
    assert (summary.n_chunks, summary.regions_written) == (6, 2)

    build_ns()["build"]().to_zarr(tmp_path / "plain.zarr")
    actual = xr.open_zarr(tmp_path / "ours.zarr")
    expected = xr.open_zarr(tmp_path / "plain.zarr")
    xr.testing.assert_identical(actual, expected)
    assert "time_bnds" in actual.coords and actual["land"].dtype == bool
    stored = zarr.open_group(tmp_path / "ours.zarr", mode="r")["tas"]
    assert stored.dtype == np.int16 and stored.attrs["scale_factor"] == 0.01
    for name in ("tas", "orog", "time", "time_bnds"):
        enc, enc_plain = actual[name].encoding, expected[name].encoding
        for key in ("dtype", "scale_factor", "add_offset", "units", "calendar"):
            assert enc.get(key) == enc_plain.get(key), (name, key)


def test_template_creation_computes_nothing(tmp_path):
    ns = build_ns()
    seen = []

    def on_region(i, region):
        seen.append((i, region, sorted(ns["CALLS"]), len(ns["STATIC_CALLS"])))

    to_zarr(
        ns["build"](), tmp_path / "o.zarr", progress=False, chunks_per_region=2, on_region=on_region
    )
    # before the first region only the static field was computed; each region computes
    # exactly its own blocks
    assert seen[0] == (0, {"time": slice(0, 4)}, [0, 2], 2)
    assert seen[1] == (1, {"time": slice(4, 8)}, [0, 2, 4, 6], 2)
    assert seen[2][2] == [0, 2, 4, 6, 8, 10]


def test_template_alone_is_lazy(tmp_path):
    from xr_dl4ds.writing import _create_template, _prepare

    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    with raise_if_dask_computes():
        prepared, enc, region, static, chunk = _prepare(ds, "time", {})
        _create_template(
            prepared, tmp_path / "o.zarr", {"template": False}, enc, None, None, overwrite=False
        )
    assert (region, static, chunk) == (["tas"], ["orog", "sftlf"], 2)
    assert not is_complete(tmp_path / "o.zarr")


# ----------------------------------------------------------------------------------------
# interrupted writes
# ----------------------------------------------------------------------------------------


def test_resume_after_sigkill(tmp_path):
    path, reference = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    code = BUILD + textwrap.dedent(
        f"""
        import os, signal
        from xr_dl4ds.writing import to_zarr

        def kill(i, region):
            if i + 1 == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        to_zarr(build(), {str(path)!r}, progress=False, chunks_per_region=1, on_region=kill)
        """
    )
    package_root = str(Path(xr_dl4ds.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    assert not is_complete(path)
    assert marker(path)["done"] == [[0, 3]]  # 3 regions of one chunk were recorded
    assert MARKER_ATTR in open_quietly(path).attrs
    assert zarr.open_group(path, mode="r")["tas"].nchunks_initialized == 3

    ns = build_ns()
    summary = to_zarr(ns["build"](), path, mode="resume", progress=False, chunks_per_region=2)
    assert sorted(ns["CALLS"]) == [6, 8, 10]  # the 3 chunks written before the kill were not
    assert ns["STATIC_CALLS"] == []  # nor the static field
    assert (summary.chunks_written, summary.chunks_skipped, summary.regions_written) == (3, 3, 2)
    assert is_complete(path)

    to_zarr(build_ns()["build"](), reference, progress=False)
    assert_same_store(path, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated: no fallback warning
        actual = xr.open_zarr(path)
    xr.testing.assert_identical(actual, xr.open_zarr(reference))
    assert set(actual.variables) == set(ns["build"]().variables)
    assert actual.attrs == {"title": "to_zarr test", "history": "built for a test"}


def test_resume_after_exception_with_a_dict_store():
    store: dict = {}
    ds = synthetic_dataset(nt=10, ny=8, nx=8, chunks={"time": 2})
    with pytest.raises(Stop):
        to_zarr(ds, store, progress=False, chunks_per_region=1, on_region=stop_after(2))
    assert not is_complete(store)
    with pytest.raises(StoreExistsError, match=r"incomplete \(2 of 5 chunks"):
        to_zarr(ds, store, progress=False)
    summary = to_zarr(ds, store, mode="resume", progress=False, chunks_per_region=1)
    assert (summary.chunks_written, summary.chunks_skipped) == (3, 2)
    assert is_complete(store)
    xr.testing.assert_identical(xr.open_zarr(store).compute(), ds.compute())


def test_resume_after_failed_template_starts_over(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    with pytest.raises(ValueError, match="bogus"):
        to_zarr(ds, tmp_path / "o.zarr", progress=False, encoding={"tas": {"bogus": 1}})
    assert not is_complete(tmp_path / "o.zarr")
    assert marker(tmp_path / "o.zarr")["template"] is False
    summary = to_zarr(ds, tmp_path / "o.zarr", mode="resume", progress=False)
    assert summary.chunks_written == 2
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "o.zarr").compute(), ds.compute())


def test_resume_on_a_complete_store_is_a_noop(tmp_path, capsys):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    to_zarr(ds, tmp_path / "o.zarr", progress=False)
    capsys.readouterr()
    with raise_if_dask_computes():
        summary = to_zarr(ds, tmp_path / "o.zarr", mode="resume")
    assert summary.already_complete and summary.chunks_written == 0
    assert "already complete" in capsys.readouterr().err


def test_resume_on_a_missing_store_writes_it(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    summary = to_zarr(ds, tmp_path / "o.zarr", mode="resume", progress=False)
    assert summary.chunks_written == 2 and is_complete(tmp_path / "o.zarr")


def test_mode_w_dash_refuses_an_existing_store_and_w_overwrites(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    to_zarr(ds, tmp_path / "o.zarr", progress=False)
    with pytest.raises(StoreExistsError) as err:
        to_zarr(ds, tmp_path / "o.zarr", progress=False)
    assert isinstance(err.value, FileExistsError) and isinstance(err.value, DL4DSError)
    assert "mode='w'" in str(err.value) and "mode='resume'" in str(err.value)

    other = ds.isel(time=slice(0, 2)) + 1
    to_zarr(other, tmp_path / "o.zarr", mode="w", progress=False)
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "o.zarr").compute(), other.compute())

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("not zarr")
    with pytest.raises(StoreExistsError, match="not a zarr group"):
        to_zarr(ds, tmp_path / "junk", progress=False)


# ----------------------------------------------------------------------------------------
# mismatches
# ----------------------------------------------------------------------------------------


@pytest.fixture
def incomplete(tmp_path):
    ds = synthetic_dataset(nt=8, ny=8, nx=8, chunks={"time": 2})
    path = tmp_path / "o.zarr"
    with pytest.raises(Stop):
        to_zarr(ds, path, progress=False, chunks_per_region=1, on_region=stop_after(1))
    return ds, path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda ds: ds.chunk(time=4), r"chunks along 'time': 2 in the store, 4 in the object"),
        (lambda ds: ds.isel(time=slice(0, 6)), r"'tas': shape \[8, 8, 8\] in the store"),
        (lambda ds: ds.drop_vars("orog"), r"variables only in the store: \['orog'\]"),
        (lambda ds: ds.assign(tas=ds.tas.astype("f8")), r"'tas': dtype float32 in the store"),
        (lambda ds: ds.assign_coords(time=ds.time + np.timedelta64(1, "D")), "'time' differ"),
    ],
)
def test_resume_refuses_another_object(incomplete, change, match):
    ds, path = incomplete
    with pytest.raises(DataError, match=match) as err:
        to_zarr(change(ds), path, mode="resume", progress=False)
    assert "mode='w'" in str(err.value)
    assert not is_complete(path) and marker(path)["done"] == [[0, 1]]


def test_resume_refuses_another_dim(incomplete):
    ds, path = incomplete
    with pytest.raises(ConfigError, match="along 'time', not 'lat'"):
        to_zarr(ds.chunk(lat=4), path, mode="resume", dim="lat", progress=False)


def test_resume_refuses_a_complete_store_of_another_object(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    to_zarr(ds, tmp_path / "o.zarr", progress=False)
    with pytest.raises(DataError, match=r"'tas': dims .* shape \(4, 8, 8\) in the store"):
        to_zarr(ds.isel(time=slice(0, 3)), tmp_path / "o.zarr", mode="resume", progress=False)


# ----------------------------------------------------------------------------------------
# dimension, chunks, options
# ----------------------------------------------------------------------------------------


def test_irregular_chunks_are_made_regular(tmp_path):
    ds = synthetic_dataset(nt=10, ny=8, nx=8).chunk(time=(3, 1, 4, 2), lat=(5, 3))
    ds["orog"] = ds["orog"].chunk(lat=(2, 6))
    summary = to_zarr(ds, tmp_path / "o.zarr", progress=False, chunks_per_region=1)
    assert (summary.chunk_size, summary.n_chunks) == (4, 3)
    actual = xr.open_zarr(tmp_path / "o.zarr")
    assert actual["tas"].encoding["chunks"] == (4, 5, 8)
    assert actual["orog"].encoding["chunks"] == (6, 8)
    xr.testing.assert_identical(actual.compute(), ds.compute())


def test_dim_without_time(tmp_path):
    ds = synthetic_dataset(nt=2, ny=8, nx=8)
    ds = ds.isel(time=0, drop=True).expand_dims(member=6).chunk(member=1, lat=4)
    summary = to_zarr(ds, tmp_path / "o.zarr", progress=False, chunks_per_region=2)
    assert (summary.dim, summary.n_chunks, summary.regions_written) == ("member", 6, 3)
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "o.zarr").compute(), ds.compute())
    summary = to_zarr(ds, tmp_path / "lat.zarr", dim="lat", progress=False, chunks_per_region=1)
    assert (summary.dim, summary.n_chunks) == ("lat", 2)
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "lat.zarr").compute(), ds.compute())


def test_errors_before_any_write(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    path = tmp_path / "o.zarr"
    with pytest.raises(ConfigError, match="dim='level' is not a dimension"):
        to_zarr(ds, path, dim="level")
    with pytest.raises(ConfigError, match="mode='a' is not one of"):
        to_zarr(ds, path, mode="a")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="chunks_per_region"):
        to_zarr(ds, path, chunks_per_region=0)
    with pytest.raises(ConfigError, match=r"encoding has entries for \['pr'\]"):
        to_zarr(ds, path, encoding={"pr": {}})
    with pytest.raises(ChunkError, match="along 'time' must be 2"):
        to_zarr(ds, path, encoding={"tas": {"chunks": (4, 8, 8)}})
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        is_complete(path)


def test_encoding_argument(tmp_path):
    ds = synthetic_dataset(nt=4, ny=8, nx=8, chunks={"time": 2})
    encoding = {"tas": {"chunks": (2, 4, 4), "dtype": "float64"}}
    to_zarr(ds, tmp_path / "o.zarr", progress=False, encoding=encoding, zarr_format=2)
    group = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert group.metadata.zarr_format == 2
    assert group["tas"].chunks == (2, 4, 4) and group["tas"].dtype == np.float64
    actual = xr.open_zarr(tmp_path / "o.zarr")
    xr.testing.assert_allclose(actual.compute(), ds.compute())
    with pytest.raises(Stop):
        to_zarr(
            ds,
            tmp_path / "p.zarr",
            progress=False,
            chunks_per_region=1,
            zarr_format=2,
            on_region=stop_after(1),
        )
    with pytest.raises(ConfigError, match="zarr format 2, not zarr_format=3"):
        to_zarr(ds, tmp_path / "p.zarr", mode="resume", zarr_format=3)


def test_progress(tmp_path, capfd):
    ds = synthetic_dataset(nt=6, ny=8, nx=8, chunks={"time": 2})
    to_zarr(ds, tmp_path / "a.zarr", chunks_per_region=1)
    err = capfd.readouterr().err
    assert "to_zarr time" in err and "3/3" in err
    to_zarr(ds, tmp_path / "b.zarr", progress=False)
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------------------------------
# schedulers
# ----------------------------------------------------------------------------------------


def test_threaded_scheduler_and_resume(tmp_path):
    ns = build_ns()
    with dask.config.set(scheduler="threads", num_workers=2):
        with pytest.raises(Stop):
            to_zarr(ns["build"](), tmp_path / "o.zarr", progress=False, on_region=stop_after(1))
        assert sorted(ns["CALLS"]) == [0, 2]  # default: 2 chunks per region (2 threads)
        summary = to_zarr(ns["build"](), tmp_path / "o.zarr", mode="resume", progress=False)
    assert sorted(ns["CALLS"]) == [0, 2, 4, 6, 8, 10]
    assert (summary.chunks_skipped, summary.regions_written) == (2, 2)
    to_zarr(build_ns()["build"](), tmp_path / "reference.zarr", progress=False)
    assert_same_store(tmp_path / "o.zarr", tmp_path / "reference.zarr")


def test_distributed_client(tmp_path):
    distributed = pytest.importorskip("distributed")
    ds = synthetic_dataset(nt=6, ny=8, nx=8, chunks={"time": 1})
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        summary = to_zarr(ds, tmp_path / "o.zarr")  # with the progress bar
    assert (summary.n_chunks, summary.regions_written) == (6, 2)  # 3 chunks per region
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "o.zarr").compute(), ds.compute())
