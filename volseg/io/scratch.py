"""Scratch groups: working arrays of a solver, in memory or in a folder removed after use."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import zarr

__all__ = ["remove_scratch", "scratch_group"]


def scratch_group(parent: str | Path | None) -> tuple[zarr.Group, Path | None]:
    """An empty Zarr group for a solver's working arrays, in memory or on disk.

    With ``parent`` (an existing folder), the group lives in a new folder made
    inside it (``volseg-scratch-*``), returned for :func:`remove_scratch`;
    nothing that existed before is touched.

    Examples
    --------
    >>> group, folder = scratch_group(None)
    >>> group.create_array("x", shape=(2, 2), dtype="f8").shape, folder
    ((2, 2), None)
    """
    if parent is None:
        return zarr.group(store=zarr.storage.MemoryStore()), None
    parent = Path(parent)
    if not parent.is_dir():
        raise FileNotFoundError(
            f"scratch folder {str(parent)!r} does not exist; give an existing folder (a new "
            "sub-folder is made in it and removed after use)."
        )
    folder = Path(tempfile.mkdtemp(prefix="volseg-scratch-", dir=parent))
    return zarr.group(store=zarr.storage.LocalStore(folder / "state.zarr")), folder


def remove_scratch(folder: Path | None) -> None:
    """Remove a folder made by :func:`scratch_group` (nothing for an in-memory group).

    Examples
    --------
    >>> remove_scratch(None)
    """
    if folder is not None and folder.name.startswith("volseg-scratch-"):
        shutil.rmtree(folder, ignore_errors=True)
