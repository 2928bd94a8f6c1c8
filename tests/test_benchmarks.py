"""benchmarks/run_all.py: the table of ratios, from fake results and from one real run.

The full ``run_all.py --quick`` takes about 2 minutes on 2 CPU cores, too long for the
test suite: the collection of the ratios is tested on fake results of every benchmark,
and one real run is restricted to the model zoo's quick path (three combinations).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_all():
    return _load("run_all")


def _table_rows(text: str) -> list[list[str]]:
    """The rows of the ratio table of a run_all page (its header starts with
    ``| benchmark | ratio |``)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| benchmark | ratio |"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def _measured(cell: str) -> float:
    return float(cell.split(" (")[0])


# -- fake results -----------------------------------------------------------------------
def fake_inference() -> dict:
    return {
        "overhead": {
            "times": {
                "bare": [1.0, 2.0, 1.0],
                "tiled_forward": [1.0, 2.0, 1.1],
                "numpy": [1.1, 2.2, 1.0],
                "dask": [1.5, 3.0, 1.4],
            },
            "n": 32,
        },
        "tiling": {
            "times": {"untiled": [0.5, 0.5], "1/2": [1.0, 1.5], "1/4": [5.0, 5.0]},
            "tiles": {"1/2": 24, "1/4": 12},
            "cells": {"1/2": 3.06, "1/4": 9.0},
            "diff": {"1/2": 0.0, "1/4": 3e-5},
            "halo": [18, 18],
        },
        "workers": [
            {
                "label": "threaded scheduler (this process)",
                "layout": "1 x 2",
                "torch": 2,
                "cold": None,
                "warm": [3.0, 3.2],
                "n": 32,
            },
            {
                "label": "LocalCluster, 2 workers",
                "layout": "2 x 1",
                "torch": "1",
                "cold": 4.0,
                "warm": [4.0, 3.5],
                "n": 32,
            },
        ],
        "memory": [
            {"mode": "zarr", "out_bytes": 2**25, "before": 370.0, "peak": 490.0},
            {"mode": "zarr", "out_bytes": 2**28, "before": 370.0, "peak": 520.0},
            {"mode": "compute", "out_bytes": 2**28, "before": 400.0, "peak": 850.0},
        ],
    }


def fake_training() -> dict:
    return {
        "step_rate": 50.0,
        "loader": [
            {"workers": 0, "startup": 0.3, "rate": 45.0},
            {"workers": 2, "startup": 7.0, "rate": 150.0},
        ],
        "end_to_end": [{"workers": 0, "rate": 25.0}],
        "memory": {
            "lazy": {"rss_before": 400, "rss_peak": 640, "traced": 5.0, "wall": 3.8},
            "in_memory": {"rss_before": 400, "rss_peak": 650, "traced": 35.0, "wall": 3.2},
        },
        "ddp": {"1": {"train": 5.5, "wall": 9.0}, "2": {"train": 4.5, "wall": 15.0}},
    }


def fake_zoo() -> list[dict]:
    return [
        {
            "backbone": b,
            "upsampling": u,
            "window": w,
            "params": 1,
            "forward_ms": ms,
            "forward_best_ms": ms * 0.9,
            "peak_mib": 10,
        }
        for b, u, w, ms in [
            ("resnet", "spc", None, 200.0),
            ("resnet", "pin", None, 440.0),
            ("convnet", "spc", None, 140.0),
            ("convnet", "pin", None, 400.0),
            ("resnet", "spc", 3, 110.0),
        ]
    ]


def test_inference_ratios():
    ratios = {r["name"]: r for r in _load("inference").ratios(fake_inference())}
    numpy = ratios["`downscale`, numpy input / bare forward"]
    assert numpy["value"] == pytest.approx(1.1)  # median of the rounds' 1.1, 1.1, 1.0
    assert numpy["range"] == pytest.approx([1.0, 1.1])
    assert numpy["target"]["op"] == "<=" and numpy["target"]["value"] == 1.2
    assert ratios["tiled (1/2 of the domain) / untiled"]["value"] == pytest.approx(2.5)
    assert ratios["tiled vs untiled output, max abs difference (K)"]["value"] == 3e-5
    assert ratios["LocalCluster, 2 workers / threaded scheduler"]["value"] == pytest.approx(
        3.0 / 3.5
    )
    assert ratios["to_zarr peak memory, largest / smallest output"]["value"] == pytest.approx(
        150 / 120
    )
    assert ratios["to_zarr / compute peak memory"]["value"] == pytest.approx(150 / 450)
    # parts that did not run give no ratio
    assert _load("inference").ratios({"overhead": None, "tiling": None}) == []


def test_training_ratios():
    ratios = {r["name"]: r["value"] for r in _load("training_engine").ratios(fake_training())}
    assert ratios["loader / training step, 2 workers"] == pytest.approx(3.0)
    assert ratios["end to end / training step, 0 workers"] == pytest.approx(0.5)
    assert ratios["fit memory, lazy / in_memory (tracemalloc)"] == pytest.approx(5 / 35)
    assert ratios["data-parallel / single process, whole `fit`"] == pytest.approx(15 / 9)


def test_model_zoo_ratios():
    ratios = {r["name"]: r for r in _load("model_zoo").ratios(fake_zoo())}
    pin = ratios["forward time, pin / spc upsampling"]
    assert pin["value"] == pytest.approx((2.2 + 400 / 140) / 2)
    assert pin["range"] == pytest.approx([2.2, 400 / 140])
    assert ratios["forward time, spatio-temporal (T=3) / spatial"]["value"] == pytest.approx(0.55)
    assert "range" not in ratios["forward time, spatio-temporal (T=3) / spatial"]
    slow = ratios["forward time, slowest / fastest spatial model"]
    assert slow["value"] == pytest.approx(440 / 140)
    assert "resnet+pin" in slow["compares"] and "convnet+spc" in slow["compares"]


def test_table_from_fake_results(run_all):
    modules = {n: _load(n) for n in ("inference", "training_engine", "model_zoo")}
    results = [
        {
            "benchmark": "inference",
            "ratios": modules["inference"].ratios(fake_inference()),
            "results": fake_inference(),
        },
        {
            "benchmark": "training",
            "ratios": modules["training_engine"].ratios(fake_training()),
            "results": fake_training(),
        },
        {
            "benchmark": "model_zoo",
            "ratios": modules["model_zoo"].ratios(fake_zoo()),
            "results": fake_zoo(),
        },
    ]
    # through JSON, as run_all reads them
    results = [json.loads(json.dumps(r)) for r in results]
    for r in results:
        r.update(command=f"python benchmarks/{r['benchmark']}.py", wall=1.0, load_start=[1, 1, 1])
    rows = run_all.collect_rows(results)
    assert {r["benchmark"] for r in rows} == {"inference", "training", "model_zoo"}
    assert all(math.isfinite(r["value"]) for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["`downscale`, numpy input / bare forward"]["ok"] == "yes"  # 1.1 <= 1.2
    assert by_name["`downscale`, dask input / bare forward"]["ok"] == "**no**"  # 1.5
    assert by_name["tiled vs untiled output, max abs difference (K)"]["ok"] == "yes"
    assert by_name["loader / training step, 2 workers"]["ok"] == "-"  # no stated target

    info = {
        "cpu": "Some CPU",
        "arch": "x86_64",
        "cores": 2,
        "usable_cores": 2,
        "memory_gib": 8,
        "device": "cpu",
        "gpu": None,
        "python": "3.11",
        "system": "Linux",
        "versions": dict.fromkeys(("torch", "xarray", "dask", "numpy", "zarr", "xr_dl4ds"), "1"),
    }
    run = {
        "command": "python benchmarks/run_all.py",
        "date": "2026-01-01 00:00 UTC",
        "wall": 3.0,
        "quick": False,
        "load_start": (1, 2, 3),
        "load_end": (1, 2, 3),
    }
    page = run_all.render(info, results, rows, run)
    table = _table_rows(page)
    assert len(table) == len(rows)
    assert all(len(r) == 6 for r in table)
    assert all(math.isfinite(_measured(r[3])) for r in table)
    assert "Some CPU, 2 cores" in page and "`python benchmarks/run_all.py`" in page
    assert "1.00 / 2.00 / 3.00" in page  # the load average


def test_errors_become_rows(run_all):
    results = [
        {"benchmark": "inference", "error": "exit status 1: RuntimeError: boom"},
        {
            "benchmark": "training",
            "ratios": [{"name": "r", "value": float("nan")}],
            "results": {"ddp": {"2": {"error": "gloo failed"}}},
        },
        {"benchmark": "model_zoo", "ratios": [], "results": []},
    ]
    rows = run_all.collect_rows(results)
    assert [r["ok"] for r in rows] == ["error"] * 4
    assert "boom" in rows[0]["compares"]
    assert rows[2]["name"] == "(failed: ddp.2)" and rows[2]["compares"] == "gloo failed"
    table = run_all.format_table(rows)
    assert table.count("\n") == 2 + len(rows)


def test_check_and_options(run_all):
    assert run_all.check(1.2, {"op": "<=", "value": 1.2}) == "yes"
    assert run_all.check(1.3, {"op": "<=", "value": 1.2}) == "**no**"
    assert run_all.check(2.0, {"op": ">", "value": 1}) == "yes"
    assert run_all.check(1.0, None) == "-"
    assert run_all.check(float("inf"), None) == "error"
    assert run_all.parse_only("zoo, training_engine.py") == ["model_zoo", "training"]
    assert run_all.parse_only(None) == ["inference", "training", "model_zoo"]
    with pytest.raises(SystemExit):
        run_all.parse_only("nope")
    assert run_all.parse_extra(["inference=--scale-up 4 --workers 1,4"]) == {
        "inference": ["--scale-up", "4", "--workers", "1,4"]
    }
    cmd = run_all.benchmark_command("training", True, "cuda", [], Path("a.json"), Path("a.md"))
    assert "--device" not in cmd and "--quick" in cmd  # training runs on CPU only
    assert run_all._shown(cmd) == "python benchmarks/training_engine.py --quick"


def test_failures_are_contained(run_all, tmp_path):
    """A benchmark that crashes, runs too long or writes no JSON gives an error, and the
    whole process group of one that runs too long is killed."""
    crash = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    res = run_all.run_benchmark("inference", crash, tmp_path / "a.json", tmp_path / "a.log", 60)
    assert res["error"] == "exit status 3: boom"
    silent = [sys.executable, "-c", "pass"]
    res = run_all.run_benchmark("training", silent, tmp_path / "b.json", tmp_path / "b.log", 60)
    assert res["error"].startswith("no JSON results")
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    res = run_all.run_benchmark("model_zoo", slow, tmp_path / "c.json", tmp_path / "c.log", 1)
    assert res["error"] == "timed out after 1 s" and res["wall"] < 30
    rows = run_all.collect_rows([res])
    assert rows[0]["ok"] == "error" and "timed out" in run_all.format_table(rows)


def test_run_all_quick_model_zoo(tmp_path):
    """One real run, restricted to the cheapest benchmark: each benchmark in its own
    process, its JSON collected into the page written with --out."""
    out = tmp_path / "summary.md"
    # one torch thread: this checks the plumbing, not the numbers, and on a busy 2-core
    # machine two OpenMP threads made each forward pass up to 8x slower
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run_all.py"),
            "--quick",
            "--only",
            "model_zoo",
            "--out",
            str(out),
            "--keep",
            str(tmp_path / "keep"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = out.read_text()
    assert page in proc.stdout  # printed too
    rows = _table_rows(page)
    names = [r[1] for r in rows]
    assert names == [
        "forward time, pin / spc upsampling",
        "forward time, spatio-temporal (T=3) / spatial",
        "forward time, slowest / fastest spatial model",
    ]
    assert all(r[0] == "model_zoo" for r in rows)
    values = [_measured(r[3]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert "run_all.py --quick --only model_zoo" in page
    for key in ("CPU |", "torch", "xarray", "dask", "load average"):
        assert key in page
    data = json.loads((tmp_path / "keep" / "model_zoo.json").read_text())
    assert data["quick"] and len(data["results"]) == 3
