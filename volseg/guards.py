"""Checks that catch silent corruption and lost data before they happen.

* :func:`refuse_overlap` - an output path that is, contains or lies inside an input of
  the run (scan, truth, the scan's group) is refused, so ``overwrite`` can never delete
  an input;
* :func:`check_new_file` - a file a command writes (report page, CSV table) is not
  silently replaced, is not a folder, and its folder exists;
* :func:`check_label_value` and :func:`check_label_present` - a label value is a finite
  number the volume's dtype can hold, and a truth holds it;
* :func:`check_stored_chunks` and :func:`read_zarr_region` - a scan whose chunk is missing
  from the store (Zarr would read its fill value) or corrupt (undecodable) is an error
  naming the array and the chunk key;
* :func:`check_tiff_slices` - the slices of a TIFF folder share one shape and dtype.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_label_present",
    "check_label_value",
    "check_new_file",
    "check_stored_chunks",
    "check_tiff_slices",
    "read_tiff",
    "read_zarr_region",
    "refuse_overlap",
    "zarr_container",
]

# At most this many distinct values are listed in a message about a label volume.
LISTED_VALUES = 12


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


def check_label_value(value: Any, name: str, dtype: Any = None, source: str = "") -> Any:
    """A label value: a finite, non-negative number that ``dtype`` can hold.

    Examples
    --------
    >>> check_label_value(2, "ni_label", np.uint8)
    2
    >>> check_label_value(300, "label", np.uint8, "mask.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: label=300 cannot occur in mask.zarr (dtype uint8, values 0..255); ...
    """
    if (
        isinstance(value, (bool, complex))
        or not isinstance(value, (numbers.Number, np.generic))
        or not math.isfinite(float(value))
    ):
        raise ValueError(f"{name}={value!r} is not a finite number; give the label value.")
    if float(value) < 0:
        raise ValueError(
            f"{name}={value!r} is negative; label values are 0 or more, e.g. 1 or 2 or 255."
        )
    if dtype is not None:
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            if not (float(value).is_integer() and info.min <= value <= info.max):
                raise ValueError(
                    f"{name}={value!r} cannot occur in {source or 'the volume'} (dtype {dtype}, "
                    f"values {info.min}..{info.max}); give a value it holds."
                )
    return value.item() if isinstance(value, np.generic) else value


def _blocks(array: Any) -> Iterable[tuple[slice, ...]]:
    """The regions of ``array``'s stored (or dask) chunks, in order."""
    import dask.array as da

    if isinstance(array, da.Array):
        bounds = [np.cumsum((0, *c)) for c in array.chunks]
    else:
        bounds = [np.append(np.arange(0, s, c), s) for s, c in zip(array.shape, array.chunks)]
    for index in itertools.product(*(range(len(b) - 1) for b in bounds)):
        yield tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index))


def check_label_present(truth: Any, value: Any, *, recorded: bool, name: str = "ni_label") -> None:
    """The truth holds ``value`` (and, when only defaulted, at most two values).

    When ``value`` was neither given nor recorded, a label volume of more than two
    values is refused too: the default 1 would be a guess. Chunks are read one at a
    time until ``value`` is found (usually the first); only a truth without it is read
    whole, to name the values it holds.

    Parameters
    ----------
    truth : volseg.io.Scan
    value : number
    recorded : bool
        The value was given by the user or recorded in the truth's attrs.

    Examples
    --------
    >>> from volseg.io import open_scan
    >>> truth = open_scan(np.array([[[0, 255]]], np.uint8), role="truth")
    >>> check_label_present(truth, 1, recorded=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: truth ... holds no voxel of ni_label=1; it holds the values 0, 255: ...
    """
    if truth.dtype == np.bool_:
        return
    seen: set = set()
    for region in _blocks(truth.array):
        block = np.asarray(truth.array[region])
        values = np.unique(block)
        if len(seen) <= LISTED_VALUES:
            seen.update(v.item() for v in values[: LISTED_VALUES + 1])
        if (values == value).any():
            if not recorded and len(seen) > 2:
                raise ValueError(
                    f"truth {truth.source!r} holds the values {_listing(seen)} and records no "
                    f"phases, so which one is Ni is a guess ({name}={value} by default); "
                    f"pass --ni-label (ni_label=) with the value of Ni."
                )
            return
    raise ValueError(
        f"truth {truth.source!r} holds no voxel of {name}={value}; it holds the values "
        f"{_listing(seen)}: pass --ni-label (ni_label=) with the value of Ni "
        "(e.g. 255 for a 0/255 mask)."
    )


def _listing(values: set) -> str:
    ordered = sorted(values)
    text = ", ".join(str(v) for v in ordered[:LISTED_VALUES])
    return text + (", ..." if len(ordered) > LISTED_VALUES else "")


# ------------------------------------------------------------------ stored chunks of a scan


def _array_name(array: Any) -> str:
    root = getattr(array.store, "root", None)
    if root is not None:
        return str(Path(str(root)) / str(array.path)) if array.path else str(root)
    return str(array.store_path)


def _chunk_indices(array: Any, region: tuple[slice, ...]) -> Iterable[tuple[int, ...]]:
    grid = _storage_chunks(array)
    ranges = [
        range(sl.start // c, max(sl.start // c + 1, -(-sl.stop // c)))
        for sl, c in zip(region, grid)
    ]
    return itertools.product(*ranges)


def _storage_chunks(array: Any) -> tuple[int, ...]:
    """The shape of one stored object: the shard of a sharded array, else the chunk."""
    shards = getattr(array, "shards", None)
    return tuple(int(c) for c in (shards or array.chunks))


def _chunk_key(array: Any, index: tuple[int, ...]) -> str:
    metadata = array.metadata
    if hasattr(metadata, "encode_chunk_key"):
        return metadata.encode_chunk_key(index)
    separator = getattr(metadata, "dimension_separator", ".") or "."
    return separator.join(str(i) for i in index)


def _store_key(array: Any, key: str) -> str:
    return f"{array.path}/{key}" if array.path else key


def check_stored_chunks(array: Any, region: tuple[slice, ...], role: str = "scan") -> None:
    """Every stored chunk of the zarr ``array`` under ``region`` exists in its store.

    A chunk absent from the store reads as the fill value: for a scan, that is a silent
    hole of zeros. Costs one existence check per chunk of the region (no listing of
    the store), so it scales with the block, not with the volume.

    Raises
    ------
    ValueError
        Naming the array and the missing chunk key.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2, 2),
    ...                           dtype="uint8", fill_value=0)
    >>> array[:2] = 1
    >>> check_stored_chunks(array, (slice(0, 2), slice(0, 4)))
    >>> check_stored_chunks(array, (slice(0, 4), slice(0, 2)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: scan '...' has no stored chunk 'c/1/0' ...
    """
    from zarr.core.sync import sync

    store = array.store
    for index in _chunk_indices(array, region):
        key = _chunk_key(array, index)
        if not sync(store.exists(_store_key(array, key))):
            raise ValueError(
                f"{role} {_array_name(array)!r} has no stored chunk {key!r} (index "
                f"{tuple(index)}); Zarr would read it as the fill value "
                f"{np.asarray(array.fill_value).item()!r}, a silent hole in the data. Copy the "
                "scan again, or, if "
                "chunks were left out on purpose (all fill value, written with "
                "write_empty_chunks=False), pass --allow-missing-chunks "
                "(allow_missing_chunks=True)."
            )


def read_zarr_region(array: Any, region: tuple[slice, ...], role: str = "scan") -> np.ndarray:
    """``array[region]``; a chunk that cannot be decoded is named with its key.

    Examples
    --------
    >>> import zarr
    >>> array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), chunks=(2,),
    ...                           dtype="uint8")
    >>> read_zarr_region(array, (slice(1, 3),)).tolist()
    [0, 0]
    """
    try:
        return np.asarray(array[region])
    except Exception as exc:
        for index in _chunk_indices(array, region):
            chunk = tuple(
                slice(i * c, min((i + 1) * c, s))
                for i, c, s in zip(index, _storage_chunks(array), array.shape)
            )
            try:
                array[chunk]
            except Exception as chunk_exc:
                raise ValueError(
                    f"{role} {_array_name(array)!r}: stored chunk {_chunk_key(array, index)!r} "
                    f"is corrupt and cannot be decoded ({type(chunk_exc).__name__}: "
                    f"{chunk_exc}); copy the scan again from its source (or rewrite that "
                    "chunk)."
                ) from chunk_exc
        raise ValueError(
            f"{role} {_array_name(array)!r}: reading {region} failed "
            f"({type(exc).__name__}: {exc}); check the store."
        ) from exc


# ------------------------------------------------------------------ TIFF folders


def check_tiff_slices(files: list[Path]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the 2D slices in ``files``; all must agree (headers only).

    Raises
    ------
    ValueError
        Naming the first file whose shape or dtype differs from the first one, or that
        cannot be read.

    Examples
    --------
    >>> import tifffile
    >>> tmp = getfixture("tmp_path")
    >>> for i, n in enumerate((8, 8, 6)):
    ...     tifffile.imwrite(tmp / f"s{i}.tif", np.zeros((n, 8), np.uint8))
    >>> check_tiff_slices(sorted(tmp.glob("*.tif")))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: TIFF slice '.../s2.tif' has shape (6, 8) and dtype uint8, but the first ...
    """
    first_shape, first_dtype = None, None
    for path in files:
        shape, dtype = _tiff_header(path)
        if first_shape is None:
            first_shape, first_dtype = shape, dtype
            continue
        if shape != first_shape or dtype != first_dtype:
            raise ValueError(
                f"TIFF slice {str(path)!r} has shape {shape} and dtype {dtype}, but the first "
                f"slice {str(files[0])!r} has shape {first_shape} and dtype {first_dtype}; "
                "all slices of a stack must match: fix or remove that file."
            )
    return first_shape, first_dtype


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as handle:
            series = handle.series[0]
            return tuple(int(s) for s in series.shape), np.dtype(series.dtype)
    except Exception as exc:
        raise ValueError(
            f"TIFF slice {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
            "the file is truncated or not a TIFF: copy it again or remove it."
        ) from exc


def read_tiff(path: str) -> np.ndarray:
    """One TIFF file as an array; a truncated or corrupt file is named.

    Examples
    --------
    >>> import tifffile
    >>> path = getfixture("tmp_path") / "s.tif"
    >>> tifffile.imwrite(path, np.ones((2, 3), np.uint16))
    >>> read_tiff(str(path)).shape
    (2, 3)
    """
    import tifffile

    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise ValueError(
            f"TIFF slice {path!r} cannot be read ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt: copy it again or remove it."
        ) from exc
