"""Physics properties of the reference simulator (caloforge.refsim), each with a justified tolerance.

Statistical tolerances are several standard errors wide for the sample sizes used; model
tolerances follow the spread of the published numbers in ../shared/refsim-physics.md §4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from caloforge.data.geometry import Geometry
from caloforge.data.presets import PRESETS
from caloforge.errors import ConfigError, DataError, GeometryError
from caloforge.refsim import PionModel, Spectrum, canonical_particle, detector_for, par04_wsi, simulate
from caloforge.refsim.em import radial_parameters, sample_longitudinal
from caloforge.refsim.hadron import hadronic_shape, pion_deposits, sample_pion
from caloforge.refsim.presets import atlas_like
from caloforge.refsim.spectra import DS1_COUNTS, DS1_ENERGIES
from caloforge.validation.metrics.response import fit_resolution, robust_relative_width

GEV = 1e3


# ---------------------------------------------------------------- longitudinal
@pytest.mark.parametrize("make", [atlas_like, par04_wsi], ids=["atlas", "wsi"])
def test_shower_maximum_grows_like_ln_e(make):
    medium = make().em_medium
    energies = np.array([1, 10, 100, 1000]) * GEV
    rng = np.random.default_rng(0)
    median_t = [np.median(sample_longitudinal(np.full(4000, e), medium, rng).t_max) for e in energies]
    slope = np.polyfit(np.log(energies), median_t, 1)[0]
    # GFLASH: <ln T> = ln(ln y - 0.812 - sampling shift), so T grows by 1 X0 per e-fold; the
    # sampling shift and the σ(ln T) spread bend it by a few %: accept 0.9-1.1 X0 per e-fold.
    assert 0.9 < slope < 1.1


def test_wsi_shower_maximum_matches_the_notes():
    rng = np.random.default_rng(1)
    medium = par04_wsi().em_medium
    t = [np.median(sample_longitudinal(np.full(4000, e * GEV), medium, rng).t_max) for e in (1, 10, 100, 1000)]
    # notes §4 (computed from GP): 3.6 / 5.9 / 8.2 / 10.5 X0; the median of the log-normal
    # equals exp<ln T> up to the T >= 1 clamp, so 0.3 X0 covers sampling noise and the clamp.
    np.testing.assert_allclose(t, [3.6, 5.9, 8.2, 10.5], atol=0.3)


def test_photons_peak_about_one_x0_deeper_than_electrons():
    g = PRESETS["ds1-photons"]
    e = np.full(3000, 16384.0)
    photons = simulate(g, "photon", e, seed=4)
    electrons = simulate(g, "electron", e, seed=4)
    front = g.layer_slice(1)
    f_gamma = (photons.showers[:, front].sum(1) / photons.total_energy).mean()
    f_e = (electrons.showers[:, front].sum(1) / electrons.total_energy).mean()
    # A later start puts less energy into the 4.4 X0 strips; with 3000 showers the error of each
    # mean fraction is < 0.003, so a 0.02 difference is a > 5σ effect.
    assert f_gamma < f_e - 0.02
    # Model level: the mean conversion depth is 9/7 X0 (PDG: C_γ - C_e = 1 X0); with 20000
    # draws its error is 0.01 X0, so [1.2, 1.37] checks the implemented mean.
    rng = np.random.default_rng(5)
    start = rng.exponential(9 / 7, 20000)
    assert 1.2 < start.mean() < 1.37


# --------------------------------------------------------------------- lateral
def test_ninety_percent_within_one_moliere_radius():
    g = PRESETS["ds3"]
    rm = par04_wsi().em_medium.moliere_radius_mm
    s = simulate(g, "electron", np.full(150, 20 * GEV), seed=6)
    per_layer = np.stack([x.sum(axis=1) for x in g.split_layers(s.showers)], axis=1)  # (N, L, n_r)
    edges = np.asarray(g.layers[0].r_edges)
    radial = per_layer.sum(axis=(0, 1))
    cumulative = np.concatenate([[0.0], np.cumsum(radial)]) / radial.sum()
    whole = np.interp(rm, edges, cumulative)
    # PDG: ≈90 % of an EM shower's energy lies within 1 R_M; GFLASH in W/Si gives 0.92.
    # 150 showers x thousands of spots make the statistical error < 0.005; accept 0.86-0.95.
    assert 0.86 < whole < 0.95
    # 99 % within 3.5 R_M (PDG); the radial cut at 8 R_M and the geometry edge (3.8 R_M) allow ≥ 0.98.
    assert np.interp(3.5 * rm, edges, cumulative) > 0.98
    # At mid depth (τ = 1, near the maximum) the core dominates: GFLASH gives 0.9-0.97 there.
    rc, rt, p = radial_parameters(np.array([1.0]), np.array([20.0]), par04_wsi().em_medium)
    at_mid = p / (1 + rc**2) + (1 - p) / (1 + rt**2)
    assert 0.88 < float(at_mid[0]) < 0.98


# ------------------------------------------------------------------ resolution
def test_em_stochastic_term_atlas_like():
    energies = np.array([4, 16, 64, 256, 1024]) * 1.024 * GEV
    widths = []
    for e in energies:
        r = simulate("ds1-photons", "electron", np.full(1500, e), seed=7).response
        widths.append(r.std() / r.mean())
    a, b = dataclasses.astuple(fit_resolution(energies / GEV, np.array(widths)))
    # Measured ATLAS EMB: 10 %/√E ⊕ 0.17-0.7 % (notes §3a); the model has c_s = 10 % plus
    # fluctuating losses in 1.9 X0 of dead material, and 1500 showers give ~2 % errors on each width.
    assert 0.085 < a < 0.13
    assert b < 0.015


def test_em_stochastic_term_wsi():
    energies = np.array([1, 4, 16, 64, 256]) * GEV
    widths = [simulate("ds2", "electron", np.full(800, e), seed=8).response.std() for e in energies]
    a = fit_resolution(energies / GEV, np.array(widths)).stochastic
    # notes §3b: 12-17 %/√E expected for Par04 W/Si; the bounds are the requirement itself.
    assert 0.12 < a < 0.17


def test_pion_response_and_resolution():
    energies = np.array([10, 30, 100, 300, 1000]) * GEV
    means, widths = [], []
    for e in energies:
        r = simulate("ds1-pions", "pion", np.full(1200, e), seed=9).response
        means.append(r.mean())
        widths.append(robust_relative_width(r))
    means_arr = np.array(means)
    # π/e at the EM scale with dead material: 0.7-0.95 between 10 GeV and 1 TeV (notes §4);
    # the mean has an error < 0.006 with 1200 showers, so requiring a monotonic rise is safe
    # for these steps (the model's rise is ≥ 0.02 per step).
    assert np.all((means_arr > 0.7) & (means_arr < 0.95))
    assert np.all(np.diff(means_arr) > 0)
    a, b = dataclasses.astuple(fit_resolution(energies / GEV, np.array(widths)))
    # ATLAS: 50 %/√E ⊕ 3 % (JINST 3 S08003), test beam 52-58 %/√E ⊕ 2.5-3 %; the model
    # (with dead material and e/h of both LAr and Tile) must land near that: a in 0.4-0.62,
    # a constant term of a few % (< 6 %); widths have ~3 % relative errors.
    assert 0.4 < a < 0.62
    assert b < 0.06


# -------------------------------------------------------------------- hadrons
def test_hadronic_maximum_after_start_point():
    g = PRESETS["ds1-pions"]
    det = detector_for(g)
    grid = det.steps(g)
    width = 0.05  # λ_I, bins of depth after each shower's start point
    x_edges = np.arange(0.0, 6.0 + width, width)
    rng = np.random.default_rng(10)
    peaks = []
    for e_gev in (10.0, 100.0, 1000.0):
        pions = pion_deposits(np.full(2000, e_gev * GEV), det, grid, rng)
        had = pions.hadronic.deposit  # MeV per step (S, N), before the sampling fraction
        e_had = had.sum(axis=0)
        # Showers starting in the first 3 λ (of 9.6) keep their profile up to 6 λ after the start.
        keep = (pions.params.start_lambda < 3.0) & (e_had > 0)
        # Per shower, the deposited fraction up to each step edge, as a function of the depth after the
        # start point; linear inside a step (energy spread evenly over the step), read at the bin edges.
        cdf = np.vstack([np.zeros(had.shape[1]), np.cumsum(had, axis=0)]) / np.maximum(e_had, 1e-300)
        mean_cdf = np.mean([np.interp(x_edges, grid.l_lambda - s, c)
                            for s, c in zip(pions.params.start_lambda[keep], cdf.T[keep], strict=True)], axis=0)
        profile = np.diff(mean_cdf) / width  # mean dE/dλ / E_had
        peaks.append(float(x_edges[np.argmax(profile)] + width / 2))
    expected = 0.2 * np.log([10.0, 100.0, 1000.0]) + 0.7  # Fabjan-Gianotti ℓ_max, λ
    # The measured peak is resolved to a bin (0.05 λ) of a profile smeared over the simulation steps
    # (median 0.1 λ, up to 0.26 λ, at random offsets from the start points); the 10 % log-normal shape
    # fluctuations and the track losses before the start (< 10 % of E at 10 GeV: < 0.02 λ) move it less.
    # Observed deviations are <= 0.05 λ; accept one median step, 0.1 λ.
    np.testing.assert_allclose(peaks, expected, atol=0.1)
    # Two peaks each within a bin over ln(100) = 4.6 pin the slope to 0.2 within 2 x 0.05 / 4.6 = 0.022.
    slope = np.polyfit(np.log([10.0, 100.0, 1000.0]), peaks, 1)[0]
    assert slope == pytest.approx(0.2, abs=0.03)
    a, b = hadronic_shape(np.array([100.0]))
    assert float((a[0] - 1) / b[0]) == pytest.approx(0.2 * np.log(100) + 0.7, rel=1e-6)


def test_pions_tile_at_high_energy_and_range_out_at_256_mev():
    g = PRESETS["ds1-pions"]
    tile = slice(g.layer_slice(4).start, g.n_voxels)
    high = simulate(g, "pion", np.full(600, 2**20), seed=11)
    tile_fraction = high.showers[:, tile].sum(1).sum() / high.total_energy.sum()
    # With ≈1.6 λ in front of Tile and ℓ_max ≈ 2.1 λ at 1 TeV most energy is in Tile (model: 0.58).
    assert tile_fraction > 0.5
    low = simulate(g, "pion", np.full(2000, 256.0), seed=12)
    in_em_only = (low.showers[:, tile].sum(1) == 0) & (low.total_energy > 0)
    # A 256 MeV pion loses ≈250 MeV along 470 mm of EMB: a large share (model ≈0.75) stops
    # or showers before Tile; demand at least 30 %, far above the binomial error of 1 %.
    assert in_em_only.mean() > 0.3


def test_em_fraction_fluctuates_with_beta_spread():
    g = PRESETS["ds1-pions"]
    det = detector_for(g)
    pp, _ = sample_pion(np.full(5000, 100 * GEV), det, det.steps(g), np.random.default_rng(13), model=PionModel())
    fem = pp.em_fraction[pp.shower_energy > 50 * GEV]
    # Groom: <f_em> = 1 - 100^-0.17 = 0.54 at 100 GeV (shower energy slightly below E_inc); the
    # Beta spread is fem_sigma (0.15 at 10 GeV) x 10^-0.2 = 0.095; errors are < 0.003.
    assert 0.50 < fem.mean() < 0.56
    assert 0.07 < fem.std() < 0.12


# ------------------------------------------------------------- correlations
@pytest.mark.parametrize(("geometry", "particle"), [("ds1-photons", "photon"), ("ds2", "electron")])
def test_centre_of_gravity_correlates_with_layer_fractions(geometry, particle):
    g = PRESETS[geometry]
    s = simulate(g, particle, np.full(1500, 32 * GEV), seed=14)
    layers = np.stack([s.showers[:, g.layer_slice(i)].sum(1) for i in range(g.n_layers)], axis=1)
    fractions = layers / layers.sum(1, keepdims=True)
    cog = fractions @ np.arange(g.n_layers)
    front = fractions[:, 1] if geometry == "ds1-photons" else fractions[:, :8].sum(1)
    rho = np.corrcoef(cog, front)[0, 1]
    # A deeper shower (larger centre of gravity) leaves less in the front layers: ρ < 0, and
    # strongly so because T and α fluctuate shower by shower (|ρ| > 0.3; error ~0.03 at N = 1500).
    assert rho < -0.3


# ------------------------------------------------------- bookkeeping checks
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("particle", ["photon", "electron", "pion"])
def test_every_preset_has_exact_voxels_and_non_negative_energies(name, particle):
    g = PRESETS[name]
    s = simulate(g, particle, [256.0, 1e4, 1e6], seed=15)
    assert s.showers.shape == (3, g.n_voxels)
    assert s.showers.dtype == np.float32
    assert np.all(s.showers >= 0) and np.all(np.isfinite(s.showers))
    if name in ("ds2", "ds3"):
        nonzero = s.showers[s.showers > 0]
        assert nonzero.min() >= 0.5e-3 / 0.033  # 15.15 keV threshold in file units


def test_custom_xml_geometry(tmp_path):
    xml = tmp_path / "slabs.xml"
    layers = "\n".join(f'<Layer id="{i}" r_edges="0,5,10,20,50" n_bin_alpha="4"/>' for i in range(6))
    xml.write_text(f'<Bins><Bin pid="11" name="electron">{layers}</Bin></Bins>')
    g = Geometry.from_xml(xml)
    s = simulate(str(xml), "e-", [5e3, 5e4], seed=16)
    assert s.showers.shape == (2, g.n_voxels) == (2, 6 * 4 * 4)
    assert np.all(s.showers >= 0)
    assert detector_for(g).name == "Par04 W/Si"
    odd = tmp_path / "odd.xml"
    odd.write_text('<Bins><Bin name="x"><Layer id="5" r_edges="0,5" n_bin_alpha="1"/></Bin></Bins>')
    with pytest.raises(GeometryError, match="W/Si slabs"):
        simulate(str(odd), "photon", [1e3], seed=0)


def test_determinism_and_chunking():
    e = np.geomspace(1e3, 1e5, 50)
    a = simulate("ds2", "electron", e, seed=17)
    b = simulate("ds2", "electron", e, seed=17)
    c = simulate("ds2", "electron", e, seed=18)
    np.testing.assert_array_equal(a.showers, b.showers)
    assert not np.array_equal(a.showers, c.showers)


@pytest.mark.parametrize(("geometry", "particle", "response"), [
    ("ds1-photons", "photon", 0.9937),  # ATLAS-like sampling calorimeter, calibrated to the EM scale
    ("ds1-pions", "pion", 0.7996),  # e/h > 1: pions see about 80 % at 65 GeV
    ("ds2", "electron", 0.9927),  # W/Si, silicon energy / 0.033
    ("ds3", "electron", 0.9900),
])
def test_mean_response_of_each_preset_is_pinned(geometry, particle, response):
    # Values measured with this seed; the statistical error is 0.03-0.14 % and the bound 2 %, so a
    # sampling fraction off by 10 % (or any change of the detector's energy scale) fails here.
    energy = 65536.0 if geometry.startswith("ds1") else 50 * GEV
    n = 300 if geometry == "ds3" else 1000
    showers = simulate(geometry, particle, np.full(n, energy), seed=3)
    assert showers.response.mean() == pytest.approx(response, rel=0.02)


def test_tilted_axis_shifts_the_shower_and_is_recorded():
    e = np.full(1000, 50 * GEV)
    straight = simulate("ds2", "electron", e, seed=19, conditions={"theta": 90.0})
    tilted = simulate("ds2", "electron", e[:200], seed=19, conditions={"theta": 60.0})
    normal = simulate("ds2", "electron", e, seed=20)
    g = PRESETS["ds2"]
    assert np.allclose(tilted.conditions["theta"], 60.0)
    # explicit spots at 90° and the multinomial fast path are the same model: mean responses of
    # independent samples agree within 4 standard errors of their difference (about 0.09 %).
    sigma = np.hypot(straight.response.std(), normal.response.std()) / np.sqrt(len(e))
    assert sigma < 0.0015
    assert abs(straight.response.mean() - normal.response.mean()) < 4 * sigma
    r = g.voxel_r
    mean_r = [(s.showers * r).sum() / s.showers.sum() for s in (straight[:200], tilted)]
    # the axis drifts by z·cot θ (up to 88 mm at 60°): the energy-weighted radius must grow clearly.
    assert mean_r[1] > 1.5 * mean_r[0]


def test_bad_inputs_raise_caloforge_errors():
    with pytest.raises(ConfigError, match="expected a particle"):
        canonical_particle("kaon")
    with pytest.raises(DataError):
        simulate("ds2", "electron", [-1.0], seed=0)
    with pytest.raises(ConfigError, match="tilting is supported for W/Si"):
        simulate("ds1-photons", "photon", [1e3], seed=0, conditions={"theta": 60.0})
    with pytest.raises(ConfigError, match="conditions"):
        simulate("ds2", "photon", [1e3], seed=0, conditions={"eta": 0.2})
    with pytest.raises(ConfigError):
        Spectrum.parse("log-uniform:5:x")


def test_ds1_spectrum_counts():
    energies = Spectrum("ds1").sample(1210, np.random.default_rng(0))
    values, counts = np.unique(energies, return_counts=True)
    assert values.tolist() == list(DS1_ENERGIES)
    # counts proportional to the real dataset's 10k per energy and 5k/3k/2k/1k at the top four
    assert counts.tolist() == [c // 100 for c in DS1_COUNTS]
    log_uniform = Spectrum("log-uniform").sample(5000, np.random.default_rng(0))
    assert 1e3 <= log_uniform.min() and log_uniform.max() <= 1e6
    # uniform in ln E: the median is at sqrt(1e3 * 1e6) within the ~2 % error of 5000 draws (in ln).
    assert abs(np.log(np.median(log_uniform)) - np.log(np.sqrt(1e9))) < 0.15
