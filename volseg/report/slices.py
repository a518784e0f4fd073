"""Slice images: grey values, the mask outline over them, and TP/FP/FN maps against truth.

The outline and the error map are computed here once (:func:`outline`,
:func:`error_classes`) and drawn the same way in the one-slice figure of the demo
and the several-slice figure of the report.

>>> import numpy as np
>>> error_classes(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))
array([[1, 2, 3, 0]], dtype=uint8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .figures import COLOURS, pyplot, save_figure

__all__ = ["ERROR_COLOURS", "error_classes", "outline", "slice_figure", "slices_figure"]

# colours of error_classes 0..3: true negative, TP, FP, FN
ERROR_COLOURS = ["#FFFFFF", COLOURS["orange"], COLOURS["vermillion"], COLOURS["sky"]]


def outline(mask: Any) -> np.ndarray:
    """The pixels of ``mask`` that touch its outside: the mask minus its binary erosion.

    Examples
    --------
    >>> square = np.zeros((5, 5), bool)
    >>> square[1:4, 1:4] = True
    >>> outline(square).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 0, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    mask = np.asarray(mask).astype(bool)
    return mask & ~ndimage.binary_erosion(mask)


def error_classes(mask: Any, truth: Any) -> np.ndarray:
    """Each pixel against the truth: 0 true negative, 1 true positive, 2 FP, 3 FN.

    Examples
    --------
    >>> error_classes([True, True, False, False], [True, False, True, False])
    array([1, 2, 3, 0], dtype=uint8)
    """
    pred, true = np.asarray(mask).astype(bool), np.asarray(truth).astype(bool)
    classes = np.zeros(pred.shape, np.uint8)
    classes[pred & true] = 1
    classes[pred & ~true] = 2
    classes[~pred & true] = 3
    return classes


def _draw_outline(axis: Any, image: Any, mask: Any, low: float, high: float) -> None:
    """Grey values between ``low`` and ``high`` with the mask outline over them in orange."""
    from matplotlib.colors import ListedColormap

    axis.imshow(image, cmap="gray", vmin=low, vmax=high)
    edge = outline(mask)
    axis.imshow(
        np.ma.masked_where(~edge, edge),
        cmap=ListedColormap([COLOURS["orange"]]),
        interpolation="none",
    )


def _draw_errors(axis: Any, mask: Any, truth: Any) -> None:
    """The TP/FP/FN map of the mask against the truth, with its legend as title."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(ERROR_COLOURS)
    axis.imshow(error_classes(mask, truth), cmap=cmap, vmin=0, vmax=3, interpolation="none")
    axis.set_title("TP orange / FP vermillion / FN blue")


def slice_figure(
    image: np.ndarray,
    mask: np.ndarray,
    path: str | Path,
    truth: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """One slice: grey values, the mask outline over them, and (with truth) the errors.

    False positives are drawn in vermillion, false negatives in sky blue, true
    positives in orange.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> image = np.random.default_rng(0).random((32, 32))
    >>> mask = image > 0.5
    >>> slice_figure(image, mask, getfixture("tmp_path") / "s.png", truth=mask).suffix
    '.png'
    """
    plt = pyplot()
    panels = 3 if truth is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.2))
    low, high = np.percentile(image, [0.5, 99.5])
    axes[0].imshow(image, cmap="gray", vmin=low, vmax=high)
    axes[0].set_title("scan")
    _draw_outline(axes[1], image, mask, low, high)
    axes[1].set_title("Ni mask outline")
    if truth is not None:
        _draw_errors(axes[2], mask, truth)
    for axis in axes:
        axis.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slices_figure(
    image: Any, mask: Any, path: str | Path, truth: Any = None, n_slices: int = 3
) -> Path:
    """Evenly spaced z-slices: mask outline over the grey values, and the errors with truth.

    Examples
    --------
    >>> image = np.random.default_rng(0).random((6, 32, 32))
    >>> path = slices_figure(image, image > 0.5, getfixture("tmp_path") / "s.png", n_slices=2)
    >>> path.is_file()
    True
    """
    plt = pyplot()
    depth = mask.shape[0]
    zs = sorted({int(z) for z in np.linspace(0, depth - 1, min(n_slices, depth) + 2)[1:-1]}) or [0]
    columns = 2 if truth is not None else 1
    fig, axes = plt.subplots(
        len(zs), columns, figsize=(4.2 * columns, 4.0 * len(zs)), squeeze=False
    )
    for row, z in enumerate(zs):
        plane = np.asarray(image[z], dtype=np.float32)
        pred = np.asarray(mask[z]).astype(bool)
        low, high = np.percentile(plane, [0.5, 99.5])
        _draw_outline(axes[row, 0], plane, pred, low, high)
        axes[row, 0].set_title(f"z = {z}: Ni outline")
        if truth is not None:
            _draw_errors(axes[row, 1], pred, np.asarray(truth[z]))
        for axis in axes[row]:
            axis.set_axis_off()
    return save_figure(fig, Path(path))
