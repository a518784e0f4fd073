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
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np

from .. import io as vio
from ..conventions import as_dask_array
from .errors import error_bars, undefined_errors
from .one_phase import measure
from .three_phases import measure_phases

__all__ = ["decision_variants", "measure_with_errors"]

log = logging.getLogger(__name__)


def _probability(prob: Any) -> da.Array:
    """Float32 probabilities in [0, 1] from a uint8 (0..255) or float array."""
    array = as_dask_array(prob)
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
        nominal = measure_phases(group.labels, voxel_size, phases=phases, **options)
        measure_variant = measure_phases
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
        nominal = measure(group.mask, voxel_size, **options)
        measure_variant = measure
        kwargs = {}
        variants = decision_variants(group.prob, None, shift)
    voxel_size = tuple(nominal["voxel_size"])
    results = []
    for name, labels in variants.items():
        log.info("error bars: measuring the variant %s", name)
        labels = labels.rechunk(chunks)
        try:
            results.append(measure_variant(labels, voxel_size, **kwargs, **options))
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
    undefined = undefined_errors(nominal["errors"])
    if undefined:
        # "inf" in errors (JSON-safe); which variants lack each of those measures.
        nominal["errors_undefined"] = undefined
    nominal["variants"] = list(variants)
    nominal["error_definition"] = (
        f"largest absolute change of the measure over the decision variants "
        f"(shift {shift:g} in probability: {', '.join(variants)})"
    )
    return nominal
