"""The diffusion problem on a voxel grid: the finite-volume stencil and what a solve yields.

Pure numpy, for a region with a one-voxel border (zeros outside the volume): the
face conductances (harmonic mean of the diffusivities times face area over centre
distance, :func:`face_conductances`), the Dirichlet faces half a voxel outside the first
and last layer along the transport axis, the operator ``A`` and its application
(:func:`diffusion_operator`, :func:`apply_operator`), the Jacobi preconditioner,
and the record of a solve and the effective diffusivity and tortuosity it gives
(:func:`axis_result`). Both solvers (:mod:`~.memory_solve`, :mod:`~.chunked_solve`)
use these pieces, so they solve the same system.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .kernels import AXES

__all__ = [
    "NOT_PERCOLATING",
    "along_axis",
    "apply_operator",
    "axis_result",
    "face_conductances",
    "diffusion_operator",
    "dot",
    "dots",
    "face_weights",
    "harmonic",
    "interior",
    "jacobi",
    "solve_record",
]

log = logging.getLogger(__name__)

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


def harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``2ab / (a + b)`` element-wise, 0 where both are 0 (the face diffusivity).

    Examples
    --------
    >>> harmonic(np.array([1.0, 1.0, 0.0]), np.array([1.0, 3.0, 0.0]))
    array([1. , 1.5, 0. ])
    """
    total = a + b
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.float64)
    np.divide(2.0 * a * b, total, out=out, where=total > 0)
    return out


def interior() -> tuple[slice, ...]:
    """The index of an array's interior: without its one-voxel border.

    Examples
    --------
    >>> np.zeros((3, 4, 5))[interior()].shape
    (1, 2, 3)
    """
    return (slice(1, -1),) * 3


def along_axis(axis: int, part: slice, other: slice = slice(None)) -> tuple[slice, ...]:
    """The 3D index taking ``part`` along ``axis`` and ``other`` along the two other axes.

    Examples
    --------
    >>> along_axis(1, slice(0, 1))
    (slice(None, None, None), slice(0, 1, None), slice(None, None, None))
    """
    index = [other] * 3
    index[axis] = part
    return tuple(index)


def face_conductances(diffusivity: np.ndarray, weights: Sequence[float]) -> list:
    """Per axis, the (low, high) face conductances of the interior voxels of a diffusivity map.

    Examples
    --------
    >>> pairs = face_conductances(np.pad(np.ones((1, 1, 3)), 1), face_weights((1, 1, 1)))
    >>> low, high = pairs[2]
    >>> low.ravel(), high.ravel()
    (array([0., 1., 1.]), array([1., 1., 0.]))
    """
    pairs = []
    for axis in range(3):
        low = diffusivity[along_axis(axis, slice(None, -1), slice(1, -1))]
        high = diffusivity[along_axis(axis, slice(1, None), slice(1, -1))]
        faces = weights[axis] * harmonic(low, high)
        pairs.append(
            (faces[along_axis(axis, slice(None, -1))], faces[along_axis(axis, slice(1, None))])
        )
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
    inner = diffusivity[interior()]
    inlet = np.zeros(inner.shape)
    outlet = np.zeros(inner.shape)
    first = -origin[axis]
    if 0 <= first < inner.shape[axis]:
        layer = along_axis(axis, slice(first, first + 1))
        inlet[layer] = 2.0 * weights[axis] * inner[layer]
    last = shape[axis] - 1 - origin[axis]
    if 0 <= last < inner.shape[axis]:
        layer = along_axis(axis, slice(last, last + 1))
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
    couplings = face_conductances(diffusivity, weights)
    inlet, outlet = _dirichlet(diffusivity, weights, axis, origin, shape)
    diag = inlet + outlet
    for low, high in couplings:
        diag += low + high
    return diag, couplings, inlet, outlet


def apply_operator(diag: np.ndarray, couplings: list, field: np.ndarray) -> np.ndarray:
    """``A field`` on the interior; ``field`` has a one-voxel border.

    Examples
    --------
    >>> channel = np.pad(np.ones((1, 1, 3)), 1)
    >>> diag, pairs, _, _ = diffusion_operator(channel, axis=2)
    >>> apply_operator(diag, pairs, np.pad(np.ones((1, 1, 3)), 1)).ravel()
    array([2., 0., 2.])
    """
    result = diag * field[interior()]
    for axis, (low, high) in enumerate(couplings):
        below = field[along_axis(axis, slice(None, -2), slice(1, -1))]
        above = field[along_axis(axis, slice(2, None), slice(1, -1))]
        result -= low * below + high * above
    return result


def jacobi(residual: np.ndarray, diag: np.ndarray) -> np.ndarray:
    """The Jacobi preconditioner: ``residual / diag``, 0 where the diagonal is 0.

    Examples
    --------
    >>> jacobi(np.array([1.0, 2.0]), np.array([4.0, 0.0]))
    array([0.25, 0.  ])
    """
    out = np.zeros(residual.shape)
    np.divide(residual, diag, out=out, where=diag > 0)
    return out


def dot(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> float:
    """``a . b`` without BLAS, with numpy's pairwise sum.

    BLAS threads spin against dask's and other jobs' (10x slower on a busy
    machine), and the pairwise sum is as accurate.

    Examples
    --------
    >>> dot(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    11.0
    """
    return float(np.multiply(a, b, out=out).sum())


def dots(*pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The :func:`dot` of each pair, as an array (sums of partial dots add up).

    Examples
    --------
    >>> ones = np.ones(3)
    >>> dots((ones, ones), (ones, 2 * ones))
    array([3., 6.])
    """
    return np.array([dot(a, b) for a, b in pairs])


def solve_record(flux_in, flux_out, iterations, relative, tol, axis, started) -> dict[str, Any]:
    """The fluxes and convergence record of one solve (a warning if not converged).

    Examples
    --------
    >>> record = solve_record(2.0, 2.0, 5, 1e-8, 1e-6, 0, time.perf_counter())
    >>> record["converged"], record["iterations"]
    (True, 5)
    """
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


def axis_result(record: dict, axis: int, shape, voxel_size, mean_diffusivity) -> dict:
    """Effective diffusivity ``J L / (A dc)`` and tortuosity along ``axis`` from a solve record.

    Examples
    --------
    >>> record = {"flux_in": 4.0, "flux_out": 4.0}
    >>> result = axis_result(record, 0, (4, 4, 4), (1.0, 1.0, 1.0), 0.25)
    >>> result["effective_diffusivity"], result["tortuosity"]
    (1.0, 0.25)
    """
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
