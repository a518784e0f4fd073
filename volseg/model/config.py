"""The model configuration: what a checkpoint's ``config`` holds, its defaults and its checks.

Plain data, no torch: ``import volseg.model.config`` is cheap, so command-line
defaults, settings objects and readers of a checkpoint's record can use it.
The single source of the network's defaults (encoder, depth, decoder widths,
tile, labels) is :func:`default_config`.

>>> from volseg.model.config import default_config, default_decoder_channels
>>> default_config()["decoder_channels"] == default_decoder_channels(5)
True
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from volseg.conventions import PHASES

__all__ = [
    "ARCHS",
    "CHECKPOINT_FORMAT",
    "DECODER_CHANNELS",
    "DEFAULT_ENCODER",
    "DEFAULT_ENCODER_DEPTH",
    "DEFAULT_PHASES",
    "DEFAULT_TILE",
    "BINARY_LABELS",
    "MAX_CONTEXT",
    "default_config",
    "default_decoder_channels",
    "model_context",
    "model_phases",
    "validate_config",
]

CHECKPOINT_FORMAT = "volseg.unet/1"
ARCHS = ("unet",)
# Phases of a three-class anode model and their label values: those volseg.synth writes.
DEFAULT_PHASES = PHASES
# The network's defaults: a U-Net with smp's decoder widths on the study's VGG16 encoder,
# trained on 128 x 128 tiles, scoring label 1 as Ni.
DEFAULT_ENCODER = "vgg16"
DEFAULT_ENCODER_DEPTH = 5
DECODER_CHANNELS = (256, 128, 64, 32, 16)
DEFAULT_TILE = 128
# Most neighbouring slices per side volseg.train builds a model for (33 input channels).
MAX_CONTEXT = 16
BINARY_LABELS = {"ni_label": 1, "names": {"0": "background", "1": "Ni"}}


def default_decoder_channels(encoder_depth: int = DEFAULT_ENCODER_DEPTH) -> list[int]:
    """The default decoder widths of a U-Net with ``encoder_depth`` levels.

    smp's ``[256, 128, 64, 32, 16]``, cut to one width per level.

    Examples
    --------
    >>> default_decoder_channels(3)
    [256, 128, 64]
    """
    return list(DECODER_CHANNELS[: int(encoder_depth)])


def default_config(**overrides: Any) -> dict[str, Any]:
    """The model configuration, with defaults for a binary Ni U-Net with a VGG16 encoder.

    Parameters
    ----------
    **overrides
        Any key of the configuration: ``arch``, ``encoder``, ``in_channels``,
        ``classes``, ``tile``, ``encoder_depth``, ``decoder_channels``,
        ``normalisation`` (dict with ``low``, ``high``), ``labels`` and ``context``
        (through-plane neighbours per side given as extra input channels, 2.5D;
        ``in_channels`` is then ``2 * context + 1``). With
        ``classes=3`` and no ``labels``, the phases are ``{"pore": 0, "ysz": 1,
        "ni": 2}``; a multi-class model always names its phases in
        ``labels={"phases": {name: label value}}`` and must include ``"ni"``.

    Returns
    -------
    dict
        A new configuration dictionary (JSON-serialisable).

    Examples
    --------
    >>> cfg = default_config(encoder="resnet18", normalisation={"low": 0.0, "high": 1.0})
    >>> cfg["encoder"], cfg["tile"], cfg["classes"]
    ('resnet18', 128, 1)
    """
    config: dict[str, Any] = {
        "arch": "unet",
        "encoder": DEFAULT_ENCODER,
        "in_channels": 1,
        "classes": 1,
        "tile": DEFAULT_TILE,
        "encoder_depth": DEFAULT_ENCODER_DEPTH,
        "decoder_channels": default_decoder_channels(DEFAULT_ENCODER_DEPTH),
        "normalisation": {"method": "fixed", "low": 0.0, "high": 1.0},
        "labels": copy.deepcopy(BINARY_LABELS),
        "context": 0,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(
            f"unknown model config key(s) {sorted(unknown)}; known keys are {sorted(config)}."
        )
    config.update(copy.deepcopy(overrides))
    if "in_channels" not in overrides:
        config["in_channels"] = 2 * int(config["context"]) + 1
    if config["classes"] == len(DEFAULT_PHASES) and "labels" not in overrides:
        config["labels"] = {"phases": dict(DEFAULT_PHASES)}
    validate_config(config)
    return config


def validate_config(config: dict[str, Any]) -> None:
    """Check a model configuration; a ValueError names the first key that is wrong.

    Parameters
    ----------
    config : dict
        A configuration from :func:`default_config` or a checkpoint.

    Raises
    ------
    ValueError
        Unknown arch, normalisation without ``low < high``, classes or phases that do
        not fit, a context that does not fit ``in_channels``, or decoder widths that
        are not one positive integer per encoder level.

    Examples
    --------
    >>> validate_config(default_config())
    >>> validate_config({**default_config(), "decoder_channels": [64, 32]})
    Traceback (most recent call last):
    ...
    ValueError: decoder_channels [64, 32] must have encoder_depth=5 entries.
    """
    if config.get("arch") not in ARCHS:
        raise ValueError(f"model arch {config.get('arch')!r} is not supported; use 'unet'.")
    norm = config.get("normalisation") or {}
    low, high = norm.get("low"), norm.get("high")
    if low is None or high is None or not float(high) > float(low):
        raise ValueError(
            f"model normalisation {norm!r} needs numbers low < high "
            "(for example the 0.5 and 99.5 percentiles of the training data)."
        )
    classes = config.get("classes")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"model classes={classes!r} must be 1 (binary Ni) or the phase count.")
    if classes > 1:
        phases = (config.get("labels") or {}).get("phases")
        if not isinstance(phases, dict) or len(phases) != classes:
            raise ValueError(
                f"a {classes}-class model needs labels={{'phases': {{name: value}}}} with "
                f"{classes} phases (e.g. {{'pore': 0, 'ysz': 1, 'ni': 2}}), got {phases!r}."
            )
        values = list(phases.values())
        if len(set(values)) != len(values) or not all(
            isinstance(v, int) and 0 <= v <= 255 for v in values
        ):
            raise ValueError(
                f"model phases {phases!r} need distinct integer label values in 0..255."
            )
        if "ni" not in phases:
            raise ValueError(
                f"model phases {phases!r} must include 'ni' (the phase volseg scores)."
            )
    context = config.get("context", 0)
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(f"model context={context!r} must be a whole number of slices >= 0.")
    if context and int(config.get("in_channels", 1)) != 2 * context + 1:
        raise ValueError(
            f"model in_channels={config.get('in_channels')!r} does not fit context={context}: "
            f"a slice and {context} neighbours per side are {2 * context + 1} channels."
        )
    depth = int(config["encoder_depth"])
    channels = config["decoder_channels"]
    if not all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in channels
    ):
        raise ValueError(
            f"decoder_channels {list(channels)} must be positive integers, one per "
            "decoder level, e.g. [256, 128, 64, 32, 16]."
        )
    if len(config["decoder_channels"]) != depth:
        raise ValueError(
            f"decoder_channels {config['decoder_channels']} must have "
            f"encoder_depth={depth} entries."
        )


def model_phases(config: dict[str, Any]) -> dict[str, int] | None:
    """The phases of a multi-class model as ``{name: label value}``; None for a binary one.

    Class ``i`` of the network is the ``i``-th entry.

    Examples
    --------
    >>> cfg = default_config(classes=3, labels={"phases": {"pore": 0, "ysz": 1, "ni": 2}})
    >>> model_phases(cfg), model_phases(default_config())
    ({'pore': 0, 'ysz': 1, 'ni': 2}, None)
    """
    if int(config.get("classes", 1)) == 1:
        return None
    return {str(k): int(v) for k, v in config["labels"]["phases"].items()}


def model_context(config: dict[str, Any]) -> int:
    """Through-plane context of a model: neighbouring slices per side (0: plain 2D).

    Checkpoints written before the setting existed have none.

    Examples
    --------
    >>> model_context(default_config(context=2)), default_config(context=2)["in_channels"]
    (2, 5)
    >>> model_context({"in_channels": 1})
    0
    """
    return int(config.get("context", 0))
