"""The output group of a run: :class:`OutputGroup`, the handle tasks write blocks into.

An output group (see ``docs/output-format.md``)::

    scan_ni.zarr/
      mask    uint8 (Z, Y, X), 1 = Ni
      labels  uint8 phase values of a multi-class run
      prob    optional, uint8 0..255 or float16
      chunk_records, chunk_table   one record per block (:mod:`volseg.io.records`)
      attrs   {"volseg": {version, status, parameters, model, input, ...}}

:func:`open_output` opens one; :func:`volseg.io.create.create_output` makes a new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from .paths import store_for
from .records import RECORDS, STAT_DTYPES, STAT_FIELDS, TABLE, load_table, record_fields
from .scans import describe

__all__ = ["OutputGroup", "open_output", "stats_array"]


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
    >>> from volseg.io.create import create_output
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
            self.stats[name] = stats_array(self.group["stats"], name, self.stats["done"].shape)

    def clear_done(self, index: tuple[int, int, int]) -> None:
        """Mark a block as not done before it is rewritten (refinement)."""
        if self.legacy:
            self.stats["done"][index] = False
            return
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
            self.stats[name] = stats_array(self.group["stats"], name, values.shape)
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


def stats_array(stats_group: zarr.Group, name: str, shape: tuple[int, ...]) -> zarr.Array:
    """The per-chunk array ``name`` of ``stats/``, created (filled with 0) if missing.

    One stored chunk per processing block (chunks ``(1, 1, 1, ...)``): each task owns its
    own entries, so concurrent writers never touch the same stored object.

    Examples
    --------
    >>> stats = zarr.open_group(zarr.storage.MemoryStore(), mode="w").create_group("stats")
    >>> stats_array(stats, "done", (2, 1, 1)).chunks, stats_array(stats, "done", (2, 1, 1)).dtype
    ((1, 1, 1), dtype('bool'))
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
    >>> from volseg.io.create import create_output
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
    if isinstance(out, (str, os.PathLike)) and not Path(out).exists():
        raise FileNotFoundError(
            f"output {str(out)!r} does not exist; check the path or run `volseg segment` first."
        )
    try:
        group = zarr.open_group(store_for(out), mode=mode)
    except Exception as exc:
        raise ValueError(f"output {describe(out)!r} is not a Zarr group ({exc}).") from exc
    layout2 = RECORDS in group and TABLE in group
    if "volseg" not in group.attrs or "mask" not in group or not (layout2 or "stats" in group):
        raise ValueError(
            f"output {describe(out)!r} is not a volseg output group (no mask/stats/attrs); "
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
