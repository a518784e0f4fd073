"""Segmentation of a scan, block by block: the API and its parts.

- :mod:`~volseg.inference.settings`: :class:`SegmentSettings`, what a run computes;
  validated, recorded in the output, compared on resume.
- :mod:`~volseg.inference.plan`: tile grids, processing blocks and
  :class:`~volseg.inference.plan.Block` (write region, read region); numpy only.
- :mod:`~volseg.inference.block`: :func:`segment_block`, the whole per-block task.
- :mod:`~volseg.inference.execute`: scheduling the blocks (threads or a cluster).
- :mod:`~volseg.inference.resolve`: devices and the model, before any block.
- :mod:`~volseg.inference.record`: the output's run record, create or resume.
- :mod:`~volseg.inference.api`: :func:`segment`, the API and the order of a run.

Reading an output back is :mod:`volseg.io.results` (re-exported here). Names are
loaded on first use, so reading results does not import torch.
"""

from __future__ import annotations

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "AUTO_MIN_TILE": "plan",
        "AXES_CHOICES": "settings",
        "Block": "plan",
        "BlockRun": "block",
        "DEEP_BLOCKS": "plan",
        "PROB_DTYPES": "settings",
        "REFINE_CHOICES": "settings",
        "RESUME_KEYS": "settings",
        "SegmentSettings": "settings",
        "SegmentationResult": "volseg.io.results",
        "UNCERTAIN_BAND": "settings",
        "block_grid": "volseg.conventions",
        "choose_chunks": "plan",
        "chunk_rows": "volseg.io.results",
        "default_chunks": "plan",
        "open_result": "volseg.io.results",
        "output_phases": "volseg.io.results",
        "plan_block": "plan",
        "plane_blocks": "plan",
        "plane_grid": "plan",
        "segment": "api",
        "segment_block": "block",
        "stats_table": "volseg.io.results",
        "tiles_per_batch": "plan",
    },
)
