"""Reading a segmentation output back: the per-chunk table, the pooled summary, the result.

The reading side of the output format (the writing side is :mod:`volseg.io.output`
and :mod:`volseg.io.records`). No torch here: scoring, reporting and measuring an
output do not load the network's libraries. :func:`open_result` reopens a finished
output; :func:`stats_table` and :func:`summarise` turn the per-block records into the
figures users see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from .completeness import check_complete
from .output import OutputGroup, open_output
from .records import PHASE_FIELDS, STAT_FIELDS, chunk_frame

__all__ = [
    "SegmentationResult",
    "chunk_rows",
    "open_result",
    "output_phases",
    "stats_table",
    "summarise",
]


@dataclass
class SegmentationResult:
    """What :func:`volseg.segment` returns.

    Attributes
    ----------
    mask : zarr.Array
        uint8 ``(Z, Y, X)``, 1 = Ni.
    prob : zarr.Array or None
        Blended Ni probability when ``save_prob`` was set.
    stats : pandas.DataFrame
        One row per chunk: its index and bounds, ``voxels``, ``ni_voxels``,
        ``ni_fraction``, ``uncertain_voxels``, ``uncertain_fraction``,
        ``seconds`` and, with truth, ``tp``, ``fp``, ``fn``, ``tn``, ``iou``, ``dice``.
    summary : dict
        Pooled figures: ``ni_fraction``, ``voxels``, ``seconds``,
        ``voxels_per_second``, chunk counts and, with truth, ``ni_iou``,
        ``ni_dice``, ``precision``, ``recall``, ``two_class_mean_iou``.
    path : str
        Where the output group lives.
    group : zarr.Group
        The output group itself (``labels`` of a multi-class run, ``attrs``).

    Examples
    --------
    A random-weight network on a random scan, in two chunks, scored against a truth:

    >>> import volseg
    >>> from volseg.model import build_unet, default_config, save_checkpoint
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      normalisation={"low": 0, "high": 1000})
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "m.pt")
    >>> scan = np.random.default_rng(0).integers(0, 1000, (2, 40, 50), dtype=np.uint16)
    >>> result = volseg.segment(scan, model=path, truth=scan > 500, tile=64, chunks=(1, 40, 50),
    ...                         progress=False, device="cpu")
    >>> result.stats[["chunk_z", "z0", "z1", "voxels"]].values.tolist()
    [[0, 0, 1, 2000], [1, 1, 2, 2000]]
    >>> truth_voxels = result.summary["tp"] + result.summary["fn"]
    >>> truth_voxels == int(np.count_nonzero(scan > 500)), 0 <= result.summary["ni_iou"] <= 1
    (True, True)
    """

    mask: Any
    prob: Any
    stats: pd.DataFrame
    summary: dict[str, Any]
    path: str
    group: Any = field(repr=False, default=None)

    @classmethod
    def of(cls, output: OutputGroup, table: pd.DataFrame, summary: dict) -> SegmentationResult:
        """The result of an output group with its table and summary."""
        return cls(
            mask=output.mask,
            prob=output.prob,
            stats=table,
            summary=summary,
            path=output.path,
            group=output.group,
        )


def chunk_rows(shape, chunks) -> Iterator[tuple[tuple[int, int, int], dict[str, Any]]]:
    """(chunk index, row with ``chunk_z/y/x``, bounds ``z0 .. x1`` and ``voxels``) per chunk.

    Examples
    --------
    >>> index, row = list(chunk_rows((2, 4, 4), (1, 4, 4)))[1]
    >>> index, row["z0"], row["z1"], row["voxels"]
    ((1, 0, 0), 1, 2, 16)
    """
    for row in chunk_frame(shape, chunks).to_dict("records"):
        yield (row["chunk_z"], row["chunk_y"], row["chunk_x"]), row


def stats_table(output: OutputGroup, stats: dict | None = None) -> pd.DataFrame:
    """The per-chunk statistics of an output group as a DataFrame (one row per chunk).

    ``stats``: the group's arrays if already read (:meth:`volseg.io.output.OutputGroup.read_stats`).

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> stats_table(output)[["chunk_z", "voxels", "done"]].values.tolist()
    [[0, 64, False], [1, 64, False]]
    """
    if stats is None:
        stats = output.read_stats()
    shape = tuple(int(s) for s in output.mask.shape)
    # Column by column (10^5 chunks in well under a second), rows in chunk-grid order.
    table = chunk_frame(shape, output.chunks)
    for name in STAT_FIELDS:
        if name in stats and name not in PHASE_FIELDS:
            table[name] = np.asarray(stats[name]).reshape(-1)
    table["ni_fraction"] = table["ni_voxels"] / table["voxels"]
    table["uncertain_fraction"] = table["uncertain_voxels"] / table["voxels"]
    if "tp" in table:
        table = metrics.scores_table(table)
    phases = output_phases(output)
    if phases is not None and "phase_voxels" in stats:
        names = list(phases)
        flat = stats["phase_voxels"].reshape(-1, len(names))
        for i, name in enumerate(names):
            table[f"{name}_fraction"] = flat[:, i] / table["voxels"].to_numpy()
        if "confusion" in stats:
            for column, values in metrics.phase_columns(stats["confusion"], names).items():
                table[column] = values
    return table


def output_phases(output: OutputGroup) -> dict[str, int] | None:
    """``{phase: label value}`` of an output group with ``labels`` (None for a Ni mask).

    Parameters
    ----------
    output : volseg.io.OutputGroup
        An output group written by :func:`volseg.segment`.

    Returns
    -------
    dict of str to int, or None
        The phases recorded in its run parameters; None for a binary Ni mask.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> phases = {"pore": 0, "ysz": 1, "ni": 2}
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (2, 8, 8),
    ...                        attrs={"parameters": {"phases": phases}}, phases=phases)
    >>> output_phases(output)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    >>> print(output_phases(create_output(zarr.storage.MemoryStore(), (2, 8, 8), (2, 8, 8),
    ...                                   attrs={"parameters": {"phases": None}})))
    None
    """
    phases = output.attrs.get("parameters", {}).get("phases")
    return {str(k): int(v) for k, v in phases.items()} if phases else None


def summarise(
    table: pd.DataFrame,
    has_truth: bool,
    seconds: float,
    computed: int,
    computed_voxels: int,
    phases: dict | None = None,
    stats: dict | None = None,
) -> dict:
    """Pooled figures of a run from its per-chunk table (counts add up across chunks).

    Examples
    --------
    >>> table = pd.DataFrame({"voxels": [64, 64], "ni_voxels": [16, 48],
    ...                       "uncertain_voxels": [0, 8]})
    >>> summary = summarise(table, False, 2.0, 2, 128)
    >>> summary["ni_fraction"], summary["voxels_per_second"]
    (0.5, 64.0)
    """
    total = int(table["voxels"].sum())
    summary: dict[str, Any] = {
        "voxels": total,
        "ni_voxels": int(table["ni_voxels"].sum()),
        "ni_fraction": float(table["ni_voxels"].sum() / total),
        "uncertain_fraction": float(table["uncertain_voxels"].sum() / total),
        "chunks": len(table),
        "chunks_computed": computed,
        "chunks_skipped": len(table) - computed,
        "seconds": seconds,
        # Voxels segmented in this call (chunks skipped by resume do not count).
        "voxels_per_second": computed_voxels / seconds if computed_voxels else float("nan"),
    }
    if has_truth:
        sums = {k: int(table[k].sum()) for k in ("tp", "fp", "fn", "tn")}
        summary.update(sums)
        summary.update(metrics.pooled_scores(**sums))
    if "refined" in table:
        summary["chunks_refined"] = int(table["refined"].sum())
    if phases is not None and "phase_voxels" in stats:
        names = list(phases)
        totals = stats["phase_voxels"].reshape(-1, len(names)).sum(axis=0)
        summary["phase_fractions"] = {n: float(t / total) for n, t in zip(names, totals)}
        if "confusion" in stats:
            summary.update(metrics.pooled_phase_scores(stats["confusion"], names))
    return summary


def open_result(out: Any, allow_incomplete: bool = False) -> SegmentationResult:
    """Reopen a finished output group as a :class:`SegmentationResult`.

    An output whose run has not finished is refused (naming the chunks that are not
    done and the fix, ``resume=True``) unless ``allow_incomplete``: then its stats hold
    the done chunks only and the summary, computed over them, adds ``chunks_missing``.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> open_result(output.group.store, allow_incomplete=True).summary["chunks_missing"]
    2
    """
    output = open_output(out)
    state = check_complete(output, allow_incomplete)
    record = output.attrs
    stats = output.read_stats()
    table = stats_table(output, stats)
    if state.complete:
        summary = dict(record.get("summary") or {})
    elif not state.done.any():
        table = table.iloc[:0]
        summary = {"chunks": 0, "chunks_missing": state.missing}
    else:
        table = table[state.done.ravel()].reset_index(drop=True)
        summary = summarise(
            table, "tp" in table, float("nan"), 0, 0, output_phases(output),
            {k: v[state.done] for k, v in stats.items()},
        )  # fmt: skip
        for key in ("seconds", "voxels_per_second", "chunks_computed", "chunks_skipped"):
            summary.pop(key, None)
        summary["chunks_missing"] = state.missing
    summary["status"] = record.get("status")
    return SegmentationResult.of(output, table, summary)
