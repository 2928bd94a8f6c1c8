"""What is reproducible on a GPU: the same seed twice, on CUDA.

For each setting, trains the same small model twice with ``seed=0`` on ``cuda`` and
downscales with it, then compares the two runs bitwise (weights, loss history, output),
and downscales twice with one model. Settings: torch's defaults (fp32), bf16 autocast,
and ``torch.use_deterministic_algorithms(True)`` (which needs
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment). Run on a GPU machine::

    CUBLAS_WORKSPACE_CONFIG=:4096:8 OUT=/tmp python benchmarks/gpu_determinism.py

It writes ``$OUT/determinism.json``; the result of the last run is in
``benchmarks/results/gpu-determinism-h100.json`` and in docs/reliability.md.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from xr_dl4ds.testing import synthetic_dataset

FIT = {
    "target": "tas",
    "scale": 4,
    "patch_size": 16,
    "batch_size": 4,
    "progress": False,
    "seed": 0,
    "device": "cuda",
    "backbone": "resnet",
    "n_filters": 16,
    "n_blocks": 2,
}


def compare(hr, **options) -> dict:
    coarse = hr["tas"].dl4ds.coarsen(scale=4)
    runs = []
    for _ in range(2):
        m = hr.dl4ds.fit(epochs=2, steps_per_epoch=6, **FIT, **options)
        y = coarse.dl4ds.downscale(m, device="cuda").values
        runs.append(({k: v.clone() for k, v in m.state_dict.items()}, y, m.history["loss"].values))
    (w1, y1, l1), (w2, y2, l2) = runs
    m = hr.dl4ds.fit(epochs=1, steps_per_epoch=2, **FIT, **options)
    a = coarse.dl4ds.downscale(m, device="cuda").values
    b = coarse.dl4ds.downscale(m, device="cuda").values
    return {
        "weights_equal": all(torch.equal(w1[k], w2[k]) for k in w1),
        "weights_maxdiff": max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1),
        "loss_equal": bool(np.array_equal(l1, l2)),
        "out_equal": bool(np.array_equal(y1, y2)),
        "out_maxdiff": float(np.abs(y1 - y2).max()),
        "same_model_out_equal": bool(np.array_equal(a, b)),
    }


def main() -> None:
    hr = synthetic_dataset(nt=16, ny=32, nx=48, seed=0)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    results["default"] = compare(hr)
    results["bf16"] = compare(hr, precision="bf16")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    results["deterministic_algorithms"] = compare(hr)
    print(json.dumps(results, indent=1))
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "determinism.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
