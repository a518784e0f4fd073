"""Write volumes as chunked Zarr: :func:`write_arrays` and the OME-Zarr pyramid of :func:`convert`.

``volseg convert`` turns a TIFF stack, an HDF5 dataset or any volseg input into an
OME-Zarr pyramid (level 0 the volume, each further level half the size in y and x)
that viewers such as napari can browse; ``volseg synth`` and the tests store their
volumes with :func:`write_arrays`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from tqdm.dask import TqdmCallback

from .metadata import ome_multiscales
from .paths import output_exists, refuse_overlap, remove_output, store_for
from .scans import open_hdf5, open_scan, validate_volume

__all__ = ["HDF5_SUFFIXES", "convert", "write_arrays"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")


def write_arrays(
    out: Any,
    arrays: dict[str, Any],
    *,
    chunks: tuple[int, ...],
    attrs: dict[str, Any] | None = None,
    array_attrs: dict[str, dict[str, Any]] | None = None,
    overwrite: bool = False,
    zarr_format: int = 3,
) -> zarr.Group:
    """Store dask (or numpy) arrays as named arrays of a new Zarr group, block by block.

    Parameters
    ----------
    out : path or zarr store
        The group to create.
    arrays : dict of str to array
        Name -> array; dask arrays are computed and written chunk by chunk.
    chunks : tuple of int
        Stored chunk shape (clipped to each array's shape).
    attrs : dict, optional
        Group attributes.
    array_attrs : dict of str to dict, optional
        Attributes of individual arrays.
    overwrite : bool
        Replace an existing group.
    zarr_format : {2, 3}
        Zarr format of the new group.

    Returns
    -------
    zarr.Group

    Examples
    --------
    >>> import dask.array as da
    >>> image = da.ones((4, 30, 30), dtype="uint16", chunks=(2, 30, 30))
    >>> labels = np.zeros((4, 30, 30), np.uint8)
    >>> group = write_arrays(getfixture("tmp_path") / "pair.zarr",
    ...                      {"image": image, "labels": labels}, chunks=(2, 16, 16),
    ...                      attrs={"source": "doctest"})
    >>> sorted(name for name, _ in group.arrays()), group["image"].chunks
    (['image', 'labels'], (2, 16, 16))
    >>> int(group["image"][...].sum()), group.attrs["source"]
    (3600, 'doctest')
    """
    if output_exists(out):
        if not overwrite:
            raise FileExistsError(
                f"output {str(out)!r} already exists; "
                "pass overwrite=True (--overwrite) to replace it."
            )
        remove_output(out, kind="zarr")
    group = zarr.open_group(store_for(out), mode="w-", zarr_format=zarr_format)
    if attrs:
        group.attrs.update(attrs)
    for name, array in arrays.items():
        array = da.asarray(array)
        block = tuple(min(c, s) for c, s in zip(chunks, array.shape))
        # Every chunk is stored, also one that is all fill value: a chunk missing from
        # a scan is then always damage (see volseg.io.stored_chunks.check_stored_chunks).
        target = group.create_array(
            name,
            shape=array.shape,
            chunks=block,
            dtype=array.dtype,
            fill_value=0,
            config={"write_empty_chunks": True},
        )
        if array_attrs and name in array_attrs:
            target.attrs.update(array_attrs[name])
        da.store(array.rechunk(block), target, lock=False)
    return group


def convert(
    source: Any,
    out: Any,
    *,
    dataset: str | None = None,
    chunks: tuple[int, int, int] = (16, 256, 256),
    levels: int = 3,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    labels: bool = False,
    phases: dict[str, int] | None = None,
) -> zarr.Group:
    """Convert a TIFF stack, an HDF5 dataset or any volseg input into chunked OME-Zarr.

    Level 0 is the volume itself (array ``"0"``); each further level halves y and x
    (mean of 2x2 blocks, chunk by chunk; for label volumes every second pixel, so
    levels hold label values, not averages of them), so viewers such as napari can
    browse it.

    Parameters
    ----------
    source : path or array
        TIFF file or folder of TIFF slices, ``.h5``/``.hdf5`` file, Zarr, or an array.
    out : path or zarr store
        The OME-Zarr group to write.
    dataset : str, optional
        HDF5 dataset path (needed when the file holds several 3D datasets).
    chunks : tuple of int
        Stored chunk shape.
    levels : int
        Number of resolution levels (>= 1).
    voxel_size : tuple of float
        (z, y, x) voxel size written into the metadata.
    unit : str, optional
        Unit of the voxel size, e.g. "micrometer".
    overwrite : bool
        Replace an existing group.
    progress : bool
        Show a progress bar.
    labels : bool
        The volume holds labels: downsample by taking every second pixel.
    phases : dict, optional
        ``{name: label value}`` of a label volume (implies ``labels``), recorded in
        the attrs of every level so that training, evaluation and ``measure_phases``
        find the phases (as ``volseg synth`` records them).

    Returns
    -------
    zarr.Group

    Examples
    --------
    A TIFF stack to a two-level pyramid; level 1 has half the pixels along y and x:

    >>> import tifffile
    >>> tiff = getfixture("tmp_path") / "scan.tif"
    >>> volume = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
    >>> tifffile.imwrite(tiff, volume, photometric="minisblack")
    >>> group = convert(tiff, getfixture("tmp_path") / "scan.zarr", chunks=(2, 32, 32),
    ...                 levels=2, voxel_size=(1.0, 0.5, 0.5), unit="micrometer", progress=False)
    >>> group["0"].shape, group["1"].shape, group["0"].chunks
    ((4, 64, 64), (4, 32, 32), (2, 32, 32))
    >>> from volseg.io.metadata import recorded_voxel_size
    >>> recorded_voxel_size(open_scan(group["1"]))
    ((1.0, 1.0, 1.0), 'micrometer')

    Labels keep their values on every level, and their phases:

    >>> from volseg.io.labels import recorded_phases
    >>> labels = np.random.default_rng(0).integers(0, 3, (2, 8, 8)).astype(np.uint8)
    >>> group = convert(labels, getfixture("tmp_path") / "labels.zarr", chunks=(2, 8, 8),
    ...                 levels=2, phases={"pore": 0, "ysz": 1, "ni": 2}, progress=False)
    >>> bool((group["1"][...] == labels[:, ::2, ::2]).all()), recorded_phases(open_scan(group["1"]))
    (True, {'pore': 0, 'ysz': 1, 'ni': 2})
    """
    if levels < 1:
        raise ValueError(f"levels={levels!r} must be at least 1.")
    refuse_overlap(out, {"input": source}, command="convert")
    volume = _open_input(source, dataset)
    pyramid = _pyramid(volume, levels, labels or phases is not None)
    factors = [(1, 2**i, 2**i) for i in range(len(pyramid))]
    attrs = {"ome": ome_multiscales(list(pyramid), voxel_size, "image", factors, unit)}
    with _progress_bar(progress):
        array_attrs = {name: {"phases": dict(phases)} for name in pyramid} if phases else None
        return write_arrays(
            out, pyramid, chunks=chunks, attrs=attrs, array_attrs=array_attrs, overwrite=overwrite
        )


def _open_input(source: Any, dataset: str | None) -> da.Array:
    """The volume to convert, as a dask array: an HDF5 dataset, else any volseg input."""
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if path is not None and path.suffix.lower() in HDF5_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"input {str(path)!r} does not exist; check the path.")
        volume = open_hdf5(path, dataset)
        validate_volume(volume, "input", str(path), allow_bool=False)
    else:
        scan = open_scan(source, role="input")
        volume = scan.array if isinstance(scan.array, da.Array) else da.from_array(scan.array)
    return volume


def _pyramid(volume: da.Array, levels: int, labels: bool) -> dict[str, da.Array]:
    """Levels ``"0"``, ``"1"``, ...: each halves y and x (means, or every second label)."""
    pyramid = {"0": volume}
    current = volume
    for level in range(1, levels):
        if min(current.shape[1:]) < 2:
            break
        if labels:
            height, width = (n // 2 * 2 for n in current.shape[1:])
            current = current[:, :height:2, :width:2]
        else:
            current = da.coarsen(np.mean, current, {1: 2, 2: 2}, trim_excess=True)
            current = current.astype(volume.dtype)
        pyramid[str(level)] = current
    return pyramid


def _progress_bar(progress: bool) -> contextlib.AbstractContextManager:
    """A tqdm bar over the dask chunks written, or nothing."""
    if not progress:
        return contextlib.nullcontext()
    return TqdmCallback(desc="convert", unit="chunk")
