"""Old path of the output format, now in :mod:`volseg.io` (records, output, create, ...).

A thin lazy shim (PEP 562) so that ``from volseg import store`` and
``from volseg.store import X`` keep working until every caller imports the
new submodules.

>>> from volseg.store import record_fields
>>> record_fields.__module__
'volseg.io.records'
"""

from __future__ import annotations

from volseg._lazy import attach

# old name -> the volseg.io submodule that defines it now
_MOVED: dict[str, str] = {
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
    "OutputGroup": "output",
    "open_output": "output",
    "create_output": "create",
    "validate_shards": "create",
    "output_exists": "paths",
    "remove_output": "paths",
    "WHOLE_VOLUME_KEYS": "completeness",
    "Completeness": "completeness",
    "IncompleteOutputError": "completeness",
    "check_complete": "completeness",
    "done_voxels": "completeness",
    "output_state": "completeness",
    "partial_measures": "completeness",
    "recorded_path": "completeness",
    "same_input": "completeness",
    "LEASE_HEARTBEAT": "lease",
    "LEASE_NAME": "lease",
    "LEASE_TIMEOUT": "lease",
    "Lease": "lease",
    "LeaseHeldError": "lease",
    "holds_leases": "lease",
    "lease_state": "lease",
    "refuse_live_lease": "lease",
}

# Resolved in volseg.io (its submodules); __all__ lists every old name.
__getattr__, _dir, __all__ = attach("volseg.io", _MOVED)


def __dir__() -> list[str]:
    return list(__all__)
