"""The nine DL4DS losses: values against an independent numpy/scipy reference, masks,
shapes, small fields, gradients, mixing weights and errors."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

torch = pytest.importorskip("torch")

from xr_dl4ds.exceptions import ConfigError, DataError, RegistryError  # noqa: E402
from xr_dl4ds.losses import (  # noqa: E402
    WeightedLoss,
    get_loss,
    list_losses,
    masked_dssim,
    masked_mae,
    masked_ms_ssim,
    masked_msdssim,
    masked_mse,
    masked_ssim,
)

NAMES = [
    "dssim",
    "dssim_mae",
    "dssim_mae_mse",
    "dssim_mse",
    "mae",
    "msdssim",
    "msdssim_mae",
    "msdssim_mae_mse",
    "mse",
]
MIXES = {
    "mae": {"mae": 1.0},
    "mse": {"mse": 1.0},
    "dssim": {"dssim": 1.0},
    "dssim_mae": {"dssim": 0.8, "mae": 0.2},
    "dssim_mse": {"dssim": 0.8, "mse": 0.2},
    "dssim_mae_mse": {"dssim": 0.6, "mae": 0.2, "mse": 0.2},
    "msdssim": {"msdssim": 1.0},
    "msdssim_mae": {"msdssim": 0.8, "mae": 0.2},
    "msdssim_mae_mse": {"msdssim": 0.6, "mae": 0.2, "mse": 0.2},
}
POWERS = np.array([0.0448, 0.2856, 0.3001, 0.2363])


# -- an independent reference: plain numpy, float64, scipy's Gaussian filter ------------


def _ref_scale(x, y, m, c1, c2, shift):
    """Luminance, contrast-structure and weights of one 2-D plane ('valid' windows)."""
    h, w = x.shape
    size = min(11, h, w)
    size -= 1 - size % 2
    sigma = 1.5 * size / 11
    r = (size - 1) // 2

    def filt(a):
        return gaussian_filter(a, sigma, mode="constant", radius=r)[r : h - r, r : w - r]

    wsum = filt(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = filt(m * x) / wsum, filt(m * y) / wsum
        vx = filt(m * x * x) / wsum - mx**2
        vy = filt(m * y * y) / wsum - my**2
        cov = filt(m * x * y) / wsum - mx * my
    mx, my = mx - shift, my - shift
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    cs = (2 * cov + c2) / (vx + vy + c2)
    weight = m[r : h - r, r : w - r] * wsum
    return lum, cs, weight


def _ref_constants(y, m):
    valid = m > 0
    tmin, tmax = y[valid].min(), y[valid].max()
    data_range = max(tmax - tmin, 1e-3)
    return (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, min(tmin, 0.0)


def _ref_planes(pred, target, mask):
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    m = np.ones_like(t) if mask is None else np.broadcast_to(np.asarray(mask, float), t.shape)
    p, t, m = (a.reshape(-1, *t.shape[-2:]) for a in (p, t, m))
    p, t = np.where(m > 0, p, 0.0), np.where(m > 0, t, 0.0)
    return p, t, m


def ref_dssim(pred, target, mask=None):
    p, t, m = _ref_planes(pred, target, mask)
    c1, c2, shift = _ref_constants(t, m)
    num = den = 0.0
    for x, y, mm in zip(p, t, m, strict=True):
        lum, cs, w = _ref_scale(x, y, mm, c1, c2, shift)
        ok = w > 0
        num += (w[ok] * (1 - lum[ok] * cs[ok]) / 2).sum()
        den += w.sum()
    return num / den


def _ref_pool(x, y, m):
    h, w = x.shape
    pad = ((0, h % 2), (0, w % 2))
    x, y, m = np.pad(x, pad), np.pad(y, pad), np.pad(m, pad)

    def s(a):
        return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).sum((1, 3))

    ms = s(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = np.where(ms > 0, s(m * x) / ms, 0.0)
        yc = np.where(ms > 0, s(m * y) / ms, 0.0)
    return xc, yc, ms / 4


def ref_msdssim(pred, target, mask=None):
    p, t, m = _ref_planes(pred, target, mask)
    c1, c2, shift = _ref_constants(t, m)
    h, w = p.shape[-2:]
    n = 1
    while n < 4 and min(np.ceil(h / 2**n), np.ceil(w / 2**n)) >= 11:
        n += 1
    powers = POWERS[:n] * POWERS.sum() / POWERS[:n].sum()
    num = den = 0.0
    for x, y, mm in zip(p, t, m, strict=True):
        value, plane_weight = 1.0, None
        for s in range(n):
            if s:
                x, y, mm = _ref_pool(x, y, mm)
            lum, cs, wt = _ref_scale(x, y, mm, c1, c2, shift)
            term = cs if s < n - 1 else lum * cs
            ok = wt > 0
            v = (wt[ok] * term[ok]).sum() / wt.sum() if ok.any() else 1.0
            value *= max(v, 1e-6) ** powers[s]
            if plane_weight is None:
                plane_weight = wt.sum()
        num += plane_weight * (1 - value) / 2
        den += plane_weight
    return num / den


def ref_mae(pred, target, mask=None):
    p, t, m = _ref_planes(pred, target, mask)
    return (m * np.abs(p - t)).sum() / m.sum()


def ref_mse(pred, target, mask=None):
    p, t, m = _ref_planes(pred, target, mask)
    return (m * (p - t) ** 2).sum() / m.sum()


REF = {"mae": ref_mae, "mse": ref_mse, "dssim": ref_dssim, "msdssim": ref_msdssim}


def ref_loss(name, pred, target, mask=None, weights=None):
    mix = MIXES[name]
    weights = weights or tuple(mix.values())
    return sum(w * REF[c](pred, target, mask) for c, w in zip(mix, weights, strict=True))


# -- data ---------------------------------------------------------------------------------


def make(shape, seed=0, offset=0.0, dtype=torch.float64, p_masked=0.3):
    """target: smooth field + noise; pred: target + error; mask with ~p_masked zeros."""
    rng = np.random.default_rng(seed)
    target = gaussian_filter(rng.normal(size=shape), 1.5, axes=(-2, -1)) * 3 + offset
    target = target + 0.2 * rng.normal(size=shape)
    pred = target + 0.5 * gaussian_filter(rng.normal(size=shape), 1.0, axes=(-2, -1))
    pred = pred + 0.1 * rng.normal(size=shape)
    mask = (rng.random(shape) > p_masked).astype(float)
    as_t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    return as_t(pred), as_t(target), as_t(mask)


@pytest.fixture(scope="module")
def batch():
    return make((2, 2, 24, 26))


# -- registry -----------------------------------------------------------------------------


def test_list_losses():
    assert list_losses() == NAMES


def test_single_losses_are_the_plain_functions():
    assert get_loss("mae") is masked_mae
    assert get_loss("mse") is masked_mse
    assert get_loss("dssim") is masked_dssim
    assert get_loss("msdssim") is masked_msdssim


def test_callable_passes_through():
    def mine(pred, target, mask=None):
        return (pred - target).abs().max()

    assert get_loss(mine) is mine


@pytest.mark.parametrize("name", ["ssim", "MAE", "dssim-mae", "", 3, None])
def test_unknown_name(name):
    with pytest.raises(RegistryError, match=r"Unknown loss .*Available: \['dssim', .*'mse'\]"):
        get_loss(name)


# -- values against the reference --------------------------------------------------------


CASES = [
    ((2, 2, 24, 26), 0.0),  # negative values: DL4DS shift; msdssim with 2 scales
    ((3, 1, 20, 17), 5.0),  # positive values: no shift; 1 scale
    ((1, 2, 91, 84), 0.0),  # 4 scales, odd side padded with masked cells
    ((1, 1, 45, 50), 2.0),  # 3 scales
]


@functools.cache
def reference_case(shape, offset):
    """Tensors and the reference value of each component, with and without the mask."""
    pred, target, mask = make(shape, seed=sum(shape), offset=offset)
    p, t, m = pred.numpy(), target.numpy(), mask.numpy()
    refs = {(c, True): f(p, t, m) for c, f in REF.items()}
    refs.update({(c, False): f(p, t) for c, f in REF.items()})
    return pred, target, mask, refs


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, offset", CASES)
def test_matches_reference(name, shape, offset):
    pred, target, mask, refs = reference_case(shape, offset)
    for masked in (True, False):
        expected = sum(w * refs[c, masked] for c, w in MIXES[name].items())
        actual = float(get_loss(name)(pred, target, mask if masked else None))
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float32_close_to_float64(name, batch):
    pred, target, mask = batch
    expected = float(get_loss(name)(pred, target, mask))
    actual = get_loss(name)(pred.float(), target.float(), mask.float())
    assert actual.dtype == torch.float32
    assert float(actual) == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", ["dssim", "msdssim_mae_mse"])
def test_autocast_does_not_lower_precision(name, batch):
    pred, target, mask = (a.float() for a in batch)
    expected = float(get_loss(name)(pred, target, mask))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = get_loss(name)(pred, target, mask)
    assert actual.dtype == torch.float32
    assert float(actual) == pytest.approx(expected, rel=1e-6)


def test_ssim_and_ms_ssim_relate_to_their_losses(batch):
    pred, target, mask = batch
    assert float(masked_ssim(pred, target, mask)) == pytest.approx(
        1 - 2 * float(masked_dssim(pred, target, mask))
    )
    assert float(masked_ms_ssim(pred, target, mask)) == pytest.approx(
        1 - 2 * float(masked_msdssim(pred, target, mask))
    )


def test_unmasked_ssim_is_plain_gaussian_ssim():
    # no mask: the window mean of the textbook formula, with TF's constants
    pred, target, _ = make((1, 1, 30, 30), offset=10.0)
    x, y = pred[0, 0].numpy(), target[0, 0].numpy()

    def filt(a):
        return gaussian_filter(a, 1.5, mode="constant", radius=5)[5:-5, 5:-5]

    mx, my = filt(x), filt(y)
    vx, vy, cov = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * np.ptp(y)) ** 2, (0.03 * np.ptp(y)) ** 2
    ssim = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert float(masked_ssim(pred, target)) == pytest.approx(ssim.mean(), rel=1e-9)


def test_dssim_grows_with_the_error():
    _, target, mask = make((2, 1, 32, 32))
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1), dtype=float)
    for name in ("dssim", "msdssim"):
        values = [float(get_loss(name)(target + a * noise, target, mask)) for a in (0.1, 0.5, 2)]
        assert 0 < values[0] < values[1] < values[2] < 0.5


# -- properties every loss has -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_identical_inputs_give_zero(name, batch):
    _, target, mask = batch
    loss = get_loss(name)
    assert float(loss(target.clone(), target, mask)) == pytest.approx(0.0, abs=1e-12)
    assert float(loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-12)
    const = torch.full((2, 1, 12, 12), 3.0, dtype=torch.float64)
    assert float(loss(const.clone(), const)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_masked_cells_change_nothing(name):
    pred, target, mask = make((2, 2, 45, 44), p_masked=0.4)
    hidden = mask == 0
    rng = torch.Generator().manual_seed(3)
    pred2, target2 = pred.clone(), target.clone()
    pred2[hidden] = 1e3 * torch.randn(int(hidden.sum()), generator=rng, dtype=torch.float64)
    target2[hidden] = -1e3 * torch.rand(int(hidden.sum()), generator=rng, dtype=torch.float64)
    target3 = target.clone()
    target3[hidden] = float("nan")  # NaN under the mask is harmless too
    loss = get_loss(name)
    expected = float(loss(pred, target, mask))
    assert float(loss(pred2, target2, mask)) == pytest.approx(expected, rel=1e-12)
    assert float(loss(pred2, target3, mask)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_no_mask_equals_mask_of_ones(name, batch):
    pred, target, _ = batch
    loss = get_loss(name)
    ones = torch.ones_like(target)
    assert float(loss(pred, target)) == pytest.approx(float(loss(pred, target, ones)), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_mask_broadcasts(name, batch):
    pred, target, mask = batch
    loss = get_loss(name)
    one_channel = mask[:, :1]
    expected = float(loss(pred, target, one_channel.expand_as(target)))
    assert float(loss(pred, target, one_channel)) == pytest.approx(expected, rel=1e-12)
    bools = float(loss(pred, target, mask.bool()))
    assert bools == pytest.approx(float(loss(pred, target, mask)), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_all_masked_gives_zero(name, batch):
    pred, target, mask = batch
    assert float(get_loss(name)(pred, target, torch.zeros_like(mask))) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_time_axis_is_folded(name):
    pred, target, mask = make((2, 3, 2, 22, 21))  # (N, T, C, H, W)
    loss = get_loss(name)
    fold = lambda a: a.reshape(6, 2, 22, 21)  # noqa: E731
    expected = float(loss(fold(pred), fold(target), fold(mask)))
    assert float(loss(pred, target, mask)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hw", [(8, 8), (5, 7), (3, 2), (1, 1)])
def test_small_fields(name, hw):
    pred, target, mask = make((3, 2, *hw), p_masked=0.2)
    mask[0, 0, 0, 0] = 1.0  # at least one valid cell
    actual = float(get_loss(name)(pred, target, mask))
    expected = ref_loss(name, pred.numpy(), target.numpy(), mask.numpy())
    assert np.isfinite(actual) and actual >= 0
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["different", "identical", "constant"])
def test_gradients_are_finite(name, case, batch):
    pred, target, mask = (a.float() for a in batch)
    if case == "identical":
        pred = target.clone()
    elif case == "constant":  # constant target: the data range is floored
        target = torch.full_like(target, 0.7)
        pred = target + 1e-3 * torch.randn(target.shape, generator=torch.Generator())
    pred = pred.clone().requires_grad_(True)
    loss = get_loss(name)(pred, target, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[mask == 0] == 0).all()  # nothing is learned under the mask


@pytest.mark.parametrize("name", NAMES)
def test_nan_under_the_mask_leaves_the_gradients_alone(name):
    pred, target, mask = make((2, 1, 32, 32), p_masked=0.3)
    with_nan = target.clone()
    with_nan[mask.expand_as(target) == 0] = float("nan")
    grads = []
    for t in (target, with_nan):
        p = pred.clone().requires_grad_(True)
        get_loss(name)(p, t, mask).backward()
        grads.append(p.grad)
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


def test_ms_ssim_scales_and_powers():
    # the coarsest scale matters only when it exists: a 40 x 40 field has 2 scales,
    # so MS-SSIM of one plane is cs1^(b1 k) * ssim2^(b2 k) with k = sum(b) / (b1 + b2)
    pred, target, _ = make((1, 1, 40, 40))
    actual = float(masked_msdssim(pred, target))
    assert actual == pytest.approx(ref_msdssim(pred.numpy(), target.numpy()), rel=1e-9)
    # below 21 x 21 it is SSIM to the power sum(b)
    pred, target, _ = make((1, 1, 20, 33))
    ssim = float(masked_ssim(pred, target))
    expected = (1 - ssim ** POWERS.sum()) / 2
    assert float(masked_msdssim(pred, target)) == pytest.approx(expected, rel=1e-9)


# -- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, weights",
    [
        ("dssim_mae", (0.5, 0.5)),
        ("dssim_mse", (1, 3)),
        ("dssim_mae_mse", (0.1, 0.0, 0.9)),
        ("msdssim_mae", (0.3, 0.7)),
        ("msdssim_mae_mse", [1.0, 1.0, 1.0]),
        ("mae", (2.0,)),
        ("msdssim", (0.5,)),
    ],
)
def test_configurable_weights(name, weights, batch):
    pred, target, mask = batch
    loss = get_loss(name, weights=weights)
    assert isinstance(loss, WeightedLoss)
    assert loss.weights == tuple(float(w) for w in weights)
    expected = ref_loss(name, pred.numpy(), target.numpy(), mask.numpy(), weights=weights)
    assert float(loss(pred, target, mask)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if "_" in n])
def test_default_weights_are_dl4ds(name, batch):
    pred, target, mask = batch
    loss = get_loss(name)
    assert loss.weights == tuple(MIXES[name].values())
    parts = {c: float(get_loss(c)(pred, target, mask)) for c in MIXES[name]}
    expected = sum(w * parts[c] for c, w in MIXES[name].items())
    assert float(loss(pred, target, mask)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "name, weights, match",
    [
        ("dssim_mae", (1.0,), r"'dssim_mae' has 2 component.*received 1 weight.*Fix"),
        ("msdssim_mae_mse", (1, 2), r"has 3 component.*w1\*msdssim \+ w2\*mae \+ w3\*mse"),
        ("mae", (1, 1), r"'mae' has 1 component.*received 2.*exactly 1"),
        ("dssim_mse", (-1.0, 1.0), r"received -1.0; allowed: finite numbers >= 0"),
        ("dssim_mse", (float("nan"), 1.0), r"received nan"),
        ("dssim_mse", ("a", 1.0), r"received 'a'"),
        ("dssim_mse", (0, 0), r"all zeros.*at least one weight > 0"),
        ("dssim_mse", 0.5, r"received a float; allowed: a tuple of 2"),
    ],
)
def test_wrong_weights(name, weights, match):
    with pytest.raises(ConfigError, match=match):
        get_loss(name, weights=weights)


def test_weights_with_a_callable():
    with pytest.raises(ConfigError, match="only apply to named losses"):
        get_loss(masked_mae, weights=(1.0,))


# -- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dssim", "msdssim_mae"])
def test_bad_shapes(name):
    loss = get_loss(name)
    with pytest.raises(DataError, match=r"received pred \(4, 4\) and target \(4, 4\)"):
        loss(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(DataError, match=r"same shape"):
        loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(DataError, match=r"does not broadcast"):
        loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(3, 4))


def test_import_does_not_load_torch():
    code = "import sys, xr_dl4ds, xr_dl4ds.losses; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
