"""Shared fixtures: a small random-weight U-Net checkpoint and small synthetic scans."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from volseg import model as vmodel
from volseg import synth

# Tests must not oversubscribe the 2-core machine they run on.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def small_config(**overrides):
    """A light U-Net (resnet18 encoder, 3 levels) normalised to the synth grey range."""
    settings = {
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [32, 16, 8],
        "tile": 64,
        "normalisation": {"method": "fixed", "low": 15000.0, "high": 50000.0},
        "labels": {"ni_label": 2, "names": {"0": "background", "1": "Ni"}},
    }
    settings.update(overrides)
    return vmodel.default_config(**settings)


def tiny_training(**overrides):
    """``train`` settings for a light U-Net trained for a few steps on the CPU."""
    settings = {
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [32, 16, 8],
        "tile": 64,
        "batch_size": 4,
        "device": "cpu",
        "progress": False,
    }
    settings.update(overrides)
    return settings


def _random_checkpoint(path, config):
    """A random-weight checkpoint (deterministic: seeded)."""
    torch.manual_seed(0)
    network = vmodel.build_unet(config)
    # Random BatchNorm statistics so that the network is not trivially smooth.
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        # Centre the logits on synthetic data so the mask holds both classes.
        image, _ = synth.anode((2, 64, 64), seed=11, grain_sigma=4.0)
        sample = torch.from_numpy(vmodel.normalise(image, config["normalisation"]))[:, None]
        logits = network.eval()(sample)
        # Each class wins somewhere: centre every class's logits on its median.
        network.segmentation_head[0].bias -= logits.transpose(0, 1).flatten(1).median(dim=1)[0]
    return vmodel.save_checkpoint(network, config, path)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A random-weight binary checkpoint."""
    return _random_checkpoint(tmp_path_factory.mktemp("model") / "unet.pt", small_config())


@pytest.fixture(scope="session")
def checkpoint3(tmp_path_factory):
    """A random-weight three-phase (pore, YSZ, Ni) checkpoint."""
    config = small_config(classes=3, labels={"phases": dict(synth.PHASES)})
    return _random_checkpoint(tmp_path_factory.mktemp("model3") / "unet3.pt", config)


@pytest.fixture(scope="session")
def anode_arrays():
    """(image, labels) of a small synthetic anode: shape not divisible by anything."""
    return synth.anode((5, 90, 110), seed=3, grain_sigma=4.0)


@pytest.fixture()
def scan_zarr(tmp_path, anode_arrays):
    """The small anode written as a Zarr v3 group with arrays image and labels."""
    image, labels = anode_arrays
    path = tmp_path / "scan.zarr"
    synth_attrs = {"labels": {"phases": synth.PHASES}}
    from volseg import io as vio

    vio.write_arrays(
        path, {"image": image, "labels": labels}, chunks=(2, 48, 48), array_attrs=synth_attrs
    )
    return path


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
