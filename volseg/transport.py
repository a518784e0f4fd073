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
chunk-wise union-find of :mod:`volseg.microstructure` when chunked) has
``D_eff = 0`` and no finite tortuosity, without a solve.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from . import io as vio
from . import microstructure as ms

__all__ = [
    "AXES",
    "diffusion_operator",
    "face_weights",
    "parse_memory",
    "phase_transport",
    "tortuosity",
]

log = logging.getLogger(__name__)

AXES = ms.AXES
# x, r, p (two buffers), q, the diagonal in float64 and the diffusivity map in float32.
STATE_BYTES_PER_VOXEL = 6 * 8 + 4
# The in-memory solve: the sparse matrix (up to 7 entries of 12 bytes per diffusing voxel),
# six float64 vectors, the diffusivity and index maps and the assembly's temporaries.
IN_MEMORY_BYTES_PER_VOXEL = 192
# One running task of the chunked solve: its arrays with halos and the stencil's temporaries.
BLOCK_BYTES_PER_VOXEL = 256
DEFAULT_MEMORY_BUDGET = 2**30
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY_UNITS = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


# --------------------------------------------------------------------------- numpy kernels


def face_weights(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    """Face area over centre distance between neighbours along (z, y, x).

    Examples
    --------
    >>> face_weights((2.0, 1.0, 1.0))
    (0.5, 2.0, 2.0)
    """
    hz, hy, hx = (float(s) for s in voxel_size)
    volume = hz * hy * hx
    return tuple(volume / (h * h) for h in (hz, hy, hx))


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = a + b
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.float64)
    np.divide(2.0 * a * b, total, out=out, where=total > 0)
    return out


def _interior() -> tuple[slice, ...]:
    return (slice(1, -1),) * 3


def _along(axis: int, part: slice, other: slice = slice(None)) -> tuple[slice, ...]:
    index = [other] * 3
    index[axis] = part
    return tuple(index)


def _couplings(diffusivity: np.ndarray, weights: Sequence[float]) -> list:
    """Per axis, the (low, high) face conductances of the interior voxels of ``diffusivity``."""
    pairs = []
    for axis in range(3):
        low = diffusivity[_along(axis, slice(None, -1), slice(1, -1))]
        high = diffusivity[_along(axis, slice(1, None), slice(1, -1))]
        faces = weights[axis] * _harmonic(low, high)
        pairs.append((faces[_along(axis, slice(None, -1))], faces[_along(axis, slice(1, None))]))
    return pairs


def _dirichlet(
    diffusivity: np.ndarray,
    weights: Sequence[float],
    axis: int,
    origin: Sequence[int],
    shape: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Conductances to the inlet (low) and outlet (high) faces, for the interior voxels.

    ``origin`` is the global index of the interior's first voxel. The face is half a
    voxel away, hence twice the neighbour conductance.
    """
    inner = diffusivity[_interior()]
    inlet = np.zeros(inner.shape)
    outlet = np.zeros(inner.shape)
    first = -origin[axis]
    if 0 <= first < inner.shape[axis]:
        layer = _along(axis, slice(first, first + 1))
        inlet[layer] = 2.0 * weights[axis] * inner[layer]
    last = shape[axis] - 1 - origin[axis]
    if 0 <= last < inner.shape[axis]:
        layer = _along(axis, slice(last, last + 1))
        outlet[layer] = 2.0 * weights[axis] * inner[layer]
    return inlet, outlet


def diffusion_operator(
    diffusivity: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    axis: int = 0,
    origin: Sequence[int] = (0, 0, 0),
    shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """The stencil of the diffusion problem on the interior voxels of an array.

    ``diffusivity`` holds the voxels of a region and a one-voxel border around it
    (0 outside the volume: no flux there). The operator is
    ``(A c)_i = diag_i c_i - sum_k (low_k c_(i-e_k) + high_k c_(i+e_k))`` and the
    right-hand side is ``inlet`` (times the inlet concentration 1).

    Parameters
    ----------
    diffusivity : numpy.ndarray
        3D, the region plus a one-voxel border.
    voxel_size : sequence of float
        Voxel sides (z, y, x).
    axis : int
        Transport axis (0, 1, 2 for z, y, x).
    origin : sequence of int
        Global index of the region's first voxel.
    shape : sequence of int, optional
        Shape of the whole volume (default: the region is the whole volume).

    Returns
    -------
    diag : numpy.ndarray
        Diagonal of the operator (region shape).
    couplings : list
        Per axis, the (low, high) neighbour conductances.
    inlet, outlet : numpy.ndarray
        Conductances to the Dirichlet faces (non-zero on the first / last layer).

    Examples
    --------
    A 1 x 1 x 3 channel along x, its conductances in a row:

    >>> channel = np.pad(np.ones((1, 1, 3)), 1)
    >>> diag, couplings, inlet, outlet = diffusion_operator(channel, axis=2)
    >>> diag.ravel(), inlet.ravel(), outlet.ravel()
    (array([3., 2., 3.]), array([2., 0., 0.]), array([0., 0., 2.]))
    """
    diffusivity = np.asarray(diffusivity, dtype=np.float64)
    region = tuple(s - 2 for s in diffusivity.shape)
    shape = region if shape is None else tuple(shape)
    weights = face_weights(voxel_size)
    couplings = _couplings(diffusivity, weights)
    inlet, outlet = _dirichlet(diffusivity, weights, axis, origin, shape)
    diag = inlet + outlet
    for low, high in couplings:
        diag += low + high
    return diag, couplings, inlet, outlet


def _apply(diag: np.ndarray, couplings: list, field: np.ndarray) -> np.ndarray:
    """``A field`` on the interior; ``field`` has a one-voxel border."""
    result = diag * field[_interior()]
    for axis, (low, high) in enumerate(couplings):
        below = field[_along(axis, slice(None, -2), slice(1, -1))]
        above = field[_along(axis, slice(2, None), slice(1, -1))]
        result -= low * below + high * above
    return result


def _jacobi(residual: np.ndarray, diag: np.ndarray) -> np.ndarray:
    out = np.zeros(residual.shape)
    np.divide(residual, diag, out=out, where=diag > 0)
    return out


# --------------------------------------------------------------------------- blocks


def _blocks(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """The regions of the chunk grid, in C order."""
    ranges = [
        [slice(start, min(start + step, size)) for start in range(0, size, step)]
        for size, step in zip(shape, chunks)
    ]
    return [
        tuple(ranges[k][i] for k, i in enumerate(index))
        for index in np.ndindex(*(len(r) for r in ranges))
    ]


def _processing_block(
    shape: tuple[int, ...], chunks: tuple[int, ...], budget: int, workers: int
) -> tuple[int, ...]:
    """Storage chunks grouped into processing blocks that ``workers`` tasks hold in ``budget``.

    Whole chunks only (writes never share a stored chunk), doubled along x, then y,
    then z while the group fits: fewer, larger tasks per iteration.

    Examples
    --------
    >>> _processing_block((64, 64, 64), (8, 8, 8), 256 * 32**3, 1)
    (32, 32, 32)
    >>> _processing_block((64, 64, 64), (8, 8, 8), 1000, 1)
    (8, 8, 8)
    """
    target = budget // (BLOCK_BYTES_PER_VOXEL * max(workers, 1))
    block = list(chunks)
    grown = True
    while grown:
        grown = False
        for k in (2, 1, 0):
            if block[k] < shape[k] and 2 * math.prod(block) <= target:
                block[k] = min(2 * block[k], -(-shape[k] // chunks[k]) * chunks[k])
                grown = True
    return tuple(block)


def _read(array: Any, region: tuple[slice, ...], depth: int) -> np.ndarray:
    """``array`` over ``region`` grown by ``depth`` voxels, zeros outside the volume."""
    grown, pads = [], []
    for part, size in zip(region, array.shape):
        start, stop = part.start - depth, part.stop + depth
        grown.append(slice(max(start, 0), min(stop, size)))
        pads.append((max(0, -start), max(0, stop - size)))
    values = np.asarray(array[tuple(grown)], dtype=np.float64)
    return np.pad(values, pads) if any(p != (0, 0) for p in pads) else values


def _start(region: tuple[slice, ...], depth: int = 0) -> tuple[int, ...]:
    return tuple(part.start - depth for part in region)


def _linear_profile(
    start: Sequence[int], size: Sequence[int], axis: int, shape: Sequence[int]
) -> np.ndarray:
    """1 - (i + 1/2) / n along ``axis`` over a box, broadcastable (the initial guess)."""
    index = np.arange(start[axis], start[axis] + size[axis], dtype=np.float64)
    view = [1, 1, 1]
    view[axis] = -1
    return (1.0 - (index + 0.5) / shape[axis]).reshape(view)


def _dot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> float:
    """``a . b`` without BLAS: its threads spin against dask's and other jobs' (10x slower
    on a busy machine), and the pairwise sum is as accurate."""
    return float(np.multiply(a, b, out=out).sum())


def _dots(*pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.array([_dot(a, b) for a, b in pairs])


def _init_block(state, region, axis, voxel_size, shape) -> np.ndarray:
    """x0 = linear profile on the diffusing voxels, r0 = b - A x0; r.M^-1 r, r.r, b.b."""
    diffusivity = _read(state["D"], region, 2)
    outer = diffusivity[_interior()]
    profile = _linear_profile(_start(region, 1), outer.shape, axis, shape)
    x_outer = np.where(outer > 0, profile, 0.0)
    diag, couplings, inlet, _ = diffusion_operator(outer, voxel_size, axis, _start(region), shape)
    residual = inlet - _apply(diag, couplings, x_outer)
    state["x"][region] = x_outer[_interior()]
    state["r"][region] = residual
    state["diag"][region] = diag
    return _dots((residual, _jacobi(residual, diag)), (residual, residual), (inlet, inlet))


def _direction_block(
    state, region, axis, voxel_size, shape, beta: float, previous: str, current: str
) -> np.ndarray:
    """p = M^-1 r + beta p and q = A p on one chunk (p on a one-voxel halo); p . q.

    The new direction goes to another array than the previous one (``current``,
    ``previous``): neighbouring tasks still read the previous one's halo.
    """
    diag_outer = _read(state["diag"], region, 1)
    direction = _jacobi(_read(state["r"], region, 1), diag_outer)
    if beta:
        direction += beta * _read(state[previous], region, 1)
    diag = diag_outer[_interior()]
    couplings = _couplings(_read(state["D"], region, 1), face_weights(voxel_size))
    product = _apply(diag, couplings, direction)
    own = direction[_interior()]
    state[current][region] = own
    state["q"][region] = product
    return _dots((own, product))


def _update_block(state, region, axis, voxel_size, shape, alpha: float, current: str) -> np.ndarray:
    """x += alpha p, r -= alpha q on one chunk; r . M^-1 r and r . r."""
    diag = _read(state["diag"], region, 0)
    solution = _read(state["x"], region, 0) + alpha * _read(state[current], region, 0)
    residual = _read(state["r"], region, 0) - alpha * _read(state["q"], region, 0)
    state["x"][region] = solution
    state["r"][region] = residual
    return _dots((residual, _jacobi(residual, diag)), (residual, residual))


def _flux_block(state, region, axis, voxel_size, shape) -> np.ndarray:
    """Flux entering through the inlet face and leaving through the outlet face."""
    diffusivity = _read(state["D"], region, 1)
    _, _, inlet, outlet = diffusion_operator(diffusivity, voxel_size, axis, _start(region), shape)
    solution = _read(state["x"], region, 0)
    return np.array([float(np.sum(inlet * (1.0 - solution))), float(np.sum(outlet * solution))])


def _on_faces(region: tuple[slice, ...], axis: int, shape: tuple[int, ...]) -> bool:
    return region[axis].start == 0 or region[axis].stop == shape[axis]


def _each_block(kernel, state, regions, *args) -> np.ndarray:
    """Run ``kernel`` on every chunk as dask tasks; the sum of their results.

    The arguments are bound with :func:`functools.partial` so that dask does not
    walk into the Zarr arrays of ``state`` (dataclasses) when building the graph.
    """
    tasks = [
        dask.delayed(functools.partial(kernel, state, region, *args), pure=False)()
        for region in regions
    ]
    return np.sum(dask.compute(*tasks), axis=0)


def _solve_axis(
    state: dict, regions: list, axis: int, voxel_size, shape, tol: float, max_iter: int
) -> dict[str, Any]:
    """Preconditioned conjugate gradients for one axis; the fluxes and convergence record."""
    started = time.perf_counter()
    args = (axis, voxel_size, shape)
    rz, rr, bb = _each_block(_init_block, state, regions, *args)
    norm_b = math.sqrt(bb)
    relative = math.sqrt(rr) / norm_b if norm_b else 0.0
    beta, iterations = 0.0, 0
    while relative > tol and iterations < max_iter:
        previous, current = ("p0", "p1") if iterations % 2 else ("p1", "p0")
        (pq,) = _each_block(_direction_block, state, regions, *args, beta, previous, current)
        if pq <= 0:
            break  # what is left lies on components without a Dirichlet face
        alpha = rz / pq
        rz_new, rr = _each_block(_update_block, state, regions, *args, alpha, current)
        beta, rz = rz_new / rz, rz_new
        relative = math.sqrt(max(rr, 0.0)) / norm_b
        iterations += 1
    face_regions = [region for region in regions if _on_faces(region, axis, shape)]
    flux_in, flux_out = _each_block(_flux_block, state, face_regions, *args)
    return _record(float(flux_in), float(flux_out), iterations, relative, tol, axis, started)


def _record(flux_in, flux_out, iterations, relative, tol, axis, started) -> dict[str, Any]:
    converged = relative <= tol
    if not converged:
        log.warning(
            "tortuosity along %s: not converged after %d iterations (relative residual %.3g "
            "> tol=%g); raise max_iter",
            AXES[axis],
            iterations,
            relative,
            tol,
        )
    return {
        "flux_in": float(flux_in),
        "flux_out": float(flux_out),
        "iterations": iterations,
        "relative_residual": float(relative),
        "converged": bool(converged),
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- in memory


def _system(diffusivity: np.ndarray, weights: Sequence[float], axis: int):
    """The operator of the whole volume as a sparse matrix over its diffusing voxels.

    The same stencil as :func:`diffusion_operator` (harmonic-mean face conductances,
    Dirichlet faces half a voxel out), assembled once: the rows are the voxels with a
    positive diffusivity in C order, the only ones whose value the solve changes.
    Returns the matrix, its diagonal, the inlet and outlet conductances (as vectors over
    those voxels) and the flat indices of the voxels.
    """
    from scipy import sparse

    shape = diffusivity.shape
    active = diffusivity > 0
    flat = np.flatnonzero(active)
    n = flat.size
    index = np.full(shape, -1, dtype=np.int64 if n >= 2**31 else np.int32)
    index.ravel()[flat] = np.arange(n, dtype=index.dtype)
    values = diffusivity.ravel()[flat]
    diag = np.zeros(n)
    rows, cols, faces = [], [], []
    for k in range(3):
        low, high = _along(k, slice(None, -1)), _along(k, slice(1, None))
        conductance = weights[k] * _harmonic(diffusivity[low], diffusivity[high])
        linked = conductance > 0
        first, second, value = index[low][linked], index[high][linked], conductance[linked]
        del conductance, linked
        diag += np.bincount(first, value, minlength=n) + np.bincount(second, value, minlength=n)
        rows += [first, second]
        cols += [second, first]
        faces += [value, value]
    inlet = np.zeros(n)
    outlet = np.zeros(n)
    along = np.unravel_index(flat, shape)[axis]
    inlet[along == 0] = 2.0 * weights[axis] * values[along == 0]
    outlet[along == shape[axis] - 1] = 2.0 * weights[axis] * values[along == shape[axis] - 1]
    diag += inlet + outlet
    rows.append(np.arange(n, dtype=index.dtype))
    cols.append(rows[-1])
    faces.append(diag)
    del index
    coupling = -np.concatenate(faces)
    coupling[-n:] = diag  # the diagonal goes in with its own sign
    matrix = sparse.csr_matrix(
        (coupling, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    profile = 1.0 - (along + 0.5) / shape[axis]
    return matrix, diag, inlet, outlet, profile


def _solve_in_memory(
    diffusivity: np.ndarray, axis: int, voxel_size, tol: float, max_iter: int
) -> dict[str, Any]:
    """Jacobi-preconditioned conjugate gradients on the whole volume at once.

    The iteration of :func:`_solve_axis` (same start, preconditioner and stopping
    rule) on numpy vectors and a scipy sparse matrix, so both agree within ``tol``.
    """
    started = time.perf_counter()
    matrix, diag, inlet, outlet, solution = _system(diffusivity, face_weights(voxel_size), axis)
    inverse = _jacobi(np.ones_like(diag), diag)
    residual = inlet - matrix @ solution
    norm_b = math.sqrt(_dot(inlet, inlet))
    preconditioned = residual * inverse
    scratch = np.empty_like(diag)
    rz, rr = _dot(residual, preconditioned, scratch), _dot(residual, residual, scratch)
    relative = math.sqrt(rr) / norm_b if norm_b else 0.0
    direction = np.zeros_like(diag)
    beta, iterations = 0.0, 0
    while relative > tol and iterations < max_iter:
        direction *= beta
        direction += preconditioned
        product = matrix @ direction
        pq = _dot(direction, product, scratch)
        if pq <= 0:
            break  # what is left lies on components without a Dirichlet face
        alpha = rz / pq
        solution += np.multiply(alpha, direction, out=scratch)
        residual -= np.multiply(alpha, product, out=scratch)
        np.multiply(residual, inverse, out=preconditioned)
        rz_new = _dot(residual, preconditioned, scratch)
        rr = _dot(residual, residual, scratch)
        beta, rz = rz_new / rz, rz_new
        relative = math.sqrt(max(rr, 0.0)) / norm_b
        iterations += 1
    return _record(
        _dot(inlet, 1.0 - solution),
        _dot(outlet, solution),
        iterations,
        relative,
        tol,
        axis,
        started,
    )


# --------------------------------------------------------------------------- drivers


def _axis_result(record: dict, axis: int, shape, voxel_size, mean_diffusivity) -> dict:
    length = shape[axis] * voxel_size[axis]
    section = math.prod(n * h for k, (n, h) in enumerate(zip(shape, voxel_size)) if k != axis)
    effective = 0.5 * (record["flux_in"] + record["flux_out"]) * length / section
    return {
        "tortuosity": mean_diffusivity / effective if effective > 0 else None,
        "effective_diffusivity": effective,
        "percolates": True,
        **record,
    }


NOT_PERCOLATING = {"tortuosity": None, "effective_diffusivity": 0.0, "percolates": False}


def _tortuosity_in_memory(diffusivity: np.ndarray, axis_indices, voxel_size, tol, max_iter):
    """Percolation (6-connected labels) and one sparse solve per axis, all in memory."""
    from scipy import ndimage

    shape = diffusivity.shape
    diffusivity = diffusivity.astype(np.float64)
    phase = diffusivity > 0
    labels, _ = ndimage.label(phase)
    n_phase = int(np.count_nonzero(phase))
    del phase
    mean_diffusivity = float(diffusivity.sum()) / math.prod(shape)
    results = {}
    for axis in axis_indices:
        first = np.unique(labels[_along(axis, slice(0, 1))])
        last = np.unique(labels[_along(axis, slice(-1, None))])
        if not np.intersect1d(first[first > 0], last[last > 0]).size:
            results[AXES[axis]] = dict(NOT_PERCOLATING)
            continue
        record = _solve_in_memory(diffusivity, axis, voxel_size, tol, max_iter)
        results[AXES[axis]] = _axis_result(record, axis, shape, voxel_size, mean_diffusivity)
    return results, n_phase, mean_diffusivity


def _tortuosity_chunked(
    group, diffusivity: da.Array, axis_indices, voxel_size, tol, max_iter, chunk_shape, block
):
    """Percolation (chunk-wise union-find) and the chunked solve per axis on ``group``."""
    shape = tuple(int(s) for s in diffusivity.shape)
    state = {
        name: group.create_array(
            name,
            shape=shape,
            chunks=chunk_shape,
            dtype="float32" if name == "D" else "float64",
            fill_value=0,
            compressors=None,
        )
        for name in ("D", "diag", "x", "r", "p0", "p1", "q")
    }
    phase = diffusivity > 0
    summaries, links = ms._connectivity_graph(phase, 6)
    stored = da.store(diffusivity, state["D"], lock=False, compute=False)
    _, total, n_phase, summaries, links = dask.compute(
        stored, diffusivity.sum(dtype=np.float64), phase.sum(), summaries, links
    )
    percolates = ms._components(summaries, links, int(n_phase))["percolates"]
    mean_diffusivity = float(total) / math.prod(shape)
    regions = _blocks(shape, block)
    results = {}
    for axis in axis_indices:
        name = AXES[axis]
        if not percolates[name]:
            results[name] = dict(NOT_PERCOLATING)
            continue
        record = _solve_axis(state, regions, axis, voxel_size, shape, tol, max_iter)
        results[name] = _axis_result(record, axis, shape, voxel_size, mean_diffusivity)
    return results, int(n_phase), mean_diffusivity


# --------------------------------------------------------------------------- public


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
        value = ms._validate_label(value, "diffusivities key")
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
    if diffusivities is not None:
        diffusivities = _validate_diffusivities(diffusivities)
        values, coefficients = tuple(diffusivities), tuple(diffusivities.values())
    else:
        values, coefficients = (ms._validate_label(label, "label"),), (1.0,)
    if not isinstance(volume, (np.ndarray, da.Array)) and hasattr(volume, "mask"):
        volume = volume.mask
    scan, array = ms._as_volume(volume, chunks, role="labels")
    voxel_size, unit = ms._voxel_size_of(scan, voxel_size)
    array = array.rechunk(array.chunksize)
    shape = tuple(int(s) for s in array.shape)
    chunk_shape = tuple(int(c) for c in array.chunksize)
    n_total = math.prod(shape)
    if max_iter is None:
        max_iter = 20 * max(shape) + 100
    diffusivity = array.map_blocks(_diffusivity_map, values, coefficients, dtype=np.float32)
    in_memory = scratch is None and n_total * IN_MEMORY_BYTES_PER_VOXEL <= budget
    block = shape if in_memory else chunk_shape
    folder = None
    if in_memory:
        results, n_phase, mean_diffusivity = _tortuosity_in_memory(
            diffusivity.compute(), axis_indices, voxel_size, tol, max_iter
        )
    else:
        parent = scratch
        if parent is None and n_total * STATE_BYTES_PER_VOXEL > budget:
            parent = tempfile.gettempdir()
        workers = int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
        block = _processing_block(shape, chunk_shape, budget, workers)
        group, folder = vio.scratch_group(parent)
        try:
            results, n_phase, mean_diffusivity = _tortuosity_chunked(
                group, diffusivity, axis_indices, voxel_size, tol, max_iter, chunk_shape, block
            )
        finally:
            vio.remove_scratch(folder)

    result = {
        "shape": list(shape),
        "voxel_size": list(voxel_size),
        "unit": unit,
        "chunks": list(chunk_shape),
        "tol": float(tol),
        "volume_fraction": int(n_phase) / n_total,
        "mean_diffusivity": mean_diffusivity,
        "storage": "memory" if folder is None else "disk",
        "solver": "in-memory" if in_memory else "chunked",
        "blocks": list(block),
        "axes": results,
    }
    if diffusivities is None:
        result["label"] = values[0]
    else:
        result["diffusivities"] = {str(k): v for k, v in diffusivities.items()}
    return result


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
