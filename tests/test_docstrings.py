"""Every public function and class has a numpy-style docstring with a runnable example.

The examples themselves run as doctests (``--doctest-modules`` in pyproject.toml); this
test checks that each public name has one, so a new function cannot ship without.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import volseg

# Modules exempted while their examples are written (none now); empty keeps every module checked.
PENDING: set[str] = set()


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(volseg.__path__, prefix="volseg."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _public_objects() -> list[tuple[str, str]]:
    """(module, name) of every function or class in a module's ``__all__`` defined there."""
    found = []
    for module_name in _public_modules():
        if module_name in PENDING:
            continue
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != module_name:
                continue
            found.append((module_name, name))
    return found


PUBLIC = _public_objects()


def test_public_names_found():
    modules = {module for module, _ in PUBLIC}
    assert {"volseg.tiling", "volseg.inference", "volseg.io.scans"} <= modules
    assert not modules & PENDING


@pytest.mark.parametrize(("module_name", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_docstring_has_summary_and_example(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    doc = inspect.getdoc(obj)
    assert doc, f"{module_name}.{name} has no docstring"
    lines = doc.splitlines()
    assert lines[0].strip(), f"{module_name}.{name}: the docstring starts with a blank line"
    assert len(lines) == 1 or not lines[1].strip(), (
        f"{module_name}.{name}: the summary must be one line followed by a blank line"
    )
    assert "Examples\n--------" in doc, f"{module_name}.{name}: no numpy-style Examples section"
    assert ">>>" in doc, f"{module_name}.{name}: the Examples section has no >>> example"
