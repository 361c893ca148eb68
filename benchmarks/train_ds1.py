"""Train the GAN on reference-simulator dataset-1 showers within a wall-clock budget.

Simulates a dataset-1 training set (the ds1 energy ladder, 256 MeV - 4.19 TeV) and an
independent evaluation set with :func:`caloforge.refsim.simulate`, trains one GAN over all
energies and an energy-split set (CaloShowerGAN's 4.1 GeV / 262 GeV ranges) with the same
total budget, and prints the chi2/NDF of the total-energy response per energy on the
evaluation set (readout threshold applied), plus the time taken.

Issue-5 target: photons, >= 50k training showers, 60 CPU minutes: chi2/NDF <= 3 over all 15 energies.

    python benchmarks/train_ds1.py --particle photon --n-train 60000 --minutes 60 --out runs/bench
    python benchmarks/train_ds1.py --minutes 2 --n-train 15000 --out /tmp/bench   # a short check
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from caloforge.models import GANConfig
from caloforge.refsim import simulate
from caloforge.runtime.hardware import resolve_device
from caloforge.training import load, train, validation_chi2
from caloforge.validation.features import compute_features, high_level_inputs, low_level_inputs
from caloforge.validation.metrics.classifier import ClassifierConfig, classifier_test

DS1_ENERGIES = 256.0 * 2.0 ** np.arange(15)  # MeV
SPLITS = (4100.0, 262_000.0)  # MeV, CaloShowerGAN's three ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particle", default="photon", choices=["photon", "pion"])
    parser.add_argument("--n-train", type=int, default=60_000, help="training showers (spread evenly over energies)")
    parser.add_argument("--n-eval", type=int, default=15_000, help="evaluation showers")
    parser.add_argument("--minutes", type=float, default=60.0, help="budget of each of the two trainings")
    parser.add_argument("--paper", action="store_true", help="use CaloShowerGAN's exact training settings")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ds1"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-classifiers", action="store_true", help="skip the low/high-level classifier AUCs")
    parser.add_argument("--runs", default="single,split", help="which trainings: single (one GAN), split (3 ranges)")
    args = parser.parse_args()

    geometry = "ds1-photons" if args.particle == "photon" else "ds1-pions"
    start = time.monotonic()
    train_set = simulate(geometry, args.particle, np.resize(DS1_ENERGIES, args.n_train), seed=args.seed)
    evaluation = simulate(geometry, args.particle, np.resize(DS1_ENERGIES, args.n_eval), seed=args.seed + 1)
    print(f"simulated {len(train_set)} training and {len(evaluation)} evaluation showers "
          f"in {time.monotonic() - start:.0f} s")
    config = GANConfig.for_particle(args.particle) if args.paper else GANConfig.for_cpu(args.particle)
    device = str(resolve_device(args.device))
    results = {}
    runs = {"single": ("one GAN", ()), "split": ("3 energy ranges", SPLITS)}
    for name, splits in (runs[r.strip()] for r in args.runs.split(",")):
        out = args.out / ("single" if not splits else "split")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        run = train(train_set, "gan", config, out, max_minutes=args.minutes, checkpoint_every=200,
                    split_energies=splits, seed=args.seed, device=device, progress=True)
        generated = load(run.bundle_dir).generate(evaluation.energies, device=device, seed=args.seed + 2)
        results[name] = (validation_chi2(evaluation, generated), time.monotonic() - t0,
                         sum(r.iterations for r in run.ranges))
        if not args.no_classifiers:  # the CLI's full-mode classifier settings (docs/validation.md)
            classifier = ClassifierConfig.cpu_budget()
            inputs = {"low": (low_level_inputs(evaluation), low_level_inputs(generated)),
                      "high": (high_level_inputs(compute_features(evaluation)),
                               high_level_inputs(compute_features(generated)))}
            for kind, (ref_x, gen_x) in inputs.items():
                auc = classifier_test(ref_x, gen_x, classifier, seed=args.seed, device=device)
                print(f"{name}: {kind}-level classifier AUC {auc.auc:.3f} +- {auc.auc_error:.3f}, "
                      f"JSD {auc.jsd:.3f}", flush=True)
    print(f"\n{'E_inc [MeV]':>12} " + " ".join(f"{name:>16}" for name in results))
    for i, energy in enumerate(DS1_ENERGIES):
        row = [res.per_energy[i].chi2_ndf if i < len(res.per_energy) else float("nan")
               for res, _, _ in results.values()]
        print(f"{energy:12.0f} " + " ".join(f"{v:16.2f}" for v in row))
    print(f"{'all':>12} " + " ".join(f"{res.chi2_ndf:16.2f}" for res, _, _ in results.values()))
    for name, (_, seconds, iterations) in results.items():
        print(f"{name}: {iterations} iterations in {seconds / 60:.1f} min")
    print(f"total time {(time.monotonic() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
