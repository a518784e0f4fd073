"""Component sizes for the clean-up: voxels, or a physical volume such as ``"0.5um3"``.

>>> parse_min_size("0.001um3", (0.05, 0.05, 0.05), "micrometer")
8
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["check_min_size", "parse_min_size"]

# Unit names as OME-Zarr writes them, and their abbreviations, in micrometres.
_LENGTHS_UM = {
    "nanometer": 1e-3,
    "nm": 1e-3,
    "micrometer": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "millimeter": 1e3,
    "mm": 1e3,
}
_SIZE = re.compile(r"^\s*([0-9.eE+-]+)\s*([a-zA-Zµ]*?)(3|\^3|³)?\s*$")


def parse_min_size(
    min_size: Any, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), unit: str | None = None
) -> int:
    """A component size in voxels, from voxels or from a physical volume.

    Parameters
    ----------
    min_size : int or str
        Voxels (``50``, ``"50"``, ``"50vox"``) or a volume with a unit cubed
        (``"0.5um3"``, ``"500nm3"``, ``"0.5 µm^3"``).
    voxel_size : sequence of float
        Voxel sides (z, y, x), in ``unit``.
    unit : str, optional
        The unit of ``voxel_size`` (``"micrometer"``, ``"nm"``...); needed for
        a physical ``min_size``.

    Returns
    -------
    int
        The smallest component size kept, in voxels (a physical volume is
        rounded up to whole voxels).

    Examples
    --------
    >>> parse_min_size(50), parse_min_size("50vox")
    (50, 50)
    >>> parse_min_size("0.5um3", (0.05, 0.05, 0.05), "micrometer")
    4000
    """
    if isinstance(min_size, numbers.Integral) and not isinstance(min_size, bool):
        if min_size < 0:
            raise ValueError(f"min_size={min_size!r} must be >= 0 (voxels).")
        return int(min_size)
    match = _SIZE.match(min_size) if isinstance(min_size, str) else None
    if match is None:
        raise ValueError(
            f"min_size={min_size!r} is not a size; give voxels (50) or a volume such as '0.5um3'."
        )
    number, name, cubed = match.groups()
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"min_size={min_size!r}: the number must be >= 0.")
    if name.lower() in ("", "vox", "voxel", "voxels") and not cubed:
        if value != int(value):
            raise ValueError(f"min_size={min_size!r}: a voxel count must be a whole number.")
        return int(value)
    if name.lower() not in _LENGTHS_UM or not cubed:
        raise ValueError(
            f"min_size={min_size!r}: unknown unit; use voxels or a volume in nm3, um3 or mm3."
        )
    if unit is None or unit.lower() not in _LENGTHS_UM:
        raise ValueError(
            f"min_size={min_size!r} is a physical volume but the voxel size's unit is "
            f"{unit!r}; record the voxel size with its unit (volseg convert --unit) or give "
            "min_size in voxels."
        )
    voxel_um3 = math.prod(float(s) * _LENGTHS_UM[unit.lower()] for s in voxel_size)
    volume_um3 = value * _LENGTHS_UM[name.lower()] ** 3
    return int(math.ceil(volume_um3 / voxel_um3 - 1e-9))


def check_min_size(min_size: Any) -> None:
    """Refuse a malformed ``min_size`` before any work (units are checked later).

    Examples
    --------
    >>> check_min_size("0.5um3")
    >>> check_min_size(-1)
    Traceback (most recent call last):
    ValueError: min_size=-1 must be >= 0 (voxels).
    """
    parse_min_size(min_size, (1.0, 1.0, 1.0), "micrometer")
