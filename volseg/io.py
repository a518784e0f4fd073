"""Open scans and create, write and read the output group.

This is the only module that touches storage. A scan can be

* a path to a Zarr v2 or v3 array, a group holding one array (or one named
  ``image``), a named array inside a group (``scan.zarr/image``), or an
  OME-Zarr multiscale group (level 0 is used);
* a TIFF file (one multi-page stack) or a folder of 2D TIFF slices, read lazily;
* a :class:`zarr.Array`, a :class:`dask.array.Array` or a :class:`numpy.ndarray`.

The output group (see ``docs/output-format.md``)::

    scan_ni.zarr/
      mask    uint8 (Z, Y, X), 1 = Ni
      prob    optional, uint8 0..255 or float16
      stats/  one array per field on the chunk grid
      attrs   {"volseg": {version, status, parameters, model, input, ...}}
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import guards
from .store import (  # noqa: F401  (the output format lives in volseg.store; re-exported)
    COUNT_FIELDS,
    PHASE_FIELDS,
    STAT_FIELDS,
    TRUTH_FIELDS,
    OutputGroup,
    _store_for,
    create_output,
    open_output,
    output_exists,
    remove_output,
)

__all__ = [
    "STAT_FIELDS",
    "OutputGroup",
    "Scan",
    "convert",
    "create_output",
    "default_output_path",
    "open_output",
    "ome_multiscales",
    "open_scan",
    "recorded_voxel_size",
    "write_arrays",
]

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
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


def _describe(source: Any) -> str:
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
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        array = _open_path(Path(source), role)
    elif isinstance(source, (zarr.Array, da.Array)):
        array = source
    elif isinstance(source, np.ndarray):
        array = da.from_array(source, chunks=_numpy_chunks(source.shape))
    elif hasattr(source, "__array__") and hasattr(source, "shape"):
        array = da.from_array(np.asarray(source), chunks="auto")
    else:
        raise TypeError(
            f"{role} {name!r} is not a path, zarr/dask/numpy array; "
            "give a Zarr path, a TIFF stack or an array."
        )
    _validate_volume(array, role, name, allow_bool)
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


def _validate_volume(array: Any, role: str, name: str, allow_bool: bool) -> None:
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
        return _open_tiff_stack([path])
    if path.is_dir():
        tiffs = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        is_zarr = any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup"))
        if tiffs and not is_zarr:
            return _open_tiff_stack(tiffs)
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


def _open_tiff_stack(files: list[Path]) -> da.Array:
    import tifffile

    if len(files) == 1:
        # One multi-page file: tifffile's zarr view reads pages lazily.
        store = tifffile.imread(str(files[0]), aszarr=True)
        array = zarr.open(store, mode="r")
        if isinstance(array, zarr.Group):
            array = array[sorted(name for name, _ in array.arrays())[0]]
        return da.from_zarr(array)
    # Headers only: slices of another shape or dtype are an error naming the file, never
    # cropped or padded to the first one.
    shape, dtype = guards.check_tiff_slices(files)
    pages = [da.from_delayed(_read_tiff_page(str(f)), shape=shape, dtype=dtype) for f in files]
    return da.stack(pages)


def _read_tiff_page(path: str):
    import dask

    return dask.delayed(guards.read_tiff, pure=True)(path)


def recorded_label(scan: Scan, phase: str = "ni") -> float | None:
    """The value of ``phase`` recorded in a label volume's attrs (``{"phases": {...}}``).

    volseg.synth labels record ``{"pore": 0, "ysz": 1, "ni": 2}``; other label
    volumes usually record nothing, and None is returned.
    """
    attrs = getattr(scan.array, "attrs", None)
    if attrs is None:
        return None
    phases = dict(attrs).get("phases")
    if isinstance(phases, dict) and phase in phases:
        return phases[phase]
    return None


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


def recorded_phases(scan: Scan) -> dict[str, int] | None:
    """All phases recorded in a label volume's attrs (``{"pore": 0, "ysz": 1, "ni": 2}``)."""
    phases = dict(getattr(scan.array, "attrs", None) or {}).get("phases")
    return dict(phases) if isinstance(phases, dict) else None


def open_truth(
    truth: Any,
    reference: Scan,
    ni_label: float | None = None,
    what: str = "scan",
    default: float | None = None,
    check: bool = True,
) -> tuple[Scan, float]:
    """Open a truth volume, check it matches ``reference`` and resolve the Ni value.

    Returns the truth and ``ni_label``: as given, else the value recorded in the
    truth's attrs (see :func:`recorded_label`), else ``default`` (not for a boolean
    truth, where Ni is True), else 1. With ``check``, a truth holding no voxel of that
    value, or (when the value is only the default 1) holding more than two values, is
    an error naming the values it holds (:func:`volseg.guards.check_label_present`).
    """
    truth_volume = open_scan(truth, role="truth", allow_bool=True)
    if truth_volume.shape != reference.shape:
        raise ValueError(
            f"truth {truth_volume.source!r} has shape {truth_volume.shape} but {what} "
            f"{reference.source!r} has shape {reference.shape}; give the labels of this {what}."
        )
    given = ni_label is not None
    if ni_label is None:
        ni_label = recorded_label(truth_volume, "ni")
    known = ni_label is not None
    if ni_label is None and truth_volume.dtype != np.bool_:
        ni_label = default
    ni_label = 1 if ni_label is None else ni_label
    if given:
        guards.check_label_value(
            ni_label, "ni_label", truth_volume.dtype, repr(truth_volume.source)
        )
    if check:
        guards.check_label_present(truth_volume, ni_label, recorded=known or default is not None)
    return truth_volume, ni_label


def truth_phases(truth: Scan, phases: dict[str, int], ni_label: float) -> dict[str, float] | None:
    """The label value of each of ``phases`` in ``truth``, or None when it has no phases.

    Taken from the truth's recorded phases where it names them, else the model's
    values; ``ni`` is ``ni_label``. None for a boolean (binary) truth and when these
    values collide (e.g. a 0/1 Ni mask scored with ``ni_label=1``): such a truth
    can only be scored for Ni.

    Examples
    --------
    >>> import numpy as np
    >>> labels = open_scan(np.zeros((1, 4, 4), np.uint8))
    >>> truth_phases(labels, {"pore": 0, "ysz": 1, "ni": 2}, 2)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    >>> truth_phases(labels, {"pore": 0, "ysz": 1, "ni": 2}, 1) is None
    True
    """
    if truth.dtype == np.bool_:
        return None
    values = {}
    for name, value in phases.items():
        recorded = recorded_label(truth, name)
        values[name] = recorded if recorded is not None else value
    values["ni"] = ni_label
    if len(set(values.values())) != len(values):
        log.info("truth %s: phases %s share values; scoring Ni only", truth.source, values)
        return None
    return values


def read_region(array: Any, region: tuple[slice, ...], role: str = "scan") -> np.ndarray:
    """Read ``array[region]`` as numpy (zarr and numpy; dask goes through the graph).

    A zarr chunk that cannot be decoded is an error naming the array and the chunk key.
    """
    if isinstance(array, zarr.Array):
        return guards.read_zarr_region(array, region, role)
    return np.asarray(array[region])


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
    group = zarr.open_group(_store_for(out), mode="w-", zarr_format=zarr_format)
    if attrs:
        group.attrs.update(attrs)
    for name, array in arrays.items():
        array = da.asarray(array)
        block = tuple(min(c, s) for c, s in zip(chunks, array.shape))
        # Every chunk is stored, also one that is all fill value: a chunk missing from
        # a scan is then always damage (see volseg.guards.check_stored_chunks).
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


def _open_hdf5(path: Path, dataset: str | None) -> da.Array:
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
    return da.from_array(source, chunks=chunks)


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
    >>> recorded_voxel_size(open_scan(group["1"]))
    ((1.0, 1.0, 1.0), 'micrometer')

    Labels keep their values on every level, and their phases:

    >>> labels = np.random.default_rng(0).integers(0, 3, (2, 8, 8)).astype(np.uint8)
    >>> group = convert(labels, getfixture("tmp_path") / "labels.zarr", chunks=(2, 8, 8),
    ...                 levels=2, phases={"pore": 0, "ysz": 1, "ni": 2}, progress=False)
    >>> bool((group["1"][...] == labels[:, ::2, ::2]).all()), recorded_phases(open_scan(group["1"]))
    (True, {'pore': 0, 'ysz': 1, 'ni': 2})
    """
    if levels < 1:
        raise ValueError(f"levels={levels!r} must be at least 1.")
    guards.refuse_overlap(out, {"input": source}, command="convert")
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if path is not None and path.suffix.lower() in (".h5", ".hdf5", ".hdf", ".nxs"):
        if not path.exists():
            raise FileNotFoundError(f"input {str(path)!r} does not exist; check the path.")
        volume = _open_hdf5(path, dataset)
        _validate_volume(volume, "input", str(path), allow_bool=False)
    else:
        scan = open_scan(source, role="input")
        volume = scan.array if isinstance(scan.array, da.Array) else da.from_array(scan.array)
    labels = labels or phases is not None
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
    factors = [(1, 2**i, 2**i) for i in range(len(pyramid))]
    attrs = {"ome": ome_multiscales(list(pyramid), voxel_size, "image", factors, unit)}
    callbacks = []
    if progress:
        from tqdm.dask import TqdmCallback

        callbacks.append(TqdmCallback(desc="convert", unit="chunk"))
    import contextlib

    with contextlib.ExitStack() as stack:
        for callback in callbacks:
            stack.enter_context(callback)
        array_attrs = {name: {"phases": dict(phases)} for name in pyramid} if phases else None
        return write_arrays(
            out, pyramid, chunks=chunks, attrs=attrs, array_attrs=array_attrs, overwrite=overwrite
        )


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
