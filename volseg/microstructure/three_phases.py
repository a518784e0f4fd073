"""measure_phases(): every phase of a three-phase label volume, and the triple-phase boundary.

:func:`measure_phases` does what :func:`~.one_phase.measure` does for every phase
of a three-phase label volume (pore, YSZ, Ni) in one pass over the data and adds
the **triple-phase boundary** (TPB) length by an edge count, each chunk reading
one voxel of its low neighbours. Optionally the tortuosity of every phase and the
active TPB.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dask

from .. import io as vio
from .cleanup import remove_small_components
from .inputs import as_volume, phases_of, voxel_size_of
from .one_phase import settings_record
from .options import validate_options
from .tasks import phase_measures, phase_tasks, tpb_measures, tpb_task
from .tpb import active_tpb
from .transport import phase_transport

__all__ = ["measure_phases"]

log = logging.getLogger(__name__)


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
        most faces with (:func:`volseg.microstructure.cleanup.remove_small_components`,
        chunk-invariant); 0 (default) measures the labels as they are.
    faces : mapping of str to sequence of str, optional
        Also measure the active TPB (``active_tpb`` in the result): edges whose
        three phases belong to components touching the faces required for
        them, e.g. ``{"ysz": ["z-"], "ni": ["z+"], "pore": ["z+"]}``
        (:func:`volseg.microstructure.tpb.active_tpb`).
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

    >>> import numpy as np
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
    validate_options(connectivity, max_radius)
    checked = vio.output_state(labels, allow_incomplete)
    scan, volume = as_volume(labels, chunks, role="labels")
    voxel_size, unit = voxel_size_of(scan, voxel_size)
    phases = phases_of(scan, phases)
    cleanup = None
    if min_size:
        volume, cleanup = remove_small_components(
            volume,
            min_size,
            values=tuple(phases.values()),
            connectivity=connectivity,
            voxel_size=voxel_size,
            unit=unit,
        )
    log.debug("measuring phases %s of %s in chunks %s", phases, volume.shape, volume.chunksize)

    tasks = {
        name: phase_tasks(volume == value, voxel_size, connectivity, max_radius)
        for name, value in phases.items()
    }
    computed, edges = dask.compute(tasks, tpb_task(volume, tuple(phases.values())))

    result = {
        **settings_record(volume, voxel_size, unit, None, connectivity, max_radius, cleanup),
        "phase_values": dict(phases),
    }
    measures = {
        name: {
            "label": value,
            **phase_measures(computed[name], voxel_size, result["total_voxels"]),
        }
        for name, value in phases.items()
    }
    _warn_empty_phases(measures, scan.source, phases)
    result["phase_fractions"] = {
        name: values["volume_fraction"] for name, values in measures.items()
    }
    result["phases"] = measures
    result.update(tpb_measures(edges, voxel_size, result["total_volume"]))
    incomplete = checked is not None and checked[0].missing
    if not incomplete:
        _add_transport_and_active_tpb(
            result, volume, voxel_size, unit, phases, connectivity, tortuosity, faces
        )
    if incomplete:
        volumes = {name: volume == value for name, value in phases.items()}
        result = vio.partial_measures(result, volumes, *checked)
    return result


def _warn_empty_phases(measures: dict, source: str, phases: Mapping[str, float]) -> None:
    """A phase without voxels leaves no triple-phase boundary: most likely wrong ``phases``."""
    for name, values in measures.items():
        if values["phase_voxels"] == 0:
            log.warning(
                "phase %r (label %r) has no voxel in %s: there is no triple-phase boundary; "
                "check phases=%s",
                name,
                values["label"],
                source,
                phases,
            )


def _add_transport_and_active_tpb(
    result, volume, voxel_size, unit, phases, connectivity, tortuosity, faces
) -> None:
    """The optional measures of a complete volume: tortuosity per phase, the active TPB."""
    if tortuosity:
        for name, value in phases.items():
            result["phases"][name].update(phase_transport(volume, voxel_size, value, tortuosity))
    if faces is not None:
        result["active_tpb"] = active_tpb(
            volume, voxel_size, phases=phases, faces=faces, connectivity=connectivity
        )
        result["active_tpb"]["unit"] = unit
