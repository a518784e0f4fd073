"""The chunked (out-of-core) solve of the diffusion problem: conjugate gradients with a halo.

For volumes larger than the memory budget (or with ``scratch``), each iteration
is two passes of dask tasks, one per processing block (whole storage chunks
grouped as far as the budget allows, :func:`processing_block`): the
matrix-vector product reads its block of the search direction with a one-voxel
halo (two for the diffusivities); the dot products are sums of per-block
partial sums. The iterates live in a Zarr scratch group that the caller opens
(:func:`volseg.io.scratch_group`), so memory is one block plus its halo per
running task whatever the volume size. Percolation is checked first with the
chunk-wise union-find of :mod:`~.components`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..conventions import block_grid
from .components import component_measures, connectivity_graph
from .diffusion import (
    NOT_PERCOLATING,
    apply_operator,
    axis_result,
    diffusion_operator,
    dots,
    face_conductances,
    face_weights,
    interior,
    jacobi,
    solve_record,
)
from .kernels import AXES

__all__ = [
    "BLOCK_BYTES_PER_VOXEL",
    "STATE_BYTES_PER_VOXEL",
    "processing_block",
    "tortuosity_chunked",
]

# x, r, p (two buffers), q, the diagonal in float64 and the diffusivity map in float32.
STATE_BYTES_PER_VOXEL = 6 * 8 + 4
# One running task of the chunked solve: its arrays with halos and the stencil's temporaries.
BLOCK_BYTES_PER_VOXEL = 256


def processing_block(
    shape: tuple[int, ...], chunks: tuple[int, ...], budget: int, workers: int
) -> tuple[int, ...]:
    """Storage chunks grouped into processing blocks that ``workers`` tasks hold in ``budget``.

    Whole chunks only (writes never share a stored chunk), doubled along x, then y,
    then z while the group fits: fewer, larger tasks per iteration.

    Examples
    --------
    >>> processing_block((64, 64, 64), (8, 8, 8), 256 * 32**3, 1)
    (32, 32, 32)
    >>> processing_block((64, 64, 64), (8, 8, 8), 1000, 1)
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


def _init_block(state, region, axis, voxel_size, shape) -> np.ndarray:
    """x0 = linear profile on the diffusing voxels, r0 = b - A x0; r.M^-1 r, r.r, b.b."""
    diffusivity = _read(state["D"], region, 2)
    outer = diffusivity[interior()]
    profile = _linear_profile(_start(region, 1), outer.shape, axis, shape)
    x_outer = np.where(outer > 0, profile, 0.0)
    diag, couplings, inlet, _ = diffusion_operator(outer, voxel_size, axis, _start(region), shape)
    residual = inlet - apply_operator(diag, couplings, x_outer)
    state["x"][region] = x_outer[interior()]
    state["r"][region] = residual
    state["diag"][region] = diag
    return dots((residual, jacobi(residual, diag)), (residual, residual), (inlet, inlet))


def _direction_block(
    state, region, axis, voxel_size, shape, beta: float, previous: str, current: str
) -> np.ndarray:
    """p = M^-1 r + beta p and q = A p on one chunk (p on a one-voxel halo); p . q.

    The new direction goes to another array than the previous one (``current``,
    ``previous``): neighbouring tasks still read the previous one's halo.
    """
    diag_outer = _read(state["diag"], region, 1)
    direction = jacobi(_read(state["r"], region, 1), diag_outer)
    if beta:
        direction += beta * _read(state[previous], region, 1)
    diag = diag_outer[interior()]
    couplings = face_conductances(_read(state["D"], region, 1), face_weights(voxel_size))
    product = apply_operator(diag, couplings, direction)
    own = direction[interior()]
    state[current][region] = own
    state["q"][region] = product
    return dots((own, product))


def _update_block(state, region, axis, voxel_size, shape, alpha: float, current: str) -> np.ndarray:
    """x += alpha p, r -= alpha q on one chunk; r . M^-1 r and r . r."""
    diag = _read(state["diag"], region, 0)
    solution = _read(state["x"], region, 0) + alpha * _read(state[current], region, 0)
    residual = _read(state["r"], region, 0) - alpha * _read(state["q"], region, 0)
    state["x"][region] = solution
    state["r"][region] = residual
    return dots((residual, jacobi(residual, diag)), (residual, residual))


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
    return solve_record(float(flux_in), float(flux_out), iterations, relative, tol, axis, started)


def tortuosity_chunked(
    group, diffusivity: da.Array, axis_indices, voxel_size, tol, max_iter, chunk_shape, block
):
    """Percolation (chunk-wise union-find) and the chunked solve per axis on ``group``.

    ``group`` is a Zarr group (the scratch group of :func:`volseg.io.scratch_group`)
    that holds the iterates; ``block`` the processing block shape. Returns what
    :func:`~.memory_solve.tortuosity_in_memory` returns.

    Examples
    --------
    >>> import dask.array as da
    >>> from volseg import io as vio
    >>> channels = np.zeros((6, 6, 6), np.float32)
    >>> channels[:, ::2, ::2] = 1
    >>> group, folder = vio.scratch_group(None)
    >>> diffusivity = da.from_array(channels, chunks=3)
    >>> results, n_phase, mean = tortuosity_chunked(
    ...     group, diffusivity, (0,), (1, 1, 1), 1e-6, 500, (3, 3, 3), (3, 3, 6)
    ... )
    >>> round(results["z"]["tortuosity"], 6), n_phase
    (1.0, 54)
    """
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
    summaries, links = connectivity_graph(phase, 6)
    stored = da.store(diffusivity, state["D"], lock=False, compute=False)
    _, total, n_phase, summaries, links = dask.compute(
        stored, diffusivity.sum(dtype=np.float64), phase.sum(), summaries, links
    )
    percolates = component_measures(summaries, links, int(n_phase))["percolates"]
    mean_diffusivity = float(total) / math.prod(shape)
    regions = [region for _, region in block_grid(shape, block)]
    results = {}
    for axis in axis_indices:
        name = AXES[axis]
        if not percolates[name]:
            results[name] = dict(NOT_PERCOLATING)
            continue
        record = _solve_axis(state, regions, axis, voxel_size, shape, tol, max_iter)
        results[name] = axis_result(record, axis, shape, voxel_size, mean_diffusivity)
    return results, int(n_phase), mean_diffusivity
