"""dask.distributed runs: same result as local, model loaded once per worker, dead workers
and a killed client process do not change the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import volseg
from volseg import cluster
from volseg import io as vio

distributed = pytest.importorskip("distributed")

RUN = {"tile": 64, "overlap": 0.25, "progress": False}


@pytest.fixture(scope="module")
def client():
    client = cluster.local(n_workers=2, gpus=0, dashboard_address=None)
    yield client
    client.close()
    client.cluster.close()


@pytest.fixture(scope="module")
def big_scan(tmp_path_factory):
    """A scan with many small chunks, so a run lasts long enough to be interrupted."""
    path = tmp_path_factory.mktemp("big") / "scan.zarr"
    volseg.synth.write_anode(path, (8, 192, 192), seed=4, chunks=(1, 96, 96), grain_sigma=4.0)
    return path


def _done(out) -> np.ndarray:
    """Blocks whose record is stored (what a resume would skip)."""
    from volseg import io as vio

    try:
        return vio.listed_records(vio.open_output(out))
    except Exception:  # not created yet
        return np.zeros(0, dtype=bool)


def _wait_until(predicate, timeout=120.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_distributed_equals_local_and_loads_model_once_per_worker(
    client, scan_zarr, checkpoint, tmp_path
):
    local = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "l.zarr",
        chunks=(1, 45, 55),
        device="cpu",
        **RUN,
    )
    remote = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "d.zarr",
        chunks=(1, 45, 55),
        device="auto",
        client=client,
        **RUN,
    )
    np.testing.assert_array_equal(remote.mask[...], local.mask[...])
    assert remote.summary["chunks_computed"] == 5 * 2 * 2

    def cached_models():
        from volseg.model.predict import models_in_cache

        return models_in_cache()

    loads = client.run(cached_models)
    assert all(n <= 1 for n in loads.values()), loads  # once per process, not per task
    assert sum(loads.values()) >= 1


def test_task_arguments_do_not_carry_the_weights(scan_zarr, checkpoint):
    import pickle

    from volseg.inference.block import BlockRun
    from volseg.inference.settings import SegmentSettings

    settings = BlockRun(
        settings=SegmentSettings(
            shape=(5, 90, 110), tile=64, overlap=0.25, batch_size=16, threshold=0.5, ni_label=1
        ),
        model_path=str(checkpoint),
        model_sha256="0" * 64,
        normalisation={"low": 0, "high": 1},
        scan_name="scan",
    )
    assert len(pickle.dumps(settings)) < 4096 < checkpoint.stat().st_size


def test_in_memory_output_is_refused_with_a_cluster(client, anode_arrays, checkpoint):
    image, _ = anode_arrays
    with pytest.raises(ValueError, match="every worker can reach"):
        volseg.segment(image, model=checkpoint, client=client, **RUN)


def test_killed_worker_does_not_change_the_result(client, big_scan, checkpoint, tmp_path):
    reference = volseg.segment(
        str(big_scan / "image"),
        model=checkpoint,
        out=tmp_path / "ref.zarr",
        device="cpu",
        chunks=(1, 96, 96),
        **RUN,
    )
    out = tmp_path / "killed.zarr"
    outcome = {}

    def run():
        try:
            outcome["result"] = volseg.segment(
                str(big_scan / "image"),
                model=checkpoint,
                out=out,
                client=client,
                chunks=(1, 96, 96),
                **RUN,
            )
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    pids = client.run(os.getpid)
    thread = threading.Thread(target=run)
    thread.start()
    assert _wait_until(lambda: _done(out).sum() >= 2), "the run never started"
    victim_address, victim_pid = sorted(pids.items())[0]
    assert _done(out).sum() < _done(out).size, "finished before the kill: make the scan bigger"
    os.kill(victim_pid, signal.SIGKILL)  # really kill the worker process mid-run
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert _done(out).all()
    np.testing.assert_array_equal(outcome["result"].mask[...], reference.mask[...])
    assert vio.open_output(out).attrs["status"] == "complete"
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it


def test_killed_client_process_resumes_only_missing_chunks(big_scan, checkpoint, tmp_path):
    reference = volseg.segment(
        str(big_scan / "image"),
        model=checkpoint,
        out=tmp_path / "ref.zarr",
        device="cpu",
        chunks=(1, 96, 96),
        **RUN,
    )
    out = tmp_path / "crashed.zarr"
    command = [
        sys.executable,
        "-m",
        "volseg.cli",
        "segment",
        str(big_scan / "image"),
        "--model",
        str(checkpoint),
        "--out",
        str(out),
        "--tile",
        "64",
        "--chunks",
        "1",
        "96",
        "96",
        "--device",
        "cpu",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = _wait_until(lambda: _done(out).sum() >= 3 or process.poll() is not None)
        assert started and process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    done_before = int(_done(out).sum())
    total = _done(out).size
    assert 0 < done_before < total
    assert vio.open_output(out).attrs["status"] == "running"
    resumed = volseg.segment(
        str(big_scan / "image"),
        model=checkpoint,
        out=out,
        device="cpu",
        chunks=(1, 96, 96),
        resume=True,
        **RUN,
    )
    assert resumed.summary["chunks_computed"] == total - done_before
    assert resumed.summary["chunks_skipped"] == done_before
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])


def test_connect_to_a_missing_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="could not reach the dask scheduler"):
        cluster.connect("tcp://127.0.0.1:9", timeout=2)


def test_cli_segment_on_a_local_cluster(scan_zarr, checkpoint, tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "cli.zarr"
    code = main(
        [
            "segment",
            str(scan_zarr / "image"),
            "--model",
            str(checkpoint),
            "--out",
            str(out),
            "--tile",
            "64",
            "--cluster",
            "local",
            "--workers",
            "2",
            "--gpus",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    local = volseg.segment(
        str(scan_zarr / "image"), model=checkpoint, out=tmp_path / "l.zarr", device="cpu", **RUN
    )
    np.testing.assert_array_equal(zarr.open(str(out / "mask"), mode="r")[...], local.mask[...])


def test_repeated_runs_on_one_client_each_compute_their_chunks(
    client, scan_zarr, checkpoint, tmp_path
):
    """Same model, same chunks, twice on one cluster: the second run must not be mistaken
    for the first (task keys are unique per run) and must write its own output."""
    results = [
        volseg.segment(
            str(scan_zarr / "image"),
            model=checkpoint,
            out=tmp_path / f"r{i}.zarr",
            chunks=(5, 45, 55),
            client=client,
            **RUN,
        )
        for i in range(2)
    ]
    for result in results:
        assert result.summary["chunks_computed"] == 4
        assert _done(tmp_path / Path(result.path).name).all()
    np.testing.assert_array_equal(results[0].mask[...], results[1].mask[...])
