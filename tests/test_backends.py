"""Precision and backends: same tiles, same blending, same contract, nearly the same mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import volseg
from volseg import io as vio
from volseg import model as vmodel
from volseg.inference import block as vblock
from volseg.model import backend as vbackend
from volseg.model import export as vexport
from volseg.model import precision as vprecision
from volseg.model import runtimes as vruntimes

from .conftest import small_config, whole_plane_reference

RUN = {"tile": 64, "overlap": 0.25, "device": "cpu", "progress": False}
HAS_OPENVINO = vbackend.backend_available("openvino")
HAS_ONNXRUNTIME = vbackend.backend_available("onnxruntime")
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="needs openvino (volseg[openvino])")
needs_onnxruntime = pytest.mark.skipif(
    not HAS_ONNXRUNTIME, reason="needs onnxruntime (volseg[onnx])"
)
# OpenVINO refuses bf16 where the CPU would run it as fp32.
needs_openvino_bf16 = pytest.mark.skipif(
    not HAS_OPENVINO or "BF16" not in vprecision.openvino_cpu_capabilities(),
    reason="needs openvino and a CPU it runs bf16 on",
)
# Every backend and precision that runs on a CPU.
COMBINATIONS = [
    pytest.param("torch", "fp32", id="torch-fp32"),
    pytest.param("torch", "bf16", id="torch-bf16"),
    pytest.param("openvino", "fp32", id="openvino-fp32", marks=needs_openvino),
    pytest.param("openvino", "bf16", id="openvino-bf16", marks=needs_openvino_bf16),
    pytest.param("onnxruntime", "fp32", id="onnxruntime-fp32", marks=needs_onnxruntime),
]


def run(scan, checkpoint, out, **kwargs):
    settings = {**RUN, "save_prob": "float32", **kwargs}
    return volseg.segment(str(scan), model=checkpoint, out=out, **settings)


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(vprecision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert vprecision.resolve_precision("auto", "cpu", "torch") == "bf16"
    monkeypatch.setattr(vprecision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert vprecision.resolve_precision("auto", "cpu", "openvino") == "bf16"
    monkeypatch.setattr(vprecision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert vprecision.resolve_precision("auto", "cpu", "torch") == "fp32"
    assert vprecision.resolve_precision("fp16", "cpu", "torch") == "fp16"
    with pytest.raises(ValueError, match="precision='half' is not known"):
        vprecision.resolve_precision("half", "cpu")


def test_auto_backend_falls_back_to_torch_without_openvino(
    scan_zarr, checkpoint, tmp_path, monkeypatch
):
    real = vbackend.backend_available
    monkeypatch.setattr(
        vbackend, "backend_available", lambda name: name != "openvino" and real(name)
    )
    assert vbackend.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ImportError, match=r"pip install 'volseg\[openvino\]'"):
        vbackend.resolve_backend("openvino", "cpu")
    with pytest.raises(ImportError, match="backend='openvino' needs the openvino package"):
        run(scan_zarr / "image", checkpoint, tmp_path / "missing.zarr", backend="openvino")
    assert not (tmp_path / "missing.zarr").exists()
    result = run(scan_zarr / "image", checkpoint, tmp_path / "o.zarr", precision="fp32")
    reference = run(
        scan_zarr / "image", checkpoint, tmp_path / "r.zarr", precision="fp32", backend="torch"
    )
    assert result.group.attrs["volseg"]["parameters"]["backend"] == "torch"
    np.testing.assert_array_equal(result.prob[...], reference.prob[...])


def test_bad_backend_and_precision_are_refused(scan_zarr, checkpoint, tmp_path):
    with pytest.raises(ValueError, match="backend='tensorrt' is not known"):
        run(scan_zarr / "image", checkpoint, tmp_path / "a.zarr", backend="tensorrt")
    with pytest.raises(ValueError, match="precision='int8' is not known"):
        run(scan_zarr / "image", checkpoint, tmp_path / "b.zarr", precision="int8")
    with pytest.raises(ValueError, match="not available with backend='onnxruntime'"):
        vprecision.resolve_precision("bf16", "cpu", "onnxruntime")
    with pytest.raises(ValueError, match="runs on the CPU"):
        vbackend.resolve_backend("openvino", "cuda")


class _Unexportable(torch.nn.Module):
    """The U-Net followed by an operation that ONNX has no equivalent for."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return torch.cummax(self.network(x), dim=3)[0]


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("openvino", marks=needs_openvino),
        pytest.param("onnxruntime", marks=needs_onnxruntime),
    ],
)
def test_a_network_that_cannot_be_exported_is_refused(anode_arrays, backend):
    config = small_config()
    loaded = vmodel.LoadedModel(_Unexportable(vmodel.build_unet(config)).eval(), config)
    image, _ = anode_arrays
    with pytest.raises(ValueError, match="cannot be exported to ONNX.*use backend='torch'"):
        volseg.segment(image[:1], model=loaded, backend=backend, precision="fp32", **RUN)


def test_onnx_export_is_cached_beside_the_checkpoint(checkpoint, tmp_path, monkeypatch):
    if not HAS_ONNXRUNTIME:
        pytest.skip("needs onnxruntime (volseg[onnx])")
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    loaded = vmodel.load_checkpoint(copy)
    first = vexport.export_onnx(loaded)
    assert first == str(tmp_path / f"copy.pt.{loaded.sha256[:16]}.onnx")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    assert vexport.export_onnx(loaded) == first  # reused, keyed by the checkpoint's digest
    monkeypatch.undo()
    # A folder that cannot be written: the export stays in memory.
    monkeypatch.setattr(vexport, "onnx_cache_path", lambda loaded: tmp_path / "no" / "x.onnx")
    exported = vexport.export_onnx(loaded)
    assert isinstance(exported, bytes) and len(exported) > 1000
    predict = vruntimes.OnnxRuntimePredictor(loaded)
    tiles = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(predict(tiles), vmodel.TilePredictor(loaded)(tiles), atol=1e-4)


def _whole_plane_reference(image, checkpoint, backend, precision, tile=64, overlap=0.25):
    """The predictor applied tile by tile to whole reflect-padded planes, then blended."""
    loaded = vmodel.load_checkpoint(checkpoint)
    predict = vruntimes.cached_predictor(loaded, backend, precision)
    volume = vmodel.normalise(image, loaded.config["normalisation"])
    return whole_plane_reference(volume, predict, tile, overlap)


@pytest.mark.parametrize("backend, precision", COMBINATIONS)
def test_every_backend_keeps_the_tiling_contract(
    backend, precision, scan_zarr, anode_arrays, checkpoint, tmp_path
):
    """Chunk-invariance (mask bitwise), mirrored borders (whole-plane reference) per backend."""
    image, _ = anode_arrays
    settings = {"backend": backend, "precision": precision}
    first = run(
        scan_zarr / "image", checkpoint, tmp_path / "a.zarr", chunks=(5, 90, 110), **settings
    )
    parameters = first.group.attrs["volseg"]["parameters"]
    assert (parameters["backend"], parameters["precision"]) == (backend, precision)
    for chunks in [(2, 33, 40), (1, 90, 17)]:
        other = run(
            scan_zarr / "image",
            checkpoint,
            tmp_path / f"{chunks[1]}.zarr",
            chunks=chunks,
            **settings,
        )
        np.testing.assert_array_equal(other.mask[...], first.mask[...])
        np.testing.assert_allclose(other.prob[...], first.prob[...], atol=1e-5, rtol=0)
    expected = _whole_plane_reference(image, checkpoint, backend, precision)
    np.testing.assert_allclose(first.prob[...], expected, atol=1e-5)


@pytest.mark.parametrize("backend, precision", COMBINATIONS)
def test_every_backend_resumes_to_the_same_result(
    backend, precision, scan_zarr, checkpoint, tmp_path, monkeypatch
):
    settings = {"backend": backend, "precision": precision, "chunks": (2, 40, 40)}
    reference = run(scan_zarr / "image", checkpoint, tmp_path / "ref.zarr", **settings)
    original = vblock.segment_block

    def crash_on_some_chunks(block, *args):
        index = block.index
        if index[0] == 1 and index[2] == 1:
            raise RuntimeError("simulated node failure")
        return original(block, *args)

    monkeypatch.setattr(vblock, "segment_block", crash_on_some_chunks)
    out = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError, match="simulated node failure"):
        run(scan_zarr / "image", checkpoint, out, **settings)
    monkeypatch.setattr(vblock, "segment_block", original)
    done = vio.open_output(out).read_stats()["done"]
    assert 0 < done.sum() < done.size
    other = "fp32" if precision != "fp32" else "bf16"
    if backend != "onnxruntime":
        # (or, openvino on a CPU without bf16: bf16 itself refused)
        refused = r"other settings \(precision\)|not available with backend='openvino'"
        with pytest.raises(ValueError, match=refused):
            run(
                scan_zarr / "image",
                checkpoint,
                out,
                resume=True,
                **{**settings, "precision": other},
            )
    resumed = run(scan_zarr / "image", checkpoint, out, resume=True, **settings)
    assert resumed.summary["chunks_skipped"] == int(done.sum())
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])
    np.testing.assert_array_equal(resumed.prob[...], reference.prob[...])


def test_resume_refuses_another_backend(scan_zarr, checkpoint, tmp_path):
    out = tmp_path / "o.zarr"
    run(scan_zarr / "image", checkpoint, out, backend="torch", precision="fp32")
    if not HAS_ONNXRUNTIME:
        pytest.skip("needs onnxruntime (volseg[onnx])")
    with pytest.raises(ValueError, match=r"other settings \(backend\)"):
        run(scan_zarr / "image", checkpoint, out, backend="onnxruntime", resume=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo's small U-Net trained on one synthetic anode, and a held-out scan."""
    from volseg import synth
    from volseg.demo import DEMO_SETTINGS

    workdir = tmp_path_factory.mktemp("trained")
    synth.write_anode(workdir / "train.zarr", DEMO_SETTINGS["train_shape"], seed=1)
    synth.write_anode(workdir / "test.zarr", (8, 256, 256), seed=2)
    keys = ("encoder", "encoder_depth", "decoder_channels", "tile", "batch_size", "epochs")
    volseg.train(
        str(workdir / "train.zarr/image"),
        str(workdir / "train.zarr/labels"),
        workdir / "model.pt",
        **{key: DEMO_SETTINGS[key] for key in keys},
        steps_per_epoch=DEMO_SETTINGS["steps_per_epoch"],
        patience=DEMO_SETTINGS["patience"],
        device="cpu",
        progress=False,
    )
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("backend, precision", COMBINATIONS[1:])
def test_precision_and_backend_change_almost_no_mask_voxel(backend, precision, trained, tmp_path):
    """Against fp32 torch on a trained model: at most 0.05 % of the mask voxels differ."""
    kwargs = {"truth": str(trained / "test.zarr/labels"), "tile": "auto", "progress": False}
    scan = str(trained / "test.zarr/image")
    reference = volseg.segment(
        scan,
        model=trained / "model.pt",
        out=tmp_path / "fp32.zarr",
        backend="torch",
        precision="fp32",
        **kwargs,
    )
    result = volseg.segment(
        scan,
        model=trained / "model.pt",
        out=tmp_path / "other.zarr",
        backend=backend,
        precision=precision,
        **kwargs,
    )
    changed = float(np.mean(result.mask[...] != reference.mask[...]))
    iou_change = result.summary["ni_iou"] - reference.summary["ni_iou"]
    print(f"{backend}/{precision}: {changed:.5%} of voxels changed, Ni IoU {iou_change:+.5f}")
    assert reference.summary["ni_iou"] > 0.85  # a trained model, not a random one
    assert changed <= 0.0005
    assert abs(iou_change) <= 0.001


def test_loaded_model_in_memory_runs_every_backend(anode_arrays, checkpoint):
    loaded = vmodel.load_checkpoint(checkpoint)
    in_memory = vmodel.LoadedModel(loaded.network, loaded.config)  # no path, no digest
    image, _ = anode_arrays
    masks = {}
    for backend in ("torch", "onnxruntime") if HAS_ONNXRUNTIME else ("torch",):
        masks[backend] = volseg.segment(
            image[:2], model=in_memory, backend=backend, precision="fp32", **RUN
        ).mask[...]
    assert np.mean(masks.get("onnxruntime", masks["torch"]) != masks["torch"]) < 1e-3


@needs_openvino
def test_openvino_precision_recorded_is_the_one_the_cpu_runs(scan_zarr, checkpoint, tmp_path):
    """OpenVINO's CPU plugin silently runs an f16 hint as bf16 (or f32) where it lacks fp16."""
    import openvino as ov

    loaded = vmodel.load_checkpoint(checkpoint)
    compiled = ov.Core().compile_model(
        vruntimes.read_onnx_bytes(vexport.export_bytes(loaded)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f16"},
    )
    used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    out = tmp_path / "o.zarr"
    if used == "f16":  # a CPU that runs fp16: recorded as such
        result = run(scan_zarr / "image", checkpoint, out, backend="openvino", precision="fp16")
        assert result.group.attrs["volseg"]["parameters"]["precision"] == "fp16"
        return
    actual = {"bf16": "bf16", "f32": "fp32"}[used]
    message = rf"OpenVINO runs fp16 as {actual} here\); use precision='{actual}'"
    with pytest.raises(ValueError, match=message):  # up front, before any output
        run(scan_zarr / "image", checkpoint, out, backend="openvino", precision="fp16")
    assert not out.exists()
    with pytest.raises(ValueError, match=message):  # and where the network is compiled
        vruntimes.OpenVINOPredictor(loaded, "fp16")


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("openvino", marks=needs_openvino),
        pytest.param("onnxruntime", marks=needs_onnxruntime),
    ],
)
def test_a_corrupt_cached_onnx_file_is_exported_again(
    backend, checkpoint, tmp_path, monkeypatch, caplog
):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    loaded = vmodel.load_checkpoint(copy)
    tiles = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    fresh = vruntimes.PREDICTORS[backend](loaded, "fp32")(tiles)
    cached = tmp_path / f"copy.pt.{loaded.sha256[:16]}.onnx"
    size = cached.stat().st_size
    with open(cached, "r+b") as handle:  # an interrupted copy
        handle.truncate(1000)
    with caplog.at_level("WARNING", logger="volseg.model.export"):
        recovered = vruntimes.PREDICTORS[backend](loaded, "fp32")(tiles)
    np.testing.assert_array_equal(recovered, fresh)
    assert f"cached ONNX file {cached} cannot be loaded" in caplog.text
    assert cached.stat().st_size == size
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    np.testing.assert_array_equal(vruntimes.PREDICTORS[backend](loaded, "fp32")(tiles), fresh)
    monkeypatch.undo()
    # An export that cannot be loaded even freshly written: a clear error naming the file.
    cached.write_bytes(b"not onnx")
    monkeypatch.setattr(vexport, "export_bytes", lambda loaded: b"still not onnx")
    with pytest.raises(ValueError, match=rf"ONNX export '{cached}' .* even freshly exported"):
        vruntimes.PREDICTORS[backend](loaded, "fp32")


FIRST_CALLS_AT_ONCE = """
import threading, numpy as np, torch
torch.set_num_threads(1)  # one stream per core: the first calls run at the same time
from volseg.model import LoadedModel, build_unet, default_config
from volseg.model.runtimes import OpenVINOPredictor
cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
predict = OpenVINOPredictor(LoadedModel(build_unet(cfg), cfg), "fp32")
start = threading.Barrier(4)
def first_call():
    start.wait()
    predict(np.zeros((2, 64, 64), np.float32))
threads = [threading.Thread(target=first_call) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done")
"""


@pytest.mark.slow
@needs_openvino
def test_first_openvino_calls_from_several_threads_do_not_deadlock():
    """The first forward passes of a process, from several dask threads at once, used to
    hang for good in OpenVINO's numpy set-up (2 of 12 fresh processes); each fresh
    process must finish."""
    import subprocess
    import sys

    for _ in range(8):
        try:
            run = subprocess.run(
                [sys.executable, "-c", FIRST_CALLS_AT_ONCE],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the first OpenVINO calls from 4 threads deadlocked")
        assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr
