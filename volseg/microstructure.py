"""Microstructure of a segmented phase, measured chunk by chunk with dask.

:func:`measure` takes a mask (the ``mask`` array of a volseg output group, any
label volume, a zarr, dask or numpy array, or a path that
:func:`volseg.io.open_scan` opens) and returns a JSON-serialisable dict with

* the **volume fraction** of the phase;
* the **surface area** by a voxel-face count, and the specific surface area
  with and without the isotropic 2/3 correction;
* **connectivity**: connected components, the share of the phase in the largest
  one, and percolation between opposite faces of the volume along each axis;
* a **thickness** (particle size) proxy from the Euclidean distance transform.

No step loads the whole volume: every dask task sees one chunk (plus a halo for
the distance transform, or two facing boundary planes for the merge of
component labels across chunks). The numbers do not depend on the chunking:
integers are identical, floats agree to rounding. The numpy kernels
(:func:`face_counts`, :func:`local_thickness`, :func:`merge_labels`,
:func:`histogram_median`) are public so that each piece can be checked against
a whole-array computation.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from . import io as vio

__all__ = [
    "AXES",
    "face_counts",
    "histogram_median",
    "local_thickness",
    "measure",
    "merge_labels",
    "thickness_bin_width",
]

log = logging.getLogger(__name__)

AXES = ("z", "y", "x")
# Voxel faces of an isotropic (randomly oriented) surface overestimate its area by
# 3/2 on average: the mean |cos| of the normal against each axis is 1/2 (Cauchy).
ISOTROPIC_FACE_FACTOR = 2.0 / 3.0
# Histogram bins per smallest voxel side for the thickness median.
THICKNESS_BINS_PER_VOXEL = 4
CONNECTIVITIES = (6, 26)


# --------------------------------------------------------------------------- numpy kernels


def face_counts(phase: np.ndarray) -> tuple[int, int, int]:
    """Faces between phase and non-phase voxels inside an array, per axis.

    A face along axis ``k`` separates two voxels that are neighbours along
    ``k``, one in the phase and one not. Faces on the outer boundary of the
    array are not counted.

    Parameters
    ----------
    phase : numpy.ndarray
        3D boolean (or 0/1) array.

    Returns
    -------
    tuple of int
        Face counts along (z, y, x); the face area along ``z`` is
        ``voxel_size[1] * voxel_size[2]`` and so on.

    Examples
    --------
    >>> cube = np.zeros((4, 4, 4), dtype=bool)
    >>> cube[1:3, 1:3, 1:3] = True
    >>> face_counts(cube)
    (8, 8, 8)
    """
    phase = np.asarray(phase, dtype=bool)
    counts = []
    for axis in range(phase.ndim):
        lower = [slice(None)] * phase.ndim
        upper = [slice(None)] * phase.ndim
        lower[axis] = slice(None, -1)
        upper[axis] = slice(1, None)
        counts.append(int(np.count_nonzero(phase[tuple(lower)] != phase[tuple(upper)])))
    return tuple(counts)


def local_thickness(
    phase: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    max_radius: int | None = None,
) -> np.ndarray:
    """Local thickness proxy: twice the distance to the nearest non-phase voxel.

    ``2 * scipy.ndimage.distance_transform_edt(phase, sampling=voxel_size)``
    on phase voxels, 0 elsewhere. Distances run between voxel centres, so a
    voxel next to the non-phase has thickness ``2 * voxel side`` and the centre
    plane of a slab ``t`` voxels thick (t odd) has ``t + 1``.

    Parameters
    ----------
    phase : numpy.ndarray
        Boolean (or 0/1) array.
    voxel_size : sequence of float
        Physical voxel side per axis; the result is in the same unit.
    max_radius : int, optional
        Truncate distances at ``max_radius * min(voxel_size)`` (so thicknesses
        at twice that). Non-phase voxels outside the array are not known, so a
        phase with no non-phase voxel has infinite thickness unless truncated.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape.

    Examples
    --------
    >>> slab = np.zeros((7, 1, 1), dtype=bool)
    >>> slab[1:6] = True
    >>> local_thickness(slab)[:, 0, 0]
    array([0., 2., 4., 6., 4., 2., 0.])
    >>> local_thickness(slab, max_radius=2)[:, 0, 0]
    array([0., 2., 4., 4., 4., 2., 0.])
    """
    phase = np.asarray(phase, dtype=bool)
    sampling = tuple(float(s) for s in voxel_size)
    limit = math.inf if max_radius is None else max_radius * min(sampling)
    if phase.all():
        # distance_transform_edt has no background to measure to.
        return np.full(phase.shape, 2 * limit)
    distance = ndimage.distance_transform_edt(phase, sampling=sampling)
    if max_radius is not None:
        np.minimum(distance, limit, out=distance)
    distance *= 2
    return distance


def merge_labels(n_labels: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """Merge labels that touch into components (what a union-find over the pairs gives).

    Parameters
    ----------
    n_labels : int
        Labels are ``0 .. n_labels - 1``.
    pairs : numpy.ndarray
        ``(k, 2)`` integer array; each row names two labels of one component.

    Returns
    -------
    n_components : int
    component : numpy.ndarray
        Component index ``0 .. n_components - 1`` of every label.

    Notes
    -----
    The equivalence classes are the connected components of the graph whose
    edges are ``pairs``, found with :func:`scipy.sparse.csgraph.connected_components`
    (the result a union-find over the pairs gives, vectorised).

    Examples
    --------
    >>> merge_labels(5, np.array([[0, 3], [3, 4]]))
    (3, array([0, 1, 2, 0, 0], dtype=int32))
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if n_labels == 0:
        return 0, np.zeros(0, dtype=np.int32)
    graph = sparse.coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
        shape=(n_labels, n_labels),
    )
    n_components, component = csgraph.connected_components(graph, directed=False)
    return int(n_components), component


def thickness_bin_width(voxel_size: Sequence[float]) -> float:
    """Width of the thickness histogram bins: a quarter of the smallest voxel side.

    Examples
    --------
    >>> thickness_bin_width((2.0, 0.5, 0.5))
    0.125
    """
    return min(float(s) for s in voxel_size) / THICKNESS_BINS_PER_VOXEL


def histogram_median(counts: np.ndarray, bin_width: float) -> float | None:
    """Median of values counted in bins centred on multiples of ``bin_width``.

    Bin ``k`` holds values rounded to ``k * bin_width``. The result is
    :func:`numpy.median` of the rounded values (the mean of the two middle ones
    for an even count), so it is within ``bin_width / 2`` of the exact median.

    Returns
    -------
    float or None
        None when the histogram is empty.

    Examples
    --------
    >>> histogram_median(np.array([0, 2, 1, 0, 1]), 0.25)
    0.375
    >>> histogram_median(np.array([0, 1, 0, 1]), 1.0)
    2.0
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return None
    cumulative = np.cumsum(counts)
    # 1-based ranks of the middle value(s).
    lower = int(np.searchsorted(cumulative, (total + 1) // 2))
    upper = int(np.searchsorted(cumulative, total // 2 + 1))
    return float((lower + upper) / 2 * bin_width)


# --------------------------------------------------------------------------- validation


def _as_phase(mask: Any, label: Any, chunks: Any) -> da.Array:
    """The boolean phase ``mask == label`` as a dask array on the processing chunks."""
    if not isinstance(mask, (np.ndarray, da.Array, zarr.Array)) and hasattr(mask, "mask"):
        mask = mask.mask  # a SegmentationResult or an OutputGroup
    scan = vio.open_scan(mask, role="mask", allow_bool=True)
    array = scan.array
    if chunks is not None:
        chunks = _validate_chunks(chunks, scan.shape)
    if isinstance(array, da.Array):
        if chunks is not None:
            array = array.rechunk(chunks)
    else:
        array = da.from_array(array, chunks=chunks or scan.chunks)
    if not isinstance(label, (numbers.Number, np.generic)) or isinstance(label, complex):
        raise ValueError(f"label={label!r} is not a number; give the value of the phase.")
    return array == label


def _validate_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[int, int, int]:
    try:
        values = tuple(int(c) for c in chunks)
    except TypeError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"chunks={chunks!r} must be three positive integers (z, y, x).")
    return tuple(min(c, s) for c, s in zip(values, shape))


def _validate_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in voxel_size)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            f"voxel_size={voxel_size!r} must be three positive finite numbers (z, y, x)."
        )
    return values


def _validate_options(connectivity: Any, max_radius: Any) -> None:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity={connectivity!r} is not supported; use 6 (faces) or 26 (faces, "
            "edges and corners)."
        )
    if isinstance(max_radius, bool) or not isinstance(max_radius, numbers.Integral):
        raise ValueError(f"max_radius={max_radius!r} must be a positive integer (voxels).")
    if max_radius < 1:
        raise ValueError(f"max_radius={max_radius!r} must be a positive integer (voxels).")


# --------------------------------------------------------------------------- connectivity


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)


def _forward_offsets(connectivity: int) -> list[tuple[int, int, int]]:
    """Neighbouring blocks to link with, each unordered pair once."""
    if connectivity == 6:
        return [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    return [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]


def _plane_index(axis: int, high: bool) -> tuple[slice, ...]:
    index = [slice(None)] * 3
    index[axis] = slice(-1, None) if high else slice(0, 1)
    return tuple(index)


def _label_block(
    block: np.ndarray, connectivity: int, first: tuple[bool, ...], last: tuple[bool, ...]
) -> tuple[dict[str, Any], dict[tuple[int, bool], np.ndarray]]:
    """Label one chunk; return its small summary and its six boundary planes of labels.

    ``first``/``last`` say, per axis, whether the block lies on the low/high face
    of the volume; the labels on those faces are recorded for percolation.
    """
    labels, n_labels = ndimage.label(block, structure=_structure(connectivity))
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)[1:].astype(np.int64)
    # Copies: a view would keep the whole label chunk alive until the merge.
    planes = {
        (axis, high): labels[_plane_index(axis, high)].copy()
        for axis in range(3)
        for high in (False, True)
    }
    touches = {}
    for axis in range(3):
        for high, on_face in ((False, first[axis]), (True, last[axis])):
            if on_face:
                found = np.unique(planes[axis, high])
                touches[axis, high] = found[found > 0]
    summary = {
        "phase_voxels": int(sizes.sum()),
        "faces": face_counts(block),
        "sizes": sizes,
        "touches": touches,
    }
    return summary, planes


def _facing_part(
    planes: dict[tuple[int, bool], np.ndarray], offset: tuple[int, ...], sign: int
) -> np.ndarray:
    """The voxels of a block that face the neighbour at ``sign * offset``."""
    axes = [k for k in range(3) if offset[k]]
    part = planes[axes[0], offset[axes[0]] * sign > 0]
    for axis in axes[1:]:
        part = part[_plane_index(axis, offset[axis] * sign > 0)]
    return part


def _shift_pairs(shift: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices so that ``a[sa]`` and ``b[sb]`` pair voxel ``p`` of a with ``p + shift`` of b."""
    sa, sb = [], []
    for step in shift:
        if step > 0:
            sa.append(slice(None, -1))
            sb.append(slice(1, None))
        elif step < 0:
            sa.append(slice(1, None))
            sb.append(slice(None, -1))
        else:
            sa.append(slice(None))
            sb.append(slice(None))
    return tuple(sa), tuple(sb)


def _link_blocks(
    planes_a: dict[tuple[int, bool], np.ndarray],
    planes_b: dict[tuple[int, bool], np.ndarray],
    offset: tuple[int, int, int],
    connectivity: int,
) -> tuple[np.ndarray, int]:
    """Touching label pairs of two neighbouring blocks, and the faces between them.

    Block b is block a's neighbour at ``offset``. Returns the unique ``(label in
    a, label in b)`` pairs that touch, and for face neighbours the number of
    voxel faces across the boundary separating phase from non-phase.
    """
    part_a = _facing_part(planes_a, offset, 1)
    part_b = _facing_part(planes_b, offset, -1)
    free = [k for k in range(3) if offset[k] == 0]
    if connectivity == 6:
        shifts = [(0, 0, 0)]
    else:
        shifts = []
        for steps in itertools.product((-1, 0, 1), repeat=len(free)):
            shift = [0, 0, 0]
            for axis, step in zip(free, steps):
                shift[axis] = step
            shifts.append(tuple(shift))
    found = []
    for shift in shifts:
        sa, sb = _shift_pairs(shift)
        a, b = part_a[sa], part_b[sb]
        touching = (a > 0) & (b > 0)
        if touching.any():
            found.append(np.stack([a[touching], b[touching]], axis=1))
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)
    faces = 0
    if len(free) == 2:
        faces = int(np.count_nonzero((part_a > 0) != (part_b > 0)))
    return pairs.astype(np.int64), faces


def _one(value: Any) -> np.ndarray:
    """Wrap a Python object as the (1, 1, 1) object block of a dask array."""
    block = np.empty((1, 1, 1), dtype=object)
    block[0, 0, 0] = value
    return block


_OBJECT_META = np.empty((0, 0, 0), dtype=object)


def _label_chunk(block: np.ndarray, connectivity: int, block_info=None) -> np.ndarray:
    info = block_info[0]
    location, grid = info["chunk-location"], info["num-chunks"]
    first = tuple(i == 0 for i in location)
    last = tuple(i == n - 1 for i, n in zip(location, grid))
    return _one(_label_block(block, connectivity, first, last))


def _summary_chunk(labelled: np.ndarray) -> np.ndarray:
    return _one(labelled[0, 0, 0][0])


def _link_chunks(
    labelled_a: np.ndarray, labelled_b: np.ndarray, offset: tuple[int, int, int], connectivity: int
) -> np.ndarray:
    planes_a, planes_b = labelled_a[0, 0, 0][1], labelled_b[0, 0, 0][1]
    return _one(_link_blocks(planes_a, planes_b, offset, connectivity))


def _neighbour_slices(
    offset: tuple[int, ...], grid: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Block ranges (a, b) such that block b[p] is the neighbour of a[p] at ``offset``."""
    if any(n - abs(d) < 1 for d, n in zip(offset, grid)):
        return None
    sa = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(offset, grid))
    sb = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(offset, grid))
    return sa, sb


def _connectivity_graph(phase: da.Array, connectivity: int) -> tuple[da.Array, dict]:
    """Per-chunk summaries and per-neighbour-pair links, as object dask arrays.

    One block of the summaries holds the phase voxels, face counts, component
    sizes and face-touching labels of one chunk; one block of ``links[offset]``
    holds the touching label pairs of chunk ``p`` (shifted, see
    :func:`_neighbour_slices`) and its neighbour at ``offset``. The labelled
    chunks stay on the workers; only their boundary planes reach the link tasks.
    """
    labelled = phase.map_blocks(
        _label_chunk,
        connectivity,
        chunks=(1, 1, 1),
        dtype=object,
        meta=_OBJECT_META,
        token="volseg-label-chunks",
    )
    summaries = labelled.map_blocks(
        _summary_chunk, dtype=object, meta=_OBJECT_META, token="volseg-chunk-summary"
    )
    grid = labelled.numblocks
    links = {}
    for offset in _forward_offsets(connectivity):
        ranges = _neighbour_slices(offset, grid)
        if ranges is None:
            continue
        sa, sb = ranges
        links[offset] = da.map_blocks(
            _link_chunks,
            labelled[sa],
            labelled[sb],
            offset,
            connectivity,
            dtype=object,
            meta=_OBJECT_META,
            token=f"volseg-link-{'_'.join(map(str, offset))}",
        )
    return summaries, links


def _components(summaries: np.ndarray, links: dict, n_phase: int) -> dict[str, Any]:
    """Merge chunk labels into global components; sizes, largest share, percolation."""
    base = np.zeros(summaries.shape, dtype=np.int64)
    n_labels = 0
    sizes = []
    for index in np.ndindex(*summaries.shape):
        base[index] = n_labels - 1  # local labels start at 1
        n_labels += len(summaries[index]["sizes"])
        sizes.append(summaries[index]["sizes"])
    sizes = np.concatenate(sizes)
    edges = []
    for offset, blocks in links.items():
        sa, sb = _neighbour_slices(offset, summaries.shape)
        base_a, base_b = base[sa], base[sb]
        for index in np.ndindex(*blocks.shape):
            pairs = blocks[index][0]
            if len(pairs):
                edges.append(
                    np.stack([pairs[:, 0] + base_a[index], pairs[:, 1] + base_b[index]], 1)
                )
    n_components, component = merge_labels(
        n_labels, np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    )
    component_sizes = np.bincount(component, weights=sizes, minlength=n_components)
    component_sizes = np.rint(component_sizes).astype(np.int64)

    percolates, percolating_fraction = {}, {}
    for axis, name in enumerate(AXES):
        ends = []
        for high in (False, True):
            labels = [
                summaries[index]["touches"][axis, high] + base[index]
                for index in np.ndindex(*summaries.shape)
                if (axis, high) in summaries[index]["touches"]
            ]
            ends.append(np.unique(component[np.concatenate(labels)]))
        crossing = np.intersect1d(ends[0], ends[1])
        percolates[name] = bool(len(crossing))
        percolating_fraction[name] = _share(int(component_sizes[crossing].sum()), n_phase)
    largest = int(component_sizes.max()) if n_components else 0
    return {
        "n_components": n_components,
        "largest_component_voxels": largest,
        "largest_component_fraction": _share(largest, n_phase),
        "percolates": percolates,
        "percolating_fraction": percolating_fraction,
    }


def _face_totals(summaries: np.ndarray, links: dict) -> np.ndarray:
    """Faces inside chunks plus faces across chunk faces: each face once."""
    faces = np.zeros(3, dtype=np.int64)
    for index in np.ndindex(*summaries.shape):
        faces += summaries[index]["faces"]
    for offset, blocks in links.items():
        if sum(map(abs, offset)) == 1:
            axis = offset.index(1)
            faces[axis] += sum(blocks[index][1] for index in np.ndindex(*blocks.shape))
    return faces


def _share(part: int, whole: int) -> float | None:
    return float(part / whole) if whole else None


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
        "thickness_truncated_fraction": _share(int(round(stats[2])), count),
    }


# --------------------------------------------------------------------------- measure


def measure(
    mask: Any,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    label: float = 1,
    chunks: Sequence[int] | None = None,
    connectivity: int = 6,
    max_radius: int = 32,
) -> dict[str, Any]:
    """Volume fraction, surface, connectivity and thickness of a segmented phase.

    The volume is processed chunk by chunk with dask (the active scheduler or
    ``dask.distributed`` client), never loaded whole; results do not depend on
    the chunking (integers identical, floats equal to rounding).

    Parameters
    ----------
    mask : zarr.Array, dask.array.Array, numpy.ndarray, path or SegmentationResult
        3D (z, y, x) mask or label volume; for a result of
        :func:`volseg.segment` its ``mask`` is used.
    voxel_size : sequence of float
        Physical voxel side along (z, y, x). Lengths below are in this unit,
        areas in unit**2, volumes in unit**3, specific surfaces in 1/unit.
    label : number
        Value of the phase in ``mask`` (1 in a volseg mask, 2 for Ni in
        volseg.synth labels).
    chunks : sequence of int, optional
        Processing chunk shape; default the array's own chunks (a numpy array
        is wrapped by :func:`volseg.io.open_scan`).
    connectivity : {6, 26}
        Voxels of a component touch by faces (6) or by faces, edges and
        corners (26).
    max_radius : int
        Distances to the non-phase are computed within a halo of
        ``max_radius`` voxels (of the smallest side) around each chunk and
        truncated at ``max_radius * min(voxel_size)``; thicker regions count
        as ``2 * max_radius * min(voxel_size)``.

    Returns
    -------
    dict
        JSON-serialisable. Ratios that would be 0/0 (no phase voxel) are None.

        ``shape``, ``voxel_size``, ``label``, ``chunks``, ``connectivity``, ``max_radius``
            The input and settings (``chunks``: the largest processing chunk).
        ``phase_voxels``, ``total_voxels``, ``volume_fraction``
            Phase voxel count, all voxels, and their ratio.
        ``total_volume``
            Volume of the whole array (unit**3).
        ``faces``
            ``{"z", "y", "x"}``: voxel faces between phase and non-phase
            voxels, counted between neighbours inside the volume; faces on
            the outer boundary of the volume are **not** counted.
        ``surface_area_faces``
            Surface area by **voxel-face count**: the sum of face counts times
            the face area along each axis (unit**2).
        ``specific_surface_area``
            ``surface_area_faces`` / ``total_volume`` (1/unit).
        ``specific_surface_area_isotropic``
            ``specific_surface_area * 2/3``: voxel faces overestimate a smooth
            surface by 3/2 on average for isotropic (randomly oriented)
            surfaces (Cauchy's projection formula: the mean of ``|cos|``
            between normal and axis is 1/2); a sphere of radius 20 voxels
            comes within ~1 %. For strongly aligned surfaces use the raw count.
        ``n_components``
            Connected components of the phase.
        ``largest_component_voxels``, ``largest_component_fraction``
            Voxels of the largest component, and its share of the phase.
        ``percolates``
            ``{"z", "y", "x"}``: whether a single component touches both
            opposite faces of the volume along that axis.
        ``percolating_fraction``
            ``{"z", "y", "x"}``: share of phase voxels in components that
            percolate along that axis.
        ``thickness_mean``, ``thickness_median``
            Local thickness proxy averaged over **all phase voxels** (not
            only the medial axis): twice the Euclidean distance from the voxel
            centre to the nearest non-phase voxel centre
            (``distance_transform_edt(sampling=voxel_size)``), in unit; see
            :func:`local_thickness`. The mean is exact (sum / count); the
            median comes from a histogram with bins of
            ``thickness_bin_width = min(voxel_size) / 4`` summed over chunks
            and is within half a bin of the exact median. Non-phase voxels
            beyond the volume's faces are unknown and do not count.
        ``thickness_truncated_at``, ``thickness_truncated_fraction``
            ``2 * max_radius * min(voxel_size)``, and the share of phase voxels
            whose thickness reached it (raise ``max_radius`` if large).

    Notes
    -----
    Components are labelled per chunk with :func:`scipy.ndimage.label`; only the
    boundary planes of each chunk's labels travel to the tasks that pair the
    labels touching across a chunk face (and, for 26-connectivity, edge and
    corner); the pairs are merged on the client (:func:`merge_labels`). The
    voxel faces across chunk faces are counted by the same pairing tasks, so
    every face is counted once. The thickness pass reads the mask again, with
    a halo (``dask.array.map_overlap``, chunks grown to at least the halo).

    Examples
    --------
    >>> cube = np.zeros((8, 8, 8), dtype=np.uint8)
    >>> cube[2:6, 2:6, 2:6] = 1
    >>> m = measure(cube, chunks=(3, 3, 3))
    >>> m["volume_fraction"], m["surface_area_faces"], m["n_components"]
    (0.125, 96.0, 1)
    >>> m["specific_surface_area"]
    0.1875
    >>> m["percolates"]
    {'z': False, 'y': False, 'x': False}
    >>> m["thickness_mean"], m["thickness_median"]
    (2.25, 2.0)
    """
    voxel_size = _validate_voxel_size(voxel_size)
    _validate_options(connectivity, max_radius)
    phase = _as_phase(mask, label, chunks)
    shape = tuple(int(s) for s in phase.shape)
    log.debug("measuring %s in chunks %s", shape, phase.chunksize)

    summaries, links = _connectivity_graph(phase, connectivity)
    thickness_sum, bin_width, limit = _thickness_task(phase, voxel_size, max_radius)
    summaries, link_blocks, thickness_stats = dask.compute(
        summaries, list(links.values()), thickness_sum
    )
    links = dict(zip(links, link_blocks))

    n_phase = sum(summaries[index]["phase_voxels"] for index in np.ndindex(*summaries.shape))
    n_total = int(np.prod(shape, dtype=np.int64))
    faces = _face_totals(summaries, links)
    face_area = (
        voxel_size[1] * voxel_size[2],
        voxel_size[0] * voxel_size[2],
        voxel_size[0] * voxel_size[1],
    )
    voxel_volume = voxel_size[0] * voxel_size[1] * voxel_size[2]
    surface = float(sum(int(n) * area for n, area in zip(faces, face_area)))
    total_volume = n_total * voxel_volume
    specific = surface / total_volume

    result = {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "label": label.item() if isinstance(label, np.generic) else label,
        "chunks": [int(c) for c in phase.chunksize],
        "connectivity": int(connectivity),
        "max_radius": int(max_radius),
        "phase_voxels": int(n_phase),
        "total_voxels": n_total,
        "volume_fraction": n_phase / n_total,
        "total_volume": float(total_volume),
        "faces": {name: int(n) for name, n in zip(AXES, faces)},
        "surface_area_faces": surface,
        "specific_surface_area": specific,
        "specific_surface_area_isotropic": specific * ISOTROPIC_FACE_FACTOR,
    }
    result.update(_components(summaries, links, n_phase))
    result.update(_thickness(np.asarray(thickness_stats), bin_width, limit))
    return result
