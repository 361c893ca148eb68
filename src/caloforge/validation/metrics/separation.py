"""Separation power of feature histograms.

Separation power (triangular discrimination) of two histograms p, q with shared
bins, each normalised to unit sum over the bins shown::

    S = 1/2 * sum_i (p_i - q_i)^2 / (p_i + q_i + 1e-16)

S = 0 for identical shapes and 1 for disjoint ones. Entries outside the plotted
range (e.g. empty layers below the lowest log bin) are left out, as in the
CaloChallenge evaluation (``density=True`` histograms, times the bin widths).

The binnings (:mod:`caloforge.validation.metrics.binnings`) are the CaloChallenge evaluation's
for the official datasets, so that separation powers compare with the paper, and
chosen from the reference sample otherwise; every :class:`FeatureHistogram` records
which (``binning``) and gives a JSON-ready ``definition``.

References:
    C. Krause et al., arXiv:2410.21611 (CaloChallenge; "histogram" score);
    M. Diefenbacher et al., arXiv:2009.03796, eq. 15.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.geometry import Geometry
from caloforge.errors import DataError
from caloforge.validation.features import HighLevelFeatures
from caloforge.validation.metrics.binnings import (
    DATA_DRIVEN,
    Binning,
    layer_energy_binning,
    log_binning,
    moment_binning,
    response_binning,
    response_edges_per_energy,
    sparsity_binning,
    voxel_binning,
)

__all__ = ["FeatureHistogram", "VoxelSpectrum", "feature_histograms", "response_edges_per_energy", "separation_power",
           "voxel_histogram", "voxel_spectrum_binning"]


def separation_power(p: ArrayLike, q: ArrayLike) -> float:
    """Separation power of two histograms over shared bins (each normalised to unit sum).

    Args:
        p: Counts (or densities times bin widths) of the first histogram.
        q: The same for the second histogram, same bins.

    Returns:
        S in [0, 1]; lower is better. NaN if either histogram is empty.

    Example:
        >>> separation_power([1, 1], [1, 1])
        0.0
        >>> separation_power([1, 0], [0, 1])
        1.0
        >>> round(separation_power([3, 1], [1, 1]), 6)  # p=(.75,.25), q=(.5,.5): .5*(.0625/1.25+.0625/.75)
        0.066667
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape:
        msg = f"expected histograms with the same bins but got shapes {a.shape} and {b.shape}, in separation_power"
        raise DataError(msg)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    a, b = a / a.sum(), b / b.sum()
    return float(0.5 * np.sum((a - b) ** 2 / (a + b + 1e-16)))


@dataclass(frozen=True)
class FeatureHistogram:
    """Histograms of one feature for the reference and generated samples (same bins).

    Attributes:
        name: Stable key, e.g. ``e_layer_12`` (layer ids) or ``response``.
        family: The feature family, e.g. ``e_layer``; ``voxel`` for the voxel spectrum.
        layer: The layer id, or None for whole-shower features.
        label: Axis label (matplotlib mathtext).
        edges: Bin edges.
        reference: Reference counts per bin.
        generated: Generated counts per bin.
        log_x: Whether the bins are log-spaced.
        log_y: Whether the CaloChallenge draws this histogram with a log y axis.
        binning: Where the bins come from: ``"calochallenge"`` (the official evaluation's),
            ``"fixed"`` or ``"data-driven"`` (:mod:`caloforge.validation.metrics.binnings`).
    """

    name: str
    family: str
    layer: int | None
    label: str
    edges: NDArray[np.float64]
    reference: NDArray[np.float64]
    generated: NDArray[np.float64]
    log_x: bool = False
    log_y: bool = False
    binning: str = DATA_DRIVEN
    higher_is_better = False

    @property
    def separation(self) -> float:
        """Separation power of the two histograms."""
        return separation_power(self.reference, self.generated)

    @property
    def definition(self) -> dict[str, str | int | float | bool]:
        """The histogram's binning, JSON-ready: its origin, number of bins, range and spacing."""
        return {"binning": self.binning, "n_bins": len(self.edges) - 1, "low": float(self.edges[0]),
                "high": float(self.edges[-1]), "log_x": self.log_x}


_LABELS = {
    "response": r"$E_\mathrm{tot}/E_\mathrm{inc}$",
    "e_total": r"$E_\mathrm{tot}$ [MeV]",
    "e_layer": r"$E_\mathrm{layer}$ [MeV]",
    "centre_eta": r"centre of energy in $\eta$ [mm]",
    "centre_phi": r"centre of energy in $\phi$ [mm]",
    "width_eta": r"width in $\eta$ [mm]",
    "width_phi": r"width in $\phi$ [mm]",
    "centre_r": r"centre of energy in $r$ [mm]",
    "width_r": r"width in $r$ [mm]",
    "sparsity": "sparsity",
    "voxel": r"voxel energy [MeV]",
}


def _hist(values: NDArray[np.float64], edges: NDArray[np.float64], log_x: bool) -> NDArray[np.float64]:
    """Counts in ``edges``; for log bins via uniform bins in log10 (fast on millions of voxels)."""
    if log_x:
        positive = values[values > 0]
        logs = np.log10(positive)
        return np.histogram(logs, bins=len(edges) - 1, range=(np.log10(edges[0]), np.log10(edges[-1])))[0].astype(
            np.float64
        )
    return np.histogram(values, bins=edges)[0].astype(np.float64)


def _make(
    name: str, family: str, layer: int | None, ref: NDArray[np.float64], gen: NDArray[np.float64],
    binning: Binning, log_x: bool, log_y: bool,
) -> FeatureHistogram:
    edges = binning.edges
    return FeatureHistogram(name, family, layer, _LABELS[family], edges, _hist(ref, edges, log_x),
                            _hist(gen, edges, log_x), log_x, log_y, binning.name)


def feature_histograms(reference: HighLevelFeatures, generated: HighLevelFeatures) -> tuple[FeatureHistogram, ...]:
    """Histogram every high-level feature of both samples (binnings: :mod:`caloforge.validation.metrics.binnings`).

    Args:
        reference: Features of the reference sample (defines data-driven ranges).
        generated: Features of the generated sample (same geometry).

    Returns:
        One histogram per feature and layer, in a stable order.

    Raises:
        DataError: if the two samples have different geometries.
    """
    g = reference.geometry
    if generated.geometry != g:
        msg = f"expected features of geometry '{g.name}' but got '{generated.geometry.name}', in feature_histograms"
        raise DataError(msg)
    low = reference.threshold
    out = [
        _make("response", "response", None, reference.response, generated.response,
              response_binning(g, reference.response), False, False),
        _make("e_total", "e_total", None, reference.e_total, generated.e_total,
              log_binning(reference.e_total, low, 50), True, True),
    ]
    ids = g.layer_ids
    for i, lid in enumerate(ids):
        out.append(_make(f"e_layer_{lid}", "e_layer", lid, reference.e_layer[:, i], generated.e_layer[:, i],
                         layer_energy_binning(g, reference.e_layer[:, i], low), True, True))
    for j, i in enumerate(g.alpha_layers):
        for axis in ("eta", "phi"):
            for kind in ("centre", "width"):
                name = f"{kind}_{axis}"
                ref, gen = getattr(reference, name)[:, j], getattr(generated, name)[:, j]
                out.append(_make(f"{name}_{ids[i]}", name, ids[i], ref, gen,
                                 moment_binning(g, ids[i], kind, axis, ref), False, True))
    for family in ("centre_r", "width_r"):
        for i, lid in enumerate(ids):
            ref, gen = getattr(reference, family)[:, i], getattr(generated, family)[:, i]
            out.append(_make(f"{family}_{lid}", family, lid, ref, gen,
                             moment_binning(g, lid, family.split("_")[0], "r", ref), False, True))
    for i, lid in enumerate(ids):
        out.append(_make(f"sparsity_{lid}", "sparsity", lid, reference.sparsity[:, i], generated.sparsity[:, i],
                         sparsity_binning(g, i), False, False))
    return tuple(out)


def voxel_spectrum_binning(reference_voxels: NDArray[np.floating], threshold: float, n_bins: int = 50,
                           geometry: Geometry | None = None) -> Binning:
    """The bins of :func:`voxel_histogram`: official for a CaloChallenge dataset, else ``n_bins`` log bins.

    The edges depend only on the largest and the smallest positive reference voxel, so any array
    holding the same extremes (e.g. each shower's largest and smallest positive voxel) gives the same bins.
    """
    ref = np.asarray(reference_voxels).reshape(-1)
    binning = voxel_binning(geometry, ref, threshold)
    if binning.name == DATA_DRIVEN and n_bins != len(binning.edges) - 1:
        binning = log_binning(ref, threshold, n_bins)
    return binning


class VoxelSpectrum:
    """Counts of the non-zero voxel energies in fixed log bins, accumulated chunk by chunk.

    The streaming form of :func:`voxel_histogram` (counts add up exactly over chunks).

    Example:
        >>> spectrum = VoxelSpectrum(Binning(np.geomspace(1.0, 100.0, 3), DATA_DRIVEN))
        >>> spectrum.update(np.array([[0.0, 2.0], [20.0, 50.0]], np.float32))
        >>> spectrum.update(np.array([[5.0, 0.0]], np.float32))
        >>> spectrum.counts.tolist()
        [2.0, 2.0]
    """

    def __init__(self, binning: Binning) -> None:
        self.binning = binning
        self.counts = np.zeros(len(binning.edges) - 1)

    def update(self, voxels: NDArray[np.float32]) -> None:
        """Add thresholded voxel energies (MeV, any shape)."""
        self.counts += _hist_f32(np.asarray(voxels).reshape(-1), self.binning.edges)

    def histogram(self, generated: VoxelSpectrum) -> FeatureHistogram:
        """The voxel histogram of this (reference) spectrum against ``generated`` (same bins)."""
        return FeatureHistogram("voxel", "voxel", None, _LABELS["voxel"], self.binning.edges, self.counts.copy(),
                                generated.counts.copy(), True, True, self.binning.name)


def voxel_histogram(
    reference_voxels: NDArray[np.float32],
    generated_voxels: NDArray[np.float32],
    threshold: float,
    n_bins: int = 50,
    geometry: Geometry | None = None,
) -> FeatureHistogram:
    """Histogram of all non-zero voxel energies (MeV), log-spaced up to the reference maximum.

    Args:
        reference_voxels: Thresholded reference voxels, any shape.
        generated_voxels: Thresholded generated voxels, any shape.
        threshold: The readout threshold, MeV (lower edge for a custom geometry; the smallest positive
            reference voxel if 0).
        n_bins: Number of log-spaced bins when the binning is data-driven.
        geometry: The voxel geometry; for a CaloChallenge dataset the official binning is used
            (49 bins from its ``min_energy``). None: data-driven.
    """
    binning = voxel_spectrum_binning(reference_voxels, threshold, n_bins, geometry)
    reference, generated = VoxelSpectrum(binning), VoxelSpectrum(binning)
    reference.update(reference_voxels)
    generated.update(generated_voxels)
    return reference.histogram(generated)


def _hist_f32(values: NDArray[np.float32], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    positive = values[values > 0]
    logs = np.log10(positive, dtype=np.float32)
    counts = np.histogram(logs, bins=len(edges) - 1, range=(float(np.log10(edges[0])), float(np.log10(edges[-1]))))[0]
    return counts.astype(np.float64)
