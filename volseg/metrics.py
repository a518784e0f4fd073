"""Confusion counts and overlap scores.

Counts, not ratios, are what volseg stores: they add up across chunks, so the
pooled Ni IoU of a volume is ``sum(tp) / sum(tp + fp + fn)`` over its chunks and
per-chunk IoU comes from the same numbers. IoU and Dice here are for the Ni
(foreground) class alone; :func:`two_class_mean_iou` is the average of the Ni
and background IoU that some papers report, and is always labelled as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .conventions import as_dask_array

__all__ = [
    "confusion_counts",
    "class_index",
    "confusion_matrix",
    "phase_columns",
    "phase_scores",
    "pooled_phase_scores",
    "dice",
    "iou",
    "pooled_scores",
    "scores_table",
    "threshold_baseline",
    "two_class_mean_iou",
]


def confusion_counts(prediction: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """True/false positives and negatives of two binary arrays of the same shape.

    Examples
    --------
    >>> confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    {'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
    """
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape.")
    n = prediction.size
    tp = int(np.count_nonzero(prediction & truth))
    n_pred = int(np.count_nonzero(prediction))
    n_true = int(np.count_nonzero(truth))
    fp = n_pred - tp
    fn = n_true - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn}


def class_index(labels: np.ndarray, values: list) -> np.ndarray:
    """int16 class index ``i`` where ``labels == values[i]``, -1 elsewhere (unlabelled).

    Examples
    --------
    >>> class_index(np.array([0, 128, 255, 7]), [0, 128, 255]).tolist()
    [0, 1, 2, -1]
    """
    index = np.full(np.shape(labels), -1, dtype=np.int16)
    for i, value in enumerate(values):
        index[labels == value] = i
    return index


def confusion_matrix(
    truth: np.ndarray, predicted: np.ndarray, values: list, predicted_values: list | None = None
) -> np.ndarray:
    """Multi-class confusion counts: ``C[i, j]`` = voxels of true phase ``i`` predicted ``j``.

    Parameters
    ----------
    truth : numpy.ndarray
        Label volume; phase ``i`` is the value ``values[i]``. Voxels with any other
        value (unlabelled) are not counted.
    predicted : numpy.ndarray
        Predicted class indices ``0 .. C-1`` (same shape); other values are not counted.
    values : list
        The truth's label value of each class.
    predicted_values : list, optional
        ``predicted`` holds label values, not class indices: class ``i`` is
        ``predicted_values[i]``.

    Returns
    -------
    numpy.ndarray
        int64 ``(C, C)``; counts add up across chunks.

    Examples
    --------
    >>> truth = np.array([0, 1, 2, 2, 9])
    >>> confusion_matrix(truth, np.array([0, 2, 2, 1, 0]), [0, 1, 2]).tolist()
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    >>> confusion_matrix(truth, np.array([10, 30, 30, 20, 10]), [0, 1, 2], [10, 20, 30]).tolist()
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    """
    n = len(values)
    # Small integer types: a block of many million voxels stays a few bytes per voxel.
    true_class = class_index(truth, values)
    predicted = np.asarray(predicted)
    if predicted_values is not None:
        predicted = class_index(predicted, predicted_values)
    valid = (true_class >= 0) & (predicted >= 0) & (predicted < n)
    flat = true_class[valid].astype(np.int32) * n + predicted[valid].astype(np.int32)
    return np.bincount(flat, minlength=n * n).reshape(n, n).astype(np.int64)


def phase_scores(confusion: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-phase IoU and Dice, their means, and the accuracy from a confusion matrix.

    Examples
    --------
    >>> scores = phase_scores(np.array([[3, 1], [0, 4]]), ["pore", "ni"])
    >>> scores["iou"], round(scores["mean_iou"], 3)
    ({'pore': 0.75, 'ni': 0.8}, 0.775)
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    ious = np.atleast_1d(iou(tp, fp, fn))
    dices = np.atleast_1d(dice(tp, fp, fn))
    total = int(confusion.sum())
    return {
        "iou": {name: float(v) for name, v in zip(names, ious)},
        "dice": {name: float(v) for name, v in zip(names, dices)},
        "mean_iou": float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan"),
        "accuracy": float(tp.sum() / total) if total else float("nan"),
    }


def phase_columns(confusions: np.ndarray, names: list[str]) -> dict[str, list[float]]:
    """Per-chunk ``iou_<phase>`` and ``mean_iou`` columns from per-chunk confusion matrices.

    Parameters
    ----------
    confusions : numpy.ndarray
        ``(..., C, C)``: one confusion matrix per chunk (leading axes in chunk order).
    names : list of str
        The phase of each class.

    Examples
    --------
    >>> confusions = np.array([[[3, 1], [0, 4]], [[2, 0], [0, 2]]])
    >>> phase_columns(confusions, ["pore", "ni"])
    {'iou_pore': [0.75, 1.0], 'iou_ni': [0.8, 1.0], 'mean_iou': [0.775, 1.0]}
    """
    n = len(names)
    scores = [phase_scores(m, names) for m in np.asarray(confusions).reshape(-1, n, n)]
    columns = {f"iou_{name}": [score["iou"][name] for score in scores] for name in names}
    columns["mean_iou"] = [score["mean_iou"] for score in scores]
    return columns


def pooled_phase_scores(confusions: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Pooled per-phase scores of per-chunk confusion matrices.

    The summed ``confusion`` matrix and its ``phase_iou``, ``mean_iou`` and ``accuracy``.

    Examples
    --------
    >>> confusions = np.array([[[3, 1], [0, 4]], [[2, 0], [0, 2]]])
    >>> pooled = pooled_phase_scores(confusions, ["pore", "ni"])
    >>> pooled["confusion"], pooled["phase_iou"]
    ([[5, 1], [0, 6]], {'pore': 0.8333333333333334, 'ni': 0.8571428571428571})
    """
    n = len(names)
    pooled = np.asarray(confusions).reshape(-1, n, n).sum(axis=0)
    scores = phase_scores(pooled, names)
    return {
        "phase_iou": scores["iou"],
        "mean_iou": scores["mean_iou"],
        "accuracy": scores["accuracy"],
        "confusion": pooled.tolist(),
    }


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out if out.ndim else float(out)


def iou(tp, fp, fn):
    """Intersection over union of the foreground: ``tp / (tp + fp + fn)`` (NaN if 0/0).

    Examples
    --------
    >>> iou(8, 1, 1)
    0.8
    """
    return _ratio(tp, np.add(np.add(tp, fp), fn))


def dice(tp, fp, fn):
    """Dice coefficient of the foreground: ``2 tp / (2 tp + fp + fn)`` (NaN if 0/0).

    Examples
    --------
    >>> round(dice(8, 1, 1), 4)
    0.8889
    """
    return _ratio(np.multiply(2, tp), np.add(np.add(np.multiply(2, tp), fp), fn))


def two_class_mean_iou(tp, fp, fn, tn):
    """Mean of the Ni IoU and the background IoU (a two-class mean, not the Ni IoU).

    Examples
    --------
    >>> two_class_mean_iou(8, 1, 1, 10)
    0.8166666666666667
    """
    mean = (np.asarray(iou(tp, fp, fn)) + np.asarray(iou(tn, fn, fp))) / 2
    return float(mean) if mean.ndim == 0 else mean


def pooled_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Pooled scores from summed counts.

    Parameters
    ----------
    tp, fp, fn, tn : int
        Confusion counts of the Ni class, summed over chunks (or slices).

    Returns
    -------
    dict
        ``ni_iou``, ``ni_dice``, ``precision``, ``recall`` and
        ``two_class_mean_iou`` (labelled: it averages Ni and background).

    Examples
    --------
    >>> scores = pooled_scores(tp=8, fp=2, fn=0, tn=10)
    >>> scores["ni_iou"], scores["precision"], scores["recall"]
    (0.8, 0.8, 1.0)
    """
    return {
        "ni_iou": float(iou(tp, fp, fn)),
        "ni_dice": float(dice(tp, fp, fn)),
        "precision": float(_ratio(tp, tp + fp)),
        "recall": float(_ratio(tp, tp + fn)),
        "two_class_mean_iou": float(two_class_mean_iou(tp, fp, fn, tn)),
    }


def scores_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Add ``iou`` and ``dice`` columns to a table with ``tp``, ``fp``, ``fn`` columns.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per chunk or slice with count columns ``tp``, ``fp`` and ``fn``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``iou`` and ``dice`` added (NaN where a row has no Ni at all).

    Examples
    --------
    >>> table = scores_table(pd.DataFrame({"tp": [8, 0], "fp": [1, 0], "fn": [1, 0]}))
    >>> table["iou"].round(3).tolist(), table["dice"].round(3).tolist()
    ([0.8, nan], [0.889, nan])
    """
    table = counts.copy()
    table["iou"] = iou(table["tp"].to_numpy(), table["fp"].to_numpy(), table["fn"].to_numpy())
    table["dice"] = dice(table["tp"].to_numpy(), table["fp"].to_numpy(), table["fn"].to_numpy())
    return table


def threshold_baseline(
    image: Any,
    truth: Any,
    ni_label: float = 1,
    method: str = "multiotsu",
    sample_step: int = 4,
) -> dict[str, float]:
    """Ni IoU of a global threshold, the baseline a network has to beat.

    The threshold comes from a sample of the image (every ``sample_step``-th
    slice): ``multiotsu`` takes the upper of three-class Otsu thresholds (pore /
    YSZ / Ni), ``otsu`` the two-class one. Counts are then accumulated chunk by
    chunk with dask, so the volume is never loaded whole.

    Parameters
    ----------
    image, truth : array-like (numpy, dask or zarr)
        Grey values and labels of the same shape.
    ni_label : number
        Value of Ni in ``truth``.
    method : {"multiotsu", "otsu"}
    sample_step : int
        Use every n-th slice to find the threshold.

    Returns
    -------
    dict
        ``threshold`` and the scores of :func:`pooled_scores`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.integers(0, 3, (4, 32, 32))
    >>> image = truth * 100.0 + rng.normal(0, 5, truth.shape)
    >>> round(threshold_baseline(image, truth, ni_label=2)["ni_iou"], 3)
    1.0
    """
    import dask.array as da
    from skimage.filters import threshold_multiotsu, threshold_otsu

    if method not in ("multiotsu", "otsu"):
        raise ValueError(f"method={method!r} is not known; use 'multiotsu' or 'otsu'.")
    image, truth = as_dask_array(image), as_dask_array(truth)
    if image.shape != truth.shape:
        raise ValueError(f"image {image.shape} and truth {truth.shape} differ in shape.")
    sample = np.asarray(image[::sample_step]).astype(np.float64)
    if method == "multiotsu":
        threshold = float(threshold_multiotsu(sample, classes=3)[1])
    else:
        threshold = float(threshold_otsu(sample))
    prediction = image > threshold
    actual = truth == ni_label
    tp, n_pred, n_true = da.compute(
        da.count_nonzero(prediction & actual),
        da.count_nonzero(prediction),
        da.count_nonzero(actual),
    )
    tp, n_pred, n_true = int(tp), int(n_pred), int(n_true)
    fp, fn = n_pred - tp, n_true - tp
    tn = int(np.prod(image.shape)) - tp - fp - fn
    return {"threshold": threshold, **pooled_scores(tp, fp, fn, tn)}
