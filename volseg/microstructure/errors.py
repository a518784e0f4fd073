"""Error bars: the largest change of every measure over the variants of a result.

:func:`error_bars` walks a nominal result and the same result measured on
each variant, leaf by leaf. A measure that exists nominally but is undefined in
a variant has an unbounded error bar, :class:`Unbounded` (``"inf"``, a string so
that the result stays valid JSON), which names those variants.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Unbounded", "error_bars", "undefined_errors"]


class Unbounded(str):
    """The error bar of a measure that is undefined in some decision variants.

    It is the JSON-safe string ``"inf"`` (``json.dumps(..., allow_nan=False)``
    accepts it), formats like ``float("inf")`` with any float format, converts
    with ``float()`` to ``inf``, and names the variants lacking the measure in
    ``variants``.

    Examples
    --------
    >>> error = Unbounded(["ni+0.1"])
    >>> f"{error:.2g}", float(error), error.variants, error
    ('inf', inf, ('ni+0.1',), 'inf')
    """

    variants: tuple[str, ...]

    def __new__(cls, variants: Sequence[str] = ()) -> Unbounded:
        self = super().__new__(cls, "inf")
        self.variants = tuple(str(v) for v in variants)
        return self

    def __format__(self, spec: str) -> str:
        return format(math.inf, spec)

    def __float__(self) -> float:
        return math.inf

    def __reduce__(self):
        return (Unbounded, (self.variants,))

    def note(self) -> str:
        """``"undefined in variant a, b"`` (or in a variant, names unknown)."""
        if not self.variants:
            return "undefined in a variant"
        plural = "s" if len(self.variants) > 1 else ""
        return f"undefined in variant{plural} {', '.join(self.variants)}"


def error_bars(nominal: Any, variants: Sequence[Any] | Mapping[str, Any]) -> Any:
    """Largest absolute deviation of the variants from the nominal value, leaf by leaf.

    Numbers give a number; a number that a variant lacks (None, or not a
    number) gives an :class:`Unbounded` error naming those variants (by their
    keys when ``variants`` is a mapping of names to results, by their positions
    otherwise), never None. Dicts and lists are walked; anything else (text,
    booleans, a nominal None) gives None.

    Examples
    --------
    >>> variants = [{"tpb": 2.2, "n": [4, 7]}, {"tpb": 2.43, "n": [3, 5]}]
    >>> error_bars({"tpb": 2.31, "n": [4, 5]}, variants)
    {'tpb': 0.12, 'n': [1, 2]}
    >>> bars = error_bars({"tau": 1.8}, {"ni+0.1": {"tau": None}, "ni-0.1": {"tau": 1.7}})
    >>> bars["tau"], bars["tau"].variants
    ('inf', ('ni+0.1',))
    """
    if isinstance(variants, Mapping):
        names = [str(name) for name in variants]
        variants = list(variants.values())
    else:
        variants = list(variants)
        names = [f"#{i}" for i in range(len(variants))]
    return _error_bars(nominal, variants, names)


def _error_bars(nominal: Any, variants: list[Any], names: list[str]) -> Any:
    if isinstance(nominal, Mapping):
        return {
            key: _error_bars(
                value, [v.get(key) if isinstance(v, Mapping) else None for v in variants], names
            )
            for key, value in nominal.items()
        }
    if isinstance(nominal, list):
        return [
            _error_bars(
                value,
                [v[i] if isinstance(v, list) and i < len(v) else None for v in variants],
                names,
            )
            for i, value in enumerate(nominal)
        ]
    if isinstance(nominal, bool) or not isinstance(nominal, numbers.Real):
        return None
    missing = [
        name
        for name, v in zip(names, variants)
        if isinstance(v, bool) or not isinstance(v, numbers.Real)
    ]
    if missing:
        return Unbounded(missing)
    deviation = max((abs(v - nominal) for v in variants), default=0)
    return round(float(deviation), 12) if isinstance(deviation, float) else deviation


def undefined_errors(errors: Any, path: str = "") -> dict[str, list[str]]:
    """``{"phases.ni.tortuosity.z": ["ni+0.1"], ...}``: the unbounded error bars.

    Examples
    --------
    >>> undefined_errors({"phases": {"ni": {"tau": Unbounded(["ni+0.1"]), "n": 2}}})
    {'phases.ni.tau': ['ni+0.1']}
    """
    if isinstance(errors, Unbounded):
        return {path: list(errors.variants)}
    found = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            found.update(undefined_errors(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(errors, list):
        for i, value in enumerate(errors):
            found.update(undefined_errors(value, f"{path}[{i}]"))
    return found
