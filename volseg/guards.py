"""Old path of the input and output checks, now in :mod:`volseg.io` (paths, labels, ...).

A thin lazy shim (PEP 562) so that ``from volseg import guards`` and
``from volseg.guards import X`` keep working until every caller imports the
new submodules.

>>> from volseg.guards import check_new_file
>>> check_new_file.__module__
'volseg.io.paths'
"""

from __future__ import annotations

from volseg._lazy import attach

# old name -> the volseg.io submodule that defines it now
_MOVED: dict[str, str] = {
    "check_label_present": "labels",
    "check_label_value": "labels",
    "check_new_file": "paths",
    "check_stored_chunks": "stored_chunks",
    "check_tiff_slices": "tiff",
    "read_tiff": "tiff",
    "read_zarr_region": "stored_chunks",
    "refuse_overlap": "paths",
    "zarr_container": "paths",
}

# Resolved in volseg.io (its submodules); __all__ lists every old name.
__getattr__, _dir, __all__ = attach("volseg.io", _MOVED)


def __dir__() -> list[str]:
    return list(__all__)
