"""A streaming summary of a shower file: what ``caloforge info`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.io import inspect, iter_chunks
from caloforge.data.presets import matching_presets
from caloforge.data.showers import energy_bins
from caloforge.errors import DataError

__all__ = ["EnergyGroup", "FileSummary", "summarize"]


@dataclass(frozen=True)
class EnergyGroup:
    """Showers of one incident energy (or one energy bin)."""

    low: float
    high: float
    count: int
    response_mean: float
    response_rms: float


@dataclass(frozen=True)
class FileSummary:
    """What a shower file holds (energies in MeV)."""

    path: Path
    n_showers: int
    n_voxels: int
    geometry: Geometry
    matching_presets: tuple[str, ...]
    discrete: bool
    energy_min: float
    energy_max: float
    groups: tuple[EnergyGroup, ...]
    mean_sparsity: float
    voxel_min: float
    voxel_max: float
    conditions: dict[str, tuple[float, float]]


def summarize(path: str | Path, geometry: str | Path | Geometry | None = None, chunk_size: int = 10_000) -> FileSummary:
    """Summarise a CaloChallenge file in one streaming pass (bounded memory).

    Args:
        path: The HDF5 file.
        geometry: As in :func:`caloforge.data.io.read`.
        chunk_size: Showers read at a time.

    Returns:
        Counts and E_tot/E_inc mean and RMS per incident energy (or per log-spaced
        energy bin for continuous spectra), the mean fraction of empty voxels, the
        voxel energy range, and the range of each extra condition.
    """
    info = inspect(path)
    if info.n_showers == 0:
        msg = f"expected at least one shower but {path} holds none"
        raise DataError(msg)
    edges = energy_bins(info.energies)
    n_groups = edges.size - 1
    count = np.zeros(n_groups)
    s1 = np.zeros(n_groups)
    s2 = np.zeros(n_groups)
    empty = 0.0
    vmin, vmax = np.inf, -np.inf
    cond_lo: dict[str, float] = {}
    cond_hi: dict[str, float] = {}
    geometry_: Geometry | None = None
    for chunk in iter_chunks(path, chunk_size, geometry):
        geometry_ = chunk.geometry
        group = np.clip(np.digitize(chunk.energies, edges) - 1, 0, n_groups - 1)
        response = chunk.response
        count += np.bincount(group, minlength=n_groups)
        s1 += np.bincount(group, response, minlength=n_groups)
        s2 += np.bincount(group, response**2, minlength=n_groups)
        empty += float((chunk.showers == 0).sum())
        vmin = min(vmin, float(chunk.showers.min()))
        vmax = max(vmax, float(chunk.showers.max()))
        for name, values in chunk.conditions.items():
            cond_lo[name] = min(cond_lo.get(name, np.inf), float(values.min()))
            cond_hi[name] = max(cond_hi.get(name, -np.inf), float(values.max()))
    assert geometry_ is not None  # at least one chunk was read
    safe = np.maximum(count, 1)
    mean = s1 / safe
    rms = np.sqrt(np.maximum(s2 / safe - mean**2, 0))
    distinct = np.unique(info.energies)
    discrete = distinct.size <= 50
    groups = tuple(
        EnergyGroup(
            low=float(distinct[i]) if discrete else float(edges[i]),
            high=float(distinct[i]) if discrete else float(edges[i + 1]),
            count=int(count[i]),
            response_mean=float(mean[i]),
            response_rms=float(rms[i]),
        )
        for i in range(n_groups)
        if count[i] > 0
    )
    total = info.n_showers * info.n_voxels
    return FileSummary(
        path=Path(path),
        n_showers=info.n_showers,
        n_voxels=info.n_voxels,
        geometry=geometry_,
        matching_presets=tuple(matching_presets(info.n_voxels)),
        discrete=discrete,
        energy_min=float(info.energies.min()),
        energy_max=float(info.energies.max()),
        groups=groups,
        mean_sparsity=empty / total,
        voxel_min=vmin,
        voxel_max=vmax,
        conditions={k: (cond_lo[k], cond_hi[k]) for k in cond_lo},
    )

