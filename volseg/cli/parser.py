"""The ``volseg`` command: parses arguments and calls the library. Nothing else.

The parser is built from one module per group of commands (:mod:`volseg.cli.segment`,
:mod:`volseg.cli.train`, :mod:`volseg.cli.results`, :mod:`volseg.cli.measure`,
:mod:`volseg.cli.data`); each imports the library only when its command runs, so
``volseg --help`` loads no torch.

>>> build_parser().prog
'volseg'
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from volseg._version import __version__

from .data import add_convert, add_demo, add_synth
from .measure import add_measure
from .results import add_evaluate, add_report, add_stats
from .segment import add_segment
from .train import add_train

__all__ = ["build_parser", "main"]


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
    add_demo(sub)
    add_train(sub)
    add_segment(sub)
    add_stats(sub)
    add_evaluate(sub)
    add_report(sub)
    add_measure(sub)
    add_convert(sub)
    add_synth(sub)
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
