"""Active TPB: chunk-invariant, equal to a whole-array reference."""

import numpy as np
import pytest
from scipy import ndimage

from volseg.microstructure import active_tpb, measure_phases, parse_faces, tpb_edge_counts

FACES = {"pore": ["z+"], "ysz": ["z-"], "ni": ["z+", "x-"]}


def _three_phases(shape=(12, 13, 11), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.2)
    return np.digitize(smooth, np.quantile(smooth, [0.35, 0.7])).astype(np.uint8)


def _reference(labels: np.ndarray, faces: dict) -> tuple[int, int, int]:
    """Inactive voxels set to a non-phase value, then the whole-array edge count."""
    active = labels.copy()
    for name, value in {"pore": 0, "ysz": 1, "ni": 2}.items():
        components, _ = ndimage.label(labels == value)
        keep = np.ones(components.max() + 1, dtype=bool)
        for face in faces.get(name, ()):
            axis = "zyx".index(face[0])
            side = np.take(components, -1 if face[1] == "+" else 0, axis=axis)
            touching = np.zeros_like(keep)
            touching[np.unique(side)] = True
            keep &= touching
        active[(labels == value) & ~keep[components]] = 255
    return tpb_edge_counts(active)


@pytest.mark.parametrize("chunks", [(12, 13, 11), (5, 4, 6), (1, 13, 3)])
@pytest.mark.parametrize("faces", [FACES, {"ysz": ["y-", "y+"]}])
def test_matches_whole_array_reference_for_any_chunking(chunks, faces):
    labels = _three_phases()
    result = active_tpb(labels, chunks=chunks, faces=faces)
    expected = _reference(labels, faces)
    assert tuple(result["active"]["edges"].values()) == expected
    assert tuple(result["total"]["edges"].values()) == tpb_edge_counts(labels)
    assert 0 < result["active"]["length_edges"] < result["total"]["length_edges"]
    per_chunk = np.array([c["active"] for c in result["per_chunk"]]).sum(axis=0)
    assert tuple(per_chunk) == expected
    assert len(result["per_chunk"]) == np.prod([-(-s // c) for s, c in zip(labels.shape, chunks)])


def test_no_face_required_means_all_tpb_is_active():
    labels = _three_phases()
    result = active_tpb(labels, faces={}, voxel_size=(2.0, 1.0, 1.0))
    assert result["active"] == result["total"]
    assert result["active_fraction"] == 1.0
    assert result["total"]["length_edges"] == pytest.approx(
        sum(n * s for n, s in zip(tpb_edge_counts(labels), (2.0, 1.0, 1.0)))
    )


def test_measure_phases_reports_active_tpb():
    labels = _three_phases()
    measured = measure_phases(labels, max_radius=2, faces=FACES, chunks=(6, 7, 11))
    assert measured["active_tpb"]["active"]["edges"] == dict(zip("zyx", _reference(labels, FACES)))
    assert measured["active_tpb"]["total"]["edges"] == measured["tpb_edges"]


def test_bad_faces_are_named():
    with pytest.raises(ValueError, match="faces names"):
        parse_faces({"lsm": ["z-"]}, ["pore", "ysz", "ni"])
    with pytest.raises(ValueError, match=r"faces\['ni'\] has 'q\+'"):
        parse_faces({"ni": ["q+"]}, ["pore", "ysz", "ni"])
