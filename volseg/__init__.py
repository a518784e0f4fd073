"""volseg: segment a material phase in terabyte-scale chunked X-ray tomograms.

>>> import volseg
>>> volseg.__version__
'0.1.0'
"""

from . import metrics, model, synth, tiling
from ._version import __version__
from .evaluation import Evaluation, evaluate
from .inference import SegmentationResult, open_result, segment
from .microstructure import measure, measure_phases, tpb_edge_counts
from .training import TrainResult, train

__all__ = [
    "Evaluation",
    "SegmentationResult",
    "TrainResult",
    "__version__",
    "evaluate",
    "measure",
    "measure_phases",
    "metrics",
    "model",
    "open_result",
    "segment",
    "synth",
    "tiling",
    "tpb_edge_counts",
    "train",
]
