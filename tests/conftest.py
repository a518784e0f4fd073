"""Shared fixtures: a small random-weight U-Net checkpoint and small synthetic scans."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from volseg import io as vio
from volseg import model as vmodel
from volseg import synth, tiling

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


def _random_checkpoint(path, config, centre_logits=True):
    """A random-weight checkpoint (deterministic: seeded).

    ``centre_logits``: shift the head's bias so that a 1-channel network's classes each
    win somewhere on synthetic data (networks with context channels are left as built).
    """
    torch.manual_seed(0)
    network = vmodel.build_unet(config)
    # Random BatchNorm statistics so that the network is not trivially smooth.
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        if not centre_logits or int(config.get("in_channels", 1)) > 1:
            return vmodel.save_checkpoint(network, config, path)
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


def torch_probability(loaded):
    """The checkpoint's network on a batch ``(N, C, t, t)``: Ni probability ``(N, t, t)``."""

    def predict(batch):
        with torch.no_grad():
            return torch.sigmoid(loaded.network(torch.from_numpy(batch)))[:, 0].numpy()

    return predict


def whole_plane_reference(volume, predict, tile=64, overlap=0.25, context=0):
    """Tiles of whole planes (axis 0 = plane axis), mirrored by ``np.pad``, on the global
    grid, blended: what volseg must reproduce for any chunking.

    ``volume`` is normalised already; each tile goes to ``predict`` with its ``context``
    neighbouring planes per side as channels (mirrored at the first and last plane).
    """
    grid = tiling.plane_grid(volume.shape[1:], tile, overlap)
    weights = tiling.blend_window(tile).astype(np.float64)
    pad = 2 * tile
    padded = np.pad(volume, ((context, context), (pad, pad), (pad, pad)), mode="reflect")
    depth = volume.shape[0]
    stack = np.stack([padded[z : z + 2 * context + 1] for z in range(depth)])
    acc = np.zeros((depth, *padded.shape[1:]))
    wsum = np.zeros(padded.shape[1:])
    for ky in range(grid.y.count):
        for kx in range(grid.x.count):
            oy, ox = grid.y.origin(ky) + pad, grid.x.origin(kx) + pad
            prob = predict(np.ascontiguousarray(stack[:, :, oy : oy + tile, ox : ox + tile]))
            acc[:, oy : oy + tile, ox : ox + tile] += weights * prob
            wsum[oy : oy + tile, ox : ox + tile] += weights
    inner = (slice(None), slice(pad, pad + volume.shape[1]), slice(pad, pad + volume.shape[2]))
    return acc[inner] / wsum[inner[1:]]


def layout1(out):
    """Rewrite an output in layout 1 (volseg 0.1: one ``stats/<field>`` array per field)."""
    output = vio.open_output(out, mode="r+")
    stats = output.read_stats()
    record = output.attrs
    record.pop("layout")
    group = output.group
    stats_group = group.create_group("stats")
    for name, values in stats.items():
        array = stats_group.create_array(
            name,
            shape=values.shape,
            chunks=(1, 1, 1, *values.shape[3:]),
            dtype=vio.STAT_DTYPES.get(name, "int64"),
            fill_value=0,
        )
        array[...] = values
    del group[vio.RECORDS]
    del group[vio.TABLE]
    group.attrs["volseg"] = record
    reopened = vio.open_output(out, mode="r+")
    assert reopened.legacy
    return reopened
