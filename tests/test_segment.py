"""segment(): chunk-invariance with a real U-Net, statistics, resume, inputs, errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

import volseg
from volseg import io as vio
from volseg import metrics
from volseg.inference import block as vblock

from .conftest import torch_probability, whole_plane_reference

RUN = {"tile": 64, "overlap": 0.25, "device": "cpu", "progress": False}


def run(scan, checkpoint, out, **kwargs):
    return volseg.segment(scan, model=checkpoint, out=out, **{**RUN, **kwargs})


def test_segment_writes_complete_output_group(scan_zarr, checkpoint, tmp_path):
    result = volseg.segment(str(scan_zarr), model=checkpoint, **RUN)  # group -> its 'image'
    assert result.path.endswith("scan_ni.zarr")
    assert (tmp_path / "scan_ni.zarr").is_dir()
    image = zarr.open(str(scan_zarr / "image"), mode="r")
    assert result.mask.shape == image.shape and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask[...])) <= {0, 1}
    record = zarr.open_group(str(tmp_path / "scan_ni.zarr"), mode="r").attrs["volseg"]
    assert record["status"] == "complete"
    assert record["model"]["sha256"] == volseg.model.file_sha256(checkpoint)
    assert record["parameters"]["tile"] == 64 and record["parameters"]["overlap"] == 0.25
    assert record["input"] == str(scan_zarr)
    table = result.stats
    assert len(table) == np.prod([-(-s // c) for s, c in zip(image.shape, result.mask.chunks)])
    for column in [
        "chunk_z",
        "z0",
        "z1",
        "y0",
        "x1",
        "ni_voxels",
        "ni_fraction",
        "uncertain_fraction",
        "seconds",
        "done",
    ]:
        assert column in table
    assert table["done"].all()
    assert int(table["ni_voxels"].sum()) == int(result.mask[...].sum())
    assert result.summary["ni_fraction"] == pytest.approx(result.mask[...].mean())
    assert result.summary["voxels"] == image.size


CHUNKINGS = [(5, 90, 110), (2, 33, 40), (3, 17, 64), (1, 90, 7), (4, 50, 110)]


def test_same_scan_chunked_differently_gives_same_mask(scan_zarr, checkpoint, tmp_path):
    results = [
        run(
            scan_zarr / "image",
            checkpoint,
            tmp_path / f"out{i}.zarr",
            chunks=c,
            save_prob="float32",
            batch_size=5 + i,
        )
        for i, c in enumerate(CHUNKINGS)
    ]
    mask0, prob0 = results[0].mask[...], results[0].prob[...]
    assert 0 < mask0.mean() < 1  # a mask with both classes: the comparison means something
    for result in results[1:]:
        np.testing.assert_array_equal(result.mask[...], mask0)
        np.testing.assert_allclose(result.prob[...], prob0, atol=1e-5, rtol=0)


def test_numpy_input_matches_whole_volume_reference(anode_arrays, checkpoint):
    """segment() on blocks == the same network applied to whole mirrored planes."""

    from volseg import model as vmodel

    image, _ = anode_arrays
    result = volseg.segment(
        image,
        model=checkpoint,
        chunks=(2, 40, 50),
        save_prob="float32",
        precision="fp32",
        backend="torch",
        **RUN,
    )
    loaded = vmodel.load_checkpoint(checkpoint)
    volume = vmodel.normalise(image, loaded.config["normalisation"])
    expected = whole_plane_reference(volume, torch_probability(loaded))
    np.testing.assert_allclose(result.prob[...], expected, atol=1e-5)
    np.testing.assert_array_equal(result.mask[...], (expected > 0.5).astype(np.uint8))


def test_per_chunk_counts_add_up_to_whole_volume(scan_zarr, checkpoint, tmp_path):
    result = run(
        scan_zarr / "image",
        checkpoint,
        tmp_path / "o.zarr",
        truth=scan_zarr / "labels",
        chunks=(2, 33, 40),
    )
    labels = zarr.open(str(scan_zarr / "labels"), mode="r")[...]
    truth = labels == 2  # recorded in the labels' attrs by volseg.synth
    mask = result.mask[...].astype(bool)
    whole = metrics.confusion_counts(mask, truth)
    for key in ("tp", "fp", "fn", "tn"):
        assert int(result.stats[key].sum()) == whole[key]
    direct_iou = np.sum(mask & truth) / np.sum(mask | truth)
    assert result.summary["ni_iou"] == pytest.approx(direct_iou, rel=1e-12)
    direct_dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
    assert result.summary["ni_dice"] == pytest.approx(direct_dice, rel=1e-12)
    row = result.stats.iloc[3]
    region = (slice(row.z0, row.z1), slice(row.y0, row.y1), slice(row.x0, row.x1))
    chunk_iou = np.sum(mask[region] & truth[region]) / np.sum(mask[region] | truth[region])
    assert row["iou"] == pytest.approx(chunk_iou)


def test_truth_label_value_given_explicitly(scan_zarr, checkpoint, tmp_path):
    labels = zarr.open(str(scan_zarr / "labels"), mode="r")[...]
    grey = np.choose(labels, [0, 128, 255]).astype(np.uint8)  # 0/128/255 label image
    result = run(scan_zarr / "image", checkpoint, tmp_path / "o.zarr", truth=grey, ni_label=255)
    mask = result.mask[...].astype(bool)
    assert result.summary["tp"] == int(np.sum(mask & (labels == 2)))


def test_interrupted_run_resumes_to_the_same_result(scan_zarr, checkpoint, tmp_path, monkeypatch):
    reference = run(scan_zarr / "image", checkpoint, tmp_path / "ref.zarr", chunks=(2, 40, 40))
    original = vblock.segment_block

    def crash_on_some_chunks(block, *args):
        index = block.index
        if index[0] == 1 and index[2] == 1:
            raise RuntimeError("simulated node failure")
        return original(block, *args)

    monkeypatch.setattr(vblock, "segment_block", crash_on_some_chunks)
    out = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError, match="simulated node failure"):
        run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40))
    partial = vio.open_output(out)
    assert partial.attrs["status"] == "running"
    done = partial.read_stats()["done"]
    assert 0 < done.sum() < done.size

    monkeypatch.setattr(vblock, "segment_block", original)
    with pytest.raises(FileExistsError, match="resume=True"):
        run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40))
    resumed = run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40), resume=True)
    assert resumed.summary["chunks_skipped"] == int(done.sum())
    assert resumed.summary["chunks_computed"] == done.size - int(done.sum())
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])
    assert vio.open_output(out).attrs["status"] == "complete"
    again = run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40), resume=True)
    assert again.summary["chunks_computed"] == 0


def test_resume_with_other_settings_is_refused(scan_zarr, checkpoint, tmp_path):
    out = tmp_path / "o.zarr"
    run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40))
    with pytest.raises(ValueError, match="other settings.*overlap"):
        run(scan_zarr / "image", checkpoint, out, chunks=(2, 40, 40), overlap=0.5, resume=True)


def test_existing_output_needs_overwrite(scan_zarr, checkpoint, tmp_path):
    out = tmp_path / "o.zarr"
    first = run(scan_zarr / "image", checkpoint, out)
    before = first.mask[...].copy()
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        run(scan_zarr / "image", checkpoint, out, threshold=0.9)
    np.testing.assert_array_equal(zarr.open(str(out / "mask"), mode="r")[...], before)
    second = run(scan_zarr / "image", checkpoint, out, threshold=0.9, overwrite=True)
    assert second.summary["ni_voxels"] <= first.summary["ni_voxels"]


def _ome_zarr(path, image):
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", data=image, chunks=(2, 45, 55))
    group.create_array("1", data=image[:, ::2, ::2], chunks=(2, 45, 55))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a} for a in "zyx"],
            "datasets": [{"path": "0"}, {"path": "1"}],
        }
    ]
    return path


def _tiff_file(path, image):
    import tifffile

    tifffile.imwrite(str(path), image)
    return path


def _tiff_folder(path, image):
    import tifffile

    path.mkdir()
    for z, plane in enumerate(image):
        tifffile.imwrite(str(path / f"slice_{z:04d}.tif"), plane)
    return path


INPUTS = {
    "numpy": lambda p, im: im,
    "dask": lambda p, im: da.from_array(im, chunks=(2, 30, 30)),
    "zarr.Array": lambda p, im: zarr.create_array(str(p / "a.zarr"), data=im, chunks=(3, 40, 40)),
    "zarr v2 path": lambda p, im: (
        zarr.create_array(str(p / "v2.zarr"), data=im, chunks=(3, 40, 40), zarr_format=2),
        p / "v2.zarr",
    )[1],
    "ome-zarr": lambda p, im: _ome_zarr(p / "ome.zarr", im),
    "tiff stack": lambda p, im: _tiff_file(p / "stack.tif", im),
    "tiff folder": lambda p, im: _tiff_folder(p / "slices", im),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_input_kind_gives_the_same_mask(kind, anode_arrays, checkpoint, tmp_path):
    image, _ = anode_arrays
    expected = run(image, checkpoint, tmp_path / "ref.zarr", chunks=(5, 90, 110)).mask[...]
    source = INPUTS[kind](tmp_path, image)
    result = run(source, checkpoint, tmp_path / "out.zarr", chunks=(2, 45, 55))
    np.testing.assert_array_equal(result.mask[...], expected)


def test_array_input_without_out_stays_in_memory(anode_arrays, checkpoint):
    image, _ = anode_arrays
    result = volseg.segment(image, model=checkpoint, save_prob=True, **RUN)
    assert result.prob.dtype == np.uint8
    assert isinstance(result.mask.store, zarr.storage.MemoryStore)


def test_cli_segment_and_stats(scan_zarr, checkpoint, tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "cli.zarr"
    code = main(
        [
            "segment",
            str(scan_zarr),
            "--model",
            str(checkpoint),
            "--out",
            str(out),
            "--truth",
            str(scan_zarr / "labels"),
            "--tile",
            "64",
            "--overlap",
            "0.25",
            "--device",
            "cpu",
            "--no-progress",
            "--chunks",
            "2",
            "45",
            "55",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ni_iou" in printed and str(out) in printed
    csv = tmp_path / "stats.csv"
    assert main(["stats", str(out), "--csv", str(csv)]) == 0
    printed = capsys.readouterr().out
    assert "chunk_z" in printed and "iou" in printed
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 3 * 2 * 2 and {"tp", "fp", "fn", "tn", "iou", "dice"} <= set(table)


def test_cli_reports_errors_in_one_line(tmp_path, checkpoint, capsys):
    from volseg.cli import main

    code = main(["segment", str(tmp_path / "nope.zarr"), "--model", str(checkpoint)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.zarr" in err and "does not exist" in err and "Traceback" not in err


def test_each_task_reads_only_its_block_and_halo(checkpoint, tmp_path, monkeypatch):
    """Memory per task is one block plus its halo: no read spans the volume."""
    image, _ = volseg.synth.anode((4, 256, 256), seed=2, grain_sigma=4.0)
    scan = zarr.create_array(str(tmp_path / "s.zarr"), data=image, chunks=(2, 64, 64))
    reads = []
    original = vio.read_region
    monkeypatch.setattr(
        vio, "read_region", lambda a, r: reads.append(original(a, r).shape) or original(a, r)
    )
    run(scan, checkpoint, tmp_path / "o.zarr", chunks=(2, 64, 64))
    assert len(reads) == 2 * 4 * 4
    for z, y, x in reads:
        # block (2, 64, 64) + the tiles touching it (tile 64) on each side
        assert z <= 2 and y <= 64 + 2 * 64 and x <= 64 + 2 * 64
