"""The ``evaluate`` command: validate generated showers against a reference and write the report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer

from caloforge.cli.common import (
    GEOMETRY_HELP,
    THREADS_HELP,
    apply_threads,
    cli_progress,
    console,
    device_name,
    err_console,
    friendly_errors,
    verdict_table,
)

__all__ = ["register"]

DEFAULT_MINUTES = 10.0
"""Default wall-clock budget of the classifier trainings of ``--mode full``, minutes."""


@friendly_errors
def evaluate(
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference showers (CaloChallenge HDF5)."),
    generated: Path = typer.Option(..., "--generated", "-g", help="Generated showers (CaloChallenge HDF5)."),
    geometry: str | None = typer.Option(None, "--geometry", help=GEOMETRY_HELP),
    out: Path = typer.Option(Path("evaluation"), "--out", "-o", help="Output directory for the report."),
    mode: str = typer.Option("fast", "--mode", help="fast: no classifiers; full: everything."),
    classifier: str = typer.Option("low,high", "--classifier", help="Classifier tests in full mode: low, high."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    repeats: int | None = typer.Option(None, "--repeats", help="Classifier trainings to average (default 1; "
                                       "the paper: 10)."),
    max_showers: int | None = typer.Option(None, "--max-showers", help="Classifier showers per sample, 0: all "
                                           "(default 20000)."),
    max_epochs: int | None = typer.Option(None, "--max-epochs", help="Maximum classifier epochs (default 50)."),
    patience: int | None = typer.Option(None, "--patience", help="Early-stopping patience in epochs (default: "
                                        "none, the classifiers stop at --max-minutes or --max-epochs)."),
    precision: str | None = typer.Option(None, "--precision", help="Classifier arithmetic: auto (bf16 only where "
                                         "native and measured faster), fp32 or bf16 (default auto)."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Wall-clock budget of all classifier "
                                             "trainings in full mode, minutes (default 10)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Readout threshold in MeV (default: dataset's)."),
    device: str = typer.Option("auto", "--device", help="Classifier device: auto, cpu, cuda, cuda:1, ..."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
) -> None:
    """Validate generated showers against a reference: metrics.json, report.html and plots."""
    from caloforge.data.io import read
    from caloforge.errors import ConfigError
    from caloforge.validation.evaluate import CLASSIFIERS
    from caloforge.validation.evaluate import evaluate as run_evaluation
    from caloforge.validation.metrics.classifier import ClassifierConfig
    from caloforge.validation.report import check_report_dir

    if mode not in ("fast", "full"):
        msg = f"expected --mode fast or full but got '{mode}'"
        raise ConfigError(msg)
    kinds = tuple(k.strip() for k in classifier.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(CLASSIFIERS))
    if unknown or not kinds:
        msg = f"expected --classifier among {list(CLASSIFIERS)} but got {unknown or kinds}"
        raise ConfigError(msg)
    if max_minutes is not None and not max_minutes > 0:
        msg = f"expected --max-minutes > 0 but got {max_minutes}"
        raise ConfigError(msg)
    given: dict[str, Any] = {name: value for name, value in (("max_epochs", max_epochs), ("repeats", repeats),
                                                              ("precision", precision)) if value is not None}
    if patience is not None:
        given["patience"] = patience or None  # 0: no early stopping
    if max_showers is not None:
        given["max_showers"] = max_showers or None  # 0: all showers
    config = ClassifierConfig.cpu_budget(60.0 * (max_minutes if max_minutes is not None else DEFAULT_MINUTES))
    config = ClassifierConfig.from_dict(given, base=config, where="the classifier options")
    apply_threads(threads)
    check_report_dir(out, force)  # fail before reading large files
    progress = cli_progress()
    progress.message(f"reading {reference} and {generated}")
    ref = read(reference, geometry)
    gen = read(generated, geometry if geometry is not None else ref.geometry)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = run_evaluation(ref, gen, out, mode=mode, classifiers=kinds, seed=seed, force=force,  # type: ignore[arg-type]
                                classifier_config=config, device=device_name(device), threshold=threshold,
                                progress=progress)
    for w in caught:
        err_console.print(f"[yellow]warning:[/yellow] {w.message}")
    console.print(verdict_table(result))
    console.print(f"report: {out / 'report.html'}   metrics: {out / 'metrics.json'}   "
                  f"({result.timings.get('total', 0):.1f} s)")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command()(evaluate)
