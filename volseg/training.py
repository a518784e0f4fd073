"""``train()``: fine-tune the U-Net on labelled volumes.

Random ``tile x tile`` crops are read lazily from the training volumes (small
volumes are cached in memory, large ones stay in Zarr), the validation set is a
held-out slab of slices at the end of each volume (spatially separate from the
training slices, with a gap), and training stops early on the validation Ni IoU
(Ni class alone), keeping the best checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import io as vio
from . import metrics, optim, tiling
from . import model as vmodel

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)

BINARY_LOSSES = ("bce", "dice", "bce+dice")
MULTICLASS_LOSSES = ("ce", "dice", "ce+dice")
LOSSES = tuple(dict.fromkeys(BINARY_LOSSES + MULTICLASS_LOSSES))
# Volumes up to this size are read into memory once; larger ones are cropped from storage.
CACHE_BYTES = 2 << 30
# Batches smaller than this train with BatchNorm statistics frozen after the warm-up.
SMALL_BATCH = 8
TRAIN_STATE_FORMAT = "volseg.trainstate/1"


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    path : pathlib.Path
        The best checkpoint.
    history : pandas.DataFrame
        One row per epoch: ``epoch``, ``loss``, ``val_loss``, ``val_ni_iou``,
        ``val_dice``, ``lr``, ``seconds``; a multi-class model has ``val_mean_iou``
        and ``val_iou_<phase>`` instead of ``val_dice``.
    best_epoch : int
    best_val_ni_iou : float
        The best monitored validation score: Ni IoU of a binary model, the mean
        IoU over the phases of a multi-class one (early stopping follows it).
    config : dict
        The model configuration stored in the checkpoint.

    Examples
    --------
    Two epochs of one step each on a tiny volume (label 1 = Ni):

    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((6, 32, 32)) < 0.4).astype(np.uint8)
    >>> image = labels * 1000.0 + rng.normal(0, 100, labels.shape)
    >>> result = train(image, labels, getfixture("tmp_path") / "unet.pt", encoder="resnet18",
    ...                encoder_depth=3, decoder_channels=[32, 16, 8], tile=32, batch_size=2,
    ...                epochs=2, steps_per_epoch=1, device="cpu", progress=False)
    >>> result.history.columns.tolist()
    ['epoch', 'loss', 'val_loss', 'val_ni_iou', 'val_dice', 'lr', 'seconds']
    >>> result.best_val_ni_iou == float(result.history["val_ni_iou"].max())
    True
    """

    path: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_ni_iou: float
    config: dict


@dataclass
class _Pair:
    image: Any
    labels: Any
    name: str
    train_z: tuple[int, int]
    val_z: tuple[int, int]
    recorded_ni: float | None = None  # Ni value recorded in the labels' attrs
    recorded_phases: dict | None = None  # all phases recorded there
    # Sparse labels: the labelled slices used for training / validation (None: the slabs).
    train_slices: tuple[int, ...] | None = None
    val_slices: tuple[int, ...] | None = None

    def train_count(self) -> int:
        if self.train_slices is not None:
            return len(self.train_slices)
        return self.train_z[1] - self.train_z[0]

    def validation_planes(self) -> tuple[int, ...] | range:
        return self.val_slices if self.val_slices is not None else range(*self.val_z)

    def split(self) -> dict:
        if self.train_slices is None:
            return {"train_z": list(self.train_z), "val_z": list(self.val_z)}
        return {"train_slices": list(self.train_slices), "val_slices": list(self.val_slices)}


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _open_pairs(
    images, labels, val_fraction: float, val_gap: int, sparse: bool = False
) -> list[_Pair]:
    images, labels = _as_list(images), _as_list(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"got {len(images)} image volume(s) but {len(labels)} label volume(s); "
            "give one label volume per image volume."
        )
    pairs = []
    for image_source, label_source in zip(images, labels):
        image = vio.open_scan(image_source, role="training image")
        label = vio.open_scan(label_source, role="training labels", allow_bool=True)
        if image.shape != label.shape:
            raise ValueError(
                f"training labels {label.source!r} have shape {label.shape} but image "
                f"{image.source!r} has shape {image.shape}; give the labels of this image."
            )
        depth = image.shape[0]
        n_val = max(1, int(round(depth * val_fraction))) if val_fraction > 0 else 0
        gap = min(val_gap, max(0, depth - n_val - 1)) if n_val else 0
        n_train = depth - n_val - gap
        if n_train < 1 and not sparse:
            raise ValueError(
                f"training image {image.source!r} has only {depth} slices: too few to hold out "
                f"val_fraction={val_fraction} plus a gap of {val_gap} as a separate slab; give "
                "more slices, a smaller val_fraction or val_gap, or several volumes."
            )
        pairs.append(
            _Pair(
                _maybe_cached(image.array),
                _maybe_cached(label.array),
                image.source,
                (0, n_train),
                (depth - n_val, depth),
                vio.recorded_label(label, "ni"),
                vio.recorded_phases(label),
            )
        )
    return pairs


def _sparse_split(
    pairs: list[_Pair], labelled_slices: Any, ignore_label: float | None, val_fraction: float
) -> None:
    """Train and validate on labelled slices only (given, or found by ``ignore_label``).

    The last ``val_fraction`` of each volume's labelled slices (at least one) are held out
    for validation; a volume with a single labelled slice trains and validates on it.
    """
    if labelled_slices is None and ignore_label is None:
        return
    if labelled_slices is not None:
        per_volume = _labelled_per_volume(labelled_slices, len(pairs))
    else:
        per_volume = [_slices_with_labels(pair.labels, ignore_label) for pair in pairs]
        if all(len(found) == pair.image.shape[0] for found, pair in zip(per_volume, pairs)):
            return  # every slice holds labels: the ordinary slab split
    for pair, slices in zip(pairs, per_volume):
        depth = pair.image.shape[0]
        slices = sorted({int(z) for z in slices})
        bad = [z for z in slices if not 0 <= z < depth]
        if bad:
            raise ValueError(
                f"labelled_slices {bad} lie outside training image {pair.name!r} "
                f"({depth} slices, 0..{depth - 1}); give slice indices of that volume."
            )
        if not slices:
            raise ValueError(
                f"training labels of {pair.name!r} hold no labelled slice (every voxel is "
                f"ignore_label={ignore_label!r}); label at least one slice."
            )
        if len(slices) == 1:
            log.warning(
                "only slice %d of %s is labelled: it is used for training and validation",
                slices[0],
                pair.name,
            )
            pair.train_slices = pair.val_slices = tuple(slices)
            continue
        n_val = min(len(slices) - 1, max(1, int(round(len(slices) * val_fraction))))
        pair.train_slices, pair.val_slices = tuple(slices[:-n_val]), tuple(slices[-n_val:])


def _labelled_per_volume(labelled_slices: Any, n_volumes: int) -> list[list[int]]:
    values = list(labelled_slices)
    if values and all(isinstance(v, (list, tuple, range, np.ndarray)) for v in values):
        if len(values) != n_volumes:
            raise ValueError(
                f"labelled_slices has {len(values)} lists for {n_volumes} volume(s); give one "
                "list of slice indices per volume, or one list for all."
            )
        return [list(v) for v in values]
    if not values or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(
            f"labelled_slices={labelled_slices!r} must be slice indices, e.g. [0, 10, 20] "
            "(or one such list per volume)."
        )
    return [values] * n_volumes


def _slices_with_labels(labels: Any, ignore_label: float) -> list[int]:
    """The z-slices holding at least one voxel that is not ``ignore_label``."""
    if isinstance(labels, np.ndarray):
        return np.flatnonzero((labels != ignore_label).any(axis=(1, 2))).tolist()
    return [
        z
        for z in range(labels.shape[0])
        if bool(np.any(vio.read_region(labels, (z, slice(None), slice(None))) != ignore_label))
    ]


def _maybe_cached(array: Any) -> Any:
    nbytes = math.prod(array.shape) * np.dtype(array.dtype).itemsize
    if nbytes <= CACHE_BYTES:
        return np.asarray(array[...] if not hasattr(array, "compute") else array.compute())
    return array


def _read_crop(array: Any, z: int, y0: int, x0: int, tile: int) -> np.ndarray:
    """``array[z, y0:y0+tile, x0:x0+tile]``, mirrored where it leaves the plane."""
    height, width = array.shape[1:]
    if y0 >= 0 and x0 >= 0 and y0 + tile <= height and x0 + tile <= width:
        return vio.read_region(array, (z, slice(y0, y0 + tile), slice(x0, x0 + tile)))
    ys = tiling.reflect_index(np.arange(y0, y0 + tile), height)
    xs = tiling.reflect_index(np.arange(x0, x0 + tile), width)
    block = vio.read_region(
        array, (z, slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    )
    return block[np.ix_(ys - ys.min(), xs - xs.min())]


def _read_planes(array: Any, z: int, y0: int, x0: int, tile: int, context: int) -> np.ndarray:
    """The crop of slice ``z``; with ``context`` its neighbours too, ``(2k+1, tile, tile)``."""
    if not context:
        return _read_crop(array, z, y0, x0, tile)
    planes = tiling.through_plane_index(z, z + 1, array.shape[0], context)
    return np.stack([_read_crop(array, int(plane), y0, x0, tile) for plane in planes])


class _Crops:
    """Random training crops and fixed validation tiles.

    Targets are float 0/1 Ni masks ``(1, T, T)`` for a binary model (-1 where the
    labels hold ``ignore_label``), and int64 class indices ``(T, T)`` for a multi-class
    one (``phases``: the label value of each class; other values are unlabelled, -1,
    and ignored by the loss).
    """

    def __init__(
        self,
        pairs: list[_Pair],
        tile: int,
        ni_label: float,
        normalisation: dict | None = None,
        phases: dict | None = None,
        ignore_label: float | None = None,
    ):
        self.pairs = pairs
        self.tile = tile
        self.ni_label = ni_label
        self.normalisation = normalisation
        self.phases = phases
        self.ignore_label = ignore_label
        self.context = 0  # through-plane neighbours per side read with every crop
        weights = np.array([p.train_count() * np.prod(p.image.shape[1:]) for p in pairs])
        self.train_weights = weights / weights.sum()

    def _pair_crop(self, pair: _Pair, z: int, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        raw = _read_planes(pair.image, z, y0, x0, self.tile, self.context)
        image = vmodel.normalise(raw, self.normalisation)
        labels = _read_crop(pair.labels, z, y0, x0, self.tile)
        if self.phases is None:
            target = (labels == self.ni_label).astype(np.float32)
            if self.ignore_label is not None:
                target[labels == self.ignore_label] = -1.0  # unlabelled: left out of the loss
            return image, target
        return image, metrics.class_index(labels, list(self.phases.values())).astype(np.int64)

    def random_position(self, rng: np.random.Generator) -> tuple[_Pair, int, int, int]:
        """A random crop of the training slabs: (pair, z, y0, x0), weighted by their size."""
        pair = self.pairs[rng.choice(len(self.pairs), p=self.train_weights)]
        if pair.train_slices is not None:
            z = int(pair.train_slices[rng.integers(len(pair.train_slices))])
        else:
            z = int(rng.integers(*pair.train_z))
        height, width = pair.image.shape[1:]
        y0 = int(rng.integers(0, max(1, height - self.tile + 1)))
        x0 = int(rng.integers(0, max(1, width - self.tile + 1)))
        return pair, z, y0, x0

    def sample_normalisation(self, rng: np.random.Generator, n: int = 32) -> dict:
        """Fixed normalisation from the grey values of ``n`` random training crops."""
        samples = []
        for _ in range(n):
            pair, z, y0, x0 = self.random_position(rng)
            samples.append(_read_crop(pair.image, z, y0, x0, self.tile).ravel())
        return vmodel.fit_normalisation(np.concatenate(samples))

    def random_batch(self, rng: np.random.Generator, size: int, augment: bool):
        images = np.empty((size, 2 * self.context + 1, self.tile, self.tile), np.float32)
        targets = []
        for i in range(size):
            image, target = self._pair_crop(*self.random_position(rng))
            if augment:
                image, target = _augment(image, target, rng)
            images[i] = image
            targets.append(target)
        return torch.from_numpy(images), torch.from_numpy(self._stack(targets))

    def _stack(self, targets: list[np.ndarray]) -> np.ndarray:
        stacked = np.stack(targets)
        return stacked[:, None] if self.phases is None else stacked

    def validation_tiles(self, max_tiles: int, rng: np.random.Generator):
        """Fixed tiles of the held-out slabs (a deterministic subset when there are many)."""
        positions = []
        for index, pair in enumerate(self.pairs):
            grid = tiling.plane_grid(pair.image.shape[1:], self.tile, 0.0)
            for z in pair.validation_planes():
                for ky in range(grid.y.count):
                    for kx in range(grid.x.count):
                        positions.append((index, z, ky * self.tile, kx * self.tile))
        if len(positions) > max_tiles:
            chosen = rng.choice(len(positions), size=max_tiles, replace=False)
            positions = [positions[i] for i in sorted(chosen)]
        images, targets = [], []
        for index, z, y0, x0 in positions:
            image, target = self._pair_crop(self.pairs[index], z, y0, x0)
            images.append(image)
            targets.append(target)
        if not images:
            return None
        stacked = np.stack(images)
        if stacked.ndim == 3:
            stacked = stacked[:, None]
        return torch.from_numpy(stacked), torch.from_numpy(self._stack(targets))


def _augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
    """Flips, 90-degree rotations (mask stays binary: no interpolation), intensity jitter.

    An image with through-plane context ``(2k+1, T, T)`` turns in-plane alike, and its
    slice order is reversed half of the time (a mirror along z).
    """
    k = int(rng.integers(4))
    image, target = np.rot90(image, k, axes=(-2, -1)), np.rot90(target, k, axes=(-2, -1))
    if rng.random() < 0.5:
        image, target = image[..., ::-1], target[..., ::-1]
    if image.ndim == 3 and rng.random() < 0.5:
        image = image[::-1]
    scale = 1.0 + rng.uniform(-0.1, 0.1)
    shift = rng.uniform(-0.05, 0.05)
    return np.ascontiguousarray(image * scale + shift), np.ascontiguousarray(target)


def _loss_fn(kind: str, classes: int = 1):
    if classes > 1:
        return _multiclass_loss(kind)
    mean_bce = torch.nn.BCEWithLogitsLoss()

    def bce(logits, target):
        unlabelled = target < 0
        if not bool(unlabelled.any()):
            return mean_bce(logits, target)
        labelled = ~unlabelled
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        return mean_bce(logits[labelled], target[labelled])

    def soft_dice(logits, target):
        prob = torch.sigmoid(logits)
        if bool((target < 0).any()):  # unlabelled pixels (ignore_label) count for nothing
            labelled = (target >= 0).to(prob.dtype)
            prob, target = prob * labelled, target * labelled
        inter = (prob * target).sum()
        return 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)

    if kind == "bce":
        return bce
    if kind == "dice":
        return soft_dice
    return lambda logits, target: bce(logits, target) + soft_dice(logits, target)


def _multiclass_loss(kind: str):
    """Cross-entropy and/or soft Dice averaged over the classes; label -1 is ignored."""
    mean_cross_entropy = torch.nn.CrossEntropyLoss(ignore_index=-1)

    def cross_entropy(logits, target):
        if not bool((target >= 0).any()):
            return logits.sum() * 0.0  # nothing labelled in this batch (the mean would be NaN)
        return mean_cross_entropy(logits, target)

    def soft_dice(logits, target):
        labelled = (target >= 0).unsqueeze(1)
        prob = torch.softmax(logits, dim=1) * labelled
        one_hot = torch.nn.functional.one_hot(target.clamp(min=0), logits.shape[1])
        one_hot = one_hot.permute(0, 3, 1, 2).to(prob.dtype) * labelled
        inter = (prob * one_hot).sum(dim=(0, 2, 3))
        sums = prob.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
        return (1 - (2 * inter + 1) / (sums + 1)).mean()

    if kind == "ce":
        return cross_entropy
    if kind == "dice":
        return soft_dice
    return lambda logits, target: cross_entropy(logits, target) + soft_dice(logits, target)


def _evaluate(network, validation, loss_fn, device, batch_size: int, phases=None) -> dict:
    """Validation loss and scores: Ni IoU and Dice (binary), per-phase IoU (``phases``)."""
    images, targets = validation
    network.eval()
    total_loss, counts = 0.0, {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    classes = list(range(len(phases or {})))
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            image = images[start : start + batch_size].to(device)
            target = targets[start : start + batch_size].to(device)
            logits = network(image)
            total_loss += float(loss_fn(logits, target)) * len(image)
            target = target.cpu().numpy()
            if phases is not None:
                predicted = logits.argmax(dim=1).cpu().numpy()
                confusion += metrics.confusion_matrix(target, predicted, classes)
                continue
            labelled = target >= 0
            batch_counts = metrics.confusion_counts(
                (logits > 0).cpu().numpy()[labelled], target[labelled] > 0.5
            )
            for key in counts:
                counts[key] += batch_counts[key]
    row = {"val_loss": total_loss / len(images)}
    if phases is None:
        scores = metrics.pooled_scores(**counts)
        return {**row, "val_ni_iou": scores["ni_iou"], "val_dice": scores["ni_dice"]}
    scores = metrics.phase_scores(confusion, list(phases))
    row.update(val_ni_iou=scores["iou"]["ni"], val_mean_iou=scores["mean_iou"])
    row.update({f"val_iou_{name}": value for name, value in scores["iou"].items()})
    return row


def _validate(tile, batch_size, epochs, lr, loss, val_fraction, patience):
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 32 or tile % 32:
        raise ValueError(f"tile={tile!r} must be a multiple of 32, for example 128.")
    for name, value in (("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be positive, e.g. 1e-3.")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; use one of {', '.join(LOSSES)}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must lie in (0, 1), e.g. 0.2.")
    if patience < 1:
        raise ValueError(f"patience={patience!r} must be at least 1 epoch.")


def _validate_stability(weight_decay, warmup, grad_clip, ema_decay) -> None:
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0, e.g. 1e-4.")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup={warmup!r} is a share of the steps in [0, 1), e.g. 0.05.")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip!r} must be positive (e.g. 1.0) or None.")
    if ema_decay is not None and not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay={ema_decay!r} must be in [0, 1) (e.g. 0.999) or None.")


def state_path(out: str | Path) -> Path:
    """The resumable training state written beside a checkpoint: ``<out>.state.pt``.

    It holds the last epoch's live weights, their moving average, the optimiser's
    moments and the schedule's position, so that ``resume_from=out`` continues an
    unfinished schedule where it stopped (for example at ``max_time``).

    Examples
    --------
    >>> state_path("runs/unet.pt").name
    'unet.pt.state.pt'
    """
    out = Path(out)
    return out.with_name(out.name + ".state.pt")


def _save_state(out: Path, payload: dict) -> None:
    path = state_path(out)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": TRAIN_STATE_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def _load_state(resume_from: Path, history_length: int) -> dict | None:
    """The state of an unfinished schedule that belongs to the resumed checkpoint, or None."""
    path = state_path(resume_from)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != TRAIN_STATE_FORMAT or state.get("finished", True):
        return None
    if len(state.get("history", [])) < history_length:
        return None  # an older state than the checkpoint: do not go back in time
    return state


def _validate_split(val_gap: int, val_tiles: int) -> None:
    if val_gap < 0:
        raise ValueError(f"val_gap={val_gap!r} must be >= 0 slices.")
    if val_tiles < 1:
        raise ValueError(f"val_tiles={val_tiles!r} must be at least 1.")


def _freeze(network: torch.nn.Module, freeze_encoder: bool) -> None:
    for parameter in network.encoder.parameters():
        parameter.requires_grad = not freeze_encoder


def train(
    images: Any,
    labels: Any,
    out: str | Path,
    encoder: str = "vgg16",
    encoder_weights: str | Path | None = None,
    freeze_encoder: bool = False,
    ni_label: float | None = None,
    tile: int = 128,
    batch_size: int = 16,
    epochs: int = 100,
    lr: float = 1e-3,
    loss: str | None = None,
    augment: bool = True,
    val_fraction: float = 0.2,
    patience: int = 10,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    *,
    steps_per_epoch: int | None = None,
    val_gap: int = 2,
    val_tiles: int = 256,
    encoder_depth: int = 5,
    decoder_channels: list[int] | None = None,
    resume_from: str | Path | None = None,
    overwrite: bool = False,
    classes: int = 1,
    phases: dict[str, int] | None = None,
    ignore_label: float | None = None,
    weight_decay: float = 1e-4,
    warmup: float = 0.05,
    grad_clip: float | None = 1.0,
    ema_decay: float | None = 0.999,
    max_time: str | float | None = None,
    precision: str = "fp32",
    context: int = 0,
    labelled_slices: Any = None,
) -> TrainResult:
    """Train (fine-tune) the Ni U-Net on labelled volumes.

    Parameters
    ----------
    images, labels : path, array, or list of them
        Grey-value volumes and their labels (Zarr path/group/array, TIFF stack,
        numpy or dask), one label volume per image volume.
    out : path
        Checkpoint to write (the best epoch). ``<out>.history.csv`` and
        ``<out>.history.png`` are written beside it.
    encoder : str
        segmentation-models-pytorch encoder ("vgg16" as in the study, "resnet18", ...).
    encoder_weights : None, "imagenet" or path
        Encoder initialisation; "imagenet" needs the network, a local file does not.
    freeze_encoder : bool
        Train the decoder only (the encoder keeps its pretrained weights).
    ni_label : number, optional
        Value of Ni in ``labels``; default from the labels' attrs, else 1.
    tile, batch_size, epochs, lr : int, int, int, float
        Crop size, crops per step, maximum epochs, peak learning rate of AdamW (reached
        after the warm-up, then decayed along a cosine to 1 % of it at the last step).
    loss : {"bce+dice", "bce", "dice", "ce+dice", "ce"}, optional
        Default ``"bce+dice"`` (binary) or ``"ce+dice"`` (multi-class: cross-entropy
        plus the soft Dice loss averaged over the classes).
    augment : bool
        Flips, 90-degree rotations and intensity jitter of the training crops.
    val_fraction : float
        Share of each volume's slices held out (the last ones) for validation.
    patience : int
        Stop after this many epochs without a better validation Ni IoU.
    seed : int
        Seeds crops, augmentation and initialisation.
    device : str
        "auto", "cpu", "cuda" or "cuda:i".
    progress : bool
        Show a progress bar.
    steps_per_epoch : int, optional
        Batches per epoch; default: enough crops to cover the training slices once.
    val_gap : int
        Slices left out between the training and validation slabs.
    val_tiles : int
        At most this many validation tiles.
    encoder_depth, decoder_channels
        Network size (defaults: 5 and smp's ``[256, 128, 64, 32, 16]``).
    resume_from : path, optional
        Continue from this checkpoint (weights, config and history). When the run that
        wrote it stopped before the end of its schedule (``max_time``, or killed), its
        training state (:func:`state_path`: live and averaged weights, optimiser,
        schedule position) is restored and the schedule continues to its planned end;
        otherwise a new schedule of ``epochs`` epochs starts from its weights.
    overwrite : bool
        Replace an existing ``out``.
    classes : int
        1: a binary Ni model (sigmoid). 3 (or more): one class per phase (softmax),
        for example pore, YSZ and Ni; early stopping then follows the mean IoU over
        the phases, and label values not in ``phases`` are ignored as unlabelled.
    phases : dict, optional
        ``{name: label value}`` of the classes, in class order; must include
        ``"ni"``. Default: the phases recorded in the labels' attrs (volseg.synth
        records ``{"pore": 0, "ysz": 1, "ni": 2}``), else that mapping.
    ignore_label : number, optional
        Label value of unlabelled voxels (partly labelled slices): left out of the
        loss and of the validation scores. A multi-class model also ignores every
        value that is not one of its phases.
    weight_decay : float
        AdamW's decoupled weight decay.
    warmup : float
        Share of the schedule's steps over which the learning rate rises linearly to ``lr``.
    grad_clip : float or None
        Largest gradient norm (the gradients of a step are scaled down to it); None: off.
    ema_decay : float or None
        Decay of the exponential moving average of the weights (and BatchNorm
        statistics); the average is what is validated and saved. None: the raw weights.
        Batches smaller than 8 crops also keep BatchNorm statistics fixed after the warm-up.
    max_time : str or float, optional
        Wall-time budget such as ``"2h"``, ``"90m"``, ``"1h30m"`` or seconds: training
        stops in time to validate and save (the best checkpoint stays), and
        ``resume_from`` continues the schedule later.
    precision : {"fp32", "auto", "bf16", "fp16"}
        Autocast dtype of the training forward passes (weights, optimiser and loss stay
        float32; fp16 on CUDA with loss scaling); ``"auto"`` as in
        :func:`volseg.backends.resolve_precision`. Validation runs in float32.
    context : int
        Through-plane context (2.5D): each crop is given with its ``context``
        neighbouring slices on either side as extra input channels (mirrored at the
        volume's z border), ``2 * context + 1`` in all. Recorded in the checkpoint's
        config; :func:`volseg.segment` reads it from there. 0: plain 2D slices.
    labelled_slices : list of int, or one list per volume, optional
        Sparse labels: only these z-slices are labelled. Training crops are drawn from
        them alone and the last ``val_fraction`` of them (at least one) are held out
        for validation; a single labelled slice is used for both. Without it, when
        ``ignore_label`` is given and some slices hold nothing but ``ignore_label``, the
        slices holding labels are found and used the same way.

    Returns
    -------
    TrainResult

    Examples
    --------
    A toy run with a small network (real training: ``epochs`` in the tens, ``tile=128``,
    see ``docs/`` and ``volseg train``):

    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((6, 32, 32)) < 0.4).astype(np.uint8)
    >>> image = labels * 1000.0 + rng.normal(0, 100, labels.shape)
    >>> result = train(image, labels, getfixture("tmp_path") / "unet.pt", encoder="resnet18",
    ...                encoder_depth=3, decoder_channels=[32, 16, 8], tile=32, batch_size=2,
    ...                epochs=2, steps_per_epoch=1, device="cpu", progress=False)
    >>> len(result.history), result.path.name, result.config["tile"]
    (2, 'unet.pt', 32)
    >>> from volseg.model import load_checkpoint
    >>> load_checkpoint(result.path).training["best_epoch"] == result.best_epoch
    True
    >>> sorted(p.name for p in result.path.parent.iterdir())
    ['unet.pt', 'unet.pt.history.csv', 'unet.pt.history.png', 'unet.pt.state.pt']
    """
    started_at = time.perf_counter()
    _validate(tile, batch_size, epochs, lr, loss, val_fraction, patience)
    _validate_split(val_gap, val_tiles)
    _validate_stability(weight_decay, warmup, grad_clip, ema_decay)
    time_budget = optim.parse_duration(max_time)
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ValueError(
            f"context={context!r} must be a whole number of neighbouring slices >= 0, e.g. 1."
        )
    requested_loss = loss
    if phases is not None and classes == 1:
        raise ValueError(
            f"phases={phases!r} needs a multi-class model: pass classes={len(phases)} too."
        )
    if phases is not None:
        _check_phases(phases, classes)
    out = Path(out)
    if out.is_dir():
        raise ValueError(
            f"model file {str(out)!r} is a folder; give a file name, e.g. '{out}/unet.pt'."
        )
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"model file {str(out)!r}: its folder {str(out.parent)!r} does not exist; "
            "create it first."
        )
    if steps_per_epoch is not None and (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, (int, np.integer))
        or steps_per_epoch < 1
    ):
        raise ValueError(
            f"steps_per_epoch={steps_per_epoch!r} must be a positive integer (batches per "
            "epoch), or None for enough to cover the training slices once."
        )
    if out.exists() and not overwrite and (resume_from is None or Path(resume_from) != out):
        raise FileExistsError(
            f"model file {str(out)!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it, or resume_from to continue training it."
        )
    torch_device = vmodel.resolve_device(device)
    from .backends import resolve_precision

    autocast = vmodel.AUTOCAST_DTYPES[resolve_precision(precision, torch_device)]
    scaler = torch.amp.GradScaler(enabled=autocast is torch.float16 and torch_device.type == "cuda")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    pairs = _open_pairs(images, labels, val_fraction, val_gap, labelled_slices is not None)
    _sparse_split(pairs, labelled_slices, ignore_label, val_fraction)
    if ni_label is None:
        ni_label = 1 if pairs[0].recorded_ni is None else pairs[0].recorded_ni

    history: list[dict] = []
    previous = None if resume_from is None else vmodel.load_checkpoint(resume_from, torch_device)
    if previous is not None:
        # The checkpoint decides the classes; its loss unless another one is asked for.
        classes = int(previous.config["classes"])
        phases = vmodel.model_phases(previous.config)
        requested_loss = requested_loss or previous.training.get("loss")
    loss = _loss_for(requested_loss, classes)
    if previous is None and classes > 1:
        phases = _training_phases(phases, pairs, classes)
    if ignore_label is not None and (
        ignore_label == ni_label or ignore_label in (phases or {}).values()
    ):
        raise ValueError(
            f"ignore_label={ignore_label!r} is also the value of Ni or of a phase; unlabelled "
            "voxels need a value of their own."
        )
    crops = _Crops(
        pairs,
        previous.config["tile"] if previous else tile,
        ni_label,
        phases=phases,
        ignore_label=ignore_label,
    )
    if previous is not None:
        config = previous.config
        network = previous.network
        history = list(previous.training.get("history", []))
    else:
        config = vmodel.default_config(
            encoder=encoder,
            tile=tile,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels or [256, 128, 64, 32, 16][:encoder_depth],
            normalisation=crops.sample_normalisation(rng),
            classes=int(classes),
            context=context,
            labels=(
                {"ni_label": 1, "names": {"0": "background", "1": "Ni"}}
                if phases is None
                else {"phases": phases}
            ),
        )
        network = vmodel.build_unet(config, encoder_weights=encoder_weights)
    monitor = "val_ni_iou" if phases is None else "val_mean_iou"
    network.to(torch_device)
    _freeze(network, freeze_encoder)
    if previous is not None and Path(resume_from).resolve() != out.resolve():
        # The resumed weights are the best so far until an epoch beats them.
        vmodel.save_checkpoint(network, config, out, training=previous.training, overwrite=True)
    crops.normalisation = config["normalisation"]
    crops.context = vmodel.model_context(config)
    validation = crops.validation_tiles(val_tiles, np.random.default_rng(seed + 1))
    if validation is None:
        raise ValueError("no validation tiles: increase val_fraction or give more slices.")
    if phases is not None:
        _check_phases_present(validation[1], phases)
    if phases is None and not bool((validation[1] > 0.5).any()):
        raise ValueError(
            f"the validation slabs hold no Ni (label {ni_label}); Ni IoU cannot be measured: "
            "check ni_label, or hold out slices that contain Ni (val_fraction)."
        )
    if steps_per_epoch is None:
        train_pixels = sum(p.train_count() * np.prod(p.image.shape[1:]) for p in pairs)
        crop = config["tile"]
        steps_per_epoch = int(np.clip(train_pixels / (batch_size * crop * crop), 4, 500))

    resumed = None if previous is None else _load_state(Path(resume_from), len(history))
    if resumed is not None:
        network.load_state_dict(resumed["network"])
        history = list(resumed["history"])
        steps_per_epoch = int(resumed["schedule"]["steps_per_epoch"])
        batch_size = int(resumed["batch_size"])
        total_steps = int(resumed["schedule"]["total_steps"])
        epochs = math.ceil((total_steps - int(resumed["schedule"]["step"])) / steps_per_epoch)
        rng = np.random.default_rng([seed, len(history)])
    else:
        total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup * total_steps))
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    ema = None if ema_decay is None else optim.WeightEMA(network, ema_decay)
    step = 0
    if resumed is not None:
        optimiser.load_state_dict(resumed["optimiser"])
        lr = float(resumed["schedule"]["lr"])
        step = int(resumed["schedule"]["step"])
        if ema is not None and resumed.get("ema") is not None:
            ema.load_state_dict(resumed["ema"])
    scored = network if ema is None else ema.module
    small_batch = batch_size < SMALL_BATCH
    loss_fn = _loss_fn(loss, int(classes))
    best_iou = max((h[monitor] for h in history), default=-1.0)
    best_epoch = max(history, key=lambda h: h[monitor])["epoch"] if history else 0
    first_epoch = len(history) + 1
    schedule = {
        "name": "warmup+cosine",
        "lr": lr,
        "min_lr": lr * 0.01,
        "warmup_steps": warmup_steps,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
    }
    record = {
        "images": [p.name for p in pairs],
        "ni_label": ni_label,
        "ignore_label": ignore_label,
        "split": [p.split() for p in pairs],
        "encoder_weights": str(encoder_weights) if encoder_weights else None,
        "freeze_encoder": freeze_encoder,
        "loss": loss,
        "monitor": monitor,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "seed": seed,
        "optimiser": {"name": "AdamW", "lr": lr, "weight_decay": weight_decay},
        "schedule": schedule,
        "grad_clip": grad_clip,
        "ema_decay": ema_decay,
        "batchnorm": "frozen after warm-up" if small_batch else "batch statistics",
        "max_time": time_budget,
        "precision": precision,
    }

    from tqdm.auto import tqdm

    bar = tqdm(range(first_epoch, first_epoch + epochs), desc="train", disable=not progress)
    stale = 0
    stopped = "epochs"
    validation_seconds = 0.0
    for epoch in bar:
        started = time.perf_counter()
        network.train()
        if freeze_encoder:
            network.encoder.eval()  # frozen also means BatchNorm statistics stay as loaded
        if small_batch and step >= warmup_steps:
            optim.freeze_batchnorm(network)
        total, steps_done = 0.0, 0
        for _ in range(steps_per_epoch):
            if step >= total_steps:
                break  # a resumed schedule ends mid-epoch where it was planned to end
            if (
                time_budget is not None
                and steps_done
                and (time.perf_counter() - started_at + validation_seconds >= time_budget)
            ):
                stopped = "max_time"
                break
            for group in optimiser.param_groups:
                group["lr"] = lr * optim.warmup_cosine(step, total_steps, warmup_steps)
            image, target = crops.random_batch(rng, batch_size, augment)
            image, target = image.to(torch_device), target.to(torch_device)
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(torch_device.type, autocast, enabled=autocast is not None):
                logits = network(image)
            batch_loss = loss_fn(logits.float(), target)
            scaler.scale(batch_loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
            scaler.step(optimiser)
            scaler.update()
            if ema is not None:
                ema.update(network)
            step += 1
            steps_done += 1
            total += float(batch_loss.detach())
            if small_batch and step == warmup_steps:
                optim.freeze_batchnorm(network)
        validating = time.perf_counter()
        scores = _evaluate(scored, validation, loss_fn, torch_device, batch_size, phases)
        validation_seconds = time.perf_counter() - validating
        row = {
            "epoch": epoch,
            "loss": total / max(1, steps_done),
            **scores,
            "lr": optimiser.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val_iou=f"{row[monitor]:.3f}")
        log.info("epoch %d: %s", epoch, row)
        if scores[monitor] > best_iou:
            best_iou, best_epoch, stale = scores[monitor], epoch, 0
            training = {**record, "history": history, "best_epoch": epoch, "val": scores}
            vmodel.save_checkpoint(scored, config, out, training=training, overwrite=True)
        else:
            stale += 1
            if stale >= patience:
                log.info("early stop after epoch %d (best %d)", epoch, best_epoch)
                stopped = "patience"
        finished = stopped == "patience" or step >= total_steps
        _save_state(
            out,
            {
                "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
                "ema": None if ema is None else ema.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": {**schedule, "step": step},
                "batch_size": batch_size,
                "history": history,
                "finished": finished,
            },
        )
        if stopped != "epochs":
            if stopped == "max_time":
                log.info("max_time reached after epoch %d (best %d)", epoch, best_epoch)
            break
    bar.close()
    table = pd.DataFrame(history)
    _write_history(out, table, best_epoch)
    vmodel.update_training(out, {"history": history, "stopped": stopped, "steps": step})
    return TrainResult(out, table, int(best_epoch), float(best_iou), config)


def _check_phases_present(targets: torch.Tensor, phases: dict[str, int]) -> None:
    """Ni must occur in the validation tiles (its IoU is scored); other phases should."""
    present = torch.bincount(targets[targets >= 0].flatten(), minlength=len(phases))
    for (name, value), count in zip(phases.items(), present.tolist()):
        if count:
            continue
        if name == "ni":
            raise ValueError(
                f"the validation slabs hold no Ni (label {value}); check the labels' "
                f"values against phases={phases} (a 0/1 Ni mask is a binary model: "
                "classes=1), or hold out slices that contain Ni (val_fraction)."
            )
        log.warning("the validation slabs hold no %s (label %s)", name, value)


def _loss_for(loss: str | None, classes: Any) -> str:
    """The loss to use: the given one if it fits the class count, else the default."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1 or classes == 2:
        raise ValueError(
            f"classes={classes!r} must be 1 (binary Ni, sigmoid) or the number of phases, "
            "3 or more (e.g. 3 for pore, YSZ, Ni); a two-phase model is classes=1."
        )
    if loss is None:
        return "bce+dice" if classes == 1 else "ce+dice"
    allowed = BINARY_LOSSES if classes == 1 else MULTICLASS_LOSSES
    if loss not in allowed:
        raise ValueError(
            f"loss={loss!r} does not fit classes={classes}; use one of {', '.join(allowed)}."
        )
    return loss


def _training_phases(phases: dict | None, pairs: list[_Pair], classes: int) -> dict[str, int]:
    if phases is None:
        phases = pairs[0].recorded_phases or dict(vmodel.DEFAULT_PHASES)
    return _check_phases(phases, classes)


def _check_phases(phases: Any, classes: int) -> dict[str, int]:
    if not isinstance(phases, dict) or len(phases) != classes or "ni" not in phases:
        raise ValueError(
            f"phases={phases!r} must map {classes} phase names, including 'ni', to their "
            "label values, e.g. {'pore': 0, 'ysz': 1, 'ni': 2}."
        )
    return {str(k): int(v) for k, v in phases.items()}


def history_paths(out: str | Path) -> tuple[Path, Path]:
    """Where the CSV and PNG history of a checkpoint live."""
    out = Path(out)
    return out.with_name(out.name + ".history.csv"), out.with_name(out.name + ".history.png")


def _write_history(out: Path, table: pd.DataFrame, best_epoch: int) -> None:
    csv, png = history_paths(out)
    table.to_csv(csv, index=False)
    from .report import training_curves

    training_curves(table, png, best_epoch=best_epoch)
