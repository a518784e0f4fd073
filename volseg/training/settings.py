"""The settings of a training run: one frozen, self-validating object (no torch).

:class:`TrainSettings` holds every parameter of :func:`volseg.train` apart from the
data and the output path. It checks itself when built (the messages name the
parameter and a valid value), turns into the record stored with the checkpoint
(:meth:`TrainSettings.to_record`) and back (:meth:`TrainSettings.from_record`), and
takes over the schedule of an unfinished run when training resumes from its state
file (:meth:`TrainSettings.resumed`).

>>> settings = TrainSettings(encoder="resnet18", tile=64, max_time="1h30m")
>>> settings.tile, settings.time_budget
(64, 5400.0)
>>> TrainSettings(tile=100)
Traceback (most recent call last):
...
ValueError: tile=100 must be a multiple of 32, for example 128.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..model.config import DEFAULT_ENCODER, DEFAULT_ENCODER_DEPTH, DEFAULT_TILE, MAX_CONTEXT

__all__ = [
    "BINARY_LOSSES",
    "LOSSES",
    "MULTICLASS_LOSSES",
    "SMALL_BATCH",
    "TrainSettings",
    "check_phases",
    "loss_for",
    "parse_duration",
]

BINARY_LOSSES = ("bce", "dice", "bce+dice")
MULTICLASS_LOSSES = ("ce", "dice", "ce+dice")
LOSSES = tuple(dict.fromkeys(BINARY_LOSSES + MULTICLASS_LOSSES))
# Batches smaller than this train with BatchNorm statistics frozen after the warm-up.
SMALL_BATCH = 8

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")


def parse_duration(value: Any) -> float | None:
    """Seconds from ``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"3600"`` or a number.

    Parameters
    ----------
    value : str, int, float or None
        A duration; a bare number counts seconds. None means no limit.

    Returns
    -------
    float or None
        Seconds (> 0), or None.

    Examples
    --------
    >>> parse_duration("2h"), parse_duration("90m"), parse_duration("1h30m"), parse_duration(45)
    (7200.0, 5400.0, 5400.0, 45.0)
    >>> parse_duration("two hours")
    Traceback (most recent call last):
    ...
    ValueError: max_time='two hours' is not a duration; write e.g. '2h', '90m', '1h30m' or seconds.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"max_time={value!r} is not a duration; give e.g. '2h' or seconds.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(a + b for a, b in parts) != text:
                raise ValueError(
                    f"max_time={value!r} is not a duration; write e.g. '2h', '90m', '1h30m' "
                    "or seconds."
                ) from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"max_time={value!r} must be a positive duration, e.g. '2h'.")
    return seconds


@dataclass(frozen=True)
class TrainSettings:
    """Every parameter of a training run, checked when built.

    The fields are the parameters of :func:`volseg.train` of the same name, with
    the same defaults and meaning (see there); the data (``images``, ``labels``)
    and the checkpoint path (``out``) are not settings. ``train(..., settings=s)``
    runs with them.

    Examples
    --------
    >>> settings = TrainSettings(encoder="resnet18", epochs=5, classes=3)
    >>> settings.epochs, settings.loss, settings.monitor
    (5, None, 'val_ni_iou')
    >>> TrainSettings(classes=3, phases={"pore": 0, "ni": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: phases={'pore': 0, 'ni': 2} must map 3 phase names, including 'ni', to ...
    """

    encoder: str = DEFAULT_ENCODER
    encoder_weights: str | Path | None = None
    freeze_encoder: bool = False
    ni_label: float | None = None
    tile: int = DEFAULT_TILE
    batch_size: int = 16
    epochs: int = 100
    lr: float = 1e-3
    loss: str | None = None
    augment: bool = True
    val_fraction: float = 0.2
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    steps_per_epoch: int | None = None
    val_gap: int = 2
    val_tiles: int = 256
    encoder_depth: int = DEFAULT_ENCODER_DEPTH
    decoder_channels: list[int] | None = None
    resume_from: str | Path | None = None
    overwrite: bool = False
    classes: int = 1
    phases: dict[str, int] | None = None
    ignore_label: float | None = None
    weight_decay: float = 1e-4
    warmup: float = 0.05
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    max_time: str | float | None = None
    precision: str = "fp32"
    context: int | str = "auto"
    labelled_slices: Any = None

    def __post_init__(self) -> None:
        _validate(
            self.tile,
            self.batch_size,
            self.epochs,
            self.lr,
            self.loss,
            self.val_fraction,
            self.patience,
        )
        _validate_split(self.val_gap, self.val_tiles)
        _validate_stability(self.weight_decay, self.warmup, self.grad_clip, self.ema_decay)
        parse_duration(self.max_time)
        context = self.context
        if not (isinstance(context, str) and context == "auto") and (
            isinstance(context, bool)
            or not isinstance(context, int)
            or not 0 <= context <= MAX_CONTEXT
        ):
            raise ValueError(
                f"context={context!r} must be 'auto' or a whole number of neighbouring slices "
                f"from 0 to {MAX_CONTEXT}, e.g. 1 (0: plain 2D slices)."
            )
        if self.phases is not None and self.classes == 1:
            raise ValueError(
                f"phases={self.phases!r} needs a multi-class model: pass "
                f"classes={len(self.phases)} too."
            )
        if self.phases is not None:
            check_phases(self.phases, self.classes)
        steps = self.steps_per_epoch
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1
        ):
            raise ValueError(
                f"steps_per_epoch={steps!r} must be a positive integer (batches per "
                "epoch), or None for enough to cover the training slices once."
            )

    @property
    def time_budget(self) -> float | None:
        """``max_time`` in seconds (None: no limit)."""
        return parse_duration(self.max_time)

    @property
    def monitor(self) -> str:
        """The score early stopping follows: Ni IoU (binary) or the mean IoU (phases)."""
        return "val_ni_iou" if self.phases is None else "val_mean_iou"

    @property
    def small_batch(self) -> bool:
        """Whether BatchNorm statistics are frozen after the warm-up (small batches)."""
        return self.batch_size < SMALL_BATCH

    def to_record(self, images: list[str], split: list[dict], schedule: dict) -> dict:
        """The training record stored in the checkpoint.

        Parameters
        ----------
        images : list of str
            The training images' names.
        split : list of dict
            Each volume's training/validation slices.
        schedule : dict
            The learning-rate schedule (see :func:`volseg.training.optim.warmup_cosine`).

        Examples
        --------
        >>> record = TrainSettings(batch_size=4, max_time="2h").to_record(["a"], [{}], {})
        >>> record["batch_size"], record["batchnorm"], record["max_time"]
        (4, 'frozen after warm-up', 7200.0)
        >>> TrainSettings.from_record(record).batch_size
        4
        """
        return {
            "images": images,
            "ni_label": self.ni_label,
            "ignore_label": self.ignore_label,
            "split": split,
            "encoder_weights": str(self.encoder_weights) if self.encoder_weights else None,
            "freeze_encoder": self.freeze_encoder,
            "loss": self.loss,
            "monitor": self.monitor,
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "seed": self.seed,
            "optimiser": {"name": "AdamW", "lr": self.lr, "weight_decay": self.weight_decay},
            "schedule": schedule,
            "grad_clip": self.grad_clip,
            "ema_decay": self.ema_decay,
            "batchnorm": "frozen after warm-up" if self.small_batch else "batch statistics",
            "max_time": self.time_budget,
            "precision": self.precision,
        }

    @classmethod
    def from_record(cls, record: dict) -> TrainSettings:
        """The settings recorded in a checkpoint (:meth:`to_record`); absent ones default.

        Examples
        --------
        >>> TrainSettings.from_record({"loss": "dice", "optimiser": {"lr": 0.01}}).lr
        0.01
        >>> TrainSettings.from_record({}) == TrainSettings()
        True
        """
        values = {field.name: record[field.name] for field in fields(cls) if field.name in record}
        optimiser = record.get("optimiser") or {}
        values.update(
            {name: optimiser[name] for name in ("lr", "weight_decay") if name in optimiser}
        )
        return cls(**values)

    def resumed(self, state: dict) -> TrainSettings:
        """These settings continuing the schedule of an unfinished run's training state.

        The state file (:func:`volseg.training.state.state_path`) decides the batch
        size, the steps per epoch and the peak learning rate, and how many epochs
        remain of its planned steps.

        Examples
        --------
        >>> schedule = {"steps_per_epoch": 4, "total_steps": 40, "step": 30, "lr": 0.01}
        >>> resumed = TrainSettings().resumed({"schedule": schedule, "batch_size": 8})
        >>> resumed.epochs, resumed.steps_per_epoch, resumed.batch_size, resumed.lr
        (3, 4, 8, 0.01)
        """
        schedule = state["schedule"]
        steps_per_epoch = int(schedule["steps_per_epoch"])
        remaining = int(schedule["total_steps"]) - int(schedule["step"])
        return replace(
            self,
            steps_per_epoch=steps_per_epoch,
            batch_size=int(state["batch_size"]),
            epochs=math.ceil(remaining / steps_per_epoch),
            lr=float(schedule["lr"]),
        )


def loss_for(loss: str | None, classes: Any) -> str:
    """The loss to use: the given one if it fits the class count, else the default.

    Examples
    --------
    >>> loss_for(None, 1), loss_for(None, 3), loss_for("dice", 3)
    ('bce+dice', 'ce+dice', 'dice')
    >>> loss_for("bce", 3)
    Traceback (most recent call last):
    ...
    ValueError: loss='bce' does not fit classes=3; use one of ce, dice, ce+dice.
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1 or classes == 2:
        raise ValueError(
            f"classes={classes!r} must be 1 (binary Ni, sigmoid) or the number of phases, "
            "3 or more (e.g. 3 for pore, YSZ, Ni); a two-phase model is classes=1."
        )
    if loss is None:
        return "bce+dice" if classes == 1 else "ce+dice"
    allowed = BINARY_LOSSES if classes == 1 else MULTICLASS_LOSSES
    if loss not in allowed:
        raise ValueError(
            f"loss={loss!r} does not fit classes={classes}; use one of {', '.join(allowed)}."
        )
    return loss


def check_phases(phases: Any, classes: int) -> dict[str, int]:
    """``phases`` as ``{name: int label}`` if it names ``classes`` phases including "ni".

    Examples
    --------
    >>> check_phases({"pore": 0, "ysz": 1.0, "ni": 2}, 3)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    """
    if not isinstance(phases, dict) or len(phases) != classes or "ni" not in phases:
        raise ValueError(
            f"phases={phases!r} must map {classes} phase names, including 'ni', to their "
            "label values, e.g. {'pore': 0, 'ysz': 1, 'ni': 2}."
        )
    return {str(k): int(v) for k, v in phases.items()}


def _validate(tile, batch_size, epochs, lr, loss, val_fraction, patience):
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 32 or tile % 32:
        raise ValueError(f"tile={tile!r} must be a multiple of 32, for example 128.")
    for name, value in (("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be positive, e.g. 1e-3.")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; use one of {', '.join(LOSSES)}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must lie in (0, 1), e.g. 0.2.")
    if patience < 1:
        raise ValueError(f"patience={patience!r} must be at least 1 epoch.")


def _validate_split(val_gap: int, val_tiles: int) -> None:
    if val_gap < 0:
        raise ValueError(f"val_gap={val_gap!r} must be >= 0 slices.")
    if val_tiles < 1:
        raise ValueError(f"val_tiles={val_tiles!r} must be at least 1.")


def _validate_stability(weight_decay, warmup, grad_clip, ema_decay) -> None:
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0, e.g. 1e-4.")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup={warmup!r} is a share of the steps in [0, 1), e.g. 0.05.")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip!r} must be positive (e.g. 1.0) or None.")
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay={ema_decay!r} must be in [0, 1) (e.g. 0.999) or None.")
