"""ShowerSet: validation on construction, slicing, concatenation, energy selection."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.errors import DataError, GeometryMismatchError
from synthetic import make_showers


def test_construction_normalises_shapes_and_dtypes(tiny_geometry: Geometry) -> None:
    s = ShowerSet(np.array([[1000.0], [2000.0]]), np.ones((2, 8)), tiny_geometry, {"theta": np.array([[1.0], [2.0]])})
    assert s.energies.shape == (2,) and s.energies.dtype == np.float64
    assert s.showers.dtype == np.float32
    assert s.conditions["theta"].shape == (2,)
    np.testing.assert_allclose(s.response, [8 / 1000, 8 / 2000])
    assert "n=2" in repr(s)


@pytest.mark.parametrize(
    ("energies", "showers", "match"),
    [
        (np.ones(3), np.ones((2, 8)), "as many showers as incident energies but got 2 showers and 3"),
        (np.ones((2, 2)), np.ones((2, 8)), r"shape \(N,\) or \(N, 1\)"),
        (np.ones(2), np.ones(8), r"shape \(N, V\)"),
        (np.array([1.0, np.nan]), np.ones((2, 8)), "1 of the incident energies .* NaN or inf .*index \\(1,\\)"),
        (np.array([1.0, 0.0]), np.ones((2, 8)), "positive incident energies .*first at shower 1: 0"),
        (np.array([1.0, -5.0]), np.ones((2, 8)), "positive incident energies"),
    ],
)
def test_bad_inputs(tiny_geometry: Geometry, energies: np.ndarray, showers: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ShowerSet(energies, showers, tiny_geometry)


def test_nan_inf_and_negative_voxels_are_located(tiny_geometry: Geometry) -> None:
    showers = np.ones((3, 8))
    showers[1, 4] = np.inf
    showers[2, 0] = np.nan
    with pytest.raises(DataError, match=r"2 of the voxel energies .*first at index \(1, 4\)"):
        ShowerSet(np.ones(3), showers, tiny_geometry)
    showers = np.ones((3, 8))
    showers[2, 6] = -0.5
    with pytest.raises(DataError, match="1 are negative .*shower 2, voxel 6: -0.5 MeV"):
        ShowerSet(np.ones(3), showers, tiny_geometry)
    for bad in (np.inf, -np.inf, np.nan):  # each alone, so that no shortcut of the check lets one through
        showers = np.ones((3, 8), dtype=np.float32)
        showers[2, 5] = bad
        with pytest.raises(DataError, match=r"1 of the voxel energies .*first at index \(2, 5\)"):
            ShowerSet(np.ones(3), showers, tiny_geometry)


def test_voxel_count_mismatch_names_matching_presets(tiny_geometry: Geometry) -> None:
    with pytest.raises(GeometryMismatchError, match="expected 8 voxels .* got 368.*ds1-photons"):
        ShowerSet(np.ones(1), np.ones((1, 368)), tiny_geometry)


def test_condition_length_checked(tiny_geometry: Geometry) -> None:
    with pytest.raises(DataError, match="condition 'theta'"):
        ShowerSet(np.ones(2), np.ones((2, 8)), tiny_geometry, {"theta": np.ones(3)})


def test_slicing_selection_concatenation(tiny_showers: ShowerSet) -> None:
    s = tiny_showers
    assert len(s[:10]) == 10
    assert len(s[np.array([3])]) == 1 and len(s[np.int64(3)]) == 1
    at_1gev = s.select_energy(1000.0)
    assert len(at_1gev) == int((s.energies == 1000.0).sum()) > 0
    assert np.all(at_1gev.energies == 1000.0)
    assert len(s.select_energy(500.0, 2000.0)) == len(at_1gev)
    joined = ShowerSet.concatenate([s[:20], s[20:]])
    np.testing.assert_array_equal(joined.showers, s.showers)
    np.testing.assert_array_equal(s.distinct_energies(), [1000.0, 4000.0])


def test_concatenate_refuses_mixed_geometries(tiny_showers: ShowerSet) -> None:
    other = make_showers(Geometry((Layer(0, (0.0, 1.0), 8),)), 5, seed=2)
    with pytest.raises(GeometryMismatchError):
        ShowerSet.concatenate([tiny_showers, other])
    with pytest.raises(DataError):
        ShowerSet.concatenate([])


def test_energy_bins_discrete_and_continuous() -> None:
    discrete = np.repeat(2.0 ** np.arange(8, 23), 3)
    edges = energy_bins(discrete)
    assert edges.size == 16
    # each distinct energy sits alone in its bin
    assert np.all(np.histogram(discrete, edges)[0] == 3)
    continuous = np.exp(np.random.default_rng(0).uniform(np.log(1e3), np.log(1e6), 1000))
    edges = energy_bins(continuous, n_bins=10)
    assert edges.size == 11
    assert np.histogram(continuous, edges)[0].sum() == 1000  # the maximum is inside the last bin


@pytest.mark.parametrize(("values", "match"), [
    (np.array([1.0 + 1j, 2.0]), "complex128.*imaginary part"),
    (np.array(["a", "b"]), "text"),
    (np.array([1.0, np.inf]), "condition 'theta'.*NaN or inf"),
])
def test_bad_conditions_are_refused(tiny_geometry: Geometry, values: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ShowerSet(np.ones(2) * 1000, np.ones((2, 8)), tiny_geometry, {"theta": values})


def test_energies_beyond_100_tev_or_below_1_kev_are_refused(tiny_geometry: Geometry) -> None:
    assert len(ShowerSet([1e-3, 1e8], np.ones((2, 8)), tiny_geometry)) == 2
    for energy in (9e-4, 1.1e8):
        with pytest.raises(DataError, match="1 keV.*100 TeV"):
            ShowerSet([energy], np.ones((1, 8)), tiny_geometry)
