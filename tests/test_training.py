"""volseg.train: split, history, checkpoint, augmentation, freezing, resume, errors; demo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

import volseg
from volseg import io as vio
from volseg import model as vmodel
from volseg import synth
from volseg.conventions import history_paths
from volseg.training import data
from volseg.training.augment import augment
from volseg.training.losses import loss_fn

from .conftest import tiny_training

SMALL = tiny_training(epochs=2, steps_per_epoch=2, val_tiles=8)


@pytest.fixture(scope="module")
def train_zarr(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "train.zarr"
    synth.write_anode(path, (12, 80, 80), seed=7, chunks=(4, 40, 40), grain_sigma=4.0)
    return path


def test_train_writes_checkpoint_history_and_plot(train_zarr, tmp_path):
    out = tmp_path / "m.pt"
    result = volseg.train(str(train_zarr / "image"), str(train_zarr / "labels"), out, **SMALL)
    assert result.path == out and out.is_file()
    csv, png = history_paths(out)
    history = pd.read_csv(csv)
    assert list(history.columns) == [
        "epoch",
        "loss",
        "val_loss",
        "val_ni_iou",
        "val_dice",
        "lr",
        "seconds",
    ]
    assert len(history) == 2 and png.stat().st_size > 1000
    loaded = vmodel.load_checkpoint(out)
    record = loaded.training
    assert record["ni_label"] == 2  # read from the labels' attrs
    split = record["split"][0]
    assert split["train_z"][1] + 2 <= split["val_z"][0]  # separate slabs, with a gap
    assert split["val_z"][1] == 12
    assert len(record["history"]) == 2 and record["best_epoch"] == result.best_epoch
    assert 0 <= record["val"]["val_ni_iou"] <= 1
    image = zarr.open(str(train_zarr / "image"), mode="r")[: split["train_z"][1]]
    norm = loaded.config["normalisation"]
    assert norm["percentiles"] == [0.5, 99.5]
    assert np.percentile(image, 0.5) * 0.9 < norm["low"] < norm["high"] < image.max()
    seg = volseg.segment(
        str(train_zarr / "image"),
        model=out,
        out=tmp_path / "o.zarr",
        device="cpu",
        progress=False,
        tile=64,
    )
    assert seg.mask.shape == (12, 80, 80)


def test_training_reads_crops_lazily_from_zarr(train_zarr, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE_BYTES", 0)
    reads = []
    original = vio.read_region
    monkeypatch.setattr(
        vio, "read_region", lambda a, r, **kw: reads.append(r) or original(a, r, **kw)
    )
    volseg.train(
        str(train_zarr / "image"),
        str(train_zarr / "labels"),
        tmp_path / "m.pt",
        **{**SMALL, "epochs": 1},
    )
    assert reads and all(isinstance(r[0], int) for r in reads)  # single-slice crops


def test_augmentation_keeps_masks_binary_and_aligned():
    rng = np.random.default_rng(0)
    target = (rng.random((64, 64)) > 0.5).astype(np.float32)
    for _ in range(20):
        image, augmented = augment(target.copy(), target.copy(), rng)
        assert set(np.unique(augmented)) <= {0.0, 1.0}
        # The image went through the same flip/rotation: its brighter pixels are the mask.
        np.testing.assert_array_equal(image > image.mean(), augmented > 0.5)


def test_freeze_encoder_and_resume(train_zarr, tmp_path):
    first = tmp_path / "a.pt"
    volseg.train(str(train_zarr / "image"), str(train_zarr / "labels"), first, **SMALL)
    before = vmodel.load_checkpoint(first)
    second = tmp_path / "b.pt"
    result = volseg.train(
        str(train_zarr / "image"),
        str(train_zarr / "labels"),
        second,
        freeze_encoder=True,
        resume_from=first,
        seed=3,
        **{**SMALL, "epochs": 2, "patience": 5},
    )
    after = vmodel.load_checkpoint(second)
    assert len(result.history) == 4  # two more epochs after the two resumed ones
    for key, value in before.network.encoder.state_dict().items():
        torch.testing.assert_close(after.network.encoder.state_dict()[key], value)


def test_several_volumes_and_pairs(tmp_path):
    images, labels = [], []
    for seed in (1, 2):
        image, label = synth.anode((6, 64, 64), seed=seed, grain_sigma=4.0)
        images.append(image)
        labels.append(label)
    result = volseg.train(images, labels, tmp_path / "m.pt", ni_label=2, val_fraction=0.34, **SMALL)
    assert len(vmodel.load_checkpoint(result.path).training["split"]) == 2


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"loss": "focal"}, ValueError, "loss='focal'"),
        ({"tile": 48}, ValueError, "multiple of 32"),
        ({"val_fraction": 0.0}, ValueError, "val_fraction"),
        ({"epochs": 0}, ValueError, "epochs=0"),
        ({"encoder_weights": "missing.pth"}, FileNotFoundError, "encoder weights file"),
    ],
)
def test_bad_training_arguments(train_zarr, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        volseg.train(
            str(train_zarr / "image"),
            str(train_zarr / "labels"),
            tmp_path / "m.pt",
            **{**SMALL, **kwargs},
        )


def test_training_data_errors(train_zarr, tmp_path):
    image, labels = synth.anode((3, 64, 64), seed=1, grain_sigma=4.0)
    with pytest.raises(ValueError, match="have shape .* but image"):
        volseg.train(image, labels[:, :32], tmp_path / "m.pt", **SMALL)
    with pytest.raises(ValueError, match="too few to hold out"):
        volseg.train(image[:1], labels[:1], tmp_path / "m.pt", **SMALL)
    with pytest.raises(ValueError, match="one label volume per image volume"):
        volseg.train([image, image], [labels], tmp_path / "m.pt", **SMALL)
    (tmp_path / "exists.pt").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        volseg.train(image, labels, tmp_path / "exists.pt", **SMALL)


def test_cli_train_on_a_synth_group(train_zarr, tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "cli.pt"
    code = main(
        [
            "train",
            str(train_zarr),
            "--out",
            str(out),
            "--encoder",
            "resnet18",
            "--encoder-depth",
            "3",
            "--decoder-channels",
            "32",
            "16",
            "8",
            "--tile",
            "64",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0 and out.is_file()
    assert "validation Ni IoU" in capsys.readouterr().out
    assert main(["train", "a", "b", "c", "--out", str(out)]) == 2
    assert "IMAGE LABELS pairs" in capsys.readouterr().err


def test_quick_demo_writes_every_output(tmp_path):
    from volseg.demo import run_demo

    figures = run_demo(
        tmp_path / "demo",
        progress=False,
        device="cpu",
        epochs=1,
        steps_per_epoch=2,
        train_shape=(8, 128, 128),
        test_shape=(4, 128, 128),
        batch_size=4,
    )
    for path in figures["paths"].values():
        assert (tmp_path / "demo").joinpath(path.split("/demo/")[-1]).exists()
    assert 0 <= figures["ni_iou"] <= 1 and 0 <= figures["otsu_ni_iou"] <= 1
    assert (tmp_path / "demo" / "demo.json").is_file()


@pytest.mark.slow
def test_demo_beats_otsu_on_held_out_scan(tmp_path):
    from volseg.demo import run_demo

    figures = run_demo(tmp_path / "demo", progress=False, device="cpu")
    assert figures["ni_iou"] >= 0.90
    assert figures["ni_iou"] > figures["otsu_ni_iou"]


def test_ignore_label_leaves_unlabelled_voxels_out_of_loss_and_scores(tmp_path):
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    partial = target.clone()
    partial[..., 4:] = -1.0  # unlabelled half
    for kind in ("bce", "dice", "bce+dice"):
        loss = loss_fn(kind)
        labelled_only = loss(logits[..., :4], target[..., :4])
        assert float(loss(logits, partial)) == pytest.approx(float(labelled_only), rel=1e-5)
        # Without unlabelled pixels the loss is the plain one.
        assert float(loss(logits, target)) != pytest.approx(float(labelled_only))

    rng = np.random.default_rng(0)
    labels = (rng.random((8, 32, 32)) < 0.4).astype(np.uint8)
    image = labels * 1000.0 + rng.normal(0, 100, labels.shape)
    labels[:, :, 24:] = 255  # a stripe nobody labelled
    settings = {
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [8, 8, 8],
        "tile": 32,
        "batch_size": 2,
        "epochs": 1,
        "steps_per_epoch": 1,
        "device": "cpu",
        "progress": False,
    }
    result = volseg.train(image, labels, tmp_path / "m.pt", ignore_label=255, **settings)
    assert vmodel.load_checkpoint(result.path).training["ignore_label"] == 255
    with pytest.raises(ValueError, match="need a value of their own"):
        volseg.train(image, labels, tmp_path / "x.pt", ignore_label=1, **settings)


def test_settings_object_validates_records_and_loads_no_torch(train_zarr, tmp_path):
    import subprocess
    import sys

    from volseg.training.settings import TrainSettings

    with pytest.raises(ValueError, match="tile=100 must be a multiple of 32"):
        TrainSettings(tile=100)
    settings = TrainSettings(**{**SMALL, "max_time": "2h", "lr": 0.01})
    record = settings.to_record(["a"], [{}], {})
    assert record["max_time"] == 7200.0 and record["optimiser"]["lr"] == 0.01
    back = TrainSettings.from_record(record)
    assert (back.lr, back.batch_size, back.max_time) == (0.01, settings.batch_size, 7200.0)
    with pytest.raises(ValueError, match="not both"):
        volseg.train(np.zeros((4, 32, 32)), np.zeros((4, 32, 32)), tmp_path / "m.pt",
                     epochs=3, settings=settings)  # fmt: skip
    small = TrainSettings(**{**SMALL, "epochs": 1, "steps_per_epoch": 1})
    images, labels = str(train_zarr / "image"), str(train_zarr / "labels")
    result = volseg.train(images, labels, tmp_path / "s.pt", settings=small)
    assert len(result.history) == 1 and result.config["tile"] == small.tile
    code = "import sys, volseg.training.settings; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr


@pytest.mark.parametrize("shape", [(2, 40, 50), (1, 20, 20), (1, 7, 33)])
def test_crops_are_the_reflect_padded_plane(shape):
    from volseg.training.crops import read_crop

    volume = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    tile, pad = 32, 40
    padded = np.pad(volume, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    for z in range(shape[0]):
        for y0 in (-9, 0, 3, shape[1] - tile, shape[1] - 5):
            for x0 in (-1, 0, 7, shape[2] - tile + 4):
                expected = padded[z, pad + y0 : pad + y0 + tile, pad + x0 : pad + x0 + tile]
                np.testing.assert_array_equal(read_crop(volume, z, y0, x0, tile), expected)
