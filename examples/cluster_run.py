"""Segment a scan on a local dask.distributed cluster (one worker per GPU, or CPU workers).

    python examples/cluster_run.py scan.zarr model.pt [--workers 2] [--gpus auto]

On a SLURM cluster use examples/hpc/ instead.
"""

from __future__ import annotations

import argparse

import volseg
from volseg import cluster


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan")
    parser.add_argument("model")
    parser.add_argument("--out", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--gpus", default="auto")
    parser.add_argument("--tile", type=int, default=128)
    args = parser.parse_args(argv)

    gpus = args.gpus if args.gpus == "auto" else int(args.gpus)
    client = cluster.local(n_workers=args.workers, gpus=gpus, dashboard_address=None)
    try:
        print(f"dashboard: {client.dashboard_link}")
        result = volseg.segment(
            args.scan, model=args.model, out=args.out, tile=args.tile, client=client, overwrite=True
        )
    finally:
        client.close()
        client.cluster.close()
    print(result.summary)
    return result.summary


if __name__ == "__main__":
    main()
