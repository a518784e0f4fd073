"""The ``volseg`` command line: ``main`` (the entry point) and ``build_parser``.

Only this package parses arguments, and nothing else in volseg imports it. The
parser is in :mod:`volseg.cli.parser`, each group of commands in a module of its
own; names are loaded on first use (PEP 562), so ``volseg --help`` stays light.

>>> from volseg.cli import build_parser
>>> "segment" in build_parser().format_help()
True
"""

from __future__ import annotations

from volseg._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {"build_parser": "parser", "main": "parser"})
