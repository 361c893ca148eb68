"""Flow and parametric families on reference-simulator dataset-1 photons, budgets in iterations.

A wall-clock budget measures the machine's load as much as the model on a shared CPU, so each
run here stops after a number of iterations; the CPU time one iteration costs is measured first,
on one thread, so the budget reads in CPU minutes (``--cpu-minutes``), and the training itself
may run on any device (e.g. a GPU, for the same iterations in less wall-clock time). Data: 45k
training showers on the dataset-1 energy ladder (seed 0), 10k evaluation showers (seed 1),
one generated shower per evaluation shower (seed 2); the parametric baseline stops at 100
iterations, where its statistics have converged; the full evaluation with the CaloChallenge
classifier (``ClassifierConfig.cpu_budget(max_seconds=300)``, at most 10k showers per sample) and
the CPU time per generated shower at batch 10000, one thread.

    python benchmarks/flow_parametric_ds1.py --cpu-minutes 10 --device cuda --out /tmp/fp-bench
    python benchmarks/flow_parametric_ds1.py --cpu-minutes 0.5 --runs parametric --n-train 5000   # a check
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from caloforge.data.showers import ShowerSet
from caloforge.models import FAMILIES, Batch, FamilyConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.models.sampling import sample_showers
from caloforge.refsim import simulate
from caloforge.training import train
from caloforge.training.bundle import load
from caloforge.validation.evaluate import compute_evaluation
from caloforge.validation.metrics.classifier import ClassifierConfig

DS1_ENERGIES = 256.0 * 2.0 ** np.arange(15)  # MeV
AFFINE = {"coupling": "affine", "blocks": 8, "hidden": [256, 256], "batch_size": 512}
RUNS = {  # name: (family, changes to the family's CPU preset, most iterations)
    "flow": ("flow", {}, None),  # split design, spline blocks
    "flow-affine": ("flow", AFFINE, None),
    "flow-joint-affine": ("flow", {**AFFINE, "design": "joint"}, None),
    "parametric": ("parametric", {}, 100),  # its statistics have converged by then (validation chi2 flat from 40)
}


def cpu_seconds_per_iteration(family: str, config: FamilyConfig, train_set: ShowerSet, steps: int = 10) -> float:
    """CPU time of one training step on one CPU thread (after one warm-up step)."""
    model = FAMILIES[family](config, Preprocessing.fit(train_set, config.preprocessing, config.energy_scale))
    energies = torch.as_tensor(train_set.energies, dtype=torch.float32)
    showers = torch.as_tensor(train_set.showers)
    g = torch.Generator().manual_seed(0)

    def next_batch() -> Batch:
        rows = torch.randint(len(energies), (min(config.batch_size, len(energies)),), generator=g)
        return Batch(energies[rows], showers[rows])

    optimizers = model.configure_optimizers()
    model.train_step(next_batch, optimizers, lambda loss: loss.backward(), g)
    start = time.process_time()
    for _ in range(steps):
        model.train_step(next_batch, optimizers, lambda loss: loss.backward(), g)
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="training budget per run, CPU minutes")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {list(RUNS)}")
    parser.add_argument("--device", default="cpu", help="where to train and run the classifiers")
    parser.add_argument("--n-train", type=int, default=45_000)
    parser.add_argument("--n-eval", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-flow-parametric"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_set = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_train), seed=args.seed)
    evaluation = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_eval), seed=args.seed + 1)
    classifier = ClassifierConfig.cpu_budget(max_seconds=300).replace(max_showers=10_000)
    for name in args.runs.split(","):
        family, changes, cap = RUNS[name]
        config = FAMILIES[family].config_class.for_cpu("photon").replace(**changes)
        per_iteration = cpu_seconds_per_iteration(family, config, train_set)
        iterations = min(max(1, round(args.cpu_minutes * 60 / per_iteration)), cap or 10**9)
        every = max(1, min(500, iterations // 10))
        run = train(train_set, family, config, args.out / name, max_iterations=iterations, checkpoint_every=every,
                    seed=args.seed, device=args.device, progress=False)
        bundle = load(run.bundle_dir)
        generated = bundle.generate(evaluation.energies, device=args.device, seed=args.seed + 2)
        result = compute_evaluation(evaluation, generated, mode="full", classifier_config=classifier,
                                    device=args.device, seed=args.seed).to_dict()
        model = bundle.models[0].to("cpu")
        sample_showers(model, np.full(100, 65536.0), generator=torch.Generator().manual_seed(1))
        start = time.process_time()
        sample_showers(model, np.full(10_000, 65536.0), generator=torch.Generator().manual_seed(1), batch_size=10_000)
        row = {"iterations": iterations, "cpu_s_per_iteration": per_iteration,
               "selected_iteration": run.ranges[0].best_iteration,
               "chi2_ndf": result["response_chi2"]["chi2_ndf"],
               "fpd_e3": result["fpd"]["value_e3"], "kpd_e3": result["kpd"]["value_e3"],
               "cpu_us_per_shower": (time.process_time() - start) / 10_000 * 1e6}
        for kind, c in result["classifiers"].items():
            row |= {f"auc_{kind}": c["auc"], f"auc_{kind}_error": c["auc_error"], f"epochs_{kind}": c["epochs_run"]}
        print(name, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
