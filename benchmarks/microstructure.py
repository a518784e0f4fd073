"""Microstructure measures: TPB against labels with and without clean-up, tortuosity
against TauFactor, and flat memory of the out-of-core solver.

Three parts, each printing into one JSON object on stdout (progress on stderr):

``tpb``
    Two pore/YSZ/Ni models with the network and budget of ``benchmarks/accuracy.py
    --quick`` (``classes=3``), one plain and one with ``--context`` slices per side
    (2.5D), trained once on a calibrated :mod:`volseg.synth` scan (preset "v2", its
    partial-volume rims) and reused from ``--workdir``, segment a held-out scan of
    another seed: the plain model with ``axes="z"`` and ``axes="zyx"``, the context
    model with ``axes="z"``. Their labels are measured with
    :func:`volseg.measure_phases` at ``min_size`` 0, 10, 50 and 200 voxels
    (:func:`volseg.microstructure.remove_small_components`) and compared with the TPB
    density of the true labels: ``tpb_error`` = predicted / true - 1, with the YSZ
    component counts and the Ni IoU.
``tortuosity``
    :func:`volseg.tortuosity` (in memory: the budget is 64 GiB) against
    ``taufactor.Solver(device="cpu")`` on the same porous volume (a thresholded
    smoothed noise field, 45 % solid) along z, each in a fresh process: tau, seconds and
    peak RSS (``ru_maxrss`` of that process) at every ``--sizes`` cube (a run past
    ``--timeout`` seconds, or killed, is recorded as ``failed``); then volseg
    again on the largest cube with ``--out-of-core-budget`` (chunked, iterates on disk).
``memory``
    :func:`volseg.tortuosity` alone on two label volumes stored in Zarr, the second
    8 times larger, with the same chunks and a memory budget far below either
    volume's solver state, so the iterates live on disk, then the larger one again
    with a budget that lets it take the in-memory solver, for contrast: peak RSS of
    each run (a fresh process each).

The machine was shared with other jobs while these ran: seconds are indicative,
ratios in one run are what to compare. Run from the repository root::

    python benchmarks/microstructure.py --quick --workdir W
    python benchmarks/microstructure.py --parts tpb --workdir W  # larger scan, same models
    python benchmarks/microstructure.py --parts tortuosity --sizes 256 --timeout 1200
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("benchmarks.microstructure")

MIB = 1 << 20
# The tpb part: the three-phase models train on one calibrated synthetic scan and are
# scored on another (different seed).
TPB_TRAIN_SHAPE = (56, 256, 256)
TPB_TRAIN_SEED = 3
TPB_TEST_SEED = 11
# A bare interpreter starts each measured child: Linux counts in a process's ru_maxrss
# the image it replaced at exec, which is then this small runner, not this script.
RUNNER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"

CHILD = """\
import json, resource, sys, time
import numpy as np
kind, path, size, chunk, budget = sys.argv[1:6]
size, chunk = int(size), int(chunk)
started = time.perf_counter()
if kind == "taufactor":
    import taufactor
    volume = np.load(path)
    solver = taufactor.Solver(volume, device="cpu")
    tau = float(np.asarray(solver.solve(verbose=False, conv_crit=1e-3)).ravel()[0])
    record = {"tau": tau, "iterations": int(solver.iter)}
else:
    import volseg
    result = volseg.tortuosity(path, axes="z", chunks=(chunk,) * 3, memory_budget=budget)
    z = result["axes"]["z"]
    record = {
        "tau": z["tortuosity"],
        "iterations": z["iterations"],
        "storage": result["storage"],
        "solver": result.get("solver", "chunked"),
        "blocks": result.get("blocks"),
        "memory_budget": budget,
    }
record["seconds"] = time.perf_counter() - started
unit = 1 if sys.platform == "darwin" else 1024
record["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20
print(json.dumps(record))
"""


def porous(shape: Sequence[int], seed: int = 0, solid: float = 0.45) -> np.ndarray:
    """A connected porous phase: smoothed noise above its ``solid`` quantile (uint8)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 2.0)
    return (field > np.quantile(field, solid)).astype(np.uint8)


def run_child(args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run the CHILD script in a fresh interpreter; its JSON record.

    A child that runs past ``timeout`` seconds or is killed (e.g. out of memory) gives
    ``{"failed": why, "seconds": ...}`` instead of a result.
    """
    started = time.perf_counter()
    # Its own process group, so that a time-out ends the runner and the solver under it.
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, sys.executable, "-c", CHILD, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"failed": f"timed out after {timeout:.0f} s", "seconds": timeout}
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        if child.returncode in (-9, 137) or "MemoryError" in stderr:
            why = f"killed (exit {child.returncode}; out of memory?)"
            return {"failed": why, "seconds": seconds, "stderr": stderr[-500:]}
        raise RuntimeError(f"child {args} failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def part_tortuosity(
    sizes: Sequence[int],
    chunk: int,
    workdir: Path,
    out_of_core_budget: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    from volseg import io as vio

    rows = []
    zarr_path = None
    for n in sizes:
        volume = porous((n, n, n))
        npy = workdir / f"porous-{n}.npy"
        np.save(npy, volume)
        zarr_path = workdir / f"porous-{n}.zarr"
        vio.write_arrays(zarr_path, {"labels": volume}, chunks=(chunk,) * 3)
        log.info("tortuosity %d^3: taufactor", n)
        ours_budget = "64GiB"
        theirs = run_child(["taufactor", npy, n, chunk, ours_budget], timeout)
        log.info("tortuosity %d^3: taufactor %s", n, theirs)
        ours = run_child(["volseg", zarr_path / "labels", n, chunk, ours_budget], timeout)
        log.info("tortuosity %d^3: volseg %s", n, ours)
        row = {
            "size": n,
            "volume_fraction": float(volume.mean()),
            "volseg": ours,
            "taufactor": theirs,
        }
        if "tau" in ours and "tau" in theirs:
            row["tau_relative_difference"] = ours["tau"] / theirs["tau"] - 1
            row["time_ratio_volseg_over_taufactor"] = ours["seconds"] / theirs["seconds"]
        rows.append(row)
    report = {
        "chunk": chunk,
        "axis": "z",
        "volseg_tol": 1e-6,
        "taufactor_conv_crit": 1e-3,
        "child_timeout_s": timeout,
        "rows": rows,
    }
    if out_of_core_budget and zarr_path is not None:
        # The largest volume again under a budget far below its in-memory solve: the
        # chunked solver with its iterates on disk.
        n = sizes[-1]
        log.info("tortuosity %d^3: volseg out of core, memory_budget=%s", n, out_of_core_budget)
        record = run_child(["volseg", zarr_path / "labels", n, chunk, out_of_core_budget])
        record["size"] = n
        record["tau_relative_difference_to_in_memory"] = (
            record["tau"] / rows[-1]["volseg"]["tau"] - 1
        )
        report["out_of_core"] = record
    return report


def part_memory(shape: Sequence[int], chunk: int, workdir: Path) -> dict[str, Any]:
    from volseg import io as vio

    small = tuple(int(s) for s in shape)
    large = tuple(2 * s for s in small)
    budget = "1MiB"
    rows = []
    # Both sizes under a budget far below their solver state (iterates on disk), then the
    # large one with the state in memory, for contrast.
    for size, run_budget in ((small, budget), (large, budget), (large, "64GiB")):
        path = workdir / f"memory-{'x'.join(map(str, size))}.zarr"
        if not path.exists():
            vio.write_arrays(path, {"labels": porous(size, seed=4)}, chunks=(chunk,) * 3)
        log.info("memory: volseg tortuosity on %s, memory_budget=%s", size, run_budget)
        record = run_child(["volseg", path / "labels", 0, chunk, run_budget])
        record["shape"] = list(size)
        record["memory_budget"] = run_budget
        record["state_mib"] = math.prod(size) * 52 / MIB
        rows.append(record)
    return {
        "chunk": chunk,
        "rows": rows,
        "rss_increase_mib_on_disk": rows[1]["rss_mib"] - rows[0]["rss_mib"],
        "rss_increase_mib_in_memory": rows[2]["rss_mib"] - rows[0]["rss_mib"],
    }


def train_three_phase(workdir: Path, name: str, context: int) -> tuple[Path, dict[str, Any]]:
    """A pore/YSZ/Ni model on the calibrated synthetic scan; reused if in ``workdir``.

    The network and budget are those of ``benchmarks/accuracy.py --quick``; the model and
    what its training reported are kept in ``workdir`` so that later runs reuse them.
    """
    from accuracy import BUDGETS

    import volseg
    from volseg import synth

    path = workdir / f"{name}.pt"
    info_path = workdir / f"{name}.json"
    if path.exists() and info_path.exists():
        log.info("reusing %s", path)
        return path, json.loads(info_path.read_text())
    image, labels = synth.anode(TPB_TRAIN_SHAPE, seed=TPB_TRAIN_SEED)
    network = BUDGETS["quick"]["network"]
    log.info("training %s (context=%d)", name, context)
    started = time.perf_counter()
    result = volseg.train(
        image,
        labels,
        path,
        ni_label=synth.PHASES["ni"],  # numpy labels carry no attrs
        **network,
        classes=3,
        context=context,
        device="cpu",
        progress=False,
        overwrite=True,
    )
    info = {
        "context": context,
        "train_seconds": time.perf_counter() - started,
        "best_epoch": int(result.best_epoch),
        "best_val_mean_iou": float(result.best_val_ni_iou),
    }
    info_path.write_text(json.dumps(info))
    return path, info


def part_tpb(
    shape: Sequence[int], workdir: Path, context: int, seed: int = TPB_TEST_SEED
) -> dict[str, Any]:
    from accuracy import BUDGETS

    import volseg
    from volseg import synth
    from volseg.microstructure import remove_small_components

    plain, plain_info = train_three_phase(workdir, "three-phase-z", 0)
    ctx, ctx_info = train_three_phase(workdir, f"three-phase-context{context}", context)
    scan = workdir / f"held-out-{'x'.join(map(str, shape))}-seed{seed}.zarr"
    if not scan.exists():
        synth.write_anode(scan, tuple(shape), seed=seed)
    import zarr

    truth = zarr.open_array(str(scan / "labels"), mode="r")[...]
    true = volseg.measure_phases(truth, max_radius=4)
    ni_true = truth == synth.PHASES["ni"]
    rows = []
    segment_seconds = {}
    for kind, model, axes in (
        ("z", plain, "z"),
        ("zyx", plain, "zyx"),
        (f"z+context{context}", ctx, "z"),
    ):
        out = workdir / f"pred-{kind}.zarr"
        started = time.perf_counter()
        result = volseg.segment(
            scan / "image",
            model,
            out=out,
            axes=axes,
            device="cpu",
            progress=False,
            overwrite=True,
        )
        segment_seconds[kind] = time.perf_counter() - started
        predicted = result.group["labels"]
        for min_size in (0, 10, 50, 200):
            labels = predicted
            if min_size:
                labels = remove_small_components(predicted, min_size)[0].compute()
            labels = np.asarray(labels[...])
            measured = volseg.measure_phases(labels, max_radius=4)
            ni = labels == synth.PHASES["ni"]
            rows.append(
                {
                    "model": kind,
                    "axes": axes,
                    "min_size": min_size,
                    "tpb_density": measured["tpb_density"],
                    "tpb_error": measured["tpb_density"] / true["tpb_density"] - 1,
                    "ysz_components": measured["phases"]["ysz"]["n_components"],
                    "ni_iou": float(np.sum(ni & ni_true) / np.sum(ni | ni_true)),
                    "phase_fractions": measured["phase_fractions"],
                }
            )
            log.info("tpb %s min_size=%d: %s", kind, min_size, rows[-1])
    return {
        "generator": "volseg.synth.anode, preset v2 (calibrated defaults)",
        "train_shape": list(TPB_TRAIN_SHAPE),
        "train_seed": TPB_TRAIN_SEED,
        "scan_shape": list(shape),
        "scan_seed": seed,
        "network": "benchmarks/accuracy.py quick budget, classes=3",
        "network_settings": BUDGETS["quick"]["network"],
        "models": {"z": plain_info, f"z+context{context}": ctx_info},
        "segment_seconds": segment_seconds,
        "true_tpb_density": true["tpb_density"],
        "true_ysz_components": true["phases"]["ysz"]["n_components"],
        "true_phase_fractions": true["phase_fractions"],
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["tpb", "tortuosity", "memory"])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="keep files (and the model) here")
    parser.add_argument(
        "--context", type=int, default=2, help="tpb part: slices per side of the context model"
    )
    parser.add_argument(
        "--scan-seed",
        type=int,
        default=TPB_TEST_SEED,
        help=f"tpb part: seed of the held-out scan ({TPB_TEST_SEED})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="tortuosity part: seconds after which a solver's run is stopped and reported "
        "as timed out",
    )
    parser.add_argument(
        "--out-of-core-budget",
        default="32MiB",
        help="tortuosity part: memory_budget of the extra run on the largest size (chunked, "
        "iterates on disk); 'none' to skip",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    sizes = args.sizes or ([48, 64] if args.quick else [128, 256])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="volseg-microstructure-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "microstructure",
        "note": "machine shared with other jobs while this ran; compare ratios",
        "quick": bool(args.quick),
    }
    if "tpb" in args.parts:
        shape = (32, 192, 192) if args.quick else (64, 256, 256)
        report["tpb"] = part_tpb(shape, workdir, args.context, args.scan_seed)
    if "tortuosity" in args.parts:
        budget = None if args.out_of_core_budget.lower() == "none" else args.out_of_core_budget
        report["tortuosity"] = part_tortuosity(
            sizes, 32 if args.quick else 64, workdir, budget, args.timeout
        )
    if "memory" in args.parts:
        shape = (24, 48, 48) if args.quick else (48, 96, 96)
        report["memory"] = part_memory(shape, 24 if args.quick else 48, workdir)
    import _common

    report["machine"] = _common.machine(False)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
