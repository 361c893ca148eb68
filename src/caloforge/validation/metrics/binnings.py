"""Histogram binnings of the validation: the CaloChallenge evaluation's, or chosen from the data.

For the four official datasets (recognised by their binning, as the readout threshold is) the
histograms that the CaloChallenge evaluation draws use its bins, so that separation powers compare
with the paper; every other histogram, and every histogram of a custom geometry, gets a binning
chosen from the reference sample. Each :class:`Binning` says which it is:

* ``"calochallenge"``: the bins of the official ``evaluate.py`` / ``evaluate_plotting_helper.py``
  (CaloChallenge/homepage, ``code/``, at the head docs/validation.md names): E_tot/E_inc
  ``linspace(0.5, 1.5, 101)``; E_tot/E_inc per incident energy (dataset 1) ``linspace(0.4, 1.4, 21)``,
  or ``linspace(0.9, 1.1, 21)`` for photons from 4096 MeV on;
  E_layer ``logspace(log10(min_energy), log10(max), 40)`` (39 bins) and voxel
  energies the same with 50 edges (49 bins), ``max`` the reference's (thresholded), ``min_energy``
  the readout threshold (:mod:`caloforge.data.datasets`: 1 MeV for dataset 1, 0.5 keV / 0.033 for
  datasets 2/3), which the official code also applies to both samples; centres of energy in eta/phi
  ``linspace(-L, L, 101)`` and widths ``linspace(0, W, 101)``, (L, W) = (30, 30) mm for
  datasets 2/3, (500, 400) mm for dataset-1 layers 12 and 13, (100, 100) mm otherwise.
* ``"fixed"``: caloforge's fixed bins where the official ``evaluate.py`` draws no histogram: sparsity
  of the official datasets, 20 bins on [0, 1]. (Its helper defines ``plot_sparsity``, ``plot_ECR``
  and ``plot_ECWidthR`` but ``evaluate.py`` calls none of them; the helper's r ranges, 500 or 1500 mm
  in 100 bins for dataset 1, are too coarse to see a 10 % change of a width of a few mm.)
* ``"data-driven"``: ranges from the reference sample (documented per function).

References:
    C. Krause et al., arXiv:2410.21611 (CaloChallenge evaluation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from caloforge.data.datasets import DATASETS
from caloforge.data.geometry import Geometry
from caloforge.validation.metrics.chi2 import response_bins

__all__ = [
    "CALOCHALLENGE",
    "DATA_DRIVEN",
    "FIXED",
    "Binning",
    "layer_energy_binning",
    "log_binning",
    "moment_binning",
    "response_binning",
    "response_edges_per_energy",
    "sparsity_binning",
    "voxel_binning",
]

CALOCHALLENGE = "calochallenge"
DATA_DRIVEN = "data-driven"
FIXED = "fixed"



class Binning(NamedTuple):
    """Bin edges and where they come from (``"calochallenge"``, ``"fixed"`` or ``"data-driven"``)."""

    edges: NDArray[np.float64]
    name: str


def log_binning(reference: NDArray[np.floating], low: float, n_bins: int) -> Binning:
    """Data-driven log-spaced bins from ``low`` (or the smallest positive reference value if ``low`` is 0)
    to the reference maximum."""
    ref = np.asarray(reference)
    positive = ref[ref > 0]
    if positive.size == 0:
        base = max(low, 1e-6)
        return Binning(np.geomspace(base, base * 10, n_bins + 1), DATA_DRIVEN)
    lo = low if low > 0 else float(positive.min())
    hi = float(positive.max())
    return Binning(np.geomspace(lo, hi if hi > lo else lo * 10, n_bins + 1), DATA_DRIVEN)


def _official_log(dataset: str, reference: NDArray[np.floating], n_edges: int) -> Binning:
    lo = DATASETS[dataset].readout_threshold_mev
    hi = float(np.max(reference)) if np.size(reference) else lo
    hi = hi if hi > lo else lo * 10  # the official code would fail here (decreasing edges)
    return Binning(np.logspace(np.log10(lo), np.log10(hi), n_edges), CALOCHALLENGE)


def layer_energy_binning(geometry: Geometry, reference: NDArray[np.floating], threshold: float) -> Binning:
    """E_layer (MeV): official 39 log bins for the CaloChallenge datasets; else 40 log bins from the
    threshold (or the smallest positive reference value) to the reference maximum."""
    dataset = geometry.dataset
    if dataset is not None:
        return _official_log(dataset, reference, 40)
    return log_binning(reference, threshold, 40)


def voxel_binning(geometry: Geometry | None, reference: NDArray[np.floating], threshold: float) -> Binning:
    """Voxel energies (MeV): official 49 log bins for the CaloChallenge datasets; else 50 log bins from the
    threshold (or the smallest positive reference voxel) to the reference maximum."""
    dataset = None if geometry is None else geometry.dataset
    if dataset is not None:
        return _official_log(dataset, reference, 50)
    return log_binning(reference, threshold, 50)


def response_binning(geometry: Geometry, reference: NDArray[np.floating]) -> Binning:
    """Inclusive E_tot/E_inc: official 100 bins on [0.5, 1.5] for the CaloChallenge datasets; for other
    geometries the same, unless less than half of the reference lies there (an uncalibrated sampling
    calorimeter): then 100 bins over the reference's 0.1-99.9 percentile range."""
    if geometry.dataset is not None:
        return Binning(np.linspace(0.5, 1.5, 101), CALOCHALLENGE)
    ref = np.asarray(reference, np.float64)
    if ref.size and np.mean((ref >= 0.5) & (ref <= 1.5)) >= 0.5:
        return Binning(np.linspace(0.5, 1.5, 101), DATA_DRIVEN)
    lo, hi = np.percentile(ref, (0.1, 99.9)) if ref.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return Binning(np.linspace(lo, hi, 101), DATA_DRIVEN)


def response_edges_per_energy(geometry: Geometry, energy: float, reference: NDArray[np.floating]) -> Binning:
    """E_tot/E_inc at one incident energy (MeV).

    Dataset 1 (the official ``plot_Etot_Einc_discrete``): 20 bins on [0.4, 1.4]; for photons from
    4096 MeV (2^12) on, 20 bins on [0.9, 1.1]. Other geometries (the official code draws no
    per-energy histogram for datasets 2/3): the chi2 test's bins, 30 over the reference's 0.5-99.5
    percentile range at that energy.

    Example:
        >>> import numpy as np
        >>> g = Geometry.preset("ds1-photons")
        >>> b = response_edges_per_energy(g, 8192.0, np.ones(10))
        >>> len(b.edges) - 1, float(b.edges[0]), float(b.edges[-1]), b.name
        (20, 0.9, 1.1, 'calochallenge')
        >>> float(response_edges_per_energy(g, 2048.0, np.ones(10)).edges[0])
        0.4
    """
    dataset = geometry.dataset
    if dataset in ("ds1-photons", "ds1-pions"):
        if dataset == "ds1-photons" and energy >= 2.0**12:
            return Binning(np.linspace(0.9, 1.1, 21), CALOCHALLENGE)
        return Binning(np.linspace(0.4, 1.4, 21), CALOCHALLENGE)
    return Binning(response_bins(np.asarray(reference, np.float64)), DATA_DRIVEN)


def _official_limits(dataset: str, layer_id: int) -> tuple[float, float]:
    if dataset in ("ds2", "ds3"):
        return 30.0, 30.0
    if layer_id in (12, 13):
        return 500.0, 400.0
    return 100.0, 100.0


def moment_binning(geometry: Geometry, layer_id: int, kind: str, axis: str,
                   reference: NDArray[np.floating]) -> Binning:
    """Centre (``kind="centre"``) or width (``"width"``) of energy in ``axis`` (eta, phi or r), mm, 100 bins.

    eta/phi of the CaloChallenge datasets: the official ranges (module docstring). Otherwise,
    and for r always (the official evaluation draws no r histogram): centres in [-1.1 m, 1.1 m] for
    eta/phi or [0, 1.1 m] for r, widths in [0, 1.1 m], with m the reference's 99.9 percentile of |x|.
    """
    dataset = geometry.dataset
    if dataset is not None and axis in ("eta", "phi"):
        lim, lim_w = _official_limits(dataset, layer_id)
        edges = np.linspace(-lim, lim, 101) if kind == "centre" else np.linspace(0.0, lim_w, 101)
        return Binning(edges, CALOCHALLENGE)
    ref = np.abs(np.asarray(reference, np.float64))
    top = 1.1 * float(np.percentile(ref, 99.9)) if ref.size else 1.0
    top = top if top > 0 else 1.0
    low = -top if (kind == "centre" and axis != "r") else 0.0
    return Binning(np.linspace(low, top, 101), DATA_DRIVEN)


def sparsity_binning(geometry: Geometry, layer_index: int) -> Binning:
    """Sparsity: 20 bins on [0, 1] for the CaloChallenge datasets (the official evaluation draws no sparsity
    histogram); otherwise one bin per possible value k/n for layers of n <= 100 voxels, else 50 bins."""
    if geometry.dataset is not None:
        return Binning(np.linspace(0.0, 1.0, 21), FIXED)
    n_voxels = geometry.layers[layer_index].n_voxels
    if n_voxels <= 100:
        return Binning((np.arange(n_voxels + 2) - 0.5) / n_voxels, DATA_DRIVEN)
    return Binning(np.linspace(0.0, 1.0, 51), DATA_DRIVEN)
