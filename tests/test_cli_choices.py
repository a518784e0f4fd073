"""The choice lists the CLI copies (their owners load dask: ``volseg --help`` stays light)
match their owners; the others are imported from their owners."""

from __future__ import annotations

import argparse
import importlib

import pytest

from volseg.cli import build_parser

# (command, option, the library constant it copies)
COPIES = [
    ("evaluate", "--baseline", "volseg.evaluation.BASELINES"),
    ("report", "--tortuosity", "volseg.microstructure.AXES"),
    ("measure", "--tortuosity", "volseg.microstructure.AXES"),
    ("measure", "--connectivity", "volseg.microstructure.CONNECTIVITIES"),
    ("synth", "--preset", "volseg.synth.PRESETS"),
]


def _option(command: str, flag: str) -> argparse.Action:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    (action,) = [a for a in sub.choices[command]._actions if flag in a.option_strings]
    return action


def _constant(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("command", "flag", "owner"), COPIES)
def test_copied_choices_match_the_library(command, flag, owner):
    # None (refine) and True (save_prob) are the library's "off"/"default" values, not choices
    owned = [value for value in _constant(owner) if value is not None and value is not True]
    assert sorted(_option(command, flag).choices) == sorted(owned)


def test_demo_epochs_match_the_demo_settings():
    assert _option("demo", "--epochs").default == _constant("volseg.demo.DEMO_SETTINGS")["epochs"]
