"""The HTML report of an output: :func:`make_report` gathers the figures and tables into one page.

The steps, in order: the output and the paths of the page, the evaluation against
truth, the slice and per-chunk figures, the microstructure table and REV curve, the
grey-value histograms, the training curves, and the self-contained HTML page
(every PNG embedded). The drawing is in :mod:`volseg.report.figures` and
:mod:`volseg.report.slices`, the tables in :mod:`volseg.report.tables`.

>>> page_paths(Path("runs/scan_ni.zarr"), None, None)
(PosixPath('runs/scan_ni_report.html'), PosixPath('runs/scan_ni_report'))
"""

from __future__ import annotations

import base64
import html as html_lib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from volseg import io as vio
from volseg.conventions import as_dask_array, history_paths
from volseg.evaluation import evaluate
from volseg.io.paths import check_new_file
from volseg.io.results import open_result
from volseg.microstructure.rev import rev_curve

from .figures import (
    chunk_heatmap,
    fraction_profiles,
    phase_histograms,
    rev_figure,
    training_curves,
)
from .slices import slices_figure
from .tables import microstructure_table, summary_table, worst_chunks_table

__all__ = ["make_report", "page_paths"]

Figures = list[tuple[str, Path]]


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
        computed chunk by chunk; with saved probabilities every number gets
        an error bar (:func:`volseg.microstructure.uncertainty.measure_with_errors`), and a
        three-phase output its active TPB (:data:`volseg.microstructure.tpb.DEFAULT_FACES`).
    overwrite : bool
        Replace an existing HTML file (refused by default).
    allow_incomplete : bool
        Report on an output whose run has not finished (refused by default): only its
        done chunks count, and the page says how many are missing.
    rev : bool
        Add the representative-volume figure (:func:`volseg.microstructure.rev.rev_curve`).
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
    result = open_result(out, allow_incomplete=allow_incomplete)
    record = dict(result.group.attrs.get("volseg", {}))
    base = Path(str(out).rstrip("/"))
    html, png_dir = page_paths(base, html, png_dir)
    check_new_file(html, overwrite=overwrite, what="report page")
    png_dir.mkdir(parents=True, exist_ok=True)
    scan_source = scan if scan is not None else record.get("input")
    image = vio.open_scan(scan_source, role="scan").array
    summary = dict(result.summary)
    stats = result.stats
    truth_scored = None
    if truth is not None:
        truth_scored = _scored(out, truth, ni_label, scan_source, allow_incomplete)
        summary.update(truth_scored.summary)
        stats = truth_scored.stats
    recorded = vio.recorded_voxel_size(vio.open_scan(result.mask, role="mask"))
    unit = None
    if voxel_size is None and recorded is not None:
        voxel_size, unit = recorded

    figures = _volume_figures(result, image, stats, truth_scored, voxel_size, unit, png_dir)
    physical = (
        microstructure_table(out, result, voxel_size, unit, allow_incomplete, tortuosity)
        if measures
        else ""
    )
    if measures and rev:
        figures.append(_rev_figure(result, voxel_size, png_dir))
    figures.append(_histograms(image, result.mask, truth_scored, sample_step, png_dir))
    model_path = record.get("model", {}).get("path")
    figures += _training_figure(model_path, png_dir)

    heading = (
        f"<p>scan: {html_lib.escape(str(scan_source))}; model: "
        f"{html_lib.escape(str(model_path))}; status: {html_lib.escape(str(record.get('status')))}"
        "</p>"
    )
    tables = physical + worst_chunks_table(stats)
    page = _page(base.name, heading, summary_table(summary), tables, figures)
    html.write_text(page, encoding="utf-8")
    return html


def page_paths(
    base: Path, html: str | Path | None, png_dir: str | Path | None
) -> tuple[Path, Path]:
    """The HTML file and the PNG folder of the report of output ``base``.

    Parameters
    ----------
    base : pathlib.Path
        The output group.
    html, png_dir : path or None
        Given paths, kept; None: ``<out>_report.html`` and ``<out>_report/`` beside
        the output (without its ``.zarr``).

    Returns
    -------
    (pathlib.Path, pathlib.Path)

    Examples
    --------
    >>> page_paths(Path("scan_ni.zarr"), "page.html", None)
    (PosixPath('page.html'), PosixPath('scan_ni_report'))
    """
    html = Path(html) if html else base.with_name(base.name.replace(".zarr", "") + "_report.html")
    png_dir = (
        Path(png_dir) if png_dir else base.with_name(base.name.replace(".zarr", "") + "_report")
    )
    return html, png_dir


@dataclass
class _Scored:
    """The output scored against truth: what the page shows of it."""

    summary: dict[str, Any]  # the evaluation's summary, the baseline as multiotsu_ni_iou
    stats: Any  # the per-chunk table with the counts just stored
    volume: Any  # the truth, opened
    ni_label: float
    mask: Any  # the truth's Ni voxels (dask)


def _scored(out: Any, truth: Any, ni_label: Any, scan_source: Any, allow_incomplete: bool):
    """Evaluate ``out`` against ``truth`` (storing the counts) and open the truth's Ni mask."""
    evaluation = evaluate(
        out,
        truth,
        ni_label,
        baseline="multiotsu",
        scan=scan_source,
        allow_incomplete=allow_incomplete,
    )
    summary = {k: v for k, v in evaluation.summary.items() if k != "baseline"}
    if "baseline" in evaluation.summary:
        summary["multiotsu_ni_iou"] = evaluation.summary["baseline"]["ni_iou"]
    stats = open_result(out, allow_incomplete=allow_incomplete).stats
    truth_volume = vio.open_scan(truth, role="truth", allow_bool=True)
    ni_label = evaluation.summary["ni_label"]
    truth_mask = as_dask_array(truth_volume.array) == ni_label
    return _Scored(summary, stats, truth_volume, ni_label, truth_mask)


def _volume_figures(
    result: Any,
    image: Any,
    stats: Any,
    scored: _Scored | None,
    voxel_size: Any,
    unit: str | None,
    png_dir: Path,
) -> Figures:
    """Sample slices, per-chunk heat maps and the Ni fraction along each axis."""
    truth_mask = scored.mask if scored is not None else None
    figures = [
        (
            "Sample slices",
            slices_figure(image, result.mask, png_dir / "slices.png", truth=truth_mask),
        )
    ]
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
    mask = as_dask_array(result.mask)
    profiles = dict(
        zip(
            "zyx",
            da.compute(*(mask.mean(axis=tuple(a for a in range(3) if a != k)) for k in range(3))),
        )
    )
    figures.append(
        (
            "Ni fraction along each axis",
            fraction_profiles(profiles, png_dir / "profiles.png", voxel_size, unit),
        )
    )
    return figures


def _rev_figure(result: Any, voxel_size: Any, png_dir: Path) -> tuple[str, Path]:
    """The representative-volume curve of the labels (three phases) or of the mask."""
    has_labels = result.group is not None and "labels" in result.group
    curve = rev_curve(
        result.group["labels"] if has_labels else result.mask,
        voxel_size,
        label=None if has_labels else 1,
        phases=result.group.attrs.get("volseg", {}).get("parameters", {}).get("phases")
        if has_labels
        else None,
    )
    return ("Representative volume", rev_figure(curve, png_dir / "rev.png"))


def _histograms(
    image: Any, mask: Any, scored: _Scored | None, sample_step: int, png_dir: Path
) -> tuple[str, Path]:
    """Grey-value histograms of every ``sample_step``-th slice, per predicted and true phase."""
    sample = np.asarray(image[::sample_step], dtype=np.float64)
    predicted = np.asarray(mask[::sample_step]).astype(bool)
    edges = np.linspace(*np.percentile(sample, [0.1, 99.9]), 129)
    histograms = {
        "predicted Ni": np.histogram(sample[predicted], edges)[0],
        "predicted other": np.histogram(sample[~predicted], edges)[0],
    }
    if scored is not None:
        labels = np.asarray(scored.volume.array[::sample_step])
        phases = dict(getattr(scored.volume.array, "attrs", {}) or {}).get("phases") or {}
        names = {value: name for name, value in phases.items()}
        for value in np.unique(labels)[:5]:
            name = "true Ni" if value == scored.ni_label else f"true {names.get(int(value), value)}"
            histograms[name] = np.histogram(sample[labels == value], edges)[0]
    return (
        "Grey-value histograms per phase",
        phase_histograms(histograms, edges, png_dir / "histograms.png"),
    )


def _training_figure(model_path: str | None, png_dir: Path) -> Figures:
    """The training curves of the model, when its history lies beside it."""
    if not model_path:
        return []
    csv, _ = history_paths(model_path)
    if not csv.is_file():
        return []
    history = pd.read_csv(csv)
    monitor = "val_mean_iou" if "val_mean_iou" in history else "val_ni_iou"
    best_epoch = int(history.loc[history[monitor].idxmax(), "epoch"])
    return [
        (
            "Training curves",
            training_curves(history, png_dir / "training.png", best_epoch=best_epoch),
        )
    ]


def _page(name: str, heading: str, rows: str, tables: str, figures: Figures) -> str:
    """The self-contained HTML page: summary rows, further tables, every PNG embedded."""
    blocks = []
    for title, path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        blocks.append(
            f"<h2>{html_lib.escape(title)}</h2>"
            f'<img alt="{html_lib.escape(title)}" src="data:image/png;base64,{data}">'
        )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>volseg report: {html_lib.escape(name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "img{max-width:100%}table{border-collapse:collapse}"
        "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style>"
        f"</head><body><h1>volseg report: {html_lib.escape(name)}</h1>{heading}"
        "<p>IoU and Dice are for the Ni class alone; the two-class mean IoU averages Ni "
        f"and background.</p><table>{rows}</table>{tables}{''.join(blocks)}"
        "</body></html>"
    )
