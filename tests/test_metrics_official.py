"""Numbers comparable with the CaloChallenge paper: FPD/KPD as JetNet computes them, chi2 "UU", official binnings.

The written FPD/KPD values below were computed once with ``_reference_fpd`` / ``_reference_kpd``, an
independent, deliberately plain reimplementation of JetNet's published estimators (Kansal et al.,
arXiv:2211.10295; ``jetnet.evaluation.fpd``/``kpd`` documentation): explicit loops, subsets drawn
with replacement, ``scipy.linalg.sqrtm``, ``scipy.optimize.curve_fit`` with bounds, and direct
kernel matrices for the MMD.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from caloforge.data.datasets import DATASETS
from caloforge.data.geometry import Geometry
from caloforge.validation.features import compute_features, high_level_inputs
from caloforge.validation.metrics import (
    chi2_two_sample,
    feature_histograms,
    fpd,
    fpd_debiased,
    kpd,
    mmd_poly_unbiased,
    response_chi2,
    response_edges_per_energy,
    voxel_histogram,
)
from caloforge.validation.metrics.chi2 import response_bins
from caloforge.validation.metrics.distances import jetnet_line_fit, nonnegative_line_fit, subset_sizes
from synthetic import make_showers

# ----------------------------------------------------------------------------- the reference


def _scaled(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.max(np.abs(real), axis=0)
    scale[scale == 0] = 1.0
    return real / scale, fake / scale


def _reference_fpd(real, fake, min_samples=20_000, max_samples=50_000, n_batches=20, n_points=10, seed=42):
    real, fake = _scaled(np.array(real, np.float64), np.array(fake, np.float64))
    sizes = [int(1.0 / v) for v in np.linspace(1.0 / min_samples, 1.0 / max_samples, n_points)]
    rng = np.random.default_rng(seed)
    averages = []
    for size in sizes:
        total = 0.0
        for _ in range(n_batches):
            a = real[rng.choice(len(real), size=size)]
            b = fake[rng.choice(len(fake), size=size)]
            cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
            root = scipy.linalg.sqrtm(cov_a.dot(cov_b))
            if not np.isfinite(root).all():
                eps = 1e-6 * np.eye(len(cov_a))
                root = scipy.linalg.sqrtm((cov_a + eps).dot(cov_b + eps))
            d = a.mean(axis=0) - b.mean(axis=0)
            total += d.dot(d) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(np.real(root))
        averages.append(total / n_batches)
    params, cov = scipy.optimize.curve_fit(lambda t, c0, c1: c0 + c1 * t, 1.0 / np.array(sizes, np.float64),
                                           averages, bounds=([0.0, 0.0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(cov[0, 0]))


def _reference_mmd(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    kxx, kyy, kxy = (a @ a.T / d + 1.0) ** 4, (b @ b.T / d + 1.0) ** 4, (a @ b.T / d + 1.0) ** 4
    m, n = len(a), len(b)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2.0 * kxy.mean())


def _reference_kpd(real, fake, n_batches=10, batch_size=5_000, seed=42):
    real, fake = _scaled(np.array(real, np.float64), np.array(fake, np.float64))
    values = []
    for i in range(n_batches):
        rng = np.random.default_rng(seed + i * 1000)
        a = real[rng.choice(len(real), size=batch_size)]
        b = fake[rng.choice(len(fake), size=batch_size)]
        values.append(_reference_mmd(a, b))
    low, high = np.percentile(values, [16.275, 83.725])
    return float(np.median(values)), float((high - low) / 2.0)


@pytest.fixture(scope="module")
def gaussians() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20241021)
    width, centre = np.array([1.0, 2.0, 0.5, 1.0]), np.array([0.0, 1.0, 3.0, -1.0])
    return {
        "ref": rng.normal(size=(3000, 4)) * width + centre,
        "same": rng.normal(size=(3000, 4)) * width + centre,
        "shifted": rng.normal(size=(3000, 4)) * width * np.array([1.0, 1.2, 1.0, 1.0]) + centre
        + np.array([0.1, 0.0, 0.0, 0.0]),
    }


# written once from the reference above (JetNet defaults; 3000 x 4 Gaussians, so subsets repeat rows)
WRITTEN_FPD = {"same": (0.00045653043150707147, 2.7970706315478596e-05),
               "shifted": (0.002226821620842699, 3.503585028248159e-05)}
WRITTEN_KPD = {"same": (0.0001736228611950441, 0.0002570928351562476),
               "shifted": (0.0008721105773668025, 0.00024259834717365605)}
# small settings: fpd(min 500, max 2000, 5 points, 8 draws, seed 7); kpd(batches of 1000, seed 3)
WRITTEN_FPD_SMALL = {"same": (0.00035431575310114775, 0.00018164929055428385),
                     "shifted": (0.0019479888098120931, 0.0003244282145273644)}
WRITTEN_KPD_SMALL = {"same": (0.0006376293913958886, 0.0007774057161692558),
                     "shifted": (0.0004615124925309022, 0.0004667270345030751)}


def _quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the < 50k showers note
        return function(*args, **kwargs)


@pytest.mark.parametrize("case", ["same", "shifted"])
def test_fpd_kpd_equal_the_written_jetnet_values(gaussians, case):
    ref, gen = gaussians["ref"], gaussians[case]
    f, k = _quietly(fpd, ref, gen), _quietly(kpd, ref, gen)
    (fv, fe), (kv, ke) = WRITTEN_FPD[case], WRITTEN_KPD[case]
    # the same draws as JetNet for the same seed: equal to rounding, far inside the statistical error
    assert f.value == pytest.approx(fv, rel=1e-6) and f.error == pytest.approx(fe, rel=1e-6)
    assert abs(f.value - fv) < 0.01 * fe
    assert k.value == pytest.approx(kv, rel=1e-6) and k.error == pytest.approx(ke, rel=1e-6)
    assert abs(k.value - kv) < 0.01 * ke
    assert (f.estimator, k.estimator, f.metric, k.metric) == ("jetnet", "jetnet", "fpd", "kpd")


@pytest.mark.parametrize("case", ["same", "shifted"])
def test_the_reference_reproduces_the_written_values_and_ours(gaussians, case):
    ref, gen = gaussians["ref"], gaussians[case]
    expected_fpd = _reference_fpd(ref, gen, min_samples=500, max_samples=2000, n_batches=8, n_points=5, seed=7)
    expected_kpd = _reference_kpd(ref, gen, batch_size=1000, seed=3)
    assert expected_fpd == pytest.approx(WRITTEN_FPD_SMALL[case], rel=1e-6)
    assert expected_kpd == pytest.approx(WRITTEN_KPD_SMALL[case], rel=1e-6)
    ours_fpd = _quietly(fpd, ref, gen, seed=7, min_samples=500, max_samples=2000, n_points=5, n_draws=8)
    ours_kpd = _quietly(kpd, ref, gen, seed=3, batch_size=1000)
    assert (ours_fpd.value, ours_fpd.error) == pytest.approx(expected_fpd, rel=1e-6)
    assert (ours_kpd.value, ours_kpd.error) == pytest.approx(expected_kpd, rel=1e-6)


def test_fpd_kpd_analytic_cases():
    zeros, twos = np.zeros((6000, 3)), np.full((6000, 3), 2.0)
    # covariances vanish: FPD = |mu_r - mu_g|^2 = 3 * 2^2 (the reference's max |x| is 0: no scaling)
    assert _quietly(fpd, zeros, twos).value == pytest.approx(12.0, rel=1e-6)
    # k(0, 0) = 1, k(2, 2) = (4 + 1)^4 = 625, k(0, 2) = 1: MMD^2 = 1 + 625 - 2
    result = _quietly(kpd, zeros, twos)
    assert result.value == pytest.approx(624.0) and result.error == pytest.approx(0.0, abs=1e-9)
    assert _quietly(kpd, zeros, zeros).value == pytest.approx(0.0, abs=1e-12)


def test_jetnet_fpd_is_non_negative_and_the_debiased_one_is_not_bounded(gaussians):
    ref, same = gaussians["ref"], gaussians["same"]
    jetnet = _quietly(fpd, ref, same, min_samples=500, max_samples=2000)
    assert jetnet.value >= 0.0
    debiased = _quietly(fpd_debiased, ref, same, min_samples=500, max_samples=1500)
    assert debiased.estimator == "debiased" and abs(debiased.value) < 3 * debiased.error + 1e-4
    assert debiased.value < jetnet.value  # the finite-sample bias JetNet keeps


def test_subset_sizes_are_jetnets():
    # 1/N evenly spaced between 1/20000 and 1/50000, truncated (1/(1/50000) rounds to 49999.99...)
    assert subset_sizes(20_000, 50_000, 10).tolist() == [
        20000, 21428, 23076, 24999, 27272, 30000, 33333, 37499, 42857, 49999]


def test_jetnet_fit_is_curve_fit_and_the_exact_fit_is_the_optimum():
    x = 1.0 / subset_sizes(20_000, 50_000, 10)
    rng = np.random.default_rng(0)
    y = 4e-4 + 3.0 * x + rng.normal(0.0, 2e-5, size=10)
    a, err = jetnet_line_fit(x, y)
    params, cov = scipy.optimize.curve_fit(lambda t, c0, c1: c0 + c1 * t, x, y, bounds=([0, 0], [np.inf, np.inf]))
    assert (a, err) == pytest.approx((params[0], np.sqrt(cov[0, 0])), rel=1e-9)
    # the exact optimum agrees with a tightly converged curve_fit, interior and on each bound
    for yy in (y, -3.0 * x + 5e-4, 4e-4 + 3.0 * x - 1e-3):
        exact = nonnegative_line_fit(x, yy)
        tight, tcov = scipy.optimize.curve_fit(lambda t, c0, c1: c0 + c1 * t, x, yy, x_scale=[1e-3, 10.0],
                                               bounds=([0, 0], [np.inf, np.inf]), ftol=1e-15, xtol=1e-15, gtol=1e-15)
        assert exact[0] == pytest.approx(tight[0], rel=1e-6, abs=1e-12)
        assert exact[1] == pytest.approx(np.sqrt(tcov[0, 0]), rel=1e-4)
    assert a > nonnegative_line_fit(x, y)[0]  # JetNet's fit stops early: its intercept comes out larger


def test_definitions_are_json_ready(gaussians):
    f = _quietly(fpd, gaussians["ref"], gaussians["same"], min_samples=500, max_samples=2000)
    d = f.definition
    assert d["metric"] == "fpd" and d["estimator"] == "jetnet" and d["min_samples"] == 500
    assert d["sampling"] == "with replacement" and d["n_reference"] == 3000
    k = _quietly(kpd, gaussians["ref"], gaussians["same"], batch_size=500)
    assert k.definition["batch_size"] == 500 and "16.275" in str(k.definition["error"])
    exact = _quietly(fpd, gaussians["ref"], gaussians["same"], min_samples=500, max_samples=2000, fit="exact")
    assert exact.estimator == "jetnet-exact-fit"


def test_small_samples_warn():
    x = np.random.default_rng(1).normal(size=(300, 2))
    with pytest.warns(UserWarning, match="fewer than the 50000"):
        fpd(x, x + 0.1, min_samples=100, max_samples=50_000, n_points=3, n_draws=2)
    with pytest.warns(UserWarning, match="fewer than the 5000"):
        kpd(x, x, n_batches=2)


def test_moment_kpd_equals_the_direct_kernel_sum():
    rng = np.random.default_rng(5)
    for d in (3, 14, 24):
        x, y = rng.normal(size=(400, d)), rng.normal(size=(350, d)) * 1.1 + 0.05
        direct = _reference_mmd(x, y)
        assert mmd_poly_unbiased(x, y, method="moments") == pytest.approx(direct, rel=1e-9, abs=1e-12)
        assert mmd_poly_unbiased(x, y, method="matrix") == pytest.approx(direct, rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- chi2 "UU"


def _tiny_chi2_samples() -> tuple[np.ndarray, np.ndarray]:
    # reference: 0.5 and 99.5 percentiles are 0 and 1; generated: 100 fewer at 0.55 and 100 at 2.0,
    # so the union of the ranges is [0, 2] -> bins k/15: 0.25, 0.55, 0.75, 1.0, 2.0 in bins 3, 8, 11, 15, 29
    reference = np.repeat([0.0, 0.25, 0.55, 0.75, 1.0], [10, 100, 780, 100, 10])
    generated = np.repeat([0.0, 0.25, 0.55, 0.75, 1.0, 2.0], [10, 100, 680, 100, 10, 100])
    return reference, generated


def test_chi2_uu_by_hand_on_the_union_of_the_ranges():
    assert chi2_two_sample([100, 800, 100], [100, 700, 100]) == (pytest.approx(38 / 27), 2)  # 10/9 + 8/27
    reference, generated = _tiny_chi2_samples()
    edges = response_bins(reference, generated)
    np.testing.assert_allclose(edges, np.linspace(0.0, 2.0, 31))
    assert edges[-1] > 2.0  # the 99.5 percentile value itself is inside ([low, up) bins)
    np.testing.assert_allclose(response_bins(reference), np.linspace(0.0, 1.0, 31))
    e_r, e_g = np.full(reference.size, 1000.0), np.full(generated.size, 1000.0)
    uu = response_chi2(e_r, reference, e_g, generated)
    r, g = np.array([10, 100, 780, 100, 10, 0]), np.array([10, 100, 680, 100, 10, 100])
    n_r, n_g = 1000, 1000
    expected = np.sum((n_g * r - n_r * g) ** 2 / (n_r * n_g * (r + g)))
    assert uu.chi2 == pytest.approx(expected) and uu.ndf == 5 and uu.option == "UU"
    e = uu.per_energy[0]
    assert (e.n_reference_in_range, e.n_generated_in_range) == (1000, 1000)
    assert e.reference_outside == 0.0 and e.generated_outside == 0.0 and uu.max_outside == 0.0
    assert uu.chi2 > 80  # the 100 showers at 2.0 dominate: nothing leaves the comparison
    assert uu.definition["option"] == "UU" and "union" in str(uu.definition["binning"])


def test_chi2_finite_and_large_when_the_generated_sample_is_far_away():
    reference = np.random.default_rng(0).normal(1.0, 0.05, 500)
    result = response_chi2(np.ones(500), reference, np.ones(100), np.full(100, 5.0))
    e = result.per_energy[0]
    assert np.isfinite(result.chi2_ndf) and result.chi2_ndf > 10
    assert e.n_generated_in_range == 100 and e.n_reference_in_range >= 495  # at most the 0.5 % tails outside


def test_checkpoint_selection_uses_the_evaluation_chi2(tiny_geometry):
    """The training's selection chi2 is the evaluation's, number for number (it used to add under/overflow)."""
    from caloforge.data.showers import ShowerSet
    from caloforge.training.data import validation_chi2

    reference = make_showers(tiny_geometry, 400, seed=1, energies=(1000.0, 4000.0))
    generated = ShowerSet(reference.energies, reference.showers * 1.3, tiny_geometry)  # partly beyond the range
    selection = validation_chi2(reference, generated)
    response = lambda s: s.showers.sum(axis=1, dtype=np.float64) / s.energies  # noqa: E731 (threshold 0 here)
    evaluation = response_chi2(reference.energies, response(reference), generated.energies, response(generated))
    assert selection.chi2 == pytest.approx(evaluation.chi2, rel=1e-12) and selection.ndf == evaluation.ndf
    assert selection.definition == evaluation.definition and selection.chi2_ndf > 3


def test_chi2_tails_outside_are_recorded():
    rng = np.random.default_rng(3)
    reference, generated = rng.normal(1.0, 0.05, 4000), rng.normal(1.0, 0.05, 4000)
    e = response_chi2(np.ones(4000), reference, np.ones(4000), generated).per_energy[0]
    # beyond the union's edges lie only a sample's own tails past its 0.5/99.5 percentiles: 1 % (+ 2 showers)
    assert 0.0 <= e.reference_outside <= 0.0105 and 0.0 <= e.generated_outside <= 0.0105
    assert e.reference_outside + e.generated_outside > 0.0
    assert e.to_dict()["generated_outside"] == e.generated_outside


# ----------------------------------------------------------------------------- binnings


def test_official_binnings_for_ds1_photons():
    g = Geometry.preset("ds1-photons")
    assert g.dataset == "ds1-photons"
    showers = make_showers(g, 300, seed=4, energies=(2000.0, 16000.0))
    f = compute_features(showers)
    hists = {h.name: h for h in feature_histograms(f, f)}
    layer = hists["e_layer_1"]
    assert len(layer.edges) - 1 == 39 and layer.binning == "calochallenge"
    # the official min_energy (1 MeV for dataset 1, also the threshold applied to both samples) is the lower edge
    assert layer.edges[0] == pytest.approx(1.0) and layer.edges[-1] == pytest.approx(f.e_layer[:, 1].max())
    assert hists["response"].binning == "calochallenge" and len(hists["response"].edges) == 101
    eta = hists["centre_eta_1"]
    assert eta.binning == "calochallenge" and (eta.edges[0], eta.edges[-1], len(eta.edges)) == (-100.0, 100.0, 101)
    assert (hists["width_phi_2"].edges[0], hists["width_phi_2"].edges[-1]) == (0.0, 100.0)
    sparsity = hists["sparsity_2"]
    assert len(sparsity.edges) - 1 == 20 and (sparsity.edges[0], sparsity.edges[-1]) == (0.0, 1.0)
    assert sparsity.binning == "fixed"
    # no r-moment or E_tot histogram in the official code: data-driven, and said so
    assert hists["width_r_1"].binning == "data-driven" and hists["e_total"].binning == "data-driven"
    voxel = voxel_histogram(showers.showers, showers.showers, 1.0, geometry=g)
    assert len(voxel.edges) - 1 == 49 and voxel.binning == "calochallenge" and voxel.edges[0] == pytest.approx(1.0)
    assert voxel.definition == {"binning": "calochallenge", "n_bins": 49, "low": pytest.approx(1.0),
                                "high": pytest.approx(float(showers.showers.max())), "log_x": True}
    assert DATASETS["ds2"].readout_threshold_mev == pytest.approx(0.5e-3 / 0.033)


def test_official_per_energy_response_bins():
    photons, pions = Geometry.preset("ds1-photons"), Geometry.preset("ds1-pions")
    ref = np.random.default_rng(0).normal(1.0, 0.05, 200)
    for geometry, energy, low, high in ((photons, 2048.0, 0.4, 1.4), (photons, 4096.0, 0.9, 1.1),
                                        (photons, 2.0**22, 0.9, 1.1), (pions, 65536.0, 0.4, 1.4)):
        b = response_edges_per_energy(geometry, energy, ref)
        assert (b.name, len(b.edges) - 1, b.edges[0], b.edges[-1]) == ("calochallenge", 20, low, high)
    ds2 = response_edges_per_energy(Geometry.preset("ds2"), 1e4, ref)
    assert ds2.name == "data-driven"
    np.testing.assert_array_equal(ds2.edges, response_bins(ref))


def test_custom_geometry_gets_data_driven_binnings(tiny_geometry):
    showers = make_showers(tiny_geometry, 200, seed=2)
    f = compute_features(showers, threshold=0.0)
    hists = feature_histograms(f, f)
    assert {h.binning for h in hists} == {"data-driven"}
    by_name = {h.name: h for h in hists}
    assert len(by_name["e_layer_0"].edges) - 1 == 40
    top = 1.1 * np.percentile(np.abs(f.centre_phi[:, 0]), 99.9)
    assert by_name["centre_phi_0"].edges[-1] == pytest.approx(top) and by_name["centre_phi_0"].edges[0] == -top
    assert voxel_histogram(showers.showers, showers.showers, 0.0).binning == "data-driven"


def test_high_level_inputs_follow_the_official_columns(tiny_geometry):
    showers = make_showers(tiny_geometry, 5, seed=3)
    f = compute_features(showers, threshold=0.0)
    official = high_level_inputs(f)
    # log E_inc, 2 layers, 4 eta/phi moments of the one alpha layer, log E_tot, 2 sparsities, 2 + 2 r moments
    assert official.shape == (5, 14)
    np.testing.assert_allclose(official[:, 0], np.log10(f.energies), rtol=1e-6)
    np.testing.assert_allclose(official[:, 7], np.log10(f.e_total + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(official[:, 8:10], f.sparsity, rtol=1e-6)
    np.testing.assert_allclose(official[:, 10:12], f.centre_r / 100.0, rtol=1e-6)
    np.testing.assert_allclose(official[:, 12:14], f.width_r / 100.0, rtol=1e-6)
    np.testing.assert_allclose(official[:, 1:3], np.log10(f.e_layer + 1e-8), rtol=1e-6)
    for column, name in zip(range(3, 7), ("centre_eta", "centre_phi", "width_eta", "width_phi"), strict=True):
        np.testing.assert_allclose(official[:, column], getattr(f, name)[:, 0] / 100.0, rtol=1e-6, atol=1e-9)
