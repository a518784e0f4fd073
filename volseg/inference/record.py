"""The run record of a segmentation: create the output, or reopen it to resume.

An output is created with the run's attrs (version, inputs, model, the settings'
record); ``resume=True`` reopens it only when the recorded settings, the model
and the inputs are those of this run (:meth:`SegmentSettings.changed_since`),
and never while another live run holds its writer lease.
"""

from __future__ import annotations

from typing import Any

from .. import io as vio
from .._version import __version__
from .settings import UNCERTAIN_BAND, SegmentSettings

__all__ = ["prepare_output", "run_attrs", "spacing"]


def run_attrs(settings: SegmentSettings, volume: Any, truth_volume: Any, model: dict) -> dict:
    """The attrs a run records in its output: version, inputs, model, parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from volseg.io import open_scan
    >>> settings = SegmentSettings().resolved(shape=(2, 8, 8), chunks=(2, 8, 8))
    >>> attrs = run_attrs(settings, open_scan(np.zeros((2, 8, 8))), None, {"sha256": "0"})
    >>> attrs["parameters"]["tile"], attrs["uncertain_band"]
    ('auto', [0.2, 0.8])
    """
    return {
        "version": __version__,
        # Absolute: `volseg report` and resume work from any directory.
        "input": vio.recorded_path(volume.source),
        "truth": vio.recorded_path(truth_volume.source) if truth_volume else None,
        "model": model,
        "parameters": settings.record(),
        "uncertain_band": list(UNCERTAIN_BAND),
    }


def spacing(scan: vio.Scan, voxel_size: Any, unit: str | None) -> dict[str, Any]:
    """The voxel size and unit for the output's metadata: as given, else the scan's.

    Examples
    --------
    >>> import numpy as np
    >>> from volseg.io import open_scan
    >>> spacing(open_scan(np.zeros((2, 8, 8))), (1.0, 0.5, 0.5), "micrometer")
    {'voxel_size': (1.0, 0.5, 0.5), 'unit': 'micrometer'}
    """
    if voxel_size is not None:
        return {"voxel_size": tuple(voxel_size), "unit": unit}
    recorded = vio.recorded_voxel_size(scan)
    return {} if recorded is None else {"voxel_size": recorded[0], "unit": recorded[1]}


def prepare_output(
    out: Any,
    settings: SegmentSettings,
    attrs: dict,
    overwrite: bool,
    resume: bool,
    physical: dict,
    confusion: bool,
) -> tuple[vio.OutputGroup, bool]:
    """Create the output group or reopen it for resume; returns (OutputGroup, reused).

    Examples
    --------
    >>> import zarr
    >>> settings = SegmentSettings().resolved(shape=(2, 8, 8), chunks=(1, 8, 8))
    >>> out = zarr.storage.MemoryStore()
    >>> output, reused = prepare_output(out, settings, {"parameters": settings.record(),
    ...     "model": {"sha256": "0"}, "input": None, "truth": None}, False, False, {}, False)
    >>> reused, output.chunks
    (False, (1, 8, 8))
    """
    if vio.output_exists(out):
        # Never two writers: a live run's output is refused, also with resume/overwrite.
        vio.refuse_live_lease(out)
        if resume:
            return _reopen(out, settings, attrs), True
        if not overwrite:
            raise FileExistsError(
                f"output {str(out)!r} already exists; pass overwrite=True (--overwrite) to "
                "replace it or resume=True (--resume) to finish an interrupted run."
            )
        vio.remove_output(out)
    record = attrs["parameters"]
    output = vio.create_output(
        out,
        settings.shape,
        settings.chunks,
        attrs=attrs,
        prob_dtype=settings.prob_dtype,
        has_truth=settings.has_truth,
        phases=record["phases"],
        confusion=confusion,
        stored_chunks=settings.stored_chunks,
        **physical,
    )
    vio.Lease.acquire(out)
    return output, False


def _reopen(out: Any, settings: SegmentSettings, attrs: dict) -> vio.OutputGroup:
    output = vio.open_output(out, mode="r+")
    changed = settings.changed_since(output.attrs.get("parameters", {}))
    if output.attrs.get("model", {}).get("sha256") != attrs["model"]["sha256"]:
        changed.append("model")
    for key in ("input", "truth"):
        if not vio.same_input(output.attrs.get(key), attrs[key]):
            changed.append(key)
    if changed:
        raise ValueError(
            f"output {str(out)!r} was started with other settings ({', '.join(changed)}); "
            "resume with the same settings, or pass overwrite=True (--overwrite) to "
            "start again."
        )
    output.ensure_flag("refined")  # outputs written before refinement existed
    vio.Lease.acquire(out)  # released when segment() returns or raises
    return output
