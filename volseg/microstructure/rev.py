"""Representative volume: measures per chunk and over growing sub-volumes.

A microstructure measure is only worth publishing if the measured volume is
larger than the representative elementary volume (REV): the volume beyond which
the measure stops changing with the size of the box. :func:`rev_curve` gives
two views of it, both out of core:

* **per chunk**: phase fractions and TPB density of every processing chunk
  (their spread says how much one chunk-sized volume varies);
* **growing sub-volumes**: the measures of boxes centred on the volume's
  centre whose volume is a growing share of the whole (1/64, 1/32, ... 1 by
  default), each measured with :func:`volseg.measure_phases` (or
  :func:`volseg.measure` for a binary mask). A curve that flattens before the
  full volume means the volume is representative for that measure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import numpy as np

from .. import io as vio
from .inputs import as_volume, phases_of, voxel_size_of
from .kernels import ISOTROPIC_EDGE_FACTOR, phase_bits
from .one_phase import measure
from .options import validate_label
from .tasks import tpb_chunk_counts
from .three_phases import measure_phases

__all__ = ["DEFAULT_SHARES", "rev_curve"]

log = logging.getLogger(__name__)

DEFAULT_SHARES = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def _centred_box(shape: Sequence[int], share: float) -> tuple[slice, ...]:
    """The box centred in ``shape`` whose sides are ``share ** (1/3)`` of the volume's."""
    scale = share ** (1 / 3)
    box = []
    for size in shape:
        side = max(2, min(size, int(round(size * scale))))
        start = (size - side) // 2
        box.append(slice(start, start + side))
    return tuple(box)


def _phase_counts(block: np.ndarray, values: tuple) -> np.ndarray:
    counts = np.array([np.count_nonzero(block == v) for v in values], dtype=np.int64)
    return counts.reshape(1, 1, 1, -1)


def rev_curve(
    labels: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    phases: Mapping[str, float] | None = None,
    label: float | None = None,
    shares: Sequence[float] = DEFAULT_SHARES,
    chunks: Sequence[int] | None = None,
    max_radius: int = 8,
) -> dict[str, Any]:
    """Measures per chunk and over centred sub-volumes of growing size.

    Parameters
    ----------
    labels : zarr.Array, dask.array.Array, numpy.ndarray or path
        Three-phase label volume, or a mask with ``label`` given.
    voxel_size : sequence of float, optional
        Voxel sides (default: from the OME-Zarr metadata, else 1).
    phases : mapping of str to number, optional
        Three-phase mode (the default unless ``label`` is given): names and values.
    label : number, optional
        Binary mode: the value of the phase in a mask.
    shares : sequence of float
        Sub-volume sizes as shares of the whole volume, in (0, 1].
    chunks : sequence of int, optional
        Processing chunk shape.
    max_radius : int
        Passed to the measure function (thickness halo; small keeps it quick).

    Returns
    -------
    dict
        ``unit``, ``voxel_size``, ``phase_values``; ``subvolumes``: one record
        per share with ``share`` (actual), ``box`` (shape), ``volume`` and
        ``fractions`` (per phase), ``specific_surface_area`` (per phase) and,
        in three-phase mode, ``tpb_density``; ``per_chunk``: ``chunk``,
        ``fractions`` and ``tpb_density`` of every chunk; ``chunk_spread``: the
        standard deviation over chunks of each per-chunk measure.

    Examples
    --------
    >>> labels = np.zeros((8, 8, 8), dtype=np.uint8)
    >>> labels[:, :, 4:] = 2
    >>> labels[:, 4:, :4] = 1
    >>> curve = rev_curve(labels, shares=(1 / 8, 1.0), chunks=(4, 4, 4))
    >>> [(s["box"], s["tpb_density_edges"]) for s in curve["subvolumes"]]
    [([4, 4, 4], 0.0625), ([8, 8, 8], 0.015625)]
    >>> curve["per_chunk"][0]["fractions"]
    {'pore': 1.0, 'ysz': 0.0, 'ni': 0.0}
    """
    shares = tuple(float(s) for s in shares)
    if not shares or any(not 0 < s <= 1 for s in shares):
        raise ValueError(f"shares={shares!r} must be numbers in (0, 1], e.g. (1/8, 1/2, 1).")
    if voxel_size is not None:
        vio.validate_voxel_size(voxel_size)
    scan, volume = as_volume(labels, chunks, role="labels")
    voxel_size, unit = voxel_size_of(scan, voxel_size)
    if label is None:
        phases = phases_of(scan, phases)
    else:
        phases = {"phase": validate_label(label, "label")}
    three = label is None
    shape = tuple(int(s) for s in volume.shape)
    per_chunk, spread = _per_chunk_records(volume, phases, voxel_size, three)
    subvolumes = _subvolumes(volume, shares, voxel_size, phases, three, max_radius)
    return {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "phase_values": dict(phases),
        "subvolumes": subvolumes,
        "per_chunk": per_chunk,
        "chunk_spread": spread,
    }


def _per_chunk_records(volume, phases: dict, voxel_size: tuple, three: bool):
    """Fractions (and TPB density) of every chunk, and their spread over the chunks."""
    values = tuple(phases.values())
    voxel_volume = math.prod(voxel_size)
    counts = volume.map_blocks(
        _phase_counts,
        values,
        new_axis=3,
        chunks=(1, 1, 1, len(values)),
        dtype=np.int64,
        meta=np.empty((0, 0, 0, 0), dtype=np.int64),
    )
    tasks = [counts]
    if three:
        tasks.append(tpb_chunk_counts(volume.map_blocks(phase_bits, values, dtype=np.uint8)))
    computed = dask.compute(*tasks)
    per_chunk = []
    starts = [np.cumsum((0,) + c[:-1]) for c in volume.chunks]
    for index in np.ndindex(*volume.numblocks):
        sizes = [volume.chunks[k][i] for k, i in enumerate(index)]
        n = math.prod(sizes)
        record = {
            "chunk": list(index),
            "origin": [int(starts[k][i]) for k, i in enumerate(index)],
            "fractions": {name: int(c) / n for name, c in zip(phases, computed[0][index])},
        }
        if three:
            length = float(np.dot(computed[1][index], voxel_size))
            # The isotropic estimate, as measure_phases' tpb_density.
            record["tpb_density"] = length / (n * voxel_volume) * ISOTROPIC_EDGE_FACTOR
        per_chunk.append(record)
    spread = {
        f"{name} fraction": float(np.std([r["fractions"][name] for r in per_chunk]))
        for name in phases
    }
    if three:
        spread["tpb_density"] = float(np.std([r["tpb_density"] for r in per_chunk]))
    return per_chunk, spread


def _subvolumes(volume, shares, voxel_size: tuple, phases: dict, three: bool, max_radius: int):
    """The measures of centred boxes of growing share of the volume."""
    values = tuple(phases.values())
    shape = tuple(int(s) for s in volume.shape)
    subvolumes = []
    for share in sorted(set(shares)):
        box = _centred_box(shape, share)
        sub = volume[box]
        if three:
            m = measure_phases(sub, voxel_size, phases=phases, max_radius=max_radius)
            fractions = m["phase_fractions"]
            surface = {n: m["phases"][n]["specific_surface_area"] for n in phases}
            extra = {"tpb_density": m["tpb_density"], "tpb_density_edges": m["tpb_density_edges"]}
        else:
            m = measure(sub, voxel_size, label=values[0], max_radius=max_radius)
            fractions = {"phase": m["volume_fraction"]}
            surface = {"phase": m["specific_surface_area"]}
            extra = {}
        subvolumes.append(
            {
                "share": m["total_voxels"] / math.prod(shape),
                "box": [s.stop - s.start for s in box],
                "volume": m["total_volume"],
                "fractions": fractions,
                "specific_surface_area": surface,
                **extra,
            }
        )
    return subvolumes
