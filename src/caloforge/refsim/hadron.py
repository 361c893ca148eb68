"""Charged-pion showers: a two-component (EM + hadronic) parameterised model.

Per shower:

1. the first-interaction depth is exponential in the pion interaction length
   (λ_π = ``lambda_factor`` × λ_I), walking through the slabs;
2. before it the pion is a minimum-ionising track losing ``mip_dedx`` per mm; if
   that exhausts its energy it stops (low-energy pions range out in the EM layers);
3. at the interaction the remaining energy splits into an EM fraction f_em, Beta
   distributed around Groom's <f_em> = 1 - (E/E0)^(m-1), and a hadronic part that
   reads only h/e of an equal EM deposit (non-compensation, invisible energy);
4. the EM part follows Bock's EM-like term, a gamma profile in X0 from the
   interaction point, with the GFLASH radial profile; the hadronic part follows a
   gamma profile in λ_I whose mode is Fabjan & Gianotti's ℓ_max = 0.2 ln E + 0.7 λ
   and whose 95 % point is their L95 = ℓ_max + 2.5 E^0.13 λ, with a broad radial
   profile 2rR²/(r²+R²)² truncated at 4R, R growing with depth (CMS FastSim form).

Per-shower log-normal fluctuations of the profile shapes and the start point give
correlated layer-energy fluctuations.

References:
    D. E. Groom, NIM A572 (2007) 633 (EM fraction).
    R. K. Bock et al., NIM 186 (1981) 533 (longitudinal profile, EM-like term).
    C. W. Fabjan, F. Gianotti, Rev. Mod. Phys. 75 (2003) 1243 (ℓ_max, L95, R95).
    Y. A. Kulchitsky et al., hep-ex/9911033; J. Budagov et al., JINR-E1-2002-13 (e/h).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaincinv

from caloforge.refsim.deposit import RadialComponent, StepDeposits
from caloforge.refsim.detector import Detector, StepGrid
from caloforge.refsim.em import EmModel, gamma_fractions, radial_parameters

__all__ = [
    "PionDeposits",
    "PionModel",
    "PionParams",
    "hadronic_shape",
    "mean_em_fraction",
    "pion_deposits",
    "sample_pion",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PionModel:
    """Parameters of the pion model (sources in the field notes; estimates are marked).

    Args:
        lambda_factor: Pion interaction length / nuclear λ_I (1.15-1.3, PDG; notes §2).
        fem_e0_gev: E0 of Groom's <f_em> law, GeV (≈1).
        fem_m: Exponent m of Groom's law (0.80-0.87).
        fem_sigma: Shower-to-shower σ(f_em) at 10 GeV (estimate tuned to ≈50 %/√E ⊕ few %; notes §2: 0.15-0.2).
        fem_sigma_slope: σ(f_em) scales as (E / 10 GeV)^slope (estimate; fluctuations shrink with energy).
        fem_floor: Smallest <f_em> used below E0 (estimate; the law is clamped at 0).
        bock_a0: Bock EM-like shape a = a0 + a1 ln E[GeV] (0.6165).
        bock_a1: See ``bock_a0`` (0.3183).
        bock_b: Bock EM-like rate, 1/X0 (0.2198).
        lmax_slope: ℓ_max = slope ln E + offset, λ (Fabjan-Gianotti: 0.2).
        lmax_offset: See ``lmax_slope`` (0.7).
        l95_coefficient: L95 = ℓ_max + coefficient E^exponent, λ (2.5).
        l95_exponent: See ``l95_coefficient`` (0.13).
        shape_sigma: Log-normal σ of the per-shower profile shapes (estimate).
        lateral_r0: Hadronic radial scale at the interaction point, λ_I (estimate, R95 ≈ 1 λ).
        lateral_r1: Growth of the hadronic radial scale per λ_I of depth (estimate).
        lateral_spread: Per-shower factor U(1 - s/2, 1 + s/2) on the radial scale (CMS uses 1+U).
        lateral_cut: Truncation of the hadronic radial profile in units of R (CMS: 4).
        had_spot_coefficient: Hadronic spots N = c E_h[GeV]^0.9 (estimate; clumpier than EM).
        mip_spot_mm: One track spot per this path length, mm (estimate).
        mip_radius_mm: Radial scale of track deposits (δ rays), mm (estimate).
        mip_stochastic: Sampling (Landau) term of track deposits, sqrt(GeV) (estimate).
    """

    lambda_factor: float = 1.2
    fem_e0_gev: float = 1.0
    fem_m: float = 0.83
    fem_sigma: float = 0.15
    fem_sigma_slope: float = -0.2
    fem_floor: float = 0.05
    bock_a0: float = 0.6165
    bock_a1: float = 0.3183
    bock_b: float = 0.2198
    lmax_slope: float = 0.2
    lmax_offset: float = 0.7
    l95_coefficient: float = 2.5
    l95_exponent: float = 0.13
    shape_sigma: float = 0.1
    lateral_r0: float = 0.12
    lateral_r1: float = 0.12
    lateral_spread: float = 0.5
    lateral_cut: float = 4.0
    had_spot_coefficient: float = 15.0
    mip_spot_mm: float = 20.0
    mip_radius_mm: float = 1.0
    mip_stochastic: float = 0.03


@dataclass(frozen=True)
class PionParams:
    """Per-shower pion parameters, arrays (N,).

    Attributes:
        start_lambda: First-interaction depth along the axis, λ_I from the front.
        shower_energy: Energy left at the interaction, MeV (0 if the pion ranged out).
        em_fraction: f_em.
        em_alpha: Shape of the EM-part profile (X0 from the start).
        em_beta: Rate of the EM-part profile, 1/X0.
        had_alpha: Shape of the hadronic-part profile (λ_I from the start).
        had_beta: Rate of the hadronic-part profile, 1/λ_I.
        lateral_factor: Per-shower factor on the hadronic radial scale.
    """

    start_lambda: F64
    shower_energy: F64
    em_fraction: F64
    em_alpha: F64
    em_beta: F64
    had_alpha: F64
    had_beta: F64
    lateral_factor: F64

    @property
    def had_max(self) -> F64:
        """Mode of the hadronic profile, λ_I after the start point."""
        return np.maximum(self.had_alpha - 1, 0.0) / self.had_beta


@dataclass(frozen=True)
class PionDeposits:
    """The three components of pion showers and their parameters."""

    em: StepDeposits
    hadronic: StepDeposits
    track: StepDeposits
    params: PionParams


def mean_em_fraction(energy_gev: F64, model: PionModel | None = None) -> F64:
    """Groom's <f_em> = 1 - (E/E0)^(m-1), floored at ``fem_floor``.

    Example:
        >>> [round(float(f), 2) for f in mean_em_fraction(np.array([10.0, 100.0, 1000.0]))]
        [0.32, 0.54, 0.69]
    """
    model = model or PionModel()
    ratio = np.maximum(energy_gev / model.fem_e0_gev, 1.0)
    return np.maximum(1 - ratio ** (model.fem_m - 1), model.fem_floor)


@lru_cache(maxsize=4)
def _shape_table() -> tuple[F64, F64]:
    alpha = np.geomspace(1.05, 60.0, 400)
    ratio = gammaincinv(alpha, 0.95) / (alpha - 1)  # L95 / mode, decreasing in alpha
    return ratio[::-1].copy(), alpha[::-1].copy()


def hadronic_shape(energy_gev: F64, model: PionModel | None = None) -> tuple[F64, F64]:
    """Mean shape α and rate β (1/λ_I) of the hadronic profile: mode ℓ_max, 95 % point L95.

    Example:
        >>> a, b = hadronic_shape(np.array([100.0]))
        >>> round(float((a[0] - 1) / b[0]), 2)  # 0.2 ln 100 + 0.7
        1.62
    """
    model = model or PionModel()
    e = np.maximum(energy_gev, 0.05)
    lmax = np.maximum(model.lmax_slope * np.log(e) + model.lmax_offset, 0.1)
    l95 = lmax + model.l95_coefficient * e**model.l95_exponent
    ratio, alpha = _shape_table()
    a = np.interp(l95 / lmax, ratio, alpha)
    return a, (a - 1) / lmax


def sample_pion(
    energy_mev: F64,
    detector: Detector,
    grid: StepGrid,
    rng: np.random.Generator,
    path_factor: F64 | None = None,
    model: PionModel | None = None,
) -> tuple[PionParams, F64]:
    """Draw the start point, track losses, f_em and profile shapes of each pion.

    Returns:
        The parameters and the track deposits per step (S, N), MeV.
    """
    model = model or PionModel()
    n = energy_mev.size
    factor = np.ones(n) if path_factor is None else path_factor
    start = rng.exponential(model.lambda_factor, n)  # λ_I along the axis
    l_edges = grid.l_lambda[:, None] * factor[None, :]
    inside = np.clip(np.minimum(l_edges, start[None, :]), 0.0, None)
    frac = np.diff(inside, axis=0) / np.maximum(np.diff(l_edges, axis=0), 1e-12)
    path_mm = frac * np.diff(grid.z_mm)[:, None] * factor[None, :]
    cum = np.cumsum(path_mm * grid.mip_dedx[:, None], axis=0)
    capped = np.minimum(cum, energy_mev[None, :])
    track = np.diff(np.vstack([np.zeros((1, n)), capped]), axis=0)
    shower_e = energy_mev - capped[-1]
    e_gev = np.maximum(shower_e * 1e-3, 1e-3)
    mu = mean_em_fraction(e_gev, model)
    sigma = model.fem_sigma * (e_gev / 10.0) ** model.fem_sigma_slope
    var = np.minimum(sigma**2, 0.8 * mu * (1 - mu))
    kappa = mu * (1 - mu) / var - 1
    fem = rng.beta(mu * kappa, (1 - mu) * kappa)
    z = rng.standard_normal((3, n))
    em_a = np.maximum(model.bock_a0 + model.bock_a1 * np.log(e_gev), 0.5) * np.exp(model.shape_sigma * z[0])
    em_b = np.full(n, model.bock_b)
    had_a, had_b = hadronic_shape(e_gev, model)
    had_a = 1 + (had_a - 1) * np.exp(model.shape_sigma * z[1])
    had_b = had_b * np.exp(model.shape_sigma * z[2])
    lat = 1 + model.lateral_spread * (rng.random(n) - 0.5)
    return PionParams(start, np.where(shower_e > 0, shower_e, 0.0), fem, em_a, em_b, had_a, had_b, lat), track


def pion_deposits(
    energy_mev: F64,
    detector: Detector,
    grid: StepGrid,
    rng: np.random.Generator,
    path_factor: F64 | None = None,
    model: PionModel | None = None,
    em_model: EmModel | None = None,
) -> PionDeposits:
    """The step deposits (EM part, hadronic part, track) of pions entering at the front.

    Args:
        energy_mev: Pion energies, MeV, (N,).
        detector: The detector.
        grid: Its step grid for the geometry.
        rng: Random generator.
        path_factor: 1/sin(θ) per shower, (N,); default 1.
        model: Pion model parameters.
        em_model: EM model choices (radial cut).
    """
    model, em_model = model or PionModel(), em_model or EmModel()
    n = energy_mev.size
    factor = np.ones(n) if path_factor is None else path_factor
    pp, track = sample_pion(energy_mev, detector, grid, rng, factor, model)
    shape = (grid.n_steps, n)
    # depth from the interaction point: in λ_I along the axis, and in X0 via the slab-local X0/λ ratio
    l_rel = grid.l_lambda[:, None] * factor[None, :] - pp.start_lambda[None, :]
    t_start = np.interp(pp.start_lambda / factor, grid.l_lambda, grid.t_x0) * factor
    t_rel = grid.t_x0[:, None] * factor[None, :] - t_start[None, :]
    e_em = pp.shower_energy * pp.em_fraction
    e_had = pp.shower_energy - e_em
    em_frac = gamma_fractions(t_rel, pp.em_alpha, pp.em_beta)
    had_frac = gamma_fractions(l_rel, pp.had_alpha, pp.had_beta)
    # EM part: GFLASH radial profile with depth in units of the EM part's centre of gravity
    mid_t = np.maximum(0.5 * (t_rel[1:] + t_rel[:-1]), 0.0)
    tau = mid_t / (pp.em_alpha / pp.em_beta)[None, :]
    e_em_gev = np.broadcast_to(np.maximum(e_em * 1e-3, 0.01), shape)
    rc, rt, p = radial_parameters(tau, e_em_gev, detector.em_medium)
    rm = grid.rm_mm[:, None]
    cut = np.broadcast_to(em_model.radial_cut_rm * rm, shape)
    n_em = (
        em_model.spot_coefficient
        / detector.em_stochastic
        * np.power(np.maximum(e_em * 1e-3, 1e-6), em_model.spot_exponent)
    )
    em = StepDeposits(
        e_em[None, :] * em_frac,
        n_em[None, :] * em_frac,
        grid.em_scale,
        grid.c_em,
        (RadialComponent(p, rc * rm, cut), RadialComponent(1 - p, rt * rm, cut)),
    )
    # hadronic part: radial scale grows with depth after the interaction
    mid_l = np.maximum(0.5 * (l_rel[1:] + l_rel[:-1]), 0.0)
    radius = (model.lateral_r0 + model.lateral_r1 * mid_l) * pp.lateral_factor[None, :] * grid.lambda_mm[:, None]
    n_had = model.had_spot_coefficient * np.power(np.maximum(e_had * 1e-3, 1e-6), 0.9)
    had = StepDeposits(
        e_had[None, :] * had_frac,
        n_had[None, :] * had_frac,
        grid.had_scale,
        grid.c_had,
        (RadialComponent(np.ones(shape), radius, model.lateral_cut * radius),),
    )
    # minimum-ionising track before the interaction
    steps_mm = np.diff(grid.z_mm)[:, None] * factor[None, :]
    n_track = np.where(track > 0, steps_mm / model.mip_spot_mm, 0.0)
    mip_r = np.full(shape, model.mip_radius_mm)
    trk = StepDeposits(
        track,
        n_track,
        grid.mip_scale,
        np.full(grid.n_steps, model.mip_stochastic),
        (RadialComponent(np.ones(shape), mip_r, 5 * mip_r),),
    )
    return PionDeposits(em, had, trk, pp)
