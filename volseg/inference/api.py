"""``segment()``: a dask graph over output chunks, each segmented with the tiled U-Net.

Every task owns one output chunk (a processing block). It reads its block plus
the halo its tiles need (mirrored at the volume border), predicts all touching
tiles in batches, blends them, writes its own region of the output and returns
only its counts. Nothing gathers the volume: memory per task is one block plus
its halo, whatever the size of the scan.

This module is the API and the order of a run; the pieces have their own modules:
:mod:`~volseg.inference.settings` (what is computed), :mod:`~volseg.inference.plan`
(grids and blocks), :mod:`~volseg.inference.block` (one block),
:mod:`~volseg.inference.execute` (scheduling), :mod:`~volseg.inference.record`
(the output's run record and resume); :mod:`volseg.io.results` reads outputs back.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io as vio
from .. import model as vmodel
from ..conventions import block_grid, jsonable
from ..io.results import SegmentationResult, stats_table, summarise
from ..microstructure.min_size import parse_min_size
from . import execute, resolve
from .block import BlockRun
from .plan import check_overlap_cost, default_chunks, voxels
from .record import (
    clean_recorded,
    cleanup_record,
    prepare_output,
    run_attrs,
    segment_again,
    spacing,
)
from .settings import SegmentSettings, prob_dtype

__all__ = ["segment"]

log = logging.getLogger(__name__)


@vio.holds_leases
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
        (:func:`~volseg.inference.plan.plane_grid`; docs/performance.md has the table).
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1); with ``tile="auto"``
        it sets the context margin (16 pixels at 0.25).
    blend : {"gaussian", "constant"}
        Blend window for overlapping tiles.
    pad : {"reflect", "constant"}
        What tiles see beyond the volume border: mirrored data (default) or zeros.
    batch_size : int
        Tiles per forward pass at tile 128; larger tiles are batched to the same
        number of pixels (see :func:`~volseg.inference.plan.tiles_per_batch`).
    threshold : float
        Ni where the blended probability exceeds it.
    save_prob : bool or {"uint8", "float16", "float32"}
        Also store the blended probability (``True`` means uint8 0..255).
    chunks : tuple of 3 int, optional
        Processing blocks = output chunks; default from
        :func:`~volseg.inference.plan.default_chunks`.
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
        (:func:`volseg.model.precision.resolve_precision`). Recorded, resolved, in the attrs.
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
        (:func:`volseg.microstructure.cleanup.remove_small_components`, chunk-invariant);
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
    settings = SegmentSettings(
        tile=tile, overlap=overlap, blend=blend, pad=pad, batch_size=batch_size,
        threshold=threshold, prob_dtype=prob_dtype(save_prob), device=device, axes=axes,
        tta=tta, refine=refine, refine_threshold=refine_threshold, phase=phase,
        precision=precision, backend=backend, min_size=min_size, voxel_size=voxel_size,
        unit=unit, allow_missing_chunks=allow_missing_chunks,
    )  # fmt: skip
    torch_device, task_device, run_device = resolve.devices(device, client)
    if client is not None:
        # Workers may start in other directories: give them absolute paths.
        scan, truth, out = (
            str(Path(v).resolve()) if isinstance(v, (str, os.PathLike)) else v
            for v in (scan, truth, out)
        )
    run_backend = vmodel.resolve_backend(backend, run_device)
    settings = settings.resolved(
        device=task_device,
        backend=run_backend,
        precision=vmodel.resolve_precision(precision, run_device, run_backend),
    )
    volume = vio.open_scan(scan, role="scan")
    check_overlap_cost(volume.shape, tile, overlap, batch_size)
    model_path, sha256, config, loaded = resolve.resolve_model(model, str(torch_device))
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
        resolve.refuse_local_only(loaded, out, scan)
        model_path = str(Path(model_path).resolve())
    settings = settings.resolved(
        shape=volume.shape, ni_label=ni_label, has_truth=truth is not None, phases=phases,
        **_blocks(chunks, shards, volume, settings),
    )  # fmt: skip
    attrs = run_attrs(
        settings, volume, truth_volume, {"path": model_path, "sha256": sha256, "config": config}
    )
    if out is None:
        out = vio.default_output_path(scan)
    vio.refuse_overlap(
        out,
        {"scan": scan, "scan's group": vio.zarr_container(scan), "truth": truth},
    )
    if voxel_size is not None:
        settings = settings.resolved(voxel_size=vio.validate_voxel_size(voxel_size))
    physical = spacing(volume, settings.voxel_size, unit)
    if min_size:
        # a physical size needs the voxel size: refuse now, not after every chunk
        parse_min_size(min_size, physical.get("voxel_size", (1.0, 1.0, 1.0)), physical.get("unit"))
    output, reused = prepare_output(
        vio.memory_store() if out is None else out,
        settings, attrs, overwrite, resume, physical, confusion=truth_phases is not None,
    )  # fmt: skip
    context = vmodel.model_context(config)
    resolve.explain_reads(volume, settings, context)
    run = BlockRun(
        settings=settings,
        model_path=model_path,
        model_sha256=sha256,
        normalisation=config["normalisation"],
        context=context,
        scan_name=volume.source,
        check_finite=bool(np.issubdtype(volume.dtype, np.floating)),
        check_chunks=not allow_missing_chunks and volume.direct,
        truth_phases=truth_phases,
        loaded=loaded,
    )
    return _run(run, volume, truth_volume, output, reused, client, torch_device, progress, started)


def _blocks(chunks: Any, shards: Any, volume: vio.Scan, settings: SegmentSettings) -> dict:
    """``chunks`` (the processing blocks) and ``stored_chunks`` of a run."""
    if chunks is not None:
        chunks = vio.validate_chunks(chunks, volume.shape)
    else:
        chunks = default_chunks(volume.shape, volume.chunks, settings.tile, settings.deep)
    if shards is None:
        return {"chunks": chunks, "stored_chunks": None}
    shards = vio.validate_shards(shards, chunks, volume.shape)
    # The shard is the processing block; the chunk is what readers fetch inside it.
    return {"chunks": shards, "stored_chunks": chunks}


def _run(
    run: BlockRun,
    volume: vio.Scan,
    truth_volume: vio.Scan | None,
    output: vio.OutputGroup,
    reused: bool,
    client: Any,
    torch_device: torch.device,
    progress: bool,
    started: float,
) -> SegmentationResult:
    """Segment the blocks not done yet, refine, check, summarise and mark complete."""
    settings = run.settings
    run_table = vio.RunTable(output, reused)
    stats = run_table.stats() if reused else None
    blocks = list(block_grid(settings.shape, settings.chunks))
    if reused and segment_again(output.attrs, bool(stats["done"].all())):
        # Killed while the clean-up rewrote chunks in place: some are cleaned, some not,
        # and cleaning again would start from a mixed volume. Segment every chunk again.
        log.warning(
            "%s: the clean-up (min_size) was interrupted while rewriting chunks; every "
            "chunk is segmented again",
            output.path,
        )
        run_table.forget([index for index, _ in blocks])
        output.update_attrs(cleanup=cleanup_record(settings.min_size))
        stats = None
    selected = [
        (index, region) for index, region in blocks if stats is None or not stats["done"][index]
    ]
    computed_voxels = sum(voxels(region) for _, region in selected)
    log.info(
        "segmenting %s: %d of %d chunks to compute",
        volume.source,
        len(selected),
        len(blocks),
    )
    n_threads, torch_threads = execute.local_threads(torch_device)

    def compute(blocks: list, block_run: BlockRun, refine: bool) -> None:
        tasks = execute.block_tasks(blocks, volume, truth_volume, block_run, output, refine)
        try:
            execute.run_tasks(tasks, client, n_threads, progress, run_table.note)
        finally:
            run_table.flush()

    with execute.torch_threads(torch_threads if client is None else None):
        compute(selected, run, refine=False)
        refined = []
        if settings.refine is not None:
            stats = run_table.stats()
            refined = [
                (index, region)
                for index, region in blocks
                if not stats["refined"][index]
                and stats["uncertain_voxels"][index] / voxels(region) > settings.refine_threshold
            ]
            log.info("refining %d chunks with axes='zyx', tta=True", len(refined))
            run_table.clear([index for index, _ in refined])
            compute(refined, run.with_settings(axes="zyx", tta=True), refine=True)
    seconds = time.perf_counter() - started
    stats = run_table.stats()
    table = stats_table(output, stats)
    if not bool(table["done"].all()):
        raise RuntimeError(
            f"output {output.path!r}: {int((~table['done']).sum())} chunks are not done; "
            "run again with resume=True."
        )
    summary = summarise(
        table, settings.has_truth, seconds, len(selected), computed_voxels, settings.phases, stats
    )
    if settings.refine is not None:
        summary["chunks_refined_now"] = len(refined)
    cleanup = None
    if settings.min_size:
        summary["cleanup"], cleanup = clean_recorded(output, settings)
    # one write: a run killed before it is not complete, and one killed after is
    output.update_attrs(status="complete", summary=jsonable(summary), cleanup=cleanup)
    return SegmentationResult.of(output, table, summary)
