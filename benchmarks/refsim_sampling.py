"""Sampling fluctuations of the cascade transport: where a sampling calorimeter's resolution comes from.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py mip          # pion per LAr gap: f_mip, straggling
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py backscatter  # 1 MeV e- on thick Pb, Fe, Al
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py resolution   # EMB and W/Si: σ/E at 1, 4, 16 GeV
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py scale        # EMB stack × s: c_s vs Wigmans
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py cuts         # EMB c_s with each cut lowered
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py geant4       # Geant4's TestEm3 Pb/LAr stack
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py angle        # EMB c_s vs angle of incidence
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_sampling.py wsi          # W/Si: Par04, cuts, CALICE, Si MIP
    ... --quick                                                                 # smaller samples

Everything is full transport in a laterally infinite stack of the preset's sampling period (as the
self-calibration, :mod:`caloforge.refsim.cascade.calibrate`), 40 X0 deep unless said. Wigmans' rule for
the sampling term: 2.7 % sqrt(d/f_mip), d the active layer in mm (R. Wigmans, *Calorimetry*, 2nd ed., §4.7).
Figures go to docs/refsim.md ("EMB sampling term").
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _common import machine
from numpy.typing import NDArray

from caloforge.refsim.cascade import CascadeConfig
from caloforge.refsim.cascade.kernel import ACTIVE, ELECTRON, LEAKED, LEDGER, PASSIVE, PION, transport_from
from caloforge.refsim.cascade.streams import config_array, shower_seeds
from caloforge.refsim.cascade.tables import build_tables
from caloforge.refsim.materials import ELEMENTS, Element, Material
from caloforge.refsim.presets import atlas_like, par04_wsi

FULL = CascadeConfig(hybrid_split_mev=0.0)


def emb() -> Material:
    """The EMB sampling stack of the ATLAS-like preset."""
    return atlas_like().em_medium


def run_stack(layers: list[tuple[Element, float, bool]], kind: int, e_mev: float, n: int, config: CascadeConfig,
              seed: int = 1, pions: bool = True, angle_deg: float = 0.0,
              ) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Transport ``n`` particles into ``layers`` (element, mm, active), incident at ``angle_deg`` to the layers'
    normal; per-shower energy in each active sub-layer (N, n_active), the ledger (N, columns) and the CPU seconds."""
    names = list(dict.fromkeys(el.name for el, _, _ in layers))
    elements = tuple(next(el for el, _, _ in layers if el.name == nm) for nm in names)
    z = np.concatenate([[0.0], np.cumsum([t for _, t, _ in layers])])
    mat = np.array([names.index(el.name) for el, _, _ in layers], dtype=np.int64)
    active = np.array([int(a) for _, _, a in layers], dtype=np.int64)
    n_act = int(active.sum())
    layer = np.where(active == 1, np.cumsum(active) - 1, -1).astype(np.int64)
    tables = build_tables(elements, config)
    cfg = config_array(config, hybrid=False)
    cfg[9] = 1.0 if pions else 0.0
    out, ledger = np.zeros((n, max(n_act, 1))), np.zeros((n, len(LEDGER)))
    one = np.ones(max(n_act, 1), dtype=np.int64)
    th = math.radians(angle_deg)
    begin = np.tile([0.0, math.sin(th), 0.0, math.cos(th), 0.0], (n, 1))
    start = time.process_time()
    transport_from(np.full(n, kind, dtype=np.int64), np.full(n, e_mev), shower_seeds(seed, 0, n), cfg, z, mat,
                   active, layer, np.ones(mat.size), tables.data, tables.props, np.tile([0.0, 1e12], n_act),
                   np.arange(n_act + 1, dtype=np.int64) * 2, one, one, np.arange(n_act, dtype=np.int64), out,
                   ledger, np.empty((1, 12)), np.zeros(mat.size), np.full(mat.size, -1, dtype=np.int64),
                   np.zeros(mat.size), np.zeros(mat.size), begin, np.empty((0, 4)),
                   np.zeros(1, dtype=np.int64))
    return out, ledger, time.process_time() - start


def periods(material: Material, depth_x0: float = 40.0, scale: float = 1.0) -> list[tuple[Element, float, bool]]:
    """``material``'s sampling period (thicknesses × ``scale``) repeated over ``depth_x0``."""
    parts = [(p.element, p.thickness_mm * scale, p.active) for p in material.components]
    n = math.ceil(depth_x0 * material.x0_mm / sum(t for _, t, _ in parts))
    return parts * n


def wigmans(material: Material, scale: float = 1.0) -> float:
    """2.7 % sqrt(d/f_mip), d = active thickness per period in mm."""
    d = sum(p.thickness_mm for p in material.components if p.active) * scale
    return 0.027 * math.sqrt(d / material.mip_sampling_fraction)


def resolution_of(material: Material, e_mev: float, n: int, config: CascadeConfig = FULL,
                  scale: float = 1.0, angle_deg: float = 0.0) -> tuple[float, float, float, float]:
    """(sampling fraction, σ/E, its statistical error, ms per shower) of electrons of ``e_mev``."""
    _, ledger, cpu = run_stack(periods(material, scale=scale), ELECTRON, e_mev, n, config, angle_deg=angle_deg)
    v = ledger[:, ACTIVE] / e_mev
    r = float(v.std() / v.mean())
    return float(v.mean()), r, r / math.sqrt(2 * (n - 1)), cpu / n * 1e3


def mip(quick: bool) -> None:
    """1 GeV charged pions (ionisation only) through 5 X0 of the EMB stack: energy per LAr gap."""
    m = emb()
    n = 100 if quick else 400
    out, ledger, _ = run_stack(periods(m, 5.0), PION, 1000.0, n, FULL, pions=False)
    gaps = out[:, 2:-2].ravel()
    hist, edges = np.histogram(gaps, bins=200, range=(0.0, 3.0 * np.median(gaps)))
    mp = float(0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1]))
    vis = ledger[:, ACTIVE].sum() / (ledger[:, ACTIVE] + ledger[:, PASSIVE]).sum()
    print(f"# mip, 1 GeV pion, {n} tracks; {machine()}")
    print("| visible fraction | f_mip (preset) | gap mean (MeV) | most probable | σ | σ/mean | mean/most probable |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {vis:.4f} | {m.mip_sampling_fraction:.4f} | {gaps.mean():.3f} | {mp:.3f} | {gaps.std():.3f} | "
          f"{gaps.std() / gaps.mean():.3f} | {gaps.mean() / mp:.3f} |")


def backscatter(quick: bool) -> None:
    """Energy backscattered by 1 MeV electrons at normal incidence on 20 mm of Pb, Fe, Al (electron cut 10 keV)."""
    n = 1000 if quick else 4000
    config = FULL.replace(electron_cut_mev=0.01, photon_cut_mev=0.01)
    print(f"# backscatter, 1 MeV e-, N={n}; {machine()}")
    print("| target | energy backscattered / E |")
    print("|---|---|")
    for name in ("Pb", "Fe", "Al"):
        _, ledger, _ = run_stack([(ELEMENTS[name], 20.0, False)], ELECTRON, 1.0, n, config)
        print(f"| {name} | {ledger[:, LEAKED].mean():.3f} |", flush=True)


def resolution(quick: bool) -> None:
    """σ/E of electrons at 1, 4, 16 GeV in the EMB and W/Si stacks; a/√E ⊕ b fitted."""
    n = 100 if quick else 400
    print(f"# resolution, full transport, N={n} per energy; {machine()}")
    print("| stack | E (GeV) | sampling fraction | σ/E | σ/E·√E | ms/shower |")
    print("|---|---|---|---|---|---|")
    for label, m in (("EMB Pb/LAr", emb()), ("Par04 W/Si", par04_wsi().em_medium)):
        es, rs = [], []
        for e_gev in (1.0, 4.0, 16.0):
            sf, r, dr, ms = resolution_of(m, e_gev * 1e3, n)
            es.append(e_gev)
            rs.append(r)
            print(f"| {label} | {e_gev:g} | {sf:.4f} | {r:.4f} ± {dr:.4f} | {r * math.sqrt(e_gev):.4f} | {ms:.1f} |",
                  flush=True)
        x = np.array([[1.0 / e, 1.0] for e in es])
        a2, b2 = np.linalg.lstsq(x, np.array(rs) ** 2, rcond=None)[0]
        print(f"| {label} | fit | | a = {math.sqrt(max(a2, 0.0)):.4f}, b = {math.sqrt(max(b2, 0.0)):.4f} | "
              f"Wigmans {wigmans(m):.4f} | |")


def scale(quick: bool) -> None:
    """EMB stack with every layer × s (f_mip fixed): sampling term of 1 GeV electrons vs Wigmans' rule."""
    n = 150 if quick else 500
    m = emb()
    print(f"# scale, 1 GeV e-, N={n}; {machine()}")
    print("| × thickness | d (mm) | sampling fraction | c_s | Wigmans | ratio |")
    print("|---|---|---|---|---|---|")
    for s in (0.25, 0.5, 1.0, 2.0, 4.0):
        sf, r, dr, _ = resolution_of(m, 1000.0, n, scale=s)
        w = wigmans(m, s)
        print(f"| {s:g} | {4.2 * s:.2f} | {sf:.4f} | {r:.4f} ± {dr:.4f} | {w:.4f} | {r / w:.2f} |", flush=True)


def cuts(quick: bool) -> None:
    """EMB sampling term of 1 GeV electrons with each cut lowered (and raised)."""
    n = 150 if quick else 500
    m = emb()
    print(f"# cuts, EMB, 1 GeV e-, N={n}; {machine()}")
    print("| setting | sampling fraction | c_s | ms/shower |")
    print("|---|---|---|---|")
    rows: list[tuple[str, CascadeConfig]] = [("defaults", FULL)]
    for name, values in (("electron_cut_mev", (0.05, 5.0)), ("photon_cut_mev", (0.01,)), ("brems_cut_mev", (0.02,)),
                         ("delta_cut_mev", (0.05,)), ("max_scatter_rad", (0.1,))):
        rows += [(f"{name}={v:g}", FULL.replace(**{name: v})) for v in values]
    for label, config in rows:
        sf, r, dr, ms = resolution_of(m, 1000.0, n, config)
        print(f"| {label} | {sf:.4f} | {r:.4f} ± {dr:.4f} | {ms:.1f} |", flush=True)


TESTEM3_G4 = {
    "11.4.0": (215.74, 13.37), "11.3.0": (215.75, 15.11), "11.3.0.beta": (212.08, 14.64), "11.1.0": (213.68, 16.63),
    "11.1.0.beta": (213.75, 14.62), "11.0.1": (213.12, 14.62), "11.0.0": (215.3, 13.29), "11.0.0.beta": (214.72, 15.96),
    "10.7.0": (213.5, 15.49), "10.7.0.beta": (214.69, 17.13), "10.6.0": (214.77, 15.46), "10.5.0": (216.12, 16.27),
    "10.5.0.beta": (214.95, 16.47), "10.4.2": (208.75, 14.69), "10.4.0": (208.74, 15.69),
    "10.4.0.beta": (209.27, 15.56),
    "10.3.0": (208.37, 14.6), "10.3.0.beta": (211.87, 15.75), "10.2.0": (210.83, 15.81), "10.1.0": (214.92, 16.86),
    "10.0.0": (210.02, 15.88), "9.6.0": (211.24, 15.62), "9.5.0": (209.43, 16.92), "9.4.0": (206.47, 13.75),
}
"""Geant4's own reference output of its TestEm3 example (examples/extended/electromagnetic/TestEm3/TestEm3.out, each
release that changed it; emstandard_opt0, 1 mm range cuts, 100 events of 1 GeV e-): the mean and RMS of the energy
(MeV) deposited in the liquid argon of 50 layers of 2.3 mm Pb + 5.7 mm LAr, 40 cm wide, at normal incidence."""

RE07_G4 = {
    "11.4.0 processes": (215.0, 15.6), "11.4.0 tracking": (214.86, 15.49), "11.4.0 specialized": (214.01, 15.96),
    "11.4.0.beta processes": (214.65, 15.29), "11.4.0.beta tracking": (214.2, 15.68),
    "11.4.0.beta specialized": (214.28, 16.04), "11.3.0.beta processes": (215.06, 15.96),
    "11.3.0.beta tracking": (214.84, 15.06), "11.3.0.beta specialized": (214.58, 15.86),
    "11.2.2 processes": (213.94, 15.28), "11.2.2 tracking": (214.11, 15.42), "11.2.2 specialized": (213.2, 15.58),
    "11.2.0.beta processes": (214.33, 15.48), "11.2.0.beta tracking": (214.08, 15.48),
    "11.1.0.beta processes": (214.33, 15.46), "11.1.0.beta tracking": (213.94, 15.58),
    "11.1.0.beta specialized": (214.49, 15.96),
}
"""The same stack and beam in Geant4's example RE07 (examples/extended/runAndEvent/RE07, built on TestEm3;
G4EmStandardPhysics, 1000 events per run): its reference outputs processes.out, tracking.out and specialized.out
(three implementations of the same physics), each distinct release's figures: LAr mean and RMS (MeV)."""

def geant4(quick: bool) -> None:
    """Geant4's TestEm3 stack (50 × (2.3 mm Pb + 5.7 mm LAr), 1 GeV e-, normal incidence) beside Geant4's figures."""
    n = 300 if quick else 2000
    pb, lar = ELEMENTS["Pb"], ELEMENTS["LAr"]
    layers = [(pb, 2.3, False), (lar, 5.7, True)] * 50
    _, ledger, cpu = run_stack(layers, ELECTRON, 1000.0, n, FULL)
    v = ledger[:, ACTIVE]
    r = float(v.std() / v.mean())
    g4 = np.array(list(TESTEM3_G4.values()))
    g4_r = g4[:, 1] / g4[:, 0]
    f_mip = 5.7 * lar.dedx_mip * lar.density / (5.7 * lar.dedx_mip * lar.density + 2.3 * pb.dedx_mip * pb.density)
    print(f"# geant4 TestEm3 stack, 1 GeV e-, N={n}; {machine()}")
    print("| | LAr mean (MeV) | LAr σ (MeV) | σ/E | Pb mean (MeV) | leaked (MeV) | ms/shower |")
    print("|---|---|---|---|---|---|---|")
    print(f"| cascade | {v.mean():.1f} | {v.std():.2f} | {r:.4f} ± {r / math.sqrt(2 * (n - 1)):.4f} | "
          f"{ledger[:, PASSIVE].mean():.1f} | {ledger[:, LEAKED].mean():.1f} | {cpu / n * 1e3:.1f} |")
    print(f"| Geant4 9.4-11.4 ({len(g4)} releases × 100 events) | {g4[:, 0].mean():.1f} ({g4[:, 0].min():.1f}-"
          f"{g4[:, 0].max():.1f}) | {g4[:, 1].mean():.2f} | {g4_r.mean():.4f} ({g4_r.min():.4f}-{g4_r.max():.4f}) "
          "| 774-788 | 10 | |")
    re = np.array(list(RE07_G4.values()))
    re_r = re[:, 1] / re[:, 0]
    print(f"| Geant4 11.1-11.4, RE07 ({len(re)} runs × 1000 events) | {re[:, 0].mean():.1f} ({re[:, 0].min():.1f}-"
          f"{re[:, 0].max():.1f}) | {re[:, 1].mean():.2f} | {re_r.mean():.4f} ({re_r.min():.4f}-{re_r.max():.4f}) "
          "| 775 | | |")
    print(f"| Wigmans 2.7 % sqrt(5.7/f_mip), f_mip = {f_mip:.3f} | | | {0.027 * math.sqrt(5.7 / f_mip):.4f} | | | |")


def angle(quick: bool) -> None:
    """EMB stack, 1 GeV e- incident at an angle to the layers' normal (ATLAS's accordion: about 45°)."""
    n = 200 if quick else 800
    m = emb()
    print(f"# angle, EMB, 1 GeV e-, N={n}; {machine()}")
    print("| angle to the normal | sampling fraction | c_s | c_s · sqrt(cos θ) | ms/shower |")
    print("|---|---|---|---|---|")
    for a in (0.0, 30.0, 45.0, 60.0):
        sf, r, dr, ms = resolution_of(m, 1000.0, n, angle_deg=a)
        print(f"| {a:g}° | {sf:.4f} | {r:.4f} ± {dr:.4f} | {r * math.sqrt(math.cos(math.radians(a))):.4f} | {ms:.1f} |",
              flush=True)


PAR04 = [(ELEMENTS["W"], 1.4, False), (ELEMENTS["Si"], 0.3, True)] * 90
"""Par04's detector (Geant4 examples/extended/parameterisations/Par04, common_settings_lowgran.mac: 90 layers of
1.4 mm G4_W + 0.3 mm G4_Si, 153 mm = 36 X0), here laterally infinite and at normal incidence."""

TESTEM3_WSI = [(ELEMENTS["W"], 2.0, False), (ELEMENTS["Si"], 0.3, True)] * 50
"""Geant4's TestEm3 macro run02.mac: 50 layers of 2 mm tungsten + 0.3 mm silicon, 1 GeV e- (no reference output
is shipped for it: a prediction)."""

CALICE_DATA = (0.166, 0.011)
"""CALICE Si-W ECAL physics prototype, electrons 6-45 GeV at CERN 2006: σ/E = 16.6 %/√E ⊕ 1.1 % (measured; C. Adloff
et al., NIM A608 (2009) 372, arXiv:0811.2354, abstract). 30 layers: 10 × 1.4, 10 × 2.8, 10 × 4.2 mm W, 0.525 mm Si,
the three sections' energies weighted 1 : 2 : 3."""


def calice_stack() -> tuple[list[tuple[Element, float, bool]], NDArray[np.float64]]:
    """The CALICE prototype's W/Si sequence (no PCB, glue or carbon fibre) and its per-layer weights 1, 2, 3."""
    w, si = ELEMENTS["W"], ELEMENTS["Si"]
    layers = [(w, t, False) for t in (1.4, 2.8, 4.2) for _ in range(10)]
    stack = [part for (el, t, a) in layers for part in ((el, t, a), (si, 0.525, True))]
    return stack, np.repeat([1.0, 2.0, 3.0], 10)


def _cs(values: NDArray[np.float64], e_gev: float) -> tuple[float, float]:
    """(σ/E·√E, its statistical error) of per-shower signals ``values``."""
    r = float(values.std() / values.mean())
    return r * math.sqrt(e_gev), r * math.sqrt(e_gev) / math.sqrt(2 * (values.size - 1))


def wsi(quick: bool) -> None:
    """W/Si: Par04's stack (σ/E, cuts), Geant4's TestEm3 W/Si macro, the CALICE prototype, a MIP in 0.3 mm Si."""
    k = 0.5 if quick else 1.0
    print(f"# wsi, full transport; {machine()}")
    print("| stack | setting | E (GeV) | N | sampling fraction | σ/E·√E | leaked / E | ms CPU/shower |")
    print("|---|---|---|---|---|---|---|---|")
    rows: list[tuple[str, list[tuple[Element, float, bool]], str, CascadeConfig, float, int]] = [
        ("Par04 90 × (1.4 W + 0.3 Si)", PAR04, "defaults", FULL, 1.0, 600),
        ("Par04 90 × (1.4 W + 0.3 Si)", PAR04, "defaults", FULL, 10.0, 100),
        ("TestEm3 run02 50 × (2 W + 0.3 Si)", TESTEM3_WSI, "defaults", FULL, 1.0, 600)]
    for name, values in (("electron_cut_mev", (0.05,)), ("delta_cut_mev", (0.05,)), ("brems_cut_mev", (0.02,)),
                         ("photon_cut_mev", (0.01,)), ("max_scatter_rad", (0.1,))):
        rows += [("Par04 90 × (1.4 W + 0.3 Si)", PAR04, f"{name}={v:g}", FULL.replace(**{name: v}), 1.0, 400)
                 for v in values]
    low = FULL.replace(electron_cut_mev=0.01, photon_cut_mev=0.01, delta_cut_mev=0.05, brems_cut_mev=0.02)
    rows.append(("Par04 90 × (1.4 W + 0.3 Si)", PAR04, "all cuts 10-50 keV", low, 1.0, 300))
    for label, layers, setting, config, e_gev, n in rows:
        n = int(n * k)
        _, ledger, cpu = run_stack(layers, ELECTRON, e_gev * 1e3, n, config)
        cs, dcs = _cs(ledger[:, ACTIVE], e_gev)
        print(f"| {label} | {setting} | {e_gev:g} | {n} | {ledger[:, ACTIVE].mean() / (e_gev * 1e3):.4f} | "
              f"{cs:.4f} ± {dcs:.4f} | {ledger[:, LEAKED].mean() / (e_gev * 1e3):.4f} | {cpu / n * 1e3:.1f} |",
              flush=True)
    stack, weights = calice_stack()
    es, rs = [], []
    for e_gev, n in ((6.0, 300), (15.0, 150), (30.0, 80)):
        n = int(n * k)
        out, ledger, cpu = run_stack(stack, ELECTRON, e_gev * 1e3, n, FULL)
        cs, dcs = _cs(out @ weights, e_gev)
        es.append(e_gev)
        rs.append(cs / math.sqrt(e_gev))
        print(f"| CALICE 30 layers, weights 1:2:3 | defaults | {e_gev:g} | {n} | "
              f"{ledger[:, ACTIVE].mean() / (e_gev * 1e3):.4f} | {cs:.4f} ± {dcs:.4f} | "
              f"{ledger[:, LEAKED].mean() / (e_gev * 1e3):.4f} | {cpu / n * 1e3:.1f} |", flush=True)
    x = np.array([[1.0 / e, 1.0] for e in es])
    a2, b2 = np.linalg.lstsq(x, np.array(rs) ** 2, rcond=None)[0]
    print(f"| CALICE fit a/√E ⊕ b | | 6-30 | | | a = {math.sqrt(max(a2, 0.0)):.4f}, b = {math.sqrt(max(b2, 0.0)):.4f}"
          f" | measured a = {CALICE_DATA[0]}, b = {CALICE_DATA[1]} | |")
    n = int(300 * k)
    out, _, _ = run_stack(PAR04[:60], PION, 1000.0, n, FULL, pions=False)
    si = out[:, 2:-2].ravel() * 1e3
    hist, edges = np.histogram(si, bins=120, range=(0.0, 3.0 * float(np.median(si))))
    top = int(hist.argmax())
    half = np.flatnonzero(hist >= hist[top] / 2)
    print(f"\n# 1 GeV pion, 0.3 mm Si layers of the Par04 stack, {n} tracks × 26 layers (keV)")
    print("| mean | most probable | FWHM | FWHM / most probable | σ |")
    print("|---|---|---|---|---|")
    print(f"| {si.mean():.1f} | {0.5 * (edges[top] + edges[top + 1]):.1f} | "
          f"{edges[half[-1] + 1] - edges[half[0]]:.1f} | "
          f"{(edges[half[-1] + 1] - edges[half[0]]) / (0.5 * (edges[top] + edges[top + 1])):.2f} | {si.std():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["mip", "backscatter", "resolution", "scale", "cuts", "geant4", "angle", "wsi"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    {"mip": mip, "backscatter": backscatter, "resolution": resolution, "scale": scale, "cuts": cuts,
     "geant4": geant4, "angle": angle, "wsi": wsi}[args.what](args.quick)


if __name__ == "__main__":
    main()
