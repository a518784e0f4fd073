"""The chunk-wise tasks of one measured phase, and the measures they add up to.

Per phase, :func:`phase_tasks` builds the lazy work: the component labelling and
merge of :mod:`volseg.microstructure.components` (with the voxel faces), and the
thickness statistics, each chunk read with a halo (``dask.array.map_overlap``,
chunks grown to at least the halo) and summed into one histogram.
:func:`tpb_task` counts the triple-phase-boundary edges, each chunk reading one
voxel of its low neighbours. Compute the tasks of several phases together so that
every chunk is read once; :func:`phase_measures`, :func:`tpb_measures` and
:func:`volume_measures` turn the computed tasks into the measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from .components import component_measures, connectivity_graph, face_totals, share
from .kernels import (
    AXES,
    ISOTROPIC_EDGE_FACTOR,
    ISOTROPIC_FACE_FACTOR,
    histogram_median,
    local_thickness,
    phase_bits,
    thickness_bin_width,
    triple_edges,
)

__all__ = [
    "phase_measures",
    "phase_tasks",
    "tpb_block",
    "tpb_chunk_counts",
    "tpb_measures",
    "tpb_task",
    "volume_measures",
]

# --------------------------------------------------------------------------- thickness


def _halo_depth(
    voxel_size: tuple[float, ...], max_radius: int, shape: tuple[int, ...]
) -> dict[int, int]:
    """Halo per axis so that the box around a voxel holds the ball of the truncation radius.

    A voxel ``k`` steps away along an axis is at least ``k * side`` away, so
    ``floor(radius / side)`` steps are enough; more than the volume is never needed.
    """
    radius = max_radius * min(voxel_size)
    return {
        axis: min(math.floor(radius / side + 1e-9), size)
        for axis, (side, size) in enumerate(zip(voxel_size, shape))
    }


def _thickness_block_stats(
    thickness: np.ndarray, bin_width: float, n_bins: int, limit: float
) -> np.ndarray:
    """[count, sum, truncated count, histogram...] of the phase voxels of one block."""
    values = thickness[thickness > 0]
    stats = np.zeros(3 + n_bins, dtype=np.float64)
    stats[0] = values.size
    stats[1] = values.sum(dtype=np.float64)
    stats[2] = np.count_nonzero(values >= limit)
    bins = np.rint(values / bin_width).astype(np.int64)
    stats[3:] = np.bincount(bins, minlength=n_bins)[:n_bins]
    return stats.reshape(1, 1, 1, -1)


def _thickness_task(
    phase: da.Array, voxel_size: tuple[float, ...], max_radius: int
) -> tuple[da.Array, float, float]:
    """Summed per-block thickness statistics (a dask array), bin width and truncation."""
    bin_width = thickness_bin_width(voxel_size)
    limit = 2 * max_radius * min(voxel_size)
    n_bins = int(round(limit / bin_width)) + 1
    depth = _halo_depth(voxel_size, max_radius, phase.shape)
    # boundary="none": nothing is assumed beyond the volume, as for the whole array.
    thickness = phase.map_overlap(
        local_thickness,
        depth=depth,
        boundary="none",
        dtype=np.float64,
        voxel_size=voxel_size,
        max_radius=max_radius,
    )
    n_stats = 3 + n_bins
    stats = thickness.map_blocks(
        _thickness_block_stats,
        bin_width,
        n_bins,
        limit,
        new_axis=3,
        chunks=(1, 1, 1, n_stats),
        dtype=np.float64,
    )
    return stats.sum(axis=(0, 1, 2)), bin_width, limit


def _thickness(stats: np.ndarray, bin_width: float, limit: float) -> dict[str, Any]:
    count = int(round(stats[0]))
    return {
        "thickness_mean": float(stats[1] / count) if count else None,
        "thickness_median": histogram_median(np.rint(stats[3:]).astype(np.int64), bin_width),
        "thickness_bin_width": bin_width,
        "thickness_truncated_at": limit,
        "thickness_truncated_fraction": share(int(round(stats[2])), count),
    }


# --------------------------------------------------------------------------- triple-phase boundary


def tpb_block(bits: np.ndarray, block_info=None) -> np.ndarray:
    """TPB edges owned by the voxels of one chunk, read with its low halo (see tpb_edge_counts).

    The block function of :func:`tpb_chunk_counts` (``bits`` is a chunk of phase
    bits with one voxel of its low neighbours, where it has them).

    Examples
    --------
    >>> bits = np.array([[[1, 2], [4, 4]]], dtype=np.uint8)
    >>> tpb_block(bits, block_info={0: {"chunk-location": (0, 0, 0)}}).ravel().tolist()
    [1, 0, 0]
    """
    halo = [int(i > 0) for i in block_info[0]["chunk-location"]]
    counts = np.zeros((1, 1, 1, 3), dtype=np.int64)
    for axis in range(3):
        # Across the axis the halo completes the squares around the chunk's own edges;
        # along the axis the edges of the halo voxels belong to the neighbour.
        index = [slice(None)] * 3
        index[axis] = slice(halo[axis], None)
        counts[0, 0, 0, axis] = triple_edges(bits[tuple(index)], axis)
    return counts


def tpb_chunk_counts(bits: da.Array) -> da.Array:
    """TPB edge counts per chunk and axis, shape (*grid, 3), from phase bits (see phase_bits).

    An edge belongs to the voxel at its high corner, so a chunk needs one voxel of its
    low neighbours only; boundary="none": the volume's outer edges are not counted.

    Examples
    --------
    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8)
    >>> labels[:, :2, 2:] = 1
    >>> labels[:, 2:, 2:] = 2
    >>> bits = da.from_array(phase_bits(labels, (0, 1, 2)), chunks=2)
    >>> tpb_chunk_counts(bits).compute()[:, 1, 1].tolist()
    [[2, 0, 0], [2, 0, 0]]
    """
    with_halo = da.overlap.overlap(bits, depth={axis: (1, 0) for axis in range(3)}, boundary="none")
    return with_halo.map_blocks(
        tpb_block,
        new_axis=3,
        chunks=(1, 1, 1, 3),
        dtype=np.int64,
        meta=np.empty((0, 0, 0, 0), dtype=np.int64),
    )


def tpb_task(volume: da.Array, values: tuple[float, ...]) -> da.Array:
    """TPB edge counts along (z, y, x), summed over chunks (a lazy 3-vector).

    Examples
    --------
    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8)
    >>> labels[:, :2, 2:] = 1
    >>> labels[:, 2:, 2:] = 2
    >>> tpb_task(da.from_array(labels, chunks=2), (0, 1, 2)).compute().tolist()
    [4, 0, 0]
    """
    bits = volume.map_blocks(phase_bits, values, dtype=np.uint8)
    return tpb_chunk_counts(bits).sum(axis=(0, 1, 2))


def tpb_measures(edges: Sequence[int], voxel_size: tuple[float, ...], total_volume: float) -> dict:
    """Counts, length and densities of the TPB edges along (z, y, x) (see measure_phases).

    Examples
    --------
    >>> tpb_measures([4, 0, 0], (0.5, 1.0, 1.0), 32.0)["tpb_length_edges"]
    2.0
    """
    length = float(sum(int(n) * side for n, side in zip(edges, voxel_size)))
    density = length / total_volume
    return {
        "tpb_edges": {name: int(n) for name, n in zip(AXES, edges)},
        "tpb_length_edges": length,
        "tpb_density_edges": density,
        "tpb_density": density * ISOTROPIC_EDGE_FACTOR,
    }


# --------------------------------------------------------------------------- one phase


def phase_tasks(
    phase: da.Array, voxel_size: tuple[float, ...], connectivity: int, max_radius: int
) -> dict[str, Any]:
    """The lazy chunk-wise work for one phase; compute several together to read the data once.

    The labelling and merge tasks of :func:`~.components.connectivity_graph` and
    the summed thickness statistics; :func:`phase_measures` turns them, computed,
    into the measures.

    Examples
    --------
    >>> import dask
    >>> cube = np.zeros((8, 8, 8), dtype=bool)
    >>> cube[2:6, 2:6, 2:6] = True
    >>> (computed,) = dask.compute(phase_tasks(da.from_array(cube, chunks=3), (1, 1, 1), 6, 4))
    >>> found = phase_measures(computed, (1, 1, 1), 512)
    >>> found["volume_fraction"], found["surface_area_faces"], found["thickness_mean"]
    (0.125, 96.0, 2.25)
    """
    summaries, links = connectivity_graph(phase, connectivity)
    thickness, bin_width, limit = _thickness_task(phase, voxel_size, max_radius)
    return {
        "summaries": summaries,
        "links": links,
        "thickness": thickness,
        "bin_width": bin_width,
        "limit": limit,
    }


def volume_measures(shape: tuple[int, ...], voxel_size: tuple[float, ...]) -> dict[str, Any]:
    """All voxels of the volume, and its volume (unit**3).

    Examples
    --------
    >>> volume_measures((4, 4, 4), (0.5, 1.0, 1.0))
    {'total_voxels': 64, 'total_volume': 32.0}
    """
    n_total = int(np.prod(shape, dtype=np.int64))
    return {"total_voxels": n_total, "total_volume": float(n_total * math.prod(voxel_size))}


def phase_measures(
    computed: dict[str, Any], voxel_size: tuple[float, ...], n_total: int
) -> dict[str, Any]:
    """Fraction, surface, connectivity and thickness of one phase from its computed tasks.

    Examples
    --------
    >>> import dask
    >>> slab = np.zeros((4, 4, 4), dtype=bool)
    >>> slab[:, :, :2] = True
    >>> (computed,) = dask.compute(phase_tasks(da.from_array(slab, chunks=2), (1, 1, 1), 6, 4))
    >>> found = phase_measures(computed, (1, 1, 1), 64)
    >>> found["faces"], found["percolates"]["z"]
    ({'z': 0, 'y': 0, 'x': 16}, True)
    """
    summaries, links = computed["summaries"], computed["links"]
    n_phase = sum(summaries[index]["phase_voxels"] for index in np.ndindex(*summaries.shape))
    faces = face_totals(summaries, links)
    face_area = (
        voxel_size[1] * voxel_size[2],
        voxel_size[0] * voxel_size[2],
        voxel_size[0] * voxel_size[1],
    )
    surface = float(sum(int(n) * area for n, area in zip(faces, face_area)))
    specific = surface / (n_total * math.prod(voxel_size))
    result = {
        "phase_voxels": int(n_phase),
        "volume_fraction": n_phase / n_total,
        "faces": {name: int(n) for name, n in zip(AXES, faces)},
        "surface_area_faces": surface,
        "specific_surface_area": specific,
        "specific_surface_area_isotropic": specific * ISOTROPIC_FACE_FACTOR,
    }
    result.update(component_measures(summaries, links, n_phase))
    limits = computed["bin_width"], computed["limit"]
    result.update(_thickness(np.asarray(computed["thickness"]), *limits))
    return result
