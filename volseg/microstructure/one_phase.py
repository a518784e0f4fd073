"""measure(): the microstructure of one segmented phase, chunk by chunk with dask.

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
the distance transform, or two facing boundary planes for the merge of component
labels across chunks). The numbers do not depend on the chunking: integers are
identical, floats agree to rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import io as vio
from .cleanup import remove_small_components
from .inputs import as_phase, refuse_absent_label, voxel_size_of
from .options import validate_label, validate_options
from .tasks import phase_measures, phase_tasks, volume_measures
from .transport import phase_transport

__all__ = ["cleanup_record", "measure", "settings_record"]

log = logging.getLogger(__name__)


def cleanup_record(cleanup: dict | None) -> dict[str, Any]:
    """``min_size_voxels`` and the clean-up report, when there was a clean-up.

    Examples
    --------
    >>> cleanup_record(None), cleanup_record({"min_size_voxels": 5})
    ({}, {'min_size_voxels': 5, 'cleanup': {'min_size_voxels': 5}})
    """
    if cleanup is None:
        return {}
    return {"min_size_voxels": cleanup["min_size_voxels"], "cleanup": cleanup}


def settings_record(
    volume: da.Array,
    voxel_size: tuple[float, ...],
    unit: str | None,
    label: float | None,
    connectivity: int,
    max_radius: int,
    cleanup: dict | None,
) -> dict[str, Any]:
    """The input and settings that open a measure result, with the volume's totals.

    ``label`` None leaves it out (:func:`~.three_phases.measure_phases` records
    ``phase_values`` instead).

    Examples
    --------
    >>> volume = da.zeros((4, 4, 4), chunks=2)
    >>> settings_record(volume, (1.0, 1.0, 1.0), None, None, 6, 8, None)["chunks"]
    [2, 2, 2]
    """
    shape = tuple(int(s) for s in volume.shape)
    record = {"shape": list(shape), "voxel_size": list(voxel_size), "unit": unit}
    if label is not None:
        record["label"] = label
    return {
        **record,
        "chunks": [int(c) for c in volume.chunksize],
        "connectivity": int(connectivity),
        "max_radius": int(max_radius),
        **cleanup_record(cleanup),
        **volume_measures(shape, voxel_size),
    }


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
        (:func:`volseg.microstructure.cleanup.remove_small_components`, chunk-invariant);
        0 (default) measures the mask as it is.
    tortuosity : bool or sequence of {"z", "y", "x"}
        Also solve the tortuosity factor and effective diffusivity of the phase
        along these axes (True: all three) with
        :func:`volseg.microstructure.transport.tortuosity` (out of core, one conjugate-gradient
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
    validate_options(connectivity, max_radius)
    checked = vio.output_state(mask, allow_incomplete)
    scan, phase = as_phase(mask, label, chunks)
    voxel_size, unit = voxel_size_of(scan, voxel_size)
    phase, cleanup = _clean_phase(phase, min_size, connectivity, voxel_size, unit)
    shape = tuple(int(s) for s in phase.shape)
    log.debug("measuring %s in chunks %s", shape, phase.chunksize)

    (computed,) = dask.compute(phase_tasks(phase, voxel_size, connectivity, max_radius))
    label = validate_label(label, "label")
    result = settings_record(phase, voxel_size, unit, label, connectivity, max_radius, cleanup)
    result.update(phase_measures(computed, voxel_size, result["total_voxels"]))
    if result["phase_voxels"] == 0 and cleanup is None:
        refuse_absent_label(scan, result["label"], chunks)
    if tortuosity and not (checked is not None and checked[0].missing):
        result.update(phase_transport(phase.astype(np.uint8), voxel_size, 1, tortuosity))
    if checked is not None and checked[0].missing:
        result = vio.partial_measures(result, {"": phase}, *checked)
    return result


def _clean_phase(
    phase: da.Array, min_size: Any, connectivity: int, voxel_size: tuple, unit: str | None
) -> tuple[da.Array, dict | None]:
    """The phase with components under ``min_size`` reassigned, and the clean-up report."""
    if not min_size:
        return phase, None
    cleaned, cleanup = remove_small_components(
        phase.astype(np.uint8),
        min_size,
        values=(0, 1),
        connectivity=connectivity,
        voxel_size=voxel_size,
        unit=unit,
    )
    return cleaned == 1, cleanup
