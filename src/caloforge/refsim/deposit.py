"""Turn per-step energy deposits into voxel energies: sampling fluctuations and spots.

The physics modules (:mod:`~caloforge.refsim.em`, :mod:`~caloforge.refsim.hadron`)
describe each shower as :class:`StepDeposits`: for every longitudinal step and
shower the deposited energy, the expected number of energy spots and a mixture
of radial components f(r) = 2rR²/(r²+R²)² truncated at a cut. This module

1. smears each layer's deposit with a Gamma distribution of shape E[GeV]/c²
   (GFLASH sampling fluctuations, σ/E = c/√E; Gamma shapes add, so smearing a
   layer equals smearing its steps one by one) and converts it to file units;
2. scatters spots: at normal incidence the spot counts per (alpha, r) voxel of a
   layer are one multinomial draw over the energy-weighted mixture of the
   steps' radial distributions (exactly the distribution of independently
   placed spots, at a cost independent of their number); with a tilted axis
   every spot is placed explicitly (:func:`bin_spots`).

Spots beyond the last radial edge (or below the first) are lost: lateral leakage.
Each spot carries E_layer / <N_spots>, so energy is conserved on average while
low-energy layers stay sparse.

References:
    Grindhammer & Peters, hep-ex/0001020 (spots, sampling fluctuations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.refsim.detector import StepGrid

__all__ = ["RadialComponent", "StepDeposits", "bin_deposits", "bin_spots", "stochastic_round"]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class RadialComponent:
    """One radial component, f(r) = 2rR²/(r²+R²)² truncated at ``cut``, arrays (S, N).

    Args:
        weight: Fraction of the step's energy (and spots) in this component.
        radius_mm: R, mm.
        cut_mm: Truncation radius, mm (the profile is renormalised inside it).
    """

    weight: F64
    radius_mm: F64
    cut_mm: F64

    def cdf(self, r_mm: F64) -> F64:
        """CDF at radii ``r_mm`` (broadcast over a trailing axis): (S, N, K) for r of shape (K,)."""
        r2 = r_mm**2
        big = self.radius_mm[..., None] ** 2
        cut2 = self.cut_mm[..., None] ** 2
        norm = cut2 / (cut2 + big)
        return np.minimum(r2 / (r2 + big) / norm, 1.0)

    def sample(self, index: NDArray[np.int64], u: F64) -> F64:
        """Radii (mm) for flat (step*N + shower) ``index`` from uniforms ``u`` by inverting the CDF."""
        big = self.radius_mm.ravel()[index]
        cut = self.cut_mm.ravel()[index]
        v = u * cut**2 / (cut**2 + big**2)
        return big * np.sqrt(v / (1.0 - v))


@dataclass(frozen=True)
class StepDeposits:
    """The deposits of one shower component (EM, hadronic, MIP track) for a chunk.

    Args:
        deposit: Deposited energy per step and shower, MeV, (S, N).
        spots: Expected number of spots per step and shower, (S, N).
        scale: File MeV per deposited MeV, per step (S,); 0 in dead material.
        stochastic: Sampling term c per step, sqrt(GeV) (S,).
        components: Radial mixture; weights sum to 1 per step.
    """

    deposit: F64
    spots: F64
    scale: F64
    stochastic: F64
    components: tuple[RadialComponent, ...]


def stochastic_round(x: F64, rng: np.random.Generator) -> NDArray[np.int64]:
    """Round to floor(x) or floor(x)+1 with probabilities that keep the mean: E[result] = x."""
    return np.floor(x + rng.random(x.shape)).astype(np.int64)


def _layer_energy(dep: StepDeposits, steps: NDArray[np.int64], rng: np.random.Generator) -> F64:
    """Per-step file energies of one layer, (s, N), after the layer's Gamma smearing."""
    deposit = dep.deposit[steps]
    total = deposit.sum(axis=0)
    c = float(np.max(dep.stochastic[steps])) if steps.size else 0.0
    if c > 0:
        shape = total * 1e-3 / c**2
        positive = shape > 0
        smeared = np.zeros_like(total)
        smeared[positive] = rng.gamma(shape[positive]) * c**2 * 1e3
        factor = np.divide(smeared, total, out=np.zeros_like(total), where=positive)
        deposit = deposit * factor
    return deposit * dep.scale[steps, None]


def bin_deposits(geometry: Geometry, grid: StepGrid, dep: StepDeposits, rng: np.random.Generator, out: F64) -> None:
    """Add a component's voxel energies to ``out`` (N, V), normal incidence (multinomial spots).

    Args:
        geometry: The voxel geometry.
        grid: Its step grid (``detector.steps(geometry)``).
        dep: The deposits, (S, N) arrays.
        rng: Random generator.
        out: Accumulator of voxel energies, MeV, shape (N, V), modified in place.
    """
    n = out.shape[0]
    for li, layer in enumerate(geometry.layers):
        steps = grid.layer_steps[li]
        if steps.size == 0:
            continue
        energy = _layer_energy(dep, steps, rng)  # (s, N)
        e_layer = energy.sum(axis=0)
        expected = dep.spots[steps].sum(axis=0)
        if not np.any(e_layer > 0):
            continue
        edges = np.asarray(layer.r_edges)
        cdf = np.zeros((n, edges.size))
        for comp in dep.components:
            w = energy * comp.weight[steps]
            sub = RadialComponent(comp.weight[steps], comp.radius_mm[steps], comp.cut_mm[steps])
            cdf += np.einsum("sn,snk->nk", w, sub.cdf(edges))
        p_r = np.clip(np.diff(cdf, axis=1), 0.0, None) / np.where(e_layer > 0, e_layer, 1.0)[:, None]
        p_vox = np.tile(p_r / layer.n_alpha, (1, layer.n_alpha))
        p_vox /= np.maximum(1.0, p_vox.sum(axis=1, keepdims=True) * (1 + 1e-12))
        pvals = np.concatenate([p_vox, np.clip(1.0 - p_vox.sum(axis=1, keepdims=True), 0.0, None)], axis=1)
        counts_n = stochastic_round(np.where(e_layer > 0, expected, 0.0), rng)
        counts = rng.multinomial(counts_n, pvals)[:, :-1]
        per_spot = np.divide(e_layer, expected, out=np.zeros_like(e_layer), where=expected > 0)
        out[:, geometry.layer_slice(li)] += counts * per_spot[:, None]


def bin_spots(
    geometry: Geometry, grid: StepGrid, dep: StepDeposits, rng: np.random.Generator, out: F64, shift_per_mm: F64
) -> None:
    """Like :func:`bin_deposits` but placing every spot, for a shower axis tilted in the x-z plane.

    A spot at perpendicular depth z (uniform within its step) is displaced by
    ``z * shift_per_mm`` mm along x (alpha = 0) from the r = 0 mesh axis.

    Args:
        geometry: The voxel geometry.
        grid: Its step grid.
        dep: The deposits, (S, N) arrays.
        rng: Random generator.
        out: Accumulator (N, V), modified in place.
        shift_per_mm: cot(theta) per shower, (N,).
    """
    n = out.shape[0]
    for li, layer in enumerate(geometry.layers):
        steps = grid.layer_steps[li]
        if steps.size == 0:
            continue
        energy = _layer_energy(dep, steps, rng)  # (s, N)
        expected = dep.spots[steps]
        counts = stochastic_round(np.where(energy > 0, expected, 0.0), rng).ravel()
        if counts.sum() == 0:
            continue
        per_spot = np.divide(energy, expected, out=np.zeros_like(energy), where=expected > 0).ravel()
        index = np.repeat(np.arange(counts.size), counts)  # flat (step, shower) of each spot
        m = index.size
        comp_u = rng.random(m)
        r = np.zeros(m)
        lower = np.zeros(m)
        for comp in dep.components:
            sub = RadialComponent(comp.weight[steps], comp.radius_mm[steps], comp.cut_mm[steps])
            w = sub.weight.ravel()[index]
            take = (comp_u >= lower) & (comp_u < lower + w)
            r[take] = sub.sample(index[take], rng.random(int(take.sum())))
            lower = lower + w
        phi = rng.uniform(-np.pi, np.pi, m)
        s_of = steps[index // n]
        shower = index % n
        z = grid.z_mm[s_of] + rng.random(m) * (grid.z_mm[s_of + 1] - grid.z_mm[s_of])
        x = r * np.cos(phi) + z * shift_per_mm[shower]
        y = r * np.sin(phi)
        radius = np.hypot(x, y)
        edges = np.asarray(layer.r_edges)
        rbin = np.searchsorted(edges, radius, side="right") - 1
        inside = (rbin >= 0) & (rbin < layer.n_r)
        abin = np.minimum(
            ((np.arctan2(y, x) + np.pi) / (2 * np.pi) * layer.n_alpha).astype(np.int64), layer.n_alpha - 1
        )
        nv = layer.n_voxels
        voxel = shower * nv + abin * layer.n_r + rbin
        binned = np.bincount(voxel[inside], weights=per_spot[index][inside], minlength=n * nv)
        out[:, geometry.layer_slice(li)] += binned.reshape(n, nv)
