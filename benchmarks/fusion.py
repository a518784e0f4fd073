"""Orthogonal-plane fusion and test-time augmentation: what they cost and what they buy.

A small U-Net (the demo's: ResNet18 encoder, 4 levels, trained here on one synthetic
anode, or ``--model``) segments a held-out synthetic anode (default 96x128x128, deep
enough that y- and x-slices are planes of 96x128 pixels, not thin strips) four ways:

* ``z``: z-slices only (the default of ``volseg.segment``);
* ``zyx``: z-, y- and x-slices, the three probabilities averaged (``axes="zyx"``);
* ``z+tta``: z-slices, every tile averaged over its 8 flips and quarter turns
  (``tta=True``);
* ``zyx+tta``: both.

For each: the held-out Ni IoU (``segment(..., truth=labels)``), its change against
``z``, seconds, input voxels per second and ``cost_vs_z`` = seconds / seconds of ``z``.
With ``--classes 3`` the model is a three-phase one (pore, YSZ, Ni) and each setting
also reports the per-phase IoU and their mean.

All four settings use the same processing blocks (``--chunks``, default two blocks of
48x128x128): with ``segment``'s own defaults ``axes="zyx"`` would take the whole small
scan as one deep block and leave one of two cores idle, which is a fact about this
scan's size, not about fusion. Every figure compares settings within one run; the
trained checkpoint is reused when it is already in ``--workdir`` (``--keep`` to cache
it). Prints one JSON object on stdout; progress goes to stderr. About 2 minutes on a
quiet 2-core CPU, plus 2 of training::

    python benchmarks/fusion.py [--classes 1|3] [--device cpu|cuda] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import demo_model, machine

import volseg
from volseg import synth
from volseg.demo import DEMO_SETTINGS

log = logging.getLogger("fusion")

SETTINGS = {
    "z": {"axes": "z", "tta": False},
    "zyx": {"axes": "zyx", "tta": False},
    "z+tta": {"axes": "z", "tta": True},
    "zyx+tta": {"axes": "zyx", "tta": True},
}


def run_setting(scan: Path, model: Path, out: Path, chunks, device: str, **modes) -> dict:
    result = volseg.segment(
        str(scan / "image"),
        model=model,
        out=out,
        truth=str(scan / "labels"),
        chunks=chunks,
        device=device,
        progress=False,
        overwrite=True,
        **modes,
    )
    summary = result.summary
    row = {
        "ni_iou": round(float(summary["ni_iou"]), 4),
        "seconds": round(float(summary["seconds"]), 2),
        "vox_s": round(float(summary["voxels_per_second"])),
        "uncertain_fraction": round(float(summary["uncertain_fraction"]), 4),
    }
    if "phase_iou" in summary:
        row["phase_iou"] = {k: round(float(v), 4) for k, v in summary["phase_iou"].items()}
        row["mean_iou"] = round(float(summary["mean_iou"]), 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, choices=(1, 3), default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    parser.add_argument("--scan-chunks", type=int, nargs=3, default=(48, 128, 128))
    parser.add_argument(
        "--chunks", type=int, nargs=3, default=(48, 128, 128), help="processing blocks"
    )
    parser.add_argument("--seed", type=int, default=DEMO_SETTINGS["test_seed"])
    parser.add_argument("--model", default=None, help="trained checkpoint (else trained here)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="volseg-fusion-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        model = Path(args.model) if args.model else demo_model(workdir, args.device, args.classes)
        scan = workdir / "held_out.zarr"
        synth.write_anode(
            scan, tuple(args.shape), seed=args.seed, chunks=tuple(args.scan_chunks), overwrite=True
        )
        volseg.segment(
            np.zeros((1, 128, 128), np.uint16), model=model, device=args.device, progress=False
        )  # loads the model into the per-process cache before anything is timed
        rows = {}
        for name, modes in SETTINGS.items():
            log.info("%s", name)
            rows[name] = run_setting(
                scan, model, workdir / f"{name}.zarr", tuple(args.chunks), args.device, **modes
            )
            log.info("%s: %s", name, rows[name])
        base = rows["z"]
        settings = []
        for name, row in rows.items():
            row = {"setting": name, **SETTINGS[name], **row}
            row["cost_vs_z"] = round(row["seconds"] / base["seconds"], 2)
            row["ni_iou_change"] = round(row["ni_iou"] - base["ni_iou"], 4)
            if "mean_iou" in row:
                row["mean_iou_change"] = round(row["mean_iou"] - base["mean_iou"], 4)
            settings.append(row)
        best = max(settings, key=lambda row: row.get("mean_iou", row["ni_iou"]))
        result = {
            "benchmark": "orthogonal-plane fusion and test-time augmentation",
            "classes": args.classes,
            "device": args.device,
            "model": {
                "path": str(model) if args.model else None,
                **{k: DEMO_SETTINGS[k] for k in ("encoder", "encoder_depth", "decoder_channels")},
                "train_shape": list(DEMO_SETTINGS["train_shape"]),
                "train_seed": DEMO_SETTINGS["train_seed"],
            },
            "held_out_shape": list(args.shape),
            "held_out_seed": args.seed,
            "chunks": list(args.chunks),
            "blocks": math.prod(math.ceil(s / c) for s, c in zip(args.shape, args.chunks)),
            "tile": 128,
            "overlap": 0.25,
            "best_setting": best["setting"],
            "settings": settings,
            "machine": machine(args.device.startswith("cuda")),
        }
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
