"""Mean energy per ring (layer, radial bin): where a model's mean shower is off, and by how much.

A ring is one radial bin of one layer, summed over alpha. For each shower its ring energies are taken as
fractions of its incident energy, so that every shower counts alike whatever its energy (in MeV the mean of
dataset 1 would be the TeV showers'). The comparison is the ratio of the generated to the reference mean per
ring, with the standard error of each mean from the showers' spread.

Graded are the rings that carry at least :data:`RING_MIN_SHARE` of the reference's mean deposited energy:
the rings a physicist looks at in the mean-shower figure. The worst ring is the one whose ratio is furthest
from 1 after taking off three standard errors (a ring whose ratio is off by noise alone is not the worst).
Rule (:func:`caloforge.validation.metrics.verdict.ring_verdict`): pass if every graded ring's ratio is within
0.8-1.25 (or consistent with 1 within 3 sigma), warn within 0.5-2, fail beyond: a ring whose generated mean
is below half, or above twice, the reference's. Not part of the CaloChallenge's official metrics.

Example:
    >>> import numpy as np
    >>> from caloforge.data.geometry import Geometry, Layer
    >>> g = Geometry((Layer(0, (0.0, 1.0, 2.0), 2),))
    >>> ref, gen = RingSums(g), RingSums(g)
    >>> ref.update(np.array([[4.0, 1.0, 4.0, 1.0]] * 3, np.float32), np.full(3, 10.0))
    >>> gen.update(np.array([[4.0, 0.25, 4.0, 0.25]] * 3, np.float32), np.full(3, 10.0))
    >>> c = compare_rings(ref, gen)
    >>> [round(float(x), 2) for x in c.ratio], c.label(c.worst)
    ([1.0, 0.25], 'layer 0, r bin 1')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry

__all__ = ["RING_MIN_SHARE", "RingComparison", "RingSums", "compare_rings"]

RING_MIN_SHARE = 1e-3
"""Graded rings carry at least this fraction of the reference's mean deposited energy (per shower, / E_inc)."""


class RingSums:
    """Per-ring sums of E_ring / E_inc and of its square over showers, filled chunk by chunk."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        n_rings = sum(layer.n_r for layer in geometry.layers)
        self.n = 0
        self.sum, self.sum_squares = np.zeros(n_rings), np.zeros(n_rings)

    def update(self, voxels: NDArray[np.float32], energies: NDArray[np.float64]) -> None:
        """Add showers: ``voxels`` (n, V) MeV, ``energies`` (n,) incident energies in MeV."""
        parts = []
        for i, layer in enumerate(self.geometry.layers):
            block = voxels[:, self.geometry.layer_slice(i)].reshape(len(voxels), layer.n_alpha, layer.n_r)
            parts.append(block.sum(axis=1, dtype=np.float64))
        rings = np.concatenate(parts, axis=1) / np.asarray(energies, np.float64).reshape(-1, 1)
        self.n += len(voxels)
        self.sum += rings.sum(axis=0)
        self.sum_squares += np.square(rings).sum(axis=0)

    @property
    def mean(self) -> NDArray[np.float64]:
        """Mean E_ring / E_inc per ring, layer by layer, radial bins inside."""
        return self.sum / max(self.n, 1)

    @property
    def error(self) -> NDArray[np.float64]:
        """Standard error of :attr:`mean`."""
        n = max(self.n, 2)
        variance = np.maximum(self.sum_squares / n - np.square(self.sum / n), 0.0) * n / (n - 1)
        return np.sqrt(variance / n)


@dataclass(frozen=True)
class RingComparison:
    """Reference and generated mean per ring, their ratio and which rings are graded.

    Attributes:
        layers: Layer id of each ring.
        r_bins: Radial bin of each ring within its layer.
        reference, generated: Mean E_ring / E_inc; ``reference_error``, ``generated_error`` their standard errors.
        graded: The rings with at least :data:`RING_MIN_SHARE` of the reference's mean deposited energy.
    """

    layers: NDArray[np.int64]
    r_bins: NDArray[np.int64]
    reference: NDArray[np.float64]
    generated: NDArray[np.float64]
    reference_error: NDArray[np.float64]
    generated_error: NDArray[np.float64]
    graded: NDArray[np.bool_]

    @property
    def ratio(self) -> NDArray[np.float64]:
        """Generated / reference mean per ring (inf where the reference's is 0 and the generated's is not)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.reference > 0, self.generated / np.where(self.reference > 0, self.reference, 1),
                            np.where(self.generated > 0, np.inf, 1.0))

    @property
    def excess(self) -> NDArray[np.float64]:
        """|ln ratio| less three standard errors of ln ratio, at least 0 (0 where noise explains the ratio);
        0 for rings not graded, inf for a graded ring that the generated sample leaves empty."""
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.abs(np.log(self.ratio))
            rel_r = np.where(self.reference > 0, self.reference_error / self.reference, 0.0)
            rel_g = np.where(self.generated > 0, self.generated_error / self.generated, 0.0)
        out = np.maximum(log_ratio - 3 * np.hypot(rel_r, rel_g), 0.0)
        return np.where(self.graded, out, 0.0)

    @property
    def worst(self) -> int:
        """Index of the graded ring furthest from ratio 1 beyond its noise (the largest :attr:`excess`;
        among rings within noise, the largest |ln ratio|); -1 if no ring is graded."""
        if not self.graded.any():
            return -1
        excess = self.excess
        if excess.max() > 0:
            return int(np.argmax(excess))
        with np.errstate(divide="ignore"):
            log_ratio = np.where(self.graded, np.abs(np.log(self.ratio)), -1.0)
        return int(np.argmax(log_ratio))

    def label(self, index: int) -> str:
        """``layer L, r bin R`` of ring ``index``."""
        return f"layer {self.layers[index]}, r bin {self.r_bins[index]}"

    def to_dict(self) -> dict[str, Any]:
        """Per ring: layer, r bin, both means and errors, ratio, graded; and the worst ring.

        An infinite ratio (a ring empty in the reference only) is left to
        :func:`~caloforge.validation.missing.explain_missing`, which writes it as null with its reason.
        """
        worst = self.worst
        ratio = self.ratio
        return {
            "definition": f"mean of E_ring / E_inc per (layer, radial bin), summed over alpha; graded rings carry "
                          f">= {RING_MIN_SHARE:g} of the reference's mean deposited energy; not an official "
                          f"CaloChallenge metric",
            "worst": None if worst < 0 else {"layer": int(self.layers[worst]), "r_bin": int(self.r_bins[worst]),
                                             "ratio": float(ratio[worst])},
            "rings": [{"layer": int(layer), "r_bin": int(r), "reference": float(m_r), "reference_error": float(s_r),
                       "generated": float(m_g), "generated_error": float(s_g), "ratio": float(q),
                       "graded": bool(g)}
                      for layer, r, m_r, s_r, m_g, s_g, q, g in zip(
                          self.layers, self.r_bins, self.reference, self.reference_error, self.generated,
                          self.generated_error, ratio, self.graded, strict=True)],
        }


def compare_rings(reference: RingSums, generated: RingSums) -> RingComparison:
    """Compare the per-ring means of two samples of the same geometry."""
    geometry = reference.geometry
    layers = np.concatenate([np.full(layer.n_r, layer.id) for layer in geometry.layers]).astype(np.int64)
    r_bins = np.concatenate([np.arange(layer.n_r) for layer in geometry.layers]).astype(np.int64)
    mean_r = reference.mean
    graded = mean_r >= RING_MIN_SHARE * mean_r.sum() if mean_r.sum() > 0 else np.zeros(len(mean_r), bool)
    return RingComparison(layers, r_bins, mean_r, generated.mean, reference.error, generated.error, graded)
