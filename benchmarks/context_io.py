"""Read amplification of processing blocks against stored Zarr chunks, with and without
through-plane context: seconds and slices decoded per slice written, in one run.

A Zarr chunk is decoded whole. Default blocks (``tile="auto"``: whole planes, a few
slices deep) can be thinner than the stored chunks, and a 2.5D model (``context=1``)
reads one more slice on each side, which may lie in the next chunk. For each storage
layout, the same scan is segmented by a 2D and a 2.5D model (random weights: only the
time matters here) with the default blocks and with blocks as deep as ``--deep``
slices; prints one JSON object::

    python benchmarks/context_io.py [--plane 2048] [--depth 32] [--deep 16]
    python benchmarks/context_io.py --plane 1024 --depth 128 --deep 128 \
        --layouts 128x128x128 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from _common import machine

import volseg
from volseg import model as vmodel
from volseg import synth
from volseg.demo import DEMO_NETWORK
from volseg.inference.plan import default_chunks, read_amplification

log = logging.getLogger("context_io")


def checkpoint(workdir: Path, context: int) -> Path:
    """The demo network with random weights (fixed normalisation), ``context`` slices."""
    torch.manual_seed(0)
    config = vmodel.default_config(
        **DEMO_NETWORK,
        tile=128,
        context=context,
        normalisation={"method": "fixed", "low": 15000.0, "high": 50000.0},
    )
    path = workdir / f"context{context}.pt"
    vmodel.save_checkpoint(vmodel.build_unet(config), config, path)
    return path


def scan(workdir: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> Path:
    """A synthetic scan of ``shape`` (a 512-pixel anode tiled), stored in ``chunks``."""
    image, _ = synth.anode((shape[0], 512, 512), seed=3)
    reps = (1, -(-shape[1] // 512), -(-shape[2] // 512))
    volume = np.tile(np.asarray(image), reps)[:, : shape[1], : shape[2]]
    path = workdir / f"scan-{'x'.join(map(str, chunks))}.zarr"
    array = zarr.create_array(path, shape=shape, chunks=chunks, dtype=volume.dtype)
    array[...] = volume
    return path


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="volseg-context-io-"))
    shape = (args.depth, args.plane, args.plane)
    layouts = [tuple(int(n) for n in text.split("x")) for text in args.layouts.split(",")]
    rows = []
    try:
        models = {k: checkpoint(workdir, k) for k in (0, 1)}
        for stored in layouts:
            path = scan(workdir, shape, stored)
            default = default_chunks(shape, stored, "auto", deep=False)
            deep = (args.deep, args.plane, args.plane)
            for blocks in dict.fromkeys([default, deep]):
                for k, model in models.items():
                    best = None
                    for _ in range(args.repeats):
                        out = workdir / "out.zarr"
                        started = time.perf_counter()
                        volseg.segment(
                            str(path), model=model, out=out, chunks=blocks, overwrite=True,
                            device="cpu", progress=False,
                        )  # fmt: skip
                        seconds = time.perf_counter() - started
                        best = seconds if best is None else min(best, seconds)
                        shutil.rmtree(out, ignore_errors=True)
                    row = {
                        "stored_chunks": list(stored),
                        "blocks": list(blocks),
                        "default_blocks": blocks == default,
                        "context": k,
                        "seconds": round(best, 2),
                        "voxels_per_second": round(np.prod(shape) / best),
                        "slices_decoded_per_slice": round(
                            read_amplification(shape[0], blocks[0], stored[0], k), 3
                        ),
                    }
                    log.info("%s", row)
                    rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "context_io",
        "shape": list(shape),
        "network": "demo network, random weights; volseg.segment defaults (tile auto, "
        "precision auto, backend auto) but the blocks",
        "seconds": f"fastest of {args.repeats} runs",
        "rows": rows,
        "machine": machine(False),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plane", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--deep", type=int, default=16, help="depth of the deeper blocks (16)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--layouts",
        default="1x2048x2048,16x256x256",
        help="stored chunks to try, ZxYxX,... (1x2048x2048,16x256x256)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
