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
from volseg.microstructure import tasks

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


# --------------------------------------------------------------------------- three phases

PORE, YSZ, NI = 0, 1, 2
# Keys measure() returns that measure_phases() gives once for all phases.
SHARED_KEYS = {
    "shape",
    "voxel_size",
    "unit",
    "chunks",
    "connectivity",
    "max_radius",
    "total_voxels",
    "total_volume",
}


def brute_force_tpb(labels, values):
    """Loop over every interior edge: does its 2x2 square of voxels hold all three values?"""
    wanted = set(values)
    counts = [0, 0, 0]
    for axis in range(3):
        across = [k for k in range(3) if k != axis]
        for high in np.ndindex(*labels.shape):
            if any(high[k] == 0 for k in across):
                continue  # the square would reach outside the array
            seen = set()
            for steps in ((0, 0), (1, 0), (0, 1), (1, 1)):
                voxel = list(high)
                for k, step in zip(across, steps):
                    voxel[k] -= step
                seen.add(labels[tuple(voxel)].item())
            counts[axis] += wanted <= seen
    return tuple(counts)


def small_anode(shape=(12, 40, 50), seed=3):
    """volseg.synth labels with fine grains, so that a small volume has many TPB edges."""
    from volseg import synth

    return synth.anode(shape, seed, grain_sigma=4.0, fine_sigma=1.5)[1]


def straight_line(shape, axis):
    """Pore for x < a; YSZ for x >= a, y < b; Ni for x >= a, y >= b: a triple line along z.

    The z axis is then moved to ``axis``.
    """
    labels = np.full((shape[0], shape[1], shape[2]), PORE, dtype=np.uint8)
    a, b = shape[2] // 2, shape[1] // 3
    labels[:, :b, a:] = YSZ
    labels[:, b:, a:] = NI
    return np.moveaxis(labels, 0, axis)


@pytest.mark.parametrize("values", [(0, 1, 2), (3, 0, 2), (2.0, 1, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_tpb_edge_counts_match_brute_force(seed, values):
    rng = np.random.default_rng(seed)
    # Value 3 is a fourth phase when it is not one of the three: it never completes a triple.
    labels = rng.choice(
        np.array([0, 1, 2, 3], dtype=np.uint8), size=(5, 6, 7), p=[0.4, 0.3, 0.2, 0.1]
    )
    expected = brute_force_tpb(labels, values)
    assert min(expected) > 0
    assert ms.tpb_edge_counts(labels, values) == expected


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("chunks", [None, (3, 5, 4), (1, 12, 12)])
def test_straight_tpb_line_along_an_axis(axis, chunks):
    voxel_size = (0.5, 2.0, 0.25)
    labels = straight_line((9, 12, 10), axis)
    n = labels.shape[axis]
    expected = [0, 0, 0]
    expected[axis] = n
    assert ms.tpb_edge_counts(labels) == tuple(expected)
    result = ms.measure_phases(labels, voxel_size, chunks=chunks, max_radius=2)
    assert result["tpb_edges"] == dict(zip(AXES, expected))
    length = n * voxel_size[axis]
    assert result["tpb_length_edges"] == pytest.approx(length, rel=1e-12)
    volume = labels.size * 0.5 * 2.0 * 0.25
    assert result["tpb_density_edges"] == pytest.approx(length / volume, rel=1e-12)
    assert result["tpb_density"] == pytest.approx(length / volume * 2 / 3, rel=1e-12)


def diagonal_line(n, theta):
    """Pore below z = 0.5; above it YSZ and Ni split by a line at angle ``theta`` in the yx-plane.

    The triple line runs in direction (0, sin theta, cos theta) through the centre of
    the yx-plane; returns the labels, the direction and the line's length inside the array.
    """
    z, y, x = np.ogrid[:2, :n, :n]
    centre = (n - 1) / 2
    uy, ux = math.sin(theta), math.cos(theta)
    solid = np.where((y - centre) * ux - (x - centre) * uy < 0, YSZ, NI)
    labels = np.where(z >= 1, solid, PORE).astype(np.uint8)
    length = 2 * min((n / 2) / abs(u) for u in (uy, ux) if abs(u) > 1e-9)
    return labels, (0.0, uy, ux), length


@pytest.mark.parametrize("degrees", [0, 20, 45, 70, 135])
def test_tpb_staircase_of_an_oblique_line(degrees):
    """Edges along each axis cover the line's extent along that axis: L |u_k|, within 2 edges."""
    n = 48
    labels, direction, length = diagonal_line(n, math.radians(degrees))
    edges = ms.tpb_edge_counts(labels)
    for count, component in zip(edges, direction):
        assert abs(count - length * abs(component)) <= 2
    # At 45 degrees the staircase is sqrt(2) times the line (boundary effects: 1/n).
    staircase = sum(abs(u) for u in direction)
    assert sum(edges) / length == pytest.approx(staircase, rel=2 / n)


def test_tpb_diagonal_line_chunked_is_sqrt2_times_its_length():
    n = 40
    # Exactly along y = x: YSZ where y < x, Ni where y >= x.
    z, y, x = np.ogrid[:2, :n, :n]
    labels = np.where(z >= 1, np.where(y < x, YSZ, NI), PORE).astype(np.uint8)
    result = ms.measure_phases(labels, (3.0, 0.5, 0.5), chunks=(2, 7, 9), max_radius=2)
    # One edge per column and one per row, except where the line leaves the square.
    assert result["tpb_edges"] == {"z": 0, "y": n - 1, "x": n - 1}
    assert result["tpb_length_edges"] == 2 * (n - 1) * 0.5
    # The boundary y = x - 1/2 (voxel centres) runs from (-1/2, 0) to (n - 1, n - 1/2).
    length = math.sqrt(2) * (n - 0.5) * 0.5
    assert result["tpb_length_edges"] / length == pytest.approx(math.sqrt(2), rel=1 / n)


def test_tpb_of_random_straight_lines_is_three_halves_their_length():
    """The assumption behind tpb_density = 2/3 x the edge length, on digitised straight lines.

    Two perpendicular planes through the centre of a cube meet along a line of
    random direction u; its edge count is L (|ux| + |uy| + |uz|) for an ideal
    staircase, 3/2 L on average. Digital planes meet along a slightly jagged line,
    so the count is a few per cent higher: the isotropic estimate is too high by that.
    """
    n, lines = 32, 40
    rng = np.random.default_rng(7)
    grid = np.indices((n, n, n)).astype(float) - (n - 1) / 2
    ratios, staircases = [], []
    for _ in range(lines):
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        normal = rng.normal(size=3)
        normal -= normal.dot(u) * u
        normal /= np.linalg.norm(normal)
        pore = np.tensordot(normal, grid, 1) < 0
        ysz = np.tensordot(np.cross(u, normal), grid, 1) < 0
        labels = np.where(pore, PORE, np.where(ysz, YSZ, NI)).astype(np.uint8)
        length = 2 * min((n / 2) / abs(c) for c in u if abs(c) > 1e-9)
        edges = np.array(ms.tpb_edge_counts(labels))
        assert np.all(edges >= np.floor(length * np.abs(u)) - 2)
        ratios.append(edges.sum() / length)
        staircases.append(np.abs(u).sum())
    # Seed 7: 5.3 % above the ideal staircases; the 2/3 estimate is 1.028 x the true length.
    excess = np.mean(ratios) / np.mean(staircases)
    assert 1.0 <= excess <= 1.08
    assert np.mean(ratios) * ms.ISOTROPIC_EDGE_FACTOR == pytest.approx(1.0, rel=0.05)


def test_two_phases_have_no_tpb(caplog):
    labels = np.where(random_phase((10, 12, 14), seed=8), NI, PORE).astype(np.uint8)
    assert ms.tpb_edge_counts(labels) == (0, 0, 0)
    with caplog.at_level("WARNING", logger="volseg.microstructure"):
        result = ms.measure_phases(labels, chunks=(4, 5, 6), max_radius=2)
    assert result["tpb_edges"] == {"z": 0, "y": 0, "x": 0}
    assert result["tpb_length_edges"] == 0.0 and result["tpb_density"] == 0.0
    assert result["phase_fractions"]["ysz"] == 0.0
    assert "'ysz'" in caplog.text and "no voxel" in caplog.text


@pytest.fixture(scope="module")
def anode_whole():
    """Labels of a small synthetic anode, measured in one chunk."""
    labels = small_anode()
    return labels, ms.measure_phases(labels, (0.5, 0.25, 0.25), max_radius=3)


@pytest.mark.parametrize("chunks", [(5, 13, 17), (1, 40, 50), (12, 9, 50), (4, 11, 13)])
def test_measure_phases_chunked_equals_whole_array(anode_whole, chunks):
    labels, whole = anode_whole
    expected = ms.tpb_edge_counts(labels)
    assert min(expected) > 50
    result = ms.measure_phases(labels, (0.5, 0.25, 0.25), chunks=chunks, max_radius=3)
    assert result["chunks"] == list(chunks)
    assert result["tpb_edges"] == whole["tpb_edges"] == dict(zip(AXES, expected))
    assert result["tpb_length_edges"] == 0.5 * expected[0] + 0.25 * (expected[1] + expected[2])
    for name in ("pore", "ysz", "ni"):
        assert_same_result(result["phases"][name], whole["phases"][name])
    assert_same_result(
        {k: v for k, v in result.items() if k != "phases"},
        {k: v for k, v in whole.items() if k != "phases"},
    )


def test_measure_phases_gives_measure_of_each_phase():
    labels = small_anode((10, 24, 30), seed=4)
    result = ms.measure_phases(labels, chunks=(4, 11, 30), connectivity=26, max_radius=3)
    assert result["phase_values"] == {"pore": PORE, "ysz": YSZ, "ni": NI}
    assert sum(result["phase_fractions"].values()) == pytest.approx(1.0)
    for name, value in result["phase_values"].items():
        single = ms.measure(labels, label=value, chunks=(4, 11, 30), connectivity=26, max_radius=3)
        assert set(single) - set(result["phases"][name]) == SHARED_KEYS
        assert result["phases"][name] == {k: single[k] for k in result["phases"][name]}
        assert result["phase_fractions"][name] == single["volume_fraction"]
        for key in SHARED_KEYS:
            assert result[key] == single[key], key
    json.dumps(result, allow_nan=False)


def test_tpb_tasks_read_one_chunk_and_a_low_halo(monkeypatch):
    seen = []
    original = tasks.tpb_block

    def recording(bits, block_info=None):
        seen.append((bits.shape, tuple(block_info[0]["chunk-location"])))
        return original(bits, block_info=block_info)

    monkeypatch.setattr(tasks, "tpb_block", recording)
    labels = small_anode((12, 20, 20), seed=5)
    chunks = (5, 8, 6)
    ms.measure_phases(labels, chunks=chunks, max_radius=2)
    assert len(seen) == 3 * 3 * 4
    for shape, location in seen:
        for size, chunk, index in zip(shape, chunks, location):
            assert size <= chunk + (index > 0)


def test_measure_phases_reads_each_chunk_once():
    """All phases and the TPB are computed in one pass: every chunk is read once."""
    labels = small_anode((12, 20, 20), seed=6)
    reads = []

    def read(block_info=None):
        location = block_info[None]["array-location"]
        reads.append(tuple(location))
        return labels[tuple(slice(lo, hi) for lo, hi in location)]

    chunks = da.core.normalize_chunks((5, 8, 7), labels.shape)
    source = da.map_blocks(read, chunks=chunks, dtype=labels.dtype)
    result = ms.measure_phases(source, max_radius=2)
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 3 * 3 * 3
    assert result["tpb_edges"] == dict(zip(AXES, ms.tpb_edge_counts(labels)))


def test_phases_recorded_in_attrs(tmp_path):
    from volseg import synth

    synth.write_anode(
        tmp_path / "anode.zarr", (8, 24, 24), seed=2, chunks=(4, 12, 12), grain_sigma=3.0
    )
    from_path = ms.measure_phases(str(tmp_path / "anode.zarr" / "labels"), max_radius=2)
    assert from_path["phase_values"] == synth.PHASES
    assert from_path["chunks"] == [4, 12, 12]
    labels = np.asarray(zarr.open_array(str(tmp_path / "anode.zarr" / "labels"), mode="r"))
    assert from_path["tpb_edges"] == dict(zip(AXES, ms.tpb_edge_counts(labels)))

    # Other values recorded: they are used; a phases argument overrides them.
    swapped = {"pore": 0, "ni": 1, "ysz": 2}
    array = zarr.create_array(str(tmp_path / "swapped.zarr"), shape=labels.shape, dtype="uint8")
    array[:] = labels
    array.attrs["phases"] = swapped
    result = ms.measure_phases(array, max_radius=2)
    assert result["phase_values"] == swapped
    assert result["phase_fractions"]["ni"] == np.mean(labels == 1)
    given = ms.measure_phases(array, phases=synth.PHASES, max_radius=2)
    assert given["phase_fractions"]["ni"] == np.mean(labels == 2)
    assert result["tpb_edges"] == given["tpb_edges"]  # the TPB does not depend on the names

    array.attrs["phases"] = {"pore": 0, "solid": 1}
    with pytest.raises(ValueError, match="recorded in the attrs"):
        ms.measure_phases(array)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phases": {"pore": 0, "ni": 2}}, "exactly three phase"),
        ({"phases": {"pore": 0, "ysz": 1, "ni": 2, "lsm": 3}}, "exactly three phase"),
        ({"phases": [0, 1, 2]}, "exactly three phase"),
        ({"phases": {"pore": 0, "ysz": 1, "ni": 1}}, "same label value"),
        ({"phases": {"pore": 0, "ysz": "1", "ni": 2}}, "not a number"),
        ({"phases": {0: 0, 1: 1, 2: 2}}, "names must be strings"),
        ({"voxel_size": (1.0, -1.0, 1.0)}, "voxel_size"),
        ({"connectivity": 4}, "connectivity"),
        ({"chunks": (2, 2)}, "chunks"),
    ],
)
def test_measure_phases_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ms.measure_phases(np.zeros((4, 4, 4), dtype=np.uint8), **kwargs)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0, 1), "exactly three"),
        ((0, 1, 2, 3), "exactly three"),
        ((0, 1, 1), "same label value"),
        (("a", 1, 2), "not a number"),
    ],
)
def test_tpb_edge_counts_invalid_phase_values(values, message):
    with pytest.raises(ValueError, match=message):
        ms.tpb_edge_counts(np.zeros((3, 3, 3), dtype=np.uint8), values)


def test_tpb_needs_3d_labels():
    with pytest.raises(ValueError, match="3D"):
        ms.tpb_edge_counts(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="3D"):
        ms.measure_phases(np.zeros((4, 4), dtype=np.uint8))
