"""Active triple-phase boundary: TPB edges whose three phases all reach their faces.

A triple-phase boundary in a Ni/YSZ anode only works when gas reaches it
through the pores, electrons through the Ni and oxide ions through the YSZ:
each of the three phases around it must belong to a component connected to
its own face of the electrode (pore and Ni to the gas / current-collector side,
YSZ to the electrolyte). :func:`active_tpb` counts the TPB edges
(:func:`volseg.microstructure.tpb_edge_counts`) twice, once over all voxels and
once over the voxels of such **percolating** components only, per axis and
per chunk, out of core:

1. each phase is labelled chunk by chunk and merged across chunk faces with the
   union-find of :mod:`volseg.microstructure.components`; the components touching every
   face required for their phase are marked active;
2. each chunk rewrites its voxels as phase bits with inactive voxels cleared
   (their component found again by the same chunk labelling);
3. the edges are counted on both bit volumes, each chunk reading one voxel of
   its low neighbours, so the per-chunk counts add up to the whole-volume
   counts exactly and nothing depends on the chunking.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from .. import io as vio
from .blockwise import per_chunk
from .components import connectivity_graph, merge_chunk_labels, structure
from .inputs import as_volume, phases_of, voxel_size_of
from .kernels import AXES, ISOTROPIC_EDGE_FACTOR, phase_bits
from .options import validate_options
from .tasks import tpb_chunk_counts

__all__ = ["DEFAULT_FACES", "active_tpb", "parse_faces"]

log = logging.getLogger(__name__)

# The electrolyte at z = 0 (low face), gas and current collector at the high face.
DEFAULT_FACES = {"pore": ("z+",), "ysz": ("z-",), "ni": ("z+",)}


def parse_faces(faces: Any, names: Sequence[str]) -> dict[str, tuple[tuple[int, bool], ...]]:
    """``{phase: ((axis, high), ...)}`` from ``{phase: ["z-", "x+", ...]}``.

    A phase missing from ``faces`` needs no face (all its voxels count as
    connected); ``"z-"`` is the face at z = 0, ``"z+"`` the one at the last z.

    Examples
    --------
    >>> parse_faces({"ysz": ["z-"], "ni": "z+"}, ["pore", "ysz", "ni"])
    {'pore': (), 'ysz': ((0, False),), 'ni': ((0, True),)}
    """
    if not isinstance(faces, Mapping):
        raise ValueError(
            f"faces={faces!r} must map phase names to faces, e.g. {dict(DEFAULT_FACES)}."
        )
    unknown = set(faces) - set(names)
    if unknown:
        raise ValueError(
            f"faces names phase(s) {sorted(unknown)} that are not among the phases {list(names)}."
        )
    parsed = {}
    for name in names:
        given = faces.get(name, ())
        given = (given,) if isinstance(given, str) else tuple(given)
        sides = []
        for face in given:
            if (
                not isinstance(face, str)
                or len(face) != 2
                or face[0] not in AXES
                or face[1] not in "+-"
            ):
                raise ValueError(
                    f"faces[{name!r}] has {face!r}; a face is an axis and a side: 'z-' (z = 0) "
                    "or 'z+' (last z), likewise for y and x."
                )
            sides.append((AXES.index(face[0]), face[1] == "+"))
        parsed[name] = tuple(sides)
    return parsed


def _active_bits(block: np.ndarray, plan: Sequence, values: tuple, connectivity: int) -> np.ndarray:
    """Phase bits (see kernels.phase_bits) of the voxels of active components only."""
    bits = np.zeros(block.shape, dtype=np.uint8)
    for bit, value in enumerate(values):
        active = plan[bit]
        if active is None:  # the phase needs no face: every voxel counts
            bits[block == value] = 1 << bit
            continue
        if not active.any():
            continue
        labels, _ = ndimage.label(block == value, structure=structure(connectivity))
        bits[active[labels]] = 1 << bit
    return bits


def _lengths(edges: np.ndarray, voxel_size: Sequence[float], volume: float) -> dict[str, Any]:
    length = float(sum(int(n) * side for n, side in zip(edges, voxel_size)))
    density = length / volume if volume else None
    return {
        "edges": {name: int(n) for name, n in zip(AXES, edges)},
        "length_edges": length,
        "density_edges": density,
        "density": None if density is None else density * ISOTROPIC_EDGE_FACTOR,
    }


def active_tpb(
    labels: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    phases: Mapping[str, float] | None = None,
    faces: Mapping[str, Any] | None = None,
    chunks: Sequence[int] | None = None,
    connectivity: int = 6,
) -> dict[str, Any]:
    """Total and active triple-phase-boundary length, per axis and per chunk, out of core.

    Parameters
    ----------
    labels : zarr.Array, dask.array.Array, numpy.ndarray or path
        3D (z, y, x) label volume with three phases.
    voxel_size : sequence of float, optional
        Voxel sides (z, y, x); default from the OME-Zarr metadata, else 1.
    phases : mapping of str to number, optional
        ``{name: label value}`` of the three phases (default: recorded in the
        attrs, else pore 0, YSZ 1, Ni 2).
    faces : mapping of str to sequence of str, optional
        Faces each phase's components must touch to be active, e.g.
        ``{"ysz": ["z-"], "ni": ["z+"], "pore": ["z+"]}`` (the default,
        :data:`DEFAULT_FACES`: electrolyte at z = 0); a phase left out needs none.
    chunks : sequence of int, optional
        Processing chunk shape; default the array's chunks.
    connectivity : {6, 26}
        Voxels of a component touch by faces (6) or also edges and corners.

    Returns
    -------
    dict
        JSON-serialisable: ``shape``, ``voxel_size``, ``unit``, ``chunks``,
        ``phase_values``, ``faces``; ``total`` and ``active``, each with
        ``edges`` (per axis), ``length_edges`` (unit), ``density_edges``
        (1/unit**2) and ``density`` (x 2/3, the isotropic estimate; see
        :func:`volseg.measure_phases`); ``active_fraction`` (active / total
        length); ``connected_fraction`` (per phase, share of its voxels in
        active components); ``per_chunk``: a list of
        ``{"chunk": [i, j, k], "total": [z, y, x], "active": [z, y, x]}`` edge counts.

    Examples
    --------
    A triple line along z where YSZ reaches z = 0 and Ni and pore the last z;
    a YSZ island elsewhere makes TPB that is not active:

    >>> labels = np.zeros((4, 6, 6), dtype=np.uint8)
    >>> labels[:, :3, 3:] = 1
    >>> labels[:, 3:, 3:] = 2
    >>> labels[1:3, 4, 1] = 1
    >>> labels[1:3, 5, 1] = 2
    >>> result = active_tpb(labels, chunks=(2, 3, 3))
    >>> result["total"]["edges"]["z"], result["active"]["edges"]["z"]
    (8, 4)
    """
    if voxel_size is not None:
        vio.validate_voxel_size(voxel_size)
    validate_options(connectivity, 1)
    scan, volume = as_volume(labels, chunks, role="labels")
    voxel_size, unit = voxel_size_of(scan, voxel_size)
    phases = phases_of(scan, phases)
    required = parse_faces(DEFAULT_FACES if faces is None else faces, list(phases))
    values = tuple(phases.values())
    grid = volume.numblocks
    shape = tuple(int(s) for s in volume.shape)

    plans, connected = _active_plans(volume, phases, required, connectivity)

    all_bits = volume.map_blocks(phase_bits, values, dtype=np.uint8)
    active_bits = per_chunk(
        _active_bits,
        volume,
        plans,
        values,
        connectivity,
        name="volseg-active-bits",
        chunks=volume.chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
    )
    total, active = dask.compute(tpb_chunk_counts(all_bits), tpb_chunk_counts(active_bits))
    volume_total = math.prod(shape) * math.prod(voxel_size)
    totals = _lengths(total.sum(axis=(0, 1, 2)), voxel_size, volume_total)
    actives = _lengths(active.sum(axis=(0, 1, 2)), voxel_size, volume_total)
    return {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "chunks": [int(c) for c in volume.chunksize],
        "phase_values": dict(phases),
        "faces": {
            name: [f"{AXES[axis]}{'+' if high else '-'}" for axis, high in sides]
            for name, sides in required.items()
        },
        "total": totals,
        "active": actives,
        "active_fraction": (
            actives["length_edges"] / totals["length_edges"] if totals["length_edges"] else None
        ),
        "connected_fraction": connected,
        "per_chunk": [
            {
                "chunk": list(index),
                "total": [int(n) for n in total[index]],
                "active": [int(n) for n in active[index]],
            }
            for index in np.ndindex(*grid)
        ],
    }


def _active_plans(volume: da.Array, phases: dict, required: dict, connectivity: int):
    """Per chunk, for each phase, which chunk labels belong to active components (None: all);
    per phase, the share of its voxels in active components."""
    grid = volume.numblocks
    graphs = {
        name: connectivity_graph(volume == value, connectivity)
        for name, value in phases.items()
        if required[name]
    }
    (computed,) = dask.compute(graphs)
    plans = {index: [] for index in np.ndindex(*grid)}
    connected = {}
    for name in phases:
        if not required[name]:
            for index in plans:
                plans[index].append(None)
            connected[name] = 1.0
            continue
        summaries, links = computed[name]
        base, n_components, component, sizes = merge_chunk_labels(summaries, links)
        active = np.ones(n_components, dtype=bool)
        for axis, high in required[name]:
            touching = np.zeros(n_components, dtype=bool)
            for index in np.ndindex(*grid):
                found = summaries[index]["touches"].get((axis, high))
                if found is not None and len(found):
                    touching[component[found + base[index]]] = True
            active &= touching
        n_phase = int(sizes.sum())
        connected[name] = float(sizes[active].sum() / n_phase) if n_phase else None
        for index in np.ndindex(*grid):
            n_local = len(summaries[index]["sizes"])
            lookup = np.zeros(n_local + 1, dtype=bool)
            lookup[1:] = active[component[base[index] + np.arange(1, n_local + 1)]]
            plans[index].append(lookup)
    return plans, connected
