"""Dask plumbing for per-chunk tasks: object blocks and one task per chunk with its own item.

The chunk-wise measures return small Python tables per chunk (label summaries,
boundary planes, contact counts); :func:`one_block` wraps one as the (1, 1, 1)
object block of a dask array. :func:`per_chunk` runs a function on every chunk
with a per-chunk item (a plan computed on the client) without copying all the
items into every task.
"""

from __future__ import annotations

import uuid
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

__all__ = ["OBJECT_META", "one_block", "per_chunk"]


def one_block(value: Any) -> np.ndarray:
    """Wrap a Python object as the (1, 1, 1) object block of a dask array.

    Examples
    --------
    >>> block = one_block({"sizes": [3, 1]})
    >>> block.shape, block[0, 0, 0]
    ((1, 1, 1), {'sizes': [3, 1]})
    """
    block = np.empty((1, 1, 1), dtype=object)
    block[0, 0, 0] = value
    return block


OBJECT_META = np.empty((0, 0, 0), dtype=object)


def per_chunk(
    func, volume: da.Array, items: dict, *args, name: str, chunks, dtype, meta
) -> da.Array:
    """``func(block, items[index], *args)`` on every chunk of ``volume``, as a dask array.

    The per-chunk items (small tables) go into their own task, not into every one.

    Examples
    --------
    >>> volume = da.zeros((4, 4, 4), dtype=np.uint8, chunks=2)
    >>> items = {index: sum(index) for index in np.ndindex(*volume.numblocks)}
    >>> shifted = per_chunk(lambda block, item: block + item, volume, items, name="add",
    ...                     chunks=volume.chunks, dtype=np.uint8, meta=np.empty((0, 0, 0)))
    >>> int(shifted[3, 3, 3].compute())
    3
    """
    key = f"{name}-{uuid.uuid4().hex}"
    graph = {
        (key, *index): (func, (volume.name, *index), items[index], *args)
        for index in np.ndindex(*volume.numblocks)
    }
    layers = HighLevelGraph.from_collections(key, graph, dependencies=[volume])
    return da.Array(layers, key, chunks, dtype=dtype, meta=meta)
