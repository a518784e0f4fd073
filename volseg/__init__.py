"""volseg: segment a material phase in terabyte-scale chunked X-ray tomograms.

>>> import volseg
>>> volseg.__version__
'0.1.0'
"""

from ._version import __version__
from .inference import SegmentationResult, open_result, segment

__all__ = ["SegmentationResult", "__version__", "open_result", "segment"]
