"""Public API of the reference simulator: simulate showers in memory or stream them to a file.

Showers are simulated in chunks; chunk ``i`` draws its random numbers from
``SeedSequence(seed, spawn_key=(1, i))`` and the incident energies from
``spawn_key=(0,)``, so a file depends only on the seed, the inputs and the chunk
size, never on the number of worker processes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.checks import check_incident_energies, check_seed
from caloforge.data.geometry import Geometry
from caloforge.data.io import ShowerWriter
from caloforge.data.outputs import check_output
from caloforge.data.presets import resolve_geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.refsim.cascade.config import CascadeConfig, check_physics
from caloforge.refsim.deposit import bin_deposits, bin_spots
from caloforge.refsim.detector import Detector
from caloforge.refsim.em import EmModel, em_deposits
from caloforge.refsim.hadron import PionModel, pion_deposits
from caloforge.refsim.presets import detector_for
from caloforge.refsim.spectra import Spectrum, default_spectrum
from caloforge.runtime.interrupts import deferred_interrupts
from caloforge.runtime.resources import check_disk, check_memory

__all__ = ["PARTICLES", "canonical_particle", "chunk_starts", "default_chunk_size", "simulate", "simulate_chunk",
           "simulate_to_file"]

PARTICLES: dict[str, str] = {
    "photon": "photon",
    "gamma": "photon",
    "γ": "photon",
    "electron": "electron",
    "e-": "electron",
    "e+": "electron",
    "positron": "electron",
    "e": "electron",
    "pion": "pion",
    "pi+": "pion",
    "pi-": "pion",
    "pi": "pion",
    "pion+": "pion",
    "pion-": "pion",
    "π": "pion",
}
"""Accepted particle names and their canonical form (photon, electron, pion)."""

CONDITIONS = ("theta",)
"""Supported extra conditions: ``theta``, the polar incidence angle in degrees (90 = normal incidence)."""

ProgressCallback = Callable[[int, int], None]
CASCADE_CHUNK_CPU_S = 10.0
"""With the cascade a chunk also ends before its showers' energy would take about this much CPU (so that a run of
TeV showers still shows progress and keeps every job busy): at ``CASCADE_CPU_S_PER_GEV``."""
CASCADE_CPU_S_PER_GEV = {False: 20e-3, True: 40e-6}
"""CPU seconds per GeV of full transport (``False``: split 0; measured 11-50 ms) and of the hybrid (20-200 µs, the
most at 1 GeV), AMD EPYC (docs/refsim.md)."""
_BEST_COMPRESSION = 0.05  # gzip+shuffle of refsim showers: 0.45 of the raw size for ds1, 0.06 for ds3

# geometry, particle, energies, theta, detector, seed, chunk index, EM model, pion model, first shower, cascade
ChunkTask = tuple[
    Geometry, str, NDArray[np.float64], NDArray[np.float64] | None, Detector, int, int, EmModel | None,
    PionModel | None, int, CascadeConfig | None,
]


def canonical_particle(name: str) -> str:
    """``photon``, ``electron`` or ``pion`` for any accepted alias.

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones).
    """
    try:
        return PARTICLES[name.strip().lower()]
    except KeyError:
        msg = f"expected a particle in {sorted(set(PARTICLES))} but got '{name}'"
        raise ConfigError(msg) from None


def default_chunk_size(geometry: Geometry) -> int:
    """Showers per chunk: about 4M voxel values (32 MB of float64), between 32 and 2048."""
    return int(min(2048, max(32, (1 << 22) // geometry.n_voxels)))


def simulate_chunk(
    geometry: Geometry,
    particle: str,
    energies: NDArray[np.float64],
    rng: np.random.Generator,
    theta: NDArray[np.float64] | None = None,
    detector: Detector | None = None,
    em_model: EmModel | None = None,
    pion_model: PionModel | None = None,
) -> NDArray[np.float32]:
    """Voxel energies (N, V) in MeV for one chunk; the core the other functions call.

    Args:
        geometry: The voxel geometry.
        particle: ``photon``, ``electron`` or ``pion`` (canonical names).
        energies: Incident energies, MeV, (N,).
        rng: Random generator.
        theta: Incidence angle per shower, degrees (90 = normal), or None for normal incidence.
        detector: Detector description; default :func:`detector_for` the geometry.
        em_model: EM model choices.
        pion_model: Pion model parameters.
    """
    det = detector_for(geometry) if detector is None else detector
    em_model, pion_model = em_model or EmModel(), pion_model or PionModel()
    grid = det.steps(geometry)
    n = energies.size
    path_factor = shift = None
    if theta is not None:
        rad = np.radians(theta)
        path_factor, shift = 1.0 / np.sin(rad), np.cos(rad) / np.sin(rad)
    out = np.zeros((n, geometry.n_voxels))
    if particle == "pion":
        pd = pion_deposits(energies, det, grid, rng, path_factor, pion_model, em_model)
        parts = [pd.track, pd.em, pd.hadronic]
    else:
        start = rng.exponential(em_model.conversion_x0, n) if particle == "photon" else np.zeros(n)
        parts = [em_deposits(energies, start, det, grid, rng, path_factor, em_model)[0]]
    for part in parts:
        if shift is None:
            bin_deposits(geometry, grid, part, rng, out)
        else:
            bin_spots(geometry, grid, part, rng, out, shift)
    out[out < max(det.threshold_mev, 0.0)] = 0.0
    return out.astype(np.float32)


def _check_inputs(
    geometry: Geometry | str,
    particle: str,
    energies: ArrayLike,
    conditions: Mapping[str, ArrayLike] | None,
    detector: Detector | None,
) -> tuple[Geometry, str, NDArray[np.float64], NDArray[np.float64] | None, Detector]:
    geo = resolve_geometry(geometry)
    part = canonical_particle(particle)
    e = check_incident_energies(np.ravel(np.asarray(energies)), "in simulate", allow_empty=False)
    det = detector_for(geo) if detector is None else detector
    det.check_geometry(geo)
    theta = None
    for name, values in (conditions or {}).items():
        if name not in CONDITIONS:
            msg = f"expected conditions in {list(CONDITIONS)} but got '{name}', in simulate"
            raise ConfigError(msg)
        theta = np.broadcast_to(np.asarray(values, dtype=np.float64), e.shape).copy()
        if not det.tilt_allowed:
            msg = (
                f"expected no incidence angle for detector '{det.name}' but got 'theta'; tilting is supported for W/Si"
            )
            raise ConfigError(msg)
        if not np.all((theta >= 10) & (theta <= 170)):
            msg = (
                f"expected theta in [10, 170] degrees (90 = normal incidence) but got {theta.min():g}..{theta.max():g}"
            )
            raise ConfigError(msg)
    return geo, part, e, theta, det


def _chunk_task(
    args: ChunkTask,
) -> NDArray[np.float32]:
    geometry, particle, energies, theta, detector, seed, index, em_model, pion_model, start, cascade = args
    if cascade is not None:  # per-shower seeds: independent of the chunking too
        from caloforge.refsim.cascade import cascade_voxels

        return cascade_voxels(geometry, particle, energies, detector, seed, start, cascade)  # type: ignore[no-any-return]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    return simulate_chunk(geometry, particle, energies, rng, theta, detector, em_model, pion_model)


def _ignore_interrupts() -> None:
    """Worker processes leave Ctrl-C and SIGTERM to the parent, which stops between chunks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run_chunks(
    tasks: Iterator[ChunkTask],
    jobs: int,
) -> Iterator[NDArray[np.float32]]:
    """Results in chunk order; at most 2*jobs chunks in flight, so memory stays bounded."""
    if jobs <= 1:
        for task in tasks:
            yield _chunk_task(task)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_ignore_interrupts) as pool:
        pending: deque[Future[NDArray[np.float32]]] = deque()
        for task in tasks:
            pending.append(pool.submit(_chunk_task, task))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def chunk_starts(energies: NDArray[np.float64], size: int, cascade: CascadeConfig | None = None) -> list[int]:
    """Where each chunk of a run of ``energies`` (MeV) starts, and the run's end: every ``size`` showers; with the
    cascade (``cascade`` given) also before a chunk's energy would cost more than ``CASCADE_CHUNK_CPU_S``."""
    if cascade is None:
        return [*range(0, energies.size, size), energies.size]
    # a cascade file does not depend on its chunks (per-shower seeds)
    budget, used, starts = CASCADE_CHUNK_CPU_S / CASCADE_CPU_S_PER_GEV[cascade.hybrid] * 1e3, 0.0, [0]
    for i, e in enumerate(energies.tolist()):
        if i > starts[-1] and (i - starts[-1] >= size or used + e > budget):
            starts.append(i)
            used = 0.0
        used += e
    return [*starts, energies.size] if energies.size else [0]


def _chunk_tasks(geo: Geometry, part: str, energies: NDArray[np.float64], theta: NDArray[np.float64] | None,
                 det: Detector, seed: int, size: int, em_model: EmModel | None,
                 pion_model: PionModel | None, cascade: CascadeConfig | None = None) -> Iterator[tuple[Any, ...]]:
    """The arguments of each chunk's worker call (:func:`chunk_starts`); chunk ``k`` is seeded by ``(seed, k)``
    whatever the job count."""
    if cascade is not None and theta is not None:
        msg = "expected no incidence angle with physics='cascade' (normal incidence only, for now) but got 'theta'"
        raise ConfigError(msg)
    starts = chunk_starts(energies, size, cascade)
    return iter([(geo, part, energies[i:j], None if theta is None else theta[i:j], det, int(seed), k, em_model,
                  pion_model, i, cascade) for k, (i, j) in enumerate(itertools.pairwise(starts))
                 if j > i])


def simulate(
    geometry: Geometry | str,
    particle: str,
    energies: ArrayLike,
    seed: int,
    conditions: Mapping[str, ArrayLike] | None = None,
    *,
    detector: Detector | None = None,
    chunk_size: int | None = None,
    em_model: EmModel | None = None,
    pion_model: PionModel | None = None,
    physics: str = "gflash",
    cascade: CascadeConfig | None = None,
) -> ShowerSet:
    """Simulate showers in memory (for tests, demos and small sets).

    Args:
        geometry: A Geometry, preset name or binning XML path.
        particle: ``photon``/``gamma``, ``electron``/``e-``/``e+`` or ``pion``/``pi+``/``pi-``.
        energies: Incident energies, MeV, one per shower.
        seed: Random seed; the same seed and inputs give identical showers.
        conditions: Optional ``{"theta": degrees}`` (scalar or per shower) tilting the
            shower axis (W/Si only; 90 = normal incidence); written as a condition.
        detector: Detector description; default :func:`~caloforge.refsim.detector.detector_for`.
        chunk_size: Showers per random-number chunk; default :func:`default_chunk_size`.
        em_model: EM model choices.
        pion_model: Pion model parameters.
        physics: ``gflash`` (parameterised showers) or ``cascade`` (particle transport through the
            sub-layers, :mod:`caloforge.refsim.cascade`; showers then depend on the seed only, not on chunking).
        cascade: Cuts and hybrid split of the cascade mode (default ``CascadeConfig()``).

    Returns:
        The showers (MeV) with their energies and conditions.

    Raises:
        ConfigError: unknown particle or condition, or an angle the detector does not support.
        GeometryError: a geometry without detector description.
        DataError: non-positive or non-finite energies.

    Example:
        >>> s = simulate("ds1-photons", "photon", [65536.0] * 4, seed=1)
        >>> s.showers.shape, bool((s.showers >= 0).all())
        ((4, 368), True)
    """
    seed = check_seed(seed, "in simulate")
    settings = check_physics(physics, cascade)
    geo, part, e, theta, det = _check_inputs(geometry, particle, energies, conditions, detector)
    check_memory(e.size * geo.n_voxels * 12.0, f"simulating {e.size} showers in memory",
                 "use caloforge.refsim.simulate_to_file, which streams to a file")
    size = chunk_size or default_chunk_size(geo)
    tasks = _chunk_tasks(geo, part, e, theta, det, seed, size, em_model, pion_model, settings)
    showers = np.concatenate(list(_run_chunks(tasks, 1)))
    return ShowerSet(e, showers, geo, {} if theta is None else {"theta": theta})


def simulate_to_file(
    path: str | Path,
    geometry: Geometry | str,
    particle: str,
    n: int,
    seed: int,
    energies: ArrayLike | None = None,
    spectrum: Spectrum | str | None = None,
    jobs: int = 1,
    force: bool = False,
    chunk_size: int | None = None,
    progress: ProgressCallback | None = None,
    library_progress: ProgressCallback | None = None,
    theta: float | tuple[float, float] | None = None,
    detector: Detector | None = None,
    physics: str = "gflash",
    cascade: CascadeConfig | None = None,
) -> Path:
    """Simulate ``n`` showers and stream them, chunk by chunk, into a CaloChallenge HDF5 file.

    Memory is bounded by ``2 * jobs`` chunks, whatever ``n``.

    Args:
        path: Output file; refused if it exists unless ``force``.
        geometry: A Geometry, preset name or binning XML path.
        particle: Particle name or alias (see :data:`PARTICLES`).
        n: Number of showers.
        seed: Random seed; the file depends on it, not on ``jobs``.
        energies: Explicit incident energies (MeV), shared equally among the showers.
        spectrum: A :class:`Spectrum` or its text (``ds1``, ``log-uniform[:EMIN:EMAX]``);
            default ``ds1`` for dataset-1 geometries, else log-uniform 1 GeV - 1 TeV.
        jobs: Worker processes.
        force: Overwrite an existing file.
        chunk_size: Showers per chunk; default :func:`default_chunk_size`.
        progress: Called as ``progress(done, total)`` after each chunk.
        library_progress: Called as ``progress(done, total)`` after each part of a frozen-shower library's build
            (cascade hybrid on W/Si, once per machine and settings: see ``docs/refsim.md``).
        theta: Incidence angle in degrees, fixed or a (low, high) range sampled uniformly (W/Si only).
        detector: Detector description; default from the geometry.
        physics: ``gflash`` or ``cascade`` (see :func:`simulate`).
        cascade: Cuts and hybrid split of the cascade mode.

    Returns:
        The written path.
    """
    if energies is not None and spectrum is not None:
        msg = "expected either energies or spectrum but got both, in simulate_to_file"
        raise ConfigError(msg)
    if jobs < 1 or n < 1:
        msg = f"expected jobs >= 1 and n >= 1 but got jobs={jobs}, n={n}"
        raise ConfigError(msg)
    seed = check_seed(seed, "in simulate")
    settings = check_physics(physics, cascade)
    check_output(path, force)
    geo = resolve_geometry(geometry)
    check_memory(n * 8.0 * (3 if theta is None else 5), f"drawing {n} incident energies",
                 "simulate fewer showers per file", error=ConfigError)
    check_disk(path, n * geo.n_voxels * 4 * _BEST_COMPRESSION, f"{n} showers (at least, after compression)")
    if energies is not None:
        spec = Spectrum("list", values=tuple(float(v) for v in np.atleast_1d(np.asarray(energies, dtype=np.float64))))
    elif isinstance(spectrum, str):
        spec = Spectrum.parse(spectrum)
    else:
        spec = spectrum or default_spectrum(geo)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    e_all = spec.sample(n, rng)
    conditions: dict[str, NDArray[np.float64]] = {}
    if theta is not None:
        lo, hi = (theta, theta) if isinstance(theta, int | float) else theta
        conditions["theta"] = rng.uniform(lo, hi, n) if hi > lo else np.full(n, float(lo))
    geo, part, e_all, theta_all, det = _check_inputs(geo, particle, e_all, conditions, detector)
    size = chunk_size or default_chunk_size(geo)
    metadata: dict[str, str | int | float] = {
        "particle": part,
        "producer": "caloforge.refsim",
        "refsim_seed": int(seed),
        "refsim_detector": det.name,
        "refsim_spectrum": spec.describe(),
        "refsim_physics": physics,
    }
    if settings is not None:
        metadata["refsim_cascade"] = json.dumps(settings.to_dict(), sort_keys=True)
    if settings is not None and settings.hybrid and settings.handoff != "gflash":
        # numba's import time: only for the cascade; built once here (with progress), loaded by every chunk
        from caloforge.refsim.cascade.library import uses_library
        from caloforge.refsim.cascade.library_cache import prepare_library

        if uses_library(det, settings):
            prepare_library(det.em_medium, settings, jobs, library_progress)
    tasks = _chunk_tasks(geo, part, e_all, theta_all, det, seed, size, EmModel(), PionModel(), settings)
    names = tuple(conditions)
    with deferred_interrupts() as check, ShowerWriter(path, geo, names, force=force, metadata=metadata) as writer:
        done = 0
        for showers in _run_chunks(tasks, jobs):
            m = showers.shape[0]
            chunk_conditions = {"theta": theta_all[done : done + m]} if theta_all is not None else {}
            writer.append(ShowerSet(e_all[done : done + m], showers, geo, chunk_conditions))
            done += m
            if progress is not None:
                progress(done, n)
            check()  # Ctrl-C or SIGTERM: stop here, between chunks; the writer removes its temporary file
    return Path(path)
