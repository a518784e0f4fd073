"""The owner of the output format: run record, completeness and the rules readers follow.

Every reader of an output group (``volseg stats``, ``evaluate``, ``measure``, ``report``,
:func:`volseg.open_result`) goes through :func:`check_complete`: an output whose run did
not finish is refused, naming how many chunks are missing and the fix (``--resume``),
unless the caller passes ``allow_incomplete=True`` (``--allow-incomplete``); then the
chunks that are not done are excluded from every figure (not counted as background),
and the figures say so (``chunks_missing``).

See ``docs/output-format.md`` for the layout.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

__all__ = [
    "Completeness",
    "IncompleteOutputError",
    "Lease",
    "LeaseHeldError",
    "OutputGroup",
    "RunTable",
    "check_complete",
    "create_output",
    "holds_leases",
    "lease_state",
    "listed_records",
    "load_table",
    "open_output",
    "record_fields",
    "recorded_path",
    "refuse_live_lease",
]


class IncompleteOutputError(ValueError):
    """An output group whose run has not finished, read without ``allow_incomplete``.

    Examples
    --------
    >>> issubclass(IncompleteOutputError, ValueError)
    True
    """


@dataclass(frozen=True)
class Completeness:
    """Which chunks of an output are done.

    Attributes
    ----------
    done : numpy.ndarray
        bool, one entry per chunk (the chunk grid).
    status : str
        The recorded ``status`` (``"running"`` or ``"complete"``).

    Examples
    --------
    >>> state = Completeness(np.array([[[True, False]]]), "running")
    >>> state.missing, state.total, state.complete
    (1, 2, False)
    """

    done: np.ndarray
    status: str | None

    @property
    def total(self) -> int:
        return int(self.done.size)

    @property
    def missing(self) -> int:
        return int(self.total - np.count_nonzero(self.done))

    @property
    def complete(self) -> bool:
        return self.status == "complete" and self.missing == 0


def check_complete(output: Any, allow_incomplete: bool = False) -> Completeness:
    """Refuse an output whose run did not finish, unless ``allow_incomplete``.

    Parameters
    ----------
    output : volseg.io.OutputGroup
    allow_incomplete : bool
        Accept it; the caller then excludes the chunks that are not done.

    Returns
    -------
    Completeness

    Raises
    ------
    IncompleteOutputError
        (a ValueError) naming the output, how many chunks are missing and the fix.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> try:
    ...     check_complete(output)
    ... except IncompleteOutputError as exc:
    ...     print(str(exc).split(": ", 1)[1][:26])
    2 of 2 chunks are not done
    >>> check_complete(output, allow_incomplete=True).missing
    2
    """
    done = np.asarray(output.read_done(), dtype=bool)
    state = Completeness(done, output.attrs.get("status"))
    if state.complete or allow_incomplete:
        return state
    if state.missing:
        what = f"{state.missing} of {state.total} chunks are not done"
    else:
        what = f"every chunk is done but the run did not finish (status {state.status!r})"
    raise IncompleteOutputError(
        f"output {output.path!r} is incomplete: {what}; finish it with `volseg segment ... "
        "--resume` (segment(..., resume=True)) and the same settings, or pass "
        "--allow-incomplete (allow_incomplete=True) to use only the done chunks."
    )


def recorded_path(source: Any) -> Any:
    """An input as the run record stores it: a local path made absolute, else unchanged.

    Examples
    --------
    >>> getfixture("monkeypatch").chdir(getfixture("tmp_path"))
    >>> Path("scan.zarr").mkdir()
    >>> recorded_path("scan.zarr") == str(Path("scan.zarr").resolve())
    True
    >>> recorded_path("zarr array /image")
    'zarr array /image'
    """
    if isinstance(source, (str, os.PathLike)) and "://" not in str(source):
        path = Path(source)
        # Descriptions of in-memory arrays ("zarr array /image") are not paths.
        if path.exists():
            return str(path.resolve())
    return str(source) if isinstance(source, os.PathLike) else source


def same_input(recorded: Any, given: Any) -> bool:
    """Whether a recorded input and a given one name the same thing (paths resolved).

    Examples
    --------
    >>> same_input("scan.zarr", str(Path("scan.zarr").resolve()))
    True
    """
    if recorded == given:
        return True
    if isinstance(recorded, str) and isinstance(given, str):
        try:
            return Path(recorded).resolve() == Path(given).resolve()
        except (OSError, ValueError):
            return False
    return False


def output_state(source: Any, allow_incomplete: bool) -> tuple[Completeness, Any] | None:
    """``(Completeness, OutputGroup)`` of a volseg output group, None for other volumes.

    ``source`` may be a path to one, an :class:`OutputGroup` or a result holding one;
    it is checked with :func:`check_complete`.

    Examples
    --------
    >>> output_state(np.zeros((2, 2, 2)), allow_incomplete=False) is None
    True
    """
    from . import io as vio

    if isinstance(source, vio.OutputGroup):
        output = source
    elif isinstance(source, (str, os.PathLike)):
        try:
            output = vio.open_output(source)
        except (FileNotFoundError, ValueError):
            return None
    elif getattr(source, "group", None) is not None and getattr(source, "path", None):
        try:
            output = vio.open_output(source.path)
        except (FileNotFoundError, ValueError):
            return None
    else:
        return None
    return check_complete(output, allow_incomplete), output


def done_voxels(state: Completeness, output: Any) -> Any:
    """A lazy bool volume on the output's chunks: True inside the done chunks.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 4, 4), (1, 4, 4), attrs={})
    >>> state = Completeness(np.array([[[True]], [[False]]]), "running")
    >>> done_voxels(state, output).sum(axis=(1, 2)).compute().tolist()
    [16, 0]
    """
    import dask.array as da

    shape = tuple(int(s) for s in output.mask.shape)
    chunks = da.core.normalize_chunks(output.chunks, shape)
    return da.map_blocks(_done_block, done=state.done, chunks=chunks, dtype=bool)


def _done_block(done: np.ndarray, block_info=None, block_id=None) -> np.ndarray:
    return np.full(block_info[None]["chunk-shape"], bool(done[block_id]), dtype=bool)


# Measures that need the whole volume (surfaces across chunk faces, components,
# percolation, thickness): with chunks missing they are not computed (None).
WHOLE_VOLUME_KEYS = (
    "faces",
    "surface_area_faces",
    "specific_surface_area",
    "specific_surface_area_isotropic",
    "n_components",
    "largest_component_voxels",
    "largest_component_fraction",
    "percolates",
    "percolating_fraction",
    "thickness_mean",
    "thickness_median",
    "thickness_truncated_fraction",
    "tpb_edges",
    "tpb_length_edges",
    "tpb_density_edges",
    "tpb_density",
)


def partial_measures(
    result: dict[str, Any], phases: dict[str, Any], state: Completeness, output: Any
) -> dict[str, Any]:
    """Measures of an incomplete output: fractions over the done chunks only.

    The measures that need the whole volume are set to None; ``chunks_missing`` and
    ``note`` say so.

    ``phases``: ``{name: lazy bool volume}``, ``""`` for the single phase of ``measure``.
    """
    import dask.array as da

    valid = done_voxels(state, output)
    n_valid, *counts = da.compute(
        da.count_nonzero(valid),
        *(da.count_nonzero(p & valid.rechunk(p.chunks)) for p in phases.values()),
    )
    n_valid = int(n_valid)

    def fix(values: dict[str, Any], count: int) -> None:
        values["phase_voxels"] = int(count)
        values["volume_fraction"] = count / n_valid if n_valid else None
        for key in WHOLE_VOLUME_KEYS:
            if key in values:
                values[key] = None

    for (name, _), count in zip(phases.items(), counts):
        fix(result if name == "" else result["phases"][name], int(count))
    if "phase_fractions" in result:
        result["phase_fractions"] = {
            name: values["volume_fraction"] for name, values in result["phases"].items()
        }
    for key in WHOLE_VOLUME_KEYS:
        if key in result:
            result[key] = None
    result["chunks_missing"] = state.missing
    result["voxels_measured"] = n_valid
    result["note"] = (
        f"{state.missing} of {state.total} chunks are not done: fractions are over the done "
        "chunks only; surfaces, components, percolation, thickness and TPB need the whole "
        "volume and are not computed"
    )
    return result


# ====================================================================== the output group
#
# Layout 2 (this version):
#   mask, labels, prob          the volumes (Zarr v3 sharding optional: one shard per block)
#   chunk_records  int64 (nz, ny, nx, F), chunks (1, 1, 1, F): one uncompressed record per
#                  processing block, written by its task last; its `done` field is 1
#   chunk_table    int64 (nz, ny, nx, F), a few large chunks: the consolidated records,
#                  written by the client as results arrive and at the end
# Layout 1 (volseg <= 0.1): stats/<field> arrays with chunks (1, 1, 1): read and resumed
# as they are.

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
    from zarr.core.sync import sync

    async def collect() -> list[str]:
        return [key async for key in store.list_prefix(prefix)]

    return sync(collect())


@dataclass
class OutputGroup:
    """The arrays of an output group, handed to the tasks that write regions.

    Attributes
    ----------
    group : zarr.Group
    mask : zarr.Array
    prob : zarr.Array or None
        ``(Z, Y, X)``, or ``(C, Z, Y, X)`` per-class probabilities of a multi-class run.
    stats : dict of str to zarr.Array
        Layout 1 only (older outputs): one array per field of :data:`STAT_FIELDS`.
    chunks : tuple of int
        The processing block shape (the shard shape of a sharded output).
    labels : zarr.Array or None
        uint8 phase label values of a multi-class run.
    records : zarr.Array or None
        Layout 2: one int64 record per block (:func:`record_fields`).
    table : zarr.Array or None
        Layout 2: the consolidated records, written by the client.

    Examples
    --------
    A task writes its block, then the block's record (its done flag):

    >>> import zarr
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (2, 4, 8), attrs={})
    >>> record = output.write_block((0, 1, 0), (slice(0, 2), slice(4, 8), slice(0, 8)),
    ...                             np.ones((2, 4, 8), np.uint8), None, {"ni_voxels": 64})
    >>> stats = output.read_stats()
    >>> stats["done"][0, :, 0].tolist(), stats["ni_voxels"][0, :, 0].tolist()
    ([False, True], [0, 64])
    >>> int(output.mask[...].sum())
    64
    """

    group: zarr.Group
    mask: zarr.Array
    prob: zarr.Array | None
    stats: dict[str, zarr.Array]
    chunks: tuple[int, int, int]
    labels: zarr.Array | None = None
    records: zarr.Array | None = None
    table: zarr.Array | None = None

    @property
    def path(self) -> str:
        store = self.group.store
        root = getattr(store, "root", None)
        return str(root) if root is not None else str(self.group.store_path)

    @property
    def legacy(self) -> bool:
        """An output of layout 1 (``stats/`` arrays)."""
        return self.records is None

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(-(-int(s) // int(c)) for s, c in zip(self.mask.shape, self.chunks))

    @property
    def layout(self) -> dict[str, Any]:
        return dict(self.attrs.get("layout") or {})

    @property
    def fields(self) -> dict[str, slice]:
        return record_fields(int(self.layout.get("phases", 0)))

    def encode(self, counts: dict[str, Any], done: bool = True) -> np.ndarray:
        """A block's counts as its record (int64 vector)."""
        fields = self.fields
        record = np.zeros(fields["done"].stop, dtype=np.int64)
        for name, value in counts.items():
            if name == "seconds":
                value = round(float(value) * 1e6)
            record[fields[name]] = np.asarray(value, dtype=np.int64).ravel()
        record[fields["done"]] = int(done)
        return record

    def decode(self, table: np.ndarray) -> dict[str, np.ndarray]:
        """Records ``(..., F)`` as per-chunk arrays like :meth:`read_stats` returns."""
        fields = self.fields
        shown = set(self.layout.get("stats", ())) | {"seconds", "refined", "done"}
        n_phases = int(self.layout.get("phases", 0))
        stats = {}
        for name, where in fields.items():
            if name not in shown:
                continue
            values = table[..., where]
            if name == "phase_voxels":
                stats[name] = values
            elif name == "confusion":
                stats[name] = values.reshape(*values.shape[:-1], n_phases, n_phases)
            elif name == "seconds":
                stats[name] = values[..., 0].astype(np.float64) / 1e6
            elif name in ("refined", "done"):
                stats[name] = values[..., 0] == 1
            else:
                stats[name] = values[..., 0]
        return stats

    def write_block(
        self,
        index: tuple[int, int, int],
        region: tuple[slice, slice, slice],
        mask: np.ndarray,
        prob: np.ndarray | None,
        counts: dict[str, Any],
        labels: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Write one block: arrays first, its record (with the done flag) last.

        Returns the record (layout 2), for the client's table.
        """
        self.mask[region] = mask
        if self.labels is not None and labels is not None:
            self.labels[region] = labels
        if self.prob is not None and prob is not None:
            self.prob[(slice(None),) * (prob.ndim - 3) + tuple(region)] = prob
        if self.legacy:
            for name, value in counts.items():
                self.stats[name][index] = value
            self.stats["done"][index] = True
            return None
        record = self.encode(counts)
        # One stored object, written whole: the block is done once it exists.
        self.records[tuple(index)] = record[None, None, None, :]
        return record

    def ensure_flag(self, name: str) -> None:
        """Create a boolean per-chunk array missing from an older output (e.g. ``refined``)."""
        if self.legacy:
            self.stats[name] = _stats_array(self.group["stats"], name, self.stats["done"].shape)

    def clear_done(self, index: tuple[int, int, int]) -> None:
        """Mark a block as not done before it is rewritten (refinement)."""
        if self.legacy:
            self.stats["done"][index] = False
            return
        from zarr.core.sync import sync

        key = self.records.metadata.encode_chunk_key((*map(int, index), 0))
        path = f"{self.records.path}/{key}" if self.records.path else key
        sync(self.group.store.delete(path))

    def read_record(self, index: tuple[int, int, int]) -> dict[str, Any]:
        """The stored statistics of one block."""
        if self.legacy:
            return {name: array[index] for name, array in self.stats.items()}
        record = np.asarray(self.records[tuple(index)]).reshape(1, -1)
        return {k: v[0] for k, v in self.decode(record).items()}

    def write_counts(self, counts: np.ndarray, names: tuple[str, ...]) -> None:
        """Store whole per-chunk count arrays (``counts[..., i]`` for ``names[i]``)."""
        if self.legacy:
            for i, name in enumerate(names):
                self.write_vector(name, counts[..., i])
            return
        table = load_table(self)
        fields = self.fields
        for i, name in enumerate(names):
            table[..., fields[name]] = counts[..., i : i + 1]
        self._show(names)
        self.write_table(table)

    def write_vector(self, name: str, values: np.ndarray) -> None:
        """Store a whole per-chunk array, with or without trailing dimensions
        (``confusion`` has ``(C, C)`` per chunk)."""
        if self.legacy:
            self.stats[name] = _stats_array(self.group["stats"], name, values.shape)
            self.stats[name][...] = values
            return
        table = load_table(self)
        table[..., self.fields[name]] = values.reshape(*self.grid, -1)
        self._show((name,))
        self.write_table(table)

    def _show(self, names: tuple[str, ...]) -> None:
        layout = self.layout
        layout["stats"] = sorted(set(layout.get("stats", ())) | set(names))
        self.update_attrs(layout=layout)

    def write_table(self, table: np.ndarray) -> None:
        """Store the consolidated table (layout 2; the client's copy of every record)."""
        if not self.legacy:
            self.table[...] = table

    def read_done(self) -> np.ndarray:
        """The ``done`` flag of every chunk (bool, the chunk grid)."""
        if self.legacy:
            return np.asarray(self.stats["done"][...], dtype=bool)
        return load_table(self)[..., self.fields["done"]][..., 0] == 1

    def read_stats(self, table: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """All per-chunk statistics (small: one value per chunk).

        Layout 2: from the consolidated table of a complete output (one array), else
        from the table and the per-block records (:func:`load_table`); ``table``: the
        client's own copy, if it holds one.
        """
        if self.legacy:
            return {name: np.asarray(array[...]) for name, array in self.stats.items()}
        return self.decode(load_table(self) if table is None else table)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs.get("volseg", {}))

    def update_attrs(self, **values: Any) -> None:
        record = self.attrs
        record.update(values)
        self.group.attrs["volseg"] = record


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


def listed_records(output: OutputGroup) -> np.ndarray:
    """Which blocks have a record in the store (bool, the chunk grid).

    One listing of the records' keys; no record is read.

    Examples
    --------
    >>> import zarr
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


def load_table(output: OutputGroup, verify: bool = False) -> np.ndarray:
    """Every block's record (layout 2): the consolidated table, checked against the store.

    A complete output is read from its table alone (one array). Otherwise (a run still
    going, or killed) the table may lag behind: the records' keys are listed once, a
    block without a record is not done, and only the records the table does not hold
    yet are read (a record that cannot be decoded, half-written, is not done). This is
    the resume plan after a killed client. ``verify`` checks a complete output too.

    Examples
    --------
    >>> import zarr
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
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> run = RunTable(output, reused=False)
    >>> record = output.write_block((0, 0, 0), (slice(0, 1), slice(0, 8), slice(0, 8)),
    ...                             np.zeros((1, 8, 8), np.uint8), None, {"ni_voxels": 5})
    >>> run.note(((0, 0, 0), record)); run.flush()
    >>> int(output.table[0, 0, 0, 0]), int(output.table[1, 0, 0, 0])
    (5, 0)
    """

    def __init__(self, output: OutputGroup, reused: bool) -> None:
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

    def flush(self) -> None:
        if self.table is not None:
            self.output.write_table(self.table)
        self._flushed = time.monotonic()

    def stats(self) -> dict[str, np.ndarray]:
        """What :meth:`OutputGroup.read_stats` returns, from this copy."""
        return self.output.read_stats(self.table)


def _store_for(out: Any) -> Any:
    if isinstance(out, (str, os.PathLike)):
        return str(out)
    return out


def output_exists(out: Any) -> bool:
    """True when ``out`` already holds a Zarr node."""
    if isinstance(out, (str, os.PathLike)):
        return Path(out).exists()
    try:
        zarr.open_group(out, mode="r")
        return True
    except Exception:
        return False


def remove_output(out: Any, kind: str = "volseg") -> None:
    """Delete an existing output (only called with ``overwrite=True``).

    Only a Zarr group written by volseg (``kind="volseg"``: it has a ``volseg``
    record) or any Zarr group (``kind="zarr"``) is deleted; anything else at the
    path is left alone and reported, so a typo in ``--out`` cannot wipe a folder.
    """
    if isinstance(out, (str, os.PathLike)):
        path = Path(out)
        if not _is_removable(path, kind):
            raise FileExistsError(
                f"output {str(path)!r} exists and is not a {kind} output group; volseg will not "
                "delete it: choose another output path or remove it yourself."
            )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    else:
        zarr.open_group(out, mode="w")


def _is_removable(path: Path, kind: str) -> bool:
    if path.is_dir() and not any(path.iterdir()):
        return True
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        return False
    return kind == "zarr" or "volseg" in group.attrs


def create_output(
    out: Any,
    shape: tuple[int, int, int],
    chunks: tuple[int, int, int],
    *,
    attrs: dict[str, Any],
    prob_dtype: str | None = None,
    has_truth: bool = False,
    phases: dict[str, int] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    unit: str | None = None,
    confusion: bool | None = None,
    zarr_format: int = 3,
    stored_chunks: tuple[int, int, int] | None = None,
    layout: int = LAYOUT_VERSION,
) -> OutputGroup:
    """Create a new output group with status ``running``.

    Parameters
    ----------
    out : path or zarr store
        Where to create it; must not exist (the caller handles ``overwrite``).
    shape, chunks : tuple of int
        Volume shape and processing block shape.
    attrs : dict
        Run record stored under ``attrs["volseg"]``.
    prob_dtype : {None, "uint8", "float16", "float32"}
        Also store the blended probability.
    has_truth : bool
        Create the confusion-count arrays (tp, fp, fn, tn and, with phases, confusion).
    phases : dict, optional
        ``{name: label value}`` of a multi-class run: adds the ``labels`` array,
        per-class probabilities ``(C, Z, Y, X)`` and the per-phase stats.
    voxel_size, unit : optional
        The scan's voxel size (z, y, x) and unit, recorded in the OME-Zarr metadata
        and in ``attrs["volseg"]`` so that measures come out in physical units.
    confusion : bool, optional
        Keep the ``confusion`` statistics (default: with truth and phases); False when
        the truth can only be scored for Ni.
    zarr_format : {2, 3}
    stored_chunks : tuple of int, optional
        Shard ``mask``/``labels``/``prob`` (Zarr v3): ``chunks`` (the processing block) is
        the shard, ``stored_chunks`` the chunk inside it that readers fetch.
    layout : {2, 1}
        1 writes the ``stats/`` arrays of volseg 0.1 (for tests of older outputs).

    Returns
    -------
    OutputGroup

    Examples
    --------
    >>> path = getfixture("tmp_path") / "scan_ni.zarr"
    >>> output = create_output(path, (4, 50, 60), (2, 32, 32), attrs={"input": "scan.zarr"},
    ...                        has_truth=True)
    >>> output.mask.shape, output.chunks, output.read_stats()["tp"].shape
    ((4, 50, 60), (2, 32, 32), (2, 2, 2))
    >>> output.attrs["status"], output.prob is None, output.labels is None
    ('running', True, True)
    """
    from . import io as vio

    group = zarr.open_group(_store_for(out), mode="w-", zarr_format=zarr_format)
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks))
    n_phases = len(phases) if phases is not None else 0
    shown = [
        name
        for name in STAT_FIELDS
        if not (name in TRUTH_FIELDS and not has_truth)
        and not (name in PHASE_FIELDS and phases is None)
        and not (name == "confusion" and confusion is False)
    ]
    record = {**attrs, "status": "running"}
    if layout == LAYOUT_VERSION:
        record["layout"] = {
            "version": LAYOUT_VERSION,
            "block": [int(c) for c in chunks],
            "phases": n_phases,
            "stats": shown,
        }
    if voxel_size is not None:
        record.update(voxel_size=[float(v) for v in voxel_size], unit=unit)
    group.attrs["volseg"] = record
    # NGFF viewers (napari-ome-zarr) open the mask as the group's image.
    group.attrs["ome"] = vio.ome_multiscales(
        ["mask"], voxel_size or (1.0, 1.0, 1.0), name="mask", unit=unit
    )
    storage = {"chunks": chunks}
    if stored_chunks is not None:
        storage = {"chunks": tuple(stored_chunks), "shards": tuple(chunks)}
    group.create_array(
        "mask",
        shape=shape,
        **storage,
        dtype="uint8",
        fill_value=0,
        dimension_names=("z", "y", "x") if zarr_format == 3 else None,
    )
    names = ("z", "y", "x")
    if phases is not None:
        group.create_array(
            "labels",
            shape=shape,
            **storage,
            dtype="uint8",
            fill_value=0,
            dimension_names=names if zarr_format == 3 else None,
            attributes={"phases": dict(phases)},
        )
    if prob_dtype is not None:
        lead = (len(phases),) if phases is not None else ()
        group.create_array(
            "prob",
            shape=(*lead, *shape),
            **{key: (*lead, *value) for key, value in storage.items()},
            dtype=prob_dtype,
            fill_value=0,
            dimension_names=(("c",) * len(lead) + names) if zarr_format == 3 else None,
            attributes={"classes": list(phases)} if phases is not None else {},
        )
    if layout != LAYOUT_VERSION:
        stats_group = group.create_group("stats")
        for name in shown:
            extra = {"phase_voxels": (n_phases,), "confusion": (n_phases, n_phases)}.get(name, ())
            _stats_array(stats_group, name, (*grid, *extra))
        return open_output(out, mode="r+")
    width = record_fields(n_phases)["done"].stop
    group.create_array(
        RECORDS,
        shape=(*grid, width),
        chunks=(1, 1, 1, width),
        dtype="int64",
        fill_value=0,
        compressors=None,  # a record is 8 * F bytes; a half-written one has the wrong size
        # All records in one folder ("c.z.y.x.0"): a resume lists them in one listing.
        chunk_key_encoding={"name": "default", "separator": "."}
        if zarr_format == 3
        else {"name": "v2", "separator": "."},
    )
    rows = max(1, min(grid[0], TABLE_ENTRIES // max(1, grid[1] * grid[2] * width)))
    group.create_array(
        TABLE,
        shape=(*grid, width),
        chunks=(rows, grid[1], grid[2], width),
        dtype="int64",
        fill_value=0,
    )
    return open_output(out, mode="r+")


def _stats_array(stats_group: zarr.Group, name: str, shape: tuple[int, ...]) -> zarr.Array:
    """The per-chunk array ``name`` of ``stats/``, created (filled with 0) if missing.

    One stored chunk per processing block (chunks ``(1, 1, 1, ...)``): each task owns its
    own entries, so concurrent writers never touch the same stored object.
    """
    if name not in stats_group:
        stats_group.create_array(
            name,
            shape=shape,
            chunks=(1, 1, 1, *shape[3:]),
            dtype=STAT_DTYPES.get(name, "int64"),
            fill_value=0,
        )
    return stats_group[name]


def open_output(out: Any, mode: str = "r") -> OutputGroup:
    """Open an existing output group.

    Parameters
    ----------
    out : path or zarr store
        A group written by :func:`create_output` (``volseg segment``).
    mode : str
        Zarr access mode: ``"r"`` to read, ``"r+"`` to write into it.

    Returns
    -------
    OutputGroup

    Raises
    ------
    FileNotFoundError
        Nothing at ``out``.
    ValueError
        ``out`` is not a volseg output group.

    Examples
    --------
    >>> path = getfixture("tmp_path") / "scan_ni.zarr"
    >>> _ = create_output(path, (2, 8, 8), (2, 8, 8), attrs={"input": "scan.zarr"})
    >>> output = open_output(path)
    >>> output.attrs["input"], output.attrs["status"], output.mask.shape
    ('scan.zarr', 'running', (2, 8, 8))
    >>> open_output(getfixture("tmp_path") / "missing.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: output '.../missing.zarr' does not exist; ...
    """
    from . import io as vio

    if isinstance(out, (str, os.PathLike)) and not Path(out).exists():
        raise FileNotFoundError(
            f"output {str(out)!r} does not exist; check the path or run `volseg segment` first."
        )
    try:
        group = zarr.open_group(_store_for(out), mode=mode)
    except Exception as exc:
        raise ValueError(f"output {vio._describe(out)!r} is not a Zarr group ({exc}).") from exc
    layout2 = RECORDS in group and TABLE in group
    if "volseg" not in group.attrs or "mask" not in group or not (layout2 or "stats" in group):
        raise ValueError(
            f"output {vio._describe(out)!r} is not a volseg output group (no mask/stats/attrs); "
            "give the folder written by `volseg segment`."
        )
    mask = group["mask"]
    prob = group["prob"] if "prob" in group else None
    labels = group["labels"] if "labels" in group else None
    if layout2:
        block = (dict(group.attrs["volseg"]).get("layout") or {}).get("block")
        chunks = tuple(int(c) for c in (block or mask.shards or mask.chunks))
        return OutputGroup(
            group, mask, prob, {}, chunks, labels, records=group[RECORDS], table=group[TABLE]
        )
    stats = {name: group["stats"][name] for name in STAT_FIELDS if name in group["stats"]}
    return OutputGroup(group, mask, prob, stats, tuple(int(c) for c in mask.chunks), labels)


def validate_shards(
    shards: Any, chunks: tuple[int, int, int], shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Shard shape (= processing block): whole multiples of ``chunks``.

    Three positive integers, cut to the volume's shape like ``chunks``.

    Examples
    --------
    >>> validate_shards((8, 256, 256), (1, 64, 64), (100, 1000, 1000))
    (8, 256, 256)
    >>> validate_shards((8, 100, 256), (1, 64, 64), (100, 1000, 1000))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: shards=(8, 100, 256) must be whole multiples of chunks=(1, 64, 64) ...
    """
    from . import io as vio

    try:
        values = vio.validate_chunks(shards, shape)
    except ValueError:
        raise ValueError(f"shards={shards!r} must be three positive integers (z, y, x).") from None
    bad = [axis for axis, (v, c) in enumerate(zip(values, chunks)) if v % c]
    if bad:
        suggested, where = list(values), []
        for a in bad:
            cut = values[a] == shape[a] and int(tuple(shards)[a]) > shape[a]
            # the largest whole multiple of the chunk below the value (the chunk when none)
            suggested[a] = max(values[a] // chunks[a], 1) * chunks[a]
            if cut and suggested[a] > shape[a]:
                suggested[a] = shape[a]
            note = f" (cut to the volume's {shape[a]})" if cut else ""
            where.append(f"{'zyx'[a]}: {values[a]}{note} is not a multiple of {chunks[a]}")
        raise ValueError(
            f"shards={tuple(shards)!r} must be whole multiples of chunks={tuple(chunks)!r} "
            f"after being cut to the volume's shape {tuple(shape)} ({', '.join(where)}); use "
            f"e.g. --shards {' '.join(map(str, suggested))}, or chunks that divide the volume."
        )
    return values


# ====================================================================== the writer lease
#
# A run holds a lease on its output: the file LEASE_NAME inside the group, holding the
# host, pid, start time and a heartbeat refreshed by a thread of the client process. A
# second run (plain, resume or overwrite) on an output whose lease is live is refused;
# a stale lease (its process is gone from this host, or its heartbeat is older than
# LEASE_TIMEOUT) is taken over by --resume / --overwrite. Workers never touch it.

LEASE_NAME = "volseg.lease.json"
LEASE_HEARTBEAT = 20.0  # seconds between heartbeats
LEASE_TIMEOUT = 120.0  # a heartbeat older than this is stale
_held: contextvars.ContextVar[list | None] = contextvars.ContextVar("volseg_leases", default=None)


class LeaseHeldError(FileExistsError):
    """The output is being written by another live run.

    Examples
    --------
    >>> issubclass(LeaseHeldError, FileExistsError)
    True
    """


def _lease_path(out: Any) -> Path | None:
    if isinstance(out, (str, os.PathLike)) and "://" not in str(out):
        return Path(out) / LEASE_NAME
    return None  # an in-memory store is never shared between processes


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": -1, "started": 0.0, "heartbeat": 0.0, "damaged": True}


def lease_state(lease: dict[str, Any], now: float | None = None) -> str:
    """``"live"`` or why it is stale: ``"process gone"``, ``"no heartbeat"``.

    Examples
    --------
    >>> import os, socket, time
    >>> mine = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}
    >>> lease_state(mine), lease_state({**mine, "heartbeat": 0.0})
    ('live', 'no heartbeat')
    """
    now = time.time() if now is None else now
    if lease.get("host") == socket.gethostname() and not _pid_alive(int(lease.get("pid", -1))):
        return "process gone"
    if now - float(lease.get("heartbeat", 0.0)) > LEASE_TIMEOUT:
        return "no heartbeat"
    return "live"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_lease(out: Any, lease: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(lease.get("started", 0))))
    age = time.time() - float(lease.get("heartbeat", 0.0))
    return (
        f"output {str(out)!r} is being written by process {lease.get('pid')} on host "
        f"{lease.get('host')!r} (started {started}, last heartbeat {age:.0f} s ago)"
    )


def refuse_live_lease(out: Any) -> None:
    """Refuse any run on an output another live run is writing.

    Raises
    ------
    LeaseHeldError
        Naming the host, the process and the fix.

    Examples
    --------
    >>> refuse_live_lease(getfixture("tmp_path") / "none.zarr")  # no lease: nothing to say
    """
    path = _lease_path(out)
    lease = None if path is None else _read_lease(path)
    if lease is None or lease_state(lease) != "live":
        return
    held = _held.get() or []
    if any(own.path == path for own in held):
        return
    raise LeaseHeldError(
        f"{_describe_lease(out, lease)}; two runs must not write one output: wait for it to "
        f"finish or stop it. If that run is dead, its lease goes stale (its process gone from "
        f"this host, or no heartbeat for {LEASE_TIMEOUT:.0f} s) and --resume or --overwrite "
        f"take it over; or delete {str(path)!r} yourself."
    )


class Lease:
    """This process's lease on an output: a heartbeat thread keeps it live.

    Examples
    --------
    >>> import zarr
    >>> out = getfixture("tmp_path") / "o.zarr"
    >>> _ = zarr.open_group(str(out), mode="w")
    >>> lease = Lease.acquire(out)
    >>> (out / LEASE_NAME).exists(), lease_state(_read_lease(out / LEASE_NAME))
    (True, 'live')
    >>> lease.release(); (out / LEASE_NAME).exists()
    False
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="volseg-lease", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, out: Any) -> Lease | None:
        """Take the lease (a stale one is replaced); None for an in-memory output."""
        path = _lease_path(out)
        if path is None:
            return None
        now = time.time()
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": now,
            "heartbeat": now,
            "token": os.urandom(8).hex(),
        }
        for _ in range(3):
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                refuse_live_lease(out)
                path.unlink(missing_ok=True)  # stale: take it over
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
            lease = cls(path, record)
            held = _held.get()
            if held is not None:
                held.append(lease)
            return lease
        raise LeaseHeldError(f"output {str(out)!r}: could not take its lease {str(path)!r}.")

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_HEARTBEAT):
            current = _read_lease(self.path)
            if current is None or current.get("token") != self.record["token"]:
                return  # taken over (or removed by --overwrite of another run)
            self.record["heartbeat"] = time.time()
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps(self.record), encoding="utf-8")
            os.replace(partial, self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this run's."""
        self._stop.set()
        self._thread.join(timeout=5)
        current = _read_lease(self.path)
        if current is not None and current.get("token") == self.record["token"]:
            self.path.unlink(missing_ok=True)


def holds_leases(func: Any) -> Any:
    """Release every lease ``func`` took (:meth:`Lease.acquire`) when it returns or raises.

    Examples
    --------
    >>> @holds_leases
    ... def run():
    ...     return "done"
    >>> run()
    'done'
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _held.set([])
        try:
            return func(*args, **kwargs)
        finally:
            for lease in _held.get() or []:
                lease.release()
            _held.reset(token)

    return wrapper
