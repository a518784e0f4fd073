"""tile="auto": a global grid fitted to the plane, with the tiling contract intact.

Stitching is compared with a whole-plane reference (np.pad reflect, every grid tile,
float64 blend), and segment() with chunkings of every kind, never with stored numbers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import volseg
from volseg import inference, tiling
from volseg import io as vio
from volseg import model as vmodel
from volseg.inference import block as vblock

from .test_tiling import identity, local_mean, tile_mean

SIZES = [1, 2, 31, 33, 100, 129, 300, 501, 1000, 1024, 2048, 2560]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("margin", [0, 8, 16, 32])
@pytest.mark.parametrize("tile", [96, 128, 288, 448])
def test_fitted_grid_keeps_the_margin_on_every_seam_and_border(size, margin, tile):
    grid = tiling.fitted_axis_grid(size, tile, margin)
    starts = np.array([grid.origin(k) for k in range(grid.count)])
    assert starts[0] == -margin
    assert starts[-1] + tile >= size + margin
    # Every pixel lies at least `margin` pixels inside some tile.
    inside = np.zeros(size, dtype=bool)
    for start in starts:
        inside[max(0, start + margin) : max(0, start + tile - margin)] = True
    assert inside.all()
    # The fewest tiles: one tile fewer cannot cover the axis with that overlap.
    if grid.count > 1:
        assert (grid.count - 2) * (tile - 2 * margin) + tile < size + 2 * margin
        assert tile - grid.stride >= 2 * margin
    # touching() agrees with a brute-force search on the fitted grid.
    for start, stop in [
        (0, size),
        (0, 1),
        (size - 1, size),
        (size // 3, max(size // 3 + 1, size // 2)),
    ]:
        expected = [k for k, o in enumerate(starts) if o < stop and o + tile > start]
        assert list(grid.touching(start, stop)) == expected


@pytest.mark.parametrize("shape", [(501, 501), (1024, 1024), (2048, 2048), (300, 1000), (40, 50)])
@pytest.mark.parametrize("margin", [8, 16, 32])
def test_auto_grid_computes_the_fewest_model_pixels(shape, margin):
    grid = tiling.auto_plane_grid(shape, margin=margin, max_tile=512)
    assert grid.tile % 32 == 0 and grid.tile <= 512
    assert grid.y.margin == grid.x.margin == margin
    costs = {}
    for tile in range(32, 513, 32):
        if tile <= 2 * margin and tile < max(shape) + 2 * margin:
            continue
        try:
            fitted = [tiling.fitted_axis_grid(n, tile, margin) for n in shape]
        except ValueError:
            continue
        costs[tile] = fitted[0].count * fitted[1].count * tile * tile
    assert grid.n_tiles * grid.tile**2 == min(costs.values())
    # A function of the plane and the settings only: the same grid every time.
    assert tiling.auto_plane_grid(shape, margin=margin, max_tile=512) == grid


def test_auto_grid_beats_tile_128_on_real_plane_sizes():
    for side in (501, 1024, 2048, 2560):
        auto = inference.plane_grid((side, side), "auto")
        fixed = inference.plane_grid((side, side), 128)
        assert auto.model_pixels_per_pixel() < 0.8 * fixed.model_pixels_per_pixel()
        assert auto.y.margin == fixed.y.margin == 16  # the context of tile 128 at 0.25


def blockwise(volume, grid, chunks, predict, batch_size=3):
    out = np.full(volume.shape, np.nan, dtype=np.float32)
    nz, ny, nx = volume.shape
    cz, cy, cx = chunks
    for z0, y0, x0 in itertools.product(range(0, nz, cz), range(0, ny, cy), range(0, nx, cx)):
        z1, y1, x1 = min(z0 + cz, nz), min(y0 + cy, ny), min(x0 + cx, nx)
        plan = tiling.reflected_read_plan(grid, (y0, y1), (x0, x1))
        window = tiling.apply_read_plan(plan, volume[z0:z1, plan.y_read, plan.x_read])
        out[z0:z1, y0:y1, x0:x1] = tiling.stitch_block(
            window, grid, (y0, y1), (x0, x1), predict, batch_size=batch_size
        )
    assert not np.isnan(out).any()
    return out


def whole_plane_reference(volume, grid, predict):
    """np.pad(reflect) the whole plane, run every tile of the grid, blend in float64."""
    tile = grid.tile
    weights = tiling.blend_window(tile).astype(np.float64)
    pad = 2 * tile
    padded = np.pad(volume.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    acc = np.zeros(padded.shape)
    wsum = np.zeros(padded.shape[1:])
    for ky, kx in itertools.product(range(grid.y.count), range(grid.x.count)):
        oy, ox = grid.y.origin(ky) + pad, grid.x.origin(kx) + pad
        tiles = padded[:, oy : oy + tile, ox : ox + tile].astype(np.float32)
        acc[:, oy : oy + tile, ox : ox + tile] += weights * predict(tiles)
        wsum[oy : oy + tile, ox : ox + tile] += weights
    inner = (slice(None), slice(pad, pad + volume.shape[1]), slice(pad, pad + volume.shape[2]))
    return acc[inner] / wsum[inner[1:]]


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(7).normal(size=(2, 150, 211)).astype(np.float32)


@pytest.mark.parametrize("predict", [identity, local_mean, tile_mean])
def test_stitching_on_the_auto_grid_is_chunk_invariant_and_mirrored(volume, predict):
    grid = tiling.auto_plane_grid(volume.shape[1:], margin=16, max_tile=128)
    assert grid.n_tiles > 1
    whole = blockwise(volume, grid, volume.shape, predict)
    for chunks in [(1, 40, 37), (2, 150, 1), (1, 7, 211), (2, 64, 64)]:
        np.testing.assert_array_equal(blockwise(volume, grid, chunks, predict), whole)
    np.testing.assert_allclose(whole, whole_plane_reference(volume, grid, predict), atol=1e-4)
    if predict is identity:
        np.testing.assert_allclose(whole, volume, atol=1e-5)


# --- segment(tile="auto") ----------------------------------------------------------------

RUN = {"tile": "auto", "device": "cpu", "progress": False, "save_prob": "float32"}
# batch_size 2 caps the auto tile at 160, so the small scans get several tiles per plane.
SMALL_BUDGET = {"batch_size": 2, "backend": "torch", "precision": "fp32"}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from volseg import synth

    path = tmp_path_factory.mktemp("auto") / "scan.zarr"
    synth.write_anode(path, (4, 200, 230), seed=5, chunks=(2, 64, 64), grain_sigma=4.0)
    return path


def test_segment_auto_records_its_grid_and_is_chunk_invariant(scan, checkpoint, tmp_path):
    first = volseg.segment(
        str(scan / "image"), model=checkpoint, out=tmp_path / "a.zarr", **RUN, **SMALL_BUDGET
    )
    parameters = first.group.attrs["volseg"]["parameters"]
    grid = inference.plane_grid((200, 230), "auto", 0.25, 2)
    assert parameters["tile"] == "auto"
    assert parameters["grid"]["tile"] == grid.tile and parameters["grid"]["tiles_per_slice"] > 1
    for chunks in [(1, 64, 64), (3, 17, 230), (4, 200, 50)]:
        other = volseg.segment(
            str(scan / "image"),
            model=checkpoint,
            out=tmp_path / f"{chunks[1]}.zarr",
            chunks=chunks,
            **RUN,
            **SMALL_BUDGET,
        )
        np.testing.assert_array_equal(other.mask[...], first.mask[...])
        np.testing.assert_allclose(other.prob[...], first.prob[...], atol=1e-5, rtol=0)
    # Mirrored borders: the same network on whole reflect-padded planes.
    loaded = vmodel.load_checkpoint(checkpoint)
    image = vio.read_region(vio.open_scan(str(scan / "image")).array, (slice(None),) * 3)
    normalised = vmodel.normalise(image, loaded.config["normalisation"])
    expected = whole_plane_reference(normalised, grid, vmodel.TilePredictor(loaded))
    np.testing.assert_allclose(first.prob[...], expected, atol=1e-5)


def test_segment_auto_default_blocks_span_whole_planes(scan, checkpoint, tmp_path):
    result = volseg.segment(str(scan / "image"), model=checkpoint, out=tmp_path / "o.zarr", **RUN)
    assert tuple(result.mask.chunks) == (2, 200, 230)
    assert inference.plane_blocks((64, 2048, 2048), (64, 256, 256)) == (2, 2048, 2048)


def test_segment_auto_fusion_is_chunk_invariant(scan, checkpoint, tmp_path):
    settings = {**RUN, **SMALL_BUDGET, "axes": "zyx"}
    first = volseg.segment(
        str(scan / "image"),
        model=checkpoint,
        out=tmp_path / "a.zarr",
        chunks=(4, 100, 115),
        **settings,
    )
    other = volseg.segment(
        str(scan / "image"),
        model=checkpoint,
        out=tmp_path / "b.zarr",
        chunks=(3, 64, 200),
        **settings,
    )
    np.testing.assert_array_equal(other.mask[...], first.mask[...])


def test_segment_auto_resumes_to_the_same_result(scan, checkpoint, tmp_path, monkeypatch):
    settings = {**RUN, **SMALL_BUDGET, "chunks": (2, 100, 115)}
    reference = volseg.segment(
        str(scan / "image"), model=checkpoint, out=tmp_path / "r.zarr", **settings
    )
    original = vblock.segment_block

    def crash(block, *args):
        index = block.index
        if index == (1, 1, 0):
            raise RuntimeError("simulated node failure")
        return original(block, *args)

    monkeypatch.setattr(vblock, "segment_block", crash)
    out = tmp_path / "o.zarr"
    with pytest.raises(RuntimeError, match="simulated node failure"):
        volseg.segment(str(scan / "image"), model=checkpoint, out=out, **settings)
    monkeypatch.setattr(vblock, "segment_block", original)
    with pytest.raises(ValueError, match=r"other settings \(tile\)"):
        volseg.segment(
            str(scan / "image"), model=checkpoint, out=out, resume=True, **{**settings, "tile": 128}
        )
    resumed = volseg.segment(
        str(scan / "image"), model=checkpoint, out=out, resume=True, **settings
    )
    assert resumed.summary["chunks_skipped"] > 0
    np.testing.assert_array_equal(resumed.mask[...], reference.mask[...])
    np.testing.assert_array_equal(resumed.prob[...], reference.prob[...])


def test_cli_tile_precision_and_backend(scan, checkpoint, tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "cli.zarr"
    args = ["segment", str(scan / "image"), "--model", str(checkpoint), "--out", str(out)]
    flags = ["--tile", "auto", "--precision", "fp32", "--backend", "torch", "--device", "cpu"]
    assert main([*args, *flags, "--no-progress"]) == 0
    parameters = vio.open_output(out).attrs["parameters"]
    assert (parameters["tile"], parameters["precision"], parameters["backend"]) == (
        "auto",
        "fp32",
        "torch",
    )
    with pytest.raises(SystemExit):
        main([*args, "--tile", "big"])
    assert "use auto or a multiple of 32" in capsys.readouterr().err


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.25])
@pytest.mark.parametrize("side", [200, 501, 1024])
def test_auto_tiles_never_shrink_below_the_trained_tile(side, overlap):
    """A small margin (overlap 0) must not buy cheap 32-pixel tiles with no context."""
    grid = inference.plane_grid((side, side), "auto", overlap)
    assert grid.tile >= inference.AUTO_MIN_TILE
    # ... except a single tile that covers a small plane whole
    small = inference.plane_grid((40, 50), "auto", 0.25)
    assert small.n_tiles == 1 and small.tile < inference.AUTO_MIN_TILE
