"""Small-component clean-up: chunk-invariant, equal to a whole-array reference."""

import numpy as np
import pytest
from scipy import ndimage

from volseg.microstructure import measure_phases, parse_min_size, remove_small_components

VALUES = (0, 1, 2)


def _three_phases(shape=(14, 15, 13), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    labels = np.digitize(smooth, np.quantile(smooth, [0.35, 0.7])).astype(np.uint8)
    # Sprinkle single voxels and thin rims: the components the clean-up is for.
    noise = rng.random(shape) < 0.03
    labels[noise] = rng.integers(0, 3, noise.sum())
    return labels


def _reference(labels: np.ndarray, min_size: int, connectivity: int = 6) -> np.ndarray:
    """The rule on the whole array at once."""
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    out = labels.copy()
    padded = np.pad(labels.astype(np.int16), 1, constant_values=-1)
    for index, value in enumerate(VALUES):
        components, n = ndimage.label(labels == value, structure=structure)
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        for comp in np.flatnonzero(sizes[1:] < min_size) + 1:
            voxels = np.argwhere(components == comp)
            faces = np.zeros(len(VALUES), dtype=np.int64)
            for axis in range(3):
                for step in (-1, 1):
                    shifted = voxels + 1
                    shifted[:, axis] += step
                    nb = padded[tuple(shifted.T)]
                    for other, other_value in enumerate(VALUES):
                        if other != index:
                            faces[other] += np.count_nonzero(nb == other_value)
            if faces.any():
                out[components == comp] = VALUES[int(np.argmax(faces))]
    return out


@pytest.mark.parametrize("chunks", [(14, 15, 13), (5, 6, 4), (3, 15, 7), (1, 8, 13)])
@pytest.mark.parametrize("min_size", [2, 10])
def test_matches_whole_array_reference_for_any_chunking(chunks, min_size):
    labels = _three_phases()
    cleaned, report = remove_small_components(labels, min_size, chunks=chunks)
    expected = _reference(labels, min_size)
    np.testing.assert_array_equal(cleaned.compute(), expected)
    changed = np.count_nonzero(expected != labels)
    assert changed > 0
    assert sum(report[str(v)]["removed_voxels"] for v in VALUES) == changed
    assert cleaned.chunks == remove_small_components(labels, 1, chunks=chunks)[0].chunks


def test_a_component_split_over_chunks_counts_as_one():
    labels = np.zeros((8, 8, 8), dtype=np.uint8)
    labels[:, :, 4:] = 2
    labels[3:5, 3:5, 3:5] = 1  # 8 voxels, one in each of 8 chunks of 4^3
    labels[6:, :, :2] = 1  # a larger YSZ component: the phase is not erased whole
    kept, report = remove_small_components(labels, 8, chunks=(4, 4, 4))
    assert report["1"] == {"components": 2, "removed_components": 0, "removed_voxels": 0}
    np.testing.assert_array_equal(kept.compute(), labels)
    cleaned, report = remove_small_components(labels, 9, chunks=(4, 4, 4))
    assert report["1"]["removed_voxels"] == 8
    # Ties (6 faces with pore, 6 with Ni... here 8 with pore and 4 with Ni) by face count.
    np.testing.assert_array_equal(cleaned.compute(), _reference(labels, 9))


def test_cleanup_lowers_tpb_of_rims():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:, :, 5:] = 2
    labels[:, 4:6, 4] = 1  # a one-voxel-thick YSZ rim between pore and Ni
    labels[:4, :4, :3] = 1  # a YSZ grain inside the pore (no TPB), kept
    before = measure_phases(labels, max_radius=2)["tpb_edges"]["z"]
    after = measure_phases(labels, max_radius=2, min_size=30)
    assert before > 0 and after["tpb_edges"]["z"] == 0
    assert after["min_size_voxels"] == 30
    assert after["cleanup"]["1"]["removed_voxels"] == 20


def test_min_size_in_physical_units():
    assert parse_min_size("0.001 um^3", (0.1, 0.1, 0.1), "micrometer") == 1
    assert parse_min_size("8000nm3", (0.01, 0.01, 0.01), "micrometer") == 8
    assert parse_min_size("1um3", (100.0, 100.0, 100.0), "nanometer") == 1000
    with pytest.raises(ValueError, match="unit is None"):
        parse_min_size("0.5um3", (1.0, 1.0, 1.0), None)
    with pytest.raises(ValueError, match="not a size"):
        parse_min_size("big")
    with pytest.raises(ValueError, match="unknown unit"):
        parse_min_size("3 furlongs3")
    with pytest.raises(ValueError, match="values="):
        remove_small_components(np.zeros((2, 2, 2)), 2, values=(0, 0))


@pytest.mark.parametrize("three_phases", [False, True])
def test_segment_cleans_its_output(scan_zarr, checkpoint, checkpoint3, tmp_path, three_phases):
    import volseg

    model = checkpoint3 if three_phases else checkpoint
    run = {"tile": 64, "device": "cpu", "progress": False, "chunks": (3, 40, 50)}
    raw = volseg.segment(scan_zarr / "image", model=model, out=tmp_path / "raw.zarr", **run)
    clean = volseg.segment(
        scan_zarr / "image", model=model, out=tmp_path / "clean.zarr", min_size=6, **run
    )
    if three_phases:
        phases = raw.summary.get("phases") or {"pore": 0, "ysz": 1, "ni": 2}
        expected, report = remove_small_components(raw.group["labels"], 6, values=(0, 1, 2))
        expected = expected.compute()
        np.testing.assert_array_equal(clean.group["labels"][...], expected)
        np.testing.assert_array_equal(clean.mask[...], (expected == phases["ni"]).astype(np.uint8))
    else:
        expected, report = remove_small_components(raw.mask, 6, values=(0, 1))
        np.testing.assert_array_equal(clean.mask[...], expected.compute())
    assert clean.summary["cleanup"] == report
    assert any(report[key]["removed_voxels"] for key in report if key != "min_size_voxels")


def test_measure_binary_min_size_and_cli_refusal(capsys):
    from volseg.cli import main
    from volseg.microstructure import measure

    mask = np.zeros((8, 8, 8), dtype=np.uint8)
    mask[:, :4] = 1
    mask[6, 6, 6] = 1  # a stray voxel
    mask[1, 1, 1] = 0  # a one-voxel hole
    raw = measure(mask, max_radius=2)
    cleaned = measure(mask, max_radius=2, min_size=2, chunks=(3, 5, 4))
    assert raw["n_components"] == 2 and cleaned["n_components"] == 1
    assert cleaned["phase_voxels"] == 8 * 8 * 4
    assert cleaned["cleanup"]["1"]["removed_voxels"] == 1
    assert cleaned["cleanup"]["0"]["removed_voxels"] == 1
    with pytest.raises(SystemExit):
        main(["measure", "x.zarr", "--min-size", "lots"])
    assert "min_size='lots'" in capsys.readouterr().err


@pytest.mark.parametrize("chunks", [(8, 8, 8), (3, 5, 4)])
def test_a_huge_min_size_never_swaps_a_binary_mask(chunks):
    mask = np.zeros((8, 8, 8), dtype=np.uint8)
    mask[:, :, 1:] = 1  # 448 foreground voxels, 64 background
    mask[4, 4, 4] = 0
    with pytest.raises(ValueError) as info:
        remove_small_components(mask, 10**30, values=(0, 1), chunks=chunks)
    message = str(info.value)
    assert "min_size=" in message and "would remove every component of phase 0" in message
    assert "(its largest has 64 voxels)" in message and "at most 64 voxels" in message
    # At the limit the largest component of every phase is kept, whatever the chunking.
    cleaned, report = remove_small_components(mask, 64, values=(0, 1), chunks=chunks)
    expected = mask.copy()
    expected[4, 4, 4] = 1
    np.testing.assert_array_equal(cleaned.compute(), expected)
    assert report["0"]["removed_voxels"] == 1
    with pytest.raises(ValueError, match="phase 'pore' .its largest has 64 voxels"):
        remove_small_components(mask, "1e30", values=(0, 1), names=("pore", "ni"), chunks=chunks)


def test_a_huge_min_size_never_erases_a_phase_of_three():
    labels = _three_phases()
    names = tuple(f"p{v}" for v in VALUES)
    sizes = {}
    for value in VALUES:
        components, _ = ndimage.label(labels == value)
        sizes[value] = int(np.bincount(components.ravel())[1:].max())
    for chunks in [(14, 15, 13), (5, 6, 4)]:
        # The first phase whose components would all go is named, with its largest.
        with pytest.raises(ValueError, match=f"phase 'p0' .its largest has {sizes[0]} voxels"):
            remove_small_components(labels, 10**30, chunks=chunks, names=names)
    smallest = min(sizes, key=sizes.get)
    limit = sizes[smallest]
    with pytest.raises(ValueError, match=f"phase 'p{smallest}'.*at most {limit} voxels"):
        remove_small_components(labels, limit + 1, chunks=(5, 6, 4), names=names)
    cleaned, _ = remove_small_components(labels, limit, chunks=(5, 6, 4))
    np.testing.assert_array_equal(cleaned.compute(), _reference(labels, limit))
    for value in VALUES:
        assert np.count_nonzero(cleaned.compute() == value) >= sizes[value]


def test_a_single_phase_volume_is_left_alone():
    labels = np.full((4, 4, 4), 2, dtype=np.uint8)
    cleaned, report = remove_small_components(labels, 10**30, chunks=(2, 2, 2))
    np.testing.assert_array_equal(cleaned.compute(), labels)
    assert report["2"]["removed_voxels"] == 0
