"""Interpolation: train without one incident energy, then judge the model at that energy.

Simulates reference-simulator dataset-1 showers (the 15 energies 256 MeV - 4.19 TeV in equal shares)
with one energy held out of training and validation (``caloforge train --hold-out-energy``), trains a
family within a wall-clock budget, generates at the held-out energy and prints the chi2/NDF of
E_tot/E_inc there ("UU", the evaluation's definition) next to the neighbouring energies it did see.

Issue target: the best family trained with --hold-out-energy 65536 reaches chi2/NDF <= 3 at that energy.

    python benchmarks/interpolation_ds1.py --family flow --minutes 30 --out /tmp/interp

With ``--data`` (and ``--reference``, ``--validation``) existing files are used instead (e.g. the issue-21
learning curve's 60k cascade photons and its independent evaluation file); ``--physics`` picks the
simulator's mode otherwise (default: the particle-level cascade, the project's default data).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from caloforge.data import io
from caloforge.data.showers import format_energy
from caloforge.models import get_family
from caloforge.refsim import simulate
from caloforge.runtime.hardware import machine_summary
from caloforge.training import load, train
from caloforge.validation.features import apply_threshold, readout_threshold
from caloforge.validation.metrics.chi2 import response_chi2

DS1_ENERGIES = 256.0 * 2.0 ** np.arange(15)  # MeV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="gan")
    parser.add_argument("--particle", default="photon", choices=["photon", "pion"])
    parser.add_argument("--hold-out-energy", type=float, default=65536.0)
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--n-eval", type=int, default=2_000, help="evaluation showers per energy checked")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--max-iterations", type=int, default=None, help="an iteration budget as well")
    parser.add_argument("--physics", default="cascade", choices=["cascade", "gflash"])
    parser.add_argument("--data", type=Path, default=None, help="training file (default: simulate --n-train)")
    parser.add_argument("--validation", type=Path, default=None, help="validation file (default: a split)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="evaluation file (default: simulate --n-eval per energy checked)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/interpolation"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    geometry = "ds1-photons" if args.particle == "photon" else "ds1-pions"
    start = time.monotonic()
    if args.data is None:
        data = simulate(geometry, args.particle, np.resize(DS1_ENERGIES, args.n_train), seed=args.seed,
                        physics=args.physics)
    else:
        data = io.read(args.data)
    validation = None if args.validation is None else io.read(args.validation)
    config = get_family(args.family).config_class.for_preset("auto", args.particle)
    run = train(data, args.family, config, args.out / "run", max_minutes=args.minutes, seed=args.seed,
                max_iterations=args.max_iterations, hold_out_energy=args.hold_out_energy, checkpoint_every=200,
                validation=validation)
    bundle = load(run.bundle_dir)
    index = int(np.argmin(np.abs(DS1_ENERGIES - args.hold_out_energy)))
    checked = DS1_ENERGIES[max(index - 1, 0) : index + 2]
    if args.reference is None:
        reference = simulate(geometry, args.particle, np.repeat(checked, args.n_eval), seed=args.seed + 1,
                             physics=args.physics)
    else:
        every = io.read(args.reference)
        reference = every[np.isin(every.energies, checked)]
    generated = bundle.generate(reference.energies, seed=args.seed + 2)
    threshold = readout_threshold(reference.geometry)
    ref, gen = apply_threshold(reference, threshold), apply_threshold(generated, threshold)
    chi2 = response_chi2(ref.energies, ref.response, gen.energies, gen.response)
    rows = {format_energy(e.energy): {"chi2_ndf": e.chi2_ndf, "held_out": bool(np.isclose(e.energy,
                                                                                       args.hold_out_energy))}
            for e in chi2.per_energy}
    result = {"family": args.family, "particle": args.particle, "hold_out_energy_mev": args.hold_out_energy,
              "data": str(args.data or f"simulated, {args.physics}"), "n_reference": len(reference),
              "minutes": args.minutes, "iterations": run.ranges[0].iterations, "per_energy": rows,
              "machine": machine_summary().describe(), "elapsed_s": round(time.monotonic() - start, 1)}
    (args.out / "interpolation.json").write_text(json.dumps(result, indent=1))
    for label, row in rows.items():
        print(f"{label:>10}: chi2/NDF {row['chi2_ndf']:.2f}{'  (held out of training)' if row['held_out'] else ''}")


if __name__ == "__main__":
    main()
