"""Completeness of an output group: which chunks are done, and the rule readers follow.

Every reader of an output group (``volseg stats``, ``evaluate``, ``measure``, ``report``,
:func:`volseg.open_result`) goes through :func:`check_complete`: an output whose run did
not finish is refused, naming how many chunks are missing and the fix (``--resume``),
unless the caller passes ``allow_incomplete=True`` (``--allow-incomplete``); then the
chunks that are not done are excluded from every figure (not counted as background),
and the figures say so (``chunks_missing``).

See ``docs/output-format.md`` for the layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .output import OutputGroup, open_output

__all__ = [
    "WHOLE_VOLUME_KEYS",
    "Completeness",
    "IncompleteOutputError",
    "check_complete",
    "done_voxels",
    "output_state",
    "partial_measures",
    "recorded_path",
    "same_input",
]


class IncompleteOutputError(ValueError):
    """An output group whose run has not finished, read without ``allow_incomplete``.

    Examples
    --------
    >>> issubclass(IncompleteOutputError, ValueError)
    True
    """


@dataclass(frozen=True)
class Completeness:
    """Which chunks of an output are done.

    Attributes
    ----------
    done : numpy.ndarray
        bool, one entry per chunk (the chunk grid).
    status : str
        The recorded ``status`` (``"running"`` or ``"complete"``).

    Examples
    --------
    >>> state = Completeness(np.array([[[True, False]]]), "running")
    >>> state.missing, state.total, state.complete
    (1, 2, False)
    """

    done: np.ndarray
    status: str | None

    @property
    def total(self) -> int:
        return int(self.done.size)

    @property
    def missing(self) -> int:
        return int(self.total - np.count_nonzero(self.done))

    @property
    def complete(self) -> bool:
        return self.status == "complete" and self.missing == 0


def check_complete(output: Any, allow_incomplete: bool = False) -> Completeness:
    """Refuse an output whose run did not finish, unless ``allow_incomplete``.

    Parameters
    ----------
    output : volseg.io.OutputGroup
    allow_incomplete : bool
        Accept it; the caller then excludes the chunks that are not done.

    Returns
    -------
    Completeness

    Raises
    ------
    IncompleteOutputError
        (a ValueError) naming the output, how many chunks are missing and the fix.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (1, 8, 8), attrs={})
    >>> try:
    ...     check_complete(output)
    ... except IncompleteOutputError as exc:
    ...     print(str(exc).split(": ", 1)[1][:26])
    2 of 2 chunks are not done
    >>> check_complete(output, allow_incomplete=True).missing
    2
    """
    done = np.asarray(output.read_done(), dtype=bool)
    state = Completeness(done, output.attrs.get("status"))
    if state.complete or allow_incomplete:
        return state
    if state.missing:
        what = f"{state.missing} of {state.total} chunks are not done"
    else:
        what = f"every chunk is done but the run did not finish (status {state.status!r})"
    raise IncompleteOutputError(
        f"output {output.path!r} is incomplete: {what}; finish it with `volseg segment ... "
        "--resume` (segment(..., resume=True)) and the same settings, or pass "
        "--allow-incomplete (allow_incomplete=True) to use only the done chunks."
    )


def recorded_path(source: Any) -> Any:
    """An input as the run record stores it: a local path made absolute, else unchanged.

    Examples
    --------
    >>> getfixture("monkeypatch").chdir(getfixture("tmp_path"))
    >>> Path("scan.zarr").mkdir()
    >>> recorded_path("scan.zarr") == str(Path("scan.zarr").resolve())
    True
    >>> recorded_path("zarr array /image")
    'zarr array /image'
    """
    if isinstance(source, (str, os.PathLike)) and "://" not in str(source):
        path = Path(source)
        # Descriptions of in-memory arrays ("zarr array /image") are not paths.
        if path.exists():
            return str(path.resolve())
    return str(source) if isinstance(source, os.PathLike) else source


def same_input(recorded: Any, given: Any) -> bool:
    """Whether a recorded input and a given one name the same thing (paths resolved).

    Examples
    --------
    >>> same_input("scan.zarr", str(Path("scan.zarr").resolve()))
    True
    """
    if recorded == given:
        return True
    if isinstance(recorded, str) and isinstance(given, str):
        try:
            return Path(recorded).resolve() == Path(given).resolve()
        except (OSError, ValueError):
            return False
    return False


def output_state(source: Any, allow_incomplete: bool) -> tuple[Completeness, Any] | None:
    """``(Completeness, OutputGroup)`` of a volseg output group, None for other volumes.

    ``source`` may be a path to one, an :class:`OutputGroup` or a result holding one;
    it is checked with :func:`check_complete`.

    Examples
    --------
    >>> output_state(np.zeros((2, 2, 2)), allow_incomplete=False) is None
    True
    """
    if isinstance(source, OutputGroup):
        output = source
    elif isinstance(source, (str, os.PathLike)):
        try:
            output = open_output(source)
        except (FileNotFoundError, ValueError):
            return None
    elif getattr(source, "group", None) is not None and getattr(source, "path", None):
        try:
            output = open_output(source.path)
        except (FileNotFoundError, ValueError):
            return None
    else:
        return None
    return check_complete(output, allow_incomplete), output


def done_voxels(state: Completeness, output: Any) -> Any:
    """A lazy bool volume on the output's chunks: True inside the done chunks.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 4, 4), (1, 4, 4), attrs={})
    >>> state = Completeness(np.array([[[True]], [[False]]]), "running")
    >>> done_voxels(state, output).sum(axis=(1, 2)).compute().tolist()
    [16, 0]
    """
    shape = tuple(int(s) for s in output.mask.shape)
    chunks = da.core.normalize_chunks(output.chunks, shape)
    return da.map_blocks(_done_block, done=state.done, chunks=chunks, dtype=bool)


def _done_block(done: np.ndarray, block_info=None, block_id=None) -> np.ndarray:
    return np.full(block_info[None]["chunk-shape"], bool(done[block_id]), dtype=bool)


# Measures that need the whole volume (surfaces across chunk faces, components,
# percolation, thickness): with chunks missing they are not computed (None).
WHOLE_VOLUME_KEYS = (
    "faces",
    "surface_area_faces",
    "specific_surface_area",
    "specific_surface_area_isotropic",
    "n_components",
    "largest_component_voxels",
    "largest_component_fraction",
    "percolates",
    "percolating_fraction",
    "thickness_mean",
    "thickness_median",
    "thickness_truncated_fraction",
    "tpb_edges",
    "tpb_length_edges",
    "tpb_density_edges",
    "tpb_density",
)


def partial_measures(
    result: dict[str, Any], phases: dict[str, Any], state: Completeness, output: Any
) -> dict[str, Any]:
    """Measures of an incomplete output: fractions over the done chunks only.

    The measures that need the whole volume are set to None; ``chunks_missing`` and
    ``note`` say so.

    ``phases``: ``{name: lazy bool volume}``, ``""`` for the single phase of ``measure``.

    Examples
    --------
    >>> import dask.array as da, zarr
    >>> from volseg.io.create import create_output
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 4, 4), (1, 4, 4), attrs={})
    >>> state = Completeness(np.array([[[True]], [[False]]]), "running")
    >>> ni = da.ones((2, 4, 4), dtype=bool, chunks=(1, 4, 4))
    >>> result = partial_measures({"percolates": True}, {"": ni}, state, output)
    >>> result["phase_voxels"], result["volume_fraction"], result["percolates"]
    (16, 1.0, None)
    """
    valid = done_voxels(state, output)
    n_valid, *counts = da.compute(
        da.count_nonzero(valid),
        *(da.count_nonzero(p & valid.rechunk(p.chunks)) for p in phases.values()),
    )
    n_valid = int(n_valid)

    def fix(values: dict[str, Any], count: int) -> None:
        values["phase_voxels"] = int(count)
        values["volume_fraction"] = count / n_valid if n_valid else None
        for key in WHOLE_VOLUME_KEYS:
            if key in values:
                values[key] = None

    for (name, _), count in zip(phases.items(), counts):
        fix(result if name == "" else result["phases"][name], int(count))
    if "phase_fractions" in result:
        result["phase_fractions"] = {
            name: values["volume_fraction"] for name, values in result["phases"].items()
        }
    for key in WHOLE_VOLUME_KEYS:
        if key in result:
            result[key] = None
    result["chunks_missing"] = state.missing
    result["voxels_measured"] = n_valid
    result["note"] = (
        f"{state.missing} of {state.total} chunks are not done: fractions are over the done "
        "chunks only; surfaces, components, percolation, thickness and TPB need the whole "
        "volume and are not computed"
    )
    return result
