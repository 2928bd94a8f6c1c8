"""The documentation builds with Sphinx, warnings as errors (``sphinx-build -W``).

The build runs on a copy of ``docs/`` in a temporary directory, so the autosummary pages
it generates and the HTML are not written into the checkout; it reads nothing from the
network (intersphinx is opt-in, see docs/conf.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
pytest.importorskip("numpydoc")
pytest.importorskip("myst_parser")
pytest.importorskip("sphinx_autosummary_accessors")

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_sphinx_build_has_no_warnings(tmp_path) -> None:
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "generated"))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]
        + [str(src), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-6000:]}"
    html = tmp_path / "html"
    for page in ("index", "api", "user-guide", "migrating", "generated/xr_dl4ds.fit"):
        assert (html / f"{page}.html").is_file(), page
    accessor = (html / "generated" / "xarray.DataArray.dl4ds.fit.html").read_text()
    assert "DataArray.dl4ds.fit" in accessor and "Examples" in accessor
