"""Cross sections and stopping powers of the electromagnetic cascade (numpy, MeV and mm).

Every formula here is evaluated once per material on an energy grid (:mod:`.tables`);
the transport kernel (:mod:`.kernel`) samples the matching differential forms.

Photons
    * pair production, Tsai complete screening [PDG eq. 34.31]: dσ/dx ∝ 1 - 4/3 x(1-x), σ = 7/(9 X0)
      at high energy; below that the unscreened Bethe-Heitler log [Bethe & Heitler 1934; Heitler,
      *Quantum theory of radiation*]: R(k) = (28/9 ln(2k/m) - 218/27) / (28/9 ln(183 Z^-1/3) - 2/27),
      clipped to [0, 1], continued by R(k1)·((k - 2m)/(k1 - 2m))² below k1 = 5 MeV down to threshold;
    * Compton scattering, Klein-Nishina per electron [PDG; Klein & Nishina 1929];
    * photo-electric absorption: σ_pe = σ_Compton(k_x) (k_x/k)³ per atom, normalised at the energy
      k_x = 0.5 MeV (Z/82)^1.25 where photo-absorption equals Compton scattering (a fit to the NIST
      XCOM crossovers: Pb 0.5, W 0.44, Fe 0.12, Al 0.05 MeV).

Electrons and positrons
    * bremsstrahlung, Tsai complete screening [PDG eq. 34.29]: dσ/dk = 1/(X0 k) (4/3 - 4/3 y + y²),
      y = k/T; photons below ``k_cut`` are a continuous loss T/X0 (4/3 y_c - 2/3 y_c² + y_c³/3);
    * collision loss, Rohrlich-Carlson / Berger-Seltzer formula for e± [PDG eq. 34.? (electrons),
      ICRU 37] with the high-energy density effect δ = 2 ln(ħω_p βγ / I) - 1 (clamped at 0), restricted
      to transfers below the δ-ray cut by subtracting the Møller (e-) / Bhabha (e+) energy-weighted
      cross section above it [Møller 1932; Bhabha 1936; as in the Geant4 Physics Reference Manual].

Multiple scattering of e± (per step, in the kernel)
    * the first transport cross section of the screened Rutherford (Wentzel) law with Molière's
      screening angle, σ1 = 2π Z(Z+1) r_e² (m_e c²/(pβc))² [ln(1 + 1/A) - 1/(1 + A)] per atom,
      A = (ħc/(2 pc a_TF))² (1.13 + 3.76 (αZ/β)²), a_TF = 0.88534 a_0 Z^-1/3 [Wentzel 1927; Molière 1947;
      as in Geant4's Wentzel-VI and PENELOPE]. A step of path s turns the direction by an angle drawn from
      a Wentzel law whose mean cosine is the Goudsmit-Saunderson exp(-s/λ1), which is exact for any
      step and additive over steps (Highland's θ0 is not: its log term shrinks it on short steps).

References:
    PDG, "Passage of particles through matter", Rev. Part. Phys. (2024), sections 34.4-34.5.
    Y.-S. Tsai, Rev. Mod. Phys. 46 (1974) 815.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from caloforge.refsim.materials import Element

__all__ = [
    "ELECTRON_MASS",
    "EXCITATION_EV",
    "bhabha_dxs",
    "brems_loss_below_cut",
    "brems_mu",
    "collision_dedx",
    "compton_mu",
    "delta_mu",
    "electron_density",
    "klein_nishina",
    "moller_dxs",
    "pair_mu",
    "pair_ratio",
    "photo_crossover",
    "photo_mu",
    "pion_dedx",
    "restricted_dedx",
    "transport_mu",
]

F64 = NDArray[np.float64]

ELECTRON_MASS = 0.51099895
"""m_e c², MeV [CODATA 2018]."""
CLASSICAL_RADIUS_MM = 2.8179403262e-12
"""Classical electron radius r_e, mm [CODATA 2018]."""
AVOGADRO = 6.02214076e23
"""N_A, 1/mol."""
K_BETHE = 0.307075
"""K = 4π N_A r_e² m_e c², MeV cm²/mol [PDG]."""
PLASMA_EV = 28.816
"""ħω_p = 28.816 sqrt(ρ <Z/A>) eV [PDG eq. 34.6]."""
PAIR_LOW_ENERGY_MEV = 5.0
"""Below this, the unscreened Bethe-Heitler log is replaced by a threshold form (estimate)."""
PHOTO_CROSSOVER_PB_MEV = 0.5
"""Energy where photo-absorption equals Compton scattering in lead (NIST XCOM, read off the table)."""
PHOTO_CROSSOVER_POWER = 1.25
"""Z power of the crossover energy, k_x = 0.5 MeV (Z/82)^1.25 (fit to XCOM crossovers of Pb, Fe, Al, C)."""

EXCITATION_EV: dict[str, float] = {
    "W": 727.0, "Si": 173.0, "Pb": 823.0, "Fe": 286.0, "LAr": 188.0, "Al": 166.0, "Kapton": 79.6, "Scint": 68.7,
}
"""Mean excitation energies I, eV [PDG atomic and nuclear properties]."""


def electron_density(element: Element) -> float:
    """Electrons per mm³."""
    return element.density * AVOGADRO * element.z / element.a * 1e-3


def klein_nishina(k: F64) -> F64:
    """Klein-Nishina total cross section per electron, mm², for photon energies ``k`` (MeV).

    Example:
        >>> round(float(klein_nishina(np.array([1e-6]))[0]) / (8 / 3 * math.pi * CLASSICAL_RADIUS_MM**2), 4)
        1.0
    """
    kap = np.asarray(k, dtype=np.float64) / ELECTRON_MASS
    small = kap < 1e-3
    kap_s = np.where(small, 1e-3, kap)
    l2 = np.log1p(2 * kap_s)
    bracket = ((1 + kap_s) / kap_s**2 * (2 * (1 + kap_s) / (1 + 2 * kap_s) - l2 / kap_s)
               + l2 / (2 * kap_s) - (1 + 3 * kap_s) / (1 + 2 * kap_s) ** 2)
    thomson = 8.0 / 3.0 * math.pi * CLASSICAL_RADIUS_MM**2
    sigma = 2 * math.pi * CLASSICAL_RADIUS_MM**2 * bracket
    return np.where(small, thomson * (1 - 2 * kap), sigma)


def compton_mu(element: Element, k: F64) -> F64:
    """Compton attenuation coefficient, 1/mm (Z electrons per atom, binding neglected)."""
    return electron_density(element) * klein_nishina(k)


def photo_crossover(z: float) -> float:
    """k_x(Z), MeV: where photo-absorption equals Compton scattering (see module docstring)."""
    return float(PHOTO_CROSSOVER_PB_MEV * (z / 82.0) ** PHOTO_CROSSOVER_POWER)


def photo_mu(element: Element, k: F64) -> F64:
    """Photo-electric attenuation coefficient, 1/mm: σ_C(k_x) (k_x/k)³."""
    kx = photo_crossover(element.z)
    return compton_mu(element, np.array([kx]))[0] * (kx / np.asarray(k, dtype=np.float64)) ** 3  # type: ignore[no-any-return]


def pair_ratio(k: F64, z: float) -> F64:
    """Pair cross section over its complete-screening limit 7/(9 X0): 0 below 2 m_e, -> 1 at high k."""
    k = np.asarray(k, dtype=np.float64)
    den = 28.0 / 9.0 * math.log(183.0 * z ** (-1.0 / 3.0)) - 2.0 / 27.0

    def unscreened(e: F64) -> F64:
        return np.clip((28.0 / 9.0 * np.log(2 * e / ELECTRON_MASS) - 218.0 / 27.0) / den, 0.0, 1.0)

    k1 = PAIR_LOW_ENERGY_MEV
    r1 = float(unscreened(np.array([k1]))[0])
    low = r1 * (np.clip(k - 2 * ELECTRON_MASS, 0.0, None) / (k1 - 2 * ELECTRON_MASS)) ** 2
    return np.where(k < k1, low, unscreened(np.maximum(k, k1)))


def pair_mu(element: Element, k: F64) -> F64:
    """Pair-production attenuation coefficient, 1/mm: 7/(9 X0) R(k)."""
    return 7.0 / (9.0 * element.x0_mm) * pair_ratio(k, element.z)


def brems_mu(element: Element, t: F64, k_cut: float) -> F64:
    """Bremsstrahlung photons above ``k_cut`` per mm for kinetic energies ``t`` (Tsai complete screening)."""
    t = np.asarray(t, dtype=np.float64)
    yc = np.minimum(k_cut / np.maximum(t, 1e-300), 1.0)
    n = 4.0 / 3.0 * -np.log(yc) - 4.0 / 3.0 * (1 - yc) + (1 - yc**2) / 2
    return np.where(t > k_cut, n, 0.0) / element.x0_mm


def brems_loss_below_cut(element: Element, t: F64, k_cut: float) -> F64:
    """Energy radiated in photons below ``k_cut``, MeV/mm (Tsai complete screening)."""
    t = np.asarray(t, dtype=np.float64)
    yc = np.minimum(k_cut / np.maximum(t, 1e-300), 1.0)
    return t * (4.0 / 3.0 * yc - 2.0 / 3.0 * yc**2 + yc**3 / 3.0) / element.x0_mm


def collision_dedx(element: Element, t: F64, positron: bool = False) -> F64:
    """Unrestricted collision stopping power of e- (or e+), MeV/mm [PDG, Rohrlich-Carlson]."""
    tau = np.asarray(t, dtype=np.float64) / ELECTRON_MASS
    gam = tau + 1
    beta2 = tau * (tau + 2) / gam**2
    i_over_m = EXCITATION_EV[element.name] * 1e-6 / ELECTRON_MASS
    if positron:
        tp2 = tau + 2
        f = 2 * math.log(2) - beta2 / 12 * (23 + 14 / tp2 + 10 / tp2**2 + 4 / tp2**3)
    else:
        f = 1 - beta2 + (tau**2 / 8 - (2 * tau + 1) * math.log(2)) / gam**2
    plasma_over_i = PLASMA_EV * math.sqrt(element.density * element.z / element.a) / EXCITATION_EV[element.name]
    delta = np.maximum(2 * np.log(plasma_over_i * np.sqrt(tau * (tau + 2))) - 1, 0.0)
    bracket = np.log(tau**2 * (tau + 2) / (2 * i_over_m**2)) + f - delta
    per_cm = K_BETHE / 2 * element.z / element.a * element.density / beta2 * bracket
    return np.maximum(per_cm, 0.0) / 10.0  # type: ignore[no-any-return]


def moller_dxs(x: F64, gam: F64) -> F64:
    """Møller dσ/dx per electron over 2π r_e², x = T_δ/T in [cut/T, 1/2] (Geant4 Physics Reference Manual)."""
    beta2 = 1 - 1 / gam**2
    c = (2 * gam - 1) / gam**2
    br = (gam - 1) ** 2 / gam**2 + 1 / x * (1 / x - c) + 1 / (1 - x) * (1 / (1 - x) - c)
    return br / (beta2 * (gam - 1))


def bhabha_dxs(x: F64, gam: F64) -> F64:
    """Bhabha dσ/dx per electron over 2π r_e², x = T_δ/T in [cut/T, 1] (Geant4 Physics Reference Manual)."""
    beta2 = 1 - 1 / gam**2
    y = 1 / (1 + gam)
    y12 = 1 - 2 * y
    b1, b2, b4 = 2 - y**2, y12 * (3 + y**2), y12**3
    b3 = b4 + y12**2
    return (1 / (beta2 * x**2) - b1 / x + b2 - b3 * x + b4 * x**2) / (gam - 1)


def _delta_integrals(element: Element, t: F64, cut: float, positron: bool) -> tuple[F64, F64]:
    """(∫ dσ/dx dx, T ∫ x dσ/dx dx) above the cut, per mm and MeV/mm (64-point Gauss-Legendre in ln x)."""
    t = np.asarray(t, dtype=np.float64)
    gam = (t / ELECTRON_MASS + 1)[:, None]
    x_max = 1.0 if positron else 0.5
    x_c = np.minimum(cut / np.maximum(t, 1e-300), x_max)[:, None]
    nodes, weights = np.polynomial.legendre.leggauss(64)
    lo, hi = np.log(x_c), math.log(x_max)
    lnx = 0.5 * (hi - lo) * nodes[None, :] + 0.5 * (hi + lo)
    x = np.exp(lnx)
    w = 0.5 * (hi - lo) * weights[None, :] * x
    dxs = bhabha_dxs(x, gam) if positron else moller_dxs(x, gam)
    scale = 2 * math.pi * CLASSICAL_RADIUS_MM**2 * electron_density(element)
    number = scale * np.sum(w * dxs, axis=1)
    energy = scale * t * np.sum(w * x * dxs, axis=1)
    return number, energy


def delta_mu(element: Element, t: F64, cut: float, positron: bool = False) -> F64:
    """δ-rays above ``cut`` per mm (Møller for e-, Bhabha for e+)."""
    return _delta_integrals(element, t, cut, positron)[0]


def restricted_dedx(element: Element, t: F64, delta_cut: float, k_cut: float, positron: bool = False) -> F64:
    """Continuous loss, MeV/mm: collision loss below the δ-ray cut plus bremsstrahlung below ``k_cut``."""
    collision = collision_dedx(element, t, positron) - _delta_integrals(element, t, delta_cut, positron)[1]
    return np.maximum(collision, 0.0) + brems_loss_below_cut(element, t, k_cut)


FINE_STRUCTURE = 1.0 / 137.035999
"""α [CODATA 2018]."""
BOHR_RADIUS_MM = 5.29177210903e-8
"""a_0, mm [CODATA 2018]."""
HBARC_MEV_MM = 1.973269804e-10
"""ħc, MeV mm [CODATA 2018]."""


def transport_mu(element: Element, t: F64) -> F64:
    """Inverse first transport mean free path 1/λ1 of e± of kinetic energy ``t``, 1/mm (see module docstring).

    At ~0.02 X0 it matches Highland's θ0² = s/λ1 (Pb, 1 MeV: θ0 1.15 vs 1.16 rad).
    """
    t = np.asarray(t, dtype=np.float64)
    pc2 = t * (t + 2 * ELECTRON_MASS)
    beta2 = pc2 / (t + ELECTRON_MASS) ** 2
    a_tf = 0.88534 * BOHR_RADIUS_MM * element.z ** (-1.0 / 3.0)
    screen = HBARC_MEV_MM**2 / (4 * pc2 * a_tf**2) * (1.13 + 3.76 * (FINE_STRUCTURE * element.z) ** 2 / beta2)
    atoms = electron_density(element) / element.z
    sigma1 = (2 * math.pi * element.z * (element.z + 1) * CLASSICAL_RADIUS_MM**2 * ELECTRON_MASS**2 / (pc2 * beta2)
              * (np.log1p(1 / screen) - 1 / (1 + screen)))
    return atoms * sigma1  # type: ignore[no-any-return]


PION_MASS = 139.57039
"""m_π± c², MeV [PDG]."""


def pion_dedx(element: Element, t: F64) -> F64:
    """Mean stopping power of a charged pion of kinetic energy ``t``, MeV/mm (Bethe, PDG eq. 34.5).

    With the high-energy density effect of :func:`collision_dedx`; T_max from the two-body kinematics.
    """
    t = np.asarray(t, dtype=np.float64)
    gam = t / PION_MASS + 1
    bg2 = gam**2 - 1
    beta2 = bg2 / gam**2
    ratio = ELECTRON_MASS / PION_MASS
    t_max = 2 * ELECTRON_MASS * bg2 / (1 + 2 * gam * ratio + ratio**2)
    i_mev = EXCITATION_EV[element.name] * 1e-6
    plasma_over_i = PLASMA_EV * math.sqrt(element.density * element.z / element.a) / EXCITATION_EV[element.name]
    delta = np.maximum(2 * np.log(plasma_over_i * np.sqrt(bg2)) - 1, 0.0)
    bracket = 0.5 * np.log(2 * ELECTRON_MASS * bg2 * t_max / i_mev**2) - beta2 - delta / 2
    per_cm = K_BETHE * element.z / element.a * element.density / beta2 * np.maximum(bracket, 0.05)
    return per_cm / 10.0  # type: ignore[no-any-return]
