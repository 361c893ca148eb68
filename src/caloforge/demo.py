"""The demo: simulate, train, generate, validate and time a model in about ten CPU minutes.

``caloforge demo`` runs the whole life of a fast-simulation model on embedded data:

1. the reference simulator writes a dataset-1-photon training file and an
   independent evaluation file (the dataset-1 energy ladder, 256 MeV - 4.2 TeV);
2. the GAN family trains within a wall-clock budget, its checkpoint chosen by
   chi2/NDF of the total-energy response on a validation split;
3. the chosen model generates one shower per evaluation-file energy;
4. the validation suite compares them (all metrics, small classifiers) and writes
   the HTML report, which also shows chi2/NDF before and after training.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from caloforge.errors import OutputExistsError

__all__ = ["DemoResult", "run_demo"]

GEOMETRY = "ds1-photons"
PARTICLE = "photon"
DEMO_FILES = ("train.h5", "eval.h5", "generated.h5", "run", "report")


@dataclass(frozen=True)
class DemoResult:
    """What the demo made and measured.

    Attributes:
        out_dir: The demo directory.
        report: The HTML report.
        bundle: The trained model bundle.
        untrained_chi2_ndf: Validation chi2/NDF of the response before training.
        trained_chi2_ndf: Validation chi2/NDF at the selected checkpoint.
        evaluation_chi2_ndf: chi2/NDF of the generated vs the independent evaluation showers.
        verdict: Overall verdict of the report.
        iterations: Training iterations run.
        generation_us_per_shower: Generation time per shower at the demo's batch size, microseconds.
        timings: Wall-clock seconds per step.
    """

    out_dir: Path
    report: Path
    bundle: Path
    untrained_chi2_ndf: float
    trained_chi2_ndf: float
    evaluation_chi2_ndf: float
    verdict: str
    iterations: int
    generation_us_per_shower: float
    timings: dict[str, float]


def _prepare(out_dir: Path, force: bool) -> None:
    existing = [out_dir / name for name in DEMO_FILES if (out_dir / name).exists()]
    if existing and not force:
        msg = f"{out_dir} already holds a demo ({existing[0].name}, ...); choose another --out or pass --force"
        raise OutputExistsError(msg)
    for path in existing:  # only the demo's own outputs, never anything else in the directory
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def run_demo(
    out_dir: str | Path = "caloforge-demo",
    minutes: float = 5.0,
    n_train: int = 30_000,
    n_eval: int = 10_000,
    seed: int = 0,
    device: str = "cpu",
    classifier_showers: int = 10_000,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Run the demo end to end.

    Args:
        out_dir: Directory for the files, the training run and the report.
        minutes: Training budget (wall clock).
        n_train: Training showers (the dataset-1 spectrum, scaled).
        n_eval: Independent evaluation showers.
        seed: Seed of the simulation, training, generation and evaluation.
        device: ``"cpu"`` or ``"cuda"`` (resolved by the caller).
        classifier_showers: Showers per sample for the classifier tests.
        force: Replace the outputs of an earlier demo in ``out_dir``.
        progress: Show progress bars.
        log: Receives one line per step.

    Returns:
        The paths and the headline numbers.
    """
    from caloforge import io
    from caloforge.bundle import load
    from caloforge.evaluate import evaluate
    from caloforge.metrics.classifier import ClassifierConfig
    from caloforge.models.gan import GANConfig
    from caloforge.refsim import simulate_to_file
    from caloforge.training import train

    out = Path(out_dir)
    _prepare(out, force)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train_file = simulate_to_file(out / "train.h5", GEOMETRY, PARTICLE, n_train, seed=seed)
    eval_file = simulate_to_file(out / "eval.h5", GEOMETRY, PARTICLE, n_eval, seed=seed + 1)
    timings["simulate"] = time.perf_counter() - t0
    log(f"simulated {n_train} training and {n_eval} evaluation {PARTICLE} showers ({timings['simulate']:.0f} s)")

    t0 = time.perf_counter()
    data = io.read(train_file)
    run = train(data, "gan", GANConfig.for_cpu(PARTICLE), out / "run", max_minutes=minutes, checkpoint_every=100,
                seed=seed, device=device, progress=progress)
    timings["train"] = time.perf_counter() - t0
    bundle = load(run.bundle_dir)
    history = bundle.info.get("history", [])
    iterations = run.ranges[0].iterations
    log(f"trained {iterations} iterations ({timings['train'] / 60:.1f} min); best validation chi2/NDF "
        f"{run.chi2_ndf:.3g}")

    reference = io.read(eval_file)
    t0 = time.perf_counter()
    generated = bundle.generate(reference.energies, batch_size=10_000, device=device, seed=seed + 2)
    timings["generate"] = time.perf_counter() - t0
    io.write(out / "generated.h5", generated)
    per_shower = timings["generate"] / len(generated) * 1e6
    log(f"generated {len(generated)} showers ({per_shower:.0f} us/shower at batch 10000)")

    t0 = time.perf_counter()
    config = dataclasses.replace(ClassifierConfig.cpu_budget(), max_showers=classifier_showers)
    result = evaluate(reference, generated, out / "report", mode="full", seed=seed, classifier_config=config,
                      device=device, training_history=history)
    timings["evaluate"] = time.perf_counter() - t0
    training = result.training or {}
    return DemoResult(
        out_dir=out,
        report=out / "report" / "report.html",
        bundle=run.bundle_dir,
        untrained_chi2_ndf=float(training.get("untrained_chi2_ndf", float("nan"))),
        trained_chi2_ndf=float(run.chi2_ndf),
        evaluation_chi2_ndf=float(result.chi2.chi2_ndf),
        verdict=str(result.verdict),
        iterations=int(iterations),
        generation_us_per_shower=per_shower,
        timings={k: round(v, 1) for k, v in timings.items()},
    )
