"""Prediction with the torch network: the tile predictor and the per-process model cache.

:class:`TilePredictor` maps a float32 batch of tiles to probabilities with the
interface :func:`volseg.tiling.stitch_block` expects (``__call__``, ``submit``,
``collect``); :func:`cached_model` loads a checkpoint once per process and
device, so every task on a worker shares one network.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import LoadedModel, file_sha256, load_checkpoint
from .device import resolve_device

__all__ = ["AUTOCAST_DTYPES", "TilePredictor", "cached_model", "models_in_cache"]

log = logging.getLogger(__name__)

# Autocast dtype of each inference precision (None: plain float32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
        Autocast dtype of the forward pass (see :func:`volseg.model.precision.resolve_precision`
        for ``"auto"``).

    Examples
    --------
    A three-phase network gives per-class probabilities that add up to 1:

    >>> from volseg.model import build_unet, default_config
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
    >>> from volseg.model import build_unet, default_config, save_checkpoint
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


def models_in_cache() -> int:
    """How many networks this process holds in its model cache (:func:`cached_model`).

    One per checkpoint and device: a dask worker that ran many blocks of one run holds
    one, because the network is loaded once per process, not once per task.

    Examples
    --------
    >>> models_in_cache() >= 0
    True
    """
    with _CACHE_LOCK:
        return len(_CACHE)
