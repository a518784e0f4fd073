"""volseg: segment a material phase in terabyte-scale chunked X-ray tomograms.

Public names are imported on first use (PEP 562, as scikit-image does), so that
``import volseg``, ``volseg --help`` and the light commands do not load torch.

>>> import volseg
>>> volseg.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# public name -> the module that defines it (a module name maps to itself)
_LAZY: dict[str, str] = {
    "Evaluation": "evaluation",
    "SegmentationResult": "inference",
    "TrainResult": "training",
    "evaluate": "evaluation",
    "measure": "microstructure",
    "measure_phases": "microstructure",
    "metrics": "metrics",
    "model": "model",
    "open_result": "inference",
    "segment": "inference",
    "synth": "synth",
    "tiling": "tiling",
    "tpb_edge_counts": "microstructure",
    "train": "training",
    "remove_small_components": "cleanup",
    "active_tpb": "tpb",
    "tortuosity": "transport",
}

__all__ = [
    "Evaluation",
    "SegmentationResult",
    "TrainResult",
    "__version__",
    "active_tpb",
    "evaluate",
    "measure",
    "measure_phases",
    "metrics",
    "model",
    "open_result",
    "remove_small_components",
    "segment",
    "synth",
    "tiling",
    "tortuosity",
    "tpb_edge_counts",
    "train",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access."""
    if name not in _LAZY:
        raise AttributeError(f"module 'volseg' has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    value = module if _LAZY[name] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
