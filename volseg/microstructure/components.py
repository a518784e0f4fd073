"""Connected components of a phase, chunk by chunk: labelling and the merge across chunk faces.

Each chunk is labelled with :func:`scipy.ndimage.label`; only its six boundary
planes of labels travel to the tasks that pair the labels touching across a chunk
face (and, for 26-connectivity, edge and corner). The pairs are merged on the
client (:func:`volseg.microstructure.kernels.merge_labels`) into global components,
their sizes and the faces of the volume they touch. Percolation, the clean-up of
small components, the active TPB and the tortuosity's percolation check all use
this one union-find.

>>> import dask, dask.array as da, numpy as np
>>> phase = da.from_array(np.ones((4, 4, 4), bool), chunks=2)
>>> summaries, links = dask.compute(*connectivity_graph(phase, 6))
>>> component_measures(summaries, links, 64)["n_components"]
1
"""

from __future__ import annotations

import itertools
from typing import Any

import dask.array as da
import numpy as np
from scipy import ndimage

from .blockwise import OBJECT_META, one_block
from .kernels import AXES, face_counts, merge_labels

__all__ = [
    "component_measures",
    "connectivity_graph",
    "face_totals",
    "merge_chunk_labels",
    "share",
    "structure",
]


def structure(connectivity: int) -> np.ndarray:
    """The :func:`scipy.ndimage.label` structure of 6- (faces) or 26-connectivity.

    Examples
    --------
    >>> int(structure(6).sum()), int(structure(26).sum())
    (7, 27)
    """
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
    labels, n_labels = ndimage.label(block, structure=structure(connectivity))
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


def _label_chunk(block: np.ndarray, connectivity: int, block_info=None) -> np.ndarray:
    info = block_info[0]
    location, grid = info["chunk-location"], info["num-chunks"]
    first = tuple(i == 0 for i in location)
    last = tuple(i == n - 1 for i, n in zip(location, grid))
    return one_block(_label_block(block, connectivity, first, last))


def _summary_chunk(labelled: np.ndarray) -> np.ndarray:
    return one_block(labelled[0, 0, 0][0])


def _link_chunks(
    labelled_a: np.ndarray, labelled_b: np.ndarray, offset: tuple[int, int, int], connectivity: int
) -> np.ndarray:
    planes_a, planes_b = labelled_a[0, 0, 0][1], labelled_b[0, 0, 0][1]
    return one_block(_link_blocks(planes_a, planes_b, offset, connectivity))


def _neighbour_slices(
    offset: tuple[int, ...], grid: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Block ranges (a, b) such that block b[p] is the neighbour of a[p] at ``offset``."""
    if any(n - abs(d) < 1 for d, n in zip(offset, grid)):
        return None
    sa = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(offset, grid))
    sb = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(offset, grid))
    return sa, sb


def connectivity_graph(phase: da.Array, connectivity: int) -> tuple[da.Array, dict]:
    """Per-chunk summaries and per-neighbour-pair links, as object dask arrays.

    One block of the summaries holds the phase voxels, face counts, component
    sizes and face-touching labels of one chunk; one block of ``links[offset]``
    holds the touching label pairs of chunk ``p`` (shifted, see
    :func:`_neighbour_slices`) and its neighbour at ``offset``. The labelled
    chunks stay on the workers; only their boundary planes reach the link tasks.

    Examples
    --------
    >>> import dask
    >>> phase = da.from_array(np.ones((4, 4, 4), bool), chunks=2)
    >>> summaries, links = dask.compute(*connectivity_graph(phase, 6))
    >>> summaries.shape, sorted(links), summaries[0, 0, 0]["sizes"]
    ((2, 2, 2), [(0, 0, 1), (0, 1, 0), (1, 0, 0)], array([8]))
    """
    labelled = phase.map_blocks(
        _label_chunk,
        connectivity,
        chunks=(1, 1, 1),
        dtype=object,
        meta=OBJECT_META,
        token="volseg-label-chunks",
    )
    summaries = labelled.map_blocks(
        _summary_chunk, dtype=object, meta=OBJECT_META, token="volseg-chunk-summary"
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
            meta=OBJECT_META,
            token=f"volseg-link-{'_'.join(map(str, offset))}",
        )
    return summaries, links


def component_measures(summaries: np.ndarray, links: dict, n_phase: int) -> dict[str, Any]:
    """Merge chunk labels into global components; sizes, largest share, percolation.

    ``summaries`` and ``links`` are the computed :func:`connectivity_graph`;
    ``n_phase`` the voxels of the phase.

    Examples
    --------
    >>> import dask
    >>> phase = np.zeros((4, 4, 4), bool)
    >>> phase[:, :, :2] = True
    >>> summaries, links = dask.compute(*connectivity_graph(da.from_array(phase, chunks=2), 6))
    >>> found = component_measures(summaries, links, 32)
    >>> found["n_components"], found["percolates"]
    (1, {'z': True, 'y': True, 'x': False})
    """
    base, n_components, component, component_sizes = merge_chunk_labels(summaries, links)

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
        percolating_fraction[name] = share(int(component_sizes[crossing].sum()), n_phase)
    largest = int(component_sizes.max()) if n_components else 0
    return {
        "n_components": n_components,
        "largest_component_voxels": largest,
        "largest_component_fraction": share(largest, n_phase),
        "percolates": percolates,
        "percolating_fraction": percolating_fraction,
    }


def merge_chunk_labels(
    summaries: np.ndarray, links: dict
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Global components of the chunk labels.

    Returns the offset of each chunk's labels (chunk label ``l`` is global label
    ``base[chunk] + l``), the number of components, the component of every global
    label, and the voxels of every component.

    Examples
    --------
    >>> import dask
    >>> phase = np.zeros((4, 4, 4), bool)
    >>> phase[:, :, :2] = True
    >>> summaries, links = dask.compute(*connectivity_graph(da.from_array(phase, chunks=2), 6))
    >>> base, n_components, component, sizes = merge_chunk_labels(summaries, links)
    >>> n_components, sizes.tolist(), int(base[0, 0, 1])
    (1, [32], 0)
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


def face_totals(summaries: np.ndarray, links: dict) -> np.ndarray:
    """Faces inside chunks plus faces across chunk faces: each face once.

    Examples
    --------
    >>> import dask
    >>> phase = np.zeros((4, 4, 4), bool)
    >>> phase[:, :, :2] = True
    >>> summaries, links = dask.compute(*connectivity_graph(da.from_array(phase, chunks=2), 6))
    >>> face_totals(summaries, links).tolist()
    [0, 0, 16]
    """
    faces = np.zeros(3, dtype=np.int64)
    for index in np.ndindex(*summaries.shape):
        faces += summaries[index]["faces"]
    for offset, blocks in links.items():
        if sum(map(abs, offset)) == 1:
            axis = offset.index(1)
            faces[axis] += sum(blocks[index][1] for index in np.ndindex(*blocks.shape))
    return faces


def share(part: int, whole: int) -> float | None:
    """``part / whole``, None when ``whole`` is 0 (a ratio of an empty phase).

    Examples
    --------
    >>> share(1, 4), share(0, 0)
    (0.25, None)
    """
    return float(part / whole) if whole else None
