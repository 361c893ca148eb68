"""The unbiased squared maximum mean discrepancy with a polynomial kernel, exactly and fast.

``mmd_poly_unbiased`` is the quantity KPD takes the median of; :func:`mmd_poly_batches` computes it
for many batches at once. A batch drawn *with replacement* from a sample is a weight vector over the
sample's rows (how often each row was drawn), and every kernel sum of the batch is a weighted sum over
the distinct rows:

    sum_{i != j} k(a_i, a_j) = sum_{u,v} w_u w_v k(x_u, x_v) - sum_u w_u k(x_u, x_u),

so the kernel matrix of the rows that any batch uses can be computed once, block by block, and
multiplied by the weights of all batches together. Three exact methods, the cheapest chosen by an
operation count (:func:`plan_cost`):

* ``"gram"``: the kernel matrix of all rows used by any batch, once (the sample's rows when the
  batches are as large as the sample: 10 batches for the price of about one);
* ``"per-batch"``: the kernel matrix of each batch's distinct rows (batches much smaller than the sample);
* ``"moments"``: few features (degree <= 4): the kernel sums from weighted moment tensors (binomial
  expansion of the kernel), O(N d^4) rather than O(N^2 d).

All equal the direct kernel-matrix sums of the drawn batches (JetNet's ``mmd_poly_quadratic_unbiased``)
up to rounding. Kernel powers are taken by repeated in-place squaring (``k**4`` with a float array
costs as much as the matrix product itself).

References:
    A. Gretton et al., "A kernel two-sample test", JMLR 13 (2012) (unbiased MMD^2);
    R. Kansal et al., arXiv:2211.10295 (the polynomial kernel of KPD).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["Method", "mmd_poly_batches", "mmd_poly_unbiased", "plan_cost"]

Method = Literal["auto", "moments", "matrix", "gram", "per-batch"]
BLOCK_ROWS = 1024
"""Rows of a kernel-matrix block (a block of 1024 x 10k float64 is 80 MB)."""


def _power(k: NDArray[np.float64], degree: int) -> NDArray[np.float64]:
    """k**degree in place by squaring (exact for small integer degrees up to rounding)."""
    if degree == 0:
        k[...] = 1.0
        return k
    base = k.copy() if degree & (degree - 1) else None  # not a power of two: keep k
    steps = degree.bit_length() - 1
    for _ in range(steps):
        k *= k
    if base is not None:  # degree = 2^steps + rest: multiply the remaining factors
        rest = degree - (1 << steps)
        k *= base**rest
    return k


def _moments(x: NDArray[np.float64], degree: int, w: NDArray[np.float64] | None = None
             ) -> list[NDArray[np.float64]]:
    """Moment tensors M_k = sum_i w_i x_i^(outer k), k = 0..degree, flattened (needs degree <= 4)."""
    n, d = x.shape
    w = np.ones(n) if w is None else w
    xw = x * w[:, None]
    out = [np.array([float(w.sum())]), xw.sum(axis=0)]
    if degree >= 2:
        out.append((xw.T @ x).reshape(-1))
    if degree >= 3:
        pairs = (x[:, :, None] * x[:, None, :]).reshape(n, d * d)
        out.append((pairs.T @ xw).reshape(-1))
        if degree >= 4:  # M_4 over unordered pairs {a, b}, columns weighted by sqrt(multiplicity): 4x cheaper
            ia, ib = np.triu_indices(d)
            sym = x[:, ia] * x[:, ib] * np.where(ia == ib, 1.0, np.sqrt(2.0))
            out.append(((sym * w[:, None]).T @ sym).reshape(-1))
    return out[: degree + 1]


def _kernel_sum_moments(mx: list[NDArray[np.float64]], my: list[NDArray[np.float64]], d: int, degree: int) -> float:
    """sum_ij w_i w_j (x_i.y_j / d + 1)^degree = sum_k C(degree, k) d^-k <M_k(X), M_k(Y)> (binomial expansion)."""
    return float(sum(math.comb(degree, k) * float(mx[k] @ my[k]) / d**k for k in range(degree + 1)))


def _diagonal(a: NDArray[np.float64], w: NDArray[np.float64], d: int, degree: int) -> NDArray[np.float64]:
    """sum_u w_u k(x_u, x_u) per batch (columns of w)."""
    out: NDArray[np.float64] = _power(np.einsum("ij,ij->i", a, a) / d + 1.0, degree) @ w
    return out


def _gram_sums(a: NDArray[np.float64], b: NDArray[np.float64] | None, wa: NDArray[np.float64],
               wb: NDArray[np.float64], degree: int, tick: Callable[[], None] | None) -> NDArray[np.float64]:
    """Per batch (columns of the weights) sum_{u,v} wa_u wb_v k(a_u, b_v); ``b=None``: a with itself (symmetric)."""
    d = a.shape[1]
    total = np.zeros(wa.shape[1])
    for start in range(0, len(a), BLOCK_ROWS):
        end = min(start + BLOCK_ROWS, len(a))
        if b is None:  # upper block triangle: the diagonal block once, the blocks right of it twice
            k = a[start:end] @ a[start:].T
            k /= d
            k += 1.0
            _power(k, degree)
            t = k[:, : end - start] @ wa[start:end] + 2.0 * (k[:, end - start :] @ wa[end:])
        else:
            k = a[start:end] @ b.T
            k /= d
            k += 1.0
            _power(k, degree)
            t = k @ wb
        total += np.einsum("ib,ib->b", wa[start:end], t)
        if tick is not None:
            tick()
    return total


def plan_cost(method: str, used_x: NDArray[np.bool_], used_y: NDArray[np.bool_], d: int, degree: int = 4) -> float:
    """Multiply-adds of ``method`` for batches whose rows are marked in ``used_x`` (N_x, B) and ``used_y``.

    Example:
        >>> import numpy as np
        >>> used = np.ones((100, 10), bool)  # every batch uses every row
        >>> plan_cost("gram", used, used, 3) < plan_cost("per-batch", used, used, 3)
        True
    """
    batches = used_x.shape[1]
    if method == "gram":
        ux, uy = float(used_x.any(axis=1).sum()), float(used_y.any(axis=1).sum())
        return float((ux * ux / 2 + uy * uy / 2 + ux * uy) * (d + 2 * batches + 4))
    ux, uy = used_x.sum(axis=0).astype(float), used_y.sum(axis=0).astype(float)
    if method == "per-batch":
        return float(((ux * ux / 2 + uy * uy / 2 + ux * uy) * (d + 6)).sum())
    if method == "moments":
        if degree > 4:
            return math.inf
        p = d * (d + 1) / 2
        return float(((ux + uy) * (p * p + d**3 + d * d)).sum())
    msg = f"expected a method among gram, per-batch, moments but got {method!r}, in plan_cost"
    raise ValueError(msg)


def mmd_poly_batches(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    wx: NDArray[np.float64],
    wy: NDArray[np.float64],
    degree: int = 4,
    method: Method = "auto",
    tick: Callable[[], None] | None = None,
) -> tuple[NDArray[np.float64], str]:
    """Unbiased MMD^2 of many batches, each given as row weights over the two samples.

    Args:
        x: First sample, (N_x, d).
        y: Second sample, (N_y, d).
        wx: How often each row of ``x`` is in each batch, (N_x, B); column sums are the batch sizes (>= 2).
        wy: The same for ``y``, (N_y, B).
        degree: Kernel degree.
        method: ``auto`` (the cheapest by :func:`plan_cost`), ``gram``, ``per-batch`` or ``moments``
            (``matrix`` is ``per-batch``).
        tick: Called after each block of work (progress).

    Returns:
        The MMD^2 of each batch, (B,), and the method used.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(40, 3)), rng.normal(size=(50, 3)) + 0.3
        >>> wx = np.stack([np.bincount(rng.choice(40, 30), minlength=40) for _ in range(4)], axis=1).astype(float)
        >>> wy = np.stack([np.bincount(rng.choice(50, 30), minlength=50) for _ in range(4)], axis=1).astype(float)
        >>> a = mmd_poly_batches(x, y, wx, wy, method="gram")[0]
        >>> b = mmd_poly_batches(x, y, wx, wy, method="per-batch")[0]
        >>> c = mmd_poly_batches(x, y, wx, wy, method="moments")[0]
        >>> bool(np.allclose(a, b) and np.allclose(a, c))
        True
    """
    d = x.shape[1]
    used_x, used_y = np.asarray(wx > 0), np.asarray(wy > 0)
    if method == "matrix":
        method = "per-batch"
    if method == "auto":
        method = min(("gram", "per-batch", "moments"), key=lambda m: plan_cost(m, used_x, used_y, d, degree))
    m, n = wx.sum(axis=0), wy.sum(axis=0)
    batches = wx.shape[1]
    if method == "moments":
        s_xx, s_yy, s_xy = np.empty(batches), np.empty(batches), np.empty(batches)
        for i in range(batches):
            rx, ry = used_x[:, i], used_y[:, i]
            mx, my = _moments(x[rx], degree, wx[rx, i]), _moments(y[ry], degree, wy[ry, i])
            s_xx[i] = _kernel_sum_moments(mx, mx, d, degree)
            s_yy[i] = _kernel_sum_moments(my, my, d, degree)
            s_xy[i] = _kernel_sum_moments(mx, my, d, degree)
            if tick is not None:
                tick()
    elif method == "gram":
        rows_x, rows_y = used_x.any(axis=1), used_y.any(axis=1)
        xs, ys, wxs, wys = x[rows_x], y[rows_y], wx[rows_x], wy[rows_y]
        s_xx, s_yy = _gram_sums(xs, None, wxs, wxs, degree, tick), _gram_sums(ys, None, wys, wys, degree, tick)
        s_xy = _gram_sums(xs, ys, wxs, wys, degree, tick)
    elif method == "per-batch":
        s_xx, s_yy, s_xy = np.empty(batches), np.empty(batches), np.empty(batches)
        for i in range(batches):
            rx, ry = used_x[:, i], used_y[:, i]
            xs, ys, wxs, wys = x[rx], y[ry], wx[rx, i : i + 1], wy[ry, i : i + 1]
            s_xx[i] = _gram_sums(xs, None, wxs, wxs, degree, tick)[0]
            s_yy[i] = _gram_sums(ys, None, wys, wys, degree, tick)[0]
            s_xy[i] = _gram_sums(xs, ys, wxs, wys, degree, tick)[0]
    else:
        msg = f"expected method auto, gram, per-batch, matrix or moments but got {method!r}, in mmd_poly_batches"
        raise ValueError(msg)
    s_xx = s_xx - _diagonal(x, wx, d, degree)
    s_yy = s_yy - _diagonal(y, wy, d, degree)
    return s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2.0 * s_xy / (m * n), method


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
    from the kernel matrices in row blocks (``chunk`` is kept for compatibility and ignored).
    Both give the same number up to rounding.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> abs(mmd_poly_unbiased(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)))) < 0.05
        True
        >>> x, y = rng.normal(size=(50, 4)), rng.normal(size=(60, 4)) + 0.3
        >>> bool(np.isclose(mmd_poly_unbiased(x, y), mmd_poly_unbiased(x, y, chunk=7, method='matrix')))
        True
    """
    del chunk
    d = x.shape[1]
    use_moments = method == "moments" or (method == "auto" and d <= 40)
    chosen: Method = "moments" if use_moments and degree <= 4 else "per-batch"
    ones_x, ones_y = np.ones((len(x), 1)), np.ones((len(y), 1))
    return float(mmd_poly_batches(np.asarray(x, np.float64), np.asarray(y, np.float64), ones_x, ones_y, degree,
                                  chosen)[0][0])
