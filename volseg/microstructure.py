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

:func:`measure_phases` does the same for every phase of a three-phase label
volume (pore, YSZ, Ni) in one pass over the data and adds the **triple-phase
boundary** (TPB) length by an edge count.

No step loads the whole volume: every dask task sees one chunk (plus a halo for
the distance transform or the TPB edges, or two facing boundary planes for the
merge of component labels across chunks). The numbers do not depend on the
chunking: integers are identical, floats agree to rounding. The numpy kernels
(:func:`face_counts`, :func:`tpb_edge_counts`, :func:`local_thickness`,
:func:`merge_labels`, :func:`histogram_median`) are public so that each piece can
be checked against a whole-array computation.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from . import io as vio
from . import store
from .conventions import PHASES

__all__ = [
    "AXES",
    "face_counts",
    "histogram_median",
    "local_thickness",
    "measure",
    "measure_phases",
    "merge_labels",
    "thickness_bin_width",
    "tpb_edge_counts",
]

log = logging.getLogger(__name__)

AXES = ("z", "y", "x")
# Voxel faces of an isotropic (randomly oriented) surface overestimate its area by
# 3/2 on average: the mean |cos| of the normal against each axis is 1/2 (Cauchy).
ISOTROPIC_FACE_FACTOR = 2.0 / 3.0
# Voxel edges along a straight line of direction u have total length L (|ux| + |uy| + |uz|),
# 3/2 L on average over isotropic directions (E|u_k| = 1/2 on the unit sphere).
ISOTROPIC_EDGE_FACTOR = 2.0 / 3.0
# Bits of the three phases in _phase_bits; all three set on a triple-phase boundary edge.
ALL_THREE_PHASES = 0b111
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


def tpb_edge_counts(
    labels: np.ndarray, phase_values: Sequence[float] = (0, 1, 2)
) -> tuple[int, int, int]:
    """Triple-phase-boundary edges inside a label array, per axis.

    An edge of the voxel lattice parallel to axis ``k`` is shared by four
    voxels, a 2x2 square in the plane perpendicular to ``k``. It lies on the
    triple-phase boundary when those four voxels hold all three phase values.
    Only edges whose four voxels are all inside the array are counted; voxels
    with any other value count as no phase.

    Parameters
    ----------
    labels : numpy.ndarray
        3D (z, y, x) label array.
    phase_values : sequence of 3 numbers
        The label values of the three phases (pore, YSZ, Ni in volseg.synth
        labels), all different.

    Returns
    -------
    tuple of int
        Edge counts along (z, y, x); an edge along ``z`` is ``voxel_size[0]``
        long and so on.

    Notes
    -----
    Each edge belongs to the voxel at its high corner: the edge along ``z``
    between voxels ``(z, y - 1 .. y, x - 1 .. x)`` belongs to ``(z, y, x)``.
    So the counts of the voxels of each chunk, read with one voxel of the
    neighbouring chunks on the low side of each axis, add up to the count of
    the whole array (:func:`measure_phases` does that).

    Examples
    --------
    A straight triple line along z, four voxels long:

    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8)
    >>> labels[:, :2, 2:] = 1
    >>> labels[:, 2:, 2:] = 2
    >>> tpb_edge_counts(labels)
    (4, 0, 0)
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(
            f"labels has shape {labels.shape} ({labels.ndim}D); the triple-phase boundary "
            "needs a 3D (z, y, x) label array."
        )
    values = _validate_phase_values(phase_values, "phase_values")
    bits = _phase_bits(labels, values)
    return tuple(_triple_edges(bits, axis) for axis in range(3))


def _phase_bits(labels: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
    """uint8 array with bit ``k`` set where ``labels == values[k]``."""
    bits = np.zeros(labels.shape, dtype=np.uint8)
    for bit, value in enumerate(values):
        bits[labels == value] = 1 << bit
    return bits


def _triple_edges(bits: np.ndarray, axis: int) -> int:
    """Edges parallel to ``axis`` whose four voxels hold all three phases (see _phase_bits)."""
    across = [k for k in range(3) if k != axis]
    seen = None
    for corner in itertools.product((slice(None, -1), slice(1, None)), repeat=2):
        index = [slice(None)] * 3
        for k, part in zip(across, corner):
            index[k] = part
        voxels = bits[tuple(index)]
        seen = voxels.copy() if seen is None else np.bitwise_or(seen, voxels, out=seen)
    return int(np.count_nonzero(seen == ALL_THREE_PHASES))


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


def _as_phase(mask: Any, label: Any, chunks: Any) -> tuple[vio.Scan, da.Array]:
    """The opened mask, and the boolean phase ``mask == label`` on the processing chunks."""
    if not isinstance(mask, (np.ndarray, da.Array, zarr.Array)) and hasattr(mask, "mask"):
        mask = mask.mask  # a SegmentationResult or an OutputGroup
    scan, array = _as_volume(mask, chunks, role="mask")
    return scan, array == _validate_label(label, "label")


def _refuse_absent_label(scan: vio.Scan, label: float, chunks: Any) -> None:
    """An empty phase is a result only when the volume holds nothing else either; a label
    the volume does not use next to other values is a wrong ``label`` (0 voxels, exit 0)."""
    _, array = _as_volume(scan.array, chunks, role="mask")
    values = np.unique(da.unique(array).compute())
    if np.any(values != 0):
        shown = ", ".join(f"{v:g}" for v in values[:10].tolist())
        raise ValueError(
            f"mask {scan.source} holds no voxel of label={label:g}; it holds the values "
            f"{shown}: pass --label (label=) with the value of the phase to measure."
        )
    log.warning("mask %s is empty (all 0): the phase has no voxel", scan.source)


def _voxel_size_of(scan: vio.Scan, voxel_size: Any) -> tuple[tuple[float, ...], str | None]:
    """The given voxel size, else the one in the OME-Zarr metadata, else 1 (voxel units)."""
    if voxel_size is not None:
        return vio.validate_voxel_size(voxel_size), None
    recorded = vio.recorded_voxel_size(scan)
    if recorded is None:
        return (1.0, 1.0, 1.0), None
    return vio.validate_voxel_size(recorded[0]), recorded[1]


def _as_volume(source: Any, chunks: Any, role: str) -> tuple[vio.Scan, da.Array]:
    """The opened volume, and its data as a dask array on the processing chunks."""
    scan = vio.open_scan(source, role=role, allow_bool=True)
    array = scan.array
    if chunks is not None:
        chunks = vio.validate_chunks(chunks, scan.shape)
    if isinstance(array, da.Array):
        if chunks is not None:
            array = array.rechunk(chunks)
    else:
        array = da.from_array(array, chunks=chunks or scan.chunks)
    return scan, array


def _validate_label(label: Any, name: str) -> float:
    """A label value as a plain Python number (for JSON)."""
    if not isinstance(label, (numbers.Number, np.generic)) or isinstance(label, complex):
        raise ValueError(f"{name}={label!r} is not a number; give the value of the phase.")
    return label.item() if isinstance(label, np.generic) else label


def _validate_phase_values(values: Any, what: str) -> tuple[float, float, float]:
    """Three different label values; ``what`` names them in messages."""
    try:
        values = tuple(values)
    except TypeError:
        values = (values,)
    if len(values) != 3:
        raise ValueError(
            f"{what} {values!r} must be the label values of exactly three phases, "
            "e.g. (0, 1, 2) for pore, YSZ and Ni."
        )
    values = tuple(_validate_label(value, what) for value in values)
    if len(set(values)) != 3:
        raise ValueError(
            f"{what} {values!r} give two phases the same label value; each of the three "
            "phases needs its own value."
        )
    return values


def _validate_phases(phases: Any, origin: str) -> dict[str, float]:
    """``{name: label value}`` of exactly three phases with different values."""
    if not isinstance(phases, Mapping) or len(phases) != 3:
        raise ValueError(
            f"phases={phases!r} ({origin}) must map exactly three phase names to their label "
            f"values, e.g. phases={PHASES}."
        )
    if not all(isinstance(name, str) for name in phases):
        raise ValueError(f"phases={phases!r} ({origin}): phase names must be strings.")
    values = [_validate_label(value, f"phases[{name!r}]") for name, value in phases.items()]
    values = _validate_phase_values(values, f"phases={dict(phases)!r} ({origin}):")
    return dict(zip(phases, values))


def _phases_of(scan: vio.Scan, phases: Any) -> dict[str, float]:
    """The phases given, else those recorded in the label array's attrs, else pore/YSZ/Ni."""
    if phases is not None:
        return _validate_phases(phases, "given")
    recorded = vio.recorded_phases(scan)
    if recorded is None:
        return _validate_phases(PHASES, "the default")
    return _validate_phases(recorded, f"recorded in the attrs of {scan.source!r}")


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
    base, n_components, component, component_sizes = _merge_chunk_labels(summaries, links)

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


def _merge_chunk_labels(
    summaries: np.ndarray, links: dict
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Global components of the chunk labels.

    Returns the offset of each chunk's labels (chunk label ``l`` is global label
    ``base[chunk] + l``), the number of components, the component of every global
    label, and the voxels of every component.
    """
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
    return base, n_components, component, np.rint(component_sizes).astype(np.int64)


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


def _cleanup_record(cleanup: dict | None) -> dict[str, Any]:
    """``min_size_voxels`` and the clean-up report, when there was a clean-up."""
    if cleanup is None:
        return {}
    return {"min_size_voxels": cleanup["min_size_voxels"], "cleanup": cleanup}


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


# --------------------------------------------------------------------------- triple-phase boundary


def _tpb_block(bits: np.ndarray, block_info=None) -> np.ndarray:
    """TPB edges owned by the voxels of one chunk, read with its low halo (see tpb_edge_counts)."""
    halo = [int(i > 0) for i in block_info[0]["chunk-location"]]
    counts = np.zeros((1, 1, 1, 3), dtype=np.int64)
    for axis in range(3):
        # Across the axis the halo completes the squares around the chunk's own edges;
        # along the axis the edges of the halo voxels belong to the neighbour.
        index = [slice(None)] * 3
        index[axis] = slice(halo[axis], None)
        counts[0, 0, 0, axis] = _triple_edges(bits[tuple(index)], axis)
    return counts


def _tpb_task(volume: da.Array, values: tuple[float, ...]) -> da.Array:
    """TPB edge counts along (z, y, x), summed over chunks (a lazy 3-vector)."""
    bits = volume.map_blocks(_phase_bits, values, dtype=np.uint8)
    # An edge belongs to the voxel at its high corner, so a chunk needs one voxel of its
    # low neighbours only; boundary="none": the volume's outer edges are not counted.
    with_halo = da.overlap.overlap(bits, depth={axis: (1, 0) for axis in range(3)}, boundary="none")
    counts = with_halo.map_blocks(
        _tpb_block,
        new_axis=3,
        chunks=(1, 1, 1, 3),
        dtype=np.int64,
        meta=np.empty((0, 0, 0, 0), dtype=np.int64),
    )
    return counts.sum(axis=(0, 1, 2))


def _tpb(edges: Sequence[int], voxel_size: tuple[float, ...], total_volume: float) -> dict:
    length = float(sum(int(n) * side for n, side in zip(edges, voxel_size)))
    density = length / total_volume
    return {
        "tpb_edges": {name: int(n) for name, n in zip(AXES, edges)},
        "tpb_length_edges": length,
        "tpb_density_edges": density,
        "tpb_density": density * ISOTROPIC_EDGE_FACTOR,
    }


# --------------------------------------------------------------------------- one phase


def _phase_tasks(
    phase: da.Array, voxel_size: tuple[float, ...], connectivity: int, max_radius: int
) -> dict[str, Any]:
    """The lazy chunk-wise work for one phase; compute several together to read the data once."""
    summaries, links = _connectivity_graph(phase, connectivity)
    thickness, bin_width, limit = _thickness_task(phase, voxel_size, max_radius)
    return {
        "summaries": summaries,
        "links": links,
        "thickness": thickness,
        "bin_width": bin_width,
        "limit": limit,
    }


def _volume(shape: tuple[int, ...], voxel_size: tuple[float, ...]) -> dict[str, Any]:
    n_total = int(np.prod(shape, dtype=np.int64))
    return {"total_voxels": n_total, "total_volume": float(n_total * math.prod(voxel_size))}


def _phase_measures(
    computed: dict[str, Any], voxel_size: tuple[float, ...], n_total: int
) -> dict[str, Any]:
    """Fraction, surface, connectivity and thickness of one phase from its computed tasks."""
    summaries, links = computed["summaries"], computed["links"]
    n_phase = sum(summaries[index]["phase_voxels"] for index in np.ndindex(*summaries.shape))
    faces = _face_totals(summaries, links)
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
    result.update(_components(summaries, links, n_phase))
    limits = computed["bin_width"], computed["limit"]
    result.update(_thickness(np.asarray(computed["thickness"]), *limits))
    return result


# --------------------------------------------------------------------------- measure


def measure(
    mask: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    label: float = 1,
    chunks: Sequence[int] | None = None,
    connectivity: int = 6,
    max_radius: int = 32,
    allow_incomplete: bool = False,
    min_size: int | str = 0,
    tortuosity: bool | Sequence[str] = False,
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
    voxel_size : sequence of float, optional
        Physical voxel side along (z, y, x). Lengths below are in this unit,
        areas in unit**2, volumes in unit**3, specific surfaces in 1/unit.
        Default: the scale in the OME-Zarr metadata of the array (a volseg output
        carries its scan's), else 1 (voxel units); ``unit`` in the result names it.
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
    allow_incomplete : bool
        Measure a volseg output whose run has not finished (refused by default): the
        fraction is over its done chunks only, the measures that need the whole volume
        are None, and ``chunks_missing`` and ``note`` say so.
    min_size : int or str
        First reassign connected components (of the phase and of the rest)
        smaller than this, in voxels or a volume such as ``"0.5um3"``
        (:func:`volseg.cleanup.remove_small_components`, chunk-invariant);
        0 (default) measures the mask as it is.
    tortuosity : bool or sequence of {"z", "y", "x"}
        Also solve the tortuosity factor and effective diffusivity of the phase
        along these axes (True: all three) with
        :func:`volseg.transport.tortuosity` (out of core, one conjugate-gradient
        solve per axis): ``tortuosity``, ``effective_diffusivity`` per axis.

    Returns
    -------
    dict
        JSON-serialisable. Ratios that would be 0/0 (no phase voxel) are None.

        ``shape``, ``voxel_size``, ``unit``, ``label``, ``chunks``, ``connectivity``, ``max_radius``
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
    if voxel_size is not None:
        vio.validate_voxel_size(voxel_size)
    _validate_options(connectivity, max_radius)
    checked = store.output_state(mask, allow_incomplete)
    scan, phase = _as_phase(mask, label, chunks)
    voxel_size, unit = _voxel_size_of(scan, voxel_size)
    cleanup = None
    if min_size:
        from .cleanup import remove_small_components

        cleaned, cleanup = remove_small_components(
            phase.astype(np.uint8),
            min_size,
            values=(0, 1),
            connectivity=connectivity,
            voxel_size=voxel_size,
            unit=unit,
        )
        phase = cleaned == 1
    shape = tuple(int(s) for s in phase.shape)
    log.debug("measuring %s in chunks %s", shape, phase.chunksize)

    (computed,) = dask.compute(_phase_tasks(phase, voxel_size, connectivity, max_radius))
    result = {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "label": _validate_label(label, "label"),
        "chunks": [int(c) for c in phase.chunksize],
        "connectivity": int(connectivity),
        "max_radius": int(max_radius),
        **_cleanup_record(cleanup),
        **_volume(shape, voxel_size),
    }
    result.update(_phase_measures(computed, voxel_size, result["total_voxels"]))
    if result["phase_voxels"] == 0 and cleanup is None:
        _refuse_absent_label(scan, result["label"], chunks)
    if tortuosity and not (checked is not None and checked[0].missing):
        from .transport import phase_transport

        result.update(phase_transport(phase.astype(np.uint8), voxel_size, 1, tortuosity))
    if checked is not None and checked[0].missing:
        result = store.partial_measures(result, {"": phase}, *checked)
    return result


def measure_phases(
    labels: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    phases: Mapping[str, float] | None = None,
    chunks: Sequence[int] | None = None,
    connectivity: int = 6,
    max_radius: int = 32,
    allow_incomplete: bool = False,
    min_size: int | str = 0,
    faces: Mapping[str, Any] | None = None,
    tortuosity: bool | Sequence[str] = False,
) -> dict[str, Any]:
    """Every phase of a three-phase label volume, and its triple-phase boundary.

    Each phase gets the measures of :func:`measure`; the triple-phase boundary
    (TPB), where pore, YSZ and Ni meet, is measured by counting voxel edges
    (:func:`tpb_edge_counts`). The volume is processed chunk by chunk with dask
    in one pass (each chunk is read once for all phases), never loaded whole;
    integers do not depend on the chunking, floats agree to rounding.

    Parameters
    ----------
    labels : zarr.Array, dask.array.Array, numpy.ndarray or path
        3D (z, y, x) label volume.
    voxel_size : sequence of float, optional
        Physical voxel side along (z, y, x). Lengths are in this unit, areas in
        unit**2, volumes in unit**3, TPB densities in unit/unit**3 = 1/unit**2.
        Default: the scale in the OME-Zarr metadata, else 1 (voxel units).
    phases : mapping of str to number, optional
        Names and label values of exactly three phases, all values different.
        Default: the ``"phases"`` recorded in the label array's attrs (as
        volseg.synth writes them), else ``{"pore": 0, "ysz": 1, "ni": 2}``.
    chunks, connectivity, max_radius, allow_incomplete
        As for :func:`measure`.
    min_size : int or str
        First reassign connected components of every phase smaller than this,
        in voxels or a volume such as ``"0.5um3"``, to the phase they share the
        most faces with (:func:`volseg.cleanup.remove_small_components`,
        chunk-invariant); 0 (default) measures the labels as they are.
    faces : mapping of str to sequence of str, optional
        Also measure the active TPB (``active_tpb`` in the result): edges whose
        three phases belong to components touching the faces required for
        them, e.g. ``{"ysz": ["z-"], "ni": ["z+"], "pore": ["z+"]}``
        (:func:`volseg.tpb.active_tpb`).
    tortuosity : bool or sequence of {"z", "y", "x"}
        Also solve the tortuosity factor and effective diffusivity of every
        phase along these axes (True: all three), as for :func:`measure`.

    Returns
    -------
    dict
        JSON-serialisable.

        ``shape``, ``voxel_size``, ``unit``, ``chunks``, ``connectivity``, ``max_radius``
            The input and settings, as for :func:`measure`.
        ``total_voxels``, ``total_volume``
            All voxels, and the volume of the whole array (unit**3).
        ``phase_values``, ``phase_fractions``
            ``{name: label value}`` and ``{name: volume fraction}``; the
            fractions add up to less than 1 when other values occur.
        ``phases``
            ``{name: measures}``: what :func:`measure` returns for that phase
            (``label``, ``phase_voxels``, ``volume_fraction``, ``faces``,
            surfaces, components, percolation, thickness), less the keys above.
        ``tpb_edges``
            ``{"z", "y", "x"}``: voxel edges parallel to that axis whose four
            surrounding voxels hold all three phases, counted inside the
            volume (edges on its outer faces are not).
        ``tpb_length_edges``
            The length of those edges: the sum of the counts times the voxel
            side along each axis (unit). It is a staircase along the true
            triple line, so it overestimates that line's length.
        ``tpb_density_edges``
            ``tpb_length_edges / total_volume`` (1/unit**2).
        ``tpb_density``
            ``tpb_density_edges * 2/3``, the isotropic estimate of the TPB
            length per volume: a straight line of direction ``u`` and length
            ``L`` is covered by voxel edges of total length
            ``L (|ux| + |uy| + |uz|)``, on average ``3/2 L`` over isotropic
            (uniformly random) directions since ``E|u_k| = 1/2``. The factor is
            exact on average for isotropic, well-resolved lines only; for a
            line along an axis it underestimates by 1/3, for a line along a
            cube diagonal it overestimates by ``sqrt(3) * 2/3 = 1.15``.

    Notes
    -----
    Each voxel edge belongs to the voxel at its high corner, so a chunk counts
    its own edges reading one voxel of its low neighbours
    (``dask.array.overlap.overlap`` with depth ``(1, 0)`` per axis) and the
    counts of the chunks add up to the whole-array count exactly.

    Examples
    --------
    A straight triple line along z, four voxels of side 0.5 long:

    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8)
    >>> labels[:, :2, 2:] = 1
    >>> labels[:, 2:, 2:] = 2
    >>> m = measure_phases(labels, (0.5, 1.0, 1.0), chunks=(3, 3, 3), max_radius=2)
    >>> m["phase_fractions"]
    {'pore': 0.5, 'ysz': 0.25, 'ni': 0.25}
    >>> m["tpb_edges"]
    {'z': 4, 'y': 0, 'x': 0}
    >>> m["tpb_length_edges"], m["tpb_density_edges"]
    (2.0, 0.0625)
    >>> m["phases"]["ni"]["n_components"], m["phases"]["ni"]["percolates"]
    (1, {'z': True, 'y': False, 'x': False})
    """
    if voxel_size is not None:
        vio.validate_voxel_size(voxel_size)
    _validate_options(connectivity, max_radius)
    checked = store.output_state(labels, allow_incomplete)
    scan, volume = _as_volume(labels, chunks, role="labels")
    voxel_size, unit = _voxel_size_of(scan, voxel_size)
    phases = _phases_of(scan, phases)
    cleanup = None
    if min_size:
        from .cleanup import remove_small_components

        volume, cleanup = remove_small_components(
            volume,
            min_size,
            values=tuple(phases.values()),
            connectivity=connectivity,
            voxel_size=voxel_size,
            unit=unit,
        )
    shape = tuple(int(s) for s in volume.shape)
    log.debug("measuring phases %s of %s in chunks %s", phases, shape, volume.chunksize)

    tasks = {
        name: _phase_tasks(volume == value, voxel_size, connectivity, max_radius)
        for name, value in phases.items()
    }
    computed, edges = dask.compute(tasks, _tpb_task(volume, tuple(phases.values())))

    result = {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "chunks": [int(c) for c in volume.chunksize],
        "connectivity": int(connectivity),
        "max_radius": int(max_radius),
        **_cleanup_record(cleanup),
        **_volume(shape, voxel_size),
        "phase_values": dict(phases),
    }
    measures = {
        name: {
            "label": value,
            **_phase_measures(computed[name], voxel_size, result["total_voxels"]),
        }
        for name, value in phases.items()
    }
    for name, values in measures.items():
        if values["phase_voxels"] == 0:
            log.warning(
                "phase %r (label %r) has no voxel in %s: there is no triple-phase boundary; "
                "check phases=%s",
                name,
                values["label"],
                scan.source,
                phases,
            )
    result["phase_fractions"] = {
        name: values["volume_fraction"] for name, values in measures.items()
    }
    result["phases"] = measures
    result.update(_tpb(edges, voxel_size, result["total_volume"]))
    if tortuosity and not (checked is not None and checked[0].missing):
        from .transport import phase_transport

        for name, value in phases.items():
            measures[name].update(phase_transport(volume, voxel_size, value, tortuosity))
    incomplete = checked is not None and checked[0].missing
    if faces is not None and not incomplete:
        from .tpb import active_tpb

        result["active_tpb"] = active_tpb(
            volume, voxel_size, phases=phases, faces=faces, connectivity=connectivity
        )
        result["active_tpb"]["unit"] = unit
    if incomplete:
        volumes = {name: volume == value for name, value in phases.items()}
        result = store.partial_measures(result, volumes, *checked)
    return result
