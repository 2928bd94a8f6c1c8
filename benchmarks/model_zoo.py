"""Parameter count, forward time and peak memory of every valid model combination.

Run:  python benchmarks/model_zoo.py [--out docs/model-zoo-table.md] [--device cpu] [--quick]
                                    [--rounds N] [--json FILE]

Reference size: 3 input channels (target + 2 coarsened static fields), 2 static
high-resolution fields, scale 4, a batch of 4 samples of 32 x 32 coarse cells (128 x 128
fine cells); spatio-temporal models see windows of 3 steps. DL4DS default widths
(n_filters=8, n_blocks=6). Each combination runs in its own process. Memory is the peak
allocated by the forward pass on CUDA, and on CPU the growth of the process's peak
resident memory from the built model to the end of the timed forward passes.

Those times come from separate processes run one after the other, so other work on the
machine moves them, and their ratios, a lot. ``--rounds N`` times every combination again,
all in one process, in N interleaved rounds (each combination once per round, in reverse
order every other round), and adds their ratio to the default ``resnet`` + ``spc`` taken
round by round, which a slow spell of the machine affects on both sides. ``--quick``
measures three combinations only (resnet with ``spc``, the default, and ``pin``, the
slowest upsampling, and resnet + ``spc`` with a time window), a smoke test of about 20
seconds. ``--json FILE`` writes the measurements (with the best of the 5 runs too) and
the ratios that ``benchmarks/run_all.py`` collects (:func:`ratios`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH, SIZE, SCALE, WINDOW = 4, 32, 4, 3
# --quick: the default backbone with the default and the slowest upsampling, and the
# default with a time window
QUICK = {("resnet", "spc", None), ("resnet", "pin", None), ("resnet", "spc", WINDOW)}

_CHILD = rf"""
import json, resource, statistics, sys, time
import torch
from xr_dl4ds.models import create_model
backbone, upsampling, window, device = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
window = None if window == "none" else int(window)
torch.manual_seed(0)
net = create_model(backbone=backbone, upsampling=upsampling, scale={SCALE}, in_channels=3,
                   static_channels=2, time_window=window).to(device).eval()
shape = ({BATCH}, 3, {SIZE}, {SIZE}) if window is None else ({BATCH}, window, 3, {SIZE}, {SIZE})
x = torch.randn(*shape, device=device)
s = torch.randn({BATCH}, 2, {SIZE} * {SCALE}, {SIZE} * {SCALE}, device=device)
def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and inputs built
with torch.inference_mode():
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    net(x, s); sync()                                   # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter(); net(x, s); sync(); times.append(time.perf_counter() - t0)
if device.startswith("cuda"):
    peak = torch.cuda.max_memory_allocated() / 2**20
else:
    # growth of the peak resident memory over the built model (KiB -> MiB)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps({{"params": sum(p.numel() for p in net.parameters()),
                  "forward_ms": 1000 * statistics.median(times), "peak_mib": peak,
                  "forward_best_ms": 1000 * min(times)}}))
"""


# every combination built in one process, timed in interleaved rounds (--rounds)
_INTERLEAVED_CHILD = rf"""
import json, sys, time
import torch
from xr_dl4ds.models import create_model
combos, device, rounds = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()
runs = []
for backbone, upsampling, window in combos:
    torch.manual_seed(0)
    net = create_model(backbone=backbone, upsampling=upsampling, scale={SCALE}, in_channels=3,
                       static_channels=2, time_window=window).to(device).eval()
    shape = ({BATCH}, 3, {SIZE}, {SIZE}) if window is None else ({BATCH}, window, 3, {SIZE}, {SIZE})
    x = torch.randn(*shape, device=device)
    s = torch.randn({BATCH}, 2, {SIZE} * {SCALE}, {SIZE} * {SCALE}, device=device)
    runs.append((net, x, s))
times = [[] for _ in runs]
with torch.inference_mode():
    for net, x, s in runs:
        net(x, s); sync()                               # warm-up
    order = list(range(len(runs)))
    for r in range(rounds):
        for i in order if r % 2 == 0 else order[::-1]:
            net, x, s = runs[i]
            t0 = time.perf_counter(); net(x, s); sync(); times[i].append(time.perf_counter() - t0)
print(json.dumps([[1000 * t for t in ts] for ts in times]))
"""
REFERENCE = ("resnet", "spc", None)  # the default network: the ratios of --rounds are to it


def measure_interleaved(combos: list, device: str, rounds: int) -> list | dict:
    """Forward times (ms) of every combination, all built in one fresh process, each once
    per round in ``rounds`` interleaved rounds; ``{"error": ...}`` if that process fails."""
    cmd = [sys.executable, "-c", _INTERLEAVED_CHILD, json.dumps(combos), device, str(rounds)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def combinations(quick: bool = False) -> list[tuple[str, str, int | None]]:
    from xr_dl4ds.models import valid_combinations
    from xr_dl4ds.models.recurrent import list_recurrent_backbones

    spatial = [(b, u, None) for b, u in valid_combinations()]
    recurrent = [(b, u, WINDOW) for b, u in valid_combinations() if b in list_recurrent_backbones()]
    if quick:
        return [c for c in spatial + recurrent if c in QUICK]
    return spatial + recurrent


def measure(backbone: str, upsampling: str, window: int | None, device: str) -> dict:
    cmd = [sys.executable, "-c", _CHILD, backbone, upsampling, str(window or "none"), device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    """The relative speeds of the model zoo, from the rows of ``--json``.

    Forward times over other ones of the same run: every upsampling over ``spc`` with the
    same backbone (the median over the backbones that have both, and their range), every
    spatio-temporal variant over the spatial one with the same backbone and upsampling
    (median over the pairs), and the slowest spatial combination over the fastest. With
    the interleaved times of ``--rounds`` (``interleaved_ms``), each ratio is taken round
    by round and its median over the rounds is used; without them, from the best of the
    5 forward passes of each combination's own process (the combinations then ran one
    after the other, not side by side, and a busy machine moves these ratios a lot).
    """
    ok = [r for r in rows if "forward_ms" in r]
    rounds = bool(ok) and all(r.get("interleaved_ms") for r in ok)
    how = (
        f"median of {len(ok[0]['interleaved_ms'])} interleaved rounds"
        if rounds
        else "best of 5 forward passes, each combination in its own process"
    )

    def times(r: dict) -> list[float]:
        return r["interleaved_ms"] if rounds else [r.get("forward_best_ms", r["forward_ms"])]

    def ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    spatial = {(r["backbone"], r["upsampling"]): times(r) for r in ok if not r["window"]}
    temporal = {(r["backbone"], r["upsampling"]): times(r) for r in ok if r["window"]}

    def summary(name: str, compares: str, q: list[float], over: str) -> dict:
        row = {"name": name, "value": statistics.median(q)}
        if len(q) > 1:
            row["range"] = [min(q), max(q)]
            compares += f", median over {len(q)} {over}"
        return {**row, "compares": f"{compares} ({how})"}

    out = []
    for up in sorted({u for _, u in spatial} - {"spc"}):
        pairs = sorted(b for (b, u) in spatial if u == up and (b, "spc") in spatial)
        if pairs:
            q = [ratio(spatial[b, up], spatial[b, "spc"]) for b in pairs]
            out.append(
                summary(
                    f"forward time, {up} / spc upsampling",
                    f"forward pass with `{up}` over `spc` upsampling, same backbone "
                    f"({', '.join(pairs)})",
                    q,
                    "backbones",
                )
            )
    pairs = sorted(k for k in temporal if k in spatial)
    if pairs:
        q = [ratio(temporal[k], spatial[k]) for k in pairs]
        out.append(
            summary(
                f"forward time, spatio-temporal (T={WINDOW}) / spatial",
                f"forward pass of windows of {WINDOW} steps over a spatial one, same "
                "backbone and upsampling",
                q,
                "pairs",
            )
        )
    if len(spatial) > 1:
        # relative to one of them, round by round, then the extremes
        ref = spatial.get(REFERENCE[:2]) or next(iter(spatial.values()))
        rel = {k: ratio(t, ref) for k, t in spatial.items()}
        slow, fast = max(rel, key=rel.get), min(rel, key=rel.get)
        out.append(
            {
                "name": "forward time, slowest / fastest spatial model",
                "compares": f"`{'+'.join(slow)}` over `{'+'.join(fast)}`, of "
                f"{len(spatial)} spatial combinations ({how})",
                "value": rel[slow] / rel[fast],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown table here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: resnet with spc and pin upsampling, and with spc and a time window",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        metavar="N",
        help="also time every combination in one process, in N interleaved rounds, and "
        "give their ratio to resnet + spc (default 0: not done)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write the measurements and ratios here"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    import torch

    rows, results = [], []
    for backbone, upsampling, window in combinations(args.quick):
        r = measure(backbone, upsampling, window, args.device)
        kind = "spatial" if window is None else f"spatio-temporal (T={window})"
        rows.append((backbone, upsampling, kind, r))
        results.append({"backbone": backbone, "upsampling": upsampling, "window": window, **r})
        print(backbone, upsampling, kind, r, flush=True)
    inter: list | dict = []
    if args.rounds > 0:
        good = [r for r in results if "error" not in r]
        combos = [[r["backbone"], r["upsampling"], r["window"]] for r in good]
        inter = measure_interleaved(combos, args.device, args.rounds)
        print("interleaved:", inter, flush=True)
        if isinstance(inter, list):
            for r, t in zip(good, inter, strict=True):
                r["interleaved_ms"] = t
    ref = next(
        (
            r.get("interleaved_ms")
            for r in results
            if (r["backbone"], r["upsampling"], r["window"]) == REFERENCE
        ),
        None,
    )
    mem = (
        "peak allocated (MiB)"
        if args.device.startswith("cuda")
        else "peak RSS growth in forward (MiB)"
    )
    total = time.perf_counter() - start
    command = "python benchmarks/model_zoo.py" + (" --quick" if args.quick else "")
    if args.device != "cpu":
        command += f" --device {args.device}"
    if args.rounds > 0:
        command += f" --rounds {args.rounds}"
    extra = f" ratio to resnet + spc, interleaved (median of {args.rounds} rounds) |" if ref else ""
    lines = [
        f"Measured with `{command}` on {args.device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads): batch {BATCH}, "
        f"{SIZE}x{SIZE} coarse cells, scale {SCALE}, 3 input and 2 static channels, "
        "DL4DS default widths; forward time is the median of 5 runs after a warm-up"
        + (
            "; the last column times every combination again in one process, once per "
            "round, and takes each round's ratio to the default network."
            if ref
            else "."
        ),
        "",
        f"| backbone | upsampling | kind | parameters | forward (ms) | {mem} |" + extra,
        "|---|---|---|---:|---:|---:|" + ("---:|" if ref else ""),
    ]
    if isinstance(inter, dict):
        lines[0] += f" Interleaved rounds failed: {inter['error']}"
    for (backbone, upsampling, kind, r), res in zip(rows, results, strict=True):
        if "error" in r:
            lines.append(
                f"| {backbone} | {upsampling} | {kind} | error: {r['error']} | | |"
                + (" |" if ref else "")
            )
        else:
            line = (
                f"| {backbone} | {upsampling} | {kind} | {r['params']:,} | "
                f"{r['forward_ms']:.1f} | {r['peak_mib']:.0f} |"
            )
            if ref:
                q = statistics.median(
                    a / b for a, b in zip(res["interleaved_ms"], ref, strict=True)
                )
                line += f" {q:.2f} |"
            lines.append(line)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "model_zoo",
                "command": command,
                "quick": args.quick,
                "device": args.device,
                "seconds": total,
                "load_average": load_before,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "rounds": args.rounds,
                "results": results,
                "errors": [f"interleaved rounds: {inter['error']}"]
                if isinstance(inter, dict)
                else [],
                "ratios": ratios(results),
            },
        )
    print(text)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON (the format ``benchmarks/run_all.py`` reads)."""
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
