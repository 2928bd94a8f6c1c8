"""Quickstart: downscale real ERA5 2 m temperature x4 with a resnet, and beat bicubic.

Trains resnet + sub-pixel upsampling on the bundled ERA5 sample (1 degree, global) in a
perfect-prognosis set-up: the coarse input is the 4-degree block mean of the 1-degree
field, and orography and the land-sea mask are static high-resolution inputs. Steps 0-17
train, steps 18-23 test. Takes a few minutes on 2 CPU cores, less on a GPU.

Run:  python examples/quickstart.py [--output DIR] [--epochs N]
Writes DIR/t2m_downscaled.nc, DIR/t2m_downscaled.zarr, DIR/quickstart.png and
DIR/t2m_resnet.dl4ds (default DIR: ./quickstart_output).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import xr_dl4ds
from xr_dl4ds import tutorial
from xr_dl4ds.metrics import interpolate, rmse


def main(output: Path, epochs: int) -> dict[str, float]:
    output.mkdir(parents=True, exist_ok=True)
    ds = tutorial.open_dataset("era5_t2m")
    # 181 latitudes (90N..90S) are not a multiple of 4: drop the South Pole row ourselves
    ds = ds.isel(lat=slice(0, 180))
    train, test = ds.isel(time=slice(0, 18)), ds.isel(time=slice(18, 24))

    t0 = time.perf_counter()
    model = train.dl4ds.fit(
        target="t2m",
        scale=4,
        static=["orography", "lsm"],
        backbone="resnet",
        upsampling="spc",
        loss="mae",
        epochs=epochs,
        batch_size=16,
        patch_size=64,
        steps_per_epoch=12,
        learning_rate=2e-3,
        seed=0,
    )
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    print(model)
    model.save(output / "t2m_resnet.dl4ds")

    # downscale the coarse (4-degree) test fields, lazily, chunk by chunk along time
    coarse = test["t2m"].dl4ds.coarsen(scale=4).chunk(time=2)
    fine = coarse.dl4ds.downscale(model)
    bicubic = interpolate(coarse, scale=4, method="bicubic")
    truth = test["t2m"]

    fine = fine.compute()
    scores = {
        "model": float(rmse(fine, truth)),
        "bicubic": float(rmse(bicubic, truth)),
    }
    print(
        f"RMSE on the 6 test steps: model {scores['model']:.3f} K, "
        f"bicubic {scores['bicubic']:.3f} K (ratio {scores['model'] / scores['bicubic']:.2f})"
    )

    fine.to_netcdf(output / "t2m_downscaled.nc")
    fine.to_dataset().to_zarr(output / "t2m_downscaled.zarr", mode="w", consolidated=False)
    _plot(
        coarse.isel(time=0),
        bicubic.isel(time=0),
        fine.isel(time=0),
        truth.isel(time=0),
        output / "quickstart.png",
    )
    print(f"wrote {output}/t2m_downscaled.nc, .zarr, quickstart.png and t2m_resnet.dl4ds")
    return scores


def _plot(coarse, bicubic, fine, truth, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("coarse (4°)", coarse),
        ("bicubic", bicubic),
        ("resnet", fine),
        ("truth (1°)", truth),
    ]
    vmin, vmax = float(truth.min()), float(truth.max())
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6), constrained_layout=True)
    for ax, (title, da) in zip(axes, panels, strict=True):
        im = da.plot(ax=ax, vmin=vmin, vmax=vmax, cmap="RdYlBu_r", add_colorbar=False)
        ax.set_title(title)
    fig.colorbar(im, ax=axes, label="2 m temperature [K]", shrink=0.9)
    fig.suptitle(f"ERA5 t2m, {str(truth['time'].values)[:16]}: x4 downscaling")
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("quickstart_output"))
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    main(args.output, args.epochs)
    print(f"xr_dl4ds {xr_dl4ds.__version__}")
