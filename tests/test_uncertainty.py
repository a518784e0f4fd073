"""Error bars from decision variants; the measure command with all the new measures."""

import json

import numpy as np
import pytest
from scipy import ndimage

import volseg
from volseg.cli import main
from volseg.microstructure import (
    decision_variants,
    error_bars,
    measure_phases,
    measure_with_errors,
    tortuosity,
)

PHASES = {"pore": 0, "ysz": 1, "ni": 2}


def test_decision_variants_binary_and_multiclass():
    rng = np.random.default_rng(0)
    p = rng.random((3, 4, 5)).astype(np.float32)
    binary = decision_variants(p, shift=0.15)
    assert list(binary) == ["threshold 0.35", "threshold 0.65"]
    np.testing.assert_array_equal(binary["threshold 0.35"].compute(), p >= 0.35)
    probs = rng.dirichlet((1, 1, 1), size=(3, 4, 5)).transpose(3, 0, 1, 2).astype(np.float32)
    multi = decision_variants((probs * 255).round().astype(np.uint8), {"a": 5, "b": 7, "c": 9})
    assert list(multi) == ["a+0.1", "a-0.1", "b+0.1", "b-0.1", "c+0.1", "c-0.1"]
    shifted = np.round(probs * 255) / 255
    shifted[1] -= 0.1
    expected = np.array([5, 7, 9])[np.argmax(shifted, axis=0)]
    np.testing.assert_array_equal(multi["b-0.1"].compute(), expected)


def test_error_bars_walk_nested_results():
    nominal = {"a": 1.0, "b": {"c": 2, "d": "text"}, "e": [1.0, None], "f": True}
    variants = [{"a": 1.5, "b": {"c": 5, "d": "x"}, "e": [0.0, None], "f": False}]
    assert error_bars(nominal, variants) == {
        "a": 0.5,
        "b": {"c": 3, "d": None},
        "e": [1.0, None],
        "f": None,
    }


@pytest.fixture()
def three_phase_output(scan_zarr, checkpoint3, tmp_path):
    return volseg.segment(
        scan_zarr / "image",
        model=checkpoint3,
        out=tmp_path / "out.zarr",
        tile=64,
        device="cpu",
        progress=False,
        save_prob="float32",
        chunks=(3, 45, 55),
    )


def test_measure_with_errors_on_a_three_phase_run(three_phase_output):
    result = measure_with_errors(three_phase_output.path, max_radius=3, shift=0.2)
    labels = three_phase_output.group["labels"][...]
    nominal = measure_phases(labels, max_radius=3, phases=PHASES)
    assert result["tpb_density"] == nominal["tpb_density"]
    prob = three_phase_output.group["prob"][...]
    deviations = []
    for k in range(3):
        for sign in (1, -1):
            shifted = prob.copy()
            shifted[k] += sign * 0.2
            variant = np.array([0, 1, 2], dtype=np.uint8)[np.argmax(shifted, axis=0)]
            m = measure_phases(variant, max_radius=3, phases=PHASES)
            deviations.append(abs(m["tpb_density"] - nominal["tpb_density"]))
    assert result["errors"]["tpb_density"] == pytest.approx(max(deviations), abs=1e-12)
    assert result["errors"]["tpb_density"] > 0
    assert len(result["variants"]) == 6
    assert "largest absolute change" in result["error_definition"]


def test_measure_command_reports_error_bars_and_active_tpb(three_phase_output, tmp_path, capsys):
    report = tmp_path / "m.json"
    rc = main(
        [
            "measure",
            three_phase_output.path,
            "--error-bars",
            "--faces",
            "--min-size",
            "5",
            "--max-radius",
            "3",
            "--json",
            str(report),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tpb_density" in printed and "+/-" in printed and "active tpb_density" in printed
    values = json.loads(report.read_text())
    assert values["min_size_voxels"] == 5
    assert values["active_tpb"]["faces"] == {"pore": ["z+"], "ysz": ["z-"], "ni": ["z+"]}
    assert values["errors"]["active_tpb"]["active"]["density"] is not None


def test_measure_phases_tortuosity_matches_the_solver():
    rng = np.random.default_rng(2)
    smooth = ndimage.gaussian_filter(rng.random((10, 11, 12)), 1.5)
    labels = np.digitize(smooth, np.quantile(smooth, [0.3, 0.6])).astype(np.uint8)
    result = measure_phases(labels, max_radius=2, tortuosity=("z",), chunks=(5, 11, 6))
    for name, value in PHASES.items():
        solved = tortuosity(labels, label=value, axes="z")["axes"]["z"]
        measured = result["phases"][name]["tortuosity"]["z"]
        if solved["tortuosity"] is None:
            assert measured is None
        else:
            assert measured == pytest.approx(solved["tortuosity"], rel=1e-5)


def test_report_shows_error_bars_active_tpb_and_rev(three_phase_output, tmp_path):
    from volseg.report import make_report

    page = make_report(three_phase_output.path, html=tmp_path / "r.html")
    text = page.read_text()
    assert "±" in text and "active TPB density" in text
    assert "Representative volume" in text
    assert (tmp_path / "out_report" / "rev.png").is_file()


@pytest.mark.parametrize("chunks", [(10, 22, 17), (4, 7, 6)])
def test_rev_curve_full_volume_and_chunks_agree_with_measure(chunks):
    from volseg.microstructure import rev_curve

    rng = np.random.default_rng(5)
    smooth = ndimage.gaussian_filter(rng.random((10, 22, 17)), 1.5)
    labels = np.digitize(smooth, np.quantile(smooth, [0.3, 0.6])).astype(np.uint8)
    curve = rev_curve(labels, (0.5, 1.0, 1.0), shares=(0.1, 0.5, 1.0), chunks=chunks, max_radius=2)
    whole = measure_phases(labels, (0.5, 1.0, 1.0), max_radius=2)
    last = curve["subvolumes"][-1]
    assert last["share"] == 1.0 and last["fractions"] == whole["phase_fractions"]
    assert last["tpb_density"] == pytest.approx(whole["tpb_density"])
    assert [s["share"] for s in curve["subvolumes"]] == sorted(
        s["share"] for s in curve["subvolumes"]
    )
    weights = []
    for record in curve["per_chunk"]:
        origin = record["origin"]
        weights.append(np.prod([min(c, s - o) for c, s, o in zip(chunks, labels.shape, origin)]))
    mean_ni = np.average([r["fractions"]["ni"] for r in curve["per_chunk"]], weights=weights)
    assert mean_ni == pytest.approx(whole["phase_fractions"]["ni"])
    mean_tpb = np.average([r["tpb_density"] for r in curve["per_chunk"]], weights=weights)
    assert mean_tpb == pytest.approx(whole["tpb_density"])
    other = rev_curve(labels, (0.5, 1.0, 1.0), shares=(0.1, 0.5, 1.0), max_radius=2)
    assert other["subvolumes"] == curve["subvolumes"]


def test_error_bars_clean_variants_like_the_run(scan_zarr, checkpoint3, tmp_path):
    result = volseg.segment(
        scan_zarr / "image",
        model=checkpoint3,
        out=tmp_path / "clean.zarr",
        tile=64,
        device="cpu",
        progress=False,
        save_prob="uint8",
        min_size=8,
    )
    measured = measure_with_errors(result.path, max_radius=2)
    assert measured["min_size_voxels"] == 8
    assert measured["errors"]["min_size_voxels"] == 0


def test_an_undefined_variant_gives_an_unbounded_error_bar(tmp_path, capsys):
    from volseg.io import create_output
    from volseg.microstructure import Unbounded, format_row

    # A column at p = 0.55 is the only path along z: gone at threshold 0.6.
    path = tmp_path / "out.zarr"
    out = create_output(str(path), (6, 6, 6), (6, 6, 6), attrs={}, prob_dtype="float32")
    p = np.zeros((6, 6, 6), np.float32)
    p[:, 2:4, 2:4] = 0.55
    p[:2] = 0.9
    out.prob[...] = p
    out.mask[...] = p >= 0.5
    result = measure_with_errors(path, max_radius=2, tortuosity=True)
    assert result["tortuosity"]["z"] > 1
    error = result["errors"]["tortuosity"]["z"]
    assert isinstance(error, Unbounded) and float(error) == float("inf")
    assert error.variants == ("threshold 0.6",)
    assert result["errors_undefined"] == {"tortuosity.z": ["threshold 0.6"]}
    assert result["errors"]["volume_fraction"] == pytest.approx(16 / 216)
    # Never a bare value that looks exact, and the JSON stays strict JSON.
    row = format_row("tortuosity z", result["tortuosity"]["z"], error, "")
    assert row.endswith("+/- inf (undefined in variant threshold 0.6)")
    assert json.loads(json.dumps(result, allow_nan=False))["errors"]["tortuosity"]["z"] == "inf"
    assert error_bars([1.0], [[None], [2.0]]) == ["inf"]
    assert error_bars([1.0], [[None], [2.0]])[0].variants == ("#0",)
    # A variant that could not be measured at all leaves every error unbounded.
    assert error_bars({"a": [1.0]}, {"x": None, "y": {"a": [2.0]}})["a"][0].variants == ("x",)

    saved = tmp_path / "measures.json"
    main(["measure", str(path), "--error-bars", "--tortuosity", "z", "--json", str(saved)])
    printed = capsys.readouterr().out
    assert "+/- inf (undefined in variant threshold 0.6)" in printed
    text = saved.read_text()
    assert "Infinity" not in text and "NaN" not in text
    values = json.loads(text)
    assert values["errors"]["tortuosity"]["z"] == "inf"
    assert values["errors_undefined"] == {"tortuosity.z": ["threshold 0.6"]}
