"""Statistics of the parametric baseline: reservoirs, Gaussian copulas, quantile tables, gamma draws.

Pure torch functions on the caller's device; every random draw takes a ``torch.Generator``.

References:
    J. S. Vitter, Random sampling with a reservoir (Algorithm R), ACM TOMS 11 (1985) 37.
    G. Marsaglia, W. W. Tsang, A simple method for generating gamma variables, ACM TOMS 26 (2000) 363.
    ATLAS Collaboration, AtlFast3 (FastCaloSim V2: energies through their cumulative distributions
    to Gaussians, then a PCA), arXiv:2109.02551.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fit_copula", "interpolate_quantiles", "reservoir_slots", "standard_gamma"]


def reservoir_slots(
    groups: Tensor, seen: Tensor, capacity: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Where a batch of items goes in per-group reservoirs of ``capacity`` rows (Algorithm R, vectorised).

    Item ``i`` is the ``s``-th item of its group ever seen; it fills row ``s - 1`` while the reservoir
    has room, and afterwards replaces a uniformly chosen row with probability ``capacity / s``. When
    several items of a batch pick the same row, the last one wins, as in the sequential algorithm.

    Args:
        groups: Group of each item, int64 (N,).
        seen: Items seen so far per group, int64 (G,).
        capacity: Rows per reservoir.
        generator: Random numbers for the replacement draws.

    Returns:
        ``(items, groups, rows)``: the indices of the items to store, their groups and their rows;
        and ``seen`` is not modified (add ``bincount(groups)`` to it afterwards).

    Example:
        >>> items, g, rows = reservoir_slots(torch.tensor([0, 1, 0]), torch.tensor([0, 2]), 4, None)
        >>> items.tolist(), g.tolist(), rows.tolist()  # room for all: rows in order of arrival
        ([0, 2, 1], [0, 0, 1], [0, 1, 2])
    """
    n = groups.shape[0]
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=seen.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(groups)
    rank[order] = torch.arange(n, device=groups.device) - starts[groups[order]]
    s = seen[groups] + rank + 1  # 1-based position in the group's stream
    u = torch.rand(n, generator=generator, device=groups.device, dtype=torch.float64)
    draw = (u * s.double()).floor().long()
    rows = torch.where(s <= capacity, s - 1, draw)
    keep = rows < capacity
    key = groups * capacity + rows
    unique, inverse = torch.unique(key[keep], return_inverse=True)
    candidates = torch.arange(n, device=groups.device)[keep]
    winner = torch.full((unique.shape[0],), -1, dtype=torch.long, device=groups.device)
    winner = winner.scatter_reduce(0, inverse, candidates, reduce="amax")
    return winner, groups[winner], rows[winner]


def _mid_ranks(x: Tensor) -> Tensor:
    """Ranks 1..n of each column of ``x`` (n, D), ties sharing their mean rank."""
    out = torch.empty_like(x, dtype=torch.float64)
    for j in range(x.shape[1]):
        _, inverse, counts = torch.unique(x[:, j], return_inverse=True, return_counts=True)
        ends = torch.cumsum(counts, 0).double()
        out[:, j] = (ends - (counts.double() - 1) / 2)[inverse]
    return out


def fit_copula(rows: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """Gaussian copula of a sample: marginal quantile tables and the Cholesky factor of the normal-score correlation.

    Args:
        rows: The sample, (n, D) with n >= 2.
        levels: Quantile levels ``j / (levels - 1)``, j = 0..levels-1 (the first and last are the minimum and maximum).

    Returns:
        ``(quantiles (D, levels), cholesky (D, D))``, float64. A constant column is independent of the others.

    Example:
        >>> q, l = fit_copula(torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]]), 3)
        >>> q.tolist(), round(float(l[1, 0]), 3)
        ([[0.0, 1.0, 2.0], [1.0, 3.0, 5.0]], 1.0)
    """
    x = rows.double()
    n, d = x.shape
    sorted_x = x.sort(dim=0).values
    position = torch.linspace(0, n - 1, levels, dtype=torch.float64, device=x.device)
    low = position.floor().long().clamp(max=n - 2) if n > 1 else position.long()
    w = (position - low).unsqueeze(0)
    quantiles = (sorted_x[low].T * (1 - w) + sorted_x[(low + 1).clamp(max=n - 1)].T * w)
    scores = torch.special.ndtri((_mid_ranks(x) - 0.5) / n)
    scores = scores - scores.mean(dim=0)
    norm = scores.square().sum(dim=0).sqrt()
    varies = norm > 1e-9
    scores = torch.where(varies, scores / norm.clamp_min(1e-9), torch.zeros_like(scores))
    corr = scores.T @ scores
    corr = torch.where(varies.unsqueeze(0) & varies.unsqueeze(1), corr, torch.zeros_like(corr))
    corr.diagonal().fill_(1.0)
    for jitter in (1e-9, 1e-6, 1e-3, 1e-1):
        chol, info = torch.linalg.cholesky_ex((1 - jitter) * corr + jitter * torch.eye(d, dtype=corr.dtype,
                                                                                        device=corr.device))
        if int(info) == 0:
            return quantiles, chol
    return quantiles, torch.eye(d, dtype=corr.dtype, device=corr.device)


def interpolate_quantiles(tables: Tensor, knots: Tensor, u: Tensor) -> Tensor:
    """Values at probabilities ``u`` (N, D) of the quantile tables (K, D, Q) of ``knots`` (N,), linear between levels.

    Example:
        >>> tables = torch.tensor([[[0.0, 1.0, 4.0]]])
        >>> interpolate_quantiles(tables, torch.tensor([0, 0]), torch.tensor([[0.25], [1.0]])).tolist()
        [[0.5], [4.0]]
    """
    levels = tables.shape[-1]
    position = u.clamp(0, 1) * (levels - 1)
    low = position.floor().long().clamp(max=max(levels - 2, 0))
    w = position - low
    row, column = knots.unsqueeze(1), torch.arange(tables.shape[1], device=u.device).unsqueeze(0)
    a = tables[row, column, low]
    b = tables[row, column, (low + 1).clamp(max=levels - 1)]
    return a + (b - a) * w


def standard_gamma(shape: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gamma(shape, 1) draws for positive ``shape`` (any tensor shape), by Marsaglia and Tsang's method.

    Shapes below 1 use ``Gamma(a) = Gamma(a + 1) * U^(1/a)``. Each round draws for the entries
    still rejected (under 5 % per round), so the loop ends after a few rounds.

    Example:
        >>> x = standard_gamma(torch.full((20000,), 2.5, dtype=torch.float64), torch.Generator().manual_seed(0))
        >>> abs(float(x.mean()) - 2.5) < 0.05, abs(float(x.var()) - 2.5) < 0.15
        (True, True)
    """
    a = shape.clamp_min(1e-30)
    boosted = torch.where(a < 1, a + 1, a)
    d = boosted - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    out = torch.empty_like(a)
    pending = torch.ones_like(a, dtype=torch.bool)
    while bool(pending.any()):
        idx = pending.nonzero(as_tuple=True)
        dd, cc = d[idx], c[idx]
        x = torch.randn(dd.shape, generator=generator, device=a.device, dtype=a.dtype)
        u = torch.rand(dd.shape, generator=generator, device=a.device, dtype=a.dtype)
        v = (1 + cc * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x.square() + dd - dd * v + dd * torch.log(v.clamp_min(1e-300)))
        accepted = tuple(i[ok] for i in idx)
        out[accepted] = (dd * v)[ok]
        pending[accepted] = False
    small = a < 1
    u = torch.rand(a.shape, generator=generator, device=a.device, dtype=a.dtype)
    return torch.where(small, out * u.pow(1 / a), out)
