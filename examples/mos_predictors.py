"""MOS downscaling: a biased coarse model, a coarse predictor and static fields, x4.

Model output statistics (MOS): the coarse input is not the block mean of the
high-resolution truth (perfect prognosis) but another source with its own errors, here
a stand-in for a coarse climate model: the block mean of the synthetic ``tas`` plus a
warm bias of ``--bias`` K and smooth random errors. A second, time-varying coarse
variable (``psl``, sea-level pressure correlated with the large-scale temperature
pattern) is a predictor, and orography (``orog``) and the land fraction (``sftlf``) are
high-resolution static inputs. :func:`xr_dl4ds.pair` shows how the inputs are paired,
``fit(lowres=..., predictors=..., static=...)`` trains the network to map the biased
coarse fields to the high-resolution truth, so it also corrects the bias, which
interpolation (bicubic of the same coarse input) cannot.

Run:  python examples/mos_predictors.py [--out DIR] [--epochs N] [--bias K] [--quick]
(``--quick``: a smaller grid and network, a few seconds; used by the tests.)
Writes into DIR (default ./mos_output): tas_mos.nc, scores.nc and tas_mos.dl4ds. Prints
the RMSE and bias of the model and of bicubic on the test steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import xr_dl4ds
from xr_dl4ds.testing import synthetic_dataset


def coarse_model(hr, scale: int, bias: float, seed: int = 0):
    """A biased, noisy coarse "model" of ``tas`` and a coarse ``psl`` predictor."""
    rng = np.random.default_rng(seed)
    tas = hr["tas"].dl4ds.coarsen(scale=scale)
    noise = rng.normal(0.0, 0.5, tas.shape).astype(tas.dtype)
    # smooth the noise along x so the errors are spatially coherent, like a model's
    noise = (noise + np.roll(noise, 1, axis=-1) + np.roll(noise, -1, axis=-1)) / 3
    lowres_tas = (tas + bias + noise).assign_attrs(tas.attrs)
    anomaly = tas - tas.mean(tas.dims[1:])
    psl = (101325.0 - 150.0 * anomaly).astype("float32")
    psl.attrs = {"standard_name": "air_pressure_at_mean_sea_level", "units": "Pa"}
    return lowres_tas.to_dataset(name="tas"), psl.to_dataset(name="psl")


def main(out: Path, epochs: int = 20, bias: float = 1.5, quick: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        size, net, steps, patch = (
            {"nt": 12, "ny": 32, "nx": 48},
            {"n_filters": 8, "n_blocks": 2},
            4,
            16,
        )
    else:
        size, net, steps, patch = (
            {"nt": 40, "ny": 64, "nx": 96},
            {"n_filters": 32, "n_blocks": 4},
            16,
            32,
        )
    scale = 4
    hr = synthetic_dataset(scale=scale, seed=0, **size)
    lowres, predictors = coarse_model(hr, scale, bias)
    n_train = size["nt"] * 3 // 4
    train, test = slice(0, n_train), slice(n_train, None)

    p = xr_dl4ds.pair(
        hr.isel(time=train),
        scale=scale,
        target="tas",
        lowres=lowres.isel(time=train),
        predictors=predictors.isel(time=train),
        static=["orog", "sftlf"],
    )
    print(f"pair: mode {p.mode}, target {p.target}, static {p.static_names}")

    t0 = time.perf_counter()
    model = hr.isel(time=train).dl4ds.fit(
        target="tas",
        scale=scale,
        lowres=lowres.isel(time=train),
        predictors=predictors.isel(time=train),
        static=["orog", "sftlf"],
        backbone="resnet",
        epochs=epochs,
        batch_size=8,
        patch_size=patch,
        steps_per_epoch=steps,
        learning_rate=2e-3,
        seed=0,
        device="cpu",
        progress=False,
        **net,
    )
    print(f"trained {epochs} epochs in {time.perf_counter() - t0:.1f} s")
    model.save(out / "tas_mos.dl4ds")

    # at inference: the coarse model's tas and the predictor, in one Dataset
    coarse = lowres.isel(time=test).merge(predictors.isel(time=test))
    fine = coarse.dl4ds.downscale(model, device="cpu")
    fine.to_netcdf(out / "tas_mos.nc")
    truth = hr[["tas", "orog"]].isel(time=test)
    scores = xr_dl4ds.evaluate(
        truth,
        {"mos": fine[["tas"]]},
        coarse=lowres[["tas"]].isel(time=test),
        metrics=["rmse", "bias"],
    )
    scores.to_netcdf(out / "scores.nc")
    result = {
        f"{metric}_{m}": float(scores[metric].sel(model=m).squeeze())
        for metric in ("rmse", "bias")
        for m in ("mos", "bicubic")
    }
    print(
        f"on {truth.sizes['time']} test steps: RMSE mos {result['rmse_mos']:.3f} K, "
        f"bicubic {result['rmse_bicubic']:.3f} K; bias mos {result['bias_mos']:+.3f} K, "
        f"bicubic {result['bias_bicubic']:+.3f} K"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("mos_output"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--bias", type=float, default=1.5, help="warm bias of the coarse model [K]")
    parser.add_argument("--quick", action="store_true", help="small grid and network")
    args = parser.parse_args()
    main(args.out, epochs=args.epochs, bias=args.bias, quick=args.quick)
    print(f"xr_dl4ds {xr_dl4ds.__version__}")
