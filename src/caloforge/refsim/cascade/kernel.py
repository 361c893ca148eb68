# ruff: noqa: NPY002  (numba kernels can only use the legacy np.random API, seeded per shower)
"""The transport kernel (numba): one shower at a time, particle by particle, through the sub-layers.

Particles live on a last-in-first-out stack (columns :data:`P_TYPE` ...), so a shower is
followed depth first and the stack stays short. Photons fly to their next interaction
(pair, Compton, photo-absorption; exponential free paths, resampled at each boundary);
charged particles take condensed-history steps limited by the next discrete interaction,
the next boundary, ``max_step_x0`` and ``max_loss_fraction``; the continuous loss of a step
(in active media with Bohr's straggling, :func:`.steps.straggle`) is deposited at its midpoint, and multiple
scattering (e±: the Wentzel law with the Goudsmit-Saunderson mean cosine,
:func:`.steps.wentzel_cos`; pions: Highland), with the correlated lateral displacement of the
PDG, is applied at its end. Deposits in active sub-layers of a read-out
slab go to the voxel under them (file units: × the readout's calibration).

The ledger (per shower, MeV) closes exactly: incident = active + passive + leaked + handed off
+ rest mass (2 m_e per pair minus 2 m_e per annihilation). Below-cut deposits are also counted
apart (they are part of active/passive).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from caloforge.refsim.cascade import sampling as sm
from caloforge.refsim.cascade.hadronic import PION_STOP_MEV, pion_interaction, pion_lambda_mm
from caloforge.refsim.cascade.jit import nb
from caloforge.refsim.cascade.physics import ELECTRON_MASS
from caloforge.refsim.cascade.steps import (
    ACTIVE,
    BELOW_CUT,
    EM_FROM_PI0,
    HANDOFF,
    INVISIBLE,
    LEAKED,
    LEDGER,
    MASS,
    P_DEEP,
    P_E,
    P_SUB,
    P_TYPE,
    P_U,
    P_V,
    P_W,
    P_X,
    P_Y,
    P_Z,
    PASSIVE,
    boundary,
    deposit,
    highland,
    lookup,
    push,
    read_local,
    straggle,
    wentzel_cos,
)
from caloforge.refsim.cascade.tables import BHABHA, BREM, COMPTON, DEDX_E, DEDX_P, DEDX_PI, MOLLER, MSC, PAIR, PHOTO

__all__ = ["ACTIVE", "BELOW_CUT", "EM_FROM_PI0", "GAMMA", "HANDOFF", "INVISIBLE", "LEAKED", "LEDGER", "MASS",
           "PASSIVE", "transport_from", "transport_showers"]

M = ELECTRON_MASS
GAMMA, ELECTRON, POSITRON, PION = 0, 1, 2, 3
STACK_SIZE = 1 << 16
WORLD_RADIUS_MM = 4000.0
"""Particles farther than this from the axis have left the detector (lateral leakage)."""
CONFIG_FIELDS = 12
"""Length of the ``cfg`` array: brems cut, δ cut, e cut, γ cut, max step X0, max loss, split, min hand-off,
min hand-off cosine, pion model flag, largest Highland angle per step, library hand-offs flag."""


@nb.njit(cache=True)
def transport_showers(
    kinds: NDArray[np.int64], energies: NDArray[np.float64], seeds: NDArray[np.int64], cfg: NDArray[np.float64],
    z_edges: NDArray[np.float64], material: NDArray[np.int64], active: NDArray[np.int64],
    layer: NDArray[np.int64], calib: NDArray[np.float64], data: NDArray[np.float64], props: NDArray[np.float64],
    r_edges: NDArray[np.float64], r_off: NDArray[np.int64], n_r: NDArray[np.int64], n_alpha: NDArray[np.int64],
    vox_off: NDArray[np.int64], out: NDArray[np.float64], ledger: NDArray[np.float64],
    handoff: NDArray[np.float64], local_scale: NDArray[np.float64], layer_of: NDArray[np.int64],
    had_vis: NDArray[np.float64], had_scale: NDArray[np.float64],
) -> int:
    """:func:`transport_from` with every shower incident at the origin along +z, in sub-layer 0."""
    return transport_from(kinds, energies, seeds, cfg, z_edges, material, active, layer, calib, data, props, r_edges,
                          r_off, n_r, n_alpha, vox_off, out, ledger, handoff, local_scale, layer_of, had_vis,
                          had_scale, np.empty((0, 5)), np.empty((0, 4)), np.zeros(1, dtype=np.int64))


@nb.njit(cache=True)
def transport_from(
    kinds: NDArray[np.int64], energies: NDArray[np.float64], seeds: NDArray[np.int64], cfg: NDArray[np.float64],
    z_edges: NDArray[np.float64], material: NDArray[np.int64], active: NDArray[np.int64],
    layer: NDArray[np.int64], calib: NDArray[np.float64], data: NDArray[np.float64], props: NDArray[np.float64],
    r_edges: NDArray[np.float64], r_off: NDArray[np.int64], n_r: NDArray[np.int64], n_alpha: NDArray[np.int64],
    vox_off: NDArray[np.int64], out: NDArray[np.float64], ledger: NDArray[np.float64],
    handoff: NDArray[np.float64], local_scale: NDArray[np.float64], layer_of: NDArray[np.int64],
    had_vis: NDArray[np.float64], had_scale: NDArray[np.float64], start: NDArray[np.float64],
    back: NDArray[np.float64], n_back: NDArray[np.int64],
) -> int:
    """Transport each shower; returns the number of hand-off rows written.

    ``start`` (N, 5): each shower's start depth z (mm, on the axis x = y = 0), direction (u, v, w) and
    sub-layer; with no rows every shower starts at the origin along +z in sub-layer 0 (the frozen-shower
    library, :mod:`.library`, starts its sub-showers inside a stack, at an angle).

    In hybrid mode with GFLASH hand-offs (``cfg[11]`` = 0) a particle below the hand-off minimum is read where it
    is (photons: where they first interact) with ``local_scale`` (file MeV per MeV: the transported sampling
    fraction times the calibration, per sub-layer) into the voxel of layer ``layer_of`` (per sub-layer). With
    library hand-offs (``cfg[11]`` = 1, :mod:`.replay`) such a photon is transported, and such an e± deposits its
    energy where it is, in the sub-layer it is in (as below the tracking cut; a positron's annihilation photons are
    transported): read locally with the mean response it always hit a voxel where transport mostly leaves it in
    the absorber (1 GeV electrons: 3 % more hit voxels); transporting the e± too costs 4× the hybrid's time for
    no visible change. And the primary is never handed off: a primary below the split would otherwise be one
    replayed entry, one of the few dozen of its energy and start phase, with the library's stack behind its
    start instead of the detector's front face (1 GeV electrons: 7 % smaller response spread, 5 % more energy in
    layer 0).

    ``had_vis`` and ``had_scale`` (per sub-layer): active share and file MeV per MeV of the energy of slow
    nucleons from pion interactions (the slab's MIP sampling fraction).

    ``back`` and ``n_back``: the albedo list of :func:`.steps.deposit` (no rows: every deposit goes to ``out``);
    each particle carries its lineage's deepest sub-layer (stack column ``P_DEEP``).

    ``handoff`` rows: shower row, type, E, x, y, z, u, v, w, three uniform-derived numbers
    (two normals and a uniform, drawn here so that the hand-off deposit depends only on the
    shower's seed). Returns -1 when ``handoff`` is too short (the caller grows it and repeats).
    """
    k_cut, d_cut, e_cut, g_cut = cfg[0], cfg[1], cfg[2], cfg[3]
    max_x0, max_loss, split, ho_min, ho_cos, pions = cfg[4], cfg[5], cfg[6], cfg[7], cfg[8], cfg[9] > 0
    th_max = cfg[10]
    library = cfg[11] > 0
    e_soft = max(ho_min, e_cut) if library and split > 0.0 else e_cut  # library hand-offs: secondary e± stop here
    nsub = material.size
    stack = np.empty((STACK_SIZE, P_DEEP + 1))
    n_ho = 0
    for row in range(energies.size):
        sm.seed_numba(seeds[row])
        if start.shape[0] > 0:
            top = push(stack, 0, kinds[row], energies[row], 0.0, 0.0, start[row, 0], start[row, 1], start[row, 2],
                       start[row, 3], int(start[row, 4]), 0)
        else:
            top = push(stack, 0, kinds[row], energies[row], 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0, 0)
        first = True
        while top > 0:
            top -= 1
            primary = first and library  # with library hand-offs the primary is transported
            first = False
            kind, e = int(stack[top, P_TYPE]), stack[top, P_E]
            x, y, z = stack[top, P_X], stack[top, P_Y], stack[top, P_Z]
            u, v, w, isub = stack[top, P_U], stack[top, P_V], stack[top, P_W], int(stack[top, P_SUB])
            deep = int(stack[top, P_DEEP])
            n_lambda = -math.log(1.0 - np.random.random())
            while True:
                if x * x + y * y > WORLD_RADIUS_MM * WORLD_RADIUS_MM:
                    ledger[row, LEAKED] += e
                    break
                if split > 0.0 and kind != PION and ho_min <= e < split and w >= ho_cos and not primary:
                    if n_ho >= handoff.shape[0]:
                        return -1
                    h = handoff[n_ho]
                    h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8] = row, kind, e, x, y, z, u, v, w
                    h[9], h[10], h[11] = np.random.standard_normal(), np.random.standard_normal(), np.random.random()
                    n_ho += 1
                    ledger[row, HANDOFF] += e
                    if kind == POSITRON:  # its annihilation photons go with the sub-shower
                        h[2] = e + 2.0 * M
                        ledger[row, HANDOFF] += 2.0 * M
                        ledger[row, MASS] -= 2.0 * M
                    break
                if split > 0.0 and not library and kind != PION and e < ho_min:  # a soft particle is read where it is
                    if kind == GAMMA:  # ... after flying to its first interaction in the local medium
                        mat = material[isub]
                        mu = (lookup(data, mat, PAIR, e) + lookup(data, mat, COMPTON, e)
                              + lookup(data, mat, PHOTO, e))
                        s = -math.log(1.0 - np.random.random()) / mu
                        x, y, z = x + s * u, y + s * v, z + s * w
                        if z < z_edges[0] or z >= z_edges[nsub]:
                            ledger[row, LEAKED] += e
                            break
                        isub = np.searchsorted(z_edges, z, side="right") - 1
                    ledger[row, HANDOFF] += e
                    if kind == POSITRON:
                        ledger[row, HANDOFF] += 2.0 * M
                        ledger[row, MASS] -= 2.0 * M
                    read_local(e + (2.0 * M if kind == POSITRON else 0.0), x, y, isub, row, local_scale, layer_of,
                                r_edges, r_off, n_r, n_alpha, vox_off, out)
                    break
                mat = material[isub]
                x0 = props[mat, 0]
                if kind == GAMMA:
                    if e < g_cut:
                        deposit(e, x, y, isub, deep, row, active, layer, calib, r_edges, r_off, n_r, n_alpha, vox_off,
                                 out, ledger, back, n_back)
                        ledger[row, BELOW_CUT] += e
                        break
                    mu_p = lookup(data, mat, PAIR, e)
                    mu_c = lookup(data, mat, COMPTON, e)
                    mu_f = lookup(data, mat, PHOTO, e)
                    mu = mu_p + mu_c + mu_f
                    s = -math.log(1.0 - np.random.random()) / mu
                    db = boundary(z, w, isub, z_edges)
                    if s >= db:
                        x, y, z = x + db * u, y + db * v, z_edges[isub + 1] if w > 0 else z_edges[isub]
                        isub += 1 if w > 0 else -1
                        deep = max(deep, isub)
                        if isub < 0 or isub >= nsub:
                            ledger[row, LEAKED] += e
                            break
                        continue
                    x, y, z = x + s * u, y + s * v, z + s * w
                    r = np.random.random() * mu
                    if r < mu_f:
                        deposit(e, x, y, isub, deep, row, active, layer, calib, r_edges, r_off, n_r, n_alpha, vox_off,
                                 out, ledger, back, n_back)
                        break
                    if r < mu_f + mu_c:
                        eps, onecost = sm.compton_epsilon(e)
                        phi = 2.0 * math.pi * np.random.random()
                        gu, gv, gw = sm.rotate(u, v, w, 1.0 - onecost, phi)
                        te = e * (1.0 - eps)
                        px, py, pz = u - eps * gu, v - eps * gv, w - eps * gw
                        pn = math.sqrt(px * px + py * py + pz * pz)
                        if te > 0.0 and pn > 0.0:
                            top = push(stack, top, ELECTRON, te, x, y, z, px / pn, py / pn, pz / pn, isub, deep)
                        elif te > 0.0:
                            deposit(te, x, y, isub, deep, row, active, layer, calib, r_edges, r_off, n_r, n_alpha,
                                     vox_off, out, ledger, back, n_back)
                        e, u, v, w = e * eps, gu, gv, gw
                        continue
                    xf = sm.pair_fraction(e)
                    phi = 2.0 * math.pi * np.random.random()
                    for j in range(2):
                        tot = e * (xf if j == 0 else 1.0 - xf)
                        du, dv, dw = sm.rotate(u, v, w, math.cos(sm.emission_angle(tot)), phi + j * math.pi)
                        top = push(stack, top, ELECTRON if j == 0 else POSITRON, max(tot - M, 0.0), x, y, z,
                                    du, dv, dw, isub, deep)
                    ledger[row, MASS] += 2.0 * M
                    break
                # charged particles: e-, e+ and pions
                mass = 139.57 if kind == PION else M
                if kind == PION and e < PION_STOP_MEV:  # absorbed where it stops: a nuclear capture
                    top = pion_interaction(stack, top, row, e, x, y, z, u, v, w, isub, deep,
                                           props[material[isub], 2], z_edges, had_vis, had_scale, layer_of, r_edges,
                                           r_off, n_r, n_alpha, vox_off, out, ledger)
                    break
                if e < (e_soft if not primary else e_cut) or e <= 0.0:
                    deposit(e, x, y, isub, deep, row, active, layer, calib, r_edges, r_off, n_r, n_alpha, vox_off,
                             out, ledger, back, n_back)
                    ledger[row, BELOW_CUT] += e
                    if kind == POSITRON:
                        gu, gv, gw = sm.annihilation_direction()
                        top = push(stack, top, GAMMA, M, x, y, z, gu, gv, gw, isub, deep)
                        top = push(stack, top, GAMMA, M, x, y, z, -gu, -gv, -gw, isub, deep)
                        ledger[row, MASS] -= 2.0 * M
                    break
                if kind == PION:
                    dedx = lookup(data, mat, DEDX_PI, e)
                    sig_b, sig_d = 0.0, (1.0 / pion_lambda_mm(props[mat, 2]) if pions else 0.0)
                else:
                    dedx = lookup(data, mat, DEDX_P if kind == POSITRON else DEDX_E, e)
                    sig_b = lookup(data, mat, BREM, e)
                    sig_d = lookup(data, mat, BHABHA if kind == POSITRON else MOLLER, e)
                sig = sig_b + sig_d
                s_int = n_lambda / sig if sig > 0.0 else 1e300
                s_geo = max_x0 * x0 if kind != PION else 0.05 * props[mat, 2]
                s_loss = max(max_loss * e, e_cut) / max(dedx, 1e-300)
                bp = e * (e + 2.0 * mass) / (e + mass)
                s_geo = min(s_geo, x0 * (th_max * bp / 13.6) ** 2)
                db = boundary(z, w, isub, z_edges)
                s = min(s_int, s_geo, s_loss, db)
                crossed = s == db
                interacts = s == s_int and not crossed
                loss = dedx * s
                if active[isub] == 1:  # the read-out loss fluctuates: Bohr's variance below the δ cut (or T_max);
                    # in passive media only through the energy left, which changes no response (docs/refsim.md)
                    if kind == PION:
                        t_max = 2.0 * M * e * (e + 2.0 * mass) / (mass * mass + M * M + 2.0 * M * (e + mass))
                        t_cut = min(d_cut, t_max)
                    else:
                        t_cut = min(d_cut, e if kind == POSITRON else 0.5 * e)
                    loss = straggle(loss, s, e, mass, t_cut, props[mat, 3])
                stopped = loss >= e
                if stopped:
                    s, loss = e / max(dedx, 1e-300), e
                    crossed = interacts = False
                xm, ym = x + 0.5 * s * u, y + 0.5 * s * v
                deposit(loss, xm, ym, isub, deep, row, active, layer, calib, r_edges, r_off, n_r, n_alpha, vox_off,
                         out, ledger, back, n_back)
                going_up = w > 0
                nx, ny, nz = x + s * u, y + s * v, z + s * w
                if not stopped:
                    if kind == PION:  # Highland's Gaussian in two planes
                        th0 = highland(s, x0, e - 0.5 * loss, mass)
                        t1 = math.tan(max(min(np.random.standard_normal() * th0, 1.5), -1.5))
                        t2 = math.tan(max(min(np.random.standard_normal() * th0, 1.5), -1.5))
                        norm = math.sqrt(1.0 + t1 * t1 + t2 * t2)
                        cz, sx, sy = 1.0 / norm, t1 / norm, t2 / norm
                    else:  # e±: Wentzel law with the Goudsmit-Saunderson mean cosine exp(-s/λ1)
                        g = s * lookup(data, mat, MSC, e - 0.5 * loss)
                        cz = wentzel_cos(g)
                        sn, phi = math.sqrt(max(1.0 - cz * cz, 0.0)), 2.0 * math.pi * np.random.random()
                        sx, sy = sn * math.cos(phi), sn * math.sin(phi)
                        th0 = math.sqrt(min(g, 1.0))
                    # lateral displacement correlated with the deflection (PDG: s θ/2 plus s θ0/√12 independent)
                    dx1 = s * (np.random.standard_normal() * th0 / math.sqrt(12.0) + 0.5 * sx)
                    dx2 = s * (np.random.standard_normal() * th0 / math.sqrt(12.0) + 0.5 * sy)
                    e1x, e1y, e1z, e2x, e2y, e2z = sm.basis(u, v, w)
                    nx += dx1 * e1x + dx2 * e2x
                    ny += dx1 * e1y + dx2 * e2y
                    if not crossed:
                        nz = min(max(nz + dx1 * e1z + dx2 * e2z, z_edges[isub]), z_edges[isub + 1])
                    u, v, w = cz * u + sx * e1x + sy * e2x, cz * v + sx * e1y + sy * e2y, cz * w + sx * e1z + sy * e2z
                    norm = math.sqrt(u * u + v * v + w * w)
                    u, v, w = u / norm, v / norm, w / norm
                if crossed:
                    nz = z_edges[isub + 1] if going_up else z_edges[isub]
                x, y, z = nx, ny, nz
                e -= loss
                if stopped:
                    e = 0.0
                    continue
                if crossed:
                    isub += 1 if going_up else -1
                    deep = max(deep, isub)
                    if isub < 0 or isub >= nsub:
                        ledger[row, LEAKED] += e
                        break
                n_lambda -= sig * s
                if not interacts:
                    continue
                n_lambda = -math.log(1.0 - np.random.random())
                if kind == PION:
                    top = pion_interaction(stack, top, row, e, x, y, z, u, v, w, isub, deep, props[mat, 2], z_edges,
                                           had_vis, had_scale, layer_of, r_edges, r_off, n_r, n_alpha, vox_off, out,
                                           ledger)
                    break
                if np.random.random() * sig < sig_b:
                    yk = sm.brems_fraction(min(k_cut / e, 1.0))
                    k = yk * e
                    du, dv, dw = sm.rotate(u, v, w, math.cos(sm.emission_angle(e + M)),
                                           2.0 * math.pi * np.random.random())
                    top = push(stack, top, GAMMA, k, x, y, z, du, dv, dw, isub, deep)
                    e -= k
                else:
                    xd = sm.delta_fraction(e, min(d_cut / e, 1.0), kind == POSITRON)
                    td = xd * e
                    cos_d = math.sqrt(min(1.0, td * (e + 2.0 * M) / (e * (td + 2.0 * M))))
                    phi = 2.0 * math.pi * np.random.random()
                    du, dv, dw = sm.rotate(u, v, w, cos_d, phi)
                    p0, pd = math.sqrt(e * (e + 2.0 * M)), math.sqrt(td * (td + 2.0 * M))
                    px, py, pz = p0 * u - pd * du, p0 * v - pd * dv, p0 * w - pd * dw
                    pn = math.sqrt(px * px + py * py + pz * pz)
                    top = push(stack, top, ELECTRON, td, x, y, z, du, dv, dw, isub, deep)
                    e -= td
                    if pn > 0.0:
                        u, v, w = px / pn, py / pn, pz / pn
    return n_ho
