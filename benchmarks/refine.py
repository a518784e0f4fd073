"""Refining only the uncertain chunks: how much of full fusion's gain, for how much of its cost.

A held-out synthetic anode (default 64x256x256 in 8 processing blocks of 32x128x128) is
made hard in places: a quarter of its chunks (chosen with ``--seed``) are replaced by
the same microstructure imaged with much stronger noise and blur (``--bad-noise``,
``--bad-blur``; the labels do not change, :func:`volseg.synth.anode` draws them from
the seed alone). A small U-Net (the demo's, trained here on a clean synthetic anode, or
``--model``) then segments it three ways, all with the same blocks:

* ``z``: z-slices only;
* ``full``: ``axes="zyx"``, ``tta=True`` on every chunk;
* ``refine``: ``refine="uncertain"``: the ``z`` pass, then ``zyx`` + TTA again on the
  chunks whose uncertain fraction (Ni probability in (0.2, 0.8)) exceeds
  ``refine_threshold``.

The threshold is volseg's default, 0.05 (``--refine-threshold``). The uncertain
fractions the ``z`` pass finds per chunk are reported, so the reader can see where that
threshold falls in them.

Reported: Ni IoU and seconds of each run, ``gain_recovered`` =
(IoU_refine - IoU_z) / (IoU_full - IoU_z), ``cost_fraction`` =
(t_refine - t_z) / (t_full - t_z), the chunks refined against the degraded ones, one
row per chunk, and a threshold ``sweep``. The sweep is derived, not run: a refined chunk
is segmented exactly as the ``full`` run segments it (same block, same settings), so the
IoU for any threshold follows from the per-chunk counts of ``z`` and ``full``
(``iou_check`` compares that with the measured refine run); its ``cost_fraction`` is
estimated from the refined chunks' share of the voxels (blocks of one shape do the same
work), as if the refine pass ran at the ``full`` run's speed.

Every figure compares runs within one invocation. Prints one JSON object on stdout;
progress goes to stderr. About 6 minutes on a quiet 2-core CPU, plus 2 of training::

    python benchmarks/refine.py [--device cpu|cuda] [--workdir DIR --keep]
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
import pandas as pd
import zarr
from _common import demo_model, machine

import volseg
from volseg import metrics, synth
from volseg.demo import DEMO_SETTINGS

log = logging.getLogger("refine")

COUNTS = ("tp", "fp", "fn", "tn")
SWEEP = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)


def chunk_regions(shape, chunks) -> dict[tuple[int, int, int], tuple[slice, ...]]:
    counts = [math.ceil(s / c) for s, c in zip(shape, chunks)]
    regions = {}
    for index in np.ndindex(*counts):
        regions[tuple(int(i) for i in index)] = tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape)
        )
    return regions


def write_degraded_scan(
    out: Path, shape, chunks, seed: int, bad: list, noise: float, blur: float
) -> None:
    """A synthetic scan whose chunks in ``bad`` are imaged with ``noise`` and ``blur``."""
    synth.write_anode(out, shape, seed=seed, chunks=chunks, overwrite=True)
    image = zarr.open(str(out / "image"), mode="r+")
    labels = zarr.open(str(out / "labels"), mode="r")
    bad_image, bad_labels = synth.anode(
        shape, seed, as_dask=True, noise_sigma=noise, blur_sigma=blur
    )
    regions = chunk_regions(shape, chunks)
    for index in bad:
        region = regions[index]
        if not np.array_equal(bad_labels[region].compute(), labels[region]):
            raise RuntimeError("degrading the image changed the labels")
        image[region] = bad_image[region].compute()


def run(scan: Path, model, out: Path, chunks, device: str, **modes) -> volseg.SegmentationResult:
    return volseg.segment(
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


def pooled_iou(table: pd.DataFrame) -> float:
    sums = {k: int(table[k].sum()) for k in COUNTS}
    return float(metrics.pooled_scores(**sums)["ni_iou"])


def chunk_key(row) -> tuple[int, int, int]:
    return (int(row["chunk_z"]), int(row["chunk_y"]), int(row["chunk_x"]))


def ratio(num: float, den: float) -> float | None:
    return None if den == 0 else round(num / den, 3)


def sweep_row(threshold, z_table, full_table, t_z, t_full, bad) -> dict:
    """IoU (exact) and cost fraction (estimated) had chunks above ``threshold`` been refined."""
    chosen = z_table["uncertain_fraction"].to_numpy() > threshold
    mixed = z_table[list(COUNTS)].copy()
    mixed[chosen] = full_table.loc[chosen, list(COUNTS)].to_numpy()
    # Work, not seconds: blocks of one shape compute the same tiles, while the task
    # seconds of one run vary with whatever else the machine does.
    share = full_table.loc[chosen, "voxels"].sum() / full_table["voxels"].sum()
    iou_z, iou_full = pooled_iou(z_table), pooled_iou(full_table)
    refined = {chunk_key(row) for _, row in z_table[chosen].iterrows()}
    return {
        "threshold": threshold,
        "chunks_refined": int(chosen.sum()),
        "degraded_refined": len(refined & bad),
        "ni_iou": round(pooled_iou(mixed), 4),
        "gain_recovered": ratio(pooled_iou(mixed) - iou_z, iou_full - iou_z),
        "cost_fraction_estimated": round(float(share * t_full / (t_full - t_z)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument(
        "--chunks", type=int, nargs=3, default=(32, 128, 128), help="scan chunks = blocks"
    )
    parser.add_argument("--bad-fraction", type=float, default=0.25, help="chunks degraded")
    parser.add_argument("--bad-noise", type=float, default=4000.0, help="noise sigma (1000)")
    parser.add_argument("--bad-blur", type=float, default=2.0, help="blur sigma (1.2)")
    parser.add_argument("--refine-threshold", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=DEMO_SETTINGS["test_seed"])
    parser.add_argument("--model", default=None, help="trained binary checkpoint")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    shape, chunks = tuple(args.shape), tuple(args.chunks)
    indices = sorted(chunk_regions(shape, chunks))
    if len(indices) < 8:
        parser.error(f"{len(indices)} chunks; choose --shape/--chunks for at least 8")
    rng = np.random.default_rng(args.seed)
    n_bad = max(1, round(args.bad_fraction * len(indices)))
    bad = {indices[i] for i in sorted(rng.choice(len(indices), n_bad, replace=False))}

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="volseg-refine-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        model = Path(args.model) if args.model else demo_model(workdir, args.device)
        scan = workdir / "held_out_degraded.zarr"
        log.info("writing the held-out scan, degrading chunks %s", sorted(bad))
        write_degraded_scan(scan, shape, chunks, args.seed, bad, args.bad_noise, args.bad_blur)
        volseg.segment(
            np.zeros((1, 128, 128), np.uint16), model=model, device=args.device, progress=False
        )  # loads the model into the per-process cache before anything is timed

        log.info("z")
        plain = run(scan, model, workdir / "z.zarr", chunks, args.device, axes="z")
        log.info("full: zyx + tta on every chunk")
        full = run(scan, model, workdir / "full.zarr", chunks, args.device, axes="zyx", tta=True)
        log.info("refine uncertain > %s", args.refine_threshold)
        refined = run(
            scan,
            model,
            workdir / "refine.zarr",
            chunks,
            args.device,
            axes="z",
            refine="uncertain",
            refine_threshold=args.refine_threshold,
        )

        z_table, full_table = plain.stats, full.stats
        t_z, t_full = plain.summary["seconds"], full.summary["seconds"]
        t_refine = refined.summary["seconds"]
        iou_z, iou_full = plain.summary["ni_iou"], full.summary["ni_iou"]
        iou_refine = refined.summary["ni_iou"]
        chosen = {chunk_key(row) for _, row in refined.stats.iterrows() if row["refined"]}
        predicted = sweep_row(args.refine_threshold, z_table, full_table, t_z, t_full, bad)

        degraded = np.array([chunk_key(row) in bad for _, row in z_table.iterrows()])
        chunk_rows = []
        for i, row in z_table.iterrows():
            key = chunk_key(row)
            chunk_rows.append(
                {
                    "chunk": list(key),
                    "degraded": key in bad,
                    "uncertain_fraction_z": round(float(row["uncertain_fraction"]), 4),
                    "uncertain_fraction_full": round(
                        float(full_table.loc[i, "uncertain_fraction"]), 4
                    ),
                    "ni_iou_z": round(float(row["iou"]), 4),
                    "ni_iou_full": round(float(full_table.loc[i, "iou"]), 4),
                    "refined": key in chosen,
                    "seconds_z": round(float(row["seconds"]), 2),
                    "seconds_full": round(float(full_table.loc[i, "seconds"]), 2),
                }
            )

        def by_region(table: pd.DataFrame) -> dict:
            return {
                "degraded": round(pooled_iou(table[degraded]), 4),
                "clean": round(pooled_iou(table[~degraded]), 4),
            }

        result = {
            "benchmark": "refine uncertain chunks",
            "device": args.device,
            "shape": list(shape),
            "chunks": list(chunks),
            "n_chunks": len(indices),
            "degraded_chunks": [list(k) for k in sorted(bad)],
            "degradation": {"noise_sigma": args.bad_noise, "blur_sigma": args.bad_blur},
            "clean_imaging": {
                "noise_sigma": synth.AnodeParameters.noise_sigma,
                "blur_sigma": synth.AnodeParameters.blur_sigma,
            },
            "refine_threshold": args.refine_threshold,
            "threshold_rule": "volseg's default refine_threshold (0.05), fixed before the run",
            "runs": {
                "z": {"ni_iou": round(iou_z, 4), "seconds": round(t_z, 2)},
                "full": {"ni_iou": round(iou_full, 4), "seconds": round(t_full, 2)},
                "refine": {
                    "ni_iou": round(iou_refine, 4),
                    "seconds": round(t_refine, 2),
                    "chunks_refined": int(refined.summary["chunks_refined"]),
                },
            },
            "ni_iou_by_region": {
                "z": by_region(z_table),
                "full": by_region(full_table),
                "refine": by_region(refined.stats),
            },
            "gain_recovered": ratio(iou_refine - iou_z, iou_full - iou_z),
            "cost_fraction": ratio(t_refine - t_z, t_full - t_z),
            "full_cost_vs_z": round(t_full / t_z, 2),
            "refine_cost_vs_z": round(t_refine / t_z, 2),
            "refined_chunks": [list(k) for k in sorted(chosen)],
            "overlap": {
                "refined": len(chosen),
                "degraded": len(bad),
                "refined_and_degraded": len(chosen & bad),
                "precision": ratio(len(chosen & bad), len(chosen)),
                "recall": ratio(len(chosen & bad), len(bad)),
            },
            "iou_check": {
                "measured": round(iou_refine, 4),
                "from_chunk_counts": predicted["ni_iou"],
            },
            "chunk_table": chunk_rows,
            "sweep": [sweep_row(t, z_table, full_table, t_z, t_full, bad) for t in SWEEP],
            "machine": machine(args.device.startswith("cuda")),
        }
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
