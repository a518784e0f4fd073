"""The plan of a segmentation run: tile grids, processing blocks and what each block reads.

Pure numpy (no torch, dask or zarr), like :mod:`volseg.tiling`: every function
here depends only on shapes and settings, so a run's plan can be inspected and
tested without a model or a scheduler. A :class:`Block` is described the way
daisy describes one: the region it writes (its output chunk) and the region it
reads (the write region grown by the halo its tiles need, clipped to the volume;
beyond the volume, tiles read mirrored data through the block's read plans).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import tiling

__all__ = [
    "AUTO_MIN_TILE",
    "AXIS_ORDER",
    "DEEP_BLOCKS",
    "MAX_OVERLAP_COST",
    "READ_AMPLIFICATION_WARNING",
    "Block",
    "check_overlap_cost",
    "choose_chunks",
    "default_chunks",
    "grid_record",
    "plan_block",
    "plane_blocks",
    "plane_grid",
    "read_amplification",
    "tiles_per_batch",
    "voxels",
]

# segment warns when its blocks decode the stored z-chunks this many times over or more.
READ_AMPLIFICATION_WARNING = 4.0
# tile="auto" never uses tiles smaller than the trained tile (unless one covers the plane).
AUTO_MIN_TILE = 128
# An overlap may multiply the network's work at most this much (0.5 gives about 4).
MAX_OVERLAP_COST = 16
# Default blocks when slices along y and x are predicted too (axes="zyx" or refine):
# deep blocks, so the tiles of y- and x-slices (tile pixels along z) are not mostly halo.
DEEP_BLOCKS = {"target_yx": 256, "target_z": 128}
# Default blocks with tile="auto" (plane_blocks): whole planes up to this side, about
# as many voxels as a 32 x 512 x 512 block.
PLANE_BLOCK_SIDE = 4096
PLANE_BLOCK_VOXELS = 32 * 512 * 512
# Slices along ``axis`` are predicted as planes: (plane axis, in-plane axes), and the
# permutation that brings the plane axis first.
AXIS_ORDER = {"z": (0, 1, 2), "y": (1, 0, 2), "x": (2, 0, 1)}

Region = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Block:
    """One processing block: the region it writes and the region it reads.

    Attributes
    ----------
    index : tuple of 3 int
        Its position on the chunk grid of the output.
    write : tuple of 3 slice
        The output region it owns (one output chunk, or one shard).
    read : tuple of 3 slice
        The input region it reads: ``write`` grown by the halo of its tiles (and by
        the through-plane context of a 2.5D model), clipped to the volume.
    plans : tuple of (str, volseg.tiling.ReadPlan)
        Per prediction axis (``"z"``, ``"y"``, ``"x"``), how the in-plane window of
        its tiles is read from ``read``, mirrored beyond the volume border.

    Examples
    --------
    >>> from volseg.inference.settings import SegmentSettings
    >>> settings = SegmentSettings(shape=(8, 300, 300), tile=128)
    >>> block = plan_block(settings, (0, 1, 0), (slice(0, 8), slice(150, 300), slice(0, 150)))
    >>> block.read
    (slice(0, 8, None), slice(80, 300, None), slice(0, 208, None))
    >>> block.halo
    ((0, 0), (70, 0), (0, 58))
    """

    index: tuple[int, int, int]
    write: Region
    read: Region
    plans: tuple[tuple[str, tiling.ReadPlan], ...]

    @property
    def halo(self) -> tuple[tuple[int, int], ...]:
        """Per axis, how many voxels the block reads before and after its write region."""
        return tuple((w.start - r.start, r.stop - w.stop) for w, r in zip(self.write, self.read))


def plane_grid(
    plane: tuple[int, int], tile: int | str = "auto", overlap: float = 0.25, batch_size: int = 16
) -> tiling.PlaneGrid:
    """The global tile grid of a plane for a run's ``tile``, ``overlap`` and ``batch_size``.

    ``tile="auto"``: :func:`volseg.tiling.auto_plane_grid` with the context margin of
    tile 128 at ``overlap`` and tiles no larger than :func:`volseg.tiling.max_auto_tile`
    of ``batch_size``; an integer tile: :func:`volseg.tiling.plane_grid`.

    Examples
    --------
    >>> grid = plane_grid((501, 501), "auto")
    >>> grid.tile, grid.n_tiles
    (288, 4)
    >>> plane_grid((501, 501), 128).n_tiles
    36
    """
    if tile == "auto":
        return tiling.auto_plane_grid(
            tuple(plane),
            margin=tiling.context_margin(overlap),
            max_tile=tiling.max_auto_tile(batch_size),
            min_tile=AUTO_MIN_TILE,
        )
    return tiling.plane_grid(tuple(plane), int(tile), overlap)


def slice_grid(settings: Any, axis: str) -> tiling.PlaneGrid:
    """The tile grid of the slices along ``axis`` (``"z"``, ``"y"`` or ``"x"``) of a run."""
    order = AXIS_ORDER[axis]
    plane = (settings.shape[order[1]], settings.shape[order[2]])
    return plane_grid(plane, settings.tile, settings.overlap, settings.batch_size)


def plan_block(
    settings: Any, index: tuple[int, int, int], write: Region, context: int = 0
) -> Block:
    """The :class:`Block` that writes ``write``: what it reads, and how, for each axis.

    Parameters
    ----------
    settings : volseg.inference.settings.SegmentSettings
        A run's settings with its ``shape`` resolved (``shape``, ``tile``, ``overlap``,
        ``batch_size``, ``pad``, ``axes`` are used).
    index : tuple of 3 int
        The block's position on the chunk grid.
    write : tuple of 3 slice
        The output region it owns.
    context : int
        Through-plane neighbours per side the model reads (2.5D); mirrored inside
        the volume at its border.

    Returns
    -------
    Block

    Examples
    --------
    >>> from volseg.inference.settings import SegmentSettings
    >>> settings = SegmentSettings(shape=(40, 90, 110), tile=64, batch_size=4)
    >>> plan_block(settings, (1, 0, 0), (slice(10, 20), slice(0, 90), slice(0, 110)),
    ...            context=2).read[0]
    slice(8, 22, None)
    """
    plans = []
    lo = [sl.start for sl in write]
    hi = [sl.stop for sl in write]
    for axis in settings.axes:
        order = AXIS_ORDER[axis]
        if context:
            # Through-plane context: k more planes per side, mirrored inside the volume.
            across = tiling.through_plane_index(
                write[order[0]].start, write[order[0]].stop, settings.shape[order[0]], context
            )
            lo[order[0]] = min(lo[order[0]], int(across.min()))
            hi[order[0]] = max(hi[order[0]], int(across.max()) + 1)
        a, b = (write[order[1]], write[order[2]])
        plan = tiling.reflected_read_plan(
            slice_grid(settings, axis), (a.start, a.stop), (b.start, b.stop), settings.pad
        )
        for dim, read in ((order[1], plan.y_read), (order[2], plan.x_read)):
            lo[dim], hi[dim] = min(lo[dim], read.start), max(hi[dim], read.stop)
        plans.append((axis, plan))
    read = tuple(slice(a, b) for a, b in zip(lo, hi))
    return Block(tuple(index), tuple(write), read, tuple(plans))


def choose_chunks(
    shape: tuple[int, int, int],
    scan_chunks: tuple[int, int, int],
    target_yx: int = 512,
    target_z: int | None = None,
) -> tuple[int, int, int]:
    """Default processing blocks: whole multiples of the scan's chunks, about 512 wide.

    Wider blocks recompute fewer tiles on their borders (a tile touching two
    blocks is predicted by both); they stay aligned with the stored chunks so no
    stored chunk is decompressed twice. Depth follows the scan's chunks (at most 32)
    or, with ``target_z``, whole multiples of them about ``target_z`` deep (used when
    y- and x-slices are predicted too: :data:`DEEP_BLOCKS`).

    Examples
    --------
    >>> choose_chunks((64, 2048, 2048), (8, 256, 256))
    (8, 512, 512)
    >>> choose_chunks((10, 300, 300), (10, 300, 300))
    (10, 300, 300)
    >>> choose_chunks((512, 2048, 2048), (8, 256, 256), **DEEP_BLOCKS)
    (128, 256, 256)
    """
    if target_z is None:
        depth = max(1, min(int(scan_chunks[0]), 32, shape[0]))
    else:
        depth = _multiple(shape[0], scan_chunks[0], target_z)
    sizes = [_multiple(n, c, target_yx) for n, c in zip(shape[1:], scan_chunks[1:])]
    return (depth, *sizes)


def plane_blocks(
    shape: tuple[int, int, int],
    scan_chunks: tuple[int, int, int],
    block_voxels: int = PLANE_BLOCK_VOXELS,
    max_side: int = PLANE_BLOCK_SIDE,
) -> tuple[int, int, int]:
    """Default processing blocks for ``tile="auto"``: whole planes, a few slices deep.

    A tile that touches two blocks is computed by both; the large tiles of a grid
    fitted to the plane would be computed up to twice per axis in 512-pixel blocks, so
    blocks span whole planes (planes wider than ``max_side`` are split in whole
    multiples of the stored chunks about ``max_side`` wide). Depth: the stored chunks'
    (at most 32) or less, so that a block holds about ``block_voxels`` (as many as a
    32 x 512 x 512 block).

    Examples
    --------
    >>> plane_blocks((64, 501, 501), (8, 256, 256))
    (8, 501, 501)
    >>> plane_blocks((64, 2048, 2048), (64, 256, 256))
    (2, 2048, 2048)
    >>> plane_blocks((4, 10000, 10000), (4, 512, 512))
    (1, 4096, 4096)
    """
    sizes = [
        n if n <= max_side else _multiple(n, c, max_side)
        for n, c in zip(shape[1:], scan_chunks[1:])
    ]
    depth = max(1, min(int(scan_chunks[0]), 32, shape[0], block_voxels // math.prod(sizes)))
    return (depth, *sizes)


def default_chunks(
    shape: tuple[int, int, int], scan_chunks: tuple[int, int, int], tile: int | str, deep: bool
) -> tuple[int, int, int]:
    """The processing blocks of a run that did not choose them.

    Whole planes (:func:`plane_blocks`) for ``tile="auto"`` on z-slices; blocks about
    512 wide (:func:`choose_chunks`) otherwise, deep (:data:`DEEP_BLOCKS`) when y- and
    x-slices are predicted too (``deep``).

    Examples
    --------
    >>> default_chunks((64, 501, 501), (8, 256, 256), "auto", deep=False)
    (8, 501, 501)
    >>> default_chunks((64, 501, 501), (8, 256, 256), 128, deep=True)
    (64, 256, 256)
    """
    if tile == "auto" and not deep:
        return plane_blocks(shape, scan_chunks)
    return choose_chunks(shape, scan_chunks, **(DEEP_BLOCKS if deep else {}))


def _multiple(size: int, chunk: int, target: int) -> int:
    chunk = max(1, int(chunk))
    return min(size, chunk * max(1, math.ceil(target / chunk)))


def read_amplification(depth: int, blocks: int, stored: int, context: int = 0) -> float:
    """Slices decoded per slice written when blocks of ``blocks`` slices read stored chunks.

    A Zarr chunk is decoded whole, so a block thinner than the stored chunks (or one
    whose through-plane ``context`` reaches into the next chunk) decodes slices it does
    not write; the neighbouring blocks decode them again. Counted along z over the
    whole depth of the volume; the planes are read in whole stored chunks.

    Examples
    --------
    Whole-plane blocks of 2 slices in stored chunks 128 slices deep decode each chunk 64
    times; blocks as deep as the chunks decode it once, or a little more with context:

    >>> read_amplification(2048, 2, 128), read_amplification(2048, 128, 128)
    (64.0, 1.0)
    >>> round(read_amplification(2048, 128, 128, context=1), 2)  # both neighbouring chunks
    2.88
    >>> read_amplification(1000, 1, 1, context=1), read_amplification(1000, 16, 1, context=1)
    (2.998, 1.124)
    """
    decoded = 0
    for start in range(0, depth, blocks):
        lo, hi = max(0, start - context), min(depth, start + blocks + context)
        first, last = lo // stored, (hi - 1) // stored
        decoded += sum(min(depth, (c + 1) * stored) - c * stored for c in range(first, last + 1))
    return decoded / depth


def voxels(region: tuple[slice, ...]) -> int:
    """The number of voxels in a region of slices.

    Examples
    --------
    >>> voxels((slice(0, 2), slice(3, 5), slice(0, 4)))
    16
    """
    return math.prod(sl.stop - sl.start for sl in region)


def tiles_per_batch(batch_size: int, tile: int) -> int:
    """Tiles per forward pass: ``batch_size`` counts 128x128 tiles.

    Larger tiles are batched to the same number of pixels, so memory per batch does not
    grow with the tile and big tiles do not thrash the CPU caches.

    Examples
    --------
    >>> tiles_per_batch(16, 128), tiles_per_batch(16, 256), tiles_per_batch(16, 544)
    (16, 4, 1)
    """
    return max(1, (batch_size * 128 * 128) // (tile * tile))


def grid_record(grid: tiling.PlaneGrid) -> dict[str, Any]:
    """The z-slices' tile grid, for the output's attrs (what ``tile="auto"`` chose).

    Examples
    --------
    >>> grid_record(plane_grid((501, 501)))["tiles_per_slice"]
    4
    """
    return {
        "tile": grid.tile,
        "tiles_per_slice": grid.n_tiles,
        "stride": [grid.y.stride, grid.x.stride],
        "margin": grid.y.margin,
        "model_voxels_per_voxel": round(grid.model_pixels_per_pixel(), 4),
    }


def check_overlap_cost(
    shape: tuple[int, int, int], tile: int | str, overlap: float, batch_size: int
) -> None:
    """Refuse an overlap that multiplies the network's work too much.

    At most :data:`MAX_OVERLAP_COST` times the pixels it would compute without overlap.

    Examples
    --------
    >>> check_overlap_cost((4, 501, 501), "auto", 0.25, 16)
    >>> check_overlap_cost((4, 501, 501), 128, 0.95, 16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: overlap=0.95 makes the network compute 461 model pixels per output pixel ...
    """
    plane = (int(shape[1]), int(shape[2]))
    cost = plane_grid(plane, tile, float(overlap), batch_size).model_pixels_per_pixel()
    base = plane_grid(plane, tile, 0.0, batch_size).model_pixels_per_pixel()
    if cost > MAX_OVERLAP_COST * base:
        raise ValueError(
            f"overlap={overlap} makes the network compute {cost:.0f} model pixels per output "
            f"pixel ({cost / base:.0f} times the work without overlap, at most "
            f"{MAX_OVERLAP_COST} allowed); use a smaller overlap, e.g. 0.25 or 0.5."
        )
