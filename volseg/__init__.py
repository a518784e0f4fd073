"""volseg: segment a material phase in terabyte-scale chunked X-ray tomograms.

>>> import volseg
>>> volseg.__version__
'0.1.0'
"""

from . import metrics, model, synth, tiling
from ._version import __version__
from .cleanup import remove_small_components
from .evaluation import Evaluation, evaluate
from .inference import SegmentationResult, open_result, segment
from .microstructure import measure, measure_phases, tpb_edge_counts
from .tpb import active_tpb
from .training import TrainResult, train
from .transport import tortuosity

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
