"""High-level features and readout thresholds: hand-computed tiny cases."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.validation.features import (
    apply_threshold,
    compute_features,
    high_level_inputs,
    low_level_inputs,
    readout_threshold,
)


@pytest.fixture
def two_layers() -> Geometry:
    # layer 0: r edges 0,1,2,4 (centres 0.5, 1.5, 3) x 2 alpha bins (centres -pi/2, +pi/2); layer 5: r centres 1, 3.5
    return Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="tiny")


def test_thresholds_of_the_presets(two_layers):
    assert readout_threshold(Geometry.preset("ds1-photons")) == 1.0
    assert readout_threshold(Geometry.preset("ds1-pions")) == 1.0
    assert readout_threshold(Geometry.preset("ds2")) == pytest.approx(15.15e-3, rel=1e-3)
    assert readout_threshold(Geometry.preset("ds3")) == pytest.approx(0.5e-3 / 0.033)
    assert readout_threshold(two_layers) == 0.0
    # presets are recognised by their binning, not their name
    renamed = Geometry(Geometry.preset("ds1-pions").layers, name="my-pions")
    assert renamed.dataset == "ds1-pions" and readout_threshold(renamed) == 1.0
    assert two_layers.dataset is None


def test_apply_threshold_zeroes_only_voxels_below(two_layers):
    voxels = np.array([[0.5, 1.0, 2.0, 0.0, 0.99, 3.0, 0.2, 1.5]], np.float32)
    s = ShowerSet(np.array([10.0]), voxels, two_layers)
    out = apply_threshold(s, 1.0).showers[0]
    assert out.tolist() == [0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 0.0, 1.5]
    assert apply_threshold(s, 0.0) is s
    with pytest.raises(ConfigError, match="expected a finite readout threshold"):
        apply_threshold(s, -1.0)


def test_features_by_hand(two_layers):
    # layer 0 (alpha=-pi/2 row, then alpha=+pi/2 row): E=2 at (r=0.5, a=-pi/2), E=1 at (r=3, a=+pi/2)
    # layer 5: E=4 at r=1, nothing at r=3.5
    voxels = np.array([[2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0, 0.0]], np.float32)
    f = compute_features(ShowerSet(np.array([10.0]), voxels, two_layers), threshold=0.0)
    assert f.e_total[0] == 7.0 and f.response[0] == 0.7
    assert f.e_layer[0].tolist() == [3.0, 4.0]
    # r: layer 0 mean (2*0.5 + 1*3)/3 = 4/3; <r^2> = (2*0.25 + 9)/3 = 9.5/3
    assert f.centre_r[0, 0] == pytest.approx(4 / 3)
    assert f.width_r[0, 0] == pytest.approx(np.sqrt(9.5 / 3 - 16 / 9))
    assert f.centre_r[0, 1] == pytest.approx(1.0) and f.width_r[0, 1] == pytest.approx(0.0, abs=1e-7)
    # phi = r sin(alpha): -0.5 (E=2) and +3 (E=1): mean 2/3, <phi^2> = (0.5 + 9)/3
    assert f.centre_phi[0, 0] == pytest.approx(2 / 3)
    assert f.width_phi[0, 0] == pytest.approx(np.sqrt(9.5 / 3 - 4 / 9))
    # eta = r cos(+-pi/2) = 0 up to rounding
    assert f.centre_eta[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert f.width_eta[0, 0] == pytest.approx(0.0, abs=1e-6)
    # sparsity = 1 - fraction of voxels above threshold
    assert f.sparsity[0].tolist() == [1 - 2 / 6, 0.5]
    assert f.centre_eta.shape == (1, 1) and f.centre_r.shape == (1, 2)  # only layer 0 has alpha bins


def test_empty_layer_gives_zero_moments_and_threshold_is_applied(two_layers):
    voxels = np.array([[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 2.0]], np.float32)
    f = compute_features(ShowerSet(np.array([10.0]), voxels, two_layers), threshold=1.0)
    assert f.e_layer[0].tolist() == [0.0, 6.0]
    assert f.centre_r[0, 0] == 0.0 and f.width_r[0, 0] == 0.0 and f.centre_phi[0, 0] == 0.0
    assert f.sparsity[0, 0] == 1.0
    assert f.threshold == 1.0


def test_vectorised_features_match_a_per_shower_loop():
    g = Geometry.preset("ds1-photons")
    rng = np.random.default_rng(3)
    voxels = (rng.exponential(5.0, (20, g.n_voxels)) * (rng.random((20, g.n_voxels)) < 0.3)).astype(np.float32)
    s = ShowerSet(rng.uniform(1e3, 1e4, 20), voxels, g)
    f = compute_features(s)
    data = np.where(voxels < 1.0, 0.0, voxels.astype(np.float64))
    for n in (0, 7):
        for i in range(g.n_layers):
            e = data[n, g.layer_slice(i)]
            r = g.voxel_r[g.layer_slice(i)]
            mean = (e * r).sum() / (e.sum() + 1e-16)
            assert f.centre_r[n, i] == pytest.approx(mean)
            assert f.width_r[n, i] == pytest.approx(np.sqrt(max((e * r * r).sum() / (e.sum() + 1e-16) - mean**2, 0)))
    columns = f.columns()
    assert "e_layer_12" in columns and "width_eta_1" in columns and "width_eta_0" not in columns


def test_classifier_inputs(two_layers):
    voxels = np.array([[2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0, 0.0]], np.float32)
    s = ShowerSet(np.array([100.0]), voxels, two_layers)
    low = low_level_inputs(s, threshold=0.0)
    assert low.shape == (1, 9) and low[0, 0] == pytest.approx(2.0) and low[0, 1] == pytest.approx(0.02)
    features = compute_features(s, 0.0)
    # the official columns: log E_inc, 2 E_layer, 4 eta/phi moments (1 alpha layer), log E_tot, 2 sparsities,
    # 2 centres in r, 2 widths in r
    high = high_level_inputs(features)
    assert high.shape == (1, 1 + 2 + 4 + 1 + 2 + 2 + 2)
    assert high[0, 1] == pytest.approx(np.log10(3.0 + 1e-8))
    assert high[0, 7] == pytest.approx(np.log10(7.0 + 1e-8))
    np.testing.assert_allclose(high[0, 8:10], [1 - 2 / 6, 1 - 1 / 2])  # sparsities: 2 of 6, 1 of 2 voxels hit
    np.testing.assert_allclose(high[0, 10:12], [(2 * 0.5 + 1 * 3.0) / 3 / 100, 1.0 / 100])  # centres in r / 100
    assert high[0, 13] == 0.0  # one voxel: no width
