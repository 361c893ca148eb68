# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""The hybrid: GFLASH sub-showers started where transported particles fell below the split.

All hand-offs of a chunk are deposited in one batched call:

1. per hand-off, the GFLASH longitudinal parameters (T, α) from the correlated log-normal laws
   of :func:`caloforge.refsim.em.mean_log_parameters`, with the two normals the kernel drew from
   the shower's own stream; photons first fly an exponential conversion depth (``EmModel``);
2. (numba) energy spots, N = f (10.3/c_s) E^0.959 of them (GFLASH; f = ``spot_fraction``), at gamma-distributed depths
   along the particle's direction, walking the slabs' effective radiation lengths;
3. the GFLASH radial parameters at each spot's depth (:func:`caloforge.refsim.em.radial_parameters`);
4. (numba) radius and azimuth around the particle's direction, binning into the voxels with the
   stack's transported response (:mod:`.calibrate`); then each voxel's hand-off energy e fluctuates by a
   Gamma law of shape e[GeV]/c_s² and scale c_s² (c_s: the layer's calibrated sampling term). Gamma laws of
   one scale add: this is each spot fluctuating by Gamma(e_spot/c_s², c_s²), drawn once per voxel instead of
   once per spot (per spot, ds1 photons took 22 % more CPU), and a layer's total keeps the law Gamma(E/c_s², c_s²)
   of the whole layer smeared at once, as before 2026-12-07. That left every voxel a whole number of equal
   spots (ds1 photons: voxel energies in steps of 18.3 MeV, a comb no Geant4 calorimeter shows and no
   continuous generative model can learn).

Steps 2 and 4 draw from per-shower streams, so the result does not depend on the chunking.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.refsim.cascade.calibrate import slab_calibrations
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.kernel import GAMMA
from caloforge.refsim.cascade.sampling import basis, seed_numba
from caloforge.refsim.cascade.steps import voxel_index
from caloforge.refsim.cascade.tables import Layout
from caloforge.refsim.detector import Detector
from caloforge.refsim.em import EmModel, mean_log_parameters, radial_parameters

__all__ = ["deposit_handoffs", "slab_responses"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

SPOT_BATCH = 2_000_000
"""Energy spots placed per batch (whole showers): bounds the memory of a chunk of TeV showers (~150 B a spot)."""


def slab_responses(detector: Detector, geometry: Geometry, config: CascadeConfig) -> tuple[F64, F64, I64]:
    """Per slab: file MeV per MeV of a parameterised deposit, the sampling term, and the geometry layer (or -1)."""
    position = {lid: i for i, lid in enumerate(geometry.layer_ids)}
    scale, stoch, layer = [], [], []
    for slab, (calib, fraction, c_s) in zip(detector.slabs, slab_calibrations(detector, config), strict=True):
        read = slab.layer_id is not None and slab.layer_id in position and calib > 0
        scale.append(fraction * calib if read else 0.0)
        stoch.append(c_s if read else 0.0)
        layer.append(position[slab.layer_id] if read and slab.layer_id is not None else -1)
    return np.array(scale), np.array(stoch), np.array(layer, dtype=np.int64)


@nb.njit(cache=True)
def _place_depths(rows: F64, seeds: I64, n_mean: F64, alpha: F64, beta: F64, t0: F64, slab_z: F64,
                  slab_x0: F64) -> tuple[I64, F64, F64, I64, F64]:
    n_total = 0
    counts = np.empty(rows.shape[0], dtype=np.int64)
    last = -1
    for h in range(rows.shape[0]):
        row = int(rows[h, 0])
        if row != last:
            seed_numba(seeds[row])
            last = row
        counts[h] = max(1, math.floor(n_mean[h] + np.random.random()))
        n_total += counts[h]
    owner = np.empty(n_total, dtype=np.int64)
    depth = np.empty(n_total)
    path = np.empty(n_total)
    slab = np.empty(n_total, dtype=np.int64)
    energy = np.empty(n_total)
    k = 0
    last = -1
    for h in range(rows.shape[0]):
        row = int(rows[h, 0])
        if row != last:
            seed_numba(seeds[row] ^ 0x2545F491)
            last = row
        z0, w = rows[h, 5], rows[h, 8]
        j0 = np.searchsorted(slab_z, z0, side="right") - 1
        for _ in range(counts[h]):
            t = t0[h] + np.random.gamma(alpha[h], 1.0 / beta[h])
            j, z, left = j0, z0, t * w  # X0 still to cross, measured along the axis
            while j < slab_x0.size:
                cross = (slab_z[j + 1] - z) / slab_x0[j]
                if cross >= left:
                    z += left * slab_x0[j]
                    break
                left -= cross
                z = slab_z[j + 1]
                j += 1
            owner[k], depth[k], slab[k] = h, t, j
            path[k] = (z - z0) / w
            energy[k] = rows[h, 2] / counts[h]
            k += 1
    return owner, depth, path, slab, energy


@nb.njit(cache=True)
def _bin_spots(rows: F64, seeds: I64, owner: I64, path: F64, slab: I64, energy: F64, p_core: F64, r_core: F64,
               r_tail: F64, r_cut: F64, scale: F64, stoch: F64, slab_layer: I64, r_edges: F64, r_off: I64, n_r: I64,
               n_alpha: I64, vox_off: I64, n_layers: int, out: F64) -> None:
    frame = np.empty((rows.shape[0], 4))  # x, y components of the two directions perpendicular to each hand-off's
    for h in range(rows.shape[0]):
        e1x, e1y, _, e2x, e2y, _ = basis(rows[h, 6], rows[h, 7], rows[h, 8])
        frame[h, 0], frame[h, 1], frame[h, 2], frame[h, 3] = e1x, e1y, e2x, e2y
    extra = np.zeros(out.shape)
    layer_c = np.zeros((out.shape[0], n_layers))
    last = -1
    for k in range(owner.size):
        h = owner[k]
        row = int(rows[h, 0])
        if row != last:
            seed_numba(seeds[row])
            last = row
        j = slab[k]
        big = r_core[k] if np.random.random() < p_core[k] else r_tail[k]
        v = np.random.random() * r_cut[k] ** 2 / (r_cut[k] ** 2 + big**2)
        r = big * math.sqrt(v / (1.0 - v))
        phi = 2.0 * math.pi * np.random.random()
        if j >= slab_layer.size or slab_layer[j] < 0:
            continue
        li = slab_layer[j]
        c, s = r * math.cos(phi), r * math.sin(phi)
        x = rows[h, 3] + path[k] * rows[h, 6] + c * frame[h, 0] + s * frame[h, 2]
        y = rows[h, 4] + path[k] * rows[h, 7] + c * frame[h, 1] + s * frame[h, 3]
        vox = voxel_index(x, y, li, r_edges, r_off, n_r, n_alpha, vox_off)
        if vox < 0:
            continue
        e = energy[k] * scale[j]
        extra[row, vox] += e
        layer_c[row, li] = max(layer_c[row, li], stoch[j])
    for row in range(int(rows[0, 0]), int(rows[-1, 0]) + 1):  # sampling fluctuations: Gamma(e/c², c²) per voxel
        seed_numba(seeds[row] ^ 0x5BD1E995)
        for li in range(n_layers):
            c = layer_c[row, li]  # 0: no hand-off energy in this layer (or no sampling term)
            if c <= 0.0:
                continue
            for i in range(vox_off[li], vox_off[li] + n_alpha[li] * n_r[li]):
                if extra[row, i] > 0.0:
                    shape = extra[row, i] * 1e-3 / (c * c)
                    extra[row, i] *= np.random.gamma(shape, 1.0) / shape
    out += extra


def deposit_handoffs(rows: F64, seeds: I64, detector: Detector, geometry: Geometry, layout: Layout,
                     config: CascadeConfig, out: F64, em_model: EmModel | None = None) -> None:
    """Add the parameterised sub-showers of the hand-off ``rows`` (from the kernel) to ``out`` (N, V), file MeV.

    Args:
        rows: Hand-off rows (shower row, type, E, x, y, z, u, v, w, two normals, a uniform), shower-ordered.
        seeds: Per-shower seeds of this use (one per row of ``out``).
        detector: The detector (slabs, EM medium, sampling term for the spot count).
        geometry: Voxel geometry.
        layout: The kernel's layout (voxel binning arrays).
        config: Cuts and split (the calibration energy).
        out: Voxel energies, modified in place.
        em_model: GFLASH choices (caps, clamps, conversion depth, spot law, radial cut).
    """
    model = em_model or EmModel(min_alpha=config.handoff_min_alpha, radial_cut_rm=config.handoff_radial_cut_rm)
    medium = detector.em_medium
    energy = rows[:, 2]
    mu_t, mu_a, sig_t, sig_a, rho = mean_log_parameters(energy, medium, model.sigma_cap)
    a, b = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    z1, z2 = rows[:, 9], rows[:, 10]
    t_max = np.maximum(np.exp(mu_t + sig_t * (a * z1 + b * z2)), model.min_t)
    alpha = np.maximum(np.exp(mu_a + sig_a * (a * z1 - b * z2)), model.min_alpha)
    beta = (alpha - 1) / t_max
    alpha_mean = np.exp(mu_a)
    t_scale = alpha / beta * (alpha_mean - 1) / alpha_mean
    t0 = np.where(rows[:, 1] == GAMMA, -np.log1p(-rows[:, 11]) * model.conversion_x0, 0.0)
    e_gev = energy * 1e-3
    n_mean = config.spot_fraction * model.spot_coefficient / detector.em_stochastic * np.power(e_gev,
                                                                                                 model.spot_exponent)
    slab_z = np.concatenate([[0.0], np.cumsum([s.thickness_mm for s in detector.slabs])])
    slab_x0 = np.array([s.material.x0_mm for s in detector.slabs])
    rm_of = np.array([s.rm_mm for s in detector.slabs] + [1.0])
    scale, stoch, slab_layer = slab_responses(detector, geometry, config)
    cum = np.concatenate([[0.0], np.cumsum(n_mean)])
    bounds = [0]
    for start in np.flatnonzero(np.diff(rows[:, 0])) + 1:  # batches of whole showers, about SPOT_BATCH spots each
        if cum[start] - cum[bounds[-1]] > SPOT_BATCH:
            bounds.append(int(start))
    bounds.append(rows.shape[0])
    for lo, hi in itertools.pairwise(bounds):
        sl = slice(lo, hi)
        owner, depth, path, slab, spot_e = _place_depths(rows[sl], seeds, n_mean[sl], alpha[sl], beta[sl], t0[sl],
                                                         slab_z, slab_x0)
        inside = slab < len(detector.slabs)
        rm = rm_of[slab]
        tau = np.clip(depth / t_scale[sl][owner], 0.0, 50.0)  # beyond 50 centres of gravity the profile is empty
        rc, rt, p = radial_parameters(tau, e_gev[sl][owner], medium)
        _bin_spots(rows[sl], seeds, owner, np.where(inside, path, 0.0), slab, spot_e, p, rc * rm, rt * rm,
                   model.radial_cut_rm * rm, scale, stoch, slab_layer, layout.r_edges, layout.r_offset, layout.n_r,
                   layout.n_alpha, layout.voxel_offset, geometry.n_layers, out)
