"""The headline numbers of a measure result as rows, and one printed line per row.

>>> summary_rows({"volume_fraction": 0.25})
[('volume_fraction', 0.25, None, '')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import Unbounded
from .kernels import AXES

__all__ = ["format_row", "summary_rows"]

_UNIT_SHORT = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}


def _error_at(errors: Any, path: Sequence[Any]) -> Any:
    for key in path:
        if not isinstance(errors, Mapping):
            return None
        errors = errors.get(key)
    return errors


def summary_rows(measures: Mapping[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """The headline numbers of a measure result as ``(name, value, error, unit)`` rows.

    Works on what :func:`volseg.measure`, :func:`volseg.measure_phases` and
    :func:`measure_with_errors` return; ``error`` is None without error bars.

    Examples
    --------
    >>> rows = summary_rows({"unit": "micrometer", "volume_fraction": 0.25,
    ...                      "specific_surface_area": 1.5, "errors": {"volume_fraction": 0.01}})
    >>> rows[0], rows[1][3]
    (('volume_fraction', 0.25, 0.01, ''), '1/um')
    """
    unit = measures.get("unit")
    if unit:
        unit = _UNIT_SHORT.get(unit, unit)
    else:
        in_voxels = all(float(v) == 1.0 for v in measures.get("voxel_size", (1, 1, 1)))
        unit = "voxel" if in_voxels else "unit"
    errors = measures.get("errors") or {}
    per_phase = [
        ("volume_fraction", ""),
        ("specific_surface_area", f"1/{unit}"),
        ("largest_component_fraction", ""),
        ("thickness_mean", unit),
    ]
    rows = []

    def add(name: str, path: Sequence[Any], unit_text: str) -> None:
        value = measures
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            rows.append((name, value, _error_at(errors, path), unit_text))

    if "phases" in measures:
        for phase in measures["phases"]:
            for key, unit_text in per_phase:
                add(f"{phase} {key}", ("phases", phase, key), unit_text)
            for axis in AXES:
                add(f"{phase} tortuosity {axis}", ("phases", phase, "tortuosity", axis), "")
        add("tpb_density", ("tpb_density",), f"{unit}/{unit}^3")
        add("tpb_density_edges", ("tpb_density_edges",), f"{unit}/{unit}^3")
        add("active tpb_density", ("active_tpb", "active", "density"), f"{unit}/{unit}^3")
        add("active_fraction", ("active_tpb", "active_fraction"), "")
    else:
        for key, unit_text in per_phase:
            add(key, (key,), unit_text)
        for axis in AXES:
            add(f"tortuosity {axis}", ("tortuosity", axis), "")
    return rows


def format_row(name: str, value: Any, error: Any, unit: str) -> str:
    """One line of the measures table: ``name  value +/- error unit``.

    An :class:`Unbounded` error prints as ``+/- inf`` with the variants that
    lack the measure, after the unit.

    Examples
    --------
    >>> format_row("tpb_density", 2.3114, 0.1201, "um/um^3")
    '  tpb_density                          2.3114 +/- 0.12 um/um^3'
    >>> format_row("ni tortuosity z", 1.83, Unbounded(["ni-0.1"]), "")
    '  ni tortuosity z                      1.83 +/- inf (undefined in variant ni-0.1)'
    """
    text = f"{value:.5g}" if isinstance(value, float) else str(value)
    note = ""
    if isinstance(error, Unbounded):
        text += " +/- inf"
        note = f" ({error.note()})"
    elif error is not None:
        text += f" +/- {error:.2g}" if isinstance(error, float) else f" +/- {error}"
    return f"  {name:<36} {text} {unit}".rstrip() + note
