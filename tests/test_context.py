"""Through-plane context (2.5D): neighbouring slices as input channels, mirrored in z."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import volseg
from volseg import io as vio
from volseg import model as vmodel
from volseg import tiling
from volseg.inference import block as vblock
from volseg.inference.plan import plan_block
from volseg.inference.settings import SegmentSettings

from .conftest import (
    _random_checkpoint,
    small_config,
    tiny_training,
    torch_probability,
    whole_plane_reference,
)

RUN = {
    "tile": 64,
    "overlap": 0.25,
    "device": "cpu",
    "progress": False,
    # the whole-volume reference is fp32 torch
    "precision": "fp32",
    "backend": "torch",
}


@pytest.fixture(scope="module", params=[1, 2])
def context_checkpoint(request, tmp_path_factory):
    k = request.param
    config = small_config(context=k)
    assert config["in_channels"] == 2 * k + 1
    path = tmp_path_factory.mktemp(f"ctx{k}") / "unet.pt"
    return _random_checkpoint(path, config, centre_logits=False), k


def whole_volume_reference(image, loaded, k):
    """The network on whole mirrored planes: np.pad(reflect) in z by k and in-plane."""
    volume = vmodel.normalise(image, loaded.config["normalisation"])
    return whole_plane_reference(volume, torch_probability(loaded), context=k)


def test_context_blocks_match_a_whole_volume_reference_mirrored_in_z(
    anode_arrays, context_checkpoint
):
    path, k = context_checkpoint
    image, _ = anode_arrays  # 5 slices: with k=2 the first and last slices mirror 2 deep
    loaded = vmodel.load_checkpoint(path)
    expected = whole_volume_reference(image, loaded, k)
    for chunks in [(1, 40, 50), (2, 90, 110), (5, 33, 64)]:
        result = volseg.segment(image, model=path, chunks=chunks, save_prob="float32", **RUN)
        np.testing.assert_allclose(result.prob[...], expected, atol=1e-5)
        np.testing.assert_array_equal(result.mask[...], (expected > 0.5).astype(np.uint8))
    # the slices around matter: the same network without its neighbours differs
    flat = np.repeat(vmodel.normalise(image, loaded.config["normalisation"])[:, None], 2 * k + 1, 1)
    with torch.no_grad():
        alone = torch.sigmoid(loaded.network(torch.from_numpy(flat[:, :, :64, :64])))
    assert not np.allclose(alone[:, 0].numpy()[:, 20:40, 20:40], expected[:, 20:40, 20:40])


def test_predictor_receives_each_tile_with_its_neighbouring_slices(anode_arrays):
    """stitch_block hands (N, 2k+1, t, t) batches to the predictor, slice in the middle."""
    image, _ = anode_arrays
    volume = image.astype(np.float32)
    grid = tiling.plane_grid(volume.shape[1:], 64, 0.5)
    plan = tiling.reflected_read_plan(grid, (10, 70), (0, 110))
    seen = []

    def predictor(batch):
        seen.append(batch.shape)
        return batch[:, 0] - batch[:, 2]  # the slice below minus the slice above

    across = tiling.through_plane_index(1, 4, volume.shape[0], 1)
    window = tiling.apply_read_plan(plan, volume[across][:, plan.y_read, plan.x_read])
    out = tiling.stitch_block(window, grid, (10, 70), (0, 110), predictor, context=1)
    assert {shape[1:] for shape in seen} == {(3, 64, 64)}
    np.testing.assert_allclose(out, volume[0:3, 10:70] - volume[2:5, 10:70], atol=1e-2)


def test_zyx_with_context_does_not_depend_on_chunks(anode_arrays, tmp_path):
    image, _ = anode_arrays
    config = small_config(context=1)
    path = _random_checkpoint(tmp_path / "ctx.pt", config, centre_logits=False)
    results = [
        volseg.segment(image, model=path, chunks=chunks, axes="zyx", save_prob="float32", **RUN)
        for chunks in [(5, 90, 110), (2, 40, 64)]
    ]
    np.testing.assert_allclose(results[0].prob[...], results[1].prob[...], atol=1e-5)


def test_interrupted_context_run_resumes_to_the_same_result(scan_zarr, tmp_path, monkeypatch):
    path = _random_checkpoint(tmp_path / "ctx.pt", small_config(context=1), centre_logits=False)
    image = scan_zarr / "image"
    reference = volseg.segment(
        image, model=path, out=tmp_path / "ref.zarr", chunks=(2, 40, 40), **RUN
    )
    original = vblock.segment_block

    def crash_on_some_chunks(block, *args):
        index = block.index
        if index[0] == 1:
            raise RuntimeError("simulated node failure")
        return original(block, *args)

    monkeypatch.setattr(vblock, "segment_block", crash_on_some_chunks)
    out = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError, match="simulated node failure"):
        volseg.segment(image, model=path, out=out, chunks=(2, 40, 40), **RUN)
    done = vio.open_output(out).read_stats()["done"]
    assert 0 < done.sum() < done.size
    monkeypatch.setattr(vblock, "segment_block", original)
    resumed = volseg.segment(image, model=path, out=out, chunks=(2, 40, 40), resume=True, **RUN)
    assert resumed.summary["chunks_skipped"] == int(done.sum())
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])


def test_each_task_reads_its_block_and_k_more_slices(anode_arrays, tmp_path):
    settings = SegmentSettings(
        shape=(40, 90, 110), tile=64, overlap=0.25, batch_size=4, threshold=0.5, ni_label=1
    )
    inner = plan_block(settings, (1, 0, 0), (slice(10, 20), slice(0, 90), slice(0, 110)), 2)
    assert (inner.read[0].start, inner.read[0].stop) == (8, 22)
    edge = plan_block(settings, (0, 0, 0), (slice(0, 10), slice(0, 90), slice(0, 110)), 2)
    assert (edge.read[0].start, edge.read[0].stop) == (0, 12)  # mirrored: slices 1, 2 reused


def test_config_refuses_channels_that_do_not_fit_the_context():
    with pytest.raises(ValueError, match="does not fit context=1"):
        small_config(context=1, in_channels=2)
    with pytest.raises(ValueError, match="context=-1"):
        small_config(context=-1)
    assert vmodel.model_context({"in_channels": 1}) == 0


def test_training_crops_hold_the_neighbouring_slices_mirrored_at_the_border():
    from volseg.training.augment import augment
    from volseg.training.crops import read_planes

    volume = np.arange(4 * 40 * 50, dtype=np.float32).reshape(4, 40, 50)
    padded = np.pad(volume, ((2, 2), (0, 0), (0, 0)), mode="reflect")
    for z in range(4):
        crop = read_planes(volume, z, 3, 5, 32, 2)
        np.testing.assert_array_equal(crop, padded[z : z + 5, 3:35, 5:37])
    rng = np.random.default_rng(1)
    target = (rng.random((32, 32)) > 0.5).astype(np.float32)
    for _ in range(10):
        stack = np.stack([target * 0, target, target * 2])  # middle slice = the mask
        image, augmented = augment(stack, target.copy(), rng)
        assert image.shape == (3, 32, 32)
        np.testing.assert_array_equal(image[1] > image[1].mean(), augmented > 0.5)
        # the slice order is kept or reversed, never mixed
        assert image[0].max() < image[2].max() or image[2].max() < image[0].max()


def test_train_and_segment_with_context(tmp_path):
    from volseg import synth

    image, labels = synth.anode((10, 64, 64), seed=3, grain_sigma=4.0)
    settings = tiny_training(epochs=1, steps_per_epoch=2, val_tiles=4)
    result = volseg.train(image, labels, tmp_path / "c.pt", context=2, **settings)
    loaded = vmodel.load_checkpoint(result.path)
    assert loaded.config["context"] == 2 and loaded.config["in_channels"] == 5
    out = volseg.segment(image, model=result.path, chunks=(3, 64, 64), truth=labels == 2, **RUN)
    assert 0 <= out.summary["ni_iou"] <= 1
    assert out.group.attrs["volseg"]["model"]["config"]["context"] == 2
    with pytest.raises(ValueError, match="context=-1 must be 'auto' or a whole number"):
        volseg.train(image, labels, tmp_path / "bad.pt", context=-1, **settings)


def test_context_auto_is_one_for_volumes_and_zero_for_2d_images(tmp_path):
    """The default: neighbouring slices where the training images have them."""
    from volseg import synth

    image, labels = synth.anode((8, 64, 64), seed=3, grain_sigma=4.0)
    settings = tiny_training(epochs=1, steps_per_epoch=1, val_tiles=4)
    volume = volseg.train(image, labels, tmp_path / "v.pt", **settings)
    assert vmodel.load_checkpoint(volume.path).config["context"] == 1
    assert vmodel.load_checkpoint(volume.path).config["in_channels"] == 3
    # a one-slice image beside a volume: no neighbours there, so no context for either
    flat = volseg.train(
        [image, image[3:4]],
        [labels, labels[3:4]],
        tmp_path / "f.pt",
        labelled_slices=[[1, 3, 5, 7], [0]],
        **settings,
    )
    assert vmodel.load_checkpoint(flat.path).config["context"] == 0
    # resuming keeps the checkpoint's context; another explicit one is refused
    again = volseg.train(image, labels, tmp_path / "v.pt", resume_from=volume.path, **settings)
    assert vmodel.load_checkpoint(again.path).config["context"] == 1
    with pytest.raises(ValueError, match="context=2 differs from the resumed checkpoint"):
        volseg.train(
            image, labels, tmp_path / "v.pt", resume_from=volume.path, context=2, **settings
        )
    for bad in ("one", 1.5, True, np.array([1]), 17, 10**9):
        with pytest.raises(ValueError, match="must be 'auto' or a whole number"):
            volseg.train(image, labels, tmp_path / "bad.pt", context=bad, **settings)
    assert not (tmp_path / "bad.pt").exists()


def test_blocks_thinner_than_the_stored_chunks_say_how_much_they_decode(tmp_path, caplog):
    import zarr

    path = _random_checkpoint(tmp_path / "c.pt", small_config(context=1))
    stored = zarr.create_array(
        tmp_path / "s.zarr", shape=(8, 64, 64), chunks=(8, 64, 64), dtype="f4"
    )
    stored[...] = np.random.default_rng(0).random((8, 64, 64))
    with caplog.at_level(logging.INFO, logger="volseg"):
        volseg.segment(str(tmp_path / "s.zarr"), model=path, chunks=(1, 64, 64), **RUN)
    assert "blocks of 1 slices in stored chunks 8 deep decode 8.0 slices per slice" in caplog.text
    assert "chunks=(8, ...) would decode 1.00" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="volseg"):
        volseg.segment(
            str(tmp_path / "s.zarr"), model=path, chunks=(8, 64, 64), out=tmp_path / "o.zarr", **RUN
        )
    assert "slices per slice" not in caplog.text


def test_a_context_model_on_a_scan_thinner_than_its_context_warns(tmp_path, caplog):
    path = _random_checkpoint(tmp_path / "c.pt", small_config(context=1))
    scan = np.random.default_rng(0).random((1, 64, 64)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="volseg"):
        result = volseg.segment(scan, model=path, **RUN)
    assert "has 1 slice(s) but the model sees each slice with 1 neighbour(s)" in caplog.text
    assert result.summary["voxels"] == 64 * 64


def test_context_auto_trains_a_2d_model_on_a_stack_of_scattered_slices(tmp_path, caplog):
    """Slices picked from scattered places are no neighbours: 'auto' must not treat them
    as such, and says so; an explicit context is taken as given."""
    from volseg import synth

    pieces = [synth.anode((1, 64, 64), seed=seed, grain_sigma=4.0) for seed in range(8)]
    image = np.concatenate([piece[0] for piece in pieces])
    labels = np.concatenate([piece[1] for piece in pieces])
    settings = tiny_training(epochs=1, steps_per_epoch=1, val_tiles=4, ni_label=2)
    with caplog.at_level(logging.WARNING, logger="volseg"):
        stack = volseg.train(image, labels, tmp_path / "s.pt", **settings)
    assert vmodel.load_checkpoint(stack.path).config["context"] == 0
    assert "neighbouring slices look unrelated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="volseg"):
        given = volseg.train(image, labels, tmp_path / "g.pt", context=1, **settings)
    assert vmodel.load_checkpoint(given.path).config["context"] == 1
    assert "look unrelated" not in caplog.text


def test_the_neighbour_check_looks_inside_the_volume_and_past_odd_voxels():
    from volseg import synth
    from volseg.training.data import neighbours_look_related

    anode, _ = synth.anode((12, 64, 64), seed=1)
    padded = anode.astype(np.float64)
    rng = np.random.default_rng(0)
    padded[:4] = padded[-4:] = rng.normal(1000.0, 50.0, (4, 64, 64))  # noisy air at both ends
    assert neighbours_look_related(padded)[0]
    holes = anode.astype(np.float64)
    holes[:, 10, 10] = np.nan  # a NaN in every slice: the other pixels still decide
    related, score = neighbours_look_related(holes)
    assert related and 0.9 < score < 1.0
    scattered = np.stack([synth.anode((1, 64, 64), seed=s)[0][0] for s in range(12)])
    scattered = scattered.astype(np.float64)
    scattered[:, 10, 10] = np.nan
    assert not neighbours_look_related(scattered)[0]


def test_cli_context_takes_auto_or_a_count():
    from volseg.cli.parser import build_parser

    parser = build_parser()
    base = ["train", "img.zarr", "lab.zarr", "--out", "m.pt"]
    assert parser.parse_args(base).context == "auto"
    assert parser.parse_args([*base, "--context", "2"]).context == 2
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--context", "-1"])


@pytest.mark.parametrize(
    "backend, precision, atol",
    [("openvino", "fp32", 1e-4), ("onnxruntime", "fp32", 1e-4), ("openvino", "bf16", 0.05)],
)
def test_context_on_every_backend_is_chunk_invariant(
    anode_arrays, context_checkpoint, backend, precision, atol
):
    """The exported network takes the 2k+1 channels too: same stitching, any chunking."""
    from volseg.model import backend as vbackend

    if not vbackend.backend_available(backend):
        pytest.skip(f"needs {backend} (volseg[openvino] / volseg[onnx])")
    path, k = context_checkpoint
    image, _ = anode_arrays
    expected = whole_volume_reference(image, vmodel.load_checkpoint(path), k)
    run = {**RUN, "backend": backend, "precision": precision, "save_prob": "float32"}
    first, second = (
        volseg.segment(image, model=path, chunks=chunks, **run)
        for chunks in [(1, 40, 50), (5, 33, 64)]
    )
    np.testing.assert_array_equal(first.prob[...], second.prob[...])
    np.testing.assert_allclose(first.prob[...], expected, atol=atol)


def test_encoder_weights_file_starts_a_context_model_as_the_single_slice_model(tmp_path):
    """A local encoder file (3-channel first convolution) fits a 2.5D model too: the grey
    kernel goes to the centre slice and the neighbours start at zero, so the encoder
    starts out computing exactly what the single-slice model computes."""
    torch.manual_seed(2)
    rgb = vmodel.build_unet(small_config(in_channels=3)).encoder.state_dict()
    weights = tmp_path / "encoder.pth"
    torch.save(rgb, weights)
    grey = rgb["conv1.weight"].sum(1)
    single = vmodel.build_unet(small_config(), encoder_weights=weights).encoder
    rng = np.random.default_rng(0)
    for k in (1, 2):
        encoder = vmodel.build_unet(small_config(context=k), encoder_weights=weights).encoder
        conv1 = encoder.state_dict()["conv1.weight"]
        assert conv1.shape[1] == 2 * k + 1
        torch.testing.assert_close(conv1[:, k], grey)
        assert not conv1[:, :k].any() and not conv1[:, k + 1 :].any()
        stack = torch.from_numpy(rng.random((2, 2 * k + 1, 64, 64), dtype=np.float32))
        with torch.no_grad():
            got, expected = encoder(stack), single(stack[:, k : k + 1])
        assert len(got) == len(expected) > 1
        for a, b in zip(got[1:], expected[1:]):  # [0] is the input itself
            torch.testing.assert_close(a, b)
