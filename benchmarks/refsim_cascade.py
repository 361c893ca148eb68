"""The cascade mode of the reference simulator: speed, hybrid vs full transport, and shower structure.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py speed       # showers/s/core, both modes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py hybrid      # separation power full vs hybrid
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py hybrid-classifier --out DIR  # + low-level AUC
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py structure   # centre-of-energy spread, width-depth
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py physics     # t_max, containment, SF, <f_em>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py cuts        # effect of each cut and of the split
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py targets     # 47.5k ds1 photons, 100k ds2 e-, 2 jobs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refsim_cascade.py gflash-fit  # GFLASH's laws fitted to each mode
    ... --quick                                                                 # smaller samples

Targets (issue 19, 2 idle cores): the demo's 47.5k ds1 photons (ds1 ladder) in <= 2 min; 100k ds2 electrons
(log-uniform 1 GeV - 1 TeV) in <= 15 min; hybrid vs full transport: every high-level feature's separation
power <= 0.01 and low-level classifier AUC <= 0.55 at 1, 10, 100 GeV. Figures go to docs/refsim.md ("cascade mode").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine

from caloforge.data.geometry import Geometry
from caloforge.data.io import read
from caloforge.refsim import simulate, simulate_to_file
from caloforge.refsim.cascade import CascadeConfig
from caloforge.validation.features import HighLevelFeatures, compute_features, low_level_inputs
from caloforge.validation.metrics.classifier import ClassifierConfig, classifier_test
from caloforge.validation.metrics.separation import feature_histograms
from caloforge.validation.metrics.verdict import JUDGE_MIN_CLASSIFIER_STEPS

FULL = CascadeConfig(hybrid_split_mev=0.0)


def _rate(geometry: str, particle: str, energy: float, n: int, physics: str, config: CascadeConfig | None) -> float:
    kw = {"physics": physics, "cascade": config} if physics == "cascade" else {}
    simulate(geometry, particle, [energy] * 2, seed=99, **kw)  # type: ignore[arg-type]  # warm-up
    start = time.perf_counter()
    simulate(geometry, particle, [energy] * n, seed=1, **kw)  # type: ignore[arg-type]
    return n / (time.perf_counter() - start)


def speed(quick: bool) -> None:
    """Showers per second on one core: GFLASH, cascade (hybrid default), full transport (1-10 GeV)."""
    print(f"# speed, one process; {machine()}")
    print("| sample | E (GeV) | gflash | cascade (hybrid) | cascade (full transport) |")
    print("|---|---|---|---|---|")
    for geometry, particle in (("ds1-photons", "photon"), ("ds2", "electron"), ("ds1-pions", "pion")):
        for e_gev in (1, 10, 100, 1000):
            budget = 2e4 if quick else 1e5  # GeV per measurement
            n = int(max(4, min(2000, budget / e_gev)))
            g = _rate(geometry, particle, e_gev * 1e3, max(n, 50), "gflash", None)
            c = _rate(geometry, particle, e_gev * 1e3, n, "cascade", CascadeConfig())
            f = "" if e_gev > 10 or particle == "pion" else \
                f"{_rate(geometry, particle, e_gev * 1e3, max(4, n // (50 if quick else 20)), 'cascade', FULL):.2f}"
            print(f"| {geometry} {particle} | {e_gev} | {g:.0f} | {c:.1f} | {f} |", flush=True)


def hybrid(quick: bool) -> None:
    """Separation power of every high-level feature between full transport and each hybrid (ds2 electrons).

    Both hand-off modes (``gflash``: parameterised sub-showers; ``library``: frozen transported sub-showers)
    against the same full-transport sample; the floor is each hybrid against an independent sample of itself.
    CPU time per GeV (process time, after a warm-up that builds or loads the library) on the same load.
    """
    print(f"# hybrid vs full transport, ds2 electrons; {machine()}")
    print("| E (GeV) | hand-off | N | mean / median S | max S (feature) | floor: mean / median / max | features | "
          "response (full: hybrid) | CPU µs/GeV |")
    print("|---|---|---|---|---|---|---|---|---|")
    modes = {"gflash": CascadeConfig(handoff="gflash"), "library": CascadeConfig(handoff="library")}
    for config in modes.values():  # warm-up: compile, calibrate, build or load the library
        simulate("ds2", "electron", [1e4] * 2, seed=99, physics="cascade", cascade=config)
    for e_gev, n in ((1, 400), (10, 200), (100, 50)):
        n = n // 4 if quick else n
        full = simulate("ds2", "electron", [e_gev * 1e3] * n, seed=11, physics="cascade", cascade=FULL)
        f_full = compute_features(full)
        r_full = full.showers.sum(axis=1) / e_gev / 1e3
        for mode, config in modes.items():
            t0 = time.process_time()
            hyb = simulate("ds2", "electron", [e_gev * 1e3] * n, seed=12, physics="cascade", cascade=config)
            us = (time.process_time() - t0) / n / e_gev * 1e6
            hyb2 = simulate("ds2", "electron", [e_gev * 1e3] * n, seed=13, physics="cascade", cascade=config)
            f_hyb, f_hyb2 = compute_features(hyb), compute_features(hyb2)

            def filled(h: object, m: int = n // 2) -> bool:  # features with enough entries in both samples
                return bool(h.reference.sum() >= m and h.generated.sum() >= m)  # type: ignore[attr-defined]

            seps = {h.name: h.separation for h in feature_histograms(f_full, f_hyb) if filled(h)}
            floor = [h.separation for h in feature_histograms(f_hyb2, f_hyb) if filled(h)]
            worst = max(seps, key=lambda k: np.nan_to_num(seps[k]))
            r_hyb = hyb.showers.sum(axis=1) / e_gev / 1e3
            print(f"| {e_gev} | {mode} | {n} | {np.nanmean(list(seps.values())):.3f} / "
                  f"{np.nanmedian(list(seps.values())):.3f} | {seps[worst]:.3f} ({worst}) | {np.nanmean(floor):.3f} / "
                  f"{np.nanmedian(floor):.3f} / {np.nanmax(floor):.3f} | {len(seps)} | {r_full.mean():.4f} ± "
                  f"{r_full.std():.4f}: {r_hyb.mean():.4f} ± {r_hyb.std():.4f} | {us:.1f} |", flush=True)


def _sample(path: Path, e_gev: float, n: int, seed: int, config: CascadeConfig) -> float | None:
    """Write ``n`` ds2 electrons of ``e_gev`` to ``path`` (kept if it exists); the CPU seconds it took."""
    if path.exists():
        return None
    start = time.process_time()
    simulate_to_file(path, "ds2", "electron", n, seed=seed, energies=[e_gev * 1e3], physics="cascade", cascade=config)
    return time.process_time() - start


def _separations(reference: HighLevelFeatures, generated: HighLevelFeatures, m: int) -> dict[str, float]:
    """Separation power of every feature with at least ``m`` entries in both samples."""
    return {h.name: h.separation for h in feature_histograms(reference, generated)
            if h.reference.sum() >= m and h.generated.sum() >= m and np.isfinite(h.separation)}


def hybrid_classifier(quick: bool, out: Path, sizes: str, seed: int, epochs: int, showers: int,
                      control_epochs: int = 0) -> None:
    """Issue 19's target on ds2 electrons: full transport against the default hybrid (library hand-offs).

    Per energy four files in ``out`` (reused when present): full transport (``--split 0``, seed ``seed``) and
    three independent hybrids (seeds + 1, + 2, + 3), ``E{e}_{full,hybrid,hybrid2,hybrid3}.h5``. The low-level
    classifier of ``caloforge evaluate --mode full`` (the CaloChallenge network, one training, up to ``epochs``
    epochs, 0: enough for the verdict's 1000 optimiser steps; no wall-clock cut; at most ``showers`` per sample)
    separates full from hybrid and, as its control, hybrid2 from hybrid at the same N (up to ``control_epochs``
    epochs, 0: as many as the classifier's).
    Every high-level feature's separation power S(full, hybrid) is set beside
    its floor S(hybrid2, hybrid); the features with S > floor + 0.01 are counted, and, as the count expected by
    chance, those with S(hybrid3, hybrid) > floor + 0.01.
    """
    out.mkdir(parents=True, exist_ok=True)
    print(f"# full transport vs hybrid (default hand-off), ds2 electrons; {machine()}")
    simulate("ds2", "electron", [1e4] * 2, seed=99, physics="cascade")  # warm-up: compile, build or load library
    base = ClassifierConfig.cpu_budget().replace(max_showers=showers or None)
    print("| E (GeV) | N | AUC full:hybrid | AUC control | showers, epochs (best/run), steps | "
          "features | S > floor+0.01 (by chance) | S > 0.01 (floor) | max S (feature) | floor max / mean | mean S | "
          "CPU s: full / hybrid / classifiers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for item in sizes.split(","):
        e_text, n_text = item.split(":")
        e_gev, n = float(e_text), int(n_text) // (10 if quick else 1)
        paths = [out / f"E{e_text}_{name}.h5" for name in ("full", "hybrid", "hybrid2", "hybrid3")]
        cpu = [_sample(p, e_gev, n, seed + k, FULL if k == 0 else CascadeConfig()) for k, p in enumerate(paths)]
        full, hyb, hyb2, hyb3 = (read(p) for p in paths)
        n = min(len(full), len(hyb), len(hyb2))
        steps = -(-2 * round(0.6 * min(n, showers or n)) // base.batch_size)  # optimiser steps per epoch
        config = base.replace(max_epochs=epochs or -(-JUDGE_MIN_CLASSIFIER_STEPS // steps))
        control_config = config.replace(max_epochs=control_epochs or config.max_epochs)
        start = time.process_time()
        auc = classifier_test(low_level_inputs(full), low_level_inputs(hyb), config, seed=seed)
        control = classifier_test(low_level_inputs(hyb2), low_level_inputs(hyb), control_config, seed=seed)
        cpu.append(time.process_time() - start)
        f_full, f_hyb, f_hyb2, f_hyb3 = (compute_features(s) for s in (full, hyb, hyb2, hyb3))
        s, floor, chance = (_separations(f, f_hyb, n // 2) for f in (f_full, f_hyb2, f_hyb3))
        names = [k for k in s if k in floor and k in chance]
        over = [k for k in names if s[k] > floor[k] + 0.01]
        worst = max(names, key=lambda k: s[k])
        by_chance = sum(chance[k] > floor[k] + 0.01 for k in names)
        runs = "/".join(f"{r.best_epoch}/{r.epochs_run}" for r in (*auc.runs, *control.runs))
        runs += f", {steps * auc.runs[0].epochs_run} steps"
        cpu_text = " / ".join("kept" if c is None else f"{c:.0f}" for c in (cpu[0], cpu[1], cpu[4]))
        print(f"| {e_text} | {n} | {auc.auc:.3f} ± {auc.auc_error:.3f} | {control.auc:.3f} ± {control.auc_error:.3f} "
              f"| {auc.n_per_sample}, {runs} | {len(names)} | {len(over)} ({by_chance}) "
              f"| {sum(s[k] > 0.01 for k in names)} ({sum(floor[k] > 0.01 for k in names)}) | {s[worst]:.3f} ({worst}) "
              f"| {max(floor.values()):.3f} / {np.mean([floor[k] for k in names]):.3f} | "
              f"{np.mean([s[k] for k in names]):.3f} | {cpu_text} |", flush=True)
        print(f"  over floor + 0.01: {', '.join(f'{k} {s[k]:.3f}/{floor[k]:.3f}' for k in over[:12])}", flush=True)


def _structure_rows(geometry: str, particle: str, energy: float, n: int, physics: str) -> list[str]:
    kw = {"physics": "cascade"} if physics == "cascade" else {}
    s = simulate(geometry, particle, [energy] * n, seed=5, **kw)  # type: ignore[arg-type]
    f = compute_features(s)
    g = s.geometry
    depth = (f.e_layer * np.arange(g.n_layers)).sum(axis=1) / np.maximum(f.e_layer.sum(axis=1), 1e-9)
    rows = []
    for j, i in enumerate(g.alpha_layers):
        ce = np.hypot(f.centre_eta[:, j], f.centre_phi[:, j])
        lid = g.layer_ids[i]
        width = f.width_r[:, i]
        ok = np.isfinite(width) & (f.e_layer[:, i] > 0)
        corr = float(np.corrcoef(width[ok], depth[ok])[0, 1]) if ok.sum() > 3 else float("nan")
        rows.append(f"| {physics} | {lid} | {np.std(f.centre_eta[:, j]):.2f} | {np.std(f.centre_phi[:, j]):.2f} | "
                    f"{np.mean(ce):.2f} | {corr:+.2f} |")
    return rows


def structure(quick: bool) -> None:
    """Shower-to-shower spread of the per-layer centre of energy and corr(width_r, depth), both modes."""
    n = 300 if quick else 1000
    for geometry, particle, energy in (("ds1-photons", "photon", 65536.0), ("ds2", "electron", 50000.0)):
        print(f"# structure, {geometry} {particle} {energy / 1e3:g} GeV, N={n}; {machine()}")
        print("| mode | layer | σ(centre η) mm | σ(centre φ) mm | <|centre|> mm | corr(width_r, depth) |")
        print("|---|---|---|---|---|---|")
        for physics in ("gflash", "cascade"):
            rows = _structure_rows(geometry, particle, energy, n, physics)
            step = max(1, len(rows) // 6)
            for row in rows[::step]:
                print(row, flush=True)


def cuts(quick: bool) -> None:
    """Effect of each cut on 1 GeV ds2 electrons (full transport), and of the split on 50 GeV ones."""
    n = 30 if quick else 100
    print(f"# cuts, ds2 electrons, N={n}; {machine()}")
    print("| setting | E (GeV) | response (Si/0.033) | σ/E | ms/shower |")
    print("|---|---|---|---|---|")
    settings: list[tuple[str, float, CascadeConfig]] = [("full transport, defaults", 1.0, FULL)]
    for name, values in (("electron_cut_mev", (0.1, 1.0)), ("brems_cut_mev", (0.1, 5.0)), ("delta_cut_mev", (0.1, 5.0)),
                         ("max_scatter_rad", (0.15, 0.6)), ("max_step_x0", (0.05, 1.0))):
        settings += [(f"full, {name}={v:g}", 1.0, FULL.replace(**{name: v})) for v in values]
    settings += [(f"hybrid, split {v:g} MeV", 50.0, CascadeConfig(hybrid_split_mev=v)) for v in (300.0, 1000.0, 3000.0)]
    settings += [("hybrid, handoff_min_mev 50", 50.0, CascadeConfig(handoff_min_mev=50.0))]
    for label, e_gev, config in settings:
        m = n if e_gev < 10 else 3 * n
        simulate("ds2", "electron", [e_gev * 1e3] * 2, seed=99, physics="cascade", cascade=config)
        start = time.perf_counter()
        s = simulate("ds2", "electron", [e_gev * 1e3] * m, seed=1, physics="cascade", cascade=config)
        ms = (time.perf_counter() - start) / m * 1e3
        r = s.showers.sum(axis=1) / e_gev / 1e3
        print(f"| {label} | {e_gev:g} | {r.mean():.4f} ± {r.std() / np.sqrt(m):.4f} | {r.std() / r.mean():.4f} | "
              f"{ms:.1f} |", flush=True)


def physics(quick: bool) -> None:
    """The physics checks of docs/refsim.md: t_max, containment, resolution, sampling fraction, pion <f_em>."""
    from caloforge.refsim.cascade import cascade_chunk
    from caloforge.refsim.cascade.calibrate import stack_response
    from caloforge.refsim.presets import atlas_like, par04_wsi

    k = 4 if quick else 1
    wsi, atlas = par04_wsi(), atlas_like()
    m = wsi.em_medium
    print(f"# physics checks; {machine()}")
    print("| ds2 e- | E (GeV) | mode | N | t_max (X0) | ln(E/Ec)-0.5 | within 1 R_M | within 2 R_M | σ/E | σ/E·√E |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e_gev, config, n in ((1, FULL, 200), (10, FULL, 60), (10, CascadeConfig(), 400), (100, CascadeConfig(), 200),
                             (1000, CascadeConfig(), 50)):
        n = max(10, n // k)
        s = cascade_chunk(Geometry.preset("ds2"), "electron", np.full(n, e_gev * 1e3), 3, 0, wsi, config).voxels
        sh = s.reshape(n, 45, 16, 9)
        layer = sh.sum(axis=(2, 3)).mean(axis=0)
        t = (np.arange(45) + 0.5) * 3.4 / m.x0_mm
        mean = (layer * t).sum() / layer.sum()
        beta = mean / ((layer * (t - mean) ** 2).sum() / layer.sum())
        cum = np.concatenate([[0.0], np.cumsum(sh.sum(axis=(0, 1, 2)))])
        cum /= cum[-1]
        edges = np.arange(10) * 4.65
        tot = s.sum(axis=1)
        res = tot.std() / tot.mean()
        mode = "full" if not config.hybrid else "hybrid"
        print(f"| | {e_gev} | {mode} | {n} | {(mean * beta - 1) / beta:.2f} | "
              f"{np.log(e_gev * 1e3 / m.critical_energy) - 0.5:.2f} | "
              f"{np.interp(m.moliere_radius_mm, edges, cum):.3f} | "
              f"{np.interp(2 * m.moliere_radius_mm, edges, cum):.3f} | {res:.4f} | {res * np.sqrt(e_gev):.3f} |",
              flush=True)
    print("| stack | transported e- sampling fraction (1 GeV) | MIP fraction | GFLASH ê·MIP | preset | c_s (1 GeV) |")
    print("|---|---|---|---|---|---|")
    for det, preset in ((wsi, 0.033), (atlas, 0.18)):
        r = stack_response(det.em_medium, CascadeConfig(), 1000.0)
        med = det.em_medium
        print(f"| {med.name} | {r.sampling_fraction:.4f} | {med.mip_sampling_fraction:.4f} | "
              f"{med.electron_sampling_fraction:.4f} | {preset} | {r.stochastic:.3f} |")
    print("| ds1 pions | E (GeV) | N | <f_em> | Groom 1-(E/GeV)^-0.18 | response | σ/E | leaked | invisible |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e_gev, n in ((10, 300), (100, 100), (1000, 30)):
        n = max(10, n // k)
        r = cascade_chunk(Geometry.preset("ds1-pions"), "pion", np.full(n, e_gev * 1e3), 3, 0, atlas, CascadeConfig())
        tot = r.voxels.sum(axis=1)
        print(f"| | {e_gev} | {n} | {r.column('em_from_pi0').mean() / e_gev / 1e3:.3f} | {1 - e_gev ** -0.18:.3f} | "
              f"{tot.mean() / e_gev / 1e3:.3f} | {tot.std() / tot.mean():.3f} | "
              f"{r.column('leaked').mean() / e_gev / 1e3:.4f} | {r.column('invisible').mean() / e_gev / 1e3:.3f} |",
              flush=True)


def targets(quick: bool) -> None:
    """The two speed targets, written to files with 2 worker processes."""
    print(f"# targets, jobs=2; {machine()}")
    scale = 0.1 if quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        for geometry, particle, n, spectrum, limit in (("ds1-photons", "photon", 47500, "ds1", 120),
                                                       ("ds2", "electron", 100000, "log-uniform", 900)):
            m = int(n * scale)
            start = time.perf_counter()
            simulate_to_file(Path(tmp) / f"{geometry}.h5", geometry, particle, m, seed=0, spectrum=spectrum, jobs=2,
                             physics="cascade")
            elapsed = time.perf_counter() - start
            print(f"| {geometry} {particle} | {m} | {elapsed:.0f} s | target {limit * scale:.0f} s | "
                  f"{'met' if elapsed <= limit * scale else 'missed'} |", flush=True)
            Geometry.preset(geometry)


def gflash_fit(quick: bool) -> None:
    """GFLASH's log-normal laws fitted to ds2 electrons of each mode, beside the published W/Si laws."""
    from caloforge.refsim.em import mean_log_parameters
    from caloforge.refsim.gflash_fit import fit_gflash, layer_depths_x0
    from caloforge.refsim.presets import detector_for

    geometry = Geometry.preset("ds2")
    detector = detector_for(geometry)
    depth, width = layer_depths_x0(detector, geometry)
    k = 4 if quick else 1
    print(f"# GFLASH fit, ds2 electrons (W/Si); {machine()}")
    print("| E (GeV) | sample | N | <ln T> | <ln α> | σ(ln T) | σ(ln α) | ρ |")
    print("|---|---|---|---|---|---|---|---|")
    for e_gev, n_full in ((1, 400), (3, 120), (10, 40)):
        pub = [float(x[0]) for x in mean_log_parameters(np.array([e_gev * 1e3]), detector.em_medium)]
        print(f"| {e_gev} | published (Grindhammer-Peters, sampling) | – | " + " | ".join(f"{x:.3f}" for x in pub)
              + " |")
        for name, kw, n in (("gflash mode", {"physics": "gflash"}, 2000), ("cascade, full transport",
                            {"physics": "cascade", "cascade": FULL}, n_full),
                            ("cascade, hybrid", {"physics": "cascade"}, 2000)):
            n = max(20, n // k)
            showers = simulate(geometry, "electron", [e_gev * 1e3] * n, seed=5, **kw).showers  # type: ignore[arg-type]
            f = fit_gflash(showers.reshape(n, geometry.n_layers, -1).sum(axis=2), depth, width)
            print(f"| | {name} | {f.n_showers} | {f.mean_ln_t:.3f} | {f.mean_ln_alpha:.3f} | {f.sigma_ln_t:.3f} | "
                  f"{f.sigma_ln_alpha:.3f} | {f.rho:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("speed", "hybrid", "hybrid-classifier", "structure", "cuts", "physics",
                                         "targets", "gflash-fit"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("hybrid_classifier"), help="hybrid-classifier: its files")
    parser.add_argument("--sizes", default="1:6000,10:2000,100:1500", help="hybrid-classifier: E_GeV:N,...")
    parser.add_argument("--seed", type=int, default=21, help="hybrid-classifier: seed of the full-transport files")
    parser.add_argument("--classifier-epochs", type=int, default=0,
                        help="hybrid-classifier: maximum epochs, 0: enough optimiser steps for a verdict (1000)")
    parser.add_argument("--classifier-showers", type=int, default=0, help="hybrid-classifier: per sample, 0: all")
    parser.add_argument("--control-epochs", type=int, default=0,
                        help="hybrid-classifier: maximum epochs of the control, 0: --classifier-epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the classifier")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "hybrid-classifier":
        hybrid_classifier(args.quick, args.out, args.sizes, args.seed, args.classifier_epochs,
                          args.classifier_showers, args.control_epochs)
        return
    runs = {"speed": speed, "hybrid": hybrid, "structure": structure, "cuts": cuts, "physics": physics,
            "targets": targets, "gflash-fit": gflash_fit}
    runs[args.what](args.quick)


if __name__ == "__main__":
    main()
