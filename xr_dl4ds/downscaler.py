"""The trained model object (:class:`Downscaler`) and :func:`fit`, which makes one."""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .data.checks import value_summary
from .data.normalization import VariableStats, stats_from_summary
from .data.pairing import Pair, pair
from .exceptions import ConfigError, DataError, DL4DSWarning
from .grid import is_periodic

if TYPE_CHECKING:
    import torch

    from .models import ModelConfig

__all__ = ["Downscaler", "GridInfo", "fit"]


@dataclasses.dataclass(frozen=True)
class GridInfo:
    """The training grids: coordinate-only Datasets on the low- and high-res grids.

    ``highres`` also holds the grid-mapping variable (e.g. ``rotated_pole``) when the
    training data had one.
    """

    lowres: xr.Dataset
    highres: xr.Dataset
    y: str
    x: str
    time_dim: str
    periodic: bool
    grid_mapping: str | None = None

    @property
    def lowres_shape(self) -> tuple[int, int]:
        return self.lowres.sizes[self.y], self.lowres.sizes[self.x]

    @property
    def highres_shape(self) -> tuple[int, int]:
        return self.highres.sizes[self.y], self.highres.sizes[self.x]


def _spatial_coords(ds: xr.Dataset, y: Hashable, x: Hashable) -> xr.Dataset:
    coords = {n: c.variable for n, c in ds.coords.items() if set(c.dims) & {y, x}}
    return xr.Dataset(coords=coords)


def _grid_mapping(
    obj: xr.DataArray | xr.Dataset, target: Sequence[str]
) -> tuple[str | None, xr.Dataset]:
    """Name of the CF grid-mapping variable of the target and a Dataset holding it."""
    arrays = [obj] if isinstance(obj, xr.DataArray) else [obj[n] for n in target]
    for da in arrays:
        gm = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
        if gm:
            if gm in obj.variables:
                return str(gm), xr.Dataset({gm: obj[gm].variable})
            return str(gm), xr.Dataset()
    return None, xr.Dataset()


class Downscaler:
    """A trained downscaling model: network, configuration, normalization and grids.

    Made by :func:`fit` (``ds.dl4ds.fit(...)``) or :func:`xr_dl4ds.load`; used by
    ``coarse.dl4ds.downscale(model)``. It holds everything needed to downscale new data
    without the training data: the network weights and :class:`~xr_dl4ds.models.ModelConfig`,
    the normalization statistics with their units, the variable names and attrs, the
    low- and high-resolution grids, the scale, the static fields, the training history
    and the package versions.

    Attributes
    ----------
    config : ModelConfig
        The network architecture (backbone, upsampling, scale, channels, widths...).
    state_dict : dict of str to Tensor
        The network weights (on the CPU).
    target, predictors, static_names : tuple of str
        Variable names, in the order of the network's channels.
    stats : dict of str to VariableStats
        Normalization mean, standard deviation and units of every variable.
    attrs : dict
        The attrs of every variable at training time.
    grid : GridInfo
        The training low- and high-resolution grids (coordinates with their attrs), the
        dimension names, whether longitude is periodic, and the grid-mapping variable.
    static, static_lowres : numpy.ndarray
        Normalized static fields on the high- and low-resolution training grids.
    mask : numpy.ndarray or None
        Per target, the high-resolution cells that had data in training (None: all).
    history : xarray.Dataset
        Loss, validation loss, learning rate and duration per epoch.
    training : dict
        The training options and periods.
    versions : dict
        Versions of xr_dl4ds, torch, xarray and numpy that trained the model.

    Examples
    --------
    A (tiny) model trained on synthetic temperature with orography and land fraction:

    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
    >>> model = fit(hr, scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
    ...             n_filters=4, n_blocks=1, device="cpu", progress=False)
    >>> model
    <xr_dl4ds.Downscaler resnet+spc x4>
      target:     tas [K]
      predictors: -
      static:     orog, sftlf
      grid:       lat: 4 -> 16, lon: 4 -> 16
      network:    2,376 parameters, n_filters=4, n_blocks=1, residual=True
      trained:    1 epochs, loss=mae
      last epoch: loss=...
    >>> model.stats["tas"].units, round(model.stats["tas"].mean, 2)
    ('K', 288.92)
    >>> model.static.shape, model.static_lowres.shape  # normalized orog and sftlf
    ((2, 16, 16), (2, 4, 4))
    >>> model.history["loss"].dims, model.training["train_period"]
    (('epoch',), ['2000-01-01T00:00:00.000000000', '2000-01-02T00:00:00.000000000'])

    It downscales new coarse data on its own, without the training data:

    >>> fine = hr["tas"].dl4ds.coarsen(scale=4).dl4ds.downscale(model, device="cpu")
    >>> fine.sizes["lat"], fine.attrs["units"]
    (16, 'K')
    >>> bool((fine["lat"] == hr["lat"]).all())  # on the training high-res grid
    True
    """

    def __init__(
        self,
        *,
        config: ModelConfig,
        state_dict: Mapping[str, torch.Tensor],
        target: Sequence[str],
        predictors: Sequence[str],
        static_names: Sequence[str],
        stats: Mapping[str, VariableStats],
        attrs: Mapping[str, Mapping[str, Any]],
        grid: GridInfo,
        static: np.ndarray,
        static_lowres: np.ndarray,
        mask: np.ndarray | None,
        history: xr.Dataset,
        training: Mapping[str, Any],
        versions: Mapping[str, str],
    ) -> None:
        self.config = config
        self.state_dict = dict(state_dict)
        self.target = tuple(target)
        self.predictors = tuple(predictors)
        self.static_names = tuple(static_names)
        self.stats = dict(stats)
        self.attrs = {k: dict(v) for k, v in attrs.items()}
        self.grid = grid
        self.static = static
        self.static_lowres = static_lowres
        self.mask = mask
        self.history = history
        self.training = dict(training)
        self.versions = dict(versions)
        self._nets: dict[str, torch.nn.Module] = {}

    @property
    def scale(self) -> int:
        """The refinement factor (from the network configuration).

        Examples
        --------
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = fit(hr, scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...             n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> model.scale
        4
        >>> coarse = hr["tas"].dl4ds.coarsen(scale=model.scale)
        >>> coarse.sizes["lon"], coarse.dl4ds.downscale(model, device="cpu").sizes["lon"]
        (4, 16)
        """
        return int(self.config.scale)

    def network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network in eval mode on ``device`` (built once per device and cached).

        Parameters
        ----------
        device : str or torch.device, default "cpu"

        Returns
        -------
        xr_dl4ds.models.DownscalingNet
            The :class:`torch.nn.Module` with the trained weights. It works on normalized
            values: the low-resolution target and static channels in, the high-resolution
            target out (``coarse.dl4ds.downscale(model)`` does the normalization).

        Examples
        --------
        >>> import torch
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = fit(hr, scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...             n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> net = model.network()
        >>> type(net).__name__, net.training, model.network("cpu") is net
        ('DownscalingNet', False, True)
        >>> x = torch.zeros(1, 3, 4, 4)  # normalized low-res tas, orog, sftlf: all at the mean
        >>> static = torch.from_numpy(model.static)[None]  # (1, 2, 16, 16) high-res orog, sftlf
        >>> with torch.no_grad():
        ...     net(x, static).shape
        torch.Size([1, 1, 16, 16])
        """
        import torch

        from .models import create_model

        key = str(device)
        net = self._nets.get(key)
        if net is None:
            net = create_model(self.config)
            net.load_state_dict(self.state_dict)
            net.to(torch.device(device)).eval()
            self._nets[key] = net
        return net

    def save(self, path: str | Any) -> None:
        """Write the model to one self-describing file (see :func:`xr_dl4ds.load`).

        Parameters
        ----------
        path : str, os.PathLike or binary file object
            Written atomically: a failed write leaves no partial file.

        Examples
        --------
        >>> import xr_dl4ds
        >>> from xr_dl4ds.testing import synthetic_dataset
        >>> hr = synthetic_dataset(nt=2, ny=16, nx=16)
        >>> model = fit(hr, scale=4, epochs=1, steps_per_epoch=1, patch_size=None,
        ...             n_filters=4, n_blocks=1, device="cpu", progress=False)
        >>> model.save("tas_x4.dl4ds")
        >>> loaded = xr_dl4ds.load("tas_x4.dl4ds")
        >>> loaded.target, loaded.scale, loaded.static_names
        (('tas',), 4, ('orog', 'sftlf'))
        >>> coarse = hr["tas"].dl4ds.coarsen(scale=4)
        >>> a = coarse.dl4ds.downscale(model, device="cpu")
        >>> b = coarse.dl4ds.downscale("tas_x4.dl4ds", device="cpu")  # a path works too
        >>> bool((a == b).all())
        True
        """
        from .io import save

        save(self, path)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_nets"] = {}
        return state

    def __repr__(self) -> str:
        c = self.config
        y, x = self.grid.y, self.grid.x
        # sizes unknown ("?") for a model trained on data without spatial coordinates
        h, w = (self.grid.lowres.sizes.get(d, "?") for d in (y, x))
        H, W = (self.grid.highres.sizes.get(d, "?") for d in (y, x))
        n_params = sum(int(np.prod(t.shape)) for t in self.state_dict.values())
        epochs = self.history.sizes.get("epoch", 0)
        lines = [
            f"<xr_dl4ds.Downscaler {c.backbone}+{c.upsampling} x{c.scale}>",
            f"  target:     {', '.join(f'{t} [{self.stats[t].units}]' for t in self.target)}",
            f"  predictors: {', '.join(self.predictors) or '-'}",
            f"  static:     {', '.join(self.static_names) or '-'}",
            f"  grid:       {y}: {h} -> {H}, {x}: {w} -> {W}"
            + (" (periodic)" if self.grid.periodic else ""),
            f"  network:    {n_params:,} parameters, n_filters={c.n_filters}, "
            f"n_blocks={c.n_blocks}, residual={c.residual}",
            f"  trained:    {epochs} epochs, loss={self.training.get('loss')}",
        ]
        if epochs:
            last = self.history.isel(epoch=-1)
            s = f"  last epoch: loss={float(last['loss']):.4g}"
            if "val_loss" in self.history:
                s += f", val_loss={float(last['val_loss']):.4g}"
            lines.append(s)
        return "\n".join(lines)


def _split_validation(
    p: Pair, val_time: Any, val_fraction: float | None
) -> tuple[Pair, Pair | None]:
    t = p.time_dim
    n = p.highres.sizes[t]
    if val_time is not None and val_fraction:
        raise ConfigError("Pass either val_time= or val_fraction=, not both.")
    if val_time is not None:
        times = p.highres[t].to_index()
        if isinstance(val_time, slice):
            idx = times.slice_indexer(val_time.start, val_time.stop)
            is_val = np.zeros(n, bool)
            is_val[idx] = True
        else:
            sel = p.highres[t].sel({t: val_time})
            is_val = np.isin(p.highres[t].values, np.atleast_1d(sel.values))
    elif val_fraction:
        if not 0 < val_fraction < 1:
            raise ConfigError(
                f"val_fraction={val_fraction!r} must be between 0 and 1 (exclusive), e.g. 0.2."
            )
        n_val = max(1, int(round(n * val_fraction)))
        is_val = np.zeros(n, bool)
        is_val[n - n_val :] = True  # the last steps: a split by time, not at random
    else:
        return p, None
    if is_val.all() or not is_val.any():
        raise ConfigError(
            f"The validation split leaves {int((~is_val).sum())} training and "
            f"{int(is_val.sum())} validation steps out of {n}; both must be at least 1. "
            "Adjust val_time= / val_fraction=."
        )
    return p.isel_time(np.flatnonzero(~is_val)), p.isel_time(np.flatnonzero(is_val))


_TRAINING_KEYS = (
    "loss",
    "epochs",
    "batch_size",
    "patch_size",
    "learning_rate",
    "steps_per_epoch",
    "seed",
)


def fit(
    obj: xr.DataArray | xr.Dataset,
    *,
    scale: int,
    target: str | Sequence[str] | None = None,
    lowres: xr.DataArray | xr.Dataset | None = None,
    static: str | Sequence[str] | xr.DataArray | xr.Dataset | None = None,
    predictors: str | Sequence[str] | xr.DataArray | xr.Dataset | None = None,
    backbone: str = "resnet",
    upsampling: str = "spc",
    loss: str = "mae",
    epochs: int = 30,
    batch_size: int = 16,
    patch_size: int | Mapping[str, int] | None = 64,
    steps_per_epoch: int | None = None,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    scheduler: str | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    grad_clip: float | None = None,
    precision: str = "fp32",
    early_stopping: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    val_time: Any = None,
    val_fraction: float | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike[str] | None = None,
    callback: Callable[[int, dict[str, float]], bool | None] | None = None,
    in_memory: bool | None = None,
    loader_workers: int = 0,
    adversarial: bool = False,
    pixel_weight: float = 100.0,
    adversarial_weight: float = 1.0,
    discriminator_learning_rate: float | None = None,
    discriminator_options: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    device: str = "auto",
    devices: int | None = None,
    progress: bool = True,
    spatial_dims: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
    time_dim: Hashable | None = None,
    **model_options: Any,
) -> Downscaler:
    """Train a downscaling network on high-resolution data.

    Perfect prognosis by default (the low-resolution input is the block mean of the
    high-resolution target); MOS with ``lowres=``. See :func:`xr_dl4ds.pair` for
    ``target``, ``lowres``, ``static`` and ``predictors``.

    Parameters
    ----------
    obj : DataArray or Dataset
        High-resolution training data with a time dimension.
    scale : int
        Refinement factor (integer >= 2).
    backbone, upsampling : str
        See :func:`xr_dl4ds.models.list_backbones` and ``list_upsamplings``.
    loss : str or callable
        One of DL4DS's losses, all mask-aware: ``"mae"``, ``"mse"``, ``"dssim"``,
        ``"dssim_mae"``, ``"dssim_mse"``, ``"dssim_mae_mse"``, ``"msdssim"``,
        ``"msdssim_mae"``, ``"msdssim_mae_mse"`` (see :func:`xr_dl4ds.losses.get_loss`
        for other mixing weights), or a callable ``loss(pred, target, mask)`` returning a
        scalar tensor.
    epochs, batch_size : int
    patch_size : int, mapping or None
        Side of the random square patches, in high-resolution cells (a multiple of
        ``scale``); ``None`` trains on whole fields.
    steps_per_epoch : int, optional
        Batches per epoch; default: enough patches to cover every training field once.
    learning_rate : float
        Initial learning rate.
    optimizer : {"adam", "adamw"}
    weight_decay : float
    scheduler : {None, "step", "cosine", "plateau"}
        Learning-rate schedule, stepped every epoch; ``scheduler_options`` overrides its
        defaults (see :class:`~xr_dl4ds.training.supervised.LoopOptions`).
    scheduler_options : dict, optional
    grad_clip : float, optional
        Clip the global gradient norm.
    precision : {"fp32", "bf16", "fp16"}
        Mixed precision on CUDA; fp32 (with a warning) on CPU.
    early_stopping : int, optional
        Stop after this many epochs without a validation-loss improvement larger than
        ``min_delta``; with ``restore_best`` the model keeps the best epoch's weights.
    min_delta : float
    restore_best : bool
    val_time : slice or labels, optional
        Time steps held out for validation, e.g. ``slice("2010", "2012")``.
    val_fraction : float, optional
        Hold out the last ``val_fraction`` of the time steps instead.
    checkpoint_path : path, optional
        Where to write training checkpoints (every ``checkpoint_every`` epochs and at the
        end); written atomically, so a killed run leaves the last complete one.
    checkpoint_every : int, optional
    resume : path, optional
        A checkpoint of an interrupted run with the same data and options: training
        continues after its last epoch. On CPU with a fixed seed the result equals an
        uninterrupted run.
    callback : callable, optional
        ``callback(epoch, values)`` after every epoch (0-based epoch; values of the loss,
        validation loss, learning rate and duration). Returning True stops training
        after that epoch (e.g. a wall-clock budget).
    in_memory : bool, optional
        Load the (normalized) training data into memory. Default: yes for numpy-backed
        data, no for dask-backed data (e.g. ``xr.open_zarr``), whose patches are then
        read lazily, chunk by chunk, so memory stays bounded whatever the data size.
    loader_workers : int
        Worker processes that read the batches (a few batches ahead); 0 reads them in
        the training process. The batches do not depend on this number.
    adversarial : bool
        Conditional-GAN training (pix2pix, as DL4DS's ``CGANTrainer``) with DL4DS's
        residual discriminator: generator loss = ``adversarial_weight`` x BCE +
        ``pixel_weight`` x ``loss``. Adam with betas (0.5, 0.999); DL4DS used
        ``learning_rate=2e-4`` for both networks. Supports validation and early
        stopping; not yet schedules, clipping, mixed precision, checkpoints or several
        devices.
    pixel_weight, adversarial_weight : float
    discriminator_learning_rate : float, optional
        Default: ``learning_rate``.
    discriminator_options : dict, optional
        ``n_filters`` (32), ``n_res_blocks`` (4), ``dropout`` (0.4), ``activation``,
        ``hidden_units`` of :class:`~xr_dl4ds.models.ResidualDiscriminator`.
    seed : int or None
        Seeds weights and patch sampling; training on CPU is then deterministic.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    devices : int, optional
        Data-parallel training in this many processes (one per GPU, or CPU processes
        with ``device="cpu"``), spawned here; works from scripts and notebooks. Under
        ``torchrun`` leave it unset: each process calls ``fit`` and they train together.
        The global ``batch_size`` is split evenly over the processes.
    progress : bool
        Show a progress bar over epochs.
    spatial_dims, time_dim : optional
        Overrides of the dimension detection.
    **model_options
        Fields of :class:`~xr_dl4ds.models.ModelConfig`: ``n_filters``, ``n_blocks``,
        ``normalization``, ``activation``, ``attention``, ``dropout_rate``,
        ``output_activation``, ``residual``, ``interpolation``.

    Returns
    -------
    Downscaler

    Examples
    --------
    >>> from xr_dl4ds.testing import synthetic_dataset
    >>> model = fit(synthetic_dataset(), scale=4, epochs=1, patch_size=16, progress=False)
    >>> model.target, model.scale
    (('tas',), 4)
    """
    if devices is not None:
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise ConfigError(f"devices={devices!r} must be None or an integer >= 1.")
        if devices > 1:
            from .training.distributed import spawn_fit

            if adversarial:
                raise ConfigError(
                    "adversarial=True does not support several processes (devices>1) yet."
                )

            if isinstance(batch_size, int) and batch_size % devices:
                raise ConfigError(
                    f"batch_size={batch_size} cannot be split evenly over devices={devices}. "
                    f"Use a multiple of {devices}."
                )
            kwargs = {k: v for k, v in locals().items() if k in _FIT_PARAMS}
            kwargs.update(kwargs.pop("model_options"))
            kwargs["devices"] = None
            return spawn_fit(devices, (obj,), kwargs)

    import torch

    from . import __version__
    from .data.samples import n_windows, patch_shape, random_patches, to_arrays, whole_fields
    from .losses import get_loss
    from .models import ModelConfig, create_model
    from .models.config import FIT_DERIVED_FIELDS
    from .training.distributed import current_context, dist_requested
    from .training.supervised import (
        LoopOptions,
        read_checkpoint,
        resolve_device,
        seed_everything,
        train_supervised,
    )

    # -- validate every option before touching data ---------------------------------
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1.")
    if (
        isinstance(loader_workers, bool)
        or not isinstance(loader_workers, int)
        or loader_workers < 0
    ):
        raise ConfigError(f"loader_workers={loader_workers!r} must be an integer >= 0.")
    if steps_per_epoch is not None and (
        not isinstance(steps_per_epoch, int) or steps_per_epoch < 1
    ):
        raise ConfigError(f"steps_per_epoch={steps_per_epoch!r} must be None or an integer >= 1.")
    loop = LoopOptions(
        epochs=epochs,
        learning_rate=learning_rate,
        optimizer=optimizer,
        weight_decay=weight_decay,
        scheduler=scheduler,
        scheduler_options=dict(scheduler_options or {}),
        grad_clip=grad_clip,
        precision=precision,
        early_stopping=early_stopping,
        min_delta=min_delta,
        restore_best=restore_best,
        checkpoint_every=checkpoint_every,
        checkpoint_path=None if checkpoint_path is None else os.fspath(checkpoint_path),
        progress=progress,
    )
    if adversarial:
        unsupported = {
            "scheduler": scheduler,
            "grad_clip": grad_clip,
            "checkpoint_path": checkpoint_path,
            "resume": resume,
            "optimizer": None if optimizer == "adam" else optimizer,
            "precision": None if precision == "fp32" else precision,
            "weight_decay": weight_decay or None,
        }
        given = sorted(k for k, v in unsupported.items() if v is not None)
        if given or dist_requested():
            raise ConfigError(
                f"adversarial=True does not support {given or ['several processes']} yet; it "
                "trains with Adam (betas 0.5, 0.999) on one device, with validation and early "
                "stopping. Drop those options, or train with adversarial=False."
            )
    checkpoint = None if resume is None else read_checkpoint(resume)
    loss_fn = get_loss(loss)
    dev = resolve_device(device)
    dist_ctx = current_context(dev)
    if dist_ctx is not None:
        dev = dist_ctx.device
    known = {f.name for f in dataclasses.fields(ModelConfig)} - FIT_DERIVED_FIELDS
    unknown = sorted(set(model_options) - known)
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {unknown} for fit(). Network options are {sorted(known)}; "
            "training options are the named parameters of fit()."
        )

    # -- pair and split --------------------------------------------------------------
    p = pair(
        obj,
        scale=scale,
        target=target,
        lowres=lowres,
        static=static,
        predictors=predictors,
        spatial_dims=spatial_dims,
        time_dim=time_dim,
    )
    train_pair, val_pair = _split_validation(p, val_time, val_fraction)
    ydim, xdim = p.spatial_dims
    window = model_options.get("time_window")
    if window is not None:
        for name, part in (("training", train_pair), ("validation", val_pair)):
            n_steps = 0 if part is None else part.highres.sizes[p.time_dim]
            if part is not None and isinstance(window, int) and n_steps < window:
                raise ConfigError(
                    f"time_window={window} needs at least {window} consecutive time steps, "
                    f"but the {name} period has {n_steps}. Use a smaller time_window or a "
                    "longer period."
                )
    if model_options.get("localcon"):
        model_options["grid_shape"] = (p.highres.sizes[ydim], p.highres.sizes[xdim])
    config = ModelConfig(
        backbone=backbone,
        upsampling=upsampling,
        scale=p.scale,
        in_channels=len(p.target) + len(p.predictors) + len(p.static_names),
        out_channels=len(p.target),
        static_channels=len(p.static_names),
        **model_options,
    )
    rng = seed_everything(seed)
    net = create_model(config)  # weights drawn right after seeding: reproducible

    # -- statistics over the training period (one lazy pass), then arrays -------------
    # one pass over the training data: the statistics and the checks of the values
    # (infinite values, undeclared fill values, gaps in static fields, a constant target)
    fields = [(t, "target", train_pair.highres[t]) for t in p.target]
    if p.mode == "mos":
        fields += [(f"lowres:{t}", "low-resolution target", train_pair.lowres[t]) for t in p.target]
    fields += [(n, "predictor", train_pair.lowres[n]) for n in p.predictors]
    fields += [(n, "static field", p.static[n]) for n in p.static_names]
    summaries = value_summary(fields)
    stats = {
        key: stats_from_summary(s, da.attrs.get("units"))
        for (key, _, da), s in zip(fields, summaries.values(), strict=True)
        if not key.startswith("lowres:")
    }
    lazy = (
        (train_pair.highres[p.target[0]].chunks is not None) if in_memory is None else not in_memory
    )
    arrays = to_arrays(train_pair, stats, lazy=lazy)
    val_arrays = to_arrays(val_pair, stats, lazy=lazy) if val_pair is not None else None
    valid = arrays.valid_cells()
    if not valid.any():
        raise DataError(
            f"The target {list(p.target)} is NaN everywhere in the training period: there is "
            "nothing to learn from. Check the time selection and the missing-value encoding."
        )

    patch = patch_shape(
        patch_size, p.scale, (int(arrays.lowres.shape[-2]), int(arrays.lowres.shape[-1]))
    )
    h, w = arrays.lowres.shape[-2:]
    if steps_per_epoch is None:
        per_field = (h * w) / (patch[0] * patch[1])
        n_samples = n_windows(arrays, config.time_window)
        steps_per_epoch = max(1, math.ceil(n_samples * per_field / batch_size))

    def train_batches(epoch: int):
        return random_patches(
            arrays,
            scale=p.scale,
            patch=patch,
            batch_size=batch_size,
            n_batches=steps_per_epoch,
            rng=rng,
            window=config.time_window,
            workers=loader_workers,
        )

    val_batches = None
    if val_arrays is not None:

        def val_batches():
            return whole_fields(
                val_arrays, scale=p.scale, batch_size=batch_size, window=config.time_window
            )

    fingerprint = {
        "config": config.to_dict(),
        "target": list(p.target),
        "predictors": list(p.predictors),
        "static": list(p.static_names),
        "mode": p.mode,
        "train_period": _period(train_pair),
        "val_period": _period(val_pair) if val_pair else None,
        "stats": {k: [round(v.mean, 6), round(v.std, 6)] for k, v in stats.items()},
        "seed": seed,
        "batch_size": batch_size,
        "patch": list(patch),
        "steps_per_epoch": steps_per_epoch,
        "loss": str(loss),
    }
    if adversarial:
        from .models import ResidualDiscriminator
        from .training.adversarial import train_adversarial

        discriminator = ResidualDiscriminator(config, **dict(discriminator_options or {}))
        history = train_adversarial(
            net,
            discriminator,
            train_batches,
            epochs=loop.epochs,
            pixel_loss=loss_fn,
            pixel_weight=pixel_weight,
            adversarial_weight=adversarial_weight,
            learning_rate=loop.learning_rate,
            discriminator_learning_rate=discriminator_learning_rate or loop.learning_rate,
            device=dev,
            val_batches=val_batches,
            progress=loop.progress,
            callback=callback,
            early_stopping_patience=loop.early_stopping,
            restore_best=loop.restore_best,
        )
    else:
        history = train_supervised(
            net,
            train_batches,
            options=loop,
            loss_fn=loss_fn,
            device=dev,
            val_batches=val_batches,
            rng=rng,
            callback=callback,
            resume=checkpoint,
            fingerprint=fingerprint,
            dist=dist_ctx,
        )

    # -- assemble the model object ---------------------------------------------------
    epochs_coord = np.arange(1, len(history["loss"]) + 1)
    hist = xr.Dataset(
        {
            "loss": (
                "epoch",
                np.asarray(history["loss"]),
                {"long_name": f"training loss ({loss}, normalized units)"},
            ),
            "learning_rate": (
                "epoch",
                np.asarray(history["learning_rate"]),
                {"long_name": "learning rate"},
            ),
            "duration": (
                "epoch",
                np.asarray(history["time"]),
                {"long_name": "epoch duration", "units": "s"},
            ),
        },
        coords={"epoch": ("epoch", epochs_coord, {"long_name": "epoch"})},
    )
    names = {
        "val_loss": f"validation loss ({loss}, normalized units)",
        "pixel_loss": f"generator pixel loss ({loss}, normalized units)",
        "adversarial_loss": "generator adversarial loss (binary cross-entropy)",
        "discriminator_loss": "discriminator loss (binary cross-entropy, real + fake)",
    }
    for key, long_name in names.items():
        if key in history:
            hist[key] = ("epoch", np.asarray(history[key]), {"long_name": long_name})
    if adversarial:
        hist["loss"].attrs["long_name"] = (
            f"generator loss ({adversarial_weight} x adversarial + {pixel_weight} x {loss})"
        )

    hr_grid = _spatial_coords(p.highres, ydim, xdim)
    gm_name, gm = _grid_mapping(obj, p.target)
    hr_grid = hr_grid.merge(gm)
    lr_grid = _spatial_coords(p.lowres, ydim, xdim)
    mask = None if valid.all() else valid
    attrs = {n: dict(p.highres[n].attrs) for n in p.target}
    attrs.update({n: dict(p.lowres[n].attrs) for n in p.predictors})
    attrs.update({n: dict(p.static[n].attrs) for n in p.static_names})
    x_coord = p.highres[xdim] if xdim in p.highres.coords else None
    grid = GridInfo(
        lowres=lr_grid,
        highres=hr_grid,
        y=str(ydim),
        x=str(xdim),
        time_dim=str(p.time_dim),
        periodic=bool(x_coord is not None and is_periodic(x_coord)),
        grid_mapping=gm_name,
    )
    versions = {
        "xr_dl4ds": __version__,
        "torch": torch.__version__,
        "xarray": xr.__version__,
        "numpy": np.__version__,
    }
    training = {
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "custom"),
        "epochs": len(history["loss"]),
        "batch_size": batch_size,
        "patch_size": None if patch_size is None else [patch[0] * p.scale, patch[1] * p.scale],
        "steps_per_epoch": steps_per_epoch,
        "learning_rate": float(learning_rate),
        "loop": loop.fingerprint(),
        "adversarial": bool(adversarial),
        "seed": seed,
        "mode": p.mode,
        "device": str(dev),
        "processes": 1 if dist_ctx is None else dist_ctx.world_size,
        "train_steps": int(arrays.n_samples),
        "val_steps": int(val_arrays.n_samples) if val_arrays else 0,
        "train_period": _period(train_pair),
        "val_period": _period(val_pair) if val_pair else None,
    }
    if not np.isfinite(history["loss"][-1]):
        warnings.warn("The final training loss is not finite.", DL4DSWarning, stacklevel=2)
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    return Downscaler(
        config=config,
        state_dict=state,
        target=p.target,
        predictors=p.predictors,
        static_names=p.static_names,
        stats=stats,
        attrs=attrs,
        grid=grid,
        static=arrays.static,
        static_lowres=arrays.static_lowres,
        mask=mask,
        history=hist,
        training=training,
        versions=versions,
    )


_FIT_PARAMS = frozenset(inspect.signature(fit).parameters) - {"obj", "devices"}


def _period(p: Pair) -> list[str]:
    t = p.highres[p.time_dim].values
    return [str(t[0]), str(t[-1])]
