"""The leaderboard: every model family trained and judged the same way on the same data.

:func:`run_leaderboard` trains each family under the same budget and seed through the one
training loop (checkpoint selection by the validation chi2/NDF), generates one shower per
reference shower, runs the full evaluation with the same classifier settings for every family,
times generation at batch 10000 and counts parameters. It writes, in ``out_dir``:

* ``<family>/run/`` (the training run and its bundle), ``<family>/report/`` (the full report),
  ``<family>/entry.json`` (the family's row, written when it is complete);
* ``leaderboard.json``, ``leaderboard.md`` (a Markdown table) and ``leaderboard.html`` (the report's
  style, with low-level classifier AUC versus generation time and its Pareto front).

A family that fails is recorded with its error and the others go on; with ``resume`` a family
with a complete row is not trained again, and an interrupted training continues from its last
checkpoint.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from caloforge.config import Config
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError, ConfigError, OutputExistsError
from caloforge.models import get_family
from caloforge.runtime.hardware import machine_summary
from caloforge.runtime.interrupts import Interrupted
from caloforge.runtime.progress import SILENT, Progress
from caloforge.training import load, train
from caloforge.validation.evaluate import evaluate
from caloforge.validation.metrics.classifier import ClassifierConfig

__all__ = ["Leaderboard", "LeaderboardSettings", "pareto_front", "run_leaderboard"]

ENTRY = "entry.json"


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
    """

    families: Annotated[tuple[str, ...], Field(min_length=1)]
    minutes_per_model: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] | None = None  # bounds: typos
    iterations_per_model: Annotated[int, Field(ge=1, le=10**9)] | None = None
    preset: str = "auto"
    seed: Annotated[int, Field(ge=0)] = 0
    classifier_minutes: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] = 5.0
    classifier_showers: Annotated[int, Field(ge=10, le=10**8)] = 10_000
    timing_batch: Annotated[int, Field(ge=1, le=2**24)] = 10_000


@dataclass(frozen=True)
class Leaderboard:
    """The rows of a leaderboard and how it was made.

    Attributes:
        entries: One dict per family (see ``leaderboard.json``); failed families have ``status: failed``.
        settings: The settings used.
        machine: The CPU (and GPU) the numbers were measured on.
        elapsed_s: Wall-clock time of this call, s.
        out_dir: Where the files are.
    """

    entries: tuple[dict[str, Any], ...]
    settings: LeaderboardSettings
    machine: str
    elapsed_s: float
    out_dir: Path
    classifier: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``leaderboard.json``."""
        return {"schema": "caloforge.leaderboard/1", "settings": self.settings.to_dict(), "machine": self.machine,
                "classifier": self.classifier, "elapsed_s": round(self.elapsed_s, 1), "entries": list(self.entries)}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (lower is better in both), by x.

    Example:
        >>> pareto_front([(1.0, 0.9), (10.0, 0.6), (5.0, 0.95), (100.0, 0.6)])
        [0, 1]
    """
    order = sorted((i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)), key=lambda i: points[i])
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def _time_generation(bundle: Any, reference: ShowerSet, batch: int, device: str, seed: int) -> float:
    """Median wall-clock microseconds per shower of ``bundle.generate`` at one batch (after a warm-up).

    The energies and conditions are the reference's, repeated to fill the batch.
    """
    e = np.resize(reference.energies, batch)
    c = {name: np.resize(reference.conditions[name], batch) for name in bundle.condition_names}
    bundle.generate(e[:100], {k: v[:100] for k, v in c.items()}, batch_size=batch, device=device, seed=seed)
    times = []
    for k in range(3):
        start = time.perf_counter()
        bundle.generate(e, c, batch_size=batch, device=device, seed=seed + k)
        times.append(time.perf_counter() - start)
    return float(np.median(times) / batch * 1e6)


def _evaluate_family(family: str, data: ShowerSet, reference: ShowerSet, validation: ShowerSet | None,
                     settings: LeaderboardSettings, classifier: ClassifierConfig, directory: Path, resume: bool,
                     device: str, progress: Progress) -> dict[str, Any]:
    model_class = get_family(family)
    config = model_class.config_class.for_preset(settings.preset, data.geometry.particle, device)  # type: ignore[arg-type]
    run_dir = directory / "run"
    started = time.perf_counter()
    result = train(data, family, config, run_dir, max_minutes=settings.minutes_per_model,
                   max_iterations=settings.iterations_per_model, seed=settings.seed, validation=validation,
                   device=device, resume=resume and (run_dir / "run.json").is_file(), progress=progress)
    if result.interrupted:  # the CLI exits 130 after Ctrl-C, 143 after SIGTERM
        raise Interrupted(result.signum or signal.SIGINT)
    trained = time.perf_counter()
    bundle = load(result.bundle_dir)
    generated = bundle.generate_like(reference, device=device, seed=settings.seed + 1)
    evaluation = evaluate(reference, generated, directory / "report", mode="full", seed=settings.seed,
                          classifier_config=classifier, device=device, force=True, progress=progress,
                          training_history=bundle.info.get("history", []), inputs={"family": family})
    us = _time_generation(bundle, reference, settings.timing_batch, device, settings.seed)
    clf = evaluation.classifiers
    return {
        "family": family, "status": "ok", "chi2_ndf": evaluation.chi2.chi2_ndf,
        "auc_low": clf["low"].auc, "auc_low_error": clf["low"].auc_error,
        "auc_high": clf["high"].auc, "auc_high_error": clf["high"].auc_error,
        "fpd_e3": evaluation.fpd.value * 1e3, "fpd_error_e3": evaluation.fpd.error * 1e3,
        "kpd_e3": evaluation.kpd.value * 1e3, "kpd_error_e3": evaluation.kpd.error * 1e3,
        "us_per_shower": us, "parameters": sum(p.numel() for m in bundle.models for p in m.parameters()),
        "iterations": sum(r.iterations for r in result.ranges), "validation_chi2_ndf": result.chi2_ndf,
        "verdict": evaluation.verdict, "train_minutes": round((trained - started) / 60, 2),
        "evaluate_minutes": round((time.perf_counter() - trained) / 60, 2),
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
    entries: list[dict[str, Any]] = []
    for family in settings.families:
        directory = out / family
        entry_file = directory / ENTRY
        if resume and entry_file.is_file():
            prog.message(f"leaderboard: {family} is complete, not trained again")
            entries.append(read_json(entry_file, "a leaderboard entry", CheckpointError))
            continue
        prog.message(f"leaderboard: {family} ({len(entries) + 1}/{len(settings.families)})")
        directory.mkdir(exist_ok=True)
        try:
            entry = _evaluate_family(family, data, reference, validation, settings, classifier, directory, resume,
                                     device, prog)
        except Exception as err:  # one family's failure (a bug, a NaN, out of memory) must not stop the others
            entry = {"family": family, "status": "failed", "error": f"{type(err).__name__}: {err}"[:500]}
            prog.message(f"leaderboard: {family} failed ({entry['error']}); the others go on")
        else:
            with atomic_path(entry_file, force=True) as tmp:
                tmp.write_text(strict_json(entry), encoding="utf-8")
        entries.append(entry)
        _write_outputs(Leaderboard(tuple(entries), settings, machine, time.perf_counter() - start, out,
                                   classifier.to_dict()))
    board = Leaderboard(tuple(entries), settings, machine, time.perf_counter() - start, out, classifier.to_dict())
    _write_outputs(board)
    return board


def _write_outputs(board: Leaderboard) -> None:
    from caloforge.campaign.leaderboard_report import render_html, render_markdown

    out = board.out_dir
    for name, text in (("leaderboard.json", strict_json(board.to_dict(), indent=2)),
                       ("leaderboard.md", render_markdown(board)), ("leaderboard.html", render_html(board))):
        with atomic_path(out / name, force=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
