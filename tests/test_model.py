"""Checkpoints, encoder weights, normalisation, devices, the per-process cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volseg import model as vmodel

from .conftest import small_config


def test_checkpoint_round_trip_predicts_the_same(tmp_path):
    torch.manual_seed(1)
    config = small_config()
    network = vmodel.build_unet(config)
    path = vmodel.save_checkpoint(network, config, tmp_path / "m.pt", training={"epochs": 3})
    loaded = vmodel.load_checkpoint(path)
    assert loaded.config == config
    assert loaded.training == {"epochs": 3}
    assert loaded.sha256 == vmodel.file_sha256(path)
    batch = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(network(torch.from_numpy(batch)[:, None]))[:, 0].numpy()
    np.testing.assert_allclose(vmodel.TilePredictor(loaded)(batch), expected, atol=1e-6)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "volseg.unet/1"
    assert set(payload) == {"format", "config", "state_dict", "training"}


def test_save_does_not_overwrite_without_flag(tmp_path):
    config = small_config()
    network = vmodel.build_unet(config)
    path = vmodel.save_checkpoint(network, config, tmp_path / "m.pt")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        vmodel.save_checkpoint(network, config, path)
    vmodel.save_checkpoint(network, config, path, overwrite=True)


def test_local_encoder_weights_file_is_loaded_and_rgb_conv_summed(tmp_path):
    config = small_config()
    torch.manual_seed(2)
    rgb = vmodel.build_unet({**config, "in_channels": 3}).encoder.state_dict()
    rgb["fc.weight"] = torch.zeros(10, 512)  # classifier weights in the file are ignored
    weights = tmp_path / "encoder.pth"
    torch.save(rgb, weights)
    network = vmodel.build_unet(config, encoder_weights=weights)
    got = network.encoder.state_dict()
    torch.testing.assert_close(got["conv1.weight"], rgb["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(got["layer1.0.conv1.weight"], rgb["layer1.0.conv1.weight"])


def test_missing_or_unfitting_encoder_weights(tmp_path):
    config = small_config()
    with pytest.raises(FileNotFoundError, match="encoder weights file .* does not exist"):
        vmodel.build_unet(config, encoder_weights=tmp_path / "none.pth")
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit encoder"):
        vmodel.build_unet(config, encoder_weights=tmp_path / "bad.pth")


def test_unknown_encoder_and_config_key():
    with pytest.raises(ValueError, match="encoder 'vgg99' is not a segmentation-models-pytorch"):
        vmodel.build_unet(small_config(encoder="vgg99"))
    with pytest.raises(ValueError, match="unknown model config key"):
        vmodel.default_config(encodr="vgg16")
    with pytest.raises(ValueError, match="low < high"):
        vmodel.default_config(normalisation={"low": 5, "high": 5})


def test_default_is_vgg16_with_25m_parameters():
    config = vmodel.default_config()
    assert config["encoder"] == "vgg16" and config["tile"] == 128
    network = vmodel.build_unet(config)
    assert 23e6 < sum(p.numel() for p in network.parameters()) < 26e6


def test_normalisation_is_fixed_and_clipped():
    norm = vmodel.fit_normalisation(np.arange(10001), percentiles=(0.5, 99.5))
    assert norm["low"] == pytest.approx(50) and norm["high"] == pytest.approx(9950)
    out = vmodel.normalise(np.array([0, 50, 5000, 9950, 20000]), norm)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, (5000 - 50) / 9900, 1, 1], rtol=1e-6)


def test_device_choice():
    assert vmodel.resolve_device("cpu").type == "cpu"
    assert vmodel.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not understood"):
        vmodel.resolve_device("gpu-please")


def test_model_cache_loads_once_per_process(checkpoint):
    sha = vmodel.file_sha256(checkpoint)
    first = vmodel.cached_model(checkpoint, sha, "cpu")
    assert vmodel.cached_model(checkpoint, sha, "cpu") is first


def test_model_cache_detects_changed_file(tmp_path):
    config = small_config()
    path = vmodel.save_checkpoint(vmodel.build_unet(config), config, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="changed during the run"):
        vmodel.cached_model(path, "0" * 64, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_half_precision_on_gpu_is_close_to_full(checkpoint):
    batch = np.random.default_rng(0).random((8, 64, 64), dtype=np.float32)
    cpu = vmodel.TilePredictor(vmodel.load_checkpoint(checkpoint, "cpu"))(batch)
    gpu = vmodel.TilePredictor(vmodel.load_checkpoint(checkpoint, "cuda"))(batch)
    np.testing.assert_allclose(gpu, cpu, atol=5e-3)


def test_light_model_modules_load_without_torch():
    """The configuration, normalisation and the precision/backend choices need no torch."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import volseg.model.config, volseg.model.normalisation, volseg.model.device\n"
        "import volseg.model.precision, volseg.model.backend\n"
        "from volseg.model import default_config, PRECISIONS, BACKENDS\n"
        "default_config(encoder_depth=3, decoder_channels=[32, 16, 8])\n"
        "print(sorted({'torch', 'segmentation_models_pytorch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_source_for_the_network_defaults():
    config = vmodel.default_config()
    assert config["decoder_channels"] == vmodel.default_decoder_channels(config["encoder_depth"])
    assert vmodel.default_decoder_channels(3) == [256, 128, 64]
    assert config["labels"] == vmodel.BINARY_LABELS
    assert config["labels"] is not vmodel.BINARY_LABELS
