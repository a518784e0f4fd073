"""``segment()``: a dask graph over output chunks, each segmented with the tiled U-Net.

Every task owns one output chunk (a processing block). It reads its block plus
the halo its tiles need (mirrored at the volume border), predicts all touching
tiles in batches, blends them, writes its own region of the output and returns
only its counts. Nothing gathers the volume: memory per task is one block plus
its halo, whatever the size of the scan.
"""

from __future__ import annotations

import contextlib
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

from . import io as vio
from . import metrics, tiling
from . import model as vmodel
from ._version import __version__

__all__ = ["SegmentationResult", "choose_chunks", "segment"]

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
)


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

    grid: tiling.PlaneGrid
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
    loaded: Any = None  # a LoadedModel given in memory (local scheduler only)


def choose_chunks(
    shape: tuple[int, int, int], scan_chunks: tuple[int, int, int], target_yx: int = 512
) -> tuple[int, int, int]:
    """Default processing blocks: whole multiples of the scan's chunks, about 512 wide.

    Wider blocks recompute fewer tiles on their borders (a tile touching two
    blocks is predicted by both); they stay aligned with the stored chunks so no
    stored chunk is decompressed twice. Depth follows the scan's chunks (at most 32).

    Examples
    --------
    >>> choose_chunks((64, 2048, 2048), (8, 256, 256))
    (8, 512, 512)
    >>> choose_chunks((10, 300, 300), (10, 300, 300))
    (10, 300, 300)
    """
    depth = max(1, min(int(scan_chunks[0]), 32, shape[0]))
    sizes = []
    for size, chunk in zip(shape[1:], scan_chunks[1:]):
        chunk = max(1, int(chunk))
        sizes.append(min(size, chunk * max(1, math.ceil(target_yx / chunk))))
    return (depth, *sizes)


def _validate_chunks(chunks: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        values = tuple(int(c) for c in chunks)
    except TypeError as exc:
        raise ValueError(f"chunks={chunks!r} must be three integers (z, y, x).") from exc
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"chunks={chunks!r} must be three positive integers (z, y, x).")
    return tuple(min(c, s) for c, s in zip(values, shape))


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


def _predictor(settings: _Settings) -> vmodel.TilePredictor:
    if settings.loaded is not None:
        return vmodel.TilePredictor(settings.loaded)
    loaded = vmodel.cached_model(settings.model_path, settings.model_sha256, settings.device)
    return vmodel.TilePredictor(loaded)


def _segment_block(
    index: tuple[int, int, int],
    region: tuple[slice, slice, slice],
    plan: tiling.ReadPlan,
    scan_source: Any,
    truth_source: Any,
    settings: _Settings,
    output: vio.OutputGroup,
) -> dict[str, float]:
    """Segment one block and write it; returns its counts (runs inside a task)."""
    started = time.perf_counter()
    zs, ys, xs = region
    if isinstance(scan_source, np.ndarray):
        raw = scan_source  # computed by the dask graph
    else:
        raw = vio.read_region(scan_source, (zs, plan.y_read, plan.x_read))
    if settings.check_finite and not np.isfinite(raw).all():
        raise ValueError(
            f"scan {settings.scan_name!r} contains NaN or inf near z {zs.start}:{zs.stop}, "
            f"y {plan.y_read.start}:{plan.y_read.stop}, x {plan.x_read.start}:{plan.x_read.stop}; "
            "replace them (e.g. numpy.nan_to_num) before segmenting."
        )
    window = tiling.apply_read_plan(plan, vmodel.normalise(raw, settings.normalisation))
    try:
        probability = tiling.stitch_block(
            window,
            settings.grid,
            (ys.start, ys.stop),
            (xs.start, xs.stop),
            _predictor(settings),
            blend=settings.blend,
            batch_size=tiles_per_batch(settings.batch_size, settings.grid.tile),
        )
    except torch.OutOfMemoryError as exc:
        raise MemoryError(
            f"out of GPU memory on {settings.device} with batch_size={settings.batch_size} "
            f"tiles of {settings.grid.tile} px; use a smaller --batch-size or --tile."
        ) from exc
    del window, raw
    mask = probability > settings.threshold
    low, high = UNCERTAIN_BAND
    counts: dict[str, float] = {
        "ni_voxels": int(np.count_nonzero(mask)),
        "uncertain_voxels": int(np.count_nonzero((probability > low) & (probability < high))),
    }
    if truth_source is not None:
        if isinstance(truth_source, np.ndarray):
            truth = truth_source
        else:
            truth = vio.read_region(truth_source, region)
        counts.update(metrics.confusion_counts(mask, truth == settings.ni_label))
    prob_out = None
    if settings.prob_dtype == "uint8":
        prob_out = np.rint(probability * 255).astype(np.uint8)
    elif settings.prob_dtype is not None:
        prob_out = probability.astype(settings.prob_dtype)
    counts["seconds"] = time.perf_counter() - started
    output.write_block(index, region, mask.astype(np.uint8), prob_out, counts)
    return counts


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


def _validate_params(tile, overlap, blend, pad, batch_size, threshold, save_prob):
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 32 or tile % 32:
        raise ValueError(
            f"tile={tile!r} must be a multiple of 32 (the U-Net halves the size up to 5 times), "
            "for example 128 or 256."
        )
    tiling.axis_grid(1, int(tile), overlap)  # validates overlap
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


def _run_tasks(tasks: list, client: Any, n_threads: int, progress: bool) -> list[dict]:
    if not tasks:
        return []
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
                bar.update(1)
        return results
    callbacks = []
    if progress:
        from tqdm.dask import TqdmCallback

        callbacks.append(TqdmCallback(desc="segment", unit="task"))
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


def _prepare_output(out, scan, truth, params, attrs, overwrite, resume) -> tuple[Any, bool]:
    """Create the output group or reopen it for resume; returns (OutputGroup, reused)."""
    if out is None:
        import zarr

        out = zarr.storage.MemoryStore()
    if isinstance(out, (str, os.PathLike)) and isinstance(scan.source, str):
        scan_root = Path(scan.source).resolve()
        out_path = Path(out).resolve()
        if out_path == scan_root or scan_root.is_relative_to(out_path):
            raise ValueError(
                f"output {str(out)!r} would replace the scan {scan.source!r}; choose another --out."
            )
    if vio.output_exists(out):
        if resume:
            output = vio.open_output(out, mode="r+")
            previous = output.attrs.get("parameters", {})
            changed = [k for k in RESUME_KEYS if _jsonable(previous.get(k)) != _jsonable(params[k])]
            if output.attrs.get("model", {}).get("sha256") != attrs["model"]["sha256"]:
                changed.append("model")
            for key in ("input", "truth"):
                if output.attrs.get(key) != attrs[key]:
                    changed.append(key)
            if changed:
                raise ValueError(
                    f"output {str(out)!r} was started with other settings ({', '.join(changed)}); "
                    "resume with the same settings, or pass overwrite=True (--overwrite) to "
                    "start again."
                )
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
    )
    return output, False


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def chunk_rows(shape, chunks) -> Iterator[tuple[tuple[int, int, int], dict[str, Any]]]:
    """(chunk index, row with ``chunk_z/y/x``, bounds ``z0 .. x1`` and ``voxels``) per chunk."""
    for index, region in _block_grid(shape, chunks):
        row: dict[str, Any] = {"chunk_z": index[0], "chunk_y": index[1], "chunk_x": index[2]}
        for axis, sl in zip("zyx", region):
            row[f"{axis}0"], row[f"{axis}1"] = sl.start, sl.stop
        row["voxels"] = math.prod(sl.stop - sl.start for sl in region)
        yield index, row


def stats_table(output: vio.OutputGroup) -> pd.DataFrame:
    """The per-chunk statistics of an output group as a DataFrame (one row per chunk)."""
    stats = output.read_stats()
    shape = tuple(int(s) for s in output.mask.shape)
    rows = []
    for index, row in chunk_rows(shape, output.chunks):
        for name in vio.STAT_FIELDS:
            if name in stats:
                row[name] = stats[name][index].item()
        rows.append(row)
    table = pd.DataFrame(rows)
    table["ni_fraction"] = table["ni_voxels"] / table["voxels"]
    table["uncertain_fraction"] = table["uncertain_voxels"] / table["voxels"]
    if "tp" in table:
        table = metrics.scores_table(table)
    return table


def _summary(
    table: pd.DataFrame, has_truth: bool, seconds: float, computed: int, computed_voxels: int
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
    return summary


def segment(
    scan: Any,
    model: Any,
    out: Any = None,
    truth: Any = None,
    ni_label: float | None = None,
    tile: int = 128,
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
) -> SegmentationResult:
    """Segment Ni in a 3D scan with a tiled 2D U-Net and write the mask to Zarr.

    Each z-slice is covered by the global tile grid (tile, overlap); tiles that
    leave the volume read mirrored data; tile predictions are blended with
    ``blend`` weights. Work is one dask task per output chunk, so the result does
    not depend on ``chunks`` and memory does not grow with the scan.

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
    tile : int
        Tile edge length; a multiple of 32 (128, the training size, by default).
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1).
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
    if client is None:
        torch_device = vmodel.resolve_device(device)
        task_device = str(torch_device)
    else:
        # Each worker resolves the device itself ("auto" = its own GPU, if it has one).
        vmodel.parse_device(device)
        torch_device, task_device = torch.device("cpu"), str(device)
        # Workers may start in other directories: give them absolute paths.
        scan, truth, out = (
            str(Path(v).resolve()) if isinstance(v, (str, os.PathLike)) else v
            for v in (scan, truth, out)
        )
    volume = vio.open_scan(scan, role="scan")
    truth_volume = None
    if truth is not None:
        truth_volume, ni_label = vio.open_truth(truth, volume, ni_label)
    elif ni_label is None:
        ni_label = 1
    model_path, sha256, config, loaded = _resolve_model(model, str(torch_device))
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
    chunks = (
        choose_chunks(volume.shape, volume.chunks)
        if chunks is None
        else _validate_chunks(chunks, volume.shape)
    )
    prob_dtype = PROB_DTYPES.get(save_prob) if save_prob else None
    params = {
        "shape": list(volume.shape),
        "chunks": list(chunks),
        "tile": int(tile),
        "overlap": float(overlap),
        "blend": blend,
        "pad": pad,
        "batch_size": int(batch_size),
        "threshold": float(threshold),
        "ni_label": ni_label.item() if hasattr(ni_label, "item") else ni_label,
        "prob_dtype": prob_dtype,
        "has_truth": truth is not None,
        "device": task_device,
    }
    attrs = {
        "version": __version__,
        "input": volume.source,
        "truth": truth_volume.source if truth_volume else None,
        "model": {"path": model_path, "sha256": sha256, "config": config},
        "parameters": params,
        "uncertain_band": list(UNCERTAIN_BAND),
    }
    if out is None:
        out = vio.default_output_path(scan)
    output, reused = _prepare_output(
        out, volume, truth_volume, {**params, "chunks": tuple(chunks)}, attrs, overwrite, resume
    )

    settings = _Settings(
        grid=tiling.plane_grid(volume.shape[1:], tile, overlap),
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
        loaded=loaded,
    )
    done = output.read_stats()["done"] if reused else None
    tasks = []
    run_token = uuid.uuid4().hex[:12]
    computed_voxels = 0
    for index, region in _block_grid(volume.shape, chunks):
        if done is not None and done[index]:
            continue
        computed_voxels += math.prod(sl.stop - sl.start for sl in region)
        zs, ys, xs = region
        plan = tiling.reflected_read_plan(
            settings.grid, (ys.start, ys.stop), (xs.start, xs.stop), settings.pad
        )
        scan_source = _source_for_task(volume, (zs, plan.y_read, plan.x_read))
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
                # Unique per run: a cluster must never mistake this block for a block of
                # an earlier run (same model, same index) that it still remembers.
                dask_key_name=f"volseg-block-{run_token}-{'-'.join(map(str, index))}",
            )
        )
    log.info(
        "segmenting %s: %d of %d chunks to compute",
        volume.source,
        len(tasks),
        math.prod(math.ceil(s / c) for s, c in zip(volume.shape, chunks)),
    )
    n_threads, torch_threads = _local_threads(torch_device)
    with _torch_threads(torch_threads if client is None else None):
        _run_tasks(tasks, client, n_threads, progress)
    seconds = time.perf_counter() - started

    has_truth = truth is not None
    table = stats_table(output)
    if not bool(table["done"].all()):
        raise RuntimeError(
            f"output {output.path!r}: {int((~table['done']).sum())} chunks are not done; "
            "run again with resume=True."
        )
    summary = _summary(table, has_truth, seconds, len(tasks), computed_voxels)
    output.update_attrs(status="complete", summary=_json_summary(summary))
    return _result(output, table, summary)


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


def open_result(out: Any) -> SegmentationResult:
    """Reopen a finished (or partial) output group as a :class:`SegmentationResult`."""
    output = vio.open_output(out)
    record = output.attrs
    summary = dict(record.get("summary") or {})
    summary["status"] = record.get("status")
    return _result(output, stats_table(output), summary)
