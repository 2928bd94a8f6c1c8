"""The "Migrating from DL4DS" page covers every DL4DS option, and names real xr_dl4ds ones.

The DL4DS names are the options, classes and functions of DL4DS v1.8.0 listed in §1
("Feature inventory") of the DL4DS reference report, copied here so that the test does
not read anything outside the repository.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

import xr_dl4ds

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"

# DL4DS §1, section by section.
DL4DS_OPTIONS = [
    # 1.1 public constants and their values
    "BACKBONE_BLOCKS", "convnet", "resnet", "densenet", "convnext", "unet",
    "UPSAMPLING_METHODS", "POSTUPSAMPLING_METHODS", "spc", "rc", "dc", "pin",
    "INTERPOLATION_METHODS", "inter_area", "nearest", "bicubic", "bilinear", "lanczos",
    "LOSS_FUNCTIONS", "DROPOUT_VARIANTS",
    "vanilla", "gaussian", "spatial", "mcdrop", "mcgaussiandrop", "mcspatialdrop",
    # 1.2 model constructors and shared architecture keywords
    "net_pin", "unet_pin", "net_postupsampling", "recnet_pin", "recnet_postupsampling",
    "residual_discriminator", "check_compatibility_upsbackb", "n_res_blocks",
    "n_channels_out", "n_filters", "n_blocks", "normalization", "dropout_rate",
    "dropout_variant", "attention", "activation", "output_activation", "localcon_layer",
    "rc_interpolation", "width_cap", "decoder_upsampling",
    # 1.3 building blocks
    "ConvBlock", "ResidualBlock", "DenseBlock", "TransitionBlock", "LocalizedConvBlock",
    "RecurrentConvBlock", "SubpixelConvolutionBlock", "ResizeConvolutionBlock",
    "DeconvolutionBlock", "ChannelAttention2D", "ConvNextBlock", "DropPath",
    "EncoderBlock", "PadConcat", "MCDropout", "MCGaussianDropout", "MCSpatialDropout2D",
    "MCSpatialDropout3D", "get_dropout_layer", "depthwise_separable",
    # 1.5 losses
    "mae", "mse", "dssim", "dssim_mae", "dssim_mse", "dssim_mae_mse", "msdssim",
    "msdssim_mae", "msdssim_mae_mse", "checkarg_loss",
    # 1.6 training modes
    "data_train_lr", "data_val_lr", "data_test_lr", "SupervisedTrainer", "CGANTrainer",
    "time_window",
    # 1.7 inputs, predictors, static variables, masks
    "data_train", "data_val", "data_test", "predictors_train", "predictors_val",
    "predictors_test", "static_vars", "season", "mask", "patch_size",
    "create_pair_hr_lr", "debug", "DataGenerator", "repeat",
    # 1.8 normalisation
    "MinMaxScaler", "value_range", "axis", "copy", "fillnanto", "StandardScaler",
    "with_mean", "with_std", "inverse_transform",
    # 1.9 SupervisedTrainer options
    "backbone", "upsampling", "scale", "interpolation", "batch_size", "loss", "epochs",
    "steps_per_epoch", "validation_steps", "test_steps", "learning_rate",
    "lr_decay_after", "early_stopping", "patience", "min_delta", "save", "save_path",
    "save_bestmodel", "trained_model", "trained_epochs", "device", "gpu_memory_growth",
    "use_multiprocessing", "verbose", "show_plot",
    # 1.9 CGANTrainer options, multi-GPU
    "learning_rates", "checkpoints_frequency", "save_logs", "save_loss_history",
    "generator_params", "discriminator_params", "load_checkpoint", "hvd",
    # 1.10 inference
    "Predictor", "predict", "trainer_or_model", "array", "array_in_hr", "predictors",
    "scaler", "save_fname", "return_lr",
    # 1.11 metrics
    "compute_metrics", "y_test", "y_test_hat", "dpi", "plot_size_px", "n_jobs",
    "nmeanbias",
    # 1.12 plotting, utilities, CLI
    "ecubevis", "plot_history", "crop_array", "resize_array", "checkarray_ndim",
    "spatial_to_spatiotemporal_samples", "spatiotemporal_to_spatial_samples",
    "list_devices", "set_gpu_memory_growth", "set_visible_gpus", "Timing", "checkarg_",
    "app", "flagfile", "data_module", "inference_data", "inference_predictors",
    "inference_scaler", "gt_holdout_dataset", "gt_mask",
]  # fmt: skip

# metrics of §1.11 named in prose rather than as identifiers
DL4DS_METRICS = ["PSNR", "SSIM", "MAE", "RMSE", "RMSE map", "nRMSE", "Spearman", "Pearson"]

_CODE = re.compile(r"`([^`]+)`")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _rows() -> list[list[str]]:
    rows = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "DL4DS":
            continue
        assert len(cells) == 3, f"a table row of the page does not have 3 cells: {line}"
        rows.append(cells)
    return rows


def test_every_dl4ds_option_has_a_row():
    rows = _rows()
    names = set()
    for dl4ds_cell, _, _ in rows:
        for code in _CODE.findall(dl4ds_cell):
            names.update(_IDENT.findall(code))
    missing = [n for n in DL4DS_OPTIONS if n not in names]
    assert not missing, f"DL4DS options without a row in docs/migrating.md: {missing}"
    first_cells = [r[0] for r in rows]
    missing_metrics = [m for m in DL4DS_METRICS if m not in first_cells]
    assert not missing_metrics, missing_metrics


def _allowed_names() -> set[str]:
    from xr_dl4ds.evaluation import METRICS
    from xr_dl4ds.losses import list_losses
    from xr_dl4ds.models import (
        ModelConfig,
        ResidualDiscriminator,
        list_backbones,
        list_upsamplings,
    )

    names = {f.name for f in dataclasses.fields(ModelConfig)}
    for fn in (xr_dl4ds.fit, xr_dl4ds.downscale, xr_dl4ds.evaluate, xr_dl4ds.compare):
        names.update(inspect.signature(fn).parameters)
    names.update(inspect.signature(ResidualDiscriminator).parameters)
    names.update(list_backbones(), list_upsamplings(), list_losses(), METRICS)
    return names


def _allowed_values() -> set[str]:
    from xr_dl4ds.baselines import BASELINES
    from xr_dl4ds.models import config

    values = set(BASELINES)
    for name in ("ACTIVATIONS", "OUTPUT_ACTIVATIONS", "NORMALIZATIONS", "INTERPOLATIONS",
                 "DROPOUT_VARIANTS", "DECODER_UPSAMPLINGS"):  # fmt: skip
        values.update(getattr(config, name))
    values.update(_allowed_names())
    values.update({"auto", "cpu", "cuda", "cuda:1", "adam", "adamw", "step", "cosine",
                   "plateau", "fp32", "bf16", "fp16"})  # fmt: skip
    return values


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _check(code: str, names: set[str], values: set[str]) -> str | None:
    """None if the backticked ``code`` names something that exists, else why not."""
    import xarray as xr

    from xr_dl4ds import Downscaler

    code = code.strip()
    if m := re.fullmatch(r'"([^"]+)"', code):
        return None if m.group(1) in values else f"unknown value {code}"
    if m := re.fullmatch(r"([a-z_][a-z0-9_]*)(=.*)?", code):
        return None if m.group(1) in names else f"unknown option {m.group(1)!r}"
    if m := re.fullmatch(r"((?:xr_dl4ds|xarray)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", code):
        try:
            _resolve(m.group(1))
        except (ImportError, AttributeError):
            return f"{m.group(1)} does not exist"
        return None
    if m := re.fullmatch(r"model\.([a-z_]+)(\(.*\))?", code):
        attrs = set(dir(Downscaler)) | set(inspect.signature(Downscaler).parameters)
        return None if m.group(1) in attrs else f"Downscaler has no {m.group(1)!r}"
    if m := re.fullmatch(r"ds\.dl4ds\.([a-z_]+)(\(.*\))?", code):
        return None if hasattr(xr.Dataset.dl4ds, m.group(1)) else f"no accessor {code}"
    if m := re.fullmatch(r"xr-dl4ds ([a-z]+)( .*)?", code):
        ok = m.group(1) in {"fit", "downscale", "evaluate", "compare"}
        return None if ok else f"no command {code}"
    if code in {"None", "True", "False"}:
        return None
    return f"cannot check {code!r}: write it as an option, a value or xr_dl4ds.<name>"


def test_every_cited_xr_dl4ds_name_exists():
    names, values = _allowed_names(), _allowed_values()
    problems = []
    for _, xr_cell, _ in _rows():
        for code in _CODE.findall(xr_cell):
            why = _check(code, names, values)
            if why:
                problems.append(f"{xr_cell!r}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["migrating"])
def test_page_is_in_the_toctree(name):
    index = (PAGE.parent / "index.md").read_text(encoding="utf-8")
    assert re.search(rf"^{name}$", index, flags=re.M)
