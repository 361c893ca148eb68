"""Train one model family on reference-simulator dataset-1 photons and run the full evaluation.

Simulates a training set on the ds1 energy ladder (256 MeV - 4.19 TeV) and an independent
evaluation set (another seed), trains ``--family`` with :func:`caloforge.training.train` within
``--minutes``, generates one shower per evaluation shower and computes the full evaluation
(:func:`caloforge.validation.evaluate.compute_evaluation`): chi2/NDF of the response, low- and
high-level classifier AUC, FPD and KPD, plus the generation time per shower at batch 10000.
For the diffusion family every ``--samplers`` entry (``name:steps[:spacing]`` or a preset,
``fast``/``accurate``) is evaluated on the same trained network.

    python benchmarks/train_family_ds1.py --family diffusion --minutes 10 --samplers fast,accurate
    python benchmarks/train_family_ds1.py --family vae --minutes 10
    python benchmarks/train_family_ds1.py --family diffusion --minutes 1 --n-train 5000 --n-eval 2000  # a check
    python benchmarks/train_family_ds1.py --bundle lb/diffusion/run/bundle --reference eval.h5 --samplers accurate

``--bundle`` skips the training: it evaluates a trained bundle (e.g. a leaderboard's) against the
``--reference`` file, with the leaderboard's classifier settings (5 minutes, 10000 showers per sample).

``--epochs N`` trains the classifiers for exactly N epochs instead of within ``--classifier-seconds``:
on a machine shared with other jobs a time budget gives fewer epochs, hence lower AUCs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from caloforge.data import io
from caloforge.data.showers import ShowerSet
from caloforge.models import FAMILIES
from caloforge.models.sampling import sample_showers
from caloforge.refsim import simulate
from caloforge.training import train
from caloforge.training.bundle import load
from caloforge.validation.evaluate import compute_evaluation
from caloforge.validation.metrics.classifier import ClassifierConfig

DS1_ENERGIES = 256.0 * 2.0 ** np.arange(15)  # MeV


def generation_time(model: torch.nn.Module, n: int = 10_000) -> float:
    """Seconds per shower at batch ``n`` (65.5 GeV photons), after one warm-up batch of 100."""
    sample_showers(model, np.full(100, 65536.0), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    sample_showers(model, np.full(n, 65536.0), generator=torch.Generator().manual_seed(1), batch_size=n)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="diffusion", choices=sorted(FAMILIES))
    parser.add_argument("--config", default="{}", help="JSON changes to the family's CPU preset")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--n-train", type=int, default=45_000)
    parser.add_argument("--n-eval", type=int, default=10_000)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--samplers", default="", help="diffusion only: extra samplers, e.g. fast,accurate,ddim:50")
    parser.add_argument("--classifier-seconds", type=float, default=300.0)
    parser.add_argument("--epochs", type=int, default=0, help="fixed classifier epochs instead of a time budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-family"))
    parser.add_argument("--bundle", type=Path, default=None, help="evaluate this trained bundle (no training)")
    parser.add_argument("--reference", type=Path, default=None, help="with --bundle: the evaluation file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.monotonic()
    if args.bundle is not None:
        if args.reference is None:
            parser.error("--bundle needs --reference")
        evaluation = io.read(args.reference)
        bundle_dir = args.bundle
        config = load(bundle_dir).models[0].config
        args.out.mkdir(parents=True, exist_ok=True)
    else:
        train_set = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_train), seed=args.seed)
        evaluation = simulate("ds1-photons", "photon", np.resize(DS1_ENERGIES, args.n_eval), seed=args.seed + 1)
        config = FAMILIES[args.family].config_class.for_cpu("photon").replace(**json.loads(args.config))
        print(f"{args.family}: {config.to_dict()}")
        shutil.rmtree(args.out, ignore_errors=True)
        run = train(train_set, args.family, config, args.out, max_minutes=args.minutes,
                    checkpoint_every=args.checkpoint_every, seed=args.seed, progress=True)
        best = run.ranges[0]
        print(f"{best.iterations} iterations in {best.elapsed_s / 60:.1f} min; selected iteration "
              f"{best.best_iteration} (validation chi2/NDF {best.best_chi2_ndf:.2f})")
        bundle_dir = run.bundle_dir
    classifier = ClassifierConfig.cpu_budget(max_seconds=args.classifier_seconds).replace(max_showers=10_000)
    if args.epochs:
        classifier = classifier.replace(max_seconds=None, max_epochs=args.epochs)
    model = load(bundle_dir).models[0]
    variants: dict[str, torch.nn.Module] = {"default": model}
    for spec in filter(None, args.samplers.split(",")):
        name, steps, spacing = ([*spec.split(":"), "", ""])[:3]
        variants[spec] = model.with_sampler(name, int(steps) if steps else None,  # type: ignore[operator]
                                            spacing or None)
    results = {}
    for label, variant in variants.items():
        showers = sample_showers(variant, evaluation.energies, generator=torch.Generator().manual_seed(args.seed + 2))
        generated = ShowerSet(evaluation.energies, showers, evaluation.geometry)
        result = compute_evaluation(evaluation, generated, mode="full", classifier_config=classifier,
                                    seed=args.seed).to_dict()
        row = {"chi2_ndf": result["response_chi2"]["chi2_ndf"], "fpd_e3": result["fpd"]["value_e3"],
               "fpd_error_e3": result["fpd"]["error_e3"], "kpd_e3": result["kpd"]["value_e3"],
               "kpd_error_e3": result["kpd"]["error_e3"], "us_per_shower": 1e6 * generation_time(variant)}
        for kind, c in result["classifiers"].items():
            row |= {f"auc_{kind}": c["auc"], f"auc_{kind}_error": c["auc_error"], f"epochs_{kind}": c["epochs_run"]}
        results[label] = row
        print(label, json.dumps(row), flush=True)
    (args.out / "benchmark.json").write_text(json.dumps({"config": config.to_dict(), "results": results}, indent=1))
    print(f"total time {(time.monotonic() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
