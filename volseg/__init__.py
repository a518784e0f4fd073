"""volseg: segment a material phase in terabyte-scale chunked X-ray tomograms.

Public names are imported on first use (PEP 562, as scikit-image does), so that
``import volseg``, ``volseg --help`` and the light commands do not load torch.

>>> import volseg
>>> volseg.__version__
'0.1.0'
"""

from __future__ import annotations

from ._lazy import attach
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
    "remove_small_components": "microstructure",
    "active_tpb": "microstructure",
    "tortuosity": "microstructure",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
__all__ = [*__all__, "__version__"]
