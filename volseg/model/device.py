"""Device names: the one parser of ``"auto" | "cpu" | "cuda" | "cuda:i"``.

torch is imported when a function runs, not when this module is imported, so
that light modules (the precision and backend choices) can use it.

>>> from volseg.model.device import as_device
>>> as_device("cuda:1").index
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["as_device", "parse_device", "resolve_device"]


def as_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, without asking whether it exists here.

    Parameters
    ----------
    device : str or torch.device
        A device name (``"cpu"``, ``"cuda"``, ``"cuda:i"``, ...); ``"auto"`` is
        chosen by :func:`resolve_device`, not here.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        Not a device name, or ``"auto"``.

    Examples
    --------
    >>> as_device("cpu")
    device(type='cpu')
    >>> as_device("gpu0")
    Traceback (most recent call last):
    ...
    ValueError: device 'gpu0' is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:0'.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        raise ValueError("device 'auto' is chosen by resolve_device; give a resolved device.")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:0'."
        ) from exc


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
    import torch

    if isinstance(device, torch.device) or device == "auto":
        return
    parsed = as_device(device)
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
    import torch

    if isinstance(device, str) and device == "auto":
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        chosen = as_device(device)
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
