"""The output format (volseg.io): one record per block, a consolidated table, shards,
resume from the records after a killed client, and older outputs still readable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import volseg
from volseg import io as vio
from volseg.cli import main
from volseg.io import create, records

from .conftest import layout1

RUN = {"tile": 64, "device": "cpu", "progress": False}


def stored_files(path, under=""):
    root = path / under if under else path
    return [p for p in root.rglob("*") if p.is_file() and p.name != "zarr.json"]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "scan.zarr"
    volseg.synth.write_anode(path, (4, 96, 128), seed=5, chunks=(1, 32, 32), grain_sigma=4.0)
    return path / "image"


@pytest.fixture(scope="module")
def plain(scan, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "o.zarr"
    return volseg.segment(str(scan), model=checkpoint, out=out, chunks=(1, 32, 32), **RUN)


def test_one_record_per_chunk_and_at_most_two_files_per_chunk(plain):
    out = Path(plain.path)
    n_chunks = len(plain.stats)
    assert n_chunks == 4 * 3 * 4
    assert len(stored_files(out, records.RECORDS)) == n_chunks
    assert len(stored_files(out, "mask")) == n_chunks
    # mask + record per chunk; the table is one object here.
    assert len(stored_files(out)) == 2 * n_chunks + 1
    assert not (out / "stats").exists()


def test_readers_of_a_complete_output_open_only_the_table(plain, monkeypatch):
    def no_listing(output):
        raise AssertionError("a complete output is read from its table alone")

    monkeypatch.setattr(records, "listed_records", no_listing)
    reopened = volseg.open_result(plain.path)
    assert reopened.stats["done"].all()
    np.testing.assert_array_equal(reopened.stats["ni_voxels"], plain.stats["ni_voxels"])


def test_shards_are_blocks_and_give_the_same_mask(scan, checkpoint, plain, tmp_path):
    out = tmp_path / "sharded.zarr"
    sharded = volseg.segment(
        str(scan), model=checkpoint, out=out, chunks=(1, 32, 32), shards=(2, 96, 64), **RUN
    )
    np.testing.assert_array_equal(sharded.mask[...], plain.mask[...])
    assert sharded.mask.chunks == (1, 32, 32) and sharded.mask.shards == (2, 96, 64)
    blocks = len(sharded.stats)
    assert blocks == 2 * 1 * 2
    assert len(stored_files(out, "mask")) == blocks  # one shard file per block
    assert len(stored_files(out)) == 2 * blocks + 1
    assert int(sharded.stats["ni_voxels"].sum()) == int(plain.stats["ni_voxels"].sum())


def test_shards_must_be_multiples_of_chunks(scan, checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"shards=\(2, 40, 64\) must be whole multiples"):
        volseg.segment(
            str(scan), model=checkpoint, out=tmp_path / "o.zarr", chunks=(1, 32, 32),
            shards=(2, 40, 64), **RUN,
        )  # fmt: skip


def test_sharded_run_resumes(scan, checkpoint, plain, tmp_path):
    out = tmp_path / "sharded.zarr"
    settings = {"chunks": (1, 32, 32), "shards": (2, 32, 64), **RUN}
    volseg.segment(str(scan), model=checkpoint, out=out, **settings)
    output = vio.open_output(out, mode="r+")
    output.clear_done((1, 2, 1))
    output.update_attrs(status="running")
    resumed = volseg.segment(str(scan), model=checkpoint, out=out, resume=True, **settings)
    assert resumed.summary["chunks_computed"] == 1
    np.testing.assert_array_equal(resumed.mask[...], plain.mask[...])


def test_resume_after_a_killed_client_uses_the_records(scan, checkpoint, plain, tmp_path):
    """The client died before writing its table: the records decide what is done."""
    out = tmp_path / "o.zarr"
    shutil.copytree(plain.path, out)
    output = vio.open_output(out, mode="r+")
    output.write_table(np.zeros_like(output.table[...]))  # never flushed
    for index in ((0, 0, 0), (3, 2, 3)):
        output.clear_done(index)  # never written
    half = out / records.RECORDS / "c.2.1.1.0"
    half.write_bytes(half.read_bytes()[:20])  # killed while writing this record
    output.update_attrs(status="running", summary=None)
    plan = records.load_table(output)
    done = plan[..., output.fields["done"]][..., 0] == 1
    assert int((~done).sum()) == 3 and not done[2, 1, 1]
    # The table's values come from the records.
    np.testing.assert_array_equal(
        plan[..., 0][done], np.asarray(plain.stats["ni_voxels"]).reshape(done.shape)[done]
    )
    resumed = volseg.segment(
        str(scan), model=checkpoint, out=out, chunks=(1, 32, 32), resume=True, **RUN
    )
    assert resumed.summary["chunks_computed"] == 3
    np.testing.assert_array_equal(resumed.mask[...], plain.mask[...])
    assert resumed.summary["ni_voxels"] == plain.summary["ni_voxels"]


def test_an_older_output_is_read_and_resumed(scan, checkpoint, plain, tmp_path, capsys):
    out = tmp_path / "old.zarr"
    shutil.copytree(plain.path, out)
    old = layout1(out)
    assert old.legacy
    reopened = volseg.open_result(out)
    np.testing.assert_array_equal(reopened.stats["ni_voxels"], plain.stats["ni_voxels"])
    assert main(["stats", str(out)]) == 0
    assert "ni_fraction" in capsys.readouterr().out
    old.clear_done((1, 1, 1))
    old.update_attrs(status="running")
    with pytest.raises(ValueError, match="1 of 48 chunks are not done"):
        volseg.open_result(out)
    resumed = volseg.segment(
        str(scan), model=checkpoint, out=out, chunks=(1, 32, 32), resume=True, **RUN
    )
    assert resumed.summary["chunks_computed"] == 1
    np.testing.assert_array_equal(resumed.mask[...], plain.mask[...])
    assert vio.open_output(out).legacy


def test_evaluate_writes_its_counts_into_the_table(plain, scan, tmp_path):
    out = tmp_path / "o.zarr"
    shutil.copytree(plain.path, out)
    truth = scan.parent / "labels"
    result = volseg.evaluate(out, truth, baseline="none")
    reopened = volseg.open_result(out)
    assert int(reopened.stats["tp"].sum()) == result.summary["tp"]
    assert len(stored_files(out)) == 2 * len(plain.stats) + 1  # no new stored objects


def test_cli_shards(scan, checkpoint, plain, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    argv = ["segment", str(scan), "--model", str(checkpoint), "--out", str(out), "--no-progress",
            "--device", "cpu", "--tile", "64", "--chunks", "1", "32", "32", "--shards", "4", "96",
            "128"]  # fmt: skip
    assert main(argv) == 0
    output = vio.open_output(out)
    assert output.mask.shards == (4, 96, 128) and output.chunks == (4, 96, 128)
    assert len(stored_files(out, "mask")) == 1
    np.testing.assert_array_equal(output.mask[...], plain.mask[...])


@pytest.mark.parametrize(
    "shards, chunks, shape",
    [
        ((4, 100, 100), (2, 50, 50), (7, 101, 75)),
        ((8, 200, 200), (2, 50, 50), (7, 101, 75)),
        ((8, 100, 256), (1, 64, 64), (100, 1000, 1000)),
    ],
)
def test_shards_refusal_names_the_axis_and_suggests_shards_that_work(shards, chunks, shape):
    with pytest.raises(ValueError) as info:
        create.validate_shards(shards, chunks, shape)
    message = str(info.value)
    suggested = tuple(int(v) for v in message.split("--shards ")[1].split(",")[0].split())
    assert create.validate_shards(suggested, chunks, shape) == suggested
    assert "is not a multiple of" in message
