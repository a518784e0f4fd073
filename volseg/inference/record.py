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
from ..conventions import jsonable
from ..microstructure.cleanup import clean_output
from .settings import UNCERTAIN_BAND, SegmentSettings

__all__ = [
    "clean_recorded",
    "cleanup_record",
    "cleanup_untouched",
    "segment_again",
    "prepare_output",
    "run_attrs",
    "spacing",
]

# ``cleanup.state`` in the output's attrs (with ``min_size``): "pending" from creation,
# "refused" when the min_size was refused before any voxel moved, "writing" once the
# clean-up may have moved voxels (chunks may be half cleaned), "done" (written together
# with status "complete"). An output without it was written before it was kept.


def cleanup_record(min_size: Any, state: str = "pending") -> dict | None:
    """The ``cleanup`` attrs of a run with ``min_size`` (None without a clean-up).

    Examples
    --------
    >>> cleanup_record(50), cleanup_record(0)
    ({'min_size': 50, 'state': 'pending'}, None)
    """
    return {"min_size": jsonable(min_size), "state": state} if min_size else None


def cleanup_untouched(attrs: dict) -> bool:
    """True when an unfinished output's voxels are certainly those the network wrote.

    An output without a ``cleanup`` record but with a ``min_size`` was written by a
    version that did not keep one: its clean-up may have started.

    Examples
    --------
    >>> cleanup_untouched({"status": "running", "cleanup": {"state": "pending"}})
    True
    >>> cleanup_untouched({"status": "running", "cleanup": {"state": "refused"}})
    True
    >>> cleanup_untouched({"status": "running", "cleanup": {"state": "writing"}})
    False
    >>> cleanup_untouched({"status": "running", "parameters": {"min_size": 0}})
    True
    >>> cleanup_untouched({"status": "running", "parameters": {"min_size": 50}})
    False
    >>> cleanup_untouched({"status": "complete"})
    False
    """
    if attrs.get("status") == "complete":
        return False
    state, min_size = _cleanup_state(attrs)
    if state is None:
        return not min_size
    return state in ("pending", "refused")


def segment_again(attrs: dict, all_done: bool) -> bool:
    """True when a resumed run must segment every chunk again.

    A clean-up may have rewritten some chunks in place and not others.

    Examples
    --------
    >>> segment_again({"status": "running", "cleanup": {"state": "writing"}}, False)
    True
    >>> segment_again({"status": "running", "cleanup": {"state": "pending"}}, True)
    False
    >>> segment_again({"status": "running", "parameters": {"min_size": 50}}, True)
    True
    >>> segment_again({"status": "running", "parameters": {"min_size": 50}}, False)
    False
    """
    if attrs.get("status") == "complete":
        return False
    state, min_size = _cleanup_state(attrs)
    if state == "writing":
        return True
    # An older output with a min_size: its clean-up starts once every chunk is done.
    return state is None and bool(min_size) and all_done


def _cleanup_state(attrs: dict) -> tuple[str | None, Any]:
    """The recorded clean-up state (None: not recorded) and the recorded ``min_size``."""
    state = (attrs.get("cleanup") or {}).get("state")
    return state, (attrs.get("parameters") or {}).get("min_size")


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
        "cleanup": cleanup_record(settings.min_size),
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
    recorded = output.attrs.get("parameters", {})
    changed = settings.changed_since(recorded)
    other_min_size = "min_size" in changed and cleanup_untouched(output.attrs)
    if other_min_size:
        # The clean-up runs after the last chunk and has not moved a voxel yet (or was
        # refused): another min_size applies to the same segmentation.
        changed.remove("min_size")
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
    if other_min_size:
        output.update_attrs(
            parameters={**recorded, "min_size": settings.record()["min_size"]},
            cleanup=cleanup_record(settings.min_size),
        )
    output.ensure_flag("refined")  # outputs written before refinement existed
    vio.Lease.acquire(out)  # released when segment() returns or raises
    return output


def clean_recorded(output: vio.OutputGroup, settings: SegmentSettings) -> tuple[dict, dict]:
    """Remove components under ``min_size`` in place, recording how far it got.

    Returns the clean-up report and the ``cleanup`` record to write together with
    status ``"complete"``. ``cleanup.state`` becomes ``"writing"`` before the first voxel
    is rewritten (an interrupted clean-up makes a resumed run segment again), and
    ``"refused"`` when the ``min_size`` is refused before any voxel moves: the
    segmentation is then intact, and a resumed run may clean it with another one.

    Examples
    --------
    >>> import zarr
    >>> settings = SegmentSettings(min_size=2).resolved(shape=(4, 4, 4), chunks=(2, 4, 4))
    >>> output = vio.create_output(zarr.storage.MemoryStore(), (4, 4, 4), (2, 4, 4), attrs={})
    >>> output.mask[3] = 1  # a layer of 16 voxels, and a stray voxel
    >>> output.mask[1, 1, 1] = 1
    >>> report, record = clean_recorded(output, settings)
    >>> report["1"]["removed_voxels"], record
    (1, {'min_size': 2, 'state': 'done'})
    >>> output.attrs["cleanup"]["state"]  # written before the first voxel moved
    'writing'
    >>> huge = SegmentSettings(min_size=10**6).resolved(shape=(4, 4, 4))
    >>> clean_recorded(output, huge)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: min_size=1000000 (1000000 voxels) would remove every component of ... unchanged: ...
    >>> output.attrs["cleanup"]["state"]
    'refused'
    """
    phases = settings.phases if settings.phase is None else None
    started: list[bool] = []

    def writing() -> None:
        output.update_attrs(cleanup=cleanup_record(settings.min_size, "writing"))
        started.append(True)

    try:
        report = clean_output(output, settings.min_size, phases, before_writing=writing)
    except ValueError as error:
        if started:
            raise  # voxels may have moved: the record stays "writing"
        refused = {**cleanup_record(settings.min_size, "refused"), "reason": str(error)}
        output.update_attrs(cleanup=refused)
        raise ValueError(
            f"{error} Every chunk of {output.path!r} is segmented and unchanged: run again "
            "with resume=True (--resume) and that min_size to clean it without segmenting "
            "again."
        ) from None
    return report, cleanup_record(settings.min_size, "done")
