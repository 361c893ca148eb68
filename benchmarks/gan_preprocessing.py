"""Compare the GAN's shower preprocessings for a fixed CPU budget on reference-simulator ds1 photons.

Trains ``GANConfig.for_cpu("photon")`` with each preprocessing for the same wall-clock
budget and prints the evaluation chi2/NDF of E_tot/E_inc (readout threshold applied),
overall and per energy.

    python benchmarks/gan_preprocessing.py --minutes 4 --kinds total,layer
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from caloforge.models import GANConfig
from caloforge.refsim import simulate
from caloforge.training import load, train, validation_chi2

DS1_ENERGIES = 256.0 * 2.0 ** np.arange(15)  # MeV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per preprocessing")
    parser.add_argument("--kinds", default="total,layer", help="comma list of energy, layer, total")
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-eval", type=int, default=6_000)
    parser.add_argument("--out", type=Path, default=Path("runs/gan-preprocessing"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_set = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_train), seed=args.seed)
    evaluation = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_eval), seed=args.seed + 1)
    for kind in (k.strip() for k in args.kinds.split(",")):
        config = GANConfig.for_cpu("photon").replace(preprocessing=kind)
        out = args.out / kind
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        run = train(train_set, "gan", config, out, max_minutes=args.minutes, checkpoint_every=100, seed=args.seed,
                    progress=False)
        result = validation_chi2(evaluation, load(run.bundle_dir).generate(evaluation.energies, seed=args.seed + 2))
        per_energy = " ".join(f"{e.chi2_ndf:.1f}" for e in result.per_energy)
        print(f"{kind}: {run.ranges[0].iterations} iterations in {time.monotonic() - t0:.0f} s, "
              f"evaluation chi2/NDF {result.chi2_ndf:.2f} (per energy: {per_energy})", flush=True)


if __name__ == "__main__":
    main()
