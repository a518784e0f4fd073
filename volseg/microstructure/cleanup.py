"""Clean-up of small components in a label volume, chunk by chunk and chunk-invariant.

A three-phase segmentation of a Ni/YSZ/pore scan grows thin YSZ rims where pore
meets Ni (partial volume: the pore->Ni transition passes through YSZ-like grey
values). Each rim is a tiny YSZ component that adds spurious triple-phase
boundary. :func:`remove_small_components` reassigns every connected component
smaller than ``min_size`` voxels, of any phase, to the phase it shares the most
voxel faces with.

The rule does not depend on the chunking:

1. each chunk is labelled with :func:`scipy.ndimage.label` and labels touching
   across chunk faces are merged with the union-find of
   :mod:`volseg.microstructure.components` (global components and their sizes);
2. every chunk counts, with a one-voxel halo, the faces between voxels of small
   components and voxels of each other phase value (in the input labels); the
   counts are summed per global component;
3. each small component takes the value of the phase with the most shared faces,
   ties going to the phase listed first; a component with no face to another
   phase (it fills the volume) is kept.

A clean-up never swaps or erases a whole phase: a ``min_size`` above the largest
component of a phase that has voxels (while another phase has voxels too) is
refused with a :class:`ValueError` naming the largest size allowed, before any
voxel is moved. The check uses the global component sizes, so it does not
depend on the chunking either.

All reassignments read the input labels, so they do not depend on the order in
which components are visited either. Only small per-chunk tables travel to the
client; the cleaned volume is a lazy dask array with the input's chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from .blockwise import OBJECT_META, one_block, per_chunk
from .components import connectivity_graph, merge_chunk_labels, structure
from .inputs import as_volume, voxel_size_of
from .min_size import parse_min_size
from .options import validate_label, validate_options

__all__ = ["clean_output", "remove_small_components"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- per chunk


def _phase_index(block: np.ndarray, values: tuple) -> np.ndarray:
    """int8 array: the index of each voxel's phase in ``values``, -1 for other values."""
    index = np.full(block.shape, -1, dtype=np.int8)
    for k, value in enumerate(values):
        index[block == value] = k
    return index


def _contacts(
    block: np.ndarray,
    halo: Sequence[tuple[int, int]],
    small: Sequence[np.ndarray],
    values: tuple,
    connectivity: int,
) -> list[np.ndarray]:
    """Per phase: faces of each of its small chunk labels with every phase (rows).

    ``block`` carries a one-voxel halo on the sides ``halo`` says; faces to voxels
    beyond the volume are not counted.
    """
    missing = [(1 - lo, 1 - hi) for lo, hi in halo]
    phases = np.pad(_phase_index(block, values), missing, constant_values=-1)
    core = phases[(slice(1, -1),) * 3]
    n_values = len(values)
    found = []
    for index in range(n_values):
        if not len(small[index]):
            found.append(np.zeros((0, n_values), dtype=np.int64))
            continue
        labels, n_labels = ndimage.label(core == index, structure=structure(connectivity))
        is_small = np.zeros(n_labels + 1, dtype=bool)
        is_small[small[index]] = True
        own = labels[is_small[labels]]
        counts = np.zeros((n_labels + 1) * n_values, dtype=np.int64)
        for axis in range(3):
            for step in (0, 2):
                shifted = [slice(1, -1)] * 3
                shifted[axis] = slice(step, phases.shape[axis] - 2 + step)
                neighbours = phases[tuple(shifted)][is_small[labels]].astype(np.int64)
                hit = (neighbours >= 0) & (neighbours != index)
                counts += np.bincount(own[hit] * n_values + neighbours[hit], minlength=len(counts))
        found.append(counts.reshape(n_labels + 1, n_values)[small[index]])
    return found


def _contact_chunk(block, item, values, connectivity):
    halo, small = item
    return one_block(_contacts(block, halo, small, values, connectivity))


def _reassign(
    block: np.ndarray, plan: Sequence[tuple[np.ndarray, np.ndarray]], values: tuple, connectivity
) -> np.ndarray:
    """Give the voxels of the small components of one chunk their new values."""
    out = block.copy()
    for index, value in enumerate(values):
        local, targets = plan[index]
        if not len(local):
            continue
        labels, n_labels = ndimage.label(block == value, structure=structure(connectivity))
        lookup = np.zeros(n_labels + 1, dtype=np.int64)
        lookup[local] = np.arange(1, len(local) + 1)
        where = lookup[labels]
        moved = where > 0
        out[moved] = np.asarray(targets, dtype=block.dtype)[where[moved] - 1]
    return out


def _halo_sides(index: tuple[int, ...], grid: tuple[int, ...]) -> list[tuple[int, int]]:
    """The halo ``overlap(depth=1, boundary='none')`` adds on each side: none on the faces."""
    return [(int(i > 0), int(i < n - 1)) for i, n in zip(index, grid)]


# --------------------------------------------------------------------------- public


def remove_small_components(
    labels: Any,
    min_size: int | str,
    *,
    values: Sequence[float] = (0, 1, 2),
    chunks: Sequence[int] | None = None,
    connectivity: int = 6,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    names: Sequence[str] | None = None,
) -> tuple[da.Array, dict[str, Any]]:
    """Reassign components smaller than ``min_size`` to their most-touching neighbour phase.

    Parameters
    ----------
    labels : zarr.Array, dask.array.Array, numpy.ndarray or path
        3D (z, y, x) label volume (a binary mask works too: values (0, 1)).
    min_size : int or str
        Components of fewer voxels are reassigned; voxels or a physical volume
        (see :func:`parse_min_size`). 0 or 1 changes nothing.
    values : sequence of number
        The label values of the phases, in priority order for ties (pore, YSZ,
        Ni = 0, 1, 2 in volseg.synth labels). Voxels of other values are left
        alone and never receive a component.
    chunks : sequence of int, optional
        Processing chunk shape; default the array's chunks.
    connectivity : {6, 26}
        Voxels of a component touch by faces (6) or also edges and corners.
    voxel_size, unit : optional
        For a physical ``min_size``; default from the OME-Zarr metadata.
    names : sequence of str, optional
        The phase names, in the order of ``values``, for error messages.

    Returns
    -------
    cleaned : dask.array.Array
        Lazy cleaned labels, same shape, dtype and chunks (compute or store it).
    report : dict
        ``min_size_voxels``, and per phase value (as a string key):
        ``components``, ``removed_components``, ``removed_voxels``.

    Examples
    --------
    A single YSZ (1) voxel on a pore (0) / Ni (2) interface goes to the phase it
    touches most:

    >>> labels = np.zeros((4, 4, 4), dtype=np.uint8)
    >>> labels[:, :, 2:] = 2
    >>> labels[3, :2, :2] = 1  # a YSZ grain of 4 voxels, kept
    >>> labels[1, 1, 1] = 1
    >>> cleaned, report = remove_small_components(labels, 2, chunks=(2, 2, 2))
    >>> int(cleaned[1, 1, 1]), report["1"]["removed_voxels"]
    (0, 1)

    A ``min_size`` that would remove every component of a phase (and so swap or
    erase the phase) is refused:

    >>> try:
    ...     remove_small_components(labels, 100, chunks=(2, 2, 2))
    ... except ValueError as error:
    ...     print(str(error).split("; ")[1])
    use a min_size of at most 27 voxels.

    Raises
    ------
    ValueError
        For malformed options, or a ``min_size`` that would remove every
        component of a phase that has voxels while another phase has voxels.
    """
    values = tuple(validate_label(v, "values") for v in values)
    if len(set(values)) != len(values) or len(values) < 2:
        raise ValueError(f"values={values!r} must be two or more different label values.")
    validate_options(connectivity, 1)
    if names is not None and len(names) != len(values):
        raise ValueError(f"names={names!r} must give one name per value of values={values!r}.")
    scan, volume = as_volume(labels, chunks, role="labels")
    size, recorded_unit = voxel_size_of(scan, voxel_size)
    threshold = parse_min_size(min_size, size, unit or recorded_unit)

    # 1. components of every phase, merged across chunk faces.
    small, report, merged = _small_components(volume, values, connectivity, threshold)
    _refuse_whole_phase(min_size, threshold, values, names, merged)
    if not any(report[str(v)]["removed_components"] for v in values):
        return volume, report
    # 2. faces of each small component with every phase, summed over chunks.
    target = _targets(volume, values, connectivity, small, merged, report)
    # 3. the new value of every small component, per chunk.
    return _reassigned(volume, values, connectivity, small, merged, target), report


def _small_components(volume: da.Array, values: tuple, connectivity: int, threshold: int):
    """Per chunk and phase, the chunk labels of components under ``threshold``; the report;
    per phase value, the merge (label offsets, component of each label, small, sizes)."""
    grid = volume.numblocks
    graphs = {value: connectivity_graph(volume == value, connectivity) for value in values}
    (computed,) = dask.compute(graphs)
    small, report = {index: [] for index in np.ndindex(*grid)}, {"min_size_voxels": threshold}
    merged = {}
    for value in values:
        summaries, links = computed[value]
        base, n_components, component, sizes = merge_chunk_labels(summaries, links)
        is_small = sizes < threshold
        merged[value] = (base, component, is_small, sizes)
        for index in np.ndindex(*grid):
            n_local = len(summaries[index]["sizes"])
            local = np.arange(1, n_local + 1)
            small[index].append(local[is_small[component[base[index] + local]]])
        report[str(value)] = {
            "components": int(n_components),
            "removed_components": int(is_small.sum()),
            "removed_voxels": int(sizes[is_small].sum()),
        }
    return small, report, merged


def _targets(volume, values, connectivity, small, merged, report) -> dict:
    """The value each small component takes: the phase it shares the most faces with.

    A component without a face to another phase keeps its value and leaves the report.
    """
    grid = volume.numblocks
    with_halo = da.overlap.overlap(volume, depth=1, boundary="none")
    items = {index: (_halo_sides(index, grid), small[index]) for index in small}
    contacts = per_chunk(
        _contact_chunk,
        with_halo,
        items,
        values,
        connectivity,
        name="volseg-contacts",
        chunks=tuple((1,) * n for n in grid),
        dtype=object,
        meta=OBJECT_META,
    )
    (contacts,) = dask.compute(contacts)
    totals = {}
    for index in np.ndindex(*grid):
        for phase, counts in enumerate(contacts[index]):
            base, component, _, _ = merged[values[phase]]
            local = small[index][phase]
            for comp, row in zip(component[base[index] + local], counts):
                key = (phase, int(comp))
                totals[key] = totals.get(key, 0) + row
    # argmax takes the first phase on ties; no face with another phase: keep.
    target = {
        key: values[int(np.argmax(row))] if row.any() else values[key[0]]
        for key, row in totals.items()
    }
    for (phase, comp), value in target.items():
        if value == values[phase]:
            log.info("a small component of phase %r touches no other phase: kept", value)
            record = report[str(value)]
            record["removed_components"] -= 1
            record["removed_voxels"] -= int(merged[value][3][comp])
    return target


def _reassigned(volume, values, connectivity, small, merged, target) -> da.Array:
    """The cleaned labels: every chunk with the new values of its small components."""
    grid = volume.numblocks
    plans = {}
    for index in np.ndindex(*grid):
        plan = []
        for phase, value in enumerate(values):
            local = small[index][phase]
            base, component, _, _ = merged[value]
            plan.append((local, [target[phase, int(c)] for c in component[base[index] + local]]))
        plans[index] = plan
    cleaned = per_chunk(
        _reassign,
        volume,
        plans,
        values,
        connectivity,
        name="volseg-remove-small",
        chunks=volume.chunks,
        dtype=volume.dtype,
        meta=np.empty((0, 0, 0), dtype=volume.dtype),
    )
    return cleaned


def _refuse_whole_phase(min_size, threshold, values, names, merged) -> None:
    """Refuse a ``min_size`` that would remove every component of a phase.

    Every component of such a phase would be reassigned to a neighbour phase
    (read in the input labels), so a binary mask would be inverted. A phase that
    is the only one with voxels is left alone: its components touch no other
    phase and are kept anyway.
    """
    voxels = {value: int(merged[value][3].sum()) for value in values}
    for index, value in enumerate(values):
        sizes = merged[value][3]
        others = sum(voxels.values()) - voxels[value]
        if voxels[value] == 0 or others == 0 or sizes.max() >= threshold:
            continue
        largest = int(sizes.max())
        phase = repr(names[index]) if names is not None else repr(value)
        raise ValueError(
            f"min_size={min_size!r} ({threshold} voxels) would remove every component of "
            f"phase {phase} (its largest has {largest} voxels) and swap or erase the whole "
            f"phase; use a min_size of at most {largest} voxels."
        )


def clean_output(
    output: Any,
    min_size: int | str,
    phases: dict | None,
    before_writing: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Clean ``labels`` and ``mask`` of a finished volseg output group in place.

    ``mask`` alone (values 0, 1) for a binary run; ``labels`` with ``phases``
    (``{name: value}``, Ni named ``"ni"``) for a three-phase run, and ``mask``
    rewritten as ``labels == phases["ni"]``. Each task reads and rewrites its own
    chunk only (the planning passes have finished before), and the voxel size
    for a physical ``min_size`` comes from the group's OME-Zarr metadata.
    ``before_writing`` is called once the clean-up is planned and accepted, before
    the first voxel is rewritten (a refused ``min_size`` raises before it).

    Returns
    -------
    dict
        The report of :func:`remove_small_components`.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (4, 4, 4), (2, 4, 4), attrs={})
    >>> output.mask[3] = 1  # a layer of 16 voxels, and a stray voxel
    >>> output.mask[1, 1, 1] = 1
    >>> clean_output(output, 2, None)["1"]["removed_voxels"], int(output.mask[...].sum())
    (1, 16)
    """
    if phases is not None and output.labels is not None:
        cleaned, report = remove_small_components(
            output.labels, min_size, values=tuple(phases.values()), names=tuple(phases)
        )
        sources = [cleaned, (cleaned == phases["ni"]).astype(np.uint8)]
        targets = [output.labels, output.mask]
    else:
        cleaned, report = remove_small_components(
            output.mask, min_size, values=(0, 1), names=("background", "foreground")
        )
        sources, targets = [cleaned], [output.mask]
    if before_writing is not None:
        before_writing()  # planned and accepted: voxels move from here on
    da.store(sources, targets, lock=False)
    log.info("clean-up (min_size=%r): %s", min_size, report)
    return report
