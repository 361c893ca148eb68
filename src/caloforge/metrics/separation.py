"""Separation power of feature histograms, and the CaloChallenge histogram binnings.

Separation power (triangular discrimination) of two histograms p, q with shared
bins, each normalised to unit sum over the bins shown::

    S = 1/2 * sum_i (p_i - q_i)^2 / (p_i + q_i + 1e-16)

S = 0 for identical shapes and 1 for disjoint ones. Entries outside the plotted
range (e.g. empty layers below the lowest log bin) are left out, as in the
CaloChallenge evaluation (``density=True`` histograms).

Binnings (documented in docs/validation.md):

* E_tot/E_inc: 100 bins in [0.5, 1.5]; if less than half of the reference lies
  there (a sampling calorimeter without calibration), 100 bins over the
  reference's 0.1-99.9 percentile range instead.
* E_tot, E_layer, voxel energies: log-spaced bins (50, 40, 50) from the readout
  threshold (or the smallest positive reference value when the threshold is 0)
  to the reference maximum.
* Centres of energy in eta/phi: 100 bins in [-lim, lim]; widths: 100 bins in
  [0, lim_w]; lim = 30 mm (datasets 2/3), 500 mm (dataset-1 layers 12, 13), 100 mm
  otherwise, and lim_w = 30, 400, 100 mm likewise.
* Centre and width in r: 100 bins in [0, 1.1 x the reference's 99.9 percentile].
* Sparsity: one bin per possible value k/n_voxels for layers of <= 100 voxels,
  otherwise 50 bins in [0, 1].

References:
    C. Krause et al., arXiv:2410.21611 (CaloChallenge; "histogram" score);
    M. Diefenbacher et al., arXiv:2009.03796, eq. 15.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.errors import DataError
from caloforge.features import HighLevelFeatures
from caloforge.geometry import PRESETS, Geometry

__all__ = ["FeatureHistogram", "feature_histograms", "separation_power", "voxel_histogram"]


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
    higher_is_better = False

    @property
    def separation(self) -> float:
        """Separation power of the two histograms."""
        return separation_power(self.reference, self.generated)


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


def _limits(geometry: Geometry, layer_id: int) -> tuple[float, float]:
    """CaloChallenge plot limits (centre, width) in mm for the eta/phi moments of a layer."""
    if geometry in (PRESETS["ds2"], PRESETS["ds3"]):
        return 30.0, 30.0
    if layer_id in (12, 13):
        return 500.0, 400.0
    return 100.0, 100.0


def _log_edges(reference: NDArray[np.float64], low: float, n_bins: int) -> NDArray[np.float64]:
    positive = reference[reference > 0]
    if positive.size == 0:
        return np.geomspace(max(low, 1e-6), max(low, 1e-6) * 10, n_bins + 1)
    lo = low if low > 0 else float(positive.min())
    hi = float(positive.max())
    if hi <= lo:
        hi = lo * 10
    return np.geomspace(lo, hi, n_bins + 1)


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
    edges: NDArray[np.float64], log_x: bool, log_y: bool,
) -> FeatureHistogram:
    return FeatureHistogram(
        name, family, layer, _LABELS[family], edges, _hist(ref, edges, log_x), _hist(gen, edges, log_x), log_x, log_y
    )


def _response_edges(reference: NDArray[np.float64]) -> NDArray[np.float64]:
    inside = np.mean((reference >= 0.5) & (reference <= 1.5))
    if inside >= 0.5:
        return np.linspace(0.5, 1.5, 101)
    lo, hi = np.percentile(reference, (0.1, 99.9))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, 101)


def _sparsity_edges(n_voxels: int) -> NDArray[np.float64]:
    if n_voxels <= 100:
        return (np.arange(n_voxels + 2) - 0.5) / n_voxels
    return np.linspace(0.0, 1.0, 51)


def feature_histograms(reference: HighLevelFeatures, generated: HighLevelFeatures) -> tuple[FeatureHistogram, ...]:
    """Histogram every high-level feature of both samples with the CaloChallenge binnings.

    Args:
        reference: Features of the reference sample (defines data-driven ranges).
        generated: Features of the generated sample (same geometry).

    Returns:
        One histogram per feature and layer, in a stable order.
    """
    g = reference.geometry
    if generated.geometry != g:
        msg = f"expected features of geometry '{g.name}' but got '{generated.geometry.name}', in feature_histograms"
        raise DataError(msg)
    low = reference.threshold
    out = [
        _make("response", "response", None, reference.response, generated.response,
              _response_edges(reference.response), False, False),
        _make("e_total", "e_total", None, reference.e_total, generated.e_total,
              _log_edges(reference.e_total, low, 50), True, True),
    ]
    ids = g.layer_ids
    for i, lid in enumerate(ids):
        out.append(_make(f"e_layer_{lid}", "e_layer", lid, reference.e_layer[:, i], generated.e_layer[:, i],
                         _log_edges(reference.e_layer[:, i], low, 40), True, True))
    for j, i in enumerate(g.alpha_layers):
        lim, lim_w = _limits(g, ids[i])
        for axis in ("eta", "phi"):
            for kind, edges in (("centre", np.linspace(-lim, lim, 101)), ("width", np.linspace(0.0, lim_w, 101))):
                name = f"{kind}_{axis}"
                out.append(_make(f"{name}_{ids[i]}", name, ids[i], getattr(reference, name)[:, j],
                                 getattr(generated, name)[:, j], edges, False, True))
    for family in ("centre_r", "width_r"):
        for i, lid in enumerate(ids):
            ref = getattr(reference, family)[:, i]
            top = 1.1 * float(np.percentile(ref, 99.9)) if ref.size else 1.0
            edges = np.linspace(0.0, top if top > 0 else 1.0, 101)
            out.append(_make(f"{family}_{lid}", family, lid, ref, getattr(generated, family)[:, i], edges, False, True))
    for i, lid in enumerate(ids):
        edges = _sparsity_edges(g.layers[i].n_voxels)
        out.append(_make(f"sparsity_{lid}", "sparsity", lid, reference.sparsity[:, i], generated.sparsity[:, i],
                         edges, False, False))
    return tuple(out)


def voxel_histogram(
    reference_voxels: NDArray[np.float32], generated_voxels: NDArray[np.float32], threshold: float, n_bins: int = 50
) -> FeatureHistogram:
    """Histogram of all non-zero voxel energies (MeV), log-spaced from the threshold to the reference maximum.

    Args:
        reference_voxels: Thresholded reference voxels, any shape.
        generated_voxels: Thresholded generated voxels, any shape.
        threshold: The readout threshold, MeV (lower edge; the smallest positive reference voxel if 0).
        n_bins: Number of log-spaced bins.
    """
    ref = np.asarray(reference_voxels).reshape(-1)
    gen = np.asarray(generated_voxels).reshape(-1)
    positive = ref[ref > 0]
    lo = threshold if threshold > 0 else (float(positive.min()) if positive.size else 1e-6)
    hi = float(positive.max()) if positive.size else lo * 10
    edges = np.geomspace(lo, hi if hi > lo else lo * 10, n_bins + 1)
    return FeatureHistogram(
        "voxel", "voxel", None, _LABELS["voxel"], edges, _hist_f32(ref, edges), _hist_f32(gen, edges), True, True
    )


def _hist_f32(values: NDArray[np.float32], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    positive = values[values > 0]
    logs = np.log10(positive, dtype=np.float32)
    counts = np.histogram(logs, bins=len(edges) - 1, range=(float(np.log10(edges[0])), float(np.log10(edges[-1]))))[0]
    return counts.astype(np.float64)
