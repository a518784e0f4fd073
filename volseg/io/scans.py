"""Open a scan: the readers of every accepted input, validated as a 3D volume.

A scan can be

* a path to a Zarr v2 or v3 array, a group holding one array (or one named
  ``image``), a named array inside a group (``scan.zarr/image``), or an
  OME-Zarr multiscale group (level 0 is used);
* a TIFF file (one multi-page stack) or a folder of 2D TIFF slices, read lazily
  (:mod:`volseg.io.tiff`);
* an HDF5 dataset (:func:`open_hdf5`, for ``volseg convert``);
* a :class:`zarr.Array`, a :class:`dask.array.Array` or a :class:`numpy.ndarray`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from volseg.conventions import as_dask_array

from .stored_chunks import read_zarr_region
from .tiff import TIFF_SUFFIXES, open_tiff_stack

__all__ = [
    "PREFERRED_ARRAYS",
    "Scan",
    "describe",
    "open_hdf5",
    "open_scan",
    "read_region",
    "validate_chunks",
    "validate_volume",
]

# Which array of a group a role means when the group holds several.
PREFERRED_ARRAYS = {
    "truth": ("labels",),
    "training labels": ("labels",),
    "labels": ("labels",),
}


@dataclass
class Scan:
    """A validated 3D volume ready to be read block by block.

    Attributes
    ----------
    array : zarr.Array or dask.array.Array
        Readable lazily; a zarr array is read directly by the task that needs a
        region, a dask array is sliced into the task graph.
    source : str
        What the user gave, for messages and the output attrs.
    chunks : tuple of int
        The storage (or dask) chunk shape, used to choose processing blocks.

    Examples
    --------
    >>> import dask.array as da
    >>> scan = open_scan(da.zeros((10, 64, 64), dtype="uint16", chunks=(4, 32, 32)))
    >>> scan.shape, scan.chunks, scan.dtype.name, scan.direct
    ((10, 64, 64), (4, 32, 32), 'uint16', False)
    """

    array: Any
    source: str
    chunks: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def direct(self) -> bool:
        """True when tasks read regions themselves (zarr), False for dask graphs."""
        return not isinstance(self.array, da.Array)


def describe(source: Any) -> str:
    """How messages name an input: a path as given, else its kind and shape.

    Examples
    --------
    >>> describe("data/scan.zarr")
    'data/scan.zarr'
    >>> describe(np.zeros((2, 3, 4)))
    'numpy.ndarray of shape (2, 3, 4)'
    """
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, zarr.Array):
        return f"zarr array {source.store_path}"
    kind = f"{type(source).__module__}.{type(source).__name__}"
    return f"{kind} of shape {getattr(source, 'shape', '?')}"


def open_scan(source: Any, *, role: str = "scan", allow_bool: bool = False) -> Scan:
    """Open and validate a 3D volume.

    Parameters
    ----------
    source : path, zarr.Array, dask.array.Array or numpy.ndarray
        The volume; see the module docstring for the accepted kinds.
    role : str
        Word used in error messages ("scan", "truth").
    allow_bool : bool
        Accept boolean volumes (for masks and labels).

    Returns
    -------
    Scan

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    ValueError
        Not 3D, a non-numeric dtype, or a group with no unambiguous array.

    Examples
    --------
    >>> scan = open_scan(np.zeros((4, 32, 32), dtype=np.uint16))
    >>> scan.shape, scan.dtype.name
    ((4, 32, 32), 'uint16')
    """
    name = describe(source)
    if isinstance(source, (str, os.PathLike)):
        array = _open_path(Path(source), role)
    elif isinstance(source, (zarr.Array, da.Array)):
        array = source
    elif isinstance(source, np.ndarray):
        array = as_dask_array(source, chunks=_numpy_chunks(source.shape))
    elif hasattr(source, "__array__") and hasattr(source, "shape"):
        array = as_dask_array(np.asarray(source), chunks="auto")
    else:
        raise TypeError(
            f"{role} {name!r} is not a path, zarr/dask/numpy array; "
            "give a Zarr path, a TIFF stack or an array."
        )
    validate_volume(array, role, name, allow_bool)
    chunks = _chunk_shape(array)
    return Scan(array=array, source=name, chunks=chunks)


def _numpy_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 3:
        return shape
    return (min(shape[0], 16), shape[1], shape[2])


def _chunk_shape(array: Any) -> tuple[int, int, int]:
    if isinstance(array, da.Array):
        return tuple(int(max(c)) for c in array.chunks)
    return tuple(int(c) for c in array.chunks)


def validate_volume(array: Any, role: str, name: str, allow_bool: bool) -> None:
    """Refuse a volume that is not 3D, is empty or holds no numbers.

    ``role`` and ``name`` name it in the message; ``allow_bool`` accepts boolean
    volumes (masks and labels).

    Examples
    --------
    >>> validate_volume(np.zeros((1, 2, 2)), "scan", "s", allow_bool=False)
    >>> validate_volume(np.zeros((2, 2)), "scan", "s", allow_bool=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: scan 's' has shape (2, 2) (2D); volseg needs a 3D (z, y, x) volume: ...
    """
    if array.ndim != 3:
        raise ValueError(
            f"{role} {name!r} has shape {tuple(array.shape)} ({array.ndim}D); volseg needs a 3D "
            "(z, y, x) volume: stack 2D slices into a volume, or select one channel/time point."
        )
    if min(array.shape) < 1:
        raise ValueError(f"{role} {name!r} has shape {tuple(array.shape)}: it is empty.")
    dtype = np.dtype(array.dtype)
    numeric = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    if not (numeric or (allow_bool and dtype == np.bool_)):
        raise ValueError(
            f"{role} {name!r} has dtype {dtype}, which is not numeric; volseg reads integer or "
            "floating-point grey values: convert it, e.g. with numpy astype('float32')."
        )


def _open_path(path: Path, role: str) -> Any:
    if not path.exists():
        raise FileNotFoundError(
            f"{role} {str(path)!r} does not exist; check the path (a Zarr array or group, "
            "'group.zarr/array', a TIFF file or a folder of TIFF slices)."
        )
    if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
        return open_tiff_stack([path])
    if path.is_dir():
        tiffs = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        is_zarr = any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup"))
        if tiffs and not is_zarr:
            return open_tiff_stack(tiffs)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ValueError(
            f"{role} {str(path)!r} could not be opened as Zarr ({exc}); give a Zarr v2/v3 array "
            "or group, a TIFF file or a folder of TIFF slices."
        ) from exc
    if isinstance(node, zarr.Group):
        try:
            return _array_in_group(node, path, role)
        except ValueError as exc:
            if str(exc).startswith(role):
                raise
            raise ValueError(
                f"{role} {str(path)!r} is a Zarr group whose metadata cannot be read ({exc}); "
                "a zarr.json (or .zarray/.zattrs) inside it is damaged: copy it again."
            ) from exc
    return node


def _array_in_group(group: zarr.Group, path: Path, role: str) -> zarr.Array:
    attrs = dict(group.attrs)
    arrays = sorted(name for name, _ in group.arrays())
    # A group with image + labels (volseg.synth) or mask + labels (a volseg output of a
    # three-phase model): labels are what a "labels" or "truth" role means.
    for name in PREFERRED_ARRAYS.get(role, ()):
        if name in arrays:
            return group[name]
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if multiscales:
        level0 = multiscales[0]["datasets"][0]["path"]
        return group[level0]
    if len(arrays) == 1:
        return group[arrays[0]]
    if "image" in arrays:
        return group["image"]
    listing = ", ".join(arrays) if arrays else "no arrays"
    raise ValueError(
        f"{role} {str(path)!r} is a Zarr group holding {listing}; name the array to use, "
        f"e.g. '{path}/{arrays[0] if arrays else 'image'}'."
    )


def open_hdf5(path: Path, dataset: str | None) -> da.Array:
    """The 3D dataset ``dataset`` of an HDF5 file as a lazy dask array (on its chunks).

    Without ``dataset``, the file's only 3D dataset; a file with several is an error
    listing them.

    Examples
    --------
    >>> import h5py
    >>> path = getfixture("tmp_path") / "scan.h5"
    >>> with h5py.File(path, "w") as handle:
    ...     _ = handle.create_dataset("entry/data", data=np.zeros((20, 8, 8), np.uint16))
    >>> open_hdf5(path, None).chunks
    ((16, 4), (8,), (8,))
    """
    try:
        import h5py
    except ImportError as exc:
        raise ValueError(
            f"{str(path)!r} is an HDF5 file and h5py is not installed: pip install h5py."
        ) from exc
    handle = h5py.File(path, "r")
    if dataset is None:
        names: list[str] = []
        handle.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        three_d = [n for n in names if handle[n].ndim == 3]
        if len(three_d) != 1:
            raise ValueError(
                f"HDF5 file {str(path)!r} holds {len(three_d)} 3D datasets "
                f"({', '.join(three_d) or 'none'}); name one with --dataset."
            )
        dataset = three_d[0]
    if dataset not in handle:
        raise ValueError(f"HDF5 file {str(path)!r} has no dataset {dataset!r}.")
    source = handle[dataset]
    chunks = source.chunks or (min(16, source.shape[0]), *source.shape[1:])
    return as_dask_array(source, chunks=chunks)


def read_region(array: Any, region: tuple[slice, ...], role: str = "scan") -> np.ndarray:
    """Read ``array[region]`` as numpy (zarr and numpy; dask goes through the graph).

    A zarr chunk that cannot be decoded is an error naming the array and the chunk key.

    Examples
    --------
    >>> read_region(np.arange(8).reshape(2, 2, 2), (slice(1, 2), slice(0, 2), slice(0, 1)))
    array([[[4],
            [6]]])
    """
    if isinstance(array, zarr.Array):
        return read_zarr_region(array, region, role)
    return np.asarray(array[region])


def validate_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Three positive processing-chunk sizes (z, y, x), each cut to the volume's shape.

    Examples
    --------
    >>> validate_chunks([8, 512, 512], (4, 300, 1000))
    (4, 300, 512)
    >>> validate_chunks((0, 64, 64), (4, 64, 64))
    Traceback (most recent call last):
    ValueError: chunks=(0, 64, 64) must be three positive integers (z, y, x).
    """
    try:
        values = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"chunks={chunks!r} must be three positive integers (z, y, x).")
    return tuple(min(c, s) for c, s in zip(values, shape))
