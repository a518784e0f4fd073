"""A hostile user on the command line: every case ends in exit status 2 with a message that
names the input and the fix, and no file of the input changes (checksums before and after).

Each case here once ended in a wrong result with exit status 0, in lost data, or in a raw
traceback (issue 14).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from volseg import io as vio
from volseg import synth
from volseg.cli import main
from volseg.inference import block as vblock

FAST = ["--no-progress", "--device", "cpu", "--tile", "64"]
CHUNKS = ["--chunks", "2", "32", "32"]  # 8 blocks of the 4 x 64 x 64 scan


def checksums(*paths) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (a deleted or added file changes the dict)."""
    sums = {}
    for root in map(Path, paths):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            sums[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def refused(argv, inputs, phrases, capsys, status=2):
    """Run the CLI; assert the status, the phrases in its one-line error, and unchanged inputs."""
    before = checksums(*inputs)
    assert before, "the case must have input files to watch"
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == status, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines and lines[-1].startswith(f"volseg {argv[0]}: error: "), captured.err
    for phrase in phrases:
        assert phrase in lines[-1], (phrase, lines[-1])
    assert checksums(*inputs) == before
    return lines[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, checkpoint):
    """A scan (4 x 64 x 64 in 2 x 32 x 32 chunks) with labels and a complete output."""
    root = tmp_path_factory.mktemp("hostile")
    synth.write_anode(root / "scan.zarr", shape=(4, 64, 64), seed=1, chunks=(2, 32, 32))
    code = main(
        [
            "segment",
            str(root / "scan.zarr" / "image"),
            "--model",
            str(checkpoint),
            "--out",
            str(root / "done.zarr"),
            "--chunks",
            "2",
            "32",
            "32",
            *FAST,
        ]
    )
    assert code == 0
    return root, checkpoint


@pytest.fixture()
def scan(world, tmp_path):
    """A private copy of the scan group (tests may damage it)."""
    root, _ = world
    shutil.copytree(root / "scan.zarr", tmp_path / "scan.zarr")
    return tmp_path / "scan.zarr"


@pytest.fixture()
def incomplete(world, tmp_path):
    """A copy of the complete output with 3 of its 8 chunks not done, status running."""
    root, _ = world
    out = tmp_path / "part.zarr"
    shutil.copytree(root / "done.zarr", out)
    output = vio.open_output(out, mode="r+")
    for index in ((0, 0, 0), (1, 1, 0), (1, 1, 1)):
        output.clear_done(index)
    output.update_attrs(status="running")
    return out


# ---------------------------------------------------------------- overwrite never deletes inputs


def test_convert_onto_its_own_input_is_refused(scan, capsys):
    refused(
        ["convert", scan, scan, "--overwrite", "--no-progress"],
        [scan],
        [str(scan), "input", "choose another"],
        capsys,
    )


def test_convert_into_a_folder_that_holds_the_input_is_refused(scan, capsys):
    refused(
        ["convert", scan / "image", scan, "--overwrite", "--no-progress"],
        [scan],
        [str(scan), "choose another"],
        capsys,
    )


def test_segment_overwrite_never_deletes_a_truth_inside_the_output(world, tmp_path, capsys):
    root, model = world
    out = tmp_path / "o.zarr"
    shutil.copytree(root / "done.zarr", out)
    manual = np.zeros((4, 64, 64), np.uint8)
    manual[:, :32] = 1
    vio.write_arrays(out / "manual", {"labels": manual}, chunks=(4, 64, 64))
    refused(
        [
            "segment",
            root / "scan.zarr" / "image",
            "--model",
            model,
            "--out",
            out,
            "--truth",
            out / "manual",
            "--overwrite",
            *FAST,
        ],
        [out],
        ["truth", str(out / "manual"), "choose another"],
        capsys,
    )


def test_segment_into_the_scan_group_is_refused(scan, world, capsys):
    _, model = world
    refused(
        ["segment", scan / "image", "--model", model, "--out", scan / "seg.zarr", *FAST],
        [scan],
        ["scan", str(scan), "choose another"],
        capsys,
    )


# ---------------------------------------------------------------- TIFF stacks


def _tiff_folder(path: Path, shapes, dtypes=None) -> Path:
    path.mkdir()
    for i, shape in enumerate(shapes):
        dtype = (dtypes or ["uint16"] * len(shapes))[i]
        tifffile.imwrite(path / f"s{i:03d}.tif", np.full(shape, i + 1, dtype=dtype))
    return path


@pytest.mark.parametrize(
    "shapes,dtypes,bad,phrase",
    [
        ([(32, 32), (32, 32), (30, 32)], None, "s002.tif", "(30, 32)"),
        ([(32, 32), (32, 40), (32, 32)], None, "s001.tif", "(32, 40)"),
        ([(32, 32), (32, 32)], ["uint16", "float32"], "s001.tif", "float32"),
    ],
)
def test_tiff_slices_that_differ_name_the_first_bad_file(
    tmp_path, shapes, dtypes, bad, phrase, capsys
):
    folder = _tiff_folder(tmp_path / "slices", shapes, dtypes)
    refused(
        ["convert", folder, tmp_path / "c.zarr", "--no-progress", "--levels", "1"],
        [folder],
        [bad, phrase, "s000.tif"],
        capsys,
    )
    assert not (tmp_path / "c.zarr").exists()


def test_truncated_tiff_slice_is_named(tmp_path, capsys):
    folder = _tiff_folder(tmp_path / "slices", [(64, 64)] * 3)
    data = (folder / "s001.tif").read_bytes()
    (folder / "s001.tif").write_bytes(data[: len(data) // 2])
    refused(
        ["convert", folder, tmp_path / "c.zarr", "--no-progress", "--levels", "1"],
        [folder],
        ["s001.tif"],
        capsys,
    )


# ---------------------------------------------------------------- incomplete outputs


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["measure"],
        ["report", "--no-measures"],
    ],
)
def test_readers_refuse_an_incomplete_output(incomplete, command, capsys, tmp_path):
    argv = [command[0], incomplete, *command[1:]]
    if command[0] == "report":
        argv += ["--html", tmp_path / "r.html", "--png-dir", tmp_path / "png"]
    refused(argv, [incomplete], [str(incomplete), "3 of 8 chunks", "--resume"], capsys)


def test_evaluate_refuses_an_incomplete_output(incomplete, world, capsys):
    root, _ = world
    refused(
        ["evaluate", incomplete, root / "scan.zarr" / "labels", "--baseline", "none"],
        [incomplete],
        [str(incomplete), "3 of 8 chunks", "--resume", "--allow-incomplete"],
        capsys,
    )


def test_allow_incomplete_excludes_missing_chunks(incomplete, world, capsys):
    root, _ = world
    assert main(["stats", str(incomplete), "--allow-incomplete"]) == 0
    out = capsys.readouterr().out
    assert "chunks_missing" in out and "3" in out
    done = vio.open_output(incomplete)
    assert (
        main(
            [
                "evaluate",
                str(incomplete),
                str(root / "scan.zarr" / "labels"),
                "--baseline",
                "none",
                "--allow-incomplete",
                "--no-write",
            ]
        )
        == 0
    )
    from volseg.evaluation import evaluate

    result = evaluate(
        incomplete,
        root / "scan.zarr" / "labels",
        baseline="none",
        write=False,
        allow_incomplete=True,
    )
    # Only the 5 done chunks (2 x 32 x 32 voxels each) are scored.
    counted = sum(result.summary[k] for k in ("tp", "fp", "fn", "tn"))
    assert counted == 5 * 2 * 32 * 32
    assert result.summary["chunks_missing"] == 3
    assert len(result.chunks) == 5
    # Per-slice counts leave the missing chunks out as well.
    per_slice = result.slices[["tp", "fp", "fn", "tn"]].to_numpy().sum()
    assert per_slice == counted
    assert done.attrs["status"] == "running"


def test_open_result_refuses_an_incomplete_output(incomplete):
    import volseg

    with pytest.raises(ValueError, match="3 of 8 chunks are not done"):
        volseg.open_result(incomplete)
    result = volseg.open_result(incomplete, allow_incomplete=True)
    assert len(result.stats) == 5
    assert result.summary["chunks_missing"] == 3


# ---------------------------------------------------------------- damaged scans


def test_missing_scan_chunk_is_an_error_naming_it(scan, world, tmp_path, capsys):
    _, model = world
    (scan / "image" / "c" / "1" / "0" / "1").unlink()
    argv = ["segment", scan / "image", "--model", model, "--out", tmp_path / "o.zarr", *FAST]
    refused(argv, [scan], ["c/1/0/1", "--allow-missing-chunks", str(scan / "image")], capsys)
    assert main([str(a) for a in argv] + ["--allow-missing-chunks", "--overwrite"]) == 0


def test_corrupt_scan_chunk_names_array_and_key(scan, world, tmp_path, capsys):
    _, model = world
    chunk = scan / "image" / "c" / "0" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:20])
    refused(
        ["segment", scan / "image", "--model", model, "--out", tmp_path / "o.zarr", *FAST],
        [scan],
        [str(scan / "image"), "c/0/1/1", "corrupt"],
        capsys,
    )


def test_corrupt_zarr_json_in_a_group(scan, world, tmp_path, capsys):
    _, model = world
    (scan / "image" / "zarr.json").write_text("{not json")
    refused(
        ["segment", scan, "--model", model, "--out", tmp_path / "o.zarr", *FAST],
        [scan],
        [str(scan), "zarr.json"],
        capsys,
    )


# ---------------------------------------------------------------- models and training


def test_checkpoint_with_nan_weights_is_refused(world, tmp_path, capsys):
    root, model = world
    payload = torch.load(model, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = payload["state_dict"][name].clone().fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(payload, bad)
    refused(
        [
            "segment",
            root / "scan.zarr" / "image",
            "--model",
            bad,
            "--out",
            tmp_path / "o.zarr",
            *FAST,
        ],
        [bad],
        [str(bad), "not finite", name],
        capsys,
    )
    assert not (tmp_path / "o.zarr").exists()


def test_checkpoint_config_not_a_mapping(world, tmp_path, capsys):
    root, model = world
    payload = torch.load(model, weights_only=True)
    payload["config"] = ["unet", "resnet18"]
    bad = tmp_path / "list.pt"
    torch.save(payload, bad)
    refused(
        ["segment", root / "scan.zarr" / "image", "--model", bad, *FAST],
        [bad],
        [str(bad), "config"],
        capsys,
    )


TRAIN = [
    "--epochs", "1", "--tile", "64", "--device", "cpu", "--no-progress", "--encoder",
    "resnet18", "--encoder-depth", "3", "--decoder-channels", "8", "8", "8",
]  # fmt: skip


@pytest.mark.parametrize("steps", ["-3", "0"])
def test_train_refuses_steps_per_epoch_below_one(world, tmp_path, steps, capsys):
    root, _ = world
    refused(
        [
            "train",
            root / "scan.zarr",
            "--out",
            tmp_path / "m.pt",
            "--steps-per-epoch",
            steps,
            *TRAIN,
        ],
        [root / "scan.zarr"],
        ["steps_per_epoch", steps],
        capsys,
    )
    assert not (tmp_path / "m.pt").exists()


def test_train_into_a_folder_fails_before_training(world, tmp_path, capsys):
    root, _ = world
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    refused(
        ["train", root / "scan.zarr", "--out", folder, "--overwrite", *TRAIN],
        [folder],
        [str(folder), "folder"],
        capsys,
    )
    assert not list(tmp_path.glob("*.partial"))


def test_negative_decoder_channels(world, tmp_path, capsys):
    root, _ = world
    argv = ["train", root / "scan.zarr", "--out", tmp_path / "m.pt", *TRAIN[:-3], "8", "-8", "8"]
    refused(argv, [root / "scan.zarr"], ["decoder_channels", "-8"], capsys)


# ---------------------------------------------------------------- truths and labels


def test_truth_without_the_ni_label_names_its_values(world, tmp_path, capsys):
    root, model = world
    labels = zarr.open_array(str(root / "scan.zarr" / "labels"), mode="r")[...]
    truth = tmp_path / "mask.zarr"
    vio.write_arrays(
        truth, {"m": np.where(labels == 2, 255, 0).astype(np.uint8)}, chunks=(2, 64, 64)
    )
    refused(
        [
            "segment",
            root / "scan.zarr" / "image",
            "--model",
            model,
            "--truth",
            truth,
            "--out",
            tmp_path / "o.zarr",
            *FAST,
        ],
        [truth],
        [str(truth), "no voxel", "0, 255", "--ni-label"],
        capsys,
    )
    refused(
        ["evaluate", root / "done.zarr", truth, "--baseline", "none", "--no-write"],
        [truth],
        [str(truth), "0, 255", "--ni-label"],
        capsys,
    )


def test_three_phase_truth_without_attrs_is_ambiguous(world, tmp_path, capsys):
    root, _ = world
    labels = zarr.open_array(str(root / "scan.zarr" / "labels"), mode="r")[...]
    truth = tmp_path / "plain.zarr"
    vio.write_arrays(truth, {"labels": labels}, chunks=(2, 64, 64))
    refused(
        ["evaluate", root / "done.zarr", truth, "--baseline", "none", "--no-write"],
        [truth],
        [str(truth), "0, 1, 2", "--ni-label"],
        capsys,
    )


@pytest.mark.parametrize(
    "argv,phrase",
    [
        (["evaluate", "{out}", "{labels}", "--ni-label", "-5", "--baseline", "none"], "-5"),
        (["measure", "{out}", "--label", "-1"], "-1"),
        (["measure", "{out}", "--label", "nan"], "nan"),
    ],
)
def test_invalid_label_values_are_refused(world, argv, phrase, capsys):
    root, _ = world
    argv = [a.format(out=root / "done.zarr", labels=root / "scan.zarr" / "labels") for a in argv]
    before = checksums(root / "done.zarr", root / "scan.zarr")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert phrase in err and "label" in err
    assert checksums(root / "done.zarr", root / "scan.zarr") == before


# ---------------------------------------------------------------- files that reports write


def test_report_does_not_replace_a_file_without_overwrite(world, tmp_path, capsys):
    root, _ = world
    page = tmp_path / "existing.html"
    page.write_text("my notes")
    refused(
        [
            "report",
            root / "done.zarr",
            "--html",
            page,
            "--no-measures",
            "--png-dir",
            tmp_path / "png",
        ],
        [page],
        [str(page), "--overwrite"],
        capsys,
    )
    assert main([
        "report", str(root / "done.zarr"), "--html", str(page), "--no-measures",
        "--png-dir", str(tmp_path / "png"), "--overwrite",
    ]) == 0  # fmt: skip
    assert page.read_text() != "my notes"


def test_report_html_naming_a_folder(world, tmp_path, capsys):
    root, _ = world
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    refused(
        ["report", root / "done.zarr", "--html", folder, "--no-measures", "--overwrite"],
        [folder],
        [str(folder), "folder"],
        capsys,
    )


def test_stats_csv_into_a_missing_folder_or_over_a_file(world, tmp_path, capsys):
    root, _ = world
    refused(
        ["stats", root / "done.zarr", "--csv", tmp_path / "no" / "such" / "t.csv"],
        [root / "done.zarr"],
        [str(tmp_path / "no" / "such"), "does not exist"],
        capsys,
    )
    table = tmp_path / "t.csv"
    table.write_text("keep")
    refused(
        ["stats", root / "done.zarr", "--csv", table], [table], [str(table), "--overwrite"], capsys
    )


# ---------------------------------------------------------------- options


def test_local_cluster_with_negative_workers(world, capsys):
    root, model = world
    refused(
        [
            "segment",
            root / "scan.zarr" / "image",
            "--model",
            model,
            "--cluster",
            "local",
            "--workers",
            "-2",
            *FAST,
        ],
        [root / "scan.zarr"],
        ["workers", "-2"],
        capsys,
    )


def test_synth_with_a_zero_chunk(tmp_path, capsys):
    code = main(
        ["synth", str(tmp_path / "s.zarr"), "--shape", "2", "8", "8", "--chunks", "0", "1", "1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "chunks" in err and "Traceback" not in err
    assert not (tmp_path / "s.zarr").exists()


def test_overlap_that_multiplies_the_work_is_refused(world, tmp_path, capsys):
    root, model = world
    line = refused(
        [
            "segment",
            root / "scan.zarr" / "image",
            "--model",
            model,
            "--out",
            tmp_path / "o.zarr",
            "--overlap",
            "0.99",
            *FAST,
        ],
        [root / "scan.zarr"],
        ["overlap=0.99", "model pixels per output pixel"],
        capsys,
    )
    assert "smaller" in line
    assert not (tmp_path / "o.zarr").exists()


def test_relative_scan_path_is_recorded_absolute(world, tmp_path, monkeypatch, capsys):
    root, model = world
    monkeypatch.chdir(root)
    out = tmp_path / "rel.zarr"
    assert (
        main(["segment", "scan.zarr/image", "--model", str(model), "--out", str(out), *FAST]) == 0
    )
    assert vio.open_output(out).attrs["input"] == str((root / "scan.zarr" / "image").resolve())
    monkeypatch.chdir(tmp_path)
    html = tmp_path / "r.html"
    assert main(["report", str(out), "--html", str(html), "--no-measures"]) == 0
    assert html.exists()
    # The same relative command resumes the run (the recorded path is compared resolved).
    monkeypatch.chdir(root)
    assert main(["segment", "scan.zarr/image", "--model", str(model), "--out", str(out),
                 "--resume", *FAST]) == 0  # fmt: skip


# ---------------------------------------------------------------- two writers


def _lease(out, pid, host=None, age=0.0):
    import json
    import socket
    import time

    now = time.time()
    record = {
        "host": host or socket.gethostname(),
        "pid": pid,
        "started": now - age - 5,
        "heartbeat": now - age,
        "token": "someone-else",
    }
    (out / vio.LEASE_NAME).write_text(json.dumps(record))


def test_a_second_run_on_a_live_output_is_refused(world, tmp_path, capsys):
    import subprocess
    import sys

    root, model = world
    out = tmp_path / "o.zarr"
    shutil.copytree(root / "done.zarr", out)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _lease(out, writer.pid)
        argv = ["segment", root / "scan.zarr" / "image", "--model", model, "--out", out, *FAST,
                "--chunks", "2", "32", "32"]  # fmt: skip
        for flag in ("--overwrite", "--resume"):
            refused(
                [*argv, flag],
                [out],
                [str(out), f"process {writer.pid}", "is being written", "--resume"],
                capsys,
            )
    finally:
        writer.kill()
        writer.wait()
    # Its process is gone: --resume takes the lease over, finishes, and lets it go.
    assert main([str(a) for a in argv] + ["--resume"]) == 0
    assert not (out / vio.LEASE_NAME).exists()


def test_a_lease_without_heartbeat_is_taken_over(world, tmp_path, capsys):

    root, model = world
    out = tmp_path / "o.zarr"
    shutil.copytree(root / "done.zarr", out)
    argv = ["segment", str(root / "scan.zarr" / "image"), "--model", str(model), "--out",
            str(out), *FAST, "--chunks", "2", "32", "32", "--resume"]  # fmt: skip
    _lease(out, 12345, host="another-node")  # fresh heartbeat on another host: live
    refused(argv, [out], ["another-node", "is being written"], capsys)
    _lease(out, 12345, host="another-node", age=vio.LEASE_TIMEOUT + 60)
    assert main(argv) == 0
    assert not (out / vio.LEASE_NAME).exists()


def test_a_run_holds_its_lease_and_lets_it_go_on_failure(world, tmp_path, monkeypatch):
    import json
    import os

    root, model = world
    out = tmp_path / "o.zarr"
    seen = []
    original = vblock.segment_block

    def failing(block, *args):
        seen.append(json.loads((out / vio.LEASE_NAME).read_text()))
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(vblock, "segment_block", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        main(["segment", str(root / "scan.zarr" / "image"), "--model", str(model), "--out",
              str(out), *FAST])  # fmt: skip
    assert seen and seen[0]["pid"] == os.getpid()
    assert not (out / vio.LEASE_NAME).exists()
    monkeypatch.setattr(vblock, "segment_block", original)


def test_measure_and_report_of_an_incomplete_output_say_so(incomplete, tmp_path, capsys):
    import json

    import volseg

    done = volseg.open_result(incomplete, allow_incomplete=True).stats
    target = tmp_path / "m.json"
    assert main(["measure", str(incomplete), "--allow-incomplete", "--json", str(target)]) == 0
    values = json.loads(target.read_text())
    assert values["chunks_missing"] == 3
    assert values["voxels_measured"] == int(done["voxels"].sum())
    assert values["volume_fraction"] == pytest.approx(
        done["ni_voxels"].sum() / done["voxels"].sum()
    )
    assert values["n_components"] is None and "not done" in values["note"]
    html = tmp_path / "r.html"
    argv = ["report", str(incomplete), "--allow-incomplete", "--html", str(html)]
    assert main([*argv, "--png-dir", str(tmp_path / "png")]) == 0
    assert "chunks_missing" in html.read_text()


def test_physical_min_size_without_a_voxel_size_is_refused_before_any_chunk(
    world, tmp_path, capsys
):
    root, checkpoint = world
    out = tmp_path / "ms.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, "--out", out]
    refused([*argv, "--min-size", "0.5um3", *FAST], [root / "scan.zarr"], ["unit"], capsys)
    assert not out.exists()  # nothing computed, nothing left 'running'


def test_resume_with_another_min_size_is_refused(world, tmp_path, capsys):
    root, checkpoint = world
    out = tmp_path / "ms.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, "--out", out, *FAST]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    refused([*argv, "--resume", "--min-size", "5"], [root / "scan.zarr"], ["min_size"], capsys)


def clean_up_dies_half_way(monkeypatch, error):
    """The clean-up of the next run rewrites one chunk of the mask, then ``error`` ends it."""
    from volseg.microstructure import cleanup

    def dies(sources, targets, **kwargs):
        targets[-1][0:2, 0:32, 0:32] = 0
        raise error

    monkeypatch.setattr(cleanup.da, "store", dies)


def assert_cleaned_as_a_fresh_run(argv, out, fresh, min_size):
    """``out`` holds the mask that a fresh run with ``min_size`` writes to ``fresh``."""
    assert main([str(a) for a in [*argv, "--out", fresh, "--min-size", str(min_size)]]) == 0
    np.testing.assert_array_equal(vio.open_output(out).mask[...], vio.open_output(fresh).mask[...])


def test_a_refused_min_size_leaves_the_segmentation_to_clean_with_another(
    world, tmp_path, capsys, caplog
):
    """The refusal comes after the last chunk: resuming with a valid min_size must not
    segment again, and must clean exactly as a fresh run with that min_size does."""
    root, checkpoint = world
    out, fresh = tmp_path / "ms.zarr", tmp_path / "fresh.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, *CHUNKS, *FAST]
    message = refused(
        [*argv, "--out", out, "--min-size", "100000000"],
        [root / "scan.zarr"],
        ["would remove every component", "--resume", "segmented and unchanged"],
        capsys,
    )
    assert "min_size=100000000" in message
    attrs = vio.open_output(out).attrs
    assert attrs["status"] == "running" and attrs["cleanup"]["state"] == "refused"
    with caplog.at_level(logging.INFO, logger="volseg"):
        assert main([str(a) for a in [*argv, "--out", out, "--resume", "--min-size", "5"]]) == 0
    assert "0 of 8 chunks to compute" in caplog.text
    assert_cleaned_as_a_fresh_run(argv, out, fresh, 5)
    resumed = vio.open_output(out)
    assert resumed.attrs["status"] == "complete"
    assert resumed.attrs["parameters"]["min_size"] == 5
    assert resumed.attrs["cleanup"] == {"min_size": 5, "state": "done"}
    # once cleaned, another min_size is refused again (the voxels have moved)
    capsys.readouterr()
    refused([*argv, "--out", out, "--resume", "--min-size", "7"], [out], ["min_size"], capsys)


def test_a_clean_up_killed_while_writing_segments_again_on_resume(
    world, tmp_path, monkeypatch, caplog
):
    """Half-cleaned chunks are not a segmentation to clean again: every chunk is redone."""
    root, checkpoint = world
    out, fresh = tmp_path / "ms.zarr", tmp_path / "fresh.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, *CHUNKS, *FAST]
    with monkeypatch.context() as patch:
        clean_up_dies_half_way(patch, KeyboardInterrupt)  # killed
        assert main([str(a) for a in [*argv, "--out", out, "--min-size", "5"]]) == 130
    assert vio.open_output(out).attrs["cleanup"]["state"] == "writing"
    resume = [str(a) for a in [*argv, "--out", out, "--resume", "--min-size", "5"]]
    with caplog.at_level(logging.INFO, logger="volseg"):
        assert main(resume) == 0
    assert "interrupted while rewriting chunks" in caplog.text
    assert "8 of 8 chunks to compute" in caplog.text
    assert_cleaned_as_a_fresh_run(argv, out, fresh, 5)
    assert vio.open_output(out).attrs["cleanup"]["state"] == "done"


def test_an_error_while_rewriting_is_not_taken_for_a_refused_min_size(
    world, tmp_path, monkeypatch, capsys
):
    """A ValueError after voxels moved leaves the record 'writing': another min_size is
    refused, and the same one segments every chunk again."""
    root, checkpoint = world
    out, fresh = tmp_path / "ms.zarr", tmp_path / "fresh.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, *CHUNKS, *FAST]
    with monkeypatch.context() as patch:
        clean_up_dies_half_way(patch, ValueError("disk full"))
        message = refused(
            [*argv, "--out", out, "--min-size", "5"], [root / "scan.zarr"], [], capsys
        )
    assert "disk full" in message and "unchanged" not in message
    assert vio.open_output(out).attrs["cleanup"]["state"] == "writing"
    refused([*argv, "--out", out, "--resume", "--min-size", "7"], [out], ["min_size"], capsys)
    assert main([str(a) for a in [*argv, "--out", out, "--resume", "--min-size", "5"]]) == 0
    assert_cleaned_as_a_fresh_run(argv, out, fresh, 5)


def test_an_older_output_with_a_min_size_and_no_clean_up_record_is_not_trusted(
    world, tmp_path, capsys, caplog
):
    """Outputs written before the clean-up was recorded: when every chunk is done, the
    clean-up may have started, so another min_size is refused and every chunk is redone."""
    root, checkpoint = world
    out, fresh = tmp_path / "ms.zarr", tmp_path / "fresh.zarr"
    argv = ["segment", root / "scan.zarr" / "image", "--model", checkpoint, *CHUNKS, *FAST]
    assert main([str(a) for a in [*argv, "--out", out, "--min-size", "5"]]) == 0
    output = vio.open_output(out, mode="r+")
    output.mask[0:2, 0:32, 0:32] = 0  # what a clean-up killed half way may leave
    record = dict(output.attrs)
    del record["cleanup"]
    output.group.attrs["volseg"] = {**record, "status": "running"}
    capsys.readouterr()
    refused([*argv, "--out", out, "--resume", "--min-size", "7"], [out], ["min_size"], capsys)
    with caplog.at_level(logging.INFO, logger="volseg"):
        assert main([str(a) for a in [*argv, "--out", out, "--resume", "--min-size", "5"]]) == 0
    assert "8 of 8 chunks to compute" in caplog.text
    assert_cleaned_as_a_fresh_run(argv, out, fresh, 5)


def test_measure_a_label_the_volume_does_not_hold_is_refused(world, capsys):
    root, _ = world
    labels = root / "scan.zarr" / "labels"
    refused(
        ["measure", labels, "--label", "5"], [root / "scan.zarr"], ["label=5", "0, 1, 2"], capsys
    )
