from __future__ import annotations

import numpy as np

from xr_dl4ds.data.samples import TrainingArrays, n_windows, random_patches, whole_fields


def _arrays(n=5, c=2, h=4, w=6, s=2, cs=1):
    # value = 1000*t + 100*channel + 10*row + col: every cell says where it came from
    t, ch, r, col = np.meshgrid(
        np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij"
    )
    lowres = (1000 * t + 100 * ch + 10 * r + col).astype(np.float32)
    T, r2, c2 = np.meshgrid(np.arange(n), np.arange(h * s), np.arange(w * s), indexing="ij")
    highres = (1000 * T + 10 * r2 + c2).astype(np.float32)[:, None]
    static = np.broadcast_to(-(10 * r2[0] + c2[0]), (cs, h * s, w * s)).astype(np.float32)
    static_lr = np.full((cs, h, w), -1.0, np.float32)
    return TrainingArrays(lowres=lowres, static_lowres=static_lr, static=static, highres=highres)


def test_patches_are_aligned_between_grids_and_offsets_are_high_res():
    a = _arrays()
    (batch,) = random_patches(
        a, scale=2, patch=(2, 3), batch_size=4, n_batches=1, rng=np.random.default_rng(0)
    )
    assert batch.lowres.shape == (4, 3, 2, 3) and batch.target.shape == (4, 1, 4, 6)
    for b in range(4):
        t = int(batch.lowres[b, 0, 0, 0] // 1000)
        row, col = int(batch.lowres[b, 0, 0, 0] % 100 // 10), int(batch.lowres[b, 0, 0, 0] % 10)
        assert tuple(batch.offset[b]) == (2 * row, 2 * col)
        assert batch.target[b, 0, 0, 0] == 1000 * t + 10 * (2 * row) + 2 * col
        assert batch.static[b, 0, 0, 0] == -(10 * 2 * row + 2 * col)
        np.testing.assert_array_equal(batch.lowres[b, 2], -1.0)  # coarse static channel last


def test_windows_are_consecutive_steps_with_static_on_every_frame():
    a = _arrays(n=5)
    assert n_windows(a, 3) == 3 and n_windows(a, None) == 5
    (batch,) = random_patches(
        a, scale=2, patch=(4, 6), batch_size=6, n_batches=1, rng=np.random.default_rng(1), window=3
    )
    assert batch.lowres.shape == (6, 3, 3, 4, 6) and batch.target.shape == (6, 3, 1, 8, 12)
    for b in range(6):
        times = batch.lowres[b, :, 0, 0, 0] // 1000
        np.testing.assert_array_equal(np.diff(times), [1, 1])
        assert times[0] <= 2
        np.testing.assert_array_equal(batch.target[b, :, 0, 0, 0] // 1000, times)
        np.testing.assert_array_equal(batch.lowres[b, :, 2], -1.0)


def test_validation_windows_cover_every_step():
    a = _arrays(n=7)
    batches = list(whole_fields(a, scale=2, batch_size=2, window=3))
    starts = np.concatenate([b.lowres[:, 0, 0, 0, 0] // 1000 for b in batches])
    np.testing.assert_array_equal(starts, [0, 3, 4])
    covered = set()
    for s in starts:
        covered |= set(range(int(s), int(s) + 3))
    assert covered == set(range(7))
    spatial = list(whole_fields(a, scale=2, batch_size=3))
    assert [b.lowres.shape[0] for b in spatial] == [3, 3, 1]
