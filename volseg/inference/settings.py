"""The settings of a segmentation run: one frozen object, validated, recorded, resumed.

:class:`SegmentSettings` holds every option of :func:`volseg.segment` that decides
what is computed. It validates itself when made (one clear error per bad value),
is completed with what the run resolves (shape, blocks, devices, the model's
phases) by :meth:`SegmentSettings.resolved`, is written to the output's attrs by
:meth:`SegmentSettings.record`, and decides on ``resume`` whether an earlier run
may be continued (:meth:`SegmentSettings.changed_since`). Which fields are
recorded and compared lives with each field, nowhere else. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import tiling
from ..conventions import jsonable
from ..microstructure.min_size import check_min_size
from .plan import grid_record, plane_grid

__all__ = [
    "AXES_CHOICES",
    "PROB_DTYPES",
    "REFINE_CHOICES",
    "RESUME_KEYS",
    "UNCERTAIN_BAND",
    "SegmentSettings",
    "prob_dtype",
]

# A voxel is "uncertain" when its blended Ni probability lies in this band.
UNCERTAIN_BAND = (0.2, 0.8)
PROB_DTYPES = {True: "uint8", "uint8": "uint8", "float16": "float16", "float32": "float32"}
AXES_CHOICES = ("z", "zyx")
REFINE_CHOICES = (None, "uncertain")

_NEW = object()  # a setting every recorded run has


def _setting(default: Any, *, resume: bool = True, before: Any = _NEW, record: bool = True):
    """A field of :class:`SegmentSettings`.

    ``record``: written to the output's ``parameters``; ``resume``: must match for
    ``resume=True`` to continue a run; ``before``: what runs recorded before the
    setting existed did (older outputs resume with it).
    """
    return field(default=default, metadata={"record": record, "resume": resume, "before": before})


@dataclass(frozen=True)
class SegmentSettings:
    """Every option that decides what a segmentation run computes.

    Made from :func:`volseg.segment`'s arguments (the fields have its defaults and
    meanings); the run fills in what it resolves (``shape``, ``chunks``,
    ``ni_label``, ``has_truth``, ``device``, ``precision``, ``backend``, ``phases``,
    ``stored_chunks``) with :meth:`resolved`. Field order is the order of the
    ``parameters`` recorded in the output.

    Examples
    --------
    >>> settings = SegmentSettings(tile=256, overlap=0.5)
    >>> settings.tile, settings.blend
    (256, 'gaussian')
    >>> SegmentSettings(tile=100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: tile=100 must be a multiple of 32 (the U-Net halves the size up to 5 times), ...
    """

    shape: tuple[int, int, int] | None = _setting(None)
    chunks: tuple[int, int, int] | None = _setting(None)
    tile: int | str = _setting("auto")
    overlap: float = _setting(0.25)
    blend: str = _setting("gaussian")
    pad: str = _setting("reflect")
    batch_size: int = _setting(16, resume=False)
    threshold: float = _setting(0.5)
    ni_label: float | None = _setting(None)
    prob_dtype: str | None = _setting(None)
    has_truth: bool = _setting(False)
    device: str = _setting("auto", resume=False)
    axes: str = _setting("z", before="z")
    tta: bool = _setting(False, before=False)
    refine: str | None = _setting(None, before=None)
    refine_threshold: float = _setting(0.05, before=0.05)
    phase: str | None = _setting(None, before=None)
    phases: dict | None = _setting(None, resume=False)  # recorded: None with phase="ni"
    precision: str = _setting("auto", before="fp32")
    backend: str = _setting("auto", before="torch")
    min_size: int | str = _setting(0, before=0)
    # Sharded outputs: the processing block (``chunks``) holds chunks of this shape.
    stored_chunks: tuple[int, int, int] | None = _setting(None, before=None)
    voxel_size: tuple[float, float, float] | None = _setting(None, record=False, resume=False)
    unit: str | None = _setting(None, record=False, resume=False)
    allow_missing_chunks: bool = _setting(False, record=False, resume=False)

    def __post_init__(self) -> None:
        _validate_tiling(self.tile, self.overlap, self.blend, self.pad, self.batch_size)
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold={self.threshold!r} must lie strictly between 0 and 1.")
        if self.prob_dtype not in (None, *PROB_DTYPES.values()):
            raise ValueError(
                f"prob_dtype={self.prob_dtype!r} must be None, 'uint8', 'float16' or 'float32'."
            )
        _validate_modes(self.axes, self.tta, self.refine, self.refine_threshold, self.phase)
        check_min_size(self.min_size)
        # One spelling per value, so that records and resume comparisons agree.
        for name, kind in _CANONICAL.items():
            value = getattr(self, name)
            if value is not None and not (name == "tile" and value == "auto"):
                object.__setattr__(self, name, kind(value))

    @property
    def deep(self) -> bool:
        """True when y- and x-slices are predicted too (fusion or refinement)."""
        return self.axes == "zyx" or self.refine is not None

    def resolved(self, **values: Any) -> SegmentSettings:
        """A copy with the values the run resolved (validated again).

        Examples
        --------
        >>> SegmentSettings().resolved(shape=(4, 64, 64), precision="fp32").precision
        'fp32'
        """
        return dataclasses.replace(self, **values)

    def record(self) -> dict[str, Any]:
        """The ``parameters`` recorded in the output (JSON-ready, in field order).

        Examples
        --------
        >>> record = SegmentSettings().resolved(shape=(4, 64, 64), chunks=(4, 64, 64)).record()
        >>> record["tile"], record["grid"]["tile"], record["shards"]
        ('auto', 96, None)
        """
        record: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            if not item.metadata["record"]:
                continue
            if item.name == "min_size":
                # The z-slices' tile grid: what tile="auto" chose.
                grid = plane_grid(self.shape[1:], self.tile, self.overlap, self.batch_size)
                record["grid"] = grid_record(grid)
            record[_key(item.name)] = self._recorded(item.name)
        return record

    def _recorded(self, name: str) -> Any:
        value = getattr(self, name)
        if name == "stored_chunks":
            if value is None:
                return None
            return {"shard": list(self.chunks), "stored_chunks": list(value)}
        if name == "phases":
            return value if self.phase is None else None
        if name in ("shape", "chunks"):
            return None if value is None else list(value)
        if name == "ni_label":
            return value.item() if hasattr(value, "item") else value
        return value

    def changed_since(self, previous: dict[str, Any]) -> list[str]:
        """The recorded settings that differ from an earlier run's ``parameters``.

        Examples
        --------
        >>> run = SegmentSettings().resolved(shape=(4, 64, 64), chunks=(4, 64, 64))
        >>> run.changed_since(run.record())
        []
        >>> run.resolved(threshold=0.4).changed_since(run.record())
        ['threshold']
        """
        record = self.record()
        changed = []
        for key, before in RESUME_DEFAULTS.items():
            earlier = previous.get(key, None if before is _NEW else before)
            if jsonable(earlier) != jsonable(record[key]):
                changed.append(key)
        return changed


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


_CANONICAL = {
    "shape": _ints,
    "chunks": _ints,
    "stored_chunks": _ints,
    "tile": int,
    "overlap": float,
    "batch_size": int,
    "threshold": float,
    "tta": bool,
    "refine_threshold": float,
}


def _key(name: str) -> str:
    return "shards" if name == "stored_chunks" else name


# Recorded settings that must match for resume=True, with what older runs did.
RESUME_DEFAULTS = {
    _key(item.name): item.metadata["before"]
    for item in dataclasses.fields(SegmentSettings)
    if item.metadata["resume"]
}
RESUME_KEYS = tuple(RESUME_DEFAULTS)


def prob_dtype(save_prob: bool | str | None) -> str | None:
    """The stored dtype of the probability for :func:`volseg.segment`'s ``save_prob``.

    Examples
    --------
    >>> prob_dtype(True), prob_dtype("float16"), prob_dtype(False)
    ('uint8', 'float16', None)
    """
    if save_prob not in (False, None, *PROB_DTYPES):
        raise ValueError(
            f"save_prob={save_prob!r} must be False, True, 'uint8', 'float16' or 'float32'."
        )
    return PROB_DTYPES.get(save_prob) if save_prob else None


def _validate_tiling(tile, overlap, blend, pad, batch_size) -> None:
    if tile != "auto" and (
        isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 32 or tile % 32
    ):
        raise ValueError(
            f"tile={tile!r} must be a multiple of 32 (the U-Net halves the size up to 5 "
            "times), for example 128 or 256, or 'auto'."
        )
    tiling.axis_grid(1, 128 if tile == "auto" else int(tile), overlap)  # validates overlap
    if blend not in tiling.BLEND_MODES:
        raise ValueError(f"blend={blend!r} is not known; use 'gaussian' or 'constant'.")
    if pad not in tiling.PAD_MODES:
        raise ValueError(f"pad={pad!r} is not known; use 'reflect' (or 'constant' for zeros).")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size < 1)
    ):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer, e.g. 16.")


def _validate_modes(axes, tta, refine, refine_threshold, phase) -> None:
    if axes not in AXES_CHOICES:
        raise ValueError(
            f"axes={axes!r} is not known; use 'z' (z-slices) or 'zyx' (average of the "
            "predictions on z-, y- and x-slices)."
        )
    if not isinstance(tta, (bool, np.bool_)):
        raise ValueError(f"tta={tta!r} must be True or False.")
    if refine not in REFINE_CHOICES:
        raise ValueError(f"refine={refine!r} is not known; use None or 'uncertain'.")
    if not 0.0 <= float(refine_threshold) < 1.0:
        raise ValueError(
            f"refine_threshold={refine_threshold!r} must be a fraction in [0, 1), e.g. 0.05."
        )
    if phase not in (None, "ni"):
        raise ValueError(
            f"phase={phase!r} is not known; use 'ni' to write only the Ni mask of a "
            "multi-class model (other phases are in the labels array)."
        )
