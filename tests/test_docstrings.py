"""Every public object of the API page has a numpydoc docstring with an Examples section,
and the examples run as doctests.

"Public" is what ``docs/api.rst`` lists (its autosummary entries, resolved against the
``.. module::`` / ``.. currentmodule::`` above them) plus the public methods and
properties of the classes listed there, so the API page and this test cannot drift apart.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.rst"

# members a class inherits from torch.nn.Module / Exception / a dataclass machinery, whose
# docstrings are not this package's; the classes themselves carry the examples
_SKIP_MEMBERS = {"forward", "extra_repr", "reset_parameters", "with_traceback", "add_note"}


def _resolve(module: str, name: str):
    if module == "xarray":  # DataArray.dl4ds.fit -> the accessor class's method
        cls_name, _, rest = name.partition(".dl4ds.")
        import xr_dl4ds.accessor as acc

        cls = {
            "DataArray": acc.DL4DSDataArrayAccessor,
            "Dataset": acc.DL4DSDatasetAccessor,
        }[cls_name]
        return inspect.getattr_static(cls, rest)
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def api_objects(unique: bool = True) -> list[tuple[str, object]]:
    """(qualified name, object) of every entry of docs/api.rst, then the public methods
    and properties of its classes; ``unique``: each object once (the Dataset accessor
    shares its methods with the DataArray one)."""
    module = "xr_dl4ds"
    out: list[tuple[str, object]] = []
    in_summary = False
    for line in API.read_text().splitlines():
        m = re.match(r"\.\. (?:current)?module:: (\S+)", line)
        if m:
            module, in_summary = m.group(1), False
            continue
        if line.startswith(".. autosummary::"):
            in_summary = True
            continue
        if in_summary:
            entry = line.strip()
            if not entry or entry.startswith(":"):
                continue
            if not line.startswith("   "):
                in_summary = False
                continue
            obj = _resolve(module, entry)
            if callable(obj) or isinstance(obj, property):  # not constants (UNIT_CONTEXTS)
                out.append((f"{module}.{entry}", obj))
    members = []
    for qual, obj in out:
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        for name, member in vars(obj).items():
            if name.startswith("_") or name in _SKIP_MEMBERS:
                continue
            if isinstance(member, property):
                members.append((f"{qual}.{name}", member.fget))
            elif inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
                members.append((f"{qual}.{name}", getattr(member, "__func__", member)))
    if not unique:
        return out + members
    seen: set[int] = set()
    once = []
    for qual, obj in out + members:
        if id(obj) not in seen:
            seen.add(id(obj))
            once.append((qual, obj))
    return once


OBJECTS = api_objects()


def _doc(obj) -> str:
    if isinstance(obj, property):
        obj = obj.fget
    return inspect.getdoc(obj) or ""


def test_the_api_page_is_read() -> None:
    names = [q for q, _ in api_objects(unique=False)]
    assert len(names) > 100
    for expected in (
        "xr_dl4ds.fit",
        "xarray.DataArray.dl4ds.downscale",
        "xarray.Dataset.dl4ds.evaluate",
        "xr_dl4ds.Downscaler.save",
        "xr_dl4ds.metrics.rmse",
        "xr_dl4ds.models.tiling.tiled_forward",
    ):
        assert expected in names


@pytest.mark.parametrize("qual,obj", OBJECTS, ids=[q for q, _ in OBJECTS])
def test_docstring_has_examples(qual, obj) -> None:
    doc = _doc(obj)
    assert doc, f"{qual} has no docstring"
    assert re.search(r"^Examples\n-{8}$", doc, re.M), f"{qual}: no numpydoc Examples section"
    examples = doc.split("Examples\n--------", 1)[1]
    assert ">>>" in examples, f"{qual}: the Examples section has no doctest (>>>)"


def _doctests(qual, obj) -> list[doctest.DocTest]:
    target = obj.fget if isinstance(obj, property) else obj
    finder = doctest.DocTestFinder(recurse=False)
    module = inspect.getmodule(target)
    # like pytest --doctest-modules: the module's namespace, plus numpy and xarray
    globs = {**vars(module), "np": np, "xr": xr} if module else {"np": np, "xr": xr}
    return [t for t in finder.find(target, qual, module=module, globs=globs) if t.examples]


@pytest.mark.parametrize("qual,obj", OBJECTS, ids=[q for q, _ in OBJECTS])
def test_examples_run(qual, obj, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    tests = _doctests(qual, obj)
    if not tests:
        pytest.skip(f"{qual}: no examples (test_docstring_has_examples reports it)")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, f"{qual}: {runner.failures} failing example(s):\n" + "".join(
        report
    )


if os.environ.get("XR_DL4DS_LIST_MISSING_EXAMPLES"):  # pragma: no cover - a helper
    for q, o in OBJECTS:
        if "Examples\n--------" not in _doc(o):
            print(q)
