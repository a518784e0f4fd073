"""``volseg demo``: synthetic scan -> train a small model -> segment a held-out scan -> report.

Runs in a few minutes on 2 CPU cores with no network: a light U-Net (ResNet18
encoder, 4 levels, random initialisation) is trained on one synthetic anode and
applied to another one generated with a different seed, and the pooled Ni IoU
is compared with a global multi-Otsu threshold on the same held-out scan.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from . import io as vio
from . import metrics, report, synth
from .conventions import PHASES
from .inference.api import segment
from .training import train

__all__ = ["DEMO_NETWORK", "DEMO_SETTINGS", "run_demo"]

log = logging.getLogger(__name__)

# The demo's own small network, chosen to train in minutes on 2 CPU cores; not the
# library's defaults (volseg.train: "vgg16", 5 levels, decoder [256, 128, 64, 32, 16]):
# a ResNet18 encoder, 4 levels, and a decoder a quarter as wide.
DEMO_NETWORK: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 8],
}

DEMO_SETTINGS: dict[str, Any] = {
    "train_shape": (24, 256, 256),
    "test_shape": (16, 256, 256),
    "train_seed": 1,
    "test_seed": 2,
    **DEMO_NETWORK,
    "tile": 128,
    "batch_size": 8,
    "epochs": 12,
    "steps_per_epoch": 20,
    "patience": 6,
    "lr": 1e-3,
}


def run_demo(
    out: str | Path = "volseg-demo",
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
    **overrides: Any,
) -> dict[str, Any]:
    """Run the whole pipeline on synthetic data and return its figures.

    Parameters
    ----------
    out : path
        Folder for ``train.zarr``, ``test.zarr``, ``model.pt`` (+ history CSV/PNG),
        ``test_ni.zarr``, ``test_ni_stats.csv``, ``demo.png`` and ``demo.json``.
    overwrite : bool
        Replace the outputs of an earlier demo in ``out``.
    progress : bool
        Show progress bars.
    device : str
        "auto", "cpu" or "cuda[:i]".
    **overrides
        Keys of :data:`DEMO_SETTINGS` (e.g. ``epochs=2`` for a quick look).

    Returns
    -------
    dict
        ``ni_iou`` (network, held-out scan), ``otsu_ni_iou`` (multi-Otsu baseline),
        ``best_val_ni_iou``, timings and paths.

    Examples
    --------
    A toy run (one training step of a small network, so the IoU means nothing; the
    full demo is ``run_demo()`` or ``volseg demo``, checked by
    ``tests/test_training.py``):

    >>> figures = run_demo(getfixture("tmp_path") / "demo", progress=False, device="cpu",
    ...                    train_shape=(6, 64, 64), test_shape=(2, 64, 64), tile=32,
    ...                    encoder_depth=3, decoder_channels=[32, 16, 8], batch_size=2,
    ...                    epochs=1, steps_per_epoch=1)
    >>> sorted(figures["paths"])
    ['figure', 'mask', 'model', 'stats']
    >>> 0 <= figures["ni_iou"] <= 1 and 0 <= figures["otsu_ni_iou"] <= 1
    True
    """
    settings = _settings(overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    train_zarr, test_zarr = _write_scans(out, settings, overwrite)
    timings["synth_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    model_path = out / "model.pt"
    trained = _train_model(train_zarr, model_path, settings, device, progress, overwrite)
    timings["train_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    result = segment(
        str(test_zarr / "image"),
        model=model_path,
        out=out / "test_ni.zarr",
        truth=str(test_zarr / "labels"),
        device=device,
        progress=progress,
        overwrite=overwrite,
    )
    timings["segment_seconds"] = time.perf_counter() - started
    stats_csv = out / "test_ni_stats.csv"
    result.stats.to_csv(stats_csv, index=False)

    baseline, figure = _baseline_and_figure(test_zarr, result, out / "demo.png")
    figures = {
        "ni_iou": result.summary["ni_iou"],
        "ni_dice": result.summary["ni_dice"],
        "two_class_mean_iou": result.summary["two_class_mean_iou"],
        "otsu_ni_iou": baseline["ni_iou"],
        "otsu_threshold": baseline["threshold"],
        "best_val_ni_iou": trained.best_val_ni_iou,
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "voxels_per_second": result.summary["voxels_per_second"],
        **timings,
        "paths": {
            "model": str(model_path),
            "mask": str(out / "test_ni.zarr"),
            "stats": str(stats_csv),
            "figure": str(figure),
        },
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
    }
    (out / "demo.json").write_text(json.dumps(figures, indent=2))
    return figures


def _settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEMO_SETTINGS` with ``overrides``; unknown keys are refused."""
    unknown = set(overrides) - set(DEMO_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown demo setting(s) {sorted(unknown)}; known: {sorted(DEMO_SETTINGS)}"
        )
    return {**DEMO_SETTINGS, **overrides}


def _write_scans(out: Path, settings: dict[str, Any], overwrite: bool) -> tuple[Path, Path]:
    """Step 1: the synthetic training and held-out scans, ``train.zarr`` and ``test.zarr``."""
    train_zarr, test_zarr = out / "train.zarr", out / "test.zarr"
    synth.write_anode(
        train_zarr, settings["train_shape"], seed=settings["train_seed"], overwrite=overwrite
    )
    synth.write_anode(
        test_zarr, settings["test_shape"], seed=settings["test_seed"], overwrite=overwrite
    )
    return train_zarr, test_zarr


def _train_model(
    train_zarr: Path,
    model_path: Path,
    settings: dict[str, Any],
    device: str,
    progress: bool,
    overwrite: bool,
) -> Any:
    """Step 2: train the demo's network on the training scan; the best epoch is kept."""
    return train(
        str(train_zarr / "image"),
        str(train_zarr / "labels"),
        model_path,
        encoder=settings["encoder"],
        encoder_depth=settings["encoder_depth"],
        decoder_channels=settings["decoder_channels"],
        tile=settings["tile"],
        batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        steps_per_epoch=settings["steps_per_epoch"],
        patience=settings["patience"],
        lr=settings["lr"],
        device=device,
        progress=progress,
        overwrite=overwrite,
    )


def _baseline_and_figure(test_zarr: Path, result: Any, figure_path: Path) -> tuple[dict, Any]:
    """Steps 4-5: the multi-Otsu baseline on the held-out scan and its middle-slice figure."""
    image = vio.open_scan(str(test_zarr / "image"), role="scan").array
    labels = vio.open_scan(str(test_zarr / "labels"), role="labels").array
    baseline = metrics.threshold_baseline(image, labels, ni_label=PHASES["ni"])
    middle = image.shape[0] // 2
    figure = report.slice_figure(
        image[middle],
        result.mask[middle],
        figure_path,
        truth=labels[middle] == PHASES["ni"],
        title=f"held-out slice z={middle}: Ni IoU {result.summary['ni_iou']:.3f} "
        f"(multi-Otsu {baseline['ni_iou']:.3f})",
    )
    return baseline, figure
