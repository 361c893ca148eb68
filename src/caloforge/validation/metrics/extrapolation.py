"""The 1/N extrapolation of FPD: fits of ``y = a + b x`` with a, b >= 0 (x = 1/N, y = mean FPD at N).

``jetnet_line_fit`` is JetNet's call of ``scipy.optimize.curve_fit`` (so that FPD values equal the
CaloChallenge's); ``nonnegative_line_fit`` solves the same bounded least-squares problem exactly.

References:
    R. Kansal et al., arXiv:2211.10295; M. J. Chong, D. Forsyth, arXiv:1911.07023.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike, NDArray

__all__ = ["jetnet_line_fit", "nonnegative_line_fit"]


def nonnegative_line_fit(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Least-squares fit of ``y = a + b x`` with a >= 0 and b >= 0: the intercept and its error.

    The bounded problem is solved exactly (the best of the unconstrained solution, if feasible,
    and the solutions on the bounds). The error is the square root of the intercept's variance
    as ``scipy.optimize.curve_fit`` reports it: ``(J^T J)^-1 * SSE / (n - 2)`` with J = [1, x]
    (infinite with fewer than 3 points).

    Example:
        >>> a, error = nonnegative_line_fit([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])  # a = 1, b = 2
        >>> round(a, 9), round(error, 9)
        (1.0, 0.0)
        >>> nonnegative_line_fit([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])[0]  # falling: b = 0, a = mean(y)
        2.0
    """
    xs = np.asarray(x, np.float64)
    ys = np.asarray(y, np.float64)
    design = np.column_stack([np.ones_like(xs), xs])
    candidates = [np.array([max(float(ys.mean()), 0.0), 0.0])]
    sxx = float(xs @ xs)
    candidates.append(np.array([0.0, max(float(xs @ ys) / sxx, 0.0) if sxx > 0 else 0.0]))
    free = np.linalg.lstsq(design, ys, rcond=None)[0]
    if free.min() >= 0.0:
        candidates.append(free)
    sse = [float(np.sum((ys - design @ p) ** 2)) for p in candidates]
    best = int(np.argmin(sse))
    dof = len(xs) - 2
    jtj = design.T @ design
    if dof <= 0 or np.linalg.matrix_rank(jtj) < 2:
        return float(candidates[best][0]), math.inf
    variance = float(np.linalg.inv(jtj)[0, 0]) * sse[best] / dof
    return float(candidates[best][0]), math.sqrt(max(variance, 0.0))


def _line(x: NDArray[np.float64], intercept: float, slope: float) -> NDArray[np.float64]:
    return intercept + slope * x


def jetnet_line_fit(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """JetNet's fit of ``y = a + b x`` with a, b >= 0: ``scipy.optimize.curve_fit`` with bounds (TRF), from its
    default start (1, 1) and tolerances; the intercept and the square root of its variance.

    With x = 1/N ~ 1e-5 and FPD ~ 1e-3 the problem is badly scaled, and the optimiser stops at its
    default tolerances before reaching the least-squares optimum (:func:`nonnegative_line_fit`): the
    slope comes out too small and the intercept too large, by up to about twice its error in our
    trials. The CaloChallenge's FPD values carry this, so :func:`fpd` reproduces it by default.
    """
    with warnings.catch_warnings():  # a perfect or degenerate fit warns that the covariance is not estimable
        warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
        params, cov = scipy.optimize.curve_fit(_line, np.asarray(x, np.float64), np.asarray(y, np.float64),
                                               bounds=([0.0, 0.0], [np.inf, np.inf]))
    return float(params[0]), float(np.sqrt(cov[0, 0]))
