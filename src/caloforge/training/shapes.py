"""The shape half of checkpoint selection: a Fréchet distance on the official high-level columns.

The response chi2/NDF sees only the total energy. To see the shower shapes as well, every
checkpoint also gets the Fréchet distance (one full-sample value, no subsets drawn) between its
generated showers and the validation showers on the inputs of the official FPD: the high-level
columns of :func:`~caloforge.validation.features.high_level_inputs` (30 for dataset 1, 362 for
datasets 2 and 3), each divided by the validation sample's max |x|
(:func:`~caloforge.validation.metrics.distances.scale_by_reference`).

* :class:`ShapeReference` holds the validation side, computed once when the target is built: the
  scale, mean and covariance of its columns and the same distance between its two halves (rows
  0, 2, 4, ... against rows 1, 3, 5, ...), by which every checkpoint's distance is divided so that
  the value is dimensionless like chi2/NDF. The finite-sample bias of a Fréchet distance goes as
  1/n_1 + 1/n_2, and the halves have half the showers: a model that generates showers
  indistinguishable from the validation sample scores about 0.5, a model twice as far as two
  halves of the reference 2.
* :class:`ShapeAccumulator` takes the generated showers chunk by chunk (the same showers as the
  response chi2) and keeps only sums and a D x D matrix: memory does not grow with the sample.
* :func:`selection_score` is what ``ModelCheckpoint`` minimises for each ``selection``. ``"combined"``
  is the geometric mean of chi2/NDF and the normalised distance, not their arithmetic mean: both are
  1-ish for a perfect model, but the distance pools every shower into one number and spans 10^3-10^5
  for models whose chi2/NDF is 2-50 (ds1 photons, 7.5k validation showers, docs/training.md), so
  an arithmetic mean would rank by the distance alone; the geometric mean weighs a relative gain in
  either equally.

It is not the evaluation's FPD: that one extrapolates subsets of 20k-50k showers to infinite
size; this one compares the samples as they are, so it only ranks checkpoints of one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from caloforge.data.showers import ShowerSet
from caloforge.validation.features import compute_features, high_level_inputs
from caloforge.validation.metrics.frechet import frechet_distance

__all__ = ["SELECTIONS", "Selection", "ShapeAccumulator", "ShapeDistance", "ShapeReference", "selection_score",
           "shower_columns"]

Selection = Literal["chi2", "fpd", "combined"]
SELECTIONS: tuple[Selection, ...] = ("chi2", "fpd", "combined")
"""What selects checkpoints: the response chi2/NDF, the normalised Fréchet distance, or their geometric mean."""

_FLOOR = 1e-12  # a reference whose halves coincide (constant columns) would otherwise divide by zero


def shower_columns(showers: ShowerSet, threshold: float) -> NDArray[np.float32]:
    """The official high-level columns of ``showers`` after the readout threshold, unscaled, (N, D) float32."""
    return high_level_inputs(compute_features(showers, threshold))


def _mean_cov(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


@dataclass(frozen=True, eq=False)
class ShapeDistance:
    """One checkpoint's shape distance.

    Attributes:
        fd: The Fréchet distance of the scaled columns (inf when a column is not finite).
        fd_norm: ``fd`` divided by the distance between the two halves of the validation sample.
    """

    fd: float
    fd_norm: float


@dataclass(frozen=True, eq=False)
class ShapeReference:
    """The validation side of the shape distance (see the module docstring).

    Attributes:
        scale: Each column's max |x| in the validation sample (1 where the column is all 0), (D,).
        mean: Mean of the scaled validation columns, (D,).
        cov: Their covariance (N - 1), (D, D).
        halves_fd: The Fréchet distance between the two halves of the validation sample.
        threshold: The readout threshold the columns are computed after, MeV.
    """

    scale: NDArray[np.float64]
    mean: NDArray[np.float64]
    cov: NDArray[np.float64]
    halves_fd: float
    threshold: float

    @classmethod
    def from_columns(cls, columns: NDArray[np.floating], threshold: float) -> ShapeReference:
        """The reference of the validation showers' columns (:func:`shower_columns`), (n, D) with n >= 4.

        Example:
            >>> x = np.random.default_rng(0).normal(size=(4000, 3))
            >>> ref = ShapeReference.from_columns(x, 0.0)
            >>> ref.distance(ref.accumulator().add(x)).fd_norm  # the reference itself
            0.0
            >>> 0.0 < ref.halves_fd < 0.01
            True
        """
        x = np.asarray(columns, np.float64)
        scale = np.abs(x).max(axis=0)
        scale[scale == 0] = 1.0
        x = x / scale
        mean, cov = _mean_cov(x)
        halves = frechet_distance(*_mean_cov(x[0::2]), *_mean_cov(x[1::2]))
        return cls(scale, mean, cov, halves, float(threshold))

    def accumulator(self) -> ShapeAccumulator:
        """An empty accumulator of generated showers' columns."""
        return ShapeAccumulator(self)

    def distance(self, generated: ShapeAccumulator) -> ShapeDistance:
        """The distance of the accumulated generated showers (inf when they are fewer than 2 or not finite)."""
        stats = generated.mean_cov()
        if stats is None:
            return ShapeDistance(math.inf, math.inf)
        fd = frechet_distance(self.mean, self.cov, *stats)
        if not math.isfinite(fd):
            return ShapeDistance(math.inf, math.inf)
        return ShapeDistance(fd, fd / max(self.halves_fd, _FLOOR))


class ShapeAccumulator:
    """Sums of generated columns (scaled like the reference's), chunk by chunk; O(D^2) memory.

    Sums are taken about the reference mean, which keeps them small and the covariance accurate.
    """

    def __init__(self, reference: ShapeReference) -> None:
        self.reference = reference
        d = reference.mean.shape[0]
        self.n = 0
        self.finite = True
        self._sum = np.zeros(d)
        self._outer = np.zeros((d, d))

    def add(self, columns: NDArray[np.floating]) -> ShapeAccumulator:
        """Add unscaled columns (n, D); returns self."""
        x = np.asarray(columns, np.float64) / self.reference.scale - self.reference.mean
        if not np.isfinite(x).all():
            self.finite = False
            return self
        self.n += len(x)
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x
        return self

    def add_showers(self, showers: ShowerSet) -> ShapeAccumulator:
        """Add generated showers (their columns after the reference's readout threshold); returns self."""
        return self.add(shower_columns(showers, self.reference.threshold))

    def mean_cov(self) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """Mean and covariance (N - 1) of the scaled columns; None for fewer than 2 rows or non-finite ones."""
        if not self.finite or self.n < 2:
            return None
        m = self._sum / self.n
        cov = (self._outer - self.n * np.outer(m, m)) / (self.n - 1)
        return self.reference.mean + m, (cov + cov.T) / 2


def selection_score(selection: Selection, chi2_ndf: float, fd_norm: float) -> float:
    """What checkpoint selection minimises: chi2/NDF, the normalised distance, or their geometric mean.

    Example:
        >>> selection_score("chi2", 2.0, 8.0), selection_score("fpd", 2.0, 8.0), selection_score("combined", 2.0, 8.0)
        (2.0, 8.0, 4.0)
    """
    if selection == "chi2":
        return chi2_ndf
    score = fd_norm if selection == "fpd" else math.sqrt(chi2_ndf * fd_norm)
    return score if math.isfinite(score) else math.inf
