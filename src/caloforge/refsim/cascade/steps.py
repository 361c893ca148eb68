
# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""Numba helpers of the transport: table look-up, deposits into voxels, the particle stack, step limits,
multiple scattering (Wentzel law) and energy-loss straggling."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.physics import CLASSICAL_RADIUS_MM, ELECTRON_MASS
from caloforge.refsim.cascade.tables import GRID_PER_DECADE, GRID_RANGE

__all__ = ["ACTIVE", "BELOW_CUT", "EM_FROM_PI0", "HANDOFF", "INVISIBLE", "LEAKED", "LEDGER", "MASS", "PASSIVE",
           "boundary", "deposit", "highland", "lookup", "push", "read_local", "straggle", "voxel_index", "wentzel_cos"]

ACTIVE, PASSIVE, LEAKED, HANDOFF, MASS, BELOW_CUT, INVISIBLE, EM_FROM_PI0 = range(8)
LEDGER = ("active", "passive", "leaked", "handoff", "mass", "below_cut", "invisible", "em_from_pi0")
"""Ledger columns; incident = active + passive + leaked + handoff + mass + invisible (``below_cut`` is part of
active/passive, ``em_from_pi0`` the energy given to π0 photons: information)."""
P_TYPE, P_E, P_X, P_Y, P_Z, P_U, P_V, P_W, P_SUB, P_DEEP = range(10)
"""Stack columns; ``P_DEEP``: the deepest sub-layer (largest index) that the particle's lineage has reached."""
LOG_LO = math.log10(GRID_RANGE[0])


@nb.njit(cache=True)
def lookup(data: NDArray[np.float64], m: int, row: int, e: float) -> float:
    x = (math.log10(e) - LOG_LO) * GRID_PER_DECADE
    n = data.shape[2]
    if x <= 0.0:
        return float(data[m, row, 0])
    i = int(x)
    if i >= n - 1:
        return float(data[m, row, n - 1])
    f = x - i
    return float(data[m, row, i] * (1.0 - f) + data[m, row, i + 1] * f)


@nb.njit(cache=True)
def voxel_index(x: float, y: float, li: int, r_edges: NDArray[np.float64], r_off: NDArray[np.int64],
                n_r: NDArray[np.int64], n_alpha: NDArray[np.int64], vox_off: NDArray[np.int64]) -> int:
    """The voxel (layer -> alpha -> r order) of the point (x, y) mm in geometry layer ``li``; -1 outside the binning."""
    r = math.sqrt(x * x + y * y)
    lo, hi = r_off[li], r_off[li + 1]
    if r < r_edges[lo] or r >= r_edges[hi - 1]:
        return -1
    rb = np.searchsorted(r_edges[lo:hi], r, side="right") - 1
    na = n_alpha[li]
    ab = min(max(int((math.atan2(y, x) + math.pi) / (2.0 * math.pi) * na), 0), na - 1)
    return int(vox_off[li] + ab * n_r[li] + rb)


@nb.njit(cache=True)
def deposit(e: float, x: float, y: float, isub: int, deep: int, row: int, active: NDArray[np.int64],
             layer: NDArray[np.int64], calib: NDArray[np.float64], r_edges: NDArray[np.float64],
             r_off: NDArray[np.int64], n_r: NDArray[np.int64], n_alpha: NDArray[np.int64],
             vox_off: NDArray[np.int64], out: NDArray[np.float64], ledger: NDArray[np.float64],
             back: NDArray[np.float64], n_back: NDArray[np.int64]) -> None:
    """Energy ``e`` left at (x, y) in sub-layer ``isub`` by a particle whose lineage reached sub-layer ``deep``.

    With a ``back`` list (rows: shower row, voxel, ``deep``, energy; ``n_back[0]`` its length, counted on past
    its end so that the caller can grow it and repeat) a deposit whose lineage went deeper than ``isub`` is
    listed there instead of being added to ``out`` (the frozen-shower library keeps such albedo apart).
    """
    if active[isub] == 0:
        ledger[row, PASSIVE] += e
        return
    ledger[row, ACTIVE] += e
    li = layer[isub]
    if li < 0:
        return
    k = voxel_index(x, y, li, r_edges, r_off, n_r, n_alpha, vox_off)
    if k < 0:
        return
    if deep > isub and back.shape[0] > 0:
        n = n_back[0]
        if n < back.shape[0]:
            back[n, 0], back[n, 1], back[n, 2], back[n, 3] = row, k, deep, e * calib[isub]
        n_back[0] = n + 1
        return
    out[row, k] += e * calib[isub]


@nb.njit(cache=True)
def read_local(e: float, x: float, y: float, isub: int, row: int, scale: NDArray[np.float64],
                layer_of: NDArray[np.int64], r_edges: NDArray[np.float64], r_off: NDArray[np.int64],
                n_r: NDArray[np.int64], n_alpha: NDArray[np.int64], vox_off: NDArray[np.int64],
                out: NDArray[np.float64]) -> None:
    li = layer_of[isub]
    if li < 0 or scale[isub] <= 0.0:
        return
    k = voxel_index(x, y, li, r_edges, r_off, n_r, n_alpha, vox_off)
    if k >= 0:
        out[row, k] += e * scale[isub]


@nb.njit(cache=True)
def push(stack: NDArray[np.float64], top: int, kind: int, e: float, x: float, y: float, z: float,
          u: float, v: float, w: float, isub: int, deep: int) -> int:
    if top >= stack.shape[0]:
        msg = "cascade particle stack overflow"
        raise RuntimeError(msg)
    stack[top, P_TYPE], stack[top, P_E] = kind, e
    stack[top, P_X], stack[top, P_Y], stack[top, P_Z] = x, y, z
    stack[top, P_U], stack[top, P_V], stack[top, P_W], stack[top, P_SUB] = u, v, w, isub
    stack[top, P_DEEP] = max(deep, isub)
    return top + 1


@nb.njit(cache=True)
def boundary(z: float, w: float, isub: int, z_edges: NDArray[np.float64]) -> float:
    if w > 1e-12:
        return float((z_edges[isub + 1] - z) / w)
    if w < -1e-12:
        return float((z_edges[isub] - z) / w)
    return 1e300


@nb.njit(cache=True)
def highland(s: float, x0: float, t: float, mass: float) -> float:
    """θ0 of the PDG/Highland formula for a path ``s`` (mm), kinetic energy ``t`` and ``mass`` (MeV)."""
    p = math.sqrt(t * (t + 2.0 * mass))
    beta2 = p * p / ((t + mass) * (t + mass))
    xr = s / x0
    if xr <= 0.0:
        return 0.0
    corr = max(1.0 + 0.038 * math.log(xr / beta2), 0.0)
    return 13.6 / (math.sqrt(beta2) * p) * math.sqrt(xr) * corr


def _wentzel_table() -> NDArray[np.float64]:
    """ln A of the Wentzel law 1/(1 - cos θ + 2A)² whose mean 1 - cos θ is m, on a grid of ln m (numpy, at import).

    The mean is 2A(1 + A)[ln(1 + 1/A) - 1/(1 + A)], increasing from 0 (A -> 0) to 1 (A -> ∞, isotropic).
    """
    ln_a = np.linspace(-45.0, 14.0, 400001)
    a = np.exp(ln_a)
    mean = 2 * a * (1 + a) * (np.log1p(1 / a) - 1 / (1 + a))
    ok = mean < 1 - 1e-12
    grid = np.linspace(WENTZEL_LNM[0], WENTZEL_LNM[1], WENTZEL_POINTS)
    return np.asarray(np.interp(grid, np.log(mean[ok]), ln_a[ok]), dtype=np.float64)


WENTZEL_LNM = (-30.0, -1e-6)
"""Range of ln(mean 1 - cos θ) of the tabulated screening parameters (below: the first point; above: isotropic)."""
WENTZEL_POINTS = 1501
WENTZEL_LN_A = _wentzel_table()


@nb.njit(cache=True)
def wentzel_cos(g: float) -> float:
    """cos θ after a step of ``g`` = s/λ1 transport mean free paths (Goudsmit-Saunderson: mean cos θ = e^-g).

    The angle is drawn from the Wentzel (screened single-scattering) law with that mean: a Gaussian-like core
    and the large-angle tail that lets slow electrons turn round in lead (backscattering).
    """
    m = -math.expm1(-g)
    if m <= 0.0:
        return 1.0
    x = (math.log(m) - WENTZEL_LNM[0]) / (WENTZEL_LNM[1] - WENTZEL_LNM[0]) * (WENTZEL_POINTS - 1)
    if x >= WENTZEL_POINTS - 1:
        return 2.0 * np.random.random() - 1.0
    x = max(x, 0.0)
    i = int(x)
    f = x - i
    a = math.exp(WENTZEL_LN_A[i] * (1.0 - f) + WENTZEL_LN_A[i + 1] * f)
    xi = np.random.random()
    return 1.0 - 2.0 * a * xi / (1.0 + a - xi)


@nb.njit(cache=True)
def straggle(loss: float, s: float, t: float, mass: float, t_cut: float, n_el: float) -> float:
    """The continuous loss of a charged step, with its fluctuation: a gamma law with mean ``loss`` and Bohr's
    variance 2π r_e² m_e c² n_el s T_cut (1 - β²/2)/β² of the transfers below ``t_cut`` (the δ-ray cut or
    T_max; PDG 34.2.9), for kinetic energy ``t`` and ``mass`` (MeV).

    The gamma law keeps the loss positive and has a Landau-like right tail; the variance, which is what
    the resolution of a sampling calorimeter sees, is exact for any step.
    """
    if loss <= 0.0:
        return loss
    gam = t / mass + 1.0
    beta2 = 1.0 - 1.0 / (gam * gam)
    var = 2.0 * math.pi * CLASSICAL_RADIUS_MM**2 * ELECTRON_MASS * n_el * s * t_cut * (1.0 - 0.5 * beta2) / beta2
    if var <= 0.0:
        return loss
    return float(np.random.gamma(loss * loss / var, var / loss))
