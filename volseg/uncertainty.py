"""Error bars on microstructure measures from the segmentation's own uncertainty.

A measure computed on one segmentation hides how much it depends on the
decisions taken where the network hesitated. :func:`measure_with_errors`
recomputes every measure on **decision variants** of the same saved
probabilities and reports, for each number, the nominal value (on the mask or
labels the run wrote) and an error bar:

* binary runs: the probability thresholded at ``0.5 - shift`` and
  ``0.5 + shift`` (default ``shift = 0.1``: the band [0.4, 0.6]);
* multi-class runs: the argmax of the class probabilities after adding
  ``+shift`` or ``-shift`` to one class at a time (6 variants for three phases):
  each variant moves the voxels whose decision was within ``shift`` of
  changing towards or away from one phase.

The **error** of a measure is the largest absolute difference between a
variant and the nominal value: ``TPB 2.31 +/- 0.12`` means no decision shift
within the band moves the TPB density by more than 0.12. It is a sensitivity
to the segmentation's undecided voxels, not a statistical confidence interval,
and it does not include errors the network makes confidently. The same
``min_size`` clean-up is applied to every variant.

A measure that exists nominally but is undefined in a variant (the tortuosity of
a phase that stops percolating, for instance) has an **unbounded** error bar,
never a missing one: :data:`Unbounded` (``"inf"``, a string so that the result
stays valid JSON; it formats as ``inf`` and ``float()`` gives ``inf``), which
names the variants in ``.variants``; :func:`measure_with_errors` lists them in
``errors_undefined`` and :func:`format_row` prints
``+/- inf (undefined in variant ni+0.1)``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np

from . import io as vio
from . import microstructure as ms

__all__ = [
    "Unbounded",
    "decision_variants",
    "error_bars",
    "format_row",
    "measure_with_errors",
    "summary_rows",
]

log = logging.getLogger(__name__)


class Unbounded(str):
    """The error bar of a measure that is undefined in some decision variants.

    It is the JSON-safe string ``"inf"`` (``json.dumps(..., allow_nan=False)``
    accepts it), formats like ``float("inf")`` with any float format, converts
    with ``float()`` to ``inf``, and names the variants lacking the measure in
    ``variants``.

    Examples
    --------
    >>> error = Unbounded(["ni+0.1"])
    >>> f"{error:.2g}", float(error), error.variants, error
    ('inf', inf, ('ni+0.1',), 'inf')
    """

    variants: tuple[str, ...]

    def __new__(cls, variants: Sequence[str] = ()) -> Unbounded:
        self = super().__new__(cls, "inf")
        self.variants = tuple(str(v) for v in variants)
        return self

    def __format__(self, spec: str) -> str:
        return format(math.inf, spec)

    def __float__(self) -> float:
        return math.inf

    def __reduce__(self):
        return (Unbounded, (self.variants,))

    def note(self) -> str:
        """``"undefined in variant a, b"`` (or in a variant, names unknown)."""
        if not self.variants:
            return "undefined in a variant"
        plural = "s" if len(self.variants) > 1 else ""
        return f"undefined in variant{plural} {', '.join(self.variants)}"


def _probability(prob: Any) -> da.Array:
    """Float32 probabilities in [0, 1] from a uint8 (0..255) or float array."""
    array = prob if isinstance(prob, da.Array) else da.from_array(prob, chunks=prob.chunks)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def decision_variants(
    prob: Any, phases: Mapping[str, float] | None = None, shift: float = 0.1
) -> dict[str, da.Array]:
    """Label volumes decided from the probabilities with shifted decisions (lazy).

    Parameters
    ----------
    prob : zarr.Array, dask.array.Array or numpy.ndarray
        ``(Z, Y, X)`` probability of the phase (binary) or ``(C, Z, Y, X)``
        class probabilities (multi-class), float or uint8 0..255.
    phases : mapping of str to number, optional
        ``{name: label value}`` of the classes in order (multi-class only).
    shift : float
        Size of the decision shift, in probability.

    Returns
    -------
    dict of str to dask.array.Array
        ``"threshold 0.4"``-style keys (binary, uint8 0/1) or ``"ni+0.1"``-style
        keys (multi-class, uint8 label values).

    Examples
    --------
    >>> p = np.array([0.35, 0.45, 0.55, 0.65]).reshape(1, 1, 4)
    >>> {k: v.compute().ravel().tolist() for k, v in decision_variants(p).items()}
    {'threshold 0.4': [0, 1, 1, 1], 'threshold 0.6': [0, 0, 0, 1]}
    """
    if not isinstance(shift, numbers.Real) or not 0 < shift < 0.5:
        raise ValueError(f"shift={shift!r} must be a probability between 0 and 0.5 (e.g. 0.1).")
    if not isinstance(prob, (da.Array, np.ndarray)) and not hasattr(prob, "chunks"):
        raise ValueError("prob must be an array of probabilities (zarr, dask or numpy).")
    if isinstance(prob, np.ndarray):
        prob = da.from_array(prob)
    p = _probability(prob)
    if p.ndim == 3:
        return {f"threshold {t:.2g}": (p >= t).astype(np.uint8) for t in (0.5 - shift, 0.5 + shift)}
    if p.ndim != 4 or phases is None or len(phases) != p.shape[0]:
        raise ValueError(
            f"prob of shape {tuple(p.shape)} needs (C, Z, Y, X) probabilities with one class "
            "per phase in phases."
        )
    values = np.asarray(list(phases.values()), dtype=np.uint8)
    variants = {}
    for k, name in enumerate(phases):
        for sign in (1, -1):
            offset = np.zeros((p.shape[0], 1, 1, 1), dtype=np.float32)
            offset[k] = sign * shift
            winner = da.argmax(p + offset, axis=0)
            variants[f"{name}{'+' if sign > 0 else '-'}{shift:g}"] = winner.map_blocks(
                lambda w: values[w], dtype=np.uint8
            )
    return variants


def error_bars(nominal: Any, variants: Sequence[Any] | Mapping[str, Any]) -> Any:
    """Largest absolute deviation of the variants from the nominal value, leaf by leaf.

    Numbers give a number; a number that a variant lacks (None, or not a
    number) gives an :class:`Unbounded` error naming those variants (by their
    keys when ``variants`` is a mapping of names to results, by their positions
    otherwise), never None. Dicts and lists are walked; anything else (text,
    booleans, a nominal None) gives None.

    Examples
    --------
    >>> variants = [{"tpb": 2.2, "n": [4, 7]}, {"tpb": 2.43, "n": [3, 5]}]
    >>> error_bars({"tpb": 2.31, "n": [4, 5]}, variants)
    {'tpb': 0.12, 'n': [1, 2]}
    >>> bars = error_bars({"tau": 1.8}, {"ni+0.1": {"tau": None}, "ni-0.1": {"tau": 1.7}})
    >>> bars["tau"], bars["tau"].variants
    ('inf', ('ni+0.1',))
    """
    if isinstance(variants, Mapping):
        names = [str(name) for name in variants]
        variants = list(variants.values())
    else:
        variants = list(variants)
        names = [f"#{i}" for i in range(len(variants))]
    return _error_bars(nominal, variants, names)


def _error_bars(nominal: Any, variants: list[Any], names: list[str]) -> Any:
    if isinstance(nominal, Mapping):
        return {
            key: _error_bars(
                value, [v.get(key) if isinstance(v, Mapping) else None for v in variants], names
            )
            for key, value in nominal.items()
        }
    if isinstance(nominal, list):
        return [
            _error_bars(
                value,
                [v[i] if isinstance(v, list) and i < len(v) else None for v in variants],
                names,
            )
            for i, value in enumerate(nominal)
        ]
    if isinstance(nominal, bool) or not isinstance(nominal, numbers.Real):
        return None
    missing = [
        name
        for name, v in zip(names, variants)
        if isinstance(v, bool) or not isinstance(v, numbers.Real)
    ]
    if missing:
        return Unbounded(missing)
    deviation = max((abs(v - nominal) for v in variants), default=0)
    return round(float(deviation), 12) if isinstance(deviation, float) else deviation


def _undefined(errors: Any, path: str = "") -> dict[str, list[str]]:
    """``{"phases.ni.tortuosity.z": ["ni+0.1"], ...}``: the unbounded error bars."""
    if isinstance(errors, Unbounded):
        return {path: list(errors.variants)}
    found = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            found.update(_undefined(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(errors, list):
        for i, value in enumerate(errors):
            found.update(_undefined(value, f"{path}[{i}]"))
    return found


def measure_with_errors(
    output: Any,
    voxel_size: Sequence[float] | None = None,
    *,
    shift: float = 0.1,
    **options: Any,
) -> dict[str, Any]:
    """Measures of a volseg output group with error bars from its saved probabilities.

    Parameters
    ----------
    output : path or zarr store
        A volseg output group written with ``save_prob``; a three-phase run is
        measured with :func:`volseg.measure_phases` on ``labels``, a binary run
        with :func:`volseg.measure` on ``mask``.
    voxel_size : sequence of float, optional
        Voxel sides (default: recorded in the output).
    shift : float
        Decision shift defining the variants (see :func:`decision_variants`).
    **options
        Passed to the measure function (``min_size``, ``faces``,
        ``tortuosity``, ``connectivity``, ``max_radius``...). ``min_size``
        defaults to the one the segmentation run cleaned its output with.

    Returns
    -------
    dict
        The nominal measures, plus ``errors`` (same layout, the error bar of
        every number, see :func:`error_bars`), ``variants`` (the variant
        names) and ``error_definition`` (one sentence). A measure undefined in
        some variant has the error ``"inf"`` (:class:`Unbounded`) and its path
        in ``errors_undefined`` (``{"phases.ni.tortuosity.z": ["ni+0.1"]}``),
        only present when there is one. The result is valid JSON
        (``json.dumps(result, allow_nan=False)`` works).

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> store = zarr.storage.MemoryStore()
    >>> out = create_output(store, (4, 4, 4), (4, 4, 4), attrs={}, prob_dtype="float32")
    >>> p = np.zeros((4, 4, 4), np.float32); p[:2] = 0.9; p[2] = 0.55
    >>> out.prob[...] = p; out.mask[...] = p >= 0.5
    >>> m = measure_with_errors(store, max_radius=2)
    >>> m["volume_fraction"], m["errors"]["volume_fraction"]
    (0.75, 0.25)
    """
    group = vio.open_output(output)
    if group.prob is None:
        raise ValueError(
            f"output {group.path!r} has no saved probabilities; run segment with "
            "save_prob=True (--save-prob) to get error bars."
        )
    parameters = group.attrs.get("parameters", {})
    phases = parameters.get("phases")
    if "min_size" not in options and parameters.get("min_size"):
        # The run cleaned its labels: clean the variants alike.
        options["min_size"] = parameters["min_size"]
    chunks = group.chunks
    if group.labels is not None and phases:
        nominal = ms.measure_phases(group.labels, voxel_size, phases=phases, **options)
        measure = ms.measure_phases
        kwargs = {"phases": phases}
        variants = decision_variants(group.prob, phases, shift)
    else:
        if options.get("faces") is not None:
            raise ValueError(
                f"faces={options['faces']!r}: the active TPB needs a three-phase output; "
                f"{group.path!r} holds a binary mask."
            )
        if group.prob.ndim != 3:
            raise ValueError(
                f"output {group.path!r} holds per-class probabilities but no labels; error "
                "bars need the labels of a three-phase run or the probability of a binary one."
            )
        nominal = ms.measure(group.mask, voxel_size, **options)
        measure = ms.measure
        kwargs = {}
        variants = decision_variants(group.prob, None, shift)
    voxel_size = tuple(nominal["voxel_size"])
    results = []
    for name, labels in variants.items():
        log.info("error bars: measuring the variant %s", name)
        labels = labels.rechunk(chunks)
        try:
            results.append(measure(labels, voxel_size, **kwargs, **options))
        except ValueError as error:
            # The clean-up refuses to erase a whole phase of this variant.
            if "would remove every component" not in str(error):
                raise
            log.warning("error bars: variant %s is undefined: %s", name, error)
            results.append(None)
    nominal["errors"] = error_bars(
        {k: v for k, v in nominal.items() if k not in ("shape", "voxel_size", "chunks")},
        dict(zip(variants, results)),
    )
    undefined = _undefined(nominal["errors"])
    if undefined:
        # "inf" in errors (JSON-safe); which variants lack each of those measures.
        nominal["errors_undefined"] = undefined
    nominal["variants"] = list(variants)
    nominal["error_definition"] = (
        f"largest absolute change of the measure over the decision variants "
        f"(shift {shift:g} in probability: {', '.join(variants)})"
    )
    return nominal


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
            for axis in ms.AXES:
                add(f"{phase} tortuosity {axis}", ("phases", phase, "tortuosity", axis), "")
        add("tpb_density", ("tpb_density",), f"{unit}/{unit}^3")
        add("tpb_density_edges", ("tpb_density_edges",), f"{unit}/{unit}^3")
        add("active tpb_density", ("active_tpb", "active", "density"), f"{unit}/{unit}^3")
        add("active_fraction", ("active_tpb", "active_fraction"), "")
    else:
        for key, unit_text in per_phase:
            add(key, (key,), unit_text)
        for axis in ms.AXES:
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
