"""Test-time augmentation as a predictor wrapper: the eight flips and quarter turns.

:class:`FlipRotateTTA` wraps any predictor (the stitcher needs no flag for it):
each batch of square tiles is predicted in every orientation of the dihedral group
D4 (:data:`DIHEDRAL`) and the predictions, turned back, are averaged in a fixed order.

Examples
--------
>>> len(DIHEDRAL), DIHEDRAL[4]
(8, (0, True))
"""

from __future__ import annotations

import numpy as np

from .stitch import Predictor

__all__ = ["DIHEDRAL", "FlipRotateTTA", "dihedral_inverse", "dihedral_transform"]

# The eight symmetries of a square tile (dihedral group D4): (quarter turns, flip).
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral_transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``batch`` of tiles mirrored left-right (``flip``), then turned ``k`` quarter turns.

    Acts on the last two axes (a view, not a copy); one of the :data:`DIHEDRAL` symmetries.

    Examples
    --------
    >>> tile = np.array([[1, 2], [3, 4]])
    >>> dihedral_transform(tile, 1, False).tolist(), dihedral_transform(tile, 0, True).tolist()
    ([[2, 4], [1, 3]], [[2, 1], [4, 3]])
    """
    if flip:
        batch = batch[..., ::-1]
    return np.rot90(batch, k, axes=(-2, -1))


def dihedral_inverse(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Undo :func:`dihedral_transform` ``(k, flip)``: turn back, then mirror back.

    Examples
    --------
    >>> tiles = np.arange(12).reshape(3, 2, 2)
    >>> all(np.array_equal(dihedral_inverse(dihedral_transform(tiles, k, f), k, f), tiles)
    ...     for k, f in DIHEDRAL)
    True
    """
    batch = np.rot90(batch, -k, axes=(-2, -1))
    return batch[..., ::-1] if flip else batch


class FlipRotateTTA:
    """Test-time augmentation: average a predictor over the 8 flips and quarter turns.

    Each batch of square tiles is predicted in all eight orientations of the
    dihedral group D4; every prediction is turned back and the eight are averaged
    in a fixed order (deterministic, so blocks stay chunk-invariant). Costs eight
    forward passes per tile. Works with predictors returning ``(B, T, T)`` or
    ``(B, C, T, T)``; asynchronous predictors (``submit``/``collect``) get all eight
    orientations in flight before the first is collected.

    Examples
    --------
    An equivariant predictor is unchanged; any predictor becomes equivariant (turning
    the input turns the output):

    >>> tiles = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    >>> bool(np.allclose(FlipRotateTTA(lambda b: b * 2)(tiles), tiles * 2))
    True
    >>> tta = FlipRotateTTA(lambda b: np.broadcast_to(b[:, :1, :], b.shape))
    >>> turned = np.rot90(tiles, 1, axes=(1, 2))
    >>> bool(np.allclose(tta(turned), np.rot90(tta(tiles), 1, axes=(1, 2))))
    True
    """

    def __init__(self, predict: Predictor):
        self.predict = predict
        self._submit = getattr(predict, "submit", None)
        self._collect = getattr(predict, "collect", None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(batch))

    def submit(self, batch: np.ndarray) -> list:
        """Start the eight predictions of ``batch``; returns a handle for :meth:`collect`."""
        handles = []
        for k, flip in DIHEDRAL:
            turned = np.ascontiguousarray(dihedral_transform(batch, k, flip))
            if self._submit is not None and self._collect is not None:
                handles.append(self._submit(turned))
            else:
                handles.append(np.asarray(self.predict(turned), dtype=np.float32))
        return handles

    def collect(self, handles: list) -> np.ndarray:
        """The average of the eight predictions, each turned back, in a fixed order."""
        total = None
        for (k, flip), handle in zip(DIHEDRAL, handles):
            if self._submit is not None and self._collect is not None:
                handle = self._collect(handle)
            back = dihedral_inverse(np.asarray(handle, dtype=np.float32), k, flip)
            total = back.copy() if total is None else total + back
        total /= np.float32(len(DIHEDRAL))
        return total
