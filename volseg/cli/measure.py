"""``volseg measure``: microstructure of a segmented phase (or of three phases) on the command line.

The measuring code is imported only when the command runs.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
>>> add_measure(sub)
>>> args = sub.choices["measure"].parse_args(["out.zarr"])
>>> args.label, args.connectivity, args.phases
(1, 6, None)
"""

from __future__ import annotations

import argparse

from .options import add_allow_incomplete, add_phases, add_zyx, label_value, min_size, parse_phases

__all__ = ["add_measure"]


def add_measure(sub: argparse._SubParsersAction) -> None:
    """Add the ``measure`` command to the subcommands ``sub``.

    Examples
    --------
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="volseg").add_subparsers(dest="command")
    >>> add_measure(sub)
    >>> args = sub.choices["measure"].parse_args(["labels.zarr", "--phases", "--faces"])
    >>> args.phases, args.faces, args.tortuosity
    ([], [], None)
    """
    p = sub.add_parser(
        "measure",
        help="microstructure of the segmented phase (fraction, surface, connectivity)",
        description="Volume fraction, specific surface area (voxel-face count, and x 2/3 for "
        "isotropic surfaces), connected components and percolation per axis, and the "
        "distance-transform thickness of the phase, computed chunk by chunk.",
    )
    p.add_argument("mask", help="volseg output group or any binary/label volume")
    p.add_argument("--label", type=label_value, default=1, help="value of the phase in MASK (1)")
    add_zyx(
        p,
        "--voxel-size",
        float,
        None,
        "voxel side per axis (default: from the OME-Zarr metadata, else 1 = voxel units)",
    )
    add_phases(
        p,
        "*",
        "three-phase mode: MASK is a label volume (or an output group with labels); "
        "measure each phase and the triple-phase boundary density. Without values: the "
        "phases recorded in its attrs, else pore=0 ysz=1 ni=2",
    )
    _measure_options(p)
    _error_bar_options(p)
    p.add_argument("--json", default=None, help="write the measures to this JSON file")
    add_allow_incomplete(p)
    p.set_defaults(func=_run_measure)


def _measure_options(p: argparse.ArgumentParser) -> None:
    """How the measures are taken: connectivity, distances, cleanup, tortuosity, active TPB."""
    p.add_argument(
        "--connectivity",
        type=int,
        # = volseg.microstructure.CONNECTIVITIES, copied (see volseg.cli.options)
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
        type=min_size,
        default=0,
        help="reassign connected components smaller than this (voxels, or a volume such as "
        "0.5um3) to the phase they share the most faces with (default 0: keep all)",
    )
    p.add_argument(
        "--tortuosity",
        nargs="*",
        # = volseg.microstructure.AXES, copied (see volseg.cli.options)
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


def _error_bar_options(p: argparse.ArgumentParser) -> None:
    """Error bars from the saved probabilities."""
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


def _faces(values: list[str] | None) -> dict | None:
    """--faces PHASE=FACE[,FACE] ... as {phase: [faces]}; no value: the defaults."""
    if values is None:
        return None
    from volseg.microstructure.tpb import DEFAULT_FACES

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

    from volseg.microstructure import measure, measure_phases
    from volseg.microstructure.summary import format_row, summary_rows
    from volseg.microstructure.uncertainty import measure_with_errors

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
            args.mask, voxel_size=voxel_size, phases=parse_phases(args.phases) or None, **options
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


def _measure_text(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
