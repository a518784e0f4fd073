"""Per-block records of an output group and their consolidated table.

Layout 2 (this version):
  mask, labels, prob          the volumes (Zarr v3 sharding optional: one shard per block)
  chunk_records  int64 (nz, ny, nx, F), chunks (1, 1, 1, F): one uncompressed record per
                 processing block, written by its task last; its `done` field is 1
  chunk_table    int64 (nz, ny, nx, F), a few large chunks: the consolidated records,
                 written by the client as results arrive and at the end
Layout 1 (volseg <= 0.1): stats/<field> arrays with chunks (1, 1, 1): read and resumed
as they are.

:func:`load_table` is the resume plan after a killed client; :class:`RunTable` is the
client's copy of every record during a run.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from zarr.core.sync import sync

__all__ = [
    "BULK_READ",
    "COUNT_FIELDS",
    "LAYOUT_VERSION",
    "PHASE_FIELDS",
    "RECORDS",
    "STAT_DTYPES",
    "STAT_FIELDS",
    "TABLE",
    "TABLE_ENTRIES",
    "TABLE_FLUSH_SECONDS",
    "TRUTH_FIELDS",
    "RunTable",
    "chunk_frame",
    "listed_records",
    "load_table",
    "record_fields",
]

# Counts per chunk. They add up across chunks, so pooled figures come from sums.
COUNT_FIELDS = ("ni_voxels", "uncertain_voxels", "tp", "fp", "fn", "tn")
# Per-chunk vectors of a multi-class run: voxels per phase (C,) and, with truth, the
# confusion matrix (C, C) with rows = true phase, columns = predicted phase.
PHASE_FIELDS = ("phase_voxels", "confusion")
STAT_FIELDS = (*COUNT_FIELDS, *PHASE_FIELDS, "seconds", "refined", "done")
TRUTH_FIELDS = ("tp", "fp", "fn", "tn", "confusion")
STAT_DTYPES = {"done": "bool", "refined": "bool", "seconds": "float32"}  # others: int64

LAYOUT_VERSION = 2
RECORDS = "chunk_records"
TABLE = "chunk_table"
# Entries (chunks x fields) per stored object of the consolidated table (8 MiB of int64).
TABLE_ENTRIES = 1 << 20
# When more than this share of the records is missing from the table, all records are
# read in one concurrent read instead of one by one.
BULK_READ = 0.25
# The client writes the table at least this often while results arrive (seconds).
TABLE_FLUSH_SECONDS = 10.0


def record_fields(n_phases: int) -> dict[str, slice]:
    """Where each statistic lives in a chunk record (int64 vector).

    ``seconds`` is stored in microseconds; ``refined`` and ``done`` are 0 or 1; ``done``
    is the last field.

    Examples
    --------
    >>> fields = record_fields(0)
    >>> list(fields)
    ['ni_voxels', 'uncertain_voxels', 'tp', 'fp', 'fn', 'tn', 'seconds', 'refined', 'done']
    >>> fields["done"]
    slice(8, 9, None)
    >>> record_fields(3)["confusion"]
    slice(9, 18, None)
    """
    widths = {name: 1 for name in COUNT_FIELDS}
    if n_phases:
        widths.update(phase_voxels=n_phases, confusion=n_phases * n_phases)
    widths.update(seconds=1, refined=1, done=1)
    fields, start = {}, 0
    for name, width in widths.items():
        fields[name] = slice(start, start + width)
        start += width
    return fields


def _collect_keys(store: Any, prefix: str) -> list[str]:
    async def collect() -> list[str]:
        return [key async for key in store.list_prefix(prefix)]

    return sync(collect())


def chunk_frame(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Any:
    """One row per block: ``chunk_z/y/x``, bounds ``z0 z1 y0 y1 x0 x1`` and ``voxels``.

    Examples
    --------
    >>> chunk_frame((3, 4, 4), (2, 4, 4)).values.tolist()
    [[0, 0, 0, 0, 2, 0, 4, 0, 4, 32], [1, 0, 0, 2, 3, 0, 4, 0, 4, 16]]
    """
    import pandas as pd

    grid = tuple(-(-int(s) // int(c)) for s, c in zip(shape, chunks))
    indices = np.indices(grid).reshape(3, -1)
    columns: dict[str, np.ndarray] = {}
    for axis, index in zip("zyx", indices):
        columns[f"chunk_{axis}"] = index
    voxels = np.ones(indices.shape[1], dtype=np.int64)
    for axis, index, c, s in zip("zyx", indices, chunks, shape):
        low = index * int(c)
        high = np.minimum(low + int(c), int(s))
        columns[f"{axis}0"], columns[f"{axis}1"] = low, high
        voxels *= high - low
    columns["voxels"] = voxels
    return pd.DataFrame(columns)


def listed_records(output: Any) -> np.ndarray:
    """Which blocks have a record in the store (bool, the chunk grid).

    One listing of the records' keys; no record is read.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io.create import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> _ = output.write_block((1, 0, 0), (slice(1, 2), slice(0, 8), slice(0, 8)),
    ...                        np.zeros((1, 8, 8), np.uint8), None, {})
    >>> listed_records(output).ravel().tolist()
    [False, True]
    """
    prefix = f"{output.records.path}/"
    root = getattr(output.group.store, "root", None)
    if root is not None:
        # Local disk: the records are the files of one folder ("c.z.y.x.0"), one listing.
        names = os.listdir(Path(root) / output.records.path)
    else:
        names = [key[len(prefix) :] for key in _collect_keys(output.group.store, prefix)]
    listed = np.zeros(output.grid, dtype=bool)
    for name in names:
        if name.startswith(("c.", "c/")):
            parts = name[2:].replace("/", ".").split(".")
        elif name[:1].isdigit():
            parts = name.split(".")  # Zarr v2 keys
        else:
            continue
        if len(parts) == 4:
            listed[int(parts[0]), int(parts[1]), int(parts[2])] = True
    return listed


def load_table(output: Any, verify: bool = False) -> np.ndarray:
    """Every block's record (layout 2): the consolidated table, checked against the store.

    A complete output is read from its table alone (one array). Otherwise (a run still
    going, or killed) the table may lag behind: the records' keys are listed once, a
    block without a record is not done, and only the records the table does not hold
    yet are read (a record that cannot be decoded, half-written, is not done). This is
    the resume plan after a killed client. ``verify`` checks a complete output too.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io.create import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> _ = output.write_block((1, 0, 0), (slice(1, 2), slice(0, 8), slice(0, 8)),
    ...                        np.zeros((1, 8, 8), np.uint8), None, {"ni_voxels": 3})
    >>> load_table(output)[..., 0].ravel().tolist()  # the table was never written
    [0, 3]
    """
    table = np.array(output.table[...], dtype=np.int64)
    if output.attrs.get("status") == "complete" and not verify:
        return table
    done = output.fields["done"].start
    listed = listed_records(output)
    table[~listed, done] = 0
    todo = listed & (table[..., done] != 1)
    root = getattr(output.group.store, "root", None)
    codecs = getattr(output.records.metadata, "codecs", ())
    plain = len(codecs) == 1 and str(getattr(codecs[0], "endian", "")).endswith("little")
    if root is not None and plain:
        _read_local_records(Path(root) / output.records.path, todo, table, done)
        return table
    if np.count_nonzero(todo) > BULK_READ * todo.size:
        # The table lags far behind (the client died early): read every record at once,
        # concurrently; one half-written record sends it to the one-by-one loop below.
        try:
            records = np.asarray(output.records[...])
        except Exception:
            pass
        else:
            take = todo & (records[..., done] == 1)
            table[take] = records[take]
            return table

    def read(index: tuple[int, ...]) -> np.ndarray | None:
        try:
            return np.asarray(output.records[index]).reshape(-1)
        except Exception:  # half-written: not done
            return None

    indices = list(zip(*np.nonzero(todo)))
    with ThreadPoolExecutor(16) as pool:
        for index, record in zip(indices, pool.map(read, indices)):
            if record is not None and record[done] == 1:
                table[index] = record
    return table


def _read_local_records(folder: Path, todo: np.ndarray, table: np.ndarray, done: int) -> None:
    """Read the records of ``todo`` straight from their files (uncompressed little-endian
    int64, ``c.z.y.x.0``) into ``table``; a file of the wrong size is half-written."""
    width = table.shape[-1]
    dtype = np.dtype("<i8")

    def read(index: tuple[int, ...]) -> np.ndarray | None:
        name = "c." + ".".join(str(int(i)) for i in index) + ".0"
        try:
            data = (folder / name).read_bytes()
        except OSError:
            return None
        if len(data) != width * dtype.itemsize:
            return None
        return np.frombuffer(data, dtype=dtype)

    indices = list(zip(*np.nonzero(todo)))
    with ThreadPoolExecutor(8) as pool:
        for index, record in zip(indices, pool.map(read, indices, chunksize=256)):
            if record is not None and record[done] == 1:
                table[index] = record


class RunTable:
    """The client's copy of every block's record during a run.

    It is written to ``chunk_table`` as results arrive (at most every
    :data:`TABLE_FLUSH_SECONDS`) and at the end.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io.create import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> run = RunTable(output, reused=False)
    >>> record = output.write_block((0, 0, 0), (slice(0, 1), slice(0, 8), slice(0, 8)),
    ...                             np.zeros((1, 8, 8), np.uint8), None, {"ni_voxels": 5})
    >>> run.note(((0, 0, 0), record)); run.flush()
    >>> int(output.table[0, 0, 0, 0]), int(output.table[1, 0, 0, 0])
    (5, 0)
    """

    def __init__(self, output: Any, reused: bool) -> None:
        self.output = output
        self.table = None
        if not output.legacy:
            shape = (*output.grid, output.fields["done"].stop)
            self.table = (
                load_table(output, verify=True) if reused else np.zeros(shape, dtype=np.int64)
            )
        self._flushed = time.monotonic()

    def note(self, result: Any) -> None:
        """Take in one task's ``(index, record)``."""
        if self.table is None or not isinstance(result, tuple) or result[1] is None:
            return
        index, record = result
        self.table[tuple(index)] = record
        if time.monotonic() - self._flushed > TABLE_FLUSH_SECONDS:
            self.flush()

    def clear(self, indices: list) -> None:
        """Blocks about to be rewritten are not done (written to the table at once)."""
        if self.table is None:
            return
        done = self.output.fields["done"].start
        for index in indices:
            self.table[tuple(index) + (done,)] = 0
        self.flush()

    def forget(self, indices: list) -> None:
        """Blocks to be computed again from scratch: their records go, and the table's.

        Unlike :meth:`clear` (a refinement, which reads a block's record before it
        rewrites the block), the records are deleted at once, in every layout.
        """
        for index in indices:
            self.output.clear_done(tuple(index))
        self.clear(indices)

    def flush(self) -> None:
        if self.table is not None:
            self.output.write_table(self.table)
        self._flushed = time.monotonic()

    def stats(self) -> dict[str, np.ndarray]:
        """What :meth:`OutputGroup.read_stats` returns, from this copy."""
        return self.output.read_stats(self.table)
