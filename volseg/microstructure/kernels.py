"""The numpy kernels of the microstructure measures, each checked against a whole array.

Pure functions of numpy arrays (no dask, no storage): voxel faces between a phase
and the rest (:func:`face_counts`), triple-phase-boundary edges
(:func:`tpb_edge_counts`, on the phase bits of :func:`phase_bits`), the local
thickness proxy (:func:`local_thickness`), the merge of touching labels
(:func:`merge_labels`) and the median of a thickness histogram
(:func:`histogram_median`). The chunked measures of :mod:`volseg.microstructure`
run them chunk by chunk; the tests compare each against a whole-array computation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from .options import validate_phase_values

__all__ = [
    "ALL_THREE_PHASES",
    "AXES",
    "ISOTROPIC_EDGE_FACTOR",
    "ISOTROPIC_FACE_FACTOR",
    "THICKNESS_BINS_PER_VOXEL",
    "face_counts",
    "histogram_median",
    "local_thickness",
    "merge_labels",
    "phase_bits",
    "thickness_bin_width",
    "tpb_edge_counts",
    "triple_edges",
]

AXES = ("z", "y", "x")
# Voxel faces of an isotropic (randomly oriented) surface overestimate its area by
# 3/2 on average: the mean |cos| of the normal against each axis is 1/2 (Cauchy).
ISOTROPIC_FACE_FACTOR = 2.0 / 3.0
# Voxel edges along a straight line of direction u have total length L (|ux| + |uy| + |uz|),
# 3/2 L on average over isotropic directions (E|u_k| = 1/2 on the unit sphere).
ISOTROPIC_EDGE_FACTOR = 2.0 / 3.0
# Bits of the three phases in phase_bits; all three set on a triple-phase boundary edge.
ALL_THREE_PHASES = 0b111
# Histogram bins per smallest voxel side for the thickness median.
THICKNESS_BINS_PER_VOXEL = 4


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
    values = validate_phase_values(phase_values, "phase_values")
    bits = phase_bits(labels, values)
    return tuple(triple_edges(bits, axis) for axis in range(3))


def phase_bits(labels: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
    """uint8 array with bit ``k`` set where ``labels == values[k]``.

    Examples
    --------
    >>> phase_bits(np.array([[[0, 1, 2, 7]]]), (0, 1, 2))
    array([[[1, 2, 4, 0]]], dtype=uint8)
    """
    bits = np.zeros(labels.shape, dtype=np.uint8)
    for bit, value in enumerate(values):
        bits[labels == value] = 1 << bit
    return bits


def triple_edges(bits: np.ndarray, axis: int) -> int:
    """Edges parallel to ``axis`` whose four voxels hold all three phases (see phase_bits).

    Examples
    --------
    >>> bits = np.array([[[1, 2], [4, 4]]], dtype=np.uint8)  # one square across z
    >>> triple_edges(bits, 0), triple_edges(bits, 1)
    (1, 0)
    """
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
