"""Option types and option groups shared by the ``volseg`` commands.

Argument types turn one command-line word into a value (or an argparse error that
names the fix); the ``add_*`` helpers add an option that several commands share,
so that its spelling and help read the same everywhere.

Defaults and choices are taken from their owners where these load numpy at most
(the settings of segment and train, tiling, precisions and backends). The few choice
lists whose owners load dask or torch (evaluation baselines, microstructure axes and
connectivities, synth presets, the demo's epochs) are copied, so that ``volseg --help``
stays light; tests/test_cli_choices.py checks every copy against its owner.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_zyx(p, "--chunks", int, None, "chunk shape")
>>> p.parse_args(["--chunks", "4", "64", "64"]).chunks
[4, 64, 64]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from volseg.model.precision import PRECISIONS

__all__ = [
    "PRECISION_CHOICES",
    "add_allow_incomplete",
    "add_phases",
    "add_precision",
    "add_zyx",
    "as_shape",
    "context_slices",
    "label_number",
    "label_value",
    "min_size",
    "new_file",
    "parse_phases",
    "tile_size",
]

PRECISION_CHOICES = list(PRECISIONS)


def label_number(text: str) -> float:
    """A label value: ``2`` stays the integer 2 (messages and records read "2", not "2.0").

    Examples
    --------
    >>> label_number("2"), label_number("0.5")
    (2, 0.5)
    """
    value = float(text)
    return int(value) if value.is_integer() else value


def tile_size(text: str) -> int | str:
    """``--tile``: ``auto`` or an integer.

    Examples
    --------
    >>> tile_size("auto"), tile_size("128")
    ('auto', 128)
    >>> tile_size("big")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'big' is not a tile size; use auto or a multiple of 32 such as 128
    """
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tile size; use auto or a multiple of 32 such as 128"
        ) from None


def context_slices(text: str) -> int | str:
    """``--context``: ``auto`` or a number of neighbouring slices per side, 0 or more.

    Examples
    --------
    >>> context_slices("auto"), context_slices("2")
    ('auto', 2)
    >>> context_slices("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '-1' is not a context; use auto or slices per side, e.g. 1
    """
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a context; use auto or slices per side, e.g. 1"
        )
    return value


def label_value(text: str) -> float:
    """The value of a phase in a label volume: a finite number, 0 or more.

    Examples
    --------
    >>> label_value("255")
    255
    >>> label_value("-1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: label value '-1' must be a finite number, 0 or more ...
    """
    try:
        value = label_number(text)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise argparse.ArgumentTypeError(
            f"label value {text!r} must be a finite number, 0 or more (e.g. 1, 2 or 255)"
        )
    return value


def min_size(text: str) -> int | str:
    """--min-size: voxels as an int, a physical volume kept as text (checked here).

    Examples
    --------
    >>> min_size("20"), min_size("0.5um3")
    (20, '0.5um3')
    """
    from volseg.microstructure.min_size import check_min_size

    value = int(text) if text.strip().isdigit() else text
    try:
        check_min_size(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def add_precision(p: argparse.ArgumentParser, default: str, help: str) -> None:
    """``--precision``: the arithmetic of the network (segment and train).

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_precision(p, "auto", "arithmetic of the network")
    >>> p.parse_args([]).precision, p.parse_args(["--precision", "bf16"]).precision
    ('auto', 'bf16')
    """
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=default, help=help)


def add_allow_incomplete(p: argparse.ArgumentParser) -> None:
    """``--allow-incomplete``: read an output whose run has not finished.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_allow_incomplete(p)
    >>> p.parse_args(["--allow-incomplete"]).allow_incomplete
    True
    """
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="read an output whose run has not finished: only its done chunks count",
    )


def new_file(path: str | None, overwrite: bool, what: str) -> None:
    """Refuse, before any work, a file that would be replaced, a folder, a missing folder.

    Examples
    --------
    >>> taken = getfixture("tmp_path") / "stats.csv"
    >>> _ = taken.write_text("chunk_z")
    >>> new_file(str(taken), overwrite=True, what="CSV file")  # replacing it is allowed
    >>> new_file(None, overwrite=False, what="CSV file")  # no file asked for: nothing to check
    """
    if path:
        from volseg.io.paths import check_new_file

        check_new_file(path, overwrite=overwrite, what=what)


def add_zyx(p: argparse.ArgumentParser, flag: str, kind: type, default: Any, help: str) -> None:
    """An option of three values along (z, y, x).

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_zyx(p, "--voxel-size", float, None, "voxel side per axis")
    >>> p.parse_args(["--voxel-size", "1", "0.5", "0.5"]).voxel_size
    [1.0, 0.5, 0.5]
    """
    p.add_argument(flag, type=kind, nargs=3, metavar=("Z", "Y", "X"), default=default, help=help)


def add_phases(p: argparse.ArgumentParser, nargs: str, help: str) -> None:
    """``--phases NAME=VALUE ...`` (read with :func:`parse_phases`).

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_phases(p, "+", "label value of each phase")
    >>> parse_phases(p.parse_args(["--phases", "pore=0", "ni=2"]).phases)
    {'pore': 0, 'ni': 2}
    """
    p.add_argument("--phases", nargs=nargs, metavar="NAME=VALUE", default=None, help=help)


def as_shape(values: Sequence[int]) -> tuple[int, int, int]:
    """Three values of a ``(z, y, x)`` option as a tuple of ints.

    Examples
    --------
    >>> as_shape([4, 64, 64])
    (4, 64, 64)
    """
    return tuple(int(v) for v in values)


def parse_phases(items: list[str] | None) -> dict[str, float] | None:
    """``["pore=0", "ni=2"]`` -> ``{"pore": 0, "ni": 2}``.

    Examples
    --------
    >>> parse_phases(["pore=0", "ysz=1", "ni=2"])
    {'pore': 0, 'ysz': 1, 'ni': 2}
    >>> parse_phases(["ni"])
    Traceback (most recent call last):
    ...
    ValueError: --phases 'ni': write NAME=VALUE, e.g. pore=0 ysz=1 ni=2.
    """
    if items is None:
        return None
    phases = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = label_number(value)
        except ValueError:
            number = None
        if not sep or not name or number is None:
            raise ValueError(f"--phases {item!r}: write NAME=VALUE, e.g. pore=0 ysz=1 ni=2.")
        phases[name] = number
    return phases
