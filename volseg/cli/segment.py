"""``volseg segment``: its options, the cluster it runs on, and the call of :func:`volseg.segment`.

Defaults and choices come from their owners (:class:`volseg.inference.settings.SegmentSettings`,
the tiling, precision and backend constants), which load numpy at most; the library
(torch, dask, the cluster) is imported only when the command runs.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
>>> add_segment(sub)
>>> args = sub.choices["segment"].parse_args(["scan.zarr", "--model", "ni.pt"])
>>> args.tile, args.overlap, args.blend, args.cluster
('auto', 0.25, 'gaussian', None)
"""

from __future__ import annotations

import argparse

from volseg.inference.settings import AXES_CHOICES, PROB_DTYPES, REFINE_CHOICES, SegmentSettings
from volseg.model.backend import BACKENDS
from volseg.tiling.blend import BLEND_MODES
from volseg.tiling.read import PAD_MODES

from .options import add_precision, add_zyx, label_value, min_size, new_file, tile_size
from .summary import print_summary

__all__ = ["add_segment"]

DEFAULTS = SegmentSettings()  # the defaults of volseg.segment


def add_segment(sub: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_segment(sub)
    >>> args = sub.choices["segment"].parse_args(
    ...     ["scan.zarr", "--model", "ni.pt", "--chunks", "8", "256", "256", "--tta"])
    >>> args.chunks, args.tta, args.axes
    ([8, 256, 256], True, 'z')
    """
    p = sub.add_parser(
        "segment",
        help="segment Ni in a scan with a trained U-Net",
        description="Segment a 3D scan slice by slice with the tiled U-Net and write the mask "
        "(and per-chunk statistics) to a Zarr group.",
    )
    _input_options(p)
    _network_options(p)
    _output_options(p)
    _accuracy_options(p)
    _result_options(p)
    _where_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run")
    p.add_argument(
        "--allow-missing-chunks",
        action="store_true",
        help="read chunks absent from the scan's store as its fill value (default: an error)",
    )
    p.add_argument("--csv", help="also write the per-chunk table to this CSV file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_segment)


def _input_options(p: argparse.ArgumentParser) -> None:
    """What is segmented, with which model, into which output, scored against what."""
    p.add_argument("scan", help="Zarr array/group (scan.zarr, scan.zarr/image), TIFF stack")
    p.add_argument("--model", required=True, help="volseg checkpoint (.pt)")
    p.add_argument("--out", help="output Zarr group (default: <scan>_ni.zarr beside the scan)")
    p.add_argument("--truth", help="ground-truth labels of the same shape, for IoU")
    p.add_argument(
        "--ni-label",
        type=label_value,
        default=None,
        help="value of Ni in --truth (default: from the truth's attrs, else 1)",
    )


def _network_options(p: argparse.ArgumentParser) -> None:
    """How the network is run over the tiles of a plane and how tiles are blended."""
    p.add_argument(
        "--tile",
        type=tile_size,
        default=DEFAULTS.tile,
        help="tile size, a multiple of 32, or auto: the grid fitted to the plane (auto)",
    )
    p.add_argument(
        "--overlap",
        type=float,
        default=DEFAULTS.overlap,
        help=f"tile overlap fraction ({DEFAULTS.overlap})",
    )
    add_precision(
        p,
        DEFAULTS.precision,
        "arithmetic of the network (auto: bf16 on CPUs with AMX/AVX512-BF16 and on "
        "GPUs that support it, fp16 on other GPUs, else fp32)",
    )
    p.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=DEFAULTS.backend,
        help="what runs the network (auto: OpenVINO when installed and on a CPU, else torch)",
    )
    p.add_argument(
        "--blend",
        choices=list(BLEND_MODES),
        default=DEFAULTS.blend,
        help="weights of overlapping tiles: Gaussian (default) or a plain average",
    )
    p.add_argument(
        "--pad",
        choices=list(PAD_MODES),
        default=DEFAULTS.pad,
        help="what tiles see beyond the volume border: mirrored data (default) or zeros",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help=f"tiles per forward pass ({DEFAULTS.batch_size})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULTS.threshold,
        help=f"Ni where the blended probability exceeds it (binary models; {DEFAULTS.threshold})",
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    """What is stored besides the mask, and on which chunks and shards."""
    p.add_argument(
        "--save-prob",
        choices=[dtype for dtype in PROB_DTYPES if isinstance(dtype, str)],
        default=None,
        help="also store the blended probability",
    )
    add_zyx(
        p, "--chunks", int, None, "processing blocks = output chunks (default: from the scan's)"
    )
    add_zyx(
        p,
        "--shards",
        int,
        None,
        "store mask/labels/prob as Zarr v3 shards of this shape, one per processing block "
        "(whole multiples of --chunks, which become the chunks inside a shard)",
    )


def _accuracy_options(p: argparse.ArgumentParser) -> None:
    """More work for a better mask: other slice axes, test-time augmentation, refinement."""
    p.add_argument(
        "--axes",
        choices=list(AXES_CHOICES),
        default=DEFAULTS.axes,
        help="predict on z-slices (z), or also on y- and x-slices and average (zyx: 3x the work)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each tile over 8 flips/rotations (8x the work)",
    )
    p.add_argument(
        "--refine",
        choices=[mode for mode in REFINE_CHOICES if mode is not None],
        default=DEFAULTS.refine,
        help="afterwards, redo the chunks whose uncertain fraction exceeds --refine-threshold "
        "with --axes zyx --tta",
    )
    p.add_argument(
        "--refine-threshold",
        type=float,
        default=DEFAULTS.refine_threshold,
        help=f"uncertain fraction above which a chunk is refined ({DEFAULTS.refine_threshold})",
    )


def _result_options(p: argparse.ArgumentParser) -> None:
    """What the written result holds: which phase, its voxel size, small components."""
    p.add_argument(
        "--phase",
        choices=["ni"],
        default=None,
        help="with a multi-phase model: write only the Ni mask, not the labels",
    )
    add_zyx(
        p,
        "--voxel-size",
        float,
        None,
        "voxel side per axis, recorded in the output for measure/report (default: from the "
        "scan's OME-Zarr metadata)",
    )
    p.add_argument("--unit", default=None, help="unit of --voxel-size, e.g. micrometer")
    p.add_argument(
        "--min-size",
        type=min_size,
        default=DEFAULTS.min_size,
        help="reassign connected components smaller than this (voxels, or a volume such as "
        "0.5um3) to the phase they share the most faces with (default 0: keep all)",
    )


def _where_options(p: argparse.ArgumentParser) -> None:
    """Where it runs: the device, a running scheduler, or a local or SLURM cluster."""
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--scheduler", help="address of a running dask scheduler (tcp://HOST:PORT or a file)"
    )
    p.add_argument(
        "--cluster",
        choices=["local", "slurm"],
        default=None,
        help="start a cluster: local worker processes (one per GPU, or CPU workers) or SLURM jobs",
    )
    p.add_argument("--workers", type=int, default=None, help="local CPU worker processes")
    p.add_argument("--gpus", default="auto", help="local: GPUs to use ('auto', 0, N)")
    p.add_argument("--jobs", type=int, default=1, help="slurm: number of jobs")
    p.add_argument("--cores", type=int, default=4, help="slurm: cores per job")
    p.add_argument("--memory", default="16GB", help="slurm: memory per job")
    p.add_argument("--gpus-per-job", type=int, default=0, help="slurm: GPUs per job")
    p.add_argument("--walltime", default="01:00:00", help="slurm: HH:MM:SS")
    p.add_argument("--queue", default=None, help="slurm: partition")
    p.add_argument("--account", default=None, help="slurm: account")


def _run_segment(args: argparse.Namespace) -> int:
    from volseg.inference.api import segment

    new_file(args.csv, args.overwrite, "CSV file")
    client = _client_for(args)
    try:
        result = segment(
            args.scan,
            model=args.model,
            out=args.out,
            truth=args.truth,
            ni_label=args.ni_label,
            tile=args.tile,
            overlap=args.overlap,
            blend=args.blend,
            pad=args.pad,
            batch_size=args.batch_size,
            threshold=args.threshold,
            save_prob=args.save_prob or False,
            chunks=tuple(args.chunks) if args.chunks else None,
            device=args.device,
            client=client,
            overwrite=args.overwrite,
            resume=args.resume,
            progress=not args.no_progress,
            axes=args.axes,
            tta=args.tta,
            refine=args.refine,
            refine_threshold=args.refine_threshold,
            phase=args.phase,
            voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
            unit=args.unit,
            precision=args.precision,
            backend=args.backend,
            allow_missing_chunks=args.allow_missing_chunks,
            min_size=args.min_size,
            shards=tuple(args.shards) if args.shards else None,
        )
    finally:
        if client is not None:
            cluster = client.cluster if args.cluster else None
            client.close()
            if cluster is not None:
                cluster.close()
    if args.csv:
        result.stats.to_csv(args.csv, index=False)
    written = (
        "labels and Ni mask" if result.group is not None and "labels" in result.group else "mask"
    )
    print(f"{written} written to {result.path}")
    print_summary(result.summary)
    return 0


def _client_for(args: argparse.Namespace):
    """A dask.distributed client from --scheduler or --cluster, or None (local threads)."""
    if args.scheduler and args.cluster:
        raise ValueError("give either --scheduler (a running cluster) or --cluster, not both.")
    if not (args.scheduler or args.cluster):
        return None
    from volseg import cluster

    if args.scheduler:
        return cluster.connect(args.scheduler)
    if args.cluster == "local":
        gpus = args.gpus if args.gpus == "auto" else int(args.gpus)
        return cluster.local(n_workers=args.workers, gpus=gpus)
    return cluster.slurm(
        jobs=args.jobs,
        cores=args.cores,
        memory=args.memory,
        gpus_per_job=args.gpus_per_job,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
    )
