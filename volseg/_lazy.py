"""Lazy package namespaces (PEP 562), the way scikit-image's ``lazy.attach`` works.

A package's ``__init__`` lists which submodule defines each public name; the
submodule is imported on first access only, so importing one light submodule
(or the package itself) never loads torch, dask or zarr behind the user's back.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for a lazily loaded package.

    ``names`` maps each public name to the submodule (relative to ``package``, or
    absolute when it starts with ``volseg.``) that defines it; a name that maps to
    itself is a submodule.
    """
    public = sorted(names)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = names[name]
        module = importlib.import_module(
            where if where.startswith("volseg.") else f"{package}.{where}"
        )
        value = module if where == name else getattr(module, name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(public))

    return __getattr__, __dir__, public
