"""The tiling contract: global grid, mirrored edges, blending and chunk-invariance.

Block-wise stitching is compared with a whole-array reference that pads the
entire plane with ``np.pad(mode="reflect")`` and blends every tile of the grid
in float64 — never with numbers copied from an earlier run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from volseg import tiling

SIZES = [1, 2, 5, 31, 32, 33, 100, 128, 129, 300, 501]
TILES = [32, 64, 128]
OVERLAPS = [0.0, 0.25, 0.5, 0.75]


def blockwise(
    volume, chunks, tile, overlap, predict, blend="gaussian", pad="reflect", batch_size=7
):
    """Stitch a whole volume block by block, as volseg.inference does, in float64 input."""
    grid = tiling.plane_grid(volume.shape[1:], tile, overlap)
    out = np.full(volume.shape, np.nan, dtype=np.float32)
    nz, ny, nx = volume.shape
    cz, cy, cx = chunks
    for z0, y0, x0 in itertools.product(range(0, nz, cz), range(0, ny, cy), range(0, nx, cx)):
        z1, y1, x1 = min(z0 + cz, nz), min(y0 + cy, ny), min(x0 + cx, nx)
        plan = tiling.reflected_read_plan(grid, (y0, y1), (x0, x1), pad)
        raw = volume[z0:z1, plan.y_read, plan.x_read]
        window = tiling.apply_read_plan(plan, raw.astype(np.float32))
        out[z0:z1, y0:y1, x0:x1] = tiling.stitch_block(
            window, grid, (y0, y1), (x0, x1), predict, blend=blend, batch_size=batch_size
        )
    assert not np.isnan(out).any(), "some pixels were never written"
    return out


def reference(volume, tile, overlap, predict, blend="gaussian"):
    """Whole-plane reference: np.pad(reflect) the plane, run every grid tile, blend in float64."""
    grid = tiling.plane_grid(volume.shape[1:], tile, overlap)
    weights = tiling.blend_window(tile, blend).astype(np.float64)
    ny, nx = volume.shape[1:]
    lo = grid.y.margin + tile  # generous padding on every side
    hi_y = grid.y.origin(grid.y.count - 1) + tile - ny + tile
    hi_x = grid.x.origin(grid.x.count - 1) + tile - nx + tile
    padded = np.pad(volume.astype(np.float64), ((0, 0), (lo, hi_y), (lo, hi_x)), mode="reflect")
    acc = np.zeros((volume.shape[0], ny + lo + hi_y, nx + lo + hi_x))
    wsum = np.zeros(acc.shape[1:])
    for ky in range(grid.y.count):
        for kx in range(grid.x.count):
            oy, ox = grid.y.origin(ky) + lo, grid.x.origin(kx) + lo
            tiles = padded[:, oy : oy + tile, ox : ox + tile].astype(np.float32)
            acc[:, oy : oy + tile, ox : ox + tile] += weights * predict(tiles)
            wsum[oy : oy + tile, ox : ox + tile] += weights
    inner = (slice(None), slice(lo, lo + ny), slice(lo, lo + nx))
    return acc[inner] / wsum[inner[1:]]


def identity(batch):
    return batch


def local_mean(batch):
    """A context-dependent predictor (like a conv net: zero padding at the tile edge)."""
    return ndimage.uniform_filter(batch, size=(1, 5, 5), mode="constant")


def tile_mean(batch):
    """Every pixel of a tile gets the tile's mean: maximal dependence on context."""
    return np.broadcast_to(batch.mean(axis=(1, 2), keepdims=True), batch.shape).copy()


# --- the grid ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("overlap", OVERLAPS)
def test_grid_covers_every_pixel_with_margin_of_context(size, tile, overlap):
    grid = tiling.axis_grid(size, tile, overlap)
    assert grid.stride == tile - round(tile * overlap)
    assert grid.margin == (tile - grid.stride) // 2
    origins = np.array([grid.origin(k) for k in range(grid.count)])
    assert origins[0] == -grid.margin
    assert np.all(np.diff(origins) == grid.stride)
    # Every pixel, border pixels included, lies >= margin inside some tile.
    pixels = np.arange(size)[:, None]
    inside = (pixels >= origins + grid.margin) & (pixels < origins + tile - grid.margin)
    assert inside.any(axis=1).all()
    # No tile is wasted: dropping the last one would lose that property.
    if grid.count > 1:
        assert not inside[:, :-1].any(axis=1).all()


@pytest.mark.parametrize("size", [7, 100, 301])
@pytest.mark.parametrize("tile,overlap", [(32, 0.0), (32, 0.5), (128, 0.25), (64, 0.9)])
def test_touching_matches_brute_force(size, tile, overlap):
    grid = tiling.axis_grid(size, tile, overlap)
    for start in range(0, size, 3):
        for stop in range(start + 1, size + 1, 7):
            expected = [
                k
                for k in range(grid.count)
                if grid.origin(k) < stop and grid.origin(k) + tile > start
            ]
            assert list(grid.touching(start, stop)) == expected


def test_grid_depends_only_on_plane_tile_and_overlap():
    a = tiling.plane_grid((501, 333), tile=128, overlap=0.25)
    b = tiling.plane_grid((501, 333), tile=128, overlap=0.25)
    assert a == b
    assert (a.y.count, a.x.count) == (6, 4)


@pytest.mark.parametrize("tile,overlap", [(0, 0.25), (-32, 0.1), (64, 1.0), (64, -0.1), (1, 0.9)])
def test_bad_tile_or_overlap_is_a_clear_error(tile, overlap):
    with pytest.raises(ValueError, match="tile=|overlap="):
        tiling.axis_grid(10, tile, overlap)


# --- mirroring ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 10])
def test_reflect_index_matches_numpy_pad(size):
    width = 3 * size + 5  # further than one axis length: repeated mirroring
    values = np.arange(size) * 10 + 7
    expected = np.pad(values, width, mode="reflect")
    got = values[tiling.reflect_index(np.arange(-width, size + width), size)]
    np.testing.assert_array_equal(got, expected)


def test_read_plan_reads_only_the_needed_bounding_box():
    grid = tiling.plane_grid((300, 300), tile=128, overlap=0.25)
    plan = tiling.reflected_read_plan(grid, (130, 150), (130, 150))
    assert plan.y_take is None and plan.x_take is None  # interior: a plain slice
    assert plan.y_read == slice(plan.y_window[0], plan.y_window[1])
    corner = tiling.reflected_read_plan(grid, (0, 10), (290, 300))
    assert corner.y_read.start == 0 and corner.x_read.stop == 300
    assert corner.y_window[0] == -16 and corner.x_window[1] > 300


# --- blending ----------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [32, 128, 256])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_blend_window_positive_symmetric_cached(tile, mode):
    w = tiling.blend_window(tile, mode)
    assert w.shape == (tile, tile) and w.dtype == np.float32
    assert w.min() > 0 and w.max() == 1.0
    np.testing.assert_array_equal(w, w[::-1])
    np.testing.assert_array_equal(w, w.T)
    assert tiling.blend_window(tile, mode) is w  # computed once per tile shape
    assert not w.flags.writeable


def test_unknown_blend_is_a_clear_error():
    with pytest.raises(ValueError, match="blend='hann'"):
        tiling.blend_window(64, "hann")


# --- stitching: identity, chunk-invariance, reference ------------------------------------

CHUNKINGS = [(3, 77, 131), (1, 20, 17), (2, 33, 64), (3, 77, 1), (2, 5, 130)]


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(42)
    return rng.integers(0, 4096, size=(3, 77, 131)).astype(np.uint16)


@pytest.mark.parametrize(
    "tile,overlap", [(32, 0.0), (32, 0.25), (64, 0.5), (128, 0.25), (32, 0.75), (64, 0.1)]
)
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_identity_predictor_reproduces_input(volume, tile, overlap, blend, chunks):
    out = blockwise(volume, chunks, tile, overlap, identity, blend=blend)
    # sum(w*x)/sum(w) == x up to float32 rounding: exact once rounded back to the input dtype.
    np.testing.assert_array_equal(np.rint(out).astype(volume.dtype), volume)
    np.testing.assert_allclose(out, volume, rtol=2e-6, atol=0)


@pytest.mark.parametrize("chunks", CHUNKINGS[1:])
def test_identity_without_overlap_is_bit_exact(volume, chunks):
    out = blockwise(volume, chunks, 32, 0.0, identity, blend="constant")
    np.testing.assert_array_equal(out, volume.astype(np.float32))


@pytest.mark.parametrize("tile,overlap", [(32, 0.25), (64, 0.5), (128, 0.25)])
@pytest.mark.parametrize("predict", [local_mean, tile_mean])
def test_result_does_not_depend_on_chunking(volume, tile, overlap, predict):
    whole = blockwise(volume, volume.shape, tile, overlap, predict)
    for chunks in CHUNKINGS[1:]:
        np.testing.assert_array_equal(blockwise(volume, chunks, tile, overlap, predict), whole)


@pytest.mark.parametrize("tile,overlap", [(32, 0.25), (64, 0.5), (128, 0.25), (32, 0.0)])
@pytest.mark.parametrize("predict", [local_mean, tile_mean])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_blockwise_equals_whole_array_reference(volume, tile, overlap, predict, blend):
    expected = reference(volume, tile, overlap, predict, blend)
    got = blockwise(volume, (2, 33, 40), tile, overlap, predict, blend=blend)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("predict", [local_mean, tile_mean])
def test_border_pixels_see_mirrored_context_not_zeros(volume, predict):
    expected = reference(volume, 64, 0.25, predict)
    mirrored = blockwise(volume, (3, 40, 40), 64, 0.25, predict, pad="reflect")
    zeros = blockwise(volume, (3, 40, 40), 64, 0.25, predict, pad="constant")
    border = np.zeros(volume.shape[1:], dtype=bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    np.testing.assert_allclose(mirrored[:, border], expected[:, border], rtol=1e-5, atol=1e-3)
    # The same comparison fails with zero padding: the test is sensitive to it.
    assert np.abs(zeros[:, border] - expected[:, border]).max() > 50


def test_tiles_handed_to_the_predictor_hold_the_mirrored_volume():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(1, 40, 50)).astype(np.float32)
    grid = tiling.plane_grid((40, 50), tile=32, overlap=0.5)
    seen = []

    def record(batch):
        seen.extend(batch.copy())
        return batch

    plan = tiling.reflected_read_plan(grid, (0, 40), (0, 50))
    window = tiling.apply_read_plan(plan, volume[:, plan.y_read, plan.x_read])
    tiling.stitch_block(window, grid, (0, 40), (0, 50), record, batch_size=5)
    padded = np.pad(volume[0], 64, mode="reflect")
    positions = [(ky, kx) for ky in range(grid.y.count) for kx in range(grid.x.count)]
    assert len(seen) == len(positions)
    for tile_data, (ky, kx) in zip(seen, positions):
        oy, ox = grid.y.origin(ky) + 64, grid.x.origin(kx) + 64
        np.testing.assert_array_equal(tile_data, padded[oy : oy + 32, ox : ox + 32])


def test_predictor_of_wrong_shape_is_reported():
    grid = tiling.plane_grid((40, 40), tile=32, overlap=0.25)
    window = np.zeros((1, 64, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="predictor returned shape"):
        tiling.stitch_block(window, grid, (0, 40), (0, 40), lambda b: b[:, :16, :16])


def test_model_pixels_per_pixel():
    grid = tiling.plane_grid((512, 512), tile=128, overlap=0.25)
    assert grid.n_tiles == grid.y.count * grid.x.count
    assert grid.model_pixels_per_pixel() == pytest.approx(grid.n_tiles * 128**2 / 512**2)


class _AsyncIdentity:
    """A predictor with submit/collect that records how many batches are in flight."""

    def __init__(self):
        self.in_flight = 0
        self.most_in_flight = 0
        self.order = []

    def __call__(self, batch):
        raise AssertionError("an asynchronous predictor is used through submit/collect")

    def submit(self, batch):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        handle = (len(self.order), batch.copy())
        self.order.append(handle[0])
        return handle

    def collect(self, handle):
        self.in_flight -= 1
        assert handle[0] == self.order.pop(0)  # collected in submission order
        return handle[1]


def test_asynchronous_predictor_pipelines_two_batches_and_gives_the_same_result(volume):
    grid = tiling.plane_grid(volume.shape[1:], 32, 0.25)
    plan = tiling.reflected_read_plan(grid, (0, 77), (0, 131))
    window = tiling.apply_read_plan(plan, volume[:, plan.y_read, plan.x_read].astype(np.float32))
    predictor = _AsyncIdentity()
    got = tiling.stitch_block(window, grid, (0, 77), (0, 131), predictor, batch_size=5)
    expected = tiling.stitch_block(window, grid, (0, 77), (0, 131), identity, batch_size=5)
    np.testing.assert_array_equal(got, expected)
    assert predictor.most_in_flight == 2 and predictor.in_flight == 0
