"""``volseg stats``, ``volseg evaluate`` and ``volseg report``: reading a finished output.

Each command imports the library only when it runs.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
>>> add_stats(sub); add_evaluate(sub); add_report(sub)
>>> sorted(sub.choices)
['evaluate', 'report', 'stats']
"""

from __future__ import annotations

import argparse

from .options import add_allow_incomplete, add_phases, add_zyx, label_value, new_file, parse_phases
from .summary import print_summary

__all__ = ["add_evaluate", "add_report", "add_stats"]


def add_stats(sub: argparse._SubParsersAction) -> None:
    """Add the ``stats`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_stats(sub)
    >>> args = sub.choices["stats"].parse_args(["out.zarr", "--csv", "chunks.csv"])
    >>> args.out, args.csv, args.allow_incomplete
    ('out.zarr', 'chunks.csv', False)
    """
    p = sub.add_parser(
        "stats",
        help="print the per-chunk statistics of an output",
        description="Print the per-chunk table (and pooled summary) of a segmentation output.",
    )
    p.add_argument("out", help="output Zarr group written by `volseg segment`")
    p.add_argument("--csv", help="write the table to this CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    add_allow_incomplete(p)
    p.set_defaults(func=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from volseg.io.results import open_result

    new_file(args.csv, args.overwrite, "CSV file")
    result = open_result(args.out, allow_incomplete=args.allow_incomplete)
    with pd.option_context("display.max_rows", 200, "display.width", 160):
        print(result.stats.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print_summary(result.summary)
    if args.csv:
        result.stats.to_csv(args.csv, index=False)
        print(f"table written to {args.csv}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_evaluate(sub)
    >>> args = sub.choices["evaluate"].parse_args(["out.zarr", "labels.zarr", "--ni-label", "2"])
    >>> args.ni_label, args.baseline
    (2, 'multiotsu')
    """
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
        type=label_value,
        default=None,
        help="value of Ni in TRUTH (default: from its attrs, else 1)",
    )
    p.add_argument(
        "--baseline",
        # = volseg.evaluation.BASELINES, copied (see volseg.cli.options)
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
    add_phases(
        p,
        "+",
        "score MASK as a label volume with these phases (an output group of a "
        "three-phase model is scored per phase without this)",
    )
    add_allow_incomplete(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from volseg.evaluation import evaluate

    result = evaluate(
        args.mask,
        args.truth,
        args.ni_label,
        baseline=args.baseline,
        scan=args.scan,
        csv=args.csv,
        write=not args.no_write,
        phases=parse_phases(args.phases),
        allow_incomplete=args.allow_incomplete,
    )
    print_summary(result.summary)
    worst = result.slices.sort_values("iou").head(3)
    print(
        "  lowest per-slice Ni IoU: "
        + ", ".join(f"z={int(r.z)}: {r.iou:.4f}" for r in worst.itertuples())
    )
    if args.csv:
        print(f"tables written to {args.csv} and its _slices.csv")
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_report(sub)
    >>> args = sub.choices["report"].parse_args(["out.zarr", "--tortuosity"])
    >>> args.html, args.tortuosity, args.no_rev
    (None, [], False)
    """
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
        type=label_value,
        default=None,
        help="value of Ni in --truth (default: from its attrs, else 1)",
    )
    p.add_argument("--scan", default=None, help="the scan (default: recorded in the output)")
    p.add_argument("--html", default=None, help="HTML file (default: <out>_report.html)")
    p.add_argument("--png-dir", default=None, help="PNG folder (default: <out>_report/)")
    add_zyx(
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
    add_allow_incomplete(p)
    p.add_argument(
        "--no-rev", action="store_true", help="leave out the representative-volume figure"
    )
    p.add_argument(
        "--tortuosity",
        nargs="*",
        # = volseg.microstructure.AXES, copied (see volseg.cli.options)
        choices=["z", "y", "x"],
        default=None,
        help="add the tortuosity factor of each phase along these axes (no value: all)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from volseg.report.page import make_report

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
