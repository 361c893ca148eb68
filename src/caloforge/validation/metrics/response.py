"""Energy response and resolution per incident energy, and the layer-energy correlations.

For each incident energy (each distinct energy of a discrete spectrum, or 10
log-spaced bins of a continuous one) with n showers of response x = E_tot/E_inc:

* response: mean <x>, error std(x)/sqrt(n);
* resolution: relative RMS std(x)/<x>, error resolution/sqrt(2(n-1)) (Gaussian approximation).

The layer correlation matrix is the Pearson correlation of the per-layer energies
over all showers; layers that are constant (e.g. always empty) get 0 off the diagonal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.showers import energy_bins
from caloforge.errors import DataError

__all__ = [
    "EnergyResponse",
    "ResolutionFit",
    "ResponseResult",
    "fit_resolution",
    "layer_correlation",
    "response_per_energy",
    "robust_relative_width",
]


@dataclass(frozen=True)
class EnergyResponse:
    """Mean response and relative resolution at one incident energy (bin), energies in MeV."""

    energy_low: float
    energy_high: float
    energy_mean: float
    n: int
    response: float
    response_error: float
    resolution: float
    resolution_error: float


@dataclass(frozen=True)
class ResponseResult:
    """Response and resolution per incident energy, lowest energy first."""

    per_energy: tuple[EnergyResponse, ...]

    def arrays(self) -> dict[str, NDArray[np.float64]]:
        """The columns as arrays: energy, response, response_error, resolution, resolution_error."""
        keys = ("energy_mean", "response", "response_error", "resolution", "resolution_error")
        return {k: np.array([getattr(e, k) for e in self.per_energy]) for k in keys}


def response_per_energy(
    energies: ArrayLike, response: ArrayLike, energy_edges: ArrayLike | None = None
) -> ResponseResult:
    """Mean response and relative RMS of E_tot/E_inc per incident energy.

    Args:
        energies: Incident energies, MeV, (N,).
        response: E_tot/E_inc, (N,).
        energy_edges: Incident-energy bin edges (default: :func:`caloforge.data.showers.energy_bins`).

    Example:
        >>> r = response_per_energy([100.0, 100.0, 200.0, 200.0], [0.9, 1.1, 1.0, 1.0])
        >>> [(e.energy_mean, round(e.response, 3), round(e.resolution, 4)) for e in r.per_energy]
        [(100.0, 1.0, 0.1414), (200.0, 1.0, 0.0)]
    """
    e = np.asarray(energies, np.float64)
    x = np.asarray(response, np.float64)
    if e.shape != x.shape or e.ndim != 1:
        msg = f"expected energies and responses of the same shape (N,) but got {e.shape} and {x.shape}"
        raise DataError(msg)
    edges = energy_bins(e) if energy_edges is None else np.asarray(energy_edges, np.float64)
    rows = []
    for low, high in itertools.pairwise(edges):
        sel = x[(e >= low) & (e < high)]
        if sel.size < 2:
            continue
        mean, std = float(sel.mean()), float(sel.std(ddof=1))
        res = std / mean if mean != 0 else float("nan")
        rows.append(EnergyResponse(
            float(low), float(high), float(e[(e >= low) & (e < high)].mean()), int(sel.size),
            mean, std / np.sqrt(sel.size), res, res / np.sqrt(2.0 * (sel.size - 1)),
        ))
    return ResponseResult(tuple(rows))


def layer_correlation(e_layer: ArrayLike) -> NDArray[np.float64]:
    """Pearson correlation matrix (L, L) of the per-layer energies (N, L).

    Example:
        >>> layer_correlation([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 6.5, 5.0]]).round(3).tolist()
        [[1.0, 0.998, 0.0], [0.998, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    x = np.asarray(e_layer, np.float64)
    if x.ndim != 2 or len(x) < 2:
        msg = f"expected layer energies of shape (N >= 2, L) but got {x.shape}, in layer_correlation"
        raise DataError(msg)
    centred = x - x.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    safe = np.where(norm > 0, norm, 1.0)
    corr = (centred.T @ centred) / np.outer(safe, safe)
    corr[norm == 0, :] = 0.0
    corr[:, norm == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.asarray(np.clip(corr, -1.0, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class ResolutionFit:
    """Calorimeter resolution sigma/E = stochastic/sqrt(E[GeV]) (+) constant (added in quadrature)."""

    stochastic: float
    constant: float


def fit_resolution(energies_gev: ArrayLike, relative_width: ArrayLike) -> ResolutionFit:
    """Fit (sigma/E)^2 = a^2/E + b^2, linear in (a^2, b^2), each point weighted by its relative size.

    Args:
        energies_gev: Incident energies, GeV.
        relative_width: sigma/E at those energies.

    Example:
        >>> e = np.array([1.0, 10.0, 100.0])
        >>> fit = fit_resolution(e, np.sqrt(0.1**2 / e + 0.01**2))
        >>> round(fit.stochastic, 6), round(fit.constant, 6)
        (0.1, 0.01)
    """
    e = np.asarray(energies_gev, dtype=np.float64)
    rel = np.asarray(relative_width, dtype=np.float64)
    design = np.stack([1 / e, np.ones_like(e)], axis=1) / rel[:, None] ** 2
    coef, *_ = np.linalg.lstsq(design, np.ones_like(rel), rcond=None)
    a2, b2 = np.clip(coef, 0.0, None)
    return ResolutionFit(float(np.sqrt(a2)), float(np.sqrt(b2)))


def robust_relative_width(response: ArrayLike) -> float:
    """Gaussian-core relative width: inter-quartile range / 1.349 / median (insensitive to long tails)."""
    q1, median, q3 = np.percentile(np.asarray(response, dtype=np.float64), [25, 50, 75])
    return float((q3 - q1) / 1.349 / median)
