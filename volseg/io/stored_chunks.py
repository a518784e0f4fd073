"""The stored chunks of a Zarr scan: missing and corrupt chunks are errors, not holes.

A chunk absent from the store reads as the fill value (a silent hole of zeros), and
a chunk that cannot be decoded fails deep inside the codec: :func:`check_stored_chunks`
and :func:`read_zarr_region` name the array and the chunk key instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from zarr.core.sync import sync

__all__ = ["check_stored_chunks", "read_zarr_region"]


def _array_name(array: Any) -> str:
    root = getattr(array.store, "root", None)
    if root is not None:
        return str(Path(str(root)) / str(array.path)) if array.path else str(root)
    return str(array.store_path)


def _chunk_indices(array: Any, region: tuple[slice, ...]) -> Iterable[tuple[int, ...]]:
    grid = _storage_chunks(array)
    ranges = [
        range(sl.start // c, max(sl.start // c + 1, -(-sl.stop // c)))
        for sl, c in zip(region, grid)
    ]
    return itertools.product(*ranges)


def _storage_chunks(array: Any) -> tuple[int, ...]:
    """The shape of one stored object: the shard of a sharded array, else the chunk."""
    shards = getattr(array, "shards", None)
    return tuple(int(c) for c in (shards or array.chunks))


def _chunk_key(array: Any, index: tuple[int, ...]) -> str:
    metadata = array.metadata
    if hasattr(metadata, "encode_chunk_key"):
        return metadata.encode_chunk_key(index)
    separator = getattr(metadata, "dimension_separator", ".") or "."
    return separator.join(str(i) for i in index)


def _store_key(array: Any, key: str) -> str:
    return f"{array.path}/{key}" if array.path else key


def check_stored_chunks(array: Any, region: tuple[slice, ...], role: str = "scan") -> None:
    """Every stored chunk of the zarr ``array`` under ``region`` exists in its store.

    A chunk absent from the store reads as the fill value: for a scan, that is a silent
    hole of zeros. Costs one existence check per chunk of the region (no listing of
    the store), so it scales with the block, not with the volume.

    Raises
    ------
    ValueError
        Naming the array and the missing chunk key.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2, 2),
    ...                           dtype="uint8", fill_value=0)
    >>> array[:2] = 1
    >>> check_stored_chunks(array, (slice(0, 2), slice(0, 4)))
    >>> check_stored_chunks(array, (slice(0, 4), slice(0, 2)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: scan '...' has no stored chunk 'c/1/0' ...
    """
    store = array.store
    for index in _chunk_indices(array, region):
        key = _chunk_key(array, index)
        if not sync(store.exists(_store_key(array, key))):
            raise ValueError(
                f"{role} {_array_name(array)!r} has no stored chunk {key!r} (index "
                f"{tuple(index)}); Zarr would read it as the fill value "
                f"{np.asarray(array.fill_value).item()!r}, a silent hole in the data. Copy the "
                "scan again, or, if "
                "chunks were left out on purpose (all fill value, written with "
                "write_empty_chunks=False), pass --allow-missing-chunks "
                "(allow_missing_chunks=True)."
            )


def read_zarr_region(array: Any, region: tuple[slice, ...], role: str = "scan") -> np.ndarray:
    """``array[region]``; a chunk that cannot be decoded is named with its key.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), chunks=(2,),
    ...                           dtype="uint8")
    >>> read_zarr_region(array, (slice(1, 3),)).tolist()
    [0, 0]
    """
    try:
        return np.asarray(array[region])
    except Exception as exc:
        for index in _chunk_indices(array, region):
            chunk = tuple(
                slice(i * c, min((i + 1) * c, s))
                for i, c, s in zip(index, _storage_chunks(array), array.shape)
            )
            try:
                array[chunk]
            except Exception as chunk_exc:
                raise ValueError(
                    f"{role} {_array_name(array)!r}: stored chunk {_chunk_key(array, index)!r} "
                    f"is corrupt and cannot be decoded ({type(chunk_exc).__name__}: "
                    f"{chunk_exc}); copy the scan again from its source (or rewrite that "
                    "chunk)."
                ) from chunk_exc
        raise ValueError(
            f"{role} {_array_name(array)!r}: reading {region} failed "
            f"({type(exc).__name__}: {exc}); check the store."
        ) from exc
