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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "BLEND_MODES",
    "PAD_MODES",
    "DIHEDRAL",
    "AxisGrid",
    "FlipRotateTTA",
    "apply_read_plan",
    "auto_plane_grid",
    "axis_grid",
    "context_margin",
    "fitted_axis_grid",
    "max_auto_tile",
    "PlaneGrid",
    "blend_window",
    "plane_grid",
    "reflect_index",
    "reflected_read_plan",
    "stitch_block",
    "through_plane_index",
]

BLEND_MODES = ("gaussian", "constant")
PAD_MODES = ("reflect", "constant")

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class AxisGrid:
    """Tile origins along one axis of length ``size``.

    Attributes
    ----------
    size : int
        Length of the volume along this axis.
    tile : int
        Tile edge length in pixels.
    stride : int
        Distance between consecutive tile origins.
    margin : int
        How far the first tile starts before the volume origin; also the least
        context every pixel has inside some tile (for :func:`axis_grid` it is
        ``(tile - stride) // 2``; :func:`fitted_axis_grid` takes it as given).
    count : int
        Number of tiles along the axis.

    Examples
    --------
    >>> g = axis_grid(300, tile=128, overlap=0.25)
    >>> g.origin(1), g.origin(1) + g.tile
    (80, 208)
    >>> g.touching(100, 200)  # the tiles a block of pixels 100..199 needs
    range(0, 3)
    """

    size: int
    tile: int
    stride: int
    margin: int
    count: int

    def origin(self, k: int) -> int:
        """Global coordinate of the first pixel of tile ``k`` (may be negative)."""
        return -self.margin + k * self.stride

    def touching(self, start: int, stop: int) -> range:
        """Indices of the tiles that overlap the pixel range ``[start, stop)``."""
        # origin(k) < stop  and  origin(k) + tile > start
        first = max(0, _ceil_div(start + self.margin - self.tile + 1, self.stride))
        last = min(self.count - 1, (stop - 1 + self.margin) // self.stride)
        return range(first, last + 1)


@dataclass(frozen=True)
class PlaneGrid:
    """The global tile grid of a plane: one :class:`AxisGrid` per axis.

    Attributes
    ----------
    y, x : AxisGrid
        The grids along the plane's rows and columns (same tile and overlap).

    Examples
    --------
    A 501 x 501 slice in 128-pixel tiles with 25 % overlap: the network computes
    2.35 pixels per output pixel.

    >>> grid = plane_grid((501, 501), tile=128, overlap=0.25)
    >>> grid.tile, grid.n_tiles, round(grid.model_pixels_per_pixel(), 2)
    (128, 36, 2.35)
    """

    y: AxisGrid
    x: AxisGrid

    @property
    def tile(self) -> int:
        return self.y.tile

    @property
    def n_tiles(self) -> int:
        """Number of tiles that cover the whole plane."""
        return self.y.count * self.x.count

    def model_pixels_per_pixel(self) -> float:
        """Pixels the network computes per output pixel over the whole plane."""
        return self.n_tiles * self.tile**2 / (self.y.size * self.x.size)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _validate_tile(tile: int, overlap: float) -> int:
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile={tile!r} must be a positive integer (for example 128).")
    if not (0.0 <= float(overlap) < 1.0):
        raise ValueError(f"overlap={overlap!r} must be a fraction in [0, 1), for example 0.25.")
    stride = int(tile) - int(round(int(tile) * float(overlap)))
    if stride < 1:
        raise ValueError(
            f"overlap={overlap!r} leaves no stride for tile={tile}; use a smaller overlap."
        )
    return stride


def axis_grid(size: int, tile: int, overlap: float) -> AxisGrid:
    """Tile origins covering an axis of length ``size``.

    Parameters
    ----------
    size : int
        Length of the axis in pixels (>= 1).
    tile : int
        Tile edge length in pixels.
    overlap : float
        Fraction of a tile shared by neighbouring tiles, in [0, 1).

    Returns
    -------
    AxisGrid
        The grid; tile ``k`` covers ``[-margin + k*stride, -margin + k*stride + tile)``.

    Examples
    --------
    >>> g = axis_grid(300, tile=128, overlap=0.25)
    >>> g.stride, g.margin, g.count
    (96, 16, 4)
    >>> [g.origin(k) for k in range(g.count)]
    [-16, 80, 176, 272]
    """
    if size < 1:
        raise ValueError(f"axis length {size} must be at least 1.")
    stride = _validate_tile(tile, overlap)
    margin = (int(tile) - stride) // 2
    # The last tile must reach `margin` pixels past the last pixel, like the first.
    span = size + 2 * margin - int(tile)
    count = 1 if span <= 0 else _ceil_div(span, stride) + 1
    return AxisGrid(size=int(size), tile=int(tile), stride=stride, margin=margin, count=count)


def context_margin(overlap: float = 0.25, tile: int = 128) -> int:
    """The least context every pixel gets inside some tile at ``tile`` / ``overlap``.

    ``tile="auto"`` keeps the margin of the trained tile size 128 at the run's overlap:
    16 pixels at the default overlap 0.25.

    Examples
    --------
    >>> context_margin(0.25), context_margin(0.5), context_margin(0.0)
    (16, 32, 0)
    """
    return (int(tile) - _validate_tile(tile, overlap)) // 2


def max_auto_tile(batch_size: int = 16, multiple: int = 32) -> int:
    """The largest tile ``tile="auto"`` may choose (the memory budget of a forward pass).

    A forward pass of one such tile holds no more pixels than ``batch_size`` tiles of
    128 x 128, the memory of the fixed-tile default.

    Examples
    --------
    >>> max_auto_tile(16), max_auto_tile(8), max_auto_tile(1)
    (512, 352, 128)
    """
    side = int(np.sqrt(max(1, int(batch_size)) * 128 * 128))
    return max(multiple, side // multiple * multiple)


def fitted_axis_grid(size: int, tile: int, margin: int) -> AxisGrid:
    """The fewest tiles of ``tile`` pixels that cover ``[-margin, size + margin)``.

    Tile ``k`` starts at ``-margin + k * stride``; the stride is the smallest that
    makes the last tile reach ``size + margin``, and neighbouring tiles share at
    least ``2 * margin`` pixels, so every pixel lies at least ``margin`` pixels inside
    some tile (mirrored context at the border, as :func:`axis_grid`).

    Parameters
    ----------
    size : int
        Length of the axis (>= 1).
    tile : int
        Tile edge length; larger than ``2 * margin`` when one tile does not suffice.
    margin : int
        Least context in pixels (>= 0).

    Returns
    -------
    AxisGrid

    Examples
    --------
    A 501-pixel axis with a 16-pixel margin: two tiles of 288 sharing 43 pixels.

    >>> g = fitted_axis_grid(501, tile=288, margin=16)
    >>> g.count, g.stride, [g.origin(k) for k in range(g.count)]
    (2, 245, [-16, 229])
    >>> g.origin(1) + g.tile - 501  # the last tile reaches the margin past the last pixel
    16
    """
    size, tile, margin = int(size), int(tile), int(margin)
    if size < 1:
        raise ValueError(f"axis length {size} must be at least 1.")
    if margin < 0:
        raise ValueError(f"margin={margin!r} must be at least 0.")
    span = size + 2 * margin
    if tile >= span:
        return AxisGrid(size=size, tile=tile, stride=tile, margin=margin, count=1)
    if tile <= 2 * margin:
        raise ValueError(
            f"tile={tile} must be larger than twice the margin {margin} to cover "
            f"{size} pixels with several tiles."
        )
    count = _ceil_div(span - tile, tile - 2 * margin) + 1
    stride = _ceil_div(span - tile, count - 1)
    return AxisGrid(size=size, tile=tile, stride=stride, margin=margin, count=count)


def auto_plane_grid(
    shape: tuple[int, int],
    margin: int = 16,
    max_tile: int = 512,
    multiple: int = 32,
    min_tile: int | None = None,
) -> PlaneGrid:
    """The tile grid fitted to a plane that computes the fewest model pixels per pixel.

    For every square tile that is a multiple of ``multiple`` up to ``max_tile``, each
    axis gets the fewest tiles that cover it with ``margin`` pixels of context on every
    seam and at the border (:func:`fitted_axis_grid`); the tile with the fewest
    ``tiles x tile**2`` wins (the smaller tile on a tie). The grid depends on
    ``(shape, margin, max_tile, multiple)`` only, never on chunks.

    Parameters
    ----------
    shape : tuple of 2 int
        ``(H, W)`` of the plane.
    margin : int
        Least context per pixel (:func:`context_margin`: 16 at overlap 0.25).
    max_tile : int
        Largest tile (:func:`max_auto_tile`: the memory budget of a forward pass).
    multiple : int
        Tiles are multiples of this (32: the U-Net halves the size up to 5 times).
    min_tile : int, optional
        Smallest tile, except a single tile that covers the whole plane with its margin
        (segment passes 128, the trained tile, so that a small ``margin``, e.g. at
        overlap 0, cannot shrink the tiles below the context the network was trained
        with). Default: ``multiple``.

    Returns
    -------
    PlaneGrid

    Examples
    --------
    >>> for side in (501, 1024, 2048, 2560):
    ...     g = auto_plane_grid((side, side))
    ...     print(side, g.tile, g.n_tiles, round(g.model_pixels_per_pixel(), 3))
    501 288 4 1.322
    1024 288 16 1.266
    2048 448 25 1.196
    2560 352 64 1.21
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"plane shape {shape!r} must be positive.")
    multiple = int(multiple)
    lowest = max(multiple, (2 * int(margin)) // multiple * multiple + multiple)
    largest = max(lowest, int(max_tile) // multiple * multiple)
    best = None
    whole = max(height, width) + 2 * int(margin)  # one tile of this size covers the plane
    floor = multiple if min_tile is None else max(multiple, int(min_tile))
    for tile in range(lowest, largest + 1, multiple):
        if tile < floor and tile < whole:
            continue
        grid = PlaneGrid(
            y=fitted_axis_grid(height, tile, margin), x=fitted_axis_grid(width, tile, margin)
        )
        cost = grid.n_tiles * tile * tile
        if best is None or cost < best[0]:
            best = (cost, grid)
        if tile >= max(height, width) + 2 * margin:
            break  # one tile covers the plane: larger ones only add pixels
    return best[1]


def plane_grid(shape: tuple[int, int], tile: int = 128, overlap: float = 0.25) -> PlaneGrid:
    """The global tile grid of a plane of ``shape = (H, W)``.

    Examples
    --------
    >>> g = plane_grid((501, 501), tile=128, overlap=0.25)
    >>> g.y.count, g.x.count, g.n_tiles
    (6, 6, 36)
    """
    height, width = (int(s) for s in shape)
    return PlaneGrid(y=axis_grid(height, tile, overlap), x=axis_grid(width, tile, overlap))


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map global indices onto ``[0, size)`` with numpy ``reflect`` mirroring.

    The mirror does not repeat the edge pixel (``d c b | a b c d | c b a``), as
    ``np.pad(mode="reflect")``, and repeats periodically for indices further
    away than one axis length.

    Examples
    --------
    >>> reflect_index(np.arange(-3, 7), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    index = np.asarray(index, dtype=np.int64)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded >= size, period - folded, folded)


def through_plane_index(start: int, stop: int, size: int, context: int) -> np.ndarray:
    """Slices a block of planes ``[start, stop)`` reads with ``context`` neighbours per side.

    A 2.5D model sees each plane together with its ``context`` neighbouring planes on
    either side, as input channels; planes beyond the volume's border are mirrored
    (numpy ``reflect``, about the volume's first and last plane, as in the plane).
    Plane ``start + i`` is predicted from entries ``i .. i + 2 * context`` of the result.

    Examples
    --------
    >>> through_plane_index(0, 3, 5, 2).tolist()
    [2, 1, 0, 1, 2, 3, 4]
    >>> through_plane_index(3, 5, 5, 1).tolist()
    [2, 3, 4, 3]
    """
    return reflect_index(np.arange(start - context, stop + context), size)


@dataclass(frozen=True)
class ReadPlan:
    """How to build a mirrored window from one rectangular read of the volume.

    Read ``volume[..., y_read, x_read]``, then take ``y_take`` / ``x_take``
    (indices relative to the read) to get the window covering ``y_window`` /
    ``x_window`` in global coordinates, mirrored where it leaves the volume.
    """

    y_window: tuple[int, int]
    x_window: tuple[int, int]
    y_read: slice
    x_read: slice
    y_take: np.ndarray | None
    x_take: np.ndarray | None
    y_outside: np.ndarray | None = None
    x_outside: np.ndarray | None = None


def _axis_read(
    start: int, stop: int, size: int, pad: str
) -> tuple[slice, np.ndarray | None, np.ndarray | None]:
    coords = np.arange(start, stop)
    if pad == "reflect":
        index = reflect_index(coords, size)
        outside = None
    else:
        index = np.clip(coords, 0, size - 1)
        outside = (coords < 0) | (coords >= size)
    lo, hi = int(index.min()), int(index.max()) + 1
    take = index - lo
    if start >= 0 and stop <= size:
        take, outside = None, None  # inside the volume: a plain slice, no copy needed
    elif outside is not None and not outside.any():
        outside = None
    return slice(lo, hi), take, outside


def reflected_read_plan(
    grid: PlaneGrid,
    y_range: tuple[int, int],
    x_range: tuple[int, int],
    pad: str = "reflect",
) -> ReadPlan:
    """The window of input that the tiles touching a block need, and how to read it.

    Parameters
    ----------
    grid : PlaneGrid
        The global tile grid.
    y_range, x_range : tuple of int
        The block's own pixels ``[start, stop)`` along y and x.
    pad : {"reflect", "constant"}
        Tile pixels outside the volume: mirrored data, or zeros.

    Returns
    -------
    ReadPlan
        The window spans every tile that touches the block (the block plus its
        halo); the read is the bounding box of the in-volume pixels it mirrors.

    Examples
    --------
    A block at the top border of a 50 x 70 plane: its window starts 8 rows above
    the volume (mirrored), so only rows 0..39 are read.

    >>> grid = plane_grid((50, 70), tile=32, overlap=0.5)
    >>> plan = reflected_read_plan(grid, (0, 20), (30, 70))
    >>> plan.y_window, plan.y_read, plan.x_window, plan.x_read
    ((-8, 40), slice(0, 40, None), (8, 88), slice(8, 70, None))
    """
    ty = grid.y.touching(*y_range)
    tx = grid.x.touching(*x_range)
    y_window = (grid.y.origin(ty.start), grid.y.origin(ty.stop - 1) + grid.tile)
    x_window = (grid.x.origin(tx.start), grid.x.origin(tx.stop - 1) + grid.tile)
    if pad not in PAD_MODES:
        raise ValueError(f"pad={pad!r} is not known; use one of {', '.join(PAD_MODES)}.")
    y_read, y_take, y_outside = _axis_read(*y_window, grid.y.size, pad)
    x_read, x_take, x_outside = _axis_read(*x_window, grid.x.size, pad)
    return ReadPlan(y_window, x_window, y_read, x_read, y_take, x_take, y_outside, x_outside)


def apply_read_plan(plan: ReadPlan, block: np.ndarray) -> np.ndarray:
    """Build the mirrored window from ``block = volume[..., plan.y_read, plan.x_read]``.

    Parameters
    ----------
    plan : ReadPlan
        From :func:`reflected_read_plan`.
    block : numpy.ndarray
        ``(..., rows, cols)``: the volume read at ``plan.y_read``, ``plan.x_read``.

    Returns
    -------
    numpy.ndarray
        The window over ``plan.y_window`` x ``plan.x_window``: mirrored (or zero,
        with ``pad="constant"``) where it leaves the volume; ``block`` itself when
        the window lies inside.

    Examples
    --------
    The window of a whole 6 x 8 plane is the plane padded with numpy's ``reflect``:

    >>> volume = np.arange(6 * 8, dtype=np.float32).reshape(1, 6, 8)
    >>> plan = reflected_read_plan(plane_grid((6, 8), tile=4, overlap=0.5), (0, 6), (0, 8))
    >>> window = apply_read_plan(plan, volume[:, plan.y_read, plan.x_read])
    >>> plan.y_window, plan.x_window, window.shape
    ((-1, 7), (-1, 9), (1, 8, 10))
    >>> bool(np.array_equal(window, np.pad(volume, ((0, 0), (1, 1), (1, 1)), mode="reflect")))
    True
    """
    if plan.y_take is not None:
        block = np.take(block, plan.y_take, axis=-2)
    if plan.x_take is not None:
        block = np.take(block, plan.x_take, axis=-1)
    if plan.y_outside is not None or plan.x_outside is not None:
        block = np.array(block, copy=True)
        if plan.y_outside is not None:
            block[..., plan.y_outside, :] = 0
        if plan.x_outside is not None:
            block[..., plan.x_outside] = 0
    return block


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


def _tile_positions(grid: PlaneGrid, y_range, x_range) -> list[tuple[int, int]]:
    """Global (ky, kx) of the tiles touching a block, in the fixed global order."""
    return [(ky, kx) for ky in grid.y.touching(*y_range) for kx in grid.x.touching(*x_range)]


def iter_batches(n_items: int, batch_size: int) -> Iterator[range]:
    """Consecutive index ranges of at most ``batch_size`` items."""
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
    wy0 = grid.y.origin(grid.y.touching(y0, y1).start)
    wx0 = grid.x.origin(grid.x.touching(x0, x1).start)

    positions = _tile_positions(grid, y_range, x_range)
    # Crop of each tile to the block, in block and in tile coordinates.
    crops = []
    for ky, kx in positions:
        oy, ox = grid.y.origin(ky), grid.x.origin(kx)
        by0, by1 = max(oy, y0), min(oy + tile, y1)
        bx0, bx1 = max(ox, x0), min(ox + tile, x1)
        crops.append(
            (
                (oy - wy0, ox - wx0),
                (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0)),
                (slice(by0 - oy, by1 - oy), slice(bx0 - ox, bx1 - ox)),
            )
        )

    weight_sum = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    for _, block_sl, tile_sl in crops:
        weight_sum[block_sl] += weights[tile_sl]

    lead = () if channels is None else (int(channels),)
    expected = (*lead, tile, tile)
    # (Z, [C,] h, w) while blending, so each slice's pixels are contiguous.
    out = np.zeros((n_z, *lead, y1 - y0, x1 - x0), dtype=np.float32)
    every = (slice(None),) * len(lead)
    n_tiles = len(crops)
    jobs = [(z, i) for z in range(n_z) for i in range(n_tiles)]
    # Two batch buffers: with an asynchronous predictor (``submit``/``collect``, as
    # volseg.model.TilePredictor on CUDA) the next batch is cut while the device still
    # computes the previous one. Results are still blended in the fixed tile order.
    planes = () if context == 0 else (2 * context + 1,)
    buffers = [
        np.empty((min(batch_size, len(jobs)), *planes, tile, tile), dtype=np.float32)
        for _ in range(2)
    ]
    submit = getattr(predict, "submit", None)
    collect = getattr(predict, "collect", None)
    pending: tuple | None = None

    def blend_into(indices: range, prediction: np.ndarray) -> None:
        prediction = np.asarray(prediction, dtype=np.float32)
        if prediction.shape != (len(indices), *expected):
            raise ValueError(
                f"predictor returned shape {prediction.shape}, "
                f"expected {(len(indices), *expected)}."
            )
        for b, j in enumerate(indices):
            z, i = jobs[j]
            _, block_sl, tile_sl = crops[i]
            out[z][(*every, *block_sl)] += weights[tile_sl] * prediction[b][(*every, *tile_sl)]

    for number, indices in enumerate(iter_batches(len(jobs), batch_size)):
        batch = buffers[number % 2]
        for b, j in enumerate(indices):
            z, i = jobs[j]
            (wy, wx), _, _ = crops[i]
            if context:
                batch[b] = window[z : z + 2 * context + 1, wy : wy + tile, wx : wx + tile]
            else:
                batch[b] = window[z, wy : wy + tile, wx : wx + tile]
        if submit is None or collect is None:
            blend_into(indices, predict(batch[: len(indices)]))
            continue
        handle = submit(batch[: len(indices)])
        if pending is not None:
            blend_into(pending[0], collect(pending[1]))
        pending = (indices, handle)
    if pending is not None:
        blend_into(pending[0], collect(pending[1]))
    out /= weight_sum
    if channels is not None:
        out = np.ascontiguousarray(out.transpose(1, 0, 2, 3))
    return out


# The eight symmetries of a square tile (dihedral group D4): (quarter turns, flip).
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def _transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        batch = batch[..., ::-1]
    return np.rot90(batch, k, axes=(-2, -1))


def _inverse(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    batch = np.rot90(batch, -k, axes=(-2, -1))
    return batch[..., ::-1] if flip else batch


class FlipRotateTTA:
    """Test-time augmentation: average a predictor over the 8 flips and quarter turns.

    Each batch of square tiles is predicted in all eight orientations of the
    dihedral group D4; every prediction is turned back and the eight are averaged
    in a fixed order (deterministic, so blocks stay chunk-invariant). Costs eight
    forward passes per tile. Works with predictors returning ``(B, T, T)`` or
    ``(B, C, T, T)``; asynchronous predictors (``submit``/``collect``) get all eight
    orientations in flight before the first is collected.

    Examples
    --------
    An equivariant predictor is unchanged; any predictor becomes equivariant (turning
    the input turns the output):

    >>> tiles = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    >>> bool(np.allclose(FlipRotateTTA(lambda b: b * 2)(tiles), tiles * 2))
    True
    >>> tta = FlipRotateTTA(lambda b: np.broadcast_to(b[:, :1, :], b.shape))
    >>> turned = np.rot90(tiles, 1, axes=(1, 2))
    >>> bool(np.allclose(tta(turned), np.rot90(tta(tiles), 1, axes=(1, 2))))
    True
    """

    def __init__(self, predict: Predictor):
        self.predict = predict
        self._submit = getattr(predict, "submit", None)
        self._collect = getattr(predict, "collect", None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(batch))

    def submit(self, batch: np.ndarray) -> list:
        """Start the eight predictions of ``batch``; returns a handle for :meth:`collect`."""
        handles = []
        for k, flip in DIHEDRAL:
            turned = np.ascontiguousarray(_transform(batch, k, flip))
            if self._submit is not None and self._collect is not None:
                handles.append(self._submit(turned))
            else:
                handles.append(np.asarray(self.predict(turned), dtype=np.float32))
        return handles

    def collect(self, handles: list) -> np.ndarray:
        """The average of the eight predictions, each turned back, in a fixed order."""
        total = None
        for (k, flip), handle in zip(DIHEDRAL, handles):
            if self._submit is not None and self._collect is not None:
                handle = self._collect(handle)
            back = _inverse(np.asarray(handle, dtype=np.float32), k, flip)
            total = back.copy() if total is None else total + back
        total /= np.float32(len(DIHEDRAL))
        return total
