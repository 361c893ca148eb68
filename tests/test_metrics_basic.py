"""Metric functions on analytic and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from caloforge.errors import ConfigError, DataError
from caloforge.validation.metrics import (
    ClassifierConfig,
    chi2_two_sample,
    fpd,
    frechet_distance,
    kpd,
    layer_correlation,
    mmd_poly_unbiased,
    prdc,
    response_chi2,
    response_per_energy,
    separation_power,
)
from caloforge.validation.metrics.verdict import (
    chi2_verdict,
    distance_verdict,
    overall,
    separation_verdict,
    tail_verdict,
)


def test_chi2_hand_computed():
    # N_r = 10, N_g = 20: bins (4,6) vs (10,10): (20*4-10*10)^2/(200*14) + (20*6-10*10)^2/(200*16)
    chi2, ndf = chi2_two_sample([4, 6, 0], [10, 10, 0])
    assert chi2 == pytest.approx(400 / 2800 + 400 / 3200)
    assert ndf == 1  # two bins with entries, minus one
    energies, response = [1.0] * 4 + [2.0] * 4, [0.9, 1.0, 1.1, 1.0] * 2
    result = response_chi2(energies, response, energies, response)
    assert result.chi2 == 0.0 and len(result.per_energy) == 2


def test_separation_power_hand_computed():
    assert separation_power([1, 2, 3], [2, 4, 6]) == 0.0  # normalised to unit sum
    # p = (0.5, 0.5, 0), q = (0, 0.5, 0.5): 0.5 * (0.25/0.5 + 0 + 0.25/0.5) = 0.5
    assert separation_power([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)
    assert np.isnan(separation_power([0, 0], [1, 1]))
    with pytest.raises(DataError, match="same bins"):
        separation_power([1, 2], [1, 2, 3])


def test_frechet_distance_of_gaussians_analytic():
    s1 = np.array([[2.0, 0.3], [0.3, 1.0]])
    s2 = np.array([[1.0, -0.2], [-0.2, 0.5]])
    expected = 1.0**2 + 2.0**2 + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance([0, 0], s1, [1, 2], s2) == pytest.approx(expected)


def test_fpd_of_shifted_gaussians_matches_the_analytic_value():
    rng = np.random.default_rng(0)
    d, shift = 4, 0.3
    ref = rng.normal(size=(100_000, d))
    gen = rng.normal(size=(100_000, d)) * np.array([1.0, 1.0, 1.0, 1.5]) + shift
    # |mu|^2 + (1 - 1.5)^2 for the scaled coordinate
    analytic = d * shift**2 + 0.25
    result = fpd(ref, gen, seed=1, normalise=False)
    # the tolerance adds the finite-sample noise of the 100k samples themselves (~0.005) to the fit error
    assert result.value == pytest.approx(analytic, abs=3 * result.error + 0.015)
    same = fpd(ref, rng.normal(size=(100_000, d)), seed=1, normalise=False)
    # JetNet's estimator keeps the finite-sample bias (about 1/N): small here, and never negative
    assert 0.0 <= same.value < 3 * same.error + 1e-3


def test_kpd_zero_for_same_distribution_positive_for_shift():
    rng = np.random.default_rng(1)
    ref, same, shifted = rng.normal(size=(3, 8_000, 5))
    null = kpd(ref, same, seed=0, batch_size=4_000)
    assert abs(null.value) < 3 * null.error + 1e-6
    assert kpd(ref, shifted + 0.5, seed=0, batch_size=4_000).value > 100 * null.error
    x, y = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) + 0.2
    assert mmd_poly_unbiased(x, y, method="moments") == pytest.approx(mmd_poly_unbiased(x, y, method="matrix"))


def test_prdc_near_one_for_same_and_low_for_disjoint():
    rng = np.random.default_rng(2)
    ref, same = rng.normal(size=(2, 2_000, 10))
    r = prdc(ref, same, k=5, seed=0)
    assert r.precision > 0.85 and r.recall > 0.85 and r.coverage > 0.9 and 0.8 < r.density < 1.2
    far = prdc(ref, same + 10.0, k=5, seed=0)
    assert far.precision == 0.0 and far.coverage == 0.0


def test_response_and_correlation():
    r = response_per_energy([10.0, 10.0, 10.0, 20.0, 20.0], [0.8, 1.0, 1.2, 1.0, 1.0])
    first = r.per_energy[0]
    assert first.response == pytest.approx(1.0) and first.resolution == pytest.approx(0.2)
    assert first.response_error == pytest.approx(0.2 / np.sqrt(3))
    c = layer_correlation(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]))
    assert c == pytest.approx(np.array([[1.0, -1.0], [-1.0, 1.0]]))


def test_verdict_rules():
    assert chi2_verdict(1.0, 100).verdict == "pass"
    assert separation_verdict(0.05, 0.001).verdict == "warn"
    assert separation_verdict(0.05, 0.03).verdict == "pass"  # noisy reference: the bound follows the split
    assert distance_verdict("fpd", "FPD", 0.1, 0.05, 0.0, 0.05).verdict == "pass"
    assert distance_verdict("fpd", "FPD", 10.0, 0.05, 0.0, 0.05).verdict == "fail"
    assert overall([chi2_verdict(1.0, 100), chi2_verdict(9.0, 100)]) == "fail"


def test_classifier_config_is_validated():
    with pytest.raises(ConfigError, match="expected lr > 0"):
        ClassifierConfig(lr=0.0)
    assert ClassifierConfig().hidden == (2048, 2048, 2048) and ClassifierConfig().repeats == 10


def test_chi2_groups_carry_their_own_energy_for_uneven_ladders():
    # 1, 2 and 10 GeV: the 2 GeV bin's geometric centre is 2.5 GeV, but the label must be 2 GeV
    from caloforge.validation.metrics.chi2 import response_chi2

    rng = np.random.default_rng(0)
    energies = np.repeat([1000.0, 2000.0, 10000.0], 200)
    result = response_chi2(energies, rng.normal(1, 0.1, 600), energies, rng.normal(1, 0.1, 600))
    assert [e.energy for e in result.per_energy] == [1000.0, 2000.0, 10000.0]
    assert [e.n_reference for e in result.per_energy] == [200, 200, 200]


def test_tail_verdict_with_one_reference_shower_per_energy():
    # 40 distinct energies, one shower each (a tiny discrete sample): the expected fraction beyond the reference's
    # range is capped at 1 (it was 1.01 and the binomial error's square root raised a math domain error)
    rng = np.random.default_rng(0)
    energies = np.geomspace(1e3, 1e6, 40)
    row = tail_verdict(response_chi2(energies, rng.normal(1.0, 0.02, 40), energies, rng.normal(1.0, 0.02, 40)))
    assert row.verdict == "pass" and 0.0 <= row.value <= 1.0
