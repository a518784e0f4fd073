"""The global tile grid, mirrored padding, blend windows and stitching.

Pure numpy: nothing here knows about dask, zarr or torch. The predictor is any
callable that maps a float32 batch of tiles ``(B, tile, tile)`` to a batch of the
same shape, so the whole contract can be tested with trivial predictors.

The contract (see ``docs/tiling.md``):

* A plane of shape ``(H, W)`` is covered by a grid of square tiles whose origins
  along an axis of length ``n`` are ``-margin + k * stride`` for ``k = 0 .. K-1``.
  ``stride = tile - round(tile * overlap)`` and ``margin = (tile - stride) // 2``,
  so every pixel, the border pixels included, lies at least ``margin`` pixels
  inside some tile. The grid depends on ``(n, tile, overlap)`` only, never on
  how the volume is chunked.
* Tile pixels outside the volume are read with numpy ``reflect`` mirroring about
  the *volume* border (``d c b | a b c d | c b a``).
* Every tile prediction is weighted by a blend window with weights > 0 and the
  output is ``sum(w * p) / sum(w)`` over the tiles covering a pixel, summed in
  the fixed global tile order, so a block of any shape and position gives
  bit-identical values to the same pixels computed as part of any other block.

One module per piece: ``grid`` (the global tile grid, fixed or fitted to the
plane), ``read`` (the mirrored read of a block's window), ``blend`` (blend
windows), ``stitch`` (predict and blend the tiles of a block) and ``tta``
(flip/rotate test-time augmentation as a predictor wrapper). Every name below is
importable from ``volseg.tiling`` and loaded on first use.
"""

from __future__ import annotations

from volseg._lazy import attach

# public name -> the submodule that defines it (a submodule name maps to itself)
_LAZY: dict[str, str] = {
    "blend": "blend",
    "grid": "grid",
    "read": "read",
    "stitch": "stitch",
    "tta": "tta",
    "AxisGrid": "grid",
    "PlaneGrid": "grid",
    "auto_plane_grid": "grid",
    "axis_grid": "grid",
    "context_margin": "grid",
    "fitted_axis_grid": "grid",
    "max_auto_tile": "grid",
    "plane_grid": "grid",
    "PAD_MODES": "read",
    "ReadPlan": "read",
    "apply_read_plan": "read",
    "reflect_index": "read",
    "reflected_read_plan": "read",
    "through_plane_index": "read",
    "BLEND_MODES": "blend",
    "blend_window": "blend",
    "Predictor": "stitch",
    "iter_batches": "stitch",
    "stitch_block": "stitch",
    "DIHEDRAL": "tta",
    "FlipRotateTTA": "tta",
    "dihedral_inverse": "tta",
    "dihedral_transform": "tta",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
