"""Create a new output group: the run record, the volumes and the per-block records.

:func:`create_output` writes the group in four steps (the run record, the volumes,
then the per-block records of layout 2 or the ``stats/`` arrays of layout 1);
:func:`validate_shards` checks a sharded output's shard shape first.
"""

from __future__ import annotations

from typing import Any

import zarr

from .metadata import ome_multiscales
from .output import OutputGroup, open_output, stats_array
from .paths import store_for
from .records import (
    LAYOUT_VERSION,
    PHASE_FIELDS,
    RECORDS,
    STAT_FIELDS,
    TABLE,
    TABLE_ENTRIES,
    TRUTH_FIELDS,
    record_fields,
)
from .scans import validate_chunks

__all__ = ["create_output", "validate_shards"]


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

    group = zarr.open_group(store_for(out), mode="w-", zarr_format=zarr_format)
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks))
    n_phases = len(phases) if phases is not None else 0
    shown = _shown_stats(has_truth, phases, confusion)
    _write_run_record(group, attrs, layout, chunks, n_phases, shown, voxel_size, unit)
    _create_volumes(group, shape, chunks, stored_chunks, phases, prob_dtype, zarr_format)
    if layout != LAYOUT_VERSION:
        _create_stats(group, shown, grid, n_phases)
    else:
        _create_records(group, grid, record_fields(n_phases)["done"].stop, zarr_format)
    return open_output(out, mode="r+")


def _shown_stats(has_truth: bool, phases: dict[str, int] | None, confusion: bool | None) -> list:
    """The statistics this run records (in the order of ``STAT_FIELDS``)."""
    return [
        name
        for name in STAT_FIELDS
        if not (name in TRUTH_FIELDS and not has_truth)
        and not (name in PHASE_FIELDS and phases is None)
        and not (name == "confusion" and confusion is False)
    ]


def _write_run_record(
    group: zarr.Group,
    attrs: dict[str, Any],
    layout: int,
    chunks: tuple[int, int, int],
    n_phases: int,
    shown: list,
    voxel_size: tuple[float, float, float] | None,
    unit: str | None,
) -> None:
    """``attrs["volseg"]`` (status ``running``) and the OME-Zarr metadata of the mask."""
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
    group.attrs["ome"] = ome_multiscales(
        ["mask"], voxel_size or (1.0, 1.0, 1.0), name="mask", unit=unit
    )


def _create_volumes(
    group: zarr.Group,
    shape: tuple[int, int, int],
    chunks: tuple[int, int, int],
    stored_chunks: tuple[int, int, int] | None,
    phases: dict[str, int] | None,
    prob_dtype: str | None,
    zarr_format: int,
) -> None:
    """The empty ``mask``, ``labels`` (multi-class) and ``prob`` (optional) arrays."""
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


def _create_stats(group: zarr.Group, shown: list, grid: tuple[int, ...], n_phases: int) -> None:
    """Layout 1: one ``stats/<field>`` array per statistic, on the chunk grid."""
    stats_group = group.create_group("stats")
    for name in shown:
        extra = {"phase_voxels": (n_phases,), "confusion": (n_phases, n_phases)}.get(name, ())
        stats_array(stats_group, name, (*grid, *extra))


def _create_records(group: zarr.Group, grid: tuple[int, ...], width: int, zarr_format: int) -> None:
    """Layout 2: the per-block records and the consolidated table, ``width`` fields each."""
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
    try:
        values = validate_chunks(shards, shape)
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
