"""The ``volseg`` command: parses arguments and calls the library. Nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ._version import __version__

__all__ = ["build_parser", "main"]

log = logging.getLogger("volseg")


def _label(text: str) -> float:
    """A label value: ``2`` stays the integer 2 (messages and records read "2", not "2.0")."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _tile(text: str) -> int | str:
    """``--tile``: ``auto`` or an integer."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tile size; use auto or a multiple of 32 such as 128"
        ) from None


def _label_value(text: str) -> float:
    """The value of a phase in a label volume: a finite number, 0 or more."""
    try:
        value = _label(text)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise argparse.ArgumentTypeError(
            f"label value {text!r} must be a finite number, 0 or more (e.g. 1, 2 or 255)"
        )
    return value


def _precision_option(p: argparse.ArgumentParser, default: str, help: str) -> None:
    p.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], default=default, help=help
    )


def _allow_incomplete(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="read an output whose run has not finished: only its done chunks count",
    )


def _new_file(path: str | None, overwrite: bool, what: str) -> None:
    """Refuse, before any work, a file that would be replaced, a folder, a missing folder."""
    if path:
        from .guards import check_new_file

        check_new_file(path, overwrite=overwrite, what=what)


def _zyx(p: argparse.ArgumentParser, flag: str, kind: type, default: Any, help: str) -> None:
    """An option of three values along (z, y, x)."""
    p.add_argument(flag, type=kind, nargs=3, metavar=("Z", "Y", "X"), default=default, help=help)


def _phases_option(p: argparse.ArgumentParser, nargs: str, help: str) -> None:
    """``--phases NAME=VALUE ...`` (read with :func:`_phases`)."""
    p.add_argument("--phases", nargs=nargs, metavar="NAME=VALUE", default=None, help=help)


def _shape(values: Sequence[int]) -> tuple[int, int, int]:
    return tuple(int(v) for v in values)


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment Ni in a scan with a trained U-Net",
        description="Segment a 3D scan slice by slice with the tiled U-Net and write the mask "
        "(and per-chunk statistics) to a Zarr group.",
    )
    p.add_argument("scan", help="Zarr array/group (scan.zarr, scan.zarr/image), TIFF stack")
    p.add_argument("--model", required=True, help="volseg checkpoint (.pt)")
    p.add_argument("--out", help="output Zarr group (default: <scan>_ni.zarr beside the scan)")
    p.add_argument("--truth", help="ground-truth labels of the same shape, for IoU")
    p.add_argument(
        "--ni-label",
        type=_label_value,
        default=None,
        help="value of Ni in --truth (default: from the truth's attrs, else 1)",
    )
    p.add_argument(
        "--tile",
        type=_tile,
        default="auto",
        help="tile size, a multiple of 32, or auto: the grid fitted to the plane (auto)",
    )
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (0.25)")
    _precision_option(
        p,
        "auto",
        "arithmetic of the network (auto: bf16 on CPUs with AMX/AVX512-BF16 and on "
        "GPUs that support it, fp16 on other GPUs, else fp32)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "openvino", "onnxruntime"],
        default="auto",
        help="what runs the network (auto: OpenVINO when installed and on a CPU, else torch)",
    )
    p.add_argument(
        "--blend",
        choices=["gaussian", "constant"],
        default="gaussian",
        help="weights of overlapping tiles: Gaussian (default) or a plain average",
    )
    p.add_argument(
        "--pad",
        choices=["reflect", "constant"],
        default="reflect",
        help="what tiles see beyond the volume border: mirrored data (default) or zeros",
    )
    p.add_argument("--batch-size", type=int, default=16, help="tiles per forward pass (16)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="Ni where the blended probability exceeds it (binary models; 0.5)",
    )
    p.add_argument(
        "--save-prob",
        choices=["uint8", "float16", "float32"],
        default=None,
        help="also store the blended probability",
    )
    _zyx(p, "--chunks", int, None, "processing blocks = output chunks (default: from the scan's)")
    _zyx(
        p,
        "--shards",
        int,
        None,
        "store mask/labels/prob as Zarr v3 shards of this shape, one per processing block "
        "(whole multiples of --chunks, which become the chunks inside a shard)",
    )
    p.add_argument(
        "--axes",
        choices=["z", "zyx"],
        default="z",
        help="predict on z-slices (z), or also on y- and x-slices and average (zyx: 3x the work)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each tile over 8 flips/rotations (8x the work)",
    )
    p.add_argument(
        "--refine",
        choices=["uncertain"],
        default=None,
        help="afterwards, redo the chunks whose uncertain fraction exceeds --refine-threshold "
        "with --axes zyx --tta",
    )
    p.add_argument(
        "--refine-threshold",
        type=float,
        default=0.05,
        help="uncertain fraction above which a chunk is refined (0.05)",
    )
    p.add_argument(
        "--phase",
        choices=["ni"],
        default=None,
        help="with a multi-phase model: write only the Ni mask, not the labels",
    )
    _zyx(
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
        type=_min_size,
        default=0,
        help="reassign connected components smaller than this (voxels, or a volume such as "
        "0.5um3) to the phase they share the most faces with (default 0: keep all)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
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


def _run_segment(args: argparse.Namespace) -> int:
    from .inference import segment

    _new_file(args.csv, args.overwrite, "CSV file")
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
    _print_summary(result.summary)
    return 0


def _client_for(args: argparse.Namespace):
    """A dask.distributed client from --scheduler or --cluster, or None (local threads)."""
    if args.scheduler and args.cluster:
        raise ValueError("give either --scheduler (a running cluster) or --cluster, not both.")
    if not (args.scheduler or args.cluster):
        return None
    from . import cluster

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


def _print_summary(summary: dict) -> None:
    order = [
        "ni_iou",
        "ni_dice",
        "precision",
        "recall",
        "two_class_mean_iou",
        "ni_fraction",
        "uncertain_fraction",
        "voxels",
        "chunks",
        "chunks_computed",
        "chunks_skipped",
        "chunks_refined",
        "chunks_missing",
        "seconds",
        "voxels_per_second",
        "status",
    ]
    rows = []
    for key in order:
        if key in summary and summary[key] is not None:
            value = summary[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            if key == "two_class_mean_iou":
                text += "  (mean of Ni and background)"
            rows.append((key, text))
    baseline = summary.get("baseline")
    if isinstance(baseline, dict) and baseline.get("ni_iou") is not None:
        rows.append(
            (
                f"{baseline['method']} Ni IoU",
                f"{baseline['ni_iou']:.4f}  (threshold {baseline['threshold']:.1f})",
            )
        )
    for name, value in (summary.get("phase_iou") or {}).items():
        rows.append((f"iou {name}", f"{value:.4f}" if value is not None else "n/a"))
    if summary.get("mean_iou") is not None:
        rows.append(("mean_iou (phases)", f"{summary['mean_iou']:.4f}"))
    for name, value in (summary.get("phase_fractions") or {}).items():
        rows.append((f"fraction {name}", f"{value:.4f}"))
    width = max((len(key) for key, _ in rows), default=0)
    for key, text in rows:
        print(f"  {key:<{width}}  {text}")


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="print the per-chunk statistics of an output",
        description="Print the per-chunk table (and pooled summary) of a segmentation output.",
    )
    p.add_argument("out", help="output Zarr group written by `volseg segment`")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    _allow_incomplete(p)
    p.set_defaults(func=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from .inference import open_result

    _new_file(args.csv, args.overwrite, "CSV file")
    result = open_result(args.out, allow_incomplete=args.allow_incomplete)
    with pd.option_context("display.max_rows", 200, "display.width", 160):
        print(result.stats.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _print_summary(result.summary)
    if args.csv:
        result.stats.to_csv(args.csv, index=False)
        print(f"table written to {args.csv}")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic Ni/YSZ/pore scan with labels",
        description="Write a synthetic anode (image uint16, labels 0 pore / 1 YSZ / 2 Ni) "
        "into a Zarr group, block by block.",
    )
    p.add_argument("out", help="output Zarr group")
    _zyx(p, "--shape", int, (64, 384, 384), "volume shape in voxels")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same volume)")
    _zyx(p, "--chunks", int, (16, 256, 256), "Zarr chunk shape of image and labels")
    p.add_argument(
        "--ni-fraction", type=float, default=None, help="expected Ni volume fraction (0.27)"
    )
    p.add_argument(
        "--ysz-fraction", type=float, default=None, help="expected YSZ volume fraction (0.43)"
    )
    p.add_argument(
        "--preset",
        choices=("v2", "v1"),
        default="v2",
        help="v2: calibrated to real scans (default); v1: volseg 0.1's finer generator",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import write_anode

    write_anode(
        args.out,
        _shape(args.shape),
        seed=args.seed,
        chunks=_shape(args.chunks),
        overwrite=args.overwrite,
        preset=args.preset,
        **{
            name: value
            for name, value in (
                ("ni_fraction", args.ni_fraction),
                ("ysz_fraction", args.ysz_fraction),
            )
            if value is not None
        },
    )
    print(f"wrote {args.out}/image (uint16) and {args.out}/labels (0 pore, 1 YSZ, 2 Ni)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train (fine-tune) the U-Net on labelled volumes",
        description="Train the Ni U-Net on labelled volumes. Give IMAGE LABELS pairs, or one "
        "Zarr group holding 'image' and 'labels' arrays (as `volseg synth` writes).",
    )
    p.add_argument(
        "volumes",
        nargs="+",
        metavar="VOLUME",
        help="IMAGE LABELS [IMAGE LABELS ...], or one group with image + labels",
    )
    p.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--encoder", default="vgg16", help="smp encoder (vgg16, resnet18, ...)")
    p.add_argument(
        "--encoder-weights",
        default=None,
        help="'imagenet' (needs the network) or a local encoder weights file",
    )
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    p.add_argument(
        "--ni-label",
        type=_label,
        default=None,
        help="value of Ni in the labels (default: from their attrs, else 1)",
    )
    p.add_argument("--tile", type=int, default=128, help="training crop size, multiple of 32")
    p.add_argument("--batch-size", type=int, default=16, help="crops per optimiser step")
    p.add_argument(
        "--epochs", type=int, default=100, help="maximum epochs (early stopping may end sooner)"
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="batches per epoch (default: enough to cover the training slices once, 4..500)",
    )
    p.add_argument(
        "--lr", type=float, default=1e-3, help="peak AdamW learning rate (warm-up, then cosine)"
    )
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (1e-4)")
    p.add_argument(
        "--warmup", type=float, default=0.05, help="share of the steps spent warming up (0.05)"
    )
    p.add_argument(
        "--grad-clip", type=float, default=1.0, help="largest gradient norm per step (1.0)"
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=0.999,
        help="moving average of the weights, validated and saved (0.999)",
    )
    p.add_argument("--no-ema", action="store_true", help="validate and save the raw weights")
    p.add_argument(
        "--context",
        type=int,
        default=0,
        help="through-plane context (2.5D): K neighbouring slices per side as extra input "
        "channels (0: plain 2D); segment reads it from the checkpoint",
    )
    p.add_argument(
        "--max-time",
        default=None,
        help="wall-time budget, e.g. 2h, 90m, 1h30m or seconds: stop in time with the best "
        "checkpoint (--resume-from continues the schedule)",
    )
    p.add_argument(
        "--loss",
        choices=["bce+dice", "bce", "dice", "ce+dice", "ce"],
        default=None,
        help="training loss (default: bce+dice with --classes 1, ce+dice with 3)",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=1,
        help="1: binary Ni model; 3: pore/YSZ/Ni model (phases from the labels' attrs, "
        "else pore=0 ysz=1 ni=2)",
    )
    _phases_option(p, "+", "label value of each phase, in class order, e.g. pore=0 ysz=128 ni=255")
    p.add_argument(
        "--ignore-label",
        type=_label,
        default=None,
        help="label value of unlabelled voxels (partly labelled slices), left out of the loss",
    )
    p.add_argument(
        "--labelled-slices",
        nargs="+",
        default=None,
        metavar="Z",
        help="sparse labels: the labelled z-slices (e.g. 0 40 80-83); training crops and "
        "validation use only these",
    )
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations/jitter")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of slices held out as a validation slab (0.2)",
    )
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0, help="seeds crops, augmentation, weights")
    p.add_argument("--encoder-depth", type=int, default=5, help="U-Net levels (3..5)")
    p.add_argument(
        "--decoder-channels",
        type=int,
        nargs="+",
        default=None,
        help="one width per level (default: 256 128 64 32 16, cut to --encoder-depth)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _precision_option(
        p,
        "fp32",
        "autocast of the training forward passes (fp32; auto: bf16 on CPUs with "
        "AMX/AVX512-BF16 and GPUs that support it, fp16 on other GPUs)",
    )
    p.add_argument("--resume-from", default=None, help="continue training this checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_train)


def _phases(items: list[str] | None) -> dict[str, float] | None:
    """``["pore=0", "ni=2"]`` -> ``{"pore": 0, "ni": 2}``."""
    if items is None:
        return None
    phases = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = _label(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise ValueError(f"--phases {item!r}: write NAME=VALUE, e.g. pore=0 ysz=1 ni=2.")
        phases[name] = number
    return phases


def _slice_list(items: list[str] | None) -> list[int] | None:
    """``["0", "40", "80-83"]`` -> ``[0, 40, 80, 81, 82, 83]`` (ranges inclusive)."""
    if items is None:
        return None
    slices: list[int] = []
    for item in items:
        for part in item.split(","):
            first, sep, last = part.partition("-")
            if not first.isdigit() or (sep and not last.isdigit()):
                raise ValueError(
                    f"--labelled-slices {item!r}: give slice indices or ranges, e.g. 0 40 80-83."
                )
            slices.extend(range(int(first), int(last or first) + 1))
    return slices


def _training_pairs(volumes: list[str]) -> tuple[list[str], list[str]]:
    if len(volumes) == 1:
        return [f"{volumes[0]}/image"], [f"{volumes[0]}/labels"]
    if len(volumes) % 2:
        raise ValueError(
            f"got {len(volumes)} volumes; give IMAGE LABELS pairs, or one group with "
            "'image' and 'labels' arrays."
        )
    return list(volumes[0::2]), list(volumes[1::2])


def _run_train(args: argparse.Namespace) -> int:
    from .training import history_paths, train

    images, labels = _training_pairs(args.volumes)
    result = train(
        images,
        labels,
        args.out,
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        freeze_encoder=args.freeze_encoder,
        ni_label=args.ni_label,
        tile=args.tile,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        loss=args.loss,
        augment=not args.no_augment,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        steps_per_epoch=args.steps_per_epoch,
        encoder_depth=args.encoder_depth,
        decoder_channels=args.decoder_channels,
        resume_from=args.resume_from,
        overwrite=args.overwrite,
        classes=args.classes,
        phases=_phases(args.phases),
        ignore_label=args.ignore_label,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        ema_decay=None if args.no_ema else args.ema_decay,
        max_time=args.max_time,
        precision=args.precision,
        context=args.context,
        labelled_slices=_slice_list(args.labelled_slices),
    )
    csv, png = history_paths(result.path)
    score = "Ni IoU" if result.config["classes"] == 1 else "mean IoU over the phases"
    print(
        f"best checkpoint (epoch {result.best_epoch}, validation {score} "
        f"{result.best_val_ni_iou:.4f}) written to {result.path}"
    )
    print(f"history: {csv} and {png}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic scan -> train a small model -> segment -> report",
        description="Generate two synthetic anodes, train a light U-Net on one, segment the "
        "other, and report its Ni IoU beside a multi-Otsu threshold (a few minutes on 2 CPU "
        "cores, no network).",
    )
    p.add_argument("--out", default="volseg-demo", help="output folder (volseg-demo)")
    # = volseg.demo.DEMO_SETTINGS["epochs"] (not imported here: --help stays fast)
    p.add_argument("--epochs", type=int, default=12, help="training epochs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs} must be at least 1.")
    overrides = {"epochs": args.epochs} if args.epochs else {}
    figures = run_demo(
        args.out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        device=args.device,
        **overrides,
    )
    print(
        f"held-out synthetic scan, Ni IoU: volseg {figures['ni_iou']:.4f}   "
        f"multi-Otsu threshold {figures['otsu_ni_iou']:.4f}"
    )
    print(f"  two-class mean IoU (Ni and background) {figures['two_class_mean_iou']:.4f}")
    print(
        f"  trained {figures['epochs_run']} epochs in {figures['train_seconds']:.0f} s "
        f"(best validation Ni IoU {figures['best_val_ni_iou']:.4f}); "
        f"segmented at {figures['voxels_per_second']:.0f} voxels/s"
    )
    for name, path in figures["paths"].items():
        print(f"  {name:<7} {path}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a mask against ground truth (per chunk, per slice, pooled, vs a threshold)",
        description="Chunked confusion counts of MASK against TRUTH: Ni IoU, Dice, precision, "
        "recall and the two-class mean IoU, per chunk, per z-slice and pooled, beside a global "
        "threshold baseline on the same scan.",
    )
    p.add_argument("mask", help="volseg output group (scan_ni.zarr) or any binary volume")
    p.add_argument("truth", help="labels or binary mask of the same shape")
    p.add_argument(
        "--ni-label",
        type=_label_value,
        default=None,
        help="value of Ni in TRUTH (default: from its attrs, else 1)",
    )
    p.add_argument(
        "--baseline",
        choices=["multiotsu", "otsu", "none"],
        default="multiotsu",
        help="global threshold on the scan to compare with (multiotsu: 3 classes, Ni brightest)",
    )
    p.add_argument(
        "--scan",
        default=None,
        help="grey-value scan for the baseline (default: the input recorded in the output group)",
    )
    p.add_argument("--csv", default=None, help="per-chunk CSV (per-slice: <stem>_slices.csv)")
    p.add_argument(
        "--no-write", action="store_true", help="do not store the counts in the output group"
    )
    _phases_option(
        p,
        "+",
        "score MASK as a label volume with these phases (an output group of a "
        "three-phase model is scored per phase without this)",
    )
    _allow_incomplete(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    result = evaluate(
        args.mask,
        args.truth,
        args.ni_label,
        baseline=args.baseline,
        scan=args.scan,
        csv=args.csv,
        write=not args.no_write,
        phases=_phases(args.phases),
        allow_incomplete=args.allow_incomplete,
    )
    _print_summary(result.summary)
    worst = result.slices.sort_values("iou").head(3)
    print(
        "  lowest per-slice Ni IoU: "
        + ", ".join(f"z={int(r.z)}: {r.iou:.4f}" for r in worst.itertuples())
    )
    if args.csv:
        print(f"tables written to {args.csv} and its _slices.csv")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report (figures embedded) and PNGs for an output",
        description="Sample slices with the mask outline, discrepancy maps (with --truth), "
        "per-chunk heat maps, Ni fraction profiles, grey-value histograms per phase and the "
        "training curves, as one self-contained HTML page and PNG files.",
    )
    p.add_argument("out", help="volseg output group")
    p.add_argument("--truth", default=None, help="labels, for IoU maps and discrepancies")
    p.add_argument(
        "--ni-label",
        type=_label_value,
        default=None,
        help="value of Ni in --truth (default: from its attrs, else 1)",
    )
    p.add_argument("--scan", default=None, help="the scan (default: recorded in the output)")
    p.add_argument("--html", default=None, help="HTML file (default: <out>_report.html)")
    p.add_argument("--png-dir", default=None, help="PNG folder (default: <out>_report/)")
    _zyx(
        p,
        "--voxel-size",
        float,
        None,
        "voxel side per axis (default: recorded in the output from the scan's OME-Zarr "
        "metadata, else voxel units)",
    )
    p.add_argument(
        "--no-measures",
        action="store_true",
        help="leave out the microstructure table (fractions, surfaces, thickness, TPB)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --html page")
    _allow_incomplete(p)
    p.add_argument(
        "--no-rev", action="store_true", help="leave out the representative-volume figure"
    )
    p.add_argument(
        "--tortuosity",
        nargs="*",
        choices=["z", "y", "x"],
        default=None,
        help="add the tortuosity factor of each phase along these axes (no value: all)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from .report import make_report

    page = make_report(
        args.out,
        truth=args.truth,
        html=args.html,
        png_dir=args.png_dir,
        scan=args.scan,
        ni_label=args.ni_label,
        voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
        measures=not args.no_measures,
        overwrite=args.overwrite,
        allow_incomplete=args.allow_incomplete,
        rev=not args.no_rev,
        tortuosity=False if args.tortuosity is None else (tuple(args.tortuosity) or True),
    )
    print(f"report written to {page}")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a TIFF stack or HDF5 dataset into chunked OME-Zarr",
        description="Write a TIFF stack (file or folder of slices), an HDF5 dataset or any "
        "readable volume as a chunked OME-Zarr group with a resolution pyramid.",
    )
    p.add_argument("input", help="TIFF file, folder of TIFF slices, .h5/.hdf5 file, or Zarr")
    p.add_argument("out", help="OME-Zarr group to write")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path")
    _zyx(p, "--chunks", int, (16, 256, 256), "chunk shape of level 0")
    p.add_argument("--levels", type=int, default=3, help="resolution levels (3)")
    _zyx(
        p,
        "--voxel-size",
        float,
        (1.0, 1.0, 1.0),
        "voxel side per axis, recorded in the OME-Zarr metadata (see --unit)",
    )
    p.add_argument("--unit", default=None, help="unit of --voxel-size, e.g. micrometer")
    p.add_argument(
        "--labels",
        action="store_true",
        help="INPUT is a label volume: lower levels take every second pixel, not averages",
    )
    _phases_option(
        p,
        "+",
        "label value of each phase, recorded with the labels (implies --labels), "
        "e.g. pore=0 ysz=1 ni=2",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from .io import convert

    group = convert(
        args.input,
        args.out,
        dataset=args.dataset,
        chunks=_shape(args.chunks),
        levels=args.levels,
        voxel_size=tuple(args.voxel_size),
        unit=args.unit,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        labels=args.labels,
        phases=_phases(args.phases),
    )
    levels = sorted(name for name, _ in group.arrays())
    print(f"wrote {args.out}: levels {', '.join(levels)}, level 0 shape {group['0'].shape}")
    return 0


def _add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="microstructure of the segmented phase (fraction, surface, connectivity)",
        description="Volume fraction, specific surface area (voxel-face count, and x 2/3 for "
        "isotropic surfaces), connected components and percolation per axis, and the "
        "distance-transform thickness of the phase, computed chunk by chunk.",
    )
    p.add_argument("mask", help="volseg output group or any binary/label volume")
    p.add_argument("--label", type=_label_value, default=1, help="value of the phase in MASK (1)")
    _zyx(
        p,
        "--voxel-size",
        float,
        None,
        "voxel side per axis (default: from the OME-Zarr metadata, else 1 = voxel units)",
    )
    _phases_option(
        p,
        "*",
        "three-phase mode: MASK is a label volume (or an output group with labels); "
        "measure each phase and the triple-phase boundary density. Without values: the "
        "phases recorded in its attrs, else pore=0 ysz=1 ni=2",
    )
    p.add_argument(
        "--connectivity",
        type=int,
        choices=[6, 26],
        default=6,
        help="voxels of a component touch by faces (6) or also edges and corners (26)",
    )
    p.add_argument(
        "--max-radius",
        type=int,
        default=32,
        help="distances are truncated at this many voxels (32)",
    )
    p.add_argument(
        "--min-size",
        type=_min_size,
        default=0,
        help="reassign connected components smaller than this (voxels, or a volume such as "
        "0.5um3) to the phase they share the most faces with (default 0: keep all)",
    )
    p.add_argument(
        "--tortuosity",
        nargs="*",
        choices=["z", "y", "x"],
        default=None,
        help="also solve the tortuosity factor and effective diffusivity of each phase along "
        "these axes (no value: all three); out of core, one solve per phase and axis",
    )
    p.add_argument(
        "--faces",
        nargs="*",
        metavar="PHASE=FACE[,FACE]",
        default=None,
        help="three-phase mode: also measure the active TPB, whose phases reach these faces "
        "(z- is z = 0, z+ the last z); no value: ysz=z- ni=z+ pore=z+",
    )
    p.add_argument(
        "--error-bars",
        action="store_true",
        help="MASK is an output group saved with --save-prob: add to every measure the "
        "largest change over decisions shifted by --shift in probability",
    )
    p.add_argument(
        "--shift",
        type=float,
        default=0.1,
        help="decision shift for --error-bars (0.1: thresholds 0.4/0.6, or +-0.1 per class)",
    )
    p.add_argument("--json", default=None, help="write the measures to this JSON file")
    _allow_incomplete(p)
    p.set_defaults(func=_run_measure)


def _faces(values: list[str] | None) -> dict | None:
    """--faces PHASE=FACE[,FACE] ... as {phase: [faces]}; no value: the defaults."""
    if values is None:
        return None
    from .tpb import DEFAULT_FACES

    if not values:
        return dict(DEFAULT_FACES)
    faces = {}
    for item in values:
        name, _, sides = item.partition("=")
        if not name or not sides:
            raise SystemExit(f"volseg measure: --faces {item!r} must read PHASE=FACE, e.g. ysz=z-")
        faces[name] = sides.split(",")
    return faces


def _run_measure(args: argparse.Namespace) -> int:
    import json

    from .microstructure import measure, measure_phases
    from .uncertainty import format_row, measure_with_errors, summary_rows

    voxel_size = tuple(args.voxel_size) if args.voxel_size else None
    options = {
        "connectivity": args.connectivity,
        "max_radius": args.max_radius,
        "min_size": args.min_size,
        "allow_incomplete": args.allow_incomplete,
    }
    if args.tortuosity is not None:
        options["tortuosity"] = tuple(args.tortuosity) or True
    faces = _faces(args.faces)
    if faces is not None:
        options["faces"] = faces
    if args.error_bars:
        values = measure_with_errors(args.mask, voxel_size, shift=args.shift, **options)
    elif args.phases is not None or faces is not None:
        values = measure_phases(
            args.mask, voxel_size=voxel_size, phases=_phases(args.phases) or None, **options
        )
    else:
        values = measure(args.mask, voxel_size=voxel_size, label=args.label, **options)
    unit = values.get("unit") or ("the unit of --voxel-size" if voxel_size else "voxels")
    print(f"  lengths in {unit} (voxel size {values['voxel_size']})")
    for row in summary_rows(values):
        print(format_row(*row))
    if "error_definition" in values:
        print(f"  error bars: {values['error_definition']}")
    skipped = {"phases", "errors", "active_tpb", "variants", "error_definition", "cleanup"}
    for key, value in values.items():
        if key not in skipped:
            print(f"  {key:<34} {_measure_text(value)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(values, handle, indent=2)
        print(f"measures written to {args.json}")
    return 0


def _min_size(text: str) -> int | str:
    """--min-size: voxels as an int, a physical volume kept as text (checked here)."""
    from .cleanup import check_min_size

    value = int(text) if text.strip().isdigit() else text
    try:
        check_min_size(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _measure_text(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``volseg`` command (also used to document the CLI).

    Returns
    -------
    argparse.ArgumentParser
        One subcommand per task (demo, train, segment, stats, evaluate, report,
        measure, convert, synth); each sets ``func``, the function that runs it.

    Examples
    --------
    >>> args = build_parser().parse_args(["synth", "scan.zarr", "--shape", "4", "32", "32"])
    >>> args.command, args.out, args.shape, args.seed
    ('synth', 'scan.zarr', [4, 32, 32], 0)
    """
    parser = argparse.ArgumentParser(
        prog="volseg",
        description="Segment a material phase (Ni in Ni/YSZ anodes) in large chunked tomograms.",
    )
    parser.add_argument("--version", action="version", version=f"volseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_demo(sub)
    _add_train(sub)
    _add_segment(sub)
    _add_stats(sub)
    _add_evaluate(sub)
    _add_report(sub)
    _add_measure(sub)
    _add_convert(sub)
    _add_synth(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volseg`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``volseg``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 after a usage or input error (the message
        goes to stderr), 130 when interrupted.

    Examples
    --------
    >>> out = getfixture("tmp_path") / "scan.zarr"
    >>> main(["synth", str(out), "--shape", "2", "32", "32"])  # doctest: +ELLIPSIS
    wrote .../scan.zarr/image (uint16) and .../scan.zarr/labels (0 pore, 1 YSZ, 2 Ni)
    0
    >>> main(["synth", str(out), "--shape", "2", "32", "32"])  # exists: an error, status 2
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, MemoryError) as exc:
        print(f"volseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"volseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (`volseg measure ... | head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
