"""Training on Lightning: budgets, checkpoints, chi2 selection, resume, energy-range splits.

:func:`train` is the one entry point (the CLI ``caloforge train`` and the demo call it).
A run directory holds ``run.json`` (the run's settings and the data fingerprint) and, per
model, ``last.ckpt`` (for resuming), ``best.ckpt``, ``log.csv`` (losses and chi2/NDF per
checkpoint), ``lightning_logs/`` (Lightning's CSV log) and ``bundle/`` (the best model so far,
selected by the chi2/NDF of the total-energy response on a held-out validation split, as
CaloShowerGAN selects its iteration). With
``split_energies`` one model is trained per incident-energy range (in ``range-<i>/``) and
``RUN_DIR/bundle`` is a split bundle that sends each energy to its model.

Checkpoints are Lightning ``.ckpt`` files (pickles): only a run's own checkpoints are
ever read, with ``weights_only=True``. Bundles hold no pickles.

References:
    M. Faucci Giannelli, R. Zhang, CaloShowerGAN, arXiv:2309.06515 (energy ranges, chi2 selection).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.data.source import Showers, read_rows
from caloforge.errors import CheckpointError, ConfigError, DataError, GeometryMismatchError
from caloforge.extras import require
from caloforge.models.base import FamilyConfig, check_model_size
from caloforge.models.preprocess import Preprocessing
from caloforge.runtime.hardware import resolve_device
from caloforge.runtime.progress import Progress, as_progress
from caloforge.training.batches import batch_source
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_split
from caloforge.training.data import Scan, ValidationTarget, bundle_response, scan
from caloforge.training.fit import RangeData, RangeResult, fit_range
from caloforge.training.settings import (
    RunRecord,
    TrainingSettings,
    check_run_dir,
    create_run,
    discard_failed_run,
    read_run,
)
from caloforge.training.shapes import Selection
from caloforge.training.spec import RunSpec, Runtime
from caloforge.training.split import RunRows, warn_small_validation
from caloforge.validation.features import readout_threshold
from caloforge.validation.metrics.chi2 import Chi2Result

__all__ = ["MIN_TRAINING_SHOWERS", "RangeResult", "TrainResult", "run_training", "train"]

MIN_TRAINING_SHOWERS = 10
"""Fewest training (and validation) showers a run accepts."""


@dataclass(frozen=True)
class TrainResult:
    """A training run.

    Attributes:
        run_dir: The run directory.
        bundle_dir: The final bundle (``run_dir/bundle``), loadable with :func:`caloforge.training.bundle.load`.
        ranges: One result per energy range (one for an unsplit run).
        validation: chi2 of the final bundle on the whole validation split.
        elapsed_s: Wall-clock time of this call, s.
        interrupted: Stopped by Ctrl-C or SIGTERM; resume with ``resume=True``.
        max_iterations: The iteration budget the run used.
        max_minutes: The wall-clock budget of this call, minutes.
        signum: The signal that stopped it (2 SIGINT, 15 SIGTERM), 0 when none did.
    """

    run_dir: Path
    bundle_dir: Path
    ranges: tuple[RangeResult, ...]
    validation: Chi2Result | None
    elapsed_s: float
    interrupted: bool
    max_iterations: int | None = None
    max_minutes: float | None = None
    signum: int = 0

    @property
    def remaining_minutes(self) -> float | None:
        """Minutes of the wall-clock budget left when this call stopped (None without a minutes budget)."""
        if self.max_minutes is None:
            return None
        return max(0.0, self.max_minutes - self.elapsed_s / 60)

    @property
    def chi2_ndf(self) -> float:
        """Validation chi2/NDF of the final bundle (NaN if it was not evaluated)."""
        return self.validation.chi2_ndf if self.validation is not None else float("nan")


def _secondary_rank(devices: Any, num_nodes: int, strategy: Any) -> bool:
    """Whether a DDP launcher (Lightning, torchrun, SLURM's srun) started this process as a rank other than 0.

    Those processes train but never write the run directory (rank 0 does).
    """
    distributed = num_nodes > 1 or devices not in (1, "1") or "ddp" in str(strategy)
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return distributed and any(os.environ.get(k, "0") not in ("", "0") for k in keys)


def train(
    data: Showers,
    family: str = "gan",
    config: FamilyConfig | None = None,
    out_dir: str | Path = "run",
    *,
    max_iterations: int | None = None,
    max_minutes: float | None = None,
    checkpoint_every: int | None = None,
    split_energies: Sequence[float] = (),
    hold_out_energy: float | None = None,
    validation_fraction: float | None = None,
    validation: Showers | None = None,
    seed: int = 0,
    selection: Selection | None = None,
    device: str = "cpu",
    devices: int | str | list[int] = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    resume: bool = False,
    progress: Progress | bool = True,
    callbacks: Sequence[Any] = (),
    tensorboard: bool = False,
) -> TrainResult:
    """Train a model family on showers and save the best model as a bundle.

    Args:
        data: The training showers, in memory or a :class:`~caloforge.data.source.ShowerFile` (streamed:
            read once for per-shower sums, then in batches; memory stays bounded, see
            :mod:`caloforge.training.batches`). A validation split is taken from them unless
            ``validation`` is given.
        family: A registered family name (``caloforge.models.FAMILIES``).
        config: The family's config; None uses ``for_particle(data.geometry.particle)``.
        out_dir: The run directory (new, or an existing run with ``resume``).
        max_iterations: Stop each model at this many iterations (counted over resumes).
        max_minutes: Wall-clock budget of this call, shared by the energy ranges.
            On ``resume`` without either budget, the run's own budget is used again.
        checkpoint_every: Iterations between checkpoints (chi2 evaluation, ``last.ckpt``, CSV row); None: 100,
            or on ``resume`` the run's own. One given on ``resume`` applies to this call (the run's stays recorded).
        split_energies: Incident energies (MeV) splitting the data into ranges, one model each;
            E goes to range ``i`` when ``split[i-1] <= E < split[i]``.
        hold_out_energy: An incident energy (MeV) removed from training and validation.
        validation_fraction: Fraction of the showers of each energy held out for validation;
            None (default) sizes it automatically (see :func:`split_validation`).
        validation: An independent validation sample (e.g. the second file of a CaloChallenge
            dataset): used instead of a split, all training showers then train.
        seed: Seed of the split, the initialisation, the batches and the noise.
        selection: What selects the checkpoint: ``"chi2"`` (the response chi2/NDF), ``"fpd"`` (the
            Fréchet distance of the high-level columns over that of two halves of the validation
            sample, :mod:`caloforge.training.shapes`) or ``"combined"`` (their geometric mean); None: the family's
            default (:func:`~caloforge.training.settings.default_selection`). A resumed run keeps its own.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; the caller resolves ``"auto"``.
        devices: Passed to ``lightning.Trainer(devices=...)``; with ``"cuda:N"`` the default 1 means GPU N.
        strategy: Passed to ``lightning.Trainer(strategy=...)``; ``ddp`` and ``ddp_spawn`` detect unused
            parameters (a GAN's critic step leaves the generator out). Ranks other than 0 train but
            write nothing; their result has no final ``validation``.
        num_nodes: Passed to ``lightning.Trainer(num_nodes=...)`` (multi-node DDP).
        resume: Continue the run in ``out_dir`` from its last checkpoints (settings from its ``run.json``).
        progress: A :class:`~caloforge.runtime.progress.Progress`, True (detect the terminal) or False.
        callbacks: Extra Lightning callbacks.
        tensorboard: Also log to TensorBoard (``<run>/tensorboard/``, needs the ``tensorboard`` package);
            Lightning's CSV log (``<run>/lightning_logs/``) is always written.

    Returns:
        The run's result; the bundle is at ``result.bundle_dir``.

    Raises:
        ConfigError: no budget, unknown family, a hold-out energy not in the data, an empty energy range,
            a model too large for this machine's memory, an unavailable device.
        DataError: too few showers, or other data than the resumed run's.
        OutputExistsError: ``out_dir`` holds files and ``resume`` is false.
        OutputPathError: ``out_dir`` is a file, or cannot be written (read-only, full disk).
        CheckpointError: ``resume`` without a run in ``out_dir``, or a corrupt ``run.json``.

    Warns:
        UserWarning: when the validation sample has fewer than :data:`MIN_VALIDATION_PER_ENERGY`
            showers at some energy.

    All inputs are checked before ``out_dir`` is created, so a refused call leaves nothing behind;
    a new run that fails before its first checkpoint is removed again.
    """
    interval = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}  # given or not: resume
    settings = TrainingSettings(max_iterations=max_iterations, max_minutes=max_minutes, **interval,
                                split_energies=tuple(split_energies), hold_out_energy=hold_out_energy,
                                validation_fraction=validation_fraction, seed=seed, selection=selection)
    _check_budget(settings, resume)
    runtime = Runtime(device, devices, strategy, num_nodes, as_progress(progress), tuple(callbacks), tensorboard)
    spec = RunSpec.from_arguments(family, config, settings, data.geometry.particle, runtime)
    return run_training(data, spec, out_dir, validation=validation, resume=resume)


def run_training(data: Showers, spec: RunSpec, out_dir: str | Path = "run", *, validation: Showers | None = None,
                 resume: bool = False) -> TrainResult:
    """Train the run ``spec`` describes on ``data`` (the arguments and errors of :func:`train`, typed once).

    The steps: check the inputs, settle the settings (the stored run's on resume), choose the rows,
    scan the data once, check and record the run, fit one model per energy range, then the final bundle's chi2.
    """
    start = time.monotonic()
    _check_inputs(data, validation, spec, resume)
    # the geometry's settings (e.g. layer shapes); the family class passes on, not looked up again
    spec = replace(spec, config=spec.config.for_geometry(data.geometry), registered=spec.family_class)
    run_dir = Path(out_dir)
    spec = _settle(spec, run_dir, resume)
    rows = RunRows.choose(data, validation, spec.settings)
    scans = _Scans.of(data, validation, rows, spec.runtime.progress)
    record = spec.record(scans.train.fingerprints["data"],
                         None if validation is None else scans.validation.fingerprints["validation"])
    secondary = _secondary_rank(spec.runtime.devices, spec.runtime.num_nodes, spec.runtime.strategy)
    if resume or not secondary:  # rank 0 made the run directory
        record = check_run_dir(run_dir, record, resume)
    if resume:  # the run's own family and config
        spec = spec.stored(record, f"the config of the run in {run_dir}")
    first = Preprocessing.fit(read_rows(data, rows.train[0][:2]), spec.config.preprocessing, spec.config.energy_scale)
    check_model_size(spec.family_class, spec.config, first)
    val_source = data if validation is None else validation
    warn_small_validation(val_source.energies[np.concatenate(rows.validation)])
    created = not run_dir.exists()
    if not resume and not secondary:  # all inputs checked: only now does the run exist on disk
        create_run(run_dir, record)
    try:
        ranges = _fit_ranges(run_dir, spec, lambda i: scans.range_data(i, data, val_source, rows, spec), start)
    except Exception:
        if not resume and not secondary:
            discard_failed_run(run_dir, created)
        raise
    interrupted = any(r.interrupted for r in ranges)
    signum = next((r.signum for r in ranges if r.interrupted and r.signum), 0)
    bundle_dir = run_dir / "bundle"
    result_chi2 = None
    if not secondary and not interrupted:
        result_chi2 = _final_bundle(bundle_dir, ranges, spec, record, scans.validation_target(val_source, rows))
    return TrainResult(run_dir, bundle_dir, tuple(ranges), result_chi2, time.monotonic() - start, interrupted,
                       spec.settings.max_iterations, spec.settings.max_minutes, signum)


def _check_budget(settings: TrainingSettings, resume: bool) -> None:
    """A budget is required, except on a resume that reuses the run's own."""
    if not resume or settings.max_iterations is not None or settings.max_minutes is not None:
        settings.check_budget()


def _check_inputs(data: Showers, validation: Showers | None, spec: RunSpec, resume: bool) -> None:
    """The budget, enough showers, one geometry, an available device and the optional packages asked for."""
    _check_budget(spec.settings, resume)
    for name, sample in (("training", data), ("validation", validation)):
        if sample is not None and len(sample) < MIN_TRAINING_SHOWERS:
            msg = f"expected at least {MIN_TRAINING_SHOWERS} {name} showers but got {len(sample)}, in train"
            raise DataError(msg)
    if validation is not None and validation.geometry != data.geometry:
        msg = (f"expected validation showers of the training geometry '{data.geometry.name}' but got "
               f"'{validation.geometry.name}', in train")
        raise GeometryMismatchError(msg)
    resolve_device(spec.runtime.device)
    if spec.runtime.tensorboard:
        require("tensorboard", "tensorboard", "train --tensorboard")


def _settle(spec: RunSpec, run_dir: Path, resume: bool) -> RunSpec:
    """On resume the stored run's settings (a budget or checkpoint interval given now replaces its own, for this
    call); else the family's selection."""
    stored = read_run(run_dir / "run.json") if resume and (run_dir / "run.json").is_file() else None
    if stored is None:
        return spec.with_default_selection()
    given = spec.settings
    settings = stored.settings if given.max_iterations is None and given.max_minutes is None else \
        stored.settings.replace(max_iterations=given.max_iterations, max_minutes=given.max_minutes)
    settings.check_budget()
    if "checkpoint_every" in given.model_fields_set and given.checkpoint_every != settings.checkpoint_every:
        spec.runtime.progress.message(f"train: resuming with a checkpoint every {given.checkpoint_every} iterations "
                                      f"(the run's was {settings.checkpoint_every})")
        settings = settings.replace(checkpoint_every=given.checkpoint_every)
    return replace(spec, settings=_resumed_selection(settings, given.selection, run_dir), registered=spec.family_class)


@dataclass(frozen=True)
class _Scans:
    """The one scan of the training data (and of an independent validation sample), and the readout threshold."""

    train: Scan
    validation: Scan
    threshold: float
    validation_rows: NDArray[np.int64]

    @classmethod
    def of(cls, data: Showers, validation: Showers | None, rows: RunRows, progress: Progress) -> _Scans:
        threshold = readout_threshold(data.geometry)
        val_rows = np.sort(np.concatenate(rows.validation))  # their high-level columns: the shape reference
        scanned = scan(data, {"data": np.arange(len(data)), **{f"range-{i}": r for i, r in enumerate(rows.train)}},
                       threshold, progress, feature_rows=val_rows if validation is None else None)
        scanned_val = scanned if validation is None else scan(
            validation, {"validation": np.arange(len(validation))}, threshold, progress, feature_rows=val_rows)
        return cls(scanned, scanned_val, threshold, val_rows)

    def range_data(self, i: int, data: Showers, val_source: Showers, rows: RunRows, spec: RunSpec) -> RangeData:
        """What the model of energy range ``i`` trains on."""
        train_rows = rows.train[i]
        sizes = tuple(layer.n_voxels for layer in data.geometry.layers)
        preprocessing = Preprocessing.fit_summary(self.train.summary[train_rows], sizes, spec.config.preprocessing,
                                                  spec.config.energy_scale)
        batches = batch_source(data, train_rows, spec.config.batch_size, spec.settings.seed + i)
        target = ValidationTarget.from_scan(val_source, self.validation, rows.validation[i], self.threshold)
        return RangeData(preprocessing, batches, target, self.train.fingerprints[f"range-{i}"])

    def validation_target(self, val_source: Showers, rows: RunRows) -> ValidationTarget:
        """The whole validation sample, every range together, for the final bundle's chi2 (no shape reference)."""
        return ValidationTarget.from_scan(val_source, self.validation, self.validation_rows, self.threshold,
                                          with_shapes=False)


def _final_bundle(bundle_dir: Path, ranges: Sequence[RangeResult], spec: RunSpec, record: RunRecord,
                  everything: ValidationTarget) -> Chi2Result:
    """Join a split run's bundles into one, and its chi2 on the whole validation sample."""
    settings = spec.settings
    if settings.split_energies:
        save_split(bundle_dir, [r.directory / "bundle" for r in ranges], settings.split_energies,
                   {"held_out_energy": settings.hold_out_energy, "data": record.data}, force=True)
    with spec.runtime.progress.heartbeat(f"train: the final bundle's chi2 on {len(everything)} validation showers"):
        return everything.chi2(bundle_response(load(bundle_dir), everything, settings.seed, spec.runtime.device))


def _resumed_selection(settings: TrainingSettings, given: str | None, run_dir: Path) -> TrainingSettings:
    """The stored run's selection (``"chi2"`` for runs from before shape selection); another one given is refused."""
    stored = settings.selection or "chi2"
    if given is not None and given != stored:
        msg = (f"expected the selection of the run in {run_dir} ('{stored}') but got '{given}'; resume with the "
               f"same selection or start a new run")
        raise ConfigError(msg)
    return settings.replace(selection=stored)


def _fit_ranges(run_dir: Path, spec: RunSpec, range_data: Callable[[int], RangeData], start: float
                ) -> list[RangeResult]:
    """Train one model per energy range (one for an unsplit run), skipping ranges that finished before."""
    splits, minutes = spec.settings.split_energies, spec.settings.max_minutes
    edges = [-np.inf, *splits, np.inf]
    ranges: list[RangeResult] = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        directory = run_dir / f"range-{i}" if splits else run_dir
        finished = directory / "finished"
        if finished.is_file():
            record = read_json(finished, "a finished-range record", CheckpointError)
            try:
                ranges.append(RangeResult(**{**record, "directory": directory}))
            except TypeError as err:  # keys of another version, or not a mapping
                msg = f"expected a finished-range record in {finished} but: {err}; remove it to train the range again"
                raise CheckpointError(msg) from None
            continue
        seconds = None
        if minutes is not None:
            seconds = max(0.0, (minutes * 60 - (time.monotonic() - start)) / (len(edges) - 1 - i))
        result = fit_range(directory, spec, range_data(i), index=i, energies=(lo, hi), max_seconds=seconds)
        ranges.append(result)
        if result.interrupted:
            break
        if splits:
            with atomic_path(finished, force=True) as tmp:
                tmp.write_text(strict_json({k: v for k, v in result.__dict__.items() if k != "directory"}))
    return ranges
