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


@pytest.fixture(scope="module")
def written(tmp_path_factory, checkpoint):
    """A segmentation output with truth, and the label volume it was scored against."""
    from volseg import synth

    root = tmp_path_factory.mktemp("light")
    synth.write_anode(root / "anode.zarr", shape=(8, 64, 64), seed=3, chunks=(4, 64, 64))
    volseg.segment(
        str(root / "anode.zarr" / "image"),
        model=checkpoint,
        out=root / "out.zarr",
        truth=str(root / "anode.zarr" / "labels"),
        tile=64,
        device="cpu",
        progress=False,
    )
    return root


@pytest.mark.parametrize(
    "command",
    [
        ["stats", "{root}/out.zarr"],
        ["evaluate", "{root}/out.zarr", "{root}/anode.zarr/labels", "--baseline", "none"],
        ["measure", "{root}/out.zarr"],
        ["measure", "{root}/anode.zarr/labels", "--phases"],
    ],
    ids=["stats", "evaluate", "measure", "measure-phases"],
)
def test_light_commands_do_not_import_torch(written, command):
    argv = [part.format(root=written) for part in command]
    code = (
        "import sys\n"
        "from volseg.cli import main\n"
        f"status = main({argv!r})\n"
        "assert status == 0, status\n"
    )
    loaded = _loaded_after(code)
    assert "torch" not in loaded, f"volseg {' '.join(command)} imported torch"
    assert "segmentation_models_pytorch" not in loaded
