"""Import rules: the package and the light commands load without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import volseg

HEAVY = ("torch", "segmentation_models_pytorch", "distributed")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import volseg",
        "import volseg.cli; volseg.cli.build_parser().format_help()",
        "import volseg; volseg.__version__; volseg.tiling.plane_grid((64, 64))",
    ],
)
def test_light_paths_do_not_import_heavy_modules(code):
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), f"{code!r} imported {sorted(loaded & set(HEAVY))}"


def test_every_public_name_resolves():
    for name in volseg.__all__:
        assert getattr(volseg, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        volseg.nonexistent  # noqa: B018
