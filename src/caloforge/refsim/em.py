"""GFLASH electromagnetic showers (e±, γ): longitudinal, radial and spot parameterisation.

Each shower draws its own longitudinal gamma profile (T, α) from the correlated
log-normal laws of Grindhammer & Peters for sampling calorimeters; this is the
source of correlated shower-to-shower fluctuations of the layer energies. The
radial profile is the GFLASH core + tail mixture whose radii and core fraction
depend on the depth in units of the shower's own centre of gravity. Photons
first travel an exponentially distributed conversion depth (mean 9/7 X0).

The formulas follow the paper (and CMSSW's EMECALShowerParametrization), not
Geant4's GFLASH code, which has the bugs listed in §1.5 of the physics notes
(critical energy with X0 in mm, unused sampling T/α, MeV sampling smearing).

References:
    G. Grindhammer, S. Peters, hep-ex/0001020, App. A.
    G. Grindhammer, M. Rudowicz, S. Peters, NIM A290 (1990) 469.
    PDG, "Passage of particles through matter": C_γ - C_e = 1, 7/9 X0 pair mean free path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammainc

from caloforge.refsim.deposit import RadialComponent, StepDeposits
from caloforge.refsim.detector import Detector, StepGrid
from caloforge.refsim.materials import Material

__all__ = [
    "EmModel",
    "LongitudinalParams",
    "em_deposits",
    "mean_log_parameters",
    "radial_parameters",
    "sample_longitudinal",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class EmModel:
    """Tunable choices of the EM model (the GFLASH coefficients themselves are fixed by the paper).

    Args:
        conversion_x0: Mean photon conversion depth, X0 (9/7; G4 ``GenerateExponential``, PDG).
        sigma_cap: Upper bound on σ(ln T) and σ(ln α), which diverge at low y (G4 caps at 0.5).
        min_t: Lower clamp on an individual T, X0 (G4: 1).
        min_alpha: Lower clamp on an individual α (G4: 1.1).
        spot_coefficient: N_spot = (spot_coefficient / c_s) E[GeV]^spot_exponent (GP sampling: 10.3).
        spot_exponent: See ``spot_coefficient`` (GP sampling: 0.959).
        radial_cut_rm: Truncation of the radial components, in Molière radii (estimate;
            CMS truncates the tail too). Beyond the geometry's last edge the energy leaks.
    """

    conversion_x0: float = 9.0 / 7.0
    sigma_cap: float = 0.5
    min_t: float = 1.0
    min_alpha: float = 1.1
    spot_coefficient: float = 10.3
    spot_exponent: float = 0.959
    radial_cut_rm: float = 8.0


@dataclass(frozen=True)
class LongitudinalParams:
    """Per-shower GFLASH parameters, arrays (N,).

    Attributes:
        t_max: Individual shower maximum T = (α-1)/β, X0 from the shower start.
        alpha: Gamma shape α.
        beta: Gamma rate β, 1/X0.
        alpha_mean: exp<ln α> at this energy (sets the radial depth scale τ).
        spot_alpha: Shape of the spot profile.
        spot_beta: Rate of the spot profile, 1/X0.
    """

    t_max: F64
    alpha: F64
    beta: F64
    alpha_mean: F64
    spot_alpha: F64
    spot_beta: F64

    @property
    def centre_of_gravity(self) -> F64:
        """<t> = α/β, X0 from the shower start."""
        return self.alpha / self.beta


def mean_log_parameters(energy_mev: F64, medium: Material, sigma_cap: float = 0.5) -> tuple[F64, F64, F64, F64, F64]:
    """<ln T>, <ln α>, σ(ln T), σ(ln α), ρ for individual showers [GP; notes §1.2].

    Sampling formulas when the medium has a finite sampling frequency, else homogeneous.

    Args:
        energy_mev: Shower energies, MeV.
        medium: The medium (Z_eff, Ec, F_S, ê).
        sigma_cap: Upper bound on the σ's.

    Example:
        >>> from caloforge.refsim.presets import par04_wsi
        >>> mu_t, *_ = mean_log_parameters(np.array([1e4]), par04_wsi().em_medium)
        >>> round(float(np.exp(mu_t[0])), 1)  # T of a 10 GeV shower in W/Si, X0 (notes §4: 5.9)
        5.9
    """
    ln_y = np.log(np.maximum(energy_mev / medium.critical_energy, 1.0 + 1e-9))
    t_hom = np.maximum(ln_y - 0.812, 0.1)
    a_hom = 0.81 + (0.458 + 2.26 / medium.z_eff) * ln_y
    if math.isfinite(medium.sampling_frequency):
        fs, ehat = medium.sampling_frequency, medium.e_over_mip
        mu_t = np.log(np.maximum(t_hom - 0.55 / fs - 0.69 * (1 - ehat), 0.1))
        mu_a = np.log(np.maximum(a_hom - 0.476 / fs, 0.1))
        den_t, den_a, rho = -2.5 + 1.25 * ln_y, -0.82 + 0.79 * ln_y, 0.784 - 0.023 * ln_y
    else:
        mu_t, mu_a = np.log(t_hom), np.log(np.maximum(a_hom, 0.1))
        den_t, den_a, rho = -1.4 + 1.26 * ln_y, -0.58 + 0.86 * ln_y, 0.705 - 0.023 * ln_y
    sig_t = np.where(den_t > 1 / sigma_cap, 1 / np.maximum(den_t, 1e-9), sigma_cap)
    sig_a = np.where(den_a > 1 / sigma_cap, 1 / np.maximum(den_a, 1e-9), sigma_cap)
    return mu_t, mu_a, sig_t, sig_a, np.clip(rho, -1.0, 1.0)


def sample_longitudinal(
    energy_mev: F64, medium: Material, rng: np.random.Generator, model: EmModel | None = None
) -> LongitudinalParams:
    """Draw each shower's (T, α) from the correlated log-normal laws, plus its spot profile.

    Args:
        energy_mev: Shower energies, MeV, (N,).
        medium: The EM medium of the detector.
        rng: Random generator.
        model: Model choices (caps, clamps).

    Returns:
        The per-shower parameters.
    """
    model = model or EmModel()
    mu_t, mu_a, sig_t, sig_a, rho = mean_log_parameters(energy_mev, medium, model.sigma_cap)
    z1, z2 = rng.standard_normal((2, energy_mev.size))
    a, b = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    t_max = np.maximum(np.exp(mu_t + sig_t * (a * z1 + b * z2)), model.min_t)
    alpha = np.maximum(np.exp(mu_a + sig_a * (a * z1 - b * z2)), model.min_alpha)
    z = medium.z_eff
    t_fac, a_fac = 0.698 + 0.00212 * z, 0.639 + 0.00334 * z
    if math.isfinite(medium.sampling_frequency):  # GP sampling spot coefficients (G4 reuses homogeneous ones)
        t_fac *= 0.813 + 0.0019 * z
        a_fac *= 0.844 + 0.0026 * z
    spot_t = t_max * t_fac
    spot_a = np.maximum(alpha * a_fac, 1.05)
    return LongitudinalParams(t_max, alpha, (alpha - 1) / t_max, np.exp(mu_a), spot_a, (spot_a - 1) / spot_t)


def radial_parameters(tau: F64, energy_gev: F64, medium: Material) -> tuple[F64, F64, F64]:
    """GFLASH core radius R_C, tail radius R_T (Molière radii) and core probability p at depth τ.

    Homogeneous coefficients with the sampling corrections [GP; notes §1.3].

    Example:
        >>> from caloforge.refsim.presets import par04_wsi
        >>> rc, rt, p = radial_parameters(np.array([1.0]), np.array([10.0]), par04_wsi().em_medium)
        >>> round(float(rc[0]), 3), round(float(rt[0]), 2), round(float(p[0]), 2)
        (0.121, 0.57, 0.91)
    """
    z = medium.z_eff
    ln_e = np.log(energy_gev)
    rc = 0.0251 + 0.00319 * ln_e + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0412 * ln_e
    rt = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p = p1 * np.exp(arg - np.exp(arg))
    if math.isfinite(medium.sampling_frequency):
        fs, one_e = medium.sampling_frequency, 1 - medium.e_over_mip
        rc = rc - 0.0203 * one_e + 0.0397 * np.exp(-tau) / fs
        rt = rt - 0.14 * one_e - 0.495 * np.exp(-tau) / fs
        p = p + one_e * (0.348 - 0.642 * np.exp(-((tau - 1) ** 2)) / fs)
    rc = np.maximum(rc, 0.01)
    return rc, np.maximum(rt, rc * 1.5), np.clip(p, 0.0, 1.0)


def gamma_fractions(edges: F64, alpha: F64, beta: F64) -> F64:
    """Fractions of a gamma profile between consecutive depth ``edges`` (S+1, N) -> (S, N)."""
    cdf = gammainc(alpha[None, :], beta[None, :] * np.maximum(edges, 0.0))
    return np.diff(cdf, axis=0)


def em_deposits(
    energy_mev: F64,
    start_x0: F64,
    detector: Detector,
    grid: StepGrid,
    rng: np.random.Generator,
    path_factor: F64 | None = None,
    model: EmModel | None = None,
    params: LongitudinalParams | None = None,
) -> tuple[StepDeposits, LongitudinalParams]:
    """The step deposits of EM showers starting at ``start_x0`` along the axis.

    Args:
        energy_mev: Shower energies, MeV, (N,).
        start_x0: Depth where the shower starts (0 for e±, the conversion depth for γ), X0 along the axis, (N,).
        detector: The detector (EM medium and stochastic term).
        grid: The step grid.
        rng: Random generator.
        path_factor: Axis length per perpendicular length, 1/sin(θ), (N,); default 1.
        model: Model choices.
        params: Pre-drawn longitudinal parameters (default: drawn here).

    Returns:
        The deposits and the per-shower longitudinal parameters.
    """
    model = model or EmModel()
    n = energy_mev.size
    factor = np.ones(n) if path_factor is None else path_factor
    lp = sample_longitudinal(energy_mev, detector.em_medium, rng, model) if params is None else params
    depth = grid.t_x0[:, None] * factor[None, :] - start_x0[None, :]  # (S+1, N), from the shower start
    frac = gamma_fractions(depth, lp.alpha, lp.beta)
    spot_frac = gamma_fractions(depth, lp.spot_alpha, lp.spot_beta)
    e_gev = energy_mev * 1e-3
    n_spots = model.spot_coefficient / detector.em_stochastic * np.power(e_gev, model.spot_exponent)
    mid = 0.5 * (depth[1:] + depth[:-1])
    t_scale = lp.centre_of_gravity * (lp.alpha_mean - 1) / lp.alpha_mean
    tau = np.maximum(mid, 0.0) / t_scale[None, :]
    rc, rt, p = radial_parameters(tau, np.broadcast_to(e_gev, tau.shape), detector.em_medium)
    rm = grid.rm_mm[:, None]
    cut = np.broadcast_to(model.radial_cut_rm * rm, tau.shape)
    components = (RadialComponent(p, rc * rm, cut), RadialComponent(1 - p, rt * rm, cut))
    deps = StepDeposits(energy_mev[None, :] * frac, n_spots[None, :] * spot_frac, grid.em_scale, grid.c_em, components)
    return deps, lp
