"""Old path of :mod:`volseg.microstructure.cleanup`, kept until its users import the new one.

Each name is loaded on first use from the submodule of :mod:`volseg.microstructure`
that defines it.
"""

from __future__ import annotations

from ._lazy import attach

__getattr__, _, __all__ = attach(
    "volseg.microstructure",
    {
        "check_min_size": "min_size",
        "clean_output": "cleanup",
        "parse_min_size": "min_size",
        "remove_small_components": "cleanup",
    },
)


def __dir__() -> list[str]:
    return list(__all__)
