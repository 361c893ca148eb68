"""The frozen-shower library of the hybrid (``handoff="library"``): transported sub-showers, stored once.

As ATLAS's frozen showers: instead of parameterising a particle below the split, the hybrid
replays a sub-shower that full transport made earlier (:mod:`.replay`). The entries are
electron and photon sub-showers (positrons use the electrons'), fully transported by the
kernel (split 0) in the real sub-layers of one sampling stack, started

- at ``LIBRARY_ENERGY_BINS`` log-spaced energy bins from ``handoff_min_mev`` to the split (each entry
  at an energy drawn log-uniformly inside its bin),
- in ``LIBRARY_ANGLE_BINS`` bins of the direction cosine (hand-offs have cos θ ≥ ``handoff_min_cos``;
  transport puts 99.9 % of the hand-off energy at cos θ ≥ 0.99, so bin 0 holds normal incidence and
  bin 1 one tilted angle, with fewer entries),
- in ``LIBRARY_PHASES`` bins of the start depth within the sampling cell (each entry at a depth drawn
  uniformly inside its bin),

with :func:`entries_per_bin` entries per (type, energy, phase) bin at normal incidence (enough for the
wanted precision of the library's mean, at least ``library_entries``). An entry keeps
its deposits in the ACTIVE sub-layers only, relative to its start: the active sub-layer crossed
(counted from the active layer of the start cell: one per cell, negative for the backscatter behind it), the
cells beyond it that the deposit's lineage reached (its ancestors' deepest cell: the albedo of the stack), and
the position on a polar grid around the start (0.1 mm bins up to 2 mm, 0.25 mm to 10, 0.5 mm to 30, 1 mm to
50, coarse beyond); the passive energy is kept per cell (for the ledger only), with the leaked energy and the
rest-mass balance, as fractions of the entry's energy. The replay (:mod:`.replay`) draws, per hand-off, an
entry within ``ENERGY_MATCH`` of its energy.

The library depends on the stack and the transport settings only (not on the voxel geometry), with a fixed
seed; :mod:`.library_cache` keeps it on disk and in memory.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.errors import ConfigError
from caloforge.refsim.cascade.calibrate import stack_response
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.cascade.kernel import ELECTRON, GAMMA, LEAKED, LEDGER, transport_from
from caloforge.refsim.cascade.streams import config_array, shower_seeds
from caloforge.refsim.cascade.tables import build_tables
from caloforge.refsim.detector import Detector
from caloforge.refsim.materials import Material

__all__ = [
    "BUILD_PARTS",
    "ENERGY_MATCH",
    "FINE_MM",
    "LIBRARY_ANGLE_BINS",
    "LIBRARY_ANGLE_COS",
    "LIBRARY_ARRAYS",
    "LIBRARY_ENERGY_BINS",
    "LIBRARY_PHASES",
    "LIBRARY_SEED",
    "MATCH_ENTRIES",
    "ShowerLibrary",
    "build_library",
    "entries_per_bin",
    "uses_library",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

LIBRARY_ENERGY_BINS = 24
"""Log-spaced energy bins from ``handoff_min_mev`` to the split, each end widened by ``ENERGY_MATCH`` (5 MeV - 1 GeV:
a factor 1.26 a bin)."""
ENERGY_MATCH = 1.05
"""The replay draws an entry within this factor of the hand-off's energy (at least ``MATCH_ENTRIES`` of the nearest):
the energy scaling of an entry also scales its shape (a lower-energy shower is shallower, hits fewer voxels and has
a larger relative spread), so a whole bin's factor (1.26) would show (1 GeV electrons: 3 % fewer hit voxels, 10 %
more relative spread)."""
MATCH_ENTRIES = 8
"""Least candidates of the replay's energy match (where entries are sparse: the tilted angle bin)."""
LIBRARY_PHASES = 4
"""Bins of the start depth within the sampling cell."""
LIBRARY_ANGLE_COS = (1.0, 0.8)
"""Direction cosine of the entries of each angle bin; a hand-off with cos θ >= 0.97 uses bin 0."""
LIBRARY_ANGLE_BINS = len(LIBRARY_ANGLE_COS)
ANGLE_EDGE_COS = 0.97
TILTED_ENTRIES = 4
"""Entries per bin of the tilted angle (0.05 % of the hand-off energy is below cos θ = 0.97)."""
LIBRARY_SEED = 30517
"""Fixed seed of the library's sub-showers (the library is part of the model, not of a run)."""
BACK_X0, FORWARD_X0 = 12.0, 40.0
"""Stack before / after the start point in the build, X0. Behind: the backscatter of a 100 GeV shower's sub-showers
reaches its first layers from up to 12 X0 deeper (with 4, ds2's layer 0 had 15 % less energy than full transport).
After: deeper than the deepest detector, Par04's 36.3 X0, since a sub-shower handed off in the first layers feeds
the last ones (with 32, 100 GeV ds2 electrons had 3-10 % fewer hits in layers 36-44). The detector's back is not
the stack's: each point keeps how many cells deeper its lineage went (``deeper``), and the replay drops, as
leaked, the points whose lineage went beyond the detector's last cell (kept, that albedo gave 100 GeV ds2
electrons 14-23 % more energy in layer 44 than full transport)."""
R_EDGES_MM = np.concatenate([np.arange(0.0, 2.0, 0.1), np.arange(2.0, 10.0, 0.25), np.arange(10.0, 30.0, 0.5),
                             np.arange(30.0, 50.0, 1.0), np.arange(50.0, 150.0, 10.0), np.arange(150.0, 400.0, 50.0),
                             [400.0, 4001.0]])
"""Radial grid of the stored deposits around the start, mm (everything inside the kernel's world): fine up to
``FINE_MM``."""
FINE_MM = 50.0
"""Within this radius the replay puts every point of an entry at one area fraction of its bin, drawn per replayed
entry; beyond, it draws a position inside the coarse bin per point. A position drawn per point scatters a point away
from its neighbours, which in transport mostly lie in the same voxel: with 0.5-5 mm bins, drawn positions gave 1 GeV
electrons 2.5 % more hit voxels than transport. Bin centres keep neighbours together but move a bin's energy across
a voxel edge inside it whole (100 GeV ds2 electrons: 5 % of the hits of the ring at 32.6-37.2 mm)."""
N_ALPHA = 24
"""Azimuthal bins of the stored deposits (the replay puts a point at its bin's centre, the entry turned by a random
azimuth)."""
REACH_QUANTILE = 0.95
"""A sub-shower's reach: the cells after its start holding this share of its bin's mean active energy."""
BUILD_PARTS = 8
"""Parts of the build per job (each reports progress; the library does not depend on them)."""
ROWS_PER_CALL = 24
"""Sub-showers per kernel call in the build (bounds the grid's memory: ~2 MB a shower)."""
BACK_ROWS = 1 << 18
"""First length of the build's albedo list (deposits whose lineage went deeper; grown when a call needs more)."""


@dataclass(frozen=True)
class ShowerLibrary:
    """Entries (rows) and their deposit points, flat.

    Attributes:
        period_mm: Sampling period of the stack.
        e_edges: Energy bin edges, MeV (LIBRARY_ENERGY_BINS + 1).
        index: Entry ids per (type 0 photon / 1 electron, energy bin, angle bin, phase bin), padded with -1,
            shape (2, n_e, n_angle, n_phase, n_max).
        count: Entries in each bin (2, n_e, n_angle, n_phase).
        energy: Each entry's energy, MeV; ``tan_theta``: its tan θ; ``leaked``, ``mass``: fractions of its energy.
        offset: Start of each entry's points (n_entries + 1).
        k: Active sub-layer of each point, counted from the start cell's (int16).
        ir, ia: Polar bin of each point (int16); ``ir == -1``: the passive energy of cell ``k`` (ledger only).
        deeper: Cells beyond the point's own that the lineage of its energy reached (int16; > 0: albedo).
        frac: Energy of each point as a fraction of the entry's (float32).
        build_seconds: Time the build took (0 when loaded from the cache).
    """

    period_mm: float
    e_edges: F64
    index: I64
    count: I64
    energy: F64
    tan_theta: F64
    leaked: F64
    mass: F64
    offset: I64
    k: NDArray[np.int16]
    ir: NDArray[np.int16]
    ia: NDArray[np.int16]
    deeper: NDArray[np.int16]
    frac: NDArray[np.float32]
    build_seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        """Memory of the arrays, bytes."""
        return sum(getattr(self, n).nbytes for n in LIBRARY_ARRAYS)

    def reach(self) -> I64:
        """Per (particle, energy bin): cells after the start cell holding ``REACH_QUANTILE`` of the bin's mean
        active profile at normal incidence (the replay keeps a library slab run's end this far away)."""
        n_types, n_bins = int(self.count.shape[0]), int(self.count.shape[1])
        out = np.zeros((n_types, n_bins), dtype=np.int64)
        owner = np.repeat(np.arange(self.energy.size), np.diff(self.offset))
        act = (self.ir >= 0) & (self.k >= 0)
        for t in range(n_types):
            for b in range(n_bins):
                ids = self.index[t, b, 0].ravel()
                keep = act & np.isin(owner, ids[ids >= 0])
                profile = np.bincount(self.k[keep], weights=self.frac[keep].astype(np.float64))
                if profile.sum() > 0:
                    out[t, b] = int(np.searchsorted(np.cumsum(profile), REACH_QUANTILE * profile.sum())) + 1
        return out

    def by_energy(self) -> tuple[I64, F64, I64]:
        """Per (particle, angle bin, phase bin) its entries sorted by energy: ids (padded with -1), their energies
        (padded with +inf), and their number; shapes (2, n_angle, n_phase, n) and (2, n_angle, n_phase)."""
        n_t, _, n_a, n_p, _ = self.index.shape
        width = int(self.count.sum(axis=1).max())
        ids = np.full((n_t, n_a, n_p, width), -1, dtype=np.int64)
        energy = np.full((n_t, n_a, n_p, width), np.inf)
        number = np.zeros((n_t, n_a, n_p), dtype=np.int64)
        for t in range(n_t):
            for a in range(n_a):
                for p in range(n_p):
                    got = self.index[t, :, a, p].ravel()
                    got = got[got >= 0]
                    got = got[np.argsort(self.energy[got], kind="stable")]
                    ids[t, a, p, :got.size], energy[t, a, p, :got.size] = got, self.energy[got]
                    number[t, a, p] = got.size
        return ids, energy, number

    @property
    def n_points(self) -> int:
        """Stored deposit points."""
        return int(self.frac.size)


LIBRARY_ARRAYS = ("e_edges", "index", "count", "energy", "tan_theta", "leaked", "mass", "offset", "k", "ir", "ia",
                  "deeper", "frac")
"""The array fields of :class:`ShowerLibrary` (its memory; what the cache file holds besides ``period_mm``)."""

def uses_library(detector: Detector, config: CascadeConfig) -> bool:
    """Whether ``config``'s hand-offs replay the library in ``detector`` (``handoff`` ``library``, or ``auto``
    with every read-out slab made of the detector's EM stack)."""
    if not config.hybrid or config.handoff == "gflash":
        return False
    return config.handoff == "library" or all(s.material == detector.em_medium for s in detector.slabs
                                              if s.readout is not None)


def _block(material: Material) -> tuple[F64, I64, I64, I64, list[str]]:
    """Sub-layers of the build's stack: z edges (cell 0 starts at 0), element index, whether active (1) or passive
    (0), cell index (negative behind the start cell); the element names."""
    parts = material.components
    period = sum(p.thickness_mm for p in parts)
    back = math.ceil(BACK_X0 * material.x0_mm / period)
    cells = back + math.ceil(FORWARD_X0 * material.x0_mm / period)
    names = list(dict.fromkeys(p.element.name for p in parts))
    thick = np.tile([p.thickness_mm for p in parts], cells)
    z = np.concatenate([[0.0], np.cumsum(thick)]) - back * period
    mat = np.tile([names.index(p.element.name) for p in parts], cells).astype(np.int64)
    if sum(p.active for p in parts) != 1:
        msg = f"expected one active sub-layer per sampling cell but got {parts}, in the shower library"
        raise ConfigError(msg)
    act = np.tile([int(p.active) for p in parts], cells).astype(np.int64)
    cell = np.repeat(np.arange(cells) - back, len(parts)).astype(np.int64)
    return z, mat, act, cell, names


def entries_per_bin(material: Material, config: CascadeConfig) -> int:
    """Entries per (particle, energy, phase) bin at normal incidence: ``library_entries``, or more where needed
    for the library's mean visible energy per particle to have the relative statistical error
    ``library_precision``: every hand-off reuses the same entries, so their mean error is a bias of the hybrid's
    response, c_s / sqrt(E_library / GeV) with c_s the stack's transported sampling term (:mod:`.calibrate`)."""
    c_s = stack_response(material, config, config.reference_energy_mev).stochastic
    edges = _energy_edges(config)
    mean_e = (edges[1:] - edges[:-1]) / np.log(edges[1:] / edges[:-1])  # log-uniform in each bin
    needed = (c_s / config.library_precision) ** 2 / (LIBRARY_PHASES * mean_e.sum() * 1e-3)
    return max(config.library_entries, math.ceil(float(needed)))


def _energy_edges(config: CascadeConfig) -> F64:
    """From ``handoff_min_mev`` to the split, widened by ``ENERGY_MATCH`` at both ends (so that a hand-off at
    either end still finds entries on both sides of its energy)."""
    lo, hi = config.handoff_min_mev, max(config.hybrid_split_mev, config.handoff_min_mev * 1.01)
    return np.geomspace(lo / ENERGY_MATCH, hi * ENERGY_MATCH, LIBRARY_ENERGY_BINS + 1)


def _plan(config: CascadeConfig, n0: int) -> tuple[I64, F64, F64, F64, F64]:
    """Every entry's (type, energy bin, angle bin, phase bin), energy, cos θ, start phase; and the energy edges
    (``n0`` entries per bin at normal incidence)."""
    rng = np.random.default_rng(LIBRARY_SEED)
    edges = _energy_edges(config)
    keys = []
    for t in range(2):
        for b in range(LIBRARY_ENERGY_BINS):
            for a in range(LIBRARY_ANGLE_BINS):
                for p in range(LIBRARY_PHASES):
                    keys += [(t, b, a, p)] * (n0 if a == 0 else TILTED_ENTRIES)
    key = np.array(keys, dtype=np.int64)
    u = rng.random((key.shape[0], 2))
    energy = edges[key[:, 1]] * (edges[key[:, 1] + 1] / edges[key[:, 1]]) ** u[:, 0]
    cos = np.array(LIBRARY_ANGLE_COS)[key[:, 2]]
    phase = (key[:, 3] + u[:, 1]) / LIBRARY_PHASES
    return key, energy, cos, phase, edges


Part = tuple[I64, NDArray[np.int16], NDArray[np.int16], NDArray[np.int16], NDArray[np.int16], NDArray[np.float32], F64]


def _transport_part(material: Material, config: CascadeConfig, n0: int, first: int, stop: int) -> Part:
    """Entries ``first .. stop-1``: points per entry, their (k, ir, ia, deeper, frac), and each entry's leaked
    fraction."""
    z, mat, act, cell, names = _block(material)
    parts = material.components
    period = sum(p.thickness_mm for p in parts)
    elements = tuple(next(p.element for p in parts if p.element.name == n) for n in names)
    tables = build_tables(elements, config)
    key, energy, cos, phase, _ = _plan(config, n0)
    key, energy, cos, phase = key[first:stop], energy[first:stop], cos[first:stop], phase[first:stop]
    n_sub = mat.size
    # every sub-layer is "read": active ones on the polar grid, passive ones as one bin (their cell's passive energy)
    n_r_act = R_EDGES_MM.size - 1
    layer = np.arange(n_sub, dtype=np.int64)
    r_edges = np.concatenate([R_EDGES_MM if a else np.array([0.0, 4001.0]) for a in act])
    n_r = np.where(act > 0, n_r_act, 1).astype(np.int64)
    n_alpha = np.where(act > 0, N_ALPHA, 1).astype(np.int64)
    r_off = np.concatenate([[0], np.cumsum(n_r + 1)]).astype(np.int64)
    vox_off = np.concatenate([[0], np.cumsum(n_r * n_alpha)]).astype(np.int64)
    n_vox = int(vox_off[-1])
    ones = np.ones(n_sub, dtype=np.int64)
    cfg = config_array(config, hybrid=False)
    kinds = np.where(key[:, 0] == 0, GAMMA, ELECTRON).astype(np.int64)
    z_start = phase * period
    isub = np.searchsorted(z, z_start, side="right") - 1
    sin = np.sqrt(np.maximum(0.0, 1.0 - cos * cos))
    start = np.stack([z_start, sin, np.zeros_like(sin), cos, isub.astype(np.float64)], axis=1)
    start_cell = cell[isub]
    seeds = shower_seeds(LIBRARY_SEED, first, energy.size)  # by the entry's index: the same whatever the jobs
    sub_of_vox = np.repeat(np.arange(n_sub), n_r * n_alpha)
    leaked = np.zeros(energy.size)
    counts = np.zeros(energy.size, dtype=np.int64)
    chunks: list[list[NDArray[np.int16] | NDArray[np.float32]]] = [[*[np.zeros(0, np.int16)] * 4,
                                                                   np.zeros(0, np.float32)]]
    zeros = np.zeros(n_sub)
    minus = np.full(n_sub, -1, dtype=np.int64)
    back, n_back = np.empty((BACK_ROWS, 4)), np.zeros(1, dtype=np.int64)
    for lo in range(0, energy.size, ROWS_PER_CALL):
        sl = slice(lo, min(lo + ROWS_PER_CALL, energy.size))
        m = sl.stop - sl.start
        while True:  # repeated with a longer albedo list when it overflowed (same seeds: same showers)
            out = np.zeros((m, n_vox))
            ledger = np.zeros((m, len(LEDGER)))
            n_back[0] = 0
            transport_from(kinds[sl], energy[sl], seeds[sl], cfg, z, mat, ones, layer, np.ones(n_sub), tables.data,
                           tables.props, r_edges, r_off, n_r, n_alpha, vox_off, out, ledger, np.empty((1, 12)), zeros,
                           minus, zeros, zeros, np.ascontiguousarray(start[sl]), back, n_back)
            if n_back[0] <= back.shape[0]:
                break
            back = np.empty((int(n_back[0] * 1.25), 4))
        g_rows, g_vox = np.nonzero(out)
        listed = back[:n_back[0]]
        l_vox = listed[:, 1].astype(np.int64)
        rows = np.concatenate([g_rows, listed[:, 0].astype(np.int64)])
        vox = np.concatenate([g_vox, l_vox])
        dep = np.concatenate([out[g_rows, g_vox], listed[:, 3]])
        sub = sub_of_vox[vox]
        # cells beyond the deposit's own that its lineage reached (0 in the grid, whose lineages were never deeper)
        deeper = np.concatenate([np.zeros(g_vox.size, np.int64),
                                 cell[listed[:, 2].astype(np.int64)] - cell[sub_of_vox[l_vox]]])
        k_all = cell[sub] - start_cell[sl][rows]  # cells counted from the start cell (one active sub-layer each)
        # one point per (row, polar bin of an active sub-layer, deeper); passive energy summed per (row, cell, deeper)
        place = np.where(act[sub] > 0, vox, n_vox + k_all + 2048)
        point = (rows * (n_vox + 4096) + place) * 4096 + np.minimum(deeper, 4095)
        uniq, inv = np.unique(point, return_inverse=True)
        frac = np.bincount(inv, weights=dep / energy[sl][rows])
        u_rows, u_place, u_deeper = uniq // 4096 // (n_vox + 4096), uniq // 4096 % (n_vox + 4096), uniq % 4096
        is_act = u_place < n_vox
        u_vox = np.where(is_act, u_place, 0)
        u_sub = sub_of_vox[u_vox]
        within = u_vox - vox_off[u_sub]
        u_k = np.where(is_act, cell[u_sub] - start_cell[sl][u_rows], u_place - n_vox - 2048)
        chunks.append([u_k.astype(np.int16), np.where(is_act, within % n_r_act, -1).astype(np.int16),
                       np.where(is_act, within // n_r_act, 0).astype(np.int16), u_deeper.astype(np.int16),
                       frac.astype(np.float32)])
        counts[sl] = np.bincount(u_rows, minlength=m)
        leaked[sl] = ledger[:, LEAKED] / energy[sl]
    k, ir, ia, deeper = (np.concatenate([c[i] for c in chunks]).astype(np.int16, copy=False) for i in range(4))
    return counts, k, ir, ia, deeper, np.concatenate([c[4] for c in chunks]).astype(np.float32, copy=False), leaked


def build_library(material: Material, config: CascadeConfig, jobs: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> ShowerLibrary:
    """Transport every entry's sub-shower (split 0, fixed seed; ``jobs`` processes, same result) and keep its
    deposits relative to its start; ``progress(done, total)`` after each of ``BUILD_PARTS`` per job."""
    t_start = time.perf_counter()
    n0 = entries_per_bin(material, config)
    key, energy, cos, _, edges = _plan(config, n0)
    cum = np.cumsum(energy)
    n_parts = BUILD_PARTS * jobs
    bounds = [0, *(int(np.searchsorted(cum, cum[-1] * i / n_parts)) for i in range(1, n_parts)), energy.size]
    args = ([material] * n_parts, [config] * n_parts, [n0] * n_parts, bounds[:-1], bounds[1:])
    done: list[Part] = []
    with contextlib.ExitStack() as stack:  # parts of about equal energy (the transport's cost)
        if jobs > 1:
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")))
            parts = pool.map(_transport_part, *args)
        else:
            parts = map(_transport_part, *args)
        for part in parts:
            done.append(part)
            if progress is not None:
                progress(len(done), n_parts)
    counts, k, ir, ia, deeper, frac_all, leaked = (np.concatenate([d[i] for d in done]) for i in range(7))
    offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    stored = np.bincount(np.repeat(np.arange(energy.size), counts), weights=frac_all.astype(np.float64),
                         minlength=energy.size)
    mass = 1.0 - stored - leaked  # the rest-mass balance, closing each entry exactly despite float32 points
    shape = (2, LIBRARY_ENERGY_BINS, LIBRARY_ANGLE_BINS, LIBRARY_PHASES)
    n_max = int(np.bincount(np.ravel_multi_index(key.T, shape)).max())
    index = np.full((*shape, n_max), -1, dtype=np.int64)
    count = np.zeros(shape, dtype=np.int64)
    for i, (t, b, a, p) in enumerate(key):
        index[t, b, a, p, count[t, b, a, p]] = i
        count[t, b, a, p] += 1
    sin = np.sqrt(np.maximum(0.0, 1.0 - cos * cos))
    return ShowerLibrary(sum(p.thickness_mm for p in material.components), edges, index, count, energy, sin / cos,
                         leaked, mass, offset, k, ir, ia, deeper, frac_all, time.perf_counter() - t_start)
