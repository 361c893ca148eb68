"""GFLASH's longitudinal laws fitted to voxelised showers: per-shower gamma profiles, then their log-normal laws.

Grindhammer and Peters describe each electromagnetic shower's mean longitudinal energy profile
by a gamma distribution, fitted shower by shower; over many showers, ln T (the depth of the
maximum, T = (α − 1)/β) and ln α are normally distributed with means, spreads and a correlation
that depend on ln y = ln(E/E_c). This module makes the same fit on showers in the CaloChallenge
format, so that any sample (the cascade mode's, a user's Geant4 file) can be set beside GFLASH's
published laws (:func:`caloforge.refsim.em.mean_log_parameters`):

1. each shower's layer energies and the layers' depths (X0 of their own materials, from the
   detector description) give the mean depth ⟨t⟩ and the variance of its profile, corrected
   for the layers' widths (Sheppard: var − Σ w Δ²/12 / Σ w);
2. a gamma law with the same two moments has α = ⟨t⟩²/var and β = ⟨t⟩/var (method of moments;
   GFLASH fitted the profiles, which for a gamma-shaped profile gives the same parameters up to
   statistical noise), hence T = (α − 1)/β;
3. ⟨ln T⟩, ⟨ln α⟩, σ(ln T), σ(ln α) and ρ over the showers with α > 1.

Depth is counted from the front of the first instrumented layer; the profile is the energy read
in the file (the active layers' signal), which is what a fit to a sampling calorimeter's data sees.

References:
    G. Grindhammer, S. Peters, The Parameterized Simulation of Electromagnetic Showers in
    Homogeneous and Sampling Calorimeters, hep-ex/0001020.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.errors import DataError
from caloforge.refsim.detector import Detector

__all__ = ["GflashFit", "fit_gflash", "layer_depths_x0"]


@dataclass(frozen=True)
class GflashFit:
    """GFLASH's log-normal laws of (T, α) fitted to a sample of showers of one energy.

    Attributes:
        mean_ln_t: ⟨ln T⟩, T in X0.
        mean_ln_alpha: ⟨ln α⟩.
        sigma_ln_t: σ(ln T).
        sigma_ln_alpha: σ(ln α).
        rho: Correlation of ln T and ln α.
        n_showers: Showers fitted (α > 1 and a non-empty profile).
    """

    mean_ln_t: float
    mean_ln_alpha: float
    sigma_ln_t: float
    sigma_ln_alpha: float
    rho: float
    n_showers: int


def layer_depths_x0(detector: Detector, geometry: Geometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Depth of each geometry layer's centre and its thickness, X0 of the layers' own materials.

    Counted from the front of the first slab that a geometry layer reads.

    Raises:
        DataError: if a geometry layer has no slab in the detector description.
    """
    front, centre, width = 0.0, {}, {}
    for slab in detector.slabs:
        t = slab.thickness_mm / slab.material.x0_mm
        if slab.layer_id is not None:
            centre[slab.layer_id], width[slab.layer_id] = front + t / 2, t
        front += t
    missing = [lid for lid in geometry.layer_ids if lid not in centre]
    if missing:
        msg = f"expected a slab for every geometry layer but layers {missing} have none, in {detector.name}"
        raise DataError(msg)
    start = min(centre[lid] - width[lid] / 2 for lid in geometry.layer_ids)
    return (np.array([centre[lid] - start for lid in geometry.layer_ids]),
            np.array([width[lid] for lid in geometry.layer_ids]))


def fit_gflash(layer_energies: NDArray[np.floating], depth_x0: NDArray[np.float64],
               width_x0: NDArray[np.float64]) -> GflashFit:
    """Fit GFLASH's laws to showers given their layer energies, (N, L), and the layers' depths and widths (L,).

    Example:
        >>> import numpy as np
        >>> from scipy.stats import gamma
        >>> rng = np.random.default_rng(0)
        >>> edges = np.arange(0.0, 41.0, 0.5)  # 80 layers of 0.5 X0
        >>> a = np.exp(rng.normal(np.log(4.0), 0.1, 2000))  # showers with ln α ~ N(ln 4, 0.1), β = 0.5
        >>> profiles = np.diff(gamma.cdf(edges[None, :], a[:, None], scale=2.0), axis=1)
        >>> fit = fit_gflash(profiles, (edges[:-1] + edges[1:]) / 2, np.diff(edges))
        >>> round(float(np.exp(fit.mean_ln_alpha)), 1), round(fit.sigma_ln_alpha, 2)
        (4.0, 0.1)
    """
    e = np.asarray(layer_energies, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != depth_x0.shape[0] or width_x0.shape != depth_x0.shape:
        msg = f"expected (N, {depth_x0.shape[0]}) layer energies but got {e.shape}, in fit_gflash"
        raise DataError(msg)
    total = e.sum(axis=1)
    keep = total > 0
    e, total = e[keep], total[keep]
    mean = e @ depth_x0 / total
    var = e @ depth_x0**2 / total - mean**2 - e @ (width_x0**2 / 12.0) / total
    ok = var > 0
    alpha = mean[ok] ** 2 / var[ok]
    beta = mean[ok] / var[ok]
    good = alpha > 1.0
    if good.sum() < 3:
        msg = f"expected at least 3 showers with a gamma-shaped profile but got {int(good.sum())}, in fit_gflash"
        raise DataError(msg)
    ln_a = np.log(alpha[good])
    ln_t = np.log((alpha[good] - 1.0) / beta[good])
    return GflashFit(float(ln_t.mean()), float(ln_a.mean()), float(ln_t.std(ddof=1)), float(ln_a.std(ddof=1)),
                     float(np.corrcoef(ln_t, ln_a)[0, 1]), int(good.sum()))
