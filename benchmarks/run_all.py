"""Run every benchmark and print one table of the ratios they measure.

Run:  python benchmarks/run_all.py [--quick] [--device cpu|cuda] [--out FILE]
                                   [--only inference,training,model_zoo] [--keep DIR]

Each benchmark (``inference.py``, ``training_engine.py``, ``model_zoo.py``) runs in its
own process, one after the other, so that a crash or a timeout of one leaves the others
running and the memory one of them measures is not that of another. Each writes its
measurements and the ratios it derives from them with ``--json``; this script collects
the ratios into one table: benchmark | ratio | what it compares | measured | target | ok?.
A target is given where the project states one (the overhead of ``downscale`` over a
bare forward, <= 1.2x; tiled outputs equal to untiled ones to float32 rounding); the
other ratios are comparisons to read, not pass/fail checks. Ratios of timings are
measured side by side in the same run, so they depend less on the machine and on its
load than the times, but on a busy machine they still move from run to run.

``--out FILE`` writes the table as Markdown, after a header that records the machine
(CPU model, cores, memory, device), the versions of Python, torch, xarray and dask, the
date, the exact command, and the load average before and after the run. ``--quick``
passes ``--quick`` to every benchmark (smoke sizes, about 2 minutes in all on 2 quiet CPU
cores, up to 4 on busy ones; the targets are meant for the full sizes); the full run
takes 8 minutes there with the load near 1, up to 25 with other jobs running. ``--device cuda`` runs the
inference and model-zoo benchmarks on the GPU (the training benchmark runs on CPU).
``--args NAME=ARGS`` passes more options to one benchmark, e.g.
``--args "inference=--scale-up 4 --workers 1,4"``. ``--keep DIR`` keeps every
benchmark's JSON, Markdown tables and log there.

The script imports neither torch nor the package, so that it stays small: Linux carries
a process's peak resident memory over to the processes it starts, and the benchmarks
measure theirs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (script, options it takes: "device" for --device, "quick" for --quick, options
# always passed to it). The model zoo times its combinations in separate processes, one
# after the other; --rounds adds the interleaved timings its ratios are then taken from.
BENCHMARKS: dict[str, tuple[str, frozenset, tuple[str, ...]]] = {
    "inference": ("inference.py", frozenset({"device", "quick"}), ()),
    "training": ("training_engine.py", frozenset({"quick"}), ()),
    "model_zoo": ("model_zoo.py", frozenset({"device", "quick"}), ("--rounds", "3")),
}
ALIASES = {
    "training_engine": "training",
    "train": "training",
    "zoo": "model_zoo",
    "model-zoo": "model_zoo",
    "models": "model_zoo",
}
OPS = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}
SYMBOLS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}


# -- the machine ------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_state() -> str | None:
    """The commit of the checkout the benchmarks import, and whether its working tree has
    uncommitted changes (the installed version string can be older than the checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _gpu_name(device: str) -> str | None:
    """The name of the CUDA device, asked of a child process (torch stays out of this
    one); None if it cannot be had."""
    code = "import sys, torch; print(torch.cuda.get_device_name(sys.argv[1]))"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, device], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def machine_info(device: str) -> dict:
    """CPU model, cores, memory, device and the versions that matter, without importing
    torch here."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "device": device,
        "gpu": _gpu_name(device) if device.startswith("cuda") else None,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit": _git_state(),
        "versions": {
            name: _version(name)
            for name in ("torch", "xarray", "dask", "numpy", "zarr", "xr_dl4ds")
        },
    }
    return info


# -- running ----------------------------------------------------------------------------
def benchmark_command(
    name: str, quick: bool, device: str, extra: list[str], json_path: Path, md_path: Path
) -> list[str]:
    script, takes, always = BENCHMARKS[name]
    cmd = [sys.executable, str(HERE / script)]
    if quick and "quick" in takes:
        cmd.append("--quick")
    if device != "cpu" and "device" in takes:
        cmd += ["--device", device]
    return [*cmd, *always, *extra, "--json", str(json_path), "--out", str(md_path)]


def _shown(cmd: list[str]) -> str:
    """The command as one would type it from the repository root, without where the
    results go."""
    args = cmd[2:]
    for opt in ("--json", "--out"):
        if opt in args:
            i = args.index(opt)
            del args[i : i + 2]
    return shlex.join(["python", f"benchmarks/{Path(cmd[1]).name}", *args])


def _tail(path: Path, n: int = 20) -> list[str]:
    try:
        return path.read_text(errors="replace").strip().splitlines()[-n:]
    except OSError:
        return []


def run_benchmark(name: str, cmd: list[str], json_path: Path, log: Path, timeout: float) -> dict:
    """Run one benchmark in its own process (group), its output to ``log``; its JSON,
    or ``{"error": ...}`` if it failed, ran past ``timeout`` or wrote nothing."""
    load = os.getloadavg()
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with open(log, "w") as out:
        # a new session: on a timeout the whole group goes (dask workers, DDP processes)
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    wall = time.perf_counter() - t0
    base = {"benchmark": name, "command": _shown(cmd), "wall": wall, "load_start": load}
    if rc is None:
        return {**base, "error": f"timed out after {timeout:.0f} s"}
    if rc != 0:
        last = next((ln for ln in reversed(_tail(log)) if ln.strip()), "no output")
        return {**base, "error": f"exit status {rc}: {last.strip()}"}
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        return {**base, "error": f"no JSON results: {e}"}
    return {**data, **base}


# -- the table --------------------------------------------------------------------------
def _errors(obj, where: str = "") -> list[tuple[str, str]]:
    """Every ``{"error": message}`` inside the results of a benchmark (a child process of
    one of its parts that failed), with where it is."""
    found = []
    if isinstance(obj, dict):
        if isinstance(obj.get("error"), str):
            found.append((where or "results", obj["error"]))
        for k, v in obj.items():
            if k != "error":
                found += _errors(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _errors(v, f"{where}[{i}]")
    return found


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check(value: float, target: dict | None) -> str:
    """``yes``/``no`` against a target, ``-`` without one, ``error`` if not a number."""
    if not math.isfinite(value):
        return "error"
    if not target:
        return "-"
    return "yes" if OPS[target["op"]](value, float(target["value"])) else "**no**"


def collect_rows(results: list[dict]) -> list[dict]:
    """One row per ratio of every benchmark, then one per error (a benchmark that failed
    or gave no ratio, or a part of one whose process failed)."""
    rows = []
    for res in results:
        name = res["benchmark"]
        if "error" in res:
            rows.append(
                {
                    "benchmark": name,
                    "name": "(did not run)",
                    "compares": res["error"],
                    "value": math.nan,
                    "target": None,
                    "ok": "error",
                }
            )
            continue
        ratios = res.get("ratios") or []
        for r in ratios:
            value = _number(r.get("value"))
            rows.append(
                {
                    "benchmark": name,
                    "name": r["name"],
                    "compares": r.get("compares", ""),
                    "value": value,
                    "range": r.get("range"),
                    "target": r.get("target"),
                    "ok": check(value, r.get("target")),
                }
            )
        found = _errors(res.get("results")) + [("run", m) for m in res.get("errors") or []]
        for where, message in found:
            rows.append(
                {
                    "benchmark": name,
                    "name": f"(failed: {where})",
                    "compares": message,
                    "value": math.nan,
                    "target": None,
                    "ok": "error",
                }
            )
        if not ratios:
            rows.append(
                {
                    "benchmark": name,
                    "name": "(no ratio)",
                    "compares": "the run gave no ratio",
                    "value": math.nan,
                    "target": None,
                    "ok": "error",
                }
            )
    return rows


def fmt_value(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    if abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.2f}"


def fmt_target(t: dict | None) -> str:
    if not t:
        return "-"
    return f"{SYMBOLS[t['op']]} {fmt_value(float(t['value']))}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_table(rows: list[dict]) -> str:
    """The rows as one Markdown table (also readable as plain text)."""
    lines = [
        "| benchmark | ratio | what it compares | measured | target | ok? |",
        "|---|---|---|---:|---:|:---:|",
    ]
    for r in rows:
        value = fmt_value(r["value"])
        if r.get("range") and math.isfinite(r["value"]):
            lo, hi = r["range"]
            value += f" ({fmt_value(lo)}-{fmt_value(hi)})"
        lines.append(
            f"| {r['benchmark']} | {_cell(r['name'])} | {_cell(r['compares'])} | {value} | "
            f"{fmt_target(r.get('target'))} | {r['ok']} |"
        )
    return "\n".join(lines) + "\n"


def _load(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def render(info: dict, results: list[dict], rows: list[dict], run: dict) -> str:
    """The Markdown page: the machine, the table, and how each benchmark ran."""
    v = info["versions"]
    device = info["device"] + (f" ({info['gpu']})" if info.get("gpu") else "")
    mem = f", {info['memory_gib']:.0f} GiB of memory" if info.get("memory_gib") else ""
    cores = f"{info['cores']} cores"
    if info.get("usable_cores") not in (None, info["cores"]):
        cores += f" ({info['usable_cores']} usable)"
    lines = [
        f"Measured with `{run['command']}` on {run['date']}; {run['wall']:.0f} s in all"
        + (
            " (`--quick`: smoke sizes, a check that everything runs; the targets are meant "
            "for the full sizes, at which the fixed costs weigh less)"
            if run["quick"]
            else ""
        )
        + ".",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {info['cpu']}, {cores} ({info['arch']}){mem} |",
        f"| device | {device} |",
        f"| software | Python {info['python']}, torch {v['torch']}, xarray {v['xarray']}, "
        f"dask {v['dask']}, numpy {v['numpy']}, zarr {v['zarr']}, xr_dl4ds {v['xr_dl4ds']}"
        + (f" (checkout at {info['commit']})" if info.get("commit") else "")
        + f"; {info['system']} |",
        f"| load average (1 / 5 / 15 min) | {_load(run['load_start'])} before the run, "
        f"{_load(run['load_end'])} after |",
        "",
        format_table(rows).rstrip("\n"),
        "",
        "Ratio: the first measurement over the second, from the same run (times measured "
        "side by side in interleaved rounds where the benchmark does so). A range in "
        "parentheses is that of the rounds (inference) or of the backbones or pairs the "
        "value is the median of (model zoo). Target: stated by the project; `-`: a "
        "comparison to read, without a pass/fail threshold.",
        "",
        "| benchmark | command | time (s) | load average at its start | status |",
        "|---|---|---:|---:|---|",
    ]
    for res in results:
        status = "error" if "error" in res else "ok"
        dev = res.get("device")
        if dev and "error" not in res:
            status += f" (device: {dev})"
        lines.append(
            f"| {res['benchmark']} | `{res['command']}` | {res['wall']:.0f} | "
            f"{res['load_start'][0]:.2f} | {_cell(status)} |"
        )
    lines += [
        "",
        "The detailed tables of each benchmark, from their own runs (which may be older than "
        "this one), are on {doc}`benchmarks` and {doc}`benchmarks-inference`.",
    ]
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------
def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(BENCHMARKS)
    names = []
    for part in text.split(","):
        key = part.strip().lower().removesuffix(".py")
        key = ALIASES.get(key, key)
        if key not in BENCHMARKS:
            raise SystemExit(f"--only: unknown benchmark {part!r}; choose from {list(BENCHMARKS)}")
        if key not in names:
            names.append(key)
    return names


def parse_extra(items: list[str]) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for item in items:
        name, sep, args = item.partition("=")
        if not sep:
            raise SystemExit(f"--args takes NAME=ARGS, got {item!r}")
        (key,) = parse_only(name)
        extra.setdefault(key, []).extend(shlex.split(args))
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (about 2 minutes)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:1...); default cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown page here")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated benchmarks to run (default all: {','.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='more options for one benchmark, e.g. "inference=--scale-up 4" (repeatable)',
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds each benchmark may run (default 600 with --quick, 3600 without)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep each benchmark's JSON, tables and log here"
    )
    args = parser.parse_args(argv)
    names = parse_only(args.only)
    extra = parse_extra(args.args)
    timeout = args.timeout or (600 if args.quick else 3600)
    shown_argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "benchmarks/run_all.py", *shown_argv])

    info = machine_info(args.device)
    load_start = os.getloadavg()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="xr_dl4ds_bench_"))
    results = []
    try:
        for name in names:
            json_path, md, log = work / f"{name}.json", work / f"{name}.md", work / f"{name}.log"
            cmd = benchmark_command(
                name, args.quick, args.device, extra.get(name, []), json_path, md
            )
            print(f"[run_all] {name}: {_shown(cmd)}", file=sys.stderr, flush=True)
            res = run_benchmark(name, cmd, json_path, log, timeout)
            results.append(res)
            state = f"error: {res['error']}" if "error" in res else "ok"
            print(f"[run_all] {name}: {state}, {res['wall']:.0f} s", file=sys.stderr, flush=True)
            if "error" in res:
                for line in _tail(log):
                    print(f"    {line}", file=sys.stderr)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.iterdir():
                shutil.copy2(f, args.keep / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run = {
        "command": command,
        "date": date,
        "wall": time.perf_counter() - start,
        "quick": args.quick,
        "load_start": load_start,
        "load_end": os.getloadavg(),
    }
    rows = collect_rows(results)
    page = render(info, results, rows, run)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page)
    print(page)
    return 1 if any(r["ok"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
