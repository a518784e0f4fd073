"""Stable training: schedule, weight averaging, time budget and resuming the schedule."""

from __future__ import annotations

import pytest
import torch

import volseg
from volseg import model as vmodel
from volseg import synth
from volseg.training import optim, settings
from volseg.training.state import state_path

from .conftest import tiny_training

SMALL = tiny_training(val_tiles=8)


@pytest.fixture(scope="module")
def volume():
    return synth.anode((12, 72, 72), seed=7, grain_sigma=4.0)


@pytest.mark.parametrize(
    "value,seconds",
    [("2h", 7200.0), ("90m", 5400.0), ("1h30m", 5400.0), ("3600", 3600.0), (12.5, 12.5)],
)
def test_parse_duration(value, seconds):
    assert settings.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["2 hours", "h", "-5", 0, "1h30", True])
def test_parse_duration_refuses_what_is_not_a_duration(value):
    with pytest.raises(ValueError, match="max_time="):
        settings.parse_duration(value)


def test_warmup_cosine_rises_then_decays_to_the_floor():
    factors = [optim.warmup_cosine(s, 100, 10, 0.01) for s in range(120)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:100], factors[11:100]))
    assert factors[100] == pytest.approx(0.01) and factors[119] == pytest.approx(0.01)


def test_weight_ema_averages_weights_and_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = optim.WeightEMA(net, decay=0.9)
    reference = {k: v.clone() for k, v in ema.module.state_dict().items()}
    net.train()
    for _ in range(3):
        net(torch.randn(2, 1, 8, 8) * 5 + 3)  # moves BatchNorm's running statistics
        with torch.no_grad():
            net[0].weight.add_(1.0)
        decay = min(0.9, (1 + ema.updates) / (10 + ema.updates))
        current = {k: v.clone() for k, v in net.state_dict().items()}
        ema.update(net)
        for name, value in reference.items():
            if value.dtype.is_floating_point:
                reference[name] = decay * value + (1 - decay) * current[name]
            else:
                reference[name] = current[name]
    for name, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, reference[name])
    assert int(ema.module[1].num_batches_tracked) == 3
    with pytest.raises(ValueError, match="ema_decay"):
        optim.WeightEMA(net, decay=1.0)


def test_checkpoint_holds_the_averaged_weights_and_the_settings(volume, tmp_path):
    image, labels = volume
    out = tmp_path / "m.pt"
    volseg.train(image, labels, out, epochs=2, steps_per_epoch=2, **SMALL)
    loaded = vmodel.load_checkpoint(out)
    record = loaded.training
    assert record["optimiser"] == {"name": "AdamW", "lr": 1e-3, "weight_decay": 1e-4}
    assert record["schedule"]["name"] == "warmup+cosine"
    assert record["schedule"]["total_steps"] == 4
    assert record["grad_clip"] == 1.0 and record["ema_decay"] == 0.999
    assert record["batchnorm"] == "frozen after warm-up"  # 4 crops per batch
    assert record["stopped"] == "epochs" and record["steps"] == 4
    state = torch.load(state_path(out), weights_only=True)
    assert state["finished"] and state["schedule"]["step"] == 4
    if record["best_epoch"] == 2:  # the saved weights are the average, not the live ones
        for key, value in loaded.network.state_dict().items():
            torch.testing.assert_close(value, state["ema"]["weights"][key])
        live = state["network"]
        assert any(
            not torch.equal(value, live[key])
            for key, value in loaded.network.state_dict().items()
            if value.dtype.is_floating_point
        )
    # the lr of the last step is the end of the cosine
    last_lr = record["history"][-1]["lr"]
    assert last_lr == pytest.approx(1e-3 * optim.warmup_cosine(3, 4, 0))


def test_max_time_stops_with_a_checkpoint_and_resume_continues_the_schedule(volume, tmp_path):
    image, labels = volume
    out = tmp_path / "m.pt"
    # A budget shorter than one step: one step is taken, validated and saved.
    first = volseg.train(image, labels, out, epochs=3, steps_per_epoch=2, max_time=1e-6, **SMALL)
    assert len(first.history) == 1 and out.is_file()
    record = vmodel.load_checkpoint(out).training
    assert record["stopped"] == "max_time" and record["steps"] == 1
    state = torch.load(state_path(out), weights_only=True)
    assert not state["finished"] and state["schedule"]["step"] == 1

    resumed = volseg.train(image, labels, out, epochs=50, resume_from=out, **SMALL)
    record = vmodel.load_checkpoint(out).training
    # 5 steps were left of the 6 planned: 3 more epochs (2 + 2 + 1 steps), then the end.
    assert len(resumed.history) == 4 and record["steps"] == 6
    assert record["stopped"] == "epochs"
    assert resumed.history["lr"].iloc[-1] == pytest.approx(1e-3 * optim.warmup_cosine(5, 6, 0))
    state = torch.load(state_path(out), weights_only=True)
    assert state["finished"] and state["schedule"]["step"] == 6
    steps = {int(s["step"]) for s in state["optimiser"]["state"].values()}
    assert steps == {6}  # AdamW's moments were carried over, not restarted

    # A finished schedule is not continued: a new one of `epochs` epochs starts.
    again = volseg.train(
        image, labels, tmp_path / "again.pt", epochs=1, steps_per_epoch=2, resume_from=out, **SMALL
    )
    assert len(again.history) == 5
    assert vmodel.load_checkpoint(tmp_path / "again.pt").training["steps"] == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"max_time": "soon"}, "max_time='soon'"),
        ({"ema_decay": 1.5}, "ema_decay=1.5"),
        ({"grad_clip": 0}, "grad_clip=0"),
        ({"warmup": 1.0}, "warmup=1.0"),
        ({"weight_decay": -1}, "weight_decay=-1"),
    ],
)
def test_bad_stability_arguments(volume, tmp_path, kwargs, match):
    image, labels = volume
    with pytest.raises(ValueError, match=match):
        volseg.train(image, labels, tmp_path / "m.pt", epochs=1, **{**SMALL, **kwargs})


def test_cli_train_max_time_and_no_ema(volume, tmp_path, capsys):
    from volseg.cli import main

    image, labels = volume
    group = tmp_path / "t.zarr"
    synth.write_anode(group, (12, 72, 72), seed=7, chunks=(6, 72, 72), grain_sigma=4.0)
    out = tmp_path / "cli.pt"
    args = ["train", str(group), "--out", str(out), "--encoder", "resnet18"]
    args += ["--encoder-depth", "3", "--decoder-channels", "32", "16", "8", "--tile", "64"]
    args += ["--batch-size", "4", "--epochs", "2", "--steps-per-epoch", "1", "--device", "cpu"]
    assert main([*args, "--no-progress", "--max-time", "90m", "--no-ema"]) == 0
    record = vmodel.load_checkpoint(out).training
    assert record["max_time"] == 5400.0 and record["ema_decay"] is None
    assert main([*args, "--overwrite", "--max-time", "ninety"]) == 2
    assert "max_time='ninety'" in capsys.readouterr().err
