"""volseg.microstructure: chunk-wise measures against whole-array scipy and analytic cases."""

from __future__ import annotations

import json
import math
import types

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage

from volseg import microstructure as ms

AXES = ("z", "y", "x")


# --------------------------------------------------------------------------- references


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    """Voxels whose centre lies within ``radius`` (physical units) of ``centre``."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return distance2 <= radius**2


def random_phase(shape, seed=0, sigma=1.5, level=0.02):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma) > level


def reference(phase, voxel_size=(1.0, 1.0, 1.0), connectivity=6, max_radius=32):
    """The same measures computed on the whole array at once."""
    phase = np.asarray(phase, dtype=bool)
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    labels, n_components = ndimage.label(phase, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n_components + 1)[1:]
    n_phase = int(phase.sum())
    percolates, percolating_fraction = {}, {}
    for axis, name in enumerate(AXES):
        low = np.unique(np.take(labels, 0, axis=axis))
        high = np.unique(np.take(labels, -1, axis=axis))
        both = np.intersect1d(low[low > 0], high[high > 0])
        percolates[name] = bool(len(both))
        percolating_fraction[name] = sizes[both - 1].sum() / n_phase if n_phase else None
    faces = [int(np.count_nonzero(np.diff(phase.astype(np.int8), axis=a))) for a in range(3)]
    sz, sy, sx = voxel_size
    area = faces[0] * sy * sx + faces[1] * sz * sx + faces[2] * sz * sy
    limit = max_radius * min(voxel_size)
    if phase.all():
        distance = np.full(phase.shape, limit)
    else:
        distance = np.minimum(ndimage.distance_transform_edt(phase, sampling=voxel_size), limit)
    thickness = 2 * distance[phase]
    return {
        "phase_voxels": n_phase,
        "volume_fraction": n_phase / phase.size,
        "faces": dict(zip(AXES, faces)),
        "surface_area_faces": area,
        "specific_surface_area": area / (phase.size * sz * sy * sx),
        "n_components": n_components,
        "largest_component_fraction": sizes.max() / n_phase if n_phase else None,
        "percolates": percolates,
        "percolating_fraction": percolating_fraction,
        "thickness": thickness,
    }


def assert_matches_reference(result, ref, bin_width):
    for key in ("phase_voxels", "faces", "n_components", "percolates"):
        assert result[key] == ref[key], key
    for key in (
        "volume_fraction",
        "surface_area_faces",
        "specific_surface_area",
        "largest_component_fraction",
    ):
        assert result[key] == pytest.approx(ref[key], rel=1e-12), key
    for name in AXES:
        assert result["percolating_fraction"][name] == pytest.approx(
            ref["percolating_fraction"][name], rel=1e-12
        )
    thickness = ref["thickness"]
    assert result["thickness_mean"] == pytest.approx(thickness.mean(), rel=1e-9)
    rounded = np.rint(thickness / bin_width) * bin_width
    assert result["thickness_median"] == pytest.approx(np.median(rounded), abs=1e-12)
    assert abs(result["thickness_median"] - np.median(thickness)) <= bin_width / 2 + 1e-12


def assert_same_result(a, b):
    """Integers, bools and structure identical; floats within 1e-9."""
    assert a.keys() == b.keys()
    for key in a:
        if key == "chunks":
            continue
        if isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
        elif isinstance(a[key], dict):
            for name in a[key]:
                if isinstance(a[key][name], float):
                    assert a[key][name] == pytest.approx(b[key][name], rel=1e-9), key
                else:
                    assert a[key][name] == b[key][name], key
        else:
            assert a[key] == b[key], key


# --------------------------------------------------------------------------- numpy kernels


def test_face_counts_match_diff():
    phase = random_phase((9, 10, 11), seed=1)
    expected = tuple(int(np.count_nonzero(np.diff(phase.astype(int), axis=a))) for a in range(3))
    assert ms.face_counts(phase) == expected


def test_merge_labels_is_union_find():
    rng = np.random.default_rng(2)
    n = 200
    pairs = rng.integers(0, n, size=(150, 2))
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[find(a)] = find(b)
    roots = np.array([find(i) for i in range(n)])
    n_components, component = ms.merge_labels(n, pairs)
    assert n_components == len(np.unique(roots))
    # Same partition: labels share a component exactly when they share a root.
    assert np.array_equal(component[:, None] == component, roots[:, None] == roots)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 101])
def test_histogram_median_is_median_of_rounded_values(size):
    rng = np.random.default_rng(size)
    width = 0.25
    values = rng.uniform(0, 10, size)
    bins = np.rint(values / width).astype(int)
    counts = np.bincount(bins)
    assert ms.histogram_median(counts, width) == pytest.approx(np.median(bins * width))
    assert ms.histogram_median(np.zeros(4, int), width) is None


def test_local_thickness_slab_centre():
    t = 9
    slab = np.zeros((t + 2, 3, 3), dtype=bool)
    slab[1 : t + 1] = True
    thickness = ms.local_thickness(slab, voxel_size=(0.5, 1.0, 1.0))
    # Voxel-centre distances: the centre plane of an odd slab of t voxels is t + 1 sides.
    assert thickness[1 + t // 2, 1, 1] == pytest.approx((t + 1) * 0.5)
    assert np.all(thickness[~slab] == 0)


# --------------------------------------------------------------------------- measure


CHUNKINGS = [None, (7, 9, 11), (16, 20, 48), (5, 48, 6)]


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_sphere_surface_face_count_and_isotropic_correction(chunks):
    radius = 20
    sphere = ball((48, 48, 48), (23.5, 23.7, 23.3), radius)
    result = ms.measure(sphere.astype(np.uint8), chunks=chunks)
    true_area = 4 * math.pi * radius**2
    # Voxel faces of a sphere: each axis sees its projection pi r^2 twice -> 6 pi r^2.
    assert result["surface_area_faces"] / true_area == pytest.approx(1.5, rel=0.03)
    corrected = result["specific_surface_area_isotropic"] * result["total_volume"]
    assert corrected / true_area == pytest.approx(1.0, rel=0.05)
    assert result["specific_surface_area"] == pytest.approx(
        result["surface_area_faces"] / 48**3, rel=1e-12
    )
    assert result["n_components"] == 1
    assert result["volume_fraction"] == sphere.sum() / sphere.size
    assert result["percolates"] == {"z": False, "y": False, "x": False}
    assert_matches_reference(result, reference(sphere), ms.thickness_bin_width((1, 1, 1)))


@pytest.mark.parametrize("chunks", [None, (3, 5, 7), (24, 7, 48)])
def test_anisotropic_voxels(chunks):
    voxel_size = (2.0, 1.0, 0.5)
    shape = (14, 30, 56)
    sphere = ball(shape, (6.6, 14.5, 27.2), 11.0, spacing=voxel_size)
    result = ms.measure(sphere, voxel_size, chunks=chunks, max_radius=8)
    ref = reference(sphere, voxel_size, max_radius=8)
    assert_matches_reference(result, ref, ms.thickness_bin_width(voxel_size))
    assert result["total_volume"] == pytest.approx(np.prod(shape) * 1.0)
    assert result["surface_area_faces"] / (4 * math.pi * 11.0**2) == pytest.approx(1.5, rel=0.08)


@pytest.mark.parametrize("voxel_size", [(1.0, 1.0, 1.0), (0.5, 1.0, 1.0)])
@pytest.mark.parametrize("t", [9, 10])
@pytest.mark.parametrize("chunks", [None, (4, 7, 6), (13, 24, 20)])
def test_slab_percolation_and_thickness(t, voxel_size, chunks):
    shape = (30, 24, 20)
    slab = np.zeros(shape, dtype=np.uint8)
    slab[10 : 10 + t] = 1
    result = ms.measure(slab, voxel_size, chunks=chunks)
    assert result["n_components"] == 1
    assert result["percolates"] == {"z": False, "y": True, "x": True}
    assert result["percolating_fraction"] == {"z": 0.0, "y": 1.0, "x": 1.0}
    assert result["largest_component_fraction"] == 1.0
    assert result["volume_fraction"] == t / shape[0]
    assert result["faces"] == {"z": 2 * 24 * 20, "y": 0, "x": 0}
    # Per layer i of the slab: 2 * sz * min(i + 1, t - i) (voxel-centre distances).
    sz = voxel_size[0]
    layers = np.array([2 * sz * min(i + 1, t - i) for i in range(t)])
    assert result["thickness_mean"] == pytest.approx(layers.mean(), rel=1e-12)
    assert result["thickness_median"] == pytest.approx(np.median(layers))
    # The same in closed form: t/2 + 1 sides for even t, 2 (m + 1)^2 / t for t = 2m + 1.
    m = t // 2
    closed = (t / 2 + 1) if t % 2 == 0 else 2 * (m + 1) ** 2 / t
    assert result["thickness_mean"] == pytest.approx(closed * sz, rel=1e-12)
    assert result["thickness_truncated_fraction"] == 0.0


@pytest.mark.parametrize("chunks", [(30, 24, 20), (4, 7, 6), (1, 24, 3)])
def test_slab_thickness_truncated_by_small_halo(chunks):
    t, max_radius = 10, 3
    slab = np.zeros((30, 24, 20), dtype=bool)
    slab[10 : 10 + t] = True
    result = ms.measure(slab, chunks=chunks, max_radius=max_radius)
    layers = np.array([2 * min(i + 1, t - i, max_radius) for i in range(t)])
    assert result["thickness_mean"] == pytest.approx(layers.mean(), rel=1e-12)
    assert result["thickness_truncated_at"] == 2 * max_radius
    assert result["thickness_truncated_fraction"] == pytest.approx(np.mean(layers == 6))


@pytest.mark.parametrize("chunks", [None, (6, 6, 6), (5, 31, 9)])
def test_two_blobs(chunks):
    shape = (26, 31, 40)
    small = ball(shape, (8, 9, 8), 4.0)
    big = ball(shape, (14, 18, 26), 7.0)
    assert not (ndimage.binary_dilation(small) & big).any()
    volume = (small | big).astype(np.uint8)
    result = ms.measure(volume, chunks=chunks)
    assert result["n_components"] == 2
    assert result["largest_component_voxels"] == big.sum()
    assert result["largest_component_fraction"] == big.sum() / (small.sum() + big.sum())
    assert result["percolates"] == {"z": False, "y": False, "x": False}
    assert result["percolating_fraction"] == {"z": 0.0, "y": 0.0, "x": 0.0}


def wavy_tube(shape=(24, 12, 64), radius=1.6):
    """A tube along x whose centre line z = 12 + 4 sin(...) crosses the plane z = 12 often."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    centre = 11.5 + 4 * np.sin(2 * np.pi * x / 16)
    return (z - centre) ** 2 + (y - 5.5) ** 2 <= radius**2


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("chunks", [(12, 12, 64), (12, 6, 16), (5, 7, 9)])
def test_tube_crossing_chunk_boundaries_is_one_component(chunks, connectivity):
    tube = wavy_tube()
    # Labelled chunk by chunk the tube falls apart into many pieces ...
    pieces = 0
    for z0 in range(0, tube.shape[0], chunks[0]):
        for y0 in range(0, tube.shape[1], chunks[1]):
            for x0 in range(0, tube.shape[2], chunks[2]):
                block = tube[z0 : z0 + chunks[0], y0 : y0 + chunks[1], x0 : x0 + chunks[2]]
                pieces += ndimage.label(block)[1]
    assert pieces > 4
    # ... which the merge across chunk faces joins again.
    result = ms.measure(tube, chunks=chunks, connectivity=connectivity)
    assert result["n_components"] == 1
    assert result["percolates"] == {"z": False, "y": False, "x": True}
    assert result["percolating_fraction"]["x"] == 1.0
    assert_matches_reference(result, reference(tube, connectivity=connectivity), 0.25)


@pytest.mark.parametrize("offset", [(1, 1, 1), (1, 1, 0), (0, 1, -1), (1, -1, 1)])
def test_diagonal_touch_across_chunk_corner(offset):
    """Voxels touching by a chunk edge or corner merge with 26- but not 6-connectivity."""
    volume = np.zeros((8, 8, 8), dtype=np.uint8)
    a = np.array([3, 3, 3]) + (np.array(offset) < 0)
    volume[tuple(a)] = 1
    volume[tuple(a + offset)] = 1
    six = ms.measure(volume, chunks=(4, 4, 4), connectivity=6)
    corner = ms.measure(volume, chunks=(4, 4, 4), connectivity=26)
    assert six["n_components"] == 2
    assert corner["n_components"] == 1
    assert corner["largest_component_fraction"] == 1.0


@pytest.mark.parametrize("connectivity", [6, 26])
def test_random_structure_independent_of_chunking(connectivity):
    phase = random_phase((22, 27, 33), seed=4)
    voxel_size = (1.0, 0.7, 0.7)
    whole = ms.measure(phase, voxel_size, connectivity=connectivity, max_radius=4)
    ref = reference(phase, voxel_size, connectivity, max_radius=4)
    assert_matches_reference(whole, ref, ms.thickness_bin_width(voxel_size))
    assert whole["n_components"] > 2
    for chunks in [(7, 9, 11), (22, 5, 33), (1, 27, 4), (8, 8, 8), (4, 3, 5)]:
        result = ms.measure(
            phase, voxel_size, chunks=chunks, connectivity=connectivity, max_radius=4
        )
        assert_same_result(result, whole)


@pytest.mark.parametrize("chunks", [(1, 3, 2), (2, 3, 5), (10, 10, 10)])
def test_volume_fraction_exact(chunks):
    rng = np.random.default_rng(5)
    phase = rng.random((10, 9, 11)) < 0.3
    result = ms.measure(phase, chunks=chunks, max_radius=2)
    assert result["phase_voxels"] == int(phase.sum())
    assert result["total_voxels"] == phase.size
    assert result["volume_fraction"] == phase.sum() / phase.size
    assert_matches_reference(result, reference(phase, max_radius=2), 0.25)


def test_zarr_dask_and_result_inputs_agree(tmp_path):
    labels = np.zeros((20, 30, 25), dtype=np.uint8)
    labels[random_phase(labels.shape, seed=6)] = 2
    labels[3:6, :, :] = 1
    array = zarr.create_array(
        str(tmp_path / "labels.zarr"), shape=labels.shape, chunks=(6, 16, 10), dtype="uint8"
    )
    array[:] = labels
    from_zarr = ms.measure(array, label=2)
    assert from_zarr["chunks"] == [6, 16, 10]
    from_numpy = ms.measure(labels, label=2, chunks=(20, 30, 25))
    from_dask = ms.measure(da.from_array(labels, chunks=(4, 11, 25)), label=np.uint8(2))
    from_result = ms.measure(types.SimpleNamespace(mask=array), label=2, chunks=(9, 9, 9))
    for other in (from_numpy, from_dask, from_result):
        assert_same_result(other, from_zarr)
    assert_matches_reference(from_zarr, reference(labels == 2), 0.25)
    json.dumps(from_zarr, allow_nan=False)


def test_empty_and_full_phase():
    empty = ms.measure(np.zeros((5, 6, 7), dtype=np.uint8), chunks=(2, 3, 4))
    assert empty["phase_voxels"] == 0
    assert empty["n_components"] == 0
    assert empty["surface_area_faces"] == 0.0
    assert empty["percolates"] == {"z": False, "y": False, "x": False}
    assert empty["largest_component_fraction"] is None
    assert empty["thickness_mean"] is None and empty["thickness_median"] is None
    json.dumps(empty, allow_nan=False)

    full = ms.measure(np.ones((5, 6, 7), dtype=bool), chunks=(2, 3, 4), max_radius=2)
    assert full["n_components"] == 1
    assert full["specific_surface_area"] == 0.0
    assert full["percolates"] == {"z": True, "y": True, "x": True}
    # No non-phase voxel anywhere: every distance is truncated.
    assert full["thickness_mean"] == 4.0
    assert full["thickness_truncated_fraction"] == 1.0
    json.dumps(full, allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voxel_size": (1.0, 1.0)}, "voxel_size"),
        ({"voxel_size": (1.0, 0.0, 1.0)}, "voxel_size"),
        ({"connectivity": 18}, "connectivity"),
        ({"max_radius": 0}, "max_radius"),
        ({"max_radius": 2.5}, "max_radius"),
        ({"chunks": (4, 4)}, "chunks"),
        ({"label": "ni"}, "label"),
    ],
)
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ms.measure(np.zeros((4, 4, 4), dtype=np.uint8), **kwargs)


def test_not_3d_is_rejected():
    with pytest.raises(ValueError, match="3D"):
        ms.measure(np.zeros((4, 4), dtype=np.uint8))
