"""Storage: open scans, and create, write and read the output group.

This is the only package that touches storage (zarr, tifffile, h5py). A scan can be

* a path to a Zarr v2 or v3 array, a group holding one array (or one named
  ``image``), a named array inside a group (``scan.zarr/image``), or an
  OME-Zarr multiscale group (level 0 is used);
* a TIFF file (one multi-page stack) or a folder of 2D TIFF slices, read lazily;
* a :class:`zarr.Array`, a :class:`dask.array.Array` or a :class:`numpy.ndarray`.

The output group (see ``docs/output-format.md``)::

    scan_ni.zarr/
      mask    uint8 (Z, Y, X), 1 = Ni
      prob    optional, uint8 0..255 or float16
      chunk_records, chunk_table   one record per block
      attrs   {"volseg": {version, status, parameters, model, input, ...}}

One job per module: ``scans`` (open a scan), ``tiff``, ``stored_chunks`` (missing and
corrupt chunks), ``labels`` (recorded phases, the truth), ``metadata`` (voxel size,
OME-Zarr), ``paths`` (where outputs go, what may be replaced), ``writers`` (write_arrays,
convert), ``output`` (the OutputGroup), ``create`` (a new output group), ``records``
(per-block records and their table), ``results`` (reading an output back as a
result: per-chunk table, summary), ``completeness``, ``lease`` (one writer per output),
``scratch``. Names are imported on first use (PEP 562).

>>> import numpy as np
>>> from volseg import io as vio
>>> vio.open_scan(np.zeros((2, 4, 4))).shape
(2, 4, 4)
"""

from __future__ import annotations

from volseg._lazy import attach

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    # scans
    "PREFERRED_ARRAYS": "scans",
    "Scan": "scans",
    "describe": "scans",
    "open_hdf5": "scans",
    "open_scan": "scans",
    "read_region": "scans",
    "validate_chunks": "scans",
    "validate_volume": "scans",
    # tiff
    "TIFF_SUFFIXES": "tiff",
    "check_tiff_slices": "tiff",
    "open_tiff_stack": "tiff",
    "read_tiff": "tiff",
    # stored_chunks
    "check_stored_chunks": "stored_chunks",
    "read_zarr_region": "stored_chunks",
    # labels
    "check_label_present": "labels",
    "check_label_value": "labels",
    "open_truth": "labels",
    "recorded_label": "labels",
    "recorded_phases": "labels",
    "truth_phases": "labels",
    # metadata
    "ome_multiscales": "metadata",
    "recorded_voxel_size": "metadata",
    "validate_voxel_size": "metadata",
    # paths
    "check_new_file": "paths",
    "in_memory": "paths",
    "memory_store": "paths",
    "default_output_path": "paths",
    "output_exists": "paths",
    "refuse_overlap": "paths",
    "remove_output": "paths",
    "store_for": "paths",
    "zarr_container": "paths",
    # writers
    "HDF5_SUFFIXES": "writers",
    "convert": "writers",
    "write_arrays": "writers",
    # output
    # results: reading an output back
    "SegmentationResult": "results",
    "chunk_rows": "results",
    "open_result": "results",
    "output_phases": "results",
    "stats_table": "results",
    "summarise": "results",
    "OutputGroup": "output",
    "open_output": "output",
    "stats_array": "output",
    # create
    "create_output": "create",
    "validate_shards": "create",
    # records
    "BULK_READ": "records",
    "COUNT_FIELDS": "records",
    "LAYOUT_VERSION": "records",
    "PHASE_FIELDS": "records",
    "RECORDS": "records",
    "STAT_DTYPES": "records",
    "STAT_FIELDS": "records",
    "TABLE": "records",
    "TABLE_ENTRIES": "records",
    "TABLE_FLUSH_SECONDS": "records",
    "TRUTH_FIELDS": "records",
    "RunTable": "records",
    "chunk_frame": "records",
    "listed_records": "records",
    "load_table": "records",
    "record_fields": "records",
    # completeness
    "WHOLE_VOLUME_KEYS": "completeness",
    "Completeness": "completeness",
    "IncompleteOutputError": "completeness",
    "check_complete": "completeness",
    "done_voxels": "completeness",
    "output_state": "completeness",
    "partial_measures": "completeness",
    "recorded_path": "completeness",
    "same_input": "completeness",
    # lease
    "LEASE_HEARTBEAT": "lease",
    "LEASE_NAME": "lease",
    "LEASE_TIMEOUT": "lease",
    "Lease": "lease",
    "LeaseHeldError": "lease",
    "holds_leases": "lease",
    "lease_state": "lease",
    "refuse_live_lease": "lease",
    # scratch
    "remove_scratch": "scratch",
    "scratch_group": "scratch",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
