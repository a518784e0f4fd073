"""Conventions shared by every part of volseg: phases, JSON, file names, cores.

A small module with no heavy imports, so that any module (including the
numpy-only ones) can use it: the phase table of Ni/YSZ/pore anodes, the one
way results are made JSON-ready, where a checkpoint's training history lives,
how many cores this process may use, and how any array becomes a dask array.

>>> from volseg.conventions import PHASES, jsonable
>>> PHASES
{'pore': 0, 'ysz': 1, 'ni': 2}
>>> jsonable({"iou": float("nan"), "shape": (2, 3)})
{'iou': None, 'shape': [2, 3]}
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PHASES", "as_dask_array", "block_grid", "history_paths", "jsonable", "usable_cores"]

# Label values of the three phases of a Ni/YSZ anode, as written by volseg.synth
# and assumed for three-phase models whose labels record no other table.
PHASES = {"pore": 0, "ysz": 1, "ni": 2}


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy scalars as Python ones, NaN/inf as None.

    Parameters
    ----------
    value : any
        A dict, list, tuple or scalar (nested freely).

    Returns
    -------
    any
        The same structure, ready for :func:`json.dumps` and Zarr attributes
        (which refuse NaN and numpy scalars).

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"a": (1, np.int64(2)), "b": [float("inf"), 0.5]})
    {'a': [1, 2], 'b': [None, 0.5]}
    """
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def history_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """Where the CSV and PNG training history of checkpoint ``out`` live.

    Parameters
    ----------
    out : str or path-like
        The checkpoint file.

    Returns
    -------
    (Path, Path)
        ``<out>.history.csv`` and ``<out>.history.png``.

    Examples
    --------
    >>> [p.name for p in history_paths("runs/ni.pt")]
    ['ni.pt.history.csv', 'ni.pt.history.png']
    """
    out = Path(out)
    return out.with_name(out.name + ".history.csv"), out.with_name(out.name + ".history.png")


def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity), at least 1.

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def block_grid(
    shape: tuple[int, ...], chunks: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(index, region) of every block of ``chunks`` over ``shape``, in C order.

    The last block along an axis is cut at the volume's border.

    Examples
    --------
    >>> [index for index, _ in block_grid((2, 5, 4), (2, 3, 4))]
    [(0, 0, 0), (0, 1, 0)]
    >>> list(block_grid((2, 5, 4), (2, 3, 4)))[1][1]
    (slice(0, 2, None), slice(3, 5, None), slice(0, 4, None))
    """
    counts = [math.ceil(s / c) for s, c in zip(shape, chunks)]
    for index in itertools.product(*(range(n) for n in counts)):
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape))
        yield index, region


def as_dask_array(array: Any, chunks: Any = None):
    """``array`` as a dask array, on ``chunks`` when given, else on its own chunks.

    Parameters
    ----------
    array : dask.array.Array, zarr.Array, numpy.ndarray or array-like
        The data. Nothing is read: Zarr and other chunked arrays are wrapped lazily.
    chunks : tuple or None
        Chunks of the result. None keeps a dask array's chunks, uses a stored
        array's own chunks (``array.chunks``), or dask's automatic chunks for
        numpy arrays and array-likes without chunks.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import numpy as np
    >>> as_dask_array(np.zeros((4, 6)), chunks=(2, 3)).chunks
    ((2, 2), (3, 3))
    """
    import dask.array as da

    if isinstance(array, da.Array):
        return array if chunks is None else array.rechunk(chunks)
    if chunks is None and not isinstance(array, np.ndarray):
        chunks = getattr(array, "chunks", None)
    if chunks is None:
        return da.from_array(np.asarray(array))
    return da.from_array(array, chunks=chunks)
