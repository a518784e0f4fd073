"""The ONNX runtimes: the network run by OpenVINO or ONNX Runtime, and the predictor cache.

Every backend is a predictor with the interface :func:`volseg.tiling.stitch_block`
expects (``__call__``, ``submit``, ``collect``), so tiles, mirrored reads and
blending are the same whichever runs. The ONNX-based ones run the network
exported once to ONNX (:func:`volseg.model.export.export_onnx`), on the CPU;
:func:`cached_predictor` builds each once per process.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from typing import Any

import numpy as np
import torch

from volseg.conventions import usable_cores

from .backend import BACKENDS
from .checkpoint import LoadedModel
from .export import load_onnx
from .precision import OPENVINO_PRECISION, openvino_precision_error, resolve_precision
from .predict import TilePredictor

__all__ = [
    "PREDICTORS",
    "OnnxRuntimePredictor",
    "OpenVINOPredictor",
    "cached_predictor",
    "read_onnx_bytes",
]

log = logging.getLogger(__name__)


def _logits_to_probability(logits: np.ndarray, classes: int) -> np.ndarray:
    """Sigmoid (binary) or softmax over the classes, in float32, as the torch predictor."""
    logits = np.asarray(logits, dtype=np.float32)
    if classes > 1:
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=1, keepdims=True)
        return shifted
    out = np.negative(logits[:, 0])
    np.exp(out, out=out)
    out += np.float32(1.0)
    np.reciprocal(out, out=out)
    return out


def _threads() -> int:
    """Threads per forward pass: the torch thread count volseg gives each task."""
    return max(1, torch.get_num_threads())


def _streams(threads: int) -> int:
    """Forward passes that may run at once in this process (one per dask thread)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        pass
    return max(1, usable_cores() // threads)


class _OnnxPredictor:
    """What the ONNX-based predictors share: input layout, probabilities, the interface."""

    backend = ""

    def __init__(self, loaded: LoadedModel, precision: str):
        self.classes = int(loaded.config.get("classes", 1))
        self.in_channels = int(loaded.config.get("in_channels", 1))
        self.precision = precision

    def _input(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[:, None]
        return np.ascontiguousarray(batch)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(batch))

    def submit(self, batch: np.ndarray) -> np.ndarray:
        """Run the forward pass of ``batch`` (synchronously on the CPU); returns the result."""
        return _logits_to_probability(self._run(self._input(batch)), self.classes)

    def collect(self, handle: np.ndarray) -> np.ndarray:
        """The probabilities of a submitted batch, float32 ``(B, T, T)`` or ``(B, C, T, T)``."""
        return handle

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise TypeError("use OpenVINOPredictor or OnnxRuntimePredictor")


class OpenVINOPredictor(_OnnxPredictor):
    """The network exported to ONNX and compiled by OpenVINO for the CPU.

    Compiled once with one stream per dask thread of the process, each with the
    task's torch thread count (so threads x streams does not exceed the cores, as
    with torch), and ``precision`` as OpenVINO's inference precision hint. Calls from
    several threads each take a free infer request.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The checkpoint's network (exported with :func:`volseg.model.export.export_onnx`).
    precision : {"fp32", "bf16", "fp16"}
        OpenVINO's ``INFERENCE_PRECISION_HINT``; a ValueError where the CPU plugin
        would run another (it runs fp16 as bf16 on CPUs without fp16 arithmetic).

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> predict = OpenVINOPredictor(LoadedModel(build_unet(cfg), cfg), "fp32")
    >>> predict(np.zeros((2, 64, 64), np.float32)).shape
    (2, 64, 64)
    """

    backend = "openvino"

    def __init__(self, loaded: LoadedModel, precision: str):
        super().__init__(loaded, precision)
        import openvino as ov

        core = ov.Core()
        threads = _threads()
        streams = _streams(threads)

        def compile_source(source: str | bytes) -> Any:
            model = core.read_model(source) if isinstance(source, str) else read_onnx_bytes(source)
            return core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
                    "NUM_STREAMS": streams,
                    "INFERENCE_NUM_THREADS": streams * threads,
                    # Pinning would tie every worker process to the same first cores.
                    "ENABLE_CPU_PINNING": False,
                },
            )

        compiled = load_onnx(loaded, compile_source, self.backend)
        # The CPU plugin silently runs a precision it lacks as another (fp16 as bf16):
        # refuse rather than record a precision that is not the one used.
        used = compiled.get_property("INFERENCE_PRECISION_HINT")
        used = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
        if used != OPENVINO_PRECISION[precision]:
            actual = {v: k for k, v in OPENVINO_PRECISION.items()}.get(used, used)
            raise openvino_precision_error(precision, actual)
        self._requests: queue.Queue = queue.Queue()
        for _ in range(streams):
            self._requests.put(compiled.create_infer_request())
        _first_numpy_view(self._requests.queue[0])
        log.debug("OpenVINO: %d streams x %d threads, %s", streams, threads, precision)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        request = self._requests.get()
        try:
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            self._requests.put(request)


def _first_numpy_view(request: Any) -> None:
    """Take the process's first numpy view of an OpenVINO tensor here, on one thread.

    OpenVINO's Python binding sets up its numpy access on first use, and two threads
    doing so at once (the first forward passes of two dask threads) can deadlock inside
    it for good: one waits for a static initialiser while holding the GIL, the other
    holds the initialiser while waiting for the GIL (seen with openvino 2026.4, in
    ``InferRequest.infer`` -> ``Tensor.data``). A view taken while the predictor is
    still private to one thread sets it up before any concurrent call.
    """
    _ = request.get_input_tensor(0).data, request.get_output_tensor(0).data


def read_onnx_bytes(source: bytes) -> Any:
    """An OpenVINO model from an ONNX export held in memory.

    Parameters
    ----------
    source : bytes
        The ONNX model (:func:`volseg.model.export.export_bytes`).

    Returns
    -------
    openvino.Model
        Ready for ``openvino.Core().compile_model``.

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> from volseg.model.backend import backend_available
    >>> from volseg.model.export import export_bytes
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> onnx = export_bytes(LoadedModel(build_unet(cfg), cfg))
    >>> not backend_available("openvino") or len(read_onnx_bytes(onnx).inputs) == 1
    True
    """
    import openvino as ov

    return ov.convert_model(io.BytesIO(source))


class OnnxRuntimePredictor(_OnnxPredictor):
    """The network exported to ONNX and run by ONNX Runtime on the CPU (float32).

    One session per process with the task's torch thread count as intra-op threads;
    ONNX Runtime sessions may be called from several threads at once.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The checkpoint's network (exported with :func:`volseg.model.export.export_onnx`).
    precision : {"fp32"}
        ONNX Runtime's CPU provider runs float32.

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      classes=3)
    >>> predict = OnnxRuntimePredictor(LoadedModel(build_unet(cfg), cfg), "fp32")
    >>> predict(np.zeros((2, 64, 64), np.float32)).shape
    (2, 3, 64, 64)
    """

    backend = "onnxruntime"

    def __init__(self, loaded: LoadedModel, precision: str = "fp32"):
        if precision != "fp32":
            resolve_precision(precision, "cpu", "onnxruntime")  # raises the clear error
        super().__init__(loaded, "fp32")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        self._session = load_onnx(
            loaded,
            lambda source: ort.InferenceSession(
                source, options, providers=["CPUExecutionProvider"]
            ),
            self.backend,
        )
        self._input_name = self._session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input_name: batch})[0]


PREDICTORS = {"openvino": OpenVINOPredictor, "onnxruntime": OnnxRuntimePredictor}
_PREDICTORS: dict[tuple, tuple[LoadedModel, Any]] = {}
_PREDICTORS_LOCK = threading.Lock()


def cached_predictor(loaded: LoadedModel, backend: str, precision: str) -> Any:
    """The tile predictor of a loaded model for a backend and precision, built once.

    ``torch`` predictors are cheap wrappers (:class:`volseg.model.TilePredictor`); the
    ONNX-based ones are exported and compiled once per process, keyed by the
    checkpoint's SHA-256 (or the object, for a model given in memory), device,
    backend, precision and thread count, so every task on a worker shares one.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The network, from :func:`volseg.model.cached_model`.
    backend : {"torch", "openvino", "onnxruntime"}
        A resolved backend (:func:`resolve_backend`).
    precision : {"fp32", "bf16", "fp16"}
        A resolved precision (:func:`resolve_precision`).

    Returns
    -------
    predictor
        Maps a float32 batch ``(B, T, T)`` to probabilities, with ``submit`` / ``collect``.

    Examples
    --------
    >>> from volseg.model import LoadedModel, build_unet, default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> loaded = LoadedModel(build_unet(cfg), cfg)
    >>> first = cached_predictor(loaded, "onnxruntime", "fp32")
    >>> cached_predictor(loaded, "onnxruntime", "fp32") is first
    True
    >>> type(cached_predictor(loaded, "torch", "bf16")).__name__
    'TilePredictor'
    """
    if backend == "torch":
        return TilePredictor(loaded, precision=precision)
    if backend not in PREDICTORS:
        raise ValueError(f"backend={backend!r} is not known; use one of {', '.join(BACKENDS)}.")
    identity = loaded.sha256 or f"memory-{id(loaded)}"
    key = (identity, str(loaded.device), backend, precision, _threads())
    with _PREDICTORS_LOCK:
        entry = _PREDICTORS.get(key)
        if entry is None or entry[0] is not loaded and not loaded.sha256:
            entry = (loaded, PREDICTORS[backend](loaded, precision))
            _PREDICTORS[key] = entry
    return entry[1]
