"""Sparse labels: train on a few labelled slices, validate on labelled slices only."""

from __future__ import annotations

import numpy as np
import pytest

import volseg
from volseg import model as vmodel
from volseg import synth
from volseg.training.crops import Crops

from .conftest import tiny_training

SMALL = tiny_training(epochs=1, steps_per_epoch=3, val_tiles=64)


@pytest.fixture(scope="module")
def volume():
    return synth.anode((16, 64, 64), seed=5, grain_sigma=4.0)


def spy_on_crops(monkeypatch):
    """Record every (z) the training crops and validation tiles read."""
    seen = {"train": [], "val": []}
    original_position = Crops.random_position
    original_validation = Crops.validation_tiles

    def random_position(self, rng):
        position = original_position(self, rng)
        seen["train"].append(position[1])
        return position

    def validation_tiles(self, max_tiles, rng):
        seen["val"].extend(z for pair in self.pairs for z in pair.validation_planes())
        return original_validation(self, max_tiles, rng)

    monkeypatch.setattr(Crops, "random_position", random_position)
    monkeypatch.setattr(Crops, "validation_tiles", validation_tiles)
    return seen


def test_labelled_slices_are_the_only_ones_read(volume, tmp_path, monkeypatch):
    image, labels = volume
    seen = spy_on_crops(monkeypatch)
    result = volseg.train(image, labels, tmp_path / "m.pt", labelled_slices=[1, 6, 9, 14], **SMALL)
    assert set(seen["train"]) <= {1, 6, 9} and len(seen["train"]) > 10
    assert set(seen["val"]) == {14}
    split = vmodel.load_checkpoint(result.path).training["split"][0]
    assert split == {"train_slices": [1, 6, 9], "val_slices": [14]}


def test_unlabelled_slices_marked_by_ignore_label_are_found(volume, tmp_path, monkeypatch):
    image, labels = volume
    sparse = np.full_like(labels, 255)
    for z in (2, 7, 12):
        sparse[z] = labels[z]
    sparse[7, :10] = 255  # a partly labelled slice is a labelled slice
    seen = spy_on_crops(monkeypatch)
    result = volseg.train(image, sparse, tmp_path / "m.pt", ignore_label=255, **SMALL)
    assert set(seen["train"]) <= {2, 7} and set(seen["val"]) == {12}
    record = vmodel.load_checkpoint(result.path).training
    assert record["split"][0] == {"train_slices": [2, 7], "val_slices": [12]}


def test_one_labelled_slice_trains_and_validates_on_it(volume, tmp_path, monkeypatch):
    image, labels = volume
    seen = spy_on_crops(monkeypatch)
    volseg.train(image, labels, tmp_path / "m.pt", labelled_slices=[5], **SMALL)
    assert set(seen["train"]) == {5} and set(seen["val"]) == {5}


def test_two_labelled_slices_both_train(volume, tmp_path, monkeypatch):
    """Holding one of two labelled slices out would leave one to learn from."""
    image, labels = volume
    seen = spy_on_crops(monkeypatch)
    result = volseg.train(image, labels, tmp_path / "m.pt", labelled_slices=[3, 11], **SMALL)
    assert set(seen["train"]) == {3, 11} and set(seen["val"]) == {3, 11}
    record = vmodel.load_checkpoint(result.path).training
    assert record["split"][0] == {"train_slices": [3, 11], "val_slices": [3, 11]}


def test_fully_labelled_volume_with_ignore_label_keeps_the_slab_split(volume, tmp_path):
    image, labels = volume
    result = volseg.train(image, labels, tmp_path / "m.pt", ignore_label=255, **SMALL)
    assert "train_z" in vmodel.load_checkpoint(result.path).training["split"][0]


@pytest.mark.parametrize(
    "slices,match",
    [
        ([3, 40], r"labelled_slices \[40\] lie outside"),
        (["a"], "must be slice indices"),
        ([[1, 2], [3]], "2 lists for 1 volume"),
    ],
)
def test_bad_labelled_slices(volume, tmp_path, slices, match):
    image, labels = volume
    with pytest.raises(ValueError, match=match):
        volseg.train(image, labels, tmp_path / "m.pt", labelled_slices=slices, **SMALL)


def test_cli_labelled_slices(tmp_path, capsys):
    from volseg.cli import main

    group = tmp_path / "t.zarr"
    synth.write_anode(group, (12, 64, 64), seed=1, chunks=(6, 64, 64), grain_sigma=4.0)
    out = tmp_path / "cli.pt"
    args = ["train", str(group), "--out", str(out), "--encoder", "resnet18"]
    args += ["--encoder-depth", "3", "--decoder-channels", "32", "16", "8", "--tile", "64"]
    args += ["--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu"]
    assert main([*args, "--no-progress", "--labelled-slices", "0", "4-5,9"]) == 0
    split = vmodel.load_checkpoint(out).training["split"][0]
    assert split == {"train_slices": [0, 4, 5], "val_slices": [9]}
    # the whole image volume is given: the 2.5D default sees the real neighbours
    printed = capsys.readouterr().out
    assert "input: each slice with 1 neighbouring slice(s) per side (context=1" in printed
    assert (
        main(
            [
                *args,
                "--no-progress",
                "--overwrite",
                "--context",
                "0",
                "--labelled-slices",
                "0",
                "4-5,9",
            ]
        )
        == 0
    )
    assert "input: single slices (context=0)" in capsys.readouterr().out
    assert main([*args, "--overwrite", "--labelled-slices", "x-3"]) == 2
    assert "--labelled-slices 'x-3'" in capsys.readouterr().err
