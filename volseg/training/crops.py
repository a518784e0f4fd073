"""Training crops: random crops of the training slices, fixed tiles of the validation ones.

A crop is read at any position of a plane; where it leaves the plane it is mirrored
(numpy ``reflect``) exactly as inference reads its tiles, through the tiling
module's read plan (:func:`volseg.tiling.reflected_read_plan`). A 2.5D model's
crop holds the neighbouring slices too (mirrored at the volume's z border).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import io as vio
from .. import metrics, tiling
from .. import model as vmodel
from .augment import augment as augment_crop
from .data import TrainingPair

__all__ = ["Crops", "read_crop", "read_planes"]


def _crop_axis(size: int, start: int, tile: int) -> tiling.AxisGrid:
    # A grid of one tile whose origin is the crop's first pixel.
    return tiling.AxisGrid(size=size, tile=tile, stride=tile, margin=-start, count=1)


def read_crop(array: Any, z: int, y0: int, x0: int, tile: int) -> np.ndarray:
    """``array[z, y0:y0+tile, x0:x0+tile]``, mirrored where it leaves the plane.

    Examples
    --------
    >>> volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    >>> read_crop(volume, 1, -1, 2, 3).tolist()  # row -1 mirrors row 1, column 4 column 2
    [[18, 19, 18], [14, 15, 14], [18, 19, 18]]
    """
    height, width = array.shape[1:]
    grid = tiling.PlaneGrid(y=_crop_axis(height, y0, tile), x=_crop_axis(width, x0, tile))
    plan = tiling.reflected_read_plan(grid, (y0, y0 + tile), (x0, x0 + tile))
    return tiling.apply_read_plan(plan, vio.read_region(array, (z, plan.y_read, plan.x_read)))


def read_planes(array: Any, z: int, y0: int, x0: int, tile: int, context: int) -> np.ndarray:
    """The crop of slice ``z``; with ``context`` its neighbours too, ``(2k+1, tile, tile)``.

    Examples
    --------
    >>> volume = np.arange(3 * 4 * 4).reshape(3, 4, 4)
    >>> read_planes(volume, 0, 0, 0, 2, 1)[:, 0, 0].tolist()  # slice -1 mirrors slice 1
    [16, 0, 16]
    """
    if not context:
        return read_crop(array, z, y0, x0, tile)
    planes = tiling.through_plane_index(z, z + 1, array.shape[0], context)
    return np.stack([read_crop(array, int(plane), y0, x0, tile) for plane in planes])


class Crops:
    """Random training crops and fixed validation tiles.

    Targets are float 0/1 Ni masks ``(1, T, T)`` for a binary model (-1 where the
    labels hold ``ignore_label``), and int64 class indices ``(T, T)`` for a multi-class
    one (``phases``: the label value of each class; other values are unlabelled, -1,
    and ignored by the loss).

    Examples
    --------
    >>> from volseg.training.data import open_pairs
    >>> labels = (np.arange(10 * 64 * 64).reshape(10, 64, 64) % 3 == 0).astype(np.uint8)
    >>> crops = Crops(open_pairs(labels * 100.0, labels, 0.2, 2), tile=32, ni_label=1)
    >>> rng = np.random.default_rng(0)
    >>> crops.normalisation = crops.sample_normalisation(rng)
    >>> images, targets = crops.random_batch(rng, 4, augment=True)
    >>> tuple(images.shape), tuple(targets.shape)
    ((4, 1, 32, 32), (4, 1, 32, 32))
    >>> tuple(crops.validation_tiles(100, rng)[0].shape)  # 2 slices x 2 x 2 tiles
    (8, 1, 32, 32)
    """

    def __init__(
        self,
        pairs: list[TrainingPair],
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

    def _pair_crop(
        self, pair: TrainingPair, z: int, y0: int, x0: int
    ) -> tuple[np.ndarray, np.ndarray]:
        raw = read_planes(pair.image, z, y0, x0, self.tile, self.context)
        image = vmodel.normalise(raw, self.normalisation)
        labels = read_crop(pair.labels, z, y0, x0, self.tile)
        if self.phases is None:
            target = (labels == self.ni_label).astype(np.float32)
            if self.ignore_label is not None:
                target[labels == self.ignore_label] = -1.0  # unlabelled: left out of the loss
            return image, target
        return image, metrics.class_index(labels, list(self.phases.values())).astype(np.int64)

    def random_position(self, rng: np.random.Generator) -> tuple[TrainingPair, int, int, int]:
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
            samples.append(read_crop(pair.image, z, y0, x0, self.tile).ravel())
        return vmodel.fit_normalisation(np.concatenate(samples))

    def random_batch(self, rng: np.random.Generator, size: int, augment: bool):
        """``size`` random training crops and their targets (augmented), as tensors."""
        images = np.empty((size, 2 * self.context + 1, self.tile, self.tile), np.float32)
        targets = []
        for i in range(size):
            image, target = self._pair_crop(*self.random_position(rng))
            if augment:
                image, target = augment_crop(image, target, rng)
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
