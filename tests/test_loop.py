"""Training-loop options: optimizers, schedules, clipping, precision, early stopping,
checkpoints and resuming a killed run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import train_small

import xr_dl4ds
from xr_dl4ds.exceptions import ConfigError, DL4DSWarning, ModelFileError


def _same_weights(a, b):
    return all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_step_and_cosine_schedules_follow_their_formulas(hr):
    m = train_small(
        hr,
        epochs=3,
        learning_rate=1e-2,
        scheduler="step",
        scheduler_options={"step_size": 1, "gamma": 0.5},
    )
    np.testing.assert_allclose(m.history["learning_rate"].values, [1e-2, 5e-3, 2.5e-3])
    m = train_small(hr, epochs=4, learning_rate=1e-2, scheduler="cosine")
    expected = [1e-2 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    np.testing.assert_allclose(m.history["learning_rate"].values, expected, rtol=1e-6)


def test_plateau_schedule_reacts_to_validation(hr):
    # min threshold so large that no epoch counts as an improvement: the rate drops
    m = train_small(
        hr,
        epochs=3,
        learning_rate=1e-2,
        scheduler="plateau",
        val_fraction=1 / 3,
        scheduler_options={"patience": 0, "factor": 0.5, "threshold": 10.0},
    )
    np.testing.assert_allclose(m.history["learning_rate"].values, [1e-2, 5e-3, 2.5e-3])


def test_adamw_differs_from_adam_with_weight_decay(hr):
    a = train_small(hr, optimizer="adam", weight_decay=0.1)
    b = train_small(hr, optimizer="adamw", weight_decay=0.1)
    c = train_small(hr, optimizer="adamw", weight_decay=0.1)
    assert not _same_weights(a, b) and _same_weights(b, c)
    assert b.training["loop"]["optimizer"] == "adamw"


def test_gradient_clipping_is_applied(hr, monkeypatch):
    seen = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return original(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train_small(hr, grad_clip=0.5, epochs=1, steps_per_epoch=3)
    assert seen == [0.5, 0.5, 0.5]


def test_mixed_precision_falls_back_to_fp32_on_cpu(hr):
    with pytest.warns(DL4DSWarning, match="precision='bf16' needs a CUDA device"):
        m = train_small(hr, precision="bf16")
    assert _same_weights(m, train_small(hr))


def test_early_stopping_stops_and_restores_the_best_epoch(hr):
    # min_delta so large that no later epoch improves on the first one
    m = train_small(hr, epochs=10, val_fraction=1 / 3, early_stopping=2, min_delta=10.0)
    assert m.history.sizes["epoch"] == 3 and m.training["epochs"] == 3
    first_epoch_only = train_small(hr, epochs=1, val_fraction=1 / 3)
    assert _same_weights(m, first_epoch_only)
    kept = train_small(
        hr, epochs=3, val_fraction=1 / 3, early_stopping=2, min_delta=10.0, restore_best=False
    )
    assert _same_weights(kept, train_small(hr, epochs=3, val_fraction=1 / 3))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"optimizer": "sgd"}, r"optimizer='sgd' is not supported.*'adam', 'adamw'"),
        ({"scheduler": "cyclic"}, "scheduler='cyclic'"),
        ({"precision": "fp8"}, "precision='fp8'"),
        ({"grad_clip": -1.0}, "grad_clip=-1.0"),
        ({"early_stopping": 2}, "needs validation data"),
        ({"checkpoint_every": 1}, "checkpoint_path"),
        ({"scheduler": "step", "scheduler_options": {"eta_min": 0}}, r"\['eta_min'\] do not apply"),
        ({"epochs": 0}, "epochs=0 must be an integer >= 1"),
    ],
)
def test_bad_loop_options(hr, options, match):
    with pytest.raises(ConfigError, match=match):
        train_small(hr, **options)


class _Interrupt(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(hr, tmp_path):
    options = {"epochs": 4, "val_fraction": 1 / 3, "dropout_rate": 0.2, "scheduler": "cosine"}
    full = train_small(hr, **options)
    ckpt = tmp_path / "run.ckpt"

    def stop_after_second_epoch(epoch, values):
        if epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_small(
            hr,
            checkpoint_path=ckpt,
            checkpoint_every=1,
            callback=stop_after_second_epoch,
            **options,
        )
    resumed = train_small(hr, resume=ckpt, **options)
    assert _same_weights(resumed, full)
    np.testing.assert_array_equal(resumed.history["loss"].values, full.history["loss"].values)
    with pytest.raises(ConfigError, match=r"\['learning_rate'\] differ"):
        train_small(hr, resume=ckpt, learning_rate=0.5, **options)


def test_resume_after_sigkill(hr, tmp_path):
    options = {"epochs": 3}
    full = train_small(hr, **options)
    ckpt = tmp_path / "run.ckpt"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)  # as in the test process: same float reductions
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import train_small
        from xr_dl4ds.testing import synthetic_dataset
        def die(epoch, values):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        train_small(synthetic_dataset(nt=6, ny=32, nx=48, seed=0), checkpoint_path={str(ckpt)!r},
                    checkpoint_every=1, callback=die, epochs=3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert ckpt.exists() and not list(tmp_path.glob(".*.tmp"))  # no half-written file
    resumed = train_small(hr, resume=ckpt, **options)
    assert _same_weights(resumed, full)


def test_checkpoint_is_not_a_model(hr, tmp_path, model):
    model.save(tmp_path / "model.dl4ds")
    with pytest.raises(ModelFileError, match="not an xr_dl4ds training checkpoint"):
        train_small(hr, resume=tmp_path / "model.dl4ds")
    with pytest.raises(FileNotFoundError):
        train_small(hr, resume=tmp_path / "missing.ckpt")
    ckpt = tmp_path / "end.ckpt"
    train_small(hr, checkpoint_path=ckpt)  # written at the end even without checkpoint_every
    with pytest.raises(ModelFileError):
        xr_dl4ds.load(ckpt)
