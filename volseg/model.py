"""The U-Net: build from a config, save and load checkpoints, choose a device, predict.

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
import logging
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .conventions import PHASES

__all__ = [
    "CHECKPOINT_FORMAT",
    "LoadedModel",
    "TilePredictor",
    "build_unet",
    "cached_model",
    "default_config",
    "file_sha256",
    "fit_normalisation",
    "load_checkpoint",
    "model_context",
    "model_phases",
    "normalise",
    "parse_device",
    "resolve_device",
    "save_checkpoint",
    "update_training",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "volseg.unet/1"
ARCHS = ("unet",)
# Phases of a three-class anode model and their label values: those volseg.synth writes.
DEFAULT_PHASES = PHASES


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
        "encoder": "vgg16",
        "in_channels": 1,
        "classes": 1,
        "tile": 128,
        "encoder_depth": 5,
        "decoder_channels": [256, 128, 64, 32, 16],
        "normalisation": {"method": "fixed", "low": 0.0, "high": 1.0},
        "labels": {"ni_label": 1, "names": {"0": "background", "1": "Ni"}},
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
    _validate_config(config)
    return config


def _validate_config(config: dict[str, Any]) -> None:
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


def _encoder_names() -> list[str]:
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def build_unet(
    config: dict[str, Any], encoder_weights: str | os.PathLike | None = None
) -> torch.nn.Module:
    """Build the segmentation network described by ``config``.

    Parameters
    ----------
    config : dict
        A configuration from :func:`default_config` or a checkpoint.
    encoder_weights : None, "imagenet" or path
        ``None``: random initialisation. ``"imagenet"``: the encoder's ImageNet
        weights, downloaded by segmentation-models-pytorch (needs the network).
        A path: a local file with the encoder's state dict (for example
        torchvision's ``vgg16-397923af.pth``); classifier weights in it are
        ignored and a 3-channel first convolution is summed to one channel.

    Returns
    -------
    torch.nn.Module
        ``segmentation_models_pytorch.Unet`` in eval mode.

    Examples
    --------
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> net = build_unet(cfg)
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
    """
    import segmentation_models_pytorch as smp

    _validate_config(config)
    encoder = config["encoder"]
    if encoder not in _encoder_names() and not str(encoder).startswith("tu-"):
        raise ValueError(
            f"encoder {encoder!r} is not a segmentation-models-pytorch encoder; "
            "use for example 'vgg16', 'resnet18', 'resnet50' or a 'tu-<timm name>'."
        )
    weights_file = None
    smp_weights = None
    if encoder_weights is not None:
        if str(encoder_weights) == "imagenet":
            smp_weights = "imagenet"
        else:
            weights_file = Path(encoder_weights)
            if not weights_file.is_file():
                raise FileNotFoundError(
                    f"encoder weights file {str(weights_file)!r} does not exist; "
                    "give a local encoder state dict, 'imagenet', or None."
                )
    net = smp.Unet(
        encoder_name=encoder,
        encoder_weights=smp_weights,
        encoder_depth=int(config["encoder_depth"]),
        decoder_channels=list(config["decoder_channels"]),
        in_channels=int(config["in_channels"]),
        classes=int(config["classes"]),
    )
    if weights_file is not None:
        _load_encoder_file(net.encoder, weights_file)
    return net.eval()


def _load_encoder_file(encoder: torch.nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"encoder weights file {str(path)!r} could not be read as a state dict ({exc})."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = encoder.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc."))}
    for key, value in state.items():
        target = own.get(key)
        if (
            target is not None
            and value.ndim == 4
            and target.ndim == 4
            and value.shape[1] != target.shape[1]
            and target.shape[1] == 1
        ):
            state[key] = value.sum(dim=1, keepdim=True)  # RGB first conv -> grey
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"encoder weights file {str(path)!r} does not fit encoder "
            f"({len(missing)} missing keys e.g. {missing[:3]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:3]})."
        )
    encoder.load_state_dict(state)


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
    _validate_config(config)
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
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "unet.pt")
    >>> loaded = load_checkpoint(path, device="cpu")
    >>> loaded.config == cfg, loaded.device, loaded.sha256 == file_sha256(path)
    (True, device(type='cpu'), True)
    """
    path = Path(path)
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
    try:
        network = build_unet(config)
    except (KeyError, TypeError) as exc:
        raise _not_ours(path, f"its config is incomplete ({type(exc).__name__}: {exc})") from exc
    try:
        network.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise _not_ours(path, f"its weights do not fit its config: {exc}") from exc
    torch_device = resolve_device(device)
    # channels_last: oneDNN (CPU) and cuDNN tensor cores run the convolutions faster in NHWC.
    network.to(torch_device, memory_format=torch.channels_last).eval()
    return LoadedModel(
        network=network,
        config=config,
        sha256=file_sha256(path),
        path=str(path),
        device=torch_device,
        training=payload.get("training", {}),
    )


def parse_device(device: str | torch.device) -> None:
    """Check that ``device`` is a device name, without asking whether it exists here.

    Used before work is sent to cluster workers, which resolve the device themselves
    (see :func:`resolve_device`).

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:i"``.

    Raises
    ------
    ValueError
        Not a device name, or a device type volseg does not run on.

    Examples
    --------
    >>> parse_device("cuda:1")  # a valid name, also on a machine without GPUs
    >>> parse_device("gpu0")
    Traceback (most recent call last):
    ...
    ValueError: device 'gpu0' is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:0'.
    """
    if isinstance(device, torch.device) or device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:0'."
        ) from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda[:i]'.")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:i"`` into a :class:`torch.device`.

    ``"auto"`` picks the first CUDA device when one is visible, else the CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        chosen = device
    elif device == "auto":
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device {device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:0'."
            ) from exc
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} asked for CUDA but no GPU is visible; use --device cpu "
                "(device='cpu') or 'auto', or run where a GPU is visible (CUDA_VISIBLE_DEVICES)."
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} GPU(s) are visible "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1}); use one of them or 'auto'."
            )
    elif chosen.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda[:i]'.")
    return chosen


def fit_normalisation(
    sample: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
) -> dict[str, Any]:
    """Fixed normalisation from a sample of grey values (its low/high percentiles).

    Examples
    --------
    >>> fit_normalisation(np.arange(1001))["low"]
    5.0
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("cannot fit a normalisation: the sample has no finite values.")
    low, high = np.percentile(values, percentiles)
    if not high > low:
        high = low + 1.0
    return {
        "method": "percentile",
        "percentiles": [float(p) for p in percentiles],
        "low": float(low),
        "high": float(high),
    }


def normalise(raw: np.ndarray, normalisation: dict[str, Any]) -> np.ndarray:
    """Map grey values to float32 ``[0, 1]`` with the model's fixed (low, high).

    Examples
    --------
    >>> normalise(np.array([0, 50, 100, 200]), {"low": 0, "high": 100}).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    low = np.float32(normalisation["low"])
    scale = np.float32(1.0 / (float(normalisation["high"]) - float(normalisation["low"])))
    out = np.asarray(raw, dtype=np.float32) - low
    out *= scale
    np.clip(out, 0.0, 1.0, out=out)
    return out


class TilePredictor:
    """Callable mapping a float32 numpy batch ``(B, T, T)`` to probabilities.

    A model with through-plane context (``config["context"] = k``) takes
    ``(B, 2k + 1, T, T)``: each tile and its neighbouring slices as channels.

    A binary model gives the Ni probability ``(B, T, T)`` (sigmoid); a multi-class
    model the per-class probabilities ``(B, C, T, T)`` (softmax over the classes).

    Runs under :func:`torch.inference_mode` in channels-last memory format, with
    ``precision`` autocast (the probabilities are always computed in float32 from the
    logits); on CUDA with pinned host memory, and asynchronously through
    :meth:`submit` / :meth:`collect` so that the next batch is prepared while the GPU
    computes (see :func:`volseg.tiling.stitch_block`).

    Parameters
    ----------
    loaded : LoadedModel
        The network and its configuration (``classes``).
    half : bool, optional
        Half-precision autocast; default: on CUDA only. Ignored when ``precision`` is
        given.
    precision : {"fp32", "bf16", "fp16"}, optional
        Autocast dtype of the forward pass (see :func:`volseg.backends.resolve_precision`
        for ``"auto"``).

    Examples
    --------
    A three-phase network gives per-class probabilities that add up to 1:

    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      classes=3)
    >>> predict = TilePredictor(LoadedModel(build_unet(cfg), cfg))
    >>> probability = predict(np.random.default_rng(0).random((2, 64, 64), dtype=np.float32))
    >>> probability.shape, bool(np.allclose(probability.sum(axis=1), 1, atol=1e-5))
    ((2, 3, 64, 64), True)
    """

    def __init__(self, loaded: LoadedModel, half: bool | None = None, precision: str | None = None):
        self.network = loaded.network
        self.device = loaded.device
        self.classes = int(loaded.config.get("classes", 1))
        if precision is None:
            half = (self.device.type == "cuda") if half is None else bool(half)
            precision = "fp16" if half else "fp32"
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"precision={precision!r} is not known; use 'fp32', 'bf16' or 'fp16'.")
        self.precision = precision
        self.half = precision != "fp32"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(batch))

    def submit(self, batch: np.ndarray) -> Any:
        """Start the forward pass of ``batch``; on CUDA it returns before the GPU is done.

        The batch is copied (into pinned memory on CUDA), so the caller may refill its
        array at once. Pass the returned handle to :meth:`collect`.
        """
        tensor = torch.from_numpy(np.array(batch, dtype=np.float32, copy=True))
        if tensor.ndim == 3:
            tensor = tensor[:, None]  # one input channel: the slice itself
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device.type != "cuda":
                return self._forward(tensor).numpy()
            # Work, copy and event on the model's device (and its current stream), even
            # when the calling thread's current device is another one.
            with torch.cuda.device(self.device):
                tensor = tensor.pin_memory().to(self.device, non_blocking=True)
                probability = self._forward(tensor)
                host = torch.empty(probability.shape, dtype=probability.dtype, pin_memory=True)
                host.copy_(probability, non_blocking=True)
                done = torch.cuda.Event()
                done.record(torch.cuda.current_stream(self.device))
            return host, done

    def collect(self, handle: Any) -> np.ndarray:
        """The probabilities of a submitted batch, float32 ``(B, T, T)`` or ``(B, C, T, T)``."""
        if isinstance(handle, np.ndarray):
            return handle
        host, done = handle
        done.synchronize()
        return host.numpy()

    def _forward(self, tensor: torch.Tensor) -> torch.Tensor:
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=self.half):
            logits = self.network(tensor)
        if self.classes > 1:
            return torch.softmax(logits.float(), dim=1).contiguous()
        return torch.sigmoid(logits.float())[:, 0].contiguous()


# Autocast dtype of each inference precision (None: plain float32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(
    path: str | os.PathLike, sha256: str | None = None, device: str = "auto"
) -> LoadedModel:
    """The model of a checkpoint, loaded once per process and device.

    Keyed by the checkpoint's SHA-256 and the device, so every task on a worker
    shares one network. With ``sha256`` given, a file whose content changed since
    is an error; with None the file is hashed (and validated) first.

    Parameters
    ----------
    path : path
        The checkpoint.
    sha256 : str, optional
        Its expected digest (as recorded when the run started).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:i"``.

    Returns
    -------
    LoadedModel
        The same object for every call with the same file content and device.

    Examples
    --------
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "unet.pt")
    >>> first = cached_model(path, device="cpu")
    >>> cached_model(path, sha256=first.sha256, device="cpu") is first
    True
    """
    torch_device = resolve_device(device)
    if sha256 is None:
        if not Path(path).is_file():
            load_checkpoint(path, torch_device)  # raises the clear "does not exist" error
        sha256 = file_sha256(path)
    key = (sha256, str(torch_device))
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = load_checkpoint(path, torch_device)
            if loaded.sha256 != sha256:
                raise ValueError(
                    f"model file {str(path)!r} changed during the run "
                    f"(sha256 {loaded.sha256[:12]} != {sha256[:12]}); start the run again."
                )
            log.debug("loaded model %s on %s", path, torch_device)
            _CACHE[key] = loaded
    return loaded
