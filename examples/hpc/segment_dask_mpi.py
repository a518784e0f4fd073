"""dask-mpi entry point for ``segment_dask_mpi.sbatch`` (run under ``srun``/``mpirun``).

Rank 0 becomes the dask scheduler, rank 1 runs :func:`volseg.segment`, the other
ranks are workers. A worker rank on a node with GPUs pins itself to GPU
``SLURM_LOCALID mod n_gpus`` and offers one ``GPU`` slot per dask thread (every
task takes one).
"""

from __future__ import annotations

import argparse
import os


def _pin_gpu(nthreads: int) -> dict[str, int]:
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        return {}
    local_rank = int(
        os.environ.get("SLURM_LOCALID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"))
    )
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[local_rank % len(visible)]
    return {"GPU": nthreads}  # one slot per dask thread; every task takes one


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scan")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--truth", default=None)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--nthreads", type=int, default=2, help="dask threads per worker rank")
    p.add_argument("--local-directory", default=os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args()

    from dask_mpi import initialize

    resources = _pin_gpu(args.nthreads)
    initialize(
        nthreads=args.nthreads,
        local_directory=args.local_directory,
        worker_options={"resources": resources} if resources else None,
    )
    # Only rank 1 gets here; the scheduler and worker ranks stay inside initialize().
    from distributed import Client

    import volseg

    with Client() as client:
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
            progress=False,
        )
    print(f"mask written to {result.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
