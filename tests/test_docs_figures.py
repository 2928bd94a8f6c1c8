"""docs/figures/make_figures.py draws every architecture figure from the real networks.

The script runs into a temporary folder; the test checks that it writes every figure and
the parameter table, and that the copies committed under docs/figures (which the
architectures page shows) say what the code draws today: the same texts (block names,
channels, grid sizes, parameter counts) and the same table. Rerun the script after
changing a network: ``python docs/figures/make_figures.py``.
"""

from __future__ import annotations

import html
import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIGURES = DOCS / "figures"


def _load_script():
    name = "xr_dl4ds_docs_make_figures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIGURES / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _texts(svg: Path) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", svg.read_text())]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    script = _load_script()
    out = tmp_path_factory.mktemp("figures")
    return script, out, script.main(out)


def test_writes_every_figure(drawn):
    script, out, paths = drawn
    assert sorted(p.name for p in out.iterdir()) == sorted(script.OUTPUTS)
    assert [p.name for p in paths] == list(script.OUTPUTS)
    assert len(script.FIGURES) == 13
    for name in script.FIGURES:
        svg = out / name
        assert svg.read_text().lstrip().startswith("<?xml"), name
        assert 0 < svg.stat().st_size < 100_000, name
        texts = _texts(svg)
        assert texts and "parameters" in texts[0], name  # the title says how many
        assert "output" in texts, name


def test_figures_follow_the_code(drawn):
    """Recorded, not drawn by hand: the skips and the blocks are those of the code."""
    _, out, _ = drawn
    resnet = _texts(out / "backbone_resnet.svg")
    assert "skip: TransitionBlock (1×1 conv + act)" in resnet
    assert "blocks: 6 × ResidualBlock" in resnet
    assert "add" in resnet
    assert "concatenate channels" not in resnet
    densenet = _texts(out / "backbone_densenet.svg")
    assert "blocks: 6 × (DenseBlock, TransitionBlock)" in densenet
    assert "concatenate channels" in densenet and "add" not in densenet
    convnet = _texts(out / "backbone_convnet.svg")
    assert "add" not in convnet and "concatenate channels" not in convnet
    unet = _texts(out / "backbone_unet.svg")
    assert unet.count("max-pool 2×2") == 3 and unet.count("concatenate channels") == 3
    network = _texts(out / "network_spc.svg")
    assert "bicubic interpolation ×4" in network and "slice [:, :1]" in network
    assert "output.static_branch: ConvBlock (2 × conv 3×3 + act)" in network
    assert "upsampling: SubpixelConvolution ('spc')" in network
    spc = _texts(out / "upsampling_spc.svg")
    assert spc.count("pixel shuffle ×2") == 2  # x4 in two prime stages
    recurrent = _texts(out / "backbone_recurrent.svg")
    assert "backbone.blocks: 6 × RecurrentConvBlock" in recurrent


def test_committed_figures_are_current(drawn):
    script, out, _ = drawn
    assert (FIGURES / "parameters.md").read_text() == (out / "parameters.md").read_text(), (
        "docs/figures/parameters.md is out of date: run python docs/figures/make_figures.py"
    )
    total = 0
    for name in script.FIGURES:
        committed = FIGURES / name
        assert committed.exists(), f"{name} missing: run python docs/figures/make_figures.py"
        assert _texts(committed) == _texts(out / name), (
            f"docs/figures/{name} is out of date: run python docs/figures/make_figures.py"
        )
        assert committed.stat().st_size < 100_000
        total += committed.stat().st_size
    assert total < 1_000_000


def test_architectures_page_shows_every_figure():
    script = _load_script()
    page = (DOCS / "architectures.md").read_text()
    for name in script.FIGURES:
        assert f"figures/{name}" in page, name
    assert "figures/parameters.md" in page
