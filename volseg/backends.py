"""Inference precision and backends: which arithmetic and which runtime run the network.

``precision`` is the dtype of the network's forward pass (``fp32``, ``bf16`` or
``fp16``); the probabilities, blending, thresholds and counts stay float32 whatever it
is. ``backend`` is the runtime: ``torch`` (the checkpoint's network itself), or the
network exported once to ONNX and compiled by ``openvino`` or ``onnxruntime``. Every
backend is a predictor with the interface :func:`volseg.tiling.stitch_block` expects
(``__call__``, ``submit``, ``collect``), so tiles, mirrored reads and blending are the
same whichever runs.

``"auto"`` resolves, on the machine that runs the work:

* precision: ``bf16`` on CPUs with AMX or AVX512-BF16 instructions and on GPUs that
  support it, ``fp16`` on other GPUs, ``fp32`` elsewhere (and with ONNX Runtime, which
  runs float32 on the CPU);
* backend: ``openvino`` when it is installed and the device is a CPU, else ``torch``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import queue
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import model as vmodel

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "OnnxRuntimePredictor",
    "OpenVINOPredictor",
    "cached_predictor",
    "cpu_flags",
    "cpu_supports_bf16",
    "export_onnx",
    "resolve_backend",
    "resolve_precision",
]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
# pip extra that installs each optional backend.
EXTRAS = {"openvino": "openvino", "onnxruntime": "onnx"}
# CPU instruction sets that run bf16 matrix products natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OpenVINO's CPU optimisation capability that runs each reduced precision natively.
OPENVINO_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}
ONNX_OPSET = 17


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as listed in ``/proc/cpuinfo`` (empty where there is none).

    Examples
    --------
    >>> flags = cpu_flags()
    >>> isinstance(flags, frozenset)
    True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16() -> bool:
    """Whether the CPU runs bf16 natively (AMX or AVX512-BF16).

    Read from the CPU flags; where they cannot be read, oneDNN's own check.

    Examples
    --------
    >>> isinstance(cpu_supports_bf16(), bool)
    True
    """
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in BF16_FLAGS)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(str(device))


def resolve_precision(
    precision: str = "auto", device: str | torch.device = "cpu", backend: str = "torch"
) -> str:
    """The forward-pass precision to use: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``"auto"``: bf16 on CPUs with AMX or AVX512-BF16 and on GPUs that support it,
        fp16 on other GPUs, fp32 on other CPUs and with ONNX Runtime.
    device : str or torch.device
        Where the network runs (a resolved device, not ``"auto"``).
    backend : {"torch", "openvino", "onnxruntime"}
        The resolved backend.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Unknown precision, or one the backend does not run here (onnxruntime: not
        fp32; openvino: bf16 or fp16 where the CPU lacks it, which OpenVINO would
        silently run as another).

    Examples
    --------
    >>> resolve_precision("fp32", "cpu")
    'fp32'
    >>> resolve_precision("auto", "cpu", "onnxruntime")
    'fp32'
    >>> resolve_precision("auto", "cpu") == ("bf16" if cpu_supports_bf16() else "fp32")
    True
    >>> resolve_precision("bf16", "cpu", "onnxruntime")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: precision='bf16' is not available with backend='onnxruntime' ...
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r} is not known; use one of {', '.join(PRECISIONS)}."
        )
    device = _device(device)
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise ValueError(
                f"precision={precision!r} is not available with backend='onnxruntime' (it "
                "runs float32 on the CPU); use precision='fp32' or 'auto', or "
                "backend='openvino'."
            )
        return "fp32"
    if backend == "openvino" and precision in OPENVINO_CAPABILITY:
        capabilities = _openvino_cpu_capabilities()
        if OPENVINO_CAPABILITY[precision] not in capabilities:
            actual = "bf16" if precision == "fp16" and "BF16" in capabilities else "fp32"
            raise _openvino_precision_error(precision, actual)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


@lru_cache(maxsize=1)
def _openvino_cpu_capabilities() -> frozenset[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``BF16``, ``FP16``, ...)."""
    import openvino as ov

    return frozenset(str(cap) for cap in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _openvino_precision_error(requested: str, actual: str) -> ValueError:
    """The error for a precision OpenVINO's CPU plugin would silently run as another."""
    instead = " or ".join(repr(p) for p in dict.fromkeys((actual, "fp32")))
    return ValueError(
        f"precision={requested!r} is not available with backend='openvino' on this CPU "
        f"(OpenVINO runs {requested} as {actual} here); use precision={instead}, or "
        "precision='auto'."
    )


def backend_available(backend: str) -> bool:
    """Whether the package of an optional backend can be imported here.

    Examples
    --------
    >>> backend_available("torch")
    True
    """
    if backend == "torch":
        return True
    return importlib.util.find_spec(backend) is not None


def resolve_backend(backend: str = "auto", device: str | torch.device = "cpu") -> str:
    """The backend to use: ``"torch"``, ``"openvino"`` or ``"onnxruntime"``.

    Parameters
    ----------
    backend : {"auto", "torch", "openvino", "onnxruntime"}
        ``"auto"``: OpenVINO when it is installed and the device is a CPU, else torch.
    device : str or torch.device
        Where the network runs (a resolved device, not ``"auto"``).

    Returns
    -------
    str

    Raises
    ------
    ImportError
        An optional backend was asked for and its package is not installed.
    ValueError
        Unknown backend, or an ONNX backend asked for on a GPU.

    Examples
    --------
    >>> resolve_backend("torch", "cpu")
    'torch'
    >>> resolve_backend("auto", "cpu") == ("openvino" if backend_available("openvino")
    ...                                    else "torch")
    True
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not known; use one of {', '.join(BACKENDS)}.")
    device = _device(device)
    if backend == "auto":
        if device.type == "cpu" and backend_available("openvino"):
            return "openvino"
        return "torch"
    if backend == "torch":
        return backend
    if device.type != "cpu":
        raise ValueError(
            f"backend={backend!r} runs on the CPU, not on {device}; use backend='torch' "
            "(or 'auto') on a GPU, or device='cpu'."
        )
    if not backend_available(backend):
        raise ImportError(
            f"backend={backend!r} needs the {backend} package, which is not installed; "
            f"pip install 'volseg[{EXTRAS[backend]}]', or use backend='torch' (or 'auto')."
        )
    return backend


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


def _onnx_cache_path(loaded: vmodel.LoadedModel) -> Path | None:
    if not loaded.path or not loaded.sha256:
        return None
    checkpoint = Path(loaded.path)
    return checkpoint.with_name(f"{checkpoint.name}.{loaded.sha256[:16]}.onnx")


def _export_bytes(loaded: vmodel.LoadedModel) -> bytes:
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


def export_onnx(loaded: vmodel.LoadedModel) -> str | bytes:
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
    target = _onnx_cache_path(loaded)
    if target is not None and target.is_file():
        return str(target)
    exported = _export_bytes(loaded)
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


def _load_onnx(loaded: vmodel.LoadedModel, build: Any, backend: str) -> Any:
    """``build(source)`` on the ONNX export; a cached file that fails is exported again once.

    A corrupt or truncated cache file (an interrupted copy, a full disk) would
    otherwise fail every run the same way: it is deleted, with a warning, and the
    network exported afresh; if that fails too, a ValueError names the file.
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
        name = source if isinstance(source, str) else _onnx_cache_path(loaded)
        raise ValueError(
            f"the ONNX export {str(name)!r} of model {loaded.path!r} cannot be loaded by "
            f"{backend}, even freshly exported ({type(exc).__name__}: {_first_line(exc)}); "
            "delete the file and retry, or use backend='torch'."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads)


class _OnnxPredictor:
    """What the ONNX-based predictors share: input layout, probabilities, the interface."""

    backend = ""

    def __init__(self, loaded: vmodel.LoadedModel, precision: str):
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
        The checkpoint's network (exported with :func:`export_onnx`).
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

    def __init__(self, loaded: vmodel.LoadedModel, precision: str):
        super().__init__(loaded, precision)
        import openvino as ov

        core = ov.Core()
        threads = _threads()
        streams = _streams(threads)

        def compile_source(source: str | bytes) -> Any:
            model = core.read_model(source) if isinstance(source, str) else _read_bytes(source)
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

        compiled = _load_onnx(loaded, compile_source, self.backend)
        # The CPU plugin silently runs a precision it lacks as another (fp16 as bf16):
        # refuse rather than record a precision that is not the one used.
        used = compiled.get_property("INFERENCE_PRECISION_HINT")
        used = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
        if used != OPENVINO_PRECISION[precision]:
            actual = {v: k for k, v in OPENVINO_PRECISION.items()}.get(used, used)
            raise _openvino_precision_error(precision, actual)
        self._requests: queue.Queue = queue.Queue()
        for _ in range(streams):
            self._requests.put(compiled.create_infer_request())
        log.debug("OpenVINO: %d streams x %d threads, %s", streams, threads, precision)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        request = self._requests.get()
        try:
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            self._requests.put(request)


def _read_bytes(source: bytes) -> Any:
    import openvino as ov

    return ov.convert_model(io.BytesIO(source))


class OnnxRuntimePredictor(_OnnxPredictor):
    """The network exported to ONNX and run by ONNX Runtime on the CPU (float32).

    One session per process with the task's torch thread count as intra-op threads;
    ONNX Runtime sessions may be called from several threads at once.

    Parameters
    ----------
    loaded : volseg.model.LoadedModel
        The checkpoint's network (exported with :func:`export_onnx`).
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

    def __init__(self, loaded: vmodel.LoadedModel, precision: str = "fp32"):
        if precision != "fp32":
            resolve_precision(precision, "cpu", "onnxruntime")  # raises the clear error
        super().__init__(loaded, "fp32")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        self._session = _load_onnx(
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
_PREDICTORS: dict[tuple, tuple[vmodel.LoadedModel, Any]] = {}
_PREDICTORS_LOCK = threading.Lock()


def cached_predictor(loaded: vmodel.LoadedModel, backend: str, precision: str) -> Any:
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
        return vmodel.TilePredictor(loaded, precision=precision)
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
