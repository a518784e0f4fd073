"""Old path of :mod:`volseg.microstructure.uncertainty`, kept until its users import the new one.

Each name is loaded on first use from the submodule of :mod:`volseg.microstructure`
that defines it.
"""

from __future__ import annotations

from ._lazy import attach

__getattr__, _, __all__ = attach(
    "volseg.microstructure",
    {
        "Unbounded": "errors",
        "decision_variants": "uncertainty",
        "error_bars": "errors",
        "format_row": "summary",
        "measure_with_errors": "uncertainty",
        "summary_rows": "summary",
    },
)


def __dir__() -> list[str]:
    return list(__all__)
