"""Peak memory of ``volseg segment`` on a scan and on a scan 8 times larger.

``segment`` promises that memory does not grow with the volume: each dask task
reads one processing block plus the halo its tiles need, writes its own region
of the output and returns only counts. This benchmark checks that promise from
the outside, on the command a user runs.

What it does:

1. writes two synthetic anodes with :func:`volseg.synth.write_anode` into Zarr:
   a base scan (``--shape``) and one with every axis doubled (8x the voxels),
   both stored in the same chunks (``--scan-chunks``);
2. writes one checkpoint with random weights (``encoder_weights=None``);
3. runs a full ``python -m volseg.cli segment`` on each scan, each in a fresh
   process, with the same explicit processing blocks (``--chunks``), on the CPU;
4. runs a fresh process that only imports volseg and torch and loads the model,
   so the reader sees how much of the peak is the fixed interpreter/torch cost.

Each figure is the process's peak resident set size, ``ru_maxrss`` as
``os.wait4`` returns it for that one child: the kernel's own high-water mark, not
a sample, covering the whole life of the process (torch's teardown at exit
included, which all three share). Every child is started by its own bare
interpreter, so the measurements are independent of each other and of this
script's own size (see :func:`peak_rss`).

Both runs use the same processing blocks, so each task holds the same amount of
memory in both; with at least as many blocks in the base scan as there are
cores, both also have the same number of tasks in flight. If memory does not grow
with the volume, ``rss_increase_mib`` (large - small) is then close to zero and
far below ``large_scan_mib``, the size of the larger scan as uint16: a
``segment`` that held the scan, its mask or its float32 probability in memory
would add at least that much.

The weights are random and the grains are finer than :mod:`volseg.synth`'s
default (``grain_sigma``) only to keep the run short: neither changes what a
task holds in memory. Run from the repository root::

    python benchmarks/memory.py
    python benchmarks/memory.py --shape 16 256 256 --chunks 8 128 128 --keep

Prints one JSON object on stdout; progress goes to stderr. The default run (a
16x512x512 and a 32x1024x1024 scan) takes two to three minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks.memory")

MIB = 1 << 20
# ru_maxrss is in KiB on Linux, in bytes on macOS.
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
# Finer grains than the synth default (12): generation is several times faster
# (its smoothing radius is 4 sigma) and segmentation memory does not depend on it.
GRAIN_SIGMA = 6.0
OVERLAP = 0.25
BATCH_SIZE = 16
# Grey values of the synthetic phases lie well inside this range (pore 22.7k, Ni 40.9k).
NORMALISATION = {"method": "fixed", "low": 15000.0, "high": 50000.0}
# Runs one command (argv as JSON) with its output sent to a log file; prints the
# child's exit code, peak RSS (ru_maxrss units) and wall seconds as JSON.
RUNNER = """\
import json, os, subprocess, sys, time
command, log_path = json.loads(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
with open(log_path, "wb") as log_file:
    child = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
json.dump({"returncode": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss,
           "seconds": time.perf_counter() - started}, sys.stdout)
"""
BASELINE_CODE = (
    "import sys, torch, volseg, volseg.cli, volseg.inference\n"
    "from volseg.model import load_checkpoint\n"
    "load_checkpoint(sys.argv[1], 'cpu')\n"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(
        description="Peak memory of `volseg segment` on a scan and on one 8x larger.",
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(16, 512, 512),
        help="base scan shape; the large scan doubles every axis (16 512 512)",
    )  # fmt: skip
    parser.add_argument(
        "--chunks", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(8, 512, 512),
        help="processing blocks (= output chunks), the same for both runs (8 512 512)",
    )  # fmt: skip
    parser.add_argument(
        "--scan-chunks", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(8, 128, 128),
        help="stored chunks of both scans (8 128 128)",
    )  # fmt: skip
    parser.add_argument("--encoder", default="resnet18", help="U-Net encoder (resnet18)")
    parser.add_argument(
        "--encoder-depth", type=int, default=3,
        help="encoder stages; fewer is faster on a CPU (3)",
    )  # fmt: skip
    parser.add_argument(
        "--decoder-channels", type=int, nargs="+", default=(32, 16, 8),
        help="one per encoder stage (32 16 8)",
    )  # fmt: skip
    parser.add_argument("--tile", type=int, default=128, help="tile size, multiple of 32 (128)")
    parser.add_argument(
        "--axes", choices=["z", "zyx"], default="z",
        help="segment on z-slices, or fuse z-, y- and x-slices (z)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", type=int, choices=[1, 3], default=1,
        help="binary Ni model, or three phases with labels and per-phase probabilities (1)",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help="folder in which the temporary folder is made (default: the system's)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the scans, model and outputs")
    args = parser.parse_args(argv)
    if len(args.decoder_channels) != args.encoder_depth:
        parser.error(
            f"--decoder-channels needs {args.encoder_depth} values (one per encoder stage), "
            f"got {len(args.decoder_channels)}."
        )
    return args


def write_scans(
    workdir: Path, shape: tuple[int, int, int], scan_chunks: tuple[int, int, int]
) -> dict[str, Path]:
    """Write the base scan and the one with every axis doubled; returns their image arrays."""
    from volseg.synth import write_anode

    shapes = {"small": shape, "large": tuple(2 * s for s in shape)}
    images = {}
    for name, scan_shape in shapes.items():
        started = time.perf_counter()
        group = workdir / f"{name}.zarr"
        write_anode(group, scan_shape, seed=0, chunks=scan_chunks, grain_sigma=GRAIN_SIGMA)
        log.info("wrote %s %s in %.1f s", group, scan_shape, time.perf_counter() - started)
        images[name] = group / "image"
    return images


def write_model(
    workdir: Path, encoder: str, depth: int, decoder: Sequence[int], tile: int, classes: int = 1
) -> Path:
    """A checkpoint with random weights (no download)."""
    from volseg.model import build_unet, default_config, save_checkpoint

    config = default_config(
        encoder=encoder,
        encoder_depth=depth,
        decoder_channels=list(decoder),
        tile=tile,
        normalisation=NORMALISATION,
        classes=classes,
    )
    return save_checkpoint(build_unet(config, encoder_weights=None), config, workdir / "model.pt")


def peak_rss(command: Sequence[str], log_path: Path) -> dict[str, Any]:
    """Run ``command`` in a fresh process; its peak RSS (MiB) and wall seconds.

    The command is started by :data:`RUNNER`, a bare interpreter that reports
    ``os.wait4``'s usage of that one child: the kernel's high-water mark, not a
    sample. Linux counts in a process's ``ru_maxrss`` the memory image it
    replaced at ``exec`` -- that of the process that forked it -- so spawning
    from this (large) process directly would report at least its own size.
    """
    runner = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps([str(part) for part in command]), str(log_path)],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    usage = json.loads(runner.stdout)
    if usage["returncode"] != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(
            f"{shlex.join(map(str, command))} exited with {usage['returncode']}; "
            f"its output ends:\n{tail}"
        )
    return {"rss_mib": usage["maxrss"] * RSS_UNIT / MIB, "seconds": usage["seconds"]}


def segment_command(
    image: Path, model: Path, out: Path, chunks: Sequence[int], tile: int, axes: str = "z"
) -> list[str]:
    """The ``volseg segment`` command line for one scan."""
    return [
        sys.executable, "-m", "volseg.cli", "segment", str(image),
        "--model", str(model), "--out", str(out),
        "--chunks", *map(str, chunks),
        "--tile", str(tile), "--overlap", str(OVERLAP), "--batch-size", str(BATCH_SIZE),
        "--axes", axes, "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Write the inputs, measure the three processes, return the JSON figures."""
    import volseg

    shape = tuple(args.shape)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blocks_small = math.prod(math.ceil(s / c) for s, c in zip(shape, args.chunks))
    if blocks_small < (cores or 1):
        log.warning(
            "the base scan has %d blocks for %s cores: the large run keeps more tasks in flight, "
            "so its peak includes more blocks; use a larger --shape or smaller --chunks",
            blocks_small,
            cores,
        )
    images = write_scans(workdir, shape, tuple(args.scan_chunks))
    model = write_model(
        workdir, args.encoder, args.encoder_depth, args.decoder_channels, args.tile, args.classes
    )

    log.info("measuring the baseline (import volseg + torch, load the model)")
    baseline = peak_rss([sys.executable, "-c", BASELINE_CODE, str(model)], workdir / "baseline.log")
    runs: dict[str, dict[str, Any]] = {}
    for name, image in images.items():
        out = workdir / f"{name}_ni.zarr"
        log.info("segmenting %s", image)
        runs[name] = peak_rss(
            segment_command(image, model, out, args.chunks, args.tile, args.axes),
            workdir / f"{name}.log",
        )
        summary = volseg.open_result(out).summary
        if summary.get("status") != "complete":
            raise RuntimeError(f"{out} is not complete: {summary}")
        runs[name]["chunks"] = summary["chunks"]
        runs[name]["voxels_per_second"] = summary["voxels_per_second"]
        log.info("%s: peak %.1f MiB in %.1f s", name, runs[name]["rss_mib"], runs[name]["seconds"])

    small, large = runs["small"], runs["large"]
    large_shape = tuple(2 * s for s in shape)
    return {
        "benchmark": "segment peak memory vs scan size",
        "settings": {
            "shape_small": list(shape),
            "shape_large": list(large_shape),
            "voxels_small": math.prod(shape),
            "voxels_large": math.prod(large_shape),
            "scan_chunks": list(args.scan_chunks),
            "chunks": list(args.chunks),
            "encoder": args.encoder,
            "encoder_depth": args.encoder_depth,
            "decoder_channels": list(args.decoder_channels),
            "tile": args.tile,
            "axes": args.axes,
            "classes": args.classes,
            "overlap": OVERLAP,
            "batch_size": BATCH_SIZE,
            "device": "cpu",
            "grain_sigma": GRAIN_SIGMA,
            "volseg": volseg.__version__,
            "python": platform.python_version(),
            "machine": {
                "cpu_count": os.cpu_count(),
                "usable_cpus": cores,
                "platform": platform.platform(),
                "processor": platform.machine(),
            },
        },
        "rss_baseline_mib": round(baseline["rss_mib"], 1),
        "rss_small_mib": round(small["rss_mib"], 1),
        "rss_large_mib": round(large["rss_mib"], 1),
        "rss_ratio": round(large["rss_mib"] / small["rss_mib"], 3),
        "rss_increase_mib": round(large["rss_mib"] - small["rss_mib"], 1),
        "voxel_ratio": math.prod(large_shape) / math.prod(shape),
        "large_scan_mib": round(math.prod(large_shape) * 2 / MIB, 1),
        "chunks_small": small["chunks"],
        "chunks_large": large["chunks"],
        "seconds_baseline": round(baseline["seconds"], 2),
        "seconds_small": round(small["seconds"], 2),
        "seconds_large": round(large["seconds"], 2),
        "voxels_per_second_small": round(small["voxels_per_second"]),
        "voxels_per_second_large": round(large["voxels_per_second"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON object on stdout."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="volseg-memory-", dir=args.workdir))
    try:
        figures = run_benchmark(args, workdir)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if args.keep:
            log.info("kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
