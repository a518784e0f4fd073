"""The ten most likely user mistakes, as a user meets them on the command line.

Each must end with exit status 2 and one line on stderr that names the input and says what
to do, with no traceback.
"""

from __future__ import annotations

import numpy as np
import pytest

from volseg import io as vio
from volseg import synth
from volseg.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("mistakes")
    synth.write_anode(root / "scan.zarr", shape=(4, 64, 64), seed=1, chunks=(4, 64, 64))
    vio.write_arrays(
        root / "short.zarr", {"labels": np.zeros((3, 64, 64), np.uint8)}, chunks=(3, 64, 64)
    )
    (root / "notes.txt").write_text("not a model")
    (root / "taken.zarr").mkdir()
    (root / "taken.zarr" / "keep.txt").write_text("someone's data")
    return root, checkpoint


def mistakes(root, model):
    scan, labels = f"{root}/scan.zarr/image", f"{root}/scan.zarr/labels"
    fast = ["--no-progress", "--device", "cpu", "--tile", "64"]
    return {
        "scan path with a typo": (
            ["segment", f"{root}/sacn.zarr", "--model", model, *fast],
            ["does not exist", "check the path"],
        ),
        "model path with a typo": (
            ["segment", scan, "--model", f"{root}/modle.pt", *fast],
            ["model file", "does not exist", "volseg train"],
        ),
        "a file that is not a model": (
            ["segment", scan, "--model", f"{root}/notes.txt", *fast],
            ["is not a volseg checkpoint", "use a file written by volseg.train"],
        ),
        "output that holds other data": (
            [
                "segment",
                scan,
                "--model",
                model,
                "--out",
                f"{root}/taken.zarr",
                "--overwrite",
                *fast,
            ],
            ["is not a volseg output group", "choose another output path"],
        ),
        "truth of another shape": (
            ["segment", scan, "--model", model, "--truth", f"{root}/short.zarr/labels", *fast],
            ["has shape (3, 64, 64)", "give the labels of this scan"],
        ),
        "tile not a multiple of 32": (
            ["segment", scan, "--model", model, "--no-progress", "--tile", "100"],
            ["tile=100 must be a multiple of 32", "for example 128"],
        ),
        "a GPU that is not there": (
            ["segment", scan, "--model", model, "--no-progress", "--device", "cuda:3"],
            ["cuda", "--device cpu"],
        ),
        "training labels of another shape": (
            ["train", scan, f"{root}/short.zarr/labels", "--out", f"{root}/m.pt", "--epochs", "1"],
            ["training labels", "give the labels of this image"],
        ),
        "a Ni label the labels do not hold": (
            [
                "train",
                f"{root}/scan.zarr",
                "--out",
                f"{root}/m.pt",
                "--ni-label",
                "7",
                "--epochs",
                "1",
                "--tile",
                "64",
                "--device",
                "cpu",
                "--no-progress",
                "--encoder",
                "resnet18",
                "--encoder-depth",
                "3",
                "--decoder-channels",
                "8",
                "8",
                "8",
            ],
            ["hold no Ni (label 7)", "check ni_label"],
        ),
        "a baseline without the scan": (
            ["evaluate", labels, labels, "--ni-label", "2"],
            ["needs the scan", "--scan"],
        ),
    }


CASES = list(mistakes("ROOT", "MODEL"))


@pytest.mark.parametrize("case", CASES)
def test_a_likely_mistake_reads_well(case, workspace, capsys):
    root, model = workspace
    argv, phrases = mistakes(root, str(model))[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"volseg {argv[0]}: error: ")
    assert "Traceback" not in captured.err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
