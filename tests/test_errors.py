"""Bad input: one clear sentence naming the input and what to do; nothing marked complete."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
import zarr

import volseg
from volseg import io as vio

RUN = {"tile": 64, "device": "cpu", "progress": False}


def test_missing_scan_path(tmp_path, checkpoint):
    missing = tmp_path / "missing.zarr"
    with pytest.raises(FileNotFoundError, match=r"scan '.*missing\.zarr' does not exist"):
        volseg.segment(str(missing), model=checkpoint, **RUN)
    assert not (tmp_path / "missing_ni.zarr").exists()


@pytest.mark.parametrize("shape", [(64, 64), (2, 3, 64, 64)])
def test_scan_not_3d(shape, checkpoint):
    with pytest.raises(ValueError, match=r"scan .* needs a 3D \(z, y, x\) volume"):
        volseg.segment(np.zeros(shape, np.uint16), model=checkpoint, **RUN)


@pytest.mark.parametrize("dtype", ["complex64", "U3", "bool", "datetime64[s]"])
def test_scan_non_numeric_dtype(dtype, checkpoint):
    with pytest.raises(
        ValueError, match=rf"has dtype {re.escape(str(np.dtype(dtype)))}.*not numeric"
    ):
        volseg.segment(np.zeros((2, 64, 64), dtype=dtype), model=checkpoint, **RUN)


def test_nan_in_scan_names_the_scan_and_leaves_output_running(tmp_path, checkpoint):
    image = np.full((4, 64, 96), 30000.0, dtype=np.float32)
    image[3, 10, 80] = np.nan
    scan = tmp_path / "float.zarr"
    zarr.create_array(str(scan), data=image, chunks=(2, 64, 48))
    out = tmp_path / "o.zarr"
    with pytest.raises(ValueError, match=r"float\.zarr' contains NaN or inf.*nan_to_num"):
        volseg.segment(str(scan), model=checkpoint, out=out, chunks=(2, 64, 48), **RUN)
    output = vio.open_output(out)
    assert output.attrs["status"] == "running"
    assert not output.read_stats()["done"][1].all()  # the NaN chunks are not marked done


def test_truth_of_another_shape(anode_arrays, checkpoint):
    image, labels = anode_arrays
    with pytest.raises(ValueError, match=r"truth .* has shape \(5, 90, 100\) but scan"):
        volseg.segment(image, model=checkpoint, truth=labels[:, :, :100], **RUN)


def test_truth_missing_path(anode_arrays, checkpoint, tmp_path):
    image, _ = anode_arrays
    with pytest.raises(FileNotFoundError, match=r"truth '.*labels\.zarr' does not exist"):
        volseg.segment(image, model=checkpoint, truth=tmp_path / "labels.zarr", **RUN)


def test_group_with_several_arrays_asks_for_a_name(tmp_path, checkpoint):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", shape=(2, 64, 64), dtype="uint16")
    group.create_array("b", shape=(2, 64, 64), dtype="uint16")
    with pytest.raises(ValueError, match=r"holding a, b; name the array.*g\.zarr/a"):
        volseg.segment(str(tmp_path / "g.zarr"), model=checkpoint, **RUN)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_by_volseg_test",))


def test_pickle_that_would_run_code_is_refused(tmp_path, anode_arrays, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "volseg.unet/1", "config": _RunsCode()}, evil)
    image, _ = anode_arrays
    with pytest.raises(ValueError, match=r"evil\.pt' is not a volseg checkpoint.*safely"):
        volseg.segment(image, model=evil, **RUN)
    assert not (tmp_path / "pwned_by_volseg_test").exists()


@pytest.mark.parametrize(
    "payload,reason",
    [
        ({"state_dict": {}}, "no 'format' entry"),
        ({"format": "other.model/3", "config": {}, "state_dict": {}}, "format 'other.model/3'"),
        ([1, 2, 3], "no 'format' entry"),
    ],
)
def test_checkpoint_of_another_format(tmp_path, anode_arrays, payload, reason):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    image, _ = anode_arrays
    with pytest.raises(ValueError, match=rf"not a volseg checkpoint \({reason}"):
        volseg.segment(image, model=path, **RUN)


def test_checkpoint_that_is_not_a_torch_file(tmp_path, anode_arrays):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")
    image, _ = anode_arrays
    with pytest.raises(ValueError, match=r"notes\.pt' is not a volseg checkpoint"):
        volseg.segment(image, model=path, **RUN)


def test_plain_pickle_is_refused(tmp_path, anode_arrays):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"format": "volseg.unet/1"}, protocol=2))
    image, _ = anode_arrays
    with pytest.raises(ValueError, match="not a volseg checkpoint"):
        volseg.segment(image, model=path, **RUN)


def test_missing_model(tmp_path, anode_arrays):
    image, _ = anode_arrays
    with pytest.raises(FileNotFoundError, match=r"model file '.*none\.pt' does not exist"):
        volseg.segment(image, model=tmp_path / "none.pt", **RUN)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tile": 100}, "multiple of 32"),
        ({"overlap": 1.0}, "overlap=1.0"),
        ({"blend": "hann"}, "blend='hann'"),
        ({"pad": "wrap"}, "pad='wrap'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"chunks": (0, 10, 10)}, "chunks="),
        ({"save_prob": "int4"}, "save_prob="),
        ({"device": "tpu"}, "device 'tpu'"),
    ],
)
def test_bad_parameters(kwargs, match, anode_arrays, checkpoint):
    image, _ = anode_arrays
    with pytest.raises(ValueError, match=match):
        volseg.segment(image, model=checkpoint, **{**RUN, **kwargs})


def test_output_inside_the_scan_is_refused(scan_zarr, checkpoint):
    with pytest.raises(ValueError, match="contains the scan.*choose another output path"):
        volseg.segment(
            str(scan_zarr / "image"), model=checkpoint, out=scan_zarr, overwrite=True, **RUN
        )
    assert (scan_zarr / "image").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(anode_arrays, checkpoint):
    image, _ = anode_arrays
    with pytest.raises(ValueError, match="no GPU is visible"):
        volseg.segment(image, model=checkpoint, **{**RUN, "device": "cuda"})


def test_out_of_gpu_memory_suggests_a_smaller_batch(anode_arrays, checkpoint, monkeypatch):
    from volseg import model as vmodel

    def exhausted(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(vmodel.TilePredictor, "submit", exhausted)
    image, _ = anode_arrays
    with pytest.raises(MemoryError, match="out of GPU memory .* smaller --batch-size"):
        volseg.segment(image, model=checkpoint, backend="torch", **RUN)
