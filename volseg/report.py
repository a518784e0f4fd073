"""Figures: training curves and slice overlays (matplotlib, colour-blind-safe colours)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLOURS", "slice_figure", "training_curves"]

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
COLOURS = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "black": "#000000",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Any, path: str | Path, best_epoch: int | None = None) -> Path:
    """Plot loss and validation Ni IoU/Dice per epoch into a PNG.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``epoch``, ``loss``, ``val_loss``, ``val_ni_iou``, ``val_dice``.
    path : path
        PNG to write.
    best_epoch : int, optional
        Marked with a vertical line.

    Returns
    -------
    pathlib.Path
    """
    plt = _pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(history["epoch"], history["loss"], color=COLOURS["blue"], label="training")
    ax_loss.plot(history["epoch"], history["val_loss"], color=COLOURS["orange"], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(frameon=False)
    ax_score.plot(history["epoch"], history["val_ni_iou"], color=COLOURS["green"], label="Ni IoU")
    ax_score.plot(history["epoch"], history["val_dice"], color=COLOURS["purple"], label="Ni Dice")
    ax_score.set_xlabel("epoch")
    ax_score.set_ylabel("validation score")
    ax_score.legend(frameon=False)
    if best_epoch:
        for axis in (ax_loss, ax_score):
            axis.axvline(best_epoch, color=COLOURS["black"], lw=0.8, ls="--")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    """
    from matplotlib.colors import ListedColormap
    from scipy import ndimage

    plt = _pyplot()
    panels = 3 if truth is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.2))
    low, high = np.percentile(image, [0.5, 99.5])
    axes[0].imshow(image, cmap="gray", vmin=low, vmax=high)
    axes[0].set_title("scan")
    outline = mask.astype(bool) & ~ndimage.binary_erosion(mask.astype(bool))
    axes[1].imshow(image, cmap="gray", vmin=low, vmax=high)
    overlay = np.ma.masked_where(~outline, outline)
    axes[1].imshow(overlay, cmap=ListedColormap([COLOURS["orange"]]), interpolation="none")
    axes[1].set_title("Ni mask outline")
    if truth is not None:
        pred, true = mask.astype(bool), truth.astype(bool)
        classes = np.zeros(pred.shape, np.uint8)
        classes[pred & true] = 1
        classes[pred & ~true] = 2
        classes[~pred & true] = 3
        cmap = ListedColormap(["#FFFFFF", COLOURS["orange"], COLOURS["vermillion"], COLOURS["sky"]])
        axes[2].imshow(classes, cmap=cmap, vmin=0, vmax=3, interpolation="none")
        axes[2].set_title("TP orange / FP vermillion / FN blue")
    for axis in axes:
        axis.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
