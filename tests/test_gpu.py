"""GPU checks: run wherever CUDA is present, skipped (with the reason) elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import volseg
from volseg import cluster

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

RUN = {"tile": 64, "overlap": 0.25, "progress": False}


def test_segment_on_cuda_matches_cpu(scan_zarr, checkpoint, tmp_path):
    cpu = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "c.zarr",
        device="cpu",
        save_prob="float32",
        **RUN,
    )
    gpu = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "g.zarr",
        device="cuda",
        save_prob="float32",
        **RUN,
    )
    assert gpu.group.attrs["volseg"]["parameters"]["device"].startswith("cuda")
    # Half-precision autocast: probabilities close, masks differ only next to 0.5.
    np.testing.assert_allclose(gpu.prob[...], cpu.prob[...], atol=1e-2)
    differ = gpu.mask[...] != cpu.mask[...]
    assert differ.mean() < 1e-3
    assert np.all(np.abs(cpu.prob[...][differ] - 0.5) < 1e-2)


def test_gpu_chunk_invariance(scan_zarr, checkpoint, tmp_path):
    first = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "a.zarr",
        device="cuda",
        chunks=(5, 90, 110),
        save_prob="float32",
        **RUN,
    )
    second = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "b.zarr",
        device="cuda",
        chunks=(2, 33, 40),
        save_prob="float32",
        **RUN,
    )
    np.testing.assert_allclose(first.prob[...], second.prob[...], atol=2e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs at least two GPUs")
def test_multi_gpu_local_cluster(scan_zarr, checkpoint, tmp_path):
    client = cluster.local(gpus="auto", dashboard_address=None)
    try:
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == torch.cuda.device_count()
        assert all(w["resources"].get("GPU") == 1 for w in workers)
        result = volseg.segment(
            str(scan_zarr / "image"),
            model=checkpoint,
            out=tmp_path / "m.zarr",
            client=client,
            chunks=(1, 45, 55),
            save_prob="float32",
            **RUN,
        )
        devices = client.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
        assert len(set(devices.values())) == len(devices)  # each worker its own GPU
    finally:
        client.close()
        client.cluster.close()
    single = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "s.zarr",
        device="cuda",
        chunks=(1, 45, 55),
        save_prob="float32",
        **RUN,
    )
    np.testing.assert_allclose(result.prob[...], single.prob[...], atol=2e-3)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_precisions_stay_close_to_fp32(scan_zarr, checkpoint, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not support bf16")
    settings = {"device": "cuda", "tile": "auto", "progress": False, "save_prob": "float32"}
    scan = str(scan_zarr / "image")
    fp32 = volseg.segment(
        scan, model=checkpoint, out=tmp_path / "f.zarr", precision="fp32", **settings
    )
    other = volseg.segment(
        scan, model=checkpoint, out=tmp_path / "o.zarr", precision=precision, **settings
    )
    parameters = other.group.attrs["volseg"]["parameters"]
    assert (parameters["backend"], parameters["precision"]) == ("torch", precision)
    assert np.mean(other.mask[...] != fp32.mask[...]) < 1e-3


def test_cuda_auto_settings_are_chunk_invariant(scan_zarr, checkpoint, tmp_path):
    settings = {"device": "cuda", "progress": False, "save_prob": "float32"}
    first = volseg.segment(
        str(scan_zarr / "image"), model=checkpoint, out=tmp_path / "a.zarr", **settings
    )
    second = volseg.segment(
        str(scan_zarr / "image"),
        model=checkpoint,
        out=tmp_path / "b.zarr",
        chunks=(2, 33, 40),
        **settings,
    )
    # cuDNN may pick other kernels for other batch sizes: equal to half-precision tolerance.
    np.testing.assert_allclose(first.prob[...], second.prob[...], atol=2e-3)
