"""``segment()``: a dask graph over output chunks, each segmented with the tiled U-Net.

Every task owns one output chunk (a processing block). It reads its block plus
the halo its tiles need (mirrored at the volume border), predicts all touching
tiles in batches, blends them, writes its own region of the output and returns
only its counts. Nothing gathers the volume: memory per task is one block plus
its halo, whatever the size of the scan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import torch
from dask.callbacks import Callback

from . import backends, guards, metrics, store, tiling
from . import io as vio
from . import model as vmodel
from ._version import __version__
from .cleanup import check_min_size, clean_output, parse_min_size

__all__ = [
    "SegmentationResult",
    "choose_chunks",
    "output_phases",
    "plane_blocks",
    "plane_grid",
    "segment",
]

log = logging.getLogger(__name__)

# A voxel is "uncertain" when its blended Ni probability lies in this band.
UNCERTAIN_BAND = (0.2, 0.8)
PROB_DTYPES = {True: "uint8", "uint8": "uint8", "float16": "float16", "float32": "float32"}
# Parameters that must match for resume=True to continue an earlier run.
RESUME_KEYS = (
    "shape",
    "chunks",
    "tile",
    "overlap",
    "blend",
    "pad",
    "threshold",
    "ni_label",
    "prob_dtype",
    "has_truth",
    "axes",
    "tta",
    "refine",
    "refine_threshold",
    "phase",
    "precision",
    "backend",
    "shards",
    "min_size",
)
# What runs recorded before a setting existed did (older outputs resume with them).
RESUME_DEFAULTS = {
    "axes": "z",
    "tta": False,
    "refine": None,
    "refine_threshold": 0.05,
    "phase": None,
    "precision": "fp32",
    "backend": "torch",
    "shards": None,
    "min_size": 0,
}
# tile="auto" never uses tiles smaller than the trained tile (unless one covers the plane).
AUTO_MIN_TILE = 128
# An overlap may multiply the network's work at most this much (0.5 gives about 4).
MAX_OVERLAP_COST = 16
# Default blocks when slices along y and x are predicted too (axes="zyx" or refine):
# deep blocks, so the tiles of y- and x-slices (tile pixels along z) are not mostly halo.
DEEP_BLOCKS = {"target_yx": 256, "target_z": 128}
# Default blocks with tile="auto" (plane_blocks): whole planes up to this side, about
# as many voxels as a 32 x 512 x 512 block.
PLANE_BLOCK_SIDE = 4096
PLANE_BLOCK_VOXELS = 32 * 512 * 512


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes
    ----------
    mask : zarr.Array
        uint8 ``(Z, Y, X)``, 1 = Ni.
    prob : zarr.Array or None
        Blended Ni probability when ``save_prob`` was set.
    stats : pandas.DataFrame
        One row per chunk: its index and bounds, ``voxels``, ``ni_voxels``,
        ``ni_fraction``, ``uncertain_voxels``, ``uncertain_fraction``,
        ``seconds`` and, with truth, ``tp``, ``fp``, ``fn``, ``tn``, ``iou``, ``dice``.
    summary : dict
        Pooled figures: ``ni_fraction``, ``voxels``, ``seconds``,
        ``voxels_per_second``, chunk counts and, with truth, ``ni_iou``,
        ``ni_dice``, ``precision``, ``recall``, ``two_class_mean_iou``.
    path : str
        Where the output group lives.
    group : zarr.Group
        The output group itself (``labels`` of a multi-class run, ``attrs``).

    Examples
    --------
    A random-weight network on a random scan, in two chunks, scored against a truth:

    >>> from volseg.model import build_unet, default_config, save_checkpoint
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      normalisation={"low": 0, "high": 1000})
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "m.pt")
    >>> scan = np.random.default_rng(0).integers(0, 1000, (2, 40, 50), dtype=np.uint16)
    >>> result = segment(scan, model=path, truth=scan > 500, tile=64, chunks=(1, 40, 50),
    ...                  progress=False, device="cpu")
    >>> result.stats[["chunk_z", "z0", "z1", "voxels"]].values.tolist()
    [[0, 0, 1, 2000], [1, 1, 2, 2000]]
    >>> truth_voxels = result.summary["tp"] + result.summary["fn"]
    >>> truth_voxels == int(np.count_nonzero(scan > 500)), 0 <= result.summary["ni_iou"] <= 1
    (True, True)
    """

    mask: Any
    prob: Any
    stats: pd.DataFrame
    summary: dict[str, Any]
    path: str
    group: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class _Settings:
    """Everything a block task needs besides its arrays (small, picklable)."""

    shape: tuple[int, int, int]
    tile: int | str  # "auto": a grid fitted to each plane (tiling.auto_plane_grid)
    overlap: float
    blend: str
    pad: str
    batch_size: int
    threshold: float
    ni_label: float
    normalisation: dict
    model_path: str
    model_sha256: str
    device: str
    prob_dtype: str | None
    scan_name: str
    check_finite: bool
    axes: str = "z"
    tta: bool = False
    phases: dict | None = None  # {name: label value} of a multi-class model
    truth_phases: dict | None = None  # the same phases' values in the truth
    check_chunks: bool = False  # every stored chunk a task reads must exist (zarr scans)
    write_labels: bool = False
    loaded: Any = None  # a LoadedModel given in memory (local scheduler only)
    precision: str = "fp32"  # resolved: "fp32" | "bf16" | "fp16"
    backend: str = "torch"  # resolved: "torch" | "openvino" | "onnxruntime"
    context: int = 0  # the model's through-plane neighbours per side (2.5D)

    @property
    def ni_class(self) -> int | None:
        return None if self.phases is None else list(self.phases).index("ni")


# Slices along ``axis`` are predicted as planes: (plane axis, in-plane axes), and the
# permutation that brings the plane axis first.
AXIS_ORDER = {"z": (0, 1, 2), "y": (1, 0, 2), "x": (2, 0, 1)}
AXES_CHOICES = ("z", "zyx")
REFINE_CHOICES = (None, "uncertain")


@dataclass(frozen=True)
class _BlockPlan:
    """What one block reads (``box``, global bounds per axis) and, per prediction axis,
    the read plan of its in-plane window."""

    box: tuple[slice, slice, slice]
    plans: tuple[tuple[str, tiling.ReadPlan], ...]


def _axis_grid(settings: _Settings, axis: str) -> tiling.PlaneGrid:
    order = AXIS_ORDER[axis]
    plane = (settings.shape[order[1]], settings.shape[order[2]])
    return plane_grid(plane, settings.tile, settings.overlap, settings.batch_size)


def plane_grid(
    plane: tuple[int, int], tile: int | str = "auto", overlap: float = 0.25, batch_size: int = 16
) -> tiling.PlaneGrid:
    """The global tile grid of a plane for a run's ``tile``, ``overlap`` and ``batch_size``.

    ``tile="auto"``: :func:`volseg.tiling.auto_plane_grid` with the context margin of
    tile 128 at ``overlap`` and tiles no larger than :func:`volseg.tiling.max_auto_tile`
    of ``batch_size``; an integer tile: :func:`volseg.tiling.plane_grid`.

    Examples
    --------
    >>> grid = plane_grid((501, 501), "auto")
    >>> grid.tile, grid.n_tiles
    (288, 4)
    >>> plane_grid((501, 501), 128).n_tiles
    36
    """
    if tile == "auto":
        return tiling.auto_plane_grid(
            tuple(plane),
            margin=tiling.context_margin(overlap),
            max_tile=tiling.max_auto_tile(batch_size),
            min_tile=AUTO_MIN_TILE,
        )
    return tiling.plane_grid(tuple(plane), int(tile), overlap)


def _block_plan(settings: _Settings, region: tuple[slice, slice, slice]) -> _BlockPlan:
    plans = []
    lo = [sl.start for sl in region]
    hi = [sl.stop for sl in region]
    for axis in settings.axes:
        order = AXIS_ORDER[axis]
        if settings.context:
            # Through-plane context: k more planes per side, mirrored inside the volume.
            across = tiling.through_plane_index(
                region[order[0]].start,
                region[order[0]].stop,
                settings.shape[order[0]],
                settings.context,
            )
            lo[order[0]] = min(lo[order[0]], int(across.min()))
            hi[order[0]] = max(hi[order[0]], int(across.max()) + 1)
        a, b = (region[order[1]], region[order[2]])
        plan = tiling.reflected_read_plan(
            _axis_grid(settings, axis), (a.start, a.stop), (b.start, b.stop), settings.pad
        )
        for dim, read in ((order[1], plan.y_read), (order[2], plan.x_read)):
            lo[dim], hi[dim] = min(lo[dim], read.start), max(hi[dim], read.stop)
        plans.append((axis, plan))
    return _BlockPlan(tuple(slice(a, b) for a, b in zip(lo, hi)), tuple(plans))


def choose_chunks(
    shape: tuple[int, int, int],
    scan_chunks: tuple[int, int, int],
    target_yx: int = 512,
    target_z: int | None = None,
) -> tuple[int, int, int]:
    """Default processing blocks: whole multiples of the scan's chunks, about 512 wide.

    Wider blocks recompute fewer tiles on their borders (a tile touching two
    blocks is predicted by both); they stay aligned with the stored chunks so no
    stored chunk is decompressed twice. Depth follows the scan's chunks (at most 32)
    or, with ``target_z``, whole multiples of them about ``target_z`` deep (used when
    y- and x-slices are predicted too: :data:`DEEP_BLOCKS`).

    Examples
    --------
    >>> choose_chunks((64, 2048, 2048), (8, 256, 256))
    (8, 512, 512)
    >>> choose_chunks((10, 300, 300), (10, 300, 300))
    (10, 300, 300)
    >>> choose_chunks((512, 2048, 2048), (8, 256, 256), **DEEP_BLOCKS)
    (128, 256, 256)
    """
    if target_z is None:
        depth = max(1, min(int(scan_chunks[0]), 32, shape[0]))
    else:
        depth = _multiple(shape[0], scan_chunks[0], target_z)
    sizes = [_multiple(n, c, target_yx) for n, c in zip(shape[1:], scan_chunks[1:])]
    return (depth, *sizes)


def plane_blocks(
    shape: tuple[int, int, int],
    scan_chunks: tuple[int, int, int],
    block_voxels: int = PLANE_BLOCK_VOXELS,
    max_side: int = PLANE_BLOCK_SIDE,
) -> tuple[int, int, int]:
    """Default processing blocks for ``tile="auto"``: whole planes, a few slices deep.

    A tile that touches two blocks is computed by both; the large tiles of a grid
    fitted to the plane would be computed up to twice per axis in 512-pixel blocks, so
    blocks span whole planes (planes wider than ``max_side`` are split in whole
    multiples of the stored chunks about ``max_side`` wide). Depth: the stored chunks'
    (at most 32) or less, so that a block holds about ``block_voxels`` (as many as a
    32 x 512 x 512 block).

    Examples
    --------
    >>> plane_blocks((64, 501, 501), (8, 256, 256))
    (8, 501, 501)
    >>> plane_blocks((64, 2048, 2048), (64, 256, 256))
    (2, 2048, 2048)
    >>> plane_blocks((4, 10000, 10000), (4, 512, 512))
    (1, 4096, 4096)
    """
    sizes = [
        n if n <= max_side else _multiple(n, c, max_side)
        for n, c in zip(shape[1:], scan_chunks[1:])
    ]
    depth = max(1, min(int(scan_chunks[0]), 32, shape[0], block_voxels // math.prod(sizes)))
    return (depth, *sizes)


def _multiple(size: int, chunk: int, target: int) -> int:
    chunk = max(1, int(chunk))
    return min(size, chunk * max(1, math.ceil(target / chunk)))


def _block_grid(shape, chunks) -> Iterator[tuple[tuple[int, int, int], tuple[slice, ...]]]:
    counts = [math.ceil(s / c) for s, c in zip(shape, chunks)]
    for iz in range(counts[0]):
        for iy in range(counts[1]):
            for ix in range(counts[2]):
                index = (iz, iy, ix)
                region = tuple(
                    slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape)
                )
                yield index, region


def tiles_per_batch(batch_size: int, tile: int) -> int:
    """Tiles per forward pass: ``batch_size`` counts 128x128 tiles; larger tiles are
    batched to the same number of pixels, so memory per batch does not grow with the tile
    and big tiles do not thrash the CPU caches.

    Examples
    --------
    >>> tiles_per_batch(16, 128), tiles_per_batch(16, 256), tiles_per_batch(16, 544)
    (16, 4, 1)
    """
    return max(1, (batch_size * 128 * 128) // (tile * tile))


def _predictor(settings: _Settings) -> Any:
    loaded = settings.loaded
    if loaded is None:
        loaded = vmodel.cached_model(settings.model_path, settings.model_sha256, settings.device)
    predictor = backends.cached_predictor(loaded, settings.backend, settings.precision)
    return tiling.FlipRotateTTA(predictor) if settings.tta else predictor


def _block_probability(
    region: tuple[slice, slice, slice],
    plan: _BlockPlan,
    box: np.ndarray,
    settings: _Settings,
) -> np.ndarray:
    """Blended probabilities of one block: ``(Z, Y, X)`` binary, ``(C, Z, Y, X)`` multi-class.

    ``box`` is the normalised input over ``plan.box``. For each prediction axis the
    block's slices along that axis are stitched on that axis' own global tile grid;
    several axes are averaged in the fixed order z, y, x.
    """
    predict = _predictor(settings)
    channels = None if settings.phases is None else len(settings.phases)
    total = None
    for axis, read_plan in plan.plans:
        order = AXIS_ORDER[axis]
        sub: list[Any] = [slice(None)] * 3
        sub[order[0]] = _relative(region[order[0]], plan.box[order[0]])
        if settings.context:
            plane = region[order[0]]
            across = tiling.through_plane_index(
                plane.start, plane.stop, settings.shape[order[0]], settings.context
            )
            sub[order[0]] = across - plan.box[order[0]].start
        sub[order[1]] = _relative(read_plan.y_read, plan.box[order[1]])
        sub[order[2]] = _relative(read_plan.x_read, plan.box[order[2]])
        window = tiling.apply_read_plan(read_plan, box[tuple(sub)].transpose(order))
        a, b = region[order[1]], region[order[2]]
        grid = _axis_grid(settings, axis)
        planes = tiling.stitch_block(
            window,
            grid,
            (a.start, a.stop),
            (b.start, b.stop),
            predict,
            blend=settings.blend,
            batch_size=tiles_per_batch(settings.batch_size, grid.tile),
            channels=channels,
            context=settings.context,
        )
        back = tuple(int(i) for i in np.argsort(order))
        if channels is not None:
            back = (0, *(i + 1 for i in back))
        planes = planes.transpose(back)
        total = planes if total is None else total + planes
    if len(plan.plans) > 1:
        total /= np.float32(len(plan.plans))
    return np.ascontiguousarray(total)


def _relative(read: slice, box: slice) -> slice:
    return slice(read.start - box.start, read.stop - box.start)


def _read_box(scan_source: Any, plan: _BlockPlan, settings: _Settings) -> np.ndarray:
    if isinstance(scan_source, np.ndarray):
        raw = scan_source  # computed by the dask graph
    else:
        if settings.check_chunks:
            guards.check_stored_chunks(scan_source, plan.box)
        raw = vio.read_region(scan_source, plan.box)
    if settings.check_finite and not np.isfinite(raw).all():
        zs, ys, xs = plan.box
        raise ValueError(
            f"scan {settings.scan_name!r} contains NaN or inf near z {zs.start}:{zs.stop}, "
            f"y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop}; "
            "replace them (e.g. numpy.nan_to_num) before segmenting."
        )
    return vmodel.normalise(raw, settings.normalisation)


def _quantise(probability: np.ndarray, dtype: str | None) -> np.ndarray | None:
    if dtype == "uint8":
        return np.rint(probability * 255).astype(np.uint8)
    if dtype is not None:
        return probability.astype(dtype)
    return None


def _segment_block(
    index: tuple[int, int, int],
    region: tuple[slice, slice, slice],
    plan: _BlockPlan,
    scan_source: Any,
    truth_source: Any,
    settings: _Settings,
    output: vio.OutputGroup,
    refine: bool = False,
) -> dict[str, Any]:
    """Segment one block and write it; returns its counts (runs inside a task).

    With ``refine`` the block was segmented before: its done flag is cleared first, so an
    interrupted rewrite is never taken for a finished chunk.
    """
    started = time.perf_counter()
    if refine:
        # The chunk's time is both passes: its first segmentation and this refinement.
        first_pass = float(output.read_record(index)["seconds"])
        output.clear_done(index)
    box = _read_box(scan_source, plan, settings)
    try:
        probability = _block_probability(region, plan, box, settings)
    except torch.OutOfMemoryError as exc:
        raise MemoryError(
            f"out of GPU memory on {settings.device} with batch_size={settings.batch_size} "
            f"tiles of {settings.tile} px; use a smaller --batch-size or --tile."
        ) from exc
    del box
    low, high = UNCERTAIN_BAND
    labels = None
    counts: dict[str, Any] = {}
    if settings.phases is None:
        mask = probability > settings.threshold
        uncertain = (probability > low) & (probability < high)
        prob_out = _quantise(probability, settings.prob_dtype)
    else:
        classes = np.argmax(probability, axis=0).astype(np.uint8)
        mask = classes == settings.ni_class
        # The binary band (0.2, 0.8) is "max(p, 1 - p) < 0.8"; likewise for C classes.
        uncertain = probability.max(axis=0) < high
        if settings.write_labels:
            counts["phase_voxels"] = np.bincount(classes.ravel(), minlength=len(settings.phases))
            values = np.array(list(settings.phases.values()), dtype=np.uint8)
            labels = values[classes]
            prob_out = _quantise(probability, settings.prob_dtype)
        else:
            prob_out = _quantise(probability[settings.ni_class], settings.prob_dtype)
    counts["ni_voxels"] = int(np.count_nonzero(mask))
    counts["uncertain_voxels"] = int(np.count_nonzero(uncertain))
    if truth_source is not None:
        if isinstance(truth_source, np.ndarray):
            truth = truth_source
        else:
            truth = vio.read_region(truth_source, region)
        counts.update(metrics.confusion_counts(mask, truth == settings.ni_label))
        if settings.write_labels and settings.truth_phases is not None:
            counts["confusion"] = metrics.confusion_matrix(
                truth, classes, list(settings.truth_phases.values())
            )
    counts["seconds"] = time.perf_counter() - started
    if refine:
        counts["seconds"] += first_pass
    # Written on every pass: a chunk segmented again after an interrupted refinement is
    # not refined until the refinement pass has rewritten it.
    counts["refined"] = bool(refine)
    record = output.write_block(index, region, mask.astype(np.uint8), prob_out, counts, labels)
    # The client keeps every record in its table (volseg.store.RunTable).
    return index, record


def _resolve_model(model: Any, device: str) -> tuple[str, str, dict, Any]:
    """(path, sha256, config, in-memory LoadedModel or None) for ``model``."""
    if isinstance(model, vmodel.LoadedModel):
        return model.path, model.sha256, model.config, model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model={type(model).__name__} is not a checkpoint path or volseg LoadedModel; "
            "pass the path of a file written by volseg.train."
        )
    # Load once here: validates the file (format, weights_only) before any task runs.
    loaded = vmodel.cached_model(model, None, device)
    return str(model), loaded.sha256, loaded.config, None


def _grid_record(grid: tiling.PlaneGrid) -> dict[str, Any]:
    """The z-slices' tile grid, for the output's attrs (what ``tile="auto"`` chose)."""
    return {
        "tile": grid.tile,
        "tiles_per_slice": grid.n_tiles,
        "stride": [grid.y.stride, grid.x.stride],
        "margin": grid.y.margin,
        "model_voxels_per_voxel": round(grid.model_pixels_per_pixel(), 4),
    }


def _validate_params(tile, overlap, blend, pad, batch_size, threshold, save_prob):
    if tile != "auto" and (
        isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 32 or tile % 32
    ):
        raise ValueError(
            f"tile={tile!r} must be a multiple of 32 (the U-Net halves the size up to 5 "
            "times), for example 128 or 256, or 'auto'."
        )
    tiling.axis_grid(1, 128 if tile == "auto" else int(tile), overlap)  # validates overlap
    if blend not in tiling.BLEND_MODES:
        raise ValueError(f"blend={blend!r} is not known; use 'gaussian' or 'constant'.")
    if pad not in tiling.PAD_MODES:
        raise ValueError(f"pad={pad!r} is not known; use 'reflect' (or 'constant' for zeros).")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size < 1)
    ):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer, e.g. 16.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold={threshold!r} must lie strictly between 0 and 1.")
    if save_prob not in (False, None, *PROB_DTYPES):
        raise ValueError(
            f"save_prob={save_prob!r} must be False, True, 'uint8', 'float16' or 'float32'."
        )


def _validate_modes(axes, tta, refine, refine_threshold, phase) -> None:
    if axes not in AXES_CHOICES:
        raise ValueError(
            f"axes={axes!r} is not known; use 'z' (z-slices) or 'zyx' (average of the "
            "predictions on z-, y- and x-slices)."
        )
    if not isinstance(tta, (bool, np.bool_)):
        raise ValueError(f"tta={tta!r} must be True or False.")
    if refine not in REFINE_CHOICES:
        raise ValueError(f"refine={refine!r} is not known; use None or 'uncertain'.")
    if not 0.0 <= float(refine_threshold) < 1.0:
        raise ValueError(
            f"refine_threshold={refine_threshold!r} must be a fraction in [0, 1), e.g. 0.05."
        )
    if phase not in (None, "ni"):
        raise ValueError(
            f"phase={phase!r} is not known; use 'ni' to write only the Ni mask of a "
            "multi-class model (other phases are in the labels array)."
        )


def _source_for_task(scan: vio.Scan, region: tuple[slice, slice, slice]) -> Any:
    """A zarr array is read by the task itself; a dask array is sliced into the graph."""
    if scan.direct:
        return scan.array
    return scan.array[region]


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _local_threads(device: torch.device) -> tuple[int, int]:
    """(dask threads, torch intra-op threads) that together do not exceed the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    if device.type == "cuda":
        # One thread prepares the next block while another waits on the GPU.
        return 2, max(1, cores // 2)
    # Independent forward passes scale better than intra-op threads sharing a core.
    return cores, 1


def _run_tasks(
    tasks: list, client: Any, n_threads: int, progress: bool, on_result: Any = None
) -> list:
    if not tasks:
        return []
    on_result = on_result or (lambda result: None)
    if client is not None:
        from distributed import as_completed

        resources = {"GPU": 1} if _cluster_has_gpus(client) else None
        futures = client.compute(tasks, resources=resources)
        results = []
        with _progress_bar(len(futures), progress) as bar:
            # Results are fetched here, one by one: a failed task or a failed transfer
            # raises in this thread instead of leaving the loop waiting.
            for future in as_completed(futures):
                results.append(future.result())
                on_result(results[-1])
                bar.update(1)
        return results
    callbacks = []
    if progress:
        from tqdm.dask import TqdmCallback

        callbacks.append(TqdmCallback(desc="segment", unit="task"))
    callbacks.append(_ResultCallback(on_result))
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(n_threads, thread_name_prefix="volseg")
    try:
        with contextlib.ExitStack() as stack:
            for callback in callbacks:
                stack.enter_context(callback)
            return list(dask.compute(*tasks, scheduler="threads", pool=pool))
    finally:
        # On failure, let running blocks finish (they write whole chunks and their done
        # flags) and drop queued ones, so nothing is still writing once segment() returns.
        pool.shutdown(wait=True, cancel_futures=True)


class _ResultCallback(Callback):
    """Hands each block's result to the client as it arrives (local scheduler)."""

    def __init__(self, on_result: Any) -> None:
        super().__init__()
        self.on_result = on_result

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if isinstance(key, str) and key.startswith("volseg-block-"):
            self.on_result(result)


def _cluster_has_gpus(client: Any) -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(info.get("resources", {}).get("GPU") for info in workers)


def _in_memory(out: Any) -> bool:
    import zarr

    return isinstance(out, zarr.storage.MemoryStore)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="segment", unit="chunk", disable=not enabled)
    try:
        yield bar
    finally:
        bar.close()


def _prepare_output(
    out, scan, truth, params, attrs, overwrite, resume, spacing: dict
) -> tuple[Any, bool]:
    """Create the output group or reopen it for resume; returns (OutputGroup, reused)."""
    if out is None:
        import zarr

        out = zarr.storage.MemoryStore()
    if vio.output_exists(out):
        # Never two writers: a live run's output is refused, also with resume/overwrite.
        store.refuse_live_lease(out)
        if resume:
            output = vio.open_output(out, mode="r+")
            previous = output.attrs.get("parameters", {})
            changed = [
                k
                for k in RESUME_KEYS
                if _jsonable(previous.get(k, RESUME_DEFAULTS.get(k))) != _jsonable(params[k])
            ]
            if output.attrs.get("model", {}).get("sha256") != attrs["model"]["sha256"]:
                changed.append("model")
            for key in ("input", "truth"):
                if not store.same_input(output.attrs.get(key), attrs[key]):
                    changed.append(key)
            if changed:
                raise ValueError(
                    f"output {str(out)!r} was started with other settings ({', '.join(changed)}); "
                    "resume with the same settings, or pass overwrite=True (--overwrite) to "
                    "start again."
                )
            output.ensure_flag("refined")  # outputs written before refinement existed
            store.Lease.acquire(out)  # released when segment() returns or raises
            return output, True
        if not overwrite:
            raise FileExistsError(
                f"output {str(out)!r} already exists; pass overwrite=True (--overwrite) to "
                "replace it or resume=True (--resume) to finish an interrupted run."
            )
        vio.remove_output(out)
    output = vio.create_output(
        out,
        scan.shape,
        params["chunks"],
        attrs=attrs,
        prob_dtype=params["prob_dtype"],
        has_truth=params["has_truth"],
        phases=params["phases"],
        confusion=params["confusion"],
        stored_chunks=params["stored_chunks"],
        **spacing,
    )
    store.Lease.acquire(out)
    return output, False


def _voxel_size(scan: vio.Scan, voxel_size: Any, unit: str | None) -> dict[str, Any]:
    """The voxel size and unit for the output's metadata: as given, else the scan's."""
    if voxel_size is not None:
        return {"voxel_size": tuple(voxel_size), "unit": unit}
    recorded = vio.recorded_voxel_size(scan)
    return {} if recorded is None else {"voxel_size": recorded[0], "unit": recorded[1]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _voxels(region: tuple[slice, ...]) -> int:
    return math.prod(sl.stop - sl.start for sl in region)


def chunk_rows(shape, chunks) -> Iterator[tuple[tuple[int, int, int], dict[str, Any]]]:
    """(chunk index, row with ``chunk_z/y/x``, bounds ``z0 .. x1`` and ``voxels``) per chunk."""
    for index, region in _block_grid(shape, chunks):
        row: dict[str, Any] = {"chunk_z": index[0], "chunk_y": index[1], "chunk_x": index[2]}
        for axis, sl in zip("zyx", region):
            row[f"{axis}0"], row[f"{axis}1"] = sl.start, sl.stop
        row["voxels"] = _voxels(region)
        yield index, row


def stats_table(output: vio.OutputGroup, stats: dict | None = None) -> pd.DataFrame:
    """The per-chunk statistics of an output group as a DataFrame (one row per chunk).

    ``stats``: the group's arrays if already read (:meth:`volseg.io.OutputGroup.read_stats`).
    """
    if stats is None:
        stats = output.read_stats()
    shape = tuple(int(s) for s in output.mask.shape)
    # Column by column (10^5 chunks in well under a second), rows in chunk-grid order.
    table = store.chunk_frame(shape, output.chunks)
    for name in vio.STAT_FIELDS:
        if name in stats and name not in vio.PHASE_FIELDS:
            table[name] = np.asarray(stats[name]).reshape(-1)
    table["ni_fraction"] = table["ni_voxels"] / table["voxels"]
    table["uncertain_fraction"] = table["uncertain_voxels"] / table["voxels"]
    if "tp" in table:
        table = metrics.scores_table(table)
    phases = output_phases(output)
    if phases is not None and "phase_voxels" in stats:
        names = list(phases)
        flat = stats["phase_voxels"].reshape(-1, len(names))
        for i, name in enumerate(names):
            table[f"{name}_fraction"] = flat[:, i] / table["voxels"].to_numpy()
        if "confusion" in stats:
            for column, values in metrics.phase_columns(stats["confusion"], names).items():
                table[column] = values
    return table


def output_phases(output: vio.OutputGroup) -> dict[str, int] | None:
    """``{phase: label value}`` of an output group with ``labels`` (None for a Ni mask).

    Parameters
    ----------
    output : volseg.io.OutputGroup
        An output group written by :func:`segment`.

    Returns
    -------
    dict of str to int, or None
        The phases recorded in its run parameters; None for a binary Ni mask.

    Examples
    --------
    >>> import zarr
    >>> from volseg.io import create_output
    >>> phases = {"pore": 0, "ysz": 1, "ni": 2}
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 8, 8), (2, 8, 8),
    ...                        attrs={"parameters": {"phases": phases}}, phases=phases)
    >>> output_phases(output)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    >>> print(output_phases(create_output(zarr.storage.MemoryStore(), (2, 8, 8), (2, 8, 8),
    ...                                   attrs={"parameters": {"phases": None}})))
    None
    """
    phases = output.attrs.get("parameters", {}).get("phases")
    return {str(k): int(v) for k, v in phases.items()} if phases else None


def _summary(
    table: pd.DataFrame,
    has_truth: bool,
    seconds: float,
    computed: int,
    computed_voxels: int,
    phases: dict | None = None,
    stats: dict | None = None,
) -> dict:
    voxels = int(table["voxels"].sum())
    summary: dict[str, Any] = {
        "voxels": voxels,
        "ni_voxels": int(table["ni_voxels"].sum()),
        "ni_fraction": float(table["ni_voxels"].sum() / voxels),
        "uncertain_fraction": float(table["uncertain_voxels"].sum() / voxels),
        "chunks": len(table),
        "chunks_computed": computed,
        "chunks_skipped": len(table) - computed,
        "seconds": seconds,
        # Voxels segmented in this call (chunks skipped by resume do not count).
        "voxels_per_second": computed_voxels / seconds if computed_voxels else float("nan"),
    }
    if has_truth:
        sums = {k: int(table[k].sum()) for k in ("tp", "fp", "fn", "tn")}
        summary.update(sums)
        summary.update(metrics.pooled_scores(**sums))
    if "refined" in table:
        summary["chunks_refined"] = int(table["refined"].sum())
    if phases is not None and "phase_voxels" in stats:
        names = list(phases)
        totals = stats["phase_voxels"].reshape(-1, len(names)).sum(axis=0)
        summary["phase_fractions"] = {n: float(t / voxels) for n, t in zip(names, totals)}
        if "confusion" in stats:
            summary.update(metrics.pooled_phase_scores(stats["confusion"], names))
    return summary


@store.holds_leases
def segment(
    scan: Any,
    model: Any,
    out: Any = None,
    truth: Any = None,
    ni_label: float | None = None,
    tile: int | str = "auto",
    overlap: float = 0.25,
    blend: str = "gaussian",
    pad: str = "reflect",
    batch_size: int = 16,
    threshold: float = 0.5,
    save_prob: bool | str = False,
    chunks: tuple[int, int, int] | None = None,
    device: str = "auto",
    client: Any = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    *,
    axes: str = "z",
    tta: bool = False,
    refine: str | None = None,
    refine_threshold: float = 0.05,
    phase: str | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    unit: str | None = None,
    precision: str = "auto",
    backend: str = "auto",
    allow_missing_chunks: bool = False,
    min_size: int | str = 0,
    shards: tuple[int, int, int] | None = None,
) -> SegmentationResult:
    """Segment Ni in a 3D scan with a tiled 2D U-Net and write the mask to Zarr.

    Each z-slice is covered by the global tile grid (tile, overlap); tiles that
    leave the volume read mirrored data; tile predictions are blended with
    ``blend`` weights. Work is one dask task per output chunk, so the result does
    not depend on ``chunks`` and memory does not grow with the scan.

    A three-phase model (``classes=3`` in :func:`volseg.train`) also writes the
    ``labels`` array (pore, YSZ, Ni label values, by the largest probability) and
    per-phase statistics; ``mask`` is always the Ni mask.

    Parameters
    ----------
    scan : path, zarr.Array, dask.array.Array or numpy.ndarray
        The 3D (z, y, x) grey-value volume: a Zarr v2/v3 array or group
        (``scan.zarr``, ``scan.zarr/image``, OME-Zarr), a TIFF stack, or an array.
    model : path or volseg.model.LoadedModel
        A volseg checkpoint.
    out : path or zarr store, optional
        Output group. Default: ``<scan>_ni.zarr`` beside a scan given as a path,
        an in-memory Zarr store for arrays.
    truth : same kinds as ``scan``, optional
        Ground truth (binary mask or label volume) of the same shape; adds
        tp/fp/fn/tn per chunk and pooled Ni IoU and Dice.
    ni_label : number, optional
        Value of Ni in ``truth`` (1 for binary masks, 2 for volseg.synth labels,
        255 for 0/128/255 label images). Default: the value recorded in the
        truth's attrs (``{"phases": {"ni": 2}}`` as volseg.synth writes), else 1.
    tile : int or "auto"
        Tile edge length, a multiple of 32; ``"auto"`` (default): the grid fitted to
        each plane that computes the fewest model voxels per output voxel while every
        seam keeps the context margin of tile 128 at ``overlap``
        (:func:`plane_grid`; docs/performance.md has the table).
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1); with ``tile="auto"``
        it sets the context margin (16 pixels at 0.25).
    blend : {"gaussian", "constant"}
        Blend window for overlapping tiles.
    pad : {"reflect", "constant"}
        What tiles see beyond the volume border: mirrored data (default) or zeros.
    batch_size : int
        Tiles per forward pass at tile 128; larger tiles are batched to the same
        number of pixels (see :func:`tiles_per_batch`).
    threshold : float
        Ni where the blended probability exceeds it.
    save_prob : bool or {"uint8", "float16", "float32"}
        Also store the blended probability (``True`` means uint8 0..255).
    chunks : tuple of 3 int, optional
        Processing blocks = output chunks; default from :func:`choose_chunks`.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:i"``.
    client : distributed.Client, optional
        Run on a dask.distributed cluster; default the local threaded scheduler.
    overwrite : bool
        Replace an existing output.
    resume : bool
        Continue an interrupted run in ``out``, skipping chunks marked done.
    progress : bool
        Show a progress bar.
    axes : {"z", "zyx"}
        Predict on z-slices only, or also on y- and x-slices and average the three
        probabilities (orthogonal-plane fusion: three times the work; blocks get a
        halo in all three directions).
    tta : bool
        Test-time augmentation: average each tile over its 8 flips and quarter
        turns (eight times the work).
    refine : {None, "uncertain"}
        After the run, segment again with ``axes="zyx"`` and ``tta=True`` only the
        chunks whose uncertain fraction (voxels with Ni probability in (0.2, 0.8);
        with several phases, largest probability < 0.8) exceeds
        ``refine_threshold``; ``stats["refined"]`` marks them. Refinement is chosen
        per chunk, so with ``refine`` the result depends on the chunking (each chunk
        is either z-only or fused); everything else does not.
    refine_threshold : float
        Uncertain fraction above which a chunk is refined.
    phase : {None, "ni"}
        With a multi-class model, ``"ni"`` writes only the binary Ni mask (and the Ni
        probability), not ``labels`` and per-phase probabilities.
    voxel_size, unit : optional
        The scan's voxel size (z, y, x) and its unit, recorded in the output for
        :func:`volseg.measure` and reports. Default: the scale in the scan's OME-Zarr
        metadata (none for TIFF stacks and arrays).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Arithmetic of the network's forward pass; blending, thresholds and counts stay
        float32. ``"auto"``: bf16 on CPUs with AMX or AVX512-BF16 and on GPUs that
        support it, fp16 on other GPUs, fp32 otherwise
        (:func:`volseg.backends.resolve_precision`). Recorded, resolved, in the attrs.
    backend : {"auto", "torch", "openvino", "onnxruntime"}
        What runs the network: torch, or the network exported once to ONNX and
        compiled by OpenVINO or ONNX Runtime (``pip install 'volseg[openvino]'`` /
        ``'volseg[onnx]'``); same tiles, blending and mask. ``"auto"``: OpenVINO when
        it is installed and the device is a CPU, else torch. Both are resolved where
        ``segment`` is called (for a cluster: for the kind of device its workers use),
        so cluster workers need the same packages.
    allow_missing_chunks : bool
        Read a chunk absent from the scan's Zarr store as its fill value. By default
        such a chunk is an error naming it (a partly copied scan would otherwise be
        segmented with holes of zeros).
    min_size : int or str
        After the last chunk, reassign connected components smaller than this
        (voxels, or a volume such as ``"0.5um3"``) in ``labels`` and ``mask`` to
        the phase they share the most faces with
        (:func:`volseg.cleanup.remove_small_components`, chunk-invariant);
        0 (default) keeps the network's output. The per-chunk stats describe
        the output before the clean-up; ``summary["cleanup"]`` reports it.
    shards : tuple of 3 int, optional
        Store ``mask``, ``labels`` and ``prob`` with Zarr v3 sharding: each shard of this
        shape is one processing block (one task writes it whole, no two tasks share
        one), and ``chunks`` is the chunk inside it that readers fetch; shards must be
        whole multiples of ``chunks``. One stored file per block instead of one per
        chunk (see ``docs/output-format.md``).

    Returns
    -------
    SegmentationResult
        ``.mask``, ``.prob``, ``.stats`` (DataFrame, one row per chunk) and
        ``.summary`` (pooled figures).

    Examples
    --------
    >>> import numpy as np, volseg
    >>> from volseg.model import build_unet, default_config, save_checkpoint
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      normalisation={"low": 0, "high": 1000})
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "m.pt")
    >>> scan = np.random.default_rng(0).integers(0, 1000, (2, 80, 100), dtype=np.uint16)
    >>> res = volseg.segment(scan, model=path, tile=64, progress=False, device="cpu")
    >>> res.mask.shape, len(res.stats)
    ((2, 80, 100), 1)
    """
    started = time.perf_counter()
    _validate_params(tile, overlap, blend, pad, batch_size, threshold, save_prob)
    _validate_modes(axes, tta, refine, refine_threshold, phase)
    check_min_size(min_size)
    if client is None:
        torch_device = vmodel.resolve_device(device)
        task_device = str(torch_device)
        run_device = torch_device
    else:
        # Each worker resolves the device itself ("auto" = its own GPU, if it has one).
        vmodel.parse_device(device)
        torch_device, task_device = torch.device("cpu"), str(device)
        # Backend and precision are resolved here, for the kind of device workers use.
        gpus = str(device).startswith("cuda") or (device == "auto" and _cluster_has_gpus(client))
        run_device = torch.device("cuda" if gpus else "cpu")
        # Workers may start in other directories: give them absolute paths.
        scan, truth, out = (
            str(Path(v).resolve()) if isinstance(v, (str, os.PathLike)) else v
            for v in (scan, truth, out)
        )
    run_backend = backends.resolve_backend(backend, run_device)
    run_precision = backends.resolve_precision(precision, run_device, run_backend)
    volume = vio.open_scan(scan, role="scan")
    _check_overlap_cost(volume.shape, tile, overlap, batch_size)
    model_path, sha256, config, loaded = _resolve_model(model, str(torch_device))
    phases = vmodel.model_phases(config)
    truth_volume, truth_phases = None, None
    if truth is not None:
        truth_volume, ni_label = vio.open_truth(
            truth, volume, ni_label, default=None if phases is None else phases["ni"]
        )
        if phases is not None and phase is None:
            truth_phases = vio.truth_phases(truth_volume, phases, ni_label)
    elif ni_label is None:
        ni_label = 1
    if client is not None:
        if loaded is not None:
            raise ValueError(
                "model given as a loaded object cannot be shipped to a cluster; pass the "
                "checkpoint path so that every worker loads it once."
            )
        if (out is None and vio.default_output_path(scan) is None) or _in_memory(out):
            raise ValueError(
                "with a cluster, out must be a path (or store) that every worker can reach, "
                "not an in-memory store."
            )
        model_path = str(Path(model_path).resolve())
    deep = axes == "zyx" or refine is not None
    if chunks is not None:
        chunks = vio.validate_chunks(chunks, volume.shape)
    elif tile == "auto" and not deep:
        chunks = plane_blocks(volume.shape, volume.chunks)
    else:
        chunks = choose_chunks(volume.shape, volume.chunks, **(DEEP_BLOCKS if deep else {}))
    stored_chunks = None
    if shards is not None:
        shards = store.validate_shards(shards, chunks, volume.shape)
        # The shard is the processing block; the chunk is what readers fetch inside it.
        chunks, stored_chunks = shards, chunks
    prob_dtype = PROB_DTYPES.get(save_prob) if save_prob else None
    params = {
        "shape": list(volume.shape),
        "chunks": list(chunks),
        "tile": tile if tile == "auto" else int(tile),
        "overlap": float(overlap),
        "blend": blend,
        "pad": pad,
        "batch_size": int(batch_size),
        "threshold": float(threshold),
        "ni_label": ni_label.item() if hasattr(ni_label, "item") else ni_label,
        "prob_dtype": prob_dtype,
        "has_truth": truth is not None,
        "device": task_device,
        "axes": axes,
        "tta": bool(tta),
        "refine": refine,
        "refine_threshold": float(refine_threshold),
        "phase": phase,
        "phases": phases if phase is None else None,
        "precision": run_precision,
        "backend": run_backend,
        "grid": _grid_record(plane_grid(volume.shape[1:], tile, overlap, batch_size)),
        "min_size": min_size,
        # Sharded: each shard (the block, "chunks" above) holds chunks of "stored_chunks".
        "shards": (
            {"shard": list(chunks), "stored_chunks": list(stored_chunks)}
            if stored_chunks is not None
            else None
        ),
    }
    attrs = {
        "version": __version__,
        # Absolute: `volseg report` and resume work from any directory.
        "input": store.recorded_path(volume.source),
        "truth": store.recorded_path(truth_volume.source) if truth_volume else None,
        "model": {"path": model_path, "sha256": sha256, "config": config},
        "parameters": params,
        "uncertain_band": list(UNCERTAIN_BAND),
    }
    if out is None:
        out = vio.default_output_path(scan)
    guards.refuse_overlap(
        out,
        {"scan": scan, "scan's group": guards.zarr_container(scan), "truth": truth},
    )
    if voxel_size is not None:
        voxel_size = vio.validate_voxel_size(voxel_size)
    physical = _voxel_size(volume, voxel_size, unit)
    if min_size:
        # a physical size needs the voxel size: refuse now, not after every chunk
        parse_min_size(min_size, physical.get("voxel_size", (1.0, 1.0, 1.0)), physical.get("unit"))
    output, reused = _prepare_output(
        out,
        volume,
        truth_volume,
        {
            **params,
            "chunks": tuple(chunks),
            "confusion": truth_phases is not None,
            "stored_chunks": stored_chunks,
        },
        attrs,
        overwrite,
        resume,
        physical,
    )

    settings = _Settings(
        shape=tuple(volume.shape),
        tile=tile if tile == "auto" else int(tile),
        overlap=float(overlap),
        blend=blend,
        pad=pad,
        batch_size=int(batch_size),
        threshold=float(threshold),
        ni_label=ni_label,
        normalisation=config["normalisation"],
        model_path=model_path,
        model_sha256=sha256,
        device=task_device,
        prob_dtype=prob_dtype,
        scan_name=volume.source,
        check_finite=bool(np.issubdtype(volume.dtype, np.floating)),
        axes=axes,
        tta=bool(tta),
        phases=phases,
        truth_phases=truth_phases,
        write_labels=phases is not None and phase is None,
        loaded=loaded,
        precision=run_precision,
        backend=run_backend,
        check_chunks=not allow_missing_chunks and volume.direct,
        context=vmodel.model_context(config),
    )
    run_table = store.RunTable(output, reused)
    stats = run_table.stats() if reused else None
    selected = [
        (index, region)
        for index, region in _block_grid(volume.shape, chunks)
        if stats is None or not stats["done"][index]
    ]
    computed_voxels = sum(_voxels(region) for _, region in selected)
    log.info(
        "segmenting %s: %d of %d chunks to compute",
        volume.source,
        len(selected),
        math.prod(math.ceil(s / c) for s, c in zip(volume.shape, chunks)),
    )
    n_threads, torch_threads = _local_threads(torch_device)
    with _torch_threads(torch_threads if client is None else None):
        tasks = _block_tasks(selected, volume, truth_volume, settings, output, refine=False)
        try:
            _run_tasks(tasks, client, n_threads, progress, run_table.note)
        finally:
            run_table.flush()
        refined = []
        if refine is not None:
            stats = run_table.stats()
            refined = [
                (index, region)
                for index, region in _block_grid(volume.shape, chunks)
                if not stats["refined"][index]
                and stats["uncertain_voxels"][index] / _voxels(region) > refine_threshold
            ]
            log.info("refining %d chunks with axes='zyx', tta=True", len(refined))
            fine = dataclasses.replace(settings, axes="zyx", tta=True)
            tasks = _block_tasks(refined, volume, truth_volume, fine, output, refine=True)
            run_table.clear([index for index, _ in refined])
            try:
                _run_tasks(tasks, client, n_threads, progress, run_table.note)
            finally:
                run_table.flush()
    seconds = time.perf_counter() - started

    has_truth = truth is not None
    stats = run_table.stats()
    table = stats_table(output, stats)
    if not bool(table["done"].all()):
        raise RuntimeError(
            f"output {output.path!r}: {int((~table['done']).sum())} chunks are not done; "
            "run again with resume=True."
        )
    summary = _summary(table, has_truth, seconds, len(selected), computed_voxels, phases, stats)
    if refine is not None:
        summary["chunks_refined_now"] = len(refined)
    if min_size:
        summary["cleanup"] = clean_output(output, min_size, phases if phase is None else None)
    output.update_attrs(status="complete", summary=_json_summary(summary))
    return _result(output, table, summary)


def _block_tasks(
    blocks: list,
    volume: vio.Scan,
    truth_volume: vio.Scan | None,
    settings: _Settings,
    output: vio.OutputGroup,
    refine: bool,
) -> list:
    """One delayed :func:`_segment_block` per (index, region), with its read plan."""
    run_token = uuid.uuid4().hex[:12]
    tasks = []
    for index, region in blocks:
        plan = _block_plan(settings, region)
        scan_source = _source_for_task(volume, plan.box)
        truth_source = None
        if truth_volume is not None:
            truth_source = _source_for_task(truth_volume, region)
        tasks.append(
            dask.delayed(_segment_block, pure=False)(
                index,
                region,
                plan,
                scan_source,
                truth_source,
                settings,
                output,
                refine,
                # Unique per run: a cluster must never mistake this block for a block of
                # an earlier run (same model, same index) that it still remembers.
                dask_key_name=f"volseg-block-{run_token}-{'-'.join(map(str, index))}",
            )
        )
    return tasks


def _result(output: vio.OutputGroup, table: pd.DataFrame, summary: dict) -> SegmentationResult:
    return SegmentationResult(
        mask=output.mask,
        prob=output.prob,
        stats=table,
        summary=summary,
        path=output.path,
        group=output.group,
    )


def _json_summary(summary: dict[str, Any]) -> dict[str, Any]:
    clean = {}
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        clean[key] = value
    return clean


def open_result(out: Any, allow_incomplete: bool = False) -> SegmentationResult:
    """Reopen a finished output group as a :class:`SegmentationResult`.

    An output whose run has not finished is refused (naming the chunks that are not
    done and the fix, ``resume=True``) unless ``allow_incomplete``: then its stats hold
    the done chunks only and the summary, computed over them, adds ``chunks_missing``.
    """
    output = vio.open_output(out)
    state = store.check_complete(output, allow_incomplete)
    record = output.attrs
    stats = output.read_stats()
    table = stats_table(output, stats)
    if state.complete:
        summary = dict(record.get("summary") or {})
    elif not state.done.any():
        table = table.iloc[:0]
        summary = {"chunks": 0, "chunks_missing": state.missing}
    else:
        table = table[state.done.ravel()].reset_index(drop=True)
        summary = _summary(
            table, "tp" in table, float("nan"), 0, 0, output_phases(output),
            {k: v[state.done] for k, v in stats.items()},
        )  # fmt: skip
        for key in ("seconds", "voxels_per_second", "chunks_computed", "chunks_skipped"):
            summary.pop(key, None)
        summary["chunks_missing"] = state.missing
    summary["status"] = record.get("status")
    return _result(output, table, summary)


def _check_overlap_cost(
    shape: tuple[int, int, int], tile: int | str, overlap: float, batch_size: int
) -> None:
    """Refuse an overlap that makes the network compute more than
    :data:`MAX_OVERLAP_COST` times the pixels it would without overlap."""
    plane = (int(shape[1]), int(shape[2]))
    cost = plane_grid(plane, tile, float(overlap), batch_size).model_pixels_per_pixel()
    base = plane_grid(plane, tile, 0.0, batch_size).model_pixels_per_pixel()
    if cost > MAX_OVERLAP_COST * base:
        raise ValueError(
            f"overlap={overlap} makes the network compute {cost:.0f} model pixels per output "
            f"pixel ({cost / base:.0f} times the work without overlap, at most "
            f"{MAX_OVERLAP_COST} allowed); use a smaller overlap, e.g. 0.25 or 0.5."
        )
