"""volseg.synth: deterministic, chunk-independent, three phases, harder than a threshold."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from volseg import metrics, synth


def test_same_seed_same_volume_other_seed_other_volume():
    a_image, a_labels = synth.anode((6, 70, 90), seed=4, grain_sigma=4.0)
    b_image, b_labels = synth.anode((6, 70, 90), seed=4, grain_sigma=4.0)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_labels, b_labels)
    c_image, _ = synth.anode((6, 70, 90), seed=5, grain_sigma=4.0)
    assert not np.array_equal(a_image, c_image)


def test_written_volume_does_not_depend_on_storage_chunks(tmp_path):
    image, labels = synth.anode((10, 80, 96), seed=2, grain_sigma=4.0)
    for i, chunks in enumerate([(3, 17, 40), (10, 80, 96)]):
        group = synth.write_anode(
            tmp_path / f"s{i}.zarr", (10, 80, 96), seed=2, chunks=chunks, grain_sigma=4.0
        )
        np.testing.assert_array_equal(group["image"][...], image)
        np.testing.assert_array_equal(group["labels"][...], labels)
        assert group["image"].chunks == chunks
        assert dict(group["labels"].attrs)["phases"] == {"pore": 0, "ysz": 1, "ni": 2}


def test_lazy_generation_matches_eager():
    lazy_image, lazy_labels = synth.anode((6, 64, 64), seed=1, grain_sigma=4.0, as_dask=True)
    image, labels = synth.anode((6, 64, 64), seed=1, grain_sigma=4.0)
    assert hasattr(lazy_image, "dask")
    np.testing.assert_array_equal(lazy_image.compute(), image)
    np.testing.assert_array_equal(lazy_labels.compute(), labels)


def test_phase_fractions_and_grey_levels():
    image, labels = synth.anode(
        (16, 160, 160), seed=0, grain_sigma=4.0, ni_fraction=0.3, ysz_fraction=0.4
    )
    assert image.dtype == np.uint16 and labels.dtype == np.uint8
    fractions = [float(np.mean(labels == k)) for k in range(3)]
    assert fractions == pytest.approx([0.3, 0.4, 0.3], abs=0.05)
    means = [float(image[labels == k].mean()) for k in range(3)]
    assert means[0] < means[1] < means[2]  # pore darkest, Ni brightest
    # Ni and YSZ close together, pore far: the Ni/YSZ border is the hard part.
    assert means[2] - means[1] < 0.6 * (means[1] - means[0])


def test_default_grains_are_tens_of_voxels_across():
    _, labels = synth.anode((8, 256, 256), seed=1)
    rows = labels.reshape(-1, labels.shape[-1])
    runs = rows.size / (np.count_nonzero(np.diff(rows, axis=1)) + rows.shape[0])
    assert 20 < runs < 60


def test_a_global_multi_otsu_threshold_is_not_enough():
    image, labels = synth.anode((16, 256, 256), seed=5)
    baseline = metrics.threshold_baseline(image, labels, ni_label=synth.PHASES["ni"])
    assert 0.6 < baseline["ni_iou"] < 0.93


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shape": (10, 10)}, "three positive integers"),
        ({"shape": (0, 10, 10)}, "three positive integers"),
        ({"shape": (4, 32, 32), "ni_fraction": 0.7, "ysz_fraction": 0.4}, "add up to less than 1"),
    ],
)
def test_bad_synth_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synth.anode(**kwargs)


def test_cli_synth_and_no_silent_overwrite(tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "s.zarr"
    base = ["synth", str(out), "--shape", "4", "40", "50", "--chunks", "2", "20", "20"]
    assert main([*base, "--seed", "3"]) == 0
    group = zarr.open_group(str(out), mode="r")
    assert group["image"].shape == (4, 40, 50) and group["labels"].dtype == np.uint8
    before = group["image"][...]
    assert main([*base, "--seed", "9"]) == 2
    assert "already exists" in capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["image"][...], before)
    assert main([*base, "--seed", "9", "--overwrite"]) == 0
    assert not np.array_equal(zarr.open_group(str(out), mode="r")["image"][...], before)
