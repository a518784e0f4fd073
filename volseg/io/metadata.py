"""Physical metadata: voxel sizes and the OME-Zarr (NGFF) multiscales of an image.

:func:`recorded_voxel_size` reads what a scan records (a volseg output's run record,
or the NGFF 0.4/0.5 ``multiscales`` of its group); :func:`ome_multiscales` writes it
for :func:`volseg.io.writers.convert` and the output group.
"""

from __future__ import annotations

import math
from typing import Any

import zarr

from .scans import Scan

__all__ = ["ome_multiscales", "recorded_voxel_size", "validate_voxel_size"]


def validate_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    """Three positive, finite voxel sides (z, y, x) as floats.

    Examples
    --------
    >>> validate_voxel_size([0.5, 0.02, 0.02])
    (0.5, 0.02, 0.02)
    >>> validate_voxel_size((1.0, 0.0, 1.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: voxel_size=(1.0, 0.0, 1.0) must be three positive numbers (z, y, x), ...
    """
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"voxel_size={voxel_size!r} must be three positive numbers (z, y, x), finite, "
            "e.g. (0.02, 0.02, 0.02)."
        )
    return values


def recorded_voxel_size(scan: Scan) -> tuple[tuple[float, float, float], str | None] | None:
    """``((z, y, x) voxel size, unit)`` from the OME-Zarr metadata around a Zarr array.

    The scale of the array's dataset in the ``multiscales`` of its parent group (NGFF
    0.4 ``attrs["multiscales"]`` or 0.5 ``attrs["ome"]["multiscales"]``), and the unit
    of its spatial axes (None when not given). None when nothing is recorded.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io.scans import open_scan
    >>> group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> group.attrs["ome"] = ome_multiscales(["0"], (0.5, 0.02, 0.02), unit="micrometer")
    >>> _ = group.create_array("0", shape=(2, 4, 4), dtype="uint8")
    >>> recorded_voxel_size(open_scan(group["0"]))
    ((0.5, 0.02, 0.02), 'micrometer')
    """
    array = scan.array
    if not isinstance(array, zarr.Array):
        return None
    parent, _, name = str(array.path).rpartition("/")
    if not name:
        return None
    try:
        group = zarr.open_group(array.store, path=parent, mode="r")
    except Exception:
        return None
    attrs = dict(group.attrs)
    record = attrs.get("volseg") or {}
    if record.get("voxel_size"):  # any array of a volseg output (mask, labels, prob)
        return tuple(float(v) for v in record["voxel_size"]), record.get("unit")
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not multiscales:
        return None
    for image in multiscales:
        for dataset in image.get("datasets", []):
            if dataset.get("path") != name:
                continue
            scale = [1.0, 1.0, 1.0]
            for transform in dataset.get("coordinateTransformations", []):
                if transform.get("type") == "scale":
                    scale = [float(v) * s for v, s in zip(transform["scale"][-3:], scale)]
            units = {axis.get("unit") for axis in image.get("axes", [])[-3:]} - {None}
            unit = units.pop() if len(units) == 1 else None
            return (scale[0], scale[1], scale[2]), unit
    return None


def ome_multiscales(
    paths: list[str],
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    name: str = "image",
    factors: list[tuple[int, int, int]] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """OME-Zarr (NGFF 0.5) ``ome`` attributes for the levels ``paths`` of one image.

    Examples
    --------
    >>> meta = ome_multiscales(["0", "1"], factors=[(1, 1, 1), (1, 2, 2)])
    >>> meta["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"]
    [1.0, 2.0, 2.0]
    """
    factors = factors or [(1, 1, 1)] * len(paths)
    axes = [{"name": axis, "type": "space"} for axis in "zyx"]
    if unit:
        for axis in axes:
            axis["unit"] = unit
    datasets = [
        {
            "path": path,
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v * f) for v, f in zip(voxel_size, factor)]}
            ],
        }
        for path, factor in zip(paths, factors)
    ]
    return {"version": "0.5", "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}
