"""ilastik-style pixel features and a random-forest baseline (benchmarks only).

Per z-slice (2D, like ilastik's default): the raw grey value plus, at each of five
scales ``SIGMAS``, Gaussian smoothing, gradient magnitude, Laplacian of Gaussian and the
two Hessian eigenvalues -- 26 features. A scikit-learn random forest is trained on a
random sample of labelled pixels (three classes: pore, YSZ, Ni) and predicts every
pixel of the test volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIGMAS = (0.7, 1.0, 1.6, 3.5, 5.0)


def slice_features(plane: np.ndarray) -> np.ndarray:
    """``(H, W, 26)`` float32 features of one 2D slice."""
    plane = np.asarray(plane, dtype=np.float32)
    features = [plane]
    for sigma in SIGMAS:
        smooth = ndimage.gaussian_filter(plane, sigma)
        features.append(smooth)
        features.append(ndimage.gaussian_gradient_magnitude(plane, sigma))
        features.append(ndimage.gaussian_laplace(plane, sigma))
        hyy = ndimage.gaussian_filter(plane, sigma, order=(2, 0))
        hxx = ndimage.gaussian_filter(plane, sigma, order=(0, 2))
        hxy = ndimage.gaussian_filter(plane, sigma, order=(1, 1))
        root = np.sqrt(((hyy - hxx) / 2) ** 2 + hxy**2)
        features.append((hyy + hxx) / 2 + root)
        features.append((hyy + hxx) / 2 - root)
    return np.stack(features, axis=-1)


def volume_features(image: np.ndarray) -> np.ndarray:
    """``(Z, H, W, 26)`` features, slice by slice."""
    return np.stack([slice_features(plane) for plane in image])


def train_forest(image, labels, slices, samples: int = 60000, seed: int = 0, trees: int = 100):
    """A random forest on ``samples`` random pixels of the given z-slices."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    features = volume_features(image[list(slices)])
    target = np.asarray(labels)[list(slices)]
    flat = features.reshape(-1, features.shape[-1])
    flat_target = target.ravel()
    chosen = rng.choice(flat.shape[0], size=min(samples, flat.shape[0]), replace=False)
    forest = RandomForestClassifier(
        n_estimators=trees, min_samples_leaf=2, n_jobs=2, random_state=seed
    )
    forest.fit(flat[chosen], flat_target[chosen])
    return forest


def predict_forest(forest, image) -> np.ndarray:
    """Predicted labels of every pixel, slice by slice."""
    out = np.empty(image.shape, dtype=np.uint8)
    for z, plane in enumerate(image):
        features = slice_features(plane)
        out[z] = forest.predict(features.reshape(-1, features.shape[-1])).reshape(plane.shape)
    return out
