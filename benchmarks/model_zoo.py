"""Parameter count, forward time and peak memory of every valid model combination.

Run:  python benchmarks/model_zoo.py [--out docs/model-zoo-table.md] [--device cpu]

Reference size: 3 input channels (target + 2 coarsened static fields), 2 static
high-resolution fields, scale 4, a batch of 4 samples of 32 x 32 coarse cells (128 x 128
fine cells); spatio-temporal models see windows of 3 steps. DL4DS default widths
(n_filters=8, n_blocks=6). Each combination runs in its own process. Memory is the peak
allocated by the forward pass on CUDA, and on CPU the growth of the process's peak
resident memory from the built model to the end of the timed forward passes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BATCH, SIZE, SCALE, WINDOW = 4, 32, 4, 3

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
                  "forward_ms": 1000 * statistics.median(times), "peak_mib": peak}}))
"""


def combinations() -> list[tuple[str, str, int | None]]:
    from xr_dl4ds.models import valid_combinations
    from xr_dl4ds.models.recurrent import list_recurrent_backbones

    spatial = [(b, u, None) for b, u in valid_combinations()]
    recurrent = [(b, u, WINDOW) for b, u in valid_combinations() if b in list_recurrent_backbones()]
    return spatial + recurrent


def measure(backbone: str, upsampling: str, window: int | None, device: str) -> dict:
    cmd = [sys.executable, "-c", _CHILD, backbone, upsampling, str(window or "none"), device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown table here")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    rows = []
    for backbone, upsampling, window in combinations():
        r = measure(backbone, upsampling, window, args.device)
        kind = "spatial" if window is None else f"spatio-temporal (T={window})"
        rows.append((backbone, upsampling, kind, r))
        print(backbone, upsampling, kind, r, flush=True)
    mem = (
        "peak allocated (MiB)"
        if args.device.startswith("cuda")
        else "peak RSS growth in forward (MiB)"
    )
    lines = [
        f"Measured with `python benchmarks/model_zoo.py` on {args.device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads): batch {BATCH}, "
        f"{SIZE}x{SIZE} coarse cells, scale {SCALE}, 3 input and 2 static channels, "
        "DL4DS default widths; forward time is the median of 5 runs after a warm-up.",
        "",
        f"| backbone | upsampling | kind | parameters | forward (ms) | {mem} |",
        "|---|---|---|---:|---:|---:|",
    ]
    for backbone, upsampling, kind, r in rows:
        if "error" in r:
            lines.append(f"| {backbone} | {upsampling} | {kind} | error: {r['error']} | | |")
        else:
            lines.append(
                f"| {backbone} | {upsampling} | {kind} | {r['params']:,} | "
                f"{r['forward_ms']:.1f} | {r['peak_mib']:.0f} |"
            )
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
