# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""Replay of frozen sub-showers (:mod:`.library`) at the hybrid's hand-offs (``handoff="library"``).

For each hand-off that starts in a slab of the library's stack (the detector's EM medium):

1. the entries: photon or electron ones (a positron uses an electron's, scaled to its energy plus the
   2 m_e of its annihilation), of the angle bin (cos θ >= 0.97: normal incidence) and of the start phase
   within the sampling cell; then a random one of those within ``ENERGY_MATCH`` of the hand-off's energy (at
   least the ``MATCH_ENTRIES`` nearest), from the shower's own stream (``stream=2`` of
   :func:`~caloforge.refsim.cascade.streams.shower_seeds`: files do not depend on --jobs);
2. each stored point goes to the active sub-layer that is as many cells after (or, backscatter, before) the
   hand-off's cell as it was after the entry's start cell, at its stored position: in its polar bin at
   the azimuth's centre and, up to ``FINE_MM``, at one area fraction drawn per replayed entry (points that
   lie together stay together, and the mean density is uniform inside each bin instead of a comb at the
   bins' centres, which moved 5 % of the hits of a dataset-2 ring across its edge at 100 GeV); beyond, at a
   position drawn per point,
   rotated by a random azimuth (normal-incidence entries) or mirrored at random, sheared along the
   particle's direction by (tan θ - tan θ_entry) × depth, turned to the particle's azimuth and moved to
   its position; energies × E / E_entry × the sub-layer's calibration, binned with ``voxel_index``;
3. the ledger: the hand-off's energy leaves ``handoff`` for ``active`` (points read in the stack),
   ``passive`` (the entry's passive energy; points in cells outside the run of library slabs but inside
   the detector, which the library does not describe), ``leaked`` (the entry's leak; points beyond the
   detector's first or last active sub-layer, and the albedo of the library's stack behind the detector's back:
   points whose lineage went deeper than the detector's last cell, which ends the detector) and ``mass``: per
   shower the ledger still closes exactly.

Approximations (``docs/refsim.md``, "The frozen-shower library"): the cell structure is the library's,
hand-offs starting outside the library's stack, or so close to the end of a run of its slabs that other
read-out slabs follow (EMB3 then the Tile) that their sub-shower would reach them, fall back to GFLASH; what
still crosses into other material is counted as unread passive energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.errors import ConfigError
from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.kernel import ACTIVE, GAMMA, HANDOFF, LEAKED, MASS, PASSIVE
from caloforge.refsim.cascade.library import (
    ANGLE_EDGE_COS,
    ENERGY_MATCH,
    FINE_MM,
    MATCH_ENTRIES,
    N_ALPHA,
    R_EDGES_MM,
    ShowerLibrary,
)
from caloforge.refsim.cascade.sampling import seed_numba
from caloforge.refsim.cascade.steps import voxel_index
from caloforge.refsim.cascade.tables import Layout
from caloforge.refsim.detector import Detector
from caloforge.refsim.materials import Material

__all__ = ["ReplayMap", "replay_handoffs", "replay_map"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class ReplayMap:
    """The detector's sub-layers as the replay sees them (per sub-layer unless said otherwise).

    Attributes:
        in_library: 1 where the sub-layer's slab is made of the library's stack.
        cell_z0: Depth where the sub-layer's sampling cell starts, mm.
        cell_ord: Active ordinal (index into ``act_sub``) of the active sub-layer of that cell.
        run_lo, run_hi: Active ordinals of the contiguous run of library slabs around the sub-layer.
        run_open: 1 where other read-out slabs follow the run (a sub-shower reaching its end would go on there).
        act_sub: Sub-layer of each active ordinal.
    """

    in_library: I64
    cell_z0: F64
    cell_ord: I64
    run_lo: I64
    run_hi: I64
    run_open: I64
    act_sub: I64


def replay_map(detector: Detector, layout: Layout, material: Material) -> ReplayMap:
    """Cells, active ordinals and runs of ``material``'s slabs in ``layout`` (``build_layout``'s sub-layers)."""
    period = sum(p.thickness_mm for p in material.components)
    n_sub = layout.material.size
    act_sub = np.flatnonzero(layout.active > 0)
    ordinal = np.full(n_sub, -1, dtype=np.int64)
    ordinal[act_sub] = np.arange(act_sub.size)
    lib_slab = np.array([s.material == material for s in detector.slabs])
    in_lib = lib_slab[layout.slab].astype(np.int64)
    first_sub = {int(s): int(np.flatnonzero(layout.slab == s)[0]) for s in np.unique(layout.slab)}
    cell_z0, cell_ord = np.zeros(n_sub), np.zeros(n_sub, dtype=np.int64)
    run_lo, run_hi = np.zeros(n_sub, dtype=np.int64), np.zeros(n_sub, dtype=np.int64)
    cell_id = np.full(n_sub, -1, dtype=np.int64)
    for i in range(n_sub):
        if in_lib[i]:
            z0 = layout.z_edges[first_sub[int(layout.slab[i])]]
            cell_id[i] = math.floor((layout.z_edges[i] - z0) / period + 1e-9)
            cell_z0[i] = z0 + cell_id[i] * period
    for i in range(n_sub):
        if not in_lib[i]:
            continue
        same = np.flatnonzero((layout.slab == layout.slab[i]) & (cell_id == cell_id[i]) & (layout.active > 0))
        cell_ord[i] = ordinal[same[0]] if same.size else min(int(np.searchsorted(act_sub, i)), act_sub.size - 1)
    i = 0
    while i < n_sub:  # contiguous runs of library sub-layers
        if not in_lib[i]:
            i += 1
            continue
        j = i
        while j < n_sub and in_lib[j]:
            j += 1
        acts = ordinal[i:j][ordinal[i:j] >= 0]
        if acts.size == 0:
            msg = (f"expected active sub-layers in the slabs of {material.name!r} but got none, "
                   "in the shower library's replay")
            raise ConfigError(msg)
        run_lo[i:j], run_hi[i:j] = acts.min(), acts.max() + 1
        i = j
    run_open = ((run_hi < act_sub.size) & (in_lib > 0)).astype(np.int64)
    return ReplayMap(in_lib, cell_z0, cell_ord, run_lo, run_hi, run_open, act_sub.astype(np.int64))


@nb.njit(cache=True)
def _replay(rows: F64, use: I64, seeds: I64, e_edges: F64, sorted_ids: I64, sorted_e: F64, n_sorted: I64,
            match: float, match_min: int, tan_e: F64, leaked: F64, mass: F64, offset: I64, kk: NDArray[np.int16],
            ir: NDArray[np.int16], ia: NDArray[np.int16], deeper: NDArray[np.int16], frac: NDArray[np.float32],
            period: float, r_grid: F64, fine: float, n_alpha_lib: int, angle_edge: float,
            reach: I64, z_edges: F64, cell_z0: F64, cell_ord: I64, run_lo: I64, run_hi: I64, run_open: I64,
            act_sub: I64, layer: I64,
            calib: F64, r_edges: F64, r_off: I64, n_r: I64, n_alpha: I64, vox_off: I64, out: F64,
            ledger: F64) -> None:
    n_e, n_ph = e_edges.size - 1, sorted_ids.shape[2]
    log_lo = math.log(e_edges[0])
    dlog = math.log(e_edges[n_e] / e_edges[0]) / n_e
    n_act, n_sub = act_sub.size, z_edges.size - 1
    d_alpha = 2.0 * math.pi / n_alpha_lib
    last = -1
    for h in range(rows.shape[0]):
        if use[h] == 0:
            continue
        row = int(rows[h, 0])
        if row != last:
            seed_numba(seeds[row])
            last = row
        e, x0, y0, z0 = rows[h, 2], rows[h, 3], rows[h, 4], rows[h, 5]
        u, v, w = rows[h, 6], rows[h, 7], rows[h, 8]
        isub = min(max(np.searchsorted(z_edges, z0, side="right") - 1, 0), n_sub - 1)
        t = 0 if int(rows[h, 1]) == GAMMA else 1
        b = min(max(int((math.log(e) - log_lo) / dlog), 0), n_e - 1)
        a = 0 if w >= angle_edge else 1
        if run_open[isub] and cell_ord[isub] + reach[t, b] >= run_hi[isub]:
            use[h] = 0  # it would reach other slabs than the library's: left to GFLASH
            continue
        p = min(max(int((z0 - cell_z0[isub]) / period * n_ph), 0), n_ph - 1)
        n = n_sorted[t, a, p]  # an entry of energy within a factor ``match`` (or of the ``match_min`` nearest)
        lo = np.searchsorted(sorted_e[t, a, p, :n], e / match)
        hi = np.searchsorted(sorted_e[t, a, p, :n], e * match)
        if hi - lo < match_min:
            at = np.searchsorted(sorted_e[t, a, p, :n], e)
            lo = max(0, min(at - match_min // 2, n - match_min))
            hi = min(n, lo + match_min)
        ent = sorted_ids[t, a, p, min(lo + int(np.random.random() * (hi - lo)), hi - 1)]
        psi = 2.0 * math.pi * np.random.random() if a == 0 else 0.0
        flip = -1.0 if np.random.random() < 0.5 else 1.0
        shift = np.random.random()  # one radial position inside the fine bins for the whole entry
        cps, sps = math.cos(psi), math.sin(psi)
        sp = math.sqrt(u * u + v * v)
        cph, sph = (u / sp, v / sp) if sp > 0.0 else (1.0, 0.0)
        dtan = sp / max(w, 1e-12) - tan_e[ent]
        base, lo, hi = cell_ord[isub], run_lo[isub], run_hi[isub]
        act_e, pas_e, leak_e = 0.0, 0.0, 0.0
        for q in range(offset[ent], offset[ent + 1]):
            f = frac[q] * e
            j = base + kk[q]
            if j + deeper[q] >= n_act:  # its lineage went beyond the detector's back: it leaked there
                leak_e += f
                continue
            if ir[q] < 0 or j < lo or j >= hi:  # passive energy, or outside the run of library slabs
                if 0 <= j < n_act:
                    pas_e += f
                else:
                    leak_e += f
                continue
            act_e += f
            s = act_sub[j]
            li = layer[s]
            if li < 0:
                continue
            r_lo, r_hi = r_grid[ir[q]], r_grid[ir[q] + 1]
            u_r = shift if r_hi <= fine else np.random.random()
            r = math.sqrt(r_lo * r_lo + u_r * (r_hi * r_hi - r_lo * r_lo))
            al = (ia[q] + 0.5) * d_alpha - math.pi  # the bin's centre (voxel_index's azimuth bins start at -π)
            px, py = r * math.cos(al), r * math.sin(al)
            px, py = cps * px - sps * py, flip * (sps * px + cps * py)
            px += (0.5 * (z_edges[s] + z_edges[s + 1]) - z0) * dtan
            vox = voxel_index(x0 + cph * px - sph * py, y0 + sph * px + cph * py, li, r_edges, r_off, n_r, n_alpha,
                              vox_off)
            if vox >= 0:
                out[row, vox] += f * calib[s]
        ledger[row, HANDOFF] -= e
        ledger[row, ACTIVE] += act_e
        ledger[row, PASSIVE] += pas_e
        ledger[row, LEAKED] += leak_e + e * leaked[ent]
        ledger[row, MASS] += e * mass[ent]


def replay_handoffs(rows: F64, use: I64, seeds: I64, library: ShowerLibrary, rmap: ReplayMap, layout: Layout,
                    out: F64, ledger: F64, reach: I64) -> None:
    """Add the library sub-showers of the hand-off ``rows`` with ``use`` set to ``out`` (file MeV) and ``ledger``.

    Args:
        rows: Hand-off rows of the kernel (shower row, type, E, x, y, z, u, v, w, ...), shower-ordered.
        use: 1 for the rows to replay (their start is in a library slab); set to 0 here for those left to GFLASH
            (too close to the end of a run of library slabs that other read-out slabs follow).
        seeds: Per-shower seeds of the replay (one per row of ``out``).
        library: The frozen showers of the stack.
        rmap: The detector's cells and runs (:func:`replay_map`).
        layout: The kernel's layout (calibrations, voxel binning).
        out: Voxel energies, modified in place.
        ledger: Energy ledger, modified in place (hand-off energy moved to active, passive, leaked, mass).
        reach: ``library.reach()`` (cached by the caller).
    """
    sorted_ids, sorted_e, n_sorted = library.by_energy()
    _replay(rows, use, seeds, library.e_edges, sorted_ids, sorted_e, n_sorted, ENERGY_MATCH, MATCH_ENTRIES,
            library.tan_theta, library.leaked, library.mass, library.offset, library.k, library.ir, library.ia,
            library.deeper, library.frac, library.period_mm, R_EDGES_MM, FINE_MM, N_ALPHA, ANGLE_EDGE_COS, reach,
            layout.z_edges, rmap.cell_z0, rmap.cell_ord, rmap.run_lo, rmap.run_hi, rmap.run_open, rmap.act_sub,
            layout.layer, layout.calibration, layout.r_edges, layout.r_offset, layout.n_r, layout.n_alpha,
            layout.voxel_offset, out, ledger)
