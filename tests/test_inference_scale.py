"""downscale at scale: the network cached per process, the model shipped once per graph,
the same result on every dask scheduler, ensembles and Monte-Carlo realizations, and
new domains with their own static fields."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import train_small

from xr_dl4ds.exceptions import ConfigError, GridError, UnitsError, VariableError
from xr_dl4ds.inference import cache_info, clear_cache
from xr_dl4ds.io import model_id
from xr_dl4ds.testing import raise_if_dask_computes


def assert_same(actual: xr.DataArray, expected: xr.DataArray) -> None:
    """Equal up to float32 rounding (batches of other sizes), same coords and dims."""
    xr.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)  # 3 ulp at 300 K
    xr.testing.assert_identical(actual.coords.to_dataset(), expected.coords.to_dataset())


@pytest.fixture(scope="module")
def coarse(hr):
    return hr["tas"].dl4ds.coarsen(scale=4)


@pytest.fixture(scope="module")
def expected(model, coarse):
    return coarse.dl4ds.downscale(model, device="cpu")


def test_network_is_built_once_per_process(model, coarse, expected):
    clear_cache()
    lazy = coarse.chunk({"time": 1}).dl4ds.downscale(model, device="cpu")
    with dask.config.set(scheduler="threads"):
        out = lazy.compute()
    info = cache_info()
    assert info["misses"] == 1 and info["hits"] == 5 and info["size"] == 1
    assert_same(out, expected)


def test_model_is_one_key_of_the_graph(model, coarse):
    lazy = coarse.chunk({"time": 2}).dl4ds.downscale(model)
    graph = dict(lazy.data.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("dl4ds-models-")]
    assert model_keys == [f"dl4ds-models-{model_id(model)}"]
    tasks = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("dl4ds-downscale")]
    assert len(tasks) == 3
    for k in tasks:  # every task depends on the key instead of carrying the model
        assert model_keys[0] in dask.core.get_dependencies(graph, k)


def test_threaded_processes_and_distributed_give_the_same_result(model, coarse, expected):
    lazy = coarse.chunk({"time": 2}).dl4ds.downscale(model, device="cpu")
    with dask.config.set(scheduler="threads"):
        threads = lazy.compute()
    with dask.config.set(scheduler="processes", num_workers=2):
        processes = lazy.compute()
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        distributed = lazy.compute()
        # the worker built the network once for the three tasks
        (info,) = client.run(cache_info).values()
    for out in (threads, processes, distributed):
        assert_same(out, expected)
    assert info["misses"] == 1 and info["hits"] == 2
    # dask starts workers with OMP_NUM_THREADS=1; the one forward at a time uses both
    assert info["torch_threads"] == 2


def test_device_is_checked_before_any_work(model, coarse):
    import torch

    with pytest.raises(ConfigError, match="'gpu' is not a torch device"):
        coarse.dl4ds.downscale(model, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            coarse.chunk({"time": 2}).dl4ds.downscale(model, device="cuda:1")


def test_ensemble_adds_a_realization_dim(hr, model, coarse, expected):
    other = train_small(hr, seed=1)
    with raise_if_dask_computes():
        lazy = coarse.chunk({"time": 3}).dl4ds.downscale([model, other], device="cpu")
    out = lazy.compute()
    assert out.dims == ("realization", "time", "lat", "lon")
    assert out["realization"].values.tolist() == [0, 1]
    assert out["realization"].attrs["standard_name"] == "realization"
    assert out["model_id"].values.tolist() == [model_id(model), model_id(other)]
    assert_same(out.isel(realization=0, drop=True), expected)
    second = coarse.dl4ds.downscale(other, device="cpu")
    assert_same(out.isel(realization=1, drop=True), second)
    assert float(abs(out.isel(realization=0) - out.isel(realization=1)).max()) > 1e-3


def test_ensemble_members_must_match(hr, model, coarse):
    no_static = train_small(hr, static=[])
    with pytest.raises(ConfigError, match="differ in static fields"):
        coarse.dl4ds.downscale([model, no_static])
    with pytest.raises(ConfigError, match="empty ensemble"):
        coarse.dl4ds.downscale([])


@pytest.fixture(scope="module")
def mc_model(hr):
    return train_small(hr, dropout_rate=0.3, dropout_variant="mcspatialdrop", static=[])


def test_monte_carlo_samples(mc_model, coarse):
    out = coarse.chunk({"time": 2}).dl4ds.downscale(mc_model, samples=3, seed=5, device="cpu")
    assert out.sizes["realization"] == 3
    assert out["realization"].attrs["long_name"] == "Monte-Carlo dropout sample"
    values = out.values
    assert np.isfinite(values).all()
    assert np.abs(values[0] - values[1]).max() > 1e-3  # samples differ...
    again = coarse.dl4ds.downscale(mc_model, samples=3, seed=5, device="cpu")
    np.testing.assert_allclose(again.values, values, atol=1e-5)  # ...reproducibly
    other_seed = coarse.dl4ds.downscale(mc_model, samples=3, seed=6, device="cpu")
    assert np.abs(other_seed.values - values).max() > 1e-3


def test_samples_need_monte_carlo_dropout(model, coarse):
    with pytest.raises(ConfigError, match="needs Monte-Carlo dropout.*dropout_variant='mcdrop'"):
        coarse.dl4ds.downscale(model, samples=4)
    with pytest.raises(ConfigError, match="samples=0 must be an integer >= 1"):
        coarse.dl4ds.downscale(model, samples=0)


def test_new_domain_with_its_own_static_fields(hr, model, coarse, expected):
    # the same fields, moved 100 degrees east: a new domain for the model
    moved_hr = hr.assign_coords(lon=hr.lon + 100.0)
    moved = coarse.assign_coords(lon=coarse.lon + 100.0)
    with pytest.raises(GridError, match="pass its static fields with static="):
        moved.dl4ds.downscale(model)
    static = moved_hr[["orog", "sftlf"]]
    out = moved.dl4ds.downscale(model, static=static, device="cpu")
    np.testing.assert_allclose(out["lon"].values, hr["lon"].values + 100.0)
    np.testing.assert_allclose(out.values, expected.values, atol=1e-4)
    with pytest.raises(VariableError, match=r"static= lacks \['sftlf'\]"):
        moved.dl4ds.downscale(model, static=static[["orog"]])
    with pytest.raises(GridError, match="'lon' coordinate does not match"):
        moved.dl4ds.downscale(model, static=static.assign_coords(lon=static.lon + 0.5))
    with pytest.raises(GridError, match="has 24 cells along 'lon'"):
        moved.dl4ds.downscale(model, static=static.isel(lon=slice(0, 24)))


@pytest.fixture(scope="module")
def precip_model(hr):
    pr = (hr["tas"] - 270.0).clip(min=0.0) * 1e-5
    data = hr.assign(pr=pr.assign_attrs(units="kg m-2 s-1", standard_name="precipitation_flux"))
    return train_small(data.drop_vars("tas"), static=[])


def test_declared_units_conversion(hr, precip_model):
    pr = precip_model
    coarse_si = ((hr["tas"] - 270.0).clip(min=0.0) * 1e-5).dl4ds.coarsen(scale=4)
    coarse_si = coarse_si.rename("pr").assign_attrs(units="kg m-2 s-1")
    coarse_mm = (coarse_si * 86400.0).assign_attrs(units="mm/day")
    with pytest.raises(UnitsError, match=r"'mm/day' to 'kg m-2 s-1'.*units_context='hydro'"):
        coarse_mm.dl4ds.downscale(pr)
    with raise_if_dask_computes():
        lazy = coarse_mm.chunk({"time": 2}).dl4ds.downscale(pr, units_context="hydro")
    expected = coarse_si.dl4ds.downscale(pr)
    assert lazy.attrs["units"] == "kg m-2 s-1"
    xr.testing.assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-9)
    with pytest.raises(UnitsError, match="Unknown units context 'ocean'.*'hydro'"):
        coarse_mm.dl4ds.downscale(pr, units_context="ocean")
    with pytest.raises(UnitsError, match="'K' to 'kg m-2 s-1'"):
        coarse_si.assign_attrs(units="K").dl4ds.downscale(pr, units_context="hydro")


@pytest.mark.parametrize(
    ("backbone", "upsampling", "extra"),
    [
        ("resnet", "spc", {}),
        ("convnet", "rc", {}),
        ("densenet", "pin", {}),
        ("convnext", "dc", {"attention": True}),
        ("unet", "pin", {"n_blocks": 1}),
        ("resnet", "spc", {"time_window": 2}),
    ],
)
def test_tiled_equals_untiled_for_every_backbone(hr, coarse, backbone, upsampling, extra):
    m = train_small(hr, backbone=backbone, upsampling=upsampling, epochs=1, **extra)
    untiled = coarse.dl4ds.downscale(m, device="cpu")
    with raise_if_dask_computes():
        lazy = coarse.chunk({"time": 3}).dl4ds.downscale(
            m, tile={"lat": 3, "lon": 5}, batch_size=2, device="cpu"
        )
    assert_same(lazy.compute(), untiled)


def test_tiles_on_a_periodic_grid_have_no_seam():
    from xr_dl4ds.testing import synthetic_dataset

    ds = synthetic_dataset(nt=4, ny=16, nx=32, periodic=True)
    m = train_small(ds, static=[], epochs=1)
    coarse = ds["tas"].dl4ds.coarsen(scale=4)
    untiled = coarse.dl4ds.downscale(m, device="cpu")
    tiled = coarse.dl4ds.downscale(m, tile=3, device="cpu")
    assert_same(tiled, untiled)
    # rolled around the globe, the output rolls with it (tiles cross the date line)
    rolled = coarse.copy(data=np.roll(coarse.values, 3, axis=-1))
    out = rolled.dl4ds.downscale(m, tile=3, device="cpu")
    np.testing.assert_allclose(out.values, np.roll(untiled.values, 12, axis=-1), atol=1e-4)


def test_a_halo_smaller_than_the_receptive_field_is_approximate(model, coarse, expected):
    from xr_dl4ds.models.tiling import receptive_field

    assert min(receptive_field(model.network("cpu"))) > 1
    approx = coarse.dl4ds.downscale(model, tile=3, halo=0, device="cpu")
    assert float(abs(approx - expected).max()) > 1e-3


def test_tile_and_halo_are_checked(model, coarse):
    with pytest.raises(ConfigError, match=r"names \['time'\], which are not the spatial dims"):
        coarse.dl4ds.downscale(model, tile={"time": 4})
    with pytest.raises(ConfigError, match="tile along 'lat' is 0; it must be an integer >= 1"):
        coarse.dl4ds.downscale(model, tile={"lat": 0, "lon": 4})
    with pytest.raises(ConfigError, match="halo along 'lon' is -2"):
        coarse.dl4ds.downscale(model, tile=4, halo={"lat": 1, "lon": -2})
    # -1: no tiling along that dim
    out = coarse.dl4ds.downscale(model, tile={"lat": -1, "lon": 4}, device="cpu")
    assert out.shape == (6, 32, 48)


def test_two_downscales_in_one_graph_do_not_collide(model, coarse, expected):
    # same model, different inputs: the task keys must differ
    warm = (coarse + 2.0).assign_attrs(coarse.attrs)
    a = coarse.chunk({"time": 2}).dl4ds.downscale(model, device="cpu")
    b = warm.chunk({"time": 2}).dl4ds.downscale(model, device="cpu")
    both = xr.concat([a, b], dim="case").compute()
    assert_same(both.isel(case=0, drop=True), expected)
    assert float((both.isel(case=1) - both.isel(case=0)).mean()) > 1.0
