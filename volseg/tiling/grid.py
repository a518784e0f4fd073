"""The global tile grid: tile origins along an axis and over a plane.

A grid depends on the plane's shape and the tile settings only, never on how the
volume is chunked: :func:`axis_grid` / :func:`plane_grid` place tiles of a fixed
size at a fixed overlap; :func:`fitted_axis_grid` / :func:`auto_plane_grid` fit the
fewest tiles to a plane for ``tile="auto"``, keeping :func:`context_margin` pixels of
context for every pixel within the budget of :func:`max_auto_tile`.

Examples
--------
>>> grid = plane_grid((501, 501), tile=128, overlap=0.25)
>>> grid.n_tiles, grid.y.touching(100, 200)
(36, range(0, 3))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AxisGrid",
    "PlaneGrid",
    "auto_plane_grid",
    "axis_grid",
    "context_margin",
    "fitted_axis_grid",
    "max_auto_tile",
    "plane_grid",
]


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
