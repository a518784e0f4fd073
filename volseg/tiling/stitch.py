"""Stitching: predict every tile that touches a block and blend them into its pixels.

The predictor is any callable that maps a float32 batch of tiles ``(B, tile, tile)``
to a batch of the same shape (:data:`Predictor`), so the whole contract can be
tested with trivial predictors. :func:`stitch_block` runs in named steps: the crop
of each touching tile to the block (:func:`_tile_crops`), the sum of their blend
weights (:func:`_weight_sum`), batches of tiles cut from the window
(:func:`_tile_batches`), predicted in order (:func:`_predict_in_order`) and
blended into the block (:func:`_blend_batch`).

Examples
--------
>>> [len(batch) for batch in iter_batches(5, 2)]
[2, 2, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from .blend import blend_window
from .grid import PlaneGrid

__all__ = ["Predictor", "iter_batches", "stitch_block"]

# A batch of float32 tiles (B, tile, tile) -> predictions of the same shape (or
# (B, C, tile, tile) with channels); may also have submit/collect (see stitch_block).
Predictor = Callable[[np.ndarray], np.ndarray]


class _Crop(NamedTuple):
    """Where one tile lies: in the window, and its part inside the block."""

    window: tuple[int, int]  # the tile's origin in window coordinates
    block: tuple[slice, slice]  # the covered pixels, in block coordinates
    tile: tuple[slice, slice]  # the same pixels, in tile coordinates


def _tile_positions(grid: PlaneGrid, y_range, x_range) -> list[tuple[int, int]]:
    """Global (ky, kx) of the tiles touching a block, in the fixed global order."""
    return [(ky, kx) for ky in grid.y.touching(*y_range) for kx in grid.x.touching(*x_range)]


def iter_batches(n_items: int, batch_size: int) -> Iterator[range]:
    """Consecutive index ranges of at most ``batch_size`` items.

    Examples
    --------
    >>> list(iter_batches(7, 3))
    [range(0, 3), range(3, 6), range(6, 7)]
    """
    for start in range(0, n_items, batch_size):
        yield range(start, min(start + batch_size, n_items))


def stitch_block(
    window: np.ndarray,
    grid: PlaneGrid,
    y_range: tuple[int, int],
    x_range: tuple[int, int],
    predict: Predictor,
    *,
    blend: str = "gaussian",
    batch_size: int = 16,
    channels: int | None = None,
    context: int = 0,
) -> np.ndarray:
    """Predict every tile touching a block and blend them into the block's pixels.

    Parameters
    ----------
    window : numpy.ndarray
        Float array ``(Z, wy, wx)``: the mirrored input window of the block, as
        built by :func:`reflected_read_plan` and :func:`apply_read_plan`.
    grid : PlaneGrid
        The global tile grid of the plane.
    y_range, x_range : tuple of int
        The block's own pixels ``[start, stop)`` in global coordinates.
    predict : callable
        Maps a float32 array ``(B, tile, tile)`` to an array of the same shape. If it
        also has ``submit(batch) -> handle`` and ``collect(handle) -> array`` methods,
        batch ``k + 1`` is prepared and submitted before batch ``k`` is collected (at
        most two in flight), so host and device work overlap.
    blend : {"gaussian", "constant"}
        Blend window.
    batch_size : int
        Tiles per call to ``predict``; tiles of all slices of the block are batched
        together.
    channels : int, optional
        The predictor returns ``(B, channels, tile, tile)`` (per-class
        probabilities) instead of ``(B, tile, tile)``; each channel is blended alike.
    context : int
        Through-plane context (2.5D): ``window`` holds ``context`` extra planes before
        and after the block's planes (see :func:`through_plane_index`), and the
        predictor receives ``(B, 2 * context + 1, tile, tile)``: each tile with the
        same tile of its neighbouring planes, in plane order, the tile's own plane in
        the middle. 0: ``(B, tile, tile)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(Z, y_stop - y_start, x_stop - x_start)``: ``sum(w*p) / sum(w)``;
        ``(channels, Z, ...)`` with ``channels``; ``Z`` is the window's planes less
        ``2 * context``.

    Examples
    --------
    An identity predictor gives the input back:

    >>> from volseg.tiling import apply_read_plan, plane_grid, reflected_read_plan
    >>> from volseg.tiling import through_plane_index
    >>> volume = np.arange(2 * 50 * 70, dtype=np.float32).reshape(2, 50, 70)
    >>> grid = plane_grid((50, 70), tile=32, overlap=0.5)
    >>> plan = reflected_read_plan(grid, (10, 40), (0, 70))
    >>> window = apply_read_plan(plan, volume[:, plan.y_read, plan.x_read])
    >>> out = stitch_block(window, grid, (10, 40), (0, 70), lambda t: t)
    >>> bool(np.allclose(out, volume[:, 10:40], rtol=1e-6))
    True

    With one plane of context per side, a predictor taking the middle channel does too:

    >>> planes = apply_read_plan(plan, volume[through_plane_index(0, 2, 2, 1)][:, plan.y_read])
    >>> out = stitch_block(planes, grid, (10, 40), (0, 70), lambda t: t[:, 1], context=1)
    >>> bool(np.allclose(out, volume[:, 10:40], rtol=1e-6))
    True
    """
    tile = grid.tile
    weights = blend_window(tile, blend)
    context = int(context)
    n_z = window.shape[0] - 2 * context
    (y0, y1), (x0, x1) = y_range, x_range
    crops = _tile_crops(grid, y_range, x_range)
    weight_sum = _weight_sum(crops, weights, (y1 - y0, x1 - x0))

    lead = () if channels is None else (int(channels),)
    # (Z, [C,] h, w) while blending, so each slice's pixels are contiguous.
    out = np.zeros((n_z, *lead, y1 - y0, x1 - x0), dtype=np.float32)
    jobs = [(z, i) for z in range(n_z) for i in range(len(crops))]

    def blend_into(indices: range, prediction: np.ndarray) -> None:
        _blend_batch(out, indices, prediction, jobs, crops, weights, (*lead, tile, tile))

    batches = _tile_batches(window, crops, jobs, tile, context, batch_size)
    _predict_in_order(predict, batches, blend_into)
    out /= weight_sum
    if channels is not None:
        out = np.ascontiguousarray(out.transpose(1, 0, 2, 3))
    return out


def _tile_crops(grid: PlaneGrid, y_range, x_range) -> list[_Crop]:
    """The crop of each tile touching a block, in the fixed global tile order."""
    tile = grid.tile
    (y0, y1), (x0, x1) = y_range, x_range
    wy0 = grid.y.origin(grid.y.touching(y0, y1).start)
    wx0 = grid.x.origin(grid.x.touching(x0, x1).start)
    # Crop of each tile to the block, in block and in tile coordinates.
    crops = []
    for ky, kx in _tile_positions(grid, y_range, x_range):
        oy, ox = grid.y.origin(ky), grid.x.origin(kx)
        by0, by1 = max(oy, y0), min(oy + tile, y1)
        bx0, bx1 = max(ox, x0), min(ox + tile, x1)
        crops.append(
            _Crop(
                (oy - wy0, ox - wx0),
                (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0)),
                (slice(by0 - oy, by1 - oy), slice(bx0 - ox, bx1 - ox)),
            )
        )
    return crops


def _weight_sum(crops: list[_Crop], weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``sum(w)`` at each pixel of the block: the blend weights of every tile covering it."""
    weight_sum = np.zeros(shape, dtype=np.float32)
    for _, block_sl, tile_sl in crops:
        weight_sum[block_sl] += weights[tile_sl]
    return weight_sum


def _tile_batches(
    window: np.ndarray,
    crops: list[_Crop],
    jobs: list[tuple[int, int]],
    tile: int,
    context: int,
    batch_size: int,
) -> Iterator[tuple[range, np.ndarray]]:
    """``(indices, tiles)``: the jobs ``(plane, tile)`` cut from the window, batch by batch.

    Two batch buffers: with an asynchronous predictor (``submit``/``collect``, as
    volseg.model.TilePredictor on CUDA) the next batch is cut while the device still
    computes the previous one, so a buffer is refilled only after its batch was collected.
    """
    planes = () if context == 0 else (2 * context + 1,)
    buffers = [
        np.empty((min(batch_size, len(jobs)), *planes, tile, tile), dtype=np.float32)
        for _ in range(2)
    ]
    for number, indices in enumerate(iter_batches(len(jobs), batch_size)):
        batch = buffers[number % 2]
        for b, j in enumerate(indices):
            z, i = jobs[j]
            (wy, wx), _, _ = crops[i]
            if context:
                batch[b] = window[z : z + 2 * context + 1, wy : wy + tile, wx : wx + tile]
            else:
                batch[b] = window[z, wy : wy + tile, wx : wx + tile]
        yield indices, batch[: len(indices)]


def _predict_in_order(
    predict: Predictor,
    batches: Iterable[tuple[range, np.ndarray]],
    blend_into: Callable[[range, np.ndarray], None],
) -> None:
    """Predict each batch and blend the results in batch order (the fixed tile order).

    A predictor with ``submit``/``collect`` gets batch ``k + 1`` submitted before batch
    ``k`` is collected (at most two in flight); any other is called batch by batch.
    """
    submit = getattr(predict, "submit", None)
    collect = getattr(predict, "collect", None)
    pending: tuple | None = None
    for indices, tiles in batches:
        if submit is None or collect is None:
            blend_into(indices, predict(tiles))
            continue
        handle = submit(tiles)
        if pending is not None:
            blend_into(pending[0], collect(pending[1]))
        pending = (indices, handle)
    if pending is not None:
        blend_into(pending[0], collect(pending[1]))


def _blend_batch(
    out: np.ndarray,
    indices: range,
    prediction: np.ndarray,
    jobs: list[tuple[int, int]],
    crops: list[_Crop],
    weights: np.ndarray,
    expected: tuple[int, ...],
) -> None:
    """Add ``w * p`` of each predicted tile of a batch to its plane of ``out``."""
    prediction = np.asarray(prediction, dtype=np.float32)
    if prediction.shape != (len(indices), *expected):
        raise ValueError(
            f"predictor returned shape {prediction.shape}, expected {(len(indices), *expected)}."
        )
    every = (slice(None),) * (len(expected) - 2)
    for b, j in enumerate(indices):
        z, i = jobs[j]
        _, block_sl, tile_sl = crops[i]
        out[z][(*every, *block_sl)] += weights[tile_sl] * prediction[b][(*every, *tile_sl)]
