"""``volseg demo``, ``volseg synth`` and ``volseg convert``: making data to segment.

Each command imports the library only when it runs.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
>>> add_demo(sub); add_convert(sub); add_synth(sub)
>>> sorted(sub.choices)
['convert', 'demo', 'synth']
"""

from __future__ import annotations

import argparse

from .options import add_phases, add_zyx, as_shape, parse_phases

__all__ = ["add_convert", "add_demo", "add_synth"]


def add_synth(sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_synth(sub)
    >>> args = sub.choices["synth"].parse_args(["scan.zarr", "--shape", "4", "32", "32"])
    >>> args.shape, args.chunks, args.preset
    ([4, 32, 32], (16, 256, 256), 'v2')
    """
    p = sub.add_parser(
        "synth",
        help="write a synthetic Ni/YSZ/pore scan with labels",
        description="Write a synthetic anode (image uint16, labels 0 pore / 1 YSZ / 2 Ni) "
        "into a Zarr group, block by block.",
    )
    p.add_argument("out", help="output Zarr group")
    add_zyx(p, "--shape", int, (64, 384, 384), "volume shape in voxels")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same volume)")
    add_zyx(p, "--chunks", int, (16, 256, 256), "Zarr chunk shape of image and labels")
    p.add_argument(
        "--ni-fraction", type=float, default=None, help="expected Ni volume fraction (0.27)"
    )
    p.add_argument(
        "--ysz-fraction", type=float, default=None, help="expected YSZ volume fraction (0.43)"
    )
    p.add_argument(
        "--preset",
        # = the keys of volseg.synth.PRESETS, copied (see volseg.cli.options)
        choices=("v2", "v1"),
        default="v2",
        help="v2: calibrated to real scans (default); v1: volseg 0.1's finer generator",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from volseg.synth import write_anode

    write_anode(
        args.out,
        as_shape(args.shape),
        seed=args.seed,
        chunks=as_shape(args.chunks),
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


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_demo(sub)
    >>> args = sub.choices["demo"].parse_args(["--epochs", "2"])
    >>> args.out, args.epochs, args.device
    ('volseg-demo', 2, 'auto')
    """
    p = sub.add_parser(
        "demo",
        help="synthetic scan -> train a small model -> segment -> report",
        description="Generate two synthetic anodes, train a light U-Net on one, segment the "
        "other, and report its Ni IoU beside a multi-Otsu threshold (a few minutes on 2 CPU "
        "cores, no network).",
    )
    p.add_argument("--out", default="volseg-demo", help="output folder (volseg-demo)")
    # = volseg.demo.DEMO_SETTINGS["epochs"], copied (see volseg.cli.options)
    p.add_argument("--epochs", type=int, default=12, help="training epochs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from volseg.demo import run_demo

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


def add_convert(sub: argparse._SubParsersAction) -> None:
    """Add the ``convert`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_convert(sub)
    >>> args = sub.choices["convert"].parse_args(["slices/", "scan.zarr", "--levels", "2"])
    >>> args.levels, args.voxel_size, args.labels
    (2, (1.0, 1.0, 1.0), False)
    """
    p = sub.add_parser(
        "convert",
        help="convert a TIFF stack or HDF5 dataset into chunked OME-Zarr",
        description="Write a TIFF stack (file or folder of slices), an HDF5 dataset or any "
        "readable volume as a chunked OME-Zarr group with a resolution pyramid.",
    )
    p.add_argument("input", help="TIFF file, folder of TIFF slices, .h5/.hdf5 file, or Zarr")
    p.add_argument("out", help="OME-Zarr group to write")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path")
    add_zyx(p, "--chunks", int, (16, 256, 256), "chunk shape of level 0")
    p.add_argument("--levels", type=int, default=3, help="resolution levels (3)")
    add_zyx(
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
    add_phases(
        p,
        "+",
        "label value of each phase, recorded with the labels (implies --labels), "
        "e.g. pore=0 ysz=1 ni=2",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from volseg.io import convert

    group = convert(
        args.input,
        args.out,
        dataset=args.dataset,
        chunks=as_shape(args.chunks),
        levels=args.levels,
        voxel_size=tuple(args.voxel_size),
        unit=args.unit,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        labels=args.labels,
        phases=parse_phases(args.phases),
    )
    levels = sorted(name for name, _ in group.arrays())
    print(f"wrote {args.out}: levels {', '.join(levels)}, level 0 shape {group['0'].shape}")
    return 0
