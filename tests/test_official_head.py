"""caloforge follows the official CaloChallenge evaluate.py at the head named in docs/validation.md.

Hand-made showers whose features can be written down: the high-level classifier / FPD / KPD columns of
every dataset in the official order and scaling, the readout threshold (the official ``min_energy``)
applied to both samples, the E_layer and voxel histograms starting at it, and metrics.json saying what
every metric computed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.validation.definitions import OFFICIAL_CODE, metric_definitions
from caloforge.validation.evaluate import compute_evaluation
from caloforge.validation.features import compute_features, high_level_columns, high_level_inputs
from caloforge.validation.metrics.classifier import ClassifierConfig, classifier_test
from caloforge.validation.metrics.separation import feature_histograms, voxel_histogram


def _one_voxel_per_layer(g: Geometry, sub_threshold: float) -> tuple[ShowerSet, np.ndarray]:
    """One shower: 2 (i + 1) MeV in the first voxel of layer i, ``sub_threshold`` MeV in its last voxel."""
    voxels = np.zeros((1, g.n_voxels), np.float32)
    energies = 2.0 * (np.arange(g.n_layers) + 1.0)
    for i in range(g.n_layers):
        cut = g.layer_slice(i)
        voxels[0, cut.start] = energies[i]
        voxels[0, cut.stop - 1] = sub_threshold
    return ShowerSet(np.array([65536.0]), voxels, g), energies


# dataset: (layers L, layers with alpha bins A, columns 2 + 4 L + 4 A), from the official binning XMLs
SHAPES = {"ds1-photons": (5, 2, 30), "ds1-pions": (7, 4, 46), "ds2": (45, 45, 362), "ds3": (45, 45, 362)}


@pytest.mark.parametrize("dataset", list(SHAPES))
def test_high_level_columns_follow_prepare_high_data_for_classifier(dataset):
    g = Geometry.preset(dataset)
    n_layers, n_alpha, n_columns = SHAPES[dataset]
    assert (g.n_layers, len(g.alpha_layers)) == (n_layers, n_alpha)
    below = 0.5 if dataset.startswith("ds1") else 0.01  # under 1 MeV, or under 0.5 keV / 0.033
    shower, e_layer = _one_voxel_per_layer(g, below)
    x = high_level_inputs(compute_features(shower)).astype(np.float64)[0]
    names = high_level_columns(g)
    assert x.shape == (n_columns,) and len(names) == n_columns
    L, A = n_layers, n_alpha
    first = [g.layer_slice(i).start for i in range(L)]
    alpha_first = [first[i] for i in g.alpha_layers]
    expected = np.concatenate([
        [np.log10(65536.0)],
        np.log10(e_layer + 1e-8),  # the sub-threshold voxel is gone
        g.voxel_eta[alpha_first] / 100, g.voxel_phi[alpha_first] / 100,  # one voxel: the centre is its position
        np.zeros(A), np.zeros(A),  # ... and the widths 0
        [np.log10(e_layer.sum() + 1e-8)],
        [1.0 - 1.0 / g.layers[i].n_voxels for i in range(L)],  # one voxel of n hit
        g.voxel_r[first] / 100, np.zeros(L),
    ])
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-7)
    # the blocks in the official order: E_inc, E_layer, eta/phi centres and widths, E_tot, sparsity, r
    assert names[0] == "log10(E_inc)" and names[L + 4 * A + 1] == "log10(E_tot + 1e-8)"
    assert names[1 + L] == f"centre_eta_{g.layer_ids[g.alpha_layers[0]]} / 100"
    assert names[2 + L + 4 * A] == f"sparsity_{g.layer_ids[0]}" and names[-1] == f"width_r_{g.layer_ids[-1]} / 100"


def test_ds1_photon_columns_by_hand():
    g = Geometry.preset("ds1-photons")
    shower, _ = _one_voxel_per_layer(g, 0.5)
    x = high_level_inputs(compute_features(shower))[0]
    # layers 0, 1, 2, 3, 12 hold 2, 4, 6, 8, 10 MeV; E_tot = 30 MeV; layers of 8, 160, 190, 5, 5 voxels
    np.testing.assert_allclose(x[:6], np.log10([65536.0, 2.0, 4.0, 6.0, 8.0, 10.0]), rtol=1e-6)
    assert x[14] == pytest.approx(np.log10(30.0))  # after 1 + 5 + 4 x 2 columns
    np.testing.assert_allclose(x[15:20], [7 / 8, 159 / 160, 189 / 190, 4 / 5, 4 / 5], rtol=1e-6)
    # first radial bins: layer 0 [0, 5], layer 1 [0, 2], layer 2 [0, 2], layer 3 [0, 50], layer 12 [0, 100] mm
    np.testing.assert_allclose(x[20:25], np.array([2.5, 1.0, 1.0, 25.0, 50.0]) / 100, rtol=1e-6)
    np.testing.assert_array_equal(x[25:30], 0.0)  # widths in r of one voxel


def _pair(g: Geometry, n: int = 60) -> tuple[ShowerSet, ShowerSet]:
    rng = np.random.default_rng(5)
    energies = rng.choice([1024.0, 4096.0], n)
    clean = rng.gamma(1.0, 30.0, (n, g.n_voxels)).astype(np.float32) * (rng.random((n, g.n_voxels)) < 0.3)
    noisy = clean + ((clean == 0) * rng.uniform(0.0, 0.99, clean.shape)).astype(np.float32)  # all below 1 MeV
    return ShowerSet(energies, clean, g), ShowerSet(energies, noisy, g)


@pytest.fixture(scope="module")
def noisy_against_clean():
    """A reference with sub-threshold noise in every empty voxel against the same showers without it."""
    clean, noisy = _pair(Geometry.preset("ds1-photons"))
    return compute_evaluation(noisy, clean, mode="fast", seed=0, with_prdc=False)


def test_readout_threshold_applied_to_both_samples(noisy_against_clean):
    r = noisy_against_clean
    assert r.threshold == 1.0
    # below 1 MeV nothing is left: every histogram of the two samples is identical, and so are the inputs
    assert max(h.separation for h in r.histograms) == 0.0
    assert r.chi2.chi2 == 0.0
    np.testing.assert_array_equal(r.mean_reference, r.mean_generated)
    np.testing.assert_array_equal(r.correlation_reference, r.correlation_generated)
    clean, noisy = _pair(Geometry.preset("ds1-photons"))
    x_noisy, x_clean = high_level_inputs(compute_features(noisy)), high_level_inputs(compute_features(clean))
    np.testing.assert_array_equal(x_noisy, x_clean)


def test_layer_and_voxel_histograms_start_at_min_energy():
    for dataset, min_energy in (("ds1-photons", 1.0), ("ds1-pions", 1.0), ("ds2", 0.5e-3 / 0.033)):
        g = Geometry.preset(dataset)
        clean, _ = _pair(g, 30)
        f = compute_features(clean)
        hists = {h.name: h for h in feature_histograms(f, f)}
        layer = hists[f"e_layer_{g.layer_ids[1]}"]
        assert layer.binning == "calochallenge" and len(layer.edges) == 40
        assert layer.edges[0] == pytest.approx(min_energy) and layer.edges[-1] == pytest.approx(f.e_layer[:, 1].max())
        voxel = voxel_histogram(clean.showers, clean.showers, min_energy, geometry=g)
        assert voxel.binning == "calochallenge" and len(voxel.edges) == 50
        assert voxel.edges[0] == pytest.approx(min_energy)
        assert voxel.edges[-1] == pytest.approx(float(clean.showers.max()))


def test_metrics_json_holds_every_definition(noisy_against_clean):
    g = Geometry.preset("ds1-photons")
    metrics = json.loads(json.dumps(noisy_against_clean.to_dict()))  # what metrics.json holds
    d = metrics["definitions"]
    assert d["official_code"]["commit"] == OFFICIAL_CODE["commit"]
    assert d["fpd"]["feature_columns"] == list(high_level_columns(g)) and d["fpd"]["n_features"] == 30
    assert d["fpd"]["min_samples"] == 10_000 and d["fpd"]["seed"] == 42
    assert d["kpd"]["batch_size"] == 10_000 and d["kpd"]["n_batches"] == 10 and "^4" in d["kpd"]["formula"]
    high = d["classifier"]["high"]
    assert high["inputs"] == list(high_level_columns(g)) and high["run"] is False
    assert high["learning_rate"] == 2e-4 and high["batch_size"] == 1000
    for key in ("architecture", "split", "calibration", "model_selection", "input_preprocessing"):
        assert isinstance(high[key], str) and high[key]
    assert "2048 -> 2048 -> 2048 -> 1" in high["architecture"] and "60/20/20" in high["split"]
    assert "isotonic" in high["calibration"]
    assert d["classifier"]["low"]["n_inputs"] == g.n_voxels + 1
    assert "(p_i - q_i)^2 / (p_i + q_i)" in d["separation_power"]["formula"]
    assert "log10(voxel energy" in d["prdc"]["feature_space"] and d["prdc"]["k"] == 5
    for key in ("response", "resolution", "layer_correlation"):
        assert "definition" in d[key] and d[key]["definition"]
    assert metrics["fpd"]["definition"]["min_samples"] == 10_000


def test_classifier_definition_records_the_settings_used():
    g = Geometry.preset("ds1-photons")
    rng = np.random.default_rng(0)
    config = ClassifierConfig(hidden=(16, 8), lr=1e-3, batch_size=50, max_epochs=1, repeats=1, precision="fp32")
    result = classifier_test(rng.normal(size=(40, 30)), rng.normal(size=(40, 30)), config, seed=0)
    d = metric_definitions(g, 1.0, {"high": result})["classifier"]
    assert d["high"]["run"] is True and d["low"]["run"] is False
    assert "input -> 16 -> 8 -> 1" in d["high"]["architecture"]
    assert (d["high"]["learning_rate"], d["high"]["batch_size"], d["high"]["max_epochs"]) == (1e-3, 50, 1)
    assert d["low"]["learning_rate"] == 2e-4  # not run: the recipe's settings
