"""Sphinx configuration of the xr_dl4ds documentation.

Build from the repository root with::

    python -m sphinx -b html -W --keep-going docs docs/_build/html

Links into the Python, xarray, numpy, torch and dask docs (intersphinx) need their
inventories from the network, so they are opt-in: set ``XR_DL4DS_DOCS_INTERSPHINX=1``.
The default build reads nothing from the network.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from pathlib import Path

import sphinx_autosummary_accessors

# the package from this checkout, also when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# torch is a hard dependency; mock it only where it is missing (e.g. a light docs build)
autodoc_mock_imports: list[str] = []
if importlib.util.find_spec("torch") is None:
    autodoc_mock_imports.append("torch")

import xr_dl4ds  # noqa: E402  (registers the .dl4ds accessors that the API page documents)

# -- project ---------------------------------------------------------------------------
project = "xr_dl4ds"
author = "The xr_dl4ds developers"
copyright = f"{datetime.date.today().year}, {author}"
release = xr_dl4ds.__version__
version = ".".join(release.split(".")[:2])

# -- general ---------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_autosummary_accessors",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc writes the types from the docstrings
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # torch.nn.Module docstrings are not about this package

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx -----------------------------------------------------------------------
_INTERSPHINX = {
    "python": ("https://docs.python.org/3/", None),
    "xarray": ("https://docs.xarray.dev/en/stable/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "dask": ("https://docs.dask.org/en/stable/", None),
}


intersphinx_mapping: dict = _INTERSPHINX if os.environ.get("XR_DL4DS_DOCS_INTERSPHINX") else {}

# -- html ------------------------------------------------------------------------------
if importlib.util.find_spec("pydata_sphinx_theme") is not None:
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {"show_toc_level": 2}
else:
    html_theme = "alabaster"
    html_theme_options = {
        "description": "Deep-learning downscaling of gridded climate data, xarray-native",
        "fixed_sidebar": True,
    }
html_title = f"xr_dl4ds {release}"
