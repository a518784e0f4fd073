"""Opening the volumes that the microstructure measures read, with their voxel size and phases.

Every measure takes a mask or label volume in any form :func:`volseg.io.open_scan`
opens (a path, a Zarr, dask or numpy array, an output group) and works on it as a
dask array on the processing chunks; the voxel size and phase table come from the
arguments, else from what the volume records, else from the defaults.

>>> import numpy as np
>>> from volseg.microstructure.inputs import as_volume
>>> scan, array = as_volume(np.zeros((4, 4, 4), np.uint8), (2, 4, 4), role="labels")
>>> array.chunksize
(2, 4, 4)
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np

from .. import io as vio
from ..conventions import PHASES, as_dask_array
from .options import validate_label, validate_phases

__all__ = ["as_phase", "as_volume", "phases_of", "refuse_absent_label", "voxel_size_of"]

log = logging.getLogger(__name__)


def as_phase(mask: Any, label: Any, chunks: Any) -> tuple[vio.Scan, da.Array]:
    """The opened mask, and the boolean phase ``mask == label`` on the processing chunks.

    Examples
    --------
    >>> scan, phase = as_phase(np.eye(4, dtype=np.uint8)[None], 1, None)
    >>> int(phase.sum().compute())
    4
    """
    if not isinstance(mask, (np.ndarray, da.Array)) and hasattr(mask, "mask"):
        mask = mask.mask  # a SegmentationResult or an OutputGroup
    scan, array = as_volume(mask, chunks, role="mask")
    return scan, array == validate_label(label, "label")


def refuse_absent_label(scan: vio.Scan, label: float, chunks: Any) -> None:
    """Refuse a ``label`` that the volume does not use next to other values.

    An empty phase is a result only when the volume holds nothing else either; a label
    the volume does not use next to other values is a wrong ``label`` (0 voxels, exit 0).

    Examples
    --------
    >>> scan, _ = as_volume(np.ones((2, 2, 2), np.uint8), None, role="mask")
    >>> refuse_absent_label(scan, 2, None)
    Traceback (most recent call last):
    ValueError: mask numpy.ndarray of shape (2, 2, 2) holds no voxel of label=2; it holds the
    values 1: pass --label (label=) with the value of the phase to measure.
    """
    _, array = as_volume(scan.array, chunks, role="mask")
    values = np.unique(da.unique(array).compute())
    if np.any(values != 0):
        shown = ", ".join(f"{v:g}" for v in values[:10].tolist())
        raise ValueError(
            f"mask {scan.source} holds no voxel of label={label:g}; it holds the values "
            f"{shown}: pass --label (label=) with the value of the phase to measure."
        )
    log.warning("mask %s is empty (all 0): the phase has no voxel", scan.source)


def voxel_size_of(scan: vio.Scan, voxel_size: Any) -> tuple[tuple[float, ...], str | None]:
    """The given voxel size, else the one in the OME-Zarr metadata, else 1 (voxel units).

    Returns the voxel size and its unit (None when not recorded).

    Examples
    --------
    >>> scan, _ = as_volume(np.zeros((2, 2, 2)), None, role="mask")
    >>> voxel_size_of(scan, None), voxel_size_of(scan, (2, 1, 1))
    (((1.0, 1.0, 1.0), None), ((2.0, 1.0, 1.0), None))
    """
    if voxel_size is not None:
        return vio.validate_voxel_size(voxel_size), None
    recorded = vio.recorded_voxel_size(scan)
    if recorded is None:
        return (1.0, 1.0, 1.0), None
    return vio.validate_voxel_size(recorded[0]), recorded[1]


def as_volume(source: Any, chunks: Any, role: str) -> tuple[vio.Scan, da.Array]:
    """The opened volume, and its data as a dask array on the processing chunks.

    ``chunks`` None keeps a dask array's chunks, else uses the stored chunks;
    ``role`` names the volume in error messages (``"mask"``, ``"labels"``).

    Examples
    --------
    >>> scan, array = as_volume(np.zeros((4, 6, 6)), (2, 3, 3), role="labels")
    >>> scan.shape, array.numblocks
    ((4, 6, 6), (2, 2, 2))
    """
    scan = vio.open_scan(source, role=role, allow_bool=True)
    array = scan.array
    if chunks is not None:
        chunks = vio.validate_chunks(chunks, scan.shape)
    if not isinstance(array, da.Array):
        chunks = chunks or scan.chunks
    return scan, as_dask_array(array, chunks)


def phases_of(scan: vio.Scan, phases: Any) -> dict[str, float]:
    """The phases given, else those recorded in the label array's attrs, else pore/YSZ/Ni.

    Examples
    --------
    >>> scan, _ = as_volume(np.zeros((2, 2, 2), np.uint8), None, role="labels")
    >>> phases_of(scan, None)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    """
    if phases is not None:
        return validate_phases(phases, "given")
    recorded = vio.recorded_phases(scan)
    if recorded is None:
        return validate_phases(PHASES, "the default")
    return validate_phases(recorded, f"recorded in the attrs of {scan.source!r}")
