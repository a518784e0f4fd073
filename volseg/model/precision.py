"""Inference precision: which arithmetic runs the network's forward pass.

``precision`` is the dtype of the forward pass (``fp32``, ``bf16`` or ``fp16``);
the probabilities, blending, thresholds and counts stay float32 whatever it is.
``"auto"`` resolves, on the machine that runs the work, to ``bf16`` on CPUs with
AMX or AVX512-BF16 instructions and on GPUs that support it, ``fp16`` on other
GPUs, ``fp32`` elsewhere (and with ONNX Runtime, which runs float32 on the CPU).

No torch at import (it is imported when a choice needs it), so the choices can
be read by light modules:

>>> from volseg.model.precision import PRECISIONS
>>> PRECISIONS
('auto', 'fp32', 'bf16', 'fp16')
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from .device import as_device

if TYPE_CHECKING:
    import torch

__all__ = [
    "BF16_FLAGS",
    "OPENVINO_CAPABILITY",
    "OPENVINO_PRECISION",
    "PRECISIONS",
    "cpu_flags",
    "cpu_supports_bf16",
    "openvino_cpu_capabilities",
    "openvino_precision_error",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# CPU instruction sets that run bf16 matrix products natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OpenVINO's CPU optimisation capability that runs each reduced precision natively.
OPENVINO_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


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
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


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
    device = as_device(device)
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise ValueError(
                f"precision={precision!r} is not available with backend='onnxruntime' (it "
                "runs float32 on the CPU); use precision='fp32' or 'auto', or "
                "backend='openvino'."
            )
        return "fp32"
    if backend == "openvino" and precision in OPENVINO_CAPABILITY:
        capabilities = openvino_cpu_capabilities()
        if OPENVINO_CAPABILITY[precision] not in capabilities:
            actual = "bf16" if precision == "fp16" and "BF16" in capabilities else "fp32"
            raise openvino_precision_error(precision, actual)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


@lru_cache(maxsize=1)
def openvino_cpu_capabilities() -> frozenset[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``BF16``, ``FP16``, ...).

    Needs the optional openvino package (``volseg[openvino]``).

    Examples
    --------
    >>> from volseg.model.backend import backend_available
    >>> not backend_available("openvino") or "FP32" in openvino_cpu_capabilities()
    True
    """
    import openvino as ov

    return frozenset(str(cap) for cap in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def openvino_precision_error(requested: str, actual: str) -> ValueError:
    """The error for a precision OpenVINO's CPU plugin would silently run as another.

    Parameters
    ----------
    requested : str
        The precision asked for.
    actual : str
        The one OpenVINO would run instead.

    Returns
    -------
    ValueError
        To raise, up front (:func:`resolve_precision`) and where the network is compiled.

    Examples
    --------
    >>> print(openvino_precision_error("fp16", "bf16"))  # doctest: +NORMALIZE_WHITESPACE
    precision='fp16' is not available with backend='openvino' on this CPU (OpenVINO runs
    fp16 as bf16 here); use precision='bf16' or 'fp32', or precision='auto'.
    """
    instead = " or ".join(repr(p) for p in dict.fromkeys((actual, "fp32")))
    return ValueError(
        f"precision={requested!r} is not available with backend='openvino' on this CPU "
        f"(OpenVINO runs {requested} as {actual} here); use precision={instead}, or "
        "precision='auto'."
    )
