"""Every script in examples/ runs, at tiny sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import zarr

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segment_scan(scan_zarr, checkpoint, tmp_path, capsys):
    summary = load("segment_scan").main(
        [
            str(scan_zarr / "image"),
            str(checkpoint),
            "--out",
            str(tmp_path / "o.zarr"),
            "--truth",
            str(scan_zarr / "labels"),
            "--tile",
            "64",
            "--device",
            "cpu",
        ]
    )
    assert 0 <= summary["ni_iou"] <= 1
    assert "ni_fraction" in capsys.readouterr().out


def test_train_on_labels(scan_zarr, tmp_path):
    result = load("train_on_labels").main(
        [
            str(scan_zarr / "image"),
            str(scan_zarr / "labels"),
            str(tmp_path / "m.pt"),
            "--encoder",
            "resnet18",
            "--epochs",
            "1",
            "--tile",
            "64",
            "--batch-size",
            "2",
            "--steps-per-epoch",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert (tmp_path / "m.pt").is_file() and len(result.history) == 1


def test_cluster_run(scan_zarr, checkpoint, tmp_path):
    summary = load("cluster_run").main(
        [
            str(scan_zarr / "image"),
            str(checkpoint),
            "--out",
            str(tmp_path / "c.zarr"),
            "--workers",
            "2",
            "--gpus",
            "0",
            "--tile",
            "64",
        ]
    )
    assert summary["chunks_computed"] >= 1


def test_evaluate_and_report(scan_zarr, checkpoint, tmp_path):
    import volseg

    out = tmp_path / "o.zarr"
    volseg.segment(
        str(scan_zarr / "image"), model=checkpoint, out=out, tile=64, device="cpu", progress=False
    )
    summary = load("evaluate_and_report").main(
        [str(out), str(scan_zarr / "labels"), "--html", str(tmp_path / "r.html")]
    )
    assert "baseline" in summary and (tmp_path / "r.html").stat().st_size > 10000


def test_napari_layers(scan_zarr, checkpoint, tmp_path, capsys):
    import volseg

    out = tmp_path / "o.zarr"
    volseg.segment(
        str(scan_zarr / "image"), model=checkpoint, out=out, tile=64, device="cpu", progress=False
    )
    built = load("napari_view").main([str(scan_zarr / "image"), str(out), "--check"])
    (image, image_meta, _), (mask, _, kind) = built
    assert kind == "labels" and mask.shape == image.shape
    np.testing.assert_array_equal(mask.compute(), zarr.open(str(out / "mask"), mode="r")[...])
    assert image_meta["contrast_limits"][0] < image_meta["contrast_limits"][1]
