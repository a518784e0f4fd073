"""Segmentation throughput: volseg against MONAI as users run it and against the hardware.

For each network (the demo's small U-Net and the default ResNet18 U-Net, both trained
here on a synthetic anode) and each plane size (default 501, 1024, 2048 and 2560 pixels),
on a synthetic scan with labels, all in one run, in input voxels per second:

* ``ceiling``: the fastest network-alone rate on this machine over every backend and
  precision (torch fp32/bf16, OpenVINO fp32/bf16, ONNX Runtime fp32), on ready-made
  batches (16 tiles of 128 x 128, and the plane's auto tile batched to the same pixels),
  one forward pass per core at a time, as volseg runs them: no tiling, no I/O;
* ``monai_roi128_fp32``: ``monai.inferers.sliding_window_inference`` slice by slice as
  users run it: roi 128 on the unpadded slice, overlap 0.25 and ``sw_batch_size`` 16,
  Gaussian blending, fp32, torch with all cores, reading the Zarr scan and writing a
  Zarr mask;
* ``monai_roi128_fp32_slice_parallel``: the same with one slice per core at a time and
  one torch thread each (volseg's way of using the cores: on a shared machine, intra-op
  threads lose much more than independent forward passes);
* ``volseg_defaults``: ``volseg.segment`` with its defaults (``tile="auto"``,
  ``precision="auto"``, ``backend="auto"``) from the Zarr scan to a Zarr mask;
* ``volseg_fp32_torch``: the same with ``precision="fp32"``, ``backend="torch"``;
* ``volseg_tile128_fp32_torch``: volseg 0.1's defaults (tile 128, fp32, torch).

Each comes with the model voxels it computes per output voxel and its Ni IoU against
the scan's labels. Larger planes are the 512-pixel synthetic scan mirrored
(``numpy.pad`` reflect), so every plane size has real structure at every position.
Prints one JSON object.

    python benchmarks/throughput.py [--planes 501 1024 2048 2560] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr
from _common import TRAIN_KEYS, machine

import volseg
from volseg import inference, synth, tiling
from volseg import io as vio
from volseg import model as vmodel
from volseg.conventions import block_grid
from volseg.demo import DEMO_SETTINGS
from volseg.inference import execute

log = logging.getLogger("throughput")

NETWORKS = {
    "demo": {"encoder_depth": 4, "decoder_channels": [64, 32, 16, 8]},
    "resnet18": {"encoder_depth": 5, "decoder_channels": [256, 128, 64, 32, 16]},
}
# Slices per plane size: several blocks per scan (one per core at least), a few seconds.
DEPTHS = {501: 8, 1024: 2, 2048: 2, 2560: 2}
COMBINATIONS = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("onnxruntime", "fp32"),
]
MONAI_CALL = (
    "sliding_window_inference(slice, roi_size=(128, 128), sw_batch_size=16, predictor, "
    "overlap=0.25, mode='gaussian')"
)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def train(workdir: Path, name: str, epochs: int) -> Path:
    """A network trained on the demo's synthetic anode (reused if in ``workdir``)."""
    path = workdir / f"{name}.pt"
    if path.exists():
        return path
    if not (workdir / "train.zarr").exists():
        synth.write_anode(
            workdir / "train.zarr",
            DEMO_SETTINGS["train_shape"],
            seed=DEMO_SETTINGS["train_seed"],
            overwrite=True,
        )
    settings = {key: DEMO_SETTINGS[key] for key in TRAIN_KEYS}
    settings.update(NETWORKS[name], epochs=epochs)
    log.info("training %s (%s)", name, settings)
    volseg.train(
        str(workdir / "train.zarr/image"),
        str(workdir / "train.zarr/labels"),
        path,
        **settings,
        context=0,  # MONAI's sliding window is fed one channel: a plain 2D model for both
        device="cpu",
        progress=False,
    )
    return path


def write_scans(workdir: Path, planes: list[int]) -> dict[int, Path]:
    """Synthetic scans of every plane size: the 512-pixel one cropped or mirrored."""
    depth = max(DEPTHS.get(p, 2) for p in planes)
    image, labels = synth.anode((depth, 512, 512), seed=3)
    image, labels = np.asarray(image), np.asarray(labels)
    scans = {}
    for plane in planes:
        d = DEPTHS.get(plane, 2)

        def sized(array, d=d, plane=plane):
            array = array[:d, :plane, :plane]
            extra = plane - array.shape[1]
            return np.pad(array, ((0, 0), (0, extra), (0, extra)), mode="reflect")

        path = workdir / f"scan{plane}.zarr"
        # One stored slice per chunk at most 2 deep: several processing blocks per scan.
        chunks = (max(1, d // 4), 256, 256)
        if plane > 512:
            chunks = (1, 256, 256)
        vio.write_arrays(
            path,
            {"image": sized(image), "labels": sized(labels)},
            chunks=chunks,
            array_attrs={"labels": {"phases": synth.PHASES}},
        )
        scans[plane] = path
    return scans


def network_alone(loaded, backend: str, precision: str, tile: int, repeats: int) -> float:
    """Voxels/s of forward passes alone: one per core at a time, one thread each."""
    batch = max(1, 16 * 128 * 128 // (tile * tile))
    tiles = np.random.default_rng(0).random((batch, tile, tile), dtype=np.float32)
    with execute.torch_threads(1):
        predict = vmodel.cached_predictor(loaded, backend, precision)
        predict(tiles)  # warm up (and compile)

        def work(_):
            for _ in range(repeats):
                predict(tiles)

        with ThreadPoolExecutor(cores()) as pool:
            started = time.perf_counter()
            list(pool.map(work, range(cores())))
            seconds = time.perf_counter() - started
    return cores() * repeats * tiles.size / seconds


def monai_grid(plane: int, roi: int = 128, overlap: float = 0.25) -> float:
    """Model voxels per output voxel of MONAI's windows on an unpadded square plane."""
    interval = int(roi * (1 - overlap))
    per_axis = 1 if plane <= roi else math.ceil((plane - roi) / interval) + 1
    return per_axis**2 * roi * roi / (plane * plane)


def ni_iou(mask: np.ndarray, labels: np.ndarray) -> float:
    truth = labels == synth.PHASES["ni"]
    tp = np.count_nonzero(mask & truth)
    return tp / (np.count_nonzero(mask | truth) or 1)


def run_monai(scan: Path, loaded, out: Path, parallel: bool = False) -> dict:
    """MONAI slice by slice; ``parallel``: one slice per core at a time, one torch thread
    each (volseg's way of using the cores), instead of all cores on one slice."""
    from monai.inferers import sliding_window_inference

    image = zarr.open(str(scan / "image"), mode="r")
    labels = zarr.open(str(scan / "labels"), mode="r")[...]
    target = zarr.create_array(
        str(out), shape=image.shape, chunks=(1, *image.chunks[1:]), dtype="uint8", overwrite=True
    )
    norm = loaded.config["normalisation"]
    network = loaded.network

    def predictor(batch):
        return torch.sigmoid(network(batch))

    def one_slice(z: int) -> None:
        tensor = torch.from_numpy(vmodel.normalise(image[z], norm))[None, None]
        with torch.inference_mode():
            prob = sliding_window_inference(
                tensor,
                roi_size=(128, 128),
                sw_batch_size=16,
                predictor=predictor,
                overlap=0.25,
                mode="gaussian",
            )
        target[z] = prob[0, 0].numpy() > 0.5

    torch.set_num_threads(1 if parallel else cores())
    started = time.perf_counter()
    if parallel:
        with ThreadPoolExecutor(cores()) as pool:
            list(pool.map(one_slice, range(image.shape[0])))
    else:
        for z in range(image.shape[0]):
            one_slice(z)
    seconds = time.perf_counter() - started
    torch.set_num_threads(1)
    return {
        "vox_s": round(math.prod(image.shape) / seconds),
        "seconds": round(seconds, 2),
        "model_voxels_per_voxel": round(monai_grid(image.shape[1]), 4),
        "ni_iou": round(ni_iou(target[...].astype(bool), labels), 4),
    }


def block_tiles(shape, chunks, grid: tiling.PlaneGrid) -> float:
    """Model voxels per output voxel the blocks really compute (border tiles twice)."""
    tiles = 0
    for _, region in block_grid(shape, chunks):
        ys, xs = region[1], region[2]
        count = len(grid.y.touching(ys.start, ys.stop)) * len(grid.x.touching(xs.start, xs.stop))
        tiles += count * (region[0].stop - region[0].start)
    return tiles * grid.tile**2 / math.prod(shape)


def run_volseg(scan: Path, model: Path, out: Path, **settings) -> dict:
    volseg.segment(
        np.zeros((1, 64, 64), np.uint16), model=model, progress=False, **settings
    )  # loads (and compiles) the model once per process, as a worker does
    started = time.perf_counter()
    result = volseg.segment(
        str(scan / "image"),
        model=model,
        out=out,
        truth=str(scan / "labels"),
        progress=False,
        overwrite=True,
        **settings,
    )
    seconds = time.perf_counter() - started
    shape = tuple(result.mask.shape)
    parameters = result.group.attrs["volseg"]["parameters"]
    grid = inference.plane_grid(shape[1:], parameters["tile"], parameters["overlap"])
    return {
        "vox_s": round(math.prod(shape) / seconds),
        "seconds": round(seconds, 2),
        "tile": grid.tile,
        "tiles_per_slice": grid.n_tiles,
        "model_voxels_per_voxel": round(grid.model_pixels_per_pixel(), 4),
        "computed_model_voxels_per_voxel": round(
            block_tiles(shape, tuple(result.mask.chunks), grid), 4
        ),
        "blocks": list(result.mask.chunks),
        "backend": parameters["backend"],
        "precision": parameters["precision"],
        "ni_iou": round(float(result.summary["ni_iou"]), 4),
    }


def measure_network(name: str, model: Path, scans: dict, workdir: Path, repeats: int) -> dict:
    loaded = vmodel.load_checkpoint(model, "cpu")
    rates = []
    tiles = sorted({128} | {inference.plane_grid((p, p)).tile for p in scans})
    for backend, precision in COMBINATIONS:
        if not vmodel.backend_available(backend):
            continue
        for tile in tiles:
            rate = network_alone(loaded, backend, precision, tile, repeats)
            rates.append(
                {"backend": backend, "precision": precision, "tile": tile, "vox_s": round(rate)}
            )
            log.info("%s network alone %s", name, rates[-1])
    ceiling = max(rates, key=lambda row: row["vox_s"])
    planes = []
    for plane, scan in scans.items():
        log.info("%s: plane %d", name, plane)
        row = {"plane": plane, "shape": list(zarr.open(str(scan / "image"), mode="r").shape)}
        row["monai_roi128_fp32"] = run_monai(scan, loaded, workdir / "monai.zarr")
        row["monai_roi128_fp32_slice_parallel"] = run_monai(
            scan, loaded, workdir / "monai.zarr", parallel=True
        )
        row["volseg_defaults"] = run_volseg(scan, model, workdir / "v.zarr")
        row["volseg_fp32_torch"] = run_volseg(
            scan, model, workdir / "v.zarr", precision="fp32", backend="torch"
        )
        row["volseg_tile128_fp32_torch"] = run_volseg(
            scan, model, workdir / "v.zarr", tile=128, precision="fp32", backend="torch"
        )
        monai, default = row["monai_roi128_fp32"], row["volseg_defaults"]
        row["defaults_vs_monai"] = round(default["vox_s"] / monai["vox_s"], 3)
        row["defaults_vs_monai_slice_parallel"] = round(
            default["vox_s"] / row["monai_roi128_fp32_slice_parallel"]["vox_s"], 3
        )
        row["fp32_torch_vs_monai"] = round(row["volseg_fp32_torch"]["vox_s"] / monai["vox_s"], 3)
        row["defaults_vs_ceiling"] = round(default["vox_s"] / ceiling["vox_s"], 3)
        row["defaults_iou_minus_monai"] = round(default["ni_iou"] - monai["ni_iou"], 4)
        planes.append(row)
        log.info("%s", json.dumps(row))
    return {
        "network": {**NETWORKS[name], "encoder": "resnet18"},
        "network_alone": rates,
        "ceiling": ceiling,
        "planes": planes,
        "targets_met": {
            "defaults_at_least_4x_monai": all(r["defaults_vs_monai"] >= 4 for r in planes),
            "defaults_at_least_4x_monai_slice_parallel": all(
                r["defaults_vs_monai_slice_parallel"] >= 4 for r in planes
            ),
            "iou_within_0.003_of_monai": all(
                abs(r["defaults_iou_minus_monai"]) <= 0.003 for r in planes
            ),
            "defaults_at_least_0.6_of_ceiling": all(
                r["defaults_vs_ceiling"] >= 0.6 for r in planes
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, nargs="+", default=[501, 1024, 2048, 2560])
    parser.add_argument(
        "--large-planes-for",
        nargs="*",
        default=["demo"],
        help="networks measured on planes above 2048 too (the others stop at 2048)",
    )
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--epochs", type=int, default=DEMO_SETTINGS["epochs"])
    parser.add_argument("--repeats", type=int, default=4, help="batches per core, network alone")
    parser.add_argument("--quick", action="store_true", help="planes 501 and 1024, demo only")
    parser.add_argument(
        "--json", default=None, help="also write the JSON here (after each network)"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.planes, args.networks, args.repeats = [501, 1024], ["demo"], 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    torch.set_num_threads(1)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="volseg-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        flags = vmodel.cpu_flags()
        result = {
            "benchmark": "segmentation throughput: volseg vs MONAI as users run it",
            "monai_call": MONAI_CALL,
            "device": "cpu",
            "cpu_bf16": {
                "avx512_bf16": "avx512_bf16" in flags,
                "amx_bf16": "amx_bf16" in flags,
                "auto_precision": vmodel.resolve_precision("auto", "cpu"),
                "auto_backend": vmodel.resolve_backend("auto", "cpu"),
            },
            "note": (
                "2-core machine shared with other jobs while this ran: rates are noisy, the "
                "ratios within one run compare like with like. The 4x target is for CPUs "
                "with AMX; this one has AVX512-BF16 but no AMX."
                if "amx_bf16" not in flags
                else "machine shared with other jobs while this ran."
            ),
            "machine": machine(False),
            "networks": {},
        }
        log.info("writing the synthetic scans")
        scans = write_scans(workdir, args.planes)
        for name in args.networks:
            epochs = args.epochs if name == "demo" else max(4, args.epochs * 2 // 3)
            model = train(workdir, name, epochs)
            planes = {p: s for p, s in scans.items() if p <= 2048 or name in args.large_planes_for}
            result["networks"][name] = measure_network(name, model, planes, workdir, args.repeats)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
