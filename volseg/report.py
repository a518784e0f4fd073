"""Figures and the HTML report (matplotlib; colour-blind-safe Okabe-Ito colours, cividis maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLOURS",
    "chunk_heatmap",
    "fraction_profiles",
    "make_report",
    "phase_histograms",
    "rev_figure",
    "slice_figure",
    "slices_figure",
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
    plt = _pyplot()
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


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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
    from matplotlib.colors import ListedColormap
    from scipy import ndimage

    plt = _pyplot()
    depth = mask.shape[0]
    zs = sorted({int(z) for z in np.linspace(0, depth - 1, min(n_slices, depth) + 2)[1:-1]}) or [0]
    columns = 2 if truth is not None else 1
    fig, axes = plt.subplots(
        len(zs), columns, figsize=(4.2 * columns, 4.0 * len(zs)), squeeze=False
    )
    error_cmap = ListedColormap(
        ["#FFFFFF", COLOURS["orange"], COLOURS["vermillion"], COLOURS["sky"]]
    )
    for row, z in enumerate(zs):
        plane = np.asarray(image[z], dtype=np.float32)
        pred = np.asarray(mask[z]).astype(bool)
        low, high = np.percentile(plane, [0.5, 99.5])
        axis = axes[row, 0]
        axis.imshow(plane, cmap="gray", vmin=low, vmax=high)
        outline = pred & ~ndimage.binary_erosion(pred)
        axis.imshow(
            np.ma.masked_where(~outline, outline),
            cmap=ListedColormap([COLOURS["orange"]]),
            interpolation="none",
        )
        axis.set_title(f"z = {z}: Ni outline")
        if truth is not None:
            true = np.asarray(truth[z]).astype(bool)
            classes = np.zeros(pred.shape, np.uint8)
            classes[pred & true], classes[pred & ~true], classes[~pred & true] = 1, 2, 3
            axes[row, 1].imshow(classes, cmap=error_cmap, vmin=0, vmax=3, interpolation="none")
            axes[row, 1].set_title("TP orange / FP vermillion / FN blue")
        for axis in axes[row]:
            axis.set_axis_off()
    return _save(fig, Path(path))


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
    plt = _pyplot()
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
    return _save(fig, Path(path))


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
    plt = _pyplot()
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
    return _save(fig, Path(path))


def rev_figure(curve: dict[str, Any], path: str | Path) -> Path:
    """The representative-volume curves of :func:`volseg.rev.rev_curve`.

    Left: phase fractions of the centred sub-volumes against their volume, with
    the mean +/- one standard deviation over chunks at the chunk volume; right:
    the TPB density (three phases) or the specific surface area (one phase).

    Examples
    --------
    >>> from volseg.rev import rev_curve
    >>> labels = np.random.default_rng(0).integers(0, 3, (8, 8, 8)).astype(np.uint8)
    >>> curve = rev_curve(labels, shares=(1 / 8, 1.0), chunks=(4, 4, 4), max_radius=1)
    >>> rev_figure(curve, getfixture("tmp_path") / "rev.png").is_file()
    True
    """
    plt = _pyplot()
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
    return _save(fig, Path(path))


def phase_histograms(histograms: dict[str, np.ndarray], edges: np.ndarray, path) -> Path:
    """Grey-value histograms per phase (predicted, and true where truth exists).

    Examples
    --------
    >>> edges = np.linspace(0, 1, 11)
    >>> counts = {"predicted Ni": np.arange(10), "predicted other": np.arange(10)[::-1]}
    >>> phase_histograms(counts, edges, getfixture("tmp_path") / "h.png").is_file()
    True
    """
    plt = _pyplot()
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
    return _save(fig, Path(path))


def make_report(
    out: str | Path,
    truth: Any = None,
    html: str | Path | None = None,
    png_dir: str | Path | None = None,
    scan: Any = None,
    ni_label: float | None = None,
    sample_step: int = 4,
    voxel_size: tuple[float, float, float] | None = None,
    measures: bool = True,
    overwrite: bool = False,
    allow_incomplete: bool = False,
    rev: bool = True,
    tortuosity: bool | tuple[str, ...] = False,
) -> Path:
    """A self-contained HTML report (figures embedded) and its PNG files for an output.

    Parameters
    ----------
    out : path
        A volseg output group.
    truth : path or array, optional
        Labels, for the discrepancy maps and per-chunk IoU.
    html : path, optional
        HTML file to write (default ``<out>_report.html`` beside the output).
    png_dir : path, optional
        Folder for the PNG files (default ``<out>_report/``).
    scan : path or array, optional
        The grey-value scan (default: the input recorded in the output).
    ni_label : number, optional
        Value of Ni in ``truth`` (default: recorded in its attrs, else 1).
    sample_step : int
        Histograms use every n-th slice.
    voxel_size : tuple of 3 float, optional
        Voxel side (z, y, x); default the one recorded in the output (from the
        scan's OME-Zarr metadata), else voxel units. Profiles and microstructure
        measures are given in its unit.
    measures : bool
        Add the microstructure table (:func:`volseg.measure`, or
        :func:`volseg.measure_phases` with the TPB density for a three-phase output),
        computed chunk by chunk.
    overwrite : bool
        Replace an existing HTML file (refused by default).
    allow_incomplete : bool
        Report on an output whose run has not finished (refused by default): only its
        done chunks count, and the page says how many are missing.
        computed chunk by chunk; with saved probabilities every number gets
        an error bar (:func:`volseg.uncertainty.measure_with_errors`), and a
        three-phase output its active TPB (:data:`volseg.tpb.DEFAULT_FACES`).
    rev : bool
        Add the representative-volume figure (:func:`volseg.rev.rev_curve`).
    tortuosity : bool or tuple of {"z", "y", "x"}
        Add the tortuosity factor of each phase along these axes (True: all);
        one out-of-core solve per phase, axis and error-bar variant.

    Returns
    -------
    pathlib.Path
        The HTML file.

    Examples
    --------
    >>> import volseg
    >>> from volseg.model import build_unet, default_config, save_checkpoint
    >>> tmp = getfixture("tmp_path")
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      normalisation={"low": 0, "high": 60000})
    >>> model = save_checkpoint(build_unet(cfg), cfg, tmp / "m.pt")
    >>> _ = volseg.synth.write_anode(tmp / "scan.zarr", shape=(4, 64, 64), seed=1,
    ...                            chunks=(4, 64, 64))
    >>> res = volseg.segment(tmp / "scan.zarr" / "image", model, out=tmp / "out.zarr",
    ...                      tile=64, device="cpu", progress=False)
    >>> page = make_report(tmp / "out.zarr", truth=tmp / "scan.zarr" / "labels")
    >>> "Microstructure" in page.read_text()
    True
    """
    import base64
    import html as html_lib

    import dask.array as da

    from . import io as vio
    from .evaluation import evaluate
    from .guards import check_new_file
    from .inference import open_result
    from .training import history_paths

    result = open_result(out, allow_incomplete=allow_incomplete)
    record = dict(result.group.attrs.get("volseg", {}))
    base = Path(str(out).rstrip("/"))
    html = Path(html) if html else base.with_name(base.name.replace(".zarr", "") + "_report.html")
    check_new_file(html, overwrite=overwrite, what="report page")
    png_dir = (
        Path(png_dir) if png_dir else base.with_name(base.name.replace(".zarr", "") + "_report")
    )
    png_dir.mkdir(parents=True, exist_ok=True)
    scan_source = scan if scan is not None else record.get("input")
    image = vio.open_scan(scan_source, role="scan").array
    truth_array = None
    figures: list[tuple[str, Path]] = []
    summary = dict(result.summary)
    stats = result.stats
    if truth is not None:
        evaluation = evaluate(
            out,
            truth,
            ni_label,
            baseline="multiotsu",
            scan=scan_source,
            allow_incomplete=allow_incomplete,
        )
        summary.update({k: v for k, v in evaluation.summary.items() if k != "baseline"})
        if "baseline" in evaluation.summary:
            summary["multiotsu_ni_iou"] = evaluation.summary["baseline"]["ni_iou"]
        stats = open_result(out, allow_incomplete=allow_incomplete).stats
        truth_volume = vio.open_scan(truth, role="truth", allow_bool=True)
        ni_label = evaluation.summary["ni_label"]
        truth_array = (
            da.from_array(truth_volume.array)
            if not isinstance(truth_volume.array, da.Array)
            else truth_volume.array
        ) == ni_label

    mask = da.from_array(result.mask, chunks=result.mask.chunks)
    figures.append(
        (
            "Sample slices",
            slices_figure(image, result.mask, png_dir / "slices.png", truth=truth_array),
        )
    )
    if "iou" in stats:
        figures.append(
            ("Ni IoU per chunk", chunk_heatmap(stats, "iou", png_dir / "chunk_iou.png", "Ni IoU"))
        )
    figures.append(
        (
            "Ni fraction per chunk",
            chunk_heatmap(stats, "ni_fraction", png_dir / "chunk_ni_fraction.png", "Ni fraction"),
        )
    )
    figures.append(
        (
            "Uncertain fraction per chunk",
            chunk_heatmap(
                stats, "uncertain_fraction", png_dir / "chunk_uncertain.png", "uncertain fraction"
            ),
        )
    )
    profiles = dict(
        zip(
            "zyx",
            da.compute(*(mask.mean(axis=tuple(a for a in range(3) if a != k)) for k in range(3))),
        )
    )
    recorded = vio.recorded_voxel_size(vio.open_scan(result.mask, role="mask"))
    unit = None
    if voxel_size is None and recorded is not None:
        voxel_size, unit = recorded
    figures.append(
        (
            "Ni fraction along each axis",
            fraction_profiles(profiles, png_dir / "profiles.png", voxel_size, unit),
        )
    )
    physical = (
        _microstructure_rows(out, result, voxel_size, unit, allow_incomplete, tortuosity)
        if measures
        else ""
    )
    if measures and rev:
        from .rev import rev_curve

        has_labels = result.group is not None and "labels" in result.group
        curve = rev_curve(
            result.group["labels"] if has_labels else result.mask,
            voxel_size,
            label=None if has_labels else 1,
            phases=result.group.attrs.get("volseg", {}).get("parameters", {}).get("phases")
            if has_labels
            else None,
        )
        figures.append(("Representative volume", rev_figure(curve, png_dir / "rev.png")))
    sample = np.asarray(image[::sample_step], dtype=np.float64)
    predicted = np.asarray(result.mask[::sample_step]).astype(bool)
    edges = np.linspace(*np.percentile(sample, [0.1, 99.9]), 129)
    histograms = {
        "predicted Ni": np.histogram(sample[predicted], edges)[0],
        "predicted other": np.histogram(sample[~predicted], edges)[0],
    }
    if truth is not None:
        labels = np.asarray(truth_volume.array[::sample_step])
        phases = dict(getattr(truth_volume.array, "attrs", {}) or {}).get("phases") or {}
        names = {value: name for name, value in phases.items()}
        for value in np.unique(labels)[:5]:
            name = "true Ni" if value == ni_label else f"true {names.get(int(value), value)}"
            histograms[name] = np.histogram(sample[labels == value], edges)[0]
    figures.append(
        (
            "Grey-value histograms per phase",
            phase_histograms(histograms, edges, png_dir / "histograms.png"),
        )
    )
    model_path = record.get("model", {}).get("path")
    if model_path:
        csv, _ = history_paths(model_path)
        if csv.is_file():
            import pandas as pd

            history = pd.read_csv(csv)
            monitor = "val_mean_iou" if "val_mean_iou" in history else "val_ni_iou"
            figures.append(
                (
                    "Training curves",
                    training_curves(
                        history,
                        png_dir / "training.png",
                        best_epoch=int(history.loc[history[monitor].idxmax(), "epoch"]),
                    ),
                )
            )

    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update({f"{key} {name}": v for name, v in value.items()})
        elif not isinstance(value, list):
            flat[key] = value
    rows = "".join(
        f"<tr><th>{html_lib.escape(str(k))}</th><td>{html_lib.escape(_fmt(v))}</td></tr>"
        for k, v in flat.items()
    )
    worst = ""
    if "iou" in stats:
        table = stats.sort_values("iou").head(10)
        worst = "<h2>Chunks with the lowest Ni IoU</h2>" + table.to_html(
            index=False, float_format=lambda v: f"{v:.4f}"
        )
    blocks = []
    for title, path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        blocks.append(
            f"<h2>{html_lib.escape(title)}</h2>"
            f'<img alt="{html_lib.escape(title)}" src="data:image/png;base64,{data}">'
        )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>volseg report: {html_lib.escape(base.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "img{max-width:100%}table{border-collapse:collapse}"
        "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style>"
        f"</head><body><h1>volseg report: {html_lib.escape(base.name)}</h1>"
        f"<p>scan: {html_lib.escape(str(scan_source))}; model: "
        f"{html_lib.escape(str(model_path))}; status: {html_lib.escape(str(record.get('status')))}"
        "</p><p>IoU and Dice are for the Ni class alone; the two-class mean IoU averages Ni "
        f"and background.</p><table>{rows}</table>{physical}{worst}{''.join(blocks)}"
        "</body></html>"
    )
    html.write_text(page, encoding="utf-8")
    return html


def _microstructure_rows(
    out: Any,
    result: Any,
    voxel_size,
    unit: str | None,
    allow_incomplete: bool = False,
    tortuosity: Any = False,
) -> str:
    """The microstructure table of the report, every quantity with its physical unit."""
    import html as html_lib

    from .microstructure import measure, measure_phases
    from .tpb import DEFAULT_FACES
    from .uncertainty import measure_with_errors

    length = unit or ("unit" if voxel_size is not None else "voxel")
    has_labels = result.group is not None and "labels" in result.group
    options = {"tortuosity": tortuosity, "allow_incomplete": allow_incomplete}
    if has_labels:
        options["faces"] = DEFAULT_FACES
    if result.prob is not None and (has_labels or result.prob.ndim == 3):
        values = measure_with_errors(out, voxel_size, **options)
    elif has_labels:
        values = measure_phases(out, voxel_size=voxel_size, **options)
    else:
        values = measure(out, voxel_size=voxel_size, **options)
    errors = values.get("errors") or {}
    phases = values["phases"] if has_labels else {"Ni": values}
    phase_errors = errors.get("phases", {}) if has_labels else {"Ni": errors}

    def shown(value: Any, error: Any) -> str:
        text = _fmt(value)
        return text if error is None else f"{text} ± {error:.2g}"

    rows = [("voxel size (z, y, x)", f"{values['voxel_size']} {length}")]
    rows.append(("total volume", f"{_fmt(values['total_volume'])} {length}³"))
    for name, m in phases.items():
        e = phase_errors.get(name) or {}
        rows += [
            (f"{name} volume fraction", shown(m["volume_fraction"], e.get("volume_fraction"))),
            (
                f"{name} specific surface area (isotropic)",
                shown(
                    m["specific_surface_area_isotropic"], e.get("specific_surface_area_isotropic")
                )
                + f" {length}⁻¹",
            ),
            (f"{name} mean thickness", f"{_fmt(m['thickness_mean'])} {length}"),
            (f"{name} largest component fraction", _fmt(m["largest_component_fraction"])),
            (f"{name} percolates (z, y, x)", str(m["percolates"])),
        ]
        for axis, tau in (m.get("tortuosity") or {}).items():
            error = (e.get("tortuosity") or {}).get(axis)
            rows.append((f"{name} tortuosity factor {axis}", shown(tau, error)))
    if has_labels:
        per_length = f" {length}/{length}³"
        rows.append(
            (
                "TPB density (isotropic)",
                shown(values["tpb_density"], errors.get("tpb_density")) + per_length,
            )
        )
        rows.append(("TPB density (edge count)", _fmt(values["tpb_density_edges"]) + per_length))
        active = values["active_tpb"]
        active_error = ((errors.get("active_tpb") or {}).get("active") or {}).get("density")
        rows.append(
            (
                f"active TPB density (isotropic; faces {active['faces']})",
                shown(active["active"]["density"], active_error) + per_length,
            )
        )
    if errors:
        rows.append(("error bars", values["error_definition"]))
    cells = "".join(
        f"<tr><th>{html_lib.escape(k)}</th><td>{html_lib.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<h2>Microstructure</h2><table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
