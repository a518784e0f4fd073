"""``evaluate()``: how good is a mask? Chunked confusion counts, pooled scores, per-slice IoU.

Counts are computed per chunk with dask (never on the whole volume at once), stored in
the output group's ``stats/`` arrays when the mask is a volseg output, pooled by
summing, and compared with a global-threshold baseline on the same scan.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from . import io as vio
from . import metrics
from .conventions import as_dask_array, jsonable
from .io.results import chunk_rows, output_phases

__all__ = ["Evaluation", "BASELINES", "evaluate"]

log = logging.getLogger(__name__)

BASELINES = ("multiotsu", "otsu", "none")
_KEYS = ("tp", "fp", "fn", "tn")


@dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    summary : dict
        Pooled ``ni_iou``, ``ni_dice``, ``precision``, ``recall``,
        ``two_class_mean_iou`` (mean of Ni and background IoU: labelled so), the
        counts, and ``baseline`` (its method, threshold and scores) when computed.
    chunks : pandas.DataFrame
        One row per chunk: index, bounds, counts, ``iou``, ``dice``.
    slices : pandas.DataFrame
        One row per z-slice: ``z``, counts, ``iou``, ``dice``.

    Examples
    --------
    A mask that finds all Ni in the first slice and none in the second:

    >>> truth = np.zeros((2, 8, 8), np.uint8); truth[:, :4] = 1
    >>> mask = truth.copy(); mask[1] = 0
    >>> result = evaluate(mask, truth, baseline="none")
    >>> result.summary["ni_iou"], len(result.chunks), result.slices["iou"].tolist()
    (0.5, 1, [1.0, 0.0])
    """

    summary: dict[str, Any]
    chunks: pd.DataFrame
    slices: pd.DataFrame


def _block_counts(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    counts = metrics.confusion_counts(prediction, truth)
    return np.array([[[[counts[k] for k in _KEYS]]]], dtype=np.int64)


def chunk_counts(prediction: da.Array, truth: da.Array) -> np.ndarray:
    """Confusion counts of every chunk: int64 array ``(nz, ny, nx, 4)`` (tp, fp, fn, tn)."""
    per_block = da.map_blocks(
        _block_counts,
        prediction,
        truth,
        dtype=np.int64,
        chunks=tuple((1,) * len(c) for c in prediction.chunks) + ((4,),),
        new_axis=3,
    )
    return per_block.compute()


def _block_confusion(predicted, truth, predicted_values, truth_values):
    matrix = metrics.confusion_matrix(truth, predicted, truth_values, predicted_values)
    return matrix[None, None, None]


def chunk_confusion(
    labels: da.Array, truth: da.Array, predicted_values: list, truth_values: list
) -> np.ndarray:
    """Multi-class confusion matrix of every chunk: int64 ``(nz, ny, nx, C, C)``.

    Rows are true phases (``truth == truth_values[i]``), columns predicted phases
    (``labels == predicted_values[j]``); voxels with other values are not counted.
    """
    n = len(predicted_values)
    per_block = da.map_blocks(
        _block_confusion,
        labels,
        truth,
        predicted_values=list(predicted_values),
        truth_values=list(truth_values),
        dtype=np.int64,
        chunks=tuple((1,) * len(c) for c in labels.chunks) + ((n,), (n,)),
        new_axis=[3, 4],
    )
    return per_block.compute()


def slice_counts(
    prediction: da.Array, truth: da.Array, valid: da.Array | None = None
) -> pd.DataFrame:
    """Confusion counts per z-slice (reductions over y and x, chunk by chunk).

    ``valid``: the voxels that count (the done chunks of an incomplete output); both
    volumes must already be False outside it.
    """
    tp = da.count_nonzero(prediction & truth, axis=(1, 2))
    n_pred = da.count_nonzero(prediction, axis=(1, 2))
    n_true = da.count_nonzero(truth, axis=(1, 2))
    if valid is None:
        n_valid = prediction.shape[1] * prediction.shape[2]
        tp, n_pred, n_true = da.compute(tp, n_pred, n_true)
    else:
        tp, n_pred, n_true, n_valid = da.compute(
            tp, n_pred, n_true, da.count_nonzero(valid, axis=(1, 2))
        )
    tp, n_pred, n_true = (np.asarray(a, dtype=np.int64) for a in (tp, n_pred, n_true))
    plane = np.asarray(n_valid, dtype=np.int64)
    table = pd.DataFrame(
        {"z": np.arange(prediction.shape[0]), "tp": tp, "fp": n_pred - tp, "fn": n_true - tp}
    )
    table["tn"] = plane - table["tp"] - table["fp"] - table["fn"]
    return metrics.scores_table(table)


def evaluate(
    mask: Any,
    truth: Any,
    ni_label: float | None = None,
    *,
    baseline: str = "multiotsu",
    scan: Any = None,
    csv: str | os.PathLike | None = None,
    write: bool = True,
    phases: dict[str, int] | None = None,
    allow_incomplete: bool = False,
) -> Evaluation:
    """Score a mask against ground truth, chunk by chunk, and against a threshold baseline.

    Parameters
    ----------
    mask : path or array
        A volseg output group (``scan_ni.zarr``; its ``mask`` is used and its
        ``stats/`` receive the counts) or any binary 3D volume (nonzero = Ni).
    truth : path or array
        Binary mask or label volume of the same shape.
    ni_label : number, optional
        Value of Ni in ``truth``; default: recorded in its attrs, else 1.
    baseline : {"multiotsu", "otsu", "none"}
        Global threshold on the scan to compare with (needs the scan: ``scan=`` or
        the input recorded in the output group).
    scan : path or array, optional
        The grey-value scan, for the baseline.
    csv : path, optional
        Write the per-chunk table here, and the per-slice table to ``<csv stem>_slices.csv``.
    write : bool
        Store the counts in the output group's ``stats/`` (volseg outputs only).
    phases : dict, optional
        ``{name: label value}`` of a multi-phase prediction given as a label array.
        An output group of a three-phase model is scored per phase by itself. Adds
        a confusion matrix per chunk (stored as ``stats/confusion``) and pooled,
        ``phase_iou``, ``mean_iou`` and ``accuracy`` to the summary, and
        ``iou_<phase>`` columns to the chunk table; truth values per phase are taken
        from the truth's recorded phases by name, else the same values.
    allow_incomplete : bool
        Score an output group whose run has not finished (refused by default): only
        its done chunks count, in every table and sum; ``chunks_missing`` says how
        many were left out.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> truth = np.zeros((2, 8, 8), np.uint8); truth[:, :4] = 1
    >>> mask = np.zeros_like(truth); mask[:, :3] = 1
    >>> round(evaluate(mask, truth, baseline="none").summary["ni_iou"], 3)
    0.75
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline={baseline!r} is not known; use one of {', '.join(BASELINES)}.")
    volumes = _open_volumes(mask, truth, ni_label, scan, phases, write, allow_incomplete)
    output, done, phases = volumes.output, volumes.done, volumes.phases
    ni_label = volumes.ni_label

    chunks = output.chunks if output is not None else volumes.mask.chunks
    prediction, actual, valid = _binary_volumes(volumes, chunks)
    per_chunk = chunk_counts(prediction, actual)
    if done is not None:
        per_chunk[~done] = 0
    slices = slice_counts(prediction, actual, valid)

    table = _chunk_table(volumes.mask.shape, chunks, per_chunk, done)
    sums = {k: int(per_chunk[..., i].sum()) for i, k in enumerate(_KEYS)}
    summary: dict[str, Any] = {**sums, **metrics.pooled_scores(**sums), "ni_label": ni_label}
    if done is not None:
        summary["chunks_missing"] = int(done.size - np.count_nonzero(done))
    confusion = _phase_confusion(volumes, chunks)
    if confusion is not None:
        names = list(phases)
        kept = done.ravel() if done is not None else slice(None)
        for column, values in metrics.phase_columns(confusion, names).items():
            table[column] = np.asarray(values)[kept]
        summary.update(metrics.pooled_phase_scores(confusion, names))

    if baseline != "none":
        summary["baseline"] = _baseline_scores(baseline, volumes)

    if output is not None and write:
        output.write_counts(per_chunk, _KEYS)
        if confusion is not None:
            output.write_vector("confusion", confusion)
        output.update_attrs(
            evaluation={"truth": volumes.truth.source, **jsonable(summary)},
        )
    if csv is not None:
        csv = Path(csv)
        table.to_csv(csv, index=False)
        slices.to_csv(csv.with_name(csv.stem + "_slices.csv"), index=False)
    return Evaluation(summary=summary, chunks=table, slices=slices)


@dataclass
class _Volumes:
    """What :func:`evaluate` scores: the opened mask, labels, truth and scan."""

    output: vio.OutputGroup | None  # the volseg output group, when the mask is one
    done: np.ndarray | None  # its done chunks, when some are missing
    mask: vio.Scan
    labels: vio.Scan | None  # the label prediction, scored per phase
    truth: vio.Scan
    ni_label: float
    phases: dict[str, int] | None
    scan: Any  # the grey-value scan for the baseline (given, or recorded in the output)


def _open_volumes(
    mask: Any,
    truth: Any,
    ni_label: float | None,
    scan: Any,
    phases: dict[str, int] | None,
    write: bool,
    allow_incomplete: bool,
) -> _Volumes:
    """Open the mask (an output group or a volume), its labels and the truth; check phases."""
    output = _output_or_none(mask, mode="r+" if write else "r")
    labels_volume = None
    done = None
    if output is not None:
        state = vio.check_complete(output, allow_incomplete)
        done = None if state.missing == 0 else state.done
        mask_volume = vio.open_scan(output.mask, role="mask")
        if scan is None:
            scan = output.attrs.get("input")
        recorded = output_phases(output)
        if phases is not None and recorded is not None and set(phases) != set(recorded):
            raise ValueError(
                f"phases={phases!r} do not match the phases {recorded} of output {mask!r}; "
                "leave phases out: an output group is scored with its own."
            )
        phases = recorded if recorded is not None else phases
        if phases is not None and output.labels is not None:
            labels_volume = vio.open_scan(output.labels, role="labels")
    else:
        mask_volume = vio.open_scan(mask, role="mask", allow_bool=True)
        if phases is not None:
            labels_volume = mask_volume
    if phases is not None and labels_volume is None:
        raise ValueError(
            f"phases={phases!r} needs a label prediction; {mask!r} has no labels array."
        )
    truth_volume, ni_label = vio.open_truth(
        truth, mask_volume, ni_label, what="mask", default=(phases or {}).get("ni")
    )
    return _Volumes(output, done, mask_volume, labels_volume, truth_volume, ni_label, phases, scan)


def _binary_volumes(volumes: _Volumes, chunks) -> tuple[da.Array, da.Array, da.Array | None]:
    """Predicted and true Ni on ``chunks``, False outside the done chunks; those chunks."""
    if volumes.labels is not None and volumes.output is None:
        prediction = as_dask_array(volumes.labels.array, chunks) == volumes.phases["ni"]
    else:
        prediction = as_dask_array(volumes.mask.array, chunks) != 0
    actual = as_dask_array(volumes.truth.array, chunks) == volumes.ni_label
    valid = None
    if volumes.done is not None:
        # Chunks that are not done are left out (not scored as background).
        valid = prediction.map_blocks(_done_block, done=volumes.done, dtype=bool)
        prediction, actual = prediction & valid, actual & valid
    return prediction, actual, valid


def _chunk_table(shape, chunks, per_chunk: np.ndarray, done: np.ndarray | None) -> pd.DataFrame:
    """One row per (done) chunk: its bounds, counts, ``iou`` and ``dice``."""
    rows = []
    for index, row in chunk_rows(shape, chunks):
        if done is not None and not done[index]:
            continue
        row.update(dict(zip(_KEYS, per_chunk[index].tolist())))
        rows.append(row)
    return metrics.scores_table(pd.DataFrame(rows))


def _phase_confusion(volumes: _Volumes, chunks) -> np.ndarray | None:
    """Per-chunk confusion matrices of a label prediction, zero outside the done chunks.

    None without labels, or when the truth holds no separate value per phase (logged).
    """
    if volumes.labels is None:
        return None
    matched = vio.truth_phases(volumes.truth, volumes.phases, volumes.ni_label)
    if matched is None:
        log.warning(
            "truth %s holds no separate value per phase (%s); scoring Ni only",
            volumes.truth.source,
            volumes.phases,
        )
        return None
    confusion = chunk_confusion(
        as_dask_array(volumes.labels.array, chunks),
        as_dask_array(volumes.truth.array, chunks),
        list(volumes.phases.values()),
        list(matched.values()),
    )
    if volumes.done is not None:
        confusion[~volumes.done] = 0
    return confusion


def _baseline_scores(baseline: str, volumes: _Volumes) -> dict[str, Any]:
    """The global-threshold ``baseline`` on the scan: its method, threshold and scores."""
    if volumes.scan is None:
        raise ValueError(
            f"baseline={baseline!r} needs the scan: pass scan= (--scan), or baseline='none'."
        )
    scan_volume = vio.open_scan(volumes.scan, role="scan")
    if scan_volume.shape != volumes.mask.shape:
        raise ValueError(
            f"scan {scan_volume.source!r} has shape {scan_volume.shape} but the mask has "
            f"shape {volumes.mask.shape}."
        )
    return {
        "method": baseline,
        **metrics.threshold_baseline(
            scan_volume.array, volumes.truth.array, ni_label=volumes.ni_label, method=baseline
        ),
    }


def _done_block(block: np.ndarray, done: np.ndarray, block_id=None) -> np.ndarray:
    return np.full(block.shape, bool(done[block_id]), dtype=bool)


def _output_or_none(mask: Any, mode: str) -> vio.OutputGroup | None:
    """The volseg output group at ``mask``, or None when ``mask`` is something else."""
    if not isinstance(mask, (str, os.PathLike)):
        return None
    try:
        return vio.open_output(mask, mode=mode)
    except (FileNotFoundError, ValueError):
        return None
