"""Pieces the benchmark scripts share (imported as ``_common`` from ``benchmarks/``)."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

import volseg
from volseg import synth
from volseg.demo import DEMO_SETTINGS

log = logging.getLogger("benchmarks")

# DEMO_SETTINGS keys that are arguments of volseg.train.
TRAIN_KEYS = (
    "encoder",
    "encoder_depth",
    "decoder_channels",
    "tile",
    "batch_size",
    "epochs",
    "steps_per_epoch",
    "patience",
    "lr",
)


def demo_model(workdir: Path, device: str, classes: int = 1) -> Path:
    """The demo's small U-Net (as a plain 2D model) trained on a synthetic scan; reused if there."""
    path = workdir / f"trained-{classes}class.pt"
    if path.exists():
        log.info("reusing %s", path)
        return path
    log.info("training a %d-class model", classes)
    synth.write_anode(
        workdir / "train.zarr",
        DEMO_SETTINGS["train_shape"],
        seed=DEMO_SETTINGS["train_seed"],
        overwrite=True,
    )
    volseg.train(
        str(workdir / "train.zarr/image"),
        str(workdir / "train.zarr/labels"),
        path,
        **{key: DEMO_SETTINGS[key] for key in TRAIN_KEYS},
        classes=classes,
        context=0,  # a plain 2D model, as the recorded figures and the peers' 1-channel input
        device=device,
        progress=False,
    )
    return path


def machine(cuda: bool) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }
