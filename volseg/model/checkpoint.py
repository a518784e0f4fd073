"""Checkpoints: save, update and load a volseg model file, with precise refusals.

A checkpoint is a plain dictionary written with :func:`torch.save`::

    {"format": "volseg.unet/1",
     "config": {"arch", "encoder", "in_channels", "classes", "tile",
                "encoder_depth", "decoder_channels", "normalisation", "labels"},
     "state_dict": {...},
     "training": {...}}

and is always read with ``torch.load(..., weights_only=True)``, so a model file
can never run code. Intensity normalisation is part of the model: the same fixed
``(low, high)`` grey values (for example the training data's 0.5 / 99.5
percentiles) map every tile of every scan to ``[0, 1]``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import CHECKPOINT_FORMAT, validate_config
from .device import resolve_device
from .network import build_unet

__all__ = [
    "LoadedModel",
    "file_sha256",
    "load_checkpoint",
    "save_checkpoint",
    "update_training",
]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB pieces.

    Parameters
    ----------
    path : path
        The file (a checkpoint: its digest identifies the model in output attrs).

    Returns
    -------
    str
        64 hexadecimal digits.

    Examples
    --------
    >>> path = getfixture("tmp_path") / "hello.txt"
    >>> _ = path.write_bytes(b"hello")
    >>> file_sha256(path)
    '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def save_checkpoint(
    network: torch.nn.Module,
    config: dict[str, Any],
    path: str | os.PathLike,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a volseg checkpoint.

    Parameters
    ----------
    network : torch.nn.Module
        The network built by :func:`build_unet` from ``config``.
    config : dict
        Its configuration, including the intensity normalisation.
    path : path
        Output file.
    training : dict, optional
        Training record (history, validation figures); plain Python values.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> from volseg.model import default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> network = build_unet(cfg)
    >>> path = save_checkpoint(network, cfg, getfixture("tmp_path") / "unet.pt")
    >>> path.name, torch.load(path, weights_only=True)["format"]
    ('unet.pt', 'volseg.unet/1')
    >>> save_checkpoint(network, cfg, path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: model file '.../unet.pt' already exists; pass overwrite=True to replace it.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"model file {str(path)!r} already exists; pass overwrite=True to replace it."
        )
    validate_config(config)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": copy.deepcopy(config),
        "state_dict": state,
        "training": copy.deepcopy(training or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written model under the real name
    return path


def update_training(path: str | os.PathLike, values: dict[str, Any]) -> None:
    """Update entries of a checkpoint's training record in place (atomically).

    Parameters
    ----------
    path : path
        A checkpoint written by :func:`save_checkpoint`.
    values : dict
        Entries to add or replace (plain Python values); the weights are unchanged.

    Examples
    --------
    >>> from volseg.model import default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "unet.pt",
    ...                        training={"epochs": 3})
    >>> update_training(path, {"note": "fine-tuned on scan A"})
    >>> load_checkpoint(path).training
    {'epochs': 3, 'note': 'fine-tuned on scan A'}
    """
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload.setdefault("training", {}).update(copy.deepcopy(values))
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)


@dataclass
class LoadedModel:
    """A network loaded from a checkpoint, with its configuration.

    Attributes
    ----------
    network : torch.nn.Module
        The U-Net, in eval mode, on ``device``.
    config : dict
        Architecture, tile, normalisation and label mapping.
    sha256 : str
        Digest of the checkpoint file ("" when built in memory).
    path : str
        The checkpoint file.
    device : torch.device
        Where the network lives.
    training : dict
        The training record stored in the checkpoint.

    Examples
    --------
    A network built in memory (no file, so no digest), ready for :class:`TilePredictor`
    or ``volseg.segment(scan, model=loaded)``:

    >>> from volseg.model import default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> loaded = LoadedModel(build_unet(cfg), cfg)
    >>> loaded.device, loaded.sha256, loaded.config["encoder"]
    (device(type='cpu'), '', 'resnet18')
    """

    network: torch.nn.Module
    config: dict[str, Any]
    sha256: str = ""
    path: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    training: dict[str, Any] = field(default_factory=dict)


def _not_ours(path: Path, reason: str) -> ValueError:
    return ValueError(
        f"model file {str(path)!r} is not a volseg checkpoint ({reason}); "
        "use a file written by volseg.train or volseg.model.save_checkpoint."
    )


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in old formats, a pickle starting with 0x80)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint safely (``weights_only=True``) and build its network.

    Parameters
    ----------
    path : path
        Checkpoint written by :func:`save_checkpoint` or :func:`volseg.train`.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:i"``.

    Returns
    -------
    LoadedModel

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a volseg checkpoint, or cannot be loaded safely.

    Examples
    --------
    >>> from volseg.model import default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "unet.pt")
    >>> loaded = load_checkpoint(path, device="cpu")
    >>> loaded.config == cfg, loaded.device, loaded.sha256 == file_sha256(path)
    (True, device(type='cpu'), True)
    """
    path = Path(path)
    payload = _read_payload(path)
    _check_payload(path, payload)
    network = _build_network(path, payload)
    torch_device = resolve_device(device)
    # channels_last: oneDNN (CPU) and cuDNN tensor cores run the convolutions faster in NHWC.
    network.to(torch_device, memory_format=torch.channels_last).eval()
    return LoadedModel(
        network=network,
        config=payload["config"],
        sha256=file_sha256(path),
        path=str(path),
        device=torch_device,
        training=payload.get("training", {}),
    )


def _read_payload(path: Path) -> dict[str, Any]:
    """The checkpoint's dictionary, read with ``weights_only=True``; clear errors otherwise."""
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {str(path)!r} does not exist; check the path, or train one with "
            "volseg.train / `volseg train`."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch_file(path):
            raise _not_ours(path, "it is not a file written by torch.save") from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _not_ours(
            path,
            f"it holds objects that cannot be loaded safely with weights_only=True: {first_line}",
        ) from exc
    except Exception as exc:
        raise _not_ours(path, f"torch could not read it: {exc}") from exc
    return payload


def _check_payload(path: Path, payload: Any) -> None:
    """Refuse a payload that is not a volseg checkpoint or holds weights that are not finite."""
    if not isinstance(payload, dict) or "format" not in payload:
        raise _not_ours(path, "no 'format' entry")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise _not_ours(path, f"format {payload['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise _not_ours(path, f"no {key!r} entry")
    config = payload["config"]
    if not isinstance(config, dict):
        raise _not_ours(path, f"its 'config' is a {type(config).__name__}, not a mapping")
    if not isinstance(payload["state_dict"], dict):
        raise _not_ours(path, "its 'state_dict' is not a mapping of tensors")
    for name, tensor in payload["state_dict"].items():
        if (
            torch.is_tensor(tensor)
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            raise ValueError(
                f"model file {str(path)!r} holds weights that are not finite (NaN or inf in "
                f"{name!r}); training diverged or the file is damaged: use an earlier "
                "checkpoint or train again (e.g. with a lower --lr)."
            )


def _build_network(path: Path, payload: dict[str, Any]) -> torch.nn.Module:
    """The network of the checkpoint's config, with its weights (on the CPU)."""
    try:
        network = build_unet(payload["config"])
    except (KeyError, TypeError) as exc:
        raise _not_ours(path, f"its config is incomplete ({type(exc).__name__}: {exc})") from exc
    try:
        network.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise _not_ours(path, f"its weights do not fit its config: {exc}") from exc
    return network
