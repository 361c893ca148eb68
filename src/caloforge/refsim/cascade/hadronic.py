# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""Nuclear interactions of charged pions: a generation-by-generation hadronic cascade (numba).

A charged pion ionises along its track (Bethe, :func:`.physics.pion_dedx`) and interacts after an
exponential path of mean λ_π = :data:`PION_LAMBDA_FACTOR` × λ_I. At each interaction of kinetic
energy E:

* a fraction 1 - s(E) of E goes to new pions, s(E) = s1 (E/GeV)^-p (:data:`NUCLEAR_SHARE_1GEV`,
  :data:`NUCLEAR_SHARE_POWER`); ⟨n⟩ = A + B ln(E/GeV) of them (Poisson), sharing it at random
  (flat Dirichlet), each emitted at a transverse momentum of mean :data:`PT_MEAN_MEV`; each is
  neutral with probability :data:`NEUTRAL_FRACTION` and then decays at once into two photons (flat
  energy sharing) that are transported as EM sub-showers; charged ones are transported on;
* the rest is nuclear: a fraction :data:`INVISIBLE_FRACTION` is invisible (binding energy, neutrinos,
  escaping slow neutrons), the remainder is deposited by slow protons and neutrons in blobs of at most
  :data:`NUCLEON_BLOB_MEV`, each displaced isotropically by an exponential distance of mean
  :data:`NUCLEON_SPREAD_LAMBDA` λ_I (the broad hadronic halo), read with the slab's MIP sampling fraction;
* below :data:`ABSORPTION_MEV` no pion is produced (the pion is absorbed: all nuclear), and a pion that
  ranges down to :data:`PION_STOP_MEV` is absorbed where it stops.

The EM fraction ⟨f_em⟩ that results is compared with Groom's 1 - (E/E0)^(k-1) in the tests and in
``docs/refsim.md``; the invisible fraction sets e/h.

References:
    R. Wigmans, *Calorimetry* (2nd ed., OUP 2017), ch. 2 (1/3 neutral pions per generation, invisible
    energy 30-40 % of the non-EM part, logarithmic multiplicity).
    D. E. Groom, NIM A572 (2007) 633 (⟨f_em⟩ power law, E0 ≈ 1 GeV, k ≈ 0.82).
    T. A. Gabriel et al., NIM A338 (1994) 336 (energy deposition modes in hadronic showers).
    PDG, "Passage of particles through matter" (λ_π vs λ_I; ⟨p_T⟩ ≈ 0.35 GeV of produced hadrons).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from caloforge.refsim.cascade import sampling as sm
from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.steps import ACTIVE, EM_FROM_PI0, INVISIBLE, LEAKED, PASSIVE, push, voxel_index

__all__ = ["ABSORPTION_MEV", "INVISIBLE_FRACTION", "MULTIPLICITY_A", "MULTIPLICITY_B", "NEUTRAL_FRACTION",
           "NUCLEAR_SHARE_1GEV", "NUCLEAR_SHARE_POWER", "NUCLEON_BLOB_MEV", "NUCLEON_SPREAD_LAMBDA",
           "PION_LAMBDA_FACTOR", "PION_STOP_MEV", "PT_MEAN_MEV", "pion_interaction", "pion_lambda_mm"]

PION_LAMBDA_FACTOR = 1.2
"""λ_π / λ_I: the pion interaction length is 1.15-1.3 λ_I (PDG tables; physics notes §2)."""
NEUTRAL_FRACTION = 1.0 / 3.0
"""Probability that a produced pion is a π0 (isospin; Wigmans ch. 2)."""
MULTIPLICITY_A = 1.0
"""⟨n_π⟩ = A + B ln(E/GeV) per interaction: logarithmic growth (Wigmans ch. 2; tuned to Groom's ⟨f_em⟩)."""
MULTIPLICITY_B = 1.2
"""See :data:`MULTIPLICITY_A`."""
NUCLEAR_SHARE_1GEV = 0.35
"""Nuclear share of the energy of a 1 GeV interaction (nucleons, binding, neutrinos; Gabriel et al.; tuned)."""
NUCLEAR_SHARE_POWER = 0.25
"""The nuclear share falls as (E/GeV)^-0.25: the energy spent on the nucleus grows slower than E (Gabriel et
al.: a few hundred MeV per interaction), which is what makes ⟨f_em⟩ rise towards 1 as Groom's law does."""
INVISIBLE_FRACTION = 0.45
"""Invisible share of the nuclear energy (binding, neutrinos, slow neutrons); Wigmans: 30-40 % of non-EM energy."""
NUCLEON_BLOB_MEV = 50.0
"""Largest energy of one nucleon deposit, MeV."""
NUCLEON_SPREAD_LAMBDA = 0.15
"""Mean displacement of a nucleon deposit from its interaction, λ_I (neutrons travel tens of cm; estimate)."""
PT_MEAN_MEV = 350.0
"""Mean transverse momentum of produced pions, MeV (PDG; Gamma(2) distributed)."""
ABSORPTION_MEV = 170.0
"""Below this kinetic energy an interacting pion produces no pions (πN inelastic threshold ≈ 170 MeV)."""
PION_STOP_MEV = 20.0
"""A pion slowed below this is absorbed where it stops (π- capture, π+ decay at rest: nuclear)."""
PI0_MASS = 134.977
"""m_π0 c², MeV [PDG]."""


@nb.njit(cache=True)
def pion_lambda_mm(lambda_i_mm: float) -> float:
    """The pion interaction length, mm."""
    return PION_LAMBDA_FACTOR * lambda_i_mm


@nb.njit(cache=True)
def _nucleons(e: float, x: float, y: float, z: float, lam: float, row: int, z_edges: NDArray[np.float64],
              vis: NDArray[np.float64], scale: NDArray[np.float64], layer_of: NDArray[np.int64],
              r_edges: NDArray[np.float64], r_off: NDArray[np.int64], n_r: NDArray[np.int64],
              n_alpha: NDArray[np.int64], vox_off: NDArray[np.int64], out: NDArray[np.float64],
              ledger: NDArray[np.float64]) -> None:
    n = max(1, math.ceil(e / NUCLEON_BLOB_MEV))
    nsub = z_edges.size - 1
    for _ in range(n):
        part = e / n
        du, dv, dw = sm.annihilation_direction()  # an isotropic direction
        d = -math.log(1.0 - np.random.random()) * NUCLEON_SPREAD_LAMBDA * lam
        bx, by, bz = x + d * du, y + d * dv, z + d * dw
        if bz < z_edges[0] or bz >= z_edges[nsub]:
            ledger[row, LEAKED] += part
            continue
        isub = np.searchsorted(z_edges, bz, side="right") - 1
        ledger[row, ACTIVE] += part * vis[isub]
        ledger[row, PASSIVE] += part * (1.0 - vis[isub])
        li = layer_of[isub]
        if li < 0 or scale[isub] <= 0.0:
            continue
        k = voxel_index(bx, by, li, r_edges, r_off, n_r, n_alpha, vox_off)
        if k >= 0:
            out[row, k] += part * scale[isub]


@nb.njit(cache=True)
def pion_interaction(stack: NDArray[np.float64], top: int, row: int, e: float, x: float, y: float, z: float,
                     u: float, v: float, w: float, isub: int, deep: int, lam: float, z_edges: NDArray[np.float64],
                     vis: NDArray[np.float64], scale: NDArray[np.float64], layer_of: NDArray[np.int64],
                     r_edges: NDArray[np.float64], r_off: NDArray[np.int64], n_r: NDArray[np.int64],
                     n_alpha: NDArray[np.int64], vox_off: NDArray[np.int64], out: NDArray[np.float64],
                     ledger: NDArray[np.float64]) -> int:
    """One nuclear interaction (or absorption) of a pion of kinetic energy ``e``; returns the new stack top.

    ``vis`` and ``scale`` (per sub-layer): active share and file MeV per MeV of nucleon energy; ``lam``: λ_I
    of the local medium, mm; ``deep``: the pion's lineage's deepest sub-layer. Pushes the produced pions and π0
    photons (types 3 and 0).
    """
    share = min(1.0, NUCLEAR_SHARE_1GEV * (max(e, 1.0) * 1e-3) ** -NUCLEAR_SHARE_POWER)
    e_pions = (1.0 - share) * e if e >= ABSORPTION_MEV else 0.0
    if e_pions > 0.0:
        mean = MULTIPLICITY_A + MULTIPLICITY_B * math.log(max(e * 1e-3, 1e-3))
        n = max(1, np.random.poisson(max(mean, 1.0)))
        draws = np.empty(n)
        for i in range(n):
            draws[i] = -math.log(1.0 - np.random.random())
        total = draws.sum()
        for i in range(n):
            ei = e_pions * draws[i] / total
            phi = 2.0 * math.pi * np.random.random()
            pt = np.random.gamma(2.0, 0.5 * PT_MEAN_MEV)
            if np.random.random() < NEUTRAL_FRACTION:
                ledger[row, EM_FROM_PI0] += ei
                f = np.random.random()
                ang = math.atan2(pt, math.sqrt(ei * (ei + 2.0 * PI0_MASS)))
                pu, pv, pw = sm.rotate(u, v, w, math.cos(ang), phi)
                half = min(PI0_MASS / max(ei, 1e-9), math.pi / 2)
                for j in range(2):
                    gu, gv, gw = sm.rotate(pu, pv, pw, math.cos(half), phi + j * math.pi)
                    top = push(stack, top, 0, ei * (f if j == 0 else 1.0 - f), x, y, z, gu, gv, gw, isub, deep)
            else:
                ang = math.atan2(pt, math.sqrt(ei * (ei + 2.0 * 139.57)))
                pu, pv, pw = sm.rotate(u, v, w, math.cos(ang), phi)
                top = push(stack, top, 3, ei, x, y, z, pu, pv, pw, isub, deep)
    nuclear = e - e_pions
    ledger[row, INVISIBLE] += INVISIBLE_FRACTION * nuclear
    _nucleons((1.0 - INVISIBLE_FRACTION) * nuclear, x, y, z, lam, row, z_edges, vis, scale, layer_of, r_edges, r_off,
              n_r, n_alpha, vox_off, out, ledger)
    return top
