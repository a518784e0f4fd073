"""Blend windows: how much each tile's prediction weighs at each of its pixels.

Every tile prediction is weighted by a window with weights > 0 and the output is
``sum(w * p) / sum(w)`` over the tiles covering a pixel (see
:func:`volseg.tiling.stitch.stitch_block`). A window is computed once per tile
size and mode and shared, read-only.

Examples
--------
>>> BLEND_MODES
('gaussian', 'constant')
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["BLEND_MODES", "blend_window"]

BLEND_MODES = ("gaussian", "constant")


@lru_cache(maxsize=16)
def _blend_window_cached(tile: int, mode: str, sigma_scale: float) -> np.ndarray:
    if mode == "constant":
        window = np.ones((tile, tile), dtype=np.float32)
    else:
        centre = (tile - 1) / 2.0
        sigma = max(sigma_scale * tile, 1e-6)
        profile = np.exp(-0.5 * ((np.arange(tile) - centre) / sigma) ** 2)
        window = np.outer(profile, profile)
        window /= window.max()
        # Weights must stay > 0 so that a pixel covered by a single tile (overlap
        # 0, or tile corners) still gets that tile's value, never 0/0.
        window = np.maximum(window, 1e-4).astype(np.float32)
    window.setflags(write=False)
    return window


def blend_window(tile: int, mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Blend weights for one tile, computed once per (tile, mode) and cached.

    Parameters
    ----------
    tile : int
        Tile edge length.
    mode : {"gaussian", "constant"}
        ``gaussian`` (default): separable Gaussian centred on the tile with
        standard deviation ``sigma_scale * tile``, scaled to a maximum of 1 and
        clipped below at 1e-4 so every pixel keeps a positive weight (MONAI clips
        at 1e-3). ``constant``:
        all ones, a plain average of overlapping predictions.
    sigma_scale : float
        Gaussian width relative to the tile.

    Returns
    -------
    numpy.ndarray
        Read-only float32 array of shape ``(tile, tile)``, all weights > 0.

    Examples
    --------
    >>> w = blend_window(128)
    >>> w.shape, w.dtype, bool(w.min() > 0), float(w.max())
    ((128, 128), dtype('float32'), True, 1.0)
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"blend={mode!r} is not known; use one of {', '.join(BLEND_MODES)}.")
    return _blend_window_cached(int(tile), mode, float(sigma_scale))
