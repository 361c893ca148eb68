"""The leaderboard: every model family trained and judged the same way on the same data.

:func:`run_leaderboard` trains each family under the same budget and seed through the one
training loop (checkpoint selection by the validation chi2/NDF), generates one shower per
reference shower, runs the full evaluation with the same classifier settings for every family,
times generation at batch 10000 and counts parameters. It writes, in ``out_dir``:

* ``<family>/run/`` (the training run and its bundle), ``<family>/report/`` (the full report),
  ``<family>/entry.json`` (the family's row, written when it is complete);
* ``compare/`` (dataset-1-sized geometries, two families or more evaluated in the call): one report with
  every family's sample overlaid on the reference, drawn from the evaluations already made (no metric
  computed again; :func:`caloforge.validation.compare_report.write_comparison`);
* ``leaderboard.json``, ``leaderboard.md`` (a Markdown table) and ``leaderboard.html`` (the report's
  style, with low-level classifier AUC versus generation time and its Pareto front).

A family that fails is recorded with its error and the others go on; with ``resume`` a family
with a complete row is not trained again, and an interrupted training continues from its last
checkpoint. Each row records where its time went (training, generation, evaluation, timing) and
the machine it was measured on; a resumed leaderboard adds its time to the earlier calls' instead
of replacing it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from caloforge.campaign.leaderboard_report import pareto_front, render_html, render_markdown
from caloforge.config import Config
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError, ConfigError, OutputExistsError
from caloforge.models import get_family
from caloforge.runtime.hardware import machine_summary
from caloforge.runtime.interrupts import Interrupted
from caloforge.runtime.progress import SILENT, Progress
from caloforge.training import RunSpec, Runtime, TrainingSettings, load, run_training
from caloforge.training.shapes import Selection
from caloforge.validation.compare import Comparison
from caloforge.validation.compare_report import write_comparison
from caloforge.validation.evaluate import evaluate
from caloforge.validation.metrics.classifier import ClassifierConfig
from caloforge.validation.result import EvaluationResult

__all__ = ["STAGES", "Leaderboard", "LeaderboardSettings", "pareto_front", "run_leaderboard"]

ENTRY = "entry.json"
COMPARE_MAX_VOXELS = 1000
"""Largest geometry (voxels) whose families the leaderboard compares in one report itself (dataset 1: 368, 533)."""
STAGES = {"train_minutes": "training", "generate_minutes": "generation", "evaluate_minutes": "evaluation",
          "timing_minutes": "timing"}
"""The stages of each family whose wall-clock minutes a row records, and their names in the outputs."""


class LeaderboardSettings(Config):
    """How every family is trained and judged (the same for all).

    Attributes:
        families: Registered family names, in order.
        minutes_per_model: Wall-clock training budget of each family (or None with ``iterations_per_model``).
        iterations_per_model: Iteration budget of each family (None: minutes only).
        preset: ``auto`` (CPU settings on a CPU, the papers' on a GPU), ``cpu`` or ``paper``.
        seed: Seed of training, generation and evaluation.
        classifier_minutes: Wall-clock budget of each family's four classifier trainings.
        classifier_showers: Showers per sample for the classifiers.
        timing_batch: Batch size at which generation is timed (the CaloChallenge's 10000).
        selection: What selects every family's checkpoint (``chi2``, ``fpd``, ``combined``); None: each
            family's default (:func:`caloforge.training.settings.default_selection`).
    """

    families: Annotated[tuple[str, ...], Field(min_length=1)]
    minutes_per_model: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] | None = None  # bounds: typos
    iterations_per_model: Annotated[int, Field(ge=1, le=10**9)] | None = None
    preset: str = "auto"
    seed: Annotated[int, Field(ge=0)] = 0
    classifier_minutes: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] = 5.0
    classifier_showers: Annotated[int, Field(ge=10, le=10**8)] = 10_000
    timing_batch: Annotated[int, Field(ge=1, le=2**24)] = 10_000
    selection: Selection | None = None


@dataclass(frozen=True)
class Leaderboard:
    """The rows of a leaderboard and how it was made.

    Attributes:
        entries: One dict per family (see ``leaderboard.json``); failed families have ``status: failed``.
        settings: The settings used.
        machine: The CPU (and GPU) of this call (each row records its own: a resumed leaderboard may span two).
        elapsed_s: Wall-clock time of this call, s.
        out_dir: Where the files are.
        classifier: The classifier settings of every family.
        earlier_s: Wall-clock time of the earlier calls of a resumed leaderboard, s.
        calls: Calls that made it (1, plus one per ``resume``).
    """

    entries: tuple[dict[str, Any], ...]
    settings: LeaderboardSettings
    machine: str
    elapsed_s: float
    out_dir: Path
    classifier: dict[str, Any] = field(default_factory=dict)
    earlier_s: float = 0.0
    calls: int = 1

    @property
    def total_s(self) -> float:
        """Wall-clock time of every call together, s."""
        return self.earlier_s + self.elapsed_s

    def minutes_by_stage(self) -> dict[str, float]:
        """Minutes spent per stage over the complete rows, and ``other`` (reading data, failed families, ...)."""
        split = {name: sum(float(e.get(key) or 0.0) for e in self.entries) for key, name in STAGES.items()}
        split["other"] = max(self.total_s / 60 - sum(split.values()), 0.0)
        return split

    def machines(self) -> dict[str, list[str]]:
        """Each machine and the families measured on it (rows without one: this call's machine)."""
        out: dict[str, list[str]] = {}
        for entry in self.entries:
            out.setdefault(str(entry.get("machine") or self.machine), []).append(str(entry["family"]))
        return out or {self.machine: []}

    def to_dict(self) -> dict[str, Any]:
        """The content of ``leaderboard.json``."""
        return {"schema": "caloforge.leaderboard/1", "settings": self.settings.to_dict(), "machine": self.machine,
                "classifier": self.classifier, "elapsed_s": round(self.elapsed_s, 1),
                "total_elapsed_s": round(self.total_s, 1), "calls": self.calls,
                "minutes_by_stage": {k: round(v, 2) for k, v in self.minutes_by_stage().items()},
                "entries": list(self.entries)}


def _time_generation(bundle: Any, reference: ShowerSet, batch: int, device: str, seed: int,
                     progress: Progress = SILENT, label: str = "timing generation") -> float:
    """Median wall-clock microseconds per shower of ``bundle.generate`` at one batch (after a warm-up).

    The energies and conditions are the reference's, repeated to fill the batch. Each timed batch
    is one call (tens of seconds for a slow family): a line at least every ``progress.interval_s``.
    """
    e = np.resize(reference.energies, batch)
    c = {name: np.resize(reference.conditions[name], batch) for name in bundle.condition_names}
    times: list[float] = []
    with progress.task(label, total=3, unit="batches", keepalive=True) as task:
        bundle.generate(e[:100], {k: v[:100] for k, v in c.items()}, batch_size=batch, device=device, seed=seed)
        for k in range(3):
            start = time.perf_counter()
            bundle.generate(e, c, batch_size=batch, device=device, seed=seed + k)
            times.append(time.perf_counter() - start)
            task.update(k + 1, status=f"{times[-1] / batch * 1e6:.3g} us per shower")
    return float(np.median(times) / batch * 1e6)


def _evaluate_family(family: str, data: ShowerSet, reference: ShowerSet, validation: ShowerSet | None,
                     settings: LeaderboardSettings, classifier: ClassifierConfig, directory: Path, resume: bool,
                     device: str, progress: Progress, evaluations: dict[str, EvaluationResult]) -> dict[str, Any]:
    model_class = get_family(family)
    config = model_class.config_class.for_preset(settings.preset, data.geometry.particle, device)  # type: ignore[arg-type]
    run_dir = directory / "run"
    marks = [time.perf_counter()]
    budget = TrainingSettings(max_minutes=settings.minutes_per_model, max_iterations=settings.iterations_per_model,
                              seed=settings.seed, selection=settings.selection)
    result = run_training(data, RunSpec(family, config, budget, Runtime(device, progress=progress)), run_dir,
                          validation=validation, resume=resume and (run_dir / "run.json").is_file())
    if result.interrupted:  # the CLI exits 130 after Ctrl-C, 143 after SIGTERM
        raise Interrupted(result.signum or signal.SIGINT)
    marks.append(time.perf_counter())
    bundle = load(result.bundle_dir)
    with progress.task(f"leaderboard: {family}: generating {len(reference)} showers for the evaluation",
                       keepalive=True):  # one call: a line at least every progress.interval_s in a log
        generated = bundle.generate_like(reference, device=device, seed=settings.seed + 1)
    marks.append(time.perf_counter())
    evaluation = evaluate(reference, generated, directory / "report", mode="full", seed=settings.seed,
                          classifier_config=classifier, device=device, force=True, progress=progress,
                          training_history=bundle.info.get("history", []), inputs={"family": family})
    marks.append(time.perf_counter())
    us = _time_generation(bundle, reference, settings.timing_batch, device, settings.seed, progress,
                          f"leaderboard: {family}: timing generation at batch {settings.timing_batch}")
    marks.append(time.perf_counter())
    evaluations[family] = evaluation  # only a family whose row is complete enters the comparison
    clf = evaluation.classifiers
    return {
        "family": family, "status": "ok", "chi2_ndf": evaluation.chi2.chi2_ndf,
        "auc_low": clf["low"].auc, "auc_low_error": clf["low"].auc_error,
        "auc_high": clf["high"].auc, "auc_high_error": clf["high"].auc_error,
        "auc_low_budget_stopped": clf["low"].budget_exhausted, "auc_high_budget_stopped": clf["high"].budget_exhausted,
        "fpd_e3": evaluation.fpd.value * 1e3, "fpd_error_e3": evaluation.fpd.error * 1e3,
        "kpd_e3": evaluation.kpd.value * 1e3, "kpd_error_e3": evaluation.kpd.error * 1e3,
        "us_per_shower": us, "parameters": sum(p.numel() for m in bundle.models for p in m.parameters()),
        "iterations": sum(r.iterations for r in result.ranges), "validation_chi2_ndf": result.chi2_ndf,
        "verdict": evaluation.verdict,
        **{key: round((end - begin) / 60, 2) for key, begin, end in zip(STAGES, marks[:-1], marks[1:], strict=True)},
        "bundle": str(result.bundle_dir), "report": str(directory / "report" / "report.html"),
        "config": config.to_dict(),
    }


def run_leaderboard(
    data: ShowerSet,
    reference: ShowerSet,
    out_dir: str | Path,
    settings: LeaderboardSettings,
    *,
    validation: ShowerSet | None = None,
    classifier: ClassifierConfig | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: Progress | None = None,
) -> Leaderboard:
    """Train, generate, evaluate and time every family of ``settings`` the same way; write the leaderboard.

    Args:
        data: Training showers.
        reference: Independent evaluation showers (one generated shower per reference shower).
        out_dir: The leaderboard directory (new, or an earlier one with ``resume``).
        settings: Families, budgets, seed, classifier budget.
        validation: An independent validation sample for checkpoint selection (default: a split of ``data``).
        classifier: The classifier settings for every family (default: the full-mode defaults with
            ``settings.classifier_showers`` showers and ``settings.classifier_minutes``).
        device: ``"cpu"`` or ``"cuda"`` (resolved by the caller).
        resume: Keep the families with a complete row; continue interrupted trainings.
        progress: Reports each family's stages.

    Raises:
        ConfigError: for an unknown family or without a budget (checked before anything runs).
        OutputExistsError: if ``out_dir`` holds files and ``resume`` is false.
    """
    start = time.perf_counter()
    prog = progress or SILENT
    for family in settings.families:
        get_family(family)  # unknown names fail before anything runs
    if settings.minutes_per_model is None and settings.iterations_per_model is None:
        msg = "expected a budget per model (minutes_per_model or iterations_per_model) but got neither"
        raise ConfigError(msg)
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not resume:
        msg = f"{out} already holds a leaderboard; pass --resume to continue it or choose another --out"
        raise OutputExistsError(msg)
    out.mkdir(parents=True, exist_ok=True)
    classifier = (classifier or ClassifierConfig.cpu_budget().replace(max_showers=settings.classifier_showers))
    classifier = classifier.replace(max_seconds=60.0 * settings.classifier_minutes)
    machine = machine_summary(device, min_seconds=0.05).describe()
    earlier_s, calls, earlier_machine = _earlier_calls(out) if resume else (0.0, 1, machine)
    entries: list[dict[str, Any]] = []
    evaluations: dict[str, EvaluationResult] = {}
    for family in settings.families:
        directory = out / family
        entry_file = directory / ENTRY
        if resume and entry_file.is_file():
            prog.message(f"leaderboard: {family} is complete, not trained again")
            kept = read_json(entry_file, "a leaderboard entry", CheckpointError)
            entries.append({**kept, "machine": kept.get("machine") or earlier_machine})
            continue
        prog.message(f"leaderboard: {family} ({len(entries) + 1}/{len(settings.families)})")
        directory.mkdir(exist_ok=True)
        try:
            entry = _evaluate_family(family, data, reference, validation, settings, classifier, directory, resume,
                                     device, prog, evaluations)
        except Exception as err:  # one family's failure (a bug, a NaN, out of memory) must not stop the others
            entry = {"family": family, "status": "failed", "error": f"{type(err).__name__}: {err}"[:500]}
            prog.message(f"leaderboard: {family} failed ({entry['error']}); the others go on")
        else:
            entry["machine"] = machine
            with atomic_path(entry_file, force=True) as tmp:
                tmp.write_text(strict_json(entry), encoding="utf-8")
        entries.append(entry)
        _write_outputs(Leaderboard(tuple(entries), settings, machine, time.perf_counter() - start, out,
                                   classifier.to_dict(), earlier_s, calls))
    board = Leaderboard(tuple(entries), settings, machine, time.perf_counter() - start, out, classifier.to_dict(),
                        earlier_s, calls)
    _write_outputs(board)  # the table first: a failed comparison report must not lose it
    try:
        _write_comparison(out, evaluations, prog)
    except Exception as err:  # the figures of finished families: report it and keep the table
        prog.message(f"leaderboard: the comparison report failed ({type(err).__name__}: {err}); the table is written")
    else:
        _write_outputs(board)  # again: the page links the comparison it now has
    return board


def _write_comparison(out: Path, evaluations: dict[str, EvaluationResult], progress: Progress) -> None:
    """Every family of this call in one comparison report (``compare/``), from their evaluations, if cheap.

    Only the figures are drawn (PNG only: tens of seconds on dataset 1); not for larger geometries (minutes per figure
    set: docs/validation.md gives the one command that makes it), nor for fewer than two families.
    """
    if len(evaluations) < 2 or next(iter(evaluations.values())).geometry.n_voxels > COMPARE_MAX_VOXELS:
        return
    progress.message(f"leaderboard: one report comparing {', '.join(evaluations)} (compare/report.html)")
    write_comparison(Comparison(tuple(evaluations), tuple(evaluations.values())), out / "compare", force=True,
                     pdf=False, progress=progress)  # the page's PNGs; caloforge evaluate also writes PDFs


def _earlier_calls(out: Path) -> tuple[float, int, str]:
    """Time (s), number and machine of the earlier calls of a leaderboard being resumed (none: 0, 1, "")."""
    path = out / "leaderboard.json"
    if not path.is_file():
        return 0.0, 1, ""
    earlier = read_json(path, "a leaderboard", CheckpointError)
    seconds = earlier.get("total_elapsed_s", earlier.get("elapsed_s", 0.0))
    calls = earlier.get("calls", 1)
    return (float(seconds) if isinstance(seconds, int | float) else 0.0,
            (int(calls) if isinstance(calls, int) else 1) + 1, str(earlier.get("machine", "")))


def _write_outputs(board: Leaderboard) -> None:
    out = board.out_dir
    for name, text in (("leaderboard.json", strict_json(board.to_dict(), indent=2)),
                       ("leaderboard.md", render_markdown(board)), ("leaderboard.html", render_html(board))):
        with atomic_path(out / name, force=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
