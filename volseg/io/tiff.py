"""TIFF stacks: one multi-page file or a folder of 2D slices, read lazily and checked.

The slices of a folder must share one shape and dtype (:func:`check_tiff_slices`,
headers only); a truncated or corrupt slice is an error naming the file
(:func:`read_tiff`), never a hole in the volume.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile
import zarr

from volseg.conventions import as_dask_array

__all__ = ["TIFF_SUFFIXES", "check_tiff_slices", "open_tiff_stack", "read_tiff"]

TIFF_SUFFIXES = (".tif", ".tiff")


def open_tiff_stack(files: list[Path]) -> da.Array:
    """TIFF ``files`` as one lazy dask volume: one multi-page file, or one slice per file.

    Examples
    --------
    >>> import tifffile
    >>> tmp = getfixture("tmp_path")
    >>> for i in range(3):
    ...     tifffile.imwrite(tmp / f"s{i}.tif", np.full((4, 5), i, np.uint8))
    >>> stack = open_tiff_stack(sorted(tmp.glob("s*.tif")))
    >>> stack.shape, stack[:, 0, 0].compute().tolist()
    ((3, 4, 5), [0, 1, 2])
    """
    if len(files) == 1:
        # One multi-page file: tifffile's zarr view reads pages lazily.
        store = tifffile.imread(str(files[0]), aszarr=True)
        array = zarr.open(store, mode="r")
        if isinstance(array, zarr.Group):
            array = array[sorted(name for name, _ in array.arrays())[0]]
        return as_dask_array(array)
    # Headers only: slices of another shape or dtype are an error naming the file, never
    # cropped or padded to the first one.
    shape, dtype = check_tiff_slices(files)
    pages = [da.from_delayed(_read_tiff_page(str(f)), shape=shape, dtype=dtype) for f in files]
    return da.stack(pages)


def _read_tiff_page(path: str):
    return dask.delayed(read_tiff, pure=True)(path)


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
    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise ValueError(
            f"TIFF slice {path!r} cannot be read ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt: copy it again or remove it."
        ) from exc
