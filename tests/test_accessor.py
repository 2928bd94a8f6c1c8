from __future__ import annotations

import subprocess
import sys

import pytest
import xarray as xr

import xr_dl4ds
from xr_dl4ds.accessor import DL4DSDataArrayAccessor, DL4DSDatasetAccessor


def test_registered_on_both_types(hr):
    assert isinstance(hr.dl4ds, DL4DSDatasetAccessor)
    assert isinstance(hr["tas"].dl4ds, DL4DSDataArrayAccessor)
    for name in ("fit", "downscale", "pair", "coarsen", "spatial_dims"):
        assert hasattr(hr.dl4ds, name) and hasattr(hr["tas"].dl4ds, name)


def test_accessor_holds_no_state(hr):
    acc = hr.dl4ds
    assert vars(acc) == {"_obj": hr}
    hr.dl4ds.coarsen(scale=4)
    assert vars(hr.dl4ds) == {"_obj": hr}


def test_methods_return_new_objects_and_leave_input_untouched(hr, model):
    before = hr.copy(deep=True)
    coarse = hr.dl4ds.coarsen(scale=4)
    coarse.dl4ds.downscale(model)
    hr.dl4ds.pair(scale=4)
    xr.testing.assert_identical(hr, before)


def test_downscale_accessor_identical_to_function(model, hr):
    coarse = hr[["tas"]].dl4ds.coarsen(scale=4)
    a = coarse.dl4ds.downscale(model)
    b = xr_dl4ds.downscale(coarse, model)
    a.attrs.pop("history"), b.attrs.pop("history")  # timestamps may differ by a second
    xr.testing.assert_identical(a, b)


def test_import_is_cheap():
    code = "import sys, xr_dl4ds; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_submodules_are_attributes_of_the_package():
    import subprocess
    import sys

    code = (
        "import sys, xr_dl4ds; ds = xr_dl4ds.tutorial.open_dataset('era5_t2m'); "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; "
        "assert xr_dl4ds.metrics.rmse is not None; print(ds.sizes['lat'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "181"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        xr_dl4ds.nope  # noqa: B018
