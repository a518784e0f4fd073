"""Beyond binary, beyond one plane: multi-class models, axes="zyx", TTA and refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import volseg
from volseg import inference, metrics, synth, tiling
from volseg import io as vio
from volseg import model as vmodel
from volseg.inference import block as vblock

from .conftest import layout1, torch_probability, whole_plane_reference

RUN = {"tile": 64, "overlap": 0.25, "device": "cpu", "progress": False}


def run(scan, checkpoint, out=None, **kwargs):
    return volseg.segment(scan, model=checkpoint, out=out, **{**RUN, **kwargs})


@pytest.fixture(scope="module")
def small_anode():
    """A scan small enough for eight orientations on three axes: (4, 40, 52)."""
    return synth.anode((4, 40, 52), seed=7, grain_sigma=4.0)


@pytest.fixture(scope="module")
def sharp_checkpoint(checkpoint, tmp_path_factory):
    """The random binary model with logits scaled up: some voxels certain, some not."""
    loaded = vmodel.load_checkpoint(checkpoint)
    head = loaded.network.segmentation_head[0]
    with torch.no_grad():
        head.weight *= 8
        head.bias *= 8
    path = tmp_path_factory.mktemp("sharp") / "sharp.pt"
    return vmodel.save_checkpoint(loaded.network, loaded.config, path)


def ome_scan(image: np.ndarray, path) -> None:
    """``image`` as a one-level OME-Zarr with voxel size (0.5, 0.02, 0.02) micrometer."""
    vio.convert(
        image, path, chunks=image.shape, levels=1, voxel_size=(0.5, 0.02, 0.02),
        unit="micrometer", progress=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- tiling pieces


def test_stitch_block_blends_every_channel_like_a_single_one():
    volume = np.random.default_rng(1).random((2, 50, 70)).astype(np.float32)
    grid = tiling.plane_grid((50, 70), tile=32, overlap=0.5)
    plan = tiling.reflected_read_plan(grid, (10, 40), (5, 60))
    window = tiling.apply_read_plan(plan, volume[:, plan.y_read, plan.x_read])
    single = tiling.stitch_block(window, grid, (10, 40), (5, 60), lambda t: t * t)
    both = tiling.stitch_block(
        window, grid, (10, 40), (5, 60), lambda t: np.stack([t * t, 1 - t], axis=1), channels=2
    )
    assert both.shape == (2, *single.shape)
    np.testing.assert_array_equal(both[0], single)
    np.testing.assert_allclose(both[1], 1 - volume[:, 10:40, 5:60], atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        tiling.stitch_block(window, grid, (10, 40), (5, 60), lambda t: t, channels=2)


def test_tta_makes_any_predictor_equivariant_to_flips_and_turns():
    tiles = np.random.default_rng(2).random((3, 16, 16)).astype(np.float32)

    def lopsided(batch):  # depends on the position: not equivariant by itself
        return batch * np.linspace(0, 1, batch.shape[-1], dtype=np.float32)

    tta = tiling.FlipRotateTTA(lopsided)
    for k, flip in tiling.DIHEDRAL:
        turned = np.ascontiguousarray(tiling.dihedral_transform(tiles, k, flip))
        expected = tiling.dihedral_transform(tta(tiles), k, flip)
        np.testing.assert_allclose(tta(turned), expected, atol=1e-6)
    assert not np.allclose(tta(tiles), lopsided(tiles))
    # An equivariant predictor is unchanged.
    np.testing.assert_allclose(tiling.FlipRotateTTA(np.sqrt)(tiles), np.sqrt(tiles), atol=1e-6)


def test_tta_uses_an_asynchronous_predictor_with_all_orientations_in_flight():
    calls = []

    class Async:
        def __call__(self, batch):
            raise AssertionError("the synchronous path must not be used")

        def submit(self, batch):
            calls.append("submit")
            return np.stack([batch, batch * 2], axis=1)  # (B, 2, T, T)

        def collect(self, handle):
            calls.append("collect")
            return handle

    tiles = np.random.default_rng(3).random((2, 8, 8)).astype(np.float32)
    out = tiling.FlipRotateTTA(Async())(tiles)
    assert calls == ["submit"] * 8 + ["collect"] * 8
    np.testing.assert_allclose(out, np.stack([tiles, tiles * 2], axis=1), atol=1e-6)


# --------------------------------------------------------------------------- axes="zyx"


def test_zyx_is_the_mean_of_whole_plane_references_along_each_axis(small_anode, checkpoint):
    image, _ = small_anode
    loaded = vmodel.load_checkpoint(checkpoint)
    volume = vmodel.normalise(image, loaded.config["normalisation"])
    predict = torch_probability(loaded)
    along_z = whole_plane_reference(volume, predict)
    along_y = whole_plane_reference(volume.transpose(1, 0, 2), predict).transpose(1, 0, 2)
    along_x = whole_plane_reference(volume.transpose(2, 0, 1), predict).transpose(1, 2, 0)
    expected = (along_z + along_y + along_x) / 3
    result = run(
        image,
        checkpoint,
        axes="zyx",
        chunks=(3, 24, 30),
        save_prob="float32",
        precision="fp32",
        backend="torch",
    )
    np.testing.assert_allclose(result.prob[...], expected, atol=1e-5)
    # The y and x slices see something else than the z slices: fusion changes the result.
    assert np.abs(expected - along_z).max() > 0.01


def test_zyx_is_chunk_invariant(small_anode, checkpoint):
    image, _ = small_anode
    results = [
        run(image, checkpoint, axes="zyx", chunks=c, save_prob="float32")
        for c in ((4, 40, 52), (1, 17, 25), (3, 40, 20))
    ]
    assert 0 < results[0].mask[...].mean() < 1
    for result in results[1:]:
        np.testing.assert_array_equal(result.mask[...], results[0].mask[...])
        np.testing.assert_allclose(result.prob[...], results[0].prob[...], atol=1e-5, rtol=0)


def test_tta_is_chunk_invariant_and_changes_the_probabilities(small_anode, checkpoint3):
    image, labels = small_anode
    plain = run(image, checkpoint3, chunks=(4, 40, 52), save_prob="float32")
    results = [
        run(image, checkpoint3, tta=True, chunks=c, save_prob="float32")
        for c in ((4, 40, 52), (2, 13, 29))
    ]
    np.testing.assert_array_equal(results[1].group["labels"][...], results[0].group["labels"][...])
    np.testing.assert_allclose(results[1].prob[...], results[0].prob[...], atol=1e-5, rtol=0)
    assert np.abs(results[0].prob[...] - plain.prob[...]).max() > 0.01


# --------------------------------------------------------------------------- three phases


def test_three_phase_model_writes_labels_mask_probabilities_and_phase_stats(
    scan_zarr, checkpoint3, tmp_path
):
    result = run(
        scan_zarr / "image",
        checkpoint3,
        tmp_path / "out.zarr",
        truth=scan_zarr / "labels",
        chunks=(2, 48, 64),
        save_prob="float32",
    )
    labels = result.group["labels"][...]
    truth = np.asarray(vio.open_scan(scan_zarr / "labels").array[...])
    assert set(np.unique(labels)) == {0, 1, 2}  # every phase wins somewhere
    np.testing.assert_array_equal(result.mask[...], (labels == 2).astype(np.uint8))
    prob = result.prob[...]
    assert prob.shape == (3, *labels.shape)
    np.testing.assert_allclose(prob.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(prob, axis=0), labels)  # values 0, 1, 2 = classes
    # Pooled phase scores equal those of the whole arrays.
    expected = metrics.phase_scores(metrics.confusion_matrix(truth, labels, [0, 1, 2]), list("pyn"))
    summary = result.summary
    assert summary["confusion"] == metrics.confusion_matrix(truth, labels, [0, 1, 2]).tolist()
    assert list(summary["phase_iou"]) == ["pore", "ysz", "ni"]
    np.testing.assert_allclose(list(summary["phase_iou"].values()), list(expected["iou"].values()))
    assert summary["ni_iou"] == pytest.approx(summary["phase_iou"]["ni"])
    assert sum(summary["phase_fractions"].values()) == pytest.approx(1.0)
    stats = result.stats
    for name in ("pore", "ysz", "ni"):
        assert f"iou_{name}" in stats and f"{name}_fraction" in stats
    np.testing.assert_allclose(
        stats[["pore_fraction", "ysz_fraction", "ni_fraction"]].sum(axis=1), 1.0
    )
    # The stored labels carry their phases, so measure/evaluate can read them.
    assert dict(result.group["labels"].attrs)["phases"] == {"pore": 0, "ysz": 1, "ni": 2}
    assert inference.output_phases(vio.open_output(result.path)) == {"pore": 0, "ysz": 1, "ni": 2}


def test_phase_ni_writes_only_the_ni_mask_of_a_three_phase_model(scan_zarr, checkpoint3, tmp_path):
    full = run(scan_zarr / "image", checkpoint3, tmp_path / "full.zarr", save_prob="float32")
    ni = run(
        scan_zarr / "image", checkpoint3, tmp_path / "ni.zarr", phase="ni", save_prob="float32"
    )
    assert "labels" not in ni.group and ni.prob.shape == full.mask.shape
    np.testing.assert_array_equal(ni.mask[...], full.mask[...])
    np.testing.assert_array_equal(ni.prob[...], full.prob[2])
    assert "phase_fractions" not in ni.summary


def test_three_phase_truth_with_other_values_is_matched_by_phase_name(
    small_anode, checkpoint3, tmp_path
):
    image, labels = small_anode
    reference = run(image, checkpoint3, truth=labels)
    # The same phases stored as 10 (pore), 20 (ysz), 30 (ni), recorded in the attrs.
    remapped = (labels.astype(np.uint8) + 1) * 10
    vio.write_arrays(
        tmp_path / "t.zarr",
        {"labels": remapped},
        chunks=labels.shape,
        array_attrs={"labels": {"phases": {"pore": 10, "ysz": 20, "ni": 30}}},
    )
    again = run(image, checkpoint3, truth=tmp_path / "t.zarr" / "labels")
    assert again.summary["confusion"] == reference.summary["confusion"]
    assert again.summary["ni_iou"] == reference.summary["ni_iou"]


# --------------------------------------------------------------------------- refinement


def test_refine_reruns_exactly_the_uncertain_chunks_with_zyx_and_tta(small_anode, sharp_checkpoint):
    checkpoint = sharp_checkpoint
    image, _ = small_anode
    chunks = (4, 20, 26)
    plain = run(image, checkpoint, chunks=chunks, save_prob="float32")
    fractions = plain.stats["uncertain_fraction"].to_numpy()
    assert len(np.unique(fractions)) > 1
    threshold = float(np.median(fractions))
    refined = run(
        image,
        checkpoint,
        chunks=chunks,
        save_prob="float32",
        refine="uncertain",
        refine_threshold=threshold,
    )
    expected = fractions > threshold
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(refined.stats["refined"].to_numpy(), expected)
    assert refined.summary["chunks_refined"] == int(expected.sum())
    full = run(image, checkpoint, chunks=chunks, save_prob="float32", axes="zyx", tta=True)
    for row, was_refined in zip(plain.stats.itertuples(), expected):
        region = (slice(row.z0, row.z1), slice(row.y0, row.y1), slice(row.x0, row.x1))
        source = full if was_refined else plain
        np.testing.assert_array_equal(refined.mask[region], source.mask[region])
        np.testing.assert_allclose(refined.prob[region], source.prob[region], atol=1e-5)
    # Recorded counts are those of the written (refined) chunks.
    rows = list(refined.stats.itertuples())
    np.testing.assert_array_equal(
        refined.stats["ni_voxels"],
        [int(refined.mask[r.z0 : r.z1, r.y0 : r.y1, r.x0 : r.x1].sum()) for r in rows],
    )


def test_refine_interrupted_resumes_to_the_same_result(
    small_anode, checkpoint, tmp_path, monkeypatch
):
    image, _ = small_anode
    settings = {"chunks": (4, 20, 26), "refine": "uncertain", "refine_threshold": 0.0}
    reference = run(image, checkpoint, tmp_path / "ref.zarr", **settings)
    assert reference.stats["refined"].all()
    original = vblock.block_probability

    def fail_one_refinement(block, box, run):
        # The refinement pass runs with tta; fail in the middle of chunk (0, 1, 0).
        if run.settings.tta and block.write[1].start == 20 and block.write[2].start == 0:
            raise RuntimeError("simulated failure while refining")
        return original(block, box, run)

    monkeypatch.setattr(vblock, "block_probability", fail_one_refinement)
    out = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError, match="while refining"):
        run(image, checkpoint, out, **settings)
    partial = vio.open_output(out)
    assert partial.attrs["status"] == "running"
    assert not partial.read_stats()["done"][0, 1, 0]  # a chunk being rewritten is not done
    monkeypatch.setattr(vblock, "block_probability", original)
    resumed = run(image, checkpoint, out, resume=True, **settings)
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])
    assert resumed.stats["refined"].all()


def test_bad_modes_are_refused_with_the_choices(small_anode, checkpoint):
    image, _ = small_anode
    for kwargs, message in (
        ({"axes": "xy"}, "axes='xy' is not known"),
        ({"tta": "yes"}, "tta='yes' must be True or False"),
        ({"refine": "all"}, "refine='all' is not known"),
        ({"refine_threshold": 1.5}, "refine_threshold=1.5"),
        ({"phase": "ysz"}, "phase='ysz' is not known"),
    ):
        with pytest.raises(ValueError, match=message):
            run(image, checkpoint, **kwargs)


# --------------------------------------------------------------------------- voxel size


def test_voxel_size_travels_from_ome_zarr_scan_to_output_and_measures(
    small_anode, checkpoint3, tmp_path
):
    ome_scan(small_anode[0], tmp_path / "scan.ome.zarr")
    assert vio.recorded_voxel_size(vio.open_scan(tmp_path / "scan.ome.zarr")) == (
        (0.5, 0.02, 0.02),
        "micrometer",
    )
    result = run(tmp_path / "scan.ome.zarr", checkpoint3, tmp_path / "out.zarr")
    scale = result.group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert scale[0]["scale"] == [0.5, 0.02, 0.02]
    in_voxels = volseg.measure(result.mask[...])
    physical = volseg.measure(tmp_path / "out.zarr")
    assert (physical["unit"], physical["voxel_size"]) == ("micrometer", [0.5, 0.02, 0.02])
    assert in_voxels["unit"] is None
    assert physical["total_volume"] == pytest.approx(in_voxels["total_volume"] * 0.5 * 0.02 * 0.02)
    phases = volseg.measure_phases(tmp_path / "out.zarr")  # the labels array of the output
    assert phases["unit"] == "micrometer"
    assert phases["phase_fractions"]["ni"] == pytest.approx(physical["volume_fraction"])
    # An explicit voxel size wins over the recorded one.
    assert (
        volseg.measure(tmp_path / "out.zarr", voxel_size=(1, 1, 1))["total_volume"]
        == (in_voxels["total_volume"])
    )


def test_evaluate_scores_a_three_phase_output_per_phase_and_per_chunk(
    scan_zarr, checkpoint3, tmp_path
):
    out = tmp_path / "out.zarr"
    segmented = run(scan_zarr / "image", checkpoint3, out, chunks=(2, 48, 64))
    evaluation = volseg.evaluate(out, scan_zarr / "labels", baseline="none")
    labels = segmented.group["labels"][...]
    truth = np.asarray(vio.open_scan(scan_zarr / "labels").array[...])
    expected = metrics.confusion_matrix(truth, labels, [0, 1, 2])
    assert evaluation.summary["confusion"] == expected.tolist()
    assert evaluation.summary["ni_iou"] == pytest.approx(evaluation.summary["phase_iou"]["ni"])
    assert {"iou_pore", "iou_ysz", "iou_ni", "mean_iou"} <= set(evaluation.chunks)
    # Stored per chunk: the stats table of the output now has the phase scores.
    table = volseg.open_result(out).stats
    np.testing.assert_allclose(table["iou_ysz"], evaluation.chunks["iou_ysz"])
    # The same label volume given as an array with its phases.
    again = volseg.evaluate(labels, truth, phases={"pore": 0, "ysz": 1, "ni": 2}, baseline="none")
    assert again.summary["confusion"] == expected.tolist()
    ni_only = tmp_path / "ni.zarr"
    run(scan_zarr / "image", checkpoint3, ni_only, chunks=(2, 48, 64), phase="ni")
    with pytest.raises(ValueError, match="needs a label prediction"):
        volseg.evaluate(ni_only, truth, phases={"ni": 2}, baseline="none")


# --------------------------------------------------------------------------- command line


def test_cli_three_phase_train_segment_evaluate_measure(tmp_path, capsys):
    from volseg.cli import main

    synth.write_anode(tmp_path / "train.zarr", shape=(12, 64, 64), seed=1, chunks=(6, 64, 64))
    synth.write_anode(tmp_path / "test.zarr", shape=(4, 64, 64), seed=2, chunks=(4, 64, 64))
    small = ["--encoder", "resnet18", "--encoder-depth", "3", "--decoder-channels", "32", "16", "8"]
    fast = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--tile", "64"]
    model = str(tmp_path / "m3.pt")
    common = ["--no-progress", "--device", "cpu"]
    assert (
        main(
            ["train", str(tmp_path / "train.zarr"), "--out", model, "--classes", "3"]
            + small
            + fast
            + common
        )
        == 0
    )
    out = str(tmp_path / "o.zarr")
    args = ["segment", str(tmp_path / "test.zarr" / "image"), "--model", model, "--out", out]
    args += ["--truth", str(tmp_path / "test.zarr" / "labels"), "--tile", "64", "--tta"]
    args += ["--refine", "uncertain", "--refine-threshold", "0.5", "--axes", "z"]
    assert main(args + common) == 0
    printed = capsys.readouterr().out
    assert "labels and Ni mask written" in printed and "iou ysz" in printed
    assert "chunks_refined" in printed
    assert (
        main(["evaluate", out, str(tmp_path / "test.zarr" / "labels"), "--baseline", "none"]) == 0
    )
    assert "mean_iou (phases)" in capsys.readouterr().out
    assert (
        main(["measure", out, "--phases", "--max-radius", "2", "--voxel-size", "1", "2", "2"]) == 0
    )
    printed = capsys.readouterr().out
    assert "tpb_density" in printed and "ni volume_fraction" in printed
    assert (
        main(
            [
                "train",
                str(tmp_path / "train.zarr"),
                "--out",
                model,
                "--classes",
                "3",
                "--phases",
                "pore=0",
                "ni=2",
            ]
            + fast
            + common
        )
        == 2
    )
    assert "must map 3 phase names" in capsys.readouterr().err


def test_train_three_phases_records_phases_and_per_phase_validation(tmp_path):
    synth.write_anode(tmp_path / "t.zarr", shape=(12, 64, 64), seed=4, chunks=(6, 64, 64))
    settings = {
        "encoder": "resnet18",
        "encoder_depth": 3,
        "decoder_channels": [32, 16, 8],
        "tile": 64,
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 4,
        "device": "cpu",
        "progress": False,
    }
    image, labels = tmp_path / "t.zarr" / "image", tmp_path / "t.zarr" / "labels"
    result = volseg.train(image, labels, tmp_path / "m.pt", classes=3, **settings)
    loaded = vmodel.load_checkpoint(result.path)
    assert vmodel.model_phases(loaded.config) == {"pore": 0, "ysz": 1, "ni": 2}
    assert loaded.training["loss"] == "ce+dice" and loaded.training["monitor"] == "val_mean_iou"
    for column in ("val_mean_iou", "val_iou_pore", "val_iou_ysz", "val_iou_ni", "val_ni_iou"):
        assert column in result.history
    assert result.best_val_ni_iou == pytest.approx(result.history["val_mean_iou"].max())
    for kwargs, message in (
        ({"classes": 2}, "classes=2 must be 1"),
        ({"classes": 3, "loss": "bce"}, "loss='bce' does not fit classes=3"),
        ({"phases": {"pore": 0, "ysz": 1, "ni": 2}}, "needs a multi-class model"),
    ):
        with pytest.raises(ValueError, match=message):
            volseg.train(image, labels, tmp_path / "x.pt", **{**settings, **kwargs})


def test_report_of_a_three_phase_output_has_physical_microstructure(
    small_anode, checkpoint3, tmp_path
):
    from volseg.cli import main

    ome_scan(small_anode[0], tmp_path / "scan.ome.zarr")
    out = tmp_path / "out.zarr"
    run(tmp_path / "scan.ome.zarr", checkpoint3, out)
    assert main(["report", str(out), "--html", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Microstructure" in page and "TPB density (isotropic)" in page
    assert "micrometer/micrometer³" in page and "ysz volume fraction" in page
    assert main(["report", str(out), "--html", str(tmp_path / "s.html"), "--no-measures"]) == 0
    assert "Microstructure" not in (tmp_path / "s.html").read_text()


def test_voxel_size_given_to_segment_is_recorded_for_a_tiff_scan(small_anode, checkpoint, tmp_path):
    import tifffile

    from volseg.cli import main

    image, _ = small_anode
    tifffile.imwrite(tmp_path / "scan.tif", image, photometric="minisblack")
    out = tmp_path / "out.zarr"
    argv = ["segment", str(tmp_path / "scan.tif"), "--model", str(checkpoint), "--out", str(out)]
    argv += ["--tile", "64", "--device", "cpu", "--no-progress"]
    assert main([*argv, "--voxel-size", "0.5", "0.02", "0.02", "--unit", "micrometer"]) == 0
    measured = volseg.measure(out, max_radius=2)
    assert (measured["voxel_size"], measured["unit"]) == ([0.5, 0.02, 0.02], "micrometer")
    with pytest.raises(ValueError, match="three positive numbers"):
        run(image, checkpoint, voxel_size=(0, 1, 1))


def test_review_fixes_binary_truth_sparse_labels_and_stale_refined_flag(
    small_anode, checkpoint3, sharp_checkpoint, tmp_path, monkeypatch
):
    from volseg.training.losses import loss_fn

    image, labels = small_anode
    # A three-phase model scored against a binary (bool) truth: Ni only, no confusion.
    binary = labels == 2
    result = run(image, checkpoint3, truth=binary)
    expected = metrics.confusion_counts(result.mask[...].astype(bool), binary)
    assert {k: result.summary[k] for k in expected} == expected
    assert "confusion" not in result.summary
    # A three-phase model trained on 0/1 labels would never see Ni (2): refused.
    with pytest.raises(ValueError, match="hold no Ni"):
        volseg.train(
            image,
            (labels == 2).astype(np.uint8),
            tmp_path / "m.pt",
            classes=3,
            encoder="resnet18",
            encoder_depth=3,
            decoder_channels=[8, 8, 8],
            tile=32,
            epochs=1,
            steps_per_epoch=1,
            batch_size=2,
            device="cpu",
            progress=False,
        )
    # A batch with no labelled pixel gives a zero loss, not NaN.
    loss = loss_fn("ce+dice", 3)
    logits = torch.zeros((2, 3, 8, 8), requires_grad=True)
    assert float(loss(logits, torch.full((2, 8, 8), -1)).detach()) == 0.0
    # A chunk segmented again after an interrupted refinement is not marked refined.
    out = tmp_path / "o.zarr"
    settings = {"chunks": (4, 20, 26), "refine": "uncertain", "refine_threshold": 0.0}
    run(image, sharp_checkpoint, out, **settings)
    group = vio.open_output(out, mode="r+")
    group.clear_done((0, 0, 0))  # as if the rewrite stopped after the counts
    resumed = run(image, sharp_checkpoint, out, resume=True, **settings)
    assert resumed.summary["chunks_refined_now"] == 1
    assert resumed.stats["refined"].all()


def test_an_output_written_before_these_settings_existed_still_resumes(
    small_anode, checkpoint, tmp_path
):
    import shutil

    image, _ = small_anode
    out = tmp_path / "old.zarr"
    reference = run(image, checkpoint, out, chunks=(4, 20, 26))
    group = layout1(out)  # the stats/ arrays of volseg 0.1
    record = group.attrs
    for key in ("axes", "tta", "refine", "refine_threshold", "phase", "phases"):
        record["parameters"].pop(key)
    group.group.attrs["volseg"] = record
    shutil.rmtree(out / "stats" / "refined")
    group.stats["done"][0, 1, 1] = False
    resumed = run(image, checkpoint, out, chunks=(4, 20, 26), resume=True)
    assert resumed.summary["chunks_computed"] == 1
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])


def test_zyx_tasks_read_only_their_block_and_a_halo_in_every_direction(
    checkpoint, tmp_path, monkeypatch
):
    """Memory per task stays one block plus a halo of at most one tile per side."""
    import zarr

    image, _ = synth.anode((24, 96, 96), seed=2, grain_sigma=4.0)
    scan = zarr.create_array(str(tmp_path / "s.zarr"), data=image, chunks=(8, 32, 32))
    reads = []
    original = vio.read_region
    monkeypatch.setattr(
        vio, "read_region", lambda a, r: reads.append(original(a, r).shape) or original(a, r)
    )
    run(scan, checkpoint, tmp_path / "o.zarr", chunks=(8, 32, 32), axes="zyx")
    assert len(reads) == 3 * 3 * 3
    for shape in reads:
        # block (8, 32, 32) + the tiles touching it (tile 64) on each side, within the volume
        assert all(
            n <= min(block + 2 * 64, size)
            for n, block, size in zip(shape, (8, 32, 32), image.shape)
        )
    assert max(r[0] for r in reads) > 8  # the halo along z is really read
