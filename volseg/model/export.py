"""The network exported to ONNX, once per checkpoint, for the openvino/onnxruntime backends.

The export is cached beside the checkpoint as ``<checkpoint>.<sha256[:16]>.onnx``
(written atomically) and reused while the checkpoint is unchanged; a cached file
that a runtime cannot load (an interrupted copy, a full disk) is deleted and the
network exported afresh (:func:`load_onnx`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoint import LoadedModel

__all__ = ["ONNX_OPSET", "export_bytes", "export_onnx", "load_onnx", "onnx_cache_path"]

log = logging.getLogger(__name__)

ONNX_OPSET = 17


def onnx_cache_path(loaded: LoadedModel) -> Path | None:
    """Where the ONNX export of a checkpoint is cached: beside it, named by its digest.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        A network loaded from a file (``path`` and ``sha256`` set).

    Returns
    -------
    pathlib.Path or None
        ``<checkpoint>.<sha256[:16]>.onnx``; None for a model given in memory.

    Examples
    --------
    >>> from volseg.model import LoadedModel
    >>> onnx_cache_path(LoadedModel(None, {}, sha256="ab" * 32, path="runs/ni.pt"))
    PosixPath('runs/ni.pt.abababababababab.onnx')
    >>> onnx_cache_path(LoadedModel(None, {})) is None
    True
    """
    if not loaded.path or not loaded.sha256:
        return None
    checkpoint = Path(loaded.path)
    return checkpoint.with_name(f"{checkpoint.name}.{loaded.sha256[:16]}.onnx")


def export_bytes(loaded: LoadedModel) -> bytes:
    """The network as an ONNX model in memory (dynamic batch and tile size).

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The network and its configuration (``in_channels``, ``tile``).

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        The network cannot be exported to ONNX.

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> len(export_bytes(LoadedModel(build_unet(cfg), cfg))) > 1000
    True
    """
    config = loaded.config
    network = loaded.network
    size = max(64, int(config.get("tile", 128)))
    example = torch.zeros(1, int(config.get("in_channels", 1)), size, size)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    device = next(network.parameters()).device
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                example.to(device),
                buffer,
                input_names=["tiles"],
                output_names=["logits"],
                dynamic_axes={"tiles": axes, "logits": axes},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    except Exception as exc:
        name = loaded.path or "given in memory"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model {name!r} cannot be exported to ONNX for the openvino/onnxruntime "
            f"backends ({type(exc).__name__}: {first}); use backend='torch'."
        ) from exc
    return buffer.getvalue()


def export_onnx(loaded: LoadedModel) -> str | bytes:
    """The network of a checkpoint as ONNX (dynamic batch and tile size), exported once.

    The file is cached beside the checkpoint as ``<checkpoint>.<sha256[:16]>.onnx``
    (written atomically, so workers exporting at the same time do not clash) and
    reused while the checkpoint is unchanged; where that folder is not writable, or
    the model was given in memory, the export stays in memory.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The network (on the CPU) and its configuration (``in_channels``, ``tile``).

    Returns
    -------
    str or bytes
        The path of the cached file, or the ONNX model itself.

    Raises
    ------
    ValueError
        The network cannot be exported to ONNX.

    Examples
    --------
    >>> from volseg.model import build_unet, default_config, save_checkpoint, load_checkpoint
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "unet.pt")
    >>> onnx_file = export_onnx(load_checkpoint(path))
    >>> Path(onnx_file).name.startswith("unet.pt.") and onnx_file.endswith(".onnx")
    True
    """
    target = onnx_cache_path(loaded)
    if target is not None and target.is_file():
        return str(target)
    exported = export_bytes(loaded)
    if target is None:
        return exported
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        partial.write_bytes(exported)
        os.replace(partial, target)
    except OSError as exc:
        log.info("ONNX export kept in memory (%s is not writable: %s)", target.parent, exc)
        with contextlib.suppress(OSError):
            partial.unlink()
        return exported
    return str(target)


def load_onnx(loaded: LoadedModel, build: Any, backend: str) -> Any:
    """``build(source)`` on the ONNX export; a cached file that fails is exported again once.

    A corrupt or truncated cache file (an interrupted copy, a full disk) would
    otherwise fail every run the same way: it is deleted, with a warning, and the
    network exported afresh; if that fails too, a ValueError names the file.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The network and its configuration.
    build : callable
        Turns the export (a file path or the ONNX bytes) into the runtime's model.
    backend : str
        The runtime's name, for the messages.

    Returns
    -------
    any
        What ``build`` returns.

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> load_onnx(LoadedModel(build_unet(cfg), cfg), len, "a byte counter") > 1000
    True
    """
    source = export_onnx(loaded)
    if not isinstance(source, str):
        return build(source)
    try:
        return build(source)
    except Exception as exc:
        log.warning(
            "cached ONNX file %s cannot be loaded by %s (%s: %s); deleting it and exporting "
            "the network again",
            source,
            backend,
            type(exc).__name__,
            _first_line(exc),
        )
        with contextlib.suppress(OSError):
            Path(source).unlink()
    source = export_onnx(loaded)
    try:
        return build(source)
    except Exception as exc:
        name = source if isinstance(source, str) else onnx_cache_path(loaded)
        raise ValueError(
            f"the ONNX export {str(name)!r} of model {loaded.path!r} cannot be loaded by "
            f"{backend}, even freshly exported ({type(exc).__name__}: {_first_line(exc)}); "
            "delete the file and retry, or use backend='torch'."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
