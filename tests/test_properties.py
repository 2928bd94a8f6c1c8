"""Property-based tests (hypothesis) of invariants that hold for every input.

1. Grids: ``highres_coords(coarsen(fine))`` gives back the fine grid (1-D coordinates
   and CF bounds exactly, 2-D auxiliary lat/lon of rotated grids to second order).
2. Tiling: the output of ``downscale`` / ``tiled_forward`` does not depend on the tile,
   the halo (>= the receptive field), the dask chunks or the batch size.
3. Normalization and units: ``denormalize(normalize(x)) == x``; unit conversions round
   trip and compose.
4. Pairing: the order of the variables in the Dataset changes nothing, and the order of
   the names passed is the order of the channels (``target``, ``predictors``,
   ``static``), consistently in the :class:`~xr_dl4ds.Pair` and in the training arrays.

Hypothesis runs derandomized (the same examples on every run, no example database), so a
failure here is reproducible in CI.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import xr_dl4ds
from xr_dl4ds import grid
from xr_dl4ds.data.normalization import (
    VariableStats,
    compute_stats,
    convert_units,
    denormalize,
    normalize,
    unit_conversion,
)
from xr_dl4ds.data.samples import to_arrays
from xr_dl4ds.models import create_model, valid_combinations
from xr_dl4ds.models.tiling import receptive_field, tiled_forward
from xr_dl4ds.testing import raise_if_dask_computes, rotated_to_geographic, synthetic_dataset

# hypothesis keeps files (found constants, patches of failing examples) in
# ./.hypothesis: not in the checkout
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "xr_dl4ds-hypothesis")
)
settings.register_profile(
    "xr_dl4ds-properties",
    derandomize=True,  # the same examples on every run
    database=None,  # nothing written into the checkout
    deadline=None,  # timings vary on shared CI machines
    print_blob=True,
    # the autouse one_torch_thread fixture (conftest.py) runs once per test, not per
    # example, which is what it is for
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("xr_dl4ds-properties")
PROFILE = settings.get_profile("xr_dl4ds-properties")


def examples(n: int) -> settings:
    """The profile of this module with ``n`` examples (whatever profile is loaded)."""
    return settings(PROFILE, max_examples=n)


EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)

# --------------------------------------------------------------------------- 1. grids

_AXIS_ATTRS = {
    "latlon": (
        {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
        {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
    ),
    "rotated": (
        {"units": "degrees", "standard_name": "grid_latitude", "axis": "Y"},
        {"units": "degrees", "standard_name": "grid_longitude", "axis": "X"},
    ),
    "projected": (
        {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"},
        {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"},
    ),
}
_DIMS = {"latlon": ("lat", "lon"), "rotated": ("rlat", "rlon"), "projected": ("y", "x")}
# (lowest, highest) cell centre along y and x: rotated grids keep away from the
# geographic pole (at rlat = 39.25) so that their 2-D lat/lon stay smooth
_RANGES = {
    "latlon": ((-85.0, 85.0), None),
    "rotated": ((-30.0, 30.0), (-40.0, 40.0)),
    "projected": ((-5e6, 5e6), (-5e6, 5e6)),
}
_STEPS = {"latlon": (0.01, None), "rotated": (0.01, None), "projected": (100.0, 1e5)}


def _wrap(values: np.ndarray, convention: str) -> np.ndarray:
    lo = 0.0 if convention == "0..360" else -180.0
    return lo + np.mod(values - lo, 360.0)


@st.composite
def _regular_axis(
    draw: st.DrawFn, n: int, span: tuple[float, float], steps: tuple[float, float | None]
) -> tuple[np.ndarray, float]:
    """``n`` regular cell centres inside ``span``, ascending or descending: (values, step)."""
    lo, hi = span
    top = (hi - lo) / n if steps[1] is None else steps[1]
    step = draw(st.floats(steps[0], top))
    centre = lo + step * (n - 1) / 2 + draw(st.floats(0.0, 1.0)) * (hi - lo - step * (n - 1))
    sign = draw(st.sampled_from([1.0, -1.0]))
    return centre + sign * step * (np.arange(n) - (n - 1) / 2), sign * step


@st.composite
def fine_grids(draw: st.DrawFn, kind: str, where: str = "") -> dict[str, Any]:
    """A regular high-resolution grid (Dataset ``v(y, x)``) whose sizes are multiples of
    ``scale``: lat/lon (either order, 0..360 or -180..180 longitudes, possibly crossing
    the wrap point), rotated pole (with 2-D lat/lon) or projected, with CF bounds on
    some 1-D coordinates (as coordinates or data variables, in either column order)."""
    scale = draw(st.integers(2, 6), label="scale")
    ny = draw(st.integers(2, 5)) * scale
    nx = draw(st.integers(2, 5)) * scale
    ydim, xdim = _DIMS[kind]
    y_attrs, x_attrs = _AXIS_ATTRS[kind]
    y, dy = draw(_regular_axis(ny, _RANGES[kind][0], _STEPS[kind]))
    convention = draw(st.sampled_from(["0..360", "-180..180"]), label="convention")
    crossing = False
    if kind == "latlon":  # any span up to 360 degrees, wrapped into the convention
        step = draw(st.floats(0.01, 360.0 / nx))
        lo = 0.0 if convention == "0..360" else -180.0
        k, frac = draw(st.integers(0, nx - 1)), draw(st.floats(0.0, 1.0))
        if where == "inside":
            start = lo + frac * (360.0 - nx * step)
        elif where == "across-its-wrap":  # of this convention: cells k + 1... wrap
            start = lo + 360.0 - (k + frac) * step
        else:  # across the wrap point of the other convention (0 or 180)
            start = lo + 180.0 - (k + frac) * step
        raw = start + step * np.arange(nx)
        dx = step * draw(st.sampled_from([1.0, -1.0]))
        x = _wrap(raw if dx > 0 else raw[::-1], convention)
        crossing = bool(np.any(np.diff(x) * np.sign(dx) < 0))
    else:
        x, dx = draw(_regular_axis(nx, _RANGES[kind][1] or _RANGES[kind][0], _STEPS[kind]))
    coords: dict[str, Any] = {
        ydim: (ydim, y, dict(y_attrs)),
        xdim: (xdim, x, dict(x_attrs)),
    }
    if kind == "rotated":
        lat, lon = rotated_to_geographic(y[:, None], x[None, :])
        coords["lat"] = ((ydim, xdim), lat, {"units": "degrees_north", "standard_name": "latitude"})
        coords["lon"] = (
            (ydim, xdim),
            _wrap(lon, convention),
            {"units": "degrees_east", "standard_name": "longitude"},
        )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ds = xr.Dataset({"v": ((ydim, xdim), rng.normal(size=(ny, nx)))}, coords=coords)
    bounds: list[str] = []
    for dim, values, step in ((ydim, y, dy), (xdim, x, dx)):
        if (dim == xdim and crossing) or not draw(st.booleans(), label=f"{dim} bounds"):
            continue
        half = abs(step) / 2
        if draw(st.sampled_from(["low-high", "along-the-axis"])) == "low-high":
            b = np.stack([values - half, values + half], axis=-1)
        else:  # column 0 on the side of the previous cell
            b = np.stack([values - step / 2, values + step / 2], axis=-1)
        name = f"{dim}_bnds"
        ds[dim].attrs["bounds"] = name
        ds[name] = ((dim, "nv"), b)
        if draw(st.booleans(), label=f"{name} as coordinate"):
            ds = ds.set_coords(name)
        bounds.append(name)
    event(f"{'crossing' if crossing else 'not crossing'}{', bounds' if bounds else ''}")
    return {
        "ds": ds,
        "scale": scale,
        "kind": kind,
        "dims": (ydim, xdim),
        "steps": (abs(dy), abs(dx)),
        "crossing": crossing,
        "convention": convention,
        "bounds": bounds,
    }


def _tolerance(values: np.ndarray) -> float:
    """Float64 rounding of block means and linear interpolation of these values."""
    return 1e-9 * (float(np.nanmax(np.abs(values))) + 1.0)


def _circular(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def _check_fine_coords(
    fine: dict[Hashable, xr.Variable] | xr.Dataset | xr.DataArray,
    g: dict[str, Any],
    coarse_lon: np.ndarray,
) -> None:
    """The refined coordinates are those of the original grid ``g``."""
    ds: xr.Dataset = g["ds"]
    ydim, xdim = g["dims"]
    for name in (ydim, xdim):
        want = ds[name].values
        got = np.asarray(fine[name].values)
        assert fine[name].dims == (name,)
        if name == xdim and g["kind"] == "latlon":
            if g["crossing"]:
                # the same longitudes; the fine cells of a coarse grid that does not
                # cross the wrap point are not wrapped (they stay monotonic), those of
                # one that crosses it are wrapped into its convention
                np.testing.assert_array_less(_circular(got, want), _tolerance(want))
                steps = np.sign(np.diff(got))
                if np.all(np.sign(np.diff(coarse_lon)) == steps[0]):
                    assert np.all(steps == steps[0]), got
                else:
                    lo = 0.0 if g["convention"] == "0..360" else -180.0
                    assert np.all((got >= lo - 1e-9) & (got <= lo + 360.0 + 1e-9)), got
                continue
            # not crossing: the same values, nothing wrapped to the other end
        np.testing.assert_allclose(got, want, rtol=0, atol=_tolerance(want))
        assert {k: v for k, v in fine[name].attrs.items() if k != "bounds"} == {
            k: v for k, v in ds[name].attrs.items() if k != "bounds"
        }
    for name in g["bounds"]:
        want = ds[name].values
        np.testing.assert_allclose(fine[name].values, want, rtol=0, atol=_tolerance(want))
    if g["kind"] == "rotated":
        # linear in rlat/rlon, so second order in the coarse spacing (0.013 and 0.051
        # deg / deg**2 at most for lat and lon over this domain)
        h = max(g["steps"]) * g["scale"]
        np.testing.assert_array_less(
            np.abs(fine["lat"].values - ds["lat"].values), 0.05 * h**2 + 1e-9
        )
        np.testing.assert_array_less(
            _circular(fine["lon"].values, ds["lon"].values), 0.2 * h**2 + 1e-9
        )


GRID_KINDS = [
    ("latlon", "inside"),  # longitudes inside their convention
    ("latlon", "across-its-wrap"),  # of their convention (0/360 or -180/180)
    ("latlon", "across-the-other-wrap"),  # around 180 (0..360) or 0 (-180..180)
    ("rotated", ""),
    ("projected", ""),
]


@pytest.mark.parametrize(("kind", "where"), GRID_KINDS)
@given(data=st.data())
@examples(15)
def test_highres_coords_of_coarsened_grid_is_the_grid(kind, where, data):
    g = data.draw(fine_grids(kind, where))
    ds, scale = g["ds"], g["scale"]
    ydim, xdim = g["dims"]
    coarse = xr_dl4ds.coarsen(ds, scale)
    assert coarse.sizes[ydim] * scale == ds.sizes[ydim]
    assert coarse.sizes[xdim] * scale == ds.sizes[xdim]
    # coarse bounds: each coarse cell spans its fine cells, centred on the coarse centre
    for name in g["bounds"]:
        dim = name.removesuffix("_bnds")
        b = coarse[name].values
        step = g["steps"][(ydim, xdim).index(dim)]
        tol = _tolerance(ds[name].values)
        np.testing.assert_allclose(b.mean(axis=1), coarse[dim].values, rtol=0, atol=tol)
        np.testing.assert_allclose(np.abs(b[:, 1] - b[:, 0]), step * scale, rtol=0, atol=tol)
    lon = coarse[xdim].values
    fine = {**grid.highres_coords(coarse, scale), **grid.highres_bounds(coarse, scale)}
    _check_fine_coords(fine, g, lon)
    # the same grid through the public interpolation, a Dataset and a DataArray
    _check_fine_coords(coarse.dl4ds.interpolate(scale=scale, method="nearest"), g, lon)
    da_grid = dict(g, bounds=[])  # a DataArray cannot hold the (n, 2) bounds
    da = coarse["v"].dl4ds.interpolate(scale=scale, method="nearest")
    _check_fine_coords(da, da_grid, lon)


@pytest.mark.parametrize("as_coord", [True, False])
@pytest.mark.parametrize("lazy", [False, True])
def test_coarsen_merges_cf_bounds(as_coord, lazy):
    """Coarse cells span their fine cells: the bounds are not block-averaged (which gave
    [0.5, 1.5] for [0, 1] and [1, 2]), in either order of the grid and of the columns."""
    lat = np.arange(4) + 0.5
    lon = np.arange(4.0, 0.0, -1.0) - 0.5  # descending
    ds = xr.Dataset(
        {"v": (("lat", "lon"), np.zeros((4, 4)))},
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"}),
        },
    )
    ds["lat_bnds"] = (("lat", "nv"), np.stack([lat - 0.5, lat + 0.5], axis=-1))
    ds["lon_bnds"] = (("nv", "lon"), np.stack([lon + 0.5, lon - 0.5]))  # vertex dim first
    if as_coord:
        ds = ds.set_coords(["lat_bnds", "lon_bnds"])
    if lazy:
        ds = ds.chunk({"lat": 2}).assign(lat_bnds=ds["lat_bnds"].chunk({"lat": 1}))
    with raise_if_dask_computes():
        coarse = xr_dl4ds.coarsen(ds, 2)
    assert (coarse["lat_bnds"].chunks is not None) == lazy
    np.testing.assert_array_equal(coarse["lat_bnds"].values, [[0.0, 2.0], [2.0, 4.0]])
    assert coarse["lon_bnds"].dims == ("nv", "lon")
    np.testing.assert_array_equal(coarse["lon_bnds"].values, [[4.0, 2.0], [2.0, 0.0]])
    assert ("lat_bnds" in coarse.coords) == as_coord
    fine = grid.highres_coords(coarse, 2)
    if as_coord:
        np.testing.assert_array_equal(fine["lat_bnds"].values, ds["lat_bnds"].values)
    np.testing.assert_array_equal(fine["lat"].values, lat)


def test_refined_longitude_that_does_not_cross_the_wrap_point_stays_monotonic():
    """A 0.25 degree grid from -0.375 E coarsens to positive longitudes only; refining
    them used to wrap the first fine cells to 359.625 and 359.875."""
    lon = np.arange(-0.375, 3.0, 0.25)[:12]
    da = xr.DataArray(
        np.zeros((4, 12)),
        dims=("lat", "lon"),
        coords={"lat": np.arange(4.0), "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    coarse = xr_dl4ds.coarsen(da, 4)
    assert coarse["lon"].values.min() >= 0
    np.testing.assert_allclose(grid.highres_coords(coarse, 4)["lon"].values, lon, atol=1e-12)
    # across the date line: averaged and refined across it
    lon = np.array([178.5, 179.5, -179.5, -178.5])
    da = da.isel(lon=slice(0, 4)).assign_coords(lon=("lon", lon, {"units": "degrees_east"}))
    coarse = xr_dl4ds.coarsen(da, 2)
    np.testing.assert_allclose(coarse["lon"].values, [179.0, -179.0])
    np.testing.assert_allclose(grid.highres_coords(coarse, 2)["lon"].values, lon)


# --------------------------------------------------------------------------- 2. tiling


def _random_weights(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights everywhere (a fresh or barely trained network's last convolution
    is about zero, so it would return the interpolation and hide tiling errors)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        if not t.is_floating_point():
            out[name] = t.clone()
        elif t.ndim > 1:
            out[name] = torch.randn(t.shape, generator=g, dtype=t.dtype) / math.sqrt(t[0].numel())
        elif name.endswith("running_var"):
            out[name] = 1.0 + torch.rand(t.shape, generator=g, dtype=t.dtype)
        elif name.endswith("running_mean"):
            out[name] = 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype)
        elif name.endswith("bias"):
            out[name] = 0.05 + 0.2 * torch.rand(t.shape, generator=g, dtype=t.dtype)
        else:
            out[name] = 1.0 + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype)
    return out


@functools.cache
def _tiling_case() -> tuple[xr.Dataset, xr.Dataset, xr_dl4ds.Downscaler, tuple[int, int]]:
    """A tiny model trained once per module on a corner of a grid (then given random
    weights), the coarse input on the whole grid (3 time steps of 32 x 32 cells, so that
    windows of a tile and a halo of the receptive field are smaller than the field), the
    high-resolution static fields of the grid and the model's receptive field."""
    hr = synthetic_dataset(nt=3, ny=64, nx=64, scale=2, seed=3)
    trained = hr.isel(lat=slice(0, 16), lon=slice(0, 16)).dl4ds.fit(
        scale=2,
        epochs=1,
        steps_per_epoch=1,
        n_filters=4,
        n_blocks=1,
        attention=True,  # global channel-attention means: the hard part of tiling
        device="cpu",
        progress=False,
        seed=0,
    )
    model = xr_dl4ds.Downscaler(
        config=trained.config,
        state_dict=_random_weights(trained.state_dict, seed=1),
        target=trained.target,
        predictors=trained.predictors,
        static_names=trained.static_names,
        stats=trained.stats,
        attrs=trained.attrs,
        grid=trained.grid,
        static=trained.static,
        static_lowres=trained.static_lowres,
        mask=trained.mask,
        history=trained.history,
        training=trained.training,
        versions=trained.versions,
    )
    coarse = hr[["tas"]].dl4ds.coarsen(scale=2)
    return coarse, hr[["orog", "sftlf"]], model, receptive_field(model.network("cpu"))


@functools.cache
def _untiled(as_dataset: bool) -> xr.DataArray | xr.Dataset:
    coarse, static, model, _ = _tiling_case()
    obj = coarse if as_dataset else coarse["tas"]
    return obj.dl4ds.downscale(model, static=static, device="cpu")


@st.composite
def tilings(draw: st.DrawFn) -> dict[str, Any]:
    coarse, _, _, (ry, rx) = _tiling_case()
    nt, h, w = coarse.sizes["time"], coarse.sizes["lat"], coarse.sizes["lon"]
    # from 4 cells (smaller tiles only take longer: 64 windows of 4 x 4 already)
    tile_y = draw(st.one_of(st.just(-1), st.integers(4, h + 1)))
    tile_x = draw(st.one_of(st.just(-1), st.integers(4, w + 1)))
    tile: Any = (
        tile_y if tile_y == tile_x and draw(st.booleans()) else {"lat": tile_y, "lon": tile_x}
    )
    halo: Any = draw(
        st.one_of(
            st.none(),  # the default: the receptive field
            st.builds(
                lambda a, b: {"lat": ry + a, "lon": rx + b},
                st.integers(0, 2),
                st.integers(0, 2),
            ),
        )
    )
    chunks = {
        "time": draw(st.integers(1, nt)),
        "lat": draw(st.one_of(st.just(-1), st.integers(1, h))),
        "lon": draw(st.one_of(st.just(-1), st.integers(1, w))),
    }
    return {
        "tile": tile,
        "halo": halo,
        "chunks": chunks,
        "batch_size": draw(st.integers(1, 4)),
        "as_dataset": draw(st.booleans()),
    }


@pytest.mark.slow
@given(case=tilings())
@examples(10)
def test_downscale_does_not_depend_on_tiles_halo_chunks(case):
    coarse, static, model, _ = _tiling_case()
    obj = coarse if case["as_dataset"] else coarse["tas"]
    out = obj.chunk(case["chunks"]).dl4ds.downscale(
        model,
        static=static,
        tile=case["tile"],
        halo=case["halo"],
        batch_size=case["batch_size"],
        device="cpu",
    )
    assert out.chunks is not None  # lazy
    expected = _untiled(case["as_dataset"])
    assert type(out) is type(expected)
    tas = expected["tas"] if case["as_dataset"] else expected
    # float32 rounding of the denormalized values, and of the network's output (other
    # window sizes may take other convolution algorithms), in K
    atol = 4 * EPS32 * float(np.abs(tas).max()) + 1e-5 * model.stats["tas"].std
    assert float(tas.std()) > 1.0  # random weights: the network's part is not small
    xr.testing.assert_allclose(out.compute(), expected, rtol=0, atol=atol)


def test_a_halo_smaller_than_the_receptive_field_shows():
    """The check above can see tiling errors: too small a halo gives other values."""
    coarse, static, model, _ = _tiling_case()
    out = coarse["tas"].dl4ds.downscale(model, static=static, tile=4, halo=1, device="cpu")
    assert float(abs(out - _untiled(False)).max()) > 1e-2


_NETS: dict[tuple, tuple[torch.nn.Module, tuple[int, int]]] = {}


def _random_net(key: tuple) -> tuple[torch.nn.Module, tuple[int, int]]:
    """A small random network and its receptive field, built once per configuration."""
    if key not in _NETS:
        backbone, upsampling, scale, attention, normalization, channels, static, dtype = key
        net = create_model(
            backbone,
            upsampling=upsampling,
            scale=scale,
            in_channels=channels + static,
            static_channels=static,
            n_filters=4,
            n_blocks=2 if backbone == "unet" else 1,
            attention=attention,
            normalization=normalization,
        )
        net.load_state_dict(_random_weights(net.state_dict(), seed=len(_NETS)))
        net = net.to(dtype).eval()
        _NETS[key] = (net, receptive_field(net))
    return _NETS[key]


BACKBONES = sorted({b for b, _ in valid_combinations()})


@st.composite
def tiled_networks(draw: st.DrawFn, backbone: str) -> dict[str, Any]:
    upsamplings = [u for b, u in valid_combinations() if b == backbone]
    upsampling = draw(st.sampled_from(upsamplings), label="upsampling")
    # float32 rounding differs between window sizes (other convolution algorithms) and
    # the deeper UNet amplifies it, so it is checked in float64 (see test_tiling.py)
    dtype = torch.float64 if backbone == "unet" else torch.float32
    key = (
        backbone,
        upsampling,
        # the UNet runs at high resolution after "pin": its receptive field at scale 2
        # (22 coarse cells) makes the fields too large for a quick test
        draw(st.integers(3 if backbone == "unet" else 2, 4), label="scale"),
        draw(st.booleans(), label="attention"),
        draw(st.sampled_from([None, "ln", "bn"]), label="normalization"),
        draw(st.integers(1, 2), label="channels"),
        draw(st.integers(0, 1), label="static channels"),
        dtype,
    )
    net, (ry, rx) = _random_net(key)
    # fields larger than two halos, so that windows can be smaller than the field
    n = draw(st.integers(1, 2))
    h, w = 2 * ry + draw(st.integers(1, 8)), 2 * rx + draw(st.integers(1, 8))
    # up to 4 x 4 windows (2 x 2 for the slower UNet), and smaller ones at the ends
    k = 2 if backbone == "unet" else 4
    tile = (draw(st.integers(max(1, h // k), h + 1)), draw(st.integers(max(1, w // k), w + 1)))
    halo = draw(
        st.one_of(
            st.none(),
            st.tuples(st.integers(0, 2), st.integers(0, 2)).map(lambda d: (ry + d[0], rx + d[1])),
        )
    )
    return {
        "key": key,
        "shape": (n, h, w),
        "tile": tile,
        "halo": halo,
        "periodic": draw(st.booleans(), label="periodic"),
        "batch_size": draw(st.integers(1, 4)),
        "seed": draw(st.integers(0, 2**16)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
@given(data=st.data())
@examples(4)
def test_tiled_forward_does_not_depend_on_tiles(backbone, data):
    case = data.draw(tiled_networks(backbone))
    net, _ = _random_net(case["key"])
    _, _, scale, _, _, channels, static_channels, dtype = case["key"]
    n, h, w = case["shape"]
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(n, channels + static_channels, h, w, generator=g)
    static = (
        torch.randn(static_channels, h * scale, w * scale, generator=g) if static_channels else None
    )
    expected = tiled_forward(net, x, static, periodic=case["periodic"])
    if not case["periodic"]:  # one window: the network itself
        with torch.no_grad():
            st_n = None if static is None else static[None].expand(n, -1, -1, -1).to(dtype)
            direct = net(x.to(dtype), st_n)
        torch.testing.assert_close(expected, direct.float(), rtol=0, atol=0)  # float32 out
    actual = tiled_forward(
        net,
        x,
        static,
        tile=case["tile"],
        halo=case["halo"],
        periodic=case["periodic"],
        batch_size=case["batch_size"],
    )
    assert actual.shape == (n, 1, h * scale, w * scale)
    # float32 networks: float32 rounding, which differs between window sizes (other
    # convolution algorithms); float64 ones: the rounding of their output to float32
    tol = (1e-5 if dtype == torch.float32 else 4 * EPS32) * (1.0 + float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol)


# ------------------------------------------------------------ 3. normalization and units


@st.composite
def stats_and_values(draw: st.DrawFn) -> tuple[VariableStats, np.ndarray]:
    mean = draw(st.floats(-1e4, 1e4), label="mean")
    std = draw(st.floats(1e-3, 1e4), label="std")
    units = draw(st.sampled_from([None, "K", "degC", "m", "kg m-2 s-1", "1"]))
    z = draw(st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=12), label="z")
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return VariableStats(mean=mean, std=std, units=units), (mean + std * np.array(z)).astype(dtype)


@given(case=stats_and_values(), lazy=st.booleans())
@examples(30)
def test_denormalize_inverts_normalize(case, lazy):
    stats, values = case
    da = xr.DataArray(values, dims="x", attrs={"units": stats.units})
    z = normalize(da.chunk() if lazy else da, stats)
    assert z.dtype == np.float32 and (z.chunks is not None) == lazy
    back = denormalize(z, stats)
    assert back.dtype == np.float32
    x = values.astype(np.float64)
    # float32 rounding of z (|z| std) and of z * std + mean, each a few eps
    tol = 8 * EPS32 * (np.abs(x) + abs(stats.mean) + np.abs(x - stats.mean))
    np.testing.assert_array_less(np.abs(back.values - x), tol + 1e-30)


UNIT_GROUPS: dict[str, tuple[str | None, list[str]]] = {
    "temperature": (None, ["K", "degC", "degF", "degree_Celsius", "celsius"]),
    "length": (None, ["m", "km", "cm", "mm"]),
    "water": ("hydro", ["mm/day", "mm d-1", "kg m-2 s-1", "kg m-2 d-1", "m s-1", "mm/h"]),
}


@st.composite
def unit_triples(draw: st.DrawFn) -> tuple[str | None, str, str, str]:
    context, names = UNIT_GROUPS[draw(st.sampled_from(sorted(UNIT_GROUPS)))]
    a, b, c = (draw(st.sampled_from(names)) for _ in range(3))
    return context, a, b, c


@given(
    units=unit_triples(),
    values=st.lists(st.floats(-300.0, 300.0), min_size=1, max_size=8),
    dtype=st.sampled_from([np.float32, np.float64]),
)
@examples(30)
def test_convert_units_round_trips_and_composes(units, values, dtype):
    context, a, b, c = units
    x = np.array(values, dtype=dtype)
    da = xr.DataArray(x, dims="x", attrs={"units": a, "long_name": "q"})
    there = convert_units(da, b, context=context)
    assert there.attrs == {"units": b, "long_name": "q"} and there.dtype == dtype
    back = convert_units(there, a, context=context)
    assert back.attrs["units"] == a
    # the rounding of the values and offsets in dtype, and that of the factors of
    # unit_conversion in float64: each is the difference of the converted 1 and 0, which
    # loses the digits of the offset (1e-13 relative error for K <-> degF)
    eps = float(np.finfo(dtype).eps)
    f_ab, o_ab = unit_conversion(a, b, context)
    f_ba, o_ba = unit_conversion(b, a, context)
    lost = abs(o_ab / f_ab) + abs(o_ba / f_ba)
    size = np.abs(x.astype(np.float64)) + abs(o_ab / f_ab)  # of x and of y, in units of a
    tol = 8 * (eps + EPS64 * lost) * size + 1e-300
    np.testing.assert_array_less(np.abs(back.values - x), tol)
    # a -> b -> c is a -> c (to the same rounding, in the units of c)
    f_bc, o_bc = unit_conversion(b, c, context)
    f_ac, o_ac = unit_conversion(a, c, context)
    direct = convert_units(da, c, context=context).values.astype(np.float64)
    via = convert_units(there, c, context=context).values.astype(np.float64)
    lost = abs(o_ab / f_ab) + abs(o_bc / f_bc) + abs(o_ac / f_ac)
    tol = 8 * (eps + EPS64 * lost) * (np.abs(direct) + abs(o_ac) + abs(f_ac * o_ab / f_ab))
    np.testing.assert_array_less(np.abs(via - direct), tol + 1e-300)


# --------------------------------------------------------------------------- 4. pairing

_TARGETS, _PREDICTORS, _STATIC = ("ta", "tb"), ("pa", "pb"), ("sa", "sb", "sc")


@functools.cache
def _pairing_dataset() -> xr.Dataset:
    """Two targets, two predictors (time, lat, lon) and three static fields (lat, lon),
    each with its own values, units and attrs."""
    base = synthetic_dataset(nt=3, ny=8, nx=8, scale=2, with_static=False)
    rng = np.random.default_rng(0)
    data = {}
    for k, name in enumerate(_TARGETS + _PREDICTORS):
        values = 10.0 * k + rng.normal(size=base["tas"].shape)
        data[name] = base["tas"].copy(data=values).assign_attrs(units="K", long_name=name)
    for k, name in enumerate(_STATIC):
        values = 100.0 * k + rng.normal(size=base["tas"].shape[1:])
        data[name] = base["tas"].isel(time=0, drop=True).copy(data=values)
        data[name].attrs = {"units": "m", "long_name": name}
    return xr.Dataset(data, attrs=base.attrs)


def _permutation(items: Sequence[str]) -> st.SearchStrategy[list[str]]:
    return st.permutations(list(items))


@st.composite
def pairing_calls(draw: st.DrawFn) -> dict[str, Any]:
    """A reordering of the Dataset's variables and a choice of arguments in some order."""
    order = draw(_permutation(_TARGETS + _PREDICTORS + _STATIC), label="data_vars order")
    targets = draw(_permutation(_TARGETS))[: draw(st.integers(1, 2))]
    predictors = draw(_permutation(_PREDICTORS))[: draw(st.integers(0, 2))]
    predictors_as_dataset = draw(st.booleans())
    static_mode = draw(st.sampled_from(["default", "names", "dataset"]))
    static = draw(_permutation(_STATIC))[: draw(st.integers(0 if static_mode == "names" else 1, 3))]
    # drop the time-varying variables that are neither target nor predictor
    drop_unused = draw(st.booleans())
    # target=None works when the target is the only time-varying variable left that is
    # not a predictor named in predictors=
    default_target = (
        len(targets) == 1 and drop_unused and not (predictors and predictors_as_dataset)
    )
    return {
        "order": order,
        "target": (
            None
            if default_target and draw(st.booleans())
            else targets[0]
            if len(targets) == 1 and draw(st.booleans())
            else targets
        ),
        "target_names": targets,
        "predictors": predictors,
        "predictors_as_dataset": predictors_as_dataset,
        "static_mode": static_mode,
        "static": static,
        "drop_unused": drop_unused,
    }


def _pair_kwargs(ds: xr.Dataset, call: dict[str, Any], canonical: bool) -> dict[str, Any]:
    """The arguments of ``pair`` for ``call``; ``canonical``: every list sorted."""

    def names(items: list[str]) -> list[str]:
        return sorted(items) if canonical else list(items)

    kwargs: dict[str, Any] = {
        "scale": 2,
        "target": names(call["target_names"]) if canonical else call["target"],
    }
    if call["predictors"]:
        preds = names(call["predictors"])
        kwargs["predictors"] = (
            ds[preds].dl4ds.coarsen(scale=2) if call["predictors_as_dataset"] else preds
        )
    if call["static_mode"] == "names":
        kwargs["static"] = names(call["static"])
    elif call["static_mode"] == "dataset":
        kwargs["static"] = ds[names(call["static"])]
    return kwargs


def _reordered(ds: xr.Dataset, call: dict[str, Any], order: list[str]) -> xr.Dataset:
    """The Dataset with its variables in the order ``order``; for the default static
    fields (every one of the Dataset), only the static fields of the call."""
    used = call["target_names"] + call["predictors"]
    keep = [
        n
        for n in order
        if (n in _STATIC and (call["static_mode"] != "default" or n in call["static"]))
        or (n not in _STATIC and (not call["drop_unused"] or n in used))
    ]
    return ds[keep]


@given(call=pairing_calls())
@example(  # the default target (the only time-varying variable left), default static
    call={
        "order": ["sc", "pb", "ta", "sa", "pa", "sb", "tb"],
        "target": None,
        "target_names": ["ta"],
        "predictors": ["pb", "pa"],
        "predictors_as_dataset": False,
        "static_mode": "default",
        "static": ["sc", "sa"],
        "drop_unused": True,
    }
)
@examples(25)
def test_pairing_follows_the_names_not_the_dataset_order(call):
    full = _pairing_dataset()
    reference_ds = _reordered(full, call, sorted(full.data_vars))
    permuted_ds = _reordered(full, call, call["order"])
    ref = xr_dl4ds.pair(reference_ds, **_pair_kwargs(reference_ds, call, canonical=True))
    p = xr_dl4ds.pair(permuted_ds, **_pair_kwargs(permuted_ds, call, canonical=False))

    # the names, in the order they were passed (or of the Dataset that was passed)
    assert p.target == tuple(call["target_names"])
    assert p.predictors == tuple(call["predictors"])
    if call["static_mode"] == "default":  # the order of the Dataset's variables
        assert p.static_names == tuple(n for n in call["order"] if n in call["static"])
    else:
        assert p.static_names == tuple(call["static"])
    for roles in ("target", "predictors", "static_names"):
        assert sorted(getattr(p, roles)) == sorted(getattr(ref, roles))
    assert (p.mode, p.scale, p.spatial_dims, p.time_dim) == (
        ref.mode,
        ref.scale,
        ref.spatial_dims,
        ref.time_dim,
    )
    # the same variables, each identical to the reference's
    for part in ("highres", "lowres", "static"):
        mine, theirs = getattr(p, part), getattr(ref, part)
        assert sorted(mine.data_vars) == sorted(theirs.data_vars)
        for name in mine.data_vars:
            xr.testing.assert_identical(mine[name], theirs[name])

    # the training arrays: the same channels, permuted as the names
    stats = compute_stats(full)
    arrays, ref_arrays = to_arrays(p, stats), to_arrays(ref, stats)

    def channels(mine: tuple[str, ...], theirs: tuple[str, ...]) -> list[int]:
        return [theirs.index(n) for n in mine]

    lr = channels(p.target + p.predictors, ref.target + ref.predictors)
    np.testing.assert_array_equal(arrays.lowres, np.asarray(ref_arrays.lowres)[:, lr])
    hr = channels(p.target, ref.target)
    np.testing.assert_array_equal(arrays.highres, np.asarray(ref_arrays.highres)[:, hr])
    st_idx = channels(p.static_names, ref.static_names)
    np.testing.assert_array_equal(arrays.static, ref_arrays.static[st_idx])
    np.testing.assert_array_equal(arrays.static_lowres, ref_arrays.static_lowres[st_idx])


def test_reordering_the_dataset_keeps_the_default_channels_up_to_order():
    """With the default static fields the channel order is that of the Dataset's
    variables (the model records it in ``static_names``): the same set of fields."""
    ds = synthetic_dataset(nt=2, ny=8, nx=8, scale=2)
    a = xr_dl4ds.pair(ds, scale=2)
    b = xr_dl4ds.pair(ds[["sftlf", "tas", "orog"]], scale=2)
    assert a.static_names == ("orog", "sftlf") and b.static_names == ("sftlf", "orog")
    for name in a.static_names:
        xr.testing.assert_identical(a.static[name], b.static[name])
