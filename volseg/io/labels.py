"""Label volumes: the phases they record, the truth of a run, and label-value checks.

* :func:`recorded_label` and :func:`recorded_phases` - the phase values a label
  volume records in its attrs (``{"phases": {"pore": 0, "ysz": 1, "ni": 2}}``);
* :func:`open_truth` and :func:`truth_phases` - a truth volume matched to its scan
  and the label value of each phase in it;
* :func:`check_label_value` and :func:`check_label_present` - a label value is a finite
  number the volume's dtype can hold, and a truth holds it.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Iterable
from typing import Any

import dask.array as da
import numpy as np

from .scans import Scan, open_scan

__all__ = [
    "check_label_present",
    "check_label_value",
    "open_truth",
    "recorded_label",
    "recorded_phases",
    "truth_phases",
]

log = logging.getLogger(__name__)

# At most this many distinct values are listed in a message about a label volume.
LISTED_VALUES = 12


def recorded_label(scan: Scan, phase: str = "ni") -> float | None:
    """The value of ``phase`` recorded in a label volume's attrs (``{"phases": {...}}``).

    volseg.synth labels record ``{"pore": 0, "ysz": 1, "ni": 2}``; other label
    volumes usually record nothing, and None is returned.

    Examples
    --------
    >>> import zarr
    >>> labels = zarr.create_array(zarr.storage.MemoryStore(), shape=(1, 2, 2), dtype="uint8")
    >>> labels.attrs["phases"] = {"pore": 0, "ysz": 1, "ni": 2}
    >>> recorded_label(open_scan(labels), "ni"), recorded_label(open_scan(np.zeros((1, 2, 2))))
    (2, None)
    """
    attrs = getattr(scan.array, "attrs", None)
    if attrs is None:
        return None
    phases = dict(attrs).get("phases")
    if isinstance(phases, dict) and phase in phases:
        return phases[phase]
    return None


def recorded_phases(scan: Scan) -> dict[str, int] | None:
    """All phases recorded in a label volume's attrs (``{"pore": 0, "ysz": 1, "ni": 2}``).

    Examples
    --------
    >>> import zarr
    >>> labels = zarr.create_array(zarr.storage.MemoryStore(), shape=(1, 2, 2), dtype="uint8")
    >>> labels.attrs["phases"] = {"pore": 0, "ni": 1}
    >>> recorded_phases(open_scan(labels)), recorded_phases(open_scan(np.zeros((1, 2, 2))))
    ({'pore': 0, 'ni': 1}, None)
    """
    phases = dict(getattr(scan.array, "attrs", None) or {}).get("phases")
    return dict(phases) if isinstance(phases, dict) else None


def open_truth(
    truth: Any,
    reference: Scan,
    ni_label: float | None = None,
    what: str = "scan",
    default: float | None = None,
    check: bool = True,
) -> tuple[Scan, float]:
    """Open a truth volume, check it matches ``reference`` and resolve the Ni value.

    Returns the truth and ``ni_label``: as given, else the value recorded in the
    truth's attrs (see :func:`recorded_label`), else ``default`` (not for a boolean
    truth, where Ni is True), else 1. With ``check``, a truth holding no voxel of that
    value, or (when the value is only the default 1) holding more than two values, is
    an error naming the values it holds (:func:`check_label_present`).

    Examples
    --------
    >>> scan = open_scan(np.zeros((1, 4, 4), np.uint16))
    >>> truth, ni_label = open_truth(np.full((1, 4, 4), 255, np.uint8), scan, ni_label=255)
    >>> truth.shape, ni_label
    ((1, 4, 4), 255)
    """
    truth_volume = open_scan(truth, role="truth", allow_bool=True)
    if truth_volume.shape != reference.shape:
        raise ValueError(
            f"truth {truth_volume.source!r} has shape {truth_volume.shape} but {what} "
            f"{reference.source!r} has shape {reference.shape}; give the labels of this {what}."
        )
    given = ni_label is not None
    if ni_label is None:
        ni_label = recorded_label(truth_volume, "ni")
    known = ni_label is not None
    if ni_label is None and truth_volume.dtype != np.bool_:
        ni_label = default
    ni_label = 1 if ni_label is None else ni_label
    if given:
        check_label_value(ni_label, "ni_label", truth_volume.dtype, repr(truth_volume.source))
    if check:
        check_label_present(truth_volume, ni_label, recorded=known or default is not None)
    return truth_volume, ni_label


def truth_phases(truth: Scan, phases: dict[str, int], ni_label: float) -> dict[str, float] | None:
    """The label value of each of ``phases`` in ``truth``, or None when it has no phases.

    Taken from the truth's recorded phases where it names them, else the model's
    values; ``ni`` is ``ni_label``. None for a boolean (binary) truth and when these
    values collide (e.g. a 0/1 Ni mask scored with ``ni_label=1``): such a truth
    can only be scored for Ni.

    Examples
    --------
    >>> import numpy as np
    >>> labels = open_scan(np.zeros((1, 4, 4), np.uint8))
    >>> truth_phases(labels, {"pore": 0, "ysz": 1, "ni": 2}, 2)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    >>> truth_phases(labels, {"pore": 0, "ysz": 1, "ni": 2}, 1) is None
    True
    """
    if truth.dtype == np.bool_:
        return None
    values = {}
    for name, value in phases.items():
        recorded = recorded_label(truth, name)
        values[name] = recorded if recorded is not None else value
    values["ni"] = ni_label
    if len(set(values.values())) != len(values):
        log.info("truth %s: phases %s share values; scoring Ni only", truth.source, values)
        return None
    return values


def check_label_value(value: Any, name: str, dtype: Any = None, source: str = "") -> Any:
    """A label value: a finite, non-negative number that ``dtype`` can hold.

    Examples
    --------
    >>> check_label_value(2, "ni_label", np.uint8)
    2
    >>> check_label_value(300, "label", np.uint8, "mask.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: label=300 cannot occur in mask.zarr (dtype uint8, values 0..255); ...
    """
    if (
        isinstance(value, (bool, complex))
        or not isinstance(value, (numbers.Number, np.generic))
        or not math.isfinite(float(value))
    ):
        raise ValueError(f"{name}={value!r} is not a finite number; give the label value.")
    if float(value) < 0:
        raise ValueError(
            f"{name}={value!r} is negative; label values are 0 or more, e.g. 1 or 2 or 255."
        )
    if dtype is not None:
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            if not (float(value).is_integer() and info.min <= value <= info.max):
                raise ValueError(
                    f"{name}={value!r} cannot occur in {source or 'the volume'} (dtype {dtype}, "
                    f"values {info.min}..{info.max}); give a value it holds."
                )
    return value.item() if isinstance(value, np.generic) else value


def _blocks(array: Any) -> Iterable[tuple[slice, ...]]:
    """The regions of ``array``'s stored (or dask) chunks, in order."""
    if isinstance(array, da.Array):
        bounds = [np.cumsum((0, *c)) for c in array.chunks]
    else:
        bounds = [np.append(np.arange(0, s, c), s) for s, c in zip(array.shape, array.chunks)]
    for index in itertools.product(*(range(len(b) - 1) for b in bounds)):
        yield tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index))


def check_label_present(truth: Any, value: Any, *, recorded: bool, name: str = "ni_label") -> None:
    """The truth holds ``value`` (and, when only defaulted, at most two values).

    When ``value`` was neither given nor recorded, a label volume of more than two
    values is refused too: the default 1 would be a guess. Chunks are read one at a
    time until ``value`` is found (usually the first); only a truth without it is read
    whole, to name the values it holds.

    Parameters
    ----------
    truth : volseg.io.Scan
    value : number
    recorded : bool
        The value was given by the user or recorded in the truth's attrs.

    Examples
    --------
    >>> from volseg.io import open_scan
    >>> truth = open_scan(np.array([[[0, 255]]], np.uint8), role="truth")
    >>> check_label_present(truth, 1, recorded=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: truth ... holds no voxel of ni_label=1; it holds the values 0, 255: ...
    """
    if truth.dtype == np.bool_:
        return
    seen: set = set()
    for region in _blocks(truth.array):
        block = np.asarray(truth.array[region])
        values = np.unique(block)
        if len(seen) <= LISTED_VALUES:
            seen.update(v.item() for v in values[: LISTED_VALUES + 1])
        if (values == value).any():
            if not recorded and len(seen) > 2:
                raise ValueError(
                    f"truth {truth.source!r} holds the values {_listing(seen)} and records no "
                    f"phases, so which one is Ni is a guess ({name}={value} by default); "
                    f"pass --ni-label (ni_label=) with the value of Ni."
                )
            return
    raise ValueError(
        f"truth {truth.source!r} holds no voxel of {name}={value}; it holds the values "
        f"{_listing(seen)}: pass --ni-label (ni_label=) with the value of Ni "
        "(e.g. 255 for a 0/255 mask)."
    )


def _listing(values: set) -> str:
    ordered = sorted(values)
    text = ", ".join(str(v) for v in ordered[:LISTED_VALUES])
    return text + (", ..." if len(ordered) > LISTED_VALUES else "")
