"""Where a command writes, and what it may replace or delete there.

* :func:`refuse_overlap` - an output path that is, contains or lies inside an input of
  the run (scan, truth, the scan's group) is refused, so ``overwrite`` can never delete
  an input;
* :func:`check_new_file` - a file a command writes (report page, CSV table) is not
  silently replaced, is not a folder, and its folder exists;
* :func:`output_exists` and :func:`remove_output` - only a Zarr group (written by
  volseg) is ever deleted, and only with ``overwrite``;
* :func:`default_output_path` - ``scan.zarr`` -> ``scan_ni.zarr`` beside it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import zarr

from .tiff import TIFF_SUFFIXES

__all__ = [
    "in_memory",
    "memory_store",
    "check_new_file",
    "default_output_path",
    "output_exists",
    "refuse_overlap",
    "remove_output",
    "store_for",
    "zarr_container",
]


def _local_path(value: Any) -> Path | None:
    if isinstance(value, (str, os.PathLike)) and "://" not in str(value):
        return Path(value).expanduser().resolve()
    return None


def refuse_overlap(out: Any, inputs: dict[str, Any], *, command: str = "segment") -> None:
    """Refuse an output path equal to, containing or inside any input path.

    Parameters
    ----------
    out : path or store
        Where the command writes (and, with ``overwrite``, deletes first).
    inputs : dict of str to path
        ``{role: path}`` of everything the run reads; non-path values are ignored.
    command : str
        The command, for the message.

    Raises
    ------
    ValueError
        Naming the input and the output.

    Examples
    --------
    >>> refuse_overlap("data/scan_ni.zarr", {"scan": "data/scan.zarr/image"})
    >>> refuse_overlap("data/scan.zarr", {"scan": "data/scan.zarr/image"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: output 'data/scan.zarr' contains the scan 'data/scan.zarr/image'; ...
    """
    out_path = _local_path(out)
    if out_path is None:
        return
    for role, value in inputs.items():
        path = _local_path(value)
        if path is None:
            continue
        if path == out_path:
            relation = "is"
        elif out_path in path.parents:
            relation = "contains"
        elif path in out_path.parents:
            relation = "lies inside"
        else:
            continue
        raise ValueError(
            f"output {str(out)!r} {relation} the {role} {str(value)!r}; volseg {command} "
            "never writes over (or, with --overwrite, deletes) an input of the run: "
            "choose another output path."
        )


def zarr_container(source: Any) -> str | None:
    """The outermost Zarr group holding the path ``source`` (None when there is none).

    Examples
    --------
    >>> import zarr
    >>> tmp = getfixture("tmp_path")
    >>> _ = zarr.open_group(str(tmp / "scan.zarr"), mode="w").create_array(
    ...     "image", shape=(1,), dtype="uint8")
    >>> zarr_container(tmp / "scan.zarr" / "image") == str(tmp / "scan.zarr")
    True
    """
    path = _local_path(source)
    if path is None:
        return None
    container = None
    for parent in path.parents:
        if any((parent / name).is_file() for name in ("zarr.json", ".zgroup")):
            container = parent
        else:
            break
    return str(container) if container is not None else None


def check_new_file(path: Any, *, overwrite: bool = False, what: str = "file") -> Path:
    """A file about to be written: not a folder, its folder exists, not replaced silently.

    Examples
    --------
    >>> tmp = getfixture("tmp_path")
    >>> check_new_file(tmp / "t.csv").name
    't.csv'
    >>> check_new_file(tmp / "no" / "t.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ... folder '.../no' does not exist; create it first or choose another path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{what} {str(path)!r} is a folder; give a file name, e.g. '{path}/report.html'."
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(
            f"{what} {str(path)!r}: its folder {str(parent)!r} does not exist; create it first "
            "or choose another path."
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{what} {str(path)!r} already exists; pass --overwrite (overwrite=True) to "
            "replace it, or choose another path."
        )
    return path


def store_for(out: Any) -> Any:
    """What :func:`zarr.open_group` is given for ``out``: a path as a string, else the store.

    Examples
    --------
    >>> store_for(Path("data/scan_ni.zarr"))
    'data/scan_ni.zarr'
    """
    if isinstance(out, (str, os.PathLike)):
        return str(out)
    return out


def output_exists(out: Any) -> bool:
    """True when ``out`` already holds a Zarr node.

    Examples
    --------
    >>> output_exists(getfixture("tmp_path") / "none.zarr")
    False
    >>> output_exists(zarr.storage.MemoryStore())
    False
    """
    if isinstance(out, (str, os.PathLike)):
        return Path(out).exists()
    try:
        zarr.open_group(out, mode="r")
        return True
    except Exception:
        return False


def remove_output(out: Any, kind: str = "volseg") -> None:
    """Delete an existing output (only called with ``overwrite=True``).

    Only a Zarr group written by volseg (``kind="volseg"``: it has a ``volseg``
    record) or any Zarr group (``kind="zarr"``) is deleted; anything else at the
    path is left alone and reported, so a typo in ``--out`` cannot wipe a folder.

    Examples
    --------
    >>> out = getfixture("tmp_path") / "old.zarr"
    >>> _ = zarr.open_group(str(out), mode="w")
    >>> remove_output(out, kind="zarr"); out.exists()
    False
    >>> notes = getfixture("tmp_path") / "notes"
    >>> notes.mkdir(); _ = (notes / "a.txt").write_text("keep")
    >>> remove_output(notes)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileExistsError: output '.../notes' exists and is not a volseg output group; ...
    """
    if isinstance(out, (str, os.PathLike)):
        path = Path(out)
        if not _is_removable(path, kind):
            raise FileExistsError(
                f"output {str(path)!r} exists and is not a {kind} output group; volseg will not "
                "delete it: choose another output path or remove it yourself."
            )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    else:
        zarr.open_group(out, mode="w")


def _is_removable(path: Path, kind: str) -> bool:
    if path.is_dir() and not any(path.iterdir()):
        return True
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        return False
    return kind == "zarr" or "volseg" in group.attrs


def default_output_path(source: Any) -> Path | None:
    """``scan.zarr`` -> ``scan_ni.zarr`` beside it; None for in-memory inputs.

    Examples
    --------
    >>> str(default_output_path("data/scan.zarr"))
    'data/scan_ni.zarr'
    >>> str(default_output_path("data/scan.zarr/image"))
    'data/scan_ni.zarr'
    """
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    # 'scan.zarr/image' -> the container 'scan.zarr'
    for parent in (path, *path.parents):
        if parent.suffix in (".zarr", ".zarr/") or parent.suffix.lower() in TIFF_SUFFIXES:
            path = parent
            break
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}_ni.zarr")


def in_memory(out: Any) -> bool:
    """True when ``out`` is an in-memory Zarr store (it lives in this process only).

    Examples
    --------
    >>> in_memory(memory_store()), in_memory("out.zarr")
    (True, False)
    """
    return isinstance(out, zarr.storage.MemoryStore)


def memory_store() -> Any:
    """A new in-memory Zarr store: the output of a run on arrays without ``out``.

    Examples
    --------
    >>> type(memory_store()).__name__
    'MemoryStore'
    """
    return zarr.storage.MemoryStore()
