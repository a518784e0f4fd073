"""The mirrored read: which input a block's tiles need, and how to build it.

Tile pixels outside the volume are read with numpy ``reflect`` mirroring about the
*volume* border (``d c b | a b c d | c b a``), or as zeros with ``pad="constant"``.
A block reads one rectangle of the volume (:func:`reflected_read_plan`) and
builds its mirrored window from it (:func:`apply_read_plan`); through the planes,
a 2.5D model's neighbouring planes are mirrored alike (:func:`through_plane_index`).

Examples
--------
>>> reflect_index(np.arange(-2, 6), 4).tolist()
[2, 1, 0, 1, 2, 3, 2, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import PlaneGrid

__all__ = [
    "PAD_MODES",
    "ReadPlan",
    "apply_read_plan",
    "reflect_index",
    "reflected_read_plan",
    "through_plane_index",
]

PAD_MODES = ("reflect", "constant")


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

    Examples
    --------
    A block inside the volume is read as a plain slice; one at the border mirrors:

    >>> from volseg.tiling import plane_grid
    >>> grid = plane_grid((300, 300), tile=128, overlap=0.25)
    >>> inside = reflected_read_plan(grid, (130, 150), (130, 150))
    >>> inside.y_window, inside.y_read, inside.y_take is None
    ((80, 208), slice(80, 208, None), True)
    >>> corner = reflected_read_plan(grid, (0, 10), (290, 300))
    >>> corner.y_window, corner.y_read, corner.y_take[:4].tolist()
    ((-16, 112), slice(0, 112, None), [16, 15, 14, 13])
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

    >>> from volseg.tiling import plane_grid
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

    >>> from volseg.tiling import plane_grid
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
