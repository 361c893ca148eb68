"""Self-calibration of the hybrid: the visible fraction of electron showers in each sampling stack.

A parameterised sub-shower deposits "energy in the effective medium"; what its active layers
see is the electron sampling fraction of that stack, and how much it fluctuates is its
sampling term. Both come out of the transport: :func:`stack_response` shoots electrons of
the split energy into 40 X0 of the stack (laterally infinite) with full transport and
returns the mean visible fraction and c_s = σ/mean · √E[GeV]. Cached per (material, config) in
memory and on disk (``$XDG_CACHE_HOME/caloforge/cascade-calibration``, one small JSON file per
stack and config; the numbers do not depend on the cache: the calibration has a fixed seed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from caloforge.data.datasets import WSI_SAMPLING_FRACTION
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.errors import CaloforgeError, CheckpointError
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.cascade.jit import cache_root, sources_digest
from caloforge.refsim.cascade.kernel import ACTIVE, ELECTRON, LEDGER, transport_showers
from caloforge.refsim.cascade.streams import config_array, shower_seeds
from caloforge.refsim.cascade.tables import build_tables
from caloforge.refsim.detector import Detector
from caloforge.refsim.materials import Material

__all__ = ["CALIBRATION_DEPTH_X0", "CALIBRATION_SEED", "StackResponse", "slab_calibrations", "stack_response"]

CALIBRATION_DEPTH_X0 = 40.0
"""Depth of the calibration block, X0 (longitudinal leakage of a 1 GeV shower is below 1e-4)."""
CALIBRATION_SEED = 20241
"""Fixed seed of the calibration showers (the calibration is part of the model, not of a run)."""


@dataclass(frozen=True)
class StackResponse:
    """Visible (active) fraction of an electron shower's energy, its sampling term, and the energy used."""

    sampling_fraction: float
    stochastic: float
    energy_mev: float


TRANSPORT_FIELDS = ("brems_cut_mev", "delta_cut_mev", "electron_cut_mev", "photon_cut_mev", "max_step_x0",
                    "max_loss_fraction", "max_scatter_rad", "calibration_showers")
"""The settings a calibration depends on (the hybrid's do not enter full transport)."""
CACHE_VERSION = 2
"""Bump when the cache file's format changes (a change of the transport changes :func:`sources_digest`)."""


def _cache_file(material: Material, config: CascadeConfig, energy_mev: float) -> Path:
    transport = {name: value for name, value in config.to_dict().items() if name in TRANSPORT_FIELDS}
    key = json.dumps([CACHE_VERSION, sources_digest(), repr(material), repr(material.components), transport,
                      energy_mev], sort_keys=True)
    return cache_root("cascade-calibration") / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


@lru_cache(maxsize=32)
def stack_response(material: Material, config: CascadeConfig, energy_mev: float) -> StackResponse:
    """Full-transport response of ``material``'s sampling stack to electrons of ``energy_mev``.

    A homogeneous medium (one component) is taken as fully active: fraction 1, sampling term 0.
    """
    parts = material.components
    if len(parts) <= 1:
        return StackResponse(1.0, 0.0, energy_mev)
    path = None
    with contextlib.suppress(OSError, RuntimeError, CaloforgeError, KeyError, TypeError):  # no or a bad cache
        path = _cache_file(material, config, energy_mev)
        saved = read_json(path, "a cascade calibration", CheckpointError)
        return StackResponse(float(saved["sampling_fraction"]), float(saved["stochastic"]), energy_mev)
    resp = _transport_response(material, config, energy_mev)
    if path is not None:
        with contextlib.suppress(OSError, CaloforgeError):  # a read-only home only costs the recomputation
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, force=True) as tmp:
                tmp.write_text(strict_json({"sampling_fraction": resp.sampling_fraction,
                                            "stochastic": resp.stochastic}))
    return resp


def _transport_response(material: Material, config: CascadeConfig, energy_mev: float) -> StackResponse:
    parts = material.components
    period = sum(p.thickness_mm for p in parts)
    n_periods = math.ceil(CALIBRATION_DEPTH_X0 * material.x0_mm / period)
    names = list(dict.fromkeys(p.element.name for p in parts))
    elements = tuple(next(p.element for p in parts if p.element.name == n) for n in names)
    thick = np.tile([p.thickness_mm for p in parts], n_periods)
    z = np.concatenate([[0.0], np.cumsum(thick)])
    mat = np.tile([names.index(p.element.name) for p in parts], n_periods).astype(np.int64)
    active = np.tile([int(p.active) for p in parts], n_periods).astype(np.int64)
    n = config.calibration_showers
    ledger = np.zeros((n, len(LEDGER)))
    tables = build_tables(elements, config)
    one_i, one_f = np.zeros(1, dtype=np.int64), np.zeros(1)
    seeds = shower_seeds(CALIBRATION_SEED, 0, n)
    transport_showers(np.full(n, ELECTRON, dtype=np.int64), np.full(n, energy_mev), seeds,
                      config_array(config, hybrid=False), z, mat, active, np.full(mat.size, -1, dtype=np.int64),
                      np.zeros(mat.size), tables.data, tables.props, one_f, np.zeros(2, dtype=np.int64), one_i,
                      one_i, one_i, np.zeros((n, 1)), ledger, np.empty((1, 12)), np.zeros(mat.size),
                      np.full(mat.size, -1, dtype=np.int64), np.zeros(mat.size), np.zeros(mat.size))
    visible = ledger[:, ACTIVE] / energy_mev
    mean = float(visible.mean())
    return StackResponse(mean, float(visible.std() / mean * math.sqrt(energy_mev * 1e-3)), energy_mev)


@lru_cache(maxsize=16)
def slab_calibrations(detector: Detector, config: CascadeConfig) -> tuple[tuple[float, float, float], ...]:
    """Per slab: (file MeV per active MeV, transported sampling fraction, sampling term); zeros for dead slabs.

    With ``em_scale="transport"`` (or ``auto`` outside the W/Si convention) an instrumented slab is
    read at the EM scale of the transport: calibration = 1 / its transported sampling fraction.
    """
    rows = []
    for slab in detector.slabs:
        ro = slab.readout
        if ro is None:
            rows.append((0.0, 0.0, 0.0))
            continue
        resp = stack_response(slab.material, config, config.reference_energy_mev)
        fixed = config.em_scale == "readout" or (
            config.em_scale == "auto" and math.isclose(ro.calibration, 1.0 / WSI_SAMPLING_FRACTION))
        rows.append((ro.calibration if fixed else 1.0 / resp.sampling_fraction, resp.sampling_fraction,
                     resp.stochastic))
    return tuple(rows)
