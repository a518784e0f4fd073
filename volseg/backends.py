"""Old home of the precision and backend choices and the ONNX runtimes (now in volseg.model).

A compatibility shim, to be removed: each name is looked up, on first use, in the
module of :mod:`volseg.model` that defines it.

>>> from volseg import backends
>>> backends.resolve_backend("torch", "cpu")
'torch'
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it now
_MOVED: dict[str, str] = {
    "BACKENDS": "volseg.model.backend",
    "EXTRAS": "volseg.model.backend",
    "backend_available": "volseg.model.backend",
    "resolve_backend": "volseg.model.backend",
    "PRECISIONS": "volseg.model.precision",
    "cpu_flags": "volseg.model.precision",
    "cpu_supports_bf16": "volseg.model.precision",
    "resolve_precision": "volseg.model.precision",
    "export_onnx": "volseg.model.export",
    "PREDICTORS": "volseg.model.runtimes",
    "OnnxRuntimePredictor": "volseg.model.runtimes",
    "OpenVINOPredictor": "volseg.model.runtimes",
    "cached_predictor": "volseg.model.runtimes",
}

__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MOVED[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
