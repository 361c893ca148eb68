"""Validation plots and numbers of the reference simulator (docs/refsim.md).

    MPLCONFIGDIR=$(mktemp -d) .venv/bin/python benchmarks/refsim_validation.py [--out docs/img] [--n 1500]

Prints the fitted resolutions, responses, containment and correlations quoted in the
docs and writes ``refsim_*.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.refsim import par04_wsi, simulate
from caloforge.refsim.em import sample_longitudinal
from caloforge.refsim.presets import atlas_like
from caloforge.validation.metrics.response import fit_resolution, robust_relative_width

GEV = 1e3


def layer_energies(s, g: Geometry) -> np.ndarray:
    return np.stack([s.showers[:, g.layer_slice(i)].sum(1) for i in range(g.n_layers)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--n", type=int, default=1500, help="showers per energy point")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        import mplhep

        plt.style.use(mplhep.style.ATLAS)
    except ImportError:
        pass
    n = args.n

    # ---- longitudinal: GFLASH T vs ln E, photon vs electron, ds2 mean profiles
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    e = np.geomspace(1, 1000, 7) * GEV
    for name, medium in (("ATLAS EMB", atlas_like().em_medium), ("Par04 W/Si", par04_wsi().em_medium)):
        rng = np.random.default_rng(0)
        t = np.array([np.median(sample_longitudinal(np.full(4000, x), medium, rng).t_max) for x in e])
        slope = np.polyfit(np.log(e), t, 1)[0]
        ax1.plot(e / GEV, t, "o-", label=f"{name} e$^-$: slope {slope:.2f} X0/e-fold")
        t_gamma = t + 9 / 7
        ax1.plot(e / GEV, t_gamma, "s--", label=f"{name} $\\gamma$ (+ mean conversion 9/7 X0)")
        print(f"shower max median T [{name}] at 1/10/100/1000 GeV: {np.round(t[[0, 2, 4, 6]], 2)}; slope {slope:.3f}")
    ax1.set(xscale="log", xlabel="E [GeV]", ylabel="shower maximum T [X0]")
    ax1.legend(fontsize=8)
    g2 = Geometry.preset("ds2")
    depth = (np.arange(45) + 0.5) * 3.4 / par04_wsi().em_medium.x0_mm
    for x in (1, 10, 100, 1000):
        s = simulate(g2, "electron", np.full(300, x * GEV), seed=1)
        prof = layer_energies(s, g2).mean(0) / (x * GEV)
        ax2.plot(depth, prof, label=f"{x} GeV")
    ax2.set(xlabel="depth [X0]", ylabel="mean layer energy / E_inc", title="W/Si (ds2) electrons")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(args.out / "refsim_longitudinal.png", dpi=90)
    plt.close(fig)

    # ---- resolution and response
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    cases = [
        ("ds1-photons", "photon", np.array([2**k for k in range(12, 23)], float), "ATLAS-like $\\gamma$", "std"),
        ("ds2", "electron", np.geomspace(1, 1000, 7) * GEV, "W/Si e$^-$", "std"),
        ("ds1-pions", "pion", np.array([2**k for k in range(13, 21)], float), "ATLAS-like $\\pi^+$ (IQR)", "iqr"),
    ]
    for geo, particle, energies, label, kind in cases:
        rel, mean = [], []
        for x in energies:
            r = simulate(geo, particle, np.full(n, x), seed=2).response
            rel.append(r.std() / r.mean() if kind == "std" else robust_relative_width(r))
            mean.append(r.mean())
        rel_a = np.array(rel)
        a, b = dataclasses.astuple(fit_resolution(energies / GEV, rel_a))
        ax1.plot(energies / GEV, rel_a, "o", label=f"{label}: {100 * a:.1f}%/√E (+) {100 * b:.1f}%")
        ax1.plot(energies / GEV, np.sqrt(a**2 / (energies / GEV) + b**2), "-", color=ax1.lines[-1].get_color())
        ax2.plot(energies / GEV, mean, "o-", label=label)
        print(
            f"{label}: a={100 * a:.1f}%/sqrt(E) b={100 * b:.2f}%; response "
            + ", ".join(f"{x / GEV:g} GeV: {m:.3f}" for x, m in zip(energies, mean, strict=True))
        )
    ax1.set(xscale="log", yscale="log", xlabel="E [GeV]", ylabel="σ(E_tot)/E_tot")
    ax1.legend(fontsize=8)
    ax2.set(xscale="log", xlabel="E [GeV]", ylabel="<E_tot / E_inc>", ylim=(0.5, 1.05))
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "refsim_resolution.png", dpi=90)
    plt.close(fig)

    # ---- lateral containment (ds3)
    g3 = Geometry.preset("ds3")
    rm = par04_wsi().em_medium.moliere_radius_mm
    edges = np.asarray(g3.layers[0].r_edges)
    fig, ax = plt.subplots(figsize=(6, 5))
    for x in (10, 100):
        s = simulate(g3, "electron", np.full(150, x * GEV), seed=3)
        radial = np.stack([v.sum(1) for v in g3.split_layers(s.showers)], 1).sum((0, 1))
        cum = np.concatenate([[0], np.cumsum(radial)]) / radial.sum()
        ax.plot(edges / rm, cum, "o-", label=f"{x} GeV")
        one, three = np.interp(rm, edges, cum), np.interp(3.5 * rm, edges, cum)
        print(f"ds3 e- {x} GeV: within 1 R_M {one:.3f}, within 3.5 R_M {three:.4f}")
    ax.axvline(1, ls=":", color="grey")
    ax.axhline(0.9, ls=":", color="grey")
    ax.set(xlabel="r / R_M", ylabel="energy fraction within r", title="W/Si (ds3) radial containment")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "refsim_lateral.png", dpi=90)
    plt.close(fig)

    # ---- correlations and pion layer sharing
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    g1 = Geometry.preset("ds1-photons")
    s = simulate(g1, "photon", np.full(3000, 65536.0), seed=4)
    frac = layer_energies(s, g1) / s.total_energy[:, None]
    cog = frac @ np.arange(g1.n_layers)
    rho = np.corrcoef(cog, frac[:, 1])[0, 1]
    ax1.scatter(cog, frac[:, 1], s=2, alpha=0.4)
    ax1.set(xlabel="centre of gravity [layer index]", ylabel="EMB1 fraction", title=f"65 GeV γ, ρ = {rho:.2f}")
    print(
        f"65 GeV photons: corr(cog, EMB1 fraction) = {rho:.3f}, corr(cog, EMB3 fraction) = "
        f"{np.corrcoef(cog, frac[:, 3])[0, 1]:.3f}"
    )
    gp = Geometry.preset("ds1-pions")
    energies = np.array([2**k for k in range(8, 23, 2)], float)
    shares = []
    for x in energies:
        sp = simulate(gp, "pion", np.full(800, x), seed=5)
        le = layer_energies(sp, gp)
        shares.append(le.sum(0) / max(le.sum(), 1e-9))
        if x == 256:
            tile = le[:, 4:].sum(1)
            print(f"256 MeV pions: {((tile == 0) & (le.sum(1) > 0)).mean():.2f} leave nothing in Tile")
    shares_a = np.array(shares)
    for i, lid in enumerate(gp.layer_ids):
        ax2.plot(energies / GEV, shares_a[:, i], "o-", label=f"layer {lid}")
    print(f"pions, Tile share of the energy at 1 TeV: {shares_a[-2, 4:].sum():.2f}")
    ax2.set(xscale="log", xlabel="E [GeV]", ylabel="share of E_tot", title="pions: energy per layer")
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out / "refsim_correlations.png", dpi=90)
    plt.close(fig)
    print(f"plots written to {args.out}/refsim_*.png")


if __name__ == "__main__":
    main()
