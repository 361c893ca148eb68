# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""Numba samplers of the final states: directions, Klein-Nishina, pair and bremsstrahlung sharing, δ-rays.

Each function draws from numba's per-thread generator (seeded per shower by the kernel), so
a shower's numbers depend only on its own seed. The differential forms are those whose
integrals :mod:`.physics` tabulates.
"""

from __future__ import annotations

import math

import numpy as np

from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.physics import ELECTRON_MASS

__all__ = ["annihilation_direction", "basis", "brems_fraction", "compton_epsilon", "delta_fraction", "emission_angle",
           "pair_fraction", "rotate", "seed_numba"]

M = ELECTRON_MASS


@nb.njit(cache=True)
def seed_numba(seed: int) -> None:
    """Seed numba's generator (the one the samplers use)."""
    np.random.seed(seed)


@nb.njit(cache=True)
def basis(u: float, v: float, w: float) -> tuple[float, float, float, float, float, float]:
    """Two unit vectors e1, e2 perpendicular to the unit direction (u, v, w) and to each other."""
    if abs(w) < 0.99:
        n = math.sqrt(u * u + v * v)  # e1 = (dir x z) / |..|, e2 = dir x e1
        e1x, e1y, e1z = v / n, -u / n, 0.0
    else:
        n = math.sqrt(v * v + w * w)  # e1 = (dir x x) / |..|
        e1x, e1y, e1z = 0.0, w / n, -v / n
    return e1x, e1y, e1z, v * e1z - w * e1y, w * e1x - u * e1z, u * e1y - v * e1x


@nb.njit(cache=True)
def rotate(u: float, v: float, w: float, cos_t: float, phi: float) -> tuple[float, float, float]:
    """The unit vector at polar angle acos(cos_t), azimuth ``phi`` around the direction (u, v, w)."""
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    e1x, e1y, e1z, e2x, e2y, e2z = basis(u, v, w)
    c, s = math.cos(phi) * sin_t, math.sin(phi) * sin_t
    x, y, z = cos_t * u + c * e1x + s * e2x, cos_t * v + c * e1y + s * e2y, cos_t * w + c * e1z + s * e2z
    n = math.sqrt(x * x + y * y + z * z)
    return x / n, y / n, z / n


@nb.njit(cache=True)
def compton_epsilon(k: float) -> tuple[float, float]:
    """(k'/k, 1 - cos θ) of a Compton scattering, sampled exactly from Klein-Nishina.

    The composition-rejection method of Butcher & Messel (Nucl. Phys. 20 (1960) 15), as
    described in the Geant4 Physics Reference Manual: ε from 1/ε or ε on [ε0, 1], accepted
    with 1 - ε sin²θ / (1 + ε²).
    """
    kap = k / M
    eps0 = 1.0 / (1.0 + 2.0 * kap)
    eps0sq = eps0 * eps0
    a1 = -math.log(eps0)
    a2 = a1 + 0.5 * (1.0 - eps0sq)
    while True:
        if a1 > a2 * np.random.random():
            eps = math.exp(-a1 * np.random.random())
            epssq = eps * eps
        else:
            epssq = eps0sq + (1.0 - eps0sq) * np.random.random()
            eps = math.sqrt(epssq)
        onecost = (1.0 - eps) / (eps * kap)
        sint2 = onecost * (2.0 - onecost)
        if 1.0 - eps * sint2 / (1.0 + epssq) >= np.random.random():
            return eps, onecost


@nb.njit(cache=True)
def pair_fraction(k: float) -> float:
    """Total-energy fraction x = E_e/k of one lepton, from 1 - 4/3 x(1-x) on [m/k, 1 - m/k] (Tsai)."""
    lo = M / k
    while True:
        x = lo + (1.0 - 2.0 * lo) * np.random.random()
        if np.random.random() <= 1.0 - 4.0 / 3.0 * x * (1.0 - x):
            return x


@nb.njit(cache=True)
def brems_fraction(yc: float) -> float:
    """y = k/T on [yc, 1] from (4/3 - 4/3 y + y²)/y (Tsai complete screening): 1/y, then rejection."""
    lny = math.log(yc)
    while True:
        y = math.exp(lny * np.random.random())
        if np.random.random() * 4.0 / 3.0 <= 4.0 / 3.0 - 4.0 / 3.0 * y + y * y:
            return y


@nb.njit(cache=True)
def emission_angle(total_energy: float) -> float:
    """Polar angle (rad) of a brems photon or pair lepton: θ = (m/E) u with f(u) ∝ u/(1+u²)²."""
    v = np.random.random()
    return min(M / total_energy * math.sqrt(v / (1.0 - v + 1e-12)), math.pi)


@nb.njit(cache=True)
def delta_fraction(t: float, xc: float, positron: bool) -> float:
    """x = T_δ/T of a δ-ray above ``xc``: Møller (e-, x <= 1/2) or Bhabha (e+, x <= 1); 1/x², then rejection."""
    gam = t / M + 1.0
    beta2 = 1.0 - 1.0 / (gam * gam)
    xmax = 1.0 if positron else 0.5
    if positron:
        y = 1.0 / (1.0 + gam)
        y12 = 1.0 - 2.0 * y
        b1, b2, b4 = 2.0 - y * y, y12 * (3.0 + y * y), y12 * y12 * y12
        b3 = b4 + y12 * y12
        gmax = 1.0 / beta2 + b2 + b4
    else:
        c = (2.0 * gam - 1.0) / (gam * gam)
        gmax = 2.25
    while True:
        x = xc * xmax / (xmax - np.random.random() * (xmax - xc))
        if positron:
            g = 1.0 / beta2 - b1 * x + b2 * x * x - b3 * x * x * x + b4 * x * x * x * x
        else:
            g = ((gam - 1.0) ** 2 / (gam * gam) * x * x + 1.0 - c * x + x * x / ((1.0 - x) ** 2)
                 - c * x * x / (1.0 - x))
        if np.random.random() * gmax <= g:
            return x


@nb.njit(cache=True)
def annihilation_direction() -> tuple[float, float, float]:
    """An isotropic direction (the first of the two back-to-back 511 keV photons)."""
    c = 2.0 * np.random.random() - 1.0
    phi = 2.0 * math.pi * np.random.random()
    s = math.sqrt(max(0.0, 1.0 - c * c))
    return s * math.cos(phi), s * math.sin(phi), c
