"""Training data: image/label pairs and their split into training and validation slices.

Each training volume is opened with its labels (:func:`open_pairs`); the last
slices are held out as a validation slab behind a gap, or, with sparse labels,
the last labelled slices (:func:`sparse_split`). Volumes up to
:data:`CACHE_BYTES` are cached in memory, larger ones stay in storage and are
cropped lazily (:mod:`volseg.training.crops`). The phases of a multi-class model
are checked against the labels here too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import io as vio
from .. import model as vmodel
from .settings import check_phases

__all__ = [
    "AUTO_CONTEXT",
    "CACHE_BYTES",
    "MIN_SPARSE_SPLIT",
    "RELATED_SLICES",
    "TrainingPair",
    "check_phases_present",
    "neighbours_look_related",
    "open_pairs",
    "resolve_context",
    "sparse_split",
    "training_phases",
]

log = logging.getLogger(__name__)

# Volumes up to this size are read into memory once; larger ones are cropped from storage.
CACHE_BYTES = 2 << 30
# A volume with fewer labelled slices than this trains and validates on all of them.
MIN_SPARSE_SPLIT = 3
# Through-plane context of context="auto" when every training image is a volume of at
# least 2 * AUTO_CONTEXT + 1 slices (docs/accuracy.md: over eight training seeds it was
# the most accurate and by far the steadiest setting, at about the cost of a 2D model).
AUTO_CONTEXT = 1
# Below this median correlation of neighbouring slices, a training image is taken for a
# stack of unrelated slices and context="auto" gives 0.
RELATED_SLICES = 0.2


@dataclass
class TrainingPair:
    """One training volume with its labels and its training/validation slices.

    Examples
    --------
    >>> pair = TrainingPair(np.zeros((10, 8, 8)), np.zeros((10, 8, 8)), "a", (0, 6), (8, 10))
    >>> pair.train_count(), list(pair.validation_planes()), pair.split()
    (6, [8, 9], {'train_z': [0, 6], 'val_z': [8, 10]})
    """

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
        """How many slices the training crops come from."""
        if self.train_slices is not None:
            return len(self.train_slices)
        return self.train_z[1] - self.train_z[0]

    def validation_planes(self) -> tuple[int, ...] | range:
        """The slices the validation tiles come from."""
        return self.val_slices if self.val_slices is not None else range(*self.val_z)

    def split(self) -> dict:
        """The split as recorded in the checkpoint."""
        if self.train_slices is None:
            return {"train_z": list(self.train_z), "val_z": list(self.val_z)}
        return {"train_slices": list(self.train_slices), "val_slices": list(self.val_slices)}


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def open_pairs(
    images, labels, val_fraction: float, val_gap: int, sparse: bool = False
) -> list[TrainingPair]:
    """Open each image volume with its labels and split its slices into slabs.

    The last ``val_fraction`` of the slices validate, ``val_gap`` slices before
    them are left out, the rest train. ``sparse``: labels on a few slices only
    (:func:`sparse_split` decides), so a volume too thin for the slabs is allowed.

    Examples
    --------
    >>> labels = np.zeros((10, 8, 8), np.uint8)
    >>> [pair] = open_pairs(labels.astype(np.float32), labels, 0.2, 2)
    >>> pair.train_z, pair.val_z
    ((0, 6), (8, 10))
    """
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
            TrainingPair(
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


def sparse_split(
    pairs: list[TrainingPair],
    labelled_slices: Any,
    ignore_label: float | None,
    val_fraction: float,
) -> None:
    """Train and validate on labelled slices only (given, or found by ``ignore_label``).

    The last ``val_fraction`` of each volume's labelled slices (at least one) are held out
    for validation; a volume with fewer than :data:`MIN_SPARSE_SPLIT` (3) labelled slices
    trains and validates on all of them (holding one of two out would halve what the
    network learns from).

    Examples
    --------
    >>> labels = np.zeros((10, 8, 8), np.uint8)
    >>> pairs = open_pairs(labels.astype(np.float32), labels, 0.2, 2, sparse=True)
    >>> sparse_split(pairs, [1, 4, 7, 9], None, 0.2)
    >>> pairs[0].split()
    {'train_slices': [1, 4, 7], 'val_slices': [9]}
    >>> sparse_split(pairs, [2, 8], None, 0.2)
    >>> pairs[0].split()
    {'train_slices': [2, 8], 'val_slices': [2, 8]}
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
        if len(slices) < MIN_SPARSE_SPLIT:
            log.warning(
                "only slice(s) %s of %s are labelled: each is used for training and for "
                "validation (the validation score is then a training score)",
                slices,
                pair.name,
            )
            pair.train_slices = pair.val_slices = tuple(slices)
            continue
        n_val = min(len(slices) - 1, max(1, int(round(len(slices) * val_fraction))))
        pair.train_slices, pair.val_slices = tuple(slices[:-n_val]), tuple(slices[-n_val:])


def resolve_context(
    context: int | str, depths: list[int], resumed: int | None = None, related: bool = True
) -> int:
    """The through-plane context a training run uses.

    Parameters
    ----------
    context : int or "auto"
        As given to :func:`volseg.train`.
    depths : list of int
        Slices of each training image (1 for a 2D image).
    resumed : int, optional
        The context of the checkpoint training resumes from: it decides, and a
        different explicit ``context`` is an error.
    related : bool
        Whether neighbouring slices of every training image look like neighbours in a
        sample (:func:`neighbours_look_related`).

    Returns
    -------
    int
        ``"auto"``: :data:`AUTO_CONTEXT` (1) when every training image has at least
        ``2 * AUTO_CONTEXT + 1`` slices and its neighbouring slices look related, else 0
        (a single slice has no neighbours; slices from scattered places are no
        neighbours).

    Examples
    --------
    >>> resolve_context("auto", [96, 40]), resolve_context("auto", [96, 1]), resolve_context(2, [1])
    (1, 0, 2)
    >>> resolve_context("auto", [96], resumed=0), resolve_context("auto", [96], related=False)
    (0, 0)
    >>> resolve_context(2, [96], resumed=1)
    Traceback (most recent call last):
    ...
    ValueError: context=2 differs from the resumed checkpoint's context=1; leave
    context='auto' (--context auto) or give 1 to continue it, or train a new model.
    """
    if resumed is not None:
        if context != "auto" and int(context) != int(resumed):
            raise ValueError(
                f"context={context!r} differs from the resumed checkpoint's context={resumed}; "
                f"leave context='auto' (--context auto) or give {resumed} to continue it, or "
                "train a new model."
            )
        return int(resumed)
    if context != "auto":
        return int(context)
    return AUTO_CONTEXT if related and min(depths) >= 2 * AUTO_CONTEXT + 1 else 0


def neighbours_look_related(image: Any, pairs: int = 4, size: int = 256) -> tuple[bool, float]:
    """Whether neighbouring slices of ``image`` look like neighbours in a sample.

    Grains continue through neighbouring slices of a tomogram, so their grey values
    correlate strongly (0.98 on the synthetic anode, still 0.92 five slices apart); slices
    picked from scattered places of a sample and stacked do not (about 0). The median
    Pearson correlation of up to ``pairs`` neighbouring slice pairs inside the volume,
    each a central crop of at most ``size`` pixels square with its finite values clipped
    to their 1st-99th percentiles, is compared with :data:`RELATED_SLICES`. Very noisy
    scans (noise twice the spread of the phases) also fall below it.

    Returns
    -------
    (bool, float)
        The verdict and the median correlation (1.0 when no pair varies).

    Examples
    --------
    >>> from volseg import synth
    >>> volume, _ = synth.anode((6, 64, 64), seed=1)
    >>> neighbours_look_related(volume)[0]
    True
    >>> spiked = volume.astype(np.float64)
    >>> spiked[:, 32, 32] = 1e9  # one extreme voxel per slice
    >>> neighbours_look_related(spiked)[0]
    True
    >>> scattered = np.stack([synth.anode((1, 64, 64), seed=s)[0][0] for s in range(6)])
    >>> neighbours_look_related(scattered)[0]
    False
    """
    depth, height, width = image.shape[-3:]
    if depth < 2:
        return True, 1.0
    y0, x0 = max(0, (height - size) // 2), max(0, (width - size) // 2)
    crop = (slice(y0, y0 + size), slice(x0, x0 + size))
    # Interior pairs: the end slices of a scan are often air or blank.
    count = min(pairs, depth - 1)
    starts = np.unique(((np.arange(count) + 1) * (depth - 1) // (count + 1)).astype(int))
    scores = []
    for z in starts:
        a, b = (
            vio.read_region(image, (plane, *crop), role="training image").astype(np.float64)
            for plane in (int(z), int(z) + 1)
        )
        finite = np.isfinite(a) & np.isfinite(b)
        if finite.sum() < 16:
            continue
        # Clipped to their 1st-99th percentiles: a few extreme voxels do not decide.
        a, b = (np.clip(v[finite], *np.percentile(v[finite], (1, 99))) for v in (a, b))
        if a.std() > 0 and b.std() > 0:
            scores.append(float(np.corrcoef(a, b)[0, 1]))
    score = float(np.median(scores)) if scores else 1.0
    return score >= RELATED_SLICES, score


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


def training_phases(phases: dict | None, pairs: list[TrainingPair], classes: int) -> dict[str, int]:
    """The phases of a new multi-class model: given, else recorded in the labels, else default.

    Examples
    --------
    >>> labels = np.zeros((10, 8, 8), np.uint8)
    >>> training_phases(None, open_pairs(labels.astype(np.float32), labels, 0.2, 2), 3)
    {'pore': 0, 'ysz': 1, 'ni': 2}
    """
    if phases is None:
        phases = pairs[0].recorded_phases or dict(vmodel.DEFAULT_PHASES)
    return check_phases(phases, classes)


def check_phases_present(targets: torch.Tensor, phases: dict[str, int]) -> None:
    """Ni must occur in the validation tiles (its IoU is scored); other phases should.

    Examples
    --------
    >>> phases = {"pore": 0, "ysz": 1, "ni": 2}
    >>> check_phases_present(torch.tensor([[0, 2]]), phases)
    >>> check_phases_present(torch.tensor([[0, 1]]), phases)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the validation slabs hold no Ni (label 2); check the labels' values ...
    """
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
