"""Passes over a sample of showers, in memory or in a file, one chunk at a time: what the evaluation keeps.

The evaluation never holds a whole sample of voxels (a dataset-3 shower is 162 kB). :func:`summarise`
goes through a sample once and keeps, per shower, its thresholded high-level features and its largest
and smallest positive voxel (which fix the voxel-histogram bins), and over all showers the voxel sums
(the mean shower, overall and per incident-energy range) and the sha256 fingerprint.
:func:`count_voxels` fills voxel-energy histograms with fixed bins in a second pass, and :func:`gather`
reads only the rows that a subsampled metric uses (PRDC, the low-level classifier), in its order.
Chunks are at most :data:`caloforge.data.source.CHUNK_BYTES` of float32 showers.

Example:
    >>> import numpy as np
    >>> from caloforge.data.geometry import Geometry
    >>> g = Geometry.preset("ds1-photons")
    >>> data = ShowerSet(np.full(5, 1000.0), np.ones((5, g.n_voxels), np.float32), g)
    >>> s = summarise(data, 0.5, chunk_size=2)
    >>> len(s.features), float(s.mean.sum()), float(s.extremes().max())
    (5, 368.0, 1.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.data.source import ShowerDigest, Showers, iter_showers
from caloforge.errors import DataError
from caloforge.runtime.progress import ProgressTask
from caloforge.validation.features import HighLevelFeatures, apply_threshold, compute_features
from caloforge.validation.metrics.rings import RingSums
from caloforge.validation.metrics.separation import VoxelSpectrum
from caloforge.validation.result import EnergyRangeMeans

__all__ = ["SampleSummary", "Spectra", "count_voxels", "energy_range_means", "energy_ranges", "gather", "summarise"]


@dataclass(frozen=True, eq=False)
class SampleSummary:
    """What one pass keeps of a sample: small per-shower arrays and sums over showers.

    Attributes:
        features: Thresholded high-level features, one row per shower.
        voxel_max: Largest thresholded voxel per shower, MeV, (N,).
        voxel_min: Smallest positive voxel per shower (0 if none, or if the threshold is positive: every
            positive voxel is then at least the threshold, where the voxel bins start), MeV, (N,).
        voxel_sum: Sum of the thresholded showers, MeV, (V,).
        range_sums: Per incident-energy range, the sum of voxels / E_inc of its showers, (R, V).
        range_counts: Showers per range, (R,).
        rings: Per-ring sums of E_ring / E_inc (:mod:`caloforge.validation.metrics.rings`).
        fingerprint: :func:`caloforge.data.source.fingerprint` of the raw showers.
    """

    features: HighLevelFeatures
    voxel_max: NDArray[np.float32]
    voxel_min: NDArray[np.float32]
    voxel_sum: NDArray[np.float64]
    range_sums: NDArray[np.float64]
    range_counts: NDArray[np.int64]
    rings: RingSums
    fingerprint: dict[str, Any]

    @property
    def mean(self) -> NDArray[np.float64]:
        """The mean thresholded shower, MeV, (V,)."""
        return self.voxel_sum / len(self.features)

    def extremes(self, rows: NDArray[np.int64] | None = None) -> NDArray[np.float32]:
        """The largest and smallest positive voxels of ``rows`` (all if None): enough to fix the voxel bins
        (:func:`caloforge.validation.metrics.separation.voxel_spectrum_binning`)."""
        if rows is None:
            return np.concatenate([self.voxel_max, self.voxel_min])
        return np.concatenate([self.voxel_max[rows], self.voxel_min[rows]])


def _concatenate(parts: Sequence[HighLevelFeatures], threshold: float) -> HighLevelFeatures:
    names = [f.name for f in dataclasses.fields(parts[0]) if isinstance(getattr(parts[0], f.name), np.ndarray)]
    arrays: dict[str, Any] = {name: np.concatenate([getattr(p, name) for p in parts]) for name in names}
    return dataclasses.replace(parts[0], threshold=threshold, **arrays)


def energy_ranges(energies: NDArray[np.float64], n_ranges: int = 4) -> tuple[tuple[float, float], ...]:
    """Up to ``n_ranges`` incident-energy ranges [low, high) MeV for the per-range mean showers.

    A discrete spectrum is cut into contiguous groups of its energies (one energy per range when
    it has at most ``n_ranges``); a continuous one into log-spaced ranges.
    """
    edges = energy_bins(energies)
    groups = np.array_split(np.arange(len(edges) - 1), min(n_ranges, len(edges) - 1))
    return tuple((float(edges[g[0]]), float(edges[g[-1] + 1])) for g in groups)


Spectra = Sequence[tuple[VoxelSpectrum, NDArray[np.bool_] | None]]
"""Voxel spectra to fill, each with the mask of the showers it counts (None: all)."""


def _count(spectra: Spectra, voxels: NDArray[np.float32], start: int) -> None:
    for spectrum, mask in spectra:
        spectrum.update(voxels if mask is None else voxels[mask[start:start + len(voxels)]])


def summarise(data: Showers, threshold: float, ranges: Sequence[tuple[float, float]] = (),
              chunk_size: int | None = None, spectra: Spectra = (), task: ProgressTask | None = None
              ) -> SampleSummary:
    """One pass over ``data``: features, voxel extremes, voxel sums (overall, per energy range and per ring),
    fingerprint.

    Args:
        data: The showers, in memory or in a file.
        threshold: Readout threshold, MeV, applied to each chunk first.
        ranges: Incident-energy ranges [low, high) MeV (:func:`energy_ranges`) for the per-range sums.
        chunk_size: Showers per chunk (default :func:`caloforge.data.source.chunk_rows`).
        spectra: Voxel spectra whose bins are already known, filled in the same pass.
        task: Advanced by the showers done.
    """
    n_voxels = data.geometry.n_voxels
    lows, highs = np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])
    digest = ShowerDigest(data)
    parts, maxima, minima = [], [], []
    voxel_sum, range_sums = np.zeros(n_voxels), np.zeros((len(ranges), n_voxels))
    range_counts = np.zeros(len(ranges), np.int64)
    rings = RingSums(data.geometry)
    start = 0
    for chunk in iter_showers(data, chunk_size=chunk_size):
        digest.update(chunk)
        showers = apply_threshold(chunk, threshold)
        voxels = showers.showers
        parts.append(compute_features(showers, 0.0))
        maxima.append(voxels.max(axis=1))
        if threshold == 0:  # above 0 every positive voxel is >= the threshold, where data-driven bins start
            smallest = np.min(voxels, axis=1, where=voxels > 0, initial=np.inf)
            minima.append(np.where(np.isfinite(smallest), smallest, np.float32(0)))
        else:
            minima.append(np.zeros(len(chunk), np.float32))
        voxel_sum += voxels.sum(axis=0, dtype=np.float64)
        rings.update(voxels, chunk.energies)
        if ranges:
            inside = (chunk.energies >= lows[:, None]) & (chunk.energies < highs[:, None])
            range_counts += inside.sum(axis=1)
            range_sums += (inside / chunk.energies) @ voxels  # float64 product, one chunk at a time
        _count(spectra, voxels, start)
        start += len(chunk)
        if task is not None:
            task.update(advance=len(chunk))
    return SampleSummary(_concatenate(parts, threshold), np.concatenate(maxima), np.concatenate(minima), voxel_sum,
                         range_sums, range_counts, rings, digest.result())


def energy_range_means(ranges: Sequence[tuple[float, float]], reference: SampleSummary, generated: SampleSummary,
                       ) -> tuple[EnergyRangeMeans, ...]:
    """Mean showers (voxels / E_inc) of both samples per range, for the ranges where both have showers."""
    out = []
    energies = reference.features.energies
    for i, (lo, hi) in enumerate(ranges):
        n_r, n_g = int(reference.range_counts[i]), int(generated.range_counts[i])
        if not n_r or not n_g:
            continue
        distinct = np.unique(energies[(energies >= lo) & (energies < hi)])
        low, high = (float(distinct[0]), float(distinct[-1])) if distinct.size <= 50 else (lo, hi)
        out.append(EnergyRangeMeans(low, high, n_r, n_g, reference.range_sums[i] / n_r,
                                    generated.range_sums[i] / n_g))
    return tuple(out)


def count_voxels(data: Showers, threshold: float, spectra: Spectra, chunk_size: int | None = None,
                 task: ProgressTask | None = None) -> None:
    """One pass over ``data`` adding its thresholded voxels to each spectrum (of the showers its mask selects)."""
    start = 0
    for chunk in iter_showers(data, chunk_size=chunk_size):
        _count(spectra, apply_threshold(chunk, threshold).showers, start)
        start += len(chunk)
        if task is not None:
            task.update(advance=len(chunk))


def gather(data: Showers, rows: NDArray[np.int64], threshold: float,
           transform: Callable[[ShowerSet], NDArray[np.float32]], chunk_size: int | None = None
           ) -> NDArray[np.float32]:
    """``transform`` of the thresholded showers of ``rows`` (any order, repeats allowed), row for row in that
    order, reading only those rows: one output array and a chunk in memory.

    Example:
        >>> import numpy as np
        >>> from caloforge.data.geometry import Geometry
        >>> g = Geometry.preset("ds1-photons")
        >>> data = ShowerSet(np.arange(1.0, 6.0) * 1000, np.ones((5, g.n_voxels), np.float32), g)
        >>> gather(data, np.array([4, 0, 4]), 0.0, lambda s: s.energies[:, None], chunk_size=2).ravel().tolist()
        [5000.0, 1000.0, 5000.0]
    """
    rows = np.asarray(rows, np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    targets = np.argsort(inverse, kind="stable")  # output positions grouped by unique row, in row order
    offsets = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=unique.size))])
    out: NDArray[np.float32] | None = None
    done = 0
    for chunk in iter_showers(data, unique, chunk_size):
        values = transform(apply_threshold(chunk, threshold))
        if out is None:
            out = np.empty((rows.size, *values.shape[1:]), values.dtype)
        where = targets[offsets[done]:offsets[done + len(chunk)]]
        out[where] = values[inverse[where] - done]
        done += len(chunk)
    if out is None:
        msg = "expected at least one row to gather but got none, in gather"
        raise DataError(msg)
    return out
