"""Segment a scan on many nodes: dask workers are submitted as SLURM jobs (dask-jobqueue).

Run it on a login node (or any machine that can submit jobs and reach the compute nodes);
the scheduler runs here, the workers in the jobs::

    python examples/hpc/segment_jobqueue.py /data/scan.zarr --model /models/vgg16.pt \\
        --jobs 8 --cores 16 --memory 64GB --gpus-per-job 4 --walltime 04:00:00 \\
        --queue gpu --account myproject --setup "module load cuda" \\
        --setup "source ~/venvs/volseg/bin/activate"

Every site-specific value is an option (or the environment variable in brackets in
``--help``); none is written in this file.
"""

from __future__ import annotations

import argparse
import os

import volseg
from volseg import cluster


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scan")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--truth", default=None)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--jobs", type=int, default=int(env("VOLSEG_JOBS", "1")), help="[VOLSEG_JOBS]")
    p.add_argument(
        "--cores", type=int, default=int(env("VOLSEG_CORES", "4")), help="[VOLSEG_CORES]"
    )
    p.add_argument("--memory", default=env("VOLSEG_MEMORY", "16GB"), help="[VOLSEG_MEMORY]")
    p.add_argument(
        "--gpus-per-job",
        type=int,
        default=int(env("VOLSEG_GPUS_PER_JOB", "0")),
        help="[VOLSEG_GPUS_PER_JOB]",
    )
    p.add_argument(
        "--processes", type=int, default=None, help="worker processes per job [GPUs per job, or 1]"
    )
    p.add_argument(
        "--walltime", default=env("VOLSEG_WALLTIME", "01:00:00"), help="[VOLSEG_WALLTIME]"
    )
    p.add_argument("--queue", default=env("VOLSEG_QUEUE"), help="partition [VOLSEG_QUEUE]")
    p.add_argument("--account", default=env("VOLSEG_ACCOUNT"), help="[VOLSEG_ACCOUNT]")
    p.add_argument(
        "--setup",
        action="append",
        default=[env("VOLSEG_SETUP")] if env("VOLSEG_SETUP") else [],
        help="shell line run in each job before the worker (repeatable) [VOLSEG_SETUP]",
    )
    p.add_argument("--log-directory", default=env("VOLSEG_LOG_DIR"), help="[VOLSEG_LOG_DIR]")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        help="extra #SBATCH directive, e.g. --extra=--constraint=a100 (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    client = cluster.slurm(
        jobs=args.jobs,
        cores=args.cores,
        memory=args.memory,
        gpus_per_job=args.gpus_per_job,
        processes=args.processes,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        job_script_prologue=args.setup,
        job_extra_directives=args.extra,
        log_directory=args.log_directory,
    )
    try:
        result = volseg.segment(
            args.scan,
            model=args.model,
            out=args.out,
            truth=args.truth,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            client=client,
            resume=args.resume,
            overwrite=args.overwrite,
        )
    finally:
        client.close()
        client.cluster.close()
    print(f"mask written to {result.path}")
    for key, value in result.summary.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
