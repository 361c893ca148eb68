"""Fréchet and kernel physics distances (FPD, KPD) on high-level features.

Both compare the joint distribution of the high-level features (the input of the
high-level classifier), each feature divided by the reference's maximum |x|, as
the CaloChallenge computed them with JetNet:

* FPD: the Fréchet (2-Wasserstein between Gaussians) distance
  ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))``, evaluated on random
  subsets of 10 sizes N evenly spaced in 1/N between 10k and 50k showers (20
  draws each), then extrapolated linearly to 1/N -> 0: the intercept and its
  standard error. The extrapolation removes the finite-sample bias.
* KPD: the unbiased estimator of the squared maximum mean discrepancy with the
  polynomial kernel ``k(x, y) = (x.y / d + 1)^4`` on batches of 10k showers;
  the median over batches and half the 16-84 % spread as its error.

Both are usually reported multiplied by 10^3; they are consistent with 0 when
the two samples come from the same distribution.

References:
    R. Kansal et al., "Evaluating generative models in high energy physics",
    arXiv:2211.10295; C. Krause et al., arXiv:2410.21611.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from caloforge.errors import DataError

__all__ = ["DistanceResult", "fpd", "frechet_distance", "kpd", "mmd_poly_unbiased", "scale_by_reference"]


@dataclass(frozen=True)
class DistanceResult:
    """A distance estimate with its uncertainty (raw units; multiply by 10^3 to quote).

    Attributes:
        value: The estimate.
        error: Its uncertainty.
        seed: The seed of the random subsets.
        n_reference: Reference showers used.
        n_generated: Generated showers used.
    """

    value: float
    error: float
    seed: int
    n_reference: int
    n_generated: int
    higher_is_better = False


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike
) -> float:
    """Fréchet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    Example:
        >>> import numpy as np
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
        2.0
        >>> round(frechet_distance([0.0], [[1.0]], [0.0], [[4.0]]), 6)  # (sqrt(1) - sqrt(4))^2
        1.0
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    with warnings.catch_warnings():  # singular products are expected when a feature is constant (empty layer)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = m1 - m2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


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


def _stats(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def fpd(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    seed: int = 42,
    min_samples: int = 10_000,
    max_samples: int = 50_000,
    n_points: int = 10,
    n_draws: int = 20,
    normalise: bool = True,
) -> DistanceResult:
    """Fréchet physics distance extrapolated to infinite sample size.

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
    ref, gen = scale_by_reference(reference, generated) if normalise else (np.asarray(reference, np.float64),
                                                                             np.asarray(generated, np.float64))
    n_avail = min(len(ref), len(gen))
    if n_avail < 20:
        msg = f"expected at least 20 showers per sample for FPD but got {n_avail}, in fpd"
        raise DataError(msg)
    hi = min(max_samples, n_avail)
    lo = min(min_samples, hi)
    if lo == hi:
        lo = max(hi // 2, 10)
        warnings.warn(f"FPD: only {n_avail} showers per sample; the 1/N extrapolation uses subsets of {lo}-{hi} "
                      f"showers instead of {min_samples}-{max_samples}, so its error is larger", UserWarning,
                      stacklevel=2)
    sizes = np.unique((1.0 / np.linspace(1.0 / lo, 1.0 / hi, n_points)).astype(int))
    rng = np.random.default_rng(seed)
    values = []
    for n in sizes:
        draws = []
        for _ in range(n_draws):
            a = ref[rng.choice(len(ref), size=n, replace=False)]
            b = gen[rng.choice(len(gen), size=n, replace=False)]
            draws.append(frechet_distance(*_stats(a), *_stats(b)))
        values.append(np.mean(draws))
    fit = scipy.stats.linregress(1.0 / sizes, values)
    return DistanceResult(float(fit.intercept), float(fit.intercept_stderr), seed, len(ref), len(gen))


def _moments(x: NDArray[np.float64], degree: int) -> list[NDArray[np.float64]]:
    """Moment tensors M_k = sum_i x_i^(outer k), k = 0..degree, flattened (needs degree <= 4)."""
    n, d = x.shape
    out = [np.array([float(n)]), x.sum(axis=0)]
    if degree >= 2:
        out.append((x.T @ x).reshape(-1))
    if degree >= 3:
        pairs = (x[:, :, None] * x[:, None, :]).reshape(n, d * d)
        out.append((pairs.T @ x).reshape(-1))
        if degree >= 4:  # M_4 over unordered pairs {a, b}, columns weighted by sqrt(multiplicity): 4x cheaper
            ia, ib = np.triu_indices(d)
            sym = x[:, ia] * x[:, ib] * np.where(ia == ib, 1.0, np.sqrt(2.0))
            out.append((sym.T @ sym).reshape(-1))
    return out[: degree + 1]


def _kernel_sum_moments(mx: list[NDArray[np.float64]], my: list[NDArray[np.float64]], d: int, degree: int) -> float:
    """sum_ij (x_i.y_j / d + 1)^degree = sum_k C(degree, k) d^-k <M_k(X), M_k(Y)> (binomial expansion)."""
    return float(sum(math.comb(degree, k) * float(mx[k] @ my[k]) / d**k for k in range(degree + 1)))


def mmd_poly_unbiased(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    degree: int = 4,
    chunk: int = 2048,
    method: Literal["auto", "moments", "matrix"] = "auto",
) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^degree.

    With ``method="auto"``, few features (d <= 40) and degree <= 4 the kernel sums are
    computed exactly from moment tensors (cost O(N d^4) instead of O(N^2 d)); otherwise
    from the kernel matrices in row chunks of ``chunk`` rows.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> abs(mmd_poly_unbiased(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)))) < 0.05
        True
        >>> x, y = rng.normal(size=(50, 4)), rng.normal(size=(60, 4)) + 0.3
        >>> bool(np.isclose(mmd_poly_unbiased(x, y), mmd_poly_unbiased(x, y, chunk=7, method='matrix')))
        True
    """
    d = x.shape[1]
    m, n = len(x), len(y)

    def diagonal(a: NDArray[np.float64]) -> float:
        return float(((np.einsum("ij,ij->i", a, a) / d + 1.0) ** degree).sum())

    use_moments = method == "moments" or (method == "auto" and d <= 40)
    if use_moments and degree in (0, 1, 2, 3, 4):
        mx, my = _moments(x, degree), _moments(y, degree)
        s_xx = _kernel_sum_moments(mx, mx, d, degree) - diagonal(x)
        s_yy = _kernel_sum_moments(my, my, d, degree) - diagonal(y)
        s_xy = _kernel_sum_moments(mx, my, d, degree)
    else:
        def kernel_sum(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
            total = 0.0
            for start in range(0, len(a), chunk):
                k = a[start : start + chunk] @ b.T
                k /= d
                k += 1.0
                total += float((k**degree).sum())
            return total

        s_xx, s_yy, s_xy = kernel_sum(x, x) - diagonal(x), kernel_sum(y, y) - diagonal(y), kernel_sum(x, y)
    return s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2.0 * s_xy / (m * n)


def kpd(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    seed: int = 42,
    batch_size: int = 10_000,
    n_batches: int = 10,
    normalise: bool = True,
) -> DistanceResult:
    """Kernel physics distance: median unbiased MMD^2 over random batches.

    Args:
        reference: Reference features, (N_r, D).
        generated: Generated features, (N_g, D).
        seed: Seed of the random batches.
        batch_size: Showers per batch from each sample (at most half the smaller sample when that is
            below ``batch_size``, so that batches differ).
        n_batches: Number of batches.
        normalise: Divide each feature by the reference's max |x| first.

    Returns:
        The median over batches and half the 16-84 % interquantile range.
    """
    ref, gen = scale_by_reference(reference, generated) if normalise else (np.asarray(reference, np.float64),
                                                                             np.asarray(generated, np.float64))
    n = min(batch_size, len(ref), len(gen))
    if n == min(len(ref), len(gen)):  # batches must differ to estimate a spread: use half of the smaller sample
        n = n // 2
    if n < 2:
        msg = f"expected at least 2 showers per sample for KPD but got {n}, in kpd"
        raise DataError(msg)
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd_poly_unbiased(ref[rng.choice(len(ref), n, replace=False)], gen[rng.choice(len(gen), n, replace=False)])
        for _ in range(n_batches)
    ])
    low, high = np.percentile(values, (16, 84))
    return DistanceResult(float(np.median(values)), float((high - low) / 2), seed, len(ref), len(gen))
