"""Synthetic Ni/YSZ/pore volumes imaged like a ptychographic X-ray tomogram.

The microstructure comes from two smoothed Gaussian random fields: the first
decides pore vs. solid, the second splits the solid into YSZ and Ni, each at a
level taken from the field's exact marginal distribution so the phase fractions
come out as asked without looking at the whole volume. Grey values then follow
the phases (pore darkest, Ni brightest, Ni and YSZ close together as in real
PXCT scans), with partial-volume blur, ring artefacts about the rotation axis, a
slow intensity drift and noise.

Everything is computed lazily with dask on a fixed internal block grid, so a
volume is generated block by block (never whole in memory) and the result depends
only on ``shape``, ``seed`` and the parameters, not on how it is later chunked or
stored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from scipy import ndimage, special

from . import io as vio
from .conventions import PHASES

__all__ = ["PHASES", "PRESETS", "AnodeParameters", "anode", "write_anode"]

# Internal generation blocks: fixed, so the volume never depends on output chunks.
_GEN_BLOCK = (64, 256, 256)
# Gaussian kernels are cut at this many standard deviations.
_TRUNCATE = 3.0


@dataclass(frozen=True)
class AnodeParameters:
    """Knobs of :func:`anode` (defaults calibrated on a 501x501 Ni/YSZ PXCT stack).

    Grey values are in uint16 counts: pore 22.7k, YSZ 35.0k, Ni 40.9k means as
    measured on real scans, so the Ni/YSZ contrast is the hard part; the phase
    fractions default to the real stack's (Ni 0.27, YSZ 0.43, pore 0.30). Each phase
    field mixes a coarse scale (``grain_sigma``: grains tens of voxels across) with
    a fine one (``fine_sigma`` with relative weight ``fine_weight``: necks, small
    particles and rough boundaries a few voxels across). The defaults (preset
    ``"v2"``) give mean phase run lengths of about 37 voxels (real: 35-42 px), a
    multi-Otsu Ni IoU of about 0.91 and a pixel-feature random forest about 0.96, as
    on the real stack (``docs/synthetic-data.md``); :data:`PRESETS` ``"v1"`` is the
    earlier, finer and noisier generator.

    Examples
    --------
    :func:`anode` takes the fields as keywords; a misspelt one is an error:

    >>> params = AnodeParameters(noise_sigma=500.0)
    >>> params.ni_fraction, (params.grey_ni - params.grey_ysz) / params.noise_sigma
    (0.27, 11.8)
    >>> AnodeParameters(ni_fractoin=0.3)
    Traceback (most recent call last):
    ...
    TypeError: AnodeParameters.__init__() got an unexpected keyword argument 'ni_fractoin'
    """

    ni_fraction: float = 0.27
    ysz_fraction: float = 0.43
    grain_sigma: float = 17.0
    fine_sigma: float = 3.0
    fine_weight: float = 0.1
    grey_pore: float = 22700.0
    grey_ysz: float = 35000.0
    grey_ni: float = 40900.0
    blur_sigma: float = 1.2
    noise_sigma: float = 900.0
    ring_amplitude: float = 800.0
    drift_amplitude: float = 1500.0


# Named parameter sets: "v2" (the defaults) is calibrated to real scans; "v1" is the
# generator of volseg 0.1 (finer grains: mean run length ~23 voxels; multi-Otsu ~0.85).
PRESETS = {
    "v2": AnodeParameters(),
    "v1": AnodeParameters(
        ni_fraction=0.3, ysz_fraction=0.4, grain_sigma=12.0, fine_weight=0.3, noise_sigma=1000.0
    ),
}


def _parameters(preset: str, parameters: dict[str, Any]) -> AnodeParameters:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not known; use one of {', '.join(PRESETS)}.")
    return dataclasses.replace(PRESETS[preset], **parameters)


def _seeded_noise(shape: tuple[int, ...], seed: int, stream: int) -> da.Array:
    """Standard normal noise built block by block from (seed, stream, block index)."""
    chunks = da.core.normalize_chunks(tuple(min(b, s) for b, s in zip(_GEN_BLOCK, shape)), shape)

    def block(block_info=None):
        info = block_info[None]
        location = tuple(int(lo) for lo, _ in info["array-location"])
        rng = np.random.default_rng([seed, stream, *location])
        return rng.standard_normal(info["chunk-shape"], dtype=np.float32)

    return da.map_blocks(block, chunks=chunks, dtype=np.float32)


def _smoothed_field(shape, seed: int, stream: int, sigma: float) -> tuple[da.Array, float]:
    """Gaussian-smoothed white noise and its exact standard deviation.

    The noise is drawn on a domain padded by the filter radius and cropped after
    smoothing, so every voxel averages independent samples: the marginal is the
    same normal distribution everywhere, also near the faces of a thin volume.
    """
    radius = int(_TRUNCATE * sigma + 0.5)
    padded = tuple(s + 2 * radius for s in shape)
    noise = _seeded_noise(padded, seed, stream)
    depth = {axis: min(radius, min(noise.chunks[axis])) for axis in range(noise.ndim)}
    noise = noise.rechunk({a: max(max(noise.chunks[a]), radius) for a in range(noise.ndim)})
    field = noise.map_overlap(
        ndimage.gaussian_filter,
        depth=radius,
        boundary="none",
        sigma=sigma,
        truncate=_TRUNCATE,
        dtype=np.float32,
    )
    del depth
    field = field[tuple(slice(radius, radius + s) for s in shape)]
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    std = float(np.sqrt(np.sum(kernel**2)) ** len(shape))
    return field, std


def _level(fraction: float) -> float:
    """Standard-normal quantile: P(N(0,1) < level) = fraction."""
    return float(math.sqrt(2.0) * special.erfinv(2.0 * fraction - 1.0))


def _two_scale_field(shape, seed: int, stream: int, params: AnodeParameters):
    """Coarse + weighted fine smoothed noise; independent parts, so variances add."""
    coarse, std_coarse = _smoothed_field(shape, seed, stream, params.grain_sigma)
    if params.fine_weight <= 0:
        return coarse, std_coarse
    fine, std_fine = _smoothed_field(shape, seed, stream + 100, params.fine_sigma)
    field = coarse + (params.fine_weight * std_coarse / std_fine) * fine
    return field, std_coarse * math.sqrt(1.0 + params.fine_weight**2)


def _labels(shape, seed, params: AnodeParameters) -> da.Array:
    pore_fraction = 1.0 - params.ni_fraction - params.ysz_fraction
    field_a, std_a = _two_scale_field(shape, seed, 1, params)
    field_b, std_b = _two_scale_field(shape, seed, 2, params)
    pore = field_a < _level(pore_fraction) * std_a
    ni_share = params.ni_fraction / (params.ni_fraction + params.ysz_fraction)
    ni = field_b < _level(ni_share) * std_b
    labels = da.where(pore, PHASES["pore"], da.where(ni, PHASES["ni"], PHASES["ysz"]))
    return labels.astype(np.uint8)


def _artefacts(block: np.ndarray, params: AnodeParameters, shape, seed, block_info=None):
    """Ring artefacts about the plane centre and a slow drift, for one block."""
    location = block_info[0]["array-location"]
    z, y, x = (np.arange(lo, hi, dtype=np.float32) for lo, hi in location)
    cy, cx = (shape[1] - 1) / 2, (shape[2] - 1) / 2
    radius = np.hypot(y[:, None] - cy, x[None, :] - cx)
    rng = np.random.default_rng([seed, 7])
    ring_phase = rng.uniform(0, 2 * np.pi, 3)
    rings = sum(
        np.sin(radius / period + phase) for period, phase in zip((1.3, 2.9, 7.1), ring_phase)
    )
    rings = rings * (params.ring_amplitude / 3.0) * np.exp(-radius / max(shape[1:]))
    zz = z[:, None, None] / max(shape[0], 1)
    yy = y[None, :, None] / max(shape[1], 1)
    xx = x[None, None, :] / max(shape[2], 1)
    drift = params.drift_amplitude * (
        np.sin(2.1 * zz + ring_phase[0]) + 0.6 * (yy - 0.5) + 0.4 * np.cos(3.0 * xx)
    )
    return block + rings[None] + drift


def anode(
    shape: tuple[int, int, int],
    seed: int = 0,
    *,
    as_dask: bool = False,
    preset: str = "v2",
    **parameters: Any,
) -> tuple[Any, Any]:
    """A synthetic Ni/YSZ/pore anode volume and its labels.

    Parameters
    ----------
    shape : tuple of 3 int
        (z, y, x) size.
    seed : int
        The volume is a deterministic function of ``(shape, seed, parameters)``.
    as_dask : bool
        Return lazy dask arrays (generated block by block) instead of numpy.
    preset : {"v2", "v1"}
        The parameter set the keywords start from (:data:`PRESETS`): ``"v2"``, the
        defaults calibrated to real scans, or ``"v1"``, the earlier generator.
    **parameters
        Fields of :class:`AnodeParameters`, e.g. ``ni_fraction=0.3``; they replace
        the preset's values.

    Returns
    -------
    image : uint16 array
        Grey values.
    labels : uint8 array
        0 pore, 1 YSZ, 2 Ni (see :data:`PHASES`).

    Examples
    --------
    >>> image, labels = anode((8, 64, 64), seed=1)
    >>> image.dtype.name, labels.dtype.name, sorted(np.unique(labels).tolist())
    ('uint16', 'uint8', [0, 1, 2])
    >>> old_image, _ = anode((8, 64, 64), seed=1, preset="v1")  # volseg 0.1's generator
    >>> bool((old_image != image).any())
    True
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape={shape!r} must be three positive integers (z, y, x).")
    params = _parameters(preset, parameters)
    if not (0 < params.ni_fraction and 0 < params.ysz_fraction) or (
        params.ni_fraction + params.ysz_fraction >= 1
    ):
        raise ValueError(
            "ni_fraction and ysz_fraction must be > 0 and add up to less than 1 (the rest is pore)."
        )
    labels = _labels(shape, seed, params)
    greys = np.array([params.grey_pore, params.grey_ysz, params.grey_ni], dtype=np.float32)
    clean = labels.map_blocks(lambda block: greys[block], dtype=np.float32)
    depth = {
        axis: min(int(math.ceil(4 * params.blur_sigma)), size) for axis, size in enumerate(shape)
    }
    blurred = clean.map_overlap(
        ndimage.gaussian_filter,
        depth=depth,
        boundary="reflect",
        sigma=params.blur_sigma,
        dtype=np.float32,
    )
    imaged = blurred.map_blocks(_artefacts, params, shape, seed, dtype=np.float32)
    noisy = imaged + params.noise_sigma * _seeded_noise(shape, seed, 3)
    image = da.clip(noisy, 0, 65535).round().astype(np.uint16)
    if as_dask:
        return image, labels
    return image.compute(), labels.compute()


def write_anode(
    out: Any,
    shape: tuple[int, int, int],
    seed: int = 0,
    chunks: tuple[int, int, int] = (16, 256, 256),
    overwrite: bool = False,
    preset: str = "v2",
    **parameters: Any,
) -> Any:
    """Write :func:`anode` into a Zarr group with arrays ``image`` and ``labels``.

    Generated block by block: memory does not grow with the volume.

    Parameters
    ----------
    out : path or zarr store
        The group to create.
    shape : tuple of 3 int
        (z, y, x) size.
    seed : int
        As in :func:`anode`: the same seed gives the same volume, whatever ``chunks``.
    chunks : tuple of 3 int
        Stored chunk shape.
    overwrite : bool
        Replace an existing group.
    preset : {"v2", "v1"}
        As in :func:`anode`.
    **parameters
        Fields of :class:`AnodeParameters`.

    Returns
    -------
    zarr.Group
        Arrays ``image`` (uint16) and ``labels`` (uint8, its attrs record
        :data:`PHASES`); the group attrs record the seed and parameters.

    Examples
    --------
    >>> out = getfixture("tmp_path") / "anode.zarr"
    >>> group = write_anode(out, (4, 48, 48), seed=1, chunks=(2, 48, 48))
    >>> group["labels"].chunks, group["labels"].attrs["phases"]
    ((2, 48, 48), {'pore': 0, 'ysz': 1, 'ni': 2})
    >>> group["image"].dtype.name, sorted(np.unique(group["labels"][...]).tolist())
    ('uint16', [0, 1, 2])
    """
    vio.validate_chunks(chunks, shape)
    image, labels = anode(shape, seed, as_dask=True, preset=preset, **parameters)
    attrs = {
        "generator": "volseg.synth.anode",
        "seed": int(seed),
        "preset": preset,
        "parameters": dataclasses.asdict(_parameters(preset, parameters)),
        "phases": PHASES,
    }
    return vio.write_arrays(
        out,
        {"image": image, "labels": labels},
        chunks=chunks,
        attrs=attrs,
        array_attrs={"labels": {"phases": PHASES}},
        overwrite=overwrite,
    )
