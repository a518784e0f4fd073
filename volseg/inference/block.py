"""One block of a segmentation run: read, predict, blend, decide, write, count.

:func:`segment_block` is the whole per-block task. It takes a planned
:class:`~volseg.inference.plan.Block` (what it writes, what it reads), the
sources, a :class:`BlockRun` (the run's settings and how to get the network) and
the output group, so one block can be run and tested without a scheduler; the
scheduler (:mod:`volseg.inference.execute`) only calls it once per block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import io as vio
from .. import metrics, tiling
from .. import model as vmodel
from .plan import AXIS_ORDER, Block, slice_grid, tiles_per_batch
from .settings import UNCERTAIN_BAND, SegmentSettings

__all__ = ["BlockRun", "block_probability", "segment_block"]


@dataclass(frozen=True)
class BlockRun:
    """What every block of a run shares besides its arrays (small and picklable).

    Attributes
    ----------
    settings : SegmentSettings
        The run's resolved settings.
    model_path, model_sha256 : str
        The checkpoint each process loads once (cached by its SHA-256).
    normalisation : dict
        The model's fixed intensity normalisation.
    context : int
        The model's through-plane neighbours per side (2.5D).
    scan_name : str
        The scan, as named in errors.
    check_finite : bool
        Refuse NaN or inf in what a block reads (floating-point scans).
    check_chunks : bool
        Every stored chunk a block reads must exist (Zarr scans).
    truth_phases : dict or None
        The model's phases' values in the truth (a per-phase confusion matrix).
    loaded : volseg.model.LoadedModel or None
        A model given in memory (local scheduler only).

    Examples
    --------
    >>> from volseg.inference.settings import SegmentSettings
    >>> run = BlockRun(SegmentSettings(shape=(2, 64, 64)), "m.pt", "0" * 64, {"low": 0, "high": 1})
    >>> run.with_settings(tta=True).settings.tta
    True
    """

    settings: SegmentSettings
    model_path: str
    model_sha256: str
    normalisation: dict
    context: int = 0
    scan_name: str = "scan"
    check_finite: bool = False
    check_chunks: bool = False
    truth_phases: dict | None = None
    loaded: Any = None

    @property
    def write_labels(self) -> bool:
        """True for a multi-class model whose labels are written (not ``phase="ni"``)."""
        return self.settings.phases is not None and self.settings.phase is None

    @property
    def ni_class(self) -> int | None:
        """The Ni channel of a multi-class model's output (None for a binary model)."""
        phases = self.settings.phases
        return None if phases is None else list(phases).index("ni")

    def with_settings(self, **values: Any) -> BlockRun:
        """The same run with some settings changed (the refinement pass)."""
        return replace(self, settings=self.settings.resolved(**values))


def _predictor(run: BlockRun) -> Any:
    settings = run.settings
    loaded = run.loaded
    if loaded is None:
        loaded = vmodel.cached_model(run.model_path, run.model_sha256, settings.device)
    predictor = vmodel.cached_predictor(loaded, settings.backend, settings.precision)
    return tiling.FlipRotateTTA(predictor) if settings.tta else predictor


def block_probability(block: Block, box: np.ndarray, run: BlockRun) -> np.ndarray:
    """Blended probabilities of one block: ``(Z, Y, X)`` binary, ``(C, Z, Y, X)`` multi-class.

    ``box`` is the normalised input over ``block.read``. For each prediction axis the
    block's slices along that axis are stitched on that axis' own global tile grid;
    several axes are averaged in the fixed order z, y, x.

    Examples
    --------
    A stand-in "network" that answers 0.25 everywhere, on a block of a 2 x 64 x 64 scan:

    >>> from volseg.inference.plan import plan_block
    >>> from volseg.inference.settings import SegmentSettings
    >>> class Quarter:
    ...     def __call__(self, tiles):
    ...         return np.full(tiles.shape[:1] + tiles.shape[-2:], 0.25, np.float32)
    >>> settings = SegmentSettings(shape=(2, 64, 64), tile=64, backend="torch")
    >>> block = plan_block(settings, (0, 0, 0), (slice(0, 2), slice(0, 64), slice(0, 64)))
    >>> run = BlockRun(settings, "", "", {}, loaded=Quarter())
    >>> import unittest.mock
    >>> with unittest.mock.patch("volseg.inference.block._predictor", lambda run: run.loaded):
    ...     probability = block_probability(block, np.zeros((2, 64, 64), np.float32), run)
    >>> probability.shape, float(probability.min()), float(probability.max())
    ((2, 64, 64), 0.25, 0.25)
    """
    settings = run.settings
    predict = _predictor(run)
    channels = None if settings.phases is None else len(settings.phases)
    total = None
    for axis, read_plan in block.plans:
        order = AXIS_ORDER[axis]
        region = block.write
        sub: list[Any] = [slice(None)] * 3
        sub[order[0]] = _relative(region[order[0]], block.read[order[0]])
        if run.context:
            plane = region[order[0]]
            across = tiling.through_plane_index(
                plane.start, plane.stop, settings.shape[order[0]], run.context
            )
            sub[order[0]] = across - block.read[order[0]].start
        sub[order[1]] = _relative(read_plan.y_read, block.read[order[1]])
        sub[order[2]] = _relative(read_plan.x_read, block.read[order[2]])
        window = tiling.apply_read_plan(read_plan, box[tuple(sub)].transpose(order))
        a, b = region[order[1]], region[order[2]]
        grid = slice_grid(settings, axis)
        planes = tiling.stitch_block(
            window,
            grid,
            (a.start, a.stop),
            (b.start, b.stop),
            predict,
            blend=settings.blend,
            batch_size=tiles_per_batch(settings.batch_size, grid.tile),
            channels=channels,
            context=run.context,
        )
        back = tuple(int(i) for i in np.argsort(order))
        if channels is not None:
            back = (0, *(i + 1 for i in back))
        planes = planes.transpose(back)
        total = planes if total is None else total + planes
    if len(block.plans) > 1:
        total /= np.float32(len(block.plans))
    return np.ascontiguousarray(total)


def _relative(read: slice, box: slice) -> slice:
    return slice(read.start - box.start, read.stop - box.start)


def _read_box(scan_source: Any, block: Block, run: BlockRun) -> np.ndarray:
    if isinstance(scan_source, np.ndarray):
        raw = scan_source  # computed by the dask graph
    else:
        if run.check_chunks:
            vio.check_stored_chunks(scan_source, block.read)
        raw = vio.read_region(scan_source, block.read)
    if run.check_finite and not np.isfinite(raw).all():
        zs, ys, xs = block.read
        raise ValueError(
            f"scan {run.scan_name!r} contains NaN or inf near z {zs.start}:{zs.stop}, "
            f"y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop}; "
            "replace them (e.g. numpy.nan_to_num) before segmenting."
        )
    return vmodel.normalise(raw, run.normalisation)


def _quantise(probability: np.ndarray, dtype: str | None) -> np.ndarray | None:
    if dtype == "uint8":
        return np.rint(probability * 255).astype(np.uint8)
    if dtype is not None:
        return probability.astype(dtype)
    return None


def _decide(probability: np.ndarray, run: BlockRun) -> tuple[Any, ...]:
    """(mask, uncertain, labels, stored probability, counts) of a block's probabilities."""
    settings = run.settings
    low, high = UNCERTAIN_BAND
    counts: dict[str, Any] = {}
    labels = classes = None
    if settings.phases is None:
        mask = probability > settings.threshold
        uncertain = (probability > low) & (probability < high)
        prob_out = _quantise(probability, settings.prob_dtype)
    else:
        classes = np.argmax(probability, axis=0).astype(np.uint8)
        mask = classes == run.ni_class
        # The binary band (0.2, 0.8) is "max(p, 1 - p) < 0.8"; likewise for C classes.
        uncertain = probability.max(axis=0) < high
        if run.write_labels:
            counts["phase_voxels"] = np.bincount(classes.ravel(), minlength=len(settings.phases))
            values = np.array(list(settings.phases.values()), dtype=np.uint8)
            labels = values[classes]
            prob_out = _quantise(probability, settings.prob_dtype)
        else:
            prob_out = _quantise(probability[run.ni_class], settings.prob_dtype)
    counts["ni_voxels"] = int(np.count_nonzero(mask))
    counts["uncertain_voxels"] = int(np.count_nonzero(uncertain))
    return mask, classes, labels, prob_out, counts


def _score(counts: dict, mask, classes, truth_source: Any, block: Block, run: BlockRun) -> None:
    """Add the block's confusion counts against the truth to ``counts``."""
    if isinstance(truth_source, np.ndarray):
        truth = truth_source
    else:
        truth = vio.read_region(truth_source, block.write)
    counts.update(metrics.confusion_counts(mask, truth == run.settings.ni_label))
    if run.write_labels and run.truth_phases is not None:
        counts["confusion"] = metrics.confusion_matrix(
            truth, classes, list(run.truth_phases.values())
        )


def segment_block(
    block: Block,
    scan_source: Any,
    truth_source: Any,
    run: BlockRun,
    output: vio.OutputGroup,
    refine: bool = False,
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Segment one block and write its region of the output; returns (index, its record).

    Parameters
    ----------
    block : volseg.inference.plan.Block
        What the block writes and reads (:func:`volseg.inference.plan.plan_block`).
    scan_source, truth_source : zarr.Array, numpy.ndarray or None
        A stored array the block reads ``block.read`` (``block.write`` of the truth)
        from, or those regions already read; no truth: None.
    run : BlockRun
        The run's settings and model.
    output : volseg.io.OutputGroup
        Where the mask, probabilities and the block's record are written (data first,
        the done flag last).
    refine : bool
        The block was segmented before: its done flag is cleared first, so an
        interrupted rewrite is never taken for a finished chunk.

    Returns
    -------
    (tuple of 3 int, numpy.ndarray)
        The block's index and the record written for it (counts and done flag).

    Examples
    --------
    >>> import zarr
    >>> from volseg.inference.plan import plan_block
    >>> from volseg.inference.settings import SegmentSettings
    >>> from volseg.io import create_output
    >>> from volseg.model import build_unet, default_config, load_checkpoint, save_checkpoint
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8],
    ...                      normalisation={"low": 0, "high": 1000})
    >>> path = save_checkpoint(build_unet(cfg), cfg, getfixture("tmp_path") / "m.pt")
    >>> scan = np.random.default_rng(0).integers(0, 1000, (2, 64, 64)).astype(np.uint16)
    >>> settings = SegmentSettings(shape=(2, 64, 64), chunks=(1, 64, 64), tile=64,
    ...                            ni_label=1, device="cpu", precision="fp32", backend="torch")
    >>> output = create_output(zarr.storage.MemoryStore(), (2, 64, 64), (1, 64, 64), attrs={})
    >>> run = BlockRun(settings, path, "", cfg["normalisation"], loaded=load_checkpoint(path))
    >>> block = plan_block(settings, (1, 0, 0), (slice(1, 2), slice(0, 64), slice(0, 64)))
    >>> index, record = segment_block(block, scan, None, run, output)
    >>> done = output.read_stats()["done"]
    >>> index, bool(done[1, 0, 0]), bool(done[0, 0, 0])
    ((1, 0, 0), True, False)
    """
    started = time.perf_counter()
    index = block.index
    if refine:
        # The chunk's time is both passes: its first segmentation and this refinement.
        first_pass = float(output.read_record(index)["seconds"])
        output.clear_done(index)
    box = _read_box(scan_source, block, run)
    try:
        probability = block_probability(block, box, run)
    except torch.OutOfMemoryError as exc:
        raise MemoryError(
            f"out of GPU memory on {run.settings.device} with batch_size="
            f"{run.settings.batch_size} tiles of {run.settings.tile} px; use a smaller "
            "--batch-size or --tile."
        ) from exc
    del box
    mask, classes, labels, prob_out, counts = _decide(probability, run)
    if truth_source is not None:
        _score(counts, mask, classes, truth_source, block, run)
    counts["seconds"] = time.perf_counter() - started
    if refine:
        counts["seconds"] += first_pass
    # Written on every pass: a chunk segmented again after an interrupted refinement is
    # not refined until the refinement pass has rewritten it.
    counts["refined"] = bool(refine)
    record = output.write_block(index, block.write, mask.astype(np.uint8), prob_out, counts, labels)
    # The client keeps every record in its table (volseg.io.records.RunTable).
    return index, record
