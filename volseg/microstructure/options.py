"""Validated options of the microstructure measures: label values, phases, connectivity.

No I/O and no dask: each function checks one kind of option and either returns it
in the form the measures use or raises a :class:`ValueError` that names the option
and the fix.

>>> from volseg.microstructure.options import validate_phases
>>> validate_phases({"pore": 0, "ysz": 1, "ni": 2}, "given")
{'pore': 0, 'ysz': 1, 'ni': 2}
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..conventions import PHASES

__all__ = [
    "CONNECTIVITIES",
    "validate_label",
    "validate_options",
    "validate_phase_values",
    "validate_phases",
]

CONNECTIVITIES = (6, 26)


def validate_label(label: Any, name: str) -> float:
    """A label value as a plain Python number (for JSON).

    Examples
    --------
    >>> validate_label(np.uint8(2), "label")
    2
    >>> validate_label("ni", "label")
    Traceback (most recent call last):
    ValueError: label='ni' is not a number; give the value of the phase.
    """
    if not isinstance(label, (numbers.Number, np.generic)) or isinstance(label, complex):
        raise ValueError(f"{name}={label!r} is not a number; give the value of the phase.")
    return label.item() if isinstance(label, np.generic) else label


def validate_phase_values(values: Any, what: str) -> tuple[float, float, float]:
    """Three different label values; ``what`` names them in messages.

    Examples
    --------
    >>> validate_phase_values([0, 1, np.int64(2)], "phase_values")
    (0, 1, 2)
    """
    try:
        values = tuple(values)
    except TypeError:
        values = (values,)
    if len(values) != 3:
        raise ValueError(
            f"{what} {values!r} must be the label values of exactly three phases, "
            "e.g. (0, 1, 2) for pore, YSZ and Ni."
        )
    values = tuple(validate_label(value, what) for value in values)
    if len(set(values)) != 3:
        raise ValueError(
            f"{what} {values!r} give two phases the same label value; each of the three "
            "phases needs its own value."
        )
    return values


def validate_phases(phases: Any, origin: str) -> dict[str, float]:
    """``{name: label value}`` of exactly three phases with different values.

    ``origin`` says where the phases come from (``"given"``, ``"the default"``...).

    Examples
    --------
    >>> validate_phases({"pore": 0, "ysz": np.int64(1), "ni": 2.0}, "given")
    {'pore': 0, 'ysz': 1, 'ni': 2.0}
    """
    if not isinstance(phases, Mapping) or len(phases) != 3:
        raise ValueError(
            f"phases={phases!r} ({origin}) must map exactly three phase names to their label "
            f"values, e.g. phases={PHASES}."
        )
    if not all(isinstance(name, str) for name in phases):
        raise ValueError(f"phases={phases!r} ({origin}): phase names must be strings.")
    values = [validate_label(value, f"phases[{name!r}]") for name, value in phases.items()]
    values = validate_phase_values(values, f"phases={dict(phases)!r} ({origin}):")
    return dict(zip(phases, values))


def validate_options(connectivity: Any, max_radius: Any) -> None:
    """Refuse a connectivity other than 6 or 26 and a ``max_radius`` that is not >= 1.

    Examples
    --------
    >>> validate_options(26, 8)
    >>> validate_options(18, 8)
    Traceback (most recent call last):
    ValueError: connectivity=18 is not supported; use 6 (faces) or 26 (faces, edges and corners).
    """
    if connectivity not in CONNECTIVITIES:
        raise ValueError(
            f"connectivity={connectivity!r} is not supported; use 6 (faces) or 26 (faces, "
            "edges and corners)."
        )
    if isinstance(max_radius, bool) or not isinstance(max_radius, numbers.Integral):
        raise ValueError(f"max_radius={max_radius!r} must be a positive integer (voxels).")
    if max_radius < 1:
        raise ValueError(f"max_radius={max_radius!r} must be a positive integer (voxels).")
