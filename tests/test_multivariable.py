from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import train_small

from xr_dl4ds.exceptions import UnitsError, VariableError


@pytest.fixture(scope="module")
def two_vars(hr):
    pr = (1e-5 * (1 + hr["orog"] / 1000) * (1 + 0.1 * (hr["tas"] - 280))).clip(min=0)
    pr = pr.assign_attrs(units="kg m-2 s-1", standard_name="precipitation_flux")
    return hr.assign(pr=pr.astype("float32"))


@pytest.fixture(scope="module")
def joint_model(two_vars):
    return train_small(two_vars, target=["tas", "pr"])


def test_joint_targets_have_their_own_normalization_and_units(joint_model, two_vars):
    m = joint_model
    assert m.target == ("tas", "pr") and m.config.out_channels == 2
    assert m.config.in_channels == 2 + 2  # two targets + two coarse static fields
    assert m.stats["tas"].units == "K" and m.stats["pr"].units == "kg m-2 s-1"
    assert m.stats["tas"].mean == pytest.approx(float(two_vars["tas"].mean()), rel=1e-5)
    assert m.stats["pr"].mean == pytest.approx(float(two_vars["pr"].mean()), rel=1e-4)


def test_joint_downscale(joint_model, two_vars):
    coarse = two_vars[["tas", "pr"]].dl4ds.coarsen(scale=4)
    out = coarse.dl4ds.downscale(joint_model)
    assert list(out.data_vars) == ["tas", "pr"]
    assert out["tas"].attrs["units"] == "K" and out["pr"].attrs["units"] == "kg m-2 s-1"
    # each output lives on its own scale: temperatures near 280 K, fluxes near 1e-5
    assert 250 < float(out["tas"].mean()) < 310
    assert 0 < float(abs(out["pr"]).mean()) < 1e-3
    lazy = coarse.chunk({"time": 2}).dl4ds.downscale(joint_model)
    xr.testing.assert_allclose(lazy.compute(), out, rtol=1e-5, atol=1e-5)
    # units are converted per variable
    per_day = coarse.assign(pr=(coarse["pr"] * 86400).assign_attrs(units="kg m-2 d-1"))
    np.testing.assert_allclose(
        per_day.dl4ds.downscale(joint_model)["pr"].values, out["pr"].values, rtol=1e-4, atol=1e-9
    )
    # a depth rate is not a mass flux without a density: refused, not guessed
    mm_day = coarse.assign(pr=(coarse["pr"] * 86400).assign_attrs(units="mm/day"))
    with pytest.raises(UnitsError, match="'mm/day' to 'kg m-2 s-1'"):
        mm_day.dl4ds.downscale(joint_model)


def test_joint_model_needs_a_dataset(joint_model, two_vars):
    coarse = two_vars["tas"].dl4ds.coarsen(scale=4)
    with pytest.raises(VariableError, match=r"\['tas', 'pr'\] together: pass a Dataset"):
        coarse.dl4ds.downscale(joint_model)
    with pytest.raises(VariableError, match=r"lacks the variable\(s\) \['pr'\]"):
        coarse.to_dataset().dl4ds.downscale(joint_model)
