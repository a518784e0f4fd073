"""The in-memory solve of the diffusion problem: one sparse matrix, conjugate gradients.

When the whole problem fits the memory budget, the operator of
:mod:`~.diffusion` is assembled once as a scipy sparse matrix over the diffusing
voxels and the Jacobi-preconditioned conjugate gradients run on numpy vectors,
with the start, iteration and stopping rule of the chunked solve; percolation is
checked first with :func:`scipy.ndimage.label`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage, sparse

from .diffusion import (
    NOT_PERCOLATING,
    along_axis,
    axis_result,
    dot,
    face_weights,
    harmonic,
    jacobi,
    solve_record,
)
from .kernels import AXES

__all__ = ["tortuosity_in_memory"]


def _system(diffusivity: np.ndarray, weights: Sequence[float], axis: int):
    """The operator of the whole volume as a sparse matrix over its diffusing voxels.

    The same stencil as :func:`diffusion_operator` (harmonic-mean face conductances,
    Dirichlet faces half a voxel out), assembled once: the rows are the voxels with a
    positive diffusivity in C order, the only ones whose value the solve changes.
    Returns the matrix, its diagonal, the inlet and outlet conductances (as vectors over
    those voxels) and the flat indices of the voxels.
    """
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
        low, high = along_axis(k, slice(None, -1)), along_axis(k, slice(1, None))
        conductance = weights[k] * harmonic(diffusivity[low], diffusivity[high])
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

    The iteration of the chunked solve (same start, preconditioner and stopping
    rule) on numpy vectors and a scipy sparse matrix, so both agree within ``tol``.
    """
    started = time.perf_counter()
    matrix, diag, inlet, outlet, solution = _system(diffusivity, face_weights(voxel_size), axis)
    inverse = jacobi(np.ones_like(diag), diag)
    residual = inlet - matrix @ solution
    norm_b = math.sqrt(dot(inlet, inlet))
    preconditioned = residual * inverse
    scratch = np.empty_like(diag)
    rz, rr = dot(residual, preconditioned, scratch), dot(residual, residual, scratch)
    relative = math.sqrt(rr) / norm_b if norm_b else 0.0
    direction = np.zeros_like(diag)
    beta, iterations = 0.0, 0
    while relative > tol and iterations < max_iter:
        direction *= beta
        direction += preconditioned
        product = matrix @ direction
        pq = dot(direction, product, scratch)
        if pq <= 0:
            break  # what is left lies on components without a Dirichlet face
        alpha = rz / pq
        solution += np.multiply(alpha, direction, out=scratch)
        residual -= np.multiply(alpha, product, out=scratch)
        np.multiply(residual, inverse, out=preconditioned)
        rz_new = dot(residual, preconditioned, scratch)
        rr = dot(residual, residual, scratch)
        beta, rz = rz_new / rz, rz_new
        relative = math.sqrt(max(rr, 0.0)) / norm_b
        iterations += 1
    return solve_record(
        dot(inlet, 1.0 - solution),
        dot(outlet, solution),
        iterations,
        relative,
        tol,
        axis,
        started,
    )


def tortuosity_in_memory(diffusivity: np.ndarray, axis_indices, voxel_size, tol, max_iter):
    """Percolation (6-connected labels) and one sparse solve per axis, all in memory.

    Returns the per-axis results (see :func:`~.diffusion.axis_result`), the
    diffusing voxels and the mean diffusivity.

    Examples
    --------
    >>> channels = np.zeros((6, 6, 6), np.float32)
    >>> channels[:, ::2, ::2] = 1
    >>> results, n_phase, mean = tortuosity_in_memory(channels, (0, 2), (1, 1, 1), 1e-6, 500)
    >>> round(results["z"]["tortuosity"], 6), results["x"]["percolates"], n_phase
    (1.0, False, 54)
    """
    shape = diffusivity.shape
    diffusivity = diffusivity.astype(np.float64)
    phase = diffusivity > 0
    labels, _ = ndimage.label(phase)
    n_phase = int(np.count_nonzero(phase))
    del phase
    mean_diffusivity = float(diffusivity.sum()) / math.prod(shape)
    results = {}
    for axis in axis_indices:
        first = np.unique(labels[along_axis(axis, slice(0, 1))])
        last = np.unique(labels[along_axis(axis, slice(-1, None))])
        if not np.intersect1d(first[first > 0], last[last > 0]).size:
            results[AXES[axis]] = dict(NOT_PERCOLATING)
            continue
        record = _solve_in_memory(diffusivity, axis, voxel_size, tol, max_iter)
        results[AXES[axis]] = axis_result(record, axis, shape, voxel_size, mean_diffusivity)
    return results, n_phase, mean_diffusivity
