"""Tortuosity by the in-memory and the chunked conjugate-gradient solvers against exact
answers, TauFactor and each other."""

import numpy as np
import pytest
from scipy import ndimage

from volseg.microstructure import diffusion_operator, parse_memory, tortuosity


def _porous(n: int, seed: int = 0, solid: float = 0.55) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((n, n, n)), 2)
    return (smooth > np.quantile(smooth, solid)).astype(np.uint8)


# A budget of 1000 bytes forces the chunked solver (iterates on disk).
@pytest.mark.parametrize(("chunks", "budget"), [((12, 12, 12), "1GiB"), ((5, 7, 12), 1000)])
@pytest.mark.parametrize("voxel_size", [(1.0, 1.0, 1.0), (0.5, 2.0, 1.0)])
def test_straight_channels_have_tortuosity_one(chunks, budget, voxel_size):
    channels = np.zeros((12, 12, 12), dtype=np.uint8)
    channels[:, 1::3, ::2] = 1
    result = tortuosity(channels, voxel_size, chunks=chunks, memory_budget=budget)
    assert result["solver"] == ("in-memory" if budget == "1GiB" else "chunked")
    z = result["axes"]["z"]
    assert z["percolates"] and z["converged"]
    assert z["tortuosity"] == pytest.approx(1.0, rel=1e-6)
    assert z["effective_diffusivity"] == pytest.approx(channels.mean(), rel=1e-6)
    for name in ("y", "x"):
        assert result["axes"][name] == {
            "tortuosity": None,
            "effective_diffusivity": 0.0,
            "percolates": False,
        }


@pytest.mark.parametrize(("chunks", "budget"), [((16, 6, 6), "1GiB"), ((5, 3, 4), 1000)])
def test_layers_in_series_and_parallel_match_the_exact_values(chunks, budget):
    # Layers across z: 5 voxels of D=1, 3 of D=0.2, 8 of D=0.5.
    thickness = {0: 5, 1: 3, 2: 8}
    diffusivities = {0: 1.0, 1: 0.2, 2: 0.5}
    column = np.concatenate([np.full(n, label) for label, n in thickness.items()])
    labels = np.broadcast_to(column[:, None, None], (16, 6, 6)).astype(np.uint8)
    result = tortuosity(
        labels, diffusivities=diffusivities, chunks=chunks, tol=1e-9, memory_budget=budget
    )
    series = 16 / sum(n / diffusivities[label] for label, n in thickness.items())
    parallel = sum(n * diffusivities[label] for label, n in thickness.items()) / 16
    assert result["mean_diffusivity"] == pytest.approx(parallel)
    assert result["axes"]["z"]["effective_diffusivity"] == pytest.approx(series, rel=1e-7)
    assert result["axes"]["z"]["tortuosity"] == pytest.approx(parallel / series, rel=1e-7)
    for name in ("y", "x"):
        assert result["axes"][name]["effective_diffusivity"] == pytest.approx(parallel, rel=1e-7)
        assert result["axes"][name]["tortuosity"] == pytest.approx(1.0, rel=1e-7)


def test_matches_taufactor_on_a_porous_volume():
    taufactor = pytest.importorskip("taufactor")
    volume = _porous(20)
    ours = tortuosity(volume, chunks=(8, 9, 20))
    for axis, name in enumerate(("z", "y", "x")):
        image = np.ascontiguousarray(np.moveaxis(volume, axis, 0))  # TauFactor flows along 0
        solver = taufactor.Solver(image, device="cpu")
        tau = float(np.asarray(solver.solve(verbose=False, conv_crit=1e-4)).ravel()[0])
        d_eff = float(np.asarray(solver.D_eff).ravel()[0])
        assert ours["axes"][name]["tortuosity"] == pytest.approx(tau, rel=1e-2)
        assert ours["axes"][name]["effective_diffusivity"] == pytest.approx(d_eff, rel=1e-2)


def test_in_memory_and_chunked_solvers_agree_whatever_the_chunks(tmp_path):
    volume = _porous(12, seed=3)
    whole = tortuosity(volume, axes=("z", "x"))
    assert (whole["solver"], whole["storage"]) == ("in-memory", "memory")
    # Under 192 bytes per voxel but over 52: chunked, iterates in memory, chunks grouped
    # into larger processing blocks.
    grouped = tortuosity(volume, axes=("z", "x"), chunks=(3, 4, 5), memory_budget=200_000)
    assert (grouped["solver"], grouped["storage"]) == ("chunked", "memory")
    assert np.prod(grouped["blocks"]) > 3 * 4 * 5
    on_disk = tortuosity(volume, axes=("z", "x"), chunks=(5, 12, 7), memory_budget=1000)
    assert (on_disk["solver"], on_disk["storage"]) == ("chunked", "disk")
    assert on_disk["blocks"] == [5, 12, 7]
    shared = tortuosity(volume, axes=("z",), chunks=(6, 12, 12), scratch=tmp_path)
    assert (shared["solver"], shared["storage"]) == ("chunked", "disk")
    assert list(tmp_path.iterdir()) == []  # its sub-folder is removed, nothing else touched
    for other in (grouped, on_disk, shared):
        assert other["volume_fraction"] == whole["volume_fraction"]
        for name in other["axes"]:
            ours, reference = other["axes"][name], whole["axes"][name]
            assert ours["tortuosity"] == pytest.approx(reference["tortuosity"], rel=1e-5)
            # The same iteration in exact arithmetic: the same count, give or take one.
            assert abs(ours["iterations"] - reference["iterations"]) <= 1
    z = whole["axes"]["z"]
    assert z["flux_in"] == pytest.approx(z["flux_out"], rel=1e-4)


def test_a_phase_that_does_not_percolate_is_found_by_both_solvers():
    # Two slabs across z joined nowhere, and one isolated voxel (in eps, carries no flux).
    volume = np.zeros((10, 8, 8), dtype=np.uint8)
    volume[:4] = 1
    volume[6:] = 1
    volume[5, 2, 2] = 1
    for budget in ("1GiB", 1000):
        result = tortuosity(volume, axes=("z", "y"), chunks=(3, 4, 4), memory_budget=budget)
        assert result["axes"]["z"] == {
            "tortuosity": None,
            "effective_diffusivity": 0.0,
            "percolates": False,
        }
        y = result["axes"]["y"]
        assert y["converged"] and y["tortuosity"] == pytest.approx(513 / 512, rel=1e-6)


def test_operator_is_symmetric():
    diffusivity = np.pad(_porous(6, seed=1).astype(np.float64) + 0.5, 1)
    diag, couplings, _, _ = diffusion_operator(diffusivity, (1.0, 0.5, 2.0), axis=1)
    # Each face conductance is the high coupling of one voxel and the low one of the next.
    for axis, (low, high) in enumerate(couplings):
        below = [slice(None)] * 3
        above = [slice(None)] * 3
        below[axis] = slice(None, -1)
        above[axis] = slice(1, None)
        np.testing.assert_array_equal(high[tuple(below)], low[tuple(above)])
    assert (diag > 0).all()


def test_bad_inputs_are_named(tmp_path):
    volume = np.ones((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="axes="):
        tortuosity(volume, axes=("w",))
    with pytest.raises(ValueError, match="memory_budget="):
        tortuosity(volume, memory_budget="lots")
    with pytest.raises(ValueError, match=r"diffusivities\[1\]"):
        tortuosity(volume, diffusivities={1: -1.0})
    with pytest.raises(ValueError, match="tol="):
        tortuosity(volume, tol=2)
    with pytest.raises(FileNotFoundError, match="scratch folder"):
        tortuosity(volume, scratch=tmp_path / "missing")
    assert parse_memory("1.5 KiB") == 1536
