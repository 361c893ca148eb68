"""The demo: simulate, train, generate, validate and time a model within a stated wall-clock budget.

``caloforge demo`` runs the whole life of a fast-simulation model on embedded data:

1. the reference simulator (its particle-level cascade mode by default) writes a
   dataset-1-photon training file, an independent validation file (the same 15 energies,
   equally many showers each, for the chi2 that selects the checkpoint) and an independent
   evaluation file (256 MeV - 4.2 TeV);
2. the demo's family (:data:`FAMILY`, chosen by measurement, see docs/results.md) trains
   within a wall-clock (or iteration) budget, its checkpoint chosen by chi2/NDF of the
   total-energy response on the validation file;
3. the chosen model generates one shower per evaluation-file energy;
4. the validation suite compares them (all metrics; the classifiers within their own
   wall-clock budget) and writes the HTML report, which also shows chi2/NDF before and
   after training.

Every stage has a budget or a bounded size, and the plan with the expected time per
stage is printed before anything starts, with this machine's CPU and measured speed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from caloforge.errors import ConfigError, OutputExistsError
from caloforge.refsim.spectra import DS1_COUNTS, DS1_ENERGIES
from caloforge.runtime.progress import SILENT, Progress
from caloforge.validation.metrics.classifier import ClassifierConfig
from caloforge.validation.metrics.verdict import VerdictRow

__all__ = ["DemoPlan", "DemoResult", "demo_plan", "explain_verdict", "run_demo"]

GEOMETRY = "ds1-photons"
PARTICLE = "photon"
FAMILY = "flow"  # best in the demo's budget on cascade data: docs/results.md, "Choosing the demo's family"
PHYSICS = "cascade"
DEMO_FILES = ("train.h5", "validation.h5", "eval.h5", "generated.h5", "run", "report")
_OTHER_VALIDATION_S = 45.0  # features, histograms, FPD/KPD, PRDC on 2 x 10k showers (idle 2-core machine)
_REPORT_S = 30.0  # drawing the report's figures
_GENERATE_US = {"flow": 2000.0, "diffusion": 200.0}  # per shower at batch 10000 in the demo; the others ~20 us
_SIMULATE_SHOWERS_PER_S = {"gflash": 8_000.0}  # writing included; the cascade's cost grows with the energy:
_CASCADE_S_PER_GEV = 12e-6  # two jobs, writing included (47.5k ds1-spectrum photons, 7.6 PeV: 76 s on idle cores)
_CASCADE_START_S = 20.0  # numba's compilation and the stacks' calibration the first time (cached after)
PHYSICS_MODES = ("cascade", "gflash")


@dataclass(frozen=True)
class DemoPlan:
    """The demo's stages and their expected (or budgeted) seconds.

    Attributes:
        stages: (stage, seconds, how the time is bounded) in order.
        machine: One line describing the CPU, its capability, threads and measured matmul speed.
    """

    stages: tuple[tuple[str, float, str], ...]
    machine: str

    @property
    def total_s(self) -> float:
        """The sum of the stages' seconds."""
        return sum(seconds for _, seconds, _ in self.stages)

    def lines(self) -> list[str]:
        """The plan as printable lines."""
        out = [f"plan on {self.machine}:"]
        out += [f"  {name:<40} {seconds / 60:5.1f} min  ({how})" for name, seconds, how in self.stages]
        out.append(f"  {'total':<40} {self.total_s / 60:5.1f} min")
        return out


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
        classifiers: How each classifier training went (epochs, precision, whether the budget cut it).
        plan: The plan printed at the start.
        timings: Wall-clock seconds per step.
        family: The model family trained.
        physics: The reference simulator's mode that made the data.
        explanation: The verdict in plain words: what passed, what failed, what would change it.
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
    classifiers: dict[str, str]
    plan: DemoPlan
    timings: dict[str, float]
    family: str = FAMILY
    physics: str = PHYSICS
    explanation: tuple[str, ...] = ()


def explain_verdict(rows: tuple[VerdictRow, ...], iterations: int, train_minutes: float) -> tuple[str, ...]:
    """The report's verdict in plain words for the terminal: what passed, what failed, what would change it.

    Example:
        >>> from caloforge.validation.metrics.verdict import chi2_verdict
        >>> explain_verdict((chi2_verdict(1.0, 30),), 100, 5.0)[0]
        'passed: response chi2/NDF'
    """
    graded = [row for row in rows if row.verdict in ("pass", "warn", "fail")]
    lines = []
    for verdict, word in (("pass", "passed"), ("warn", "close (warn)"), ("fail", "failed")):
        names = [row.metric for row in graded if row.verdict == verdict]
        if names:
            lines.append(f"{word}: {', '.join(names)}")
    small = [row.metric for row in rows if row.verdict == "too small"]
    if small:  # shown, not graded: the samples are below the size each needs (the report's rule says which)
        lines.append(f"too small to judge: {', '.join(small)} (more evaluation showers: --n-eval)")
    failed = [row for row in graded if row.verdict != "pass"]
    if not failed:
        if graded:
            lines.append("every graded metric is within what sample-size noise alone produces")
        return tuple(lines)
    for row in failed[:4]:
        lines.append(f"  {row.metric} = {row.value:.3g} ({row.rule})")
    lines.append(f"this model trained {train_minutes:.1f} minutes ({iterations} iterations) on this machine; "
                 "published models train for hours on a GPU: a longer budget (--max-minutes 60) or a GPU "
                 "(--device cuda) brings the failed metrics down, more showers (--n-train) help the shapes")
    return tuple(lines)


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


def simulated_gev(n_spectrum: int, n_ladder: int) -> float:
    """The energy simulated, GeV: ``n_spectrum`` showers of the dataset-1 spectrum, ``n_ladder`` in equal shares.

    Example:
        >>> round(simulated_gev(40_000, 7_500) / 1e6, 1)  # PeV: the default demo
        10.6
    """
    counts = np.asarray(DS1_COUNTS, dtype=np.float64)
    energies = np.asarray(DS1_ENERGIES) * 1e-3
    return float(n_spectrum * (counts @ energies) / counts.sum() + n_ladder * energies.mean())


def demo_plan(minutes: float | None, max_iterations: int | None, n_showers: int, classifier_minutes: float,
              device: str = "cpu", machine: str | None = None, family: str = FAMILY,
              physics: str = PHYSICS, energy_gev: float | None = None, n_generate: int = 10_000) -> DemoPlan:
    """The stages of :func:`run_demo` with their budgets or expected times.

    Stages with a budget (training, the classifiers) use it; the others are bounded in size
    and use times measured on an idle 2-core machine. The cascade's simulation time follows
    ``energy_gev``, the energy simulated (default: ``n_showers`` of the dataset-1 spectrum); the
    generation's, the family's time per shower for ``n_generate`` showers.
    """
    if machine is None:
        # torch's import time (through runtime.hardware): only when no machine summary is given
        from caloforge.runtime.hardware import machine_summary

        machine = machine_summary(device, min_seconds=0.05).describe()
    train_s = 60.0 * minutes if minutes is not None else 0.0
    train_how = f"{minutes:g}-minute budget" if minutes is not None else f"{max_iterations} iterations"
    if minutes is not None and max_iterations is not None:
        train_how = f"{max_iterations} iterations or {minutes:g} minutes, whichever comes first"
    if physics == "cascade":
        gev = simulated_gev(n_showers, 0) if energy_gev is None else energy_gev
        simulate_s = _CASCADE_START_S + gev * _CASCADE_S_PER_GEV
    else:
        simulate_s = n_showers / _SIMULATE_SHOWERS_PER_S[physics]
    return DemoPlan(
        stages=(
            (f"simulate (reference simulator, {physics})", simulate_s, f"{n_showers} showers"),
            (f"train the {family} model", train_s, train_how),
            ("generate", max(2.0, n_generate * _GENERATE_US.get(family, 20.0) * 1e-6),
             f"{n_generate} showers, batch 10000"),
            ("validate: features, FPD/KPD, PRDC", _OTHER_VALIDATION_S, "bounded sample sizes"),
            ("validate: classifiers", 60.0 * classifier_minutes, f"{classifier_minutes:g}-minute budget"),
            ("report figures", _REPORT_S, "fixed set of figures"),
        ),
        machine=machine,
    )


def run_demo(
    out_dir: str | Path = "caloforge-demo",
    minutes: float | None = 5.0,
    max_iterations: int | None = None,
    n_train: int = 30_000,
    n_validation: int = 7_500,
    n_eval: int = 10_000,
    seed: int = 0,
    device: str = "cpu",
    classifier_minutes: float = 1.5,
    classifier_config: ClassifierConfig | None = None,
    force: bool = False,
    progress: Progress | None = None,
    family: str = FAMILY,
    physics: str = PHYSICS,
) -> DemoResult:
    """Run the demo end to end.

    Args:
        out_dir: Directory for the files, the training run and the report.
        minutes: Training budget (wall clock), or None with ``max_iterations``.
        max_iterations: Training budget in iterations (the tests use it: the same result on every machine).
        n_train: Training showers (the dataset-1 spectrum, scaled).
        n_validation: Independent validation showers for checkpoint selection (equal shares of the 15 energies).
        n_eval: Independent evaluation showers.
        seed: Seed of the simulation, training, generation and evaluation.
        device: ``"cpu"`` or ``"cuda"`` (resolved by the caller).
        classifier_minutes: Wall-clock budget of all classifier trainings.
        classifier_config: Classifier settings (default: the full-mode defaults at 10k showers per sample);
            its ``max_seconds`` is replaced by ``classifier_minutes``.
        force: Replace the outputs of an earlier demo in ``out_dir``.
        progress: Reports the plan, each stage and its progress; None is silent.
        family: The model family (its CPU preset); default the measured best in the demo's budget.
        physics: The reference simulator's mode, ``"cascade"`` (particle transport) or ``"gflash"``.

    Returns:
        The paths and the headline numbers.

    Raises:
        ConfigError: without a training budget, or with a non-positive one; for an unknown family or physics.
        OutputExistsError: if ``out_dir`` holds an earlier demo and ``force`` is false.
    """
    # start-up time: the simulator, training and the validation suite load only when the demo runs
    from caloforge.data import io
    from caloforge.data.source import ShowerFile
    from caloforge.models import get_family
    from caloforge.refsim import simulate_to_file
    from caloforge.training.bundle import load
    from caloforge.training.loop import train
    from caloforge.validation.evaluate import evaluate

    if minutes is None and max_iterations is None:
        msg = "expected a training budget (minutes or max_iterations) but got neither, in run_demo"
        raise ConfigError(msg)
    if (minutes is not None and not minutes > 0) or not classifier_minutes > 0:
        msg = f"expected positive minutes but got {minutes} (training) and {classifier_minutes} (classifiers)"
        raise ConfigError(msg)
    if physics not in PHYSICS_MODES:
        msg = f"expected physics in {list(PHYSICS_MODES)} but got {physics!r}, in run_demo"
        raise ConfigError(msg)
    family_config = get_family(family).config_class.for_cpu(PARTICLE)
    prog = progress or SILENT
    out = Path(out_dir)
    _prepare(out, force)
    plan = demo_plan(minutes, max_iterations, n_train + n_validation + n_eval, classifier_minutes, device,
                     family=family, physics=physics, energy_gev=simulated_gev(n_train + n_eval, n_validation),
                     n_generate=n_eval)
    for line in plan.lines():
        prog.message(line)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    jobs = max(1, torch.get_num_threads())  # the cores torch would use
    with prog.task("simulate", total=3, unit="files") as task:
        train_file = simulate_to_file(out / "train.h5", GEOMETRY, PARTICLE, n_train, seed=seed, physics=physics,
                                      jobs=jobs)
        task.update(1, status="train.h5", line=True)
        validation_file = simulate_to_file(out / "validation.h5", GEOMETRY, PARTICLE, n_validation, seed=seed + 3,
                                           energies=DS1_ENERGIES, physics=physics, jobs=jobs)
        task.update(2, status="validation.h5", line=True)
        eval_file = simulate_to_file(out / "eval.h5", GEOMETRY, PARTICLE, n_eval, seed=seed + 1, physics=physics,
                                     jobs=jobs)
        task.update(3, status="eval.h5")
    timings["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run = train(io.read(train_file), family, family_config, out / "run", max_minutes=minutes,
                max_iterations=max_iterations, checkpoint_every=100 if max_iterations is None else
                max(1, max_iterations // 10), validation=io.read(validation_file), seed=seed, device=device,
                progress=prog)
    if run.interrupted:  # Ctrl-C or SIGTERM stopped training: stop here, not generate with a half-trained model
        from caloforge.runtime.interrupts import Interrupted

        raise Interrupted(run.signum or 2)
    timings["train"] = time.perf_counter() - t0
    bundle = load(run.bundle_dir)
    history = bundle.info.get("history", [])
    iterations = run.ranges[0].iterations
    prog.message(f"trained {iterations} iterations ({timings['train'] / 60:.1f} min); best validation chi2/NDF "
                 f"{run.chi2_ndf:.3g}")

    reference = ShowerFile.open(eval_file)  # its energies; the showers are streamed by the evaluation
    t0 = time.perf_counter()
    generated = bundle.generate(reference.energies, batch_size=10_000, device=device, seed=seed + 2)
    timings["generate"] = time.perf_counter() - t0
    io.write(out / "generated.h5", generated)
    per_shower = timings["generate"] / len(generated) * 1e6
    prog.message(f"generated {len(generated)} showers ({per_shower:.0f} us/shower at batch 10000)")
    del generated  # evaluated from its file, like the reference

    t0 = time.perf_counter()
    config = classifier_config or ClassifierConfig.cpu_budget().replace(max_showers=10_000)
    config = config.replace(max_seconds=60.0 * classifier_minutes)
    result = evaluate(reference, ShowerFile.open(out / "generated.h5"), out / "report", mode="full", seed=seed,
                      classifier_config=config, device=device, training_history=history, progress=prog,
                      inputs={"reference": {"path": str(eval_file)},
                              "generated": {"path": str(out / "generated.h5")},
                              "model": {"family": family, "bundle": str(run.bundle_dir), "chosen_by": (
                                  "the demo's default, the measured best in its budget (docs/results.md)"
                                  if family == FAMILY else "--family")}})
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
        classifiers={name: clf.summary() for name, clf in result.classifiers.items()},
        plan=plan,
        timings={k: round(v, 1) for k, v in timings.items()},
        family=family,
        physics=physics,
        explanation=explain_verdict(result.verdicts, int(iterations), timings["train"] / 60.0),
    )
