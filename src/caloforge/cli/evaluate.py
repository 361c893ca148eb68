"""The ``evaluate`` command: validate generated showers against a reference and write the report.

It also takes the options of the CaloChallenge's own ``evaluate.py`` where they do not clash:
``-i/--input-file`` (the generated file), ``--reference-file``, ``-d/--dataset`` (``1-photons``,
``1-pions``, ``2``, ``3``), ``--output-dir``, and its ``-m`` modes (``all``; ``hist``, ``hist-p``,
``hist-chi``, ``avg``, ``avg-E`` run the fast mode; ``cls-low``, ``cls-high`` one classifier).
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from threadpoolctl import threadpool_limits

from caloforge.cli.common import (
    DEVICE,
    GEOMETRY_HELP,
    THREADS_HELP,
    apply_threads,
    cli_progress,
    comparison_table,
    console,
    device_name,
    err_console,
    examples,
    friendly_errors,
    verdict_table,
)
from caloforge.errors import ConfigError

__all__ = ["register"]

DEFAULT_MINUTES = 10.0
"""Default wall-clock budget of the classifier trainings of ``--mode full``, minutes."""
_DATASETS = {"1-photons": "ds1-photons", "1-pions": "ds1-pions", "2": "ds2", "3": "ds3"}


class Mode(StrEnum):
    """``fast`` (no classifiers) or ``full``; the CaloChallenge's own mode names are accepted too."""

    fast = "fast"
    full = "full"
    all = "all"
    hist = "hist"
    hist_p = "hist-p"
    hist_chi = "hist-chi"
    avg = "avg"
    avg_e = "avg-E"
    cls_low = "cls-low"
    cls_high = "cls-high"


class Precision(StrEnum):
    """Classifier arithmetic."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


def _mode(mode: Mode, classifier: str) -> tuple[str, str]:
    """caloforge's (mode, classifiers) for a mode name of either vocabulary."""
    if mode in (Mode.full, Mode.all):
        return "full", classifier
    if mode in (Mode.cls_low, Mode.cls_high):
        return "full", mode.value.removeprefix("cls-")
    return "fast", classifier


@friendly_errors
def evaluate(
    reference: Path = typer.Option(..., "--reference", "-r", "--reference-file",
                                   help="Reference showers (CaloChallenge HDF5)."),
    generated: list[Path] = typer.Option(..., "--generated", "-i", "--input-file",
                                         help="Generated showers (CaloChallenge HDF5); repeat it to compare several "
                                         "samples in one report (every histogram overlaid, a table per sample)."),
    label: list[str] = typer.Option([], "--label", help="A name for each --generated sample, in the same order "
                                    "(default: the file names without .h5); only with several samples."),
    geometry: str | None = typer.Option(None, "--geometry", "-g", help=GEOMETRY_HELP),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="The CaloChallenge's dataset names: "
                                       "1-photons, 1-pions, 2, 3 (instead of --geometry)."),
    out: Path = typer.Option(Path("evaluation"), "--out", "-o", "--output-dir", help="Output directory."),
    mode: Mode = typer.Option(Mode.fast, "--mode", "-m", help="fast: no classifiers; full: everything "
                              "(CaloChallenge names: all = full, cls-low / cls-high = one classifier, others = fast)."),
    classifier: str = typer.Option("low,high", "--classifier", help="Classifier tests in full mode: low, high."),
    run: Path | None = typer.Option(None, "--run", help="The training run (or bundle) of the generated showers: "
                                    "adds its training history and describes the model in the header."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    repeats: int | None = typer.Option(None, "--classifier-repeats", help="Classifier trainings to average "
                                       "(default 1; the paper: 10)."),
    max_showers: int | None = typer.Option(None, "--classifier-showers", help="Classifier showers per sample, "
                                           "0: all (default 20000)."),
    max_epochs: int | None = typer.Option(None, "--classifier-epochs", help="Maximum classifier epochs (default "
                                          "50)."),
    patience: int | None = typer.Option(None, "--classifier-patience", help="Classifier early-stopping patience in "
                                        "epochs (default: none, the classifiers stop at --classifier-minutes or "
                                        "--classifier-epochs)."),
    precision: Precision = typer.Option(Precision.auto, "--classifier-precision", help="Classifier arithmetic: auto "
                                        "is bf16 only where native and measured faster."),
    max_minutes: float = typer.Option(DEFAULT_MINUTES, "--classifier-minutes", help="Wall-clock budget of all "
                                      "classifier trainings in full mode, minutes."),
    prdc: bool = typer.Option(True, "--prdc/--no-prdc", help="Full mode: precision/recall/density/coverage "
                              "on 2 x 5000 showers (--no-prdc spares their memory and time)."),
    skip: str = typer.Option("", "--skip", help="Expensive parts not to compute, comma-separated: fpd, kpd, "
                             "split (the reference split of FPD, KPD and the classifiers), prdc; shown as not "
                             "computed, with the reason; figures: no plots (minutes on datasets 2/3)."),
    fpd_draws: int | None = typer.Option(None, "--fpd-draws", help="FPD subsets per size (default: the "
                                         "official 20, fewer where costly: 7 on 50k ds2/ds3 showers; 20 forces the "
                                         "official). Other values are named in the report and metrics.json."),
    kpd_batches: int | None = typer.Option(None, "--kpd-batches", help="KPD batches (official: 10); other "
                                           "values are recorded as not the official settings."),
    threshold: float | None = typer.Option(None, "--threshold", help="Readout threshold in MeV (default: the "
                                           "dataset's)."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Classifier device (auto: CUDA when "
                               "present)."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP + " Also numpy's BLAS threads and the "
                                       "processes that draw the figures."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
) -> None:
    """Validate generated showers against a reference: report.html, metrics.json, plots/ (and histograms.root).

    The files are streamed chunk by chunk, never loaded whole (the memory bound: docs/validation.md).
    """
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.outputs import new_directory_guard
    from caloforge.data.source import ShowerFile
    from caloforge.runtime.interrupts import deferred_interrupts
    from caloforge.validation.compare import evaluate_samples
    from caloforge.validation.drawing import set_figure_workers
    from caloforge.validation.evaluate import CLASSIFIERS, DistanceConfig
    from caloforge.validation.evaluate import evaluate as run_evaluation
    from caloforge.validation.metrics.classifier import ClassifierConfig
    from caloforge.validation.metrics.verdict import too_small_message
    from caloforge.validation.report import check_report_dir

    if dataset is not None:
        if geometry is not None or dataset not in _DATASETS:
            msg = f"expected --dataset in {sorted(_DATASETS)} (and no --geometry) but got '{dataset}'"
            raise ConfigError(msg)
        geometry = _DATASETS[dataset]
    kind, classifier = _mode(mode, classifier)
    kinds = tuple(k.strip() for k in classifier.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(CLASSIFIERS))
    if unknown or not kinds:
        msg = f"expected --classifier among {list(CLASSIFIERS)} but got {unknown or kinds}"
        raise ConfigError(msg)
    if not max_minutes > 0:
        msg = f"expected --classifier-minutes > 0 but got {max_minutes}"
        raise ConfigError(msg)
    given: dict[str, Any] = {name: value for name, value in (("max_epochs", max_epochs), ("repeats", repeats))
                             if value is not None}
    if patience is not None:
        given["patience"] = patience or None  # 0: no early stopping
    if max_showers is not None:
        given["max_showers"] = max_showers or None  # 0: all showers
    config = ClassifierConfig.cpu_budget(60.0 * max_minutes).replace(precision=precision.value)
    config = ClassifierConfig.from_dict(given, base=config, where="the classifier options")
    distances = DistanceConfig(skip=DistanceConfig.parse_skip(skip),
                               **{k: v for k, v in (("fpd_draws", fpd_draws), ("kpd_batches", kpd_batches))
                                  if v is not None})
    labels = _labels(generated, label, run)
    history, model = _training(run)
    count = apply_threads(threads)
    # numpy's BLAS (FPD/KPD) gets the same threads as torch: its default, every core, spin-waits on a loaded
    # machine (FPD 10x slower, 2026-12-07: docs/validation.md)
    threadpool_limits(limits=count, user_api="blas")
    set_figure_workers(count)  # and as many processes draw the report's figures
    check_report_dir(out, force)  # fail before reading large files
    progress = cli_progress()
    progress.message(f"opening {reference} and {', '.join(map(str, generated))} (showers are streamed, not loaded)")
    ref = ShowerFile.open(reference, geometry)
    gens = {name: ShowerFile.open(path, geometry if geometry is not None else ref.geometry)
            for name, path in zip(labels, generated, strict=True)}
    inputs = {"reference": {"path": str(reference)}, **({"model": model} if model else {}),  # + fingerprints
              "generated": {"path": str(generated[0])} if labels == ("generated",) else
              {name: {"path": str(path)} for name, path in zip(labels, generated, strict=True)}}
    # Ctrl-C and SIGTERM stop at the next progress update (even when the shell started us ignoring SIGINT);
    # an --out directory created here and left empty by a failure or an interrupt is removed
    with warnings.catch_warnings(record=True) as caught, new_directory_guard(out), deferred_interrupts() as check:
        warnings.simplefilter("always", UserWarning)
        progress.check = check
        options: dict[str, Any] = {"mode": kind, "classifiers": kinds, "seed": seed, "force": force,
                                    "classifier_config": config, "device": device_name(device),
                                    "threshold": threshold, "with_prdc": prdc, "progress": progress,
                                    "inputs": inputs, "distances": distances}
        if labels == ("generated",):
            result = run_evaluation(ref, gens["generated"], out, training_history=history, **options)
            results, total = [("", result)], result.timings.get("total", 0.0)
        else:
            comparison = evaluate_samples(ref, gens, out, **options)
            results, total = comparison.samples, comparison.timings.get("total", 0.0)
    for message in dict.fromkeys(str(w.message) for w in caught):  # each warning once
        err_console.print(f"[yellow]warning:[/yellow] {message}")
    console.print(verdict_table(results[0][1]) if len(results) == 1 and not results[0][0] else
                  comparison_table(results))
    small = next((m for _, one in results if (m := too_small_message(one.verdicts))), "")
    if small:  # once, whatever the number of samples
        err_console.print(f"[yellow]warning:[/yellow] {small}")
    console.print(f"report: {out / 'report.html'}   metrics: {out / 'metrics.json'}   "
                  f"({total:.1f} s)")


def _labels(generated: list[Path], labels: list[str], run: Path | None) -> tuple[str, ...]:
    """("generated",) for one sample; else each sample's label (--label, or the file stems), checked."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.validation.compare import sample_labels

    if len(generated) == 1 and not labels:
        return ("generated",)
    if run is not None and len(generated) > 1:
        msg = (f"expected --run with one --generated file (its model's) but got {len(generated)} files; "
               "evaluate that model's file alone to add its training history")
        raise ConfigError(msg)
    if run is not None:
        msg = (f"expected no --label with --run (a single-model report) but got --label {labels[0]}; "
               "leave --label out, or --run out to compare labelled samples")
        raise ConfigError(msg)
    names = [path.name.removesuffix(".hdf5").removesuffix(".h5") for path in generated]
    try:
        return sample_labels(names, labels)
    except ConfigError as err:
        duplicate = not labels and "duplicates" in str(err)
        msg = (f"expected generated files with different names but got {names}; name each with --label"
               if duplicate else str(err))
        raise ConfigError(msg) from None


def _training(run: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The training history and a description of the model, from a run or bundle directory (``--run``)."""
    if run is None:
        return [], {}
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.training.bundle import load

    bundle = load(run)
    history = list(bundle.info.get("history", []))
    last = history[-1] if history else {}
    minutes = last.get("elapsed_s")
    return history, {"path": str(bundle.path), "family": bundle.family, "iterations": last.get("iteration", "?"),
                     "training_minutes": minutes / 60 if isinstance(minutes, int | float) else None}


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command(epilog=examples(
        "caloforge evaluate -r eval.h5 -i gen.h5 --out report/",
        "caloforge evaluate -r eval.h5 -i gen.h5 --mode full --run run/ --classifier-minutes 20 --out report/",
        "caloforge evaluate -r eval.h5 -i gen.h5 --skip fpd,kpd --out report/",
        "caloforge evaluate --reference-file eval.h5 --input-file gen.h5 -d 1-photons -m all --output-dir report/"))(
        evaluate)
