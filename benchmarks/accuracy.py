"""Held-out accuracy on the calibrated synthetic anode: volseg against the classic baselines.

One synthetic anode (``volseg.synth`` defaults, calibrated to a real Ni/YSZ PXCT stack) is
split along z like the real check of issue 16: the first slices train, a gap follows,
and the last slices are the held-out test slab. Every method is scored on the test slab
(Ni IoU pooled over the slab and on its worst slice) and timed:

* ``multi-otsu``: the upper of three multi-Otsu thresholds of the test slab itself;
* ``random-forest``: scikit-learn, 26 ilastik-style pixel features per slice
  (``_pixel_features.py``), trained on random pixels of the training slices;
* ``volseg-z``: ``volseg.train`` with its defaults (AdamW, warm-up + cosine, weight
  average) and the budget below but ``context=0`` (plain 2D slices), segmented slice by
  slice (``axes="z"``);
* ``volseg-zyx``: the same model, z-, y- and x-slices averaged (``axes="zyx"``);
* ``volseg-z+context``: trained and segmented with ``context=k`` (2.5D; ``context=1`` is
  what ``volseg.train``'s default ``context="auto"`` gives a volume);
* ``volseg-3phase-z``: a pore/YSZ/Ni model (``classes=3``), ``axes="z"``, ``context=0``;
  ``volseg-3phase-z+context1`` the same with ``context=1`` (row ``3phase-context``).

Then held-out Ni IoU against the number of labelled slices (``labelled_slices=``, evenly
spaced over the training slices) with ``volseg.train``'s defaults (``context="auto"``,
``--sparse-context`` to change it), and the random forest trained on the same slices.
The forest's pixel sample and trees are seeded with ``--seed + --train-seed``.

Every network gets the same budget (epochs x steps x batch of crops); ``cost_vs_z``
compares the segmentation seconds of one setting with those of ``volseg-z`` in the same
run. Prints one JSON object on stdout; progress goes to stderr::

    python benchmarks/accuracy.py --quick [--context 1,2] [--no-sparse] [--device cpu]
    python benchmarks/accuracy.py --quick --rows z,context --context 1,2 --train-seed 1
    python benchmarks/accuracy.py --quick --rows sparse --train-seed 1
    python benchmarks/accuracy.py --summarise results/accuracy-study-*.json
    python benchmarks/accuracy.py --quick --profile z.pt context1.pt  # models kept by --keep
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine
from _pixel_features import SIGMAS, predict_forest, train_forest

import volseg
from volseg import metrics, synth

log = logging.getLogger("accuracy")

# Budgets: "quick" runs in about half an hour on 2 shared CPU cores; "full" is for a GPU.
BUDGETS = {
    "quick": {
        "shape": (96, 256, 256),
        "train_slices": 56,
        "test_start": 64,
        "network": {
            "encoder": "resnet18",
            "encoder_depth": 4,
            "decoder_channels": [64, 32, 16, 8],
            "tile": 64,
            "batch_size": 8,
            "epochs": 16,
            "steps_per_epoch": 20,
            "val_tiles": 64,
            "patience": 100,
        },
        "forest": {"samples": 40000, "trees": 50},
    },
    "full": {
        "shape": (160, 256, 256),
        "train_slices": 100,
        "test_start": 112,
        "network": {
            "encoder": "resnet18",
            "encoder_depth": 5,
            "decoder_channels": [256, 128, 64, 32, 16],
            "tile": 128,
            "batch_size": 16,
            "epochs": 15,
            "steps_per_epoch": 40,
            "val_tiles": 256,
            "patience": 100,
        },
        "forest": {"samples": 100000, "trees": 100},
    },
}
# A seconds-long check that every code path runs (not a measurement).
BUDGETS["smoke"] = {
    "shape": (40, 64, 64),
    "train_slices": 24,
    "test_start": 30,
    "network": {**BUDGETS["quick"]["network"], "epochs": 1, "steps_per_epoch": 1},
    "forest": {"samples": 2000, "trees": 5},
}
SPARSE_COUNTS = (1, 2, 5, 10, 20, 50)
# Rows --rows can choose ("sparse": the labelled-slices curve).
ROWS = ("otsu", "forest", "z", "zyx", "context", "3phase", "3phase-context", "sparse")
NI = synth.PHASES["ni"]


def ni_scores(predicted_ni: np.ndarray, truth_ni: np.ndarray) -> dict:
    """Pooled Ni IoU of the slab and the IoU of its worst slice."""
    inter = np.logical_and(predicted_ni, truth_ni).sum(axis=(1, 2))
    union = np.logical_or(predicted_ni, truth_ni).sum(axis=(1, 2))
    per_slice = inter / np.maximum(union, 1)
    return {
        "ni_iou": round(float(inter.sum() / max(union.sum(), 1)), 4),
        "worst_slice_ni_iou": round(float(per_slice.min()), 4),
    }


def phase_ious(predicted: np.ndarray, truth: np.ndarray) -> dict:
    out = {}
    for name, value in synth.PHASES.items():
        a, b = predicted == value, truth == value
        out[name] = round(float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1)), 4)
    return out


def train_network(workdir, name, image, labels, network, device, **kwargs) -> tuple:
    """Train one model; returns its path, the training seconds and its best validation
    Ni IoU (on the last training slices, inside the training grey range)."""
    path = workdir / f"{name}.pt"
    started = time.perf_counter()
    result = volseg.train(
        image,
        labels,
        path,
        ni_label=NI,  # numpy labels carry no attrs: Ni is 2, not the default 1
        **network,
        device=device,
        progress=False,
        overwrite=True,
        **kwargs,
    )
    seconds = time.perf_counter() - started
    log.info(
        "%s: best epoch %d, val %.4f, %.0f s",
        name,
        result.best_epoch,
        result.best_val_ni_iou,
        seconds,
    )
    return path, seconds, round(float(result.best_val_ni_iou), 4)


def segment_test(model: Path, image: np.ndarray, device: str, **modes) -> tuple[np.ndarray, float]:
    """Segment the test slab; returns the predicted labels (or Ni mask) and the seconds."""
    started = time.perf_counter()
    result = volseg.segment(
        image,
        model=model,
        chunks=(image.shape[0] // 2, *image.shape[1:]),
        device=device,
        progress=False,
        **modes,
    )
    seconds = time.perf_counter() - started
    if result.group is not None and "labels" in result.group:
        return np.asarray(result.group["labels"][...]), seconds
    return np.asarray(result.mask[...]).astype(bool), seconds


def vmodel_context(path: Path) -> int:
    """The through-plane context a trained model recorded."""
    return int(volseg.model.load_checkpoint(path, "cpu").config.get("context", 0))


def evenly_spaced(count: int, n_slices: int) -> list[int]:
    if count == 1:
        return [n_slices // 2]
    return sorted({int(round(z)) for z in np.linspace(0, n_slices - 1, count)})


def run(args) -> dict:
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    budget = BUDGETS[mode]
    network = dict(budget["network"])
    if args.epochs:
        network["epochs"] = args.epochs
    network["seed"] = args.train_seed
    wanted = set(args.rows.split(","))
    if args.no_sparse:
        wanted.discard("sparse")
    unknown = wanted - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    contexts = [int(k) for k in str(args.context).split(",")]
    shape, n_train, test_start = budget["shape"], budget["train_slices"], budget["test_start"]
    image, labels = synth.anode(shape, seed=args.seed)
    train_image, train_labels = image[:n_train], labels[:n_train]
    test_image, test_labels = image[test_start:], labels[test_start:]
    truth_ni = test_labels == NI
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="volseg-accuracy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    timed: dict[str, tuple] = {}  # single-plane rows timed again, in interleaved rounds
    device = args.device
    try:
        if "otsu" in wanted:
            started = time.perf_counter()
            otsu = metrics.threshold_baseline(test_image, test_labels, ni_label=NI, sample_step=1)
            rows["multi-otsu"] = {
                **ni_scores(test_image > otsu["threshold"], truth_ni),
                "seconds": round(time.perf_counter() - started, 2),
            }
            log.info("multi-otsu %s", rows["multi-otsu"])

        if "forest" in wanted:
            started = time.perf_counter()
            forest = train_forest(
                train_image,
                train_labels,
                range(n_train),
                budget["forest"]["samples"],
                args.seed + args.train_seed,
                budget["forest"]["trees"],
            )
            trained = time.perf_counter() - started
            predicted = predict_forest(forest, test_image)
            rows["random-forest"] = {
                **ni_scores(predicted == NI, truth_ni),
                "phase_iou": phase_ious(predicted, test_labels),
                "train_seconds": round(trained, 2),
                "segment_seconds": round(time.perf_counter() - started - trained, 2),
            }
            log.info("random-forest %s", rows["random-forest"])

        if wanted & {"z", "zyx"}:
            model_z, train_z, val_z = train_network(
                workdir, "z", train_image, train_labels, network, device, context=0
            )
            for name, axes in (("volseg-z", "z"), ("volseg-zyx", "zyx")):
                if axes not in wanted:
                    continue
                mask, seconds = segment_test(model_z, test_image, device, axes=axes)
                if axes == "z":
                    timed[name] = (model_z, {"axes": axes})
                rows[name] = {
                    **ni_scores(mask, truth_ni),
                    "val_ni_iou": val_z,
                    "train_seconds": round(train_z, 2),
                    "segment_seconds": round(seconds, 2),
                }
                log.info("%s %s", name, rows[name])

        for k in contexts if "context" in wanted else []:
            model_c, train_c, val_c = train_network(
                workdir, f"context{k}", train_image, train_labels, network, device, context=k
            )
            mask, seconds = segment_test(model_c, test_image, device)
            timed[f"volseg-z+context{k}"] = (model_c, {})
            rows[f"volseg-z+context{k}"] = {
                **ni_scores(mask, truth_ni),
                "val_ni_iou": val_c,
                "train_seconds": round(train_c, 2),
                "segment_seconds": round(seconds, 2),
            }
            log.info("context%d %s", k, rows[f"volseg-z+context{k}"])

        for row, name, k in (
            ("3phase", "volseg-3phase-z", 0),
            ("3phase-context", "volseg-3phase-z+context1", 1),
        ):
            if row not in wanted:
                continue
            model_3, train_3, val_3 = train_network(
                workdir, row, train_image, train_labels, network, device, classes=3, context=k
            )
            predicted, seconds = segment_test(model_3, test_image, device)
            timed[name] = (model_3, {})
            rows[name] = {
                **ni_scores(predicted == NI, truth_ni),
                "phase_iou": phase_ious(predicted, test_labels),
                "val_ni_iou": val_3,
                "train_seconds": round(train_3, 2),
                "segment_seconds": round(seconds, 2),
            }
            log.info("%s %s", row, rows[name])

        # Time the single-plane settings in rounds, each round every setting once, so
        # that load from other jobs falls on all of them alike; keep each one's fastest.
        for _ in range(args.repeats):
            for name, (model, modes) in timed.items():
                _, seconds = segment_test(model, test_image, device, **modes)
                row = rows[name]
                row["segment_seconds"] = round(min(row["segment_seconds"], seconds), 2)
        z_seconds = rows.get("volseg-z", {}).get("segment_seconds")
        for name, row in rows.items():
            if name.startswith("volseg-") and z_seconds:
                row["cost_vs_z"] = round(row["segment_seconds"] / z_seconds, 2)

        sparse = []
        counts = [c for c in SPARSE_COUNTS if c <= n_train] if "sparse" in wanted else []
        for count in counts:
            slices = evenly_spaced(count, n_train)
            path, seconds, _ = train_network(
                workdir,
                f"sparse{count}",
                train_image,
                train_labels,
                network,
                device,
                labelled_slices=slices,
                context=args.sparse_context,
            )
            mask, _ = segment_test(path, test_image, device)
            started = time.perf_counter()
            forest = train_forest(
                train_image,
                train_labels,
                slices,
                budget["forest"]["samples"],
                args.seed + args.train_seed,
                budget["forest"]["trees"],
            )
            forest_mask = predict_forest(forest, test_image) == NI
            entry = {
                "labelled_slices": count,
                "slices": slices,
                "volseg": ni_scores(mask, truth_ni),
                "volseg_context": vmodel_context(path),
                "random_forest": ni_scores(forest_mask, truth_ni),
                "volseg_train_seconds": round(seconds, 2),
                "forest_seconds": round(time.perf_counter() - started, 2),
            }
            sparse.append(entry)
            log.info("sparse %s", entry)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    checks = {}
    z, zyx = rows.get("volseg-z"), rows.get("volseg-zyx")
    if z and "random-forest" in rows:
        checks["volseg_z_minus_forest"] = round(z["ni_iou"] - rows["random-forest"]["ni_iou"], 4)
    for k in contexts:
        ctx = rows.get(f"volseg-z+context{k}")
        if ctx and z:
            checks[f"context{k}_minus_z"] = round(ctx["ni_iou"] - z["ni_iou"], 4)
        if ctx and zyx:
            checks[f"context{k}_minus_zyx"] = round(ctx["ni_iou"] - zyx["ni_iou"], 4)
        if ctx and "cost_vs_z" in ctx:
            checks[f"context{k}_cost_vs_z"] = ctx["cost_vs_z"]
    if zyx and "cost_vs_z" in zyx:
        checks["zyx_cost_vs_z"] = zyx["cost_vs_z"]
    return {
        "benchmark": "accuracy",
        "volume": {
            "generator": "volseg.synth.anode (preset v2, calibrated defaults)",
            "shape": list(shape),
            "seed": args.seed,
            "train_slices": [0, n_train],
            "test_slices": [test_start, shape[0]],
        },
        "budget": {
            "mode": mode,
            "torch_threads": torch.get_num_threads(),
            "segment_seconds": f"fastest of {args.repeats + 1} runs, in interleaved rounds "
            "(zyx: one run)",
            "network": network,
            "training_defaults": "AdamW lr 1e-3 wd 1e-4, 5% warm-up + cosine, "
            "grad clip 1.0, EMA 0.999",
            "crops_seen": network["epochs"] * network["steps_per_epoch"] * network["batch_size"],
            "forest": {**budget["forest"], "features": 26, "sigmas": list(SIGMAS)},
            "context": contexts,
            "train_seed": args.train_seed,
        },
        "rows": sorted(wanted),
        "methods": rows,
        "checks": checks,
        "sparse_labels": sparse,
        "machine": {
            **machine(torch.cuda.is_available() and args.device != "cpu"),
            "note": "2 CPU cores shared with other jobs during the run: seconds are "
            "comparable within this run only",
        },
    }


def profile(args) -> dict:
    """Ni IoU of trained models along the whole volume, 8 slices at a time.

    Each model segments the whole volume (all 96 slices, so a context model has real
    neighbours everywhere); the test slab's false positives and negatives say whether
    the model calls too much or too little Ni there.
    """
    budget = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    image, labels = synth.anode(budget["shape"], seed=args.seed)
    truth = labels == NI
    test = slice(budget["test_start"], None)
    out = {}
    for path in args.profile:
        result = volseg.segment(
            image, model=path, chunks=(16, *image.shape[1:]), device=args.device, progress=False
        )
        mask = np.asarray(result.mask[...]).astype(bool)
        inter = np.logical_and(mask, truth).sum(axis=(1, 2))
        union = np.logical_or(mask, truth).sum(axis=(1, 2))
        out[str(path)] = {
            "ni_iou_per_8_slices": [
                round(float(inter[z : z + 8].sum() / max(union[z : z + 8].sum(), 1)), 4)
                for z in range(0, len(inter), 8)
            ],
            "test_false_positives": int(np.logical_and(mask[test], ~truth[test]).sum()),
            "test_false_negatives": int(np.logical_and(~mask[test], truth[test]).sum()),
        }
        log.info("%s %s", path, out[str(path)])
    grey = {
        name: [
            round(float(image[z : z + 8][labels[z : z + 8] == value].mean()))
            for z in range(0, image.shape[0], 8)
        ]
        for name, value in synth.PHASES.items()
    }
    return {
        "benchmark": "accuracy-profile",
        "volume": {"shape": list(budget["shape"]), "seed": args.seed},
        "test_slices": [budget["test_start"], budget["shape"][0]],
        "grey_mean_per_8_slices": grey,
        "models": out,
    }


def summarise(paths: list[str]) -> dict:
    """Mean, spread and paired differences of the rows of several runs (one per train seed).

    Runs are grouped by budget (epochs x steps x crops) and paired by train seed: a
    difference between two rows is taken within each seed that has both.
    """
    groups: dict[str, dict[int, dict]] = {}
    curves: dict[str, dict[int, list]] = {}
    for path in paths:
        figures = json.loads(Path(path).read_text())
        budget = figures["budget"]
        key = f"{budget['mode']}, {budget['crops_seen']} crops"
        seed = int(budget.get("train_seed", 0))
        groups.setdefault(key, {}).setdefault(seed, {}).update(
            {name: row["ni_iou"] for name, row in figures["methods"].items()}
        )
        for entry in figures.get("sparse_labels") or []:
            if "volseg" in entry:  # curves of volseg.train's defaults (context="auto")
                curves.setdefault(key, {}).setdefault(entry["labelled_slices"], []).append(entry)
    out = {}
    for key, seeds in groups.items():
        # z first, then zyx, then the rest: a difference is a later row minus an earlier one
        names = sorted(
            {name for rows in seeds.values() for name in rows},
            key=lambda n: (n != "volseg-z", n != "volseg-zyx", n),
        )
        rows = {}
        for name in names:
            values = np.array([r[name] for r in seeds.values() if name in r])
            rows[name] = {
                "runs": len(values),
                "seeds": sorted(s for s, r in seeds.items() if name in r),
                "mean": round(float(values.mean()), 4),
                "sd": round(float(values.std(ddof=1)), 4) if len(values) > 1 else None,
                "min": round(float(values.min()), 4),
                "max": round(float(values.max()), 4),
            }
        paired = {}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                diffs = np.array([r[b] - r[a] for r in seeds.values() if a in r and b in r])
                if len(diffs) > 1:
                    paired[f"{b} - {a}"] = {
                        "runs": len(diffs),
                        "mean": round(float(diffs.mean()), 4),
                        "sd": round(float(diffs.std(ddof=1)), 4),
                        "min": round(float(diffs.min()), 4),
                        "max": round(float(diffs.max()), 4),
                    }
        out[key] = {"rows": rows, "paired_differences": paired}
    for key, counts in curves.items():
        out.setdefault(key, {})["sparse_labels"] = {
            str(count): sparse_summary(entries) for count, entries in sorted(counts.items())
        }
    return {"benchmark": "accuracy-summary", "runs": sorted(paths), "groups": out}


def sparse_summary(entries: list[dict]) -> dict:
    """Mean and spread over training seeds of one point of the labelled-slices curve."""

    def spread(values: list[float]) -> dict:
        values = np.asarray(values)
        return {
            "mean": round(float(values.mean()), 4),
            "sd": round(float(values.std(ddof=1)), 4) if len(values) > 1 else None,
            "min": round(float(values.min()), 4),
            "max": round(float(values.max()), 4),
        }

    ours = [e["volseg"]["ni_iou"] for e in entries]
    forest = [e["random_forest"]["ni_iou"] for e in entries]
    return {
        "runs": len(entries),
        "volseg": spread(ours),
        "volseg_worst_slice": spread([e["volseg"]["worst_slice_ni_iou"] for e in entries]),
        "random_forest": spread(forest),
        "forest_worst_slice": spread([e["random_forest"]["worst_slice_ni_iou"] for e in entries]),
        "volseg_minus_forest": spread([a - b for a, b in zip(ours, forest)]),
        "volseg_ahead": sum(a > b for a, b in zip(ours, forest)),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budget for 2 CPU cores")
    parser.add_argument("--smoke", action="store_true", help="tiny run: check the code paths")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--context", default="1,2", help="slices per side; several as a list (1,2)")
    parser.add_argument(
        "--sparse-context",
        type=lambda text: text if text == "auto" else int(text),
        default="auto",
        help="context of the labelled-slices curve's models (auto: volseg.train's default)",
    )
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"rows to run, from {','.join(ROWS)} (all)"
    )
    parser.add_argument(
        "--train-seed", type=int, default=0, help="volseg.train's seed (crops, init) (0)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="extra interleaved timing rounds of the single-plane settings; the fastest (3)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-sparse", action="store_true", help="skip the labelled-slices curve")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the trained models")
    parser.add_argument(
        "--summarise",
        nargs="+",
        metavar="JSON",
        help="print the mean and spread of the rows of earlier runs (one per train seed)",
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        metavar="MODEL",
        help="Ni IoU of trained models (--keep) along the whole volume, 8 slices at a time",
    )
    args = parser.parse_args(argv)
    if args.profile:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
        figures = profile(args)
        print(json.dumps(figures, indent=2))
        return figures
    if args.summarise:
        figures = summarise(args.summarise)
        print(json.dumps(figures, indent=2))
        return figures
    # One torch thread: on a shared 2-core machine two spinning threads lose most of their speed.
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    figures = run(args)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
