"""The report's plots: training curves, per-chunk heat maps, profiles, REV curves, histograms.

matplotlib (colour-blind-safe Okabe-Ito colours, cividis maps) is imported on first
use. The slice images are in :mod:`volseg.report.slices`, the page in
:mod:`volseg.report.page`.

>>> COLOURS["orange"]
'#E69F00'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLOURS",
    "chunk_heatmap",
    "fraction_profiles",
    "phase_histograms",
    "pyplot",
    "rev_figure",
    "save_figure",
    "training_curves",
]

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


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is heavy).

    Examples
    --------
    >>> plt = pyplot()
    >>> fig, axis = plt.subplots()
    >>> plt.close(fig)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Any, path: str | Path, best_epoch: int | None = None) -> Path:
    """Plot loss and validation Ni IoU/Dice per epoch into a PNG.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``epoch``, ``loss``, ``val_loss``, ``val_ni_iou`` and any of
        ``val_dice``, ``val_mean_iou`` and ``val_iou_<phase>`` (multi-class).
    path : path
        PNG to write.
    best_epoch : int, optional
        Marked with a vertical line.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import pandas as pd
    >>> history = pd.DataFrame({"epoch": [1, 2], "loss": [0.9, 0.5], "val_loss": [0.8, 0.6],
    ...                         "val_ni_iou": [0.6, 0.8], "val_dice": [0.7, 0.9]})
    >>> training_curves(history, getfixture("tmp_path") / "t.png", best_epoch=2).is_file()
    True
    """
    plt = pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(history["epoch"], history["loss"], color=COLOURS["blue"], label="training")
    ax_loss.plot(history["epoch"], history["val_loss"], color=COLOURS["orange"], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(frameon=False)
    curves = [("val_ni_iou", "Ni IoU"), ("val_dice", "Ni Dice"), ("val_mean_iou", "mean IoU")]
    curves += [(c, f"{c[8:]} IoU") for c in history.columns if c.startswith("val_iou_")]
    colours = [COLOURS[c] for c in ("green", "purple", "black", "sky", "vermillion", "orange")]
    for (column, label), colour in zip([c for c in curves if c[0] in history], colours):
        ax_score.plot(history["epoch"], history[column], color=colour, label=label)
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


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to the PNG ``path`` at 100 dpi and close it.

    Examples
    --------
    >>> fig, axis = pyplot().subplots()
    >>> save_figure(fig, getfixture("tmp_path") / "empty.png").suffix
    '.png'
    """
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def chunk_heatmap(stats: Any, column: str, path: str | Path, label: str) -> Path:
    """Per-chunk values as a heat map: rows are z-chunks, columns the (y, x) chunks.

    Examples
    --------
    >>> import pandas as pd
    >>> stats = pd.DataFrame({"chunk_z": [0, 0, 1, 1], "chunk_y": [0, 0, 0, 0],
    ...                       "chunk_x": [0, 1, 0, 1], "iou": [0.9, 0.8, 0.95, 0.7]})
    >>> chunk_heatmap(stats, "iou", getfixture("tmp_path") / "h.png", "Ni IoU").is_file()
    True
    """
    plt = pyplot()
    nz = int(stats["chunk_z"].max()) + 1
    ny = int(stats["chunk_y"].max()) + 1
    nx = int(stats["chunk_x"].max()) + 1
    grid = np.full((nz, ny * nx), np.nan)
    for _, row in stats.iterrows():
        grid[int(row.chunk_z), int(row.chunk_y) * nx + int(row.chunk_x)] = row[column]
    fig, axis = plt.subplots(figsize=(max(4, 0.25 * ny * nx + 2), max(2.5, 0.25 * nz + 1.5)))
    image = axis.imshow(grid, cmap="cividis", aspect="auto", interpolation="nearest")
    axis.set_xlabel("chunk (y, x) in row-major order")
    axis.set_ylabel("z chunk")
    fig.colorbar(image, ax=axis, label=label)
    axis.set_title(f"{label} per chunk")
    return save_figure(fig, Path(path))


def fraction_profiles(
    profiles: dict[str, np.ndarray],
    path: str | Path,
    voxel_size: tuple[float, float, float] | None = None,
    unit: str | None = None,
) -> Path:
    """Ni fraction along z, y and x (mean over the two other axes).

    Positions are voxel indices, or physical positions (voxel centres, in ``unit``)
    with ``voxel_size``.

    Examples
    --------
    >>> profiles = {axis: np.linspace(0.2, 0.4, 8) for axis in "zyx"}
    >>> out = getfixture("tmp_path") / "p.png"
    >>> fraction_profiles(profiles, out, (0.5, 0.02, 0.02), "micrometer").is_file()
    True
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    for i, (axis, (name, values)) in enumerate(zip(axes, profiles.items())):
        position = np.arange(len(values), dtype=np.float64)
        label = f"{name} (voxel)"
        if voxel_size is not None:
            position = (position + 0.5) * float(voxel_size[i])
            label = f"{name} ({unit or 'unit of the voxel size'})"
        axis.plot(position, values, color=COLOURS["blue"])
        axis.set_xlabel(label)
        axis.set_ylabel("Ni fraction")
        axis.set_ylim(0, 1)
    return save_figure(fig, Path(path))


def rev_figure(curve: dict[str, Any], path: str | Path) -> Path:
    """The representative-volume curves of :func:`volseg.microstructure.rev.rev_curve`.

    Left: phase fractions of the centred sub-volumes against their volume, with
    the mean +/- one standard deviation over chunks at the chunk volume; right:
    the TPB density (three phases) or the specific surface area (one phase).

    Examples
    --------
    >>> from volseg.microstructure.rev import rev_curve
    >>> labels = np.random.default_rng(0).integers(0, 3, (8, 8, 8)).astype(np.uint8)
    >>> curve = rev_curve(labels, shares=(1 / 8, 1.0), chunks=(4, 4, 4), max_radius=1)
    >>> rev_figure(curve, getfixture("tmp_path") / "rev.png").is_file()
    True
    """
    plt = pyplot()
    subvolumes = curve["subvolumes"]
    volumes = np.array([s["volume"] for s in subvolumes])
    unit = curve.get("unit") or "voxel"
    chunk = curve["per_chunk"][0]
    chunk_volume = volumes[-1] / subvolumes[-1]["share"] / max(1, len(curve["per_chunk"]))
    colours = list(COLOURS.values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for colour, name in zip(colours, chunk["fractions"]):
        left.plot(
            volumes, [s["fractions"][name] for s in subvolumes], "o-", color=colour, label=name
        )
        per_chunk = [c["fractions"][name] for c in curve["per_chunk"]]
        left.errorbar(
            [chunk_volume], [np.mean(per_chunk)], yerr=[np.std(per_chunk)], fmt="s", color=colour
        )
    left.set_xscale("log")
    left.set_xlabel(f"sub-volume ({unit}³)")
    left.set_ylabel("volume fraction")
    left.legend(fontsize="small")
    if "tpb_density" in subvolumes[0]:
        right.plot(volumes, [s["tpb_density"] for s in subvolumes], "o-", color=colours[0])
        per_chunk = [c["tpb_density"] for c in curve["per_chunk"]]
        right.errorbar(
            [chunk_volume],
            [np.mean(per_chunk)],
            yerr=[np.std(per_chunk)],
            fmt="s",
            color=colours[0],
        )
        right.set_ylabel(f"TPB density ({unit}/{unit}³)")
    else:
        right.plot(
            volumes,
            [s["specific_surface_area"]["phase"] for s in subvolumes],
            "o-",
            color=colours[0],
        )
        right.set_ylabel(f"specific surface ({unit}⁻¹)")
    right.set_xscale("log")
    right.set_xlabel(f"sub-volume ({unit}³); squares: chunks, mean ± sd")
    return save_figure(fig, Path(path))


def phase_histograms(histograms: dict[str, np.ndarray], edges: np.ndarray, path) -> Path:
    """Grey-value histograms per phase (predicted, and true where truth exists).

    Examples
    --------
    >>> edges = np.linspace(0, 1, 11)
    >>> counts = {"predicted Ni": np.arange(10), "predicted other": np.arange(10)[::-1]}
    >>> phase_histograms(counts, edges, getfixture("tmp_path") / "h.png").is_file()
    True
    """
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.2))
    centres = (edges[:-1] + edges[1:]) / 2
    palette = [
        COLOURS["blue"],
        COLOURS["orange"],
        COLOURS["green"],
        COLOURS["purple"],
        COLOURS["vermillion"],
    ]
    for colour, (name, counts) in zip(palette, histograms.items()):
        axis.plot(centres, counts, color=colour, label=name)
    axis.set_xlabel("grey value")
    axis.set_ylabel("voxels (sampled slices)")
    axis.legend(frameon=False)
    return save_figure(fig, Path(path))
