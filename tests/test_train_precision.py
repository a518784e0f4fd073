"""train(precision=...): bf16 autocast trains to the same validation figures within noise."""

from __future__ import annotations

import pytest
import torch

import volseg
from volseg import model as vmodel
from volseg import synth

from .conftest import tiny_training

SMALL = tiny_training(batch_size=8, epochs=6, steps_per_epoch=8, val_tiles=32, patience=6)


@pytest.fixture(scope="module")
def train_zarr(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "train.zarr"
    synth.write_anode(path, (16, 96, 96), seed=7, chunks=(4, 48, 48), grain_sigma=4.0)
    return path


def test_bf16_training_reaches_the_fp32_validation_figures(train_zarr, tmp_path):
    scores = {}
    for precision in ("fp32", "bf16"):
        result = volseg.train(
            str(train_zarr / "image"),
            str(train_zarr / "labels"),
            tmp_path / f"{precision}.pt",
            precision=precision,
            **SMALL,
        )
        loaded = vmodel.load_checkpoint(result.path)
        assert loaded.training["precision"] == precision
        # Weights stay float32 whatever the autocast dtype.
        assert all(p.dtype.is_floating_point for p in loaded.network.parameters())
        assert next(loaded.network.parameters()).dtype == torch.float32
        scores[precision] = result.best_val_ni_iou
    print(scores)
    assert scores["fp32"] > 0.6  # it learnt something
    assert abs(scores["bf16"] - scores["fp32"]) < 0.05


def test_unknown_training_precision_is_refused(train_zarr, tmp_path):
    with pytest.raises(ValueError, match="precision='half' is not known"):
        volseg.train(
            str(train_zarr / "image"),
            str(train_zarr / "labels"),
            tmp_path / "m.pt",
            precision="half",
            **SMALL,
        )
