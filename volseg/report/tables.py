"""The report's HTML tables: the run summary, the microstructure measures, the worst chunks.

>>> summary_table({"ni_iou": 0.91234, "phase_iou": {"ni": 0.9}})
'<tr><th>ni_iou</th><td>0.9123</td></tr><tr><th>phase_iou ni</th><td>0.9000</td></tr>'
"""

from __future__ import annotations

import html as html_lib
from typing import Any

from volseg.microstructure import measure, measure_phases
from volseg.microstructure.tpb import DEFAULT_FACES
from volseg.microstructure.uncertainty import measure_with_errors

__all__ = ["format_value", "microstructure_table", "summary_table", "worst_chunks_table"]


def format_value(value: Any) -> str:
    """A number as the report shows it: floats with four decimals, anything else as text.

    Examples
    --------
    >>> format_value(0.123456), format_value(7), format_value(None)
    ('0.1235', '7', 'None')
    """
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary_table(summary: dict[str, Any]) -> str:
    """The rows (``<tr>``) of the summary table; nested dicts become one row per entry.

    Lists (per-slice values) are left out.

    Examples
    --------
    >>> summary_table({"status": "complete", "slices": [0.9, 0.8]})
    '<tr><th>status</th><td>complete</td></tr>'
    """
    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update({f"{key} {name}": v for name, v in value.items()})
        elif not isinstance(value, list):
            flat[key] = value
    return "".join(
        f"<tr><th>{html_lib.escape(str(k))}</th><td>{html_lib.escape(format_value(v))}</td></tr>"
        for k, v in flat.items()
    )


def worst_chunks_table(stats: Any) -> str:
    """The ten chunks with the lowest Ni IoU as a headed HTML table ("" without IoU).

    Examples
    --------
    >>> import pandas as pd
    >>> stats = pd.DataFrame({"chunk_z": [0, 1], "iou": [0.9, 0.5]})
    >>> worst_chunks_table(stats).startswith("<h2>Chunks with the lowest Ni IoU</h2>")
    True
    >>> worst_chunks_table(stats.drop(columns="iou"))
    ''
    """
    if "iou" not in stats:
        return ""
    table = stats.sort_values("iou").head(10)
    return "<h2>Chunks with the lowest Ni IoU</h2>" + table.to_html(
        index=False, float_format=lambda v: f"{v:.4f}"
    )


def microstructure_table(
    out: Any,
    result: Any,
    voxel_size,
    unit: str | None,
    allow_incomplete: bool = False,
    tortuosity: Any = False,
) -> str:
    """The microstructure table of the report, every quantity with its physical unit.

    Parameters
    ----------
    out : path
        The output group.
    result : volseg.inference.SegmentationResult
        ``out`` opened: a three-phase output (with ``labels``) is measured per phase
        with its (active) TPB density; saved probabilities add error bars.
    voxel_size : tuple of 3 float or None
        Voxel side (z, y, x); None: voxel units.
    unit : str or None
        Unit of ``voxel_size``.
    allow_incomplete, tortuosity
        As in :func:`volseg.report.page.make_report`.

    Returns
    -------
    str
        A headed HTML table.

    Examples
    --------
    A mask without labels or saved probabilities (``result`` needs only these two):

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> mask = np.zeros((4, 16, 16), np.uint8)
    >>> mask[:, 4:12, 4:12] = 1
    >>> plain = SimpleNamespace(group=None, prob=None)
    >>> table = microstructure_table(mask, plain, (0.5, 0.5, 0.5), "micrometer")
    >>> table.startswith("<h2>Microstructure</h2>"), "Ni volume fraction" in table
    (True, True)
    """
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
    rows = _rows(values, has_labels, length)
    cells = "".join(
        f"<tr><th>{html_lib.escape(k)}</th><td>{html_lib.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<h2>Microstructure</h2><table>{cells}</table>"


def _rows(values: dict[str, Any], has_labels: bool, length: str) -> list[tuple[str, str]]:
    """(quantity, value with unit and error bar) for every measure of ``values``."""
    errors = values.get("errors") or {}
    phases = values["phases"] if has_labels else {"Ni": values}
    phase_errors = errors.get("phases", {}) if has_labels else {"Ni": errors}

    def shown(value: Any, error: Any) -> str:
        text = format_value(value)
        return text if error is None else f"{text} ± {error:.2g}"

    rows = [("voxel size (z, y, x)", f"{values['voxel_size']} {length}")]
    rows.append(("total volume", f"{format_value(values['total_volume'])} {length}³"))
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
            (f"{name} mean thickness", f"{format_value(m['thickness_mean'])} {length}"),
            (f"{name} largest component fraction", format_value(m["largest_component_fraction"])),
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
        rows.append(
            ("TPB density (edge count)", format_value(values["tpb_density_edges"]) + per_length)
        )
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
    return rows
