"""Untrusted model files: pickled code is refused and never runs; damaged or tampered
files give a ModelFileError that names the problem and the fix.

Every hostile file here is built for real (torch.save, pickle, a hand-made zip), and each
test that refuses code also shows that the same bytes *do* run the payload when they are
unpickled without restriction, so that a refusal cannot pass for the wrong reason.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import struct
import zipfile

import pytest
import torch
import xarray as xr

import xr_dl4ds
from xr_dl4ds import cli
from xr_dl4ds.exceptions import ModelFileError
from xr_dl4ds.io import FORMAT, FORMAT_VERSION
from xr_dl4ds.testing import synthetic_dataset

TINY = {
    "scale": 4,
    "epochs": 1,
    "steps_per_epoch": 1,
    "patch_size": None,
    "n_filters": 4,
    "n_blocks": 1,
    "device": "cpu",
    "progress": False,
}


@pytest.fixture(scope="module")
def hr():
    return synthetic_dataset(nt=3, ny=16, nx=24, seed=3)


@pytest.fixture(scope="module")
def tiny(hr, tmp_path_factory):
    """A tiny model (spc upsampling, x4, 16x24 grid), saved, with its payload."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = xr_dl4ds.fit(hr, **TINY)
    finally:
        torch.set_num_threads(before)
    path = tmp_path_factory.mktemp("tiny") / "tiny.dl4ds"
    model.save(path)
    return {"model": model, "path": path, "payload": torch.load(path, weights_only=True)}


@pytest.fixture(scope="module")
def coarse(hr):
    return hr["tas"].dl4ds.coarsen(scale=4)


# ----------------------------------------------------------------------------------------
# pickled code
# ----------------------------------------------------------------------------------------


class _ShellPayload:
    """Unpickles into ``os.system("touch <marker>")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _ExecPayload:
    """Unpickles into ``exec("open(<marker>, 'w').write('pwned')")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


PAYLOADS = {"os.system": _ShellPayload, "exec": _ExecPayload}


def _unsafe_torch_load(path):
    with open(path, "rb") as f:
        try:
            torch.load(f, weights_only=False)
        except Exception:  # the payload ran before whatever fails after it
            pass


def _unsafe_pickle_load(path):
    with open(path, "rb") as f:
        try:
            pickle.load(f)
        except Exception:
            pass


def _torch_saved_metadata(payload, evil, path):
    payload = copy.copy(payload)
    payload["metadata"] = evil  # the header stays valid
    torch.save(payload, path)
    return _unsafe_torch_load


def _torch_saved_in_state_dict(payload, evil, path):
    payload = copy.copy(payload)
    payload["state_dict"] = {**payload["state_dict"], "backbone.head.weight": evil}
    torch.save(payload, path)
    return _unsafe_torch_load


def _legacy_torch_format(payload, evil, path):
    torch.save({"format": FORMAT, "x": evil}, path, _use_new_zipfile_serialization=False)
    return _unsafe_torch_load


def _raw_pickle(payload, evil, path):
    path.write_bytes(pickle.dumps({"format": FORMAT, "format_version": 1, "x": evil}))
    return _unsafe_pickle_load


def _zip_with_malicious_data_pkl(payload, evil, path):
    """A hand-made archive in torch's zip layout whose data.pkl calls the payload."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", pickle.dumps({"format": FORMAT, "x": evil}, protocol=2))
        z.writestr("model/byteorder", "little")
        z.writestr("model/version", "3\n")
    return _unsafe_torch_load


def _deflated_zip_with_malicious_data_pkl(payload, evil, path):
    """As above, compressed (torch.load reads compressed records as well)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/data.pkl", pickle.dumps({"format": FORMAT, "x": evil}, protocol=2))
        z.writestr("model/byteorder", "little")
        z.writestr("model/version", "3\n")
    return _unsafe_torch_load


HOSTILE = {
    "torch.save, payload as metadata": _torch_saved_metadata,
    "torch.save, payload in state_dict": _torch_saved_in_state_dict,
    "legacy torch format": _legacy_torch_format,
    "raw pickle": _raw_pickle,
    "zip with malicious data.pkl": _zip_with_malicious_data_pkl,
    "deflated zip with malicious data.pkl": _deflated_zip_with_malicious_data_pkl,
}
REFUSED = {
    "torch.save, payload as metadata": r"was refused: it holds pickled Python objects",
    "torch.save, payload in state_dict": r"was refused: it holds pickled Python objects",
    "legacy torch format": r"it starts with b'\\x80.*a raw pickle, while model files are zip",
    "raw pickle": r"it starts with b'\\x80.*a raw pickle, while model files are zip",
    "zip with malicious data.pkl": r"was refused: it holds pickled Python objects",
    "deflated zip with malicious data.pkl": r"its zip archive has compressed records",
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_the_payloads_are_live(tmp_path, kind):
    """The payloads below really run code when unpickled without restriction."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(PAYLOADS[kind](marker)))
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", list(PAYLOADS))
@pytest.mark.parametrize("build", list(HOSTILE))
def test_pickled_code_is_refused_and_never_runs(tiny, coarse, tmp_path, build, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.dl4ds"
    unsafe_load = HOSTILE[build](tiny["payload"], PAYLOADS[kind](marker), path)

    with pytest.raises(ModelFileError, match=REFUSED[build]) as info:
        xr_dl4ds.load(path)
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message
    if "refused" in REFUSED[build]:
        # names what was refused (the function the pickle calls) and the fix, and does
        # not repeat torch's advice to retry with weights_only=False
        assert "GLOBAL" in message
        assert ("system" if kind == "os.system" else "exec") in message
        assert "add_safe_globals" not in message
        assert "Do not open it with torch.load(weights_only=False)" in message
        assert "will likely succeed" not in message
    else:
        assert "Pass a file written by Downscaler.save()" in message
        assert "posix" not in message and "exec" not in message  # refused before unpickling

    # downscale(path) refuses the same file, and reading from a file object too
    with pytest.raises(ModelFileError, match=REFUSED[build]):
        xr_dl4ds.downscale(coarse, path, device="cpu")
    with pytest.raises(ModelFileError, match=REFUSED[build]):
        xr_dl4ds.load(io.BytesIO(path.read_bytes()))
    assert not marker.exists()

    # the very same bytes run the payload when unpickled without restriction
    unsafe_load(path)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE:UserWarning")
def test_torch_environment_override_does_not_enable_pickled_code(tiny, tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's default to unsafe; the model
    loader passes weights_only=True explicitly, which the variable does not override."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.dl4ds"
    _torch_saved_metadata(tiny["payload"], _ExecPayload(marker), path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelFileError, match="was refused"):
        xr_dl4ds.load(path)
    assert not marker.exists()
    with open(path, "rb") as f:  # the variable is live: torch.load's default runs it
        try:
            torch.load(f)
        except Exception:
            pass
    assert marker.exists()


def test_cli_refuses_pickled_code(tiny, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.dl4ds"
    _torch_saved_metadata(tiny["payload"], _ShellPayload(marker), path)
    out = tmp_path / "fine.nc"
    assert cli.main(["downscale", str(path), str(tmp_path / "in.nc"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-dl4ds: error: ") and "was refused" in err
    assert "Traceback" not in err and not out.exists() and not marker.exists()


# ----------------------------------------------------------------------------------------
# damaged and tampered files
# ----------------------------------------------------------------------------------------


def _meta(p, change):
    meta = json.loads(p["metadata"])
    change(meta)
    p["metadata"] = json.dumps(meta)


def _set_config(**values):
    return lambda p: _meta(p, lambda m: m["config"].update(values))


def _set_array(name, value):
    def change(p):
        p["arrays"][name] = value

    return change


def _set_weight(name, value):
    def change(p):
        p["state_dict"][name] = value

    return change


def _drop_weight(p):
    del p["state_dict"]["output.final.conv2.bias"]


def _extra_weight(p):
    p["state_dict"]["backbone.extra.weight"] = torch.zeros(3)


def _float64_lat(n):
    return torch.linspace(0, 1, n, dtype=torch.float64)


FIX = "save the model again"
TAMPERED = {
    # (change, what the message must say)
    "scale 2 in the metadata": (
        _set_config(scale=2),
        r"config scale=2, but the static fields are 16x24 on the high-res grid and 4x6 on "
        r"the low-res grid \(they imply scale 4\)",
    ),
    "scale 8 in the metadata": (_set_config(scale=8), r"config scale=8, .*imply scale 4"),
    "conv weight of the wrong shape": (
        _set_weight("backbone.head.weight", torch.zeros(4, 3, 5, 5)),
        r"weight 'backbone.head.weight' has shape \(4, 3, 5, 5\) in the file, but the "
        r"configured network \(resnet\+spc x4, n_filters=4, n_blocks=1\) needs \(4, 3, 3, 3\)",
    ),
    "weight missing": (_drop_weight, r"1 weight tensor\(s\) of the configured network are "),
    "weight added": (_extra_weight, r"1 weight tensor\(s\) do not belong to the configured"),
    "integer weight": (
        _set_weight("backbone.head.bias", torch.zeros(4, dtype=torch.int64)),
        r"weight 'backbone.head.bias' has dtype torch.int64, expected torch.float32",
    ),
    "huge n_filters (never allocated)": (
        _set_config(n_filters=10**7),
        r"n_filters=10000000, n_blocks=1\) needs \(10000000, 3, 3, 3\)",
    ),
    "static field with a wrong row count": (
        _set_array("static", torch.zeros(2, 15, 24)),
        r"static fields are 15x24 on the high-res grid and 4x6",
    ),
    "static field with a wrong field count": (
        _set_array("static", torch.zeros(3, 16, 24)),
        r"the high-res static array holds 3 fields, not the 2 named",
    ),
    "low-res static of the wrong size": (
        _set_array("static_lowres", torch.zeros(2, 4, 5)),
        r"config scale=4, but the static fields are 16x24 on the high-res grid and 4x5",
    ),
    "high-res latitudes of the wrong length": (
        _set_array("grid/highres/lat", _float64_lat(15)),
        r"the high-res grid has 15 'lat' coordinates, but the high-res static fields have 16",
    ),
    "low-res longitudes of the wrong length": (
        _set_array("grid/lowres/lon", _float64_lat(7)),
        r"the low-res grid has 7 'lon' coordinates, but the low-res static fields have 6",
    ),
    "2-d latitude array for a 1-d coordinate": (
        _set_array("grid/highres/lat", torch.zeros(16, 2, dtype=torch.float64)),
        r"incomplete or damaged \(ValueError: dimensions \('lat',\) must have the same length",
    ),
    "spatial dim renamed": (
        lambda p: _meta(p, lambda m: m["grid"].update(y="rlat")),
        r"grid variable 'lat' has dims \('lat',\), which include neither of the spatial "
        r"dims y='rlat', x='lon'",
    ),
    "grid coordinate of dtype object": (
        lambda p: _meta(p, lambda m: m["grid"]["highres"]["lat"].update(dtype="object")),
        r"grid/highres/lat has the dtype object; grid variables are numeric",
    ),
    "mask of the wrong shape": (
        _set_array("mask", torch.ones(1, 16, 23, dtype=torch.bool)),
        r"the mask has shape \(1, 16, 23\) and dtype bool; expected \(1, 16, 24\) and bool",
    ),
    "one static name less": (
        lambda p: _meta(p, lambda m: m.update(static_names=["orog"])),
        r"config static_channels=2, but there are 1 static fields",
    ),
    "a second target": (
        lambda p: _meta(p, lambda m: m.update(target=["tas", "pr"])),
        r"config out_channels=1, but there are 2 target variable\(s\)",
    ),
    "statistics missing": (
        lambda p: _meta(p, lambda m: m["stats"].pop("orog")),
        r"no normalization statistics for 'orog'",
    ),
    "zero standard deviation": (
        lambda p: _meta(p, lambda m: m["stats"]["tas"].update(std=0.0)),
        r"the normalization statistics of 'tas' \(mean=.*, std=0.0\) must be finite",
    ),
    "unknown backbone": (
        _set_config(backbone="evil"),
        r"needs a network part that is not registered in this session \(Unknown backbone "
        r"'evil'.*import the plug-in before loading the model; otherwise the file is damaged",
    ),
    "unknown config key": (
        _set_config(exec="rm -rf /"),
        r"incomplete or damaged \(ConfigError: ModelConfig.from_dict: unknown key\(s\) \['exec'\]",
    ),
    "metadata that is not JSON": (
        lambda p: p.update(metadata="{not json"),
        r"incomplete or damaged \(JSONDecodeError",
    ),
    "metadata that is not text": (
        lambda p: p.update(metadata=[1, 2]),
        r"'metadata' is a list, not JSON text",
    ),
    "deeply nested metadata": (
        lambda p: p.update(metadata="[" * 100_000 + "]" * 100_000),
        r"incomplete or damaged \(RecursionError",
    ),
    "attribute array with a gigabyte item": (
        lambda p: _meta(
            p,
            lambda m: m["attrs"]["tas"].update(bomb={"__ndarray__": ["x"], "dtype": "U99999999"}),
        ),
        r"an attribute array has the dtype <U99999999, too large an item",
    ),
    "state_dict holding text": (
        _set_weight("backbone.head.bias", "0.0"),
        r"'state_dict' holds entries that are not tensors: \['backbone.head.bias'\]",
    ),
    "arrays missing": (lambda p: p.pop("arrays"), r"'arrays' is a NoneType, not a dict of"),
    "static missing": (
        lambda p: p["arrays"].pop("static"),
        r"incomplete or damaged \(KeyError: 'static'\)",
    ),
    "newer format version": (
        lambda p: p.update(format_version=FORMAT_VERSION + 1),
        rf"format version {FORMAT_VERSION + 1}, newer than this xr_dl4ds reads \(version "
        rf"{FORMAT_VERSION}\). Upgrade xr_dl4ds: pip install -U xr_dl4ds",
    ),
    "format version as text": (
        lambda p: p.update(format_version="1"),
        r"invalid model-file format version '1' \(allowed: an integer from 1 to",
    ),
    "format version True": (
        lambda p: p.update(format_version=True),
        r"invalid model-file format version True",
    ),
    "no header": (lambda p: p.pop("format"), r"is not an xr_dl4ds model file \(no 'xr_dl4ds"),
}
NEEDS_NO_SAVE_AGAIN = {"newer format version", "no header", "unknown backbone"}


def _tampered(tiny, tmp_path, change):
    payload = copy.deepcopy(tiny["payload"])
    change(payload)
    path = tmp_path / "tampered.dl4ds"
    torch.save(payload, path)
    return path


def test_an_untampered_copy_loads(tiny, coarse, tmp_path):
    """The control: the payload saved again as the tests below save it loads and gives
    the same values, so each failure below comes from its one change."""
    path = _tampered(tiny, tmp_path, lambda p: None)
    expected = coarse.dl4ds.downscale(tiny["model"], device="cpu")
    xr.testing.assert_identical(
        xr_dl4ds.downscale(coarse, path, device="cpu").drop_attrs(), expected.drop_attrs()
    )


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_file_gives_a_clear_error(tiny, coarse, tmp_path, case):
    change, problem = TAMPERED[case]
    path = _tampered(tiny, tmp_path, change)
    with pytest.raises(ModelFileError, match=problem) as info:
        xr_dl4ds.load(path)
    message = str(info.value)
    assert str(path) in message
    if case not in NEEDS_NO_SAVE_AGAIN:
        assert FIX in message.lower(), message
    with pytest.raises(ModelFileError, match=problem):
        xr_dl4ds.downscale(coarse, path, device="cpu")  # downscale takes a path too


def test_wrong_scale_is_caught_even_when_the_weights_fit(hr, coarse, tmp_path):
    """With resize-convolution upsampling the weights do not depend on the scale, so a
    file that claims scale 2 for a x4 model fits its weights: the grids give it away."""
    torch.set_num_threads(1)
    model = xr_dl4ds.fit(hr, **{**TINY, "upsampling": "rc"})
    model.save(tmp_path / "rc.dl4ds")
    payload = torch.load(tmp_path / "rc.dl4ds", weights_only=True)
    _set_config(scale=2)(payload)
    torch.save(payload, tmp_path / "rc2.dl4ds")
    with pytest.raises(ModelFileError) as info:
        xr_dl4ds.load(tmp_path / "rc2.dl4ds")
    message = str(info.value)
    assert "config scale=2" in message and "(they imply scale 4)" in message
    assert "weight" not in message  # the weights themselves fit

    # the control: the network of the tampered config does accept those weights
    from xr_dl4ds.models import ModelConfig, create_model

    config = ModelConfig.from_dict(json.loads(payload["metadata"])["config"])
    create_model(config).load_state_dict(payload["state_dict"])


@pytest.mark.parametrize("keep", [0, 4, 100, 0.5, -200, -22])
def test_truncated_file(tiny, coarse, tmp_path, keep):
    data = tiny["path"].read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "cut.dl4ds"
    path.write_bytes(data[:n])
    match = "it is empty" if n == 0 else "truncated or corrupt"
    with pytest.raises(ModelFileError, match=match):
        xr_dl4ds.load(path)
    with pytest.raises(ModelFileError, match=match):
        xr_dl4ds.downscale(coarse, path, device="cpu")


def test_flipped_byte_in_a_tensor(tiny, tmp_path):
    """torch.load does not check the CRC-32 of tensor records: a byte flipped on disk
    would load as a different weight. The loader checks every record."""
    data = bytearray(tiny["path"].read_bytes())
    with zipfile.ZipFile(tiny["path"]) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
    offset = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    data[offset + 30 + name_len + extra_len + 2] ^= 0xFF  # the third byte of the tensor
    path = tmp_path / "flipped.dl4ds"
    path.write_bytes(bytes(data))
    with pytest.raises(
        ModelFileError, match=r"the record '.*data/0' of its zip archive fails its CRC-32 check"
    ):
        xr_dl4ds.load(path)
    # the control: torch alone loads the damaged tensor without noticing
    damaged = torch.load(path, weights_only=True)
    intact = tiny["payload"]
    assert damaged.keys() == intact.keys()
    differs = [
        k
        for part in ("state_dict", "arrays")
        for k in intact[part]
        if not torch.equal(damaged[part][k], intact[part][k])
    ]
    assert len(differs) == 1


def test_directory_missing_and_foreign_files(tiny, coarse, hr, tmp_path):
    folder = tmp_path / "model.dl4ds"
    folder.mkdir()
    with pytest.raises(ModelFileError, match=r"is a directory, not a model file\. Pass the"):
        xr_dl4ds.load(folder)
    with pytest.raises(ModelFileError, match="is a directory"):
        xr_dl4ds.downscale(coarse, folder, device="cpu")
    with pytest.raises(FileNotFoundError, match="No such model file"):
        xr_dl4ds.load(tmp_path / "missing.dl4ds")
    with pytest.raises(FileNotFoundError, match="No such model file"):
        xr_dl4ds.downscale(coarse, tmp_path / "missing.dl4ds", device="cpu")

    hr.to_netcdf(tmp_path / "data.nc")
    with pytest.raises(ModelFileError, match=r"could not be read as an xr_dl4ds model file: it"):
        xr_dl4ds.load(tmp_path / "data.nc")
    other = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="is not an xr_dl4ds model file"):
        xr_dl4ds.load(other)


def test_cli_refuses_a_tampered_file(tiny, tmp_path, capsys):
    path = _tampered(tiny, tmp_path, _set_config(scale=2))
    out = tmp_path / "fine.nc"
    assert cli.main(["downscale", str(path), str(tmp_path / "in.nc"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xr-dl4ds: error: ") and "config scale=2" in err
    assert "Traceback" not in err and not out.exists()
