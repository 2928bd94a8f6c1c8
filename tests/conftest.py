"""Shared fixtures: small synthetic data and one small model trained once per session."""

from __future__ import annotations

import pytest
import torch

from xr_dl4ds.testing import synthetic_dataset

# a network small enough to train in about a second on one CPU core
SMALL_NET = {"n_filters": 4, "n_blocks": 2}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run every test with one torch thread. The networks in the tests are tiny, and on a
    busy 2-core machine two OpenMP threads spin-waiting for a descheduled peer made
    training steps 5-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def hr():
    return synthetic_dataset(nt=6, ny=32, nx=48, seed=0)


def train_small(data, **kwargs):
    options = {
        "scale": 4,
        "epochs": 2,
        "patch_size": 16,
        "batch_size": 4,
        "steps_per_epoch": 3,
        "progress": False,
        "seed": 0,
        "device": "cpu",
        **SMALL_NET,
    }
    options.update(kwargs)
    return data.dl4ds.fit(**options)


@pytest.fixture(scope="session")
def model(hr):
    return train_small(hr)


@pytest.fixture(scope="session")
def rotated_hr():
    return synthetic_dataset(nt=4, ny=16, nx=24, grid="rotated", seed=1)


@pytest.fixture(scope="session")
def rotated_model(rotated_hr):
    return train_small(rotated_hr)
