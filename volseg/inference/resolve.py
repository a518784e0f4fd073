"""What a run resolves before its first block: the devices, the model, where outputs live.

The device of this process, the device recorded for the tasks and the kind of
device that runs them (a cluster's workers resolve ``"auto"`` themselves); the
checkpoint, loaded once here so that a bad file is refused before any task runs;
and what a cluster cannot reach (a model or an output held in this process' memory).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .. import io as vio
from .. import model as vmodel
from .execute import cluster_has_gpus
from .plan import READ_AMPLIFICATION_WARNING, read_amplification

__all__ = ["devices", "explain_reads", "refuse_local_only", "resolve_model"]

log = logging.getLogger(__name__)


def devices(device: str, client: Any) -> tuple[torch.device, str, torch.device]:
    """(device of this process, device recorded for the tasks, kind of device that runs them).

    Examples
    --------
    >>> devices("cpu", None)
    (device(type='cpu'), 'cpu', device(type='cpu'))
    """
    if client is None:
        torch_device = vmodel.resolve_device(device)
        return torch_device, str(torch_device), torch_device
    # Each worker resolves the device itself ("auto" = its own GPU, if it has one).
    vmodel.parse_device(device)
    # Backend and precision are resolved here, for the kind of device workers use.
    gpus = str(device).startswith("cuda") or (device == "auto" and cluster_has_gpus(client))
    return torch.device("cpu"), str(device), torch.device("cuda" if gpus else "cpu")


def refuse_local_only(loaded: Any, out: Any, scan: Any) -> None:
    """Refuse what a cluster's workers cannot reach: an in-memory model or output.

    Examples
    --------
    >>> refuse_local_only(None, "out.zarr", "scan.zarr")
    >>> from volseg import io as vio
    >>> refuse_local_only(None, vio.memory_store(), "scan.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: with a cluster, out must be a path (or store) that every worker can reach, ...
    """
    if loaded is not None:
        raise ValueError(
            "model given as a loaded object cannot be shipped to a cluster; pass the "
            "checkpoint path so that every worker loads it once."
        )
    if (out is None and vio.default_output_path(scan) is None) or vio.in_memory(out):
        raise ValueError(
            "with a cluster, out must be a path (or store) that every worker can reach, "
            "not an in-memory store."
        )


def resolve_model(model: Any, device: str) -> tuple[str, str, dict, Any]:
    """(path, sha256, config, in-memory LoadedModel or None) for ``model``.

    Examples
    --------
    >>> resolve_model(3, "cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: model=int is not a checkpoint path or volseg LoadedModel; pass the path of ...
    """
    if isinstance(model, vmodel.LoadedModel):
        return model.path, model.sha256, model.config, model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model={type(model).__name__} is not a checkpoint path or volseg LoadedModel; "
            "pass the path of a file written by volseg.train."
        )
    # Load once here: validates the file (format, weights_only) before any task runs.
    loaded = vmodel.cached_model(model, None, device)
    return str(model), loaded.sha256, loaded.config, None


def explain_reads(volume: vio.Scan, settings: Any, context: int) -> None:
    """Log what the blocks will read beyond what they write, when it is a lot.

    Blocks thinner than the stored chunks decode whole chunks for a few slices
    (:func:`volseg.inference.plan.read_amplification`; told at INFO level, since the
    network usually dominates on a CPU: benchmarks/context_io.py), and a 2.5D model on
    a scan thinner than its context sees mirrored copies for the missing neighbours
    (a warning).

    Examples
    --------
    >>> import numpy as np
    >>> from volseg.inference.settings import SegmentSettings
    >>> settings = SegmentSettings().resolved(shape=(1, 64, 64), chunks=(1, 64, 64))
    >>> explain_reads(vio.open_scan(np.zeros((1, 64, 64), np.float32)), settings, 1)
    """
    if volume.direct and settings.axes == "z":
        depth, stored = volume.shape[0], volume.chunks[0]
        decoded = read_amplification(depth, settings.chunks[0], stored, context)
        if decoded >= READ_AMPLIFICATION_WARNING:
            # The thinnest whole multiple of the stored chunks (or the whole depth) that
            # decodes under 1.5 slices per slice.
            for deeper in sorted({min(d, depth) for d in range(stored, depth + stored, stored)}):
                amplified = read_amplification(depth, deeper, stored, context)
                if amplified < 1.5:
                    break
            log.info(
                "blocks of %d slices in stored chunks %d deep decode %.1f slices per slice "
                "written; chunks=(%d, ...) would decode %.2f (more memory per task)",
                settings.chunks[0], stored, decoded, deeper, amplified,
            )  # fmt: skip
    if context and volume.shape[0] < 2 * context + 1:
        log.warning(
            "%s has %d slice(s) but the model sees each slice with %d neighbour(s) per side: "
            "the missing ones are mirrored copies, unlike in training",
            volume.source,
            volume.shape[0],
            context,
        )
