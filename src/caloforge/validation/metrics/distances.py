"""Fréchet and kernel physics distances (FPD, KPD) on high-level features.

Both compare the joint distribution of the high-level features (by default the
CaloChallenge's high-level classifier input, :func:`caloforge.validation.features.high_level_inputs`),
each feature divided by the reference's maximum |x|. The default estimators are
numerically those of JetNet's ``jetnet.evaluation.fpd`` / ``kpd``, which the
CaloChallenge used for its tables; with the same seed they draw the same subsets:

* :func:`fpd` (``estimator="jetnet"``): the Fréchet distance
  ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` on subsets drawn *with
  replacement*, of 10 sizes evenly spaced in 1/N between 20k and 50k showers, truncated
  to integers (20 draws each, one ``default_rng(seed)`` for all); the mean per size is
  fitted with ``a + b / N`` under the bounds a, b >= 0 by ``scipy.optimize.curve_fit`` as
  JetNet calls it, and the intercept a is quoted with the square root of its variance. The
  bound makes the value non-negative; it keeps the bias of the finite *full* samples (about
  c/N): two samples of one distribution give a positive FPD that shrinks with N (compare at
  equal sample sizes). JetNet's fit stops short of the least-squares optimum (badly scaled,
  see :func:`jetnet_line_fit`); ``fit="exact"`` gives the optimum instead.
* :func:`fpd_debiased` (``estimator="debiased"``): caloforge's earlier estimator, subsets
  drawn *without* replacement and an unbounded linear fit; it removes that bias too and
  can be negative. Not comparable with the paper.
* :func:`kpd` (``estimator="jetnet"``): the unbiased estimator of the squared maximum mean
  discrepancy with the kernel ``k(x, y) = (x.y / d + 1)^4`` on 10 batches of 5k showers from
  each sample, drawn with replacement (batch i from ``default_rng(seed + 1000 i)``); the
  median over batches and half the 16.275-83.725 % interquantile range as its error.

Both are usually quoted multiplied by 10^3.

References:
    R. Kansal et al., "Evaluating generative models in high energy physics",
    arXiv:2211.10295 (and its code, JetNet); C. Krause et al., arXiv:2410.21611.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.stats
from numpy.typing import NDArray

from caloforge.errors import DataError
from caloforge.validation.metrics.extrapolation import jetnet_line_fit, nonnegative_line_fit
from caloforge.validation.metrics.frechet import frechet, frechet_distance, trace_sqrt_method, weighted_stats
from caloforge.validation.metrics.mmd import Method, mmd_poly_batches, mmd_poly_unbiased

__all__ = [
    "DistanceResult",
    "fpd",
    "fpd_debiased",
    "frechet_distance",
    "jetnet_line_fit",
    "kpd",
    "mmd_poly_unbiased",
    "nonnegative_line_fit",
    "scale_by_reference",
    "subset_sizes",
]

Setting = int | float | bool | str

#: JetNet's percentiles of the KPD error (half the range between them, ~ one standard deviation).
KPD_PERCENTILES = (16.275, 83.725)


@dataclass(frozen=True)
class DistanceResult:
    """A distance estimate with its uncertainty (raw units; multiply by 10^3 to quote).

    Attributes:
        value: The estimate.
        error: Its uncertainty.
        seed: The seed of the random subsets.
        n_reference: Reference showers available.
        n_generated: Generated showers available.
        metric: ``"fpd"`` or ``"kpd"``.
        estimator: ``"jetnet"`` (JetNet's estimator, comparable with the CaloChallenge) or
            ``"debiased"`` (:func:`fpd_debiased`).
        settings: The estimator's settings as (name, value) pairs.
        missing: Why the distance was not computed (value and error NaN), e.g. skipped by the user; None if it was.
    """

    value: float
    error: float
    seed: int
    n_reference: int
    n_generated: int
    metric: str = "fpd"
    estimator: str = "jetnet"
    settings: tuple[tuple[str, Setting], ...] = ()
    missing: str | None = None
    higher_is_better = False

    @classmethod
    def not_computed(cls, metric: str, reason: str, n_reference: int, n_generated: int) -> DistanceResult:
        """A distance that was not computed, with the reason (metrics.json: null and ``<key>_missing``)."""
        return cls(float("nan"), float("nan"), 0, n_reference, n_generated, metric, "not computed", (), reason)

    @property
    def definition(self) -> dict[str, Setting]:
        """What was computed, JSON-ready: metric, estimator, seed, sample sizes and settings."""
        if self.missing is not None:
            return {"metric": self.metric, "computed": False, "reason": self.missing}
        return {"metric": self.metric, "estimator": self.estimator, "seed": self.seed,
                "n_reference": self.n_reference, "n_generated": self.n_generated, **dict(self.settings)}


def scale_by_reference(
    reference: NDArray[np.floating], generated: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Divide every column of both samples by the reference's maximum |x| (columns that are all 0 stay 0)."""
    ref = np.asarray(reference, np.float64)
    gen = np.asarray(generated, np.float64)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        msg = f"expected two (N, D) feature arrays with the same D but got {ref.shape} and {gen.shape}"
        raise DataError(msg)
    scale = np.abs(ref).max(axis=0)
    scale[scale == 0] = 1.0
    return ref / scale, gen / scale


def _inputs(reference: NDArray[np.floating], generated: NDArray[np.floating], normalise: bool,
            minimum: int, where: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ref, gen = scale_by_reference(reference, generated)
    if not normalise:
        ref, gen = np.asarray(reference, np.float64), np.asarray(generated, np.float64)
    if min(len(ref), len(gen)) < minimum:
        msg = (f"expected at least {minimum} showers per sample but got {len(ref)} reference and {len(gen)} "
               f"generated, in {where}")
        raise DataError(msg)
    return ref, gen


Tick = Callable[[float], None] | None
"""Called with the work done since the last call (FPD: half a draw; KPD: 1 per block of kernel rows)."""


def subset_sizes(min_samples: int, max_samples: int, n_points: int) -> NDArray[np.int64]:
    """JetNet's FPD subset sizes: ``n_points`` values evenly spaced in 1/N, truncated to integers.

    Example:
        >>> subset_sizes(20_000, 50_000, 4).tolist()  # truncation: 1 / (1 / 25000) is 24999.99...
        [20000, 24999, 33333, 49999]
    """
    return np.trunc(1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, n_points)).astype(np.int64)


def _few_showers_warning(metric: str, n_ref: int, n_gen: int, needed: int, what: str) -> None:
    if min(n_ref, n_gen) < needed:
        warnings.warn(f"{metric}: {n_ref} reference and {n_gen} generated showers, fewer than the {needed} "
                      f"{what}: subsets are drawn with replacement (as JetNet does), so the value keeps the "
                      f"finite-sample bias of the smaller sample (about c/N) and compares only with values at "
                      f"the same sample sizes; the CaloChallenge tables use at least 50k showers per sample",
                      UserWarning, stacklevel=3)


def fpd(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    seed: int = 42,
    min_samples: int = 20_000,
    max_samples: int = 50_000,
    n_points: int = 10,
    n_draws: int = 20,
    normalise: bool = True,
    fit: Literal["jetnet", "exact"] = "jetnet",
    tick: Tick = None,
) -> DistanceResult:
    """Fréchet physics distance, JetNet's estimator (the CaloChallenge's).

    Args:
        reference: Reference features, (N_r, D).
        generated: Generated features, (N_g, D).
        seed: Seed of the random subsets (JetNet's default is 42).
        min_samples: Smallest subset size.
        max_samples: Largest subset size.
        n_points: Number of subset sizes, evenly spaced in 1/N (:func:`subset_sizes`).
        n_draws: Random subsets (with replacement) per size.
        normalise: Divide each feature by the reference's max |x| first.
        fit: ``"jetnet"``: JetNet's bounded ``curve_fit`` (:func:`jetnet_line_fit`), numerically the
            CaloChallenge's values; ``"exact"``: the exact bounded least-squares solution
            (:func:`nonnegative_line_fit`; estimator ``"jetnet-exact-fit"``, not comparable with the paper).
        tick: Called with 0.5 after each half draw (one sample's covariance), e.g. to report progress.

    The mean and covariance of each subset come from its distinct rows with their multiplicities
    (:func:`~caloforge.validation.metrics.frechet.weighted_stats`), the same numbers as JetNet's up to rounding.

    Returns:
        The intercept of the bounded fit in 1/N and its error.

    Raises:
        DataError: if a sample has fewer than 2 showers or the feature arrays do not match.

    Warns:
        UserWarning: when a sample has fewer than ``max_samples`` showers (JetNet warns below 50k).

    References:
        R. Kansal et al., arXiv:2211.10295; M. J. Chong, D. Forsyth, arXiv:1911.07023 (1/N extrapolation).
    """
    ref, gen = _inputs(reference, generated, normalise, 2, "fpd")
    _few_showers_warning("FPD", len(ref), len(gen), max_samples, "showers of its largest subsets")
    sizes = subset_sizes(min_samples, max_samples, n_points)
    rng = np.random.default_rng(seed)
    means = np.empty(len(sizes))
    for i, size in enumerate(sizes):
        total = 0.0
        for _ in range(n_draws):
            a = rng.choice(len(ref), size=int(size))
            b = rng.choice(len(gen), size=int(size))
            stats_a = weighted_stats(ref, a)
            if tick is not None:
                tick(0.5)
            total += frechet(*stats_a, *weighted_stats(gen, b))
            if tick is not None:
                tick(0.5)
        means[i] = total / n_draws
    if fit == "jetnet":
        value, error = jetnet_line_fit(1.0 / sizes, means)
        how = "scipy curve_fit (TRF, start (1, 1), default tolerances) of a + b/N, a, b >= 0; error sqrt(cov[a, a])"
    else:
        value, error = nonnegative_line_fit(1.0 / sizes, means)
        how = "exact least squares of a + b/N, a, b >= 0; error sqrt(cov[a, a])"
    settings: tuple[tuple[str, Setting], ...] = (
        ("min_samples", min_samples), ("max_samples", max_samples), ("n_points", n_points),
        ("n_draws", n_draws), ("normalise", normalise), ("sampling", "with replacement"), ("fit", how),
        ("matrix_sqrt", trace_sqrt_method(ref.shape[1])))
    estimator = "jetnet" if fit == "jetnet" else "jetnet-exact-fit"
    return DistanceResult(value, error, seed, len(ref), len(gen), "fpd", estimator, settings)


def fpd_debiased(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    seed: int = 42,
    min_samples: int = 10_000,
    max_samples: int = 50_000,
    n_points: int = 10,
    n_draws: int = 20,
    normalise: bool = True,
) -> DistanceResult:
    """Fréchet physics distance extrapolated to infinite sample size (not the CaloChallenge's estimator).

    Subsets are drawn without replacement and the mean per size is extrapolated to 1/N -> 0 by an
    unbounded linear fit, so that the finite-sample bias of the whole samples is removed too: two
    samples of one distribution give 0 within the error, and the value can be negative.

    Args:
        reference: Reference features, (N_r, D).
        generated: Generated features, (N_g, D).
        seed: Seed of the random subsets.
        min_samples: Smallest subset size (reduced to half the available showers when samples are smaller).
        max_samples: Largest subset size (at most the smaller sample).
        n_points: Number of subset sizes, evenly spaced in 1/N.
        n_draws: Random subsets per size.
        normalise: Divide each feature by the reference's max |x| first.

    Returns:
        The intercept of the linear fit in 1/N and its standard error.

    Warns:
        UserWarning: when fewer than ``min_samples`` showers are available (the extrapolation is less reliable).
    """
    ref, gen = _inputs(reference, generated, normalise, 20, "fpd_debiased")
    n_avail = min(len(ref), len(gen))
    hi = min(max_samples, n_avail)
    lo = min(min_samples, hi)
    if lo == hi:
        lo = max(hi // 2, 10)
        warnings.warn(f"FPD (debiased): only {n_avail} showers per sample; the 1/N extrapolation uses subsets of "
                      f"{lo}-{hi} showers instead of {min_samples}-{max_samples}, so its error is larger",
                      UserWarning, stacklevel=2)
    sizes = np.unique(subset_sizes(lo, hi, n_points))
    rng = np.random.default_rng(seed)
    values = []
    for n in sizes:
        draws = []
        for _ in range(n_draws):
            a = rng.choice(len(ref), size=n, replace=False)
            b = rng.choice(len(gen), size=n, replace=False)
            draws.append(frechet(*weighted_stats(ref, a), *weighted_stats(gen, b)))
        values.append(np.mean(draws))
    fit = scipy.stats.linregress(1.0 / sizes, values)
    settings: tuple[tuple[str, Setting], ...] = (
        ("min_samples", int(lo)), ("max_samples", int(hi)), ("n_points", len(sizes)), ("n_draws", n_draws),
        ("normalise", normalise), ("sampling", "without replacement"), ("fit", "a + b/N, unbounded; error stderr(a)"))
    return DistanceResult(float(fit.intercept), float(fit.intercept_stderr), seed, len(ref), len(gen), "fpd",
                          "debiased", settings)


def kpd(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    seed: int = 42,
    batch_size: int = 5_000,
    n_batches: int = 10,
    normalise: bool = True,
    method: Method = "auto",
    tick: Tick = None,
) -> DistanceResult:
    """Kernel physics distance, JetNet's estimator (the CaloChallenge's): median unbiased MMD^2 over batches.

    Batch i draws ``batch_size`` showers from each sample with replacement, with
    ``numpy.random.default_rng(seed + 1000 i)`` (reference first).

    Args:
        reference: Reference features, (N_r, D).
        generated: Generated features, (N_g, D).
        seed: Seed of the random batches (JetNet's default is 42).
        batch_size: Showers per batch from each sample.
        n_batches: Number of batches.
        normalise: Divide each feature by the reference's max |x| first.
        method: How the kernel sums are computed (:func:`~caloforge.validation.metrics.mmd.mmd_poly_batches`):
            ``auto`` picks the cheapest exact one; all give JetNet's numbers up to rounding.
        tick: Called after each block of kernel rows (or each batch of moments), e.g. to report progress.

    Returns:
        The median over batches and half the 16.275-83.725 % interquantile range.

    Raises:
        DataError: if a sample has fewer than 2 showers or the feature arrays do not match.

    Warns:
        UserWarning: when a sample has fewer showers than ``batch_size``.

    References:
        R. Kansal et al., arXiv:2211.10295.
    """
    ref, gen = _inputs(reference, generated, normalise, 2, "kpd")
    _few_showers_warning("KPD", len(ref), len(gen), batch_size, "showers of a batch")
    wx, wy = np.zeros((len(ref), n_batches)), np.zeros((len(gen), n_batches))
    for i in range(n_batches):  # batch i: how often each row is drawn
        rng = np.random.default_rng(seed + 1000 * i)
        wx[:, i] = np.bincount(rng.choice(len(ref), size=batch_size), minlength=len(ref))
        wy[:, i] = np.bincount(rng.choice(len(gen), size=batch_size), minlength=len(gen))
    values, used = mmd_poly_batches(ref, gen, wx, wy, 4, method, None if tick is None else lambda: tick(1.0))
    low, high = np.percentile(values, KPD_PERCENTILES)
    settings: tuple[tuple[str, Setting], ...] = (
        ("batch_size", batch_size), ("n_batches", n_batches), ("normalise", normalise),
        ("sampling", "with replacement"), ("kernel", "(x.y/d + 1)^4"),
        ("error", "half the 16.275-83.725 % interquantile range"), ("kernel_sums", used))
    return DistanceResult(float(np.median(values)), float((high - low) / 2), seed, len(ref), len(gen), "kpd",
                          "jetnet", settings)
