"""evaluate, report, convert and OME-Zarr metadata: numbers against direct numpy."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest
import zarr

import volseg
import volseg.report
from volseg import io as vio
from volseg import metrics

RUN = {"tile": 64, "device": "cpu", "progress": False}


@pytest.fixture()
def segmented(scan_zarr, checkpoint, tmp_path):
    out = tmp_path / "seg.zarr"
    volseg.segment(str(scan_zarr / "image"), model=checkpoint, out=out, chunks=(2, 45, 55), **RUN)
    return out


def test_evaluate_matches_direct_numpy(segmented, scan_zarr, tmp_path):
    csv = tmp_path / "ev.csv"
    result = volseg.evaluate(segmented, scan_zarr / "labels", csv=csv)
    mask = zarr.open(str(segmented / "mask"), mode="r")[...].astype(bool)
    labels = zarr.open(str(scan_zarr / "labels"), mode="r")[...]
    truth = labels == 2
    tp, fp = np.sum(mask & truth), np.sum(mask & ~truth)
    fn, tn = np.sum(~mask & truth), np.sum(~mask & ~truth)
    s = result.summary
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (tp, fp, fn, tn)
    assert s["ni_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert s["ni_dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["precision"] == pytest.approx(tp / (tp + fp))
    assert s["recall"] == pytest.approx(tp / (tp + fn))
    background_iou = tn / (tn + fn + fp)
    assert s["two_class_mean_iou"] == pytest.approx((s["ni_iou"] + background_iou) / 2)
    # per slice
    for z in (0, 4):
        inter = np.sum(mask[z] & truth[z])
        union = np.sum(mask[z] | truth[z])
        assert result.slices.loc[z, "iou"] == pytest.approx(inter / union)
    # per chunk, stored in the output group and written as CSV
    table = pd.read_csv(csv)
    assert len(table) == len(result.chunks) == 3 * 2 * 2
    assert int(table["tp"].sum()) == tp
    assert (tmp_path / "ev_slices.csv").is_file()
    reopened = volseg.open_result(segmented)
    assert int(reopened.stats["tp"].sum()) == tp and "iou" in reopened.stats
    assert zarr.open_group(str(segmented), mode="r").attrs["volseg"]["evaluation"]["tp"] == tp
    # baseline on the scan recorded in the output
    image = zarr.open(str(scan_zarr / "image"), mode="r")[...]
    expected = metrics.threshold_baseline(image, labels, ni_label=2)
    assert s["baseline"]["ni_iou"] == pytest.approx(expected["ni_iou"])
    assert s["baseline"]["method"] == "multiotsu"


def test_evaluate_plain_arrays_and_errors(tmp_path):
    truth = np.zeros((3, 20, 20), np.uint8)
    truth[:, 5:15, 5:15] = 255
    mask = np.zeros_like(truth)
    mask[:, 5:15, 5:10] = 1
    result = volseg.evaluate(mask, truth, ni_label=255, baseline="none")
    assert result.summary["ni_iou"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="has shape"):
        volseg.evaluate(mask[:, :10], truth, baseline="none")
    with pytest.raises(ValueError, match="needs the scan"):
        volseg.evaluate(mask, truth, ni_label=255)
    with pytest.raises(ValueError, match="baseline='kmeans'"):
        volseg.evaluate(mask, truth, baseline="kmeans")


def test_threshold_baseline_two_class_otsu():
    rng = np.random.default_rng(0)
    truth = (rng.random((4, 32, 32)) > 0.5).astype(np.uint8)
    image = truth * 100.0 + rng.normal(0, 5, truth.shape)
    from skimage.filters import threshold_otsu

    result = metrics.threshold_baseline(image, truth, ni_label=1, method="otsu", sample_step=2)
    threshold = threshold_otsu(image[::2])
    predicted, actual = image > threshold, truth == 1
    expected = np.sum(predicted & actual) / np.sum(predicted | actual)
    assert result["threshold"] == pytest.approx(threshold)
    assert result["ni_iou"] == pytest.approx(expected)


def test_report_html_embeds_every_image(segmented, scan_zarr, tmp_path):
    page = volseg.report.make_report(
        segmented, truth=scan_zarr / "labels", html=tmp_path / "r.html", png_dir=tmp_path / "png"
    )
    text = page.read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(sources) >= 6
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    for src in sources:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(href|src)="(https?:|//|file:)', text)  # nothing external
    for png in (
        "slices",
        "chunk_iou",
        "chunk_ni_fraction",
        "chunk_uncertain",
        "profiles",
        "histograms",
    ):
        assert (tmp_path / "png" / f"{png}.png").stat().st_size > 2000
    assert "Ni IoU" in text and "two-class mean IoU" in text


def test_report_without_truth(segmented, tmp_path):
    page = volseg.report.make_report(segmented, html=tmp_path / "r.html", png_dir=tmp_path / "png")
    assert not (tmp_path / "png" / "chunk_iou.png").exists()
    assert (tmp_path / "png" / "chunk_uncertain.png").is_file()
    assert page.stat().st_size > 10000


def test_output_group_carries_ome_zarr_metadata(segmented):
    attrs = zarr.open_group(str(segmented), mode="r").attrs.asdict()
    multiscales = attrs["ome"]["multiscales"][0]
    assert multiscales["datasets"][0]["path"] == "mask"
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
    assert vio.open_scan(str(segmented)).shape == (5, 90, 110)  # opened as its level 0


@pytest.mark.parametrize("kind", ["tiff", "tiff-folder", "hdf5"])
def test_convert_to_ome_zarr(kind, anode_arrays, tmp_path, checkpoint):
    import tifffile

    image, _ = anode_arrays
    if kind == "tiff":
        source = tmp_path / "stack.tif"
        tifffile.imwrite(str(source), image)
    elif kind == "tiff-folder":
        source = tmp_path / "slices"
        source.mkdir()
        for z, plane in enumerate(image):
            tifffile.imwrite(str(source / f"s{z:03d}.tiff"), plane)
    else:
        h5py = pytest.importorskip("h5py")
        source = tmp_path / "scan.h5"
        with h5py.File(source, "w") as handle:
            handle.create_dataset("entry/data", data=image, chunks=(1, 90, 110))
    out = tmp_path / "scan.ome.zarr"
    group = vio.convert(
        source,
        out,
        chunks=(2, 64, 64),
        levels=3,
        voxel_size=(0.5, 0.5, 0.5),
        unit="micrometer",
        progress=False,
    )
    np.testing.assert_array_equal(group["0"][...], image)
    assert group["1"].shape == (5, 45, 55) and group["2"].shape == (5, 22, 27)
    level1 = image.reshape(5, 45, 2, 55, 2).mean(axis=(2, 4)).astype(image.dtype)
    level2 = level1[:, :44, :54].reshape(5, 22, 2, 27, 2).mean(axis=(2, 4)).astype(image.dtype)
    assert np.abs(group["1"][...].astype(int) - level1).max() <= 1
    assert np.abs(group["2"][...].astype(int) - level2).max() <= 1
    scale = group.attrs["ome"]["multiscales"][0]["datasets"][1]["coordinateTransformations"]
    assert scale[0]["scale"] == [0.5, 1.0, 1.0]
    # the converted scan segments like the original
    seg = volseg.segment(str(out), model=checkpoint, out=tmp_path / "o.zarr", **RUN)
    ref = volseg.segment(image, model=checkpoint, **RUN)
    np.testing.assert_array_equal(seg.mask[...], ref.mask[...])


def test_convert_refuses_to_overwrite_and_explains_hdf5(tmp_path, anode_arrays):
    image, _ = anode_arrays
    out = tmp_path / "o.zarr"
    vio.convert(image, out, progress=False, levels=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        vio.convert(image, out, progress=False, levels=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vio.convert(tmp_path / "none.h5", tmp_path / "x.zarr", progress=False)


def test_cli_evaluate_report_convert(segmented, scan_zarr, tmp_path, capsys):
    from volseg.cli import main

    assert (
        main(
            [
                "evaluate",
                str(segmented),
                str(scan_zarr / "labels"),
                "--csv",
                str(tmp_path / "e.csv"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "ni_iou" in printed and "multiotsu Ni IoU" in printed and "lowest per-slice" in printed
    assert (
        main(
            [
                "report",
                str(segmented),
                "--truth",
                str(scan_zarr / "labels"),
                "--html",
                str(tmp_path / "r.html"),
            ]
        )
        == 0
    )
    assert (tmp_path / "r.html").is_file()
    assert (
        main(
            [
                "convert",
                str(scan_zarr / "image"),
                str(tmp_path / "c.zarr"),
                "--levels",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "levels 0, 1" in capsys.readouterr().out


def test_cli_measure_writes_json(segmented, tmp_path, capsys):
    import json

    from volseg.cli import main

    assert (
        main(
            [
                "measure",
                str(segmented),
                "--voxel-size",
                "0.5",
                "0.5",
                "0.5",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    values = json.loads((tmp_path / "m.json").read_text())
    mask = zarr.open(str(segmented / "mask"), mode="r")[...]
    assert values["volume_fraction"] == pytest.approx(mask.mean())
    assert set(values["percolates"]) == {"z", "y", "x"}
    assert "specific_surface_area" in capsys.readouterr().out
