"""The inference backend: which runtime runs the network.

``torch`` runs the checkpoint's network itself; ``openvino`` and ``onnxruntime``
run it exported once to ONNX (:mod:`volseg.model.export`, predictors in
:mod:`volseg.model.runtimes`). ``"auto"`` resolves, on the machine that runs the
work, to ``openvino`` when it is installed and the device is a CPU, else ``torch``.

No torch at import, so the choices can be read by light modules:

>>> from volseg.model.backend import BACKENDS
>>> BACKENDS
('auto', 'torch', 'openvino', 'onnxruntime')
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .device import as_device

if TYPE_CHECKING:
    import torch

__all__ = ["BACKENDS", "EXTRAS", "backend_available", "resolve_backend"]

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
# pip extra that installs each optional backend.
EXTRAS = {"openvino": "openvino", "onnxruntime": "onnx"}


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
    device = as_device(device)
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
