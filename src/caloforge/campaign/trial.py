"""One campaign trial: train a family with the drawn hyperparameters, evaluate the selected model, report.

:func:`run_trial` is the Ray Tune trainable. It calls :func:`caloforge.training.train` (the one
training loop) in ``OUT/trials/<slice>/<family>/<trial id>/run`` with a :class:`TuneReport` callback
that reports every checkpoint's validation chi2/NDF to Tune (early stopping compares the running
best), then evaluates the selected bundle against the slice's reference showers and reports the
final result with the campaign's :data:`~caloforge.campaign.search.OBJECTIVE`. ``trial.json``
beside the run records the trial; once it says ``complete`` the trial is never trained again (a
resumed campaign re-reports it), and an interrupted trial continues from its last checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from caloforge.campaign.search import OBJECTIVE, SELECTION, decode_params
from caloforge.campaign.spec import CampaignSpec, family_config
from caloforge.config import Config
from caloforge.data import io
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError
from caloforge.training import TrainingSettings, load, split_validation
from caloforge.training.loop import run_training
from caloforge.training.spec import RunSpec, Runtime
from caloforge.validation.features import (
    apply_threshold,
    compute_features,
    high_level_inputs,
    low_level_inputs,
    readout_threshold,
)
from caloforge.validation.metrics.chi2 import response_chi2
from caloforge.validation.metrics.classifier import classifier_test

__all__ = ["SliceFiles", "TrialContext", "TuneReport", "run_trial", "trial_dir"]

_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")


class SliceFiles(Config):
    """The showers of a slice on disk (simulated ones are written by the campaign first).

    Attributes:
        train: Training showers.
        validation: Independent validation showers (else a split of ``train``).
        reference: Showers for the final metrics (else the validation sample).
        geometry: Preset or binning XML (None: from the file).
    """

    train: str
    validation: str | None = None
    reference: str | None = None
    geometry: str | None = None


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its config: the spec, the campaign directory and the slices' files."""

    spec: CampaignSpec
    out_dir: str
    files: dict[str, SliceFiles] = field(default_factory=dict)


def trial_dir(out_dir: str | Path, slice_label: str, family: str, trial_id: str) -> Path:
    """Where a trial's run and record live: ``OUT/trials/<slice>/<family>/<trial id>``."""
    return Path(out_dir) / "trials" / slice_label / family / trial_id


class TuneReport(L.Callback):
    """Report each checkpoint's row (iteration, elapsed time, chi2/NDF, running best) as it is logged.

    Iterations and seconds are counted over the energy ranges of a split run, so that the
    scheduler compares trials at the same point of their budget.

    Args:
        report: ``ray.tune.report`` (or any function taking the metrics dict).
        iterations: Iterations of the ranges finished before this process started.
        seconds: Their training seconds.
    """

    def __init__(self, report: Callable[[dict[str, Any]], None], iterations: int = 0, seconds: float = 0.0) -> None:
        self.report = report
        self.offset = (iterations, seconds)
        self.latest: dict[str, Any] = {}
        self._task: Any = None
        self._seen = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._task is not None and pl_module is not self._task:  # the next energy range
            self.offset = (self.offset[0] + self._task.iteration, self.offset[1] + self._task.elapsed_s)
        self._task = pl_module
        self._seen = len(self._task.selection.history)  # rows of an earlier process were reported by it

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._flush()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush()

    def _flush(self) -> None:
        history = self._task.selection.history
        for row in history[self._seen:]:
            self.latest = {"iteration": int(self.offset[0] + row["iteration"]),
                           "elapsed_s": float(self.offset[1] + row["elapsed_s"]),
                           "chi2_ndf": _finite(row["chi2_ndf"]), "best_chi2_ndf": _finite(row["best_chi2_ndf"])}
            self.report(dict(self.latest))
        self._seen = len(history)


def _finite(value: float) -> float:
    """Tune and Optuna want finite numbers: an infinite chi2/NDF (nothing in range) is reported as 1e12."""
    return float(value) if math.isfinite(value) else 1e12


def _finished_ranges(run_dir: Path) -> tuple[int, float]:
    """Iterations and seconds of the energy ranges a split run finished before."""
    done = [read_json(p, "a finished-range record", CheckpointError) for p in sorted(run_dir.glob("range-*/finished"))]
    return sum(int(d["iterations"]) for d in done), sum(float(d.get("elapsed_s") or 0.0) for d in done)


def _trained_minutes(run_dir: Path) -> float:
    """Training minutes already spent by an interrupted run (over its checkpoints)."""
    seconds = 0.0
    for ckpt in run_dir.rglob("last.ckpt"):
        seconds += float(torch.load(ckpt, map_location="cpu", weights_only=True)["caloforge"]["elapsed_s"])
    return seconds / 60


def _clean_environment() -> None:
    """A trial trains in one process: variables of the launcher that started the Ray worker (srun, torchrun)
    would make Lightning and :func:`caloforge.training.train` believe it is one rank of a DDP job."""
    for key in [k for k in os.environ if k.startswith("SLURM_") or k in _LAUNCHER_VARIABLES]:
        del os.environ[key]


def _read(files: SliceFiles, seed: int) -> tuple[ShowerSet, ShowerSet | None, ShowerSet]:
    """Training showers, the independent validation sample (or None) and the reference for the final metrics."""
    train_set = io.read(files.train, files.geometry)
    validation = io.read(files.validation, train_set.geometry) if files.validation else None
    if files.reference:
        reference = io.read(files.reference, train_set.geometry)
    else:  # train()'s own split: the same function, fraction and seed
        reference = validation if validation is not None else split_validation(train_set, None, seed)[1]
    return train_set, validation, reference


def evaluate(spec: CampaignSpec, bundle_dir: Path, reference: ShowerSet, device: str) -> dict[str, float]:
    """The selected model against the reference: the evaluation's chi2/NDF ("UU") and, for the AUC metric,
    the classifier test."""
    generated = load(bundle_dir).generate_like(reference, device=device, seed=spec.seed + 1)
    threshold = readout_threshold(reference.geometry)
    ref, gen = apply_threshold(reference, threshold), apply_threshold(generated, threshold)
    out = {"reference_chi2_ndf": response_chi2(ref.energies, ref.response, gen.energies, gen.response).chi2_ndf}
    if spec.metric == "auc":
        if spec.classifier_inputs == "low":
            x_ref, x_gen = low_level_inputs(reference, threshold), low_level_inputs(generated, threshold)
        else:
            x_ref = high_level_inputs(compute_features(reference, threshold))
            x_gen = high_level_inputs(compute_features(generated, threshold))
        result = classifier_test(x_ref, x_gen, spec.classifier, seed=spec.seed, device=device)
        out.update(auc=result.auc, auc_error=result.auc_error)
    return out


def _write(path: Path, record: dict[str, Any]) -> None:
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(strict_json(record), encoding="utf-8")


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Ray Tune trainable of a campaign: train, evaluate, report (see the module docstring)."""
    from ray import tune  # optional dependency (the campaign extra)


    _clean_environment()
    spec = context.spec
    slice_label, family = config["slice"], config["family"]
    trial_id = tune.get_context().get_trial_id()
    directory = trial_dir(context.out_dir, slice_label, family, trial_id)
    record_file, run_dir = directory / "trial.json", directory / "run"
    if record_file.is_file():
        stored = read_json(record_file, "a trial record", CheckpointError)
        if stored.get("status") == "complete":  # finished before an interruption: never trained again
            tune.report({**stored["final"], "resumed": True})
            return
    start = time.monotonic()
    torch.set_num_threads(max(1, math.floor(spec.resources.cpus)))
    device = "cuda" if spec.resources.gpus > 0 and torch.cuda.is_available() else "cpu"
    params = decode_params(spec.families[family].search, config["params"])
    model_config = family_config(spec, family, spec.slice(slice_label).particle, params, device)
    train_set, validation, reference = _read(context.files[slice_label], spec.seed)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"trial": trial_id, "slice": slice_label, "family": family, "params": params,
              "config": model_config.to_dict(), "status": "running", "run": "run"}
    _write(record_file, record)
    resume = (run_dir / "run.json").is_file()
    minutes = spec.budget.minutes
    if resume and minutes is not None:
        minutes = max(minutes - _trained_minutes(run_dir), 0.05)
    reporter = TuneReport(tune.report, *(_finished_ranges(run_dir) if resume else (0, 0.0)))
    settings = TrainingSettings(max_iterations=spec.budget.iterations, max_minutes=minutes,
                                checkpoint_every=spec.budget.checkpoint_every,
                                split_energies=tuple(spec.energy_split), seed=spec.seed)
    run = RunSpec(family, model_config, settings, Runtime(device, callbacks=(reporter,)))
    result = run_training(train_set, run, run_dir, validation=validation, resume=resume)
    metrics = {"chi2_ndf": _finite(result.chi2_ndf), **evaluate(spec, result.bundle_dir, reference, device)}
    objective = metrics["chi2_ndf"] if spec.metric == "chi2_ndf" else metrics["auc"]
    iterations = sum(r.iterations for r in result.ranges)
    final = {"iteration": iterations, "elapsed_s": sum(r.elapsed_s for r in result.ranges),  # when training had
             SELECTION: metrics["chi2_ndf"], **reporter.latest,  # ended before an interruption: nothing reported
             **{k: _finite(v) for k, v in metrics.items()}, OBJECTIVE: _finite(objective), "iterations": iterations,
             "trial_s": time.monotonic() - start}
    ranges = [[r.energy_low, r.energy_high] for r in result.ranges]
    _write(record_file, {**record, "status": "complete", "final": final, "energy_ranges": ranges,
                         "best_iterations": [r.best_iteration for r in result.ranges]})
    tune.report(final)
