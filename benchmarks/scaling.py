"""Throughput of ``volseg.segment`` on the local threaded scheduler and on dask.distributed.

What is measured, in one run, on one synthetic scan and one checkpoint:

1. end-to-end voxels per second of :func:`volseg.segment` (the wall time of the
   whole call: graph, tasks, statistics) with

   * ``threads``: no client, dask's local threaded scheduler (``client=None``);
   * ``cluster_1_worker``: ``volseg.cluster.local(n_workers=1, gpus=0)``;
   * ``cluster_2_workers``: ``volseg.cluster.local(n_workers=2, gpus=0)``;

   all on the CPU with the same explicit processing blocks (``--chunks``),
   tile 128, overlap 0.25, and a fresh output for every run. Each configuration
   is started (``startup_seconds``) and warmed up (the model loaded and run once
   in every worker process, then one small ``segment``; ``warm_up_seconds``)
   before it is timed ``--repeats`` times, so the timed runs measure
   segmentation, not start-up; the median is reported, every run's seconds
   beside it. ``speedup_2_vs_1_workers`` is the ratio of the medians. Only one
   cluster exists at a time: with a second, idle ``LocalCluster`` in the same
   process, runs on the first were slower, and one hung.
2. the per-task overhead of the distributed scheduler: ``--tasks`` trivial tasks
   (``dask.delayed(..., pure=False)``) through the 2-worker client and through
   the local threaded scheduler; ``distributed_overhead_ms_per_task`` is the
   difference, and ``overhead_share_of_segment_task`` sets it against the mean
   time of one ``segment`` task (``result.stats["seconds"]`` of the 2-worker runs).
3. that every run gave the same mask (``masks_identical``).

Each worker's torch intra-op thread count and ``MALLOC_TRIM_THRESHOLD_`` are read
inside the worker and reported (``torch_threads``, ``malloc_trim_threshold``), so the
figures show that ``volseg.cluster.local`` gave the workers the environment it means to
(``cores // n_workers`` torch threads each, glibc trimming only above 128 MiB). Should a
worker ever run with fewer torch threads than intended, ``cluster_1_worker_spawn_env``
repeats the one-worker run with the thread count set in the environment at spawn.

The checkpoint has random weights (seeded; its output bias is centred on
synthetic data so the mask holds both classes) and the grains are finer than
:mod:`volseg.synth`'s default only to keep synthesis short; neither changes the
work per voxel. Run from the repository root::

    python benchmarks/scaling.py
    python benchmarks/scaling.py --shape 16 256 256 --chunks 8 128 128 --repeats 1 --keep

Prints one JSON object on stdout; progress goes to stderr. The default run
(16x512x512 voxels in 8 blocks of 8x256x256) takes about three minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import distributed
import numpy as np
import torch

import volseg
from volseg import cluster
from volseg import model as vmodel
from volseg.synth import anode, write_anode

log = logging.getLogger("benchmarks.scaling")

TILE = 128
OVERLAP = 0.25
BATCH_SIZE = 16
SEED = 0
# Finer grains than the synth default (12): synthesis is several times faster and
# the network's work per voxel does not depend on the microstructure.
GRAIN_SIGMA = 6.0
# Grey values of the synthetic phases lie well inside this range (pore 22.7k, Ni 40.9k).
NORMALISATION = {"method": "fixed", "low": 15000.0, "high": 50000.0}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"
OVERHEAD_ROUNDS = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(
        description="Throughput of volseg.segment: local threads vs 1 and 2 dask workers.",
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(16, 512, 512),
        help="scan shape (16 512 512)",
    )  # fmt: skip
    parser.add_argument(
        "--chunks", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(8, 256, 256),
        help="processing blocks (= output chunks), the same for every run (8 256 256)",
    )  # fmt: skip
    parser.add_argument(
        "--scan-chunks", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(8, 256, 256),
        help="stored chunks of the scan (8 256 256)",
    )  # fmt: skip
    parser.add_argument(
        "--tasks", type=int, default=500,
        help="trivial tasks for the per-task overhead measurement (500)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=3,
        help="timed runs per configuration; the median is reported (3)",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help="folder in which the temporary folder is made (default: the system's)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the scans, model and outputs")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeats < 1:
        parser.error("--tasks and --repeats must be at least 1.")
    return args


def usable_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def write_model(path: Path) -> Path:
    """A seeded random-weight checkpoint (resnet18 encoder, 3 levels; no download).

    Random BatchNorm statistics make the network less smooth, and the output bias
    is shifted by the median logit on a synthetic sample: otherwise the mask can be
    all zeros, and comparing masks between runs would prove nothing.
    """
    torch.manual_seed(SEED)
    config = vmodel.default_config(
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=[32, 16, 8],
        tile=TILE,
        normalisation=NORMALISATION,
        labels={"ni_label": 2, "names": {"0": "background", "1": "Ni"}},
    )
    network = vmodel.build_unet(config, encoder_weights=None)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        image, _ = anode((2, TILE, TILE), seed=SEED + 11, grain_sigma=GRAIN_SIGMA)
        sample = torch.from_numpy(vmodel.normalise(image, NORMALISATION))[:, None]
        network.segmentation_head[0].bias -= network.eval()(sample).median()
    return vmodel.save_checkpoint(network, config, path)


def warm_up_worker(model_path: str, sha256: str) -> dict[str, Any]:
    """Load the model into the process cache, run one batch; report the thread counts.

    Runs in every worker (``client.run``) or in this process (threads).
    """
    loaded = vmodel.cached_model(model_path, sha256, "cpu")
    predictor = vmodel.TilePredictor(loaded)
    predictor(np.zeros((BATCH_SIZE, TILE, TILE), dtype=np.float32))
    return {
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        **{name: os.environ.get(name) for name in (*THREAD_VARIABLES, MALLOC_TRIM)},
    }


def identity(value: int) -> int:
    """The trivial task of the overhead measurement."""
    return value


def seconds_per_task(compute: Callable[[list], list], n_tasks: int) -> float:
    """Median over a few rounds of the wall time per task of ``n_tasks`` trivial tasks."""
    compute([dask.delayed(identity, pure=False)(i) for i in range(10)])  # warm-up
    rounds = []
    for _ in range(OVERHEAD_ROUNDS):
        tasks = [dask.delayed(identity, pure=False)(i) for i in range(n_tasks)]
        started = time.perf_counter()
        results = compute(tasks)
        rounds.append(time.perf_counter() - started)
        if list(results) != list(range(n_tasks)):
            raise RuntimeError("the trivial tasks returned wrong results")
    return statistics.median(rounds) / n_tasks


class Configuration:
    """One way of running ``segment``: its client (None: threads) and its figures."""

    def __init__(self, name: str, description: str, start: Callable[[], Any] | None):
        self.name = name
        self.description = description
        self.client = None
        self.figures: dict[str, Any] = {"scheduler": description}
        self.runs: list[dict[str, float]] = []
        self.last_summary: dict[str, Any] = {}
        started = time.perf_counter()
        if start is not None:
            self.client = start()
        self.figures["startup_seconds"] = round(time.perf_counter() - started, 2)

    def warm_up(
        self, model: Path, sha256: str, scan: Path, out: Path, chunks: Sequence[int]
    ) -> None:
        """Load and run the model in every worker, then segment a small scan (untimed)."""
        started = time.perf_counter()
        if self.client is None:
            # segment() itself sets the torch threads of its local threads (recorded at start).
            warm_up_worker(str(model), sha256)
        else:
            workers = self.client.run(warm_up_worker, str(model.resolve()), sha256)
            self.figures["workers"] = len(workers)
            self.figures["torch_threads"] = sorted(w["torch_threads"] for w in workers.values())
            self.figures["omp_num_threads"] = sorted(
                str(w["OMP_NUM_THREADS"]) for w in workers.values()
            )
            self.figures["malloc_trim_threshold"] = sorted(
                str(w[MALLOC_TRIM]) for w in workers.values()
            )
        self.segment(scan, model, out, chunks)
        self.figures["warm_up_seconds"] = round(time.perf_counter() - started, 2)

    def segment(
        self, scan: Path, model: Path, out: Path, chunks: Sequence[int] | None
    ) -> volseg.SegmentationResult:
        """One ``volseg.segment`` call with the benchmark's settings on this configuration."""
        return volseg.segment(
            str(scan),
            model=str(model),
            out=str(out),
            chunks=tuple(chunks) if chunks is not None else None,
            tile=TILE,
            overlap=OVERLAP,
            batch_size=BATCH_SIZE,
            device="cpu",
            client=self.client,
            progress=False,
        )

    def timed_run(
        self, scan: Path, model: Path, out: Path, chunks: Sequence[int]
    ) -> volseg.SegmentationResult:
        """Segment the measured scan into ``out`` and record its wall time."""
        started = time.perf_counter()
        result = self.segment(scan, model, out, chunks)
        seconds = time.perf_counter() - started
        self.runs.append(
            {
                "seconds": seconds,
                "voxels_per_second": result.summary["voxels"] / seconds,
                "mean_task_seconds": float(result.stats["seconds"].mean()),
            }
        )
        log.info(
            "%s: %.1f s, %.0f voxels/s", self.name, seconds, self.runs[-1]["voxels_per_second"]
        )
        return result

    def summary(self) -> dict[str, Any]:
        """The configuration's figures: medians over the timed runs, every run's seconds."""

        def median(key: str) -> float:
            return statistics.median(run[key] for run in self.runs)

        return {
            **self.figures,
            "seconds": [round(run["seconds"], 2) for run in self.runs],
            "voxels_per_second": round(median("voxels_per_second")),
            "mean_task_seconds": round(median("mean_task_seconds"), 3),
        }

    def client_compute(self, tasks: list) -> list:
        """Compute dask tasks on this configuration's client, as ``segment`` submits them."""
        return self.client.gather(self.client.compute(tasks))

    def close(self) -> None:
        """Close the client and its cluster (nothing to do for threads)."""
        if self.client is not None:
            local_cluster = self.client.cluster
            self.client.close()
            local_cluster.close()
            self.client = None


def local_cluster(n_workers: int) -> Callable[[], Any]:
    """A starter for ``volseg.cluster.local`` with ``n_workers`` CPU workers."""
    return lambda: cluster.local(n_workers=n_workers, gpus=0, dashboard_address=None)


def write_scans(workdir: Path, args: argparse.Namespace) -> tuple[Path, Path, tuple[int, ...]]:
    """The measured scan, a small warm-up scan and the warm-up's processing blocks."""
    shape = tuple(args.shape)
    started = time.perf_counter()
    scan = workdir / "scan.zarr"
    write_anode(scan, shape, seed=SEED, chunks=tuple(args.scan_chunks), grain_sigma=GRAIN_SIGMA)
    log.info("wrote %s %s in %.1f s", scan, shape, time.perf_counter() - started)
    warm_shape = (min(args.chunks[0], shape[0]), min(2 * TILE, shape[1]), min(2 * TILE, shape[2]))
    warm = workdir / "warm_up.zarr"
    write_anode(warm, warm_shape, seed=SEED + 1, chunks=warm_shape, grain_sigma=GRAIN_SIGMA)
    return scan / "image", warm / "image", (warm_shape[0], TILE, TILE)


def measure(
    configuration: Configuration,
    inputs: dict[str, Any],
    repeats: int,
    workdir: Path,
) -> list[np.ndarray]:
    """Warm a started configuration up, time ``repeats`` runs; returns their masks."""
    log.info("warming up %s", configuration.name)
    configuration.warm_up(
        inputs["model"],
        inputs["sha256"],
        inputs["warm_scan"],
        workdir / f"warm_up_{configuration.name}_ni.zarr",
        inputs["warm_chunks"],
    )
    masks = []
    for index in range(repeats):
        out = workdir / f"{configuration.name}_{index}_ni.zarr"
        result = configuration.timed_run(inputs["scan"], inputs["model"], out, inputs["chunks"])
        masks.append(np.asarray(result.mask[...]))
        configuration.last_summary = result.summary
    return masks


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Write the inputs, time every configuration, return the JSON figures."""
    cores = usable_cores()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    scan, warm_scan, warm_chunks = write_scans(workdir, args)
    model = write_model(workdir / "model.pt")
    inputs = {
        "scan": scan,
        "warm_scan": warm_scan,
        "warm_chunks": warm_chunks,
        "chunks": tuple(args.chunks),
        "model": model,
        "sha256": vmodel.file_sha256(model),
    }
    log.info("timing %d trivial tasks on the threaded scheduler", args.tasks)
    threads_per_task = seconds_per_task(
        lambda tasks: dask.compute(*tasks, scheduler="threads", num_workers=cores), args.tasks
    )

    # One cluster at a time: a second, idle LocalCluster in this process slows the
    # first one's runs down and can make a run hang (seen with distributed 2026.8).
    from volseg.inference.execute import local_threads

    threads = Configuration("threads", "local threaded scheduler (client=None)", None)
    dask_threads, torch_threads = local_threads(torch.device("cpu"))
    threads.figures.update(
        {
            "workers": 1,
            "dask_threads": [dask_threads],
            "torch_threads": [torch_threads],
            "intended_torch_threads": torch_threads,
        }
    )
    configurations = [threads]
    masks = measure(threads, inputs, args.repeats, workdir)
    reference = masks[0]
    first = threads.last_summary
    masks_identical = all(np.array_equal(mask, reference) for mask in masks)

    plan = [
        ("cluster_1_worker", "", 1, {}),
        ("cluster_2_workers", "", 2, {}),
    ]
    distributed_per_task = None
    while plan:
        name, note, n_workers, environment = plan.pop(0)
        description = f"volseg.cluster.local(n_workers={n_workers}, gpus=0){note}"
        with cluster.worker_environment(environment):
            configuration = Configuration(name, description, local_cluster(n_workers))
        configurations.append(configuration)
        try:
            configuration.figures["dask_threads"] = sorted(configuration.client.nthreads().values())
            configuration.figures["intended_torch_threads"] = max(1, cores // n_workers)
            masks = measure(configuration, inputs, args.repeats, workdir)
            masks_identical = masks_identical and all(
                np.array_equal(mask, reference) for mask in masks
            )
            if name == "cluster_2_workers":
                log.info("timing %d trivial tasks on %s", args.tasks, name)
                distributed_per_task = seconds_per_task(configuration.client_compute, args.tasks)
        finally:
            configuration.close()
        measured = configuration.figures
        if name == "cluster_1_worker" and (
            min(measured["torch_threads"]) < measured["intended_torch_threads"]
        ):
            log.warning(
                "the single worker ran torch with %s threads although OMP_NUM_THREADS=%s; "
                "adding cluster_1_worker_spawn_env",
                measured["torch_threads"],
                measured["omp_num_threads"],
            )
            thread_environment = {variable: str(cores) for variable in THREAD_VARIABLES}
            note = ", thread variables set before spawn"
            plan.insert(0, ("cluster_1_worker_spawn_env", note, 1, thread_environment))

    by_name = {configuration.name: configuration.summary() for configuration in configurations}
    rate = {name: figures["voxels_per_second"] for name, figures in by_name.items()}
    overhead = distributed_per_task - threads_per_task
    task_seconds = by_name["cluster_2_workers"]["mean_task_seconds"]
    figures: dict[str, Any] = {
        "benchmark": "segment throughput: local threads vs 1 and 2 dask.distributed workers",
        "settings": {
            "shape": list(args.shape),
            "voxels": math.prod(args.shape),
            "scan_chunks": list(args.scan_chunks),
            "chunks": list(args.chunks),
            "encoder": "resnet18",
            "encoder_depth": 3,
            "decoder_channels": [32, 16, 8],
            "encoder_weights": None,
            "tile": TILE,
            "overlap": OVERLAP,
            "batch_size": BATCH_SIZE,
            "device": "cpu",
            "grain_sigma": GRAIN_SIGMA,
            "repeats": args.repeats,
            "trivial_tasks": args.tasks,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": cores,
            "platform": platform.platform(),
            "processor": platform.machine(),
            "gpus": cluster.gpu_count(),
            "load_average_before": [round(v, 2) for v in load_before] if load_before else None,
            "load_average_after": [round(v, 2) for v in os.getloadavg()]
            if hasattr(os, "getloadavg")
            else None,
            "python": platform.python_version(),
            "volseg": volseg.__version__,
            "torch": torch.__version__,
            "dask": dask.__version__,
            "distributed": distributed.__version__,
        },
        "configurations": by_name,
        "voxels_per_second": rate,
        "speedup_2_vs_1_workers": round(rate["cluster_2_workers"] / rate["cluster_1_worker"], 3),
        "speedup_2_workers_vs_threads": round(rate["cluster_2_workers"] / rate["threads"], 3),
    }
    if "cluster_1_worker_spawn_env" in rate:
        figures["speedup_2_vs_1_workers_same_cores"] = round(
            rate["cluster_2_workers"] / rate["cluster_1_worker_spawn_env"], 3
        )
    figures.update(
        {
            "segment_tasks": first["chunks_computed"],
            "threads_seconds_per_task": threads_per_task,
            "distributed_seconds_per_task": distributed_per_task,
            "distributed_overhead_ms_per_task": round(overhead * 1e3, 3),
            "segment_task_mean_seconds": task_seconds,
            "overhead_share_of_segment_task": overhead / task_seconds,
            "masks_identical": masks_identical,
            "ni_fraction": round(first["ni_fraction"], 4),
        }
    )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON object on stdout."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="volseg-scaling-", dir=args.workdir))
    try:
        figures = run_benchmark(args, workdir)
    finally:
        if args.keep:
            log.info("kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
