"""Tortuosity factor and effective diffusivity, in memory or out of core chunk by chunk.

:func:`tortuosity` solves steady-state diffusion through a phase (or through a
label volume with a diffusivity per label) along each axis, the formulation of
TauFactor (Cooper et al., SoftwareX 2016):

* concentration ``c = 1`` on the low face and ``c = 0`` on the high face along
  the transport axis, held half a voxel outside the first and last voxel layer
  (the Dirichlet value sits on the outer face of the volume); no flux through
  the four other faces;
* a finite-volume 7-point stencil on the voxel grid: two neighbouring voxels of
  diffusivities ``a`` and ``b`` exchange through their common face with the
  harmonic mean ``2ab / (a + b)`` (0 when either is 0), times face area over
  centre distance, so the stencil is exact for layers in series;
* the effective diffusivity ``D_eff = J L / (A dc)`` from the total flux ``J``
  (the mean of what enters and what leaves), the length ``L`` along the axis
  and the cross-section ``A``; the tortuosity factor
  ``tau = eps D / D_eff`` with ``eps D`` the volume average of the
  diffusivity, i.e. the volume fraction ``eps`` for one phase with ``D = 1``
  (TauFactor's ``tau = D_mean / D_rel``; ``tau = 1`` for straight channels).

The linear system (symmetric, positive semi-definite) is solved by conjugate
gradients with a Jacobi preconditioner, in one of two ways with the same start,
iteration and stopping rule (so their answers agree within the tolerance):

* **in memory**, when the whole problem fits ``memory_budget`` (about 192 bytes
  per voxel): the operator is assembled once as a scipy sparse matrix over the
  diffusing voxels and the iteration runs on numpy vectors (percolation by
  :func:`scipy.ndimage.label`);
* **chunked**, for larger volumes (or with ``scratch``): each iteration is two
  passes of dask tasks, one per processing block (whole storage chunks grouped
  as far as the budget allows): the matrix-vector product reads its block of the
  search direction with a one-voxel halo (two for the diffusivities); the dot
  products are sums of per-block partial sums. The iterates live in a Zarr
  scratch group (in memory when they fit in ``memory_budget``, else in a
  temporary folder on disk), so memory is one block plus its halo per running
  task whatever the volume size.

Components that touch neither face carry no flux; a phase that does not
percolate along an axis (checked first: 6-connected labels in memory, the
chunk-wise union-find of :mod:`volseg.microstructure.components` when chunked) has
``D_eff = 0`` and no finite tortuosity, without a solve.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from .. import io as vio
from .chunked_solve import STATE_BYTES_PER_VOXEL, processing_block, tortuosity_chunked
from .inputs import as_volume, voxel_size_of
from .kernels import AXES
from .memory_solve import tortuosity_in_memory
from .options import validate_label

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "IN_MEMORY_BYTES_PER_VOXEL",
    "parse_memory",
    "phase_transport",
    "tortuosity",
]

# The in-memory solve: the sparse matrix (up to 7 entries of 12 bytes per diffusing voxel),
# six float64 vectors, the diffusivity and index maps and the assembly's temporaries.
IN_MEMORY_BYTES_PER_VOXEL = 192
DEFAULT_MEMORY_BUDGET = 2**30
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY_UNITS = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_memory(value: Any, name: str = "memory_budget") -> int:
    """Bytes from an integer or a text such as ``"512MB"``, ``"2GiB"``, ``"1e9"``.

    Examples
    --------
    >>> parse_memory("2GiB"), parse_memory("512MB"), parse_memory(1000)
    (2147483648, 512000000, 1000)
    """
    number, unit = math.nan, ""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        text = text[:-1] if text.endswith("b") else text
        digits = text.rstrip("kmgti")
        unit = text[len(digits) :]
        try:
            number = float(digits)
        except ValueError:
            number = math.nan
    factor = _BINARY_UNITS.get(unit) or _UNITS.get(unit)
    if factor is None or not math.isfinite(number) or number <= 0:
        raise ValueError(
            f"{name}={value!r} is not a memory size; give bytes or a text such as '2GiB' or "
            "'512MB'."
        )
    return int(number * factor)


def _diffusivity_map(block: np.ndarray, values: tuple, diffusivities: tuple) -> np.ndarray:
    out = np.zeros(block.shape, dtype=np.float32)
    for value, diffusivity in zip(values, diffusivities):
        out[block == value] = diffusivity
    return out


def _validate_diffusivities(diffusivities: Any) -> dict[float, float]:
    if not isinstance(diffusivities, Mapping) or not diffusivities:
        raise ValueError(
            f"diffusivities={diffusivities!r} must map label values to diffusivities, "
            "e.g. {0: 1.0, 2: 0.1}."
        )
    checked = {}
    for value, diffusivity in diffusivities.items():
        value = validate_label(value, "diffusivities key")
        ok = isinstance(diffusivity, numbers.Real) and not isinstance(diffusivity, bool)
        if not ok or not math.isfinite(diffusivity) or diffusivity < 0:
            raise ValueError(
                f"diffusivities[{value!r}]={diffusivity!r} must be a finite number >= 0."
            )
        checked[value] = float(diffusivity)
    if not any(checked.values()):
        raise ValueError(f"diffusivities={diffusivities!r}: at least one must be positive.")
    return checked


def _validate_axes(axes: Any) -> tuple[int, ...]:
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    if not names or any(name not in AXES for name in names) or len(set(names)) != len(names):
        raise ValueError(f"axes={axes!r} must be some of 'z', 'y', 'x', each once.")
    return tuple(AXES.index(name) for name in names)


def _validate_solver(tol: Any, max_iter: Any) -> None:
    if not isinstance(tol, numbers.Real) or not 0 < tol < 1:
        raise ValueError(f"tol={tol!r} must be a number between 0 and 1 (e.g. 1e-6).")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1
    ):
        raise ValueError(f"max_iter={max_iter!r} must be a positive integer or None.")


def tortuosity(
    volume: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    label: float = 1,
    diffusivities: Mapping[float, float] | None = None,
    axes: Sequence[str] = AXES,
    chunks: Sequence[int] | None = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    scratch: str | Path | None = None,
) -> dict[str, Any]:
    """Tortuosity factor and effective diffusivity of a phase along each axis, out of core.

    Steady-state diffusion through the phase with ``c = 1`` and ``c = 0`` on the
    two faces along the axis and no flux elsewhere (TauFactor's formulation, see
    the module docstring), solved by conjugate gradients in memory when the
    volume fits ``memory_budget``, else chunk by chunk with dask. The answer
    depends on neither the path nor the chunking beyond the solver tolerance.

    Parameters
    ----------
    volume : zarr.Array, dask.array.Array, numpy.ndarray, path or SegmentationResult
        3D (z, y, x) mask or label volume.
    voxel_size : sequence of float, optional
        Voxel sides (z, y, x); default from the OME-Zarr metadata, else 1.
        Anisotropic voxels weight the faces by area over centre distance.
    label : number
        Value of the diffusing phase (diffusivity 1, all others 0).
    diffusivities : mapping of number to float, optional
        Instead of ``label``: a diffusivity per label value (others 0), as
        TauFactor's multi-phase solver; ``tau`` then uses the volume-averaged
        diffusivity in place of ``eps``.
    axes : sequence of {"z", "y", "x"}
        Transport directions to solve.
    chunks : sequence of int, optional
        Processing chunk shape; default the array's chunks.
    tol : float
        Stop when the residual norm falls below ``tol`` times the right-hand
        side's (flux balance and tau are then far tighter than 1 %).
    max_iter : int, optional
        Conjugate-gradient iterations per axis; default ``20 * max(shape) + 100``.
    memory_budget : int or str
        Default 1 GiB. Up to this size the whole problem is solved in memory
        (about 192 bytes per voxel); above it, chunked, with the iterates (52
        bytes per voxel) in a Zarr group in memory while they fit, else in a
        temporary folder on disk, and processing blocks of whole chunks that
        the dask workers hold within the budget together.
    scratch : path, optional
        An existing folder in which to keep the iterates on disk whatever their
        size (e.g. a shared filesystem for a ``dask.distributed`` cluster); a
        new sub-folder is made there and removed afterwards.

    Returns
    -------
    dict
        JSON-serialisable: ``shape``, ``voxel_size``, ``unit``, ``label`` or
        ``diffusivities``, ``chunks``, ``tol``, ``volume_fraction`` (fraction of
        voxels with a positive diffusivity), ``mean_diffusivity`` (``eps D``),
        ``storage`` ("memory" or "disk"), ``solver`` ("in-memory" or
        "chunked"), ``blocks`` (the processing block shape) and ``axes``: per
        axis name

        ``tortuosity``
            ``mean_diffusivity / effective_diffusivity``; None when the phase
            does not percolate along the axis.
        ``effective_diffusivity``
            ``J L / (A dc)`` relative to a diffusivity of 1 (0 when the phase
            does not percolate).
        ``percolates``, ``flux_in``, ``flux_out``, ``iterations``, ``converged``
            Percolation (6-connected), the fluxes through the two faces (unit
            area over unit length), and the solver record (with
            ``relative_residual`` and ``seconds``).

    Examples
    --------
    Straight channels along z, a quarter of the volume:

    >>> channels = np.zeros((8, 8, 8), dtype=np.uint8)
    >>> channels[:, ::2, ::2] = 1
    >>> t = tortuosity(channels, chunks=(4, 4, 4))
    >>> t["volume_fraction"], round(t["axes"]["z"]["tortuosity"], 6)
    (0.25, 1.0)
    >>> t["axes"]["x"]["percolates"], t["axes"]["x"]["tortuosity"]
    (False, None)
    """
    if voxel_size is not None:
        vio.validate_voxel_size(voxel_size)
    axis_indices = _validate_axes(axes)
    _validate_solver(tol, max_iter)
    budget = parse_memory(memory_budget)
    diffusivities, values, coefficients = _coefficients(label, diffusivities)
    if not isinstance(volume, (np.ndarray, da.Array)) and hasattr(volume, "mask"):
        volume = volume.mask
    scan, array = as_volume(volume, chunks, role="labels")
    voxel_size, unit = voxel_size_of(scan, voxel_size)
    array = array.rechunk(array.chunksize)
    shape = tuple(int(s) for s in array.shape)
    chunk_shape = tuple(int(c) for c in array.chunksize)
    if max_iter is None:
        max_iter = 20 * max(shape) + 100
    diffusivity = array.map_blocks(_diffusivity_map, values, coefficients, dtype=np.float32)
    solved = _solve(diffusivity, axis_indices, voxel_size, tol, max_iter, budget, scratch)
    results, n_phase, mean_diffusivity, solver, storage, block = solved

    result = {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "chunks": list(chunk_shape),
        "tol": float(tol),
        "volume_fraction": int(n_phase) / math.prod(shape),
        "mean_diffusivity": mean_diffusivity,
        "storage": storage,
        "solver": solver,
        "blocks": list(block),
        "axes": results,
    }
    if diffusivities is None:
        result["label"] = values[0]
    else:
        result["diffusivities"] = {str(k): v for k, v in diffusivities.items()}
    return result


def _coefficients(label: Any, diffusivities: Any) -> tuple[dict | None, tuple, tuple]:
    """The checked ``diffusivities``, and the label values and their diffusivities."""
    if diffusivities is not None:
        diffusivities = _validate_diffusivities(diffusivities)
        return diffusivities, tuple(diffusivities), tuple(diffusivities.values())
    return None, (validate_label(label, "label"),), (1.0,)


def _solve(diffusivity: da.Array, axis_indices, voxel_size, tol, max_iter, budget, scratch):
    """In memory when the problem fits ``budget`` (and no ``scratch``), else chunked.

    Returns the per-axis results, the diffusing voxels, the mean diffusivity, the
    solver and storage used, and the processing block shape.
    """
    shape = tuple(int(s) for s in diffusivity.shape)
    chunk_shape = tuple(int(c) for c in diffusivity.chunksize)
    n_total = math.prod(shape)
    if scratch is None and n_total * IN_MEMORY_BYTES_PER_VOXEL <= budget:
        values = diffusivity.compute()
        solved = tortuosity_in_memory(values, axis_indices, voxel_size, tol, max_iter)
        return (*solved, "in-memory", "memory", shape)
    parent = scratch
    if parent is None and n_total * STATE_BYTES_PER_VOXEL > budget:
        parent = tempfile.gettempdir()
    workers = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    block = processing_block(shape, chunk_shape, budget, workers)
    group, folder = vio.scratch_group(parent)
    try:
        solved = tortuosity_chunked(
            group, diffusivity, axis_indices, voxel_size, tol, max_iter, chunk_shape, block
        )
    finally:
        vio.remove_scratch(folder)
    return (*solved, "chunked", "memory" if folder is None else "disk", block)


def phase_transport(
    volume: Any,
    voxel_size: Sequence[float],
    label: float,
    axes: Any = True,
    **options: Any,
) -> dict[str, Any]:
    """Tortuosity factor and effective diffusivity per axis, as measure results hold them.

    ``axes=True`` means all three. Other options go to :func:`tortuosity`.

    Examples
    --------
    >>> channels = np.zeros((6, 6, 6), dtype=np.uint8)
    >>> channels[:, ::2, ::2] = 1
    >>> t = phase_transport(channels, (1.0, 1.0, 1.0), 1, axes=("z", "x"))
    >>> round(t["tortuosity"]["z"], 6), t["tortuosity"]["x"], t["effective_diffusivity"]["x"]
    (1.0, None, 0.0)
    """
    axes = AXES if axes is True else axes
    solved = tortuosity(volume, voxel_size, label=label, axes=axes, **options)
    return {
        "tortuosity": {name: record["tortuosity"] for name, record in solved["axes"].items()},
        "effective_diffusivity": {
            name: record["effective_diffusivity"] for name, record in solved["axes"].items()
        },
        "tortuosity_converged": all(
            record.get("converged", True) for record in solved["axes"].values()
        ),
    }
