"""High-level shower features of the CaloChallenge, and the readout threshold.

Every feature is computed per shower, vectorised over the whole sample, after the
dataset's readout threshold has been applied (voxels below it set to 0), as the
CaloChallenge's ``evaluate.py`` does with its ``min_energy`` (docs/validation.md names the head
followed):

* ``e_total``: sum of voxel energies, MeV; ``response`` = E_tot / E_inc.
* ``e_layer``: energy per layer, MeV.
* ``centre_eta``, ``centre_phi`` (layers with more than one alpha bin): the
  energy-weighted mean of the voxel-centre coordinates eta = r cos(alpha) and
  phi = r sin(alpha), mm, ``sum(x E) / (sum(E) + 1e-16)``.
* ``width_eta``, ``width_phi``: ``sqrt(<x^2> - <x>^2)``, the argument clipped at 0, mm.
* ``centre_r``, ``width_r`` (every layer): the same with the voxel radius r, mm.
* ``sparsity``: per layer, 1 - the fraction of voxels with energy above 0 after
  thresholding (the fraction of voxels left empty).

An empty layer has all centres and widths 0 (the 1e-16 guard).

References:
    C. Krause et al., "CaloChallenge 2022: A Community Challenge for Fast
    Calorimeter Simulation", arXiv:2410.21611 (feature definitions of its
    ``HighLevelFeatures`` helper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.data.datasets import dataset_facts
from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError

__all__ = [
    "DEFAULT_THRESHOLD",
    "HighLevelFeatures",
    "apply_threshold",
    "compute_features",
    "high_level_columns",
    "high_level_inputs",
    "low_level_inputs",
    "readout_threshold",
]

#: Readout threshold (MeV) used for geometries that are not a CaloChallenge preset.
DEFAULT_THRESHOLD = 0.0
_GUARD = 1e-16


def readout_threshold(geometry: Geometry) -> float:
    """The CaloChallenge readout threshold of a geometry, MeV (:mod:`caloforge.data.datasets`).

    1 MeV for the dataset-1 presets, 0.5 keV / 0.033 = 15.15 keV for datasets 2 and 3,
    and :data:`DEFAULT_THRESHOLD` (0) for any other geometry. The dataset is recognised
    by its binning, not its name, so a binning XML of an official dataset gets its threshold.

    Example:
        >>> readout_threshold(Geometry.preset("ds1-photons"))
        1.0
        >>> round(readout_threshold(Geometry.preset("ds2")) * 1e3, 2)  # keV
        15.15
    """
    facts = dataset_facts(geometry)
    return DEFAULT_THRESHOLD if facts is None else facts.readout_threshold_mev


def apply_threshold(showers: ShowerSet, threshold: float) -> ShowerSet:
    """Set voxels with energy below ``threshold`` (MeV) to 0; returns a new ShowerSet.

    Raises:
        ConfigError: if the threshold is negative or not finite.

    Example:
        >>> import numpy as np
        >>> g = Geometry.preset("ds1-photons")
        >>> s = ShowerSet(np.array([1000.0]), np.full((1, g.n_voxels), 0.5, np.float32), g)
        >>> float(apply_threshold(s, 1.0).showers.sum()), float(apply_threshold(s, 0.5).showers.sum())
        (0.0, 184.0)
    """
    if not np.isfinite(threshold) or threshold < 0:
        msg = f"expected a finite readout threshold >= 0 MeV but got {threshold}, in apply_threshold"
        raise ConfigError(msg)
    if threshold == 0:
        return showers
    voxels = showers.showers * (showers.showers >= threshold)  # the same as np.where(< threshold, 0, x), faster
    return ShowerSet(showers.energies, voxels, showers.geometry, dict(showers.conditions))


@dataclass(frozen=True, eq=False)
class HighLevelFeatures:
    """The CaloChallenge high-level features of N showers (arrays, one row per shower).

    Columns of the per-layer arrays follow ``geometry.layers``; the eta/phi arrays
    have one column per layer in ``geometry.alpha_layers``.

    Attributes:
        geometry: The voxel geometry.
        threshold: The readout threshold applied, MeV.
        energies: Incident energies, MeV, (N,).
        e_total: Total deposited energy, MeV, (N,).
        e_layer: Energy per layer, MeV, (N, L).
        centre_eta: Centre of energy in eta, mm, (N, A).
        centre_phi: Centre of energy in phi, mm, (N, A).
        width_eta: Width in eta, mm, (N, A).
        width_phi: Width in phi, mm, (N, A).
        centre_r: Centre of energy in r, mm, (N, L).
        width_r: Width in r, mm, (N, L).
        sparsity: Fraction of empty voxels per layer, (N, L).
    """

    geometry: Geometry
    threshold: float
    energies: NDArray[np.float64]
    e_total: NDArray[np.float64]
    e_layer: NDArray[np.float64]
    centre_eta: NDArray[np.float64]
    centre_phi: NDArray[np.float64]
    width_eta: NDArray[np.float64]
    width_phi: NDArray[np.float64]
    centre_r: NDArray[np.float64]
    width_r: NDArray[np.float64]
    sparsity: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.energies.shape[0])

    @property
    def response(self) -> NDArray[np.float64]:
        """E_tot / E_inc per shower."""
        return self.e_total / self.energies

    def columns(self) -> dict[str, NDArray[np.float64]]:
        """Every scalar feature by a stable name, e.g. ``e_layer_12``, ``width_eta_1`` (layer ids)."""
        ids = self.geometry.layer_ids
        alpha_ids = [ids[i] for i in self.geometry.alpha_layers]
        out: dict[str, NDArray[np.float64]] = {"response": self.response, "e_total": self.e_total}
        for name in ("e_layer", "centre_r", "width_r", "sparsity"):
            values = getattr(self, name)
            out.update({f"{name}_{lid}": values[:, i] for i, lid in enumerate(ids)})
        for name in ("centre_eta", "centre_phi", "width_eta", "width_phi"):
            values = getattr(self, name)
            out.update({f"{name}_{lid}": values[:, i] for i, lid in enumerate(alpha_ids)})
        return out


def _moments(x: NDArray[np.float64], energy: NDArray[np.float64], total: NDArray[np.float64]
             ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Energy-weighted mean and width of coordinate ``x`` (per voxel) over the last axis of ``energy``.

    Row by row (elementwise products, then each row's own sum), never a matrix product, so that a
    shower's features do not depend on which other showers are computed with it (chunked evaluation).
    """
    weighted = energy * x
    mean = weighted.sum(axis=-1) / total
    weighted *= x
    second = weighted.sum(axis=-1) / total
    return mean, np.sqrt(np.clip(second - mean**2, 0.0, None))


def compute_features(showers: ShowerSet, threshold: float | None = None) -> HighLevelFeatures:
    """Compute the high-level features of a sample.

    Args:
        showers: The showers.
        threshold: Readout threshold in MeV applied first; None uses
            :func:`readout_threshold` of the geometry.

    Returns:
        The features (float64 arrays).

    Example:
        >>> import numpy as np
        >>> from caloforge.data.geometry import Layer
        >>> g = Geometry((Layer(0, (0, 2, 4), 2),))  # voxels: alpha=-pi/2 (r=1, 3), alpha=+pi/2 (r=1, 3)
        >>> s = ShowerSet(np.array([10.0]), np.array([[1.0, 0.0, 0.0, 3.0]], np.float32), g)
        >>> f = compute_features(s, threshold=0.0)
        >>> float(f.centre_r[0, 0]), round(float(f.width_r[0, 0]), 4), float(f.sparsity[0, 0])
        (2.5, 0.866, 0.5)
        >>> round(float(f.centre_phi[0, 0]), 6), round(float(f.width_phi[0, 0]), 4)
        (2.0, 1.7321)
    """
    geometry = showers.geometry
    if threshold is None:
        threshold = readout_threshold(geometry)
    data = apply_threshold(showers, threshold).showers
    n, n_layers, alpha = len(showers), geometry.n_layers, geometry.alpha_layers
    e_layer = np.empty((n, n_layers))
    centre_r, width_r, sparsity = (np.empty((n, n_layers)) for _ in range(3))
    centre_eta, centre_phi, width_eta, width_phi = (np.empty((n, len(alpha))) for _ in range(4))
    r, eta, phi = geometry.voxel_r, geometry.voxel_eta, geometry.voxel_phi
    for i in range(n_layers):
        cut = geometry.layer_slice(i)
        block = data[:, cut].astype(np.float64)  # contiguous rows: each row's sums are independent of the others
        e_layer[:, i] = block.sum(axis=1)
        sparsity[:, i] = 1.0 - (block > 0).mean(axis=1)
        total = e_layer[:, i] + _GUARD
        centre_r[:, i], width_r[:, i] = _moments(r[cut], block, total)
        if i in alpha:
            j = alpha.index(i)
            centre_eta[:, j], width_eta[:, j] = _moments(eta[cut], block, total)
            centre_phi[:, j], width_phi[:, j] = _moments(phi[cut], block, total)
    return HighLevelFeatures(
        geometry=geometry,
        threshold=float(threshold),
        energies=showers.energies.copy(),
        e_total=e_layer.sum(axis=1),
        e_layer=e_layer,
        centre_eta=centre_eta,
        centre_phi=centre_phi,
        width_eta=width_eta,
        width_phi=width_phi,
        centre_r=centre_r,
        width_r=width_r,
        sparsity=sparsity,
    )


def high_level_columns(geometry: Geometry) -> tuple[str, ...]:
    """Names of the columns of :func:`high_level_inputs`, in order (layer ids as in the binning).

    Example:
        >>> cols = high_level_columns(Geometry.preset("ds1-photons"))
        >>> len(cols), cols[:2], cols[14], cols[15]
        (30, ('log10(E_inc)', 'log10(E_layer_0 + 1e-8)'), 'log10(E_tot + 1e-8)', 'sparsity_0')
    """
    ids = geometry.layer_ids
    alpha_ids = [ids[i] for i in geometry.alpha_layers]
    return ("log10(E_inc)",
            *(f"log10(E_layer_{i} + 1e-8)" for i in ids),
            *(f"{name}_{i} / 100" for name in ("centre_eta", "centre_phi", "width_eta", "width_phi")
              for i in alpha_ids),
            "log10(E_tot + 1e-8)",
            *(f"sparsity_{i}" for i in ids),
            *(f"{name}_{i} / 100" for name in ("centre_r", "width_r") for i in ids))


def high_level_inputs(features: HighLevelFeatures) -> NDArray[np.float32]:
    """Classifier / FPD / KPD input from the high-level features, (N, 2 + 4 L + 4 A) float32.

    The columns of the CaloChallenge evaluation's ``prepare_high_data_for_classifier`` (its
    ``evaluate.py`` at the head that docs/validation.md names), in its order and scaling, energies in
    MeV and lengths in mm: log10(E_inc), log10(E_layer + 1e-8) per layer, then for the layers with
    alpha bins the centres in eta, the centres in phi, the widths in eta and the widths in phi, each
    divided by 100, then log10(E_tot + 1e-8), the sparsity per layer, and the centres and the widths
    in r per layer, divided by 100 (names: :func:`high_level_columns`). L layers, A of them with
    alpha bins: 30 columns for dataset-1 photons, 362 for datasets 2 and 3.

    Args:
        features: The high-level features (of thresholded showers, as the official code computes them).

    References:
        C. Krause et al., arXiv:2410.21611 (high-level classifier input; FPD/KPD on it).
    """
    parts = [
        np.log10(features.energies)[:, None],
        np.log10(features.e_layer + 1e-8),
        features.centre_eta / 100.0,
        features.centre_phi / 100.0,
        features.width_eta / 100.0,
        features.width_phi / 100.0,
        np.log10(features.e_total + 1e-8)[:, None],
        features.sparsity,
        features.centre_r / 100.0,
        features.width_r / 100.0,
    ]
    return np.concatenate(parts, axis=1).astype(np.float32)


def low_level_inputs(showers: ShowerSet, threshold: float | None = None) -> NDArray[np.float32]:
    """Classifier input from the voxels: log10(E_inc / MeV) and the voxels divided by E_inc, (N, V + 1).

    The readout threshold (default: the geometry's) is applied first.
    """
    if threshold is None:
        threshold = readout_threshold(showers.geometry)
    data = apply_threshold(showers, threshold)
    voxels = data.showers / data.energies[:, None].astype(np.float32)
    return np.concatenate([np.log10(data.energies)[:, None].astype(np.float32), voxels], axis=1)
