"""Compatibility: the stable-training pieces moved to :mod:`volseg.training.optim`.

``parse_duration`` moved to :mod:`volseg.training.settings`. This module only
re-exports them under their old path.

>>> from volseg.optim import warmup_cosine
>>> warmup_cosine(0, 10, 2)
0.5
"""

from __future__ import annotations

from .training.optim import WeightEMA, freeze_batchnorm, warmup_cosine
from .training.settings import parse_duration

__all__ = ["WeightEMA", "freeze_batchnorm", "parse_duration", "warmup_cosine"]
