"""Intensity normalisation, part of the model: fixed grey values map every tile to ``[0, 1]``.

The same ``(low, high)`` (for example the training data's 0.5 / 99.5 percentiles,
stored in the checkpoint's config) is used for every tile of every scan, never
fitted per tile or per chunk. numpy only.

>>> from volseg.model.normalisation import normalise
>>> normalise(np.array([10, 20]), {"low": 10, "high": 20}).tolist()
[0.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_normalisation", "normalise"]


def fit_normalisation(
    sample: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
) -> dict[str, Any]:
    """Fixed normalisation from a sample of grey values (its low/high percentiles).

    Examples
    --------
    >>> fit_normalisation(np.arange(1001))["low"]
    5.0
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("cannot fit a normalisation: the sample has no finite values.")
    low, high = np.percentile(values, percentiles)
    if not high > low:
        high = low + 1.0
    return {
        "method": "percentile",
        "percentiles": [float(p) for p in percentiles],
        "low": float(low),
        "high": float(high),
    }


def normalise(raw: np.ndarray, normalisation: dict[str, Any]) -> np.ndarray:
    """Map grey values to float32 ``[0, 1]`` with the model's fixed (low, high).

    Examples
    --------
    >>> normalise(np.array([0, 50, 100, 200]), {"low": 0, "high": 100}).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    low = np.float32(normalisation["low"])
    scale = np.float32(1.0 / (float(normalisation["high"]) - float(normalisation["low"])))
    out = np.asarray(raw, dtype=np.float32) - low
    out *= scale
    np.clip(out, 0.0, 1.0, out=out)
    return out
