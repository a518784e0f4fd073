"""Augmentation of training crops: flips, 90-degree rotations, intensity jitter."""

from __future__ import annotations

import numpy as np

__all__ = ["augment"]


def augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
    """Flips, 90-degree rotations (mask stays binary: no interpolation), intensity jitter.

    An image with through-plane context ``(2k+1, T, T)`` turns in-plane alike, and its
    slice order is reversed half of the time (a mirror along z).

    Parameters
    ----------
    image : numpy.ndarray
        ``(T, T)`` or ``(2k+1, T, T)`` normalised grey values.
    target : numpy.ndarray
        ``(T, T)`` (or ``(1, T, T)``) labels of the crop's own slice.
    rng : numpy.random.Generator

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The image and target turned and flipped alike (contiguous copies); the
        image scaled by 1 +- 0.1 and shifted by +- 0.05.

    Examples
    --------
    >>> target = np.eye(4, dtype=np.float32)
    >>> image, turned = augment(target.copy(), target.copy(), np.random.default_rng(0))
    >>> bool(np.array_equal(image > image.mean(), turned > 0.5)), sorted(np.unique(turned))
    (True, [np.float32(0.0), np.float32(1.0)])
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
