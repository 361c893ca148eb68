"""Simulate a chunk of showers with the cascade transport: seeds, kernel call, hybrid hand-off, ledger.

Every shower has its own seed, derived from the run's seed and the shower's index in the
run (:func:`shower_seeds`), so a file depends on neither the number of jobs nor the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError
from caloforge.refsim.cascade.calibrate import slab_calibrations
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.cascade.handoff import deposit_handoffs
from caloforge.refsim.cascade.kernel import ELECTRON, GAMMA, LEDGER, PION, transport_showers
from caloforge.refsim.cascade.library import uses_library
from caloforge.refsim.cascade.library_cache import library_for
from caloforge.refsim.cascade.replay import ReplayMap, replay_handoffs, replay_map
from caloforge.refsim.cascade.streams import config_array, shower_seeds
from caloforge.refsim.cascade.tables import Layout, build_layout
from caloforge.refsim.detector import Detector, Slab
from caloforge.refsim.materials import Material

__all__ = ["CascadeResult", "calibrated_layout", "cascade_chunk", "cascade_voxels", "run_kernel"]

F64 = NDArray[np.float64]
KINDS = {"photon": GAMMA, "electron": ELECTRON, "pion": PION}


@dataclass(frozen=True)
class CascadeResult:
    """Voxel energies (N, V) in file MeV and the energy ledger (N, len(LEDGER)) in MeV.

    ``ledger[:, i]`` is the column :data:`~caloforge.refsim.cascade.kernel.LEDGER` ``[i]``;
    incident = active + passive + leaked + handoff + mass + invisible.
    """

    voxels: F64
    ledger: F64

    def column(self, name: str) -> F64:
        """One ledger column by name (``active``, ``passive``, ``leaked``, ...)."""
        return self.ledger[:, LEDGER.index(name)]


def run_kernel(layout: Layout, kinds: NDArray[np.int64], energies: F64, seeds: NDArray[np.int64], cfg: F64,
               n_voxels: int) -> tuple[F64, F64, F64]:
    """Call the kernel, growing the hand-off buffer until it fits; (voxels, ledger, hand-off rows)."""
    size = 256 + 4 * energies.size
    while True:
        out = np.zeros((energies.size, n_voxels))
        ledger = np.zeros((energies.size, len(LEDGER)))
        handoff = np.empty((size, 12))
        n = transport_showers(kinds, energies, seeds, cfg, layout.z_edges, layout.material, layout.active,
                              layout.layer, layout.calibration, layout.tables.data, layout.tables.props,
                              layout.r_edges, layout.r_offset, layout.n_r, layout.n_alpha, layout.voxel_offset,
                              out, ledger, handoff, layout.local_scale, layout.slab_layer, layout.hadron_visible,
                              layout.hadron_scale)
        if n >= 0:
            return out, ledger, handoff[:n]
        size *= 4


@lru_cache(maxsize=16)
def calibrated_layout(detector: Detector, geometry: Geometry, config: CascadeConfig) -> Layout:
    """:func:`build_layout` with each active sub-layer's calibration from :func:`slab_calibrations`."""
    layout = build_layout(detector, geometry, config)
    calib = slab_calibrations(detector, config)
    per_slab = np.array([c[0] for c in calib])
    local = np.array([c[0] * c[1] for c in calib])[layout.slab]
    position = {lid: i for i, lid in enumerate(geometry.layer_ids)}
    slab_layer = np.array([position.get(s.layer_id, -1) if s.layer_id is not None else -1 for s in detector.slabs],
                          dtype=np.int64)[layout.slab]
    mip = np.array([_mip_fraction(s) for s in detector.slabs])[layout.slab]
    read = slab_layer >= 0
    return replace(layout, calibration=np.where(layout.active > 0, per_slab[layout.slab], 0.0), local_scale=local,
                   slab_layer=slab_layer, hadron_visible=mip, hadron_scale=np.where(read, mip * per_slab[layout.slab],
                                                                                    0.0))


def _mip_fraction(slab: Slab) -> float:
    """Active share of a slow hadron's energy: the MIP sampling fraction (1 / 0 for an active / dead block)."""
    if slab.readout is None:
        return 0.0
    return slab.material.mip_sampling_fraction if len(slab.material.components) > 1 else 1.0


def cascade_chunk(geometry: Geometry, particle: str, energies: F64, seed: int, start: int, detector: Detector,
                  config: CascadeConfig | None = None) -> CascadeResult:
    """Transport ``energies`` (MeV) of ``particle`` (canonical name) into ``geometry``'s voxels.

    Args:
        geometry: Voxel geometry.
        particle: ``photon``, ``electron`` or ``pion``.
        energies: Incident kinetic energies, MeV, (N,).
        seed: The run's seed.
        start: Index of the first shower in the run (for its seed).
        detector: Detector description (with sub-layers).
        config: Cuts and hybrid split.

    Returns:
        Voxels in file MeV (before the readout threshold) and the ledger.
    """
    config = config or CascadeConfig()
    if particle not in KINDS:
        msg = f"expected a particle in {sorted(KINDS)} but got '{particle}', in the cascade transport"
        raise ConfigError(msg)
    layout = calibrated_layout(detector, geometry, config)
    kinds = np.full(energies.size, KINDS[particle], dtype=np.int64)
    seeds = shower_seeds(seed, start, energies.size)
    library_mode = config.hybrid and uses_library(detector, config)
    try:
        out, ledger, rows = run_kernel(layout, kinds, np.asarray(energies, dtype=np.float64), seeds,
                                       config_array(config, library=library_mode), geometry.n_voxels)
    except RuntimeError as err:  # the kernel's particle stack is full (too many particles above the split)
        msg = (f"expected a cascade that fits the transport's particle stack but got '{err}' for {particle}s "
               f"up to {float(np.max(energies)):g} MeV, in the cascade transport; raise the hybrid split (--split)")
        raise ConfigError(msg) from None
    if rows.shape[0] and library_mode:
        library = library_for(detector.em_medium, config)
        rmap = _replay_map(detector, geometry, config)
        isub = np.clip(np.searchsorted(layout.z_edges, rows[:, 5], side="right") - 1, 0, layout.material.size - 1)
        use = rmap.in_library[isub].copy()
        replay_handoffs(rows, use, shower_seeds(seed, start, energies.size, stream=2), library, rmap, layout, out,
                        ledger, _reach(detector.em_medium, config))
        rows = rows[use == 0]  # outside the library's stack, or reaching other slabs: GFLASH
    if rows.shape[0]:
        deposit_handoffs(rows, shower_seeds(seed, start, energies.size, stream=1), detector, geometry, layout,
                         config, out)
    return CascadeResult(out, ledger)


@lru_cache(maxsize=16)
def _reach(material: Material, config: CascadeConfig) -> NDArray[np.int64]:
    return library_for(material, config).reach()


@lru_cache(maxsize=16)
def _replay_map(detector: Detector, geometry: Geometry, config: CascadeConfig) -> ReplayMap:
    return replay_map(detector, calibrated_layout(detector, geometry, config), detector.em_medium)


def cascade_voxels(geometry: Geometry, particle: str, energies: F64, detector: Detector, seed: int, start: int,
                   config: CascadeConfig) -> NDArray[np.float32]:
    """Voxels (N, V) float32 in file MeV after the detector's readout threshold (what files hold)."""
    out = cascade_chunk(geometry, particle, energies, seed, start, detector, config).voxels
    out[out < max(detector.threshold_mev, 0.0)] = 0.0
    return out.astype(np.float32)
