"""Compare all five backbones and four upsamplings on real ERA5 2 m temperature, x4.

Trains eight configurations with :func:`xr_dl4ds.compare` on the bundled ERA5 sample (1
degree, global, 24 steps) in a perfect-prognosis set-up: the coarse input is the 4-degree
block mean, orography and the land-sea mask are static inputs. Every configuration gets
the same training steps (0-17), seed and wall-clock budget (``--budget`` seconds of
training each); all are scored on the same test steps (18-23) next to the bicubic and
lapse-rate baselines. The five backbones use sub-pixel convolution (``spc``; the UNet only
works with ``pin``, pre-upsampling), and resnet is also run with the other three
upsamplings (``rc``, ``dc``, ``pin``). About 10 minutes on 2 CPU cores with the default
budget; faster on a GPU.

Run:  python examples/compare_backbones.py [--out DIR] [--budget SECONDS] [--epochs N]
      [--steps-per-epoch N] [--batch-size N] [--device DEVICE] [--quick]
(``--budget 0 --epochs 15``: the same epochs for every configuration instead, which does not
depend on the machine's speed or load.)
Writes into DIR (default ./compare_report): report.md (the table and the figures),
table.csv and table.md (every metric), scores.nc, maps.png, metrics.png, spectra.png and
learning_curves.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import xr_dl4ds
from xr_dl4ds import tutorial
from xr_dl4ds.comparison import to_markdown

CONFIGS = [
    # the five backbones, each with sub-pixel convolution (unet: pre-upsampling only)
    {"backbone": "resnet", "upsampling": "spc"},
    {"backbone": "convnet", "upsampling": "spc"},
    {"backbone": "densenet", "upsampling": "spc"},
    {"backbone": "convnext", "upsampling": "spc"},
    {"backbone": "unet", "upsampling": "pin"},
    # the other upsamplings, with resnet
    {"backbone": "resnet", "upsampling": "rc"},
    {"backbone": "resnet", "upsampling": "dc"},
    {"backbone": "resnet", "upsampling": "pin"},
]

#: Training options shared by every configuration (those of examples/quickstart.py,
#: with shorter epochs so that the time budget is checked often).
TRAINING = {
    "loss": "mae",
    "batch_size": 16,
    "patch_size": 64,
    "steps_per_epoch": 6,
    "learning_rate": 2e-3,
}

#: The columns of the report's table (table.md has them all).
COLUMNS = [
    "backbone",
    "upsampling",
    "parameters",
    "epochs",
    "train_seconds",
    "infer_seconds",
    "rmse",
    "mae",
    "ssim",
    "skill_rmse_vs_bicubic",
    "skill_rmse_vs_lapse_rate",
]


def main(out: Path, budget: float, epochs: int | None, device: str, quick: bool = False) -> None:
    start = time.perf_counter()
    ds = tutorial.open_dataset("era5_t2m")
    # 181 latitudes (90N..90S) are not a multiple of 4: drop the South Pole row ourselves
    ds = ds.isel(lat=slice(0, 180))
    if quick:  # a smoke run on a 64 x 128 window: 90N-27N, 0-127E
        ds = ds.isel(lat=slice(0, 64), lon=slice(0, 128))
    table = xr_dl4ds.compare(
        ds,
        CONFIGS,
        target="t2m",
        scale=4,
        static=["orography", "lsm"],
        test_fraction=0.25,  # the last 6 of the 24 steps
        time_budget=budget or None,
        epochs=epochs,
        seed=0,
        baselines=("bicubic", "lapse_rate"),
        device=device,
        output_dir=out,
        **TRAINING,
    )
    minutes = (time.perf_counter() - start) / 60
    summary = table[COLUMNS].copy()
    summary.attrs = table.attrs
    report = _report(summary, budget=budget, epochs=epochs, minutes=minutes, table=table)
    (out / "report.md").write_text(report, encoding="utf-8")
    print()
    print(to_markdown(summary))
    best = table[table["kind"] == "model"]["rmse"].idxmin()
    print(
        f"\nbest: {best}, RMSE {table.loc[best, 'rmse']:.3f} K "
        f"(bicubic {table.loc['bicubic', 'rmse']:.3f} K, lapse_rate "
        f"{table.loc['lapse_rate', 'rmse']:.3f} K); {minutes:.1f} min in all"
    )
    print(f"wrote {out / 'report.md'} and the table and figures beside it")


def _report(summary, *, budget: float, epochs: int | None, minutes: float, table) -> str:
    models = table[table["kind"] == "model"]
    beat = models[models["skill_rmse_vs_bicubic"] > 0].index.tolist()
    device = ", ".join(sorted(set(models["device"])))
    limits = ([f"{budget:g} s of training (`time_budget`)"] if budget else []) + (
        [f"{epochs} epochs"] if epochs else []
    )
    limit = ("at most " if budget else "") + (" or ".join(limits) or "30 epochs")
    lines = [
        "# Comparing backbones and upsamplings: ERA5 2 m temperature, x4",
        "",
        "Bundled ERA5 sample (`xr_dl4ds.tutorial.open_dataset('era5_t2m')`: 1 degree, global, "
        "24 steps), perfect prognosis: the coarse input is the 4-degree block mean; orography "
        "and the land-sea mask are static inputs. Steps 0-17 train, steps 18-23 test. Every "
        f"configuration: seed 0, {limit}, "
        f"{TRAINING['batch_size']} patches of {TRAINING['patch_size']}x"
        f"{TRAINING['patch_size']} cells per batch, {TRAINING['steps_per_epoch']} batches per "
        f"epoch, Adam at {TRAINING['learning_rate']:g}, {TRAINING['loss'].upper()} loss, "
        "default network sizes, residual over bicubic (the default).",
        "",
        "## Scores on the 6 test steps",
        "",
        to_markdown(summary),
        "",
        "`skill_rmse_vs_<baseline>` = 1 - RMSE / RMSE(baseline): above 0 beats the baseline. "
        f"Beating bicubic: {', '.join(beat) if beat else 'none'}. `epochs` is how many "
        "epochs fitted in the budget; `train_seconds` includes the data preparation; "
        "`infer_seconds` is the time to downscale the 6 test fields. Every metric (MAE, bias, "
        "correlations, SSIM, PSNR and their skills): [table.md](table.md), "
        "[table.csv](table.csv), [scores.nc](scores.nc).",
        "",
        "## Figures",
        "",
        "RMSE and its skill over each baseline:",
        "",
        "![metrics](metrics.png)",
        "",
        "The first test step: coarse input, baselines, models, truth, and the errors:",
        "",
        "![maps](maps.png)",
        "",
        "Power spectra (do the small scales come back?):",
        "",
        "![spectra](spectra.png)",
        "",
        "Training loss per epoch (the learning rate is constant):",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "---",
        f"`examples/compare_backbones.py`, xr_dl4ds {xr_dl4ds.__version__}, on {device} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores), {minutes:.1f} min in all. "
        "Timings depend on the machine and its load; with a wall-clock budget, so do the "
        "epochs and the scores.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compare_report"))
    parser.add_argument(
        "--budget",
        type=float,
        default=55.0,
        help="seconds of training per configuration (default: 55, for 8 configurations; "
        "0: no time limit, for a run that does not depend on the machine's speed: give --epochs)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="stop after this many epochs (too)"
    )
    parser.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu"...')
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=TRAINING["steps_per_epoch"],
        help=f"batches per epoch (default: {TRAINING['steps_per_epoch']})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run on a 64 x 128 window (90N-27N, 0-127E)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=TRAINING["batch_size"],
        help=f"patches per batch (default: {TRAINING['batch_size']})",
    )
    args = parser.parse_args()
    TRAINING["steps_per_epoch"] = args.steps_per_epoch
    TRAINING["batch_size"] = args.batch_size
    main(args.out, args.budget, args.epochs, args.device, args.quick)
